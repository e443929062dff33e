//! Each server's recent sessions, kept in the database across hub restarts
//! (`db/server_sessions.rs`): a row when a start is requested (the validated options, the
//! system), the job once the spawner names it, and the end — when, and how ([`EndReason`]).
//! The last ended session of every server is also kept in memory, so that the REST server
//! model can say why it ended without a query per server.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use nbhub_spawner::{SpawnerState, ValidatedOptions};

use super::Supervisor;
use crate::db::{self, server_sessions, server_sessions::SessionRow, usage};

/// How many sessions of each server are kept.
pub const SESSIONS_KEPT: usize = 10;

/// How a session ended; stored as [`EndReason::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// Stopped through the hub (its owner, an admin, a culler, the REST API).
    Stopped,
    /// The batch job reached its time limit (Slurm's `TIMEOUT`, or its `DEADLINE`).
    TimeLimit,
    /// The job was cancelled outside the hub (`scancel`).
    Cancelled,
    /// The job's node failed (`NODE_FAIL`, `BOOT_FAIL`).
    NodeFailure,
    /// Another job preempted it.
    Preempted,
    /// It ran out of memory.
    OutOfMemory,
    /// The server or job failed (a non-zero exit, a signal).
    Failed,
    /// The server ended by itself otherwise (it exited normally; the job is gone).
    Exited,
    /// The start failed; the message says why.
    SpawnFailed,
    /// The start was cancelled before the server was ready.
    SpawnCancelled,
    /// The hub lost track of it (it stopped before the server had started, or the end was
    /// never recorded).
    Lost,
}

const ALL: [EndReason; 11] = [
    EndReason::Stopped,
    EndReason::TimeLimit,
    EndReason::Cancelled,
    EndReason::NodeFailure,
    EndReason::Preempted,
    EndReason::OutOfMemory,
    EndReason::Failed,
    EndReason::Exited,
    EndReason::SpawnFailed,
    EndReason::SpawnCancelled,
    EndReason::Lost,
];

impl EndReason {
    /// The word stored and shown in the REST model (`last_session.reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Stopped => "stopped",
            EndReason::TimeLimit => "time_limit",
            EndReason::Cancelled => "cancelled",
            EndReason::NodeFailure => "node_failure",
            EndReason::Preempted => "preempted",
            EndReason::OutOfMemory => "out_of_memory",
            EndReason::Failed => "failed",
            EndReason::Exited => "exited",
            EndReason::SpawnFailed => "spawn_failed",
            EndReason::SpawnCancelled => "spawn_cancelled",
            EndReason::Lost => "lost",
        }
    }

    pub fn parse(word: &str) -> Option<EndReason> {
        ALL.into_iter().find(|r| r.as_str() == word)
    }

    /// What the home page says after "It …".
    pub fn describe(self) -> &'static str {
        match self {
            EndReason::Stopped => "was stopped",
            EndReason::TimeLimit => "reached its time limit",
            EndReason::Cancelled => "was cancelled outside the hub",
            EndReason::NodeFailure => "ended because its node failed",
            EndReason::Preempted => "was preempted by another job",
            EndReason::OutOfMemory => "ran out of memory",
            EndReason::Failed => "failed",
            EndReason::Exited => "ended by itself",
            EndReason::SpawnFailed => "failed to start",
            EndReason::SpawnCancelled => "was cancelled while starting",
            EndReason::Lost => "was lost by the hub",
        }
    }

    /// How a server that stopped by itself ended, from the spawner's facts about it: the
    /// batch job's final state (`state`, as Slurm names it), when the spawner tells one.
    pub fn of_exit(facts: Option<&Value>) -> EndReason {
        let state = facts.and_then(|f| f.get("state")).and_then(Value::as_str);
        match state.unwrap_or("") {
            "TIMEOUT" | "DEADLINE" => EndReason::TimeLimit,
            "CANCELLED" => EndReason::Cancelled,
            "NODE_FAIL" | "BOOT_FAIL" => EndReason::NodeFailure,
            "PREEMPTED" => EndReason::Preempted,
            "OUT_OF_MEMORY" => EndReason::OutOfMemory,
            "FAILED" => EndReason::Failed,
            _ => EndReason::Exited,
        }
    }
}

/// A session as the REST model and the pages show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SessionView {
    pub id: i64,
    /// JupyterHub's timestamp format.
    pub started: String,
    pub ended: Option<String>,
    /// [`EndReason::as_str`]; `None` while the session runs.
    pub reason: Option<String>,
    pub message: Option<String>,
    pub job_id: Option<String>,
    pub system: Option<String>,
    pub user_options: Value,
}

impl SessionView {
    pub fn of(row: &SessionRow) -> SessionView {
        SessionView {
            id: row.id,
            started: db::format_timestamp(row.started),
            ended: row.ended.map(db::format_timestamp),
            reason: row.reason.clone(),
            message: row.message.clone(),
            job_id: row.job_id.clone(),
            system: Some(row.system.clone()).filter(|s| !s.is_empty()),
            user_options: if row.user_options.is_object() {
                row.user_options.clone()
            } else {
                Value::Object(Default::default())
            },
        }
    }

    pub fn end_reason(&self) -> Option<EndReason> {
        self.reason.as_deref().and_then(EndReason::parse)
    }
}

impl Supervisor {
    /// Reads every server's last ended session (at start, before adoption).
    pub(super) async fn load_history(&self) -> Result<(), sqlx::Error> {
        let rows = server_sessions::last_ended_all(&self.db).await?;
        let mut last = self.last_sessions();
        for row in rows {
            last.insert(row.server_id, SessionView::of(&row));
        }
        Ok(())
    }

    fn last_sessions(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<i64, SessionView>> {
        self.last_sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last session of the server with row id `server_id` that ended, if any.
    pub fn last_session(&self, server_id: i64) -> Option<SessionView> {
        self.last_sessions().get(&server_id).cloned()
    }

    /// A start was requested: a new session, in the history and in the usage record
    /// (`db/usage.rs`: the system, account, partition, nodes and GPUs asked for). History is a
    /// record, not a condition of the start: a failure to write it is logged and the start
    /// goes on.
    pub(super) async fn history_begin(
        &self,
        user: &str,
        server: &str,
        server_id: i64,
        options: &ValidatedOptions,
        at: i64,
    ) {
        let system = options.get_str("system").unwrap_or_default();
        let all = Value::Object(options.0.clone());
        let session_id = match server_sessions::begin(
            &self.db,
            server_id,
            &all,
            system,
            at,
            SESSIONS_KEPT,
        )
        .await
        {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::error!(error = %e, server_id, "could not record the server's session");
                None
            }
        };
        let usage = usage::NewSession {
            server_id,
            session_id,
            user,
            server,
            system,
            account: options.get_str("account").unwrap_or_default(),
            partition: options.get_str("partition").unwrap_or_default(),
            nodes: options.get_i64("nodes").unwrap_or(1),
            gpus: options.get_i64("gpus").unwrap_or(0),
            started: at,
        };
        if let Err(e) = usage::begin(&self.db, &usage).await {
            tracing::error!(error = %e, server_id, "could not record the session's usage");
        }
    }

    /// The server became ready: its usage counts from now.
    pub(super) async fn history_ready(&self, server_id: i64) {
        if let Err(e) = usage::set_ready(&self.db, server_id, db::now_micros()).await {
            tracing::error!(error = %e, server_id, "could not record when the server was ready");
        }
    }

    /// The spawner handed over a state: the session's job (and system), when it names them.
    pub(super) async fn history_job(&self, server_id: i64, state: &SpawnerState) {
        let Some(facts) = self.spawner.describe(state) else {
            return;
        };
        let job = match facts.get("job_id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return,
        };
        let system = self.spawner.system_of(state).unwrap_or_default();
        if let Err(e) = server_sessions::set_job(&self.db, server_id, &job, &system).await {
            tracing::error!(error = %e, server_id, "could not record the session's job");
        }
    }

    /// The session of `server_id` ended, how and with what message (one line).
    pub(super) async fn history_end(&self, server_id: i64, reason: EndReason, message: &str) {
        let message = message.lines().next().unwrap_or("").trim();
        match usage::end(&self.db, server_id, db::now_micros()).await {
            // A job that ended has accounting figures to fetch.
            Ok(()) => self.accounting_wake.notify_one(),
            Err(e) => tracing::error!(error = %e, server_id, "could not record the usage's end"),
        }
        match server_sessions::end(
            &self.db,
            server_id,
            db::now_micros(),
            reason.as_str(),
            message,
        )
        .await
        {
            Ok(Some(row)) => {
                self.last_sessions()
                    .insert(server_id, SessionView::of(&row));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, server_id, "could not record how the session ended")
            }
        }
    }
}

/// The accounting collector's first look after a session ended (Slurm writes the job's end
/// to its database a moment after the job ends), and its longest pause while jobs wait.
const ACCOUNTING_FIRST_LOOK: Duration = Duration::from_secs(2);
const ACCOUNTING_MAX_PAUSE: Duration = Duration::from_secs(600);

impl Supervisor {
    /// Fetches accounting's figures (`crate::usage::collect_accounting`) for the jobs of ended
    /// sessions: at start, soon after a session ends, then again at growing pauses while some
    /// are still waiting (their job not in accounting yet), and every
    /// [`ACCOUNTING_MAX_PAUSE`] anyway (then also the systems that had no accounting).
    pub(super) fn spawn_accounting_collector(self: &Arc<Self>) {
        // Weak: the task ends with the hub that made it (tests run many hubs in a process).
        let weak = Arc::downgrade(self);
        let wake = self.accounting_wake.clone();
        tokio::spawn(async move {
            let mut no_accounting = std::collections::HashSet::new();
            let mut pause = ACCOUNTING_FIRST_LOOK;
            loop {
                let Some(this) = weak.upgrade() else { return };
                let waiting = match crate::usage::collect_accounting(
                    &this.db,
                    &*this.spawner,
                    &mut no_accounting,
                )
                .await
                {
                    Ok(done) => {
                        if done.stored > 0 {
                            tracing::info!(sessions = done.stored, "stored the jobs' accounting");
                        }
                        done.waiting > 0
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not collect the jobs' accounting");
                        true
                    }
                };
                pause = if waiting {
                    (pause * 2).min(ACCOUNTING_MAX_PAUSE)
                } else {
                    ACCOUNTING_MAX_PAUSE
                };
                drop(this);
                let woken = tokio::select! {
                    _ = tokio::time::sleep(pause) => false,
                    _ = wake.notified() => true,
                };
                if woken {
                    pause = ACCOUNTING_FIRST_LOOK;
                    tokio::time::sleep(ACCOUNTING_FIRST_LOOK).await;
                } else {
                    // A system may have got accounting since: ask it again now and then.
                    no_accounting.clear();
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reasons_round_trip_and_slurm_states_map_to_them() {
        for r in ALL {
            assert_eq!(EndReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(EndReason::parse("nonsense"), None);
        let of = |state: &str| EndReason::of_exit(Some(&json!({ "state": state })));
        assert_eq!(of("TIMEOUT"), EndReason::TimeLimit);
        assert_eq!(of("CANCELLED"), EndReason::Cancelled);
        assert_eq!(of("NODE_FAIL"), EndReason::NodeFailure);
        assert_eq!(of("FAILED"), EndReason::Failed);
        assert_eq!(of("COMPLETED"), EndReason::Exited);
        assert_eq!(EndReason::of_exit(None), EndReason::Exited);
        assert_eq!(EndReason::TimeLimit.describe(), "reached its time limit");
    }
}
