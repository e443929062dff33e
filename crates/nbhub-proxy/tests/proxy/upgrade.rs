//! Upgrade in place and routes that survive a crash (docs/proxy.md#upgrade-in-place), with
//! the built binary as real processes: a new process takes the sockets and routes over under
//! load while websockets stay open; a new process that fails before it is ready leaves the old
//! one serving; a proxy killed with -9 and started again with its routes file serves every
//! route at once.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::common;

/// The proxy binary as a process; killed (-9) when dropped if still running.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn start(args: &[&str]) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nbhub-proxy"));
        cmd.args(args);
        Proc::spawn(cmd)
    }

    /// `cmd` (which runs the proxy) with the test token, its stderr read line by line.
    fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .env("CONFIGPROXY_AUTH_TOKEN", common::TOKEN)
            .env("NBHUB_PROXY_WORKERS", "2")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nbhub-proxy");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    // Nobody listens any more: keep draining so the proxy never blocks.
                    continue;
                }
            }
        });
        Proc { child, lines }
    }

    /// The first line containing `prefix` (up to 30 s), or `None` if the process ended.
    fn wait_line(&self, prefix: &str) -> Option<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(prefix) => return Some(l),
                Ok(l) => seen.push(l),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    eprintln!("process output:\n{}", seen.join("\n"));
                    return None;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "no line {prefix:?} within 30 s; output:\n{}",
                        seen.join("\n")
                    )
                }
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it exits within `d`.
    fn exits_within(&mut self, d: Duration) -> bool {
        let deadline = std::time::Instant::now() + d;
        while std::time::Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Public and API address from the ready line.
fn addrs(ready: &str) -> (SocketAddr, SocketAddr) {
    let a: Vec<SocketAddr> = ready
        .split("://")
        .skip(1)
        .map(|s| s.split(',').next().unwrap_or("").parse().expect("addr"))
        .collect();
    (a[0], a[1])
}

const LOCAL: [&str; 8] = common::LOCAL_PORTS;

/// A proxy on free local ports with `extra` flags, ready; its public and API addresses.
fn start_ready(extra: &[&str]) -> (Proc, SocketAddr, SocketAddr) {
    let mut args = LOCAL.to_vec();
    args.extend(extra);
    let p = Proc::start(&args);
    let (public, api) = addrs(&p.wait_line("nbhub-proxy listening on").expect("ready"));
    (p, public, api)
}

async fn add_route(api: SocketAddr, path: &str, target: SocketAddr) {
    let req = Request::post(format!("http://{api}/api/routes{path}"))
        .header("authorization", format!("token {}", common::TOKEN))
        .body(Full::new(Bytes::from(format!(
            r#"{{"target": "http://{target}"}}"#
        ))))
        .expect("req");
    let res = common::client().request(req).await.expect("api");
    assert_eq!(res.status(), StatusCode::CREATED);
}

/// One request on a connection of its own: the status, or how it failed (`Err(true)`: the
/// connection was refused).
async fn fresh_get(public: SocketAddr, path: &str) -> Result<u16, bool> {
    let mut s = match tokio::net::TcpStream::connect(public).await {
        Ok(s) => s,
        Err(e) => return Err(e.kind() == std::io::ErrorKind::ConnectionRefused),
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.map_err(|_| false)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.map_err(|_| false)?;
    let text = String::from_utf8_lossy(&out);
    text.get(9..12)
        .and_then(|c| c.parse().ok())
        .filter(|_| text.starts_with("HTTP/1.1 "))
        .ok_or(false)
}

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    fresh: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    ws_messages: AtomicU64,
    ws_failed: AtomicU64,
}

/// Acceptance 1's correctness: five upgrades in a row under a load of new connections (at
/// least 200/s), keep-alive requests and 50 websockets echoing through the proxy: no
/// connection refused, no request failed, no websocket closed, and a route added during each
/// upgrade is served by the new process. The old processes drain and exit once their
/// websockets close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_upgrades_under_load_lose_nothing() {
    const UPGRADES: usize = 5;
    const WEBSOCKETS: usize = 50;
    let dir = tempfile::tempdir().expect("tmp");
    let sock = dir.path().join("proxy.handover");
    let sock_arg = sock.to_str().expect("path");
    let (first, public, api) = start_ready(&["--handover-socket", sock_arg, "--log-level", "warn"]);
    let http_up = common::echo_upstream("up").await;
    let ws_up = common::ws_echo_server().await;
    add_route(api, "/", http_up).await;
    add_route(api, "/ws", ws_up).await;

    let counts = Arc::new(Counts::default());
    let started = std::time::Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    // New connections, one request each.
    for _ in 0..2 {
        let (c, stop) = (counts.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(4));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                c.requests.fetch_add(1, Ordering::Relaxed);
                c.fresh.fetch_add(1, Ordering::Relaxed);
                match fresh_get(public, "/new").await {
                    Ok(200) => {}
                    Ok(s) => panic!("fresh connection: status {s}"),
                    Err(true) => drop(c.refused.fetch_add(1, Ordering::Relaxed)),
                    Err(false) => drop(c.failed.fetch_add(1, Ordering::Relaxed)),
                }
            }
        }));
    }
    // Keep-alive requests; the client lets an idle connection go before the proxy's
    // keep-alive timeout (5 s), as clients should.
    for _ in 0..2 {
        let (c, stop) = (counts.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(2))
                    .build_http::<Full<Bytes>>();
            let mut tick = tokio::time::interval(Duration::from_millis(4));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                c.requests.fetch_add(1, Ordering::Relaxed);
                let req = Request::get(format!("http://{public}/keep"))
                    .body(Full::default())
                    .expect("req");
                let ok = match client.request(req).await {
                    Ok(res) => {
                        res.status() == StatusCode::OK && res.into_body().collect().await.is_ok()
                    }
                    Err(e) => {
                        eprintln!("keep-alive request failed: {e:?}");
                        false
                    }
                };
                if !ok {
                    c.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Websockets, each echoing a message every 50 ms until told to stop; then closed by us.
    let mut sockets = Vec::new();
    for w in 0..WEBSOCKETS {
        let (c, stop) = (counts.clone(), stop.clone());
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{public}/ws/{w}"))
            .await
            .expect("websocket");
        sockets.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let text = format!("{w}:{n}");
                let echoed = async {
                    ws.send(Message::text(text.clone())).await.ok()?;
                    let m = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
                    m.ok()??.ok()
                };
                match echoed.await {
                    Some(Message::Text(t)) if t.as_str() == text => {
                        c.ws_messages.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        eprintln!("websocket {w}: {other:?}");
                        c.ws_failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
            let _ = ws.close(None).await;
            while let Some(Ok(_)) = ws.next().await {}
        }));
    }

    let mut procs = vec![first];
    for i in 0..UPGRADES {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = counts.requests.load(Ordering::Relaxed);
        let mut args = LOCAL.to_vec();
        args.extend(["--take-over", sock_arg, "--log-level", "warn"]);
        let next = Proc::start(&args);
        // A route added while the two processes overlap, through whichever takes the call.
        let path = format!("/added{i}");
        add_route(api, &path, http_up).await;
        let line = tokio::task::block_in_place(|| next.wait_line("nbhub-proxy took over"));
        assert!(line.is_some(), "upgrade {i} did not complete");
        // A fresh connection now reaches the new process only.
        let got = fresh_get(public, &format!("{path}/x")).await;
        assert_eq!(got, Ok(200), "route added during upgrade {i}");
        assert!(
            counts.requests.load(Ordering::Relaxed) > before,
            "the load ran during upgrade {i}"
        );
        procs.push(next);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    for t in load {
        t.await.expect("load task");
    }
    for t in sockets {
        t.await.expect("websocket task");
    }
    let (requests, refused, failed) = (
        counts.requests.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
    );
    let (ws_messages, ws_failed) = (
        counts.ws_messages.load(Ordering::Relaxed),
        counts.ws_failed.load(Ordering::Relaxed),
    );
    let fresh_rate = counts.fresh.load(Ordering::Relaxed) as f64 / secs;
    eprintln!(
        "{requests} requests ({refused} refused, {failed} failed; {fresh_rate:.0} new \
         connections/s), {ws_messages} websocket echoes ({ws_failed} websockets lost) over \
         {UPGRADES} upgrades in {secs:.1} s"
    );
    assert_eq!((refused, failed, ws_failed), (0, 0, 0));
    assert!(fresh_rate >= 200.0, "too few new connections");
    assert!(
        ws_messages >= (WEBSOCKETS * 10) as u64,
        "too few websocket echoes"
    );
    // The old processes drain: with their websockets closed and idle connections timed out,
    // each exits by itself; the newest serves on.
    let mut newest = procs.pop().expect("newest");
    for (i, p) in procs.iter_mut().enumerate() {
        let exited = tokio::task::block_in_place(|| p.exits_within(Duration::from_secs(20)));
        assert!(
            exited,
            "process {i} (pid {}) did not exit after draining",
            p.pid()
        );
    }
    assert!(!newest.exits_within(Duration::from_millis(10)));
    assert_eq!(fresh_get(public, "/added0/y").await, Ok(200));
}

/// A new process that fails before it is ready (here: a TLS key it cannot read, found only
/// after it received the sockets and routes) leaves the old one serving as before, and a
/// later upgrade still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_process_that_fails_before_ready_changes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let sock = dir.path().join("proxy.handover");
    let sock_arg = sock.to_str().expect("path");
    let (old, public, api) = start_ready(&["--handover-socket", sock_arg]);
    let about = nbhub_proxy::handover::query(&sock).expect("query");
    assert_eq!(about, (old.pid(), env!("CARGO_PKG_VERSION").to_string()));
    let up = common::echo_upstream("up").await;
    add_route(api, "/a", up).await;

    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().expect("path");
    let mut args = LOCAL.to_vec();
    args.extend([
        "--take-over",
        sock_arg,
        "--ssl-key",
        missing,
        "--ssl-cert",
        missing,
    ]);
    let mut failing = Proc::start(&args);
    let exited = tokio::task::block_in_place(|| failing.exits_within(Duration::from_secs(30)));
    assert!(exited, "the failing process did not exit");
    assert!(!failing
        .child
        .try_wait()
        .expect("wait")
        .expect("status")
        .success());
    // The old one got the failure and serves on: the old route, a new one, the API.
    let why = tokio::task::block_in_place(|| old.wait_line("handover failed, serving on"));
    assert!(why.is_some(), "the old process did not see the failure");
    assert_eq!(fresh_get(public, "/a/x").await, Ok(200));
    add_route(api, "/b", up).await;
    assert_eq!(fresh_get(public, "/b/x").await, Ok(200));
    assert_eq!(fresh_get(public, "/nothing").await, Ok(404));

    // And it can still be upgraded.
    let mut args = LOCAL.to_vec();
    args.extend(["--take-over", sock_arg]);
    let next = Proc::start(&args);
    let line = tokio::task::block_in_place(|| next.wait_line("nbhub-proxy took over"));
    assert_eq!(
        line,
        Some(format!("nbhub-proxy took over from pid {}", old.pid()))
    );
    assert_eq!(fresh_get(public, "/b/x").await, Ok(200));
}

/// Acceptance 2: a proxy killed with -9 and started again with its routes file serves every
/// route at once, with no hub to add them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("routes.json");
    let file_arg = file.to_str().expect("path");
    let (mut first, public, api) = start_ready(&["--routes-file", file_arg]);
    let ups = [
        common::echo_upstream("a").await,
        common::echo_upstream("b").await,
    ];
    let n = 40;
    for i in 0..n {
        add_route(api, &format!("/user/u{i}"), ups[i % 2]).await;
    }
    // The file follows the table (written off the request path, shortly after).
    let written = |p: &Path| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.as_object().map(|o| o.len()))
            == Some(n)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !written(&file) {
        assert!(
            std::time::Instant::now() < deadline,
            "routes file not written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.child.kill().expect("kill -9");
    first.child.wait().expect("wait");

    let port = public.port().to_string();
    let api_port = api.port().to_string();
    let second = Proc::start(&[
        "--ip",
        "127.0.0.1",
        "--port",
        &port,
        "--api-ip",
        "127.0.0.1",
        "--api-port",
        &api_port,
        "--routes-file",
        file_arg,
    ]);
    second.wait_line("nbhub-proxy listening on").expect("ready");
    let client = common::client();
    for i in 0..n {
        let req = Request::get(format!("http://{public}/user/u{i}/x"))
            .body(Full::default())
            .expect("req");
        let res = client.request(req).await.expect("request");
        assert_eq!(res.status(), StatusCode::OK, "route /user/u{i}");
        let body = res.into_body().collect().await.expect("body").to_bytes();
        let v = common::json(&String::from_utf8_lossy(&body));
        assert_eq!(v["name"], ["a", "b"][i % 2], "route /user/u{i}");
    }
}

/// Draining, an HTTP/2 connection (TLS, ALPN h2) is told to go at once (GOAWAY), even while it
/// is busy, rather than held until the grace ends: its client opens a new connection, which
/// the new process serves. (HTTP/1 connections get `Connection: close` on their next answer.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_http2_connection_is_sent_away_when_draining() {
    let dir = tempfile::tempdir().expect("tmp");
    let (tls, ck) = common::self_signed_tls(dir.path());
    let sock = dir.path().join("proxy.handover");
    let (sock_arg, key, cert) = (
        sock.to_str().expect("path"),
        tls.key.to_str().expect("path"),
        tls.cert.to_str().expect("path"),
    );
    // Idle connections would be closed only after ten minutes: not what ends this one.
    let tls_args = [
        "--ssl-key",
        key,
        "--ssl-cert",
        cert,
        "--keep-alive-timeout",
        "600000",
    ];
    let mut args = vec!["--handover-socket", sock_arg];
    args.extend(tls_args);
    let (_old, public, api) = start_ready(&args);
    add_route(api, "/", common::echo_upstream("up").await).await;
    let io = hyper_util::rt::TokioIo::new(common::tls_connect(public, &ck, b"h2").await);
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .expect("h2");
    let conn = tokio::spawn(conn);
    let url = format!("https://localhost:{}/x", public.port());
    let get = |send: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>| {
        let req = Request::get(&url).body(Full::default()).expect("r");
        send.send_request(req)
    };
    assert_eq!(get(&mut send).await.expect("h2 request").status(), 200);
    // Busy: a request every 50 ms until the connection is sent away.
    let busy = tokio::spawn(async move {
        let mut ok = 0;
        while send.ready().await.is_ok() {
            let req = Request::get(format!("https://localhost:{}/x", public.port()))
                .body(Full::default())
                .expect("r");
            match send.send_request(req).await {
                Ok(r) if r.status() == 200 => ok += 1,
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ok
    });
    let mut args = vec!["--take-over", sock_arg];
    args.extend(tls_args);
    let next = Proc::start(&args);
    let line = tokio::task::block_in_place(|| next.wait_line("nbhub-proxy took over"));
    assert!(line.is_some(), "the upgrade did not complete");
    tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("the HTTP/2 connection was still open 5 s after the handover")
        .expect("join")
        .expect("a clean close (GOAWAY)");
    assert!(busy.await.expect("join") > 0);
    // A new connection reaches the new process.
    let io = hyper_util::rt::TokioIo::new(common::tls_connect(public, &ck, b"h2").await);
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .expect("h2");
    tokio::spawn(conn);
    assert_eq!(get(&mut send).await.expect("h2 request").status(), 200);
}

/// One upgrade at a time: while a taker holds the handover (here one that received the
/// sockets and then says nothing, as a new process stuck before it is ready would), a second
/// one is refused with a clear message; once the first goes away without saying `ready`, the
/// old process serves on, and the next taker takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_upgrade_at_a_time() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tmp");
    let sock = dir.path().join("proxy.handover");
    let sock_arg = sock.to_str().expect("path");
    let (old, public, api) = start_ready(&["--handover-socket", sock_arg]);
    add_route(api, "/a", common::echo_upstream("up").await).await;

    let mut stuck = std::os::unix::net::UnixStream::connect(&sock).expect("connect");
    stuck
        .write_all(b"{\"take_over\":{\"pid\":1,\"version\":\"0\"}}\n")
        .expect("hello");
    let mut first = [0u8; 1];
    stuck.read_exact(&mut first).expect("sockets");
    assert_eq!(&first, b"F");

    let mut second = Proc::start(&["--take-over", sock_arg]);
    let refused = tokio::task::block_in_place(|| second.wait_line("nbhub-proxy: error"));
    let refused = refused.expect("an error line");
    assert!(
        refused.contains("an upgrade is already in progress"),
        "{refused}"
    );
    assert!(tokio::task::block_in_place(
        || second.exits_within(Duration::from_secs(10))
    ));
    assert_eq!(fresh_get(public, "/a/x").await, Ok(200));

    drop(stuck);
    let why = tokio::task::block_in_place(|| old.wait_line("handover failed, serving on"));
    assert!(why.is_some(), "the old process did not see the taker go");
    assert_eq!(fresh_get(public, "/a/x").await, Ok(200));
    let next = Proc::start(&["--take-over", sock_arg]);
    let line = tokio::task::block_in_place(|| next.wait_line("nbhub-proxy took over"));
    assert_eq!(
        line,
        Some(format!("nbhub-proxy took over from pid {}", old.pid()))
    );
    assert_eq!(fresh_get(public, "/a/x").await, Ok(200));
}

/// Sockets from systemd (`systemd-socket-activate`, which binds them, passes them with
/// `LISTEN_FDS`/`LISTEN_FDNAMES` and starts the proxy at the first connection): the proxy
/// serves them, named public and api, instead of the ports its flags name; a request sent
/// before the proxy runs waits on the socket and is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_from_systemd() {
    let Ok(activate) = which("systemd-socket-activate") else {
        nbhub_testkit::missing_part(
            "systemd-socket-activate",
            "the systemd package (apt-get install systemd)",
        );
        return;
    };
    let (public, api) = (nbhub_testkit::free_port(), nbhub_testkit::free_port());
    let mut cmd = Command::new(activate);
    cmd.args(["-l", &format!("127.0.0.1:{public}")])
        .args(["-l", &format!("127.0.0.1:{api}")])
        .args(["--fdname=public:api", "-E", "CONFIGPROXY_AUTH_TOKEN"])
        .arg(env!("CARGO_BIN_EXE_nbhub-proxy"))
        .args(LOCAL);
    let proxy = Proc::spawn(cmd);
    let api_addr: SocketAddr = format!("127.0.0.1:{api}").parse().expect("addr");
    // systemd-socket-activate listens before it starts the proxy: wait for its socket.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(api_addr).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "no socket from systemd-socket-activate"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    add_route(api_addr, "/a", common::echo_upstream("up").await).await;
    let ready = tokio::task::block_in_place(|| proxy.wait_line("nbhub-proxy listening on"));
    let (p, a) = addrs(&ready.expect("ready line"));
    assert_eq!((p.port(), a.port()), (public, api));
    let public_addr: SocketAddr = format!("127.0.0.1:{public}").parse().expect("addr");
    assert_eq!(fresh_get(public_addr, "/a/x").await, Ok(200));
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

/// A process that handed over and still relays a websocket sends that route's activity to
/// the new process (every 5 s), so that the hub, which reads `last_activity` from the new
/// one, does not take a user in the middle of their work for idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_process_reports_its_websockets_activity() {
    let dir = tempfile::tempdir().expect("tmp");
    let sock = dir.path().join("proxy.handover");
    let sock_arg = sock.to_str().expect("path");
    let (_old, public, api) = start_ready(&["--handover-socket", sock_arg]);
    add_route(api, "/ws", common::ws_echo_server().await).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{public}/ws/x"))
        .await
        .expect("websocket");
    let next = Proc::start(&["--take-over", sock_arg]);
    let line = tokio::task::block_in_place(|| next.wait_line("nbhub-proxy took over"));
    assert!(line.is_some(), "the upgrade did not complete");
    let last_activity = || async {
        let req = Request::get(format!("http://{api}/api/routes/ws"))
            .header("authorization", format!("token {}", common::TOKEN))
            .body(Full::default())
            .expect("req");
        let res = common::client().request(req).await.expect("api");
        let body = res.into_body().collect().await.expect("body").to_bytes();
        let v = common::json(&String::from_utf8_lossy(&body));
        nbhub_proxy::routes::parse_iso_date(v["last_activity"].as_str().expect("date"))
            .expect("ISO date")
    };
    let at_handover = last_activity().await;
    // Traffic on the websocket, which only the old process relays, for a little over one
    // report interval.
    let until = std::time::Instant::now() + Duration::from_millis(6500);
    while std::time::Instant::now() < until {
        ws.send(Message::text("x")).await.expect("send");
        assert!(matches!(ws.next().await, Some(Ok(Message::Text(_)))));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reported = last_activity().await;
    assert!(
        reported >= at_handover + 4000,
        "last_activity moved from {at_handover} to {reported} only"
    );
}
