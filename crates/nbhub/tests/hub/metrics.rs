//! `/hub/metrics` read by the real Prometheus text parser (`prometheus_client`, which the test
//! venv has as a JupyterHub dependency): JupyterHub's metric names, the `read:metrics` scope,
//! and histograms that move when a server starts.

use crate::common;

use common::hubproc::{admin, real_parts, HubProc, Options, ADMIN};
use common::prometheus::{parse, sample, scrape};
use common::user_token;
use reqwest::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_reads_the_metrics_and_a_spawn_moves_them() {
    let Some((venv, proxy)) = real_parts() else {
        return;
    };
    // Prometheus' scraper: the admin service with the read:metrics scope too.
    let reader = "[[roles]]\nname = \"prometheus\"\nscopes = [\"read:metrics\"]\nservices = [\"e2e-admin\"]\n";
    let hub = HubProc::started(venv.clone(), &proxy, Options::services(reader)).await;
    let (s, body) = admin(&hub, Method::POST, "/users/alice", None).await;
    assert_eq!(s, 201, "{body}");

    // Only a token with read:metrics may read them.
    let (status, _) = scrape(&hub, None).await;
    assert_eq!(status, 403, "no credentials");
    let alice = user_token(&hub, "alice").await;
    let (status, _) = scrape(&hub, Some(&alice)).await;
    assert_eq!(status, 403, "a user without read:metrics");

    let (status, text) = scrape(&hub, Some(ADMIN)).await;
    assert_eq!(status, 200, "{text}");
    let before = parse(&venv, &text);
    for name in [
        "jupyterhub_request_duration_seconds_count",
        "jupyterhub_server_spawn_duration_seconds_count",
        "jupyterhub_server_stop_seconds_count",
        "jupyterhub_server_poll_duration_seconds_count",
        "jupyterhub_check_routes_duration_seconds_count",
        "jupyterhub_proxy_poll_duration_seconds_count",
        "jupyterhub_hub_startup_duration_seconds_count",
        "jupyterhub_running_servers",
        "jupyterhub_total_users",
        "jupyterhub_active_users",
    ] {
        assert!(
            before.keys().any(|k| k.starts_with(&format!("{name}{{"))),
            "{name} missing from {text}"
        );
    }
    assert_eq!(sample(&before, "jupyterhub_total_users{}"), 1.0);
    assert_eq!(sample(&before, "jupyterhub_running_servers{}"), 0.0);
    assert_eq!(
        sample(&before, "jupyterhub_hub_startup_duration_seconds_count{}"),
        1.0
    );
    let spawned =
        r#"jupyterhub_server_spawn_duration_seconds_count{"reason": "", "status": "success"}"#;
    assert_eq!(sample(&before, spawned), 0.0);

    let (s, body) = admin(&hub, Method::POST, "/users/alice/server", None).await;
    assert_eq!(s, 201, "{body}\n{}", hub.log());
    let (_, text) = scrape(&hub, Some(ADMIN)).await;
    let after = parse(&venv, &text);
    assert_eq!(sample(&after, spawned), 1.0, "the spawn is counted");
    assert!(sample(&after, "jupyterhub_server_spawn_duration_seconds_sum{\"reason\": \"\", \"status\": \"success\"}") > 0.0);
    assert_eq!(sample(&after, "jupyterhub_running_servers{}"), 1.0);
    let start_requests = r#"jupyterhub_request_duration_seconds_count{"code": "201", "handler": "/hub/api/users/{name}/server", "method": "POST"}"#;
    assert_eq!(
        sample(&after, start_requests),
        1.0,
        "the start request is counted under its route"
    );
    let (s, _) = admin(&hub, Method::DELETE, "/users/alice/server", None).await;
    assert!(s == 204 || s == 202);
}
