//! One OpenSSH ControlMaster: a child process of the hub holding one connection to a login
//! node for one account, which every command and tunnel of that account is multiplexed over.
//!
//! The master is `ssh -M -N` with every option on its command line (`-F /dev/null`: no
//! ssh_config of the hub's machine applies). It is ready when its control socket answers,
//! which it says itself: a `LocalCommand` (run by ssh after the socket listens) prints a ready
//! line on its stdout, then `ssh -O check` confirms. Before that, it either exits (what it
//! printed on stderr says why: host key, credentials, or a login node that does not answer) or
//! runs out of time and is killed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::ssh::cert::Identity;
use crate::ssh::config::LoginHost;
use crate::ssh::SshError;

/// What the master's LocalCommand prints once its control socket listens.
const READY: &str = "nbhub-ssh-master-ready";
/// How long `-O` requests to a master may take.
pub(crate) const CONTROL_TIMEOUT: Duration = Duration::from_secs(15);
/// How much of a master's stderr is kept (its last bytes).
const STDERR_KEEP: usize = 4096;
/// What a multiplexed command prints when its master is gone: ssh then falls back to a
/// connection of its own, through its ProxyCommand, `false`, which connects nowhere, and the
/// key exchange that never starts says this (a master's clients exchange no keys). No command
/// ever runs on a connection of its own (see [`client`]).
pub(crate) const NO_MASTER: &str = "kex_exchange_identification";

/// Where and as whom a master connects.
pub(crate) struct Target<'a> {
    pub ssh: &'a str,
    pub known_hosts: &'a str,
    pub connect_timeout: u64,
    pub account: &'a str,
    pub host: &'a LoginHost,
    pub ctl: &'a Path,
}

/// A master that is up: its process (the caller watches it) and its stderr so far.
pub(crate) struct Opened {
    pub child: Child,
    pub stderr: Arc<Mutex<String>>,
}

/// Starts a master to `target.host` and waits until it is ready.
pub(crate) async fn open(target: &Target<'_>, identity: &Identity) -> Result<Opened, SshError> {
    let mut cmd = Command::new(target.ssh);
    cmd.args(["-M", "-N", "-F", "/dev/null", "-S"])
        .arg(target.ctl)
        .args(["-o", "ControlPersist=no", "-o", "BatchMode=yes"])
        .args(["-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", target.known_hosts))
        .args(["-o", "GlobalKnownHostsFile=/dev/null"])
        .args(["-o", "IdentitiesOnly=yes", "-i"])
        .arg(&identity.key);
    if let Some(cert) = &identity.certificate {
        cmd.arg("-o")
            .arg(format!("CertificateFile={}", cert.display()));
    }
    cmd.args(["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"])
        .arg("-o")
        .arg(format!("ConnectTimeout={}", target.connect_timeout))
        .args(["-o", "ExitOnForwardFailure=yes", "-o", "LogLevel=ERROR"])
        .args(["-o", "PermitLocalCommand=yes"])
        .arg("-o")
        .arg(format!("LocalCommand=echo {READY}"))
        .args(["-l", target.account, "-p"])
        .arg(target.host.port.to_string())
        .arg(&target.host.host)
        // ssh runs LocalCommand with $SHELL: a known one.
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| SshError::io(format!("run {}", target.ssh), e))?;
    let stderr = Arc::new(Mutex::new(String::new()));
    let stderr_done = drain_stderr(child.stderr.take(), stderr.clone());
    let mut stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
    // ConnectTimeout bounds the TCP connect; the handshake and authentication get as long again.
    let deadline = Duration::from_secs(target.connect_timeout * 2 + 5);
    let ready = tokio::time::timeout(deadline, async {
        loop {
            match stdout.next_line().await {
                Ok(Some(line)) if line.trim() == READY => return true,
                Ok(Some(_)) => continue,
                // stdout closed: the master exited.
                _ => return false,
            }
        }
    })
    .await;
    match ready {
        Ok(true) => {
            // Nothing else is printed there; drained so that ssh never blocks on it.
            tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
            let check = control(target, &["-O", "check"]).await;
            match check {
                Ok(_) => Ok(Opened { child, stderr }),
                Err(e) => {
                    let _ = child.kill().await;
                    Err(e)
                }
            }
        }
        Ok(false) => {
            let status = child.wait().await.ok();
            let _ = stderr_done.await;
            let text = stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
            Err(classify(target, &text, status.and_then(|s| s.code())))
        }
        Err(_) => {
            let _ = child.kill().await;
            Err(SshError::Unreachable {
                system: String::new(),
                message: format!(
                    "{} did not complete the SSH handshake within {} s",
                    target.host,
                    deadline.as_secs()
                ),
            })
        }
    }
}

/// Keeps the last [`STDERR_KEEP`] bytes of `pipe` in `into`; done when the pipe closes.
fn drain_stderr(
    pipe: Option<tokio::process::ChildStderr>,
    into: Arc<Mutex<String>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(mut pipe) = pipe else { return };
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = pipe.read(&mut buf).await {
            let mut text = into.lock().unwrap_or_else(|e| e.into_inner());
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if text.len() > STDERR_KEEP {
                let mut cut = text.len() - STDERR_KEEP;
                while !text.is_char_boundary(cut) {
                    cut += 1;
                }
                text.drain(..cut);
            }
        }
    })
}

/// What a master's stderr says about why it could not connect.
fn classify(target: &Target<'_>, stderr: &str, code: Option<i32>) -> SshError {
    let said = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("@@@"))
        .collect::<Vec<_>>()
        .join(" ");
    let said = if said.is_empty() {
        format!("ssh exited with code {code:?} and said nothing")
    } else {
        said
    };
    let host = target.host.to_string();
    if said.contains("Host key verification failed")
        || said.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || said.contains("host key is known for")
        || said.contains("Host key for")
    {
        return SshError::HostKey {
            host,
            message: format!(
                "{} does not hold the key this login node shows (ssh: {said})",
                target.known_hosts
            ),
        };
    }
    if said.contains("Permission denied") || said.contains("Too many authentication failures") {
        return SshError::Auth {
            host,
            user: target.account.to_owned(),
            message: said,
        };
    }
    SshError::Unreachable {
        system: String::new(),
        message: format!("{host}: {said}"),
    }
}

/// A multiplexed client of the master at `target.ctl`: `ssh -S ctl … host` plus what the
/// caller adds. It never opens a connection of its own: if the master is gone, ssh would, so
/// its ProxyCommand (used only then) connects nowhere, and ssh says [`NO_MASTER`].
pub(crate) fn client(target: &Target<'_>) -> Command {
    let mut cmd = Command::new(target.ssh);
    cmd.args(["-F", "/dev/null", "-S"])
        .arg(target.ctl)
        .args(["-o", "ControlMaster=no", "-o", "BatchMode=yes"])
        .args(["-o", "LogLevel=ERROR"])
        .args(["-o", "ProxyCommand=false"])
        .args(["-l", target.account, "-p"])
        .arg(target.host.port.to_string())
        .env("SHELL", "/bin/sh")
        .kill_on_drop(true);
    cmd
}

/// Runs a control request (`-O check`, `-O forward -L …`) on the master; its stdout when it
/// succeeds.
pub(crate) async fn control(target: &Target<'_>, args: &[&str]) -> Result<String, SshError> {
    let mut cmd = client(target);
    cmd.args(args)
        .arg(&target.host.host)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::time::timeout(CONTROL_TIMEOUT, cmd.output())
        .await
        .map_err(|_| SshError::Timeout {
            system: String::new(),
            what: format!("ssh {}", args.join(" ")),
            secs: CONTROL_TIMEOUT.as_secs(),
        })?
        .map_err(|e| SshError::io(format!("run {}", target.ssh), e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(SshError::Failed(format!(
            "ssh {} on the connection to {}: {}",
            args.join(" "),
            target.host,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Removes a control socket left by a master this hub no longer owns (one that outlived a
/// hub killed with -9 is asked to exit first, so its connection and forwards go too).
pub(crate) async fn clear_stale(target: &Target<'_>) {
    if tokio::fs::symlink_metadata(target.ctl).await.is_err() {
        return;
    }
    if control(target, &["-O", "exit"]).await.is_ok() {
        // The old master removes its socket as it exits: a new master bound before that
        // would lose its socket to it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::fs::symlink_metadata(target.ctl).await.is_ok()
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let _ = tokio::fs::remove_file(target.ctl).await;
}

/// The control socket's path for one (system, kind, account): `<dir>/<16 hex digits>`, a
/// hash that stays the same across restarts (FNV-1a), so a restarted hub finds the socket of
/// a master that outlived it.
pub(crate) fn control_path(dir: &Path, parts: &[&str]) -> PathBuf {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    dir.join(format!("{hash:016x}"))
}
