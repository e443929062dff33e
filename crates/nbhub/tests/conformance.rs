//! JupyterHub's own OpenAPI spec against nbhub, through its proxy: schemathesis (from the test
//! venv) runs every phase (examples, coverage, fuzzing, stateful) for a time budget and the
//! test fails on any server error (5xx) and on any 405 to an operation the spec defines.
//!
//! Environment: `NBHUB_JUPYTERHUB_SPEC` (the spec, fetched by scripts/test-env.sh),
//! `NBHUB_VENV`, `NBHUB_SCHEMATHESIS_SECS` (the budget; default 300 under CI=true, else 60),
//! `NBHUB_SCHEMATHESIS_CHECKS` (more schemathesis checks, e.g. `all`: their findings, such as
//! schema mismatches, are printed but not asserted),
//! `NBHUB_SCHEMATHESIS_DB` (`sqlite`; default PostgreSQL from `NBHUB_TEST_DATABASE_URL`),
//! `NBHUB_SCHEMATHESIS_REPORT_DIR` (keep schemathesis's report and the logs of the hub and the proxy there).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::hubproc::{real_parts, HubProc, Options};
use nbhub_testkit::ChildGuard;
use serde_json::Value;

const TOKEN: &str = "conformance-service-token-0123456789";
/// Our check in tests/conformance/hooks.py.
const NOT_405: &str = "spec_operation_not_405";
const SERVER_ERROR: &str = "not_a_server_error";

/// The admin role without `shutdown`: `POST /shutdown` must answer 403, not stop the hub.
const SCOPES: &[&str] = &[
    "admin-ui",
    "admin:users",
    "admin:servers",
    "admin:services",
    "tokens",
    "admin:groups",
    "list:services",
    "read:services",
    "read:hub",
    "proxy",
    "access:services",
    "access:servers",
    "read:roles",
    "read:metrics",
    "shares",
];

fn require_spec() -> Option<PathBuf> {
    let spec = std::env::var_os("NBHUB_JUPYTERHUB_SPEC")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    match spec {
        Some(path) if path.is_file() => Some(path),
        other => {
            nbhub_testkit::missing_part(
                &format!(
                    "JupyterHub's OpenAPI spec (NBHUB_JUPYTERHUB_SPEC = {:?})",
                    other.map(|p| p.display().to_string())
                ),
                "scripts/test-env.sh, then `. .nbhub-test/env`",
            );
            None
        }
    }
}

fn require_schemathesis(venv: &Path) -> Option<PathBuf> {
    let exe = venv.join("bin/schemathesis");
    if exe.is_file() {
        Some(exe)
    } else {
        nbhub_testkit::missing_part(
            &format!("schemathesis ({} does not exist)", exe.display()),
            "scripts/test-env.sh (scripts/requirements-test.txt)",
        );
        None
    }
}

fn budget_secs() -> u64 {
    if let Ok(secs) = std::env::var("NBHUB_SCHEMATHESIS_SECS") {
        return secs
            .parse()
            .unwrap_or_else(|_| panic!("NBHUB_SCHEMATHESIS_SECS={secs:?} is not a number"));
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        300
    } else {
        60
    }
}

/// Servers started by fuzzing are a tiny HTTP server on the port the hub gives them, so the
/// run measures the API and not JupyterLab's start-up. The hub appends the single-user command
/// and its arguments, which the shell receives as `$1`... and ignores.
fn tiny_server_prefix() -> Vec<String> {
    [
        "/bin/sh",
        "-c",
        "p=${JUPYTERHUB_SERVICE_URL#http://*:}; exec /usr/bin/python3 -m http.server --bind 127.0.0.1 ${p%%/*}",
        "tiny-server",
    ]
    .map(String::from)
    .to_vec()
}

/// One failed check as schemathesis reported it.
struct Failure {
    check: String,
    operation: String,
    detail: String,
}

/// What the NDJSON event stream says about the run.
#[derive(Default)]
struct Summary {
    requests: usize,
    statuses: BTreeMap<u16, usize>,
    failures: Vec<Failure>,
    errors: Vec<String>,
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_405() {
    let Some((venv, proxy)) = real_parts() else {
        return;
    };
    let Some(spec) = require_spec() else {
        return;
    };
    let Some(schemathesis) = require_schemathesis(&venv) else {
        return;
    };
    let scopes = SCOPES
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    // PostgreSQL by default (what sites run, and stricter than SQLite: it refuses NUL
    // characters, for one); SQLite when asked, or when PostgreSQL is missing outside CI.
    let db_url = match std::env::var("NBHUB_SCHEMATHESIS_DB").as_deref() {
        Ok("sqlite") => None,
        _ => common::fresh_postgres_db().await,
    };
    eprintln!(
        "conformance: the hub runs on {}",
        if db_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    let db = db_url
        .map(|url| format!("db_url = \"{url}\"\n"))
        .unwrap_or_default();
    let hub = HubProc::started(
        venv,
        &proxy,
        Options {
            extra_toml: format!("concurrent_spawn_limit = 4\nactive_server_limit = 6\n{db}"),
            cmd_prefix: tiny_server_prefix(),
            services: format!(
                "\n[[services]]\nname = \"conformance\"\napi_token = \"{TOKEN}\"\n\n\
                 [[roles]]\nname = \"conformance-role\"\nscopes = [{scopes}]\nservices = [\"conformance\"]\n"
            ),
            ..Default::default()
        },
    )
    .await;

    let secs = budget_secs();
    let report_dir = std::env::var_os("NBHUB_SCHEMATHESIS_REPORT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| hub.dir.path().join("schemathesis"));
    std::fs::create_dir_all(&report_dir).expect("report dir");
    let ndjson = report_dir.join("events.ndjson");
    let checks = match std::env::var("NBHUB_SCHEMATHESIS_CHECKS") {
        Ok(extra) if extra.trim() == "all" => extra,
        Ok(extra) if !extra.trim().is_empty() => format!("{SERVER_ERROR},{NOT_405},{extra}"),
        _ => format!("{SERVER_ERROR},{NOT_405}"),
    };
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/hooks.py");
    let mut cmd = Command::new(&schemathesis);
    cmd.arg("run")
        .arg(&spec)
        .arg("--url")
        .arg(hub.public_url("/hub/api"))
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--checks", &checks])
        .args(["--max-time", &secs.to_string()])
        .args(["--header", &format!("Authorization: token {TOKEN}")])
        .args(["--request-timeout", "30", "--no-color"])
        .args(["--report", "ndjson"])
        .arg("--report-ndjson-path")
        .arg(&ndjson)
        .env("SCHEMATHESIS_HOOKS", &hooks)
        .current_dir(&report_dir);
    let started = Instant::now();
    let mut run = ChildGuard::spawn("schemathesis", cmd).expect("start schemathesis");
    // schemathesis keeps to its budget; the margin covers shrinking and the final report. Past
    // it, wait_exit fails the test with the output and the guard kills the process group.
    let status = run.wait_exit(Duration::from_secs(secs + 240)).await;
    let took = started.elapsed();
    let output = run.output().to_string();
    let events = std::fs::read_to_string(&ndjson).unwrap_or_else(|e| {
        panic!(
            "no NDJSON report {} ({e}); schemathesis exited {status}:\n{output}",
            ndjson.display()
        )
    });
    let summary = summarise(&events);
    let _ = std::fs::write(report_dir.join("hub.log"), hub.log());
    let _ = std::fs::copy(
        hub.data_dir().join("nbhub-proxy.log"),
        report_dir.join("nbhub-proxy.log"),
    );
    eprintln!(
        "schemathesis: {} requests in {:.0} s (exit {status}); statuses {:?}",
        summary.requests,
        took.as_secs_f64(),
        summary.statuses
    );
    for f in &summary.failures {
        eprintln!("--- {} on {}\n{}", f.check, f.operation, f.detail);
    }
    for e in &summary.errors {
        eprintln!("--- schemathesis error: {e}");
    }
    assert!(
        summary.requests > 0,
        "schemathesis sent no request (exit {status}):\n{output}"
    );
    // An error (a request that got no answer within --request-timeout, a refused connection)
    // means part of the run tested nothing.
    assert!(
        summary.errors.is_empty(),
        "schemathesis reported {} errors (printed above)",
        summary.errors.len()
    );
    let asserted = summary
        .failures
        .iter()
        .filter(|f| f.check == SERVER_ERROR || f.check == NOT_405)
        .count();
    let server_errors: usize = summary.statuses.range(500..).map(|(_, n)| n).sum();
    assert!(
        asserted == 0 && server_errors == 0,
        "{asserted} server errors or 405s on spec operations (printed above), {server_errors} \
         responses 5xx; the hub's warnings and errors:\n{}",
        warnings(&hub.log())
    );
}

/// The lines of a log that are warnings or errors (the whole debug log is too long to read).
fn warnings(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("panicked"))
        .collect();
    lines[lines.len().saturating_sub(200)..].join("\n")
}

/// Counts requests and statuses and collects failed checks from schemathesis's NDJSON events
/// (one `ScenarioFinished` per scenario, with its requests, responses and check results).
fn summarise(events: &str) -> Summary {
    let mut summary = Summary::default();
    for line in events.lines().filter(|l| !l.trim().is_empty()) {
        let event: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a bad NDJSON line ({e}): {line:.300}"));
        let Some((kind, body)) = event.as_object().and_then(|o| o.iter().next()) else {
            continue;
        };
        if kind.contains("Error") {
            summary.errors.push(format!("{kind}: {body:.2000}"));
            continue;
        }
        if kind != "ScenarioFinished" {
            continue;
        }
        let recorder = &body["recorder"];
        let label = recorder["label"].as_str().unwrap_or("?");
        let interactions = recorder["interactions"].as_object();
        for interaction in interactions.into_iter().flat_map(|m| m.values()) {
            summary.requests += 1;
            if let Some(status) = interaction["response"]["status_code"].as_u64() {
                *summary.statuses.entry(status as u16).or_default() += 1;
            }
        }
        let checks = recorder["checks"].as_object();
        for (case, results) in checks.into_iter().flat_map(|m| m.iter()) {
            for result in results.as_array().into_iter().flatten() {
                if result["status"] != "failure" {
                    continue;
                }
                let interaction = &recorder["interactions"][case];
                summary.failures.push(Failure {
                    check: result["name"].as_str().unwrap_or("?").to_string(),
                    operation: label.to_string(),
                    detail: describe(&result["failure_info"]["failure"], interaction),
                });
            }
        }
    }
    summary
}

/// The failure's message, the request and the response, for a person to reproduce it.
fn describe(failure: &Value, interaction: &Value) -> String {
    let request = &interaction["request"];
    let response = &interaction["response"];
    format!(
        "{}: {}\n  request:  {} {}\n            body {}\n  response: {}\n            body {}",
        failure["title"].as_str().unwrap_or(""),
        failure["message"].as_str().unwrap_or(""),
        request["method"].as_str().unwrap_or("?"),
        request["uri"].as_str().unwrap_or("?"),
        payload(&request["body"]),
        response["status_code"],
        payload(&response["content"]),
    )
}

/// A recorded body: schemathesis stores bytes as `{"$base64": …}`.
fn payload(body: &Value) -> String {
    use base64::Engine as _;
    let text = match body["$base64"].as_str() {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|_| b64.to_string()),
        None if body.is_null() => String::new(),
        None => body.to_string(),
    };
    let mut shown: String = text.chars().take(400).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}
