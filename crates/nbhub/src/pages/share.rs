//! `/hub/accept-share?code=…`: a signed-in user sees what a share code grants and accepts it
//! (a form POST with the XSRF token), which shares the server with them; then they are sent
//! to the server's URL.

use std::collections::HashMap;

use axum::extract::{OriginalUri, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Form, Router};
use serde_json::json;

use super::{error_page, render};
use crate::db::shares;
use crate::error::ApiResult;
use crate::state::AppState;
use crate::supervisor::{server_prefix, Phase};
use crate::web::{cookie_user, login_redirect, xsrf_ok};

pub fn routes() -> Router<AppState> {
    Router::new().route("/accept-share", get(show_share).post(accept_share))
}

async fn show_share(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let Some((user, _)) = cookie_user(&state, &headers).await? else {
        return Ok(login_redirect(&state, &uri));
    };
    let code = q.get("code").map_or("", String::as_str);
    let Some(found) = shares::find_code(&state.db, code, None).await? else {
        return Ok(error_page(
            &state,
            &headers,
            StatusCode::NOT_FOUND,
            "Share not found or expired",
            Some(&user),
        ));
    };
    if found.owner_id == user.id {
        return Ok(error_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            "You can't share with yourself!",
            Some(&user),
        ));
    }
    let base = state.config.hub.base_url.as_str();
    Ok(render(
        &state,
        &headers,
        "accept-share.html",
        Some(&user),
        json!({
            "owner": found.owner,
            "server_url": server_prefix(base, &found.owner, &found.server_name),
            "ready": state.supervisor.phase_of(found.owner_id, &found.server_name) == Phase::Running,
            "scopes": shares::filtered_scopes(&found.scopes, &found.owner, &found.server_name),
            "action": format!("{}accept-share", state.hub_prefix()),
            "code": code,
        }),
    ))
}

async fn accept_share(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> ApiResult<Response> {
    let Some((user, _)) = cookie_user(&state, &headers).await? else {
        return Ok(error_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            "Sign in to accept a sharing invitation",
            None,
        ));
    };
    if !xsrf_ok(
        &state,
        &headers,
        Some(&user),
        form.get("_xsrf").map(String::as_str),
    ) {
        return Ok(error_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            "'_xsrf' argument missing from POST, or it does not match the cookie. Reload the page and try again.",
            Some(&user),
        ));
    }
    let code = form.get("code").map_or("", String::as_str);
    let invalid =
        |msg: &str| error_page(&state, &headers, StatusCode::BAD_REQUEST, msg, Some(&user));
    match shares::find_code(&state.db, code, None).await? {
        None => return Ok(invalid("Invalid share code: it is unknown or has expired")),
        Some(found) if found.owner_id == user.id => {
            return Ok(invalid("You can't share with yourself!"))
        }
        Some(_) => {}
    }
    let found = crate::auth::share::accept_code(&state.db, &user, code).await?;
    let base = state.config.hub.base_url.as_str();
    Ok(crate::found(&server_prefix(
        base,
        &found.owner,
        &found.server_name,
    )))
}
