//! `/proxy`: the hub's view of the proxy's routing table, and a forced route check.

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::{ApiIdentity, Page};
use crate::auth::scopes::Resource;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/proxy", get(get_routes).post(check_routes))
}

async fn get_routes(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    headers: HeaderMap,
    uri: OriginalUri,
) -> ApiResult<Response> {
    ident.require("proxy", &Resource::Global)?;
    let page = Page::from_request(&state, &headers, uri.query())?;
    let routes = state
        .supervisor
        .proxy
        .client
        .get_routes()
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("The proxy does not answer: {e}"),
            )
        })?;
    let mut all: Vec<(String, Value)> = routes
        .into_iter()
        .map(|(path, r)| {
            let mut data = r.data.clone();
            data.remove("jupyterhub");
            let spec = if path.ends_with('/') {
                path.clone()
            } else {
                format!("{path}/")
            };
            (
                spec.clone(),
                json!({"routespec": spec, "target": r.target, "data": data}),
            )
        })
        .collect();
    let total = all.len() as i64;
    let start = (page.offset as usize).min(all.len());
    let end = (start + page.limit as usize).min(all.len());
    let window: Vec<(String, Value)> = all.drain(start..end).collect();
    if page.envelope {
        let items = window.into_iter().map(|(_, v)| v).collect();
        return Ok(page.respond(items, total, &headers, &uri));
    }
    let map: serde_json::Map<String, Value> = window.into_iter().collect();
    Ok(axum::Json(Value::Object(map)).into_response())
}

async fn check_routes(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
) -> ApiResult<Response> {
    ident.require("proxy", &Resource::Global)?;
    state
        .supervisor
        .sync_routes()
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("Route check failed: {e}")))?;
    Ok(StatusCode::OK.into_response())
}
