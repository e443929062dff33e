//! A PostgreSQL cluster of one test's own, which the test may stop and start again (a database
//! restart under load). The shared test database (`NBHUB_TEST_DATABASE_URL`) cannot be stopped
//! without breaking every other test: this one is made with `initdb` in a temporary directory
//! and its server runs as a child process ([`ChildGuard`]) on a free port of 127.0.0.1, with
//! the binaries scripts/postgres.sh uses (`NBHUB_PG_BIN`, else the newest
//! `/usr/lib/postgresql/<version>/bin`). As root, the server runs as the `postgres` account:
//! PostgreSQL refuses to run as root.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{free_port, missing_part, temp_dir, ChildGuard, TempDir};

/// What the server says once it takes connections.
const READY: &str = "database system is ready to accept connections";

pub struct PgCluster {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    /// `(uid, gid)` of the `postgres` account when this process is root.
    owner: Option<(u32, u32)>,
    server: Option<ChildGuard>,
}

/// The directory of PostgreSQL's server binaries (`initdb`, `postgres`): `NBHUB_PG_BIN`, else
/// the highest version under `/usr/lib/postgresql`.
fn server_binaries() -> Option<PathBuf> {
    let complete = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("NBHUB_PG_BIN").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir)).filter(|d| complete(d));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            complete(&bin).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

impl PgCluster {
    /// A new cluster, started; `None` (after a loud message) when PostgreSQL's server binaries
    /// are missing, a panic instead under `CI=true`.
    pub async fn start() -> Option<PgCluster> {
        let Some(bin) = server_binaries() else {
            missing_part(
                "PostgreSQL's server binaries (initdb and postgres under \
                 /usr/lib/postgresql/<version>/bin, or NBHUB_PG_BIN)",
                "scripts/test-env.sh",
            );
            return None;
        };
        let dir = temp_dir();
        let owner = if crate::is_root() {
            let account = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .expect("a `postgres` account to run PostgreSQL as (scripts/test-env.sh)");
            nix::unistd::chown(dir.path(), Some(account.uid), Some(account.gid))
                .expect("give the cluster's directory to postgres");
            Some((account.uid.as_raw(), account.gid.as_raw()))
        } else {
            None
        };
        let mut cluster = PgCluster {
            dir,
            bin,
            port: free_port(),
            owner,
            server: None,
        };
        let data = cluster.data();
        let out = cluster
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Commits are synchronous (the default): a write acknowledged before a stop must be
        // there after it. fsync is off: the data stays in the page cache across a stop.
        let settings = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             fsync = off\nmax_connections = 100\n",
            cluster.port,
            cluster.dir.path().display()
        );
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("read postgresql.conf");
        text.push_str(&settings);
        std::fs::write(&conf, text).expect("write postgresql.conf");
        cluster.start_again().await;
        Some(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// One of the server binaries, as the account that owns the cluster.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.current_dir(self.dir.path());
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid).env("HOME", self.dir.path());
        }
        cmd
    }

    /// The URL of the cluster's `postgres` database (trusting the `postgres` role).
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Whether the server runs.
    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }

    /// Stops the server as `pg_ctl stop -m fast` does (SIGINT: open sessions are ended with
    /// `57P01 admin_shutdown`, the server checkpoints) and waits until it has exited.
    pub async fn stop(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        let _ = kill(Pid::from_raw(server.pid() as i32), Signal::SIGINT);
        let status = server.wait_exit(Duration::from_secs(60)).await;
        assert!(status.success(), "postgres stopped with {status}");
    }

    /// Starts the server (again, on the same port, with the same data) and waits until it
    /// takes connections.
    pub async fn start_again(&mut self) {
        assert!(self.server.is_none(), "the server runs already");
        let mut cmd = self.command("postgres");
        cmd.arg("-D").arg(self.data());
        let server = ChildGuard::spawn("postgres", cmd).expect("start postgres");
        server
            .wait_for_line(|l| l.contains(READY), Duration::from_secs(60))
            .await;
        self.server = Some(server);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            // Immediate shutdown: nothing of a test's cluster needs to be kept.
            let _ = kill(Pid::from_raw(server.pid() as i32), Signal::SIGQUIT);
            drop(server);
        }
    }
}
