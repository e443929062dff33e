//! The spawner configuration, defined once here and used as it is by the hub's config file:
//! `[spawner]` holds what every spawner shares (JupyterHub's `Spawner` traits), `[local]` and
//! `[slurm]` each spawner's own keys.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secs;
use crate::Timeouts;

/// Which spawner runs servers (`[spawner] kind`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SpawnerKind {
    /// A process on this machine.
    #[default]
    Local,
    /// A Slurm batch job on a compute node.
    Slurm,
}

impl SpawnerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SpawnerKind::Local => "local",
            SpawnerKind::Slurm => "slurm",
        }
    }
}

/// JupyterHub's `LocalProcessSpawner.env_keep` default: variables passed on from the hub's
/// own environment.
pub const DEFAULT_ENV_KEEP: &[&str] = &[
    "PATH",
    "PYTHONPATH",
    "CONDA_ROOT",
    "CONDA_DEFAULT_ENV",
    "VIRTUAL_ENV",
    "LANG",
    "LC_ALL",
    "LD_LIBRARY_PATH",
    "JUPYTERHUB_SINGLEUSER_APP",
];

/// `[spawner]`: what every spawner shares.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpawnerConfig {
    pub kind: SpawnerKind,
    /// The single-user server command; one string is one program name (never split).
    #[serde(deserialize_with = "secs::one_or_many::deserialize")]
    pub cmd: Vec<String>,
    /// More arguments, e.g. `["--allow-root"]` (jupyter_server refuses root without it).
    pub args: Vec<String>,
    /// Variables passed on from the hub's environment.
    pub env_keep: Vec<String>,
    /// Extra variables for every server, applied last (they override everything else).
    pub environment: BTreeMap<String, String>,
    /// `JUPYTERHUB_ROOT_DIR`; `{username}` is replaced. Empty: the home directory.
    pub notebook_dir: String,
    /// `JUPYTERHUB_DEFAULT_URL`, e.g. `/lab`; `{username}` is replaced. Empty: the server's.
    pub default_url: String,
    /// The Unix account a user's servers run as (switching users, or Slurm jobs);
    /// `{username}` is replaced by the hub user's name, e.g. `"hpc-{username}"`.
    pub unix_user: String,
    /// Seconds a start may take once the server's process runs (a batch job's queue wait
    /// does not count).
    pub start_timeout: u64,
    /// Seconds the server may take to answer HTTP after it started.
    pub http_timeout: u64,
    /// Seconds between checks that running servers are still alive.
    pub poll_interval: u64,
    /// JupyterHub 5.2's `group_overrides`: `[spawner.group_overrides.NAME]` with `groups` and
    /// `spawner_override`, applied in the order of the names to members of any of the groups.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub group_overrides: BTreeMap<String, crate::GroupOverride>,
    /// JupyterHub 5.3's declarative `apply_user_options`: user option name → the setting it
    /// sets (`default_url`, `notebook_dir`, `args`, `extra_sbatch`, `environment.NAME`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub apply_user_options: BTreeMap<String, String>,
}

impl Default for SpawnerConfig {
    fn default() -> Self {
        let t = Timeouts::default();
        Self {
            kind: SpawnerKind::Local,
            cmd: vec!["jupyterhub-singleuser".to_owned()],
            args: Vec::new(),
            env_keep: DEFAULT_ENV_KEEP.iter().map(|s| (*s).to_owned()).collect(),
            environment: BTreeMap::new(),
            notebook_dir: String::new(),
            default_url: String::new(),
            unix_user: "{username}".to_owned(),
            start_timeout: t.start_timeout.as_secs(),
            http_timeout: t.http_timeout.as_secs(),
            poll_interval: t.poll_interval.as_secs(),
            group_overrides: BTreeMap::new(),
            apply_user_options: BTreeMap::new(),
        }
    }
}

impl SpawnerConfig {
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            start_timeout: Duration::from_secs(self.start_timeout),
            http_timeout: Duration::from_secs(self.http_timeout),
            poll_interval: Duration::from_secs(self.poll_interval.max(1)),
        }
    }

    /// The Unix account `user`'s servers run as.
    pub fn unix_user_for(&self, user: &str) -> String {
        self.unix_user.replace("{username}", user)
    }

    /// Checks serde cannot express; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.unix_user.trim().is_empty() {
            return Err(
                "key `spawner.unix_user`: must name an account, e.g. \"{username}\"".into(),
            );
        }
        if self.cmd.first().is_none_or(|c| c.trim().is_empty()) {
            return Err("key `spawner.cmd`: must name the single-user server program, e.g. [\"jupyterhub-singleuser\"]".into());
        }
        for (name, go) in &self.group_overrides {
            let key = format!("spawner.group_overrides.{name}");
            if go.groups.is_empty() {
                return Err(format!("key `{key}.groups`: name the groups it is for"));
            }
            go.spawner_override
                .validate(&format!("{key}.spawner_override"))?;
        }
        crate::validate_apply_user_options(&self.apply_user_options)?;
        if self.start_timeout == 0 || self.http_timeout == 0 {
            return Err(
                "key `spawner.start_timeout`/`spawner.http_timeout`: must be at least 1 second"
                    .into(),
            );
        }
        Ok(())
    }

    /// The variables every spawner derives from this config: `JUPYTERHUB_ROOT_DIR` and
    /// `JUPYTERHUB_DEFAULT_URL` with `{username}` filled in.
    pub fn url_env(&self, user: &str) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let fill = |template: &str| template.replace("{username}", user);
        if !self.notebook_dir.is_empty() {
            env.insert("JUPYTERHUB_ROOT_DIR".to_owned(), fill(&self.notebook_dir));
        }
        if !self.default_url.is_empty() {
            env.insert("JUPYTERHUB_DEFAULT_URL".to_owned(), fill(&self.default_url));
        }
        env
    }

    /// The kept variables of the hub's own environment (never the proxy's admin token).
    pub fn kept_env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for key in &self.env_keep {
            if key == "CONFIGPROXY_AUTH_TOKEN" {
                tracing::warn!("env_keep lists CONFIGPROXY_AUTH_TOKEN; not passing it on");
                continue;
            }
            if let Some(value) = std::env::var_os(key).and_then(|v| v.into_string().ok()) {
                env.insert(key.clone(), value);
            }
        }
        env
    }

    /// This section as commented TOML with every key at its value (for `generate-config`).
    pub fn to_commented_toml(&self) -> String {
        let list = |v: &[String]| format!("{v:?}");
        format!(
            r#"[spawner]
# What every spawner shares. kind: local (a process on this machine, see [local]) |
# slurm (a batch job on a compute node, see [slurm]).
kind = "{kind}"
# The single-user server command and extra arguments.
cmd = {cmd}
args = {args}
# Variables passed on from the hub's environment.
env_keep = {env_keep}
# Extra variables for every server, e.g. {{ OMP_NUM_THREADS = "1" }}.
environment = {{}}
# The server's root directory ({{username}} is replaced); "" = home directory.
notebook_dir = "{notebook_dir}"
# Where users land, e.g. "/lab"; "" = the server's default.
default_url = "{default_url}"
# The Unix account a user's servers run as ({{username}} is the hub user's name).
unix_user = "{unix_user}"
# Seconds: a start may take this long once the server's process runs (for Slurm: once the job
# left the queue); then the server must answer HTTP within http_timeout; running servers are
# checked every poll_interval.
start_timeout = {start_timeout}
http_timeout = {http_timeout}
poll_interval = {poll_interval}
# Other settings for members of some groups (JupyterHub 5.2's group_overrides), applied in the
# order of their names; then the user options apply_user_options names set settings of the
# start (JupyterHub 5.3; a user option may set default_url, notebook_dir, args, extra_sbatch
# or environment.NAME). Settable per group: environment (merged), default_url, notebook_dir,
# args, extra_sbatch (Slurm). Who may use which partitions is [[slurm.allow]]'s. E.g.:
# apply_user_options = {{ start_in = "default_url", threads = "environment.OMP_NUM_THREADS" }}
# [spawner.group_overrides.01-gpu-users]
# groups = ["gpu-users"]
# spawner_override = {{ environment = {{ CUDA_CACHE_MAXSIZE = "1073741824" }}, extra_sbatch = ["--qos=gpu"] }}
"#,
            kind = self.kind.as_str(),
            cmd = list(&self.cmd),
            args = list(&self.args),
            env_keep = list(&self.env_keep),
            notebook_dir = self.notebook_dir,
            default_url = self.default_url,
            unix_user = self.unix_user,
            start_timeout = self.start_timeout,
            http_timeout = self.http_timeout,
            poll_interval = self.poll_interval,
        )
    }
}

/// `[local]`: the local process spawner's own keys.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LocalConfig {
    /// Run servers as the user's Unix account (needs a root hub). With `false` they run as the
    /// hub's own account, each in `<data_dir>/homes/<name>` (demos, tests).
    pub switch_user: bool,
    /// The address servers listen on; `""` or `0.0.0.0` means all interfaces.
    pub ip: String,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            switch_user: true,
            ip: "127.0.0.1".to_owned(),
        }
    }
}

impl LocalConfig {
    /// This section as commented TOML (for `generate-config`).
    pub fn to_commented_toml(&self) -> String {
        format!(
            r#"[local]
# The local spawner ([spawner] kind = "local"). Run servers as the user's Unix account (needs a
# root hub); false: as the hub's own user, each in data_dir/homes/<name> (demos, tests).
switch_user = {switch_user}
# The address servers listen on.
ip = "{ip}"
"#,
            switch_user = self.switch_user,
            ip = self.ip,
        )
    }
}
