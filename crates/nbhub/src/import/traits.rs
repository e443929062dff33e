//! The settings of a config file as traitlets would see them once Python ran: each
//! `(class, trait)` with its final value (assignments replace, `update` merges, `append`,
//! `extend` and `+=` add), the line that set it last, and whether the translation used it.
//! Typed getters report a value of the wrong type instead of guessing.

use std::collections::{BTreeMap, BTreeSet};

use super::pyconfig::{add, Item, NotLiteral, Op, Value};
use super::Report;

/// One trait's value.
#[derive(Clone, Debug)]
pub struct Entry {
    pub value: Value,
    pub line: usize,
    /// Built by `append`/`extend`/`+=`/`update` without an assignment first: it adds to the
    /// trait's default (traitlets' lazy values).
    pub extends_default: bool,
    /// The line of each item of a list (or key of a dict), where the file shows it.
    pub item_lines: Vec<usize>,
}

impl Entry {
    /// The line of item `i`: where it is written, else the setting's.
    pub fn item_line(&self, i: usize) -> usize {
        self.item_lines.get(i).copied().unwrap_or(self.line)
    }
}

/// Every trait set in the file.
#[derive(Default)]
pub struct Traits {
    entries: BTreeMap<(String, String), Entry>,
    used: BTreeSet<(String, String)>,
}

/// A trait as the file names it: `c.Class.trait`.
pub fn shown(class: &str, name: &str) -> String {
    format!("c.{class}.{name}")
}

impl Traits {
    /// Folds the items into their final values; what cannot be known is reported.
    pub fn collect(items: &[Item], report: &mut Report) -> Traits {
        let mut t = Traits::default();
        for item in items {
            let Item::Setting {
                line,
                path,
                op,
                value,
                item_lines,
                ..
            } = item
            else {
                continue;
            };
            let line = *line;
            if path.len() != 2 {
                // c.A.b.c = …: an attribute of a trait's value (e.g. a dict trait's key
                // through attribute access), which traitlets config does not do either.
                report.left_out(
                    line,
                    format!("c.{}", path.join(".")),
                    "not a `c.Class.trait` setting".into(),
                );
                continue;
            }
            let key = (path[0].clone(), path[1].clone());
            let value = match value {
                Ok(v) => v.clone(),
                Err(e) => {
                    let name = shown(&key.0, &key.1);
                    let why = match e {
                        NotLiteral::Callable(what) => format!(
                            "a Python callable ({what}) cannot be translated ({})",
                            super::translate::callable_hint(&key.1)
                        ),
                        NotLiteral::Code(what) => {
                            format!(
                                "its value is {what}, not a literal; set it in the TOML by hand"
                            )
                        }
                    };
                    report.left_out(line, name, why);
                    // An earlier value is replaced by the one Python would compute.
                    t.entries.remove(&key);
                    t.used.insert(key);
                    continue;
                }
            };
            let old = t.entries.remove(&key);
            let entry = match (op, old) {
                (Op::Assign, _) => Entry {
                    value,
                    line,
                    extends_default: false,
                    item_lines: item_lines.clone(),
                },
                (Op::Update, Some(mut e)) => match (&mut e.value, value) {
                    (Value::Dict(old), Value::Dict(new)) => {
                        for (k, v) in new {
                            old.retain(|(ok, _)| *ok != k);
                            old.push((k, v));
                        }
                        e.line = line;
                        // Keys replaced moved: lines are no longer known per key.
                        e.item_lines.clear();
                        e
                    }
                    (_, v) => {
                        report.left_out(
                            line,
                            shown(&key.0, &key.1),
                            format!("update() with {} on a value that is not a dict", v.kind()),
                        );
                        e
                    }
                },
                (Op::Update, None) => Entry {
                    value,
                    line,
                    extends_default: true,
                    item_lines: item_lines.clone(),
                },
                (Op::Append | Op::Extend | Op::AddAssign, old) => {
                    let added_lines = match op {
                        Op::Append => vec![line],
                        _ => item_lines.clone(),
                    };
                    let items = match (op, value) {
                        (Op::Append, v) => Value::List(vec![v]),
                        (_, v) if v.items().is_some() => {
                            Value::List(v.items().unwrap_or_default().to_vec())
                        }
                        (_, Value::Str(s)) if *op == Op::AddAssign => Value::Str(s),
                        (_, v) => {
                            report.left_out(
                                line,
                                shown(&key.0, &key.1),
                                format!("cannot add {} to a list", v.kind()),
                            );
                            if let Some(old) = old {
                                t.entries.insert(key, old);
                            }
                            continue;
                        }
                    };
                    match old {
                        Some(mut e) => {
                            let base = match &e.value {
                                Value::Tuple(v) | Value::Set(v) => Value::List(v.clone()),
                                other => other.clone(),
                            };
                            let count = |v: &Value| v.items().map_or(0, <[Value]>::len);
                            // Lines stay known per item while every item has its line.
                            let lines_known = e.item_lines.len() == count(&base)
                                && added_lines.len() == count(&items);
                            match add(base, items) {
                                Ok(v) => e.value = v,
                                Err(why) => report.left_out(
                                    line,
                                    shown(&key.0, &key.1),
                                    format!("cannot add to it: {why}"),
                                ),
                            }
                            e.line = line;
                            if lines_known {
                                e.item_lines.extend(added_lines);
                            } else {
                                e.item_lines.clear();
                            }
                            e
                        }
                        None => Entry {
                            value: items,
                            line,
                            extends_default: true,
                            item_lines: added_lines,
                        },
                    }
                }
            };
            t.entries.insert(key, entry);
        }
        t
    }

    /// The value of `name` on the most specific of `classes` (listed general first) that
    /// sets it, as traitlets resolves it; every class's setting of it counts as used.
    pub fn get(&mut self, classes: &[&str], name: &str) -> Option<(Entry, String)> {
        let mut found = None;
        for class in classes {
            let key = ((*class).to_owned(), name.to_owned());
            if let Some(e) = self.entries.get(&key) {
                found = Some((e.clone(), shown(class, name)));
                self.used.insert(key);
            }
        }
        found
    }

    /// Whether any of `classes` sets `name`.
    pub fn has(&self, classes: &[&str], name: &str) -> bool {
        classes.iter().any(|c| {
            self.entries
                .contains_key(&((*c).to_owned(), name.to_owned()))
        })
    }

    /// The settings no translation used: `(line, "c.Class.trait", class)`.
    pub fn unused(&self) -> Vec<(usize, String, String)> {
        self.entries
            .iter()
            .filter(|(k, _)| !self.used.contains(*k))
            .map(|((class, name), e)| (e.line, shown(class, name), class.clone()))
            .collect()
    }

    /// Sets a trait as the file would have (wrapspawner's profiles set their child's traits).
    pub fn insert(&mut self, class: &str, name: &str, value: Value, line: usize) {
        self.entries.insert(
            (class.to_owned(), name.to_owned()),
            Entry {
                value,
                line,
                extends_default: false,
                item_lines: Vec::new(),
            },
        );
    }
}

/// Typed reads of a value; a wrong type is an error message for the report.
pub fn string(v: &Value) -> Result<String, String> {
    match v {
        Value::Str(s) => Ok(s.clone()),
        other => Err(format!("expected a string, not {}", other.kind())),
    }
}

pub fn strings(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Str(s) => Ok(vec![s.clone()]),
        other => other
            .items()
            .ok_or_else(|| format!("expected a list of strings, not {}", other.kind()))?
            .iter()
            .map(string)
            .collect(),
    }
}

pub fn boolean(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Int(i) => Ok(*i != 0),
        other => Err(format!("expected True or False, not {}", other.kind())),
    }
}

pub fn number(v: &Value) -> Result<f64, String> {
    match v {
        Value::Int(i) => Ok(*i as f64),
        Value::Float(f) => Ok(*f),
        other => Err(format!("expected a number, not {}", other.kind())),
    }
}

/// A whole, non-negative number (seconds, limits); a float is rounded up.
pub fn whole(v: &Value) -> Result<u64, String> {
    let n = number(v)?;
    if n < 0.0 || !n.is_finite() {
        return Err(format!("expected a whole number of at least 0, not {n}"));
    }
    Ok(n.ceil() as u64)
}

/// A dict with string keys.
pub fn dict(v: &Value) -> Result<Vec<(String, Value)>, String> {
    match v {
        Value::Dict(pairs) => pairs
            .iter()
            .map(|(k, v)| Ok((string(k)?, v.clone())))
            .collect(),
        other => Err(format!("expected a dict, not {}", other.kind())),
    }
}

/// A literal as JSON (template variables, service info).
pub fn json(v: &Value) -> Result<serde_json::Value, String> {
    Ok(match v {
        Value::Str(s) => s.clone().into(),
        Value::Int(i) => (*i).into(),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .ok_or("a number JSON cannot hold")?,
        Value::Bool(b) => (*b).into(),
        Value::None => serde_json::Value::Null,
        Value::List(v) | Value::Tuple(v) | Value::Set(v) => {
            serde_json::Value::Array(v.iter().map(json).collect::<Result<_, _>>()?)
        }
        Value::Dict(_) => serde_json::Value::Object(
            dict(v)?
                .iter()
                .map(|(k, v)| Ok((k.clone(), json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        Value::Class(c) => return Err(format!("the class {c}")),
    })
}
