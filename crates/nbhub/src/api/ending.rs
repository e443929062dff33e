//! When a server's batch job ends: `/users/{name}/servers/{server}/ending` (and
//! `/users/{name}/server/ending` for the default server).
//!
//! - `GET`: the job's end time (the spawner's `end_time`, which follows `scontrol update
//!   TimeLimit=` within one poll), the hub's clock, when the job's end signal came, and the
//!   hub's home page. nbhub-jupyterlab's server extension asks it for the status bar.
//! - `POST`: the job script's trap on Slurm's `--signal=B:USR1@…` says the end is near; the
//!   home page shows a banner for the server from then on.
//!
//! Either is allowed with that server's own API token (the one the job got), and otherwise
//! needs `read:servers` (GET) or `admin:servers` (POST) on the server: no new scope, and the
//! server token's scopes stay JupyterHub's.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::{timestamp, ApiIdentity};
use crate::auth::scopes::Resource;
use crate::auth::Identity;
use crate::db;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::supervisor::{Phase, Slot};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/users/{name}/server/ending",
            get(get_default).post(post_default),
        )
        .route(
            "/users/{name}/servers/{server}/ending",
            get(get_named).post(post_named),
        )
}

/// The running (or starting) server's slot, if the caller may `scope` it or holds its token.
async fn slot_for(
    state: &AppState,
    ident: &Identity,
    name: &str,
    server: &str,
    scope: &str,
) -> ApiResult<std::sync::Arc<Slot>> {
    let own = |slot: &Slot| {
        ident.user().is_some_and(|u| u.name == name)
            && ident
                .token
                .as_ref()
                .is_some_and(|t| slot.token_id() == Some(t.id))
    };
    let user = db::users::get(&state.db, name).await?;
    let slot = user.and_then(|u| state.supervisor.existing_slot(u.id, server));
    match slot {
        Some(slot) if own(&slot) => Ok(slot),
        slot => {
            ident.require(scope, &Resource::Server { user: name, server })?;
            slot.filter(|s| !matches!(s.phase(), Phase::Stopped | Phase::Stopping))
                .ok_or_else(|| {
                    let which = if server.is_empty() {
                        format!("{name}'s server")
                    } else {
                        format!("{name}'s server '{server}'")
                    };
                    ApiError::not_found(format!("{which} is not running"))
                })
        }
    }
}

/// `t` in microseconds since the epoch (the database's timestamps).
pub(crate) fn micros(t: SystemTime) -> Option<i64> {
    t.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_micros()).ok())
}

async fn get_ending(
    state: AppState,
    ident: Identity,
    name: String,
    server: String,
) -> ApiResult<Response> {
    let slot = slot_for(&state, &ident, &name, &server, "read:servers").await?;
    let spawner = &state.supervisor.spawner;
    let facts = spawner
        .describe(&slot.spawner_state())
        .unwrap_or(Value::Null);
    Ok(axum::Json(json!({
        "job_id": facts.get("job_id").cloned().unwrap_or(Value::Null),
        "end_time": facts.get("end_time").cloned().unwrap_or(Value::Null),
        "now": timestamp(micros(SystemTime::now())),
        "signal_time": timestamp(slot.end_signal().and_then(micros)),
        "home_url": format!("{}home", state.hub_prefix()),
    }))
    .into_response())
}

async fn post_ending(
    state: AppState,
    ident: Identity,
    name: String,
    server: String,
) -> ApiResult<Response> {
    let slot = slot_for(&state, &ident, &name, &server, "admin:servers").await?;
    slot.set_end_signal(SystemTime::now());
    tracing::info!(user = %name, server = %server, "the server's job says its end is near");
    Ok(axum::Json(json!({
        "signal_time": timestamp(slot.end_signal().and_then(micros)),
    }))
    .into_response())
}

async fn get_default(
    State(s): State<AppState>,
    ApiIdentity(i): ApiIdentity,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    get_ending(s, i, name, String::new()).await
}

async fn get_named(
    State(s): State<AppState>,
    ApiIdentity(i): ApiIdentity,
    Path((name, server)): Path<(String, String)>,
) -> ApiResult<Response> {
    get_ending(s, i, name, server).await
}

async fn post_default(
    State(s): State<AppState>,
    ApiIdentity(i): ApiIdentity,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    post_ending(s, i, name, String::new()).await
}

async fn post_named(
    State(s): State<AppState>,
    ApiIdentity(i): ApiIdentity,
    Path((name, server)): Path<(String, String)>,
) -> ApiResult<Response> {
    post_ending(s, i, name, server).await
}
