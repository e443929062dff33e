//! JupyterHub 5.1–6.0's newer options, with JupyterHub's names (issue 25, point 6): each test
//! sets the option as a site would and checks what JupyterHub documents for it.

use reqwest::Method;
use serde_json::json;

use crate::common;
use common::hubproc::{self, HubProc, Options};
use common::pagekit::{browser, post_login, xsrf_at};
use common::{call, check_rows, fetch, row, sqlite_hub, user_token, Hub};
use nbhub::config::AuthenticatorKind;

/// Seconds from now to an RFC 3339 time the API returned.
fn seconds_until(at: &serde_json::Value) -> i64 {
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    let at = time::OffsetDateTime::parse(at.as_str().expect("a time"), rfc3339).expect("RFC 3339");
    (at - time::OffsetDateTime::now_utc()).whole_seconds()
}

/// JupyterHub 5.1's `token_expires_in_max_seconds`, with the cases of its own test: no expiry
/// asked gets the limit, the limit itself is fine, one second more is a 400 naming the limit;
/// without a limit "never" stays possible. The token page offers nothing longer.
#[tokio::test]
async fn token_expiry_is_limited_by_token_expires_in_max_seconds() {
    let hub = sqlite_hub(|c| c.hub.token_expires_in_max_seconds = 86400).await;
    let (s, _) = call(
        &hub,
        Method::POST,
        "/users",
        hub.admin_token(),
        Some(json!({"usernames": ["tx5"]})),
    )
    .await;
    assert_eq!(s, 201);
    let own = user_token(&hub, "tx5").await;
    for (asked, expected) in [(None, 86400), (Some(86400), 86400), (Some(100), 100)] {
        let body = asked.map_or(json!({}), |secs| json!({"expires_in": secs}));
        let (s, t) = call(&hub, Method::POST, "/users/tx5/tokens", &own, Some(body)).await;
        assert_eq!(s, 201, "{asked:?}: {t}");
        let left = seconds_until(&t["expires_at"]);
        assert!(
            (expected - 30..=expected).contains(&left),
            "{asked:?}: expires in {left} s: {t}"
        );
    }
    check_rows(
        &hub,
        vec![
            row(Method::POST, "/users/tx5/tokens", &own, 400)
                .body(json!({"expires_in": 86401}))
                .says("must not exceed 86400")
                .what("one second above the limit"),
            row(Method::POST, "/users/tx5/tokens", hub.admin_token(), 400)
                .body(json!({"expires_in": 864000}))
                .says("must not exceed 86400")
                .what("an admin's request for a user is limited too"),
        ],
    )
    .await;
    // The token page offers nothing longer than the limit, and no "Never".
    let b = common::pagekit::signed_in(&hub, "tx5").await;
    let page = fetch(&b, hub.hub("/token"))
        .await
        .text()
        .await
        .expect("html");
    let select = page
        .split("id=\"token-expiration-seconds\"")
        .nth(1)
        .and_then(|s| s.split("</select>").next())
        .expect("the expiry list");
    assert!(
        !select.contains("Never") && !select.contains("1 week"),
        "{select}"
    );
    assert!(select.contains("value=\"86400\" selected"), "{select}");

    // Without a limit, a token without expiry stays possible (JupyterHub's default).
    let open = sqlite_hub(|_| {}).await;
    let (s, _) = call(
        &open,
        Method::POST,
        "/users",
        open.admin_token(),
        Some(json!({"usernames": ["tx5"]})),
    )
    .await;
    assert_eq!(s, 201);
    let (s, t) = call(
        &open,
        Method::POST,
        "/users/tx5/tokens",
        open.admin_token(),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (s, &t["expires_at"]),
        (201, &serde_json::Value::Null),
        "{t}"
    );
}

/// JupyterHub 5.1's SharedPasswordAuthenticator as `kind = "shared-password"`: admin_users sign
/// in with admin_password only (and are admins), everyone else with user_password only.
#[tokio::test]
async fn shared_password_signs_in_users_and_admins_with_their_own_password() {
    const USER_PW: &str = "workshop-2026";
    const ADMIN_PW: &str = "an-admin-password-of-32-characters!";
    let hub = sqlite_hub(|c| {
        c.authenticator.kind = AuthenticatorKind::SharedPassword;
        c.authenticator.user_password = USER_PW.into();
        c.authenticator.admin_password = ADMIN_PW.into();
        c.authenticator.admin_users = vec!["sp5boss".into()];
        c.authenticator.allow_all = true;
    })
    .await;
    let attempt = |name: &'static str, pw: &'static str| {
        let hub = &hub;
        async move {
            let b = browser();
            let xsrf = xsrf_at(&b, &hub.hub("/login")).await;
            post_login(hub, &b, name, pw, Some(&xsrf))
                .await
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        attempt("sp5user", USER_PW).await,
        302,
        "a user with user_password"
    );
    assert_eq!(
        attempt("sp5user", ADMIN_PW).await,
        403,
        "a user with admin_password"
    );
    assert_eq!(
        attempt("sp5user", "wrong-password").await,
        403,
        "a wrong password"
    );
    assert_eq!(
        attempt("sp5boss", USER_PW).await,
        403,
        "an admin with user_password"
    );
    assert_eq!(
        attempt("sp5boss", ADMIN_PW).await,
        302,
        "an admin with admin_password"
    );
    let (s, users) = call(&hub, Method::GET, "/users", hub.admin_token(), None).await;
    assert_eq!(s, 200);
    let admin_of = |name: &str| {
        users
            .as_array()
            .expect("list")
            .iter()
            .find(|u| u["name"] == name)
            .map(|u| u["admin"].clone())
    };
    assert_eq!(admin_of("sp5boss"), Some(json!(true)));
    assert_eq!(admin_of("sp5user"), Some(json!(false)));
}

/// CORS for `/hub/api` (`[hub] allow_origin`): a preflight is answered 204 with the allowed
/// headers and methods, the configured origin is allowed on answers, another origin is not;
/// without allow_origin no origin is (but the preflight is still answered, as JupyterHub).
#[tokio::test]
async fn cors_for_the_api_follows_allow_origin() {
    const ORIGIN: &str = "https://lab.example.org";
    let hub = sqlite_hub(|c| c.hub.allow_origin = ORIGIN.into()).await;
    let client = common::client();
    let preflight = |hub_url: String, origin: &'static str| {
        client
            .request(Method::OPTIONS, hub_url)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization, content-type",
            )
            .send()
    };
    let acao = |r: &reqwest::Response| {
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().expect("ascii").to_string())
    };
    let r = preflight(hub.api("/users/cors5/tokens"), ORIGIN)
        .await
        .expect("preflight");
    assert_eq!(r.status(), 204);
    assert_eq!(acao(&r).as_deref(), Some(ORIGIN));
    let methods = r.headers()["access-control-allow-methods"]
        .to_str()
        .expect("ascii");
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    let headers = r.headers()["access-control-allow-headers"]
        .to_str()
        .expect("ascii");
    assert!(
        headers.contains("authorization") && headers.contains("content-type"),
        "{headers}"
    );
    let r = preflight(hub.api("/users"), "https://evil.example")
        .await
        .expect("preflight");
    assert_eq!((r.status().as_u16(), acao(&r)), (204, None));

    let get = |origin: &'static str| {
        client
            .get(hub.api("/users"))
            .header("Origin", origin)
            .header("Authorization", format!("token {}", hub.admin_token()))
            .send()
    };
    let r = get(ORIGIN).await.expect("get");
    assert_eq!(
        (r.status().as_u16(), acao(&r).as_deref()),
        (200, Some(ORIGIN))
    );
    assert_eq!(r.headers()["vary"], "Origin");
    let r = get("https://evil.example").await.expect("get");
    assert_eq!((r.status().as_u16(), acao(&r)), (200, None));

    // Without allow_origin: the preflight is answered, no origin is allowed; `/hub/api/` (the
    // version) stays open to any origin, as JupyterHub's.
    let closed = sqlite_hub(|_| {}).await;
    let r = preflight(closed.api("/users"), ORIGIN)
        .await
        .expect("preflight");
    assert_eq!((r.status().as_u16(), acao(&r)), (204, None));
    let r = client
        .get(closed.api("/"))
        .header("Origin", ORIGIN)
        .send()
        .await
        .expect("get");
    assert_eq!(acao(&r).as_deref(), Some("*"));
    // "*" lets every origin in.
    let any = sqlite_hub(|c| c.hub.allow_origin = "*".into()).await;
    let r = preflight(any.api("/users"), "https://elsewhere.example")
        .await
        .expect("preflight");
    assert_eq!(acao(&r).as_deref(), Some("*"));
}

/// The spawn and stop histograms' buckets, configured (JupyterHub's
/// `JUPYTERHUB_SERVER_SPAWN_DURATION_SECONDS_BUCKETS` / `…_STOP_…`, here `[hub]` keys): the
/// series on /hub/metrics have exactly the configured bounds, and `+Inf`.
#[tokio::test]
async fn metric_buckets_are_the_configured_ones() {
    let hub = sqlite_hub(|c| {
        c.hub.authenticate_prometheus = false;
        c.hub.server_spawn_duration_seconds_buckets = vec![1.0, 30.0, 3600.0];
        c.hub.server_stop_duration_seconds_buckets = vec![0.5, 5.0, f64::INFINITY];
    })
    .await;
    let text = fetch(&common::client(), hub.hub("/metrics"))
        .await
        .text()
        .await
        .expect("text");
    let bounds = |series: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(series))
            .filter_map(|l| {
                l.split("le=\"")
                    .nth(1)?
                    .split('"')
                    .next()
                    .map(str::to_string)
            })
            .collect()
    };
    assert_eq!(
        bounds("jupyterhub_server_spawn_duration_seconds_bucket{status=\"success\",reason=\"\""),
        ["1.0", "30.0", "3600.0", "+Inf"],
        "{text}"
    );
    assert_eq!(
        bounds("jupyterhub_server_stop_seconds_bucket{status=\"success\""),
        ["0.5", "5.0", "+Inf"],
        "{text}"
    );
    // Unconfigured histograms keep their buckets (the request histogram: Prometheus' own).
    let default = sqlite_hub(|c| c.hub.authenticate_prometheus = false).await;
    let text = fetch(&common::client(), default.hub("/metrics"))
        .await
        .text()
        .await
        .expect("text");
    let spawn: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with(
                "jupyterhub_server_spawn_duration_seconds_bucket{status=\"success\",reason=\"\"",
            )
        })
        .collect();
    assert_eq!(
        spawn.len(),
        13,
        "JupyterHub's 12 spawn buckets and +Inf: {spawn:?}"
    );
}

/// `blocked_users` (JupyterHub 5: "revoke all permissions"): a user added to it loses every
/// access at the hub's next start — the browser session and the API token issued before stop
/// working, and the running server is stopped and its route gone.
#[tokio::test]
async fn a_blocked_user_loses_sessions_tokens_and_servers_at_once() {
    let Some((venv, proxy)) = hubproc::real_parts() else {
        return;
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    let script = scratch.path().join("tiny_server.py");
    std::fs::write(&script, common::TINY_SERVER).expect("script");
    let mut hub = HubProc::started(
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
    let b = common::pagekit::signed_in(&hub, "blk5").await;
    let token = user_token(&hub, "blk5").await;
    let (s, body) = call(&hub, Method::POST, "/users/blk5/server", &token, None).await;
    assert!(s == 201 || s == 202, "{s}: {body}");
    hubproc::wait_ready(&hub, "blk5", "", 60).await;
    assert_eq!(common::status_of(&hub, "/hub/api/user", &token).await, 200);
    assert_eq!(fetch(&b, hub.url("/hub/home")).await.status(), 200);
    let server = hub.url("/user/blk5/api/status");
    assert_eq!(
        fetch(&common::client(), &server).await.status(),
        200,
        "the server is routed"
    );

    // The admin adds blk5 to blocked_users and restarts the hub.
    hub.sigterm_hub().await;
    let config = std::fs::read_to_string(&hub.config_path).expect("config");
    let config = config.replacen(
        "allow_all = true",
        "allow_all = true\nblocked_users = [\"blk5\"]",
        1,
    );
    std::fs::write(&hub.config_path, config).expect("config");
    hub.start().await;

    assert_eq!(
        common::status_of(&hub, "/hub/api/user", &token).await,
        403,
        "the API token of a blocked user"
    );
    let home = fetch(&b, hub.url("/hub/home")).await;
    assert_eq!(home.status(), 302, "the browser session of a blocked user");
    let to = home.headers()["location"].to_str().expect("ascii");
    assert!(to.contains("/hub/login"), "{to}");
    let stopped = || async {
        hubproc::server_model(&hub, "blk5", "")
            .await
            .is_none()
            .then_some(())
    };
    common::eventually(30, "the blocked user's server stopped", stopped).await;
    let r = fetch(&common::client(), &server).await;
    assert_ne!(
        r.status(),
        200,
        "the server is no longer reached through the proxy"
    );
    // And no new server starts, even when an admin asks.
    let (s, body) = call(
        &hub,
        Method::POST,
        "/users/blk5/server",
        hub.admin_token(),
        None,
    )
    .await;
    assert_eq!(s, 403, "{body}");
    // The login form refuses them too.
    let fresh = browser();
    let xsrf = xsrf_at(&fresh, &hub.url("/hub/login")).await;
    assert_eq!(
        post_login(&hub, &fresh, "blk5", &hub.password(), Some(&xsrf))
            .await
            .status(),
        403
    );
}

/// The environment a running server got (the tiny server answers `/user/NAME/env` with it).
async fn server_env(hub: &HubProc, user: &str) -> serde_json::Value {
    let r = fetch(&common::client(), hub.url(&format!("/user/{user}/env"))).await;
    assert_eq!(r.status(), 200, "{user}'s server");
    r.json().await.expect("env json")
}

/// JupyterHub 5.2's `group_overrides` and 5.3's declarative `apply_user_options`, with the real
/// binary and local servers: a member of the group gets the group's settings (the entries
/// applied in the order of their names, variables merged), a non-member does not; a user
/// option named in apply_user_options sets its setting for that start (after the group's), is
/// kept in the server's user_options, and a value it cannot take is a 400 naming the option.
#[tokio::test]
async fn group_overrides_and_apply_user_options_set_the_servers_settings() {
    let Some((venv, proxy)) = hubproc::real_parts() else {
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
            services: r#"
[spawner.apply_user_options]
start_in = "default_url"
threads = "environment.OMP_NUM_THREADS"

[spawner.group_overrides.02-gpu-later]
groups = ["gpu-users"]
spawner_override = { environment = { ORDER = "02" } }

[spawner.group_overrides.01-gpu]
groups = ["gpu-users", "other-group"]
spawner_override = { environment = { ORDER = "01", GROUP_SETTING = "gpu" }, default_url = "/lab/gpu" }

[spawner.group_overrides.03-nobody]
groups = ["nobody-here"]
spawner_override = { environment = { NOBODY = "x" } }

[[roles]]
name = "groups-admin"
scopes = ["admin:groups"]
services = ["e2e-admin"]
"#
            .into(),
            ..Options::default()
        },
    )
    .await;
    let admin = |method: Method, path: String, body: Option<serde_json::Value>| {
        let hub = &hub;
        async move { call(hub, method, &path, hub.admin_token(), body).await }
    };
    let (s, body) = admin(
        Method::POST,
        "/users".into(),
        Some(json!({"usernames": ["go5a", "go5b", "go5c"]})),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    let (s, body) = admin(
        Method::POST,
        "/groups/gpu-users".into(),
        Some(json!({"users": ["go5a"]})),
    )
    .await;
    assert_eq!(s, 201, "{body}");

    let (s, body) = admin(Method::POST, "/users/go5a/server".into(), None).await;
    assert!(s == 201 || s == 202, "{s} {body}");
    let (s, body) = admin(
        Method::POST,
        "/users/go5b/server".into(),
        Some(json!({"start_in": "/lab/tree/notes", "threads": 8})),
    )
    .await;
    assert!(s == 201 || s == 202, "{s} {body}");
    hubproc::wait_ready(&hub, "go5a", "", 60).await;
    let b_model = hubproc::wait_ready(&hub, "go5b", "", 60).await;

    let member = server_env(&hub, "go5a").await;
    assert_eq!(member["GROUP_SETTING"], "gpu", "{member}");
    assert_eq!(member["ORDER"], "02", "the later name applies last");
    assert_eq!(member["JUPYTERHUB_DEFAULT_URL"], "/lab/gpu");
    assert!(member.get("NOBODY").is_none() && member.get("OMP_NUM_THREADS").is_none());

    let other = server_env(&hub, "go5b").await;
    assert!(
        other.get("GROUP_SETTING").is_none() && other.get("ORDER").is_none(),
        "{other}"
    );
    assert_eq!(
        other["JUPYTERHUB_DEFAULT_URL"], "/lab/tree/notes",
        "{other}"
    );
    assert_eq!(other["OMP_NUM_THREADS"], "8", "a number, as text");
    assert_eq!(
        b_model["user_options"],
        json!({"start_in": "/lab/tree/notes", "threads": 8}),
        "the options are kept with the server"
    );

    let (s, body) = admin(
        Method::POST,
        "/users/go5c/server".into(),
        Some(json!({"start_in": "https://elsewhere.example/"})),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(body.to_string().contains("start_in"), "{body}");
    assert!(
        hubproc::server_model(&hub, "go5c", "").await.is_none(),
        "nothing started"
    );
}
