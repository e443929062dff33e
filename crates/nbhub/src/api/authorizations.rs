//! JupyterHub's deprecated `/authorizations/*` endpoints, answered as JupyterHub 6 does:
//! `GET /authorizations/token/{token}` and `GET /authorizations/cookie/{name}[/{value}]`
//! identify the owner of a token or a login cookie (callers must use a token themselves);
//! `POST /authorizations/token` (the old username/password form) is gone: 404.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::services::service_model;
use super::users::user_model;
use super::ApiIdentity;
use crate::auth::scopes::{self, Owner};
use crate::auth::{session, Identity, Principal};
use crate::db;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/authorizations/token", post(post_token))
        .route("/authorizations/token/{token}", get(get_token_owner))
        .route(
            "/authorizations/cookie/{name}",
            get(get_cookie_owner_in_body),
        )
        .route(
            "/authorizations/cookie/{name}/{value}",
            get(get_cookie_owner),
        )
}

async fn post_token() -> ApiError {
    ApiError::not_found(
        "Deprecated endpoint /hub/api/authorizations/token is removed in JupyterHub 2.0. Use /hub/api/users/:user/tokens instead.",
    )
}

/// These endpoints are for services holding a token, never for browsers with a cookie.
fn require_token(ident: &Identity) -> ApiResult<()> {
    if ident.token.is_none() {
        return Err(ApiError::forbidden(
            "This endpoint needs an API token in the Authorization header",
        ));
    }
    Ok(())
}

fn not_found() -> ApiError {
    ApiError::not_found("Not Found")
}

async fn get_token_owner(
    State(state): State<AppState>,
    ApiIdentity(mut ident): ApiIdentity,
    Path(token): Path<String>,
) -> ApiResult<Response> {
    require_token(&ident)?;
    tracing::warn!(by = %ident.name(), "/authorizations/token/:token is deprecated since JupyterHub 2.0; use /hub/api/user");
    let Some(found) = db::tokens::find(&state.db, &token).await? else {
        return Err(not_found());
    };
    let principal = match found.owner {
        db::tokens::Owner::User(id) => db::users::get_by_id(&state.db, id)
            .await?
            .map(Principal::User),
        db::tokens::Owner::Service(id) => db::services::get_by_id(&state.db, id)
            .await?
            .map(Principal::Service),
    }
    .ok_or_else(not_found)?;
    // Holding a token is enough to read its owner's name and groups.
    let owner = match &principal {
        Principal::User(u) => Owner::User { name: &u.name },
        Principal::Service(s) => Owner::Service { name: &s.name },
    };
    Arc::make_mut(&mut ident.scopes).union(&scopes::identify_scopes(&owner));
    db::tokens::touch(&state.db, found.id, db::now_micros()).await?;
    let model = match &principal {
        Principal::User(user) => {
            let servers = db::servers::list_for_user(&state.db, user.id).await?;
            user_model(&state, &ident, user, &servers, false).await?
        }
        Principal::Service(service) => service_model(&state, &ident, service).await?,
    };
    Ok(axum::Json(model).into_response())
}

async fn cookie_owner(
    state: &AppState,
    ident: &Identity,
    name: &str,
    value: &[u8],
) -> ApiResult<Response> {
    require_token(ident)?;
    tracing::warn!(by = %ident.name(), "/authorizations/cookie is deprecated since JupyterHub 2.0; use /hub/api/user with OAuth tokens");
    // Only the hub's own login cookie identifies anyone.
    let value = std::str::from_utf8(value).map_err(|_| not_found())?.trim();
    if name != session::LOGIN_COOKIE || value.is_empty() {
        return Err(not_found());
    }
    let mut headers = HeaderMap::new();
    let cookie = HeaderValue::from_str(&format!("{name}={value}")).map_err(|_| not_found())?;
    headers.insert(header::COOKIE, cookie);
    let (user, _) = crate::web::cookie_user(state, &headers)
        .await?
        .ok_or_else(not_found)?;
    let servers = db::servers::list_for_user(&state.db, user.id).await?;
    let model = user_model(state, ident, &user, &servers, false).await?;
    Ok(axum::Json(model).into_response())
}

async fn get_cookie_owner(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path((name, value)): Path<(String, String)>,
) -> ApiResult<Response> {
    cookie_owner(&state, &ident, &name, value.as_bytes()).await
}

/// The oldest form: the cookie's value in the request body.
async fn get_cookie_owner_in_body(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    cookie_owner(&state, &ident, &name, &body).await
}
