//! The local process spawner (`[spawner] kind = "local"`, the default): runs
//! `cmd + args` on this machine with the environment of docs/wire.md#single-user-server-environment, in a session and process
//! group of its own, as the user's Unix account (hub as root, `switch_user = true`) or as the
//! hub's own account with a working directory under `<data_dir>/homes/<name>`.
//!
//! The child's stdout and stderr go to `<data_dir>/logs/<user>[--<server>].log`, so that the
//! reason a server died (shown by [`Spawner::poll`]) can include its last words.

pub(crate) mod unix;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::OpenOptions;
use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::config::{LocalConfig, SpawnerConfig};
use crate::lock;
use crate::{
    http_origin, BoxFuture, PollStatus, SpawnError, SpawnRequest, Spawner, SpawnerState, Started,
    Timeouts, Updates,
};
use unix::{group_alive, log_tail, proc_stat, SwitchTo};

/// How many log lines an exit reason quotes.
const REASON_LOG_LINES: usize = 20;
/// How long `stop` waits for the group to vanish after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// What the local spawner records about a running server ([`SpawnerState`] as JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalState {
    pub pid: u32,
    /// Equal to `pid` (the server leads its own session and group); kept explicit.
    pub pgid: u32,
    /// `/proc/<pid>/stat` start time, so that a reused pid is not mistaken for the server.
    pub start_time: u64,
    pub host: String,
    pub port: u16,
    /// The server's stdout/stderr.
    pub log_path: PathBuf,
}

impl LocalState {
    pub fn from_state(state: &SpawnerState) -> Option<Self> {
        serde_json::from_value(state.0.clone()).ok()
    }

    pub fn to_state(&self) -> SpawnerState {
        // A struct of plain fields always serialises.
        SpawnerState(serde_json::to_value(self).unwrap_or_default())
    }
}

/// How a child we started ended, recorded by the task that reaps it.
#[derive(Clone, Copy, Debug)]
struct Exit {
    start_time: u64,
    status: ExitStatus,
}

/// Runs single-user servers as local processes.
pub struct LocalSpawner {
    config: SpawnerConfig,
    local: LocalConfig,
    homes_dir: PathBuf,
    log_dir: PathBuf,
    /// Exit statuses of children of this hub process, by pid.
    exits: Arc<Mutex<HashMap<u32, Exit>>>,
    /// Ports handed out lately: a server may take a while to bind the one it was given, and
    /// the kernel may offer the same free port to the next spawn meanwhile.
    recent_ports: Mutex<VecDeque<(u16, Instant)>>,
    /// Account lookups, off the runtime's workers and cached briefly (`accounts.rs`).
    accounts: crate::accounts::Accounts,
}

/// How long a handed-out port is not handed out again (a server binds it in its first seconds).
const RECENT_PORT_HOLD: Duration = Duration::from_secs(120);

/// Who a server runs as, and where.
struct RunAs {
    user: String,
    home: PathBuf,
    shell: PathBuf,
    switch: Option<SwitchTo>,
}

impl LocalSpawner {
    /// A spawner keeping its homes (without `switch_user`) in `<data_dir>/homes` and server
    /// logs in `<data_dir>/logs`.
    pub fn new(
        config: SpawnerConfig,
        local: LocalConfig,
        data_dir: &Path,
    ) -> Result<Self, SpawnError> {
        Self::with_dirs(config, local, data_dir.join("homes"), data_dir.join("logs"))
    }

    pub fn with_dirs(
        config: SpawnerConfig,
        local: LocalConfig,
        homes_dir: PathBuf,
        log_dir: PathBuf,
    ) -> Result<Self, SpawnError> {
        if config.cmd.is_empty() || config.cmd[0].is_empty() {
            return Err(SpawnError::Config("cmd must name a program".to_owned()));
        }
        Ok(Self {
            config,
            local,
            homes_dir,
            log_dir,
            exits: Arc::default(),
            recent_ports: Mutex::default(),
            accounts: crate::accounts::Accounts::default(),
        })
    }

    pub fn config(&self) -> &SpawnerConfig {
        &self.config
    }

    /// Where the output of `user`'s server `server` goes.
    pub fn log_path(&self, user: &str, server: &str) -> PathBuf {
        let mut name = safe_file_name(user);
        if !server.is_empty() {
            name.push_str("--");
            name.push_str(&safe_file_name(server));
        }
        name.push_str(".log");
        self.log_dir.join(name)
    }

    async fn run_as(&self, req: &SpawnRequest) -> Result<RunAs, SpawnError> {
        if !self.local.switch_user {
            let home = self.homes_dir.join(safe_file_name(&req.user));
            std::fs::create_dir_all(&home)
                .map_err(|e| SpawnError::io(format!("create {}", home.display()), e))?;
            let shell = ["/bin/bash", "/bin/sh"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
                .unwrap_or_else(|| PathBuf::from("/bin/sh"));
            return Ok(RunAs {
                user: req.user.clone(),
                home,
                shell,
                switch: None,
            });
        }
        let unix_user = if req.unix_user.is_empty() {
            &req.user
        } else {
            &req.unix_user
        };
        let member = self.accounts.require(unix_user).await?;
        let account = &member.account;
        let euid = nix::unistd::geteuid();
        let switch = if euid.is_root() {
            Some(SwitchTo::new(&member)?)
        } else if euid.as_raw() == account.uid {
            None
        } else {
            return Err(SpawnError::Config(format!(
                "switch_user = true: starting a server as {unix_user} needs the hub to run as \
                 root (it runs as uid {euid}); run it as root or set switch_user = false"
            )));
        };
        if !account.home.is_dir() {
            return Err(SpawnError::Failed(format!(
                "the home directory {} of user {unix_user} does not exist",
                account.home.display()
            )));
        }
        Ok(RunAs {
            user: account.name.clone(),
            home: account.home.clone(),
            shell: account.shell.clone(),
            switch,
        })
    }

    /// The server's environment, in JupyterHub's order: kept variables, the hub's
    /// `JUPYTERHUB_*`, the user's, the service URL, config-derived ones, `environment` last.
    fn environment(
        &self,
        req: &SpawnRequest,
        run_as: &RunAs,
        service_url: &str,
    ) -> BTreeMap<String, String> {
        let mut env = self.config.kept_env();
        env.extend(req.env.clone());
        env.insert("USER".to_owned(), run_as.user.clone());
        env.insert("HOME".to_owned(), run_as.home.display().to_string());
        env.insert("SHELL".to_owned(), run_as.shell.display().to_string());
        env.insert("JUPYTERHUB_SERVICE_URL".to_owned(), service_url.to_owned());
        env.extend(self.config.url_env(&req.user));
        env.extend(self.config.environment.clone());
        req.overrides.apply_env(&mut env, &req.user);
        env
    }

    /// Binds port 0 on the configured ip and releases it: a port that was free just now and
    /// was not handed to another server in the last two minutes.
    /// Returns (host the hub connects to, port, host for the bind URL).
    fn choose_port(&self) -> Result<(String, u16, String), SpawnError> {
        let ip = self.local.ip.trim_matches(['[', ']']);
        let bind_ip = if ip.is_empty() { "0.0.0.0" } else { ip };
        let bind = if bind_ip.contains(':') {
            format!("[{bind_ip}]:0")
        } else {
            format!("{bind_ip}:0")
        };
        let mut recent = self.recent_ports.lock().unwrap_or_else(|p| p.into_inner());
        while recent
            .front()
            .is_some_and(|(_, at)| at.elapsed() > RECENT_PORT_HOLD)
        {
            recent.pop_front();
        }
        let mut port = 0;
        for _ in 0..20 {
            port = TcpListener::bind(&bind)
                .and_then(|l| l.local_addr())
                .map_err(|e| SpawnError::io(format!("find a free port on {bind_ip}"), e))?
                .port();
            if !recent.iter().any(|(p, _)| *p == port) {
                break;
            }
        }
        recent.push_back((port, Instant::now()));
        drop(recent);
        let connect = match bind_ip {
            "0.0.0.0" => "127.0.0.1",
            "::" => "::1",
            other => other,
        };
        Ok((connect.to_owned(), port, ip.to_owned()))
    }

    async fn start_server(&self, req: &SpawnRequest) -> Result<Started, SpawnError> {
        let run_as = self.run_as(req).await?;
        let (host, port, url_ip) = self.choose_port()?;
        let service_url = if url_ip.is_empty() {
            format!("http://:{port}{}", req.service_prefix)
        } else {
            format!("{}{}", http_origin(&url_ip, port), req.service_prefix)
        };
        let env = self.environment(req, &run_as, &service_url);

        std::fs::create_dir_all(&self.log_dir)
            .map_err(|e| SpawnError::io(format!("create {}", self.log_dir.display()), e))?;
        let log_path = self.log_path(&req.user, &req.server_name);
        let log = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o640)
            .open(&log_path)
            .map_err(|e| SpawnError::io(format!("open {}", log_path.display()), e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| SpawnError::io(format!("open {}", log_path.display()), e))?;

        let program = &self.config.cmd[0];
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(&self.config.cmd[1..])
            .args(req.overrides.args(&self.config.args))
            .env_clear()
            .envs(&env)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .kill_on_drop(false);
        if run_as.switch.is_none() {
            cmd.current_dir(&run_as.home);
        }
        unix::detach_and_switch(&mut cmd, run_as.switch);
        let mut child = cmd.spawn().map_err(|e| {
            SpawnError::Failed(format!("could not start {program} as {}: {e}", run_as.user))
        })?;
        let pid = child
            .id()
            .ok_or_else(|| SpawnError::Failed(format!("{program} exited before it started")))?;
        // Not reaped yet (only the task below reaps it), so /proc/<pid> is there.
        let start_time = proc_stat(pid).map(|s| s.start_time).unwrap_or(0);
        let exits = Arc::clone(&self.exits);
        tokio::spawn(async move {
            match child.wait().await {
                Ok(status) => {
                    lock(&exits).insert(pid, Exit { start_time, status });
                }
                Err(e) => tracing::warn!(pid, error = %e, "waiting for a server process failed"),
            }
        });
        tracing::info!(
            user = %req.user, server = %req.server_name, pid, %host, port,
            run_as = %run_as.user, log = %log_path.display(), "started server process"
        );
        req.progress(
            None,
            format!("Server process started on {host}:{port}, waiting for it to answer"),
        );
        let state = LocalState {
            pid,
            pgid: pid,
            start_time,
            host: host.clone(),
            port,
            log_path,
        }
        .to_state();
        req.updates.persist(&state);
        req.updates.running();
        Ok(Started { host, port, state })
    }

    /// The exit status of `st`'s process, if this hub process reaped it.
    fn recorded_exit(&self, st: &LocalState) -> Option<ExitStatus> {
        lock(&self.exits)
            .get(&st.pid)
            .filter(|e| e.start_time == st.start_time)
            .map(|e| e.status)
    }

    async fn poll_server(&self, state: &SpawnerState) -> PollStatus {
        let Some(st) = LocalState::from_state(state) else {
            return PollStatus::Exited {
                reason: "no server process is recorded".to_owned(),
            };
        };
        // A zombie is our child whose status the reaper task is about to record: give it a
        // moment so the reason can say how it ended.
        let deadline = Instant::now() + Duration::from_millis(500);
        loop {
            if let Some(status) = self.recorded_exit(&st) {
                return exited(&st, &format!("The server process exited ({status})."));
            }
            match proc_stat(st.pid) {
                Some(ps) if ps.start_time == st.start_time && !ps.is_dead() => {
                    return PollStatus::Running
                }
                Some(ps) if ps.start_time == st.start_time && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                _ => {
                    return exited(
                        &st,
                        &format!("The server process (pid {}) is no longer running.", st.pid),
                    )
                }
            }
        }
    }

    async fn stop_server(&self, state: &SpawnerState, timeout: Duration) -> Result<(), SpawnError> {
        let Some(st) = LocalState::from_state(state) else {
            return Ok(());
        };
        // While any member lives, the kernel does not hand the group's id to a new process;
        // a leader with another start time means our group is gone and the id reused.
        if proc_stat(st.pgid).is_some_and(|ps| ps.start_time != st.start_time) {
            return Ok(());
        }
        if !group_alive(st.pgid) {
            return Ok(());
        }
        signal_group(st.pgid, Signal::SIGTERM)?;
        if wait_group_gone(st.pgid, timeout).await {
            tracing::info!(pid = st.pid, "server stopped");
            return Ok(());
        }
        tracing::warn!(
            pid = st.pid,
            ?timeout,
            "server ignored SIGTERM; sending SIGKILL"
        );
        signal_group(st.pgid, Signal::SIGKILL)?;
        if wait_group_gone(st.pgid, KILL_WAIT).await {
            Ok(())
        } else {
            Err(SpawnError::Failed(format!(
                "processes of the server (process group {}) survived SIGKILL",
                st.pgid
            )))
        }
    }
}

impl Spawner for LocalSpawner {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn start<'a>(&'a self, req: &'a SpawnRequest) -> BoxFuture<'a, Result<Started, SpawnError>> {
        Box::pin(self.start_server(req))
    }

    fn resume<'a>(
        &'a self,
        state: &'a SpawnerState,
        _updates: &'a Updates,
    ) -> BoxFuture<'a, Result<Started, SpawnError>> {
        Box::pin(async move {
            let st = LocalState::from_state(state)
                .ok_or_else(|| SpawnError::Failed("no server process is recorded".to_owned()))?;
            match self.poll_server(state).await {
                PollStatus::Exited { reason } => Err(SpawnError::Failed(reason)),
                _ => Ok(Started {
                    host: st.host.clone(),
                    port: st.port,
                    state: state.clone(),
                }),
            }
        })
    }

    fn poll<'a>(&'a self, state: &'a SpawnerState) -> BoxFuture<'a, PollStatus> {
        Box::pin(self.poll_server(state))
    }

    fn stop<'a>(
        &'a self,
        state: &'a SpawnerState,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), SpawnError>> {
        Box::pin(self.stop_server(state, timeout))
    }

    fn timeouts(&self) -> Timeouts {
        self.config.timeouts()
    }
}

fn exited(st: &LocalState, head: &str) -> PollStatus {
    let reason = match log_tail(&st.log_path, REASON_LOG_LINES) {
        Some(tail) => format!("{head} Last output ({}):\n{tail}", st.log_path.display()),
        None => format!("{head} It printed nothing."),
    };
    PollStatus::Exited { reason }
}

fn signal_group(pgid: u32, signal: Signal) -> Result<(), SpawnError> {
    match killpg(Pid::from_raw(pgid as i32), signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(SpawnError::io(
            format!("send {signal} to process group {pgid}"),
            std::io::Error::from(e),
        )),
    }
}

/// Polls until no live process is left in the group, with a short backoff; false on timeout.
async fn wait_group_gone(pgid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if !group_alive(pgid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(pause.min(deadline - Instant::now())).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A user or server name as one harmless path component: ASCII letters, digits and `._-@+`
/// kept, anything else (and a leading dot) percent-encoded.
fn safe_file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b"_-@+".contains(&b) || (b == b'.' && i > 0);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_single_harmless_components() {
        assert_eq!(safe_file_name("alice"), "alice");
        assert_eq!(safe_file_name("a.b@x.org"), "a.b@x.org");
        assert_eq!(safe_file_name("../etc"), "%2E.%2Fetc");
        assert_eq!(safe_file_name("é"), "%C3%A9");
        assert_eq!(safe_file_name(""), "_");
    }

    #[test]
    fn config_reads_jupyterhub_style_values() {
        let c: SpawnerConfig = serde_json::from_value(serde_json::json!({
            "kind": "local",
            "cmd": "/opt/venv/bin/jupyterhub-singleuser",
            "start_timeout": 120,
            "http_timeout": 12,
        }))
        .unwrap();
        assert_eq!(c.cmd, ["/opt/venv/bin/jupyterhub-singleuser"]);
        assert_eq!(c.timeouts().start_timeout, Duration::from_secs(120));
        assert_eq!(c.timeouts().http_timeout, Duration::from_secs(12));
        assert_eq!(c.timeouts().poll_interval, Duration::from_secs(30));
        assert_eq!(c.env_keep.len(), crate::DEFAULT_ENV_KEEP.len());
        let local = LocalConfig::default();
        assert!(local.switch_user);
        assert_eq!(local.ip, "127.0.0.1");
    }

    #[test]
    fn a_port_is_not_handed_out_twice_in_a_row() {
        let config = SpawnerConfig {
            cmd: vec!["true".into()],
            ..Default::default()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let spawner =
            LocalSpawner::new(config, LocalConfig::default(), dir.path()).expect("spawner");
        let ports: std::collections::BTreeSet<u16> = (0..200)
            .map(|_| spawner.choose_port().expect("port").1)
            .collect();
        assert_eq!(ports.len(), 200);
    }

    #[test]
    fn empty_cmd_is_a_config_error() {
        let config = SpawnerConfig {
            cmd: vec![],
            ..Default::default()
        };
        let err = LocalSpawner::new(config, LocalConfig::default(), Path::new("/tmp"))
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "spawner configuration: cmd must name a program"
        );
    }

    #[tokio::test]
    async fn a_reused_pid_is_not_our_server() {
        let spawner = LocalSpawner::new(
            SpawnerConfig::default(),
            LocalConfig::default(),
            Path::new("/tmp"),
        )
        .unwrap();
        // This test process has the pid, but not the start time, of the recorded server.
        let me = std::process::id();
        let state = LocalState {
            pid: me,
            pgid: me,
            start_time: 1,
            host: "127.0.0.1".into(),
            port: 1,
            log_path: PathBuf::from("/nonexistent/x.log"),
        }
        .to_state();
        match spawner.poll(&state).await {
            PollStatus::Exited { reason } => {
                assert!(reason.contains("no longer running"), "{reason}");
                assert!(reason.contains("printed nothing"), "{reason}");
            }
            other => panic!("a reused pid was taken for the server: {other:?}"),
        }
        // And stop must leave that process group (ours!) alone.
        spawner
            .stop(&state, Duration::from_millis(10))
            .await
            .unwrap();
        assert_eq!(
            spawner.poll(&SpawnerState::default()).await,
            PollStatus::Exited {
                reason: "no server process is recorded".into()
            }
        );
    }
}
