//! The URL dance of docs/wire.md#user-urls, one file per page under `spawn/`:
//! `user_redirect.rs` (`/hub/user/<name>/…`: redirect to a running server, 424 for a stopped
//! one; `/hub/user-redirect/…`), `form.rs` (`/hub/spawn…`, and `/hub/relaunch…`: a past
//! session's options again), `pending.rs`
//! (`/hub/spawn-pending/…`) and `error_target.rs` (the proxy's error target `/hub/error/<code>`).
//! This file holds their routes and what they share: who may see which server, and URL parts.

mod error_target;
mod form;
mod pending;
mod user_redirect;

use axum::extract::OriginalUri;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::error_page;
use crate::auth::scopes::Resource;
use crate::auth::{self, Identity};
use crate::db::{self, users::User};
use crate::error::ApiResult;
use crate::state::AppState;
use crate::web::login_redirect;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/user/{name}", get(user_redirect::user_redirect_bare))
        .route(
            "/user/{name}/",
            get(user_redirect::user_redirect_root).post(user_redirect::user_redirect_root),
        )
        .route(
            "/user/{name}/{*path}",
            axum::routing::any(user_redirect::user_redirect),
        )
        .route(
            "/user-redirect/{*path}",
            get(user_redirect::user_redirect_self),
        )
        .route("/spawn", get(form::spawn_self).post(form::spawn_self_post))
        .route(
            "/spawn/{name}",
            get(form::spawn_user).post(form::spawn_user_post),
        )
        .route(
            "/spawn/{name}/{server}",
            get(form::spawn_named).post(form::spawn_named_post),
        )
        .route(
            "/relaunch/{name}",
            axum::routing::post(form::relaunch_default),
        )
        .route(
            "/relaunch/{name}/{server}",
            axum::routing::post(form::relaunch_named),
        )
        .route("/spawn-pending/{name}", get(pending::pending_default))
        .route(
            "/spawn-pending/{name}/{server}",
            get(pending::pending_named),
        )
        .route("/error/{code}", get(error_target::error_target))
}

/// The same answer for a server one may not see and one that does not exist.
fn no_access(state: &AppState, headers: &HeaderMap, ident: &Identity) -> Response {
    error_page(
        state,
        headers,
        StatusCode::NOT_FOUND,
        "No access to this server, or it does not exist.",
        ident.user(),
    )
}

/// The caller of a page: the login cookie, or (for API clients following redirects) a token.
async fn page_identity(state: &AppState, headers: &HeaderMap) -> ApiResult<Option<Identity>> {
    if let Some(token) = auth::token_from_headers(headers) {
        return auth::identity_for_token(&state.authz, token).await;
    }
    match crate::web::cookie_user(state, headers).await? {
        Some((user, session)) => Ok(Some(
            auth::identity_for_user(&state.authz, user, session).await?,
        )),
        None => Ok(None),
    }
}

fn hub(state: &AppState) -> String {
    state.hub_prefix()
}

fn path_part(server: &str) -> String {
    if server.is_empty() {
        String::new()
    } else {
        format!("/{}", crate::names::url_escape(server))
    }
}

fn server_display(user: &str, server: &str) -> String {
    if server.is_empty() {
        format!("{user}'s server")
    } else {
        format!("{user}'s server {server}")
    }
}

/// Checks login and permission on `name`'s `server` (one of `scopes`); Err is the page to
/// show. The scope is checked before the user is looked up, so that a server one may not touch
/// and a user who does not exist get the same answer.
async fn spawn_target(
    state: &AppState,
    headers: &HeaderMap,
    uri: &OriginalUri,
    name: Option<&str>,
    server: &str,
    scopes: &[&str],
) -> ApiResult<Result<(Identity, User), Response>> {
    let Some((me, session)) = crate::web::cookie_user(state, headers).await? else {
        return Ok(Err(login_redirect(state, uri)));
    };
    let ident = auth::identity_for_user(&state.authz, me.clone(), session).await?;
    let name = name.unwrap_or(&me.name).to_string();
    let res = Resource::Server {
        user: &name,
        server,
    };
    if !scopes.iter().any(|s| ident.allows(s, &res)) {
        return Ok(Err(no_access(state, headers, &ident)));
    }
    let target = if name == me.name {
        me
    } else {
        match db::users::get(&state.db, &name).await? {
            Some(u) => u,
            None => return Ok(Err(no_access(state, headers, &ident))),
        }
    };
    Ok(Ok((ident, target)))
}
