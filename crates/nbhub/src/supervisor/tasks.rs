//! What runs in the background for as long as the hub does: the poll of running servers
//! (every `[spawner] poll_interval`, and at once when the spawner's `ended_signal` says it
//! saw servers end), and the route check (every `check_running_interval`, or
//! at once when the managed proxy exits) that also harvests activity from the proxy.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use nbhub_spawner::{PollStatus, SpawnerState};
use serde_json::{json, Map, Value};

use super::{server_prefix, Phase, Slot, Supervisor};
use crate::db::{self, servers};
use crate::proxy::hub_origin;

impl Supervisor {
    /// Polls every running server; a dead one loses its route and is marked stopped with
    /// the reason.
    pub async fn poll_once(&self) {
        let running: Vec<Arc<Slot>> = self
            .all_slots()
            .into_iter()
            .filter(|s| s.phase() == Phase::Running)
            .collect();
        if running.is_empty() {
            return;
        }
        let states: Vec<SpawnerState> = running
            .iter()
            .map(|s| s.lock().spawner_state.clone())
            .collect();
        let began = std::time::Instant::now();
        let results = self.spawner.poll_all(&states).await;
        let took = began.elapsed();
        for (slot, status) in running.iter().zip(results) {
            // One call answers for every server (a batch backend asks its scheduler once).
            let label = if matches!(status, PollStatus::Exited { .. }) {
                "stopped"
            } else {
                "running"
            };
            self.metrics.server_poll.observe(&[label], took);
            // Pending, Running and Unknown (the scheduler did not answer) change nothing.
            if let PollStatus::Exited { reason } = status {
                let Ok(_op) = slot.op.try_lock() else {
                    continue;
                };
                if slot.phase() != Phase::Running {
                    continue;
                }
                tracing::warn!(user = %slot.user, server = %slot.server_name, %reason, "server died");
                let state = slot.lock().spawner_state.clone();
                let log = self.spawner.last_output(&state);
                let how = super::EndReason::of_exit(self.spawner.describe(&state).as_ref());
                let row = servers::get(&self.db, slot.user_id, &slot.server_name).await;
                if let Ok(Some(row)) = &row {
                    self.cleanup(slot.user_id, slot, row.id).await;
                }
                slot.set_exit(reason, log);
                if let Ok(Some(row)) = &row {
                    let line = slot.exit_reason().unwrap_or_default();
                    self.history_end(row.id, how, &line).await;
                }
                slot.set_phase(Phase::Stopped);
            }
        }
    }

    /// The routes the proxy should have: the hub's catch-all and one per running server.
    pub fn desired_routes(&self) -> BTreeMap<String, (String, Map<String, Value>)> {
        let base = self.config.hub.base_url.as_str();
        let mut routes = BTreeMap::new();
        let mut hub_data = Map::new();
        hub_data.insert("hub".into(), json!(true));
        hub_data.insert("jupyterhub".into(), json!(true));
        routes.insert(route_key(base), (hub_origin(&self.config), hub_data));
        for slot in self.all_slots() {
            if slot.phase() != Phase::Running {
                continue;
            }
            if let Some(ep) = slot.endpoint() {
                let (spec, data) = server_route(base, &slot.user, &slot.server_name);
                routes.insert(
                    route_key(&spec),
                    (nbhub_spawner::http_origin(&ep.host, ep.port), data),
                );
            }
        }
        for svc in &self.config.services {
            if svc.url.is_empty() {
                continue;
            }
            let mut data = Map::new();
            data.insert("service".into(), json!(svc.name));
            data.insert("jupyterhub".into(), json!(true));
            let target = crate::config::HttpUrl::parse(&svc.url)
                .map(|u| u.to_string())
                .unwrap_or_default();
            routes.insert(
                route_key(&format!("{base}services/{}/", svc.name)),
                (target, data),
            );
        }
        routes
    }

    /// Brings the proxy's table in line with `desired_routes`, and harvests activity.
    pub async fn sync_routes(&self) -> Result<(), crate::proxy::ProxyError> {
        let began = std::time::Instant::now();
        let result = self.sync_routes_once().await;
        self.metrics.check_routes.observe(&[], began.elapsed());
        result
    }

    async fn sync_routes_once(&self) -> Result<(), crate::proxy::ProxyError> {
        let peers = self.proxy.peers();
        // One proxy: it must answer (a managed one is started again). Several: each is
        // checked on its own, and one that does not answer leaves the others be.
        if peers.len() == 1 {
            let restarted = self.proxy.ensure_running().await?;
            if restarted {
                tracing::info!("proxy (re)started; restoring all routes");
            }
        }
        let want = self.desired_routes();
        let mut seen: BTreeMap<String, crate::proxy::Route> = BTreeMap::new();
        let mut first_error = None;
        for peer in peers {
            match self.sync_peer(&peer.client, &want).await {
                Ok(have) => {
                    peer.synced();
                    // The latest activity any proxy saw.
                    for (key, route) in have {
                        let kept = seen.entry(key).or_insert_with(|| route.clone());
                        kept.last_activity = kept.last_activity.max(route.last_activity);
                    }
                }
                Err(e) => {
                    peer.failed(&e);
                    first_error.get_or_insert(e);
                }
            }
        }
        self.harvest_activity(&seen).await;
        match first_error {
            Some(e) if seen.is_empty() || peers.len() == 1 => Err(e),
            _ => Ok(()),
        }
    }

    /// Brings one proxy's table in line with `want`; its routes as they were before.
    async fn sync_peer(
        &self,
        client: &crate::proxy::ProxyClient,
        want: &BTreeMap<String, (String, Map<String, Value>)>,
    ) -> Result<BTreeMap<String, crate::proxy::Route>, crate::proxy::ProxyError> {
        let polled = std::time::Instant::now();
        let have = client.get_routes().await?;
        self.metrics.proxy_poll.observe(&[], polled.elapsed());
        for (key, (target, data)) in want {
            let ok = have.get(key).is_some_and(|r| {
                &r.target == target && data.iter().all(|(k, v)| r.data.get(k) == Some(v))
            });
            if !ok {
                tracing::info!(route = %key, %target, proxy = %client.api(), "adding proxy route");
                client.add_route(key, target, data).await?;
            }
        }
        for (key, route) in &have {
            let ours = route
                .data
                .get("jupyterhub")
                .is_some_and(|v| v == &json!(true));
            if ours && !want.contains_key(key) {
                tracing::info!(route = %key, proxy = %client.api(), "removing stale proxy route");
                client.delete_route(key).await?;
            }
        }
        Ok(have)
    }

    async fn harvest_activity(&self, routes: &BTreeMap<String, crate::proxy::Route>) {
        for route in routes.values() {
            let (Some(user), Some(ms)) = (
                route.data.get("user").and_then(Value::as_str),
                route.last_activity,
            ) else {
                continue;
            };
            let server = route
                .data
                .get("server_name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let Ok(Some(u)) = db::users::get(&self.db, user).await else {
                continue;
            };
            let micros = ms * 1000;
            if let Ok(Some(row)) = servers::get(&self.db, u.id, server).await {
                let _ = servers::touch_activity(&self.db, row.id, micros).await;
            }
            let _ = db::users::touch_activity(&self.db, u.id, micros).await;
        }
    }

    /// Runs the periodic tasks until the hub stops: the route check every
    /// `proxy.check_running_interval`, the server poll every `spawner.poll_interval`.
    pub fn spawn_background_tasks(self: &Arc<Self>) {
        self.proxy.watch_managed();
        let this = self.clone();
        tokio::spawn(async move {
            let interval = Duration::from_secs(this.config.proxy.check_running_interval.max(1));
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = this.proxy.exited.notified() => {}
                }
                if let Err(e) = this.sync_routes().await {
                    tracing::warn!(error = %e, "route check failed; retrying");
                }
            }
        });
        let this = self.clone();
        tokio::spawn(async move {
            let interval = this.config.spawner.timeouts().poll_interval;
            // What the spawner learns by itself (a job that left Slurm's queue) is acted on at
            // once, as the poll would: the poll answers from what the spawner knows already.
            let mut ended = this.spawner.ended_signal();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    changed = async {
                        match ended.as_mut() {
                            Some(rx) => rx.changed().await,
                            None => std::future::pending().await,
                        }
                    } => {
                        if changed.is_err() {
                            ended = None;
                        }
                    }
                }
                this.poll_once().await;
            }
        });
        self.spawn_accounting_collector();
    }
}
/// The proxy key of a routespec: no trailing slash, root is `/`.
pub fn route_key(spec: &str) -> String {
    let k = spec.trim_end_matches('/');
    if k.is_empty() {
        "/".into()
    } else {
        k.into()
    }
}

/// The routespec and route data of a user's server, as JupyterHub stores them.
pub fn server_route(base_url: &str, user: &str, server: &str) -> (String, Map<String, Value>) {
    let mut data = Map::new();
    data.insert("user".into(), json!(user));
    data.insert("server_name".into(), json!(server));
    data.insert("jupyterhub".into(), json!(true));
    (server_prefix(base_url, user, server), data)
}
