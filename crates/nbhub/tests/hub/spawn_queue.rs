//! The fair spawn queue at small scale: 50 users start at once with `concurrent_spawn_limit =
//! 10`. Nobody gets a 429: the starts beyond the limit wait their turn, hear their place in
//! order, and every server becomes ready and reachable through the proxy; one start cancelled
//! while it waits leaves the queue. The servers are a tiny HTTP server (a second to start), so
//! that this measures the hub, not JupyterLab.

use crate::common;

use common::fetch;

use std::time::Duration;

use common::hubproc::{admin, real_parts, HubProc, Options, ADMIN};
use reqwest::Method;
use serde_json::{json, Value};

const USERS: usize = 50;

/// Opens the progress stream of a user's spawn: its events are kept from the spawn's start
/// on, as long as the spawn has not ended yet (a ready server answers with one ready event).
async fn open_progress(hub: &HubProc, user: &str) -> reqwest::Response {
    let resp = reqwest::Client::new()
        .get(hub.public_url(&format!("/hub/api/users/{user}/server/progress")))
        .header("Authorization", format!("token {ADMIN}"))
        .send()
        .await
        .expect("progress");
    assert_eq!(resp.status(), 200, "progress of {user}");
    resp
}

/// The progress events of an open stream, to its end.
async fn progress(user: &str, resp: reqwest::Response) -> Vec<Value> {
    let body = tokio::time::timeout(Duration::from_secs(240), resp.text())
        .await
        .unwrap_or_else(|_| panic!("the progress of {user} did not end"))
        .expect("body");
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).expect("event json"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_starts_with_a_limit_of_ten_queue_in_order_and_all_become_ready() {
    let Some((venv, proxy)) = real_parts() else {
        return;
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    let script = scratch.path().join("tiny_server.py");
    std::fs::write(&script, common::TINY_SERVER).expect("script");
    let hub = HubProc::started(
        venv.clone(),
        &proxy,
        Options {
            extra_toml: "concurrent_spawn_limit = 10\nspawn_queue_limit = 100\n".into(),
            services: "[[roles]]\nname = \"metrics\"\nscopes = [\"read:metrics\"]\nservices = [\"e2e-admin\"]\n".into(),
            cmd_prefix: vec![
                venv.join("bin/python").display().to_string(),
                script.display().to_string(),
            ],
            ..Options::default()
        },
    )
    .await;
    let names: Vec<String> = (0..USERS).map(|i| format!("q{i:02}")).collect();
    let (s, body) = admin(
        &hub,
        Method::POST,
        "/users",
        Some(json!({"usernames": names})),
    )
    .await;
    assert_eq!(s, 201, "{body}");

    // All start at once; each listens to its progress as soon as its start is answered (a
    // stream opened later, once the server is up, would hear only that it is ready).
    let starts = names.iter().map(|name| {
        let hub = &hub;
        async move {
            let answer = admin(hub, Method::POST, &format!("/users/{name}/server"), None).await;
            let stream = match answer.0 {
                201 | 202 => Some(open_progress(hub, name).await),
                _ => None,
            };
            (answer, stream)
        }
    });
    let (answers, streams): (Vec<_>, Vec<_>) = futures_util::future::join_all(starts)
        .await
        .into_iter()
        .unzip();
    let mut queued = Vec::new();
    for (name, (status, body)) in names.iter().zip(&answers) {
        assert!(
            *status == 201 || *status == 202,
            "{name}: {status} {body}\n{}",
            hub.log()
        );
        if let Ok(v) = serde_json::from_str::<Value>(body) {
            if let Some(ahead) = v["queue_ahead"].as_u64() {
                assert_eq!(v["status"], "queued", "{body}");
                queued.push((name.clone(), ahead));
            }
        }
    }
    assert!(
        queued.len() >= USERS / 2,
        "with 10 places and servers that take a second, most starts must queue: {queued:?}"
    );
    // Places are given first come, first served: the 202 answers name distinct places.
    let mut places: Vec<u64> = queued.iter().map(|(_, a)| *a).collect();
    places.sort_unstable();
    places.dedup();
    assert_eq!(
        places.len(),
        queued.len(),
        "one place per start: {queued:?}"
    );

    // The last in the queue gives up while it waits.
    let (quitter, _) = queued
        .iter()
        .max_by_key(|(_, a)| *a)
        .cloned()
        .expect("a queued start");
    let (s, body) = admin(
        &hub,
        Method::DELETE,
        &format!("/users/{quitter}/server"),
        None,
    )
    .await;
    assert!(s == 202 || s == 204, "{s} {body}");

    let streams = names
        .iter()
        .zip(streams)
        .map(|(name, resp)| progress(name, resp.expect("a started server's progress")));
    let all = futures_util::future::join_all(streams).await;
    for (name, events) in names.iter().zip(&all) {
        let last = events.last().expect("events");
        if *name == quitter {
            assert_eq!(last["failed"], true, "{name}: {events:?}");
            continue;
        }
        assert_eq!(last["ready"], true, "{name}: {events:?}\n{}", hub.log());
        // Places heard in order: each no further back than the one before.
        let heard: Vec<u64> = events
            .iter()
            .filter_map(|e| e["queue_ahead"].as_u64())
            .collect();
        assert!(
            heard.windows(2).all(|w| w[1] <= w[0]),
            "{name} heard its places out of order: {heard:?}"
        );
        if queued.iter().any(|(n, _)| n == name) {
            assert!(!heard.is_empty(), "{name} queued but heard no place");
            assert!(
                events.iter().any(|e| e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("Waiting to start"))),
                "{events:?}"
            );
        }
    }

    // Every server answers through the proxy.
    let client = reqwest::Client::new();
    for name in names.iter().filter(|n| **n != quitter) {
        let r = fetch(&client, hub.public_url(&format!("/user/{name}/api"))).await;
        assert_eq!(r.status(), 200, "{name}");
    }
    // The queue is empty again, and its wait was measured.
    let metrics = client
        .get(hub.public_url("/hub/metrics"))
        .header("Authorization", format!("token {ADMIN}"))
        .send()
        .await
        .expect("metrics");
    let text = metrics.text().await.expect("text");
    assert!(text.contains("\nnbhub_spawn_queue_length 0\n"), "{text}");
    assert!(
        text.contains("nbhub_spawn_queue_wait_seconds_count{status=\"cancelled\"} 1\n"),
        "{text}"
    );
    let started: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("nbhub_spawn_queue_wait_seconds_count{status=\"started\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no queue wait count in {text}"));
    assert!(
        started >= queued.len() - 1,
        "{started} waits for {queued:?}"
    );

    let stops = names.iter().map(|name| {
        let hub = &hub;
        async move { admin(hub, Method::DELETE, &format!("/users/{name}/server"), None).await }
    });
    futures_util::future::join_all(stops).await;
}
