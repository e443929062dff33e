//! `/hub/user/<name>/…` (docs/wire.md#user-urls): a request that reached the hub because the
//! proxy has no route for it — redirect to a running or starting server, to the pending page
//! after a failed start, else 424 with a link to start it — and `/hub/user-redirect/…`, the
//! same path under the signed-in user's own server.

use std::time::Duration;

use axum::extract::{OriginalUri, Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::scopes::Resource;
use crate::db::{self};
use crate::error::ApiResult;
use crate::names::url_escape;
use crate::pages::{error_page, login_redirect, render};
use crate::state::AppState;
use crate::supervisor::{server_prefix, Phase};

use super::{hub, no_access, page_identity, path_part, server_display};
use crate::names::form_encode;

pub(super) async fn user_redirect_bare(uri: OriginalUri) -> Response {
    crate::found(&format!("{}/", uri.path()))
}

pub(super) async fn user_redirect_root(
    State(state): State<AppState>,
    headers: HeaderMap,
    method: Method,
    uri: OriginalUri,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    to_server(state, headers, method, uri, name, String::new()).await
}

pub(super) async fn user_redirect(
    State(state): State<AppState>,
    headers: HeaderMap,
    method: Method,
    uri: OriginalUri,
    Path((name, path)): Path<(String, String)>,
) -> ApiResult<Response> {
    to_server(state, headers, method, uri, name, path).await
}

/// Does the client want JSON rather than a page (JupyterLab's API calls)?
fn wants_json(headers: &HeaderMap, method: &Method, path: &str) -> bool {
    if method != Method::GET || path.split('/').any(|seg| seg == "api") {
        return true;
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let json_at = accept.find("application/json");
    let html_at = accept.find("text/html");
    match (json_at, html_at) {
        (Some(j), Some(h)) => j < h,
        (Some(_), None) => true,
        _ => false,
    }
}

/// `/hub/user/<name>/<path>`: a request that reached the hub because the proxy had no route.
pub(super) async fn to_server(
    state: AppState,
    headers: HeaderMap,
    method: Method,
    uri: OriginalUri,
    name: String,
    path: String,
) -> ApiResult<Response> {
    let Some(ident) = page_identity(&state, &headers).await? else {
        return Ok(login_redirect(&state, &uri));
    };
    let base = state.config.hub.base_url.as_str();
    // The same answer as for a server one may not access: who exists is not told.
    let Some(user) = db::users::get(&state.db, &name).await? else {
        return Ok(no_access(&state, &headers, &ident));
    };
    // The rest of the path as the client sent it, still escaped (`%3F` must stay `%3F`).
    let raw_rest = uri
        .path()
        .strip_prefix(&format!("{}user/", hub(&state)))
        .and_then(|r| r.split_once('/'))
        .map_or("", |(_, rest)| rest);
    // A first path segment naming one of the user's named servers selects it.
    let mut server = String::new();
    let mut rest = raw_rest.to_string();
    if state.config.hub.allow_named_servers {
        let first = path.split('/').next().unwrap_or("");
        if !first.is_empty() && db::servers::get(&state.db, user.id, first).await?.is_some() {
            server = first.to_string();
            rest = raw_rest.split_once('/').map_or("", |(_, r)| r).to_string();
        }
    }
    let ename = url_escape(&name);
    if !ident.allows(
        "access:servers",
        &Resource::Server {
            user: &name,
            server: &server,
        },
    ) {
        return Ok(no_access(&state, &headers, &ident));
    }
    let prefix = server_prefix(base, &name, &server);
    let slot = state.supervisor.slot(&user, &server);
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    match slot.phase() {
        Phase::Running => {
            let redirects: u64 = query
                .iter()
                .find(|(k, _)| k == "redirects")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            if redirects >= 4 {
                return Ok(error_page(
                    &state,
                    &headers,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Redirect loop detected.",
                    ident.user(),
                ));
            }
            if redirects > 0 {
                // The proxy may not have the route yet; give it a moment, longer each time.
                tokio::time::sleep(Duration::from_secs((1u64 << redirects).min(10))).await;
            }
            let mut pairs: Vec<(String, String)> = query
                .into_iter()
                .filter(|(k, _)| k != "redirects")
                .collect();
            pairs.push(("redirects".into(), (redirects + 1).to_string()));
            let q = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish();
            Ok(crate::found(&format!("{prefix}{rest}?{q}")))
        }
        Phase::Starting => {
            let target = format!(
                "{}spawn-pending/{ename}{}?next={}",
                hub(&state),
                path_part(&server),
                form_encode(uri.path_and_query().map_or("", |p| p.as_str()))
            );
            Ok(crate::redirect(StatusCode::SEE_OTHER, &target))
        }
        _ if slot.failure().is_some() && !wants_json(&headers, &method, &path) => {
            let target = format!(
                "{}spawn-pending/{ename}{}?next={}",
                hub(&state),
                path_part(&server),
                form_encode(uri.path_and_query().map_or("", |p| p.as_str()))
            );
            Ok(crate::redirect(StatusCode::SEE_OTHER, &target))
        }
        _ => {
            let spawn_url = format!(
                "{}spawn/{ename}{}?next={}",
                hub(&state),
                path_part(&server),
                form_encode(uri.path_and_query().map_or("", |p| p.as_str()))
            );
            if wants_json(&headers, &method, &path) {
                let origin = crate::web::public_origin(&headers);
                let message = format!(
                    "JupyterHub server no longer running at {}. Restart the server at {origin}{}spawn/{ename}{}",
                    uri.path(),
                    hub(&state),
                    path_part(&server)
                );
                return Ok((
                    StatusCode::FAILED_DEPENDENCY,
                    axum::Json(json!({"status": 424, "message": message})),
                )
                    .into_response());
            }
            let mut page = render(
                &state,
                &headers,
                "not_running.html",
                ident.user(),
                json!({"server_display": server_display(&name, &server), "spawn_url": spawn_url, "exit_reason": slot.exit_reason(), "stopping": slot.phase() == Phase::Stopping}),
            );
            *page.status_mut() = StatusCode::FAILED_DEPENDENCY;
            Ok(page)
        }
    }
}

pub(super) async fn user_redirect_self(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    Path(path): Path<String>,
) -> ApiResult<Response> {
    let Some((user, _)) = crate::web::cookie_user(&state, &headers).await? else {
        return Ok(login_redirect(&state, &uri));
    };
    // The path as sent, still escaped, not the decoded `path`.
    let raw = uri
        .path()
        .strip_prefix(&format!("{}user-redirect/", hub(&state)))
        .unwrap_or(&path);
    let mut next = format!(
        "{}{raw}",
        server_prefix(state.config.hub.base_url.as_str(), &user.name, "")
    );
    if let Some(q) = uri.query() {
        next.push('?');
        next.push_str(q);
    }
    Ok(crate::found(&format!(
        "{}spawn/{}?next={}",
        hub(&state),
        url_escape(&user.name),
        form_encode(&next)
    )))
}
