//! The SSH transport: Slurm's commands and the tunnels to a server, run on a system's login
//! nodes over one multiplexed OpenSSH connection per (user, system).
//!
//! # Layout
//!
//! - `ssh/config.rs`: [`SshConfig`], the `[systems.ssh]` table.

mod config;
mod connection;

pub use config::SshConfig;
pub(crate) use connection::{SshTransport, Who};
