//! A PostgreSQL restart under API load (docs/database.md#when-the-database-restarts): the real
//! `nbhub` binary on a cluster of the test's own (`nbhub_testkit::PgCluster`), stopped for 20 s
//! while clients create tokens, read and PATCH users.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::common::hubproc::{self, admin, ADMIN};
use crate::common::{self, Hub};

const CLIENTS: usize = 4;
const OUTAGE: Duration = Duration::from_secs(20);
/// The longest a request may wait for its answer, outage or not.
const LONGEST_ANSWER: Duration = Duration::from_secs(10);

/// Where the test is when a request is sent and answered.
const BEFORE: u8 = 0;
const OUTAGE_PHASE: u8 = 1;
const RECOVERING: u8 = 2;
const AFTER: u8 = 3;

struct Outcome {
    sent: u8,
    answered: u8,
    what: String,
    /// The status, or the transport error.
    status: Result<u16, String>,
    retry_after: bool,
    body: String,
    took: Duration,
}

#[derive(Default)]
struct Record {
    outcomes: Vec<Outcome>,
    /// `(user, note)` of every token whose creation was answered 2xx.
    acknowledged: Vec<(String, String)>,
}

async fn load(
    hub_url: String,
    user: String,
    token: String,
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    record: Arc<Mutex<Record>>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let api = |path: &str| format!("{hub_url}/hub/api{path}");
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let note = format!("load-{user}-{n}");
        let calls = [
            (
                "create a token",
                Method::POST,
                api(&format!("/users/{user}/tokens")),
                token.clone(),
                Some(json!({ "note": note })),
            ),
            (
                "read the user",
                Method::GET,
                api(&format!("/users/{user}")),
                token.clone(),
                None,
            ),
            (
                "PATCH the user",
                Method::PATCH,
                api(&format!("/users/{user}")),
                ADMIN.to_string(),
                Some(json!({ "admin": false })),
            ),
        ];
        for (what, method, url, token, body) in calls {
            let sent = phase.load(Ordering::Acquire);
            let start = Instant::now();
            let mut req = client
                .request(method, url)
                .header("Authorization", format!("token {token}"));
            if let Some(body) = body {
                req = req.json(&body);
            }
            let (status, retry_after, body) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp.headers().contains_key("retry-after");
                    (
                        Ok(status),
                        retry_after,
                        resp.text().await.unwrap_or_default(),
                    )
                }
                Err(e) => (Err(format!("{e:?}")), false, String::new()),
            };
            let mut record = record.lock().expect("record");
            if what == "create a token" && status.as_ref().is_ok_and(|s| (200..300).contains(s)) {
                record.acknowledged.push((user.clone(), note.clone()));
            }
            record.outcomes.push(Outcome {
                sent,
                answered: phase.load(Ordering::Acquire),
                what: what.to_string(),
                status,
                retry_after,
                body,
                took: start.elapsed(),
            });
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_restart_under_load_answers_503_and_loses_no_acknowledged_write() {
    let mut pg = nbhub_testkit::require!(nbhub_testkit::PgCluster::start().await);
    let Some(mut hub) = hubproc::launch(hubproc::Options {
        extra_toml: format!("db_url = \"{}\"", pg.url()),
        ..Default::default()
    })
    .await
    else {
        return;
    };

    let mut tokens = Vec::new();
    for i in 0..CLIENTS {
        let user = format!("dbload{i}");
        let (s, body) = admin(&hub, Method::POST, &format!("/users/{user}"), None).await;
        assert_eq!(s, 201, "create {user}: {body}");
        tokens.push((user.clone(), common::user_token(&hub, &user).await));
    }

    let phase = Arc::new(AtomicU8::new(BEFORE));
    let stop = Arc::new(AtomicBool::new(false));
    let record = Arc::new(Mutex::new(Record::default()));
    let clients: Vec<_> = tokens
        .iter()
        .map(|(user, token)| {
            tokio::spawn(load(
                hub.base_url(),
                user.clone(),
                token.clone(),
                phase.clone(),
                stop.clone(),
                record.clone(),
            ))
        })
        .collect();

    // A browser signed in before the outage.
    let browser = common::pagekit::signed_in(&hub, "dbload0").await;

    // The pool's connections are in use when the server goes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    phase.store(OUTAGE_PHASE, Ordering::Release);
    let outage_started = Instant::now();
    pg.stop().await;
    // A page during the outage: the error page (not the API's JSON), with Retry-After.
    let page = browser
        .get(hub.public_url("/hub/home"))
        .header("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .expect("home page during the outage");
    assert_eq!(page.status(), 503, "the home page during the outage");
    assert!(
        page.headers().contains_key("retry-after"),
        "{:?}",
        page.headers()
    );
    let content_type = page.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .to_string();
    let html = page.text().await.expect("page");
    assert!(
        content_type.starts_with("text/html")
            && html.contains("<html")
            && html.contains("not reachable"),
        "{content_type}: {html}"
    );
    tokio::time::sleep(OUTAGE.saturating_sub(outage_started.elapsed())).await;
    pg.start_again().await;
    phase.store(RECOVERING, Ordering::Release);

    // The same process reconnects by itself, within a few seconds.
    let (user, token) = &tokens[0];
    let recovered = || async {
        let (s, _) =
            common::request(&hub, Method::GET, &format!("/users/{user}"), token, None).await;
        (s == 200).then_some(())
    };
    common::wait_until(Duration::from_secs(20), recovered, || {
        format!(
            "the hub did not serve again after PostgreSQL came back\n{}",
            hub.log()
        )
    })
    .await;
    phase.store(AFTER, Ordering::Release);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Release);
    for c in clients {
        c.await.expect("a load client panicked");
    }

    let alive = hub.hub.as_mut().is_some_and(|h| h.try_wait().is_none());
    assert!(alive, "the hub exited during the outage:\n{}", hub.log());
    assert!(
        !hub.log().contains("panicked"),
        "a task of the hub panicked:\n{}",
        hub.log()
    );

    let record = std::mem::take(&mut *record.lock().expect("record"));
    let count =
        |pred: &dyn Fn(&Outcome) -> bool| record.outcomes.iter().filter(|o| pred(o)).count();
    let mut wrong = Vec::new();
    for o in &record.outcomes {
        let fine = match &o.status {
            // A request may be answered before the server has gone, or after it is back.
            Ok(s) if (200..300).contains(s) => true,
            // Only while the database is away; a request sent once it was back is served.
            Ok(503) => {
                o.retry_after
                    && o.body.contains(nbhub::db::UNAVAILABLE_MESSAGE)
                    && o.answered != BEFORE
                    && o.sent != AFTER
            }
            _ => false,
        };
        if !fine || o.took > LONGEST_ANSWER {
            wrong.push(format!(
                "{} (sent in phase {}, answered in phase {}, after {:?}): {:?} retry-after={} {}",
                o.what, o.sent, o.answered, o.took, o.status, o.retry_after, o.body
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} requests were answered wrongly:\n{}\n-- hub log --\n{}",
        wrong.len(),
        record.outcomes.len(),
        wrong.join("\n"),
        hub.log()
    );
    let before = count(&|o| o.sent == BEFORE && o.answered == BEFORE);
    let unavailable = count(&|o| o.status == Ok(503));
    let after = count(&|o| o.sent == AFTER);
    eprintln!(
        "{} requests: {before} before the outage, {unavailable} answered 503 during it, \
         {after} after; {} tokens acknowledged",
        record.outcomes.len(),
        record.acknowledged.len()
    );
    assert!(
        before > 0 && after > 0,
        "the load ran before and after the outage"
    );
    assert!(unavailable > 0, "no request met the outage");

    // Every acknowledged write is in the database (read there, not through the hub).
    let db = nbhub::db::Db::connect(&pg.url()).await.expect("connect");
    for (name, _) in &tokens {
        let user = nbhub::db::users::get(&db, name)
            .await
            .expect("read user")
            .expect("the user exists");
        let stored: std::collections::HashSet<String> =
            nbhub::db::tokens::list_for(&db, nbhub::db::tokens::Owner::User(user.id))
                .await
                .expect("list tokens")
                .into_iter()
                .map(|t| t.note)
                .collect();
        let lost: Vec<_> = record
            .acknowledged
            .iter()
            .filter(|(u, note)| u == name && !stored.contains(note))
            .collect();
        assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    }
    db.pool.close().await;
}
