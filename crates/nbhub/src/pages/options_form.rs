//! The spawner's options form as the spawn page shows it: each field of the [`FormSpec`]
//! turned into what a Bootstrap control needs (input type, limits in words, the value to show,
//! its error). Built from the spec's JSON form, so fields the spawner adds (a user's last
//! value, `visible_when`, live `info` on choices) come through without code here knowing
//! every kind. A choice's `limits` (what selecting it does to other fields: a partition's
//! node and run time limits) go to the page's script, which applies them as the choice
//! changes.

use nbhub_spawner::{format_slurm_duration, FieldError, FormSpec};
use serde_json::{json, Map, Value};

/// The text a form field shows for a JSON value.
fn as_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.first().map(as_text).unwrap_or_default(),
        other => other.to_string(),
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(s.as_str(), "true" | "on" | "1" | "yes"),
        Value::Array(a) => a.first().is_some_and(truthy),
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        _ => false,
    }
}

/// Field views for the template. `submitted` holds what the user just posted (shown again
/// after an error); otherwise the user's last value, else the default, is shown.
pub fn field_views(
    spec: &FormSpec,
    submitted: Option<&Map<String, Value>>,
    errors: &[FieldError],
) -> Vec<Value> {
    let spec_json = serde_json::to_value(spec).unwrap_or(Value::Null);
    let fields = spec_json["fields"].as_array().cloned().unwrap_or_default();
    fields
        .iter()
        .map(|f| field_view(f, submitted, errors))
        .collect()
}

fn field_view(f: &Value, submitted: Option<&Map<String, Value>>, errors: &[FieldError]) -> Value {
    let name = f["name"].as_str().unwrap_or_default();
    let kind = &f["kind"];
    let kind_name = kind["type"].as_str().unwrap_or("text");
    let shown = match submitted {
        Some(s) => s.get(name).cloned().unwrap_or(Value::Null),
        None => [&f["value"], &f["default"]]
            .into_iter()
            .find(|v| !v.is_null())
            .cloned()
            .unwrap_or(Value::Null),
    };
    let error = errors
        .iter()
        .filter(|e| e.field == name)
        .map(|e| e.message.clone())
        .collect::<Vec<_>>()
        .join("; ");
    let num = |k: &str| kind.get(k).filter(|v| !v.is_null()).cloned();
    let mut view = json!({
        "name": name,
        "label": f["label"].as_str().unwrap_or(name),
        "help": f["help"],
        "required": f["required"].as_bool().unwrap_or(false),
        "kind": kind_name,
        "value": as_text(&shown),
        "error": if error.is_empty() { Value::Null } else { json!(error) },
        "visible_when": f["visible_when"],
        "min": null, "max": null, "step": null, "maxlength": null, "pattern": null,
        "placeholder": null, "limits": null, "input_type": "text",
    });
    let limits = |lo: Option<String>, hi: Option<String>| match (lo, hi) {
        (Some(l), Some(h)) => Some(format!("from {l} to {h}")),
        (Some(l), None) => Some(format!("at least {l}")),
        (None, Some(h)) => Some(format!("at most {h}")),
        (None, None) => None,
    };
    let shown_num = |v: &Option<Value>| v.as_ref().map(as_text);
    match kind_name {
        "select" => {
            let current = as_text(&shown);
            let choices: Vec<Value> = kind["choices"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|c| {
                    let value = c["value"].as_str().unwrap_or_default();
                    json!({
                        "value": value,
                        "label": c["label"].as_str().unwrap_or(value),
                        "info": c["info"],
                        "data": c["data"],
                        "limits": c["limits"],
                        "selected": value == current,
                    })
                })
                .collect();
            let has_info = choices.iter().any(|c| c["info"].is_string());
            view["choices"] = json!(choices);
            view["has_info"] = json!(has_info);
        }
        "checkbox" => {
            view["checked"] = json!(truthy(&shown));
        }
        "int" | "float" => {
            let (lo, hi) = (num("min"), num("max"));
            view["input_type"] = json!("number");
            view["step"] = json!(if kind_name == "int" { "1" } else { "any" });
            view["limits"] = json!(limits(shown_num(&lo), shown_num(&hi)));
            view["min"] = lo.unwrap_or(Value::Null);
            view["max"] = hi.unwrap_or(Value::Null);
        }
        "duration" => {
            let fmt = |k: &str| kind[k].as_u64().map(format_slurm_duration);
            view["placeholder"] = json!(if kind["clock"].as_bool() == Some(true) {
                "e.g. 01:30:00, 01:30 or 90"
            } else {
                "e.g. 1:30:00 or 90 (minutes)"
            });
            view["limits"] = json!(limits(fmt("min_secs"), fmt("max_secs")));
            // For the page's script (a duration input has no min/max attributes).
            view["min_secs"] = kind["min_secs"].clone();
            view["max_secs"] = kind["max_secs"].clone();
            view["clock"] = json!(kind["clock"].as_bool() == Some(true));
        }
        _ => {
            view["maxlength"] = kind["max_len"].clone();
            view["pattern"] = kind["pattern"].clone();
        }
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> FormSpec {
        serde_json::from_value(json!({"fields": [
            {"name": "partition", "label": "Partition", "required": true, "default": "cpu",
             "kind": {"type": "select", "choices": [{"value": "cpu", "label": "CPU"}, {"value": "gpu", "label": "GPU"}]}},
            {"name": "cores", "label": "Cores", "default": 2, "kind": {"type": "int", "min": 1, "max": 8}},
            {"name": "runtime", "label": "Run time", "kind": {"type": "duration", "min_secs": 600, "max_secs": 28800}},
            {"name": "x11", "label": "X11", "kind": {"type": "checkbox"}}
        ]}))
        .expect("spec")
    }

    #[test]
    fn defaults_limits_and_errors() {
        let views = field_views(&spec(), None, &[]);
        assert_eq!(views[0]["choices"][0]["selected"], json!(true));
        assert_eq!(views[1]["value"], json!("2"));
        assert_eq!(views[1]["limits"], json!("from 1 to 8"));
        assert_eq!(views[2]["limits"], json!("from 00:10:00 to 08:00:00"));
        assert_eq!(views[3]["checked"], json!(false));

        let mut posted = Map::new();
        posted.insert("partition".into(), json!("gpu"));
        posted.insert("cores".into(), json!("99"));
        let errors = [FieldError::new("cores", "must be at most 8")];
        let views = field_views(&spec(), Some(&posted), &errors);
        assert_eq!(views[0]["choices"][1]["selected"], json!(true), "kept");
        assert_eq!(
            views[1]["value"],
            json!("99"),
            "the bad value is shown again"
        );
        assert_eq!(views[1]["error"], json!("must be at most 8"));
        assert_eq!(views[0]["error"], Value::Null);
    }

    #[test]
    fn a_choice_carries_its_limits_for_the_page_script() {
        let spec: FormSpec = serde_json::from_value(json!({"fields": [
            {"name": "partition", "label": "Partition", "default": "devel",
             "kind": {"type": "select", "choices": [
                {"value": "devel", "label": "devel", "limits": {
                    "nodes": {"min": 1, "max": 1},
                    "runtime": {"max": 1800, "default": "00:10:00"}}}]}},
            {"name": "runtime", "label": "Run time",
             "kind": {"type": "duration", "min_secs": 60, "max_secs": 28800, "clock": true}}
        ]}))
        .expect("spec");
        let views = field_views(&spec, None, &[]);
        assert_eq!(
            views[0]["choices"][0]["limits"]["runtime"],
            json!({"max": 1800, "default": "00:10:00"})
        );
        assert_eq!(views[1]["max_secs"], json!(28800));
        assert_eq!(views[1]["clock"], json!(true));
        assert_eq!(views[1]["placeholder"], json!("e.g. 01:30:00, 01:30 or 90"));
    }
}
