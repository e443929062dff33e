//! Forwarding: routing, headers, prefixes, errors, streaming, websockets, TLS, shutdown.

use std::time::Duration;

use crate::common::*;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;

#[tokio::test]
async fn longest_segment_prefix_routing() {
    let p = start_proxy(config()).await;
    let root = echo_upstream("root").await;
    let alice = echo_upstream("alice").await;
    let foo = echo_upstream("foo").await;
    p.route_to("/", root).await;
    p.route_to("/user/alice", alice).await;
    p.route_to("/user/alice/foo/", foo).await;
    for (path, name) in [
        ("/", "root"),
        ("/hub/home", "root"),
        ("/user/alice", "alice"),
        ("/user/alice/", "alice"),
        ("/user/alice/lab?x=1", "alice"),
        ("/user/alicex/lab", "root"),
        ("/user/alice/foo", "foo"),
        ("/user/alice/foo/api/status", "foo"),
        ("/user/alice/foobar", "alice"),
        ("/user/%61lice/lab", "alice"),
        ("/user/alice/fo%6f/x", "foo"),
    ] {
        let (s, _, b) = p.get(path).await;
        assert_eq!(s, StatusCode::OK, "{path}");
        let v = json(&b);
        assert_eq!(v["name"], name, "{path}");
        // The URL goes through unchanged (prefix included, encoding kept).
        assert_eq!(v["url"], path, "{path}");
    }
    // Without a root route: 404 as CHP (plain message).
    p.api("DELETE", "/api/routes/", None).await;
    let (s, _, b) = p.get("/hub/home").await;
    assert_eq!((s, b.as_str()), (StatusCode::NOT_FOUND, "Not Found"));
    // Health check is answered by the proxy itself.
    let (s, _, b) = p.get("/_chp_healthz").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b)["status"], "OK");
    p.shutdown().await;
}

#[tokio::test]
async fn forwarded_headers_and_host() {
    let up = echo_upstream("up").await;
    let p = proxy_to(up).await;
    let req = Request::get(format!("http://{}/x", p.public))
        .header("host", "hub.example.org:8443")
        .header("x-forwarded-for", "10.0.0.1")
        .body(Full::default())
        .expect("req");
    let (_, _, b) = p.request(req).await;
    let h = &json(&b)["headers"];
    assert_eq!(h["host"], "hub.example.org:8443");
    assert_eq!(h["x-forwarded-for"], "10.0.0.1,127.0.0.1");
    assert_eq!(h["x-forwarded-port"], "8443");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "hub.example.org:8443");

    let (_, _, b) = p.get("/y").await;
    let h = &json(&b)["headers"];
    let host = format!("{}", p.public);
    assert_eq!(h["host"], host.as_str());
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-port"], p.public.port().to_string());
    assert_eq!(h["x-forwarded-host"], host.as_str());
    p.shutdown().await;

    // --no-x-forward and --custom-header.
    let mut cfg = config();
    cfg.x_forward = false;
    cfg.custom_headers = vec![(
        "x-site".try_into().expect("n"),
        "hpc".try_into().expect("v"),
    )];
    let p = start_proxy(cfg).await;
    p.route_to("/", up).await;
    let (_, _, b) = p.get("/y").await;
    let h = &json(&b)["headers"];
    assert!(h.get("x-forwarded-for").is_none(), "{h}");
    assert_eq!(h["x-site"], "hpc");
    p.shutdown().await;
}

#[tokio::test]
async fn prefix_flags() {
    let up = echo_upstream("up").await;
    // Target with a path is prepended (CHP default).
    let p = start_proxy(config()).await;
    p.add_route("/svc", &format!("http://{up}/base/")).await;
    let (_, _, b) = p.get("/svc/a?b=1").await;
    assert_eq!(json(&b)["url"], "/base/svc/a?b=1");
    p.shutdown().await;

    let mut cfg = config();
    cfg.include_prefix = false;
    cfg.prepend_path = false;
    let p = start_proxy(cfg).await;
    p.add_route("/svc", &format!("http://{up}/base")).await;
    let (_, _, b) = p.get("/svc/a?b=1").await;
    assert_eq!(json(&b)["url"], "/a?b=1");
    let (_, _, b) = p.get("/svc").await;
    assert_eq!(json(&b)["url"], "/");
    p.shutdown().await;
}

#[tokio::test]
async fn host_routing() {
    let mut cfg = config();
    cfg.host_routing = true;
    let p = start_proxy(cfg).await;
    let a = echo_upstream("alice").await;
    let hub = echo_upstream("hub").await;
    p.route_to("/", hub).await;
    p.route_to("/alice.hub.tld", a).await;
    for (host, name) in [
        ("alice.hub.tld:8000", "alice"),
        ("alice.hub.tld", "alice"),
        ("hub.tld", "hub"),
    ] {
        let req = Request::get(format!("http://{}/user/alice/api", p.public))
            .header("host", host)
            .body(Full::default())
            .expect("req");
        let (s, _, b) = p.request(req).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(json(&b)["name"], name, "{host}");
        assert_eq!(json(&b)["url"], "/user/alice/api");
    }
    p.shutdown().await;
}

#[tokio::test]
async fn errors_use_error_target_or_path() {
    let dead = closed_port().await;
    // The hub's /hub/error/<code> stand-in: shows what it was asked.
    let errors = upstream(|req: Request<hyper::body::Incoming>| async move {
        let mut r = Response::new(boxed(format!("error page for {}", req.uri())));
        r.headers_mut().insert(
            "content-type",
            "text/html; charset=UTF-8".parse().expect("ct"),
        );
        r
    })
    .await;
    let mut cfg = config();
    cfg.error_target =
        Some(nbhub_proxy::parse_target(&format!("http://{errors}/hub/error")).expect("t"));
    let p = start_proxy(cfg).await;
    p.add_route("/user/bob", &format!("http://127.0.0.1:{dead}"))
        .await;
    let (s, h, b) = p.get("/user/bob/api/status?a=1").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h["content-type"], "text/html; charset=UTF-8");
    assert_eq!(
        b,
        "error page for /hub/error/503?url=%2Fuser%2Fbob%2Fapi%2Fstatus%3Fa%3D1"
    );
    let (s, _, b) = p.get("/nowhere").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(b, "error page for /hub/error/404?url=%2Fnowhere");
    p.shutdown().await;

    // Error target down too: the plain reason phrase.
    let mut cfg = config();
    cfg.error_target =
        Some(nbhub_proxy::parse_target(&format!("http://127.0.0.1:{dead}")).expect("t"));
    let p = start_proxy(cfg).await;
    let (s, _, b) = p.get("/nowhere").await;
    assert_eq!((s, b.as_str()), (StatusCode::NOT_FOUND, "Not Found"));
    p.shutdown().await;

    // --error-path pages.
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("404.html"), "<h1>no such page</h1>").expect("w");
    std::fs::write(dir.path().join("error.html"), "<h1>oops</h1>").expect("w");
    let mut cfg = config();
    cfg.error_path = Some(dir.path().to_path_buf());
    let p = start_proxy(cfg).await;
    p.add_route("/user/bob", &format!("http://127.0.0.1:{dead}"))
        .await;
    let (s, h, b) = p.get("/nowhere").await;
    assert_eq!(
        (s, b.as_str()),
        (StatusCode::NOT_FOUND, "<h1>no such page</h1>")
    );
    assert_eq!(h["content-type"], "text/html");
    let (s, _, b) = p.get("/user/bob/").await;
    assert_eq!(
        (s, b.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "<h1>oops</h1>")
    );
    p.shutdown().await;
}

#[tokio::test]
async fn activity_and_metrics() {
    let mut cfg = config();
    cfg.metrics_port = Some(0);
    let p = start_proxy(cfg).await;
    let up = echo_upstream("up").await;
    p.route_to("/user/alice", up).await;
    let (_, b) = p.api("GET", "/api/routes/user/alice", None).await;
    let before = json(&b)["last_activity"].as_str().expect("la").to_string();
    // Wait until the clock has moved at least 2 ms past the route's creation.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while nbhub_proxy::routes::format_js_date(nbhub_proxy::routes::now_ms() - 2) <= before {
        assert!(std::time::Instant::now() < deadline);
        tokio::task::yield_now().await;
    }
    p.get("/user/alice/api").await;
    let (_, b) = p.api("GET", "/api/routes/user/alice", None).await;
    let after = json(&b)["last_activity"].as_str().expect("la").to_string();
    assert!(after > before, "{after} > {before}");
    p.get("/nope").await;

    let req = Request::get(format!("http://{}/metrics", p.metrics.expect("metrics")))
        .body(Full::default())
        .expect("req");
    let res = p.client.request(req).await.expect("metrics");
    let text = String::from_utf8(
        res.into_body()
            .collect()
            .await
            .expect("b")
            .to_bytes()
            .to_vec(),
    )
    .expect("utf8");
    assert!(text.contains("nbhub_proxy_requests_total 2\n"), "{text}");
    assert!(
        text.contains("nbhub_proxy_errors_total{code=\"404\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("nbhub_proxy_routes 1\n"), "{text}");
    assert!(text.contains("nbhub_proxy_websockets_active 0\n"), "{text}");
    p.shutdown().await;
}

/// Workers share the listening socket; a burst of new connections must not all land on the
/// first worker awake.
#[tokio::test]
async fn a_burst_of_connections_is_spread_over_the_workers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cfg = config();
    cfg.metrics_port = Some(0);
    cfg.workers = Some(2);
    let p = start_proxy(cfg).await;
    let up = echo_upstream("up").await;
    p.route_to("/", up).await;
    // 40 connections at once, each with one request answered and then held open.
    let conns = futures_util::future::join_all((0..40).map(|_| async {
        let mut c = tokio::net::TcpStream::connect(p.public)
            .await
            .expect("connect");
        c.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 1024];
        let n = with_deadline(Duration::from_secs(10), c.read(&mut buf))
            .await
            .expect("answer");
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
        c
    }))
    .await;
    let req = Request::get(format!("http://{}/metrics", p.metrics.expect("metrics")))
        .body(Full::default())
        .expect("req");
    let res = p.client.request(req).await.expect("metrics");
    let text = String::from_utf8_lossy(&res.into_body().collect().await.expect("b").to_bytes())
        .into_owned();
    let per_worker: Vec<u64> = (0..2)
        .map(|i| {
            let prefix = format!("nbhub_proxy_worker_connections{{worker=\"{i}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no count for worker {i} in\n{text}"))
        })
        .collect();
    assert_eq!(per_worker.iter().sum::<u64>(), 40, "{text}");
    assert!(
        per_worker.iter().all(|&n| n >= 10),
        "connections per worker: {per_worker:?}"
    );
    drop(conns);
    p.shutdown().await;
}

/// An idle keep-alive connection is closed after `--keep-alive-timeout` on every port, also
/// when hyper serves it. (Hyper alone left a few open under heavy load, which this test does
/// not reproduce; it checks that every kind of connection is closed, whichever timer does it.)
#[tokio::test]
async fn idle_keep_alive_connections_are_closed_on_every_port() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cfg = config();
    cfg.metrics_port = Some(0);
    cfg.keep_alive_timeout = Duration::from_secs(1);
    let p = start_proxy(cfg).await;
    let up = echo_upstream("up").await;
    p.route_to("/", up).await;
    // API clients as the hub has them: keep-alive, several requests each.
    let clients: Vec<_> = futures_util::future::join_all((0..40).map(|i| async move {
        let client = crate::common::client();
        for r in 0..3 {
            let req = Request::post(format!("http://{}/api/routes/c{i}/{r}", p.api))
                .header("authorization", format!("token {TOKEN}"))
                .body(Full::new(Bytes::from(format!(
                    r#"{{"target": "http://{up}"}}"#
                ))))
                .expect("req");
            let res = client.request(req).await.expect("api");
            assert_eq!(res.status(), StatusCode::CREATED);
        }
        client
    }))
    .await;
    // Raw connections: the lean path, one handed to hyper (HTTP/1.0 keep-alive), metrics.
    let metrics = p.metrics.expect("metrics");
    let mut raw = Vec::new();
    for (addr, req) in [
        (p.public, &b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"[..]),
        (
            p.public,
            b"GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        ),
        (metrics, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
    ] {
        let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
        c.write_all(req).await.expect("write");
        raw.push(c);
    }
    for c in &mut raw {
        // Its answer, then the close: read to the end within the deadline.
        let mut all = Vec::new();
        with_deadline(Duration::from_secs(10), c.read_to_end(&mut all))
            .await
            .expect("read");
        assert!(
            all.starts_with(b"HTTP/1."),
            "{:?}",
            String::from_utf8_lossy(&all)
        );
    }
    // The API clients' connections are closed by the proxy too: only a scrape's own remains.
    let murl = format!("http://{metrics}/metrics");
    let scrape = crate::common::client();
    let open = with_deadline(Duration::from_secs(10), async {
        loop {
            let req = Request::get(&murl).body(Full::default()).expect("req");
            let res = scrape.request(req).await.expect("metrics");
            let text = res.into_body().collect().await.expect("body").to_bytes();
            let text = String::from_utf8_lossy(&text).into_owned();
            let open = text
                .lines()
                .find_map(|l| l.strip_prefix("nbhub_proxy_connections_active "))
                .and_then(|v| v.parse::<i64>().ok())
                .expect("gauge");
            if open <= 1 {
                return open;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(open, 1);
    drop(clients);
    p.shutdown().await;
}

/// Size of the streamed bodies: 2 GiB each way by default (about 2 s in a debug build);
/// NBHUB_STREAM_MIB overrides it.
fn stream_mib() -> u64 {
    std::env::var("NBHUB_STREAM_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2048)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_with_flat_memory() {
    const CHUNK: usize = 256 * 1024;
    let total = stream_mib() * 1024 * 1024;
    let p = start_proxy(config()).await;
    // Upstream: counts what it is sent, and sends `total` bytes back, chunk by chunk.
    let up = upstream(move |req: Request<hyper::body::Incoming>| async move {
        if req.method() == http::Method::POST {
            let mut body = req.into_body();
            let mut n = 0u64;
            while let Some(f) = body.frame().await {
                if let Ok(d) = f.expect("frame").into_data() {
                    n += d.len() as u64;
                }
            }
            return Response::new(boxed(n.to_string()));
        }
        let chunk = Bytes::from(vec![7u8; CHUNK]);
        let chunks = total / CHUNK as u64;
        let s = futures_util::stream::iter(
            (0..chunks).map(move |_| Ok::<_, std::convert::Infallible>(Frame::data(chunk.clone()))),
        );
        Response::new(BodyExt::boxed(StreamBody::new(s)))
    })
    .await;
    p.route_to("/big", up).await;
    let rss0 = rss_kib();
    let start = std::time::Instant::now();

    // Download.
    let res = p
        .client
        .request(
            Request::get(format!("http://{}/big", p.public))
                .body(Full::default())
                .expect("r"),
        )
        .await
        .expect("get");
    let mut body = res.into_body();
    let mut got = 0u64;
    let mut peak = rss0;
    while let Some(f) = body.frame().await {
        if let Ok(d) = f.expect("frame").into_data() {
            got += d.len() as u64;
            if got % (64 << 20) < d.len() as u64 {
                peak = peak.max(rss_kib());
            }
        }
    }
    assert_eq!(got, total);

    // Upload: a streamed request body through a raw hyper connection.
    let s = tokio::net::TcpStream::connect(p.public)
        .await
        .expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let chunk = Bytes::from(vec![9u8; CHUNK]);
    let chunks = total / CHUNK as u64;
    let stream = futures_util::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::convert::Infallible>(Frame::data(chunk.clone()))),
    );
    let req = Request::post("/big/upload")
        .header("host", "x")
        .body(StreamBody::new(stream))
        .expect("r");
    let res = send.send_request(req).await.expect("post");
    assert_eq!(res.status(), StatusCode::OK);
    let n = res.into_body().collect().await.expect("b").to_bytes();
    assert_eq!(n, total.to_string());
    peak = peak.max(rss_kib());
    let grew = peak.saturating_sub(rss0);
    eprintln!(
        "streamed {} MiB each way in {:?}; RSS grew {grew} KiB",
        total >> 20,
        start.elapsed()
    );
    // The proxy, upstream and client share this process: all of them together must stay flat.
    assert!(
        grew < 64 * 1024,
        "RSS grew {grew} KiB while streaming {} MiB",
        total >> 20
    );
    p.shutdown().await;
}

#[tokio::test]
#[allow(clippy::result_large_err)] // tungstenite's handshake callback signature
async fn websocket_echo_through_the_proxy() {
    use tokio_tungstenite::tungstenite::Message;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let ws_addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut proto = String::new();
                let cb = |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                          res: tokio_tungstenite::tungstenite::handshake::server::Response| {
                    proto = req
                        .headers()
                        .get("x-forwarded-proto")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    Ok(res)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(s, cb).await else {
                    return;
                };
                let _ = ws.send(Message::text(format!("proto={proto}"))).await;
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_close() {
                        break;
                    }
                    if ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let mut cfg = config();
    cfg.metrics_port = Some(0);
    let p = start_proxy(cfg).await;
    p.route_to("/user/alice", ws_addr).await;
    let (_, b) = p.api("GET", "/api/routes/user/alice", None).await;
    let before = json(&b)["last_activity"].as_str().expect("la").to_string();

    let url = format!("ws://{}/user/alice/api/kernels/k/channels", p.public);
    let (mut ws, resp) = with_deadline(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .expect("ws connect");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    let first = ws.next().await.expect("msg").expect("msg");
    assert_eq!(first.into_text().expect("text").as_str(), "proto=ws");
    for i in 0..100 {
        ws.send(Message::text(format!("hello {i}")))
            .await
            .expect("send");
        let m = ws.next().await.expect("echo").expect("echo");
        assert_eq!(m.into_text().expect("text").as_str(), format!("hello {i}"));
    }
    let big = vec![1u8; 1 << 20];
    ws.send(Message::binary(big.clone())).await.expect("send");
    assert!(ws.next().await.expect("echo").expect("echo").into_data() == big);
    let (_, b) = p.api("GET", "/api/routes/user/alice", None).await;
    let after = json(&b)["last_activity"].as_str().expect("la").to_string();
    assert!(after >= before);
    ws.close(None).await.expect("close");
    drop(ws);

    // The websocket gauge returns to 0 once both sides are closed.
    let murl = format!("http://{}/metrics", p.metrics.expect("m"));
    with_deadline(Duration::from_secs(10), async {
        loop {
            let res = p
                .client
                .request(Request::get(&murl).body(Full::default()).expect("r"))
                .await
                .expect("m");
            let t = res.into_body().collect().await.expect("b").to_bytes();
            let t = String::from_utf8_lossy(&t);
            if t.contains("nbhub_proxy_websockets_active 0\n")
                && t.contains("nbhub_proxy_websockets_total 1\n")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // A websocket to a dead target gets the error status.
    let dead = closed_port().await;
    p.add_route("/user/bob", &format!("http://127.0.0.1:{dead}"))
        .await;
    let err = tokio_tungstenite::connect_async(format!("ws://{}/user/bob/x", p.public))
        .await
        .expect_err("must fail");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(r) => {
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE)
        }
        e => panic!("unexpected {e}"),
    }
    p.shutdown().await;
}

#[tokio::test]
async fn tls_http1_and_http2() {
    let dir = tempfile::tempdir().expect("tmp");
    let (cfg, ck) = tls_config(dir.path());
    let p = start_proxy(cfg).await;
    let up = echo_upstream("up").await;
    p.route_to("/", up).await;

    for (alpn, version) in [
        (&b"http/1.1"[..], http::Version::HTTP_11),
        (&b"h2"[..], http::Version::HTTP_2),
    ] {
        let tls = tls_connect(p.public, &ck, alpn).await;
        let io = hyper_util::rt::TokioIo::new(tls);
        let res = if version == http::Version::HTTP_2 {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .expect("h2");
            tokio::spawn(conn);
            let req = Request::get(format!("https://localhost:{}/tls?x", p.public.port()))
                .body(Full::<Bytes>::default())
                .expect("r");
            send.send_request(req).await.expect("send")
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.expect("h1");
            tokio::spawn(conn);
            let req = Request::get("/tls?x")
                .header("host", format!("localhost:{}", p.public.port()))
                .body(Full::<Bytes>::default())
                .expect("r");
            send.send_request(req).await.expect("send")
        };
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.version(), version);
        let b = res.into_body().collect().await.expect("b").to_bytes();
        let v = json(&String::from_utf8_lossy(&b));
        assert_eq!(v["url"], "/tls?x");
        assert_eq!(v["headers"]["x-forwarded-proto"], "https");
        assert_eq!(
            v["headers"]["host"],
            format!("localhost:{}", p.public.port())
        );
    }
    p.shutdown().await;
}

/// An HTTP/2 connection over TLS that sends nothing more is closed after the idle timeout, as
/// HTTP/1 ones are (hyper's HTTP/2 server alone kept it for ever: a slow client's way to hold
/// a connection, issue 20 point 4).
#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut cfg, ck) = tls_config(dir.path());
    cfg.keep_alive_timeout = Duration::from_secs(1);
    let p = start_proxy(cfg).await;
    let up = echo_upstream("up").await;
    p.route_to("/", up).await;
    let io = hyper_util::rt::TokioIo::new(tls_connect(p.public, &ck, b"h2").await);
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .expect("h2");
    let conn = tokio::spawn(conn);
    let req = Request::get(format!("https://localhost:{}/x", p.public.port()))
        .body(Full::<Bytes>::default())
        .expect("r");
    let res = send.send_request(req).await.expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    res.into_body().collect().await.expect("body");
    let start = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("the idle HTTP/2 connection was still open after 10 s")
        .expect("join")
        .expect("a clean close");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    p.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(rx)));
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started_tx = std::sync::Arc::new(std::sync::Mutex::new(Some(started_tx)));
    let up = upstream(move |_req| {
        let rx = rx.clone();
        let started_tx = started_tx.clone();
        async move {
            if let Some(t) = started_tx.lock().expect("l").take() {
                let _ = t.send(());
            }
            if let Some(rx) = rx.lock().await.take() {
                let _ = rx.await;
            }
            Response::new(boxed("done"))
        }
    })
    .await;
    let p = start_proxy(config()).await;
    p.route_to("/", up).await;
    let public = p.public;
    let client = p.client.clone();
    let inflight = tokio::spawn(async move {
        let res = client
            .request(
                Request::get(format!("http://{public}/slow"))
                    .body(Full::default())
                    .expect("r"),
            )
            .await
            .expect("in-flight request");
        (
            res.status(),
            res.into_body().collect().await.expect("b").to_bytes(),
        )
    });
    started_rx.await.expect("started");
    let stopping = tokio::spawn(p.shutdown());
    // New connections are refused once the listeners are closed.
    with_deadline(Duration::from_secs(10), async {
        while tokio::net::TcpStream::connect(public).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let _ = tx.send(());
    let (s, b) = with_deadline(Duration::from_secs(10), inflight)
        .await
        .expect("join");
    assert_eq!((s, &b[..]), (StatusCode::OK, &b"done"[..]));
    with_deadline(Duration::from_secs(10), stopping)
        .await
        .expect("stopped");
}

#[tokio::test]
async fn https_targets_with_client_ca() {
    let dir = tempfile::tempdir().expect("tmp");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ck.cert.pem()).expect("w");
    // An HTTPS upstream with that certificate.
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.key_pair.serialize_der()).expect("key");
    let sc = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("v")
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(sc));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let svc =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        Ok::<_, std::convert::Infallible>(Response::new(boxed(format!(
                            "secure {}",
                            req.uri()
                        ))))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });

    let mut cfg = config();
    cfg.client_tls.ca = Some(ca);
    let p = start_proxy(cfg).await;
    p.add_route("/svc", &format!("https://localhost:{port}"))
        .await;
    for _ in 0..3 {
        let (s, _, b) = p.get("/svc/x?y=1").await;
        assert_eq!((s, b.as_str()), (StatusCode::OK, "secure /svc/x?y=1"));
    }
    p.shutdown().await;

    // Without a CA that trusts it, the target is unreachable: 503.
    let mut cfg = config();
    cfg.client_tls.ca = Some(dir.path().join("ca.pem"));
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    std::fs::write(dir.path().join("ca.pem"), other.cert.pem()).expect("w");
    let p = start_proxy(cfg).await;
    p.add_route("/svc", &format!("https://localhost:{port}"))
        .await;
    let (s, _, _) = p.get("/svc/x").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    p.shutdown().await;
}

#[tokio::test]
async fn cleartext_http2_prior_knowledge() {
    let up = echo_upstream("up").await;
    let p = proxy_to(up).await;
    let tcp = tokio::net::TcpStream::connect(p.public)
        .await
        .expect("connect");
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2c");
    tokio::spawn(conn);
    let req = Request::get("http://hub.example.org:8000/user/x?h2=1")
        .body(Full::<Bytes>::default())
        .expect("r");
    let res = send.send_request(req).await.expect("send");
    assert_eq!(res.version(), http::Version::HTTP_2);
    let b = res.into_body().collect().await.expect("b").to_bytes();
    let v = json(&String::from_utf8_lossy(&b));
    assert_eq!(v["url"], "/user/x?h2=1");
    // The :authority becomes Host for the HTTP/1.1 target.
    assert_eq!(v["headers"]["host"], "hub.example.org:8000");
    assert_eq!(v["headers"]["x-forwarded-port"], "8000");
    p.shutdown().await;
}
