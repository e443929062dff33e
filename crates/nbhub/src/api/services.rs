//! `/services`: the services defined in the config.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};

use super::ApiIdentity;
use crate::auth::scopes::Resource;
use crate::auth::{self, Identity};
use crate::db::{self, services::Service};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/services", get(list_services))
        .route("/services/{name}", get(get_service))
}

pub async fn service_model(state: &AppState, ident: &Identity, s: &Service) -> ApiResult<Value> {
    let res = Resource::Service(&s.name);
    if !ident.allows("read:services", &res) {
        return Ok(json!({"kind": "service", "name": s.name}));
    }
    let prefix = format!("{}services/{}/", state.config.hub.base_url.as_str(), s.name);
    let mut m = json!({
        "kind": "service",
        "name": s.name,
        "admin": s.admin,
        "url": s.url,
        "prefix": if s.url.is_empty() { Value::String(String::new()) } else { Value::String(prefix) },
        "command": [],
        "pid": 0,
        "info": s.info,
        "display": s.display,
    });
    if ident.allows("read:roles:services", &res) {
        m["roles"] = json!(auth::service_role_names(&state.authz, s).await?);
    }
    Ok(m)
}

async fn list_services(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
) -> ApiResult<Response> {
    if !ident.scopes.has_any("list:services") {
        ident.require("list:services", &Resource::Global)?;
    }
    let mut out = Map::new();
    for s in db::services::list(&state.db).await? {
        if ident.allows("list:services", &Resource::Service(&s.name)) {
            out.insert(s.name.clone(), service_model(&state, &ident, &s).await?);
        }
    }
    Ok(axum::Json(Value::Object(out)).into_response())
}

async fn get_service(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    ident.require_any(
        &["read:services", "read:services:name"],
        &Resource::Service(&name),
    )?;
    let s = db::services::get(&state.db, &name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No such service: {name}")))?;
    Ok(axum::Json(service_model(&state, &ident, &s).await?).into_response())
}
