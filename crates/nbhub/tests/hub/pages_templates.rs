//! Templates as a site uses them (a folder of JupyterHub-style overrides), static files, and
//! the two rules every page keeps: no form POST without `_xsrf`, nothing user-supplied
//! rendered unescaped.

use crate::common;

use common::{fetch, post_form};

use common::pagekit::{browser, login, xsrf_of};

use common::sqlite_hub;

async fn body(b: &reqwest::Client, url: &str) -> (u16, String) {
    let r = b.get(url).send().await.expect("get");
    (r.status().as_u16(), r.text().await.expect("body"))
}

#[tokio::test]
async fn a_site_template_folder_changes_every_page() {
    let site = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        site.path().join("page.html"),
        r#"{% extends "templates/page.html" %}
{% block logo %}<img id="site-logo" src="{{ static_url('images/logo.svg') }}" alt="Example University">{% endblock %}
{% block announcement %}<div id="site-announcement">{{ announcement }} (site)</div>{% endblock %}
{% block footer %}<footer id="site-footer">Example University Research Computing</footer>{% endblock %}
"#,
    )
    .expect("page.html");
    std::fs::write(
        site.path().join("login.html"),
        r#"{% extends "templates/login.html" %}
{% block login_widget %}<span id="site-login-widget">help: hpc@example.org</span>{% endblock %}
"#,
    )
    .expect("login.html");
    let dir = site.path().to_path_buf();
    let hub = sqlite_hub(move |c| {
        c.authenticator.allow_all = true;
        c.hub.template_paths = vec![dir];
        c.hub
            .template_vars
            .insert("announcement".into(), "Maintenance on Friday".into());
    })
    .await;
    let b = browser();
    let (status, login_page) = body(&b, &hub.hub("/login")).await;
    assert_eq!(status, 200);
    for marker in [
        "site-logo",
        "site-footer",
        "Maintenance on Friday (site)",
        "site-login-widget",
        "id=\"login-main\"",
    ] {
        assert!(login_page.contains(marker), "login page lacks {marker}");
    }
    login(&hub, &b, "erin").await;
    for page in ["/home", "/token", "/spawn-pending/erin", "/error/404"] {
        let (_, html) = body(&b, &hub.hub(page)).await;
        for marker in ["site-logo", "site-footer", "Maintenance on Friday (site)"] {
            assert!(html.contains(marker), "{page} lacks {marker}: {html}");
        }
        assert!(
            !html.contains("site-login-widget"),
            "{page}: only login.html overrides the widget"
        );
        assert!(
            html.contains("id=\"logout\""),
            "{page} keeps the built-in widget"
        );
    }
}

#[tokio::test]
async fn static_files_have_hashed_urls_and_long_caching() {
    let hub = sqlite_hub(|_| {}).await;
    let b = browser();
    let (_, html) = body(&b, &hub.hub("/login")).await;
    let marker = "/hub/static/css/nbhub.css?v=";
    let start = html.find(marker).expect("hashed css url");
    let url: String = html[start..].split('"').next().expect("url").to_string();
    let r = fetch(&b, format!("{}{url}", hub.url)).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/css"));
    assert!(r.headers()["cache-control"]
        .to_str()
        .expect("ascii")
        .contains("max-age=31536000"));
    let unversioned = fetch(&b, hub.hub("/static/css/nbhub.css")).await;
    assert_eq!(unversioned.headers()["cache-control"], "no-cache");
    for path in [
        "/static/components/bootstrap/dist/css/bootstrap.min.css",
        "/static/components/bootstrap-icons/font/fonts/bootstrap-icons.woff2",
        "/static/js/nbhub.js",
        "/logo",
    ] {
        let r = b.get(hub.hub(path)).send().await.expect("static");
        assert_eq!(
            r.status(),
            200,
            "{path}: {}",
            r.text().await.unwrap_or_default()
        );
    }
    let r = fetch(&b, hub.hub("/static/../Cargo.toml")).await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn every_form_post_needs_xsrf() {
    let hub = sqlite_hub(|c| {
        c.authenticator.allow_all = true;
        c.authenticator.admin_users = vec!["root".into()];
    })
    .await;
    let b = browser();
    login(&hub, &b, "root").await;
    for path in [
        "/login",
        "/spawn",
        "/spawn/root",
        "/spawn/root/named",
        "/relaunch/root",
        "/relaunch/root/named",
        "/authorize/root",
        "/signup",
    ] {
        let r = post_form(
            &b,
            hub.hub(path),
            &[("username", "root"), ("password", "x")],
        )
        .await;
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        // /signup is off here (404); everything else must be refused for the missing token.
        assert!(
            status == 403 || (path == "/signup" && status == 404),
            "POST {path} without _xsrf: {status} {text}"
        );
    }
}

#[tokio::test]
async fn user_supplied_text_is_escaped() {
    let hub = sqlite_hub(|c| {
        c.authenticator.allow_all = true;
        c.hub.allow_named_servers = true;
    })
    .await;
    let b = browser();
    login(&hub, &b, "frank").await;
    let evil = "<script>alert(1)</script>";
    let q: String = url::form_urlencoded::byte_serialize(evil.as_bytes()).collect();
    let pages = [
        format!("/error/404?url={q}"),
        format!("/login?next={q}"),
        format!("/spawn-pending/frank/{}", q.replace('+', "%20")),
        format!("/spawn/{}", q.replace('+', "%20")),
        format!("/user/{}/", q.replace('+', "%20")),
    ];
    for page in &pages {
        let (_, html) = body(&b, &hub.hub(page)).await;
        assert!(!html.contains(evil), "{page} renders {evil} unescaped");
    }
    // A failed login keeps the typed name, escaped.
    let page = browser();
    let (_, html) = body(&page, &hub.hub("/login")).await;
    let xsrf = xsrf_of(&html);
    let r = post_form(
        &page,
        hub.hub("/login"),
        &[("username", evil), ("password", "x"), ("_xsrf", &xsrf)],
    )
    .await;
    let html = r.text().await.expect("body");
    assert!(!html.contains(evil), "the login error page");
    assert!(html.contains("&lt;script&gt;"), "the name is shown escaped");
}
