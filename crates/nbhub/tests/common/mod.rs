//! The one harness of the hub's integration tests: the [`Hub`] trait both hub fixtures
//! implement (the in-process [`TestHub`] on port 0 and the real binary,
//! [`hubproc::HubProc`]), the API client and sign-in helpers that work on either, and the
//! database backends every database test runs against.
#![allow(dead_code)]

pub mod browser;
pub mod hubproc;
pub mod kernel;
pub mod pagekit;
pub mod prometheus;

use std::time::Duration;

use nbhub::config::{Config, HttpUrl, RoleConfig, ServiceConfig};
use nbhub::state::AppState;
use tokio::sync::oneshot;

/// The admin service token every test hub has.
pub const ADMIN_TOKEN: &str = "admin-service-token-0123456789";

/// A server for spawn tests that measure the hub, not JupyterLab: it listens where
/// `JUPYTERHUB_SERVICE_URL` says after a second (so that a spawn queue can form) and answers
/// every GET, the hub's readiness probe included, with 200; `…/env` answers with its
/// environment. Run by the venv's python as `[spawner] cmd`'s first part.
pub const TINY_SERVER: &str = r#"
import http.server, json, os, time, urllib.parse
url = urllib.parse.urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
time.sleep(1)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        answer = dict(os.environ) if self.path.endswith("/env") else {"version": "tiny", "path": self.path}
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((url.hostname, url.port), Handler).serve_forever()
"#;

/// A hub running in this process on a free port; stopped on drop.
pub struct TestHub {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub state: AppState,
    pub dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestHub {
    pub fn api(&self, path: &str) -> String {
        format!("{}/hub/api{path}", self.url)
    }
    pub fn hub(&self, path: &str) -> String {
        format!("{}/hub{path}", self.url)
    }
}

/// What every hub fixture offers, whether the hub runs in this process ([`TestHub`]) or as the
/// real binary behind its proxy ([`hubproc::HubProc`]): where a browser reaches it, the password
/// its login form takes and an admin token. The API client ([`call`], [`request`]) and the
/// sign-in helpers ([`pagekit::login`], [`pagekit::signed_in`]) take any of them.
pub trait Hub {
    /// Where a browser reaches the hub, `http://127.0.0.1:PORT` (no slash at the end).
    fn base_url(&self) -> String;
    /// The password the login form takes (any user).
    fn password(&self) -> String;
    /// A token of the fixture's admin service.
    fn admin_token(&self) -> &str;
    /// `path` (starting with `/`) at the hub.
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }
    /// `/hub/api{path}` at the hub.
    fn api_url(&self, path: &str) -> String {
        self.url(&format!("/hub/api{path}"))
    }
}

impl Hub for TestHub {
    fn base_url(&self) -> String {
        self.url.clone()
    }
    fn password(&self) -> String {
        // The dummy authenticator without a password takes any.
        match self.state.config.authenticator.password.as_str() {
            "" => "x".into(),
            p => p.into(),
        }
    }
    fn admin_token(&self) -> &str {
        ADMIN_TOKEN
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A config with an admin service (`ADMIN_TOKEN`), data in a fresh temp dir.
pub fn test_config(dir: &std::path::Path, db_url: &str) -> Config {
    let mut c = Config::default();
    c.hub.data_dir = dir.to_path_buf();
    c.hub.db_url = db_url.to_string();
    c.hub.bind_url = HttpUrl::parse("http://127.0.0.1:1").expect("url");
    c.services.push(ServiceConfig {
        name: "admin-svc".into(),
        api_token: ADMIN_TOKEN.into(),
        // Only admins grant admin or change admins; the tests' all-purpose caller is one.
        admin: true,
        ..Default::default()
    });
    c.roles.push(RoleConfig {
        name: "svc-admin".into(),
        scopes: vec![
            "admin:users".into(),
            "admin:groups".into(),
            "tokens".into(),
            "admin:servers".into(),
            "list:services".into(),
            "read:services".into(),
            "read:hub".into(),
        ],
        services: vec!["admin-svc".into()],
        ..Default::default()
    });
    c
}

pub async fn start_hub(config: Config, dir: tempfile::TempDir) -> TestHub {
    start_hub_keyed(config, dir, None).await
}

/// [`start_hub`] with auth_state's key (`JUPYTERHUB_CRYPT_KEY`'s format).
pub async fn start_hub_keyed(
    config: Config,
    dir: tempfile::TempDir,
    crypt_key: Option<&str>,
) -> TestHub {
    // Hub logs go to the test's captured output, shown when a test fails.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("nbhub=debug")
        .try_init();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let state = nbhub::init_with_crypt_key(config, crypt_key)
        .await
        .expect("hub init");
    let (tx, rx) = oneshot::channel::<()>();
    let s = state.clone();
    tokio::spawn(async move {
        let _ = nbhub::run(s, listener, async move {
            let _ = rx.await;
        })
        .await;
    });
    TestHub {
        url,
        state,
        dir,
        shutdown: Some(tx),
    }
}

/// The dummy authenticator with `password` for everyone (no allow list).
pub fn dummy_password(c: &mut Config, password: &str) {
    c.authenticator.kind = nbhub::config::AuthenticatorKind::Dummy;
    c.authenticator.password = password.into();
    c.authenticator.allow_all = true;
}

/// A hub on SQLite in a temp dir, with `adjust` applied to its config.
pub async fn sqlite_hub(adjust: impl FnOnce(&mut Config)) -> TestHub {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path(), "");
    adjust(&mut config);
    start_hub(config, dir).await
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The URL of a fresh, empty PostgreSQL database, or None (loudly) when PostgreSQL is not
/// available. Under CI=true a missing PostgreSQL fails the test.
pub async fn fresh_postgres_db() -> Option<String> {
    let Ok(server) = std::env::var("NBHUB_TEST_DATABASE_URL") else {
        let msg = "PostgreSQL is not available: NBHUB_TEST_DATABASE_URL is not set.\n\
                   Run the tests through scripts/test.sh (it installs and starts PostgreSQL).";
        if ci() {
            panic!("{msg}");
        }
        eprintln!("\n*** SKIPPED the PostgreSQL half of this test ***\n{msg}\n");
        return None;
    };
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&server)
        .await
        .expect("connect to test PostgreSQL");
    let name = format!("nbhub_t_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let mut url = url::Url::parse(&server).expect("NBHUB_TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    Some(url.to_string())
}

/// Every backend a database test must pass on: SQLite always, PostgreSQL when available.
pub async fn database_urls(dir: &std::path::Path) -> Vec<(&'static str, String)> {
    let mut urls = vec![(
        "sqlite",
        format!("sqlite://{}?mode=rwc", dir.join("t.sqlite").display()),
    )];
    if let Some(pg) = fresh_postgres_db().await {
        urls.push(("postgres", pg));
    }
    urls
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// An API call with a token: the status and the body as text. No redirect is followed.
pub async fn request(
    hub: &impl Hub,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, String) {
    let mut req = client()
        .request(method, hub.api_url(path))
        .header("Authorization", format!("token {token}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// An API call with a token; the status and the body (JSON, or the text as a JSON string).
pub async fn call(
    hub: &impl Hub,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let (status, text) = request(hub, method, path, token, body).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// GET `url` in `client` (a browser or an API client); fails the test when no answer comes.
pub async fn fetch(client: &reqwest::Client, url: impl reqwest::IntoUrl) -> reqwest::Response {
    client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET: {e}"))
}

/// POSTs `form` (URL-encoded) to `url` in `client`; fails the test when no answer comes.
pub async fn post_form<T: serde::Serialize + ?Sized>(
    client: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    form: &T,
) -> reqwest::Response {
    client
        .post(url)
        .form(form)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST: {e}"))
}

/// A GET of `url` in `client` with `token` in the `Authorization` header.
fn get_with_token(c: &reqwest::Client, url: String, token: &str) -> reqwest::RequestBuilder {
    c.get(url).header("Authorization", format!("token {token}"))
}

/// GET `url` in `client` with `token`; fails the test when no answer comes.
pub async fn get_as(client: &reqwest::Client, url: String, token: &str) -> reqwest::Response {
    let sent = get_with_token(client, url, token).send().await;
    sent.unwrap_or_else(|e| panic!("GET: {e}"))
}

/// The status of a GET of `path` (any path at the hub) with `token`; 0 when the hub does not
/// answer at all.
pub async fn status_of(hub: &impl Hub, path: &str, token: &str) -> u16 {
    let sent = get_with_token(&client(), hub.url(path), token).send().await;
    sent.map_or(0, |r| r.status().as_u16())
}

/// A new API token of `user` with `body`'s request (scopes, note, expiry), made with the
/// fixture's admin token.
pub async fn new_token(hub: &impl Hub, user: &str, body: serde_json::Value) -> String {
    let path = format!("/users/{user}/tokens");
    let (status, t) = call(
        hub,
        reqwest::Method::POST,
        &path,
        hub.admin_token(),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{t}");
    t["token"]
        .as_str()
        .expect("token in POST response")
        .to_string()
}

/// A new API token of `user` with the user's own scopes.
pub async fn user_token(hub: &impl Hub, user: &str) -> String {
    new_token(hub, user, serde_json::json!({})).await
}

/// The value of a login cookie for `name` that a browser would hold, signed with the in-process
/// hub's secret.
pub async fn login_cookie_value(hub: &TestHub, name: &str) -> String {
    use nbhub::auth::session;
    let user = nbhub::db::users::get(&hub.state.db, name)
        .await
        .expect("db")
        .expect("user");
    let now = nbhub::db::now_micros() / 1_000_000;
    session::sign(
        &hub.state.cookie_secret,
        session::LOGIN_COOKIE,
        &user.cookie_id,
        now,
    )
}

/// One row of a table-driven API check: a call (method, path, the caller's token, a body) and
/// the answer it must get (the status and, when [`Row::says`] names one, a part of the
/// message). Made with [`row`], run in order by [`check_rows`].
pub struct Row<'a> {
    method: reqwest::Method,
    path: String,
    token: &'a str,
    body: Option<serde_json::Value>,
    status: u16,
    message: Option<&'a str>,
    what: &'a str,
}

/// A row: `method path` called with `token` must answer `status`.
pub fn row(method: reqwest::Method, path: impl Into<String>, token: &str, status: u16) -> Row<'_> {
    Row {
        method,
        path: path.into(),
        token,
        body: None,
        status,
        message: None,
        what: "",
    }
}

impl<'a> Row<'a> {
    /// The JSON body sent.
    pub fn body(mut self, body: serde_json::Value) -> Self {
        self.body = Some(body);
        self
    }
    /// A part the answer's `message` must hold.
    pub fn says(mut self, part: &'a str) -> Self {
        self.message = Some(part);
        self
    }
    /// What the row checks, for the failure message.
    pub fn what(mut self, what: &'a str) -> Self {
        self.what = what;
        self
    }
}

/// Runs `rows` in order (each call after the one before); fails at the first wrong answer,
/// naming the row.
pub async fn check_rows(hub: &impl Hub, rows: Vec<Row<'_>>) {
    for r in rows {
        let name = format!(
            "{} {} {} {}",
            r.what,
            r.method,
            r.path,
            r.body.clone().unwrap_or_default()
        );
        let (status, answer) = call(hub, r.method, &r.path, r.token, r.body).await;
        assert_eq!(status, r.status, "{name}: {answer}");
        if let Some(part) = r.message {
            let message = answer["message"].as_str().unwrap_or("");
            assert!(
                message.contains(part),
                "{name}: {answer} should say {part:?}"
            );
        }
    }
}

/// Polls `check` until it returns Some, or fails after `secs` with `what`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let failure = || format!("timed out after {secs} s waiting for: {what}");
    wait_until(Duration::from_secs(secs), check, failure).await
}

/// Polls `check` until it returns Some, or fails after `timeout` with what `failure` says
/// then (e.g. a child's output so far).
pub async fn wait_until<T, F, Fut>(
    timeout: Duration,
    mut check: F,
    failure: impl FnOnce() -> String,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{}", failure());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
