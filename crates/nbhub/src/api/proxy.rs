//! `/proxy`: the hub's view of the proxy's routing table, a forced route check, and `PATCH`
//! to point the hub at another proxy (`{"api_url", "auth_token"}`).

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::{ApiIdentity, JsonBody, Page};
use crate::auth::scopes::Resource;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/proxy",
        get(get_routes).post(check_routes).patch(repoint_proxy),
    )
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
    sync_now(&state).await
}

/// Points the hub at a new proxy (as JupyterHub: `api_url` and/or `auth_token`; other keys of
/// the old spec such as `ip`/`port` are ignored), then syncs its routes. The new proxy must
/// answer with the new token first: a hub is never left pointing at a proxy it cannot use.
async fn repoint_proxy(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    ident.require("proxy", &Resource::Global)?;
    let Value::Object(fields) = body else {
        return Err(ApiError::bad_request(
            "Request body must be a JSON object: {\"api_url\": ..., \"auth_token\": ...}",
        ));
    };
    let text = |key: &str| -> ApiResult<Option<String>> {
        match fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(v)) => Ok(Some(v.clone())),
            Some(_) => Err(ApiError::bad_request(format!("{key} must be a string"))),
        }
    };
    let client = &state.supervisor.proxy.client;
    let api_url = match text("api_url")? {
        None => client.api(),
        Some(u) => crate::config::HttpUrl::parse(&u)
            .map_err(|e| ApiError::bad_request(format!("api_url: {e}")))?
            .origin(),
    };
    let token = text("auth_token")?.unwrap_or_else(|| client.token());
    let candidate = crate::proxy::ProxyClient::new(&api_url, &token);
    if let Err(e) = candidate.get_routes().await {
        return Err(ApiError::bad_request(format!(
            "The proxy at {api_url} cannot be used with this token ({e}); the hub keeps its proxy"
        )));
    }
    client.repoint(&api_url, &token);
    tracing::info!(by = %ident.name(), %api_url, "the hub now uses another proxy");
    sync_now(&state).await
}

async fn sync_now(state: &AppState) -> ApiResult<Response> {
    state
        .supervisor
        .sync_routes()
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("Route check failed: {e}")))?;
    Ok(StatusCode::OK.into_response())
}
