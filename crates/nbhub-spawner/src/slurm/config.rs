//! `[slurm]`: the Slurm spawner's own keys.

use serde::{Deserialize, Serialize};

/// `[slurm]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmConfig {
    /// Where `sbatch`, `squeue`, `scancel`, `sinfo` and `scontrol` are; `""`: on `PATH`.
    pub bin_dir: String,
    /// Exported as `SLURM_CONF` to every Slurm command; `""`: Slurm's default.
    pub slurm_conf: String,
}

impl SlurmConfig {
    /// Checks serde cannot express; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        Ok(())
    }

    /// This section as commented TOML with every key at its value (for `generate-config`).
    pub fn to_commented_toml(&self) -> String {
        format!(
            r#"[slurm]
# The Slurm spawner ([spawner] kind = "slurm"). Where sbatch, squeue, scancel, sinfo and scontrol
# are; "" = on PATH.
bin_dir = "{bin_dir}"
# Exported as SLURM_CONF to every Slurm command; "" = Slurm's default (/etc/slurm/slurm.conf).
slurm_conf = "{slurm_conf}"
"#,
            bin_dir = self.bin_dir,
            slurm_conf = self.slurm_conf,
        )
    }
}
