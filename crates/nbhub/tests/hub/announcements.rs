//! Announcements (issue 25, point 5 and acceptance 4), on the real binary behind its managed
//! proxy: set through the REST API, shown (escaped) on the hub's pages, served at
//! `/services/announcement/latest` through the proxy without a sign-in in
//! jupyterhub-announcement's shape (its timestamp read back by Python's `fromisoformat`, as
//! that service reads its own), gone everywhere once ended; the admin page's form; a
//! non-admin cannot set one.

use std::time::Duration;

use crate::common;

use common::hubproc::{admin, launch, HubProc, Options, ADMIN};
use common::pagekit::{signed_in, xsrf_of};
use common::{client, eventually, fetch, post_form, request, user_token};
use reqwest::Method;
use serde_json::{json, Value};

/// A hub admin (no Unix account needed: the local spawner is not used).
const BOSS: &str = "anboss";
/// A user who is not an admin.
const USER: &str = "anuser";

/// The e2e-admin service may also set announcements.
fn options() -> Options {
    Options {
        services: "[[roles]]\nname = \"announcer\"\nscopes = [\"admin:announcements\"]\nservices = [\"e2e-admin\"]\n".into(),
        authenticator: format!("admin_users = [\"{BOSS}\"]"),
        ..Default::default()
    }
}

/// `GET /services/announcement/latest` through the proxy, with no credentials: the status,
/// the CORS header and the body.
async fn latest(hub: &HubProc) -> (u16, Option<String>, Value) {
    let resp = fetch(&client(), hub.public_url("/services/announcement/latest")).await;
    let status = resp.status().as_u16();
    let cors = resp
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    let body = resp.json().await.expect("json");
    (status, cors, body)
}

async fn post(hub: &HubProc, token: &str, body: Value) -> (u16, Value) {
    let (s, text) = request(hub, Method::POST, "/announcements", token, Some(body)).await;
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// What Python makes of the `latest` answer: the keys, and the timestamp read back with
/// `datetime.fromisoformat` (how jupyterhub-announcement reads the timestamps it stores).
fn python_reads(hub: &HubProc, body: &Value) -> String {
    let script = "import datetime, json, sys\n\
                  d = json.load(sys.stdin)\n\
                  t = datetime.datetime.fromisoformat(d['timestamp'])\n\
                  print(sorted(d), t.tzinfo is not None)";
    use std::io::Write;
    let mut child = std::process::Command::new(hub.venv.join("bin/python"))
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(body.to_string().as_bytes()).expect("write");
    drop(stdin);
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Acceptance 4: set through the API → on the home page, escaped, and at
/// `/services/announcement/latest` as jupyterhub-announcement answers; one ending a few
/// seconds ahead is gone from both after it; a user who is not an admin gets 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_show_everywhere_escaped_and_go_when_they_end() {
    let Some(hub) = launch(options()).await else {
        return;
    };
    // The admin (`admin_users`) exists from the start.
    let (s, body) = admin(&hub, Method::POST, &format!("/users/{USER}"), None).await;
    assert_eq!(s, 201, "create {USER}: {body}");
    let (s, cors, body) = latest(&hub).await;
    assert_eq!((s, body), (200, json!({"announcement": ""})), "none yet");
    assert_eq!(cors.as_deref(), Some("*"));

    // Who may: not a user; the admin service (its role) and bad fields get a 400 naming them.
    let user = user_token(&hub, USER).await;
    let (s, body) = post(&hub, &user, json!({"message": "mine"})).await;
    assert_eq!(s, 403, "{body}");
    for (bad, field) in [
        (json!({"message": "x", "level": "loud"}), "level"),
        (json!({"message": "  "}), "message"),
        (
            json!({"message": "x", "until": "2000-01-01T00:00:00Z"}),
            "until",
        ),
        (json!({"message": "x", "system": "nosuch"}), "system"),
        (json!({"message": "x", "colour": "red"}), "colour"),
    ] {
        let (s, body) = post(&hub, ADMIN, bad.clone()).await;
        assert_eq!(s, 400, "{bad}: {body}");
        assert!(
            body["message"].as_str().unwrap_or("").starts_with(field),
            "{bad}: {body}"
        );
    }

    let text = "<script>alert(1)</script> Downtime & \"upgrade\"";
    let escaped = "&lt;script&gt;alert(1)&lt;/script&gt; Downtime &amp; &quot;upgrade&quot;";
    let (s, made) = post(&hub, ADMIN, json!({"message": text, "level": "warning"})).await;
    assert_eq!(s, 201, "{made}");
    assert_eq!(
        (
            &made["message"],
            &made["level"],
            &made["set_by"],
            &made["until"]
        ),
        (
            &json!(text),
            &json!("warning"),
            &json!("e2e-admin"),
            &Value::Null
        )
    );

    // Every page: the home page of a user, and the login page of no one.
    let b = signed_in(&hub, USER).await;
    for (who, page) in [(Some(&b), "/hub/home"), (None, "/hub/login")] {
        let c = client();
        let html = fetch(who.unwrap_or(&c), hub.public_url(page))
            .await
            .text()
            .await
            .expect("html");
        assert!(
            html.contains("alert alert-warning hub-announcement"),
            "{page}: {html}"
        );
        assert!(
            // The templates escape `/` too.
            html.contains("&lt;script&gt;alert(1)&lt;")
                && html.contains("Downtime &amp; &quot;upgrade&quot;"),
            "{page}: the text, escaped: {html}"
        );
        assert!(
            !html.contains("<script>alert(1)"),
            "{page}: no markup from the text"
        );
    }

    // JupyterLab's extensions: the shape of jupyterhub-announcement's `latest`, the text
    // escaped (they put it into the page as HTML).
    let (s, cors, body) = latest(&hub).await;
    assert_eq!((s, cors.as_deref()), (200, Some("*")), "{body}");
    assert_eq!(body["announcement"], json!(escaped));
    assert_eq!(body["user"], json!("e2e-admin"));
    assert_eq!(body["timestamp"], made["created"]);
    assert_eq!(
        python_reads(&hub, &body),
        "['announcement', 'level', 'system', 'timestamp', 'until', 'user'] True"
    );

    // One ending in a few seconds: the newest, until it ends; then gone from everything.
    let ends = time::OffsetDateTime::now_utc() + Duration::from_secs(4);
    let ends = ends
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time");
    let (s, short) = post(
        &hub,
        ADMIN,
        json!({"message": "Back in a moment", "level": "danger", "until": ends}),
    )
    .await;
    assert_eq!(s, 201, "{short}");
    assert_eq!(
        latest(&hub).await.2["announcement"],
        json!("Back in a moment")
    );
    eventually(30, "the short announcement to end", || async {
        let (_, _, body) = latest(&hub).await;
        (body["announcement"] == json!(escaped)).then_some(())
    })
    .await;
    let (s, listed) = request(&hub, Method::GET, "/announcements", &user, None).await;
    assert_eq!(s, 200, "{listed}");
    let listed: Value = serde_json::from_str(&listed).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let home = fetch(&b, hub.public_url("/hub/home"))
        .await
        .text()
        .await
        .expect("html");
    assert!(!home.contains("Back in a moment"), "{home}");

    // Deleted: nothing left anywhere.
    let id = made["id"].as_i64().expect("id");
    let (s, body) = request(
        &hub,
        Method::DELETE,
        &format!("/announcements/{id}"),
        &user,
        None,
    )
    .await;
    assert_eq!(s, 403, "a user may not delete it: {body}");
    let (s, body) = request(
        &hub,
        Method::DELETE,
        &format!("/announcements/{id}"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(s, 204, "{body}");
    let (s, _) = request(
        &hub,
        Method::DELETE,
        &format!("/announcements/{id}"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(latest(&hub).await.2, json!({"announcement": ""}));
}

/// The admin page's Announcements tab: an admin (the admin role has `admin:announcements`)
/// sets one with the form, every page shows it; a user who is not an admin is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_sets_and_deletes_announcements() {
    let Some(hub) = launch(options()).await else {
        return;
    };
    // The admin (`admin_users`) exists from the start.
    let (s, body) = admin(&hub, Method::POST, &format!("/users/{USER}"), None).await;
    assert_eq!(s, 201, "create {USER}: {body}");
    let form_url = hub.public_url("/hub/admin/announcements");
    let boss = signed_in(&hub, BOSS).await;
    let admin_page = fetch(&boss, hub.public_url("/hub/admin")).await;
    assert_eq!(admin_page.status(), 200);
    let xsrf = xsrf_of(&admin_page.text().await.expect("html"));
    let resp = post_form(
        &boss,
        &form_url,
        &[
            ("_xsrf", xsrf.as_str()),
            ("action", "set"),
            ("message", "Scratch is full"),
            ("level", "danger"),
            ("system", ""),
            ("until", ""),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303, "{:?}", resp.text().await);
    let admin_html = fetch(&boss, hub.public_url("/hub/admin"))
        .await
        .text()
        .await
        .expect("html");
    assert!(admin_html.contains("announcement-card"), "{admin_html}");
    let user = signed_in(&hub, USER).await;
    let home = fetch(&user, hub.public_url("/hub/home"))
        .await
        .text()
        .await
        .expect("html");
    assert!(
        home.contains("alert alert-danger hub-announcement") && home.contains("Scratch is full"),
        "{home}"
    );

    // Not an admin: refused, and nothing set.
    // The home page has no form: its token is in `jhdata`, for its scripts.
    let home = fetch(&user, hub.public_url("/hub/home"))
        .await
        .text()
        .await
        .expect("html");
    let marker = "\"xsrf_token\":\"";
    let at = home.find(marker).expect("jhdata.xsrf_token") + marker.len();
    let xsrf_user = home[at..].split('"').next().expect("token").to_owned();
    let resp = post_form(
        &user,
        &form_url,
        &[
            ("_xsrf", xsrf_user.as_str()),
            ("action", "set"),
            ("message", "mine"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 403);
    let page = resp.text().await.expect("html");
    assert!(
        page.contains("needs the admin:announcements scope"),
        "{page}"
    );
    // No XSRF token: refused.
    let resp = post_form(
        &boss,
        &form_url,
        &[("action", "set"), ("message", "forged")],
    )
    .await;
    assert_eq!(resp.status(), 403);
    let page = resp.text().await.expect("html");
    assert!(page.contains("_xsrf"), "{page}");
    let (_, listed) = admin(&hub, Method::GET, "/announcements", None).await;
    let listed: Value = serde_json::from_str(&listed).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let id = listed[0]["id"].as_i64().expect("id").to_string();

    let resp = post_form(
        &boss,
        &form_url,
        &[
            ("_xsrf", xsrf.as_str()),
            ("action", "delete"),
            ("id", id.as_str()),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let home = fetch(&user, hub.public_url("/hub/home"))
        .await
        .text()
        .await
        .expect("html");
    assert!(!home.contains("Scratch is full"), "{home}");
}
