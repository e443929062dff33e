//! A hub restart bridged by the proxy (issue 24, point 3): while the hub does not listen,
//! requests for `/hub/` wait at the managed nbhub-proxy (`[proxy] hub_wait`) and go through
//! when it is back; past the bound they get the 503 they would have had at once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::browser::Browser;
use crate::common::hubproc::{admin, launch, HubProc, Options};
use crate::common::pagekit::{browser_following, login};
use crate::common::{get_as, user_token, Hub};

const CLIENTS: usize = 20;
/// How long the hub stays down in a restart.
const OUTAGE: Duration = Duration::from_secs(1);

/// What the clients saw: answers, and every one that was not the expected one.
#[derive(Default)]
struct Tally {
    answers: AtomicU64,
    failures: Mutex<Vec<String>>,
    /// The longest wait for one answer.
    slowest: Mutex<Duration>,
}

impl Tally {
    fn record(&self, took: Duration, outcome: Result<(), String>) {
        self.answers.fetch_add(1, Ordering::Relaxed);
        let mut s = self.slowest.lock().expect("lock");
        *s = (*s).max(took);
        if let Err(e) = outcome {
            self.failures.lock().expect("lock").push(e);
        }
    }
}

/// Users `prefix0…`: created, each with an API token and a signed-in browser (following
/// redirects, as a user's does).
async fn users(hub: &HubProc, prefix: &str) -> Vec<(String, String, reqwest::Client)> {
    let names: Vec<String> = (0..CLIENTS).map(|i| format!("{prefix}{i}")).collect();
    let (s, body) = admin(
        hub,
        reqwest::Method::POST,
        "/users",
        Some(serde_json::json!({ "usernames": names })),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    let mut out = Vec::new();
    for name in &names {
        let b = browser_following();
        login(hub, &b, name).await;
        out.push((name.clone(), user_token(hub, name).await, b));
    }
    out
}

/// 20 API clients (`GET /hub/api/user`) and 20 browsers (`GET /hub/home`) in loops until
/// `stop`.
fn load(
    hub: &HubProc,
    users: &[(String, String, reqwest::Client)],
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for (name, token, browser) in users {
        let api = reqwest::Client::new();
        let (url, token, stop2, tally2) = (
            hub.api_url("/user"),
            token.clone(),
            stop.clone(),
            tally.clone(),
        );
        let name = name.clone();
        tasks.push(tokio::spawn(async move {
            while !stop2.load(Ordering::Relaxed) {
                let began = Instant::now();
                let r = api
                    .get(&url)
                    .header("Authorization", format!("token {token}"))
                    .send()
                    .await;
                let outcome = match r {
                    Ok(r) if r.status() == 200 => {
                        let v: serde_json::Value = r.json().await.unwrap_or_default();
                        if v["name"].as_str() == Some(name.as_str()) {
                            Ok(())
                        } else {
                            Err(format!("API: not the user's model: {v}"))
                        }
                    }
                    Ok(r) => Err(format!("API: {}", r.status())),
                    Err(e) => Err(format!("API: {e}")),
                };
                tally2.record(began.elapsed(), outcome);
                // A client's pace, so that 40 of them leave the 2 cores to the hub's restart.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
        let (url, browser, stop2, tally2) = (
            hub.public_url("/hub/home"),
            browser.clone(),
            stop.clone(),
            tally.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop2.load(Ordering::Relaxed) {
                let began = Instant::now();
                let outcome = match browser.get(&url).send().await {
                    Ok(r) if r.status() == 200 && r.url().path() == "/hub/home" => {
                        let page = r.text().await.unwrap_or_default();
                        if page.contains("<html") || page.contains("<!DOCTYPE") {
                            Ok(())
                        } else {
                            Err("page: not the home page".into())
                        }
                    }
                    Ok(r) => Err(format!("page: {} at {}", r.status(), r.url())),
                    Err(e) => Err(format!("page: {e}")),
                };
                tally2.record(began.elapsed(), outcome);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tasks
}

/// Waits until the clients have had `n` more answers (they are running through the proxy).
async fn answers_grow(tally: &Tally, n: u64) {
    let from = tally.answers.load(Ordering::Relaxed);
    crate::common::eventually(30, "the clients' answers to grow", || async {
        (tally.answers.load(Ordering::Relaxed) >= from + n).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hub_restart_under_load_fails_no_request() {
    let Some(mut hub) = launch(Options::default()).await else {
        return;
    };
    let users = users(&hub, "r").await;
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let tasks = load(&hub, &users, &stop, &tally);
    answers_grow(&tally, 100).await;

    // SIGTERM, then started again, as a service manager restarts it.
    let down = Instant::now();
    hub.sigterm_hub().await;
    // A restart that takes a second (the hub alone restarts in less than 0.1 s here).
    tokio::time::sleep(OUTAGE).await;
    hub.start().await;
    let sigterm_outage = down.elapsed();
    // The kill comes in the hub's normal work, not in its first moments: a request that the
    // kill cuts on a connection's first exchange is not sent again (docs/proxy.md).
    answers_grow(&tally, 400).await;

    // Killed, then started by the test; a real Chromium, signed in, loads the home page
    // while the hub is down.
    let chromium = Browser::start().await.map(Arc::new);
    if let Some(b) = &chromium {
        b.sign_in(&hub.base_url(), "r0", &hub.password()).await;
    }
    let down = Instant::now();
    hub.kill9_hub();
    let page_load = chromium.clone().map(|b| {
        let home = hub.public_url("/hub/home");
        tokio::spawn(async move {
            b.goto(&home).await;
            let text = b
                .eval("return document.body.innerText", serde_json::json!([]))
                .await;
            (b.url().await, text.as_str().unwrap_or_default().to_string())
        })
    });
    tokio::time::sleep(OUTAGE).await;
    hub.start().await;
    let kill_outage = down.elapsed();
    if let Some(load) = page_load {
        let (url, text) = load.await.expect("page load");
        assert!(
            url.ends_with("/hub/home") && !text.contains("Service Unavailable"),
            "Chromium's page load during the outage: {url}\n{text}"
        );
    }
    if let Some(b) = chromium {
        if let Ok(b) = Arc::try_unwrap(b) {
            b.quit().await;
        }
    }
    answers_grow(&tally, 100).await;

    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("client task");
    }
    let failures = tally.failures.lock().expect("lock").clone();
    let answers = tally.answers.load(Ordering::Relaxed);
    let slowest = *tally.slowest.lock().expect("lock");
    eprintln!(
        "hub restarts under load: {answers} answers, {} failed; outages {sigterm_outage:?} \
         (SIGTERM) and {kill_outage:?} (kill -9); slowest answer {slowest:?}",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {answers} requests failed, e.g. {:?}\nthe proxy's log:\n{}",
        failures.len(),
        &failures[..failures.len().min(10)],
        std::fs::read_to_string(hub.data_dir().join("nbhub-proxy.log")).unwrap_or_default()
    );
    // Requests were held across the outage rather than answered around it.
    assert!(
        slowest >= OUTAGE,
        "no request waited for the hub (slowest {slowest:?}): the restarts were not under load"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_longer_outage_gets_the_503_after_the_bound_not_before() {
    let Some(mut hub) = launch(Options {
        proxy_toml: "hub_wait = 2".into(),
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let users = users(&hub, "w").await;
    let (_, token, browser) = &users[0];
    hub.kill9_hub();

    let began = Instant::now();
    let r = get_as(&reqwest::Client::new(), hub.api_url("/user"), token).await;
    let api_took = began.elapsed();
    assert_eq!(r.status(), 503);
    let page = r.text().await.unwrap_or_default();
    assert!(page.contains("Service Unavailable"), "{page}");

    let began = Instant::now();
    let r = browser
        .get(hub.public_url("/hub/home"))
        .send()
        .await
        .expect("the proxy answers");
    let page_took = began.elapsed();
    assert_eq!(r.status(), 503);
    for took in [api_took, page_took] {
        assert!(
            took >= Duration::from_millis(1900),
            "the 503 came before the bound of 2 s: after {took:?}"
        );
        assert!(
            took < Duration::from_secs(6),
            "the 503 came long after the bound of 2 s: after {took:?}"
        );
    }
    // Started again, the hub answers.
    hub.start().await;
    let r = get_as(&reqwest::Client::new(), hub.api_url("/user"), token).await;
    assert_eq!(r.status(), 200);
}
