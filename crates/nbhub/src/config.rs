//! Configuration: one TOML file whose keys are JupyterHub's trait names in snake case, grouped
//! by class, overridden by `NBHUB_SECTION__KEY` environment variables.
//!
//! Layers, later wins: built-in defaults ← the TOML file ← environment. Unknown keys are errors,
//! and every error names the key, where it came from (file and line, or the variable) and what is
//! allowed, so an admin can fix it without reading the source.
//!
//! # Layout
//!
//! - this file: [`Config`], the whole file, and [`ConfigError`];
//! - `sections.rs`: the sections (`[hub]`, `[authenticator]`, `[proxy]`, `[[services]]`,
//!   `[[roles]]`) and their kinds; `[spawner]`, `[local]`, `[slurm]` and `[[systems]]` are
//!   nbhub-spawner's;
//! - `urls.rs`: [`HttpUrl`] and [`BaseUrl`], URLs checked once, when read;
//! - `load.rs`: reading the file and the `NBHUB_SECTION__KEY` overrides, errors with key and line;
//! - `validate.rs`: the checks that span several keys or that serde cannot express;
//! - `generate.rs`: [`generate_config`], the commented file with every key at its default.

mod generate;
mod load;
mod sections;
mod urls;
mod validate;

pub use generate::generate_config;
pub use load::ENV_PREFIX;
pub use sections::{
    AuthenticatorConfig, AuthenticatorKind, HubConfig, LogLevel, ProxyConfig, ProxyKind,
    RoleConfig, ServiceConfig,
};
pub use urls::{BaseUrl, HttpUrl};

use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub hub: HubConfig,
    pub authenticator: AuthenticatorConfig,
    /// What every spawner shares; `[local]` and `[slurm]` hold each spawner's own keys.
    pub spawner: nbhub_spawner::SpawnerConfig,
    pub local: nbhub_spawner::LocalConfig,
    pub slurm: nbhub_spawner::SlurmConfig,
    /// Several Slurm systems instead of `[slurm]`'s one: each table holds `[slurm]`'s keys
    /// for its system beside the system's own (`name`, `title`, `transport`, …).
    pub systems: Vec<nbhub_spawner::SystemConfig>,
    pub proxy: ProxyConfig,
    pub services: Vec<ServiceConfig>,
    pub roles: Vec<RoleConfig>,
}

/// A configuration that could not be loaded; the message is for the admin.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Where the SQLite file or the PostgreSQL server is.
    pub fn database_url(&self) -> String {
        if self.hub.db_url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.hub.data_dir.join("nbhub.sqlite").display()
            )
        } else {
            self.hub.db_url.clone()
        }
    }
}

#[cfg(test)]
mod tests;
