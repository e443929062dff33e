//! `[[systems]]`: one table per Slurm system, with the system's own keys (`name`, `title`,
//! `description`, `transport`, `reach`, `[systems.ssh]`) beside every key of today's `[slurm]`
//! section.
//!
//! serde's `flatten` loses `deny_unknown_fields`, so a table is read as a [`toml::Table`]: the
//! system's keys are taken out and the rest is read as a [`SlurmConfig`], which refuses
//! unknown keys. Errors are `key `<path below the table>`: <message>`; the hub's config loader
//! puts the table's own path (`systems[1]`) in front.

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{SlurmConfig, SshConfig};

/// How the hub runs a system's Slurm commands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// The hub's machine is a Slurm client of the system.
    #[default]
    Local,
    /// Over SSH on the system's login nodes (`[systems.ssh]`).
    Ssh,
}

/// How the hub and the proxy reach a server on a compute node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reach {
    /// Straight to the node's address.
    #[default]
    Direct,
    /// Through a forward on the login node (needs `transport = "ssh"`).
    Tunnel,
}

/// One `[[systems]]` table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SystemConfig {
    /// The value of `user_options.system`; in URLs and metric labels.
    pub name: String,
    /// What the form and pages call it; `""`: the name.
    pub title: String,
    /// A line the form shows under the system's name.
    pub description: String,
    pub transport: Transport,
    pub reach: Reach,
    /// `[systems.ssh]`, for `transport = "ssh"`.
    pub ssh: Option<SshConfig>,
    /// Every key of `[slurm]`, for this system.
    pub slurm: SlurmConfig,
}

/// The keys a `[[systems]]` table has besides `[slurm]`'s.
const SYSTEM_KEYS: [&str; 6] = ["name", "title", "description", "transport", "reach", "ssh"];

impl SystemConfig {
    /// What the form and pages call the system.
    pub fn display_title(&self) -> &str {
        if self.title.is_empty() {
            &self.name
        } else {
            &self.title
        }
    }

    /// Reads one `[[systems]]` table. The error names the key below the table:
    /// "key `slurm_cnf`: unknown field …".
    pub fn from_table(mut table: toml::Table) -> Result<Self, String> {
        let mut system = SystemConfig::default();
        if let Some(v) = take(&mut table, "name")? {
            system.name = v;
        }
        if let Some(v) = take(&mut table, "title")? {
            system.title = v;
        }
        if let Some(v) = take(&mut table, "description")? {
            system.description = v;
        }
        if let Some(v) = take(&mut table, "transport")? {
            system.transport = v;
        }
        if let Some(v) = take(&mut table, "reach")? {
            system.reach = v;
        }
        system.ssh = take(&mut table, "ssh")?;
        system.slurm = read("", toml::Value::Table(table)).map_err(|e| {
            // `[slurm]`'s own list of keys leaves out the system's.
            if e.contains("unknown field") {
                format!(
                    "{e} (or one of the system's keys: {})",
                    SYSTEM_KEYS.join(", ")
                )
            } else {
                e
            }
        })?;
        Ok(system)
    }

    /// The table as TOML writes it (the system's keys, then `[slurm]`'s).
    pub fn to_table(&self) -> Result<toml::Table, String> {
        let mut table = toml::Table::new();
        table.insert("name".into(), self.name.clone().into());
        table.insert("title".into(), self.title.clone().into());
        table.insert("description".into(), self.description.clone().into());
        table.insert("transport".into(), value(&self.transport)?);
        table.insert("reach".into(), value(&self.reach)?);
        if let Some(ssh) = &self.ssh {
            table.insert("ssh".into(), value(ssh)?);
        }
        match value(&self.slurm)? {
            toml::Value::Table(slurm) => table.extend(slurm),
            other => return Err(format!("[slurm] serialised as {}", other.type_str())),
        }
        Ok(table)
    }

    /// The checks of one system, `i` its place in `[[systems]]`; messages name the key.
    pub fn validate(&self, i: usize) -> Result<(), String> {
        let key = |k: &str| format!("key `systems[{i}].{k}`");
        if !is_system_name(&self.name) {
            return Err(format!(
                "{}: {:?} is not a system name (1 to 32 of a-z, 0-9, '-', '_', starting with a letter or digit; it appears in URLs and metric labels)",
                key("name"),
                self.name
            ));
        }
        if self.title.chars().any(char::is_control) {
            return Err(format!("{}: must be one line", key("title")));
        }
        match (self.transport, &self.ssh) {
            (Transport::Ssh, None) => {
                return Err(format!(
                    "{}: transport = \"ssh\" needs a [systems.ssh] table with login_hosts, known_hosts and certificate_authority or identity_file",
                    key("ssh")
                ))
            }
            (Transport::Ssh, Some(ssh)) => ssh.validate(&format!("systems[{i}].ssh"))?,
            (Transport::Local, Some(_)) => {
                return Err(format!(
                    "{}: [systems.ssh] is used only with transport = \"ssh\"",
                    key("transport")
                ))
            }
            (Transport::Local, None) => {}
        }
        if self.reach == Reach::Tunnel && self.transport != Transport::Ssh {
            return Err(format!(
                "{}: reach = \"tunnel\" goes through a login node, so it needs transport = \"ssh\"",
                key("reach")
            ));
        }
        self.slurm
            .validate()
            .map_err(|e| e.replace("key `slurm.", &format!("key `systems[{i}].")))
    }
}

/// Checks every system and that their names differ.
pub fn validate_systems(systems: &[SystemConfig]) -> Result<(), String> {
    for (i, system) in systems.iter().enumerate() {
        system.validate(i)?;
        if let Some(j) = systems[..i].iter().position(|s| s.name == system.name) {
            return Err(format!(
                "key `systems[{i}].name`: {:?} is already the name of systems[{j}]; names must differ",
                system.name
            ));
        }
    }
    Ok(())
}

/// A system name: `[a-z0-9][a-z0-9_-]{0,31}`.
pub fn is_system_name(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn take<T: DeserializeOwned>(table: &mut toml::Table, key: &str) -> Result<Option<T>, String> {
    table.remove(key).map(|v| read(key, v)).transpose()
}

/// Reads `v`; the error names the key path below the table (`key` is `v`'s own key).
fn read<T: DeserializeOwned>(key: &str, v: toml::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(v).map_err(|err| {
        let below = err.path().to_string();
        let path = match (key, below.as_str()) {
            (k, ".") => k.to_owned(),
            ("", b) => b.to_owned(),
            (k, b) => format!("{k}.{b}"),
        };
        let message = err.into_inner().to_string().trim_end().to_owned();
        if path.is_empty() {
            message
        } else {
            format!("key `{path}`: {message}")
        }
    })
}

fn value<T: Serialize>(v: &T) -> Result<toml::Value, String> {
    toml::Value::try_from(v).map_err(|e| e.to_string())
}

impl<'de> Deserialize<'de> for SystemConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let table = toml::Table::deserialize(d)?;
        SystemConfig::from_table(table).map_err(D::Error::custom)
    }
}

impl Serialize for SystemConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_table().map_err(S::Error::custom)?.serialize(s)
    }
}

/// A commented `[[systems]]` example for `generate-config`: one system the hub's machine is a
/// Slurm client of, one reached over SSH through its login nodes.
pub fn commented_systems_example() -> &'static str {
    r#"# Several Slurm systems instead of the one of [slurm] (not both): one [[systems]] table per
# system, with every key of [slurm] for that system beside its own. The form offers the systems
# a user may use (by the system's allow rules and, with Slurm accounting, associations) first,
# then that system's partitions, accounts and fields; user_options.system names it.
# [[systems]]
# name = "cluster"                   # user_options.system; a-z, 0-9, '-', '_' (URLs, metrics)
# title = "Cluster"
# description = "The hub's own cluster"
# transport = "local"                # the hub's machine is a Slurm client of this system
# reach = "direct"                   # the hub reaches the compute nodes directly
# slurm_conf = "/etc/slurm/slurm.conf"
# submit_as = "setuid"
# [[systems.partitions]]
# name = "devel"
# max_nodes = 1
#
# [[systems]]
# name = "booster"
# title = "Booster"
# description = "Reached over SSH through its login nodes"
# transport = "ssh"                  # Slurm's commands run on a login node
# reach = "tunnel"                   # its compute nodes are reached through the login node
# poll_interval = 10
# [systems.ssh]
# login_hosts = ["login1.booster.example:22", "login2.booster.example"]
# known_hosts = "/etc/nbhub/booster_known_hosts"
# user = "{unix_user}"
# certificate_authority = "/etc/nbhub/booster_user_ca"   # or identity_file = "/etc/nbhub/keys/{username}"
# certificate_lifetime = 3600
# tracking_user = "nbhub"
"#
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AllowRule, PartitionConfig};

    fn parse(text: &str) -> Result<Vec<SystemConfig>, String> {
        #[derive(Deserialize)]
        struct Doc {
            systems: Vec<SystemConfig>,
        }
        let doc: Doc = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        validate_systems(&doc.systems)?;
        Ok(doc.systems)
    }

    fn ssh_system() -> SystemConfig {
        SystemConfig {
            name: "booster".into(),
            title: "Booster".into(),
            description: "over SSH".into(),
            transport: Transport::Ssh,
            reach: Reach::Tunnel,
            ssh: Some(SshConfig {
                login_hosts: vec!["login1:2222".into(), "login2".into()],
                known_hosts: "/etc/nbhub/known_hosts".into(),
                identity_file: "/etc/nbhub/keys/{username}".into(),
                tracking_user: "nbhub".into(),
                ..SshConfig::default()
            }),
            slurm: SlurmConfig {
                poll_interval: 10,
                partitions: vec![PartitionConfig {
                    name: "batch".into(),
                    ..Default::default()
                }],
                allow: vec![AllowRule {
                    users: vec!["alice".into()],
                    partitions: vec!["batch".into()],
                    ..Default::default()
                }],
                // Each system has its own environments, interfaces and directories.
                ..crate::slurm::session::tests::config()
            },
        }
    }

    #[test]
    fn systems_round_trip_through_toml() {
        let systems = vec![
            SystemConfig {
                name: "local".into(),
                ..Default::default()
            },
            ssh_system(),
        ];
        #[derive(Serialize)]
        struct Doc<'a> {
            systems: &'a [SystemConfig],
        }
        let text = toml::to_string(&Doc { systems: &systems }).unwrap();
        assert_eq!(
            parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}")),
            systems
        );
    }

    #[test]
    fn the_commented_example_is_a_valid_config() {
        let text: String = commented_systems_example()
            .lines()
            .filter_map(|l| l.strip_prefix("# ").or(l.strip_prefix("#")))
            .filter(|l| l.starts_with('[') || l.contains(" = ") || l.is_empty())
            .map(|l| format!("{}\n", l.split("   #").next().unwrap_or(l).trim_end()))
            .collect();
        let systems = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let names: Vec<&str> = systems.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["cluster", "booster"]);
        assert_eq!(systems[1].transport, Transport::Ssh);
        assert_eq!(systems[0].slurm.partitions[0].name, "devel");
    }

    #[test]
    fn errors_name_the_key() {
        for (text, words) in [
            (
                "[[systems]]\nname = \"a\"\nslurm_cnf = \"x\"\n",
                "key `slurm_cnf`: unknown field",
            ),
            (
                "[[systems]]\nname = \"a\"\npoll_interval = \"soon\"\n",
                "key `poll_interval`",
            ),
            (
                "[[systems]]\nname = \"a\"\ntransport = \"telnet\"\n",
                "key `transport`",
            ),
            (
                "[[systems]]\nname = \"a\"\n[[systems.partitions]]\nname = \"x\"\nmax_nodez = 1\n",
                "key `partitions[0].max_nodez`",
            ),
            (
                "[[systems]]\nname = \"a\"\ntransport = \"ssh\"\n[systems.ssh]\nlogin_host = [\"x\"]\n",
                "key `ssh.login_host`",
            ),
            ("[[systems]]\nname = \"A b\"\n", "systems[0].name"),
            (
                "[[systems]]\nname = \"a\"\n[[systems]]\nname = \"a\"\n",
                "key `systems[1].name`: \"a\" is already",
            ),
            (
                "[[systems]]\nname = \"a\"\ntransport = \"ssh\"\n",
                "key `systems[0].ssh`",
            ),
            (
                "[[systems]]\nname = \"a\"\nreach = \"tunnel\"\n",
                "key `systems[0].reach`",
            ),
            (
                "[[systems]]\nname = \"a\"\ntransport = \"ssh\"\n[systems.ssh]\nlogin_hosts = [\"l\"]\nknown_hosts = \"/k\"\n",
                "systems[0].ssh.certificate_authority",
            ),
            (
                "[[systems]]\nname = \"a\"\ntransport = \"ssh\"\n[systems.ssh]\nlogin_hosts = [\"l\"]\nknown_hosts = \"/k\"\nidentity_file = \"/i\"\ncertificate_authority = \"/c\"\n",
                "systems[0].ssh.identity_file",
            ),
            (
                "[[systems]]\nname = \"a\"\ntransport = \"ssh\"\n[systems.ssh]\nknown_hosts = \"/k\"\nidentity_file = \"/i\"\n",
                "systems[0].ssh.login_hosts",
            ),
            (
                "[[systems]]\nname = \"a\"\n[[systems]]\nname = \"b\"\npoll_interval = 0\n",
                "key `systems[1].poll_interval`",
            ),
            (
                "[[systems]]\nname = \"a\"\n[[systems.environments]]\nname = \"e\"\n",
                "key `systems[0].environments[0]`: environment 'e' needs exactly one of modules, prefix and container",
            ),
            (
                "[[systems]]\nname = \"a\"\n[[systems.interfaces]]\nname = \"lab\"\nurl = \"/lab\"\nenvironments = [\"x\"]\n",
                "key `systems[0].interfaces[0].environments`",
            ),
            (
                "[[systems]]\nname = \"a\"\n[[systems.directories]]\nname = \"d\"\npath = \"{user}\"\n",
                "key `systems[0].directories[0].path`",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(words), "{text}: {err}");
        }
        assert!(is_system_name("juwels-booster_2"));
        for bad in ["", "-a", "Juwels", "a.b", "a/b", &"x".repeat(33)] {
            assert!(!is_system_name(bad), "{bad}");
        }
    }
}
