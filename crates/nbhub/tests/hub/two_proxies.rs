//! Two proxies (issue 24, point 4): `[proxy] api_urls` with two real nbhub-proxy processes the
//! test runs (external proxies). Both route every server; one killed with -9, the other
//! serves every route; a route added meanwhile is in the killed one, started again without
//! its routes, within one check interval; the metrics say it was out of sync.

use std::time::{Duration, Instant};

use nbhub_testkit::{free_port, ChildGuard};
use reqwest::Method;

use crate::common::hubproc::{admin, real_parts, wait_ready, HubProc, Options};
use crate::common::prometheus::scrape;
use crate::common::{eventually, wait_until};

const TOKEN: &str = "two-proxies-api-token";
/// `[proxy] check_running_interval` of the test.
const INTERVAL: Duration = Duration::from_secs(1);

/// An nbhub-proxy on `public` and `api` in front of the hub, with no routes file.
async fn start_proxy(bin: &std::path::Path, public: u16, api: u16, hub_port: u16) -> ChildGuard {
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["--ip", "127.0.0.1", "--port", &public.to_string()])
        .args(["--api-ip", "127.0.0.1", "--api-port", &api.to_string()])
        .args([
            "--error-target",
            &format!("http://127.0.0.1:{hub_port}/hub/error"),
        ])
        .env("CONFIGPROXY_AUTH_TOKEN", TOKEN);
    let guard = ChildGuard::spawn("nbhub-proxy", cmd).expect("start nbhub-proxy");
    guard
        .wait_for_line(
            |l| l.contains("nbhub-proxy listening on"),
            Duration::from_secs(30),
        )
        .await;
    guard
}

/// The route keys a proxy has (its REST API).
async fn routes(api: u16) -> Vec<String> {
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{api}/api/routes"))
        .header("Authorization", format!("token {TOKEN}"))
        .send()
        .await;
    let Ok(r) = r else { return Vec::new() };
    let v: serde_json::Value = r.json().await.unwrap_or_default();
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// The status of `path` through the proxy on `public` (0: no answer).
async fn status_via(public: u16, path: &str) -> u16 {
    let r = crate::common::client()
        .get(format!("http://127.0.0.1:{public}{path}"))
        .send()
        .await;
    r.map_or(0, |r| r.status().as_u16())
}

/// Whether `user`'s own server answered `/user/<user>/lab` through the proxy on `public`: it
/// sends a browser without a session to the hub's OAuth page as its client,
/// `jupyterhub-user-<user>` (the hub, answering for a server it has no route for, does not).
async fn served_by_server(public: u16, user: &str) -> bool {
    let r = crate::common::client()
        .get(format!("http://127.0.0.1:{public}/user/{user}/lab"))
        .send()
        .await;
    let Ok(r) = r else { return false };
    let to = r
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or("")
        .to_string();
    let ok = r.status() == 302
        && to.contains("oauth2/authorize")
        && to.contains(&format!("jupyterhub-user-{user}"));
    if !ok {
        eprintln!("/user/{user}/lab via {public}: {} to {to:?}", r.status());
    }
    ok
}

async fn start_server(hub: &HubProc, user: &str) {
    let (s, body) = admin(hub, Method::POST, &format!("/users/{user}"), None).await;
    assert_eq!(s, 201, "{body}");
    let (s, body) = admin(hub, Method::POST, &format!("/users/{user}/server"), None).await;
    assert!(s == 201 || s == 202, "{s} {body}");
    wait_ready(hub, user, "", 60).await;
}

/// `nbhub_proxy_in_sync{proxy="…"}` for the proxy with API port `api`.
async fn in_sync(hub: &HubProc, api: u16) -> Option<f64> {
    let (status, text) = scrape(hub, None).await;
    assert_eq!(status, 200, "{text}");
    let series = format!("nbhub_proxy_in_sync{{proxy=\"http://127.0.0.1:{api}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_keep_every_route_and_one_back_is_synced() {
    let Some((venv, proxy_bin)) = real_parts() else {
        return;
    };
    let mut hub = HubProc::new(
        venv,
        &proxy_bin,
        Options {
            external_proxy_token: Some(TOKEN.into()),
            extra_toml: "authenticate_prometheus = false".into(),
            proxy_toml: format!("check_running_interval = {}", INTERVAL.as_secs()),
            ..Options::default()
        },
    );
    // The first proxy is the fixture's (its public and API ports); the second has its own.
    let (public_a, api_a) = (hub.public, hub.api_port);
    let (public_b, api_b) = (free_port(), free_port());
    let config = std::fs::read_to_string(&hub.config_path).expect("config");
    let config = config.replace(
        &format!("api_url = \"http://127.0.0.1:{api_a}\""),
        &format!("api_urls = [\"http://127.0.0.1:{api_a}\", \"http://127.0.0.1:{api_b}\"]"),
    );
    std::fs::write(&hub.config_path, config).expect("config");
    let _a = start_proxy(&proxy_bin, public_a, api_a, hub.hub_port).await;
    let mut b = start_proxy(&proxy_bin, public_b, api_b, hub.hub_port).await;
    hub.start().await;

    start_server(&hub, "alice").await;
    for (public, api) in [(public_a, api_a), (public_b, api_b)] {
        let routed = || async {
            routes(api)
                .await
                .contains(&"/user/alice".to_string())
                .then_some(())
        };
        eventually(10, "alice's route in both proxies", routed).await;
        assert!(
            served_by_server(public, "alice").await,
            "alice via {}",
            public
        );
        assert_eq!(status_via(public, "/hub/api/").await, 200);
    }
    assert_eq!(in_sync(&hub, api_b).await, Some(1.0));

    // The second proxy killed: the first serves every route, and a server started meanwhile.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(b.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 the second proxy");
    b.kill();
    assert!(
        served_by_server(public_a, "alice").await,
        "alice via {}",
        public_a
    );
    assert_eq!(status_via(public_a, "/hub/api/").await, 200);
    start_server(&hub, "bob").await;
    assert!(
        served_by_server(public_a, "bob").await,
        "bob via {}",
        public_a
    );
    let out = || async { (in_sync(&hub, api_b).await == Some(0.0)).then_some(()) };
    eventually(
        10,
        "the metrics to say the second proxy is out of sync",
        out,
    )
    .await;
    assert_eq!(
        in_sync(&hub, api_a).await,
        Some(1.0),
        "the first stays in sync"
    );

    // Started again, empty: every route within one check interval (and a little slack).
    let _b = start_proxy(&proxy_bin, public_b, api_b, hub.hub_port).await;
    let back = Instant::now();
    let synced = || async {
        let have = routes(api_b).await;
        ["/", "/user/alice", "/user/bob"]
            .iter()
            .all(|k| have.iter().any(|h| h == k))
            .then_some(())
    };
    let failure = || format!("the second proxy lacks routes\n{}", hub.log());
    wait_until(INTERVAL * 3, synced, failure).await;
    let took = back.elapsed();
    assert!(
        took <= INTERVAL + Duration::from_millis(1500),
        "the routes came back after {took:?}, more than one check interval"
    );
    for user in ["alice", "bob"] {
        assert!(
            served_by_server(public_b, user).await,
            "{user} via the second proxy"
        );
    }
    assert_eq!(status_via(public_b, "/hub/api/").await, 200);
    let back_in_sync = || async { (in_sync(&hub, api_b).await == Some(1.0)).then_some(()) };
    eventually(
        10,
        "the metrics to say the second proxy is in sync again",
        back_in_sync,
    )
    .await;
    assert!(
        hub.log().contains("a proxy is out of sync") && hub.log().contains("in sync again"),
        "the log says it: {}",
        hub.log()
    );
}
