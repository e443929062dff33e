//! `[slurm]`: the Slurm spawner's own keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::options::parse_slurm_duration;
use crate::secs;
pub use crate::slurm::session::{
    ContainerConfig, ContainerRuntime, DirectoryConfig, EnvironmentConfig, InterfaceConfig,
};

/// `[slurm]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmConfig {
    /// Where `sbatch`, `squeue`, `scancel`, `sinfo` and `scontrol` are; `""`: on `PATH`.
    pub bin_dir: String,
    /// Exported as `SLURM_CONF` to every Slurm command; `""`: Slurm's default.
    pub slurm_conf: String,
    /// How `sbatch`/`scancel` run as the user: `["setuid"]` (the hub is root: the child takes
    /// the user's uid, gid and groups) or a command prefix with `{username}`, e.g.
    /// `["sudo", "-E", "-u", "{username}"]`.
    #[serde(deserialize_with = "secs::one_or_many::deserialize")]
    pub submit_as: Vec<String>,
    /// Seconds between the (one, shared) `squeue` calls that track every job.
    pub poll_interval: u64,
    /// Seconds a job may wait in the queue before it is cancelled; 0: no limit.
    pub max_queue_wait: u64,
    /// Seconds before the time limit Slurm sends the job script USR1 (`--signal=B:USR1@N`):
    /// its trap tells the hub, and the home page warns that the server will stop; 0: off.
    pub end_signal_seconds: u64,
    /// A minijinja job script template replacing the built-in one; `""`: built-in.
    pub job_template_file: String,
    /// The job's output file (`{username}`, `{home}`, `{server}` replaced; Slurm's `%j` is the
    /// job id, `%u` the user, `%x` the job name). The built-in job script makes its folder
    /// (mode 0700, as the user) and writes there; with a site template that does not use
    /// `log_file`, it is sbatch's `--output` and its folder must exist. The hub reads its
    /// last lines when the job ends.
    pub output: String,
    /// The job's working directory (`{username}`, `{home}` replaced).
    pub chdir: String,
    /// How the hub reaches a node: `"NodeAddr"` (from `scontrol show node`), or a template
    /// with `{node}`, e.g. `"{node}"` or `"{node}.cluster.example.org"`.
    pub node_address: String,
    /// The address the server listens on inside the job.
    pub bind_ip: String,
    /// The Python the job script uses to pick a free port and report it (every user must be
    /// able to run it).
    pub python: String,
    /// The job's name (`{username}`, `{server}` replaced).
    pub job_name: String,
    /// More `#SBATCH` options for every job, e.g. `["--mem=1G"]` (set by the admin).
    pub extra_sbatch: Vec<String>,
    /// Accounts offered when Slurm has no accounting (no `sacctmgr`); empty: no account field.
    pub accounts: Vec<String>,
    /// Partitions offered, in this order; empty: every partition Slurm has.
    pub partitions: Vec<PartitionConfig>,
    /// Site-defined form fields.
    pub fields: Vec<CustomField>,
    /// Who may use which partitions, accounts and custom choices.
    pub allow: Vec<AllowRule>,
    /// The software environments a server may run with (the `environment` field).
    pub environments: Vec<EnvironmentConfig>,
    /// What may open when the user goes to the server (the `interface` field).
    pub interfaces: Vec<InterfaceConfig>,
    /// Where the server may start (the `directory` field).
    pub directories: Vec<DirectoryConfig>,
}

/// `[[slurm.partitions]]`: one offered partition; limits may narrow Slurm's, never widen.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PartitionConfig {
    pub name: String,
    /// Shown instead of the name; `""`: the name.
    pub label: String,
    pub description: String,
    /// At most this many nodes (0: Slurm's MaxNodes).
    pub max_nodes: u32,
    /// At most this run time, in Slurm's syntax (`""`: Slurm's MaxTime).
    pub max_time: String,
}

/// The type of a custom field.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CustomType {
    #[default]
    Text,
    Int,
    Float,
    Choice,
    Bool,
}

/// `[[slurm.fields]]`: a field the site defines.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CustomField {
    /// The option's name: letters, digits and `_`.
    pub name: String,
    pub label: String,
    #[serde(rename = "type")]
    pub kind: CustomType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    pub choices: Vec<String>,
    /// A regular expression the whole text must match.
    pub pattern: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<CustomValue>,
    pub help: String,
    /// `#SBATCH` option the value reaches the job as, `{value}` replaced, e.g.
    /// `"--mem={value}G"` (a bool: the option alone when on). `""`: only a template variable.
    pub sbatch: String,
    pub required: bool,
}

/// A default value of a custom field as TOML writes it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum CustomValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl CustomValue {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            CustomValue::Bool(b) => (*b).into(),
            CustomValue::Int(i) => (*i).into(),
            CustomValue::Float(f) => (*f).into(),
            CustomValue::Text(s) => s.clone().into(),
        }
    }
}

/// `[[slurm.allow]]`: for the users and group members it names, the values they may use. A
/// kind of value (partitions, accounts, one field's choices) that no rule lists is open to
/// everyone; once a rule lists it, only the users of the rules listing it may use those.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AllowRule {
    /// User names; `"*"`: everyone.
    pub users: Vec<String>,
    /// Hub group names.
    pub groups: Vec<String>,
    pub partitions: Vec<String>,
    pub accounts: Vec<String>,
    /// Custom field name → allowed choices.
    pub choices: BTreeMap<String, Vec<String>>,
}

impl AllowRule {
    pub fn applies_to(&self, user: &str, groups: &[String]) -> bool {
        self.users.iter().any(|u| u == "*" || u == user)
            || self.groups.iter().any(|g| groups.contains(g))
    }
}

impl Default for SlurmConfig {
    fn default() -> Self {
        Self {
            bin_dir: String::new(),
            slurm_conf: String::new(),
            submit_as: vec!["setuid".to_owned()],
            poll_interval: 5,
            max_queue_wait: 0,
            end_signal_seconds: 300,
            job_template_file: String::new(),
            output: "{home}/.nbhub/logs/nbhub-slurm-%j.log".to_owned(),
            chdir: "{home}".to_owned(),
            node_address: "NodeAddr".to_owned(),
            bind_ip: "0.0.0.0".to_owned(),
            python: "/usr/bin/python3".to_owned(),
            job_name: "nbhub-{username}".to_owned(),
            extra_sbatch: Vec::new(),
            accounts: Vec::new(),
            partitions: Vec::new(),
            fields: Vec::new(),
            allow: Vec::new(),
            environments: Vec::new(),
            interfaces: Vec::new(),
            directories: Vec::new(),
        }
    }
}

/// Names of the built-in options: a custom field may not take them.
pub(crate) const BUILTIN_FIELDS: &[&str] = &[
    "partition",
    "nodes",
    "runtime",
    "account",
    "gpus",
    "reservation",
    "environment",
    "modules",
    "interface",
    "directory",
];

impl SlurmConfig {
    /// Checks serde cannot express; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.submit_as.is_empty() || self.submit_as[0].trim().is_empty() {
            return Err(
                "key `slurm.submit_as`: \"setuid\" or a command prefix such as [\"sudo\", \"-E\", \"-u\", \"{username}\"]"
                    .into(),
            );
        }
        if self.submit_as.len() > 1 && !self.submit_as.iter().any(|a| a.contains("{username}")) {
            return Err("key `slurm.submit_as`: a prefix must contain {username}".into());
        }
        if self.poll_interval == 0 {
            return Err("key `slurm.poll_interval`: must be at least 1 second".into());
        }
        if self.node_address != "NodeAddr" && !self.node_address.contains("{node}") {
            return Err("key `slurm.node_address`: \"NodeAddr\" or a template with {node}".into());
        }
        for (i, p) in self.partitions.iter().enumerate() {
            if !is_slurm_name(&p.name) {
                return Err(format!(
                    "key `slurm.partitions[{i}].name`: '{}' is not a partition name",
                    p.name
                ));
            }
            if !p.max_time.is_empty() && parse_slurm_duration(&p.max_time).is_none() {
                return Err(format!(
                    "key `slurm.partitions[{i}].max_time`: '{}' is not a run time such as 1:00:00",
                    p.max_time
                ));
            }
        }
        for a in &self.accounts {
            if !is_slurm_name(a) {
                return Err(format!(
                    "key `slurm.accounts`: '{a}' is not an account name"
                ));
            }
        }
        for line in &self.extra_sbatch {
            if !line.starts_with('-') || line.chars().any(char::is_control) {
                return Err(format!(
                    "key `slurm.extra_sbatch`: '{line}' must be one sbatch option such as --mem=1G"
                ));
            }
        }
        for (i, f) in self.fields.iter().enumerate() {
            let key = format!("slurm.fields[{i}]");
            if f.name.is_empty()
                || !f
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(format!(
                    "key `{key}.name`: '{}' must be letters, digits and _",
                    f.name
                ));
            }
            if BUILTIN_FIELDS.contains(&f.name.as_str()) {
                return Err(format!(
                    "key `{key}.name`: '{}' is a built-in option",
                    f.name
                ));
            }
            if f.kind == CustomType::Choice && f.choices.is_empty() {
                return Err(format!("key `{key}.choices`: a choice field needs choices"));
            }
            if !f.pattern.is_empty() {
                regex::Regex::new(&f.pattern)
                    .map_err(|e| format!("key `{key}.pattern`: not a regular expression: {e}"))?;
            }
            if !f.sbatch.is_empty() && !f.sbatch.starts_with('-') {
                return Err(format!(
                    "key `{key}.sbatch`: '{}' must be an sbatch option such as --mem={{value}}G",
                    f.sbatch
                ));
            }
        }
        crate::slurm::session::validate_config(self)
    }

    /// This section as commented TOML with every key at its value (for `generate-config`).
    pub fn to_commented_toml(&self) -> String {
        let list = |v: &[String]| format!("{v:?}");
        format!(
            r#"[slurm]
# The Slurm spawner ([spawner] kind = "slurm"). Where sbatch, squeue, scancel, sinfo and scontrol
# are; "" = on PATH.
bin_dir = "{bin_dir}"
# Exported as SLURM_CONF to every Slurm command; "" = Slurm's default (/etc/slurm/slurm.conf).
slurm_conf = "{slurm_conf}"
# How sbatch and scancel run as the user: ["setuid"] (the hub runs as root) or a prefix such as
# ["sudo", "-E", "-u", "{{username}}"] (sudo must keep SLURM_CONF and the server's variables).
submit_as = {submit_as}
# Seconds between the squeue calls that track every job (one call for all jobs).
poll_interval = {poll_interval}
# Seconds a job may wait in the queue before it is cancelled; 0 = no limit.
max_queue_wait = {max_queue_wait}
# Seconds before the time limit Slurm signals the job (--signal=B:USR1@N): the job script tells
# the hub, whose home page then warns that the server will stop; 0 = off. Slurm may send it up
# to a minute late.
end_signal_seconds = {end_signal_seconds}
# A minijinja job script replacing the built-in one; "" = built-in. It gets: sbatch_lines,
# env_names, cmd (quoted), python, bind_ip, options, username, server, job_name, log_file (the
# output file as a shell word: a template using it writes the job's output there itself, as the
# built-in one does), setup (the lines entering the chosen directory and setting up the chosen
# environment; cmd is then the environment's command), directory, end_signal (the --signal
# option, "" when off: trap USR1 and run the server in the background, as the built-in one
# does), and each custom field by name.
job_template_file = "{job_template_file}"
# The job's output file ({{username}}, {{home}}; %j = job id). The job script makes its folder
# (mode 0700, as the user); the hub shows its last lines when the job ends.
output = "{output}"
# The job's working directory.
chdir = "{chdir}"
# How the hub reaches a node: "NodeAddr" (scontrol show node) or a template such as "{{node}}".
node_address = "{node_address}"
# Where the server listens inside the job, and the Python the job script uses (every user must
# be able to run it).
bind_ip = "{bind_ip}"
python = "{python}"
# The job's name ({{username}}, {{server}}).
job_name = "{job_name}"
# More sbatch options for every job, e.g. ["--mem=1G"].
extra_sbatch = {extra_sbatch}
# Accounts offered when Slurm runs without accounting; empty = no account field.
accounts = {accounts}
# Partitions offered (empty = all), with labels and limits that narrow Slurm's; fields the site
# defines (type: int, float, text, choice, bool; sbatch = how the value reaches the job, "" =
# only as a template variable); who may use what (a kind of value no rule lists is open to
# everyone). For example:
# [[slurm.partitions]]
# name = "devel"
# label = "Quick tests"
# description = "One node, up to 30 minutes"
# max_nodes = 1
# max_time = "00:30:00"
# [[slurm.fields]]
# name = "mem_gb"
# label = "Memory per node (GB)"
# type = "int"
# min = 1
# max = 64
# default = 2
# sbatch = "--mem={{value}}G"
# [[slurm.allow]]
# groups = ["gpu-users"]
# partitions = ["gpu", "batch", "devel"]
# accounts = ["proj1"]
# The session around the server (fields environment, interface, directory; see docs/slurm.md).
# An environment has exactly one of modules (Lmod modules loaded before the server starts),
# prefix (a venv or conda prefix whose bin/jupyterhub-singleuser runs) and container (image and
# runtime: apptainer, singularity, charliecloud or podman; the home and the directory bound).
# An interface sets the server's default URL, optionally only with some environments. A
# directory's path may use {{username}}, {{home}} and {{account}}.
# [[slurm.environments]]
# name = "python-2025"
# title = "Python 2025"
# modules = ["Stages/2025", "Python/3.12"]
# add_modules = true                 # users may add modules `module -t avail` lists
# [[slurm.environments]]
# name = "my-venv"
# prefix = "/p/software/envs/jupyter-2024"
# [[slurm.environments]]
# name = "lab-image"
# container = {{ image = "/p/images/jupyter.sif", runtime = "apptainer" }}
# [[slurm.interfaces]]
# name = "lab"
# title = "JupyterLab"
# url = "/lab"
# [[slurm.interfaces]]
# name = "vscode"
# title = "VS Code"
# url = "/vscode/"
# environments = ["lab-image"]
# [[slurm.directories]]
# name = "scratch"
# title = "Scratch"
# path = "/p/scratch/{{account}}/{{username}}"
{tables}"#,
            bin_dir = self.bin_dir,
            slurm_conf = self.slurm_conf,
            submit_as = list(&self.submit_as),
            poll_interval = self.poll_interval,
            max_queue_wait = self.max_queue_wait,
            end_signal_seconds = self.end_signal_seconds,
            job_template_file = self.job_template_file,
            output = self.output,
            chdir = self.chdir,
            node_address = self.node_address,
            bind_ip = self.bind_ip,
            python = self.python,
            job_name = self.job_name,
            extra_sbatch = list(&self.extra_sbatch),
            accounts = list(&self.accounts),
            tables = {
                let tables = [
                    toml_tables("partitions", &self.partitions),
                    toml_tables("fields", &self.fields),
                    toml_tables("allow", &self.allow),
                    toml_tables("environments", &self.environments),
                    toml_tables("interfaces", &self.interfaces),
                    toml_tables("directories", &self.directories),
                ];
                let (plain, tables): (String, String) = tables.into_iter().unzip();
                plain + &tables
            },
        )
    }
}

/// `(plain, tables)`: `key = []` when there are no items, else `[[slurm.key]]` tables (which
/// must come after every plain key of the section).
fn toml_tables<T: Serialize>(key: &str, items: &[T]) -> (String, String) {
    let value = match toml::Value::try_from(items) {
        Ok(v) if !items.is_empty() => v,
        _ => return (format!("{key} = []\n"), String::new()),
    };
    let mut inner = toml::map::Map::new();
    inner.insert(key.to_owned(), value);
    let mut outer = toml::map::Map::new();
    outer.insert("slurm".to_owned(), toml::Value::Table(inner));
    (
        String::new(),
        // The section header is already written.
        toml::to_string(&toml::Value::Table(outer))
            .unwrap_or_default()
            .replace("[slurm]\n", ""),
    )
}

/// A Slurm partition, account or reservation name: letters, digits, `_`, `-`, `.`.
pub(crate) fn is_slurm_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commented_toml_round_trips() {
        for config in [
            SlurmConfig::default(),
            SlurmConfig {
                partitions: vec![PartitionConfig {
                    name: "devel".into(),
                    max_nodes: 1,
                    ..Default::default()
                }],
                fields: vec![CustomField {
                    name: "mem_gb".into(),
                    label: "Memory".into(),
                    kind: CustomType::Int,
                    min: Some(1.0),
                    max: Some(8.0),
                    default: Some(CustomValue::Int(2)),
                    sbatch: "--mem={value}G".into(),
                    ..Default::default()
                }],
                ..crate::slurm::session::tests::config()
            },
        ] {
            let text = config.to_commented_toml();
            #[derive(Deserialize)]
            struct Wrap {
                slurm: SlurmConfig,
            }
            let parsed: Wrap = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(parsed.slurm, config, "{text}");
            assert!(config.validate().is_ok());
        }
    }

    #[test]
    fn validation_names_the_key() {
        let bad = SlurmConfig {
            fields: vec![CustomField {
                name: "nodes".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("slurm.fields[0].name"));
        let bad = SlurmConfig {
            submit_as: vec!["sudo".into(), "-u".into()],
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("{username}"));
    }
}
