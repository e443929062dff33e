//! The Slurm cluster behind a login node (scripts/slurm-ssh-cluster), for tests of the SSH
//! transport: where its login nodes listen, its known_hosts and user CA, and the commands that
//! close and open a login node or count a user's connections on it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::real::{missing_part, workspace_root};

/// Closing a login node drops every test's connections through it: tests that do take this
/// lock exclusively ([`SshCluster::exclusive`]), the others share it ([`SshCluster::shared`]).
static DOORS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A running cluster, as `scripts/slurm-ssh-cluster env` describes it.
#[derive(Clone, Debug)]
pub struct SshCluster {
    /// The login nodes' address (127.0.0.1).
    pub host: String,
    /// Login node 1's port.
    pub port: u16,
    /// Login node 2's port.
    pub port2: u16,
    /// A known_hosts file with both login nodes' host key.
    pub known_hosts: PathBuf,
    /// The user CA's private key, which the login nodes trust.
    pub ca_key: PathBuf,
    /// The cluster's slurm.conf (valid inside the namespace only).
    pub slurm_conf: PathBuf,
    /// The network namespace the cluster lives in.
    pub netns: String,
    /// The script's state directory.
    pub dir: PathBuf,
}

impl SshCluster {
    /// The running cluster; `None` (after a loud message) when it is not running or the test
    /// is not root, a panic instead when `CI=true`.
    pub fn get() -> Option<Self> {
        if !crate::is_root() {
            missing_part(
                "root (the cluster behind a login node is root's)",
                "the tests as root",
            );
            return None;
        }
        let out = Command::new(script()).arg("env").output();
        let text = match out {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
            _ => {
                missing_part(
                    "the Slurm cluster behind a login node (scripts/slurm-ssh-cluster env fails)",
                    "scripts/test-env.sh (or scripts/slurm-ssh-cluster start)",
                );
                return None;
            }
        };
        let vars: HashMap<&str, &str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("export NBHUB_SSH_CLUSTER_"))
            .filter_map(|l| l.split_once('='))
            .collect();
        let var = |k: &str| {
            vars.get(k)
                .unwrap_or_else(|| panic!("slurm-ssh-cluster env has no NBHUB_SSH_CLUSTER_{k}"))
                .to_string()
        };
        let port = |k: &str| {
            var(k)
                .parse()
                .unwrap_or_else(|_| panic!("NBHUB_SSH_CLUSTER_{k} is not a port"))
        };
        Some(Self {
            host: var("HOST"),
            port: port("PORT"),
            port2: port("PORT2"),
            known_hosts: var("KNOWN_HOSTS").into(),
            ca_key: var("CA_KEY").into(),
            slurm_conf: var("SLURM_CONF").into(),
            netns: var("NETNS"),
            dir: var("DIR").into(),
        })
    }

    /// Held by a test that closes a login node: no other test of the binary runs meanwhile
    /// (among those that hold [`SshCluster::shared`]).
    pub async fn exclusive(&self) -> tokio::sync::RwLockWriteGuard<'static, ()> {
        DOORS.write().await
    }

    /// Held by a test that needs the login nodes to stay open.
    pub async fn shared(&self) -> tokio::sync::RwLockReadGuard<'static, ()> {
        DOORS.read().await
    }

    /// `host:port` of login node `n` (1 or 2).
    pub fn login_host(&self, n: u8) -> String {
        let port = if n == 1 { self.port } else { self.port2 };
        format!("{}:{port}", self.host)
    }

    /// Closes login node `n`: its listener stops and its open connections drop. It opens again
    /// with [`ClosedDoor::open`], or when the guard is dropped (a failing test leaves no
    /// login node closed for the next).
    #[must_use = "the login node opens again when this is dropped"]
    pub fn door_stop(&self, n: u8) -> ClosedDoor {
        run_script(&["door-stop", &n.to_string()]);
        ClosedDoor { n, open: false }
    }

    /// Opens login node `n` (a no-op when it is open).
    pub fn door_start(&self, n: u8) {
        run_script(&["door-start", &n.to_string()]);
    }

    /// How many SSH connections `user` has open on the login nodes (counted there).
    pub fn connections(&self, user: &str) -> usize {
        let out = run_script(&["connections", user]);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("slurm-ssh-cluster connections {user} printed {out:?}"))
    }

    /// Waits until `user` has no process left on the machine (the login node's sessions
    /// close a moment after the hub's side of a connection; a command abandoned at its
    /// timeout may still run); after 5 s the ones left are killed. For a test account, before
    /// it is removed (userdel refuses an account that still runs processes).
    pub fn end_sessions(&self, user: &str) {
        let pids = || -> Vec<i32> {
            Command::new("pgrep")
                .args(["-u", user])
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        let wait = |within: Duration| {
            let deadline = Instant::now() + within;
            while Instant::now() < deadline {
                if pids().is_empty() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            false
        };
        if wait(Duration::from_secs(5)) {
            return;
        }
        for pid in pids() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
        wait(Duration::from_secs(5));
    }

    /// `squeue args` run inside the namespace against the cluster; its stdout.
    pub fn squeue_in_ns(&self, args: &[&str]) -> String {
        let out = self
            .in_ns("squeue")
            .args(args)
            .env("SLURM_CONF", &self.slurm_conf)
            .output()
            .expect("run squeue in the namespace");
        assert!(out.status.success(), "squeue {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A command that runs `program` in the namespace's network (as root), e.g. a server a
    /// test reaches only through a tunnel.
    pub fn in_ns(&self, program: impl AsRef<Path>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.netns))
            .arg(program.as_ref());
        cmd
    }
}

/// A login node closed by [`SshCluster::door_stop`].
pub struct ClosedDoor {
    n: u8,
    open: bool,
}

impl ClosedDoor {
    /// Opens the login node again.
    pub fn open(mut self) {
        self.open = true;
        run_script(&["door-start", &self.n.to_string()]);
    }
}

impl Drop for ClosedDoor {
    fn drop(&mut self) {
        if !self.open {
            let _ = Command::new(script())
                .args(["door-start", &self.n.to_string()])
                .output();
        }
    }
}

fn script() -> PathBuf {
    workspace_root().join("scripts/slurm-ssh-cluster")
}

fn run_script(args: &[&str]) -> String {
    let out = Command::new(script())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("scripts/slurm-ssh-cluster {args:?}: {e}"));
    assert!(
        out.status.success(),
        "scripts/slurm-ssh-cluster {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
