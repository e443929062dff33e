//! Announcements (docs/usage.md, "Announcements"):
//!
//! - `GET /announcements`: those in force, newest first (any signed-in user or token);
//! - `POST /announcements` `{"message": "…", "level": "warning", "system": "beta", "until":
//!   "RFC 3339"}` (all but `message` optional): sets one; scope `admin:announcements`;
//! - `DELETE /announcements/{id}`: deletes one (same scope).
//!
//! And outside the API, for JupyterLab: `/services/announcement/latest` ([`latest`]).

use axum::extract::{OriginalUri, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde_json::Value;

use super::{ApiIdentity, JsonBody};
use crate::announcements::{self, NewAnnouncement};
use crate::auth::scopes::Resource;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::web::query_param;

/// The scope that sets and deletes announcements.
pub const WRITE_SCOPE: &str = "admin:announcements";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/announcements", get(list).post(create))
        .route("/announcements/{id}", delete(remove))
}

/// The names of the hub's systems (`default` without `[[systems]]`), for [`announcements::validate`].
pub fn system_names(state: &AppState) -> Vec<String> {
    crate::api::systems::states(state)
        .into_iter()
        .map(|s| s.name)
        .collect()
}

/// A system's title for people (its name when it has none).
pub fn system_title(state: &AppState, name: &str) -> String {
    crate::api::systems::states(state)
        .into_iter()
        .find(|s| s.name == name)
        .map(|s| if s.title.is_empty() { s.name } else { s.title })
        .unwrap_or_else(|| name.to_owned())
}

/// `GET /announcements`.
async fn list(State(state): State<AppState>, ApiIdentity(_): ApiIdentity) -> Json<Value> {
    Json(Value::Array(
        state
            .announcements
            .active()
            .iter()
            .map(announcements::Announcement::model)
            .collect(),
    ))
}

/// Reads the body of `POST /announcements`: every field a string (`until` and the others
/// may be null), no other field.
fn read_body(state: &AppState, body: Value) -> ApiResult<NewAnnouncement> {
    let Value::Object(fields) = body else {
        return Err(ApiError::bad_request(
            "the body must be an object: {\"message\": \"…\", \"level\": \"info\", \"system\": null, \"until\": \"RFC 3339\"}",
        ));
    };
    const KNOWN: [&str; 4] = ["message", "level", "system", "until"];
    if let Some(other) = fields.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "{other}: unknown field (message, level, system and until are)"
        )));
    }
    let text = |name: &str| -> ApiResult<Option<&str>> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(ApiError::bad_request(format!("{name}: must be a string"))),
        }
    };
    let message = text("message")?.ok_or_else(|| ApiError::bad_request("message: is required"))?;
    announcements::validate(
        message,
        text("level")?,
        text("system")?,
        text("until")?,
        &system_names(state),
        time::OffsetDateTime::now_utc(),
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `POST /announcements`: 201 with the announcement.
async fn create(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    ident.require(WRITE_SCOPE, &Resource::Global)?;
    let new = read_body(&state, body)?;
    let stored = state
        .announcements
        .add(&state.db, new, ident.name())
        .await?;
    Ok((StatusCode::CREATED, Json(stored.model())).into_response())
}

/// `DELETE /announcements/{id}`: 204, or 404 when there is none.
async fn remove(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    ident.require(WRITE_SCOPE, &Resource::Global)?;
    let Ok(id) = id.parse::<i64>() else {
        return Err(ApiError::not_found(format!("No announcement {id}")));
    };
    if state.announcements.delete(&state.db, id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!("No announcement {id}")))
    }
}

/// `GET {base_url}services/announcement/latest[?system=NAME]`: the newest announcement in
/// force in jupyterhub-announcement's shape (`Announcements::latest_json`). Like that
/// service's `latest`, it needs no sign-in: its JupyterLab extensions fetch it from inside
/// JupyterLab with a plain `fetch`, which sends no hub credentials (the hub's login cookie
/// is only sent to `/hub/`), and what it tells is what every page shows, the login page
/// included. For the same reason it answers any origin (`Access-Control-Allow-Origin: *`,
/// which browsers never combine with credentials), as jupyterhub-announcement does with
/// `allow_origin`: a JupyterLab on another host of the site may ask too.
pub async fn latest(State(state): State<AppState>, uri: OriginalUri) -> Response {
    let system = query_param(uri.query(), "system").filter(|s| !s.is_empty());
    let body = state
        .announcements
        .latest_json(system.as_deref(), |name| system_title(&state, name));
    let mut r = Json(body).into_response();
    // Announcements change and expire: a cached answer would outlive them.
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    any_origin(r)
}

/// A browser's preflight of [`latest`] (a `fetch` with a `Content-Type` header, say).
pub async fn latest_preflight() -> Response {
    any_origin(StatusCode::NO_CONTENT.into_response())
}

fn any_origin(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("OPTIONS, GET"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type"),
    );
    r
}
