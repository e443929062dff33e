//! `/hub/accept-share?code=…`: a signed-in user sees what a share code grants and accepts it
//! (a form POST with the XSRF token), which shares the server with them; then they are sent
//! to `next` (a local path only, as JupyterHub's `next`: a link may open a notebook on the
//! shared server) or else to the server's URL.

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
use crate::web::{cookie_user, login_redirect, request_host, safe_next, xsrf_ok};

/// Where the browser goes once the invitation is accepted: the `next` it came with when that
/// is a local path (JupyterHub 5.5.1's GHSA-c4gm-pwx9-9w8j was this URL written unescaped into
/// the page: it is only ever rendered through the template's escaping), else the server.
fn next_after_accept(
    state: &AppState,
    headers: &HeaderMap,
    next: Option<&String>,
    server_url: String,
) -> String {
    next.and_then(|n| {
        safe_next(
            n,
            request_host(headers).as_deref(),
            state.config.hub.base_url.as_str(),
        )
    })
    .unwrap_or(server_url)
}

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
    let server_url = server_prefix(base, &found.owner, &found.server_name);
    let next = next_after_accept(&state, &headers, q.get("next"), server_url.clone());
    Ok(render(
        &state,
        &headers,
        "accept-share.html",
        Some(&user),
        json!({
            "owner": found.owner,
            "server_url": server_url,
            "next_url": next,
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
    let server_url = server_prefix(base, &found.owner, &found.server_name);
    Ok(crate::found(&next_after_accept(
        &state,
        &headers,
        form.get("next"),
        server_url,
    )))
}
