//! The SSH transport: Slurm's commands and the tunnels to a server, run on a system's login
//! nodes over one multiplexed OpenSSH connection per (user, system). docs/ssh.md describes it
//! for admins.
//!
//! # Layout
//!
//! - `ssh/config.rs`: [`SshConfig`], the `[systems.ssh]` table, its validation, login hosts;
//! - `ssh/quote.rs`: [`quote`] and [`command_line`], the one way arguments reach a remote shell;
//! - `ssh/cert.rs`: the per-account keys and the certificates the hub signs (or the site's
//!   identity files);
//! - `ssh/master.rs`: one OpenSSH ControlMaster (start, ready, why it failed) and its
//!   multiplexed clients;
//! - `ssh/connection.rs`: [`SshTransport`], one per system: connections per account, login
//!   host failover, commands ([`SshTransport::run`]), registered forwards restored after a
//!   reconnect, health;
//! - `ssh/error.rs`: [`SshError`] and how it becomes a [`crate::SpawnError`].

mod cert;
mod config;
mod connection;
mod error;
mod master;
mod quote;

pub use config::SshConfig;
pub use connection::{Forward, RemoteOutput, SshTransport, Who};
pub use error::SshError;
pub use quote::{command_line, quote, NulInArgument};
