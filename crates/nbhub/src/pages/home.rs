//! `/hub/home`: the user's default server (Start / Stop / My Server) and named servers, with
//! what the spawner tells about each (for Slurm: job, partition, nodes, time left).

use axum::extract::{OriginalUri, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::{page_user, render};
use crate::db::{self, servers::ServerRow, users::User};
use crate::error::ApiResult;
use crate::names::url_escape;
use crate::state::AppState;
use crate::supervisor::{server_prefix, EndReason, Phase, SessionView};

pub fn routes() -> Router<AppState> {
    Router::new().route("/home", get(home))
}

/// A server's phase as a CSS class and a label.
pub fn status_of(phase: Phase) -> (&'static str, &'static str) {
    match phase {
        Phase::Running => ("running", "Running"),
        Phase::Starting => ("starting", "Starting"),
        Phase::Stopping => ("stopping", "Stopping"),
        Phase::Stopped => ("stopped", "Stopped"),
    }
}

/// What the pages show of one server: the REST model plus status and the links to act on it.
pub fn server_view(state: &AppState, user: &User, row: Option<&ServerRow>, name: &str) -> Value {
    let hub = state.hub_prefix();
    let slot = state.supervisor.existing_slot(user.id, name);
    let phase = slot.as_ref().map_or(Phase::Stopped, |s| s.phase());
    // Why it stopped by itself (a time limit, a cancelled job), known for this hub run, and
    // its last lines then (secrets masked by the spawner).
    let (exit_reason, exit_log) = match slot.filter(|_| phase == Phase::Stopped) {
        Some(s) => (s.exit_reason(), s.exit_log()),
        None => (None, None),
    };
    let mut model = match row {
        Some(r) => crate::api::users::server_model(state, &user.name, r, false),
        None => json!({"name": name, "last_activity": null, "user_options": {}}),
    };
    let segment = if name.is_empty() {
        String::new()
    } else {
        format!("/{}", url_escape(name))
    };
    let url = server_prefix(state.config.hub.base_url.as_str(), &user.name, name);
    let facts = model
        .get(state.supervisor.spawner.kind())
        .filter(|f| f.is_object())
        .cloned()
        .unwrap_or(Value::Null);
    // A start whose job waits in a batch queue is "Pending", with the spawner's why and when.
    let (status, label) = match facts.get("pending").and_then(Value::as_str) {
        Some(_) if phase == Phase::Starting => ("pending", "Pending"),
        _ => status_of(phase),
    };
    if let Value::Object(m) = &mut model {
        m.insert("status".into(), json!(status));
        m.insert("status_label".into(), json!(label));
        m.insert("active".into(), json!(phase != Phase::Stopped));
        m.insert("ready".into(), json!(phase == Phase::Running));
        m.insert("url".into(), json!(url));
        m.insert("open_url".into(), json!(url));
        m.insert(
            "spawn_url".into(),
            json!(format!("{hub}spawn/{}{segment}", url_escape(&user.name))),
        );
        m.insert("allocation".into(), json!(allocation_text(&facts)));
        m.insert("facts".into(), facts);
        m.insert("exit_reason".into(), json!(exit_reason));
        m.insert("exit_log".into(), json!(exit_log));
    }
    model
}

/// A batch job's allocation in one line, "2 CPUs, 512M per node, 1 GPU per node" (home.js
/// writes the same as the page refreshes); `""` when the spawner says nothing of it.
fn allocation_text(facts: &Value) -> String {
    let plural = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let mut parts = Vec::new();
    if let Some(n) = facts["cpus"].as_u64().filter(|n| *n > 0) {
        parts.push(plural(n, "CPU"));
    }
    if let Some(m) = facts["memory_per_node"].as_str() {
        parts.push(format!("{m} per node"));
    }
    if let Some(n) = facts["gpus_per_node"].as_u64().filter(|n| *n > 0) {
        parts.push(format!("{} per node", plural(n, "GPU")));
    }
    parts.join(", ")
}

async fn home(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
) -> ApiResult<Response> {
    let (user, _) = match page_user(&state, &headers, &uri).await? {
        Ok(u) => u,
        Err(redirect) => return Ok(redirect),
    };
    let rows = db::servers::list_for_user(&state.db, user.id).await?;
    let default_row = rows.iter().find(|r| r.name.is_empty());
    let closed = super::system_status(&state);
    let mut default_server = server_view(&state, &user, default_row, "");
    note_closed_system(&state, &closed, &mut default_server);
    let mut named: Vec<Value> = rows
        .iter()
        .filter(|r| !r.name.is_empty())
        .map(|r| {
            let mut view = server_view(&state, &user, Some(r), &r.name);
            note_closed_system(&state, &closed, &mut view);
            view
        })
        .collect();
    let mut views: Vec<(Option<i64>, &mut Value)> =
        vec![(default_row.map(|r| r.id), &mut default_server)];
    let named_ids = rows
        .iter()
        .filter(|r| !r.name.is_empty())
        .map(|r| Some(r.id));
    views.extend(named_ids.zip(named.iter_mut()));
    add_history(&state, &user, &rows, &mut views).await?;
    let hub = &state.config.hub;
    Ok(render(
        &state,
        &headers,
        "home.html",
        Some(&user),
        json!({
            "default_server": default_server,
            "named_servers": named,
            "allow_named_servers": hub.allow_named_servers,
            "named_server_limit_per_user": hub.named_server_limit_per_user,
            "spawner_kind": state.supervisor.spawner.kind(),
            "url": default_server["spawn_url"],
            "closed_systems": closed,
        }),
    ))
}

/// Beside a server, why its system takes no new servers now (`system_note`), if it does not:
/// the server's system is its `user_options.system`, or the only one.
fn note_closed_system(state: &AppState, closed: &Value, view: &mut Value) {
    let options = view["user_options"]
        .as_object()
        .cloned()
        .map(nbhub_spawner::ValidatedOptions)
        .unwrap_or_default();
    let system = crate::maintenance::system_for(&*state.supervisor.spawner, &options);
    let note = closed
        .as_array()
        .and_then(|l| l.iter().find(|s| s["name"] == system.as_str()))
        .map(|s| s["message"].clone());
    if let (Some(note), Value::Object(m)) = (note, view) {
        m.insert("system_note".into(), note);
    }
}

/// Each server's recent sessions (`history`, newest first: when, how it ended, its job and
/// options) with Relaunch (a POST to `relaunch/…` with the session's id) and Edit (the form,
/// filled in with its options), and `last_session`: the last one, when the server is stopped
/// now and that session ended (the page says how, and offers Relaunch beside it).
async fn add_history(
    state: &AppState,
    user: &User,
    rows: &[ServerRow],
    views: &mut [(Option<i64>, &mut Value)],
) -> ApiResult<()> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let sessions = db::server_sessions::list_for_servers(&state.db, &ids).await?;
    let hub = state.hub_prefix();
    for (id, view) in views.iter_mut() {
        let Some(id) = *id else { continue };
        let name = view["name"].as_str().unwrap_or_default().to_owned();
        let segment = if name.is_empty() {
            String::new()
        } else {
            format!("/{}", url_escape(&name))
        };
        let user_part = url_escape(&user.name);
        let relaunch_url = format!("{hub}relaunch/{user_part}{segment}");
        let spawn_url = format!("{hub}spawn/{user_part}{segment}");
        let history: Vec<Value> = sessions
            .iter()
            .filter(|s| s.server_id == id)
            .map(|row| {
                let s = SessionView::of(row);
                let said = s.end_reason().map(EndReason::describe);
                json!({
                    "id": s.id,
                    "started": s.started,
                    "ended": s.ended,
                    "reason": s.reason,
                    "said": said,
                    "message": s.message,
                    "job_id": s.job_id,
                    "system": s.system,
                    "options": options_summary(&s.user_options),
                    "edit_url": format!("{spawn_url}?session={}", s.id),
                })
            })
            .collect();
        let stopped = view["status"] == "stopped";
        let last = history
            .first()
            .filter(|s| stopped && !s["ended"].is_null())
            .cloned();
        if let Value::Object(m) = &mut **view {
            m.insert("relaunch_url".into(), json!(relaunch_url));
            m.insert("last_session".into(), last.unwrap_or(Value::Null));
            m.insert("history".into(), json!(history));
        }
    }
    Ok(())
}

/// A session's options in one line: `partition devel · runtime 00:01 · …`.
fn options_summary(options: &Value) -> String {
    option_values(options)
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// Each option a server was started with and its value as text (lists joined, other values
/// as JSON), for the home and admin pages.
pub(super) fn option_values(options: &Value) -> impl Iterator<Item = (&String, String)> {
    options.as_object().into_iter().flatten().map(|(k, v)| {
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(", "),
            other => other.to_string(),
        };
        (k, v)
    })
}
