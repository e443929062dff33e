//! `GET /hub/metrics`: the registry's histograms and the gauges counted now (users, running
//! servers, the spawn queue, the spawner's own), in the Prometheus text format.
//!
//! Access: a token or login with the `read:metrics` scope, or anyone when `[hub]
//! authenticate_prometheus = false`.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::api::ApiIdentity;
use crate::auth::scopes::Resource;
use crate::error::ApiResult;
use crate::metrics;
use crate::state::AppState;

/// `GET /hub/metrics`.
pub async fn get_metrics(State(state): State<AppState>, request: Request) -> ApiResult<Response> {
    if state.config.hub.authenticate_prometheus {
        let (mut parts, _) = request.into_parts();
        let ApiIdentity(ident) = ApiIdentity::from_request_parts(&mut parts, &state).await?;
        ident.require("read:metrics", &Resource::Global)?;
    }
    let total_users = crate::db::users::count(&state.db).await?;
    let mut active = Vec::new();
    for (period, secs) in [("24h", 86_400), ("7d", 7 * 86_400), ("30d", 30 * 86_400)] {
        active.push((
            period,
            crate::db::users::count_active_since(&state.db, secs).await?,
        ));
    }
    let mut out = String::with_capacity(16 * 1024);
    state.metrics.render(&mut out);
    metrics::gauge(
        &mut out,
        "jupyterhub_running_servers",
        "The number of user servers currently running",
        &[("", state.supervisor.running_count() as i64)],
    );
    metrics::gauge(
        &mut out,
        "jupyterhub_total_users",
        "Total number of users",
        &[("", total_users)],
    );
    let active_labels: Vec<(String, i64)> = active
        .iter()
        .map(|(p, n)| (format!("period=\"{p}\""), *n))
        .collect();
    let active_refs: Vec<(&str, i64)> = active_labels
        .iter()
        .map(|(l, n)| (l.as_str(), *n))
        .collect();
    metrics::gauge(
        &mut out,
        "jupyterhub_active_users",
        "Number of users who were active in the given time period",
        &active_refs,
    );
    metrics::gauge(
        &mut out,
        "nbhub_spawns_pending",
        "Servers starting now (a batch job may wait in its queue)",
        &[("", state.supervisor.starting_count() as i64)],
    );
    metrics::gauge(
        &mut out,
        "nbhub_spawn_queue_length",
        "Starts waiting in the spawn queue for their turn",
        &[("", state.supervisor.queue.len() as i64)],
    );
    let systems = crate::api::systems::states(&state);
    let label = |name: &str| format!("system=\"{}\"", name.replace(['\\', '"', '\n'], "_"));
    let labels: Vec<String> = systems.iter().map(|s| label(&s.name)).collect();
    let series = |f: &dyn Fn(&crate::maintenance::SystemState) -> bool| -> Vec<(&str, i64)> {
        labels
            .iter()
            .zip(&systems)
            .map(|(l, s)| (l.as_str(), i64::from(f(s))))
            .collect()
    };
    metrics::gauge(
        &mut out,
        "nbhub_system_up",
        "1 while the spawner sees the system able to run servers (reachable, not every partition down)",
        &series(&|s| s.health == nbhub_spawner::Health::Ok),
    );
    metrics::gauge(
        &mut out,
        "nbhub_system_maintenance",
        "1 while a maintenance notice (admin page, API or maintenance_file) is in force",
        &series(&|s| s.maintenance.is_some()),
    );
    for metric in state.supervisor.proxy.metrics() {
        metrics::backend_metric(&mut out, &metric);
    }
    for metric in state.supervisor.spawner.metrics() {
        metrics::backend_metric(&mut out, &metric);
    }
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}
