//! Spawner settings that differ for one start: JupyterHub 5.2's `Spawner.group_overrides` (other
//! settings for members of some groups) and 5.3's declarative `Spawner.apply_user_options` (user
//! options that set spawner settings). Both end in one [`SpawnerOverride`] per start, which the
//! hub puts in [`crate::SpawnRequest::overrides`] and every spawner applies after its own
//! config.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::FieldError;

/// The settings an override may change: those that make sense per user and start.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpawnerOverride {
    /// Added to (and winning over) `[spawner] environment`; JupyterHub merges dicts alike.
    pub environment: BTreeMap<String, String>,
    /// `JUPYTERHUB_DEFAULT_URL` (`{username}` replaced), instead of `[spawner] default_url`.
    pub default_url: Option<String>,
    /// `JUPYTERHUB_ROOT_DIR` (`{username}` replaced), instead of `[spawner] notebook_dir`.
    pub notebook_dir: Option<String>,
    /// The server's extra arguments, instead of `[spawner] args`.
    pub args: Option<Vec<String>>,
    /// Slurm: more sbatch options after `[slurm] extra_sbatch` and the form's (the last of a
    /// repeated option counts), e.g. `["--mem=64G", "--qos=long"]`.
    pub extra_sbatch: Option<Vec<String>>,
}

/// One entry of `[spawner.group_overrides.NAME]`: for members of any of `groups`, these
/// settings. Entries apply in the order of their names, as JupyterHub sorts its keys.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GroupOverride {
    pub groups: Vec<String>,
    pub spawner_override: SpawnerOverride,
}

/// The spawner settings a user option may set (`[spawner] apply_user_options` values):
/// JupyterHub's trait names, and `environment.NAME` for one variable.
const SETTABLE: &[&str] = &["default_url", "notebook_dir", "args", "extra_sbatch"];

impl SpawnerOverride {
    /// `other` on top of this one: variables added, other settings replaced when given.
    pub fn merge(&mut self, other: &SpawnerOverride) {
        self.environment.extend(other.environment.clone());
        for (mine, theirs) in [
            (&mut self.default_url, &other.default_url),
            (&mut self.notebook_dir, &other.notebook_dir),
        ] {
            if theirs.is_some() {
                mine.clone_from(theirs);
            }
        }
        for (mine, theirs) in [
            (&mut self.args, &other.args),
            (&mut self.extra_sbatch, &other.extra_sbatch),
        ] {
            if theirs.is_some() {
                mine.clone_from(theirs);
            }
        }
    }

    /// Applies the override to a server's environment, after the spawner's config made it.
    pub fn apply_env(&self, env: &mut BTreeMap<String, String>, user: &str) {
        let fill = |template: &str| template.replace("{username}", user);
        if let Some(url) = &self.default_url {
            env.insert("JUPYTERHUB_DEFAULT_URL".to_owned(), fill(url));
        }
        if let Some(dir) = &self.notebook_dir {
            env.insert("JUPYTERHUB_ROOT_DIR".to_owned(), fill(dir));
        }
        env.extend(self.environment.clone());
    }

    /// The server's arguments: the override's, else the config's.
    pub fn args<'a>(&'a self, configured: &'a [String]) -> &'a [String] {
        self.args.as_deref().unwrap_or(configured)
    }

    /// Checks serde cannot express; `key` names where the override is.
    pub fn validate(&self, key: &str) -> Result<(), String> {
        for name in self.environment.keys() {
            if !is_env_name(name) {
                return Err(format!(
                    "key `{key}.environment`: {name:?} is not an environment variable name"
                ));
            }
        }
        for line in self.extra_sbatch.iter().flatten() {
            if !line.starts_with('-') || line.chars().any(char::is_control) {
                return Err(format!(
                    "key `{key}.extra_sbatch`: '{line}' must be one sbatch option such as --mem=1G"
                ));
            }
        }
        Ok(())
    }
}

fn is_env_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks `[spawner] apply_user_options`: each target is a setting a user option may set.
pub fn validate_apply_user_options(map: &BTreeMap<String, String>) -> Result<(), String> {
    for (option, target) in map {
        let env_var = target.strip_prefix("environment.");
        let ok = SETTABLE.contains(&target.as_str()) || env_var.is_some_and(is_env_name);
        if !ok {
            return Err(format!(
                "key `spawner.apply_user_options`: {option:?} maps to {target:?}; a user option \
                 may set {}, or environment.NAME",
                SETTABLE.join(", ")
            ));
        }
    }
    Ok(())
}

/// The override of one start: the `group_overrides` whose groups the user is in, in the order of
/// their names, then the user options `apply_user_options` maps (JupyterHub applies them after
/// the group overrides). Those options are taken out of `options` (the spawner's own form does
/// not know them). A value that cannot set its setting is an error naming the option.
pub fn overrides_for(
    group_overrides: &BTreeMap<String, GroupOverride>,
    apply_user_options: &BTreeMap<String, String>,
    groups: &[String],
    options: &mut Map<String, Value>,
) -> Result<SpawnerOverride, Vec<FieldError>> {
    let mut out = SpawnerOverride::default();
    for go in group_overrides.values() {
        if go.groups.iter().any(|g| groups.contains(g)) {
            out.merge(&go.spawner_override);
        }
    }
    let mut errors = Vec::new();
    for (option, target) in apply_user_options {
        let Some(value) = options.remove(option) else {
            continue;
        };
        match set_from_option(&mut out, target, &value) {
            Ok(()) => {}
            Err(why) => errors.push(FieldError::new(option, why)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Most characters a user option may put into a setting.
const MAX_OPTION_CHARS: usize = 1000;

/// One user option's value into its setting: strings as they are, numbers and booleans as text
/// (JupyterHub coerces strings with the trait's `from_string`; here every target is text or a
/// list of text), a list of strings for `args`/`extra_sbatch` (or one string, one item).
fn set_from_option(out: &mut SpawnerOverride, target: &str, value: &Value) -> Result<(), String> {
    let text = |v: &Value| -> Result<String, String> {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err("must be a string".to_owned()),
        };
        if s.chars().count() > MAX_OPTION_CHARS || s.chars().any(char::is_control) {
            return Err(format!(
                "must be at most {MAX_OPTION_CHARS} characters, without control characters"
            ));
        }
        Ok(s)
    };
    let list = |v: &Value| -> Result<Vec<String>, String> {
        match v {
            Value::Array(items) => items.iter().map(text).collect(),
            other => Ok(vec![text(other)?]),
        }
    };
    match target {
        "default_url" => {
            let url = text(value)?;
            if !url.starts_with('/') {
                return Err("must be a path on the server, starting with /".to_owned());
            }
            out.default_url = Some(url);
        }
        "notebook_dir" => out.notebook_dir = Some(text(value)?),
        "args" => out.args = Some(list(value)?),
        "extra_sbatch" => {
            let lines = list(value)?;
            if let Some(bad) = lines.iter().find(|l| !l.starts_with('-')) {
                return Err(format!("'{bad}' is not an sbatch option such as --mem=1G"));
            }
            out.extra_sbatch = Some(lines);
        }
        other => {
            let Some(name) = other.strip_prefix("environment.") else {
                return Err(format!("sets {other:?}, which no user option may set"));
            };
            out.environment.insert(name.to_owned(), text(value)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn go(groups: &[&str], o: SpawnerOverride) -> GroupOverride {
        GroupOverride {
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            spawner_override: o,
        }
    }

    #[test]
    fn group_overrides_apply_in_name_order_to_members_only() {
        let mut map = BTreeMap::new();
        map.insert(
            "02-beta-url".to_owned(),
            go(
                &["beta"],
                SpawnerOverride {
                    default_url: Some("/lab/beta".into()),
                    environment: BTreeMap::from([("WHO".into(), "beta".into())]),
                    ..Default::default()
                },
            ),
        );
        map.insert(
            "01-alpha".to_owned(),
            go(
                &["alpha", "beta"],
                SpawnerOverride {
                    default_url: Some("/lab/alpha".into()),
                    environment: BTreeMap::from([
                        ("WHO".into(), "alpha".into()),
                        ("ALPHA".into(), "yes".into()),
                    ]),
                    ..Default::default()
                },
            ),
        );
        let none = BTreeMap::new();
        let mut opts = Map::new();
        let beta = overrides_for(&map, &none, &["beta".into()], &mut opts).expect("ok");
        assert_eq!(
            beta.default_url.as_deref(),
            Some("/lab/beta"),
            "the later name wins"
        );
        assert_eq!(beta.environment["WHO"], "beta");
        assert_eq!(beta.environment["ALPHA"], "yes", "dicts are merged");
        let other = overrides_for(&map, &none, &["gamma".into()], &mut opts).expect("ok");
        assert_eq!(other, SpawnerOverride::default());
    }

    #[test]
    fn user_options_set_their_mapped_settings_and_leave_the_rest() {
        let apply = BTreeMap::from([
            ("start_in".to_owned(), "default_url".to_owned()),
            (
                "threads".to_owned(),
                "environment.OMP_NUM_THREADS".to_owned(),
            ),
        ]);
        let mut opts = json!({"start_in": "/lab/tree/x", "threads": 4, "partition": "cpu"})
            .as_object()
            .cloned()
            .expect("map");
        let o = overrides_for(&BTreeMap::new(), &apply, &[], &mut opts).expect("ok");
        assert_eq!(o.default_url.as_deref(), Some("/lab/tree/x"));
        assert_eq!(
            o.environment["OMP_NUM_THREADS"], "4",
            "a number coerced to text"
        );
        assert_eq!(opts, *json!({"partition": "cpu"}).as_object().expect("map"));
        let mut bad = json!({"start_in": "http://elsewhere"})
            .as_object()
            .cloned()
            .expect("map");
        let errors = overrides_for(&BTreeMap::new(), &apply, &[], &mut bad).unwrap_err();
        assert_eq!(errors[0].field, "start_in");
        assert!(validate_apply_user_options(&apply).is_ok());
        let wrong = BTreeMap::from([("x".to_owned(), "cmd".to_owned())]);
        assert!(validate_apply_user_options(&wrong)
            .unwrap_err()
            .contains("\"cmd\""));
    }
}
