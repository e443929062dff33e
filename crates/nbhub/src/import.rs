//! `nbhub import-config`: a JupyterHub `jupyterhub_config.py` read without running it, and
//! written as nbhub's TOML. Every setting that is not carried over is reported with its line
//! and why, at the top of the file and by the caller on stderr; nothing is dropped silently.
//!
//! - `pyconfig.rs`: the tokenizer and parser of the literal subset configs are written in;
//! - `traits.rs`: the settings folded into one value per `c.Class.trait`, typed reads;
//! - `translate.rs`: JupyterHub's, batchspawner's, wrapspawner's, jupyterhub_moss's and
//!   OAuthenticator's names mapped onto [`Config`];
//! - this file: the driver, the report, and the TOML written (only what differs from
//!   nbhub's defaults, each key with the line it came from).

mod pyconfig;
mod traits;
mod translate;

use std::collections::BTreeMap;

use crate::config::Config;

pub use pyconfig::SyntaxError;

/// One setting left out or one note, with its line in the original.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub line: usize,
    /// What the file said: `c.Spawner.pre_spawn_hook`, `import os`, `a def block`.
    pub what: String,
    pub why: String,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Line 0: not in the file (a value JupyterHub would read from its environment).
        if self.line == 0 {
            return write!(f, "{}: {}", self.what, self.why);
        }
        write!(f, "line {}: {}: {}", self.line, self.what, self.why)
    }
}

/// What the translation could not carry over, and what it did that the admin should know.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Settings of the original that the result does not have (the exit status says so).
    pub left_out: Vec<Note>,
    /// Carried over with a change of form, or without effect in the original either.
    pub notes: Vec<Note>,
}

impl Report {
    pub fn left_out(&mut self, line: usize, what: String, why: String) {
        self.left_out.push(Note { line, what, why });
    }

    pub fn note(&mut self, line: usize, what: String, why: String) {
        self.notes.push(Note { line, what, why });
    }

    fn sort(&mut self) {
        self.left_out.sort_by_key(|n| n.line);
        self.notes.sort_by_key(|n| n.line);
    }
}

/// The result of an import.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The nbhub configuration file's text.
    pub toml: String,
    pub report: Report,
}

/// Why an import failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{origin}, {0}", origin = .1)]
    Syntax(SyntaxError, String),
    /// The translation made a file nbhub refuses: a bug of the translation, named as such.
    #[error("the translated configuration does not load ({0}); please report this")]
    Invalid(String),
}

/// Reads `source` (a `jupyterhub_config.py`; `origin` names it in messages) and translates it.
pub fn import(source: &str, origin: &str) -> Result<Imported, ImportError> {
    let items = pyconfig::parse(source).map_err(|e| ImportError::Syntax(e, origin.to_owned()))?;
    let mut report = Report::default();
    let (config, provenance) = translate::translate(&items, &mut report);
    report.sort();
    let body = minimal_toml(&config, &provenance).map_err(ImportError::Invalid)?;
    let toml = format!("{}{body}", header(origin, &report));
    // What `nbhub --check` does first: the file must load as written.
    Config::from_toml_str(&toml, "the translation")
        .and_then(|c| c.validate().map(|()| c))
        .map_err(|e| ImportError::Invalid(e.0))?;
    Ok(Imported { toml, report })
}

/// The comment at the top: where the file came from, what was left out, the notes.
fn header(origin: &str, report: &Report) -> String {
    let mut out = format!(
        "# nbhub configuration imported from {origin} by `nbhub import-config` (nbhub {}).\n\
         # Each key says which line of the original it came from; docs/migrating.md has the table.\n",
        env!("CARGO_PKG_VERSION")
    );
    let mut section = |title: &str, notes: &[Note]| {
        if notes.is_empty() {
            return;
        }
        out.push_str(&format!("#\n# {title} ({}):\n", notes.len()));
        for n in notes {
            for (i, line) in n.to_string().lines().enumerate() {
                let indent = if i == 0 { "  " } else { "    " };
                out.push_str(&format!("#{indent}{line}\n"));
            }
        }
    };
    section(
        "NOT TRANSLATED: these settings of the original are not in this file",
        &report.left_out,
    );
    section("Notes", &report.notes);
    out.push('\n');
    out
}

/// Where each key of the result came from: `"hub.bind_url"` → `"line 4: c.JupyterHub.port"`.
pub(crate) type Provenance = BTreeMap<String, Vec<String>>;

/// The keys of `config` that differ from nbhub's defaults, as TOML, each with a comment
/// naming the lines it came from.
fn minimal_toml(config: &Config, provenance: &Provenance) -> Result<String, String> {
    let full = toml::Value::try_from(config).map_err(|e| e.to_string())?;
    let default = toml::Value::try_from(Config::default()).map_err(|e| e.to_string())?;
    let (Some(full), Some(default)) = (full.as_table(), default.as_table()) else {
        return Err("the configuration is not a table".into());
    };
    let mut out = toml::Table::new();
    for (section, value) in full {
        if section == "systems" {
            continue;
        }
        match (value, default.get(section)) {
            (toml::Value::Table(t), Some(toml::Value::Table(d))) => {
                let changed: toml::Table = t
                    .iter()
                    .filter(|(k, v)| {
                        d.get(*k) != Some(*v)
                            || (*k == "kind"
                                && matches!(section.as_str(), "spawner" | "authenticator"))
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if !changed.is_empty() {
                    out.insert(section.clone(), toml::Value::Table(changed));
                }
            }
            (toml::Value::Array(a), _) if !a.is_empty() => {
                out.insert(section.clone(), value.clone());
            }
            _ => {}
        }
    }
    let text = toml::to_string(&toml::Value::Table(out)).map_err(|e| e.to_string())?;
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    for (key, lines) in provenance {
        let comment: String = lines.iter().map(|l| format!("# {l}\n")).collect();
        let mut parts = key.splitn(2, '.');
        let (Some(section), Some(name)) = (parts.next(), parts.next()) else {
            // A whole array of tables: the comment goes on its first table.
            if let Some(toml_edit::Item::ArrayOfTables(a)) = doc.get_mut(key) {
                if let Some(first) = a.iter_mut().next() {
                    first.decor_mut().set_prefix(format!("\n{comment}"));
                }
            }
            continue;
        };
        let Some(table) = doc.get_mut(section).and_then(|i| i.as_table_mut()) else {
            continue;
        };
        match table.get_mut(name) {
            Some(toml_edit::Item::Table(t)) => t.decor_mut().set_prefix(format!("\n{comment}")),
            Some(toml_edit::Item::ArrayOfTables(a)) => {
                if let Some(first) = a.iter_mut().next() {
                    first.decor_mut().set_prefix(format!("\n{comment}"));
                }
            }
            Some(_) => {
                if let Some(mut k) = table.key_mut(name) {
                    k.leaf_decor_mut().set_prefix(comment);
                }
            }
            None => {}
        }
    }
    Ok(doc.to_string())
}
