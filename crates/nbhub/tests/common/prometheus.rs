//! `/hub/metrics` read by the real Prometheus text parser (`prometheus_client`, which the test
//! venv has as a JupyterHub dependency).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::hubproc::HubProc;

/// Every sample as `name{"label": "value", …}` (labels sorted) → value, as the parser reads it.
pub fn parse(venv: &Path, text: &str) -> BTreeMap<String, f64> {
    let script = "import json, sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = {}\n\
        for family in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in family.samples:\n\
        \x20       out[s.name + json.dumps(dict(sorted(s.labels.items())))] = s.value\n\
        print(json.dumps(out))\n";
    let mut child = Command::new(venv.join("bin/python"))
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("parser");
    assert!(
        out.status.success(),
        "prometheus_client could not parse /hub/metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: BTreeMap<String, Value> = serde_json::from_slice(&out.stdout).expect("json");
    parsed
        .into_iter()
        .map(|(k, v)| (k, v.as_f64().unwrap_or(f64::NAN)))
        .collect()
}

pub async fn scrape(hub: &HubProc, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(hub.public_url("/hub/metrics"));
    if let Some(t) = token {
        req = req.header("Authorization", format!("token {t}"));
    }
    let r = req.send().await.expect("metrics");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

pub fn sample(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {samples:#?}"))
}
