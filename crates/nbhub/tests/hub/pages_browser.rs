//! The pages in a real Chromium: the whole journey against the real JupyterLab (login → home →
//! Start → progress → JupyterLab → home → Stop without a reload), the token page, the admin
//! page. Screenshots of each page at 1280 and 390 px go to target/screenshots/.

use crate::common;
use crate::common::browser;

use browser::Browser;
use common::hubproc::{admin, launch, require_proxy_binary, HubProc, Options, PASSWORD};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn journey_with_real_jupyterlab_and_admin_page() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let Some(hub) = launch(Options {
        extra_toml: "redirect_to_server = false".into(),
        // Only an admin makes admins: alice is one by the config.
        authenticator: "admin_users = [\"alice\"]".into(),
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let base = hub.public_url("");

    // The login page, then home.
    b.goto(&format!("{base}/hub/login")).await;
    b.find("#login_submit").await;
    b.screenshots("login").await;
    b.sign_in(&base, "alice", PASSWORD).await;
    b.wait_until("location.pathname === '/hub/home'", "the home page")
        .await;
    b.find("#start").await;
    b.screenshots("home-stopped").await;

    // Start: the progress page follows the event stream, then JupyterLab loads.
    b.click("#start").await;
    b.wait_until(
        "location.pathname.includes('/spawn-pending/') || location.pathname.startsWith('/user/alice/')",
        "the progress page",
    )
    .await;
    if b.url().await.contains("/spawn-pending/") {
        b.wait_until(
            "document.querySelectorAll('#progress-log li').length > 0 || location.pathname.startsWith('/user/')",
            "progress events",
        )
        .await;
        b.screenshots("spawn_pending").await;
    }
    b.wait_until_for(
        "location.pathname.startsWith('/user/alice/') && document.querySelector('#jp-main-dock-panel')",
        "JupyterLab's main area",
        std::time::Duration::from_secs(90),
    )
    .await;

    // Back home: Stop updates the page without a reload.
    b.goto(&format!("{base}/hub/home")).await;
    b.wait_until(
        "document.querySelector('#default-status').textContent.trim() === 'Running'",
        "the server shown running",
    )
    .await;
    b.screenshots("home-running").await;
    b.eval("window.__no_reload = 1;", json!([])).await;
    b.click("#stop").await;
    b.wait_until(
        "document.querySelector('#default-status').textContent.trim() === 'Stopped' && window.__no_reload === 1",
        "the server shown stopped without a reload",
    )
    .await;
    assert!(
        b.eval(
            "return document.querySelector('#stop').classList.contains('d-none')",
            json!([])
        )
        .await
            == json!(true),
        "the stop button is gone"
    );
    let (status, body) = admin(&hub, Method::GET, "/users/alice", None).await;
    assert_eq!(status, 200);
    let model: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert!(
        model["servers"].get("").is_none() || model["servers"][""]["ready"] == json!(false),
        "{model}"
    );

    // Admin: add a user, start and stop their server.
    b.goto(&format!("{base}/hub/admin")).await;
    b.fill("#add-users-names", "carol").await;
    b.click("#add-users-btn").await;
    b.wait_until(
        "[...document.querySelectorAll('tr.user-row')].some(r => r.dataset.user === 'carol')",
        "carol in the users table",
    )
    .await;
    b.screenshots("admin").await;
    let carol_row = "tr.user-row[data-user='carol']";
    b.click(&format!("{carol_row} .start-server")).await;
    b.wait_until_for(
        &format!(
            "!document.querySelector(\"{carol_row} .open-server\").classList.contains('d-none')"
        ),
        "carol's server running (Open shown)",
        std::time::Duration::from_secs(90),
    )
    .await;
    let (_, body) = admin(&hub, Method::GET, "/users/carol", None).await;
    assert!(body.contains("\"ready\":true"), "{body}");
    b.click(&format!("{carol_row} .stop-server")).await;
    b.wait_until_for(
        &format!(
            "!document.querySelector(\"{carol_row} .start-server\").classList.contains('d-none')"
        ),
        "carol's server stopped (Start shown)",
        std::time::Duration::from_secs(60),
    )
    .await;
    let (_, body) = admin(&hub, Method::GET, "/users/carol", None).await;
    assert!(!body.contains("\"ready\":true"), "{body}");

    // The remaining pages, for the screenshots.
    b.goto(&format!("{base}/hub/token")).await;
    b.find("#request-token-btn").await;
    b.screenshots("token").await;
    b.goto(&format!("{base}/hub/user/alice/lab")).await;
    b.find("#not-running").await;
    b.screenshots("not_running").await;
    b.goto(&format!("{base}/hub/spawn/nosuchuser")).await;
    b.find(".error").await;
    b.screenshots("error").await;
    b.quit().await;
}

#[tokio::test]
async fn token_page_creates_shows_once_and_revokes() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let hub = common::sqlite_hub(|c| c.authenticator.allow_all = true).await;
    b.sign_in(&hub.url, "dora", "x").await;
    b.goto(&hub.hub("/token")).await;
    b.fill("#token-note", "<b>laptop</b> & script").await;
    b.click("#request-token-btn").await;
    b.wait_until(
        "document.querySelector('#token-result').textContent.length > 10",
        "the new token",
    )
    .await;
    let token = b.text("#token-result").await;
    let who = common::get_as(&reqwest::Client::new(), hub.api("/user"), &token).await;
    assert_eq!(who.status(), 200, "the new token works");
    // Shown once: a reload lists the token (escaped note) but not its secret.
    b.goto(&hub.hub("/token")).await;
    b.find(".revoke-token-btn").await;
    let html = b
        .eval("return document.documentElement.outerHTML", json!([]))
        .await;
    let html = html.as_str().unwrap_or_default();
    assert!(
        !html.contains(&token),
        "the secret is not in the page again"
    );
    assert!(
        html.contains("&lt;b&gt;laptop&lt;/b&gt; &amp; script"),
        "the note is escaped"
    );
    b.click(".revoke-token-btn").await;
    b.wait_until(
        "document.querySelectorAll('.revoke-token-btn').length === 0",
        "the token row removed",
    )
    .await;
    let who = common::get_as(&reqwest::Client::new(), hub.api("/user"), &token).await;
    assert_eq!(who.status(), 403, "a revoked token is refused");
    b.quit().await;
}

/// The real local spawner with an options form (the local spawner itself has none): what a
/// batch spawner's form looks like to the spawn page.
struct LocalWithForm(nbhub_spawner::LocalSpawner);

impl nbhub_spawner::Spawner for LocalWithForm {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }
    fn start<'a>(
        &'a self,
        req: &'a nbhub_spawner::SpawnRequest,
    ) -> nbhub_spawner::BoxFuture<'a, Result<nbhub_spawner::Started, nbhub_spawner::SpawnError>>
    {
        self.0.start(req)
    }
    fn resume<'a>(
        &'a self,
        state: &'a nbhub_spawner::SpawnerState,
        updates: &'a nbhub_spawner::Updates,
    ) -> nbhub_spawner::BoxFuture<'a, Result<nbhub_spawner::Started, nbhub_spawner::SpawnError>>
    {
        self.0.resume(state, updates)
    }
    fn poll<'a>(
        &'a self,
        state: &'a nbhub_spawner::SpawnerState,
    ) -> nbhub_spawner::BoxFuture<'a, nbhub_spawner::PollStatus> {
        self.0.poll(state)
    }
    fn stop<'a>(
        &'a self,
        state: &'a nbhub_spawner::SpawnerState,
        timeout: std::time::Duration,
    ) -> nbhub_spawner::BoxFuture<'a, Result<(), nbhub_spawner::SpawnError>> {
        self.0.stop(state, timeout)
    }
    fn options_form<'a>(
        &'a self,
        _ctx: &'a nbhub_spawner::FormContext,
    ) -> nbhub_spawner::BoxFuture<'a, Option<nbhub_spawner::FormSpec>> {
        Box::pin(async {
            serde_json::from_value(json!({"can_estimate": false, "fields": [
                {"name": "partition", "label": "Partition", "required": true, "default": "cpu",
                 "kind": {"type": "select", "choices": [
                    {"value": "cpu", "label": "CPU nodes", "info": "3 of 4 nodes idle · 2 CPUs, 2 GiB per node"},
                    {"value": "gpu", "label": "GPU nodes", "info": "1 of 2 nodes idle"}]}},
                {"name": "cores", "label": "Cores", "help": "CPU cores for your server", "default": 2,
                 "kind": {"type": "int", "min": 1, "max": 8}},
                {"name": "gpus", "label": "GPUs", "default": 1, "kind": {"type": "int", "min": 1, "max": 2},
                 "visible_when": {"field": "partition", "values": ["gpu"]}},
                {"name": "runtime", "label": "Run time", "default": "1:00:00",
                 "kind": {"type": "duration", "min_secs": 600, "max_secs": 28800}}
            ]}))
            .ok()
        })
    }
    fn timeouts(&self) -> nbhub_spawner::Timeouts {
        self.0.timeouts()
    }
}

/// `hub`'s state served again on a free port with the [`LocalWithForm`] spawner: the base URL,
/// the new state, and the sender that stops it (dropped: stopped).
async fn serve_with_form_spawner(
    hub: &common::TestHub,
) -> (
    String,
    nbhub::state::AppState,
    tokio::sync::oneshot::Sender<()>,
) {
    let s = &hub.state;
    let spawner = nbhub_spawner::LocalSpawner::new(
        s.config.spawner.clone(),
        s.config.local.clone(),
        &s.config.hub.data_dir,
    )
    .expect("local spawner");
    let supervisor = nbhub::supervisor::Supervisor::new(
        s.db.clone(),
        s.config.clone(),
        std::sync::Arc::new(LocalWithForm(spawner)),
        s.supervisor.proxy.clone(),
        s.metrics.clone(),
    );
    let state = nbhub::state::AppState::new(
        s.config.clone(),
        s.db.clone(),
        s.cookie_secret.clone(),
        supervisor,
        None,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let served = state.clone();
    tokio::spawn(async move {
        let _ = nbhub::run(served, listener, async move {
            let _ = rx.await;
        })
        .await;
    });

    (base, state, tx)
}

#[tokio::test]
async fn a_bad_value_on_the_spawn_form_is_shown_next_to_its_field() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let hub = common::sqlite_hub(|c| c.authenticator.allow_all = true).await;
    let (base, state, tx) = serve_with_form_spawner(&hub).await;

    b.sign_in(&base, "gina", "x").await;
    b.goto(&format!("{base}/hub/spawn")).await;
    b.find("#opt-cores").await;
    // The GPU count shows only for the GPU partition; the partition's live facts beside it.
    b.wait_until(
        "document.querySelector('#field-gpus').hidden",
        "the GPU field hidden for CPU nodes",
    )
    .await;
    assert!(b
        .text("#opt-partition-info")
        .await
        .contains("3 of 4 nodes idle"));
    b.screenshots("spawn").await;
    b.eval(
        "const p = document.querySelector('#opt-partition'); p.value = 'gpu'; p.dispatchEvent(new Event('change', {bubbles: true}));",
        json!([]),
    )
    .await;
    b.wait_until(
        "!document.querySelector('#field-gpus').hidden",
        "the GPU field shown",
    )
    .await;
    b.fill("#opt-cores", "99").await;
    b.fill("#opt-runtime", "2:30:00").await;
    b.click("#spawn-submit").await;
    b.wait_until(
        "document.querySelector('#opt-cores-error')",
        "the error next to Cores",
    )
    .await;
    assert!(
        b.text("#opt-cores-error").await.contains('8'),
        "names the limit"
    );
    let kept = b
        .eval(
            "return [document.querySelector('#opt-partition').value, document.querySelector('#opt-cores').value, document.querySelector('#opt-runtime').value]",
            json!([]),
        )
        .await;
    assert_eq!(
        kept,
        json!(["gpu", "99", "2:30:00"]),
        "the submitted values are kept"
    );
    b.screenshots("spawn-error").await;
    let user = nbhub::db::users::get(&state.db, "gina")
        .await
        .expect("db")
        .expect("gina");
    assert_eq!(
        state.supervisor.phase_of(user.id, ""),
        nbhub::supervisor::Phase::Stopped,
        "nothing was started"
    );
    let _ = tx.send(());
    b.quit().await;
}

/// Sharing in a browser, against the real JupyterLab: alice's share code opens the accept page
/// for bob; accepting takes him to her server, whose OAuth consent page he authorizes; her
/// JupyterLab loads for him. Screenshots of the accept and consent pages.
#[tokio::test]
async fn bob_accepts_alices_share_code_and_opens_her_jupyterlab() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let roles =
        "[[roles]]\nname = \"user\"\nscopes = [\"self\", \"shares!user\", \"read:users:name\"]\n";
    let Some(hub) = launch(Options::services(roles)).await else {
        return;
    };
    let base = hub.public_url("");
    for name in ["alice", "bob"] {
        let (s, body) = admin(&hub, Method::POST, &format!("/users/{name}"), None).await;
        assert_eq!(s, 201, "{body}");
    }
    let (s, body) = admin(&hub, Method::POST, "/users/alice/server", None).await;
    assert_eq!(s, 201, "{body}\n{}", hub.log());
    let alice = common::user_token(&hub, "alice").await;
    let code: serde_json::Value = reqwest::Client::new()
        .post(hub.public_url("/hub/api/share-codes/alice/"))
        .header("Authorization", format!("token {alice}"))
        .json(&json!({"expires_in": 600}))
        .send()
        .await
        .expect("share code")
        .json()
        .await
        .expect("json");
    let accept_url = code["accept_url"].as_str().expect("accept_url").to_string();

    b.sign_in(&base, "bob", PASSWORD).await;
    b.goto(&format!("{base}{accept_url}")).await;
    b.find("form button[type=submit]").await;
    let text = b.text(".card").await;
    assert!(
        text.contains("alice"),
        "the accept page names the owner: {text}"
    );
    b.screenshots("accept-share").await;
    b.click("form button[type=submit]").await;
    // Someone else's server asks bob's consent before it learns who he is.
    b.find("#authorize").await;
    let consent = b.text("body").await;
    assert!(
        consent.contains("/user/alice/") && consent.contains("bob"),
        "the consent page says whose server asks about whom: {consent}"
    );
    b.screenshots("oauth").await;
    b.click("#authorize").await;
    b.wait_until_for(
        "location.pathname.startsWith('/user/alice/') && document.querySelector('#jp-main-dock-panel')",
        "alice's JupyterLab, for bob",
        std::time::Duration::from_secs(90),
    )
    .await;
    b.quit().await;
    let (s, _) = admin(&hub, Method::DELETE, "/users/alice/server", None).await;
    assert!(s == 204 || s == 202);
}

/// The stop-pending page: a server that ignores SIGTERM stays stopping for the spawner's
/// 10-second grace period, long enough to see the page the user gets meanwhile.
#[tokio::test]
async fn a_slow_stop_shows_the_stop_pending_page() {
    let Some(b) = Browser::start().await else {
        return;
    };
    // The server: a static HTTP server on the hub's port that ignores SIGTERM (the
    // single-user command the hub appends becomes $0 and is not run).
    let stubborn = "trap '' TERM; p=${JUPYTERHUB_SERVICE_URL##*:}; p=${p%%/*}; \
                    exec python3 -m http.server --bind 127.0.0.1 \"$p\"";
    let Some(hub) = launch(Options {
        cmd_prefix: vec!["/bin/sh".into(), "-c".into(), stubborn.into()],
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let base = hub.public_url("");
    let (s, body) = admin(&hub, Method::POST, "/users/alice", None).await;
    assert_eq!(s, 201, "{body}");
    let (s, body) = admin(&hub, Method::POST, "/users/alice/server", None).await;
    assert_eq!(s, 201, "{body}\n{}", hub.log());
    b.sign_in(&base, "alice", PASSWORD).await;
    let stop = {
        let hub = &hub;
        async move { admin(hub, Method::DELETE, "/users/alice/server", None).await }
    };
    let look = async {
        // Until the stop has begun the page still leads to the running server.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(8);
        loop {
            b.goto(&format!("{base}/hub/spawn-pending/alice")).await;
            let shown = b
                .eval(
                    "return !!document.querySelector('#stop-pending')",
                    json!([]),
                )
                .await;
            if shown == json!(true) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the stop-pending page never showed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        b.screenshots("stop_pending").await;
    };
    let ((s, _), ()) = tokio::join!(stop, look);
    assert!(s == 202 || s == 204, "stop: {s}");
    b.quit().await;
}

/// Issue 20, point 14: a new token is listed at once, without a reload (its note escaped,
/// before the older ones), and its Revoke button works there too.
#[tokio::test]
async fn a_new_token_is_listed_without_a_reload() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let hub = common::sqlite_hub(|c| c.authenticator.allow_all = true).await;
    b.sign_in(&hub.url, "tess", "x").await;
    b.goto(&hub.hub("/token")).await;
    b.find("#no-tokens").await;
    b.eval("window.__no_reload = 1;", json!([])).await;
    for note in ["first", "<i>second</i>"] {
        b.fill("#token-note", note).await;
        b.click("#request-token-btn").await;
        b.wait_until(
            &format!(
                "document.querySelector('#api-tokens-table tbody tr.token-row .note-col')?.textContent === {}",
                serde_json::to_string(note).expect("json")
            ),
            "the new token listed first",
        )
        .await;
    }
    let listed = b
        .eval(
            "return [window.__no_reload, [...document.querySelectorAll('#api-tokens-table tr.token-row')].length, \
             document.querySelector('#api-tokens-box').classList.contains('d-none'), \
             document.querySelector('#no-tokens').classList.contains('d-none'), \
             document.querySelectorAll('#api-tokens-table i').length]",
            json!([]),
        )
        .await;
    assert_eq!(
        listed,
        json!([1, 2, false, true, 0]),
        "both tokens listed in the same page, the note as text"
    );
    let token = b.text("#token-result").await;
    b.screenshots("token-new").await;
    b.click("#api-tokens-table tr.token-row .revoke-token-btn")
        .await;
    b.wait_until(
        "document.querySelectorAll('#api-tokens-table tr.token-row').length === 1 && window.__no_reload === 1",
        "the new token revoked from the list",
    )
    .await;
    let who = reqwest::Client::new()
        .get(hub.api("/user"))
        .header("Authorization", format!("token {token}"))
        .send()
        .await
        .expect("whoami");
    assert_eq!(who.status(), 403, "the revoked token is refused");
    b.quit().await;
}

/// Issue 20, point 12: on a 390 px phone the home page's named servers fit the screen (no
/// sideways scrolling; each server's status and actions in view). Point 8: the proxy's page
/// for a server that does not answer leads a signed-in user home, not to "Sign in".
#[tokio::test]
async fn the_home_page_fits_a_phone_and_a_dead_servers_page_leads_home() {
    let Some((hub, b)) = hub_and_browser(Options {
        extra_toml: "redirect_to_server = false".into(),
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let base = hub.public_url("");
    let (s, body) = admin(&hub, Method::POST, "/users/alice", None).await;
    assert_eq!(s, 201, "{body}");
    let names = ["analysis-with-a-long-name", "scratch"];
    for name in names {
        let (s, body) = admin(
            &hub,
            Method::POST,
            &format!("/users/alice/servers/{name}"),
            None,
        )
        .await;
        assert!(s == 201 || s == 202, "start {name}: {s} {body}");
    }
    common::eventually(90, "both named servers running", || async {
        let (_, body) = admin(&hub, Method::GET, "/users/alice", None).await;
        let model: serde_json::Value = serde_json::from_str(&body).ok()?;
        names
            .iter()
            .all(|n| model["servers"][n]["ready"] == json!(true))
            .then_some(())
    })
    .await;
    let (s, _) = admin(&hub, Method::DELETE, "/users/alice/servers/scratch", None).await;
    assert!(s == 202 || s == 204, "stop scratch: {s}");
    common::eventually(30, "scratch stopped", || async {
        let (_, body) = admin(&hub, Method::GET, "/users/alice", None).await;
        let model: serde_json::Value = serde_json::from_str(&body).ok()?;
        model["servers"].get("scratch").is_none().then_some(())
    })
    .await;

    b.sign_in(&base, "alice", PASSWORD).await;
    b.set_width(390, 844).await;
    b.goto(&format!("{base}/hub/home")).await;
    b.find("tr.home-server-row[data-server-name='scratch']")
        .await;
    let layout = b
        .eval(
            "const width = document.documentElement.clientWidth; \
             const inView = (el) => { const r = el.getBoundingClientRect(); \
               return r.width > 0 && r.left >= 0 && r.right <= width; }; \
             const rows = [...document.querySelectorAll('tr.home-server-row[data-server-name]')]; \
             return { width, scroll: document.documentElement.scrollWidth, \
               rows: rows.map((r) => [r.dataset.serverName, inView(r.querySelector('.server-status')), \
                 [...r.querySelectorAll('.server-actions .btn')].filter((x) => !x.classList.contains('d-none')) \
                   .map((x) => inView(x))]) };",
            json!([]),
        )
        .await;
    let width = layout["width"].as_u64().expect("width");
    assert!(width <= 390, "a phone-sized window: {layout}");
    assert!(
        layout["scroll"].as_u64().expect("scroll width") <= width,
        "the page must not scroll sideways on a phone: {layout}"
    );
    assert_eq!(
        layout["rows"],
        json!([
            ["analysis-with-a-long-name", true, [true, true]],
            ["scratch", true, [true, true]]
        ]),
        "each server's status and its two actions (Open/Stop, Start/Delete) are on screen: {layout}"
    );
    b.screenshots("home-named-servers").await;

    // A route to a server that does not answer: the proxy fetches its error page from the hub
    // itself (without the visitor's cookies), and that page must still lead home.
    let token = std::fs::read_to_string(hub.data_dir().join("nbhub_proxy_token"))
        .expect("the managed proxy's token");
    let dead = nbhub_testkit::free_port();
    let r = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/api/routes/user/alice/ghost",
            hub.api_port
        ))
        .header("Authorization", format!("token {}", token.trim()))
        .json(&json!({"target": format!("http://127.0.0.1:{dead}")}))
        .send()
        .await
        .expect("add a route");
    assert!(r.status().is_success(), "{}", r.status());
    b.goto(&format!("{base}/user/alice/ghost/lab")).await;
    let page = b
        .eval(
            "return [document.querySelector('h1')?.textContent.trim(), \
             document.querySelector('#error-message')?.textContent.trim(), \
             [...document.querySelectorAll('main a.btn, .error a.btn')].map((a) => a.textContent.trim())]",
            json!([]),
        )
        .await;
    assert!(
        page[0].as_str().is_some_and(|h| h.starts_with("503")),
        "{page}"
    );
    assert!(
        page[1]
            .as_str()
            .is_some_and(|m| m.contains("not answering") && m.contains("/user/alice/ghost/lab")),
        "{page}"
    );
    assert_eq!(
        page[2],
        json!(["Go to your home page"]),
        "a signed-in user is not asked to sign in: {page}"
    );
    b.click("#go-home").await;
    b.wait_until("location.pathname === '/hub/home'", "the home page")
        .await;
    b.quit().await;
}

/// The hub binary with its managed proxy and the real single-user server, started with
/// `opts`, and a Chromium; `None` when a part is missing (a failure under CI=true).
async fn hub_and_browser(opts: Options) -> Option<(HubProc, Browser)> {
    let venv = nbhub_testkit::require_venv()?;
    let proxy = require_proxy_binary()?;
    let b = Browser::start().await?;
    let hub = HubProc::started(venv, &proxy, opts).await;
    Some((hub, b))
}

/// JupyterHub 5's page features, in Chromium: the dark-mode switch (on every page, kept in
/// localStorage as `jupyterhub-bs-theme` and applied as `data-bs-theme`), the confirmation
/// before a named server is deleted (refused: nothing deleted; accepted: deleted), the admin
/// page's start time and options of a server, and Stop on the spawn-pending page.
#[tokio::test]
async fn dark_mode_delete_confirmation_admin_options_and_stop_while_pending() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let hub = common::sqlite_hub(|c| {
        c.authenticator.allow_all = true;
        c.authenticator.admin_users = vec!["pf5".into()];
        c.hub.allow_named_servers = true;
        c.hub.slow_spawn_timeout = 1;
        // A server that never answers: it stays starting until stopped.
        c.spawner.cmd = vec!["/bin/sh".into(), "-c".into(), "sleep 300".into()];
        c.spawner.start_timeout = 300;
        c.local.switch_user = false;
    })
    .await;
    let (base, state, tx) = serve_with_form_spawner(&hub).await;
    let theme = "return document.documentElement.getAttribute('data-bs-theme')";

    // Dark mode, switched on the login page, stays on for the next pages.
    b.goto(&format!("{base}/hub/login")).await;
    assert_eq!(b.eval(theme, json!([])).await, json!("light"));
    b.click("#dark-theme-toggle").await;
    assert_eq!(b.eval(theme, json!([])).await, json!("dark"));
    assert_eq!(
        b.eval(
            "return localStorage.getItem('jupyterhub-bs-theme')",
            json!([])
        )
        .await,
        json!("dark")
    );
    b.sign_in(&base, "pf5", "x").await;
    for page in ["/hub/home", "/hub/token", "/hub/admin"] {
        b.goto(&format!("{base}{page}")).await;
        b.find("#dark-theme-toggle").await;
        assert_eq!(b.eval(theme, json!([])).await, json!("dark"), "{page}");
    }
    b.goto(&format!("{base}/hub/home")).await;
    b.screenshots("home-dark").await;

    // A named server's Delete asks first; "no" keeps it, "yes" deletes it.
    let (s, body) = common::call(
        &hub,
        Method::PUT,
        "/users/pf5/servers/scratch",
        common::ADMIN_TOKEN,
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    let owner = nbhub::db::users::get(&state.db, "pf5")
        .await
        .expect("db")
        .expect("pf5");
    let named = || async {
        nbhub::db::servers::get(&state.db, owner.id, "scratch")
            .await
            .expect("db")
            .is_some()
    };
    assert!(named().await, "created");
    b.goto(&format!("{base}/hub/home")).await;
    let answer = |yes: bool| {
        format!("window.confirm = (m) => {{ window.asked = m; return {yes}; }}; return true")
    };
    b.eval(&answer(false), json!([])).await;
    b.click(".delete-server[data-server='scratch']").await;
    let asked = b.eval("return window.asked || ''", json!([])).await;
    assert!(
        asked
            .as_str()
            .unwrap_or("")
            .contains("Delete the server scratch"),
        "the page asks first: {asked}"
    );
    assert!(named().await, "refused: the server is kept");
    b.find(".delete-server[data-server='scratch']").await;
    b.eval(&answer(true), json!([])).await;
    b.click(".delete-server[data-server='scratch']").await;
    b.wait_until(
        "!document.querySelector(\".delete-server[data-server='scratch']\")",
        "the deleted server's row gone",
    )
    .await;
    common::eventually(10, "the named server deleted", || async {
        (!named().await).then_some(())
    })
    .await;

    // A start from the form waits on the pending page; the admin page shows when it started and
    // with which options.
    b.goto(&format!("{base}/hub/spawn")).await;
    b.find("#opt-cores").await;
    b.fill("#opt-cores", "4").await;
    b.click("#spawn-submit").await;
    b.wait_until(
        "location.pathname.includes('/hub/spawn-pending/pf5')",
        "the pending page",
    )
    .await;
    b.goto(&format!("{base}/hub/admin")).await;
    b.click("#tab-running").await;
    b.wait_until(
        "document.querySelector('#pane-running').classList.contains('show')",
        "the running tab",
    )
    .await;
    let row = ".running-row[data-user='pf5']";
    let options = b.text(&format!("{row} .server-options")).await;
    assert!(
        options.contains("cores: 4") && options.contains("partition: cpu"),
        "{options}"
    );
    let started = b
        .eval(
            &format!("return document.querySelector(\"{row} .server-started time\").getAttribute('datetime')"),
            json!([]),
        )
        .await;
    assert!(
        started.as_str().is_some_and(|t| t.starts_with("20")),
        "{started}"
    );
    b.screenshots("admin-running-options").await;

    // Stop on the pending page stops the start and leads home.
    b.goto(&format!("{base}/hub/spawn-pending/pf5")).await;
    b.click("#cancel-spawn").await;
    b.wait_until("location.pathname === '/hub/home'", "home after Stop")
        .await;
    common::eventually(30, "the start stopped", || async {
        (state.supervisor.phase_of(owner.id, "") == nbhub::supervisor::Phase::Stopped).then_some(())
    })
    .await;
    // Back to light for the next pages, as chosen.
    b.click("#dark-theme-toggle").await;
    b.goto(&format!("{base}/hub/token")).await;
    assert_eq!(b.eval(theme, json!([])).await, json!("light"));
    let _ = tx.send(());
    b.quit().await;
}
