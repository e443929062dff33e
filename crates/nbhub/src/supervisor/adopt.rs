//! At hub start: every server recorded as started is looked at again. A ready one that still
//! runs is adopted (its route is restored by the route check); one whose start was under way
//! (a job still queued, or starting) is taken up where it was; one that is gone is marked
//! stopped with the reason. A spawner that cannot tell (the batch controller is down) gives
//! no server up.

use std::sync::Arc;

use nbhub_spawner::{PollStatus, SpawnerState};
use serde_json::json;

use super::{EndReason, Endpoint, Phase, Supervisor};
use crate::db::{self, servers, tokens};

/// Why a server whose start was cut by a hub restart before its job was recorded is stopped.
pub const SUBMISSION_CUT: &str = "the hub restarted during the submission; start again";

impl Supervisor {
    pub async fn adopt(self: &Arc<Self>) -> Result<(), sqlx::Error> {
        /// Starts go on once adoption is over, however it ends.
        struct Over<'a>(&'a tokio::sync::watch::Sender<bool>);
        impl Drop for Over<'_> {
            fn drop(&mut self) {
                self.0.send_replace(false);
            }
        }
        self.adopting.send_replace(true);
        let _over = Over(&self.adopting);
        let base = self.config.hub.base_url.as_str();
        self.load_history().await?;
        let rows = servers::list_started(&self.db).await?;
        let tracked: Vec<SpawnerState> = rows
            .iter()
            .map(|row| SpawnerState(row.state.clone()))
            .filter(|state| !state.is_empty())
            .collect();
        // A job is submitted only for a row recorded as started: with none, none was left.
        if !rows.is_empty() {
            let cut = rows.len() > tracked.len();
            self.clone().cancel_left_behind(tracked, cut);
        }
        for row in rows {
            let Some(user) = db::users::get_by_id(&self.db, row.user_id).await? else {
                continue;
            };
            let slot = self.slot_entry(&user, &row.name);
            let state = SpawnerState(row.state.clone());
            slot.lock().spawner_state = state.clone();
            let gone = |reason: String| {
                let this = self.clone();
                let slot = slot.clone();
                async move {
                    tracing::info!(user = %slot.user, server = %slot.server_name, %reason, "a server recorded as started is gone; marking it stopped");
                    let state = slot.lock().spawner_state.clone();
                    let log = this.spawner.last_output(&state);
                    let how = if state.is_empty() {
                        EndReason::Lost
                    } else {
                        EndReason::of_exit(this.spawner.describe(&state).as_ref())
                    };
                    this.cleanup(slot.user_id, &slot, row.id).await;
                    slot.set_exit(reason, log);
                    let line = slot.exit_reason().unwrap_or_default();
                    this.history_end(row.id, how, &line).await;
                    slot.set_phase(Phase::Stopped);
                }
            };
            if state.is_empty() {
                // Killed during the submission: a job it may have left is cancelled by
                // `cancel_left_behind`; the user is told to start again.
                let reason = SUBMISSION_CUT.to_string();
                slot.lock().failure = Some(super::SpawnFailure::exited(
                    super::SpawnStep::Start,
                    reason.clone(),
                ));
                slot.push_event(json!({"progress": 100, "failed": true, "message": reason}));
                gone(reason).await;
                continue;
            }
            let ready = row.ip.is_some() && row.port.is_some();
            match self.spawner.poll(&state).await {
                PollStatus::Exited { reason } => {
                    gone(format!(
                        "the server was gone when the hub restarted: {reason}"
                    ))
                    .await;
                }
                status if ready => {
                    if let PollStatus::Unknown { reason } = &status {
                        tracing::warn!(user = %user.name, server = %row.name, %reason, "cannot tell whether the server runs; adopting it");
                    }
                    slot.lock().endpoint =
                        row.ip.clone().zip(row.port).map(|(host, port)| Endpoint {
                            host,
                            port: port as u16,
                        });
                    // Tunnels through a login node, before the route is used.
                    self.clone().restore_reach(slot.clone(), row.id).await;
                    slot.set_phase(Phase::Running);
                    tracing::info!(user = %user.name, server = %row.name, "adopted a running server");
                }
                status => {
                    // The start was under way: take it up again.
                    let note = format!("Server at {}", slot.prefix(base));
                    let token_id = tokens::list_for(&self.db, tokens::Owner::User(user.id))
                        .await?
                        .into_iter()
                        .find(|t| t.note == note)
                        .map(|t| t.id);
                    slot.reset_for_spawn();
                    slot.lock().token_id = token_id;
                    if let Some(port) = row.port {
                        slot.report_port(port as u16);
                    }
                    slot.set_phase(Phase::Starting);
                    let (message, phase) = match status {
                        PollStatus::Pending { message } => (message, "queued"),
                        _ => (
                            "The hub restarted; waiting for the server".to_string(),
                            "starting",
                        ),
                    };
                    slot.push_event(json!({"progress": 10, "message": message, "state": phase}));
                    tracing::info!(user = %user.name, server = %row.name, "taking up a start that was under way");
                    self.clone().restore_for_start(state.clone());
                    let this = self.clone();
                    let slot = slot.clone();
                    let row_id = row.id;
                    tokio::spawn(async move {
                        let _op = slot.op.lock().await;
                        this.run_resume(slot.user_id, &slot, row_id).await;
                    });
                }
            }
        }
        Ok(())
    }

    /// Cancels, in the background, the jobs a killed run of this hub submitted but never
    /// recorded (the hub died between the submission and saving its job id): one query
    /// lists the queue's jobs tagged by this hub that no recorded state names, and those of
    /// earlier runs are stopped. A batch system that does not answer is asked again, every
    /// few seconds, for up to ten minutes.
    fn cancel_left_behind(self: Arc<Self>, tracked: Vec<SpawnerState>, cut: bool) {
        tokio::spawn(async move {
            if !self.cancel_left_behind_once(&tracked).await || !cut {
                return;
            }
            // A start was cut before its job was recorded (`cut`): the `sbatch` the killed
            // hub had started may finish after the first look, and a start taken up again
            // may have failed since, its job still queued. The later looks, once adoption is
            // over, count only the jobs of servers that are not stopped.
            for after in [10, 20, 30, 60] {
                tokio::time::sleep(std::time::Duration::from_secs(after)).await;
                let live: Vec<SpawnerState> = self
                    .all_slots()
                    .iter()
                    .filter(|slot| slot.phase() != Phase::Stopped)
                    .map(|slot| slot.lock().spawner_state.clone())
                    .filter(|state| !state.is_empty())
                    .collect();
                self.cancel_left_behind_once(&live).await;
            }
        });
    }

    /// One look of [`Supervisor::cancel_left_behind`]; `false` when the batch system did not
    /// answer for ten minutes.
    async fn cancel_left_behind_once(&self, tracked: &[SpawnerState]) -> bool {
        let prefix = self.job_tag.hub_prefix();
        let mut delay = std::time::Duration::from_secs(2);
        let give_up = tokio::time::Instant::now() + std::time::Duration::from_secs(600);
        let jobs = loop {
            match self.spawner.untracked_jobs(&prefix, tracked).await {
                Ok(jobs) => break jobs,
                Err(e) if tokio::time::Instant::now() < give_up => {
                    tracing::warn!(error = %e, "cannot list the jobs a killed hub may have left; trying again");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(30));
                }
                Err(e) => {
                    tracing::error!(error = %e, "gave up looking for jobs a killed hub left");
                    return false;
                }
            }
        };
        let stops = jobs
            .iter()
            .filter(|job| !self.job_tag.is_this_run(&job.tag))
            .map(|job| async move {
                let timeout = std::time::Duration::from_secs(10);
                match self.spawner.stop(&job.state, timeout).await {
                    Ok(()) => tracing::info!(job = %job.id, tag = %job.tag, "cancelled a job the hub submitted before it was killed and never recorded"),
                    Err(e) => tracing::warn!(job = %job.id, tag = %job.tag, error = %e, "could not cancel a job a killed hub left"),
                }
            });
        futures_util::future::join_all(stops).await;
        true
    }

    /// Opens again what the spawner needs to reach a running server (`Spawner::restore`:
    /// tunnels through a login node) and moves its route when it is reached elsewhere now. A
    /// login node that does not answer yet is asked again every few seconds, in the
    /// background, until it does or the server is gone.
    async fn restore_reach(self: Arc<Self>, slot: Arc<super::Slot>, row_id: i64) {
        if self.try_restore(&slot, row_id).await {
            return;
        }
        tokio::spawn(async move {
            let mut delay = std::time::Duration::from_secs(2);
            loop {
                tokio::time::sleep(delay).await;
                if slot.phase() != Phase::Running || self.try_restore(&slot, row_id).await {
                    return;
                }
                delay = (delay * 2).min(std::time::Duration::from_secs(30));
            }
        });
    }

    /// One attempt of [`Supervisor::restore_reach`]; `true` when done.
    async fn try_restore(&self, slot: &super::Slot, row_id: i64) -> bool {
        let state = slot.lock().spawner_state.clone();
        let reached = match self.spawner.restore(&state).await {
            Ok(Some(reached)) => reached,
            Ok(None) => return true,
            Err(e) => {
                tracing::warn!(user = %slot.user, server = %slot.server_name, error = %e, "cannot reopen the way to the server yet; trying again");
                return false;
            }
        };
        if let Some(state) = &reached.state {
            slot.lock().spawner_state = state.clone();
            if let Err(e) = servers::set_state(&self.db, row_id, &state.0).await {
                tracing::error!(error = %e, "could not persist the spawner state");
            }
        }
        slot.lock().endpoint = Some(Endpoint {
            host: reached.host.clone(),
            port: reached.port,
        });
        if let Err(e) = servers::mark_ready(&self.db, row_id, &reached.host, reached.port).await {
            tracing::error!(error = %e, "could not record where the server is reached");
        }
        let target = nbhub_spawner::http_origin(&reached.host, reached.port);
        if let Err(e) = self
            .add_server_route(&slot.user, &slot.server_name, &target)
            .await
        {
            tracing::warn!(error = %e, "could not move the server's route; the route check will");
        }
        tracing::info!(user = %slot.user, server = %slot.server_name, %target, "the server is reached at a new address");
        true
    }

    /// A start under way when the hub stopped: its job may report through a reverse forward
    /// that closed with the hub's old connection (`reach = "tunnel"`). `Spawner::restore`
    /// opens it again, in the background, asked again while the login node does not answer
    /// (for up to ten minutes); the way to the server itself is opened when it reports.
    fn restore_for_start(self: Arc<Self>, state: SpawnerState) {
        tokio::spawn(async move {
            let mut delay = std::time::Duration::from_secs(2);
            let give_up = tokio::time::Instant::now() + std::time::Duration::from_secs(600);
            while let Err(e) = self.spawner.restore(&state).await {
                if tokio::time::Instant::now() > give_up {
                    tracing::warn!(error = %e, "gave up reopening the way a starting server reaches the hub");
                    return;
                }
                tracing::debug!(error = %e, "cannot reopen the way a starting server reaches the hub yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(30));
            }
        });
    }
}
