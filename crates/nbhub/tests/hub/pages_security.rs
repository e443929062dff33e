//! The pages as an attacker meets them: where `next=` may send a browser, what a page says about
//! users one may not see, whether an XSRF token works outside its session, the CSP reports.

use crate::common;

use common::{fetch, post_form};

use common::pagekit::{browser, location_header, login, xsrf_of};

use common::{sqlite_hub, Hub, TestHub};

/// Would a browser that follows this `Location` (resolved against the hub) leave the hub's host?
fn leaves_host(hub: &TestHub, loc: &str) -> bool {
    let base = url::Url::parse(&hub.url).expect("hub url");
    // Browsers drop tabs and newlines and read backslashes as slashes before resolving.
    let cleaned: String = loc
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .map(|c| if c == '\\' { '/' } else { c })
        .collect();
    match base.join(&cleaned) {
        Ok(u) => u.host_str() != base.host_str() || u.port() != base.port(),
        Err(_) => true,
    }
}

fn hostile_nexts(hub: &TestHub) -> Vec<String> {
    let host = hub.url.trim_start_matches("http://");
    vec![
        format!("http://{host}//evil.example/x"),
        format!("http://{host}/\\evil.example/x"),
        "/\t/evil.example".into(),
        "/\n/evil.example".into(),
        "/\r\n//evil.example".into(),
        "//evil.example/x".into(),
        "//x".into(),
        "/\\x".into(),
        "\\\\x".into(),
        "\\/x".into(),
        "https://evil".into(),
        "https://evil.example/hub/home".into(),
        format!("http://{host}@evil.example/"),
        "/%2F/evil.example".into(),
        "/%5C/evil.example".into(),
        "/%09/evil.example".into(),
        "javascript:alert(1)".into(),
        "///evil.example".into(),
    ]
}

#[tokio::test]
async fn next_never_leaves_the_hub() {
    let hub = sqlite_hub(|c| c.authenticator.allow_all = true).await;
    let anonymous = browser();
    let signed_in = browser();
    login(&hub, &signed_in, "alice").await;
    for next in hostile_nexts(&hub) {
        let q = url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>();
        // Signed in: GET /hub/login?next=… redirects at once.
        let resp = fetch(&signed_in, hub.hub(&format!("/login?next={q}"))).await;
        assert_eq!(resp.status(), 302, "{next:?}");
        let loc = location_header(&resp);
        assert!(
            !leaves_host(&hub, &loc) && !loc.contains("evil"),
            "GET /hub/login?next={next:?} sent the browser to {loc:?}"
        );
        // The login POST with the same next.
        let page = fetch(&anonymous, hub.hub(&format!("/login?next={q}"))).await;
        let html = page.text().await.expect("html");
        assert!(
            !html.contains("evil"),
            "the login page keeps a hostile next {next:?}"
        );
        let xsrf = xsrf_of(&html);
        let one = browser();
        let page = one.get(hub.hub("/login")).send().await.expect("login page");
        let xsrf_one = xsrf_of(&page.text().await.expect("html"));
        let resp = post_form(
            &one,
            hub.hub(&format!("/login?next={q}")),
            &[("username", "bob"), ("password", "x"), ("_xsrf", &xsrf_one)],
        )
        .await;
        assert_eq!(resp.status(), 302, "{next:?}");
        let loc = location_header(&resp);
        assert!(
            !leaves_host(&hub, &loc) && !loc.contains("evil"),
            "POST /hub/login?next={next:?} sent the browser to {loc:?}"
        );
        assert!(!xsrf.is_empty());
        // The spawn pages carry next on to the server.
        for path in ["/spawn", "/spawn/alice", "/spawn-pending/alice"] {
            let resp = fetch(&signed_in, hub.hub(&format!("{path}?next={q}"))).await;
            let loc = location_header(&resp);
            let body = resp.text().await.unwrap_or_default();
            assert!(
                !leaves_host(&hub, &loc) && !loc.contains("evil") && !body.contains("evil"),
                "{path}?next={next:?} went to {loc:?}"
            );
        }
    }
    // A good next is kept.
    let resp = fetch(&signed_in, hub.hub("/login?next=%2Fhub%2Fhome%3Fx%3D1")).await;
    assert_eq!(location_header(&resp), "/hub/home?x=1");
}

#[tokio::test]
async fn spawn_pages_do_not_tell_who_exists() {
    let hub = sqlite_hub(|c| c.authenticator.allow_all = true).await;
    let bob = browser();
    login(&hub, &bob, "bob").await;
    let alice = browser();
    login(&hub, &alice, "alice").await;
    for path in ["/spawn/", "/spawn-pending/"] {
        let existing = fetch(&alice, hub.hub(&format!("{path}bob"))).await;
        let missing = fetch(&alice, hub.hub(&format!("{path}nosuchuser"))).await;
        assert_eq!(existing.status(), missing.status(), "{path}");
        let (a, b) = (
            existing.text().await.expect("body"),
            missing.text().await.expect("body"),
        );
        assert_eq!(
            a.replace("bob", "X"),
            b.replace("nosuchuser", "X"),
            "{path}: same page for an existing and a missing user"
        );
    }
}

#[tokio::test]
async fn xsrf_tokens_work_only_in_their_own_session() {
    let hub = sqlite_hub(|c| c.authenticator.allow_all = true).await;
    // Mallory gets a token and its cookie from her own browser…
    let token = {
        let anon = browser();
        let page = anon.get(hub.hub("/login")).send().await.expect("login");
        let cookie = page
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("_xsrf="))
            .map(|c| {
                c["_xsrf=".len()..]
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .expect("an _xsrf cookie");
        let html = page.text().await.expect("html");
        assert_eq!(
            xsrf_of(&html),
            cookie,
            "double-submit: page and cookie agree"
        );
        cookie
    };
    // …and plants it as alice's `_xsrf` cookie (a cookie a same-origin server could set).
    let (alice, jar) = common::pagekit::browser_with_jar(false);
    login(&hub, &alice, "alice").await;
    let hub_url = url::Url::parse(&hub.hub("/")).expect("url");
    jar.add_cookie_str(&format!("_xsrf={token}; Path=/hub/"), &hub_url);
    let resp = alice
        .post(hub.api("/users/alice/tokens"))
        .header("x-xsrftoken", &token)
        .json(&serde_json::json!({"note": "planted"}))
        .send()
        .await
        .expect("post");
    assert_eq!(
        resp.status(),
        403,
        "a token of another session must not authorise alice's API call"
    );
    assert!(resp.text().await.expect("body").contains("_xsrf"));
    let resp = post_form(&alice, hub.hub("/spawn"), &[("_xsrf", token.as_str())]).await;
    assert_eq!(resp.status(), 403, "nor a form post");
    assert!(resp.text().await.expect("body").contains("_xsrf"));
    // Her own token works.
    let page = fetch(&alice, hub.hub("/login?next=%2Fhub%2Fhome")).await;
    assert_eq!(page.status(), 302, "alice is still signed in");
}

#[tokio::test]
async fn csp_reports_go_under_base_url_and_are_answered() {
    let hub = sqlite_hub(|c| {
        c.authenticator.allow_all = true;
        c.hub.base_url = nbhub::config::BaseUrl::parse("/prefix/").expect("base url");
    })
    .await;
    let b = browser();
    for url in [
        format!("{}/prefix/hub/login", hub.url),
        format!("{}/prefix/hub/api/", hub.url),
    ] {
        let resp = b.get(&url).send().await.expect("get");
        let csp = resp
            .headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(
            csp.contains("report-uri /prefix/hub/security/csp-report"),
            "{url}: {csp}"
        );
    }
    let resp = b
        .post(format!("{}/prefix/hub/security/csp-report", hub.url))
        .header("content-type", "application/csp-report")
        .body(r#"{"csp-report":{"blocked-uri":"inline"}}"#)
        .send()
        .await
        .expect("post report");
    assert_eq!(resp.status(), 204);
}

/// The admin page's maintenance forms (issue 22, point 6) are form POSTs like any other: they
/// need this session's XSRF token and an admin, and validate as the REST API does.
#[tokio::test]
async fn the_maintenance_forms_need_the_xsrf_token_and_an_admin() {
    let hub = sqlite_hub(|c| {
        common::dummy_password(c, "pw");
        c.authenticator.admin_users = vec!["ada".into()];
    })
    .await;
    let notice = || hub.state.supervisor.maintenance.notice("default");
    let url = hub.url("/hub/admin/systems/default/maintenance");
    let (ada, bob) = (browser(), browser());
    login(&hub, &ada, "ada").await;
    login(&hub, &bob, "bob").await;
    let ada_xsrf = xsrf_of(
        &fetch(&ada, hub.url("/hub/admin"))
            .await
            .text()
            .await
            .expect("html"),
    );
    // Bob's pages have no form: his token is the one the page's script uses (jhdata).
    let home = fetch(&bob, hub.url("/hub/home"))
        .await
        .text()
        .await
        .expect("html");
    let marker = "\"xsrf_token\":\"";
    let at = home.find(marker).expect("jhdata.xsrf_token") + marker.len();
    let bob_xsrf = home[at..].split('"').next().expect("token").to_owned();
    let set = |xsrf: &str, message: &str| {
        vec![
            ("action".to_owned(), "set".to_owned()),
            ("message".to_owned(), message.to_owned()),
            ("until".to_owned(), String::new()),
            ("_xsrf".to_owned(), xsrf.to_owned()),
        ]
    };
    for (who, form, status) in [
        (&ada, set("", "m"), 403),
        (&ada, set(&bob_xsrf, "m"), 403),
        (&bob, set(&bob_xsrf, "m"), 403),
        (&ada, set(&ada_xsrf, " "), 400),
    ] {
        let resp = post_form(who, &url, &form).await;
        assert_eq!(resp.status().as_u16(), status, "{form:?}");
        assert_eq!(notice(), None, "{form:?} changed nothing");
    }
    let refused = post_form(&bob, &url, &set(&bob_xsrf, "m")).await;
    let page = refused.text().await.expect("html");
    assert!(
        page.contains("needs the admin:servers scope"),
        "bob's own token passes the XSRF check: {page}"
    );
    let resp = post_form(
        &ada,
        hub.url("/hub/admin/systems/nosuch/maintenance"),
        &set(&ada_xsrf, "m"),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 404);
    let resp = post_form(&ada, &url, &set(&ada_xsrf, "Disk swap")).await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(location_header(&resp), "/hub/admin#systems");
    assert_eq!(notice().map(|n| n.message), Some("Disk swap".to_owned()));
    let admin_page = fetch(&ada, hub.url("/hub/admin"))
        .await
        .text()
        .await
        .expect("html");
    assert!(admin_page.contains("Disk swap"), "{admin_page}");
    let clear = [("action", "clear"), ("_xsrf", ada_xsrf.as_str())];
    let resp = post_form(
        &bob,
        &url,
        &[("action", "clear"), ("_xsrf", bob_xsrf.as_str())],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 403, "a user may not clear it");
    let resp = post_form(&ada, &url, &clear).await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(notice(), None);
}

/// Relaunch takes only a session of the server it names: another user's session (or another
/// server's, or none) is a 404 that starts nothing, and a session that is not a number a 400.
#[tokio::test]
async fn a_relaunch_takes_only_a_session_of_its_own_server() {
    use nbhub::db::{server_sessions, servers, users};
    let hub = sqlite_hub(|c| c.authenticator.allow_all = true).await;
    let alice = browser();
    login(&hub, &alice, "alice").await;
    let bob = browser();
    login(&hub, &bob, "bob").await;
    let db = &hub.state.db;
    let bob_user = users::get(db, "bob").await.expect("db").expect("bob");
    let bobs = servers::ensure(db, bob_user.id, "").await.expect("row");
    let session = server_sessions::begin(db, bobs.id, &serde_json::json!({}), "", 1, 10)
        .await
        .expect("session");
    let alice_user = users::get(db, "alice").await.expect("db").expect("alice");
    // A past session of her own, so that her home page has a Relaunch form (and its token).
    let hers = servers::ensure(db, alice_user.id, "").await.expect("row");
    server_sessions::begin(db, hers.id, &serde_json::json!({}), "", 1, 10)
        .await
        .expect("session");
    server_sessions::end(db, hers.id, 2, "stopped", "")
        .await
        .expect("end");
    let home = fetch(&alice, hub.hub("/home"))
        .await
        .text()
        .await
        .expect("home");
    let xsrf = xsrf_of(&home);
    for (session, status) in [
        (session.to_string(), 404),
        ("999999".to_string(), 404),
        ("x".to_string(), 400),
    ] {
        let r = post_form(
            &alice,
            hub.hub("/relaunch/alice"),
            &[("_xsrf", xsrf.as_str()), ("session", session.as_str())],
        )
        .await;
        assert_eq!(r.status().as_u16(), status, "session {session}");
    }
    let slot = hub.state.supervisor.existing_slot(alice_user.id, "");
    assert!(slot.is_none(), "nothing started");
}
