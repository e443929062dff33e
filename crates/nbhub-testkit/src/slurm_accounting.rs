//! [`AccountingCluster`]: a second Slurm dev cluster with accounting
//! (`scripts/slurm-dev-cluster start --accounting`: a private MariaDB and slurmdbd, so that
//! `sacctmgr` associations and `sacct` work as on a real site), on free ports, stopped and
//! removed when dropped. Shared by the spawner's tests (accounts from associations) and the
//! hub's (usage from `sacct`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{free_port, temp_dir_world_readable, TempDir};

/// The cluster; its `slurm.conf` is [`AccountingCluster::conf`].
pub struct AccountingCluster {
    _dir: TempDir,
    env: Vec<(&'static str, String)>,
    /// The cluster's `slurm.conf` (its `SLURM_CONF`).
    pub conf: String,
}

impl AccountingCluster {
    fn script() -> PathBuf {
        crate::workspace_root().join("scripts/slurm-dev-cluster")
    }

    /// Whether slurmdbd and MariaDB are installed; when not, says so loudly (a failure under
    /// CI=true) and the test returns.
    pub fn installed() -> bool {
        let installed = ["slurmdbd", "mariadbd"]
            .iter()
            .all(|tool| crate::which(tool).is_some())
            || ["/usr/sbin/slurmdbd", "/usr/sbin/mariadbd"]
                .iter()
                .all(|p| Path::new(p).exists());
        if !installed {
            crate::missing_part(
                "slurmdbd and MariaDB (Debian's slurmdbd and mariadb-server)",
                "scripts/test-env.sh (it installs them)",
            );
        }
        installed
    }

    /// A free port followed by `n - 1` more free ones (slurmd ports are one range).
    fn free_run(n: u16) -> u16 {
        loop {
            let first = free_port();
            if first < u16::MAX - n
                && (1..n).all(|k| std::net::TcpListener::bind(("127.0.0.1", first + k)).is_ok())
            {
                return first;
            }
        }
    }

    /// Starts the cluster (its controller, nodes, slurmdbd and database); panics with the
    /// script's error when it cannot.
    pub fn start() -> Self {
        let dir = temp_dir_world_readable();
        let env = vec![
            (
                "NBHUB_SLURM_DIR",
                dir.path().join("slurm").display().to_string(),
            ),
            ("NBHUB_SLURM_CTLD_PORT", free_port().to_string()),
            ("NBHUB_SLURM_SLURMD_PORT", Self::free_run(4).to_string()),
            ("NBHUB_SLURM_DBD_PORT", free_port().to_string()),
            ("NBHUB_SLURM_DB_PORT", free_port().to_string()),
        ];
        let cluster = AccountingCluster {
            conf: dir
                .path()
                .join("slurm/etc/slurm.conf")
                .display()
                .to_string(),
            _dir: dir,
            env,
        };
        let out = Command::new(Self::script())
            .args(["start", "--accounting"])
            .envs(cluster.env.iter().map(|(k, v)| (*k, v)))
            .output()
            .expect("run slurm-dev-cluster");
        assert!(
            out.status.success(),
            "slurm-dev-cluster start --accounting: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    /// `sacctmgr -i ARGS` on this cluster; panics when it fails.
    pub fn sacctmgr(&self, args: &[&str]) {
        let out = Command::new("sacctmgr")
            .arg("-i")
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .output()
            .expect("sacctmgr");
        assert!(out.status.success(), "sacctmgr {args:?}: {out:?}");
    }
}

impl Drop for AccountingCluster {
    fn drop(&mut self) {
        let _ = Command::new(Self::script())
            .arg("stop")
            .envs(self.env.iter().map(|(k, v)| (*k, v)))
            .stderr(std::process::Stdio::null())
            .status();
        // The TempDir goes after this, with MariaDB's data and the logs.
    }
}
