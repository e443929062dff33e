//! `/hub/error/<code>`, the proxy's `--error-target`: the page a visitor sees when the proxy
//! could not reach a server (503) or has no route (404).

use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;

use crate::state::AppState;

/// The proxy's `--error-target`: render the error for the code it passes.
pub(super) async fn error_target(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(code): Path<u16>,
    uri: OriginalUri,
) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let url = crate::web::query_param(uri.query(), "url").unwrap_or_default();
    let message = match code {
        503 => format!(
            "The server at {url} is not answering: it has stopped or is restarting. \
             Start it again from your home page."
        ),
        404 => format!("No page at {url}."),
        _ => String::new(),
    };
    let user = crate::web::cookie_user(&state, &headers)
        .await
        .ok()
        .flatten()
        .map(|(u, _)| u);
    // The proxy fetches this page itself, without the visitor's cookies, so `user` is
    // usually unknown although the visitor is signed in: the next step is the home page
    // (which asks to sign in when needed), never a "Sign in" button.
    crate::pages::error_page_with(
        &state,
        &headers,
        status,
        &message,
        user.as_ref(),
        json!({"home_button": true}),
    )
}
