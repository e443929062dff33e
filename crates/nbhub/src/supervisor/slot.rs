//! A server's slot: its phase (stopped → starting → running → stopping → stopped), where it
//! listens, the spawner's state, and the progress log any number of listeners follow.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use nbhub_spawner::SpawnerState;
use serde_json::Value;
use tokio::sync::{watch, Notify};

use super::server_prefix;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Stopped,
    Starting,
    Running,
    Stopping,
}

/// What a slot knows beyond its phase.
#[derive(Clone, Debug, Default)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

pub(super) struct SlotState {
    pub(super) phase: Phase,
    pub(super) endpoint: Option<Endpoint>,
    pub(super) spawner_state: SpawnerState,
    /// The server's own API token row (batchspawner finds its server by it).
    pub(super) token_id: Option<i64>,
    /// Progress events of the current (or last) spawn, for late listeners.
    pub(super) events: Vec<Value>,
    /// Why the last spawn failed, if it did.
    pub(super) failure: Option<super::SpawnFailure>,
    /// Why the server stopped when it was not asked to (one line).
    pub(super) exit_reason: Option<String>,
    /// Its last lines then, secrets masked (`Spawner::last_output`).
    pub(super) exit_log: Option<String>,
    /// While the spawn waits in the spawn queue: how many wait ahead of it.
    pub(super) queue_ahead: Option<usize>,
    /// When the server's job said that its end is near (Slurm's `--signal` reached the job
    /// script's trap): the home page shows a banner. Cleared when the server stops.
    pub(super) end_signal: Option<std::time::SystemTime>,
}

/// One server's supervisor.
pub struct Slot {
    pub user_id: i64,
    pub user: String,
    pub server_name: String,
    state: Mutex<SlotState>,
    /// Bumped on every phase change and every new event.
    changes: watch::Sender<u64>,
    /// One transition at a time.
    pub(super) op: tokio::sync::Mutex<()>,
    cancel: AtomicBool,
    /// Wakes a spawn waiting in a queue or on a probe when it is cancelled.
    cancelled: Notify,
    /// A port reported by batchspawner-singleuser while starting (0: none).
    reported_port: AtomicU32,
    /// Wakes a spawn waiting for the reported port.
    port_reported: Notify,
}

impl Slot {
    pub(super) fn new(user_id: i64, user: &str, server_name: &str) -> Self {
        Slot {
            user_id,
            user: user.to_string(),
            server_name: server_name.to_string(),
            state: Mutex::new(SlotState {
                phase: Phase::Stopped,
                endpoint: None,
                spawner_state: SpawnerState::default(),
                token_id: None,
                events: Vec::new(),
                failure: None,
                exit_reason: None,
                exit_log: None,
                queue_ahead: None,
                end_signal: None,
            }),
            changes: watch::channel(0).0,
            op: tokio::sync::Mutex::new(()),
            cancel: AtomicBool::new(false),
            cancelled: Notify::new(),
            reported_port: AtomicU32::new(0),
            port_reported: Notify::new(),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub fn phase(&self) -> Phase {
        self.lock().phase
    }

    pub fn endpoint(&self) -> Option<Endpoint> {
        self.lock().endpoint.clone()
    }

    /// The message of the last spawn's failure (the pending page, the API, the events).
    pub fn failure(&self) -> Option<String> {
        self.lock().failure.as_ref().map(|f| f.message().to_owned())
    }

    /// The last spawn's failure: its step and whether a retry may help.
    pub fn spawn_failure(&self) -> Option<super::SpawnFailure> {
        self.lock().failure.clone()
    }

    pub fn exit_reason(&self) -> Option<String> {
        self.lock().exit_reason.clone()
    }

    /// The server's last lines when it stopped by itself (secrets masked), if known.
    pub fn exit_log(&self) -> Option<String> {
        self.lock().exit_log.clone()
    }

    /// The server stopped by itself: why (one line), and its last lines. A spawner that
    /// quotes its log in the reason itself (the local one: "… Last output (path):\n…") has
    /// the quote moved to the last lines, masked, so that the reason stays one line.
    pub(super) fn set_exit(&self, reason: String, log: Option<String>) {
        let (reason, log) = match reason.split_once('\n') {
            Some((head, rest)) => {
                let head = head.split(" Last output").next().unwrap_or(head);
                (
                    head.trim_end().to_owned(),
                    log.or_else(|| Some(nbhub_spawner::mask_secrets(rest))),
                )
            }
            None => (reason, log),
        };
        let mut st = self.lock();
        st.exit_reason = Some(reason);
        st.exit_log = log;
    }

    /// How many spawns wait ahead of this one in the spawn queue, while it waits.
    pub fn queue_ahead(&self) -> Option<usize> {
        self.lock().queue_ahead
    }

    pub(super) fn set_queue_ahead(&self, ahead: Option<usize>) {
        self.lock().queue_ahead = ahead;
    }

    pub fn token_id(&self) -> Option<i64> {
        self.lock().token_id
    }

    /// The spawner's state of the current server (for `Spawner::describe`).
    pub fn spawner_state(&self) -> SpawnerState {
        self.lock().spawner_state.clone()
    }

    /// When the server's job said its end is near (`None`: it did not).
    pub fn end_signal(&self) -> Option<std::time::SystemTime> {
        self.lock().end_signal
    }

    /// The server's job says its end is near (the first word counts; the banner says when).
    pub fn set_end_signal(&self, at: std::time::SystemTime) {
        self.lock().end_signal.get_or_insert(at);
        self.changes.send_modify(|n| *n += 1);
    }

    /// Events from index `from` on, and whether the stream has ended (ready or failed).
    pub fn events_since(&self, from: usize) -> (Vec<Value>, bool) {
        let st = self.lock();
        let events = st
            .events
            .get(from..)
            .map(<[Value]>::to_vec)
            .unwrap_or_default();
        let ended = st
            .events
            .last()
            .is_some_and(|e| e.get("ready").is_some() || e.get("failed").is_some());
        (events, ended)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub(super) fn set_phase(&self, phase: Phase) {
        self.lock().phase = phase;
        self.changes.send_modify(|n| *n += 1);
    }

    pub(super) fn push_event(&self, event: Value) {
        self.lock().events.push(event);
        self.changes.send_modify(|n| *n += 1);
    }

    /// A new spawn begins: the log, failure, endpoint and reported port of the last one go.
    pub(super) fn reset_for_spawn(&self) {
        {
            let mut st = self.lock();
            st.events.clear();
            st.failure = None;
            st.exit_reason = None;
            st.exit_log = None;
            st.endpoint = None;
            st.end_signal = None;
        }
        self.cancel.store(false, Ordering::SeqCst);
        self.reported_port.store(0, Ordering::SeqCst);
    }

    /// Asks a spawn under way to give up (the spawn task stops what it started).
    pub(super) fn request_cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
        self.cancelled.notify_waiters();
    }

    pub(super) fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// Resolves once a cancel was requested.
    pub(super) async fn cancelled(&self) {
        loop {
            let notified = self.cancelled.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /// batchspawner: the server reports the port it will listen on.
    pub fn report_port(&self, port: u16) {
        self.reported_port.store(u32::from(port), Ordering::SeqCst);
        self.port_reported.notify_waiters();
    }

    /// The reported port, 0 if none.
    pub(super) fn reported_port(&self) -> u16 {
        self.reported_port.load(Ordering::SeqCst) as u16
    }

    /// Resolves once a port was reported.
    pub(super) async fn port_reported(&self) -> u16 {
        loop {
            let notified = self.port_reported.notified();
            let port = self.reported_port();
            if port != 0 {
                return port;
            }
            notified.await;
        }
    }

    /// The URL prefix of this server, e.g. `/user/alice/` or `/user/alice/foo/`.
    pub fn prefix(&self, base_url: &str) -> String {
        server_prefix(base_url, &self.user, &self.server_name)
    }

    /// Waits until the phase is not `phase` any more, or `timeout` passes.
    pub async fn wait_while(&self, phase: Phase, timeout: Duration) -> Phase {
        let mut rx = self.subscribe();
        let wait = async {
            while self.phase() == phase {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
        self.phase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_reason_is_one_line_and_a_quoted_log_moves_to_the_last_lines() {
        let slot = Slot::new(1, "alice", "");
        // The local spawner quotes the log in its reason.
        slot.set_exit(
            "The server exited with status 1. Last output (/tmp/x.log):\nboom\ntoken=abc".into(),
            None,
        );
        assert_eq!(
            slot.exit_reason().as_deref(),
            Some("The server exited with status 1.")
        );
        assert_eq!(slot.exit_log().as_deref(), Some("boom\ntoken=[hidden]"));
        // Slurm's reason is one line already; its last lines come apart.
        slot.set_exit(
            "The job was cancelled (scancel).".into(),
            Some("last".into()),
        );
        assert_eq!(
            (slot.exit_reason(), slot.exit_log()),
            (
                Some("The job was cancelled (scancel).".into()),
                Some("last".into())
            )
        );
        slot.reset_for_spawn();
        assert_eq!((slot.exit_reason(), slot.exit_log()), (None, None));
    }
}
