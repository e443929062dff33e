//! The Slurm spawner (`[spawner] kind = "slurm"`): a user's server as a batch job on a compute
//! node.
//!
//! # Layout
//!
//! - `slurm/config.rs`: [`SlurmConfig`], the `[slurm]` section.

mod config;

pub use config::SlurmConfig;
