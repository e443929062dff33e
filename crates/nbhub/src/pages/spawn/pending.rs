//! The pending page, `/hub/spawn-pending/<name>[/<server>]`: a starting server's progress
//! (the page follows `…/progress`), a stopping one, or why the last start failed (500).

use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use crate::error::ApiResult;
use crate::pages::render;
use crate::state::AppState;
use crate::supervisor::{server_prefix, Phase};
use crate::web::next_param;

use super::{hub, path_part, server_display, spawn_target};
use crate::names::form_encode;

pub(super) async fn pending(
    state: AppState,
    headers: HeaderMap,
    uri: OriginalUri,
    name: String,
    server: String,
) -> ApiResult<Response> {
    let target = spawn_target(
        &state,
        &headers,
        &uri,
        Some(&name),
        &server,
        &["servers", "read:servers"],
    );
    let (ident, user) = match target.await? {
        Ok(t) => t,
        Err(page) => return Ok(page),
    };
    let next = next_param(&state, &uri, &headers);
    let base = state.config.hub.base_url.as_str();
    let prefix = server_prefix(base, &user.name, &server);
    let slot = state.supervisor.slot(&user, &server);
    let spawn_url = format!(
        "{}spawn/{}{}{}",
        hub(&state),
        crate::names::url_escape(&user.name),
        path_part(&server),
        next.as_deref()
            .map(|n| format!("?next={}", form_encode(n)))
            .unwrap_or_default()
    );
    let ctx = |extra: Value| {
        let mut v =
            json!({"server_display": server_display(&user.name, &server), "spawn_url": spawn_url});
        if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
            m.extend(e);
        }
        v
    };
    match slot.phase() {
        Phase::Running => Ok(crate::found(next.as_deref().unwrap_or(&prefix))),
        Phase::Starting => {
            // The page's script adds the XSRF token that the event stream needs.
            let api = format!(
                "{base}hub/api/users/{}",
                crate::names::url_escape(&user.name)
            );
            let server_api = if server.is_empty() {
                format!("{api}/server")
            } else {
                format!("{api}/servers/{}", crate::names::url_escape(&server))
            };
            Ok(render(
                &state,
                &headers,
                "spawn_pending.html",
                ident.user(),
                ctx(json!({
                    "progress_url": format!("{server_api}/progress"),
                    "stop_url": server_api,
                    "next_url": next.as_deref().unwrap_or(&prefix),
                })),
            ))
        }
        Phase::Stopping => Ok(render(
            &state,
            &headers,
            "stop_pending.html",
            ident.user(),
            ctx(json!({})),
        )),
        Phase::Stopped => {
            if let Some(failed) = slot.failure() {
                let mut page = render(
                    &state,
                    &headers,
                    "not_running.html",
                    ident.user(),
                    ctx(json!({"failed": failed})),
                );
                *page.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                return Ok(page);
            }
            Ok(render(
                &state,
                &headers,
                "not_running.html",
                ident.user(),
                ctx(json!({"exit_reason": slot.exit_reason()})),
            ))
        }
    }
}

pub(super) async fn pending_default(
    State(s): State<AppState>,
    h: HeaderMap,
    u: OriginalUri,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    pending(s, h, u, name, String::new()).await
}
pub(super) async fn pending_named(
    State(s): State<AppState>,
    h: HeaderMap,
    u: OriginalUri,
    Path((name, server)): Path<(String, String)>,
) -> ApiResult<Response> {
    pending(s, h, u, name, server).await
}
