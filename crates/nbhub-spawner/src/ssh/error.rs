//! [`SshError`]: what went wrong on the way to a login node, typed so that a caller can tell
//! "try again later" (no login node answered) from "an admin must act" (host key, credentials,
//! configuration).

use crate::SpawnError;

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// No login node of the system answered (refused, timed out, closed the connection).
    #[error("{message}")]
    Unreachable { system: String, message: String },

    /// A login node showed a host key that the site's known_hosts file does not hold for it.
    #[error("the host key of login node {host} does not match the known_hosts file: {message}")]
    HostKey { host: String, message: String },

    /// The login node refused the hub's key or certificate for `user`.
    #[error("login node {host} refused the hub's credentials for {user}: {message}")]
    Auth {
        host: String,
        user: String,
        message: String,
    },

    /// A command or a control request took longer than it may.
    #[error("{system}: {what} did not finish within {secs} s")]
    Timeout {
        system: String,
        what: String,
        secs: u64,
    },

    /// A local system call failed (running ssh or ssh-keygen, a state file).
    #[error("could not {action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },

    /// The configuration cannot work (a missing key file, an unusable account name …).
    #[error("{0}")]
    Config(String),

    /// An argument no command can carry (a NUL byte), or a forward that cannot be set up.
    #[error("{0}")]
    Failed(String),
}

impl SshError {
    pub(crate) fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            action: action.into(),
            source,
        }
    }
}

impl From<SshError> for SpawnError {
    fn from(e: SshError) -> Self {
        match e {
            SshError::Unreachable { system, message } => Self::Unavailable { system, message },
            SshError::Timeout { ref system, .. } => Self::Unavailable {
                system: system.clone(),
                message: e.to_string(),
            },
            SshError::Config(message) => Self::Config(message),
            SshError::Io { action, source } => Self::Io { action, source },
            e @ (SshError::HostKey { .. } | SshError::Auth { .. } | SshError::Failed(_)) => {
                Self::Failed(e.to_string())
            }
        }
    }
}
