//! Test fixtures shared by nbhub's crates.
//!
//! Tests here run real parts (child processes, the real `jupyterhub-singleuser`, PostgreSQL),
//! so the kit is about three things:
//!
//! - **children that cannot leak**: [`ChildGuard`] runs a command in its own process group and
//!   kills the whole group when dropped, and reads its output line by line so a test can wait
//!   for a ready line (`listening on http://127.0.0.1:PORT`) instead of sleeping;
//! - **waiting with a deadline**: [`free_port`], [`wait_for_tcp`], [`wait_for_http`] poll with a
//!   short backoff until a deadline, and say what they waited for when it passes;
//! - **no silent skips**: [`require_venv`] and [`require_postgres`] find a real part or, when it
//!   is missing, skip loudly (or fail when `CI=true`), naming the script that installs it;
//!   [`require!`] returns early from the test in that case.
//!
//! # Layout
//!
//! - `account.rs`: [`TempAccount`], a real Unix account for one test;
//! - `child.rs`: [`ChildGuard`], [`Output`] (the collected lines);
//! - `hub_api.rs`: [`HubApi`], the hub's API as a batch job sees it, for the spawner's tests;
//! - `net.rs`: [`free_port`], [`port_in_line`], [`wait_for_tcp`], [`wait_for_http`],
//!   [`http_get`], [`slow_request`];
//! - `postgres.rs`: [`PgCluster`], a PostgreSQL cluster of a test's own, stopped and started
//!   by the test;
//! - `real.rs`: [`workspace_root`], [`require_venv`], [`require_postgres`], [`require!`];
//! - `slurm_accounting.rs`: [`AccountingCluster`], a second Slurm dev cluster with slurmdbd
//!   (sacctmgr associations, sacct);
//! - `ssh_cluster.rs`: [`SshCluster`], the Slurm cluster behind a login node
//!   (scripts/slurm-ssh-cluster): close and open its login nodes, count connections there;
//! - this file: re-exports, [`TempDir`] helpers.

mod account;
mod child;
mod hub_api;
mod net;
mod postgres;
mod real;
mod slurm_accounting;
mod ssh_cluster;

pub use account::TempAccount;
pub use child::{ChildGuard, Output, Stream};
pub use hub_api::HubApi;
pub use net::{
    free_port, http_get, port_in_line, slow_request, wait_for_http, wait_for_tcp, HttpResponse,
};
pub use postgres::PgCluster;
pub use real::{missing_part, require_postgres, require_venv, which, workspace_root};
pub use slurm_accounting::AccountingCluster;
pub use ssh_cluster::{ClosedDoor, SshCluster};
pub use tempfile::TempDir;

use std::path::Path;

/// A fresh temporary directory, removed when dropped.
///
/// Panics when the directory cannot be created: in a test that is the right answer.
pub fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("nbhub-test-")
        .tempdir()
        .expect("create a temporary directory")
}

/// A temporary directory that other Unix accounts can enter (mode 0755), for tests that run a
/// child as another user.
pub fn temp_dir_world_readable() -> TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod 0755 the temporary directory");
    dir
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// Whether this test process runs as root (the only case in which tests can switch users).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
