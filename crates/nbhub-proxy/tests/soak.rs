//! Acceptance 4: the proxy binary under load, with websocket clients connecting and
//! disconnecting (cleanly and abruptly) and HTTP traffic, keeps its open sockets and RSS flat.
//! In the same run, requests with and without bodies go to a target that closes keep-alive
//! connections at random and refuses some uploads before reading them (then resets the
//! connection): not one of those requests may fail, and every early answer must reach the
//! client as the target sent it.
//!
//! Duration: `NBHUB_SOAK_SECS`, else 120 s when CI=true, else 20 s. The load is paced so the
//! test stays cheap on 2 cores. The long soak (10 minutes and more) is `bench/proxy-soak`.
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Request;
use http_body_util::{BodyExt, Full};
use tokio_tungstenite::tungstenite::Message;

struct ProxyProcess(Child);

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    common::rss_kib_of(pid).unwrap_or(0)
}

/// The value of `nbhub_proxy_<name>` in a metrics text.
fn gauge(text: &str, name: &str) -> i64 {
    let prefix = format!("nbhub_proxy_{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(i64::MAX)
}

/// The proxy's TCP sockets as `ss` shows them (for failure messages).
fn sockets(pid: u32) -> String {
    let out = Command::new("ss").args(["-tanp"]).output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let needle = format!("pid={pid},");
    text.lines()
        .filter(|l| l.contains(&needle))
        .collect::<Vec<_>>()
        .join("\n")
}

fn soak_secs() -> u64 {
    if let Some(s) = std::env::var("NBHUB_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return s;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        120
    } else {
        20
    }
}

/// What the flaky target did, for the report and to check that it did it.
#[derive(Default)]
struct Flaky {
    early: AtomicU64,
    closes: AtomicU64,
}

/// A raw HTTP/1.1 target. `POST /<route>/<n>/early` is refused at once with a `405` and a
/// close without reading its body (the kernel resets the connection); anything else has its
/// body read and is answered `200 ok <n> <body length>`, after which, if `close_at_random`,
/// one connection in four is closed without a word, as a server closing idle keep-alive
/// connections does.
async fn flaky_target(seen: Arc<Flaky>, close_at_random: bool) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            // An answer written goes out at once (no Nagle delay), so the reset that follows
            // an early answer cannot discard it before it left.
            let _ = s.set_nodelay(true);
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = vec![0u8; 64 * 1024];
                loop {
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    buf.drain(..end);
                    let path = head.split(' ').nth(1).unwrap_or("").to_string();
                    let n = path.split('/').nth(2).unwrap_or("?").to_string();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if path.ends_with("/early") {
                        let body = format!("early {n}");
                        let answer = format!(
                            "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: {}\r\n\
                             Connection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = s.write_all(answer.as_bytes()).await;
                        seen.early.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    while buf.len() < length {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                    }
                    buf.drain(..length);
                    let body = format!("ok {n} {length}");
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                    let hash = n
                        .bytes()
                        .fold(7u32, |h, b| h.wrapping_mul(31) ^ u32::from(b));
                    if close_at_random && hash % 4 == 0 {
                        seen.closes.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_sockets_and_rss_stay_flat() {
    let secs = soak_secs();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nbhub-proxy"))
        .args(common::LOCAL_PORTS)
        .args([
            "--metrics-ip",
            "127.0.0.1",
            "--metrics-port",
            "0",
            "--log-level",
            "warn",
        ])
        .env("CONFIGPROXY_AUTH_TOKEN", common::TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nbhub-proxy");
    let stderr = child.stderr.take().expect("stderr");
    let proxy = ProxyProcess(child);
    let pid = proxy.0.id();
    // Wait for the ready line, then keep draining stderr so the proxy never blocks on it.
    // The proxy's warnings (its 503s say why) are kept for failure messages.
    let (tx, rx) = std::sync::mpsc::channel();
    let warnings = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let warned = warnings.clone();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("nbhub-proxy listening on ") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(line);
                }
            } else if line.contains("flaky") {
                let mut w = warned.lock().unwrap_or_else(|e| e.into_inner());
                if w.len() < 20 {
                    w.push(line);
                }
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("ready line");
    // "nbhub-proxy listening on http://A, api on http://B, metrics on http://C"
    let addrs: Vec<String> = line
        .split("http://")
        .skip(1)
        .map(|s| s.split(',').next().unwrap_or("").to_string())
        .collect();
    let (public, api, metrics) = (addrs[0].clone(), addrs[1].clone(), addrs[2].clone());

    let http_up = common::echo_upstream("up").await;
    let ws_up = common::ws_echo_server().await;
    let dead = common::closed_port().await;
    let flaky = Arc::new(Flaky::default());
    let closing_up = flaky_target(flaky.clone(), true).await;
    let early_up = flaky_target(flaky.clone(), false).await;
    let client = common::client();
    for (route, target) in [
        ("/", format!("http://{http_up}")),
        ("/ws", format!("http://{ws_up}")),
        ("/dead", format!("http://127.0.0.1:{dead}")),
        ("/flaky-close", format!("http://{closing_up}")),
        ("/flaky-early", format!("http://{early_up}")),
    ] {
        let req = Request::post(format!("http://{api}/api/routes{route}"))
            .header("authorization", format!("token {}", common::TOKEN))
            .body(Full::new(Bytes::from(format!(
                r#"{{"target": "{target}"}}"#
            ))))
            .expect("req");
        assert_eq!(client.request(req).await.expect("api").status(), 201);
    }

    // Before any traffic: listeners and one runtime per worker thread.
    let fd_base = fd_count(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    // Websocket clients: connect, a few messages, then close cleanly, drop abruptly, or
    // disconnect mid-handshake; one in ten goes to a dead target.
    for w in 0..4u64 {
        let (stop, ops, public) = (stop.clone(), ops.clone(), public.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(25));
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                i += 1;
                let path = if i % 10 == 0 { "dead" } else { "ws" };
                let url = format!("ws://{public}/{path}/x");
                let Ok(Ok((mut ws, _))) = tokio::time::timeout(
                    Duration::from_secs(5),
                    tokio_tungstenite::connect_async(url),
                )
                .await
                else {
                    continue;
                };
                for m in 0..5 {
                    if ws.send(Message::text(format!("m{m}"))).await.is_err() {
                        break;
                    }
                    let _ = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
                }
                if i % 3 == 0 {
                    let _ = ws.close(None).await;
                } // else: dropped without a close frame
                ops.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // HTTP: keep-alive requests, and fresh connections dropped before reading the answer.
    for h in 0..2u64 {
        let (stop, ops, public) = (stop.clone(), ops.clone(), public.clone());
        tasks.push(tokio::spawn(async move {
            let client = common::client();
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            let mut i = h;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                i += 1;
                if i % 20 == 0 {
                    if let Ok(mut s) = tokio::net::TcpStream::connect(&public).await {
                        use tokio::io::AsyncWriteExt;
                        let _ = s
                            .write_all(b"GET /abandoned HTTP/1.1\r\nHost: x\r\n\r\n")
                            .await;
                    }
                    continue;
                }
                let path = if i % 7 == 0 { "/dead/x" } else { "/hub/api" };
                let req = Request::get(format!("http://{public}{path}"))
                    .body(Full::default())
                    .expect("req");
                if let Ok(Ok(res)) =
                    tokio::time::timeout(Duration::from_secs(5), client.request(req)).await
                {
                    let _ = res.into_body().collect().await;
                }
                ops.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // The flaky targets. One closes keep-alive connections at random: GETs and 1 KB uploads,
    // which the proxy can send again when they meet a connection closed under them. The other
    // gets GETs and 1 KB and 100 KB uploads, some refused early; one upload in five says
    // `Expect: 100-continue`, which hands the client connection to the general (hyper) path.
    // A request with a body streaming in cannot be sent again, so it cannot be saved from a
    // close it meets: the targets announce those closes, as servers do.
    let failures = Arc::new(std::sync::Mutex::new((0u64, Vec::<String>::new())));
    let checked = Arc::new(AtomicU64::new(0));
    for f in 0..2u64 {
        let (stop, checked, failures, public) = (
            stop.clone(),
            checked.clone(),
            failures.clone(),
            public.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // Idle connections are let go well before the proxy's keep-alive timeout, so no
            // request of ours crosses the proxy's close of an idle connection.
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(1))
                    .build_http::<Full<Bytes>>();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut i = f * 1_000_000_000;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                i += 1;
                let closing = f == 0;
                let (body_len, early) = match (closing, i % 6) {
                    (_, 0 | 1) | (true, 3) => (0, false),
                    (true, _) | (false, 2) => (1024, false),
                    (false, 3) => (1024, true),
                    (false, 4) => (100_000, false),
                    (false, _) => (100_000, true),
                };
                let route = if closing {
                    "flaky-close"
                } else {
                    "flaky-early"
                };
                let mut req = Request::builder()
                    .method(if body_len == 0 { "GET" } else { "POST" })
                    .uri(format!(
                        "http://{public}/{route}/{i}{}",
                        if early { "/early" } else { "" }
                    ));
                if !closing && i % 5 == 0 && body_len > 0 {
                    req = req.header("expect", "100-continue");
                }
                let req = req
                    .body(Full::new(Bytes::from(vec![b'b'; body_len])))
                    .expect("req");
                let want = if early {
                    (405, format!("early {i}"))
                } else {
                    (200, format!("ok {i} {body_len}"))
                };
                let got = match tokio::time::timeout(Duration::from_secs(10), client.request(req))
                    .await
                {
                    Ok(Ok(res)) => {
                        let status = res.status().as_u16();
                        match res.into_body().collect().await {
                            Ok(b) => {
                                Ok((status, String::from_utf8_lossy(&b.to_bytes()).into_owned()))
                            }
                            Err(e) => Err(format!("answer body: {e}")),
                        }
                    }
                    Ok(Err(e)) => Err(format!("{e:?}")),
                    Err(_) => Err("no answer within 10 s".into()),
                };
                checked.fetch_add(1, Ordering::Relaxed);
                if got.as_ref() != Ok(&want) {
                    let mut f = failures.lock().unwrap_or_else(|e| e.into_inner());
                    f.0 += 1;
                    if f.1.len() < 10 {
                        f.1.push(format!(
                            "request {i} ({body_len} B): wanted {want:?}, got {got:?}"
                        ));
                    }
                }
            }
        }));
    }

    let start = Instant::now();
    let warmup = Duration::from_secs((secs / 5).clamp(3, 60));
    let mut samples: Vec<(f64, usize, u64)> = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if start.elapsed() >= warmup {
            samples.push((start.elapsed().as_secs_f64(), fd_count(pid), rss_kib(pid)));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let done = ops.load(Ordering::Relaxed);
    let (failed, examples) = failures.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (checked, early, closes) = (
        checked.load(Ordering::Relaxed),
        flaky.early.load(Ordering::Relaxed),
        flaky.closes.load(Ordering::Relaxed),
    );
    eprintln!(
        "soak {secs} s, flaky targets: {checked} requests, {failed} failed; {early} refused early \
         with a reset, {closes} keep-alive connections closed unannounced"
    );
    assert!(
        failed == 0,
        "{failed} of {checked} requests to the flaky targets failed:\n{}\nthe proxy said:\n{}",
        examples.join("\n"),
        warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    );
    assert!(
        checked > secs * 20 && early > 0 && closes > 0,
        "too little flaky traffic: {checked} requests, {early} early answers, {closes} closes"
    );

    // Once the clients are gone the proxy must be back to its idle sockets.
    let metrics_url = format!("http://{metrics}/metrics");
    let deadline = Instant::now() + Duration::from_secs(15);
    let idle_text = loop {
        let res = client
            .request(
                Request::get(&metrics_url)
                    .body(Full::default())
                    .expect("req"),
            )
            .await
            .expect("metrics");
        let text = String::from_utf8_lossy(&res.into_body().collect().await.expect("b").to_bytes())
            .into_owned();
        // The metrics scrape itself is one connection.
        let idle = text.contains("nbhub_proxy_websockets_active 0\n")
            && gauge(&text, "connections_active") <= 1;
        if idle || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (end_fds, end_rss) = (fd_count(pid), rss_kib(pid));
    let n = samples.len().max(1);
    let q = (n / 4).max(1);
    let first: Vec<_> = samples[..q.min(samples.len())].to_vec();
    let last: Vec<_> = samples[samples.len().saturating_sub(q)..].to_vec();
    let avg = |v: &[(f64, usize, u64)], f: fn(&(f64, usize, u64)) -> f64| {
        v.iter().map(f).sum::<f64>() / v.len().max(1) as f64
    };
    let (fd0, fd1) = (avg(&first, |s| s.1 as f64), avg(&last, |s| s.1 as f64));
    let (rss0, rss1) = (avg(&first, |s| s.2 as f64), avg(&last, |s| s.2 as f64));
    let max_fds = samples.iter().map(|s| s.1).max().unwrap_or(0);
    eprintln!(
        "soak {secs} s: {done} client operations; proxy fds at start {fd_base}, under load {fd0:.0} -> {fd1:.0} (max {max_fds}), idle after {end_fds}; \
         RSS under load {:.1} -> {:.1} MiB, idle after {:.1} MiB",
        rss0 / 1024.0,
        rss1 / 1024.0,
        end_rss as f64 / 1024.0
    );
    assert!(done > secs * 10, "too little load was generated: {done}");
    let open = gauge(&idle_text, "connections_active");
    if open > 1 {
        eprintln!(
            "note: {open} client connections still open 15 s after the load \
             (public {public}, api {api}, metrics {metrics}):\n{}",
            sockets(pid)
        );
    }
    // Every websocket closed; client connections back to the scrape's own (one straggler that
    // is still being torn down is tolerated: a leak would be many).
    assert!(
        idle_text.contains("nbhub_proxy_websockets_active 0\n") && open <= 2,
        "connections left open after the load stopped:\n{idle_text}\n{}",
        sockets(pid)
    );
    // Back to the start, plus a few idle pooled upstream connections (closed after 60 s).
    assert!(
        end_fds <= fd_base + 16,
        "{end_fds} fds open in an idle proxy (at start: {fd_base})"
    );
    assert!(
        fd1 <= fd0 * 1.5 + 16.0,
        "open fds grew under steady load: {fd0:.0} -> {fd1:.0}"
    );
    assert!(
        rss1 <= rss0 * 1.25 + 8.0 * 1024.0,
        "RSS grew under steady load: {rss0:.0} -> {rss1:.0} KiB"
    );
    drop(proxy);
}
