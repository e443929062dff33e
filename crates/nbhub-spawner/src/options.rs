//! Options forms: a typed description the pages render, and the server-side validation of
//! what a user submits (every value is checked here, whatever the browser did).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The fields of an options form, in display order. An empty form means "no options".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FormSpec {
    pub fields: Vec<FormField>,
    /// The spawner can estimate when a server with the chosen values would start (the page
    /// offers a button for it: see `Spawner::estimate`).
    #[serde(default)]
    pub can_estimate: bool,
}

/// One field of a form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FormField {
    /// The key in the submitted options (and the HTML input name).
    pub name: String,
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    pub kind: FieldKind,
    /// A missing or empty value is an error (unless there is a default).
    #[serde(default)]
    pub required: bool,
    /// Used when the value is missing or empty; not validated again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// The value the form opens with (the user's last choice, else `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Shown only while another field has one of some values (e.g. GPUs only for partitions
    /// that have them). Pages hide it otherwise; validation is the spawner's either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible_when: Option<VisibleWhen>,
}

/// See [`FormField::visible_when`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisibleWhen {
    pub field: String,
    pub values: Vec<String>,
}

/// What a field holds and its limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FieldKind {
    /// One of `choices` (validated as the choice's `value`, a string).
    Select { choices: Vec<Choice> },
    /// A number within `min..=max` (validated as a JSON number).
    Float {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
    },
    /// An integer within `min..=max` (validated as a JSON number).
    Int {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<i64>,
    },
    /// One line of text without control characters, at most `max_len` characters, matching
    /// the regular expression `pattern` as a whole when there is one.
    Text {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_len: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pattern: Option<String>,
    },
    /// A run time in Slurm's syntax (`90` minutes, `1:30:00`, `2-12`, …), validated as a
    /// number of seconds within `min_secs..=max_secs`. With `clock`, written as on a clock
    /// instead (`HH:MM:SS`, `HH:MM`, `D-HH:MM[:SS]`, or whole minutes: [`CLOCK_FORMS`]) and
    /// validated as `"HH:MM:SS"` text ([`parse_clock_duration`]).
    Duration {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_secs: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_secs: Option<u64>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        clock: bool,
    },
    /// On/off (validated as a JSON bool; missing = false).
    Checkbox,
}

/// One choice of a select field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    pub value: String,
    pub label: String,
    /// A line of live facts shown next to the choice, e.g. "3 of 4 nodes idle · 2 CPUs and
    /// 2 GiB per node · up to 8:00:00".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<String>,
    /// Limits that come with this choice, for the page's scripts (e.g. `max_nodes`,
    /// `max_time_secs`, `default_time_secs`, `gpus_per_node`). Informative only.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub data: Map<String, Value>,
    /// What selecting this choice does to other fields (field name → limits): e.g. a
    /// partition's node limit, run time limit and default run time. Pages apply them as the
    /// choice changes; validation is the spawner's either way.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, FieldLimits>,
}

impl Choice {
    pub fn new(value: impl Into<String>, label: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            label: label.into(),
            info: None,
            data: Map::new(),
            limits: BTreeMap::new(),
        }
    }
}

/// The limits and default of a field while some choice of another field is selected (see
/// [`Choice::limits`]). Numbers are the field's own: whole numbers for `Int`, seconds for
/// `Duration`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    /// The value the field takes while the user has not typed one of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// A maximum that depends on a third field's value (nodes by GPUs per node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_by: Option<MaxBy>,
}

/// `max[v]` is the field's maximum while `field` holds the whole number `v` (past the end of
/// the list: the last entry); over it, `message` is shown with `{max}` and `{value}` (the
/// other field's) filled in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaxBy {
    pub field: String,
    pub max: Vec<i64>,
    pub message: String,
}

impl FormField {
    /// A field with no help, not required, no default.
    pub fn new(name: impl Into<String>, label: impl Into<String>, kind: FieldKind) -> Self {
        Self {
            name: name.into(),
            label: label.into(),
            help: None,
            kind,
            required: false,
            default: None,
            value: None,
            visible_when: None,
        }
    }
}

/// Why one submitted field was refused, shown next to that field. `field` is empty for an
/// error about the options as a whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// Not a fault of the options: what they are checked against (the batch system) cannot be
    /// asked now. The hub answers 503 rather than 400.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(UNAVAILABLE, message)
    }

    pub fn is_unavailable(&self) -> bool {
        self.field == UNAVAILABLE
    }

    /// `"field: message; field: message"`.
    pub fn join(errors: &[FieldError]) -> String {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The field name of [`FieldError::unavailable`]: no form field can have it.
const UNAVAILABLE: &str = "!unavailable";

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() || self.is_unavailable() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Options that passed validation: field name → typed value. This is what the hub stores as
/// the server's `user_options`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ValidatedOptions(pub Map<String, Value>);

impl ValidatedOptions {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    pub fn get_i64(&self, name: &str) -> Option<i64> {
        self.0.get(name).and_then(Value::as_i64)
    }

    pub fn get_bool(&self, name: &str) -> Option<bool> {
        self.0.get(name).and_then(Value::as_bool)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FormSpec {
    pub fn field(&self, name: &str) -> Option<&FormField> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Validates submitted options: `null` or an object whose keys are this form's fields.
    /// Values may be typed JSON (REST API) or strings, possibly wrapped in one-element lists
    /// (HTML form posts, as JupyterHub's `options_from_form` passes them). All errors are
    /// returned, not just the first.
    pub fn validate(&self, submitted: &Value) -> Result<ValidatedOptions, Vec<FieldError>> {
        let empty = Map::new();
        let object = match submitted {
            Value::Null => &empty,
            Value::Object(map) => map,
            other => {
                return Err(vec![FieldError::new(
                    "",
                    format!("options must be a JSON object, not {}", json_type(other)),
                )])
            }
        };
        let mut errors = Vec::new();
        for key in object.keys() {
            if self.field(key).is_none() {
                let message = if self.fields.is_empty() {
                    "unknown option: this server takes no options".to_owned()
                } else {
                    let known: Vec<&str> = self.fields.iter().map(|f| f.name.as_str()).collect();
                    format!("unknown option (known: {})", known.join(", "))
                };
                errors.push(FieldError::new(key, message));
            }
        }
        let mut out = Map::new();
        for field in &self.fields {
            let raw = object.get(&field.name).map(unwrap_form_list);
            match raw.filter(|v| !is_blank(v)) {
                Some(value) => match field.kind.check(value) {
                    Ok(v) => {
                        out.insert(field.name.clone(), v);
                    }
                    Err(message) => errors.push(FieldError::new(&field.name, message)),
                },
                None => {
                    if let Some(default) = &field.default {
                        out.insert(field.name.clone(), default.clone());
                    } else if field.required {
                        errors.push(FieldError::new(&field.name, "is required"));
                    } else if field.kind == FieldKind::Checkbox {
                        // An unticked HTML checkbox is simply absent from the post.
                        out.insert(field.name.clone(), Value::Bool(false));
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(ValidatedOptions(out))
        } else {
            Err(errors)
        }
    }
}

impl FieldKind {
    /// Checks one present, non-blank value; returns its typed form or a message.
    fn check(&self, value: &Value) -> Result<Value, String> {
        match self {
            FieldKind::Select { choices } => {
                let s = value.as_str().ok_or("must be one of the listed choices")?;
                if choices.iter().any(|c| c.value == s) {
                    Ok(Value::String(s.to_owned()))
                } else {
                    let list: Vec<&str> = choices.iter().map(|c| c.value.as_str()).collect();
                    Err(format!(
                        "'{s}' is not one of the choices ({})",
                        list.join(", ")
                    ))
                }
            }
            FieldKind::Int { min, max } => {
                let n = match value {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                }
                .ok_or("must be a whole number")?;
                if let Some(min) = min.filter(|m| n < *m) {
                    return Err(format!("must be at least {min}"));
                }
                if let Some(max) = max.filter(|m| n > *m) {
                    return Err(format!("must be at most {max}"));
                }
                Ok(Value::from(n))
            }
            FieldKind::Float { min, max } => {
                let n = match value {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse::<f64>().ok(),
                    _ => None,
                }
                .filter(|n| n.is_finite())
                .ok_or("must be a number")?;
                if let Some(min) = min.filter(|m| n < *m) {
                    return Err(format!("must be at least {min}"));
                }
                if let Some(max) = max.filter(|m| n > *m) {
                    return Err(format!("must be at most {max}"));
                }
                Ok(Value::from(n))
            }
            FieldKind::Text { max_len, pattern } => {
                let s = value.as_str().ok_or("must be text")?;
                if s.chars().any(char::is_control) {
                    return Err("must be one line without control characters".to_owned());
                }
                if let Some(max) = max_len.filter(|m| s.chars().count() > *m) {
                    return Err(format!("must be at most {max} characters"));
                }
                if let Some(pattern) = pattern {
                    let whole = regex::Regex::new(&format!("^(?:{pattern})$"))
                        .map_err(|_| "cannot be checked (the site's pattern is broken)")?;
                    if !whole.is_match(s) {
                        return Err(format!("must match the pattern {pattern}"));
                    }
                }
                Ok(Value::String(s.to_owned()))
            }
            FieldKind::Duration {
                min_secs,
                max_secs,
                clock,
            } => {
                let secs = match value {
                    // A bare number is minutes, as in Slurm's --time.
                    Value::Number(n) => n.as_u64().and_then(|m| m.checked_mul(60)),
                    Value::String(s) if *clock => parse_clock_duration(s),
                    Value::String(s) => parse_slurm_duration(s),
                    _ => None,
                }
                .ok_or(if *clock {
                    "must be a run time as hh:mm:ss (01:30:00), hh:mm (01:30) or minutes (90)"
                } else {
                    "must be a run time such as 90 (minutes), 1:30:00 or 2-00:00:00"
                })?;
                if let Some(min) = min_secs.filter(|m| secs < *m) {
                    return Err(format!("must be at least {}", format_slurm_duration(min)));
                }
                if let Some(max) = max_secs.filter(|m| secs > *m) {
                    return Err(format!("must be at most {}", format_slurm_duration(max)));
                }
                if *clock {
                    Ok(Value::String(format_slurm_duration(secs)))
                } else {
                    Ok(Value::from(secs))
                }
            }
            FieldKind::Checkbox => match value {
                Value::Bool(b) => Ok(Value::Bool(*b)),
                Value::String(s) => match s.to_ascii_lowercase().as_str() {
                    "on" | "true" | "1" | "yes" => Ok(Value::Bool(true)),
                    "off" | "false" | "0" | "no" => Ok(Value::Bool(false)),
                    _ => Err("must be on or off".to_owned()),
                },
                _ => Err("must be on or off".to_owned()),
            },
        }
    }
}

/// `["x"]` → `"x"`: HTML form posts arrive as lists of strings.
fn unwrap_form_list(v: &Value) -> &Value {
    match v {
        Value::Array(items) if items.len() == 1 => &items[0],
        other => other,
    }
}

fn is_blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Parses a Slurm time limit into seconds: `minutes`, `minutes:seconds`,
/// `hours:minutes:seconds`, `days-hours`, `days-hours:minutes`, `days-hours:minutes:seconds`.
/// `None` for anything else (including Slurm's `UNLIMITED`, which a form must not offer).
pub fn parse_slurm_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    let num = |p: &str| -> Option<u64> {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 9 {
            None
        } else {
            p.parse().ok()
        }
    };
    let (days, rest) = match s.split_once('-') {
        Some((d, rest)) => (Some(num(d)?), rest),
        None => (None, s),
    };
    let parts: Vec<u64> = rest.split(':').map(num).collect::<Option<_>>()?;
    let secs = match (days, parts.as_slice()) {
        (None, [m]) => m * 60,
        (None, [m, s]) => m * 60 + s,
        (None, [h, m, s]) => h * 3600 + m * 60 + s,
        (Some(d), [h]) => d * 86400 + h * 3600,
        (Some(d), [h, m]) => d * 86400 + h * 3600 + m * 60,
        (Some(d), [h, m, s]) => d * 86400 + h * 3600 + m * 60 + s,
        _ => return None,
    };
    Some(secs)
}

/// What a clock run time field accepts, in the words its label and placeholder use (kept here
/// so that they say what [`parse_clock_duration`] takes).
pub const CLOCK_FORMS: &str = "hh:mm:ss, hh:mm or minutes";

/// Parses a run time written as on a clock: `HH:MM:SS`, `HH:MM`, `D-HH:MM:SS`, `D-HH:MM`, or
/// whole minutes (`90`, as JupyterHub forms and batchspawner's `req_runtime` take them).
/// Unlike Slurm's syntax, `00:10` is ten minutes. Minutes and seconds go up to 59 (hours up to
/// 23 after a day count), as on a clock: `1:75` is refused rather than read some way.
pub fn parse_clock_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return parse_slurm_duration(s);
    }
    let (days, rest) = match s.split_once('-') {
        Some((d, rest)) => (Some(d), rest),
        None => (None, s),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return None;
    }
    let below = |p: &str, limit: u64| p.parse::<u64>().is_ok_and(|n| n < limit);
    if !parts[1..].iter().all(|p| below(p, 60)) || (days.is_some() && !below(parts[0], 24)) {
        return None;
    }
    let mut hms = parts.clone();
    if hms.len() == 2 {
        hms.push("0");
    }
    parse_slurm_duration(&format!("{}-{}", days.unwrap_or("0"), hms.join(":")))
}

/// Formats seconds as Slurm writes time limits: `[days-]hours:minutes:seconds`.
pub fn format_slurm_duration(secs: u64) -> String {
    let (d, rem) = (secs / 86400, secs % 86400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form() -> FormSpec {
        FormSpec {
            fields: vec![
                FormField {
                    name: "partition".into(),
                    label: "Partition".into(),
                    help: None,
                    kind: FieldKind::Select {
                        choices: vec![Choice::new("cpu", "CPU"), Choice::new("gpu", "GPU")],
                    },
                    required: true,
                    default: None,
                    value: None,
                    visible_when: None,
                },
                FormField {
                    name: "nodes".into(),
                    label: "Nodes".into(),
                    help: None,
                    kind: FieldKind::Int {
                        min: Some(1),
                        max: Some(4),
                    },
                    required: false,
                    default: Some(json!(1)),
                    value: None,
                    visible_when: None,
                },
                FormField {
                    name: "runtime".into(),
                    label: "Run time".into(),
                    help: None,
                    kind: FieldKind::Duration {
                        min_secs: Some(600),
                        max_secs: Some(86400),
                        clock: false,
                    },
                    required: true,
                    default: None,
                    value: None,
                    visible_when: None,
                },
                FormField {
                    name: "account".into(),
                    label: "Account".into(),
                    help: None,
                    kind: FieldKind::Text {
                        max_len: Some(8),
                        pattern: None,
                    },
                    required: false,
                    default: None,
                    value: None,
                    visible_when: None,
                },
                FormField {
                    name: "exclusive".into(),
                    label: "Exclusive".into(),
                    help: None,
                    kind: FieldKind::Checkbox,
                    required: false,
                    default: None,
                    value: None,
                    visible_when: None,
                },
            ],
            can_estimate: false,
        }
    }

    #[test]
    fn accepts_typed_and_form_posted_values() {
        let typed = form()
            .validate(
                &json!({"partition": "gpu", "nodes": 2, "runtime": "1:30:00", "exclusive": true}),
            )
            .unwrap();
        assert_eq!(
            serde_json::to_value(&typed).unwrap(),
            json!({"partition": "gpu", "nodes": 2, "runtime": 5400, "exclusive": true})
        );
        let posted = form()
            .validate(
                &json!({"partition": ["cpu"], "nodes": ["3"], "runtime": ["90"], "account": [""]}),
            )
            .unwrap();
        assert_eq!(
            serde_json::to_value(&posted).unwrap(),
            json!({"partition": "cpu", "nodes": 3, "runtime": 5400, "exclusive": false})
        );
    }

    #[test]
    fn reports_every_bad_field() {
        let errors = form()
            .validate(&json!({"partition": "fpga", "nodes": 9, "runtime": "soon", "account": "a\nb", "colour": "red"}))
            .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["colour", "partition", "nodes", "runtime", "account"]
        );
        assert_eq!(
            errors[1].message,
            "'fpga' is not one of the choices (cpu, gpu)"
        );
        assert_eq!(errors[2].message, "must be at most 4");
        let missing = form().validate(&json!({})).unwrap_err();
        assert_eq!(missing[0], FieldError::new("partition", "is required"));
    }

    #[test]
    fn empty_form_takes_null_and_empty_object_only() {
        let none = FormSpec::default();
        assert!(none.validate(&Value::Null).unwrap().is_empty());
        assert!(none.validate(&json!({})).unwrap().is_empty());
        let err = none.validate(&json!({"x": 1})).unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "x: unknown option: this server takes no options"
        );
        let err = none.validate(&json!([1])).unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "options must be a JSON object, not a list"
        );
    }

    #[test]
    fn slurm_durations() {
        for (text, secs) in [
            ("90", 5400),
            ("5:30", 330),
            ("1:00:00", 3600),
            ("2-12", 216000),
            ("1-0:30", 88200),
            ("1-00:00:01", 86401),
        ] {
            assert_eq!(parse_slurm_duration(text), Some(secs), "{text}");
        }
        for bad in ["", "UNLIMITED", "1:2:3:4", "-5", "1-", "1.5", "1-2:3:4:5"] {
            assert_eq!(parse_slurm_duration(bad), None, "{bad}");
        }
        assert_eq!(format_slurm_duration(5400), "01:30:00");
        assert_eq!(format_slurm_duration(88201), "1-00:30:01");
    }

    #[test]
    fn clock_durations_and_patterns() {
        for (text, secs) in [
            ("00:10", 600),
            ("01:30:15", 5415),
            ("90", 5400),
            ("1-02:00", 93600),
        ] {
            assert_eq!(parse_clock_duration(text), Some(secs), "{text}");
        }
        for bad in [
            "-5", "1:2:3:4", "", "10:", "x", "1:75", "1:30:60", "1-24:00", "1:-3", "1:+3",
        ] {
            assert_eq!(parse_clock_duration(bad), None, "{bad}");
        }
        // Every form the label names is taken, and means what the label says.
        for (form, text, secs) in [
            ("hh:mm:ss", "01:30:15", 5415),
            ("hh:mm", "01:30", 5400),
            ("minutes", "90", 5400),
        ] {
            assert!(CLOCK_FORMS.contains(form));
            assert_eq!(parse_clock_duration(text), Some(secs), "{form}");
        }
        let clock = FieldKind::Duration {
            min_secs: Some(60),
            max_secs: Some(1800),
            clock: true,
        };
        assert_eq!(clock.check(&json!("00:10")), Ok(json!("00:10:00")));
        assert_eq!(clock.check(&json!(20)), Ok(json!("00:20:00")));
        assert_eq!(
            clock.check(&json!("01:00")),
            Err("must be at most 00:30:00".to_owned())
        );
        let text = FieldKind::Text {
            max_len: None,
            pattern: Some("[a-z]+".into()),
        };
        assert_eq!(text.check(&json!("abc")), Ok(json!("abc")));
        assert!(text.check(&json!("abc1")).unwrap_err().contains("pattern"));
    }

    #[test]
    fn form_spec_serialises_with_a_type_tag() {
        let v = serde_json::to_value(&form().fields[1]).unwrap();
        assert_eq!(v["kind"], json!({"type": "int", "min": 1, "max": 4}));
    }
}
