//! JupyterHub's security advisories of 5.4.4–5.5.1, each redone as an attack on nbhub. Every
//! test builds the request the advisory describes (read from the advisory and its fix), sends
//! it to a real hub, and checks that nothing happens that should not: no redirect off the
//! hub, no action without the XSRF token, no unbounded log line, no markup injected through a
//! share link, no user or group made with a filtered admin scope. Each fails on a build with
//! the corresponding check taken out (docs/security.md says which).

use crate::common;

use common::hubproc::{real_parts, HubProc, Options};
use common::pagekit::{browser, location_header as location, login, page_xsrf, xsrf_of};
use common::{call, check_rows, fetch, post_form, row, sqlite_hub, TestHub, ADMIN_TOKEN};
use reqwest::Method;
use serde_json::json;

/// Where a browser that follows `loc` from `from` ends up: its host and port.
fn resolved_origin(from: &str, loc: &str) -> (Option<String>, Option<u16>) {
    let base = url::Url::parse(from).expect("url");
    match base.join(loc) {
        Ok(u) => (u.host_str().map(str::to_string), u.port_or_known_default()),
        Err(_) => (None, None),
    }
}

fn q(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// GHSA-3vff-hjqv-m7h8 (CVE-2026-33709, fixed in JupyterHub 5.4.4): a `next` that names the
/// hub's own host was cut down to its path, and a path that begins with `//` is another host
/// to a browser: `next=https://HUB//evil.example/` sent a signed-in user to evil.example.
/// nbhub refuses such a path (the default page instead), on every page that takes `next`,
/// with and without a base URL.
#[tokio::test]
async fn ghsa_3vff_hjqv_m7h8_a_next_naming_the_hub_never_leaves_it() {
    for base_url in ["/", "/jh/"] {
        let hub = sqlite_hub(|c| {
            c.authenticator.allow_all = true;
            c.hub.base_url = nbhub::config::BaseUrl::parse(base_url).expect("base url");
        })
        .await;
        let host = hub.url.trim_start_matches("http://").to_string();
        let hub_path = |p: &str| format!("{}{}hub{p}", hub.url, base_url);
        let signed_in = browser();
        // The login form, then its POST (follow nothing: we look at each Location).
        let page = fetch(&signed_in, hub_path("/login")).await;
        let xsrf = xsrf_of(&page.text().await.expect("html"));
        let resp = post_form(
            &signed_in,
            hub_path("/login"),
            &[("username", "alice"), ("password", "x"), ("_xsrf", &xsrf)],
        )
        .await;
        assert_eq!(resp.status(), 302, "sign-in with base_url {base_url}");
        let mut tried = 0;
        for scheme in ["http", "https"] {
            for slashes in ["//", "///", "////", "/\\", "//\\"] {
                let next = format!("{scheme}://{host}{slashes}evil.example/{base_url}hub/home");
                for page in ["/login", "/spawn", "/spawn/alice", "/spawn-pending/alice"] {
                    let url = format!("{}?next={}", hub_path(page), q(&next));
                    let resp = fetch(&signed_in, &url).await;
                    let loc = location(&resp);
                    let body = resp.text().await.unwrap_or_default();
                    let (to_host, _) = resolved_origin(&hub.url, &loc);
                    assert!(
                        loc.is_empty() || to_host.as_deref() == Some("127.0.0.1"),
                        "{page}?next={next:?} sent the browser to {loc:?} (base_url {base_url})"
                    );
                    assert!(
                        !loc.contains("evil") && !body.contains("evil.example"),
                        "{page}?next={next:?} kept the hostile target: {loc:?}"
                    );
                    tried += 1;
                }
            }
        }
        assert_eq!(tried, 40);
        // A next that is a real path of this hub is still honoured.
        let good = format!("http://{host}{base_url}hub/token");
        let resp = fetch(
            &signed_in,
            format!("{}?next={}", hub_path("/login"), q(&good)),
        )
        .await;
        assert_eq!(location(&resp), format!("{base_url}hub/token"));
    }
}

/// GHSA-m68r-v472-jgq9 (CVE-2026-40864, fixed in JupyterHub 5.4.5): a cookie-authenticated
/// request with `Sec-Fetch-Mode: no-cors` skipped the XSRF check, so another site's page could
/// have a signed-in user's browser POST to the API (a no-cors fetch may send a text/plain body
/// with the cookie). nbhub checks the token on every cookie-authenticated request that is not
/// a plain page view: nothing is started, created or deleted without it.
#[tokio::test]
async fn ghsa_m68r_v472_jgq9_no_cors_requests_need_the_xsrf_token() {
    let hub = sqlite_hub(|c| c.authenticator.allow_all = true).await;
    let b = browser();
    login(&hub, &b, "alice").await;
    let cross_site = |req: reqwest::RequestBuilder| {
        req.header("Sec-Fetch-Mode", "no-cors")
            .header("Sec-Fetch-Site", "cross-site")
            .header("Sec-Fetch-Dest", "empty")
            .header("Origin", "https://evil.example")
            .header("Content-Type", "text/plain;charset=UTF-8")
    };
    let tokens_before = token_count(&hub, "alice").await;
    let attacks = [
        (Method::POST, "/users/alice/tokens", r#"{"note":"stolen"}"#),
        (Method::POST, "/users/alice/server", ""),
        (Method::DELETE, "/users/alice/server", ""),
        (Method::POST, "/share-codes/alice/", ""),
        (Method::PATCH, "/users/alice", r#"{"name":"mallory"}"#),
        (Method::GET, "/users/alice/tokens", ""),
        (Method::GET, "/user", ""),
    ];
    for (method, path, body) in &attacks {
        let resp = cross_site(b.request(method.clone(), hub.api(path)))
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(
            status, 403,
            "{method} {path} without the XSRF token: {text}"
        );
        assert!(text.contains("_xsrf"), "{method} {path}: {text}");
    }
    assert_eq!(token_count(&hub, "alice").await, tokens_before);
    let (s, alice) = call(&hub, Method::GET, "/users/alice", ADMIN_TOKEN, None).await;
    assert_eq!(s, 200, "alice kept her name: {alice}");
    assert!(
        alice["servers"].as_object().is_none_or(|m| m.is_empty()),
        "no server was started: {alice}"
    );
    // Not a vacuous refusal: the same request with the page's token goes through.
    let page = fetch(&b, hub.hub("/token")).await;
    let xsrf = page_xsrf(&page.text().await.expect("html"));
    let resp = b
        .post(hub.api("/users/alice/tokens"))
        .header("X-XSRFToken", &xsrf)
        .header("Sec-Fetch-Mode", "cors")
        .header("Sec-Fetch-Site", "same-origin")
        .json(&json!({"note": "mine"}))
        .send()
        .await
        .expect("token request");
    assert_eq!(resp.status(), 201, "with the XSRF token");
    assert_eq!(token_count(&hub, "alice").await, tokens_before + 1);
    // A plain page view (navigate) needs no token, as in JupyterHub.
    let resp = b
        .get(hub.api("/user"))
        .header("Sec-Fetch-Mode", "navigate")
        .send()
        .await
        .expect("navigate");
    assert_eq!(resp.status(), 200);
}

async fn token_count(hub: &TestHub, user: &str) -> usize {
    let (s, v) = call(
        hub,
        Method::GET,
        &format!("/users/{user}/tokens"),
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v["api_tokens"].as_array().map_or(0, Vec::len)
}

/// GHSA-p43p-whwx-q52h (CVE-2026-54338, fixed in JupyterHub 5.5.0): the name of a failed login
/// was logged whole, so anyone could fill the hub's log (and its disk) with megabyte-long
/// names, or forge log lines with newlines. Against the real `nbhub` binary: a flood of failed
/// logins with huge and multi-line names adds a bounded amount of log, none of it the names,
/// and the page does not echo them back.
#[tokio::test]
async fn ghsa_p43p_whwx_q52h_failed_logins_with_huge_names_log_little() {
    let Some((venv, proxy)) = real_parts() else {
        return;
    };
    let hub = HubProc::started(venv, &proxy, Options::default()).await;
    let b = browser();
    let page = fetch(&b, hub.public_url("/hub/login")).await;
    let xsrf = xsrf_of(&page.text().await.expect("html"));
    let log_before = hub.log().len();
    let huge = "A".repeat(512 * 1024);
    let forged = "bob\n2026-01-01T00:00:00Z  INFO nbhub: user logged in user=admin";
    let mut names: Vec<String> = vec![huge.clone(), forged.into()];
    // Many distinct valid-looking long names: each a separate failure to count.
    names.extend((0..200).map(|i| format!("{}{i}", "b".repeat(250))));
    for name in &names {
        let resp = post_form(
            &b,
            hub.public_url("/hub/login"),
            &[
                ("username", name.as_str()),
                ("password", "wrong"),
                ("_xsrf", &xsrf),
            ],
        )
        .await;
        let status = resp.status().as_u16();
        assert!(status == 403 || status == 429, "{status}");
        let html = resp.text().await.unwrap_or_default();
        assert!(
            html.len() < 64 * 1024,
            "the login page echoed the name back ({} bytes)",
            html.len()
        );
    }
    // The log had time to be written: the hub answers a request after the flood.
    let resp = fetch(&b, hub.public_url("/hub/api/")).await;
    assert_eq!(resp.status(), 200);
    let log = hub.log();
    let added = &log[log_before.min(log.len())..];
    assert!(
        added.len() < 64 * 1024,
        "{} bytes of log for {} failed logins",
        added.len(),
        names.len()
    );
    assert!(
        !added.contains(&"A".repeat(200)),
        "a huge name reached the log"
    );
    assert!(
        !added.contains(&"b".repeat(150)),
        "a long name was logged whole"
    );
    assert!(
        !added.lines().any(|l| l.starts_with("2026-01-01T00:00:00Z")),
        "a name forged a log line:\n{added}"
    );
}

/// GHSA-c4gm-pwx9-9w8j (fixed in JupyterHub 5.5.1): the accept-share page wrote its `next`
/// into the page unescaped, so a share link with a crafted `next` put the attacker's markup in
/// the hub's origin when the invited user opened it. In a real Chromium: the link after
/// accepting shows the `next` as given, text and address intact, and nothing is injected;
/// a `next` off the hub falls back to the shared server.
#[tokio::test]
async fn ghsa_c4gm_pwx9_9w8j_a_share_link_cannot_inject_markup() {
    let Some(b) = common::browser::Browser::start().await else {
        return;
    };
    let hub = sqlite_hub(|c| {
        c.authenticator.allow_all = true;
        c.roles.push(nbhub::config::RoleConfig {
            name: "user".into(),
            scopes: ["self", "shares!user"].map(String::from).to_vec(),
            ..Default::default()
        });
    })
    .await;
    for name in ["alice", "bob"] {
        let (s, v) = call(
            &hub,
            Method::POST,
            &format!("/users/{name}"),
            ADMIN_TOKEN,
            None,
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
    let alice = common::user_token(&hub, "alice").await;
    b.sign_in(&hub.url, "bob", "x").await;
    let cases = [
        ("/hub/home", "/hub/home"),
        ("/hub/home'><img>", ""),
        ("/hub/home\"><img>", ""),
        ("/hub/home'><img/src=x/onerror=window.injected=1>", ""),
        ("/hub/home\"><img/src=x/onerror=window.injected=1>", ""),
        ("/hub/home?a=5&b=10", "/hub/home?a=5&b=10"),
        ("/hub/\">injected</a><a>", ""),
        ("https://example.com/", "/user/alice/"),
        ("///example.com/", "/user/alice/"),
    ];
    for (next, expected) in cases {
        let (s, code) = call(&hub, Method::POST, "/share-codes/alice/", &alice, None).await;
        assert_eq!(s, 200, "{code}");
        let accept = code["accept_url"].as_str().expect("accept_url");
        b.goto(&format!("{}{accept}&next={}", hub.url, q(next)))
            .await;
        b.find(".after-accept a").await;
        let link = b
            .eval(
                "const a = document.querySelectorAll('.after-accept a');
                 return {count: a.length, href: a[0].getAttribute('href'), text: a[0].innerText,
                         imgs: document.querySelectorAll('img:not(.jpy-logo)').length,
                         injected: !!window.injected,
                         next: document.querySelector('input[name=next]').value};",
                json!([]),
            )
            .await;
        // Intact text and address mean nothing was parsed as markup.
        let expected = if expected.is_empty() { next } else { expected };
        assert_eq!(link["count"], 1, "{next:?}: {link}");
        assert_eq!(link["href"], expected, "{next:?}: {link}");
        assert_eq!(link["text"], expected, "{next:?}: {link}");
        assert_eq!(link["next"], expected, "{next:?}: {link}");
        assert_eq!(link["imgs"], 0, "{next:?} injected an element: {link}");
        assert_eq!(link["injected"], false, "{next:?} ran script: {link}");
    }
    // Accepting goes where the link said.
    b.click("form button[type=submit]").await;
    b.wait_until(
        "location.pathname.includes('/user/alice/')",
        "going to alice's server",
    )
    .await;
    b.quit().await;
}

/// GHSA-69wv-m5fw-2fhp (fixed in JupyterHub 5.5.1): a role with a filtered admin scope
/// (`admin:users!group=g`, `admin:groups!group=g`) passed the check of endpoints that name no
/// user or group in their path, and could create users and groups outside its filter. nbhub
/// needs the unfiltered scope to create them; the filtered one still works inside its group.
#[tokio::test]
async fn ghsa_69wv_m5fw_2fhp_filtered_admin_scopes_create_nothing() {
    let hub = sqlite_hub(|c| {
        let mut role = nbhub::config::RoleConfig {
            name: "g-admin".into(),
            scopes: ["admin:users!group=g", "admin:groups!group=g"]
                .map(String::from)
                .to_vec(),
            ..Default::default()
        };
        role.users = vec!["gadm".into()];
        c.roles.push(role);
    })
    .await;
    // gadm is made at start, as a member of its role.
    let (s, v) = call(&hub, Method::POST, "/users/carol", ADMIN_TOKEN, None).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = call(
        &hub,
        Method::POST,
        "/groups/g",
        ADMIN_TOKEN,
        Some(json!({"users": ["carol"]})),
    )
    .await;
    assert!(s == 201 || s == 409, "{s} {v}");
    if s == 409 {
        let (s, v) = call(
            &hub,
            Method::POST,
            "/groups/g/users",
            ADMIN_TOKEN,
            Some(json!({"users": ["carol"]})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    let gadm = common::user_token(&hub, "gadm").await;
    // Each refused (403, or 404 where nbhub does not say whether the target exists).
    let attempts = [
        (
            Method::POST,
            "/users",
            Some(json!({"usernames": ["eve1", "eve2"]})),
        ),
        (Method::POST, "/users/eve3", None),
        (
            Method::POST,
            "/groups",
            Some(json!({"groups": ["h1", "h2"]})),
        ),
        (Method::POST, "/groups/h3", None),
    ];
    for (method, path, body) in attempts {
        let (s, v) = call(&hub, method.clone(), path, &gadm, body).await;
        assert!(
            s == 403 || s == 404,
            "a filtered admin scope: {method} {path} answered {s} {v}"
        );
    }
    // Inside its filter, it still works.
    check_rows(
        &hub,
        vec![row(Method::DELETE, "/groups/g", &gadm, 204).what("the filtered admin deletes g")],
    )
    .await;
    for user in ["eve1", "eve2", "eve3"] {
        let (s, _) = call(
            &hub,
            Method::GET,
            &format!("/users/{user}"),
            ADMIN_TOKEN,
            None,
        )
        .await;
        assert_eq!(s, 404, "{user} was created");
    }
    for group in ["h1", "h2", "h3"] {
        let (s, _) = call(
            &hub,
            Method::GET,
            &format!("/groups/{group}"),
            ADMIN_TOKEN,
            None,
        )
        .await;
        assert_eq!(s, 404, "{group} was created");
    }
    // The unfiltered scope may (JupyterHub's own test: 201).
    let (s, v) = call(
        &hub,
        Method::POST,
        "/users",
        ADMIN_TOKEN,
        Some(json!({"usernames": ["dave"]})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
}
