//! nbhub's own endpoints for the systems servers run on (docs/api.md, docs/maintenance.md):
//!
//! - `GET /systems`: every system with its title, description, health as the spawner sees it,
//!   and the maintenance notice in force (any signed-in user or token may read it);
//! - `PUT /systems/{name}/maintenance` `{"message": "…", "until": "RFC 3339"}`: sets an
//!   admin's notice (scope `admin:servers`: whoever may start and stop everyone's servers may
//!   close a system to starts);
//! - `DELETE /systems/{name}/maintenance`: clears it (same scope).
//!
//! A hub without `[[systems]]` has one system, `default`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{ApiIdentity, JsonBody};
use crate::auth::scopes::Resource;
use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::maintenance::{self, SystemState};
use crate::state::AppState;

/// The scope that sets and clears notices.
pub const WRITE_SCOPE: &str = "admin:servers";

pub fn routes() -> Router<AppState> {
    Router::new().route("/systems", get(list)).route(
        "/systems/{name}/maintenance",
        put(set_notice).delete(clear_notice),
    )
}

/// Every system's state, as the API and the pages show it.
pub fn states(state: &AppState) -> Vec<SystemState> {
    maintenance::states(&state.supervisor.maintenance, &*state.supervisor.spawner)
}

fn model(s: &SystemState) -> Value {
    json!({
        "name": s.name,
        "title": s.title,
        "description": s.description,
        "health": s.health,
        "maintenance": s.maintenance,
    })
}

/// `GET /systems`.
async fn list(State(state): State<AppState>, ApiIdentity(_): ApiIdentity) -> Json<Value> {
    Json(Value::Array(states(&state).iter().map(model).collect()))
}

fn require_writer(ident: &Identity) -> ApiResult<()> {
    if ident.allows(WRITE_SCOPE, &Resource::Global) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "Action is not authorized with current scopes; requires any of [{WRITE_SCOPE}]"
        )))
    }
}

/// The system named in the URL, or 404.
fn known(state: &AppState, name: &str) -> ApiResult<()> {
    if states(state).iter().any(|s| s.name == name) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("No such system: {name}")))
    }
}

/// `PUT /systems/{name}/maintenance`.
async fn set_notice(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    require_writer(&ident)?;
    known(&state, &name)?;
    let Value::Object(fields) = body else {
        return Err(ApiError::bad_request(
            "the body must be an object: {\"message\": \"…\", \"until\": \"RFC 3339\"}",
        ));
    };
    if let Some(other) = fields.keys().find(|k| *k != "message" && *k != "until") {
        return Err(ApiError::bad_request(format!(
            "{other}: unknown field (message and until are)"
        )));
    }
    let message = match fields.get("message") {
        Some(Value::String(m)) => m.as_str(),
        Some(_) => return Err(ApiError::bad_request("message: must be a string")),
        None => return Err(ApiError::bad_request("message: is required")),
    };
    let until = match fields.get("until") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => Some(u.as_str()),
        Some(_) => {
            return Err(ApiError::bad_request(
                "until: must be a time in RFC 3339 (a string) or null",
            ))
        }
    };
    let (message, until) =
        maintenance::validate_notice(message, until, time::OffsetDateTime::now_utc())
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    state
        .supervisor
        .maintenance
        .set(&state.db, &name, message, until, ident.name())
        .await?;
    let now = states(&state);
    let system = now.iter().find(|s| s.name == name).map(model);
    Ok(Json(system.unwrap_or(Value::Null)).into_response())
}

/// `DELETE /systems/{name}/maintenance`.
async fn clear_notice(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    require_writer(&ident)?;
    known(&state, &name)?;
    state.supervisor.maintenance.clear(&state.db, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
