//! The hub's own listener (`hub_bind_url`) against slow clients: a request head or body sent a
//! byte at a time is cut off at its deadline (`[hub] request_header_timeout`,
//! `request_body_timeout`), while other clients are served meanwhile.

use crate::common;

use std::time::Duration;

use common::{client, sqlite_hub, ADMIN_TOKEN};
use nbhub_testkit::slow_request;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_and_bodies_are_closed_at_their_deadlines() {
    let hub = sqlite_hub(|c| {
        c.hub.request_header_timeout = 3;
        c.hub.request_body_timeout = 3;
    })
    .await;
    let addr: std::net::SocketAddr = hub.url["http://".len()..].parse().expect("hub address");

    // Meanwhile a normal client is served, request after request.
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let url = hub.api("/");
    let normal = tokio::spawn(async move {
        let c = client();
        let mut n = 0;
        loop {
            let res = tokio::time::timeout(Duration::from_secs(2), c.get(&url).send())
                .await
                .expect("a normal request waited")
                .expect("get");
            assert_eq!(res.status(), 200);
            n += 1;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = &mut stop_rx => return n,
            }
        }
    });

    let body_head = format!(
        "POST /hub/api/users/slow HTTP/1.1\r\nHost: x\r\nAuthorization: token {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{"
    );
    let slow = [
        (
            "head",
            &b"GET /hub/api/ HTTP/1.1\r\nHost: x\r\nX-Slow: "[..],
            false,
        ),
        ("body", body_head.as_bytes(), true),
    ];
    let results = futures_util::future::join_all(
        slow.iter()
            .map(|(_, head, _)| slow_request(addr, head, Duration::from_secs(20))),
    )
    .await;
    let mut failed = Vec::new();
    for ((what, _, answered), r) in slow.iter().zip(results) {
        match r {
            Err(e) => failed.push(format!("{what}: {e}")),
            Ok((got, after))
                if after < Duration::from_millis(2900) || after > Duration::from_secs(10) =>
            {
                failed.push(format!(
                    "{what}: closed after {after:?}, not at the 3 s deadline: {got:?}"
                ))
            }
            Ok((got, _)) if *answered && !got.starts_with("HTTP/1.1 408 ") => {
                failed.push(format!("{what}: not a 408: {got:?}"))
            }
            Ok(_) => {}
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    let _ = stop_tx.send(());
    let n = normal.await.expect("normal client");
    assert!(n >= 5, "only {n} normal requests were served meanwhile");
    // The slow body created nothing.
    let (status, _) =
        common::call(&hub, reqwest::Method::GET, "/users/slow", ADMIN_TOKEN, None).await;
    assert_eq!(status, 404);
}
