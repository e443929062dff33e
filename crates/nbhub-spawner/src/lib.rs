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
//!   [`Started`], [`PollStatus`], [`SpawnerState`], [`SpawnUpdate`], [`FormContext`],
//!   [`Estimate`], [`ProgressEvent`], [`Timeouts`]);
//! - `error.rs`: [`SpawnError`], whose messages are written for the user who clicked "start";
//! - `options.rs`: options forms ([`FormSpec`], [`FormField`], [`FieldKind`]) and their
//!   validation into [`ValidatedOptions`] or [`FieldError`]s, plus Slurm-style durations;
//! - `config.rs`: the configuration sections, defined once and used as they are by the hub's
//!   config file: [`SpawnerConfig`] (`[spawner]`, shared), [`LocalConfig`] (`[local]`);
//! - `accounts.rs`: Unix account and group lookups (NSS: SSSD or LDAP at real sites) off the
//!   runtime's workers, cached for a minute;
//! - `local.rs`: [`LocalSpawner`] (`[spawner] kind = "local"`): a process on this machine, in
//!   its own session and process group, as the user's Unix account when the hub runs as root;
//!   `local/unix.rs` holds the blocking account lookup, the privilege drop and `/proc` reading;
//! - `slurm.rs`: the Slurm spawner (`kind = "slurm"`, `[slurm]`: [`SlurmConfig`]): submit, wait,
//!   poll, stop; beside it under `slurm/`: `config.rs` (the `[slurm]` section), `commands.rs`
//!   (running Slurm's commands), `parse.rs` (what they print, Slurm's times), `script.rs` (sbatch
//!   arguments, the job script), `tracker.rs` (one `squeue` per interval for every job),
//!   `form.rs` (the per-user form and its validation), `estimate.rs` (`sbatch --test-only`
//!   estimates) and `setup.rs` (the start-up checks);
//! - `systems.rs`: [`SystemsSpawner`] (`kind = "slurm"` with `[[systems]]`: [`SystemConfig`]):
//!   several Slurm systems behind one form, each call sent to the system it is about;
//! - `ssh.rs`: the SSH transport (`[systems.ssh]`: [`SshConfig`]; [`SshTransport`]): commands
//!   and tunnels on a system's login nodes, over one connection per account;
//! - `redact.rs`: [`mask_secrets`], which every quote of a server's log goes through;
//! - `secs.rs`: serde helpers for durations in seconds and "one string or a list".

mod accounts;
mod config;
mod error;
mod local;
mod options;
mod overrides;
mod redact;
mod secs;
mod slurm;
mod ssh;
mod systems;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;

pub use config::{LocalConfig, SpawnerConfig, SpawnerKind, DEFAULT_ENV_KEEP};
pub use error::SpawnError;
pub use local::{LocalSpawner, LocalState};
pub use options::{
    format_slurm_duration, parse_clock_duration, parse_slurm_duration, Choice, FieldError,
    FieldKind, FieldLimits, FormField, FormSpec, MaxBy, ValidatedOptions, VisibleWhen, CLOCK_FORMS,
};
pub use overrides::{overrides_for, validate_apply_user_options, GroupOverride, SpawnerOverride};
pub use redact::mask_secrets;
pub use slurm::{
    job_script_error, AllowRule, ContainerConfig, ContainerRuntime, CustomField, CustomType,
    CustomValue, DirectoryConfig, EnvironmentConfig, InterfaceConfig, PartitionConfig, SlurmConfig,
    SlurmSpawner, SlurmState,
};
pub use ssh::{
    command_line, quote, Forward, NulInArgument, RemoteOutput, SshConfig, SshError, SshTransport,
    Who,
};
pub use systems::{
    commented_systems_example, is_system_name, validate_systems, Reach, SystemConfig,
    SystemsSpawner, Transport,
};

/// A boxed future, so that [`Spawner`] stays usable as `dyn Spawner`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One way of running single-user servers (local processes, Slurm jobs, …).
///
/// A start has up to three stages, and the hub times them separately: the launch (a process
/// started, or a job submitted: [`SpawnRequest::persist`] hands the hub the state to store at
/// once, so that a job waiting in a queue is never forgotten), the wait until the server's
/// process runs somewhere (a batch queue; not counted against `start_timeout`: the spawner
/// reports [`SpawnUpdate::Running`] when it ends), then the server's own start-up. When the
/// hub gives up or the user cancels, the `start` future is dropped and [`Spawner::stop`] is
/// called with the last persisted state.
pub trait Spawner: Send + Sync {
    /// The `[spawner] kind` this is, e.g. `"local"`.
    fn kind(&self) -> &'static str;

    /// Launches a server and returns where it will listen (`port` 0: the server reports its
    /// port itself, as batchspawner's wrapper does). Returning does not mean the server is
    /// ready: the hub then probes `GET <service_prefix>api` (docs/wire.md#readiness-probe)
    /// until [`Timeouts::http_timeout`], polling meanwhile to notice a server that died.
    fn start<'a>(&'a self, req: &'a SpawnRequest) -> BoxFuture<'a, Result<Started, SpawnError>>;

    /// Takes up a start that an earlier run of the hub began (the state was persisted, the
    /// server never became ready): waits until it runs and says where, as `start` would.
    fn resume<'a>(
        &'a self,
        state: &'a SpawnerState,
        updates: &'a Updates,
    ) -> BoxFuture<'a, Result<Started, SpawnError>>;

    /// Whether the server described by `state` still runs. Works from the state alone, so it
    /// answers for servers started by an earlier run of the hub. Must be cheap: the hub calls
    /// it often while a server starts (batch backends answer from a shared, batched query).
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

    /// The jobs in the queue whose tag starts with `prefix` and that none of `tracked` (the
    /// states the hub recorded) describes, found in one query: what a hub killed while it
    /// submitted (the job there, its id not recorded yet) left behind. The default, for a
    /// spawner whose servers die with the hub or that tags nothing: none.
    fn untracked_jobs<'a>(
        &'a self,
        prefix: &'a str,
        tracked: &'a [SpawnerState],
    ) -> BoxFuture<'a, Result<Vec<TaggedJob>, SpawnError>> {
        let _ = (prefix, tracked);
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Stops the server: gracefully first, forcibly once `timeout` has passed. Stopping a
    /// server that already exited (or a job still queued) is not an error.
    fn stop<'a>(
        &'a self,
        state: &'a SpawnerState,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), SpawnError>>;

    /// The options form to show `ctx.user` before starting, if this spawner has one. Built
    /// per user (accounts, allowed partitions) from cached live data.
    fn options_form<'a>(&'a self, ctx: &'a FormContext) -> BoxFuture<'a, Option<FormSpec>> {
        let _ = ctx;
        Box::pin(async { None })
    }

    /// Validates options a user submitted (form or REST API body; `null` means none). Errors
    /// stay per field. The validated options are what the hub stores and passes back in
    /// [`SpawnRequest::user_options`].
    fn validate_options<'a>(
        &'a self,
        ctx: &'a FormContext,
        options: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<ValidatedOptions, Vec<FieldError>>> {
        Box::pin(async move {
            self.options_form(ctx)
                .await
                .unwrap_or_default()
                .validate(options)
        })
    }

    /// When a server with these (validated) options would start, without starting it
    /// (Slurm: `sbatch --test-only`). `None`: this spawner cannot tell.
    fn estimate<'a>(
        &'a self,
        ctx: &'a FormContext,
        options: &'a ValidatedOptions,
    ) -> BoxFuture<'a, Option<Result<Estimate, SpawnError>>> {
        let _ = (ctx, options);
        Box::pin(async { None })
    }

    /// Facts about a server for pages and the REST server model (Slurm: job id, partition,
    /// nodes, node list, end time), from its state. Shown under the key [`Spawner::kind`].
    /// Keys the pages read: `end_time` (RFC 3339: the time left counts down to it) and
    /// `pending` (while the server waits in a batch queue: why, and the estimated start, in
    /// the user's words; the pages then say "Pending" instead of "Starting").
    fn describe(&self, state: &SpawnerState) -> Option<serde_json::Value> {
        let _ = state;
        None
    }

    /// The timeouts and poll interval the hub should apply to this spawner's servers.
    fn timeouts(&self) -> Timeouts;

    /// A signal that changes whenever the spawner learned by itself that servers may have
    /// ended (Slurm: its tracker saw a job leave the queue). The hub then polls its running
    /// servers at once (answered from what the spawner already knows) instead of at its next
    /// `poll_interval`, so a cancelled or timed-out job is marked stopped within seconds.
    /// `None` (the default): the spawner learns nothing between the hub's polls.
    fn ended_signal(&self) -> Option<watch::Receiver<u64>> {
        None
    }

    /// The last lines a server printed (its log), with secrets masked ([`mask_secrets`]),
    /// for its owner to read after it ended. `None`: nothing to show.
    fn last_output(&self, state: &SpawnerState) -> Option<String> {
        let _ = state;
        None
    }

    /// The systems this spawner runs servers on, in the order the form offers them, with
    /// what the spawner itself sees of their health. Empty (the default): one system that
    /// has no name, and the form shows no picker.
    fn systems(&self) -> Vec<SystemInfo> {
        Vec::new()
    }

    /// The system a server runs on (from its state); `None` for a spawner without systems.
    fn system_of(&self, state: &SpawnerState) -> Option<String> {
        let _ = state;
        None
    }

    /// Whether a start with these (validated) options may go ahead now on its system: its
    /// controller and login nodes answer, not every partition is down, no maintenance
    /// reservation overlaps the run time asked for. `Err` is a [`SpawnError::Unavailable`]
    /// naming the system (the hub answers 503). Default: always.
    fn admit<'a>(
        &'a self,
        ctx: &'a FormContext,
        options: &'a ValidatedOptions,
    ) -> BoxFuture<'a, Result<(), SpawnError>> {
        let _ = (ctx, options);
        Box::pin(async { Ok(()) })
    }

    /// Where the hub and the proxy reach a server that listens at `host:port` as the job
    /// reported it. A system whose compute nodes the hub cannot reach (`reach = "tunnel"`)
    /// opens a forward through its login node and answers with the local end; the state
    /// records it, so that [`Spawner::restore`] can open it again. Default: `host:port`.
    fn reach<'a>(
        &'a self,
        state: &'a SpawnerState,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, Result<Reached, SpawnError>> {
        let _ = state;
        Box::pin(async move {
            Ok(Reached {
                host: host.to_owned(),
                port,
                state: None,
            })
        })
    }

    /// Opens again what a running server needs to be reached (tunnels), after a hub restart
    /// or a dropped connection, before its route is used. `Ok(None)`: nothing changed;
    /// `Ok(Some(r))`: the server is now reached at `r` (the hub moves its route). Default:
    /// nothing to do.
    fn restore<'a>(
        &'a self,
        state: &'a SpawnerState,
    ) -> BoxFuture<'a, Result<Option<Reached>, SpawnError>> {
        let _ = state;
        Box::pin(async { Ok(None) })
    }

    /// The backend's own figures for `/hub/metrics` (Slurm: its poller's), read when
    /// Prometheus asks.
    fn metrics(&self) -> Vec<BackendMetric> {
        Vec::new()
    }

    /// What the batch system's accounting recorded about these jobs of `system` (`""`: a
    /// spawner without systems), for the usage report: one query for all of them (Slurm:
    /// `sacct`). Jobs it does not know are left out. `Ok(None)`: this system keeps no
    /// accounting (the default, for spawners without a batch system).
    fn job_accounting<'a>(
        &'a self,
        system: &'a str,
        job_ids: &'a [String],
    ) -> BoxFuture<'a, Result<Option<Vec<JobAccounting>>, SpawnError>> {
        let _ = (system, job_ids);
        Box::pin(async { Ok(None) })
    }
}

/// One job as the batch system's accounting recorded it (see [`Spawner::job_accounting`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobAccounting {
    pub job_id: String,
    /// The job's state as the batch system names it (`COMPLETED`, `TIMEOUT`, `RUNNING` …).
    pub state: String,
    /// Whether the job is over: only then are the figures final.
    pub ended: bool,
    /// The account it was charged to (`""`: none recorded).
    pub account: String,
    /// The CPUs it held (all nodes together).
    pub cpus: u64,
    /// How long it ran, in seconds.
    pub elapsed_secs: u64,
    /// The GPUs it held (all nodes together).
    pub gpus: u64,
}

/// One system a spawner runs servers on (see [`Spawner::systems`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemInfo {
    /// The value of `user_options.system`; in URLs and metric labels.
    pub name: String,
    pub title: String,
    pub description: String,
    /// What the spawner itself last saw.
    pub health: Health,
}

/// A system's health as the spawner sees it (an admin's maintenance notice is the hub's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Health {
    #[default]
    Ok,
    /// Its controller or every login node did not answer the last time it was asked.
    Unreachable { reason: String },
    /// It answers, but cannot run servers now (every partition down or drained).
    Down { reason: String },
}

/// Where a server is reached (see [`Spawner::reach`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Reached {
    pub host: String,
    pub port: u16,
    /// A new state to persist (it records the tunnel), if it changed.
    pub state: Option<SpawnerState>,
}

/// One metric family of a backend, in Prometheus' terms.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendMetric {
    /// Counters end in `_total`.
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
    /// Label pairs and the value of each series.
    pub samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// Who a form is for: the options a user may pick depend on their account and groups.
#[derive(Clone, Debug, Default)]
pub struct FormContext {
    /// The hub user's name.
    pub user: String,
    /// The Unix account servers run as (usually `user`).
    pub unix_user: String,
    /// The user's hub groups.
    pub groups: Vec<String>,
    pub admin: bool,
    /// `""` for the default server.
    pub server_name: String,
    /// What the user chose last time for this server (the form opens with it).
    pub last_options: Option<ValidatedOptions>,
}

impl FormContext {
    pub fn new(user: &str) -> Self {
        Self {
            user: user.to_owned(),
            unix_user: user.to_owned(),
            ..Self::default()
        }
    }
}

/// What a spawner can say about when a server would start (see [`Spawner::estimate`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Estimate {
    /// Whether the request can run at all.
    pub fits: bool,
    /// For the user: "would start now", "estimated start 14:05 on node[1-2]", or the reason
    /// it cannot run.
    pub message: String,
    /// The estimated start (RFC 3339, the scheduler's local time as it prints it), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// The nodes it would run on, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<String>,
}

/// What a spawner tells the hub while a start is under way.
#[derive(Clone, Debug, PartialEq)]
pub enum SpawnUpdate {
    /// A line for the spawn-pending page.
    Progress(ProgressEvent),
    /// A state to persist now (e.g. the job id, the moment `sbatch` answered).
    State(SpawnerState),
    /// The server's process now runs (a job left the queue): `start_timeout` starts now.
    Running,
}

/// The channel a start reports on. Nobody listening is fine.
#[derive(Clone, Debug, Default)]
pub struct Updates(Option<UnboundedSender<SpawnUpdate>>);

impl Updates {
    pub fn new(tx: UnboundedSender<SpawnUpdate>) -> Self {
        Self(Some(tx))
    }

    fn send(&self, update: SpawnUpdate) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(update);
        }
    }

    /// A progress line (0–100 when the spawner can tell).
    pub fn progress(&self, progress: Option<u8>, message: impl Into<String>) {
        self.send(SpawnUpdate::Progress(ProgressEvent {
            progress,
            message: message.into(),
        }));
    }

    /// Hands the hub a state to persist at once.
    pub fn persist(&self, state: &SpawnerState) {
        self.send(SpawnUpdate::State(state.clone()));
    }

    /// Says the server's process runs now (the queue wait is over).
    pub fn running(&self) {
        self.send(SpawnUpdate::Running);
    }
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
    /// Where progress, states to persist and "running now" go (see [`SpawnUpdate`]).
    pub updates: Updates,
    /// A tag unique to this hub and spawn, which the spawner puts on what it starts (Slurm:
    /// the job's `--comment`), so that a hub killed before it recorded the job finds it in
    /// the queue ([`Spawner::untracked_jobs`]). `""`: none.
    pub tag: String,
    /// Settings of this start that differ from the config (`group_overrides`,
    /// `apply_user_options`), applied after it.
    pub overrides: SpawnerOverride,
}

/// A job in the queue that carries a spawn's tag ([`SpawnRequest::tag`]) but is not one of
/// the states the hub recorded.
#[derive(Clone, Debug)]
pub struct TaggedJob {
    /// The tag it carries.
    pub tag: String,
    /// The job's id, for logs.
    pub id: String,
    /// Enough to stop it with [`Spawner::stop`].
    pub state: SpawnerState,
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
        self.updates.progress(progress, message);
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
    /// Not running yet: a job waiting in the queue (`message` in the user's words, e.g.
    /// "Pending: waiting for resources").
    Pending {
        message: String,
    },
    /// It is gone; `reason` is written for the user (exit status, last lines of its log, or
    /// the batch system's reason).
    Exited {
        reason: String,
    },
    /// The spawner could not find out (the batch controller did not answer). Changes
    /// nothing: no server is given up for it.
    Unknown {
        reason: String,
    },
}

/// A spawner's record of one server, opaque to the hub, stored as JSON (JupyterHub's
/// `spawners.state` column). `null` means "nothing running".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SpawnerState(pub serde_json::Value);

impl SpawnerState {
    /// `null` or `{}`: nothing was started.
    pub fn is_empty(&self) -> bool {
        self.0.is_null() || self.0.as_object().is_some_and(|o| o.is_empty())
    }
}

/// Timeouts of `[spawner]` (seconds in the config file, as JupyterHub's traits).
/// For batch spawners `start_timeout` starts when the job runs, not when it is queued.
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

/// Locks `m`; its data stays consistent even if a holder panicked.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `http://host:port`, bracketing IPv6 addresses.
pub fn http_origin(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("http://[{host}]:{port}")
    } else {
        format!("http://{host}:{port}")
    }
}
