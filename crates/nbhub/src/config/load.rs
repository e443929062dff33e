//! Loading: the TOML file over the built-in defaults, then the `NBHUB_SECTION__KEY`
//! environment overrides, then [`Config::validate`]. Every error names the key and where it
//! came from (file and line, or the variable).

use std::path::Path;

use super::*;

/// Environment variables that override the file: `NBHUB_HUB__BIND_URL=…`.
pub const ENV_PREFIX: &str = "NBHUB_";

impl Config {
    /// Load `path` (if given) and apply the environment overrides from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let (text, origin) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    ConfigError(format!("cannot read config file {}: {e}", p.display()))
                })?;
                (text, p.display().to_string())
            }
            None => (String::new(), "<defaults>".to_string()),
        };
        let mut config = Config::from_toml_str(&text, &origin)?;
        // Only NBHUB_<SECTION>__<KEY> variables are config; other NBHUB_* names (the test and
        // demo scripts' own) are left alone.
        let overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__"))
            .collect();
        if !overrides.is_empty() {
            config = config.with_env_overrides(&overrides)?;
        }
        config
            .validate()
            .map_err(|e| ConfigError(with_line(e.0, &text, &origin)))?;
        Ok(config)
    }

    /// Parse a TOML document; errors carry the key path, file and line.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(de).map_err(|err| {
            let key = err.path().to_string();
            let inner = err.into_inner();
            let position = inner
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!(", line {line}")
                })
                .unwrap_or_default();
            let message = inner
                .message()
                .replace("expected u32", "expected a whole number (integer)")
                .replace("expected u64", "expected a whole number (integer)");
            // A `[[systems]]` table reads its keys itself and names the one below it.
            let (key, message) = match message
                .strip_prefix("key `")
                .and_then(|m| m.split_once("`: "))
            {
                Some((below, rest)) => (format!("{key}.{below}"), rest.to_owned()),
                None => (key, message),
            };
            let key = if key == "." {
                String::new()
            } else {
                format!("key `{key}`: ")
            };
            ConfigError(format!("{origin}{position}: {key}{message}"))
        })
        .and_then(|config: Config| {
            // `[slurm]` with only default values is still a second shape of the same thing.
            let both = !config.systems.is_empty()
                && toml::from_str::<toml::Table>(text).is_ok_and(|t| t.contains_key("slurm"));
            if both {
                return Err(ConfigError(format!(
                    "{origin}: [slurm] and [[systems]] are both given; with [[systems]] each system holds its own Slurm keys (slurm_conf, partitions, allow, …): move [slurm]'s keys into the [[systems]] tables"
                )));
            }
            Ok(config)
        })
    }

    pub(super) fn with_env_overrides(
        &self,
        overrides: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let mut doc = toml::Value::try_from(self)
            .map_err(|e| ConfigError(format!("internal: cannot re-serialise config: {e}")))?;
        if let Some(table) = doc.as_table_mut() {
            // Only one of the two shapes is written back (see `from_toml_str`).
            if self.systems.is_empty() {
                table.remove("systems");
            } else {
                table.remove("slurm");
            }
        }
        for (var, raw) in overrides {
            let rest = &var[ENV_PREFIX.len()..];
            let Some((section, key)) = rest.split_once("__") else {
                return Err(ConfigError(format!(
                    "environment variable {var}: expected {ENV_PREFIX}SECTION__KEY, e.g. NBHUB_HUB__BIND_URL"
                )));
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            if section == "slurm" && !self.systems.is_empty() {
                return Err(ConfigError(format!(
                    "environment variable {var}: [slurm] is not used with [[systems]]; set the key in the system's [[systems]] table"
                )));
            }
            let table = doc
                .get_mut(&section)
                .and_then(toml::Value::as_table_mut)
                .ok_or_else(|| {
                    ConfigError(format!(
                        "environment variable {var}: unknown section [{section}]; sections that take variables: hub, authenticator, spawner, local, slurm, proxy"
                    ))
                })?;
            if !table.contains_key(&key) {
                let allowed: Vec<&str> = table.keys().map(String::as_str).collect();
                return Err(ConfigError(format!(
                    "environment variable {var}: unknown key `{section}.{key}`; allowed: {}",
                    allowed.join(", ")
                )));
            }
            // A key whose value is text takes the variable as it is (no quoting needed); other
            // keys read it as TOML, so numbers, booleans and arrays work.
            let value = if table[&key].is_str() {
                toml::Value::String(raw.clone())
            } else {
                toml::from_str::<toml::Table>(&format!("v = {raw}"))
                    .ok()
                    .and_then(|mut t| t.remove("v"))
                    .unwrap_or_else(|| toml::Value::String(raw.clone()))
            };
            table.insert(key, value);
        }
        let text = toml::to_string(&doc)
            .map_err(|e| ConfigError(format!("internal: cannot re-serialise config: {e}")))?;
        Config::from_toml_str(&text, "environment (NBHUB_* variables)")
    }
}

/// A validation error (`key `a.b[0].c`: …`) with the file and the line of that key in front,
/// when the key is in the file (it may come from a default or an environment variable).
fn with_line(message: String, text: &str, origin: &str) -> String {
    let line = message
        .strip_prefix("key `")
        .and_then(|m| m.split_once('`'))
        .and_then(|(key, _)| line_of(text, key));
    match line {
        Some(line) => format!("{origin}, line {line}: {message}"),
        None => message,
    }
}

/// The line of `key` (`slurm.interfaces[0].environments`) in a TOML document.
pub(crate) fn line_of(text: &str, key: &str) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut item = doc.as_item();
    for segment in key.split('.') {
        let (name, indexes) = match segment.split_once('[') {
            Some((name, rest)) => (name, Some(rest)),
            None => (segment, None),
        };
        item = item.get(name)?;
        for index in indexes.into_iter().flat_map(|r| r.split('[')) {
            let i: usize = index.trim_end_matches(']').parse().ok()?;
            item = item.get(i)?;
        }
    }
    let span = match item {
        toml_edit::Item::Table(t) => t.span(),
        toml_edit::Item::Value(v) => v.span(),
        toml_edit::Item::ArrayOfTables(a) => a.get(0).and_then(toml_edit::Table::span),
        toml_edit::Item::None => None,
    }?;
    Some(text[..span.start.min(text.len())].matches('\n').count() + 1)
}
