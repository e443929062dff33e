//! PLACEHOLDER until the SSH transport lands (branch i22-ssh): the API the Slurm spawner uses.

use std::path::Path;
use std::time::Duration;

use super::SshConfig;
use crate::SpawnError;

/// Whose connection a command goes over.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Who<'a> {
    User(&'a str),
    Tracking,
}

#[derive(Clone, Debug)]
pub(crate) struct RemoteOutput {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SshError {
    #[error("{message}")]
    Unreachable { system: String, message: String },
}

impl From<SshError> for SpawnError {
    fn from(e: SshError) -> Self {
        match e {
            SshError::Unreachable { system, message } => {
                SpawnError::Unavailable { system, message }
            }
        }
    }
}

pub(crate) struct SshTransport {
    system: String,
}

impl SshTransport {
    pub fn new(system: &str, config: &SshConfig, state_dir: &Path) -> Result<Self, SpawnError> {
        let _ = (config, state_dir);
        Ok(Self {
            system: system.to_owned(),
        })
    }

    fn down(&self) -> SshError {
        SshError::Unreachable {
            system: self.system.clone(),
            message: "not built yet".into(),
        }
    }

    pub async fn run(
        &self,
        who: Who<'_>,
        argv: &[&str],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<RemoteOutput, SshError> {
        let _ = (who, argv, stdin, timeout);
        Err(self.down())
    }

    pub async fn forward_local(
        &self,
        user: &str,
        target_host: &str,
        target_port: u16,
        local_port: u16,
    ) -> Result<u16, SshError> {
        let _ = (user, target_host, target_port, local_port);
        Err(self.down())
    }

    pub async fn forward_remote(
        &self,
        user: &str,
        bind_host: &str,
        remote_port: u16,
        to_host: &str,
        to_port: u16,
    ) -> Result<u16, SshError> {
        let _ = (user, bind_host, remote_port, to_host, to_port);
        Err(self.down())
    }

    pub fn unreachable(&self) -> Option<String> {
        None
    }
}
