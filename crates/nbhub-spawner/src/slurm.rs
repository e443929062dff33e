//! The Slurm spawner (`[spawner] kind = "slurm"`): a user's server as a batch job on a compute
//! node.
//!
//! A start submits the job as the user (`sbatch --parsable`, the script on stdin, the server's
//! environment in sbatch's process environment named by `--export`), hands the hub the job id
//! at once, then waits in the shared tracker until the job runs; the job script reports the
//! server's port itself (`POST /hub/api/batchspawner`), so `start` returns port 0.
//!
//! # Layout
//!
//! - `slurm/config.rs`: [`SlurmConfig`], the `[slurm]` section;
//! - `slurm/commands.rs`: running Slurm commands (argument vectors, `SLURM_CONF`, as the user);
//! - `slurm/parse.rs`: what `squeue`, `sinfo`, `scontrol` and `sbatch` print, and Slurm's words
//!   in plain words;
//! - `slurm/script.rs`: sbatch arguments from validated options, and the job script template;
//! - `slurm/tracker.rs`: one `squeue` per poll interval for every job;
//! - `slurm/form.rs`: the per-user form from cached live data, and its validation;
//! - `slurm/estimate.rs`: start estimates (`sbatch --test-only`), one every few seconds per user;
//! - `slurm/session.rs`: environments, interfaces and directories (`[[slurm.environments]]`
//!   …): their form fields, and what they put in the job script;
//! - `slurm/setup.rs`: the setup checks the hub reports at start-up ([`SlurmSpawner::check_setup`],
//!   [`SlurmSpawner::remote_nodes`]).

mod accounting;
mod commands;
mod config;
mod estimate;
mod form;
mod health;
mod parse;
mod script;
pub(crate) mod session;
mod setup;
mod tracker;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::time::Instant;

pub use config::{
    AllowRule, ContainerConfig, ContainerRuntime, CustomField, CustomType, CustomValue,
    DirectoryConfig, EnvironmentConfig, InterfaceConfig, PartitionConfig, SlurmConfig,
};

use crate::config::SpawnerConfig;
use crate::lock;
use crate::{
    BoxFuture, Estimate, FieldError, FormContext, FormSpec, PollStatus, SpawnError, SpawnRequest,
    Spawner, SpawnerState, Started, TaggedJob, Timeouts, Updates, ValidatedOptions,
};
use commands::Commands;
use form::Cluster;
use parse::{controller_unreachable, pending_reason, short_time, slurm_error};
use script::{
    is_env_name, output_file, output_shell_word, render_script, template_reads_token,
    template_writes_log, JobFiles, JobRequest,
};
use tracker::{Tracker, View};

/// How many lines of a job's output are shown after it ended.
const LAST_LINES: usize = 20;

/// What the Slurm spawner records about a job ([`SpawnerState`] as JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlurmState {
    /// The system (`[[systems]] name`) the job runs on; `""` with a plain `[slurm]` section.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub system: String,
    pub job_id: String,
    /// The Unix account the job runs as.
    pub user: String,
    pub partition: String,
    pub nodes: u32,
    /// The job's output file (`%j` filled in).
    pub output: PathBuf,
    /// The address of the node, once it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `reach = "tunnel"`: the forward through the login node the hub reaches the server by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<Tunnel>,
    /// `reach = "tunnel"`: the reverse forward on the login node the job reaches the hub by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_tunnel: Option<HubTunnel>,
}

/// A forward from the hub's machine to a server on a compute node (see [`SlurmState::tunnel`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tunnel {
    /// Where the server listens, as the login node reaches it.
    pub node: String,
    pub port: u16,
    /// The local end (127.0.0.1) the proxy's route points at.
    pub local_port: u16,
}

/// A reverse forward on the login node to the hub's API (see [`SlurmState::hub_tunnel`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubTunnel {
    /// The port on the login node (at `[systems.ssh] hub_tunnel_host`).
    pub port: u16,
    /// The hub's API as the hub's machine reaches it, `host:port`.
    pub hub: String,
}

impl SlurmState {
    pub fn from_state(state: &SpawnerState) -> Option<Self> {
        serde_json::from_value(state.0.clone()).ok()
    }

    pub fn to_state(&self) -> SpawnerState {
        SpawnerState(serde_json::to_value(self).unwrap_or_default())
    }
}

/// Runs single-user servers as Slurm batch jobs.
pub struct SlurmSpawner {
    /// `[[systems]] name`; `""` with a plain `[slurm]` section.
    system: String,
    spawner: SpawnerConfig,
    slurm: SlurmConfig,
    template: String,
    /// The template sends the job's output to its log itself (the built-in one does).
    template_writes_log: bool,
    /// The template reads the API token from a file the hub writes (the built-in one does);
    /// else the token comes in the job's environment.
    template_reads_token: bool,
    commands: Commands,
    tracker: Tracker,
    cluster: Cluster,
    node_addrs: Mutex<HashMap<String, String>>,
    last_estimate: Mutex<HashMap<String, Instant>>,
    /// The system's modules per user, for environments that let users add some.
    module_lists: session::ModuleLists,
    /// `reach = "tunnel"`: the hub reaches servers through the login node, and the jobs reach
    /// the hub through a reverse forward there (at this address).
    tunnel: Option<String>,
    /// Over SSH: each user's home and shell on the system, asked once.
    remote_accounts: Mutex<HashMap<String, (PathBuf, PathBuf)>>,
    /// `reach = "tunnel"`: each user's reverse forward to the hub (one per user and system).
    hub_tunnels: Mutex<HashMap<String, HubTunnel>>,
    /// Over SSH: the last lines of ended jobs, read when a poll first saw them ended (the
    /// hub asks for them synchronously, `Spawner::last_output`).
    remote_tails: Mutex<HashMap<String, String>>,
}

impl SlurmSpawner {
    /// A spawner for `[spawner]` + `[slurm]`. `data_dir` is the hub's (unused for now: jobs
    /// write where `[slurm] output` says).
    pub fn new(
        spawner: SpawnerConfig,
        slurm: SlurmConfig,
        data_dir: &Path,
    ) -> Result<Self, SpawnError> {
        Self::for_system(spawner, slurm, data_dir, "", None, false)
    }

    /// The spawner of the system `name` of `[[systems]]`: its commands run on its login nodes
    /// over SSH when `ssh` is given (else on this machine), and with `tunnel` (`reach =
    /// "tunnel"`, SSH only) the hub and the jobs reach each other through the login node.
    /// SSH keys, certificates and connection sockets live under `data_dir/ssh/<name>`.
    pub fn for_system(
        spawner: SpawnerConfig,
        slurm: SlurmConfig,
        data_dir: &Path,
        name: &str,
        ssh: Option<&crate::SshConfig>,
        tunnel: bool,
    ) -> Result<Self, SpawnError> {
        if tunnel && ssh.is_none() {
            return Err(SpawnError::Config(format!(
                "system {name}: reach = \"tunnel\" needs transport = \"ssh\""
            )));
        }
        let via =
            match ssh {
                Some(config) => commands::Via::Ssh(std::sync::Arc::new(
                    crate::ssh::SshTransport::new(name, config, &data_dir.join("ssh").join(name))?,
                )),
                None => commands::Via::Local,
            };
        let tunnel = ssh.filter(|_| tunnel).map(|c| c.hub_tunnel_host.clone());
        slurm.validate().map_err(SpawnError::Config)?;
        if spawner.cmd.first().is_none_or(|c| c.is_empty()) {
            return Err(SpawnError::Config("cmd must name a program".to_owned()));
        }
        let template = if slurm.job_template_file.is_empty() {
            script::DEFAULT_TEMPLATE.to_owned()
        } else {
            std::fs::read_to_string(&slurm.job_template_file).map_err(|e| {
                SpawnError::Config(format!(
                    "slurm.job_template_file {}: {e}",
                    slurm.job_template_file
                ))
            })?
        };
        let commands = Commands::new(&slurm, via);
        Ok(Self {
            system: name.to_owned(),
            tunnel,
            remote_accounts: Mutex::default(),
            hub_tunnels: Mutex::default(),
            remote_tails: Mutex::default(),
            tracker: Tracker::new(
                commands.clone(),
                Duration::from_secs(slurm.poll_interval.max(1)),
            ),
            cluster: Cluster::new(commands.clone()),
            commands,
            spawner,
            slurm,
            template_writes_log: template_writes_log(&template),
            template_reads_token: template_reads_token(&template),
            template,
            node_addrs: Mutex::default(),
            last_estimate: Mutex::default(),
            module_lists: session::ModuleLists::default(),
        })
    }

    /// This spawner as the system `name` of `[[systems]]`: its jobs' states name it.
    pub fn named(mut self, name: &str) -> Self {
        self.system = name.to_owned();
        self
    }

    /// `[[systems]] name`; `""` with a plain `[slurm]` section.
    pub fn system_name(&self) -> &str {
        &self.system
    }

    pub fn config(&self) -> &SlurmConfig {
        &self.slurm
    }

    /// What a user may pick now, from cached live data.
    async fn choices(&self, ctx: &FormContext) -> form::UserChoices {
        let snapshot = self.cluster.snapshot().await;
        let user = if ctx.unix_user.is_empty() {
            &ctx.user
        } else {
            &ctx.unix_user
        };
        let accounts = self.cluster.slurm_accounts(user).await;
        let groups = self.commands.accounts().group_names(user).await;
        let mut choices = form::user_choices(
            &self.slurm,
            ctx,
            snapshot.as_deref().map_err(ToString::to_string),
            &groups,
            accounts,
        );
        if self.slurm.environments.iter().any(|e| e.add_modules) {
            let mut env = self.spawner.kept_env();
            env.extend(self.spawner.environment.clone());
            choices.modules = Some(self.module_lists.of(&self.commands, user, &env).await);
        }
        choices
    }

    /// The address of `node`, as `[slurm] node_address` says.
    async fn node_address(&self, node: &str) -> String {
        if self.slurm.node_address != "NodeAddr" {
            return self.slurm.node_address.replace("{node}", node);
        }
        if let Some(addr) = lock(&self.node_addrs).get(node) {
            return addr.clone();
        }
        let addr = match self
            .commands
            .query("scontrol", &["show", "node", "-o", node])
            .await
        {
            Ok(o) if o.ok => parse::parse_kv(o.stdout.lines().next().unwrap_or(""))
                .get("NodeAddr")
                .cloned(),
            _ => None,
        };
        match addr {
            Some(a) => {
                lock(&self.node_addrs).insert(node.to_owned(), a.clone());
                a
            }
            None => node.to_owned(),
        }
    }

    /// The server's environment, as the local spawner builds it (kept variables, the hub's,
    /// the user's, config-derived, `environment` last).
    fn environment(
        &self,
        req: &SpawnRequest,
        home: &Path,
        shell: &Path,
    ) -> BTreeMap<String, String> {
        let user = if req.unix_user.is_empty() {
            &req.user
        } else {
            &req.unix_user
        };
        let mut env = self.spawner.kept_env();
        env.extend(req.env.clone());
        env.insert("USER".to_owned(), user.clone());
        env.insert("HOME".to_owned(), home.display().to_string());
        env.insert("SHELL".to_owned(), shell.display().to_string());
        env.extend(self.spawner.url_env(&req.user));
        env.extend(self.spawner.environment.clone());
        req.overrides.apply_env(&mut env, &req.user);
        // The job sets it with the port it picks; SLURM_* are Slurm's own.
        env.remove("JUPYTERHUB_SERVICE_URL");
        env.retain(|k, _| is_env_name(k) && !k.starts_with("SLURM_"));
        env
    }

    /// "On JUWELS: " for a named system, "" otherwise (messages say which system).
    fn on_system(&self) -> String {
        if self.system.is_empty() {
            String::new()
        } else {
            format!("On {}: ", self.system)
        }
    }

    /// The user's home and shell: from this machine's accounts, or over SSH from the system's
    /// (asked once per user: the hub's machine need not know the user).
    async fn account_of(&self, unix_user: &str) -> Result<(PathBuf, PathBuf), SpawnError> {
        if self.commands.ssh().is_none() {
            let member = self.commands.accounts().require(unix_user).await?;
            return Ok((member.account.home.clone(), member.account.shell.clone()));
        }
        if let Some(known) = lock(&self.remote_accounts).get(unix_user) {
            return Ok(known.clone());
        }
        let out = self
            .commands
            .program_as_user(
                unix_user,
                &[
                    "/bin/sh",
                    "-c",
                    "printf '%s\\n%s\\n' \"$HOME\" \"${SHELL:-/bin/sh}\"",
                ],
                None,
            )
            .await?;
        let mut lines = out.stdout.lines();
        let (Some(home), Some(shell)) = (lines.next(), lines.next()) else {
            return Err(SpawnError::Failed(format!(
                "{}could not learn {unix_user}'s home directory: {}",
                self.on_system(),
                out.stderr.trim()
            )));
        };
        if !out.ok || !home.starts_with('/') {
            return Err(SpawnError::Failed(format!(
                "{}could not learn {unix_user}'s home directory: {}",
                self.on_system(),
                out.stderr.trim()
            )));
        }
        let known = (PathBuf::from(home), PathBuf::from(shell));
        lock(&self.remote_accounts).insert(unix_user.to_owned(), known.clone());
        Ok(known)
    }

    /// `reach = "tunnel"`: the user's reverse forward on the login node to the hub's API
    /// (opened once per user, re-opened by the transport after a drop), and the job's hub
    /// URLs pointed at it.
    async fn open_hub_tunnel(
        &self,
        unix_user: &str,
        bind: &str,
        env: &mut BTreeMap<String, String>,
    ) -> Result<HubTunnel, SpawnError> {
        let api = env.get("JUPYTERHUB_API_URL").cloned().unwrap_or_default();
        let (origin, hub) = origin_of(&api).ok_or_else(|| {
            SpawnError::Config(format!(
                "system {}: the hub's API URL {api:?} is not http://host:port/…, which a tunnel needs",
                self.system
            ))
        })?;
        let ssh = self
            .commands
            .ssh()
            .ok_or_else(|| SpawnError::Config("a tunnel needs transport = \"ssh\"".into()))?;
        let known = lock(&self.hub_tunnels)
            .get(unix_user)
            .filter(|t| t.hub == hub)
            .cloned();
        let tunnel = match known {
            Some(t) => t,
            None => {
                let (host, port) = split_host_port(&hub).unwrap_or_default();
                let port = ssh.forward_remote(unix_user, bind, 0, &host, port).await?;
                let t = HubTunnel {
                    port,
                    hub: hub.clone(),
                };
                lock(&self.hub_tunnels).insert(unix_user.to_owned(), t.clone());
                t
            }
        };
        let inside = crate::http_origin(bind, tunnel.port);
        for value in env.values_mut() {
            if value.starts_with(&origin) {
                *value = format!("{inside}{}", &value[origin.len()..]);
            }
        }
        Ok(tunnel)
    }

    /// Takes the API token out of the job's environment and writes it, as the user and over
    /// standard input (never on a command line), to `path` (mode 0600, its folder 0700),
    /// where the job script reads and removes it.
    async fn write_token_file(
        &self,
        unix_user: &str,
        path: &str,
        env: &mut BTreeMap<String, String>,
    ) -> Result<(), SpawnError> {
        let token = env.remove("JUPYTERHUB_API_TOKEN").unwrap_or_default();
        env.remove("JPY_API_TOKEN");
        let out = self
            .commands
            .program_as_user(
                unix_user,
                &[
                    "/bin/sh",
                    "-c",
                    "umask 077 && mkdir -p \"${1%/*}\" && cat >\"$1\"",
                    "nbhub",
                    path,
                ],
                Some(&token),
            )
            .await?;
        if !out.ok {
            return Err(SpawnError::Failed(format!(
                "{}could not write the server's token file {path} as {unix_user}: {}",
                self.on_system(),
                out.stderr.trim()
            )));
        }
        Ok(())
    }

    /// The last lines of a job's output: read here, or over SSH on the system.
    async fn last_lines_of(&self, state: &SlurmState) -> Option<String> {
        if self.commands.ssh().is_none() {
            return last_lines(&state.output);
        }
        let lines = LAST_LINES.to_string();
        let path = state.output.to_string_lossy();
        let out = self
            .commands
            .program_as_user(&state.user, &["tail", "-n", &lines, "--", &path], None)
            .await
            .ok()?;
        (out.ok && !out.stdout.trim().is_empty()).then(|| crate::mask_secrets(&out.stdout))
    }

    /// `reach = "tunnel"`: a forward to `node:port` through the login node, on the user's
    /// connection (`local_port` 0: a new one).
    async fn open_tunnel(
        &self,
        st: &SlurmState,
        node: &str,
        port: u16,
        local_port: u16,
    ) -> Result<Tunnel, SpawnError> {
        let ssh = self
            .commands
            .ssh()
            .ok_or_else(|| SpawnError::Config("a tunnel needs transport = \"ssh\"".into()))?;
        let local_port = ssh.forward_local(&st.user, node, port, local_port).await?;
        Ok(Tunnel {
            node: node.to_owned(),
            port,
            local_port,
        })
    }

    /// Closes the forward to a stopped server (the user's reverse forward to the hub stays:
    /// the user's other jobs there use it too).
    async fn close_tunnel(&self, st: &SlurmState) {
        let (Some(ssh), Some(tunnel)) = (self.commands.ssh(), &st.tunnel) else {
            return;
        };
        let forward = crate::ssh::Forward::Local(tunnel.local_port);
        if let Err(e) = ssh.cancel_forwards(&st.user, &[forward]).await {
            tracing::debug!(job = %st.job_id, error = %e, "could not close the forward to a stopped server");
        }
    }

    async fn reach_server(
        &self,
        state: &SpawnerState,
        host: &str,
        port: u16,
    ) -> Result<crate::Reached, SpawnError> {
        let direct = crate::Reached {
            host: host.to_owned(),
            port,
            state: None,
        };
        let (Some(_), Some(mut st)) = (&self.tunnel, SlurmState::from_state(state)) else {
            return Ok(direct);
        };
        let reuse = st
            .tunnel
            .as_ref()
            .filter(|t| t.node == host && t.port == port)
            .map(|t| t.local_port);
        let tunnel = self
            .open_tunnel(&st, host, port, reuse.unwrap_or(0))
            .await?;
        let local = tunnel.local_port;
        st.tunnel = Some(tunnel);
        Ok(crate::Reached {
            host: "127.0.0.1".to_owned(),
            port: local,
            state: Some(st.to_state()),
        })
    }

    /// After a hub restart: the reverse forward to the hub and the forward to the server, on
    /// the ports the state names.
    async fn restore_tunnels(
        &self,
        state: &SpawnerState,
    ) -> Result<Option<crate::Reached>, SpawnError> {
        let (Some(bind), Some(mut st)) = (&self.tunnel, SlurmState::from_state(state)) else {
            return Ok(None);
        };
        let Some(ssh) = self.commands.ssh() else {
            return Ok(None);
        };
        if let Some(hub) = &st.hub_tunnel {
            let known = lock(&self.hub_tunnels).get(&st.user).cloned();
            if known.as_ref() != Some(hub) {
                let (host, port) = split_host_port(&hub.hub).unwrap_or_default();
                ssh.forward_remote(&st.user, bind, hub.port, &host, port)
                    .await?;
                lock(&self.hub_tunnels).insert(st.user.clone(), hub.clone());
            }
        }
        let Some(old) = st.tunnel.clone() else {
            return Ok(None);
        };
        let tunnel = self
            .open_tunnel(&st, &old.node, old.port, old.local_port)
            .await?;
        if tunnel == old {
            return Ok(None);
        }
        let local = tunnel.local_port;
        st.tunnel = Some(tunnel);
        Ok(Some(crate::Reached {
            host: "127.0.0.1".to_owned(),
            port: local,
            state: Some(st.to_state()),
        }))
    }

    async fn submit(&self, req: &SpawnRequest) -> Result<Started, SpawnError> {
        let unix_user = if req.unix_user.is_empty() {
            req.user.clone()
        } else {
            req.unix_user.clone()
        };
        let (home, shell) = self.account_of(&unix_user).await?;
        let job = JobRequest::from_options(&req.user_options, &self.slurm.fields)?;
        let fill = |t: &str| {
            t.replace("{username}", &unix_user)
                .replace("{home}", &home.display().to_string())
                .replace("{server}", &req.server_name)
        };
        let job_name = fill(&self.slurm.job_name);
        let chdir = fill(&self.slurm.chdir);
        // Slurm reads a relative --output against the job's working directory; the hub must
        // find the file too.
        let output = match fill(&self.slurm.output) {
            o if Path::new(&o).is_absolute() => o,
            o => format!("{}/{o}", chdir.trim_end_matches('/')),
        };
        // The log's folder (`~/.nbhub/logs` by default) may not exist yet, and Slurm fails a
        // job whose --output it cannot open: the job script makes it and writes there itself.
        let sbatch_output = if self.template_writes_log {
            "/dev/null".to_owned()
        } else {
            output.clone()
        };
        let home_text = home.display().to_string();
        let session = session::Session::resolve(
            &self.slurm,
            &req.user_options,
            &unix_user,
            &home_text,
            job.account.as_deref(),
        )?;
        let mut env = self.environment(req, &home, &shell);
        session.apply_env(&mut env);
        let hub_tunnel = match &self.tunnel {
            Some(bind) => Some(self.open_hub_tunnel(&unix_user, bind, &mut env).await?),
            None => None,
        };
        let mut options = job.sbatch_options(&self.slurm);
        options.extend(req.overrides.extra_sbatch.iter().flatten().cloned());
        let token_file = if self.template_reads_token {
            let path = format!(
                "{}/.nbhub/tokens/{}",
                home.display().to_string().trim_end_matches('/'),
                token_file_name(&req.server_name)
            );
            self.write_token_file(&unix_user, &path, &mut env).await?;
            script::shell_quote(&path)
        } else {
            String::new()
        };
        let cmd: Vec<String> = self
            .spawner
            .cmd
            .iter()
            .chain(req.overrides.args(&self.spawner.args))
            .cloned()
            .collect();
        let env_names: Vec<&str> = env.keys().map(String::as_str).collect();
        let cmd = session.command(&cmd, &env_names);
        let script = render_script(
            &self.template,
            &self.slurm,
            &cmd,
            &unix_user,
            &req.server_name,
            &job_name,
            &job,
            &options,
            &env,
            &req.user_options,
            &JobFiles {
                log_file: &output_shell_word(&output, &unix_user, &job_name),
                token_file: &token_file,
            },
            &session,
        )?;
        let export = format!(
            "--export={}",
            env.keys().cloned().collect::<Vec<_>>().join(",")
        );
        let mut args: Vec<String> = vec![
            "--parsable".into(),
            format!("--job-name={job_name}"),
            format!("--output={sbatch_output}"),
            format!("--chdir={chdir}"),
            export,
        ];
        // The hub's tag: a hub killed before it recorded the job id finds the job by it.
        if !req.tag.is_empty() {
            args.push(format!("--comment={}", req.tag));
        }
        args.extend(options);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self
            .commands
            .as_user(&unix_user, "sbatch", &argv, &env, Some(&script))
            .await?;
        if !out.ok {
            if controller_unreachable(&out.stderr) {
                return Err(SpawnError::Unavailable {
                    system: self.system.clone(),
                    message: format!(
                        "{}Slurm's controller does not answer right now, so the job could not \
                         be submitted; please try again in a minute",
                        self.on_system()
                    ),
                });
            }
            return Err(SpawnError::Failed(format!(
                "Slurm refused the job: {}",
                slurm_error(&out.stderr)
            )));
        }
        let job_id = out
            .stdout
            .trim()
            .split(';')
            .next()
            .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit() || b == b'_'))
            .ok_or_else(|| {
                SpawnError::Failed(format!(
                    "sbatch gave no job id (it printed {:?})",
                    out.stdout.trim()
                ))
            })?
            .to_owned();
        let state = SlurmState {
            system: self.system.clone(),
            output: PathBuf::from(output_file(&output, &unix_user, &job_name, &job_id)),
            job_id: job_id.clone(),
            user: unix_user.clone(),
            partition: job.partition.clone(),
            nodes: job.nodes,
            host: None,
            tunnel: None,
            hub_tunnel,
        };
        req.updates.persist(&state.to_state());
        tracing::info!(user = %req.user, server = %req.server_name, job = %job_id, partition = %job.partition, "submitted Slurm job");
        req.progress(
            Some(20),
            format!("Submitted job {job_id} to {}", job.partition),
        );
        self.wait_running(state, &req.updates).await
    }

    /// Waits in the tracker until the job runs (or ends, or waited too long).
    async fn wait_running(
        &self,
        mut state: SlurmState,
        updates: &Updates,
    ) -> Result<Started, SpawnError> {
        let id = state.job_id.clone();
        self.tracker.track(&id);
        let mut rounds = self.tracker.subscribe();
        let since = Instant::now();
        let mut said = String::new();
        loop {
            let view = self.tracker.view(&id).unwrap_or(View::Unseen);
            let message = match (&view, self.tracker.unreachable()) {
                (_, Some(why)) => Some(format!("{why}; waiting for it")),
                (View::Queued { info, .. }, None) if info.is_running() => {
                    let host = self.node_address(&info.batch_host).await;
                    updates.progress(Some(50), format!("Running on {}", info.batch_host));
                    updates.running();
                    state.host = Some(host.clone());
                    updates.persist(&state.to_state());
                    return Ok(Started {
                        host,
                        port: 0,
                        state: state.to_state(),
                    });
                }
                (View::Queued { info, .. }, None) => Some(pending_message(info)),
                (View::Ended { reason, .. }, None) => {
                    // Why it never ran is often in its last lines (a bad command, a full disk).
                    let tail = self.last_lines_of(&state).await;
                    return Err(SpawnError::Failed(failure_message(reason, tail.as_deref())));
                }
                (View::Unseen, None) => None,
            };
            if let Some(m) = message.filter(|m| *m != said) {
                updates.progress(Some(30), m.clone());
                said = m;
            }
            let limit = self.slurm.max_queue_wait;
            if limit > 0 && since.elapsed() >= Duration::from_secs(limit) {
                let _ = self.cancel(&state).await;
                return Err(SpawnError::Failed(format!(
                    "Job {id} waited in the queue for more than {} and was cancelled \
                     ([slurm] max_queue_wait); try a partition with idle nodes or a shorter run time",
                    crate::format_slurm_duration(limit)
                )));
            }
            let wait = if limit > 0 {
                Duration::from_secs(limit).saturating_sub(since.elapsed())
            } else {
                Duration::from_secs(3600)
            };
            let _ = tokio::time::timeout(wait, rounds.changed()).await;
        }
    }

    /// The jobs in the queue whose comment starts with `prefix` and that no state in
    /// `tracked` names: one `squeue` of every user's jobs.
    /// `sacct` for these jobs (see `slurm/accounting.rs`); `Ok(None)` when the cluster keeps
    /// no accounting.
    async fn sacct(
        &self,
        job_ids: &[String],
    ) -> Result<Option<Vec<crate::JobAccounting>>, SpawnError> {
        if job_ids.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let args = accounting::sacct_args(job_ids);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.commands.query("sacct", &args).await?;
        if !out.ok {
            if accounting::accounting_disabled(&out.stderr) {
                return Ok(None);
            }
            return Err(SpawnError::Failed(format!(
                "{}sacct failed: {}",
                self.on_system(),
                slurm_error(&out.stderr)
            )));
        }
        Ok(Some(accounting::parse_sacct(&out.stdout, job_ids)))
    }

    async fn untracked(
        &self,
        prefix: &str,
        tracked: &[SpawnerState],
    ) -> Result<Vec<TaggedJob>, SpawnError> {
        let out = self
            .commands
            .query("squeue", &["-h", "-o", "%i|%u|%P|%k"])
            .await?;
        if !out.ok {
            return Err(SpawnError::Failed(format!(
                "{}squeue failed: {}",
                self.on_system(),
                slurm_error(&out.stderr)
            )));
        }
        let known: std::collections::HashSet<String> = tracked
            .iter()
            .filter_map(SlurmState::from_state)
            .filter(|st| st.system == self.system)
            .map(|st| st.job_id)
            .collect();
        Ok(parse::jobs_commented(&out.stdout, prefix)
            .into_iter()
            .filter(|job| !known.contains(&job.id))
            .map(|job| TaggedJob {
                state: SlurmState {
                    system: self.system.clone(),
                    job_id: job.id.clone(),
                    user: job.user,
                    partition: job.partition,
                    nodes: 1,
                    output: PathBuf::new(),
                    host: None,
                    tunnel: None,
                    hub_tunnel: None,
                }
                .to_state(),
                tag: job.comment,
                id: job.id,
            })
            .collect())
    }

    async fn cancel(&self, state: &SlurmState) -> Result<(), SpawnError> {
        let out = self
            .commands
            .as_user(
                &state.user,
                "scancel",
                &[&state.job_id],
                &BTreeMap::new(),
                None,
            )
            .await?;
        if out.ok {
            Ok(())
        } else if controller_unreachable(&out.stderr) {
            Err(SpawnError::Failed(format!(
                "could not cancel job {}: Slurm's controller does not answer",
                state.job_id
            )))
        } else {
            Err(SpawnError::Failed(format!(
                "could not cancel job {}: {}",
                state.job_id,
                slurm_error(&out.stderr)
            )))
        }
    }

    async fn stop_job(&self, state: &SpawnerState, timeout: Duration) -> Result<(), SpawnError> {
        let Some(st) = SlurmState::from_state(state) else {
            return Ok(());
        };
        self.cancel(&st).await?;
        // Slurm signals the job, waits KillWait, then kills: give it that long too.
        let deadline = Instant::now() + timeout + Duration::from_secs(15);
        loop {
            let out = self
                .commands
                .query("squeue", &["-h", "-j", &st.job_id, "-o", "%T"])
                .await?;
            let state_now = out.stdout.trim().to_owned();
            let gone = (out.ok && (state_now.is_empty() || parse::is_final_state(&state_now)))
                || (!out.ok && out.stderr.contains("Invalid job id"));
            if gone {
                tracing::info!(job = %st.job_id, "Slurm job stopped");
                self.tracker.untrack(&st.job_id);
                self.close_tunnel(&st).await;
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(SpawnError::Failed(format!(
                    "job {} is still {} after scancel",
                    st.job_id,
                    if state_now.is_empty() {
                        "known"
                    } else {
                        &state_now
                    }
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn poll_job(&self, state: &SpawnerState) -> PollStatus {
        let Some(st) = SlurmState::from_state(state) else {
            return PollStatus::Exited {
                reason: "no Slurm job is recorded".to_owned(),
            };
        };
        self.tracker.track(&st.job_id);
        if self.tracker.view(&st.job_id) == Some(View::Unseen) {
            // First question about this job (e.g. after a hub restart): wait for an answer.
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.tracker.view(&st.job_id) == Some(View::Unseen)
                && self.tracker.unreachable().is_none()
                && Instant::now() < deadline
            {
                self.tracker
                    .next_round(deadline.saturating_duration_since(Instant::now()))
                    .await;
            }
        }
        if let Some(why) = self.tracker.unreachable() {
            return PollStatus::Unknown { reason: why };
        }
        match self.tracker.view(&st.job_id) {
            Some(View::Queued { info, .. }) if info.is_running() => PollStatus::Running,
            Some(View::Queued { info, .. }) => PollStatus::Pending {
                message: pending_message(&info),
            },
            Some(View::Ended { reason, .. }) => {
                if self.commands.ssh().is_some()
                    && !lock(&self.remote_tails).contains_key(&st.job_id)
                {
                    let tail = self.last_lines_of(&st).await.unwrap_or_default();
                    let mut tails = lock(&self.remote_tails);
                    // Bounded: the hub asks right after the poll that saw the job end.
                    if tails.len() > 1024 {
                        tails.clear();
                    }
                    tails.insert(st.job_id.clone(), tail);
                }
                PollStatus::Exited { reason }
            }
            Some(View::Unseen) | None => PollStatus::Unknown {
                reason: "Slurm has not answered about the job yet".to_owned(),
            },
        }
    }
}

/// The job script's own words on why it stopped (its last `nbhub: error: ` line, e.g.
/// "cannot enter directory /p/x as alice"), in the last lines of a job's output.
pub fn job_script_error(tail: &str) -> Option<&str> {
    tail.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("nbhub: error: "))
        .filter(|m| !m.is_empty())
}

/// Why a job that never ran its server ended: the job script's own words first (see
/// [`job_script_error`]), then Slurm's, then the job's last lines.
fn failure_message(reason: &str, tail: Option<&str>) -> String {
    let Some(tail) = tail else {
        return reason.to_owned();
    };
    match job_script_error(tail) {
        Some(own) => format!("{own}. {reason} Last output:\n{tail}"),
        None => format!("{reason} Last output:\n{tail}"),
    }
}

fn pending_message(info: &parse::JobInfo) -> String {
    format!("Pending: {}", pending_why(info))
}

/// Why a job waits, and its estimated start when Slurm has one: "waiting for resources
/// (estimated start 14:05)".
fn pending_why(info: &parse::JobInfo) -> String {
    let mut m = pending_reason(&info.reason);
    if let Some(start) = &info.start {
        m.push_str(&format!(" (estimated start {})", short_time(start)));
    }
    m
}

/// A token file's name: the server and a value that differs per start (not a secret: the
/// file is the user's own, mode 0600).
fn token_file_name(server: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let server: String = server
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(64)
        .collect();
    format!("server-{server}-{nanos}-{}", std::process::id())
}

/// `("http://host:port", "host:port")` of an `http://` URL (port 80 when none is given).
fn origin_of(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split('/').next().filter(|a| !a.is_empty())?;
    let hub = if split_host_port(authority).is_some() {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Some((format!("http://{authority}"), hub))
}

/// `host:port` (`[v6]:port`) split; `None` without a port.
fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty() && !host.contains(']')).then(|| (host.to_owned(), port))
}

/// The last lines of a job's output file, secrets masked; `None` when it cannot be read.
fn last_lines(output: &Path) -> Option<String> {
    crate::local::unix::log_tail(output, LAST_LINES).map(|t| crate::mask_secrets(&t))
}

impl Spawner for SlurmSpawner {
    fn kind(&self) -> &'static str {
        "slurm"
    }

    fn start<'a>(&'a self, req: &'a SpawnRequest) -> BoxFuture<'a, Result<Started, SpawnError>> {
        Box::pin(self.submit(req))
    }

    fn resume<'a>(
        &'a self,
        state: &'a SpawnerState,
        updates: &'a Updates,
    ) -> BoxFuture<'a, Result<Started, SpawnError>> {
        Box::pin(async move {
            let st = SlurmState::from_state(state)
                .ok_or_else(|| SpawnError::Failed("no Slurm job is recorded".to_owned()))?;
            self.wait_running(st, updates).await
        })
    }

    fn poll<'a>(&'a self, state: &'a SpawnerState) -> BoxFuture<'a, PollStatus> {
        Box::pin(self.poll_job(state))
    }

    fn poll_all<'a>(&'a self, states: &'a [SpawnerState]) -> BoxFuture<'a, Vec<PollStatus>> {
        Box::pin(async move {
            // Track them all first, so that one query answers for every job.
            for st in states.iter().filter_map(SlurmState::from_state) {
                self.tracker.track(&st.job_id);
            }
            let mut out = Vec::with_capacity(states.len());
            for state in states {
                out.push(self.poll_job(state).await);
            }
            out
        })
    }

    fn untracked_jobs<'a>(
        &'a self,
        prefix: &'a str,
        tracked: &'a [SpawnerState],
    ) -> BoxFuture<'a, Result<Vec<TaggedJob>, SpawnError>> {
        Box::pin(self.untracked(prefix, tracked))
    }

    fn stop<'a>(
        &'a self,
        state: &'a SpawnerState,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), SpawnError>> {
        Box::pin(self.stop_job(state, timeout))
    }

    fn options_form<'a>(&'a self, ctx: &'a FormContext) -> BoxFuture<'a, Option<FormSpec>> {
        Box::pin(async move {
            let choices = self.choices(ctx).await;
            Some(form::build_form(&self.slurm, ctx, &choices))
        })
    }

    fn validate_options<'a>(
        &'a self,
        ctx: &'a FormContext,
        options: &'a Value,
    ) -> BoxFuture<'a, Result<ValidatedOptions, Vec<FieldError>>> {
        Box::pin(async move {
            let choices = self.choices(ctx).await;
            let spec = form::build_form(&self.slurm, ctx, &choices);
            form::validate(&self.slurm, &spec, &choices, options)
        })
    }

    fn estimate<'a>(
        &'a self,
        ctx: &'a FormContext,
        options: &'a ValidatedOptions,
    ) -> BoxFuture<'a, Option<Result<Estimate, SpawnError>>> {
        Box::pin(async move { Some(self.estimate_job(ctx, options).await) })
    }

    fn system_of(&self, state: &SpawnerState) -> Option<String> {
        SlurmState::from_state(state)
            .map(|st| st.system)
            .filter(|s| !s.is_empty())
    }

    fn admit<'a>(
        &'a self,
        ctx: &'a FormContext,
        options: &'a ValidatedOptions,
    ) -> BoxFuture<'a, Result<(), SpawnError>> {
        Box::pin(self.admit_job(ctx, options))
    }

    fn reach<'a>(
        &'a self,
        state: &'a SpawnerState,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, Result<crate::Reached, SpawnError>> {
        Box::pin(self.reach_server(state, host, port))
    }

    fn restore<'a>(
        &'a self,
        state: &'a SpawnerState,
    ) -> BoxFuture<'a, Result<Option<crate::Reached>, SpawnError>> {
        Box::pin(self.restore_tunnels(state))
    }

    fn metrics(&self) -> Vec<crate::BackendMetric> {
        self.tracker.metrics()
    }

    fn job_accounting<'a>(
        &'a self,
        _system: &'a str,
        job_ids: &'a [String],
    ) -> BoxFuture<'a, Result<Option<Vec<crate::JobAccounting>>, SpawnError>> {
        Box::pin(self.sacct(job_ids))
    }

    fn ended_signal(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.tracker.subscribe_ended())
    }

    fn last_output(&self, state: &SpawnerState) -> Option<String> {
        let st = SlurmState::from_state(state)?;
        if self.commands.ssh().is_some() {
            return lock(&self.remote_tails)
                .get(&st.job_id)
                .filter(|t| !t.is_empty())
                .cloned();
        }
        last_lines(&st.output)
    }

    fn describe(&self, state: &SpawnerState) -> Option<Value> {
        let st = SlurmState::from_state(state)?;
        let view = self.tracker.view(&st.job_id);
        let pending = match &view {
            Some(View::Queued { info, .. }) if info.state == "PENDING" => Some(pending_why(info)),
            _ => None,
        };
        let (slurm_state, node_list, end_time, nodes, partition) = match &view {
            Some(View::Queued { info, at }) => (
                info.state.clone(),
                info.node_list.clone(),
                info.time_left
                    .filter(|_| info.is_running())
                    .and_then(|left| rfc3339(*at + Duration::from_secs(left))),
                info.nodes,
                info.partition.clone(),
            ),
            Some(View::Ended { state, .. }) => (
                state.clone(),
                String::new(),
                None,
                st.nodes,
                st.partition.clone(),
            ),
            _ => (
                "UNKNOWN".to_owned(),
                String::new(),
                None,
                st.nodes,
                st.partition.clone(),
            ),
        };
        // The allocation (CPUs, memory and GPUs per node), from the same squeue.
        let (cpus, memory, gpus) = match &view {
            Some(View::Queued { info, .. }) => (
                (info.cpus > 0).then_some(info.cpus),
                (!info.memory.is_empty()).then(|| info.memory.clone()),
                Some(info.gpus_per_node),
            ),
            _ => (None, None, None),
        };
        Some(json!({
            "cpus": cpus,
            "memory_per_node": memory,
            "gpus_per_node": gpus,
            "system": (!st.system.is_empty()).then_some(&st.system),
            "job_id": st.job_id,
            "partition": partition,
            "nodes": nodes,
            "node_list": (!node_list.is_empty()).then_some(node_list),
            "end_time": end_time,
            "state": slurm_state,
            "pending": pending,
        }))
    }

    fn timeouts(&self) -> Timeouts {
        let mut t = self.spawner.timeouts();
        // poll() answers from the tracker: polling faster than it asks gains nothing.
        t.poll_interval = t.poll_interval.max(self.tracker.interval());
        t
    }
}

fn rfc3339(t: std::time::SystemTime) -> Option<String> {
    time::OffsetDateTime::from(t)
        .replace_nanosecond(0)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_script_s_own_error_comes_first() {
        let tail = "bash: line 9: cd: /p/x: Permission denied\nnbhub: error: cannot enter directory /p/x as alice\n";
        assert_eq!(
            failure_message("The job failed with exit code 1.", Some(tail)),
            format!("cannot enter directory /p/x as alice. The job failed with exit code 1. Last output:\n{tail}")
        );
        assert_eq!(
            failure_message("The job failed.", Some("x\n")),
            "The job failed. Last output:\nx\n"
        );
        assert_eq!(failure_message("The job failed.", None), "The job failed.");
    }

    #[test]
    fn state_round_trips() {
        let spawner = SlurmSpawner::new(
            SpawnerConfig {
                cmd: vec!["/bin/true".into()],
                ..Default::default()
            },
            SlurmConfig::default(),
            Path::new("/tmp"),
        )
        .unwrap();
        let state = SlurmState {
            system: String::new(),
            job_id: "7".into(),
            user: "alice".into(),
            partition: "devel".into(),
            nodes: 1,
            output: "/x/7.log".into(),
            host: None,
            tunnel: None,
            hub_tunnel: None,
        };
        assert_eq!(SlurmState::from_state(&state.to_state()), Some(state));
        assert_eq!(spawner.kind(), "slurm");
    }
}
