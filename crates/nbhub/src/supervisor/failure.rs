//! Why a spawn failed, as one value: the step that failed ([`SpawnStep`]), whether trying
//! again may help ([`SpawnFailure::retry_may_help`]), and the message the user sees — on the
//! pending page, in the REST API's "Spawn failed: …" and in the progress events. The steps
//! (`spawn.rs`) build it where they fail, so each decision is made once, here.

use std::fmt;

use nbhub_spawner::SpawnError;

/// The step of a spawn that failed (`spawn.rs` walks them in this order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnStep {
    /// Waiting for a place in the spawn queue (`concurrent_spawn_limit`).
    Queue,
    /// The server's credentials: its API token and OAuth client.
    Credentials,
    /// The spawner's start (or the resume of one an earlier hub run began), up to the
    /// server's process running, within `start_timeout`.
    Start,
    /// Waiting for the server to report its port (batchspawner), within `start_timeout`.
    Port,
    /// The readiness probe `GET <prefix>api`, within `http_timeout`.
    Probe,
    /// The proxy route to the server.
    Route,
    /// Recording the server's state or address in the database.
    Record,
}

/// What went wrong, which decides whether a retry may help.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Cause {
    /// Stopped on request (a cancel, a stop while starting).
    Cancelled,
    /// A step's time limit passed.
    TimedOut,
    /// The server's process ended while it started.
    Exited,
    /// The spawner refused or failed; `retry`: its error says a retry may go otherwise.
    Spawner { retry: bool },
    /// The system cannot take a start now (its controller or login nodes do not answer, a
    /// maintenance): a retry later may work; the API answers 503.
    Unavailable,
    /// The proxy did not take the route.
    Proxy,
    /// The hub's own fault (the database); the details are in its log.
    Internal,
}

/// A failed spawn. Its `Display` is the message for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpawnFailure {
    step: SpawnStep,
    cause: Cause,
    message: String,
}

/// What users see for the hub's own faults; the cause goes to the log.
const INTERNAL_MESSAGE: &str = "internal error in the hub (see its log)";

impl SpawnFailure {
    fn new(step: SpawnStep, cause: Cause, message: String) -> Self {
        Self {
            step,
            cause,
            message,
        }
    }

    /// Cancelled during `step` ("cancelled while waiting to start" in the queue).
    pub fn cancelled(step: SpawnStep) -> Self {
        let message = if step == SpawnStep::Queue {
            "cancelled while waiting to start"
        } else {
            "cancelled"
        };
        Self::new(step, Cause::Cancelled, message.to_owned())
    }

    /// `step`'s time limit passed; `message` says which ("Server at … didn't start in N
    /// seconds").
    pub fn timed_out(step: SpawnStep, message: String) -> Self {
        Self::new(step, Cause::TimedOut, message)
    }

    /// The server's process ended during `step`; `message` says why, with its last output.
    pub fn exited(step: SpawnStep, message: String) -> Self {
        Self::new(step, Cause::Exited, message)
    }

    /// The spawner's start failed. A retry may help when the system did not answer or
    /// failed (an I/O error, a rate limit); not when the request itself cannot work (no
    /// account, invalid options, the spawner's configuration) or when the spawner gave its
    /// reason (Slurm refused the job, the job ended; a transient reason says "try again" in
    /// its own words).
    pub fn spawner(error: &SpawnError) -> Self {
        if let SpawnError::Unavailable { .. } = error {
            return Self::new(SpawnStep::Start, Cause::Unavailable, error.to_string());
        }
        let retry = match error {
            SpawnError::Io { .. } | SpawnError::TooSoon { .. } | SpawnError::Unavailable { .. } => {
                true
            }
            SpawnError::NoUnixAccount { .. }
            | SpawnError::InvalidOptions(_)
            | SpawnError::Config(_)
            | SpawnError::Failed(_) => false,
        };
        Self::new(
            SpawnStep::Start,
            Cause::Spawner { retry },
            error.to_string(),
        )
    }

    /// The proxy did not take the server's route.
    pub fn proxy(error: impl fmt::Display) -> Self {
        Self::new(
            SpawnStep::Route,
            Cause::Proxy,
            format!("could not add the proxy route: {error}"),
        )
    }

    /// The hub's own fault in `step`: logged here, a plain message for the user.
    pub fn internal(step: SpawnStep, error: impl fmt::Display) -> Self {
        tracing::error!(error = %error, ?step, "spawn: internal error");
        Self::new(step, Cause::Internal, INTERNAL_MESSAGE.to_owned())
    }

    /// The system could not take the start now (the API answers 503, as for a refusal).
    pub fn is_unavailable(&self) -> bool {
        self.cause == Cause::Unavailable
    }

    /// The step that failed.
    pub fn step(&self) -> SpawnStep {
        self.step
    }

    /// Whether starting again may succeed without anyone changing anything: a time limit, the
    /// proxy or the hub's database may do better next time; a crashing server, a refused
    /// request or a cancel will not.
    pub fn retry_may_help(&self) -> bool {
        match self.cause {
            Cause::TimedOut | Cause::Proxy | Cause::Internal | Cause::Unavailable => true,
            Cause::Spawner { retry } => retry,
            Cause::Cancelled | Cause::Exited => false,
        }
    }

    /// Whether the spawn was stopped on request rather than failing.
    pub fn is_cancel(&self) -> bool {
        self.cause == Cause::Cancelled
    }

    /// The message for the user.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for SpawnFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_messages_and_retry_decisions() {
        // (failure, step, may a retry help, the message users see)
        let io = SpawnError::Io {
            action: "run sbatch".into(),
            source: std::io::Error::other("resource temporarily unavailable"),
        };
        let cases = [
            (
                SpawnFailure::cancelled(SpawnStep::Queue),
                SpawnStep::Queue,
                false,
                "cancelled while waiting to start",
            ),
            (
                SpawnFailure::cancelled(SpawnStep::Probe),
                SpawnStep::Probe,
                false,
                "cancelled",
            ),
            (
                SpawnFailure::timed_out(
                    SpawnStep::Start,
                    "Server at /user/a/ didn't start in 60 seconds".into(),
                ),
                SpawnStep::Start,
                true,
                "Server at /user/a/ didn't start in 60 seconds",
            ),
            (
                SpawnFailure::exited(
                    SpawnStep::Probe,
                    "the server exited before it answered: exit status 1".into(),
                ),
                SpawnStep::Probe,
                false,
                "the server exited before it answered: exit status 1",
            ),
            (
                SpawnFailure::spawner(&io),
                SpawnStep::Start,
                true,
                "could not run sbatch: resource temporarily unavailable",
            ),
            (
                SpawnFailure::spawner(&SpawnError::NoUnixAccount { user: "a".into() }),
                SpawnStep::Start,
                false,
                "user a has no Unix account on this machine",
            ),
            (
                SpawnFailure::spawner(&SpawnError::Config("no cmd".into())),
                SpawnStep::Start,
                false,
                "spawner configuration: no cmd",
            ),
            (
                SpawnFailure::spawner(&SpawnError::Failed(
                    "Slurm refused the job: Invalid account".into(),
                )),
                SpawnStep::Start,
                false,
                "Slurm refused the job: Invalid account",
            ),
            (
                SpawnFailure::spawner(&SpawnError::TooSoon {
                    message: "one estimate every 2 seconds".into(),
                    retry_after: std::time::Duration::from_secs(2),
                }),
                SpawnStep::Start,
                true,
                "one estimate every 2 seconds",
            ),
            (
                SpawnFailure::spawner(&SpawnError::Unavailable {
                    system: "remote".into(),
                    message: "On remote: no login node answers".into(),
                }),
                SpawnStep::Start,
                true,
                "On remote: no login node answers",
            ),
            (
                SpawnFailure::proxy("connection refused"),
                SpawnStep::Route,
                true,
                "could not add the proxy route: connection refused",
            ),
            (
                SpawnFailure::internal(SpawnStep::Record, "database is locked"),
                SpawnStep::Record,
                true,
                "internal error in the hub (see its log)",
            ),
        ];
        for (failure, step, retry, message) in cases {
            assert_eq!(failure.step(), step, "{failure:?}");
            assert_eq!(failure.retry_may_help(), retry, "{failure:?}");
            assert_eq!(failure.message(), message);
            assert_eq!(failure.to_string(), message);
            assert_eq!(
                failure.is_cancel(),
                message.starts_with("cancelled"),
                "{failure:?}"
            );
        }
    }
}
