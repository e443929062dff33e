//! Single-user servers end to end, with the real `jupyterhub-singleuser` + JupyterLab from the
//! test venv, the `nbhub` binary and its managed `nbhub-proxy`.

use crate::common;

use common::fetch;

use std::time::Duration;

use common::eventually;
use common::hubproc::{admin, real_parts, HubProc, Options, ADMIN};
use common::kernel;
use common::pagekit::{browser_following, browser_with_jar, login};
use common::status_of;
use common::user_token;
use reqwest::cookie::CookieStore;
use reqwest::Method;
use serde_json::{json, Value};

fn cookie(jar: &reqwest::cookie::Jar, url: &str, name: &str) -> Option<String> {
    let header = jar.cookies(&url.parse().ok()?)?;
    header
        .to_str()
        .ok()?
        .split("; ")
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_string))
}

/// Executes `code` in a new kernel of the server at `prefix` (made with the browser's
/// session and XSRF header, as JupyterLab does) and returns what the kernel printed.
async fn run_in_kernel(
    hub: &HubProc,
    prefix: &str,
    b: &reqwest::Client,
    xsrf: &str,
    token: &str,
    code: &str,
) -> String {
    let request = b
        .post(hub.public_url(&format!("{prefix}api/kernels")))
        .header("X-XSRFToken", xsrf);
    let id = kernel::create_kernel(hub, prefix, request).await;
    kernel::execute(hub, prefix, &id, token, code).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_login_spawn_kernel_and_access_rules() {
    let Some((venv, proxy)) = real_parts() else {
        return;
    };
    // An external service with a URL: the hub routes /services/<name>/ to it.
    let services = "[[services]]\nname = \"dashboard\"\nurl = \"http://127.0.0.1:9\"\n".to_string();
    let hub = HubProc::started(venv, &proxy, Options::services(services)).await;
    let (s, routes) = admin(&hub, Method::GET, "/proxy", None).await;
    assert_eq!(s, 200, "{routes}");
    let routes: Value = serde_json::from_str(&routes).expect("json");
    assert_eq!(
        routes["/services/dashboard/"]["target"], "http://127.0.0.1:9",
        "{routes}"
    );
    assert_eq!(
        routes["/services/dashboard/"]["data"]["service"],
        "dashboard"
    );
    assert_eq!(routes["/"]["data"]["hub"], true);
    let (alice, jar) = browser_with_jar(true);
    login(&hub, &alice, "alice").await;

    // Start through the spawn page; follow the progress stream until the server is ready.
    let resp = fetch(&alice, hub.public_url("/hub/spawn")).await;
    assert!(
        resp.status().is_success(),
        "{} at {}: {}",
        resp.status(),
        resp.url(),
        hub.log()
    );
    let landed = resp.url().path().to_string();
    assert!(
        landed.starts_with("/hub/spawn-pending/alice") || landed.starts_with("/user/alice/"),
        "{landed}"
    );
    let progress = fetch(
        &alice,
        hub.public_url("/hub/api/users/alice/server/progress"),
    )
    .await;
    assert_eq!(progress.headers()["content-type"], "text/event-stream");
    let body = tokio::time::timeout(Duration::from_secs(60), progress.text())
        .await
        .expect("progress ends")
        .expect("body");
    assert!(body.contains("\"ready\":true"), "{body}");
    assert!(body.contains("Server requested"), "{body}");

    // JupyterLab through the proxy: the single-user server logs alice in with OAuth + PKCE.
    let resp = fetch(&alice, hub.public_url("/user/alice/lab")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.url().path(), "/user/alice/lab");
    let html = resp.text().await.expect("html");
    assert!(html.contains("JupyterLab"), "a JupyterLab page");
    let token_marker = "\"token\": \"";
    let start = html.find(token_marker).expect("page config token") + token_marker.len();
    let oauth_token = html[start..].split('"').next().expect("token").to_string();
    let xsrf =
        cookie(&jar, &hub.public_url("/user/alice/"), "_xsrf").expect("the server's _xsrf cookie");
    let printed = run_in_kernel(
        &hub,
        "/user/alice/",
        &alice,
        &xsrf,
        &oauth_token,
        "print(6*7)",
    )
    .await;
    assert_eq!(printed.trim(), "42");

    // The server's activity reports reach the hub.
    eventually(30, "alice's server activity in the hub", || async {
        let (_, body) = admin(&hub, Method::GET, "/users/alice", None).await;
        let v: Value = serde_json::from_str(&body).ok()?;
        v["servers"][""]["last_activity"]
            .as_str()
            .map(str::to_string)
    })
    .await;

    // bob may not use alice's server.
    let bob = browser_following();
    login(&hub, &bob, "bob").await;
    let resp = fetch(&bob, hub.public_url("/user/alice/api/status")).await;
    assert_eq!(
        resp.status(),
        403,
        "bob at alice's server ends at {}",
        resp.url()
    );
    let bob_token = user_token(&hub, "bob").await;
    assert_eq!(
        status_of(&hub, "/user/alice/api/status", &bob_token).await,
        403
    );

    // The admin service can stop and start alice's server but not use it.
    assert_eq!(status_of(&hub, "/user/alice/api/status", ADMIN).await, 403);
    let (s, body) = admin(&hub, Method::DELETE, "/users/alice/server", None).await;
    assert_eq!(s, 204, "{body}");
    let (s, body) = admin(&hub, Method::POST, "/users/alice/server", None).await;
    assert_eq!(s, 201, "{body}");
    let (s, body) = admin(&hub, Method::POST, "/users/alice/server", None).await;
    assert_eq!(s, 400, "already running: {body}");
    let (s, _) = admin(&hub, Method::DELETE, "/users/alice/server", None).await;
    assert_eq!(s, 204);

    // Stopped: API requests get 424 JSON, pages a 424 page with a spawn link.
    let resp = fetch(&alice, hub.public_url("/user/alice/api/status")).await;
    assert_eq!(resp.status(), 424);
    assert_eq!(resp.url().path(), "/hub/user/alice/api/status");
    let v: Value = resp.json().await.expect("424 json");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("no longer running"),
        "{v}"
    );
    let resp = fetch(&alice, hub.public_url("/user/alice/lab")).await;
    assert_eq!(resp.status(), 424);
    // minijinja escapes '/' in attributes as &#x2f;, which browsers decode.
    let html = resp.text().await.expect("html").replace("&#x2f;", "/");
    assert!(
        html.contains("href=\"/hub/spawn/alice?next=%2Fhub%2Fuser%2Falice%2Flab\""),
        "{html}"
    );

    // Named servers: two at once, each at its own URL.
    let alice_token = user_token(&hub, "alice").await;
    for name in ["one", "two"] {
        let (s, body) = admin(
            &hub,
            Method::POST,
            &format!("/users/alice/servers/{name}"),
            Some(json!({})),
        )
        .await;
        assert!(s == 201 || s == 202, "{name}: {s} {body}");
    }
    for name in ["one", "two"] {
        let path = format!("/user/alice/{name}/api/status");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            let status = status_of(&hub, &path, &alice_token).await;
            if status == 200 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} still answers {status} after 90 s\n{}",
                hub.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    let (_, body) = admin(&hub, Method::GET, "/users/alice", None).await;
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["servers"]["one"]["url"], "/user/alice/one/");
    assert_eq!(v["servers"]["two"]["ready"], true);
    let (s, _) = admin(
        &hub,
        Method::DELETE,
        "/users/alice/servers/two",
        Some(json!({"remove": true})),
    )
    .await;
    assert_eq!(s, 204);
    let (_, body) = admin(
        &hub,
        Method::GET,
        "/users/alice?include_stopped_servers",
        None,
    )
    .await;
    let v: Value = serde_json::from_str(&body).expect("json");
    assert!(v["servers"].get("two").is_none(), "removed: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_and_proxy_restarts_lose_nothing() {
    let Some((venv, proxy)) = real_parts() else {
        return;
    };
    let mut hub = HubProc::started(venv, &proxy, Options::default()).await;
    let mut tokens = Vec::new();
    for user in ["alice", "bob"] {
        admin(&hub, Method::POST, &format!("/users/{user}"), None).await;
        let (s, body) = admin(&hub, Method::POST, &format!("/users/{user}/server"), None).await;
        assert_eq!(s, 201, "{user}: {body}");
        let t = user_token(&hub, user).await;
        assert_eq!(
            status_of(&hub, &format!("/user/{user}/api/status"), &t).await,
            200
        );
        tokens.push((user, t));
    }

    // kill -9 the hub: the proxy keeps serving the users' servers meanwhile.
    hub.kill9_hub();
    for (user, t) in &tokens {
        assert_eq!(
            status_of(&hub, &format!("/user/{user}/api/status"), t).await,
            200,
            "{user} while the hub is down"
        );
    }
    hub.start().await;
    for (user, t) in &tokens {
        let (_, body) = admin(&hub, Method::GET, &format!("/users/{user}"), None).await;
        let v: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["servers"][""]["ready"], true, "{user} re-adopted: {v}");
        assert_eq!(
            status_of(&hub, &format!("/user/{user}/api/status"), t).await,
            200
        );
    }
    let log = hub.log();
    assert!(log.contains("adopted a running server"), "{log}");

    // kill -9 the proxy: the hub starts a new one and restores every route within 5 s.
    let old = hub.proxy_pid().expect("proxy pid");
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(old),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill proxy");
    let killed = tokio::time::Instant::now();
    for (user, t) in &tokens {
        let path = format!("/user/{user}/api/status");
        eventually(5, &format!("{path} after the proxy was killed"), || async {
            (status_of(&hub, &path, t).await == 200).then_some(())
        })
        .await;
    }
    eprintln!(
        "routes back {:?} after kill -9 of the proxy",
        killed.elapsed()
    );
    assert!(killed.elapsed() <= Duration::from_secs(5));
    assert_ne!(hub.proxy_pid(), Some(old));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_idle_culler_culls_an_idle_server() {
    let Some((venv, proxy)) = real_parts() else {
        return;
    };
    let culler = venv.join("bin/jupyterhub-idle-culler");
    let services = format!(
        r#"
[[services]]
name = "culler"
command = ["{}", "--timeout=5", "--cull-every=2"]

[[roles]]
name = "culler-role"
scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
services = ["culler"]
"#,
        culler.display()
    );
    let hub = HubProc::started(venv, &proxy, Options::services(services)).await;
    admin(&hub, Method::POST, "/users/alice", None).await;
    let (s, body) = admin(&hub, Method::POST, "/users/alice/server", None).await;
    assert_eq!(s, 201, "{body}");
    eventually(60, "the idle culler to stop alice's server", || async {
        let (_, body) = admin(&hub, Method::GET, "/users/alice", None).await;
        let v: Value = serde_json::from_str(&body).ok()?;
        v["servers"]
            .as_object()
            .filter(|m| m.is_empty())
            .map(|_| ())
    })
    .await;
    let log =
        std::fs::read_to_string(hub.data_dir().join("logs/service-culler.log")).unwrap_or_default();
    assert!(
        log.contains("Culling server") || log.contains("alice"),
        "culler log: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batchspawner_wrapper_reports_its_port() {
    let Some((venv, proxy)) = real_parts() else {
        return;
    };
    let wrapper = venv
        .join("bin/batchspawner-singleuser")
        .display()
        .to_string();
    let hub = HubProc::started(
        venv,
        &proxy,
        Options {
            cmd_prefix: vec![wrapper],
            ..Options::default()
        },
    )
    .await;
    admin(&hub, Method::POST, "/users/alice", None).await;
    let (s, body) = admin(&hub, Method::POST, "/users/alice/server", None).await;
    assert_eq!(s, 201, "{body}");
    let token = user_token(&hub, "alice").await;
    assert_eq!(status_of(&hub, "/user/alice/api/status", &token).await, 200);
    // The route points at the port the wrapper reported, not the one the spawner chose.
    let (_, body) = admin(&hub, Method::GET, "/users/alice", None).await;
    let v: Value = serde_json::from_str(&body).expect("json");
    let chosen = v["servers"][""]["state"]["port"]
        .as_u64()
        .expect("spawner state port");
    let (_, routes) = admin(&hub, Method::GET, "/proxy", None).await;
    let log = hub.log();
    assert!(
        log.contains("batchspawner reported the server's port"),
        "{log}"
    );
    assert!(
        !routes.contains(&format!(":{chosen}\"")) || routes.is_empty(),
        "route still at the chosen port {chosen}: {routes}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_with_configurable_http_proxy_as_external_proxy() {
    let Some((venv, proxy)) = real_parts() else {
        return;
    };
    let chp = std::env::var("NBHUB_CHP")
        .ok()
        .map(std::path::PathBuf::from)
        .filter(|p| p.exists());
    let Some(chp) = chp else {
        nbhub_testkit::missing_part("configurable-http-proxy (NBHUB_CHP)", "scripts/test-env.sh");
        return;
    };
    let token = "chp-test-token-0123456789".to_string();
    let mut hub = HubProc::new(
        venv,
        &proxy,
        Options {
            external_proxy_token: Some(token.clone()),
            ..Options::default()
        },
    );
    let mut cmd = std::process::Command::new(&chp);
    cmd.args([
        "--ip",
        "127.0.0.1",
        "--port",
        &hub.public.to_string(),
        "--api-ip",
        "127.0.0.1",
    ])
    .args(["--api-port", &hub.api_port.to_string()])
    .args([
        "--error-target",
        &format!("http://127.0.0.1:{}/hub/error", hub.hub_port),
    ])
    .env("CONFIGPROXY_AUTH_TOKEN", &token);
    let chp_guard =
        nbhub_testkit::ChildGuard::spawn("configurable-http-proxy", cmd).expect("start CHP");
    chp_guard
        .wait_for_line(
            |l| l.contains("Proxying") || l.contains("proxy"),
            Duration::from_secs(30),
        )
        .await;
    hub.start().await;
    admin(&hub, Method::POST, "/users/alice", None).await;
    let (s, body) = admin(&hub, Method::POST, "/users/alice/server", None).await;
    assert_eq!(s, 201, "{body}");
    let t = user_token(&hub, "alice").await;
    assert_eq!(
        status_of(&hub, "/user/alice/api/status", &t).await,
        200,
        "through CHP"
    );
    let (s, body) = admin(&hub, Method::DELETE, "/users/alice/server", None).await;
    assert_eq!(s, 204, "{body}");
    // Stopped: CHP sends the request to the hub's catch-all route, which answers 424.
    let r = common::get_as(
        &reqwest::Client::new(),
        hub.public_url("/user/alice/api/status"),
        &t,
    )
    .await;
    assert_eq!(r.status(), 424);
    drop(chp_guard);
}

/// `/users/{name}/server/ending` (the job's end signal and time, docs/jupyterlab.md) answers
/// the server's own token and callers with the scope on that server, and no one else: another
/// user's server token, a user's own login token for a POST (it needs `admin:servers`), a
/// server that is not running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ending_of_a_server_is_told_only_by_itself_or_an_admin() {
    let Some((venv, proxy)) = real_parts() else {
        return;
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    let script = scratch.path().join("tiny_server.py");
    std::fs::write(&script, common::TINY_SERVER).expect("script");
    let hub = HubProc::started(
        venv.clone(),
        &proxy,
        Options {
            cmd_prefix: vec![
                venv.join("bin/python").display().to_string(),
                script.display().to_string(),
            ],
            ..Options::default()
        },
    )
    .await;
    for name in ["alice", "bob"] {
        admin(&hub, Method::POST, &format!("/users/{name}"), None).await;
        let (s, body) = admin(&hub, Method::POST, &format!("/users/{name}/server"), None).await;
        assert!(s == 201 || s == 202, "{body}");
        common::hubproc::wait_ready(&hub, name, "", 60).await;
    }
    // Each server's own token, as its job has it.
    let server_token = |name: &'static str| {
        let hub = &hub;
        async move {
            let env: Value = fetch(
                &reqwest::Client::new(),
                hub.public_url(&format!("/user/{name}/env")),
            )
            .await
            .json()
            .await
            .expect("env");
            env["JUPYTERHUB_API_TOKEN"]
                .as_str()
                .expect("token")
                .to_string()
        }
    };
    let alice_server = server_token("alice").await;
    let bob_server = server_token("bob").await;
    let alice_login = user_token(&hub, "alice").await;
    let ask = |method: Method, path: &'static str, token: String| {
        let hub = &hub;
        async move {
            let r = reqwest::Client::new()
                .request(method, hub.public_url(&format!("/hub/api{path}")))
                .header("Authorization", format!("token {token}"))
                .send()
                .await
                .expect("ending request");
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
    };
    let ending = "/users/alice/server/ending";
    for (method, token, want, who) in [
        (
            Method::POST,
            bob_server.clone(),
            404,
            "bob's server token posts alice's ending",
        ),
        (
            Method::GET,
            bob_server.clone(),
            404,
            "bob's server token reads alice's ending",
        ),
        (
            Method::POST,
            alice_login.clone(),
            403,
            "alice's login token posts her ending",
        ),
        (
            Method::GET,
            alice_login.clone(),
            200,
            "alice reads her own server's ending",
        ),
        (
            Method::POST,
            alice_server.clone(),
            200,
            "alice's server says its end is near",
        ),
        (
            Method::POST,
            ADMIN.to_string(),
            200,
            "an admin posts alice's ending",
        ),
    ] {
        let (s, body) = ask(method.clone(), ending, token).await;
        assert!(
            s == want || (want == 404 && s == 403),
            "{who}: {method} answered {s} {body}"
        );
    }
    let (s, body) = ask(Method::GET, ending, alice_server).await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert!(v["signal_time"].is_string(), "the end signal is known: {v}");
    // Stopped: nothing to tell.
    let (s, _) = admin(&hub, Method::DELETE, "/users/alice/server", None).await;
    assert!(s == 202 || s == 204);
    eventually(30, "alice's server to stop", || async {
        let (s, _) = ask(Method::GET, ending, ADMIN.to_string()).await;
        (s == 404).then_some(())
    })
    .await;
    let (s, body) = ask(Method::POST, ending, ADMIN.to_string()).await;
    assert_eq!(s, 404, "{body}");
    assert!(body.contains("is not running"), "{body}");
}
