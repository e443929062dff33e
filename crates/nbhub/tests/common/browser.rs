//! A real Chromium driven through chromedriver's W3C WebDriver protocol (a thin JSON client
//! over reqwest; the few commands the page tests need). Both come from Debian's `chromium` and
//! `chromium-driver` packages (scripts/test-env.sh installs them). Missing: the test fails
//! under CI=true and skips loudly otherwise.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use nbhub_testkit::{free_port, ChildGuard, TempDir};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const WAIT: Duration = Duration::from_secs(30);

pub struct Browser {
    http: reqwest::Client,
    session: String,
    _driver: ChildGuard,
    _profile: TempDir,
}

/// Where screenshots go: `target/screenshots/` (not committed).
pub fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("NBHUB_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().expect("test executable");
            // target/debug/deps/x → target/screenshots
            exe.ancestors()
                .nth(3)
                .map(|t| t.join("screenshots"))
                .unwrap_or_else(|| PathBuf::from("screenshots"))
        });
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile; None when they are
    /// not installed (and not CI).
    pub async fn start() -> Option<Browser> {
        if !std::path::Path::new(CHROMIUM).exists() || !std::path::Path::new(CHROMEDRIVER).exists()
        {
            nbhub_testkit::missing_part(
                "Chromium and chromedriver (/usr/bin/chromium, /usr/bin/chromedriver)",
                "scripts/test-env.sh (Debian packages chromium, chromium-driver)",
            );
            return None;
        }
        let port = free_port();
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={port}"));
        let driver = ChildGuard::spawn("chromedriver", cmd).expect("start chromedriver");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client");
        let base = format!("http://127.0.0.1:{port}");
        let status = format!("{base}/status");
        let up = || async {
            let r = http.get(&status).send().await.ok()?;
            r.status().is_success().then_some(())
        };
        let failure = || format!("chromedriver did not come up: {}", driver.output());
        super::wait_until(WAIT, up, failure).await;
        let profile = nbhub_testkit::temp_dir();
        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,900".into(),
        ];
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let resp: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session json");
        let id = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {resp}"))
            .to_string();
        Some(Browser {
            http,
            session: format!("{base}/session/{id}"),
            _driver: driver,
            _profile: profile,
        })
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp: Value = req
            .send()
            .await
            .expect("webdriver call")
            .json()
            .await
            .expect("webdriver json");
        resp["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.cmd(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    pub async fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs JavaScript in the page and returns its result.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    /// Waits until the JavaScript expression is truthy (polling), or panics with `what`.
    pub async fn wait_until(&self, expr: &str, what: &str) {
        self.wait_until_for(expr, what, WAIT).await;
    }

    pub async fn wait_until_for(&self, expr: &str, what: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let script = format!("try {{ return !!({expr}); }} catch (e) {{ return false; }}");
        loop {
            if self.eval(&script, json!([])).await == json!(true) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let url = self.url().await;
                let body = self
                    .eval(
                        "return document.body ? document.body.innerText : ''",
                        json!([]),
                    )
                    .await;
                panic!("timed out waiting for {what} ({expr}) at {url}; page text: {body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The element matching a CSS selector (waits for it to exist).
    pub async fn find(&self, css: &str) -> String {
        let q = serde_json::to_string(css).expect("selector");
        self.wait_until(&format!("document.querySelector({q})"), css)
            .await;
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        v.as_object()
            .and_then(|m| m.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    pub async fn click(&self, css: &str) {
        let el = self.find(css).await;
        let v = self.post(&format!("/element/{el}/click"), json!({})).await;
        assert!(v.is_null() || v.get("error").is_none(), "click {css}: {v}");
    }

    /// Replaces the value of an input with `text` (typed as keys, so events fire).
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.post(&format!("/element/{el}/clear"), json!({})).await;
        self.post(&format!("/element/{el}/value"), json!({ "text": text }))
            .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let q = serde_json::to_string(css).expect("selector");
        self.find(css).await;
        self.eval(
            &format!("return document.querySelector({q}).innerText"),
            json!([]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    pub async fn set_width(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await;
    }

    /// A PNG of the page at 1280 and 390 pixels wide, as `<name>-1280.png` and `<name>-390.png`.
    pub async fn screenshots(&self, name: &str) {
        let dir = screenshot_dir();
        for (w, h) in [(1280, 900), (390, 844)] {
            self.set_width(w, h).await;
            let b64 = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
            let png = base64::engine::general_purpose::STANDARD
                .decode(b64.as_str().unwrap_or_default())
                .expect("png");
            std::fs::write(dir.join(format!("{name}-{w}.png")), png).expect("write screenshot");
        }
        self.set_width(1280, 900).await;
    }

    /// Signs in through the hub's login form at `base` (the public origin).
    pub async fn sign_in(&self, base: &str, user: &str, password: &str) {
        self.goto(&format!("{base}/hub/login")).await;
        self.fill("#username_input", user).await;
        self.fill("#password_input", password).await;
        self.click("#login_submit").await;
        self.wait_until(
            "!location.pathname.endsWith('/hub/login')",
            "leaving the login page",
        )
        .await;
    }

    /// A Chrome DevTools Protocol command (chromedriver's `goog/cdp/execute`), e.g.
    /// `Browser.grantPermissions` or `Page.addScriptToEvaluateOnNewDocument`; its result.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        let v = self
            .post("/goog/cdp/execute", json!({"cmd": cmd, "params": params}))
            .await;
        assert!(v.get("error").is_none(), "CDP {cmd}: {v}");
        v
    }

    pub async fn quit(self) {
        let _ = self.cmd(reqwest::Method::DELETE, "", None).await;
    }
}
