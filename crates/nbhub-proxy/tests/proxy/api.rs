//! The REST API, behaviour by behaviour (docs/wire.md#proxy-rest-api).

use crate::common::*;
use http::StatusCode;

#[tokio::test]
async fn routes_crud_and_normalisation() {
    let p = start_proxy(config()).await;
    let (s, b) = p.api("GET", "/api/routes", None).await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, "{}"));

    // Trailing slash removed, leading slash added; the whole body is stored.
    let (s, b) = p
        .api(
            "POST",
            "/api/routes/user/alice/",
            Some(r#"{"user": "alice", "server_name": "", "target": "http://127.0.0.1:18100", "jupyterhub": true}"#),
        )
        .await;
    assert_eq!((s, b.as_str()), (StatusCode::CREATED, ""));
    let (s, b) = p
        .api(
            "POST",
            "/api/routes/",
            Some(r#"{"hub": true, "target": "http://127.0.0.1:18181", "jupyterhub": true}"#),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    let (s, b) = p.api("GET", "/api/routes", None).await;
    assert_eq!(s, StatusCode::OK);
    let v = json(&b);
    let alice = &v["/user/alice"];
    assert_eq!(alice["user"], "alice");
    assert_eq!(alice["server_name"], "");
    assert_eq!(alice["target"], "http://127.0.0.1:18100");
    assert_eq!(alice["jupyterhub"], true);
    let la = alice["last_activity"].as_str().expect("last_activity");
    // JS Date#toJSON: 2026-11-26T11:26:48.374Z
    assert_eq!(la.len(), 24, "{la}");
    assert!(la.ends_with('Z') && la.as_bytes()[19] == b'.', "{la}");
    assert_eq!(v["/"]["hub"], true);
    assert_eq!(v.as_object().expect("object").len(), 2);

    // `/api/routes/` lists too.
    let (s, b) = p.api("GET", "/api/routes/", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b).as_object().expect("object").len(), 2);

    // Single route, with or without trailing slash; percent-encoded path decoded.
    for path in [
        "/api/routes/user/alice",
        "/api/routes/user/alice/",
        "/api/routes/user/%61lice",
    ] {
        let (s, b) = p.api("GET", path, None).await;
        assert_eq!(s, StatusCode::OK, "{path}");
        assert_eq!(json(&b)["user"], "alice");
    }
    let (s, b) = p.api("GET", "/api/routes/user/bob", None).await;
    assert_eq!((s, b.as_str()), (StatusCode::NOT_FOUND, ""));

    // Replace.
    let (s, _) = p
        .api(
            "POST",
            "/api/routes/user/alice",
            Some(r#"{"target": "http://127.0.0.1:1"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, b) = p.api("GET", "/api/routes/user/alice", None).await;
    let v = json(&b);
    assert_eq!(v["target"], "http://127.0.0.1:1");
    assert!(v.get("user").is_none());

    // Delete: 204 then 404, empty bodies.
    let (s, b) = p.api("DELETE", "/api/routes/user/alice/", None).await;
    assert_eq!((s, b.as_str()), (StatusCode::NO_CONTENT, ""));
    let (s, b) = p.api("DELETE", "/api/routes/user/alice", None).await;
    assert_eq!((s, b.as_str()), (StatusCode::NOT_FOUND, ""));
    p.shutdown().await;
}

#[tokio::test]
async fn bad_bodies() {
    let p = start_proxy(config()).await;
    for body in [r#"{"target": 5}"#, r#"{"nope": 1}"#, "[1]", r#""http://x""#] {
        let (s, b) = p.api("POST", "/api/routes/x", Some(body)).await;
        assert_eq!(
            (s, b.as_str()),
            (StatusCode::BAD_REQUEST, "Must specify 'target' as string"),
            "{body}"
        );
    }
    let (s, b) = p.api("POST", "/api/routes/x", Some("{not json")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b.starts_with("Body not valid JSON: "), "{b}");
    let (_, b) = p.api("GET", "/api/routes", None).await;
    assert_eq!(b, "{}");
    p.shutdown().await;
}

#[tokio::test]
async fn auth_paths_and_methods() {
    let p = start_proxy(config()).await;
    for auth in [
        None,
        Some("token wrong"),
        Some(&*format!("Bearer {TOKEN}")),
        Some(TOKEN),
    ] {
        let (s, b) = p.api_with("GET", "/api/routes", None, auth).await;
        assert_eq!((s, b.as_str()), (StatusCode::FORBIDDEN, ""), "{auth:?}");
    }
    let (s, _) = p
        .api_with(
            "GET",
            "/api/routes",
            None,
            Some(&format!("token   {TOKEN}")),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = p.api("PUT", "/api/routes/x", Some("{}")).await;
    assert_eq!(
        (s, b.as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "Method not supported")
    );
    for path in ["/api/route", "/api/routesx", "/", "/api"] {
        let (s, _) = p.api("GET", path, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    p.shutdown().await;

    // No token configured: the API is open (CHP warns about it).
    let p = start_proxy(nbhub_proxy::ProxyConfig::default()).await;
    let (s, _) = p.api_with("GET", "/api/routes", None, None).await;
    assert_eq!(s, StatusCode::OK);
    p.shutdown().await;
}

#[tokio::test]
async fn inactive_since() {
    let p = start_proxy(config()).await;
    p.add_route("/a", "http://127.0.0.1:1").await;
    p.add_route("/b", "http://127.0.0.1:1").await;
    for q in ["inactive_since", "inactiveSince"] {
        // Everything was active after 2000, nothing before 3000.
        let (s, b) = p
            .api("GET", &format!("/api/routes?{q}=2000-01-01"), None)
            .await;
        assert_eq!((s, b.as_str()), (StatusCode::OK, "{}"));
        let (s, b) = p
            .api(
                "GET",
                &format!("/api/routes?{q}=3000-01-01T00:00:00.000Z"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(json(&b).as_object().expect("obj").len(), 2);
    }
    let (s, b) = p
        .api("GET", "/api/routes?inactive_since=yesterday", None)
        .await;
    assert_eq!(
        (s, b.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "Invalid datestamp 'yesterday' must be ISO8601."
        )
    );
    p.shutdown().await;
}

#[tokio::test]
async fn host_routing_adds_host() {
    let mut cfg = config();
    cfg.host_routing = true;
    let p = start_proxy(cfg).await;
    p.add_route("/alice.hub.tld/user/alice", "http://127.0.0.1:1")
        .await;
    let (_, b) = p
        .api("GET", "/api/routes/alice.hub.tld/user/alice", None)
        .await;
    assert_eq!(json(&b)["host"], "alice.hub.tld");
    p.shutdown().await;
}

#[tokio::test]
async fn ten_thousand_routes_through_the_api() {
    let p = start_proxy(config()).await;
    let start = std::time::Instant::now();
    for i in 0..10_000 {
        p.add_route(&format!("/user/u{i}"), "http://127.0.0.1:1")
            .await;
    }
    eprintln!("10000 routes added in {:?} (debug build)", start.elapsed());
    let (_, b) = p.api("GET", "/api/routes", None).await;
    assert_eq!(json(&b).as_object().expect("obj").len(), 10_000);
    p.shutdown().await;
}

/// The binary refuses to run with an open REST API.
#[test]
fn binary_refuses_to_start_without_a_token() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nbhub-proxy"))
        .args(["--ip", "127.0.0.1", "--port", "0", "--api-port", "0"])
        .env_remove("CONFIGPROXY_AUTH_TOKEN")
        .output()
        .expect("run nbhub-proxy");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CONFIGPROXY_AUTH_TOKEN is not set"), "{err}");
}

/// The binary raises its soft open files limit to the hard limit at start (issue 20, point 4:
/// under a soft limit of 200, 250 slow clients kept it from answering anyone), and offers the
/// request deadlines as flags.
#[test]
fn binary_raises_its_open_files_limit_and_has_deadline_flags() {
    use std::io::BufRead;
    let bin = env!("CARGO_BIN_EXE_nbhub-proxy");
    let help = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .expect("run nbhub-proxy --help");
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in ["--headers-timeout", "--body-timeout", "--body-min-rate"] {
        assert!(help.contains(flag), "{flag} in {help}");
    }
    // Started with a soft limit of 200 (prlimit sets it, then runs the proxy in its place).
    let mut child = std::process::Command::new("prlimit")
        .args(["--nofile=200:", "--", bin])
        .args(["--ip", "127.0.0.1", "--port", "0", "--api-ip", "127.0.0.1"])
        .args(["--api-port", "0", "--log-level", "warn"])
        .env("CONFIGPROXY_AUTH_TOKEN", TOKEN)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("prlimit (util-linux) runs nbhub-proxy");
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    while !line.starts_with("nbhub-proxy listening on ") {
        line.clear();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            let _ = child.kill();
            panic!(
                "nbhub-proxy ended before its ready line: {:?}",
                child.wait()
            );
        }
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id()));
    let _ = child.kill();
    let _ = child.wait();
    let limits = limits.expect("limits");
    let open_files: Vec<&str> = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .expect("Max open files")
        .split_whitespace()
        .collect();
    assert_ne!(open_files[0], "200", "{open_files:?}");
    assert_eq!(
        open_files[0], open_files[1],
        "soft and hard: {open_files:?}"
    );
}
