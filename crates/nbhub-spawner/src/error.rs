//! The one error type of spawners. Its messages end up on the user's spawn page, so they say
//! what happened in words a user can act on (or forward to an admin), never a bare errno.

use crate::options::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The account to run the server as does not exist.
    #[error("user {user} has no Unix account on this machine")]
    NoUnixAccount { user: String },

    /// The submitted options did not validate.
    #[error("invalid options: {}", FieldError::join(.0))]
    InvalidOptions(Vec<FieldError>),

    /// The spawner is configured in a way that cannot work (an admin's problem).
    #[error("spawner configuration: {0}")]
    Config(String),

    /// A system call failed; `action` says what we were doing.
    #[error("could not {action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },

    /// The server could not be started or stopped, for the reason given.
    #[error("{0}")]
    Failed(String),

    /// The system the server would run on cannot take a start now (its controller or login
    /// nodes do not answer, an admin put it in maintenance, a maintenance reservation overlaps
    /// the run time asked for); servers already running there are not affected. The hub
    /// answers 503; a retry later may work.
    #[error("{message}")]
    Unavailable { system: String, message: String },

    /// Asked again too soon (estimates are rate-limited per user); the hub answers 429.
    #[error("{message}")]
    TooSoon {
        message: String,
        retry_after: std::time::Duration,
    },
}

impl SpawnError {
    pub(crate) fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            action: action.into(),
            source,
        }
    }
}
