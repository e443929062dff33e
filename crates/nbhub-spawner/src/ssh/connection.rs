//! [`SshTransport`]: one per system. It runs commands on the system's login nodes and opens
//! tunnels through them, over one connection (an OpenSSH ControlMaster, `master.rs`) per
//! account: each user's, and the hub's own `tracking_user`'s for the queries shared by all.
//!
//! - A connection opens on first use, under a lock of its own, so concurrent callers share
//!   one. When its process exits (the login node went away, the network dropped) it is marked
//!   down and the next use opens it again.
//! - `login_hosts` are tried in order from the one that worked last; one that does not answer
//!   is skipped. A connection that drops moves the preference to the next login node.
//! - Forwards are registered: a re-opened connection gets them back on the same ports, and
//!   while a connection with forwards is down a background task keeps re-opening it (1 s,
//!   2 s … 10 s apart), so tunnels are back before the proxy needs them.
//! - Nothing secret goes on a command line and no environment variable is passed: callers
//!   wrap a command in `env K=V` for plain values and send secrets over stdin.
//!
//! Control sockets live in `<state_dir>/c/<16 hex digits>`: a Unix socket path has at most
//! 107 bytes, and ssh binds a temporary name 17 bytes longer first, so `state_dir` itself may
//! be at most 70 bytes long. Keys and certificates live in `<state_dir>/keys/<system>/`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{oneshot, Notify};

use crate::ssh::cert::Credentials;
use crate::ssh::config::{check_account, fill, parse_login_host, LoginHost, SshConfig};
use crate::ssh::master::{self, Target, NO_MASTER};
use crate::ssh::quote::command_line;
use crate::ssh::SshError;
use crate::SpawnError;

/// The longest control socket path ssh can bind (108 bytes of `sun_path`, its NUL, and the
/// 17 bytes of the temporary name it binds first).
const MAX_CONTROL_PATH: usize = 90;
/// Commands at once on one connection: sshd refuses sessions beyond its `MaxSessions`
/// (default 10) per connection; more callers wait for a turn.
const MAX_SESSIONS: usize = 8;
/// The background re-opening's pauses.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Whose connection a command runs on.
#[derive(Clone, Copy, Debug)]
pub enum Who<'a> {
    /// A user's: the Unix account, from which `user` (the template) makes the remote account.
    User(&'a str),
    /// The hub's own `tracking_user`'s.
    Tracking,
}

/// What a remote command did.
#[derive(Clone, Debug)]
pub struct RemoteOutput {
    /// It exited with 0.
    pub ok: bool,
    /// Its exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// A registered forward, as the calls that made it returned it: what
/// [`SshTransport::cancel_forwards`] takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Forward {
    /// `forward_local`'s port on 127.0.0.1 of the hub's machine.
    Local(u16),
    /// `forward_remote`'s port on the login node.
    Remote(u16),
}

/// A forward and how to ask a master for it.
#[derive(Clone, Debug)]
struct Registered {
    id: Forward,
    /// `-L` or `-R`.
    flag: &'static str,
    /// The spec with the fixed ports: what a re-opened master is asked for.
    spec: String,
    /// The spec the current master was given (`-R` with port 0 until a reconnect).
    asked: String,
    /// How many calls asked for it: ssh gives the same forward to the same spec (two jobs'
    /// reverse forwards to the hub's API share one port), and it is cancelled with the last.
    holders: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SlotKey {
    tracking: bool,
    account: String,
}

/// One account's connection.
struct Slot {
    key: SlotKey,
    ctl: PathBuf,
    /// Held while the connection is opened: one opener at a time.
    opening: tokio::sync::Mutex<()>,
    /// One permit per command running on the connection ([`MAX_SESSIONS`]).
    sessions: tokio::sync::Semaphore,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    /// The login node the master is connected to, while it is up.
    up: Option<usize>,
    /// Counts the masters opened, so that a late exit of an old one changes nothing.
    generation: u64,
    /// Dropping it kills the master (its watcher holds the other end).
    kill: Option<oneshot::Sender<()>>,
    forwards: Vec<Registered>,
}

impl Slot {
    fn state(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Inner {
    system: String,
    config: SshConfig,
    hosts: Vec<LoginHost>,
    ctl_dir: PathBuf,
    credentials: Credentials,
    slots: Mutex<HashMap<SlotKey, Arc<Slot>>>,
    /// The login node to try first.
    preferred: AtomicUsize,
    /// Why the last attempt failed on every login node; `None` once one answers.
    unreachable: Mutex<Option<String>>,
    /// Wakes the background task: a connection with forwards went down.
    wake: Arc<Notify>,
    keeper: AtomicBool,
    /// Set when the transport is dropped: nothing is opened any more.
    closed: AtomicBool,
}

/// The SSH transport of one system.
pub struct SshTransport {
    inner: Arc<Inner>,
}

impl SshTransport {
    /// Checks the configuration and prepares `<state_dir>/c` and `<state_dir>/keys/<system>`;
    /// connects nothing yet.
    pub fn new(system: &str, config: &SshConfig, state_dir: &Path) -> Result<Self, SpawnError> {
        config
            .validate(&format!("systems.{system}.ssh"))
            .map_err(SpawnError::Config)?;
        let hosts = config
            .login_hosts
            .iter()
            .map(|h| parse_login_host(h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(SpawnError::Config)?;
        let ctl_dir = state_dir.join("c");
        let longest = master::control_path(&ctl_dir, &[]);
        if longest.as_os_str().len() > MAX_CONTROL_PATH {
            return Err(SpawnError::Config(format!(
                "the SSH control sockets would be {} ({} bytes), longer than a Unix socket \
                 path may be: use a state directory of at most {} bytes",
                longest.display(),
                longest.as_os_str().len(),
                state_dir.as_os_str().len() + MAX_CONTROL_PATH - longest.as_os_str().len()
            )));
        }
        private_dir(&ctl_dir)?;
        let key_dir = state_dir.join("keys").join(system);
        Ok(Self {
            inner: Arc::new(Inner {
                system: system.to_owned(),
                config: config.clone(),
                hosts,
                ctl_dir,
                credentials: Credentials::new(system, config, &key_dir),
                slots: Mutex::default(),
                preferred: AtomicUsize::new(0),
                unreachable: Mutex::default(),
                wake: Arc::default(),
                keeper: AtomicBool::new(false),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// Runs `argv` on a login node as `who`: one command line of [`command_line`], run by the
    /// account's login shell, with `stdin` fed in. A remote command that fails is
    /// `Ok(ok: false)`; a connection that fails is an error. Exit code 255 is ssh's own when the
    /// connection is gone afterwards (an error; run again on a new connection, once, when the
    /// command never reached it), else the command's.
    pub async fn run(
        &self,
        who: Who<'_>,
        argv: &[&str],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<RemoteOutput, SshError> {
        let line = command_line(argv).map_err(|e| SshError::Failed(e.to_string()))?;
        let slot = self.inner.slot(who)?;
        let _turn = slot.sessions.acquire().await.map_err(|_| {
            SshError::Failed(format!(
                "{}: the SSH transport is shut down",
                self.inner.system
            ))
        })?;
        // A second attempt only when the first never reached a master (the command did not run).
        for attempt in 0..2 {
            let host = self.inner.ensure(&slot).await?;
            let target = self.inner.target(&slot, &host);
            let mut cmd = master::client(&target);
            cmd.args(["-T", "-o", "RequestTTY=no"])
                .arg(&host.host)
                .arg("--")
                .arg(&line)
                .stdin(if stdin.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let what = argv.first().copied().unwrap_or("a command");
            let mut child = cmd
                .spawn()
                .map_err(|e| SshError::io(format!("run {}", self.inner.config.ssh), e))?;
            let input = child.stdin.take();
            // Fed while the output is read: a command that prints much before it reads all of
            // its input would otherwise wait for us as we wait for it.
            let feed = async move {
                if let (Some(bytes), Some(mut pipe)) = (stdin, input) {
                    // A command that exits without reading shows up in its output, not here.
                    let _ = pipe.write_all(bytes).await;
                }
            };
            let out = tokio::time::timeout(timeout, async {
                tokio::join!(feed, child.wait_with_output()).1
            })
            .await
            .map_err(|_| SshError::Timeout {
                system: self.inner.system.clone(),
                what: format!("{what} on {host}"),
                secs: timeout.as_secs(),
            })?
            .map_err(|e| SshError::io(format!("run {}", self.inner.config.ssh), e))?;
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            let code = out.status.code();
            if code == Some(255) {
                if stderr.contains("Session open refused") {
                    // The master is fine; the login node allows fewer sessions per connection.
                    return Err(SshError::Failed(format!(
                        "{host} refused to run {what}: too many commands at once on one \
                         connection (sshd's MaxSessions is below {MAX_SESSIONS})"
                    )));
                }
                let never_ran = stderr.contains(NO_MASTER);
                if master::control(&target, &["-O", "check"]).await.is_err() {
                    self.inner.mark_down(&slot);
                    if never_ran && attempt == 0 {
                        continue;
                    }
                    return Err(self.inner.unreachable_error(if never_ran {
                        format!("the connection to {host} closed before {what} could run")
                    } else {
                        format!(
                            "the connection to {host} dropped while {what} ran ({})",
                            stderr.trim()
                        )
                    }));
                }
            }
            return Ok(RemoteOutput {
                ok: out.status.success(),
                code,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr,
            });
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Forwards `127.0.0.1:<local_port>` on the hub's machine to `target_host:target_port` as
    /// seen from the login node, over `user`'s connection (`local_port` 0: a free port is
    /// picked). Returns the local port; the forward is restored whenever the connection is.
    pub async fn forward_local(
        &self,
        user: &str,
        target_host: &str,
        target_port: u16,
        local_port: u16,
    ) -> Result<u16, SshError> {
        check_forward_host(target_host)?;
        let slot = self.inner.slot(Who::User(user))?;
        let host = self.inner.ensure(&slot).await?;
        let port = match local_port {
            0 => free_port()?,
            p => p,
        };
        let spec = format!("127.0.0.1:{port}:{}:{target_port}", bracket(target_host));
        let target = self.inner.target(&slot, &host);
        master::control(&target, &["-O", "forward", "-L", &spec]).await?;
        self.inner.register(
            &slot,
            Registered {
                id: Forward::Local(port),
                flag: "-L",
                asked: spec.clone(),
                spec,
                holders: 1,
            },
        );
        Ok(port)
    }

    /// Forwards `bind_host:remote_port` on the login node to `to_host:to_port` as seen from
    /// the hub's machine, over `user`'s connection (`remote_port` 0: the login node picks).
    /// Returns the port on the login node; a re-opened connection asks for the same one. ssh
    /// answers a spec it already forwards with the same port: callers then share the forward.
    /// A `bind_host` other than loopback needs `GatewayPorts clientspecified` on the login node.
    pub async fn forward_remote(
        &self,
        user: &str,
        bind_host: &str,
        remote_port: u16,
        to_host: &str,
        to_port: u16,
    ) -> Result<u16, SshError> {
        check_forward_host(bind_host)?;
        check_forward_host(to_host)?;
        let slot = self.inner.slot(Who::User(user))?;
        let host = self.inner.ensure(&slot).await?;
        let spec = |port: u16| {
            format!(
                "{}:{port}:{}:{to_port}",
                bracket(bind_host),
                bracket(to_host)
            )
        };
        let asked = spec(remote_port);
        let target = self.inner.target(&slot, &host);
        let printed = master::control(&target, &["-O", "forward", "-R", &asked]).await?;
        let port = match remote_port {
            0 => printed.trim().parse::<u16>().map_err(|_| {
                SshError::Failed(format!(
                    "{host} allocated a port for the forward {asked} but ssh printed {printed:?}"
                ))
            })?,
            p => p,
        };
        self.inner.register(
            &slot,
            Registered {
                id: Forward::Remote(port),
                flag: "-R",
                spec: spec(port),
                asked,
                holders: 1,
            },
        );
        Ok(port)
    }

    /// Drops `user`'s forwards named (a job's tunnels): cancelled on the connection when it is
    /// up, and no longer restored. Unknown ones are ignored. A forward that several calls
    /// asked for (the same spec: see [`SshTransport::forward_remote`]) stays until the last
    /// of them cancels it.
    pub async fn cancel_forwards(&self, user: &str, forwards: &[Forward]) -> Result<(), SshError> {
        let slot = self.inner.slot(Who::User(user))?;
        let (gone, up) = {
            let mut state = slot.state();
            for r in state.forwards.iter_mut() {
                let asked = forwards.iter().filter(|&&f| f == r.id).count();
                r.holders = r.holders.saturating_sub(asked);
            }
            let (gone, kept) = std::mem::take(&mut state.forwards)
                .into_iter()
                .partition::<Vec<_>, _>(|r| r.holders == 0);
            state.forwards = kept;
            (gone, state.up)
        };
        let Some(index) = up else { return Ok(()) };
        let host = self.inner.hosts[index].clone();
        let target = self.inner.target(&slot, &host);
        let mut first_error = None;
        for r in gone {
            if let Err(e) = master::control(&target, &["-O", "cancel", r.flag, &r.asked]).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// How many connections are open now.
    pub fn open_connections(&self) -> usize {
        let slots = self.inner.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.values().filter(|s| s.state().up.is_some()).count()
    }

    /// Why the last attempt to connect failed on every login node, in an admin's words;
    /// `None` once one answered. The system's health.
    pub fn unreachable(&self) -> Option<String> {
        self.inner
            .unreachable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for SshTransport {
    /// Every master goes with the transport (its watcher kills it when the sender drops; its
    /// `kill_on_drop` when the runtime ends first).
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let slots = self.inner.slots.lock().unwrap_or_else(|e| e.into_inner());
        for slot in slots.values() {
            let mut state = slot.state();
            state.kill = None;
            state.up = None;
        }
        self.inner.wake.notify_one();
    }
}

impl Inner {
    fn slot(&self, who: Who<'_>) -> Result<Arc<Slot>, SshError> {
        let key = match who {
            Who::User(unix_user) => SlotKey {
                tracking: false,
                account: fill(&self.config.user, unix_user),
            },
            Who::Tracking => SlotKey {
                tracking: true,
                account: self.config.tracking_user.clone(),
            },
        };
        check_account(&key.account).map_err(SshError::Config)?;
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        Ok(slots
            .entry(key.clone())
            .or_insert_with(|| {
                let kind = if key.tracking { "tracking" } else { "user" };
                Arc::new(Slot {
                    ctl: master::control_path(&self.ctl_dir, &[&self.system, kind, &key.account]),
                    key,
                    opening: tokio::sync::Mutex::new(()),
                    sessions: tokio::sync::Semaphore::new(MAX_SESSIONS),
                    state: Mutex::default(),
                })
            })
            .clone())
    }

    fn target<'a>(&'a self, slot: &'a Slot, host: &'a LoginHost) -> Target<'a> {
        Target {
            ssh: &self.config.ssh,
            known_hosts: &self.config.known_hosts,
            connect_timeout: self.config.connect_timeout,
            account: &slot.key.account,
            host,
            ctl: &slot.ctl,
        }
    }

    fn unreachable_error(&self, message: String) -> SshError {
        SshError::Unreachable {
            system: self.system.clone(),
            message: format!("{}: {message}", self.system),
        }
    }

    /// The slot's master is up (opened now if it was not); the login node it is connected to.
    async fn ensure(self: &Arc<Self>, slot: &Arc<Slot>) -> Result<LoginHost, SshError> {
        if let Some(i) = slot.state().up {
            return Ok(self.hosts[i].clone());
        }
        let _opening = slot.opening.lock().await;
        if let Some(i) = slot.state().up {
            return Ok(self.hosts[i].clone());
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(SshError::Failed(format!(
                "{}: the SSH transport is shut down",
                self.system
            )));
        }
        let identity = self.credentials.for_account(&slot.key.account).await?;
        let n = self.hosts.len();
        let first = self.preferred.load(Ordering::SeqCst) % n;
        let mut failures = Vec::new();
        for index in (0..n).map(|i| (first + i) % n) {
            let host = &self.hosts[index];
            let target = self.target(slot, host);
            master::clear_stale(&target).await;
            match master::open(&target, &identity).await {
                Ok(opened) => {
                    self.preferred.store(index, Ordering::SeqCst);
                    *self.unreachable.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    self.watch(slot, index, opened);
                    self.restore_forwards(slot, host).await;
                    return Ok(host.clone());
                }
                Err(e) => {
                    tracing::warn!(system = %self.system, account = %slot.key.account,
                        login_host = %host, "SSH connection failed: {e}");
                    failures.push(e);
                }
            }
        }
        let summary = failures
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let message = format!("{}: no login node answered ({summary})", self.system);
        *self.unreachable.lock().unwrap_or_else(|e| e.into_inner()) = Some(message.clone());
        // The most telling failure: a host key or credentials an admin must fix, else down.
        let pick = failures
            .iter()
            .position(|e| matches!(e, SshError::HostKey { .. }))
            .or_else(|| {
                failures
                    .iter()
                    .position(|e| matches!(e, SshError::Auth { .. }))
            });
        Err(match pick {
            Some(i) => failures.swap_remove(i),
            None => SshError::Unreachable {
                system: self.system.clone(),
                message,
            },
        })
    }

    /// Records the open master and watches its process: when it exits, the slot is down, the
    /// next login node is preferred, and the background task re-opens it if it has forwards.
    fn watch(self: &Arc<Self>, slot: &Arc<Slot>, index: usize, opened: master::Opened) {
        let (kill, killed) = oneshot::channel::<()>();
        let generation = {
            let mut state = slot.state();
            state.generation += 1;
            state.up = Some(index);
            state.kill = Some(kill);
            state.generation
        };
        let weak = Arc::downgrade(self);
        let slot = slot.clone();
        let mut child = opened.child;
        tokio::spawn(async move {
            let exited = tokio::select! {
                status = child.wait() => Some(status),
                _ = killed => None,
            };
            if exited.is_none() {
                let _ = child.kill().await;
            }
            let has_forwards = {
                let mut state = slot.state();
                if state.generation != generation {
                    return;
                }
                state.up = None;
                state.kill = None;
                !state.forwards.is_empty()
            };
            let Some(inner) = weak.upgrade() else { return };
            if let Some(status) = exited {
                let said = opened
                    .stderr
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                tracing::warn!(system = %inner.system, account = %slot.key.account,
                    login_host = %inner.hosts[index], "SSH connection closed ({status:?}): {}",
                    said.trim());
                let n = inner.hosts.len();
                let _ = inner.preferred.compare_exchange(
                    index,
                    (index + 1) % n,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
            }
            if has_forwards {
                inner.wake.notify_one();
            }
        });
    }

    /// Takes the slot's master down now (its process is killed).
    fn mark_down(&self, slot: &Slot) {
        let has_forwards = {
            let mut state = slot.state();
            state.up = None;
            state.kill = None;
            state.generation += 1;
            !state.forwards.is_empty()
        };
        if has_forwards {
            self.wake.notify_one();
        }
    }

    fn register(self: &Arc<Self>, slot: &Slot, forward: Registered) {
        {
            let mut state = slot.state();
            match state.forwards.iter_mut().find(|r| r.id == forward.id) {
                Some(known) => known.holders += 1,
                None => state.forwards.push(forward),
            }
        }
        if !self.keeper.swap(true, Ordering::SeqCst) {
            tokio::spawn(keeper(Arc::downgrade(self), self.wake.clone()));
        }
    }

    /// Asks a freshly opened master for the slot's registered forwards, on their ports.
    async fn restore_forwards(&self, slot: &Slot, host: &LoginHost) {
        let forwards = {
            let mut state = slot.state();
            for r in &mut state.forwards {
                r.asked = r.spec.clone();
            }
            state.forwards.clone()
        };
        let target = self.target(slot, host);
        for r in forwards {
            match master::control(&target, &["-O", "forward", r.flag, &r.spec]).await {
                Ok(_) => tracing::info!(system = %self.system, account = %slot.key.account,
                    "forward {} {} restored", r.flag, r.spec),
                Err(e) => tracing::warn!(system = %self.system, account = %slot.key.account,
                    "forward {} {} not restored: {e}", r.flag, r.spec),
            }
        }
    }
}

/// Re-opens connections with forwards while they are down, with backoff; sleeps until woken
/// otherwise. Ends with the transport.
async fn keeper(weak: Weak<Inner>, wake: Arc<Notify>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        let down: Vec<Arc<Slot>> = {
            let slots = inner.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots
                .values()
                .filter(|s| {
                    let state = s.state();
                    state.up.is_none() && !state.forwards.is_empty()
                })
                .cloned()
                .collect()
        };
        if down.is_empty() {
            backoff = BACKOFF_MIN;
            drop(inner);
            wake.notified().await;
            continue;
        }
        let mut all_up = true;
        for slot in &down {
            all_up &= inner.ensure(slot).await.is_ok();
        }
        drop(inner);
        if all_up {
            backoff = BACKOFF_MIN;
        } else {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = wake.notified() => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// A host in a forward spec: a name or address, nothing ssh would read as more of the spec.
fn check_forward_host(host: &str) -> Result<(), SshError> {
    let ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '*'));
    if ok {
        Ok(())
    } else {
        Err(SshError::Failed(format!(
            "'{host}' is not a host name or address for a forward"
        )))
    }
}

/// IPv6 addresses in a forward spec go in brackets.
fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// A port free on 127.0.0.1 now (the system picks it).
fn free_port() -> Result<u16, SshError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| SshError::io("find a free local port", e))
}

/// Creates `dir` 0700 (the control sockets: whoever can reach them acts as the users).
fn private_dir(dir: &Path) -> Result<(), SpawnError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| SpawnError::io(format!("create {}", dir.display()), e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| SpawnError::io(format!("chmod 0700 {}", dir.display()), e))
}
