//! Spawners start, watch and stop single-user Jupyter servers for nbhub.
//!
//! A [`Spawner`] is the hub's only way to run a server: [`Spawner::start`] launches one and
//! says where it listens, [`Spawner::poll`] tells whether it still runs, [`Spawner::stop`]
//! ends it. Everything a spawner needs to find its server again lives in a serialisable
//! [`SpawnerState`], which the hub persists after every step: a restarted hub polls the saved
//! states and re-adopts the servers that still run. Spawners also describe their options form
//! ([`FormSpec`]) and validate what a user submits ([`Spawner::validate_options`]).
//!
//! This crate has no database or web code; the hub holds spawners as `Arc<dyn Spawner>`.
//!
//! # Layout
//!
//! - this file: the [`Spawner`] trait and the types it exchanges with the hub ([`SpawnRequest`],
//!   [`Started`], [`PollStatus`], [`SpawnerState`], [`ProgressEvent`], [`Timeouts`]);
//! - `error.rs`: [`SpawnError`], whose messages are written for the user who clicked "start";
//! - `options.rs`: options forms ([`FormSpec`], [`FormField`], [`FieldKind`]) and their
//!   validation into [`ValidatedOptions`] or [`FieldError`]s, plus Slurm-style durations;
//! - `local.rs`: [`LocalSpawner`] (`[spawner] kind = "local"`): a process on this machine, in
//!   its own session and process group, as the user's Unix account when the hub runs as root;
//!   `local/unix.rs` holds the account lookup, the privilege drop and `/proc` reading;
//! - `secs.rs`: serde helpers for durations in seconds and "one string or a list".

mod error;
mod local;
mod options;
mod secs;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;

pub use error::SpawnError;
pub use local::{LocalSpawner, LocalSpawnerConfig, LocalState, DEFAULT_ENV_KEEP};
pub use options::{
    format_slurm_duration, parse_slurm_duration, Choice, FieldError, FieldKind, FormField,
    FormSpec, ValidatedOptions,
};

/// A boxed future, so that [`Spawner`] stays usable as `dyn Spawner`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One way of running single-user servers (local processes, Slurm jobs, …).
pub trait Spawner: Send + Sync {
    /// The `[spawner] kind` this is, e.g. `"local"`.
    fn kind(&self) -> &'static str;

    /// Launches a server and returns where it will listen. Returning does not mean the server
    /// is ready: the hub then probes `GET <service_prefix>api` (docs/wire.md#readiness-probe) until
    /// [`Timeouts::http_timeout`], polling meanwhile to notice a server that died.
    fn start<'a>(&'a self, req: &'a SpawnRequest) -> BoxFuture<'a, Result<Started, SpawnError>>;

    /// Whether the server described by `state` still runs. Works from the state alone, so it
    /// answers for servers started by an earlier run of the hub.
    fn poll<'a>(&'a self, state: &'a SpawnerState) -> BoxFuture<'a, PollStatus>;

    /// Polls many servers at once. Backends with a batch query (one `squeue` for all jobs)
    /// override this; the default polls one by one. The answer is in the order of `states`.
    fn poll_all<'a>(&'a self, states: &'a [SpawnerState]) -> BoxFuture<'a, Vec<PollStatus>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(states.len());
            for state in states {
                out.push(self.poll(state).await);
            }
            out
        })
    }

    /// Stops the server: gracefully first, forcibly once `timeout` has passed. Stopping a
    /// server that already exited is not an error.
    fn stop<'a>(
        &'a self,
        state: &'a SpawnerState,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), SpawnError>>;

    /// The options form to show before starting, if this spawner has one.
    fn options_form(&self) -> Option<FormSpec> {
        None
    }

    /// Validates options a user submitted (form or REST API body; `null` means none) against
    /// [`Spawner::options_form`]. The validated options are what the hub stores and passes
    /// back in [`SpawnRequest::user_options`].
    fn validate_options(
        &self,
        options: &serde_json::Value,
    ) -> Result<ValidatedOptions, Vec<FieldError>> {
        self.options_form().unwrap_or_default().validate(options)
    }

    /// The timeouts and poll interval the hub should apply to this spawner's servers.
    fn timeouts(&self) -> Timeouts;
}

/// Everything the hub knows about a server it wants started.
#[derive(Clone, Debug, Default)]
pub struct SpawnRequest {
    /// The hub user's name, e.g. `alice`.
    pub user: String,
    /// The Unix account to run as when switching users (usually the same as `user`).
    pub unix_user: String,
    /// `""` for the default server, else the named server's name.
    pub server_name: String,
    /// The server's URL prefix with leading and trailing `/`: `/user/alice/`.
    pub service_prefix: String,
    /// The environment built by the hub (docs/wire.md#single-user-server-environment: the `JUPYTERHUB_*` variables). The
    /// spawner adds kept variables, `USER`/`HOME`/`SHELL`, `JUPYTERHUB_SERVICE_URL` (with the
    /// address it chose), `JUPYTERHUB_ROOT_DIR`/`JUPYTERHUB_DEFAULT_URL` from its config, and
    /// finally `[spawner] environment`.
    pub env: BTreeMap<String, String>,
    /// The options the user chose, as returned by [`Spawner::validate_options`].
    pub user_options: ValidatedOptions,
    /// Where to send progress messages for the spawn-pending page, if anyone listens.
    pub progress: Option<UnboundedSender<ProgressEvent>>,
}

impl SpawnRequest {
    /// A request for `user`'s server `server_name` with `unix_user = user` and the prefix
    /// `/user/<user>/[<server>/]` (base URL `/`, names not percent-encoded: the hub, which
    /// knows its base URL and escaping, sets the real one).
    pub fn new(user: &str, server_name: &str) -> Self {
        let service_prefix = if server_name.is_empty() {
            format!("/user/{user}/")
        } else {
            format!("/user/{user}/{server_name}/")
        };
        Self {
            user: user.to_owned(),
            unix_user: user.to_owned(),
            server_name: server_name.to_owned(),
            service_prefix,
            ..Self::default()
        }
    }

    /// Sends a progress event; nobody listening is fine.
    pub fn progress(&self, progress: Option<u8>, message: impl Into<String>) {
        if let Some(tx) = &self.progress {
            let _ = tx.send(ProgressEvent {
                progress,
                message: message.into(),
            });
        }
    }
}

/// A progress message for the spawn-pending page (docs/wire.md#progress-event-stream).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressEvent {
    /// 0–100, when the spawner can tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<u8>,
    pub message: String,
}

/// What a successful [`Spawner::start`] returns.
#[derive(Clone, Debug)]
pub struct Started {
    /// Where the hub and the proxy reach the server.
    pub host: String,
    pub port: u16,
    /// To persist, and to hand to [`Spawner::poll`] and [`Spawner::stop`].
    pub state: SpawnerState,
}

impl Started {
    /// `http://host:port` (IPv6 hosts bracketed), the target of the proxy route.
    pub fn url(&self) -> String {
        http_origin(&self.host, self.port)
    }
}

/// Whether a server runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PollStatus {
    Running,
    /// It is gone; `reason` is written for the user (exit status, last lines of its log, or
    /// the batch system's reason).
    Exited {
        reason: String,
    },
}

/// A spawner's record of one server, opaque to the hub, stored as JSON (JupyterHub's
/// `spawners.state` column). `null` means "nothing running".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SpawnerState(pub serde_json::Value);

impl SpawnerState {
    pub fn is_empty(&self) -> bool {
        self.0.is_null()
    }
}

/// Timeouts of `[spawner]` (seconds in the config file, as JupyterHub's traits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Timeouts {
    /// How long `start` plus the wait for the server to report may take (60 s).
    #[serde(with = "secs::duration")]
    pub start_timeout: Duration,
    /// How long the readiness probe may take after `start` returned (30 s).
    #[serde(with = "secs::duration")]
    pub http_timeout: Duration,
    /// How often running servers are polled (30 s).
    #[serde(with = "secs::duration")]
    pub poll_interval: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            start_timeout: Duration::from_secs(60),
            http_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_secs(30),
        }
    }
}

/// `http://host:port`, bracketing IPv6 addresses.
pub fn http_origin(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("http://[{host}]:{port}")
    } else {
        format!("http://{host}:{port}")
    }
}
