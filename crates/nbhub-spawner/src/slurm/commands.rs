//! Running Slurm's commands: always argument vectors, `SLURM_CONF` exported, a time limit, and
//! as the user when they act for one (`sbatch`, `scancel`). On the hub's machine (`transport =
//! "local"`) by switching uid in the child (a root hub) or through a configured prefix such as
//! `sudo -E -u {username}`; on a login node (`transport = "ssh"`) over the user's own SSH
//! connection, the queries over the hub's `tracking_user`'s.
//!
//! Over SSH the environment (which holds the server's API token for `sbatch`) never reaches a
//! command line: a fixed `sh -c` program reads `NAME=value` lines from the connection's
//! standard input up to an empty line, exports them and `exec`s the command, which then reads
//! the rest of standard input (the job script). `read` takes a pipe one byte at a time, so
//! nothing after the empty line is lost to it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use std::sync::Arc;

use crate::accounts::Accounts;
use crate::local::unix::{detach_and_switch, SwitchTo};
use crate::slurm::config::SlurmConfig;
use crate::ssh::{SshTransport, Who};
use crate::SpawnError;

/// Over SSH: exports the `NAME=value` lines read from standard input up to an empty line, then
/// runs its arguments (see the module's docs). Constant: nothing of a request is in it.
const EXPORT_FROM_STDIN: &str =
    "while IFS= read -r nbhub_env && [ -n \"$nbhub_env\" ]; do export \"$nbhub_env\"; done; exec \"$@\"";

/// How long any Slurm command may take before it is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// What a finished command printed.
#[derive(Clone, Debug)]
pub(crate) struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// How commands act for a user.
#[derive(Clone, Debug)]
enum SubmitAs {
    Setuid,
    Prefix(Vec<String>),
}

/// Where the commands run.
#[derive(Clone)]
pub(crate) enum Via {
    /// On the hub's machine, a Slurm client of the cluster.
    Local,
    /// On the system's login nodes.
    Ssh(Arc<SshTransport>),
}

impl std::fmt::Debug for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Via::Local => "local",
            Via::Ssh(_) => "ssh",
        })
    }
}

/// Runs Slurm commands as the configuration says.
#[derive(Clone, Debug)]
pub(crate) struct Commands {
    via: Via,
    bin_dir: PathBuf,
    slurm_conf: String,
    submit_as: SubmitAs,
    /// The hub's PATH, for the commands themselves (and a prefix such as sudo).
    path: String,
    /// The users' accounts, for `submit_as = "setuid"` and the spawner (`accounts.rs`).
    accounts: Arc<Accounts>,
}

impl Commands {
    pub fn new(config: &SlurmConfig, via: Via) -> Self {
        let submit_as = match config.submit_as.as_slice() {
            [one] if one == "setuid" => SubmitAs::Setuid,
            prefix => SubmitAs::Prefix(prefix.to_vec()),
        };
        Self {
            via,
            bin_dir: PathBuf::from(&config.bin_dir),
            slurm_conf: config.slurm_conf.clone(),
            submit_as,
            path: std::env::var("PATH")
                .unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned()),
            accounts: Arc::default(),
        }
    }

    /// The account lookups every clone of these commands shares.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// The path of a Slurm program (`bin_dir/name`, or the bare name to look up on PATH).
    pub fn program(&self, name: &str) -> PathBuf {
        if self.bin_dir.as_os_str().is_empty() {
            PathBuf::from(name)
        } else {
            self.bin_dir.join(name)
        }
    }

    pub fn slurm_conf(&self) -> &str {
        &self.slurm_conf
    }

    /// The SSH transport, when the commands run on login nodes.
    pub fn ssh(&self) -> Option<&Arc<SshTransport>> {
        match &self.via {
            Via::Ssh(t) => Some(t),
            Via::Local => None,
        }
    }

    /// Runs any program (`sh`, `tail`: not a Slurm one, so not under `bin_dir`) as `user`:
    /// locally as [`Commands::as_user`] does, over SSH on the user's connection.
    pub async fn program_as_user(
        &self,
        user: &str,
        argv: &[&str],
        stdin: Option<&str>,
    ) -> Result<Output, SpawnError> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| SpawnError::Failed("no program to run".to_owned()))?;
        self.run_program(
            PathBuf::from(program),
            args,
            Some(user),
            &BTreeMap::new(),
            stdin,
        )
        .await
    }

    /// [`Commands::program_as_user`] with `env` in the process environment.
    pub async fn program_as_user_env(
        &self,
        user: &str,
        argv: &[&str],
        env: &BTreeMap<String, String>,
    ) -> Result<Output, SpawnError> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| SpawnError::Failed("no program to run".to_owned()))?;
        self.run_program(PathBuf::from(program), args, Some(user), env, None)
            .await
    }

    /// Runs `name args` as the hub (queries: squeue, sinfo, scontrol, sacctmgr).
    pub async fn query(&self, name: &str, args: &[&str]) -> Result<Output, SpawnError> {
        self.run(name, args, None, &BTreeMap::new(), None).await
    }

    /// Like [`Commands::query`], with the times printed with their UTC offset
    /// (`parse::SLURM_TIME_FORMAT`, which says why).
    pub async fn query_times(&self, name: &str, args: &[&str]) -> Result<Output, SpawnError> {
        let env = BTreeMap::from([(
            "SLURM_TIME_FORMAT".to_owned(),
            crate::slurm::parse::SLURM_TIME_FORMAT.to_owned(),
        )]);
        self.run(name, args, None, &env, None).await
    }

    /// Runs `name args` as the Unix account `user`, with `env` added to the process
    /// environment (never on the command line) and `stdin` fed in.
    pub async fn as_user(
        &self,
        user: &str,
        name: &str,
        args: &[&str],
        env: &BTreeMap<String, String>,
        stdin: Option<&str>,
    ) -> Result<Output, SpawnError> {
        self.run(name, args, Some(user), env, stdin).await
    }

    async fn run(
        &self,
        name: &str,
        args: &[&str],
        user: Option<&str>,
        env: &BTreeMap<String, String>,
        stdin: Option<&str>,
    ) -> Result<Output, SpawnError> {
        self.run_program(self.program(name), args, user, env, stdin)
            .await
    }

    async fn run_program(
        &self,
        program: PathBuf,
        args: &[&str],
        user: Option<&str>,
        env: &BTreeMap<String, String>,
        stdin: Option<&str>,
    ) -> Result<Output, SpawnError> {
        if let Via::Ssh(ssh) = &self.via {
            return self.run_ssh(ssh, &program, args, user, env, stdin).await;
        }
        let mut cmd = match (user, &self.submit_as) {
            (Some(user), SubmitAs::Prefix(prefix)) => {
                let mut words = prefix.iter().map(|w| w.replace("{username}", user));
                let first = words.next().unwrap_or_default();
                let mut cmd = tokio::process::Command::new(first);
                cmd.args(words).arg(&program);
                cmd
            }
            _ => tokio::process::Command::new(&program),
        };
        cmd.args(args)
            .env_clear()
            .env("PATH", &self.path)
            .envs(env)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if !self.slurm_conf.is_empty() {
            cmd.env("SLURM_CONF", &self.slurm_conf);
        }
        if let (Some(user), SubmitAs::Setuid) = (user, &self.submit_as) {
            let member = self.accounts.require(user).await?;
            let account = &member.account;
            let euid = nix::unistd::geteuid();
            if euid.is_root() {
                detach_and_switch(&mut cmd, Some(SwitchTo::new(&member)?));
                cmd.env("HOME", &account.home).env("USER", &account.name);
            } else if euid.as_raw() != account.uid {
                return Err(SpawnError::Config(format!(
                    "submit_as = \"setuid\": submitting jobs as {user} needs the hub to run as \
                     root (it runs as uid {euid}); run it as root or set a prefix such as \
                     [\"sudo\", \"-E\", \"-u\", \"{{username}}\"]"
                )));
            }
        }
        let mut child = cmd.spawn().map_err(|e| {
            SpawnError::Failed(format!(
                "could not run {}: {e} (is Slurm installed? see [slurm] bin_dir)",
                program.display()
            ))
        })?;
        // Fed while the output is read: a command that answers before it has read all of its
        // input must not block on a full pipe. One that exits without reading shows up in
        // its output, not here.
        let pipe = child.stdin.take();
        let feed = async move {
            if let (Some(text), Some(mut pipe)) = (stdin, pipe) {
                let _ = pipe.write_all(text.as_bytes()).await;
            }
        };
        let run = async {
            let ((), out) = tokio::join!(feed, async { child.wait_with_output().await });
            out
        };
        let out = tokio::time::timeout(COMMAND_TIMEOUT, run)
            .await
            .map_err(|_| {
                SpawnError::Failed(format!(
                    "{} did not answer within {} s",
                    program.display(),
                    COMMAND_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| SpawnError::io(format!("run {}", program.display()), e))?;
        Ok(Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// [`Commands::run_program`] on a login node: the environment over standard input.
    async fn run_ssh(
        &self,
        ssh: &SshTransport,
        program: &std::path::Path,
        args: &[&str],
        user: Option<&str>,
        env: &BTreeMap<String, String>,
        stdin: Option<&str>,
    ) -> Result<Output, SpawnError> {
        let program = program.to_string_lossy();
        let mut argv: Vec<&str> = vec!["/bin/sh", "-c", EXPORT_FROM_STDIN, "nbhub", &program];
        argv.extend_from_slice(args);
        let mut input = Vec::new();
        let conf =
            (!self.slurm_conf.is_empty()).then_some(("SLURM_CONF", self.slurm_conf.as_str()));
        for (name, value) in env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(conf)
        {
            if value.contains('\n') || value.contains('\0') {
                return Err(SpawnError::Failed(format!(
                    "the variable {name} holds a line break, which cannot be passed to the login node"
                )));
            }
            input.extend_from_slice(format!("{name}={value}\n").as_bytes());
        }
        input.push(b'\n');
        input.extend_from_slice(stdin.unwrap_or_default().as_bytes());
        let who = user.map_or(Who::Tracking, Who::User);
        let out = ssh.run(who, &argv, Some(&input), COMMAND_TIMEOUT).await?;
        Ok(Output {
            ok: out.ok,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}
