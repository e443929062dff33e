//! One form for several systems: the system comes first, then each system's own fields under
//! names of their own (`beta.partition`), each shown only while its system is picked. What a
//! form posts is mapped back to the flat options one system validates (`partition`), so that
//! what the hub stores and what the REST API takes stay JupyterHub's flat `user_options`:
//! `{"system": "beta", "partition": "batch"}`.

use serde_json::{Map, Value};

use crate::{Choice, FieldError, FieldKind, FormField, FormSpec, VisibleWhen};

/// The option that names the system.
pub const SYSTEM: &str = "system";

/// A system as the form offers it.
pub(crate) struct Offer<'a> {
    pub name: &'a str,
    pub title: &'a str,
    /// A line shown next to the choice (its description, its health).
    pub info: Option<String>,
    pub form: FormSpec,
}

/// `beta.partition`: a field of system `beta` as the combined form names it.
pub(crate) fn prefixed(system: &str, field: &str) -> String {
    format!("{system}.{field}")
}

/// The combined form: the system picker (opening with `last`, else the first system), then
/// every system's fields renamed and shown only while that system is picked. A field that
/// already depends on another one (GPUs on a partition) keeps depending on it, renamed: the
/// page shows a field only while the field it depends on is shown too.
pub(crate) fn combine(offers: Vec<Offer<'_>>, last: Option<&str>) -> FormSpec {
    let names: Vec<&str> = offers.iter().map(|o| o.name).collect();
    let mut picker = FormField::new(
        SYSTEM,
        "System",
        FieldKind::Select {
            choices: offers
                .iter()
                .map(|o| {
                    let mut c = Choice::new(o.name, o.title);
                    c.info = o.info.clone();
                    c
                })
                .collect(),
        },
    );
    picker.required = true;
    picker.help = Some("Where the server runs; each system has its own partitions.".into());
    picker.default = names.first().map(|n| Value::from(*n));
    picker.value = last
        .filter(|l| names.contains(l))
        .map(Value::from)
        .or_else(|| picker.default.clone());
    let mut fields = vec![picker];
    let mut can_estimate = false;
    for offer in offers {
        can_estimate |= offer.form.can_estimate;
        let sys = offer.name;
        for mut field in offer.form.fields {
            field.name = prefixed(sys, &field.name);
            field.visible_when = Some(match field.visible_when {
                Some(v) => VisibleWhen {
                    field: prefixed(sys, &v.field),
                    values: v.values,
                },
                None => VisibleWhen {
                    field: SYSTEM.into(),
                    values: vec![sys.to_owned()],
                },
            });
            if let FieldKind::Select { choices } = &mut field.kind {
                for choice in choices {
                    choice.limits = std::mem::take(&mut choice.limits)
                        .into_iter()
                        .map(|(name, mut limits)| {
                            if let Some(by) = &mut limits.max_by {
                                by.field = prefixed(sys, &by.field);
                            }
                            (prefixed(sys, &name), limits)
                        })
                        .collect();
                }
            }
            fields.push(field);
        }
    }
    FormSpec {
        fields,
        can_estimate,
    }
}

/// What was submitted, split: the system asked for (`None`: not given) and the options for
/// that system alone.
#[derive(Debug, PartialEq)]
pub(crate) struct Split {
    pub system: Option<String>,
    pub options: Value,
    /// The system's fields came under their form names (`beta.partition`): errors are given
    /// under those names too, so that the page marks the fields.
    pub prefixed: bool,
}

/// Splits submitted options (`null`, or an object: flat keys, or the combined form's
/// `system.field` keys). Keys of other systems' fields (hidden on the page) are dropped.
pub(crate) fn split(submitted: &Value, systems: &[&str]) -> Result<Split, Vec<FieldError>> {
    let object = match submitted {
        Value::Null => {
            return Ok(Split {
                system: None,
                options: Value::Null,
                prefixed: false,
            })
        }
        Value::Object(o) => o,
        // The system's own validation says what is wrong with it.
        other => {
            return Ok(Split {
                system: None,
                options: other.clone(),
                prefixed: false,
            })
        }
    };
    let system = match object.get(SYSTEM).map(unwrap_list) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(vec![FieldError::new(
                SYSTEM,
                format!("must be the name of a system ({})", systems.join(", ")),
            )])
        }
    };
    let mut flat = Map::new();
    let mut own = Map::new();
    for (key, value) in object {
        if key == SYSTEM {
            continue;
        }
        match key.split_once('.') {
            Some((sys, field)) if systems.contains(&sys) => {
                if system.as_deref() == Some(sys) {
                    own.insert(field.to_owned(), value.clone());
                }
            }
            _ => {
                flat.insert(key.clone(), value.clone());
            }
        }
    }
    let prefixed = !own.is_empty();
    flat.extend(own);
    Ok(Split {
        system,
        options: Value::Object(flat),
        prefixed,
    })
}

/// `["x"]` → `"x"`: HTML form posts may arrive as lists of strings.
fn unwrap_list(v: &Value) -> &Value {
    match v {
        Value::Array(items) if items.len() == 1 => &items[0],
        other => other,
    }
}

/// A system's field errors under the combined form's names.
pub(crate) fn prefix_errors(system: &str, errors: Vec<FieldError>) -> Vec<FieldError> {
    errors
        .into_iter()
        .map(|mut e| {
            if !e.field.is_empty() && !e.is_unavailable() {
                e.field = prefixed(system, &e.field);
            }
            e
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FieldLimits, MaxBy};
    use serde_json::json;
    use std::collections::BTreeMap;

    fn system_form(partitions: &[&str]) -> FormSpec {
        let mut partition = FormField::new(
            "partition",
            "Partition",
            FieldKind::Select {
                choices: partitions
                    .iter()
                    .map(|p| {
                        let mut c = Choice::new(*p, *p);
                        c.limits = BTreeMap::from([(
                            "nodes".to_owned(),
                            FieldLimits {
                                max: Some(2),
                                max_by: Some(MaxBy {
                                    field: "gpus".into(),
                                    max: vec![2, 1],
                                    message: String::new(),
                                }),
                                ..Default::default()
                            },
                        )]);
                        c
                    })
                    .collect(),
            },
        );
        partition.required = true;
        let mut gpus = FormField::new(
            "gpus",
            "GPUs",
            FieldKind::Int {
                min: Some(0),
                max: Some(2),
            },
        );
        gpus.visible_when = Some(VisibleWhen {
            field: "partition".into(),
            values: vec!["gpu".into()],
        });
        FormSpec {
            fields: vec![partition, gpus],
            can_estimate: true,
        }
    }

    #[test]
    fn the_system_comes_first_and_each_system_has_its_own_names() {
        let form = combine(
            vec![
                Offer {
                    name: "alpha",
                    title: "Alpha",
                    info: Some("the small one".into()),
                    form: system_form(&["devel"]),
                },
                Offer {
                    name: "beta",
                    title: "Beta",
                    info: None,
                    form: system_form(&["batch", "gpu"]),
                },
            ],
            Some("beta"),
        );
        let names: Vec<&str> = form.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "system",
                "alpha.partition",
                "alpha.gpus",
                "beta.partition",
                "beta.gpus"
            ]
        );
        let picker = form.field("system").unwrap();
        assert_eq!(picker.value, Some(json!("beta")), "opens with the last one");
        assert_eq!(picker.default, Some(json!("alpha")));
        let shown = |name: &str| form.field(name).unwrap().visible_when.clone().unwrap();
        assert_eq!(shown("beta.partition").field, "system");
        assert_eq!(shown("beta.partition").values, ["beta"]);
        assert_eq!(shown("beta.gpus").field, "beta.partition");
        let FieldKind::Select { choices } = &form.field("beta.partition").unwrap().kind else {
            panic!()
        };
        let limits = &choices[0].limits["beta.nodes"];
        assert_eq!(limits.max_by.as_ref().unwrap().field, "beta.gpus");
        assert!(form.can_estimate);
    }

    #[test]
    fn a_post_is_split_into_one_system_s_flat_options() {
        let systems = ["alpha", "beta"];
        let posted = json!({"system": "beta", "beta.partition": "batch", "alpha.partition": "devel", "beta.nodes": "2"});
        assert_eq!(
            split(&posted, &systems).unwrap(),
            Split {
                system: Some("beta".into()),
                options: json!({"partition": "batch", "nodes": "2"}),
                prefixed: true,
            }
        );
        let api = json!({"system": ["alpha"], "partition": "devel", "runtime": "1:00:00"});
        assert_eq!(
            split(&api, &systems).unwrap(),
            Split {
                system: Some("alpha".into()),
                options: json!({"partition": "devel", "runtime": "1:00:00"}),
                prefixed: false,
            }
        );
        // Unknown keys stay, for the system's validation to refuse by name.
        let odd = json!({"colour": "red", "gamma.partition": "x"});
        let s = split(&odd, &systems).unwrap();
        assert_eq!(s.system, None);
        assert_eq!(s.options, odd);
        let err = split(&json!({"system": 3}), &systems).unwrap_err();
        assert_eq!(err[0].field, "system");
        assert_eq!(
            prefix_errors("beta", vec![FieldError::new("nodes", "too many")])[0].field,
            "beta.nodes"
        );
    }
}
