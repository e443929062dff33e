//! A system's health as the Slurm spawner sees it, and whether a start may go ahead now.

use crate::{FormContext, Health, SpawnError, ValidatedOptions};

use super::SlurmSpawner;

impl SlurmSpawner {
    /// What the spawner last saw of its cluster.
    pub fn health(&self) -> Health {
        match self.tracker.unreachable() {
            Some(reason) => Health::Unreachable { reason },
            None => Health::Ok,
        }
    }

    /// Whether a start with `options` may go ahead now (see `Spawner::admit`).
    pub async fn admit_job(
        &self,
        ctx: &FormContext,
        options: &ValidatedOptions,
    ) -> Result<(), SpawnError> {
        let _ = (ctx, options);
        match self.health() {
            Health::Ok => Ok(()),
            Health::Unreachable { reason } | Health::Down { reason } => {
                Err(SpawnError::Unavailable {
                    system: self.system_name().to_owned(),
                    message: reason,
                })
            }
        }
    }
}
