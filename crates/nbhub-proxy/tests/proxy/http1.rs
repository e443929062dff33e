//! The lean HTTP/1.1 path on the wire: raw requests and raw targets, so that framing,
//! keep-alive, pipelining, hop-by-hop headers and the hand-over to the general path are seen
//! byte for byte.

use std::time::Duration;

use crate::common::*;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use nbhub_testkit::slow_request;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One answer read off a raw connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn read_line<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> String {
    let mut line = Vec::new();
    loop {
        let b = r.read_u8().await.expect("connection closed mid-head");
        line.push(b);
        if line.ends_with(b"\r\n") {
            line.truncate(line.len() - 2);
            return String::from_utf8(line).expect("utf-8 head");
        }
    }
}

/// Read one answer; `head` for answers to HEAD (no body whatever the length says).
async fn read_answer<R: AsyncRead + Unpin>(r: &mut BufReader<R>, head: bool) -> Answer {
    with_deadline(Duration::from_secs(10), async {
        let status_line = read_line(r).await;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let l = read_line(r).await;
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').expect("header line");
            headers.push((k.to_string(), v.trim().to_string()));
        }
        let mut a = Answer {
            status,
            headers,
            body: Vec::new(),
        };
        if head || status < 200 || status == 204 || status == 304 {
            return a;
        }
        if a.header("transfer-encoding") == Some("chunked") {
            loop {
                let size = read_line(r).await;
                let size = usize::from_str_radix(size.split(';').next().unwrap_or(""), 16)
                    .expect("chunk size");
                if size == 0 {
                    while !read_line(r).await.is_empty() {}
                    break;
                }
                let mut chunk = vec![0; size];
                r.read_exact(&mut chunk).await.expect("chunk");
                a.body.extend_from_slice(&chunk);
                assert!(read_line(r).await.is_empty(), "CRLF after a chunk");
            }
        } else if let Some(n) = a.header("content-length") {
            let mut body = vec![0; n.parse().expect("length")];
            r.read_exact(&mut body).await.expect("body");
            a.body = body;
        } else {
            r.read_to_end(&mut a.body).await.expect("body to the close");
        }
        a
    })
    .await
}

async fn connect(p: &Proxy) -> BufReader<TcpStream> {
    BufReader::new(TcpStream::connect(p.public).await.expect("connect"))
}

async fn send(r: &mut BufReader<TcpStream>, bytes: &[u8]) {
    r.get_mut().write_all(bytes).await.expect("write");
}

/// Send a request and read its answer (not to a HEAD request).
async fn ask(r: &mut BufReader<TcpStream>, bytes: &[u8]) -> Answer {
    send(r, bytes).await;
    read_answer(r, false).await
}

/// The connection was closed by the proxy (EOF, or a reset after unread data).
async fn assert_closed(r: &mut BufReader<TcpStream>) {
    let mut rest = Vec::new();
    let n = with_deadline(Duration::from_secs(10), r.read_to_end(&mut rest))
        .await
        .unwrap_or(0);
    assert_eq!(
        n,
        0,
        "more bytes after the answer: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

/// A raw target: for each connection, read request heads and answer each with `answer`;
/// close after the answer if `close_after`. Requests bodies are not read.
async fn raw_target(answer: &'static [u8], close_after: bool) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
                    buf.drain(..end);
                    if s.write_all(answer).await.is_err() || close_after {
                        // Keep the socket a moment so the answer is read before the close.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn pipelined_requests_head_and_keep_alive() {
    let up = echo_upstream("up").await;
    let p = proxy_to(up).await;
    let mut c = connect(&p).await;
    // Two requests in one write: two answers, in order.
    send(
        &mut c,
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b?q=1 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    for url in ["/a", "/b?q=1"] {
        let a = read_answer(&mut c, false).await;
        assert_eq!(a.status, 200);
        assert_eq!(json(&a.text())["url"], url);
    }
    // HEAD: a length but no body; the connection goes on.
    send(&mut c, b"HEAD /c HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let a = read_answer(&mut c, true).await;
    assert_eq!(a.status, 200);
    assert!(a.header("content-length").is_some(), "{a:?}");
    let a = ask(&mut c, b"GET /d HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(json(&a.text())["url"], "/d");
    // A request split into many small writes.
    for piece in [&b"GET /e HT"[..], b"TP/1.1\r\nHo", b"st: x\r\n", b"\r\n"] {
        send(&mut c, piece).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let a = read_answer(&mut c, false).await;
    assert_eq!(json(&a.text())["url"], "/e");
    // Connection: close is honoured and said.
    let a = ask(
        &mut c,
        b"GET /f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(a.header("connection"), Some("close"));
    assert_closed(&mut c).await;
    p.shutdown().await;
}

#[tokio::test]
async fn chunked_bodies_both_ways() {
    let p = start_proxy(config()).await;
    // Echoes the request body back in three frames (hyper then answers chunked).
    let up = upstream(|req: Request<hyper::body::Incoming>| async move {
        let body = req.into_body().collect().await.expect("body").to_bytes();
        let third = body.len() / 3;
        let frames = vec![
            body.slice(..third),
            body.slice(third..2 * third),
            body.slice(2 * third..),
        ];
        let s = futures_util::stream::iter(
            frames
                .into_iter()
                .map(|b| Ok::<_, std::convert::Infallible>(Frame::data(b))),
        );
        Response::new(BodyExt::boxed(StreamBody::new(s)))
    })
    .await;
    p.route_to("/", up).await;
    let mut c = connect(&p).await;
    let req: &[&[u8]] = &[
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhe",
        b"llo\r\n6\r",
        b"\n world\r\n0\r\nX-Trailer: 1\r\n",
        b"\r\n",
    ];
    for piece in req {
        send(&mut c, piece).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let a = read_answer(&mut c, false).await;
    assert_eq!((a.status, a.text().as_str()), (200, "hello world"));
    assert_eq!(a.header("transfer-encoding"), Some("chunked"));
    // Framing was followed to the end: the same connection takes the next request.
    let a = ask(
        &mut c,
        b"POST /again HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabcdef",
    )
    .await;
    assert_eq!(a.text(), "abcdef");
    p.shutdown().await;
}

#[tokio::test]
async fn hop_by_hop_headers_stay_on_their_hop() {
    let up = echo_upstream("up").await;
    let p = proxy_to(up).await;
    let mut c = connect(&p).await;
    let a = ask(
        &mut c,
        b"GET /h HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\
          Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: gzip\r\nX-Kept: yes\r\n\r\n",
    )
    .await;
    let h = &json(&a.text())["headers"];
    for gone in [
        "x-secret",
        "keep-alive",
        "proxy-connection",
        "te",
        "connection",
    ] {
        assert!(h.get(gone).is_none(), "{gone} passed on: {h}");
    }
    assert_eq!(h["x-kept"], "yes");

    // A target's hop-by-hop headers do not reach the client, and its `Connection: close`
    // closes only its own connection.
    let raw = raw_target(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close, X-Up\r\nX-Up: 1\r\n\
          Keep-Alive: timeout=1\r\nX-Other: 2\r\n\r\nok",
        true,
    )
    .await;
    p.route_to("/raw", raw).await;
    for _ in 0..2 {
        let a = ask(&mut c, b"GET /raw/x HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!((a.status, a.text().as_str()), (200, "ok"));
        for gone in ["connection", "x-up", "keep-alive"] {
            assert!(a.header(gone).is_none(), "{gone} passed on: {a:?}");
        }
        assert_eq!(a.header("x-other"), Some("2"));
    }
    p.shutdown().await;
}

#[tokio::test]
async fn an_answer_without_length_runs_to_the_close() {
    let raw = raw_target(
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close",
        true,
    )
    .await;
    let p = proxy_to(raw).await;
    let mut c = connect(&p).await;
    let a = ask(&mut c, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!((a.status, a.text().as_str()), (200, "until the close"));
    assert_eq!(a.header("connection"), Some("close"));
    p.shutdown().await;
}

#[tokio::test]
async fn a_pooled_connection_the_target_closed_is_not_an_error() {
    let p = start_proxy(config()).await;
    // Says nothing about closing, then closes after each answer.
    let raw = raw_target(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true).await;
    p.route_to("/", raw).await;
    let mut c = connect(&p).await;
    // Soon after the close (the pooled connection is used at once and fails: retried, a POST
    // whose body is all in hand too), and after a while (found closed before use).
    for (pause, req) in [
        (0, &b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"[..]),
        (100, b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"),
        (
            1200,
            b"POST /3 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody",
        ),
    ] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let a = ask(&mut c, req).await;
        assert_eq!(
            (a.status, a.text().as_str()),
            (200, "ok"),
            "after {pause} ms"
        );
    }
    p.shutdown().await;
}

#[tokio::test]
async fn an_early_answer_to_an_upload_reaches_the_client() {
    let p = start_proxy(config()).await;
    // Refuses uploads without reading them, and keeps its connection open.
    let raw = raw_target(
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\n\r\ntoo big!",
        false,
    )
    .await;
    p.route_to("/", raw).await;
    let c = TcpStream::connect(p.public).await.expect("connect");
    let (r, mut w) = c.into_split();
    let total = 64u64 << 20;
    let uploading = tokio::spawn(async move {
        let head = format!("PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n");
        w.write_all(head.as_bytes()).await?;
        let chunk = vec![b'z'; 64 * 1024];
        for _ in 0..total / chunk.len() as u64 {
            w.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(w)
    });
    let mut r = BufReader::new(r);
    let mut status_line = String::new();
    with_deadline(Duration::from_secs(10), async {
        use tokio::io::AsyncBufReadExt;
        r.read_line(&mut status_line).await.expect("status line");
    })
    .await;
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line:?}");
    let mut rest = Vec::new();
    let _ = with_deadline(Duration::from_secs(10), r.read_to_end(&mut rest)).await;
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("connection: close"), "{rest}");
    assert!(rest.ends_with("too big!"), "{rest}");
    uploading.abort();
    p.shutdown().await;
}

#[tokio::test]
async fn unusual_requests_go_to_the_general_path() {
    let p = start_proxy(config()).await;
    let up = upstream(|req: Request<hyper::body::Incoming>| async move {
        let body = req.into_body().collect().await.expect("body").to_bytes();
        Response::new(boxed(Bytes::from(format!("got {}", body.len()))))
    })
    .await;
    p.route_to("/", up).await;

    // Expect: 100-continue.
    let mut c = connect(&p).await;
    let a = ask(
        &mut c,
        b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    assert_eq!(a.status, 100);
    let a = ask(&mut c, b"abc").await;
    assert_eq!((a.status, a.text().as_str()), (200, "got 3"));
    // The connection stays usable after the hand-over.
    send(&mut c, b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(read_answer(&mut c, false).await.text(), "got 0");

    // HTTP/1.0.
    let mut c = connect(&p).await;
    let a = ask(&mut c, b"GET /old HTTP/1.0\r\n\r\n").await;
    assert_eq!((a.status, a.text().as_str()), (200, "got 0"));

    // Garbage: 400 from hyper.
    let mut c = connect(&p).await;
    send(&mut c, b"NOT HTTP AT ALL\r\n\r\n").await;
    assert_eq!(read_answer(&mut c, false).await.status, 400);
    // Length and chunked at once (a smuggling pattern): chunked wins, as RFC 9112 says, and
    // the connection closes after the answer, so nothing after it is taken as a request.
    let mut c = connect(&p).await;
    let a = ask(
        &mut c,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
          0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!((a.status, a.text().as_str()), (200, "got 0"));
    assert_eq!(a.header("connection"), Some("close"));
    assert_closed(&mut c).await;

    // No route, with a body that is never read: 404, then the connection closes.
    p.api("DELETE", "/api/routes/", None).await;
    let mut c = connect(&p).await;
    let a = ask(
        &mut c,
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND.as_u16());
    assert_eq!(a.header("connection"), Some("close"));
    assert_closed(&mut c).await;
    p.shutdown().await;
}

#[tokio::test]
async fn a_503_keeps_the_connection_in_step() {
    let up = echo_upstream("up").await;
    let p = proxy_to(up).await;
    let dead = closed_port().await;
    p.add_route("/dead", &format!("http://127.0.0.1:{dead}"))
        .await;
    let mut c = connect(&p).await;
    // The body sent with the failed request must not be read as the next request.
    let a = ask(&mut c, b"POST /dead/x HTTP/1.1\r\nHost: x\r\nContent-Length: 26\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n").await;
    assert_eq!(a.status, 503);
    let a = ask(&mut c, b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(
        (a.status, json(&a.text())["url"].as_str()),
        (200, Some("/after"))
    );
    p.shutdown().await;
}

/// A raw target for upgrades: it hands each request head to `heads`, then either switches
/// protocols (sending a greeting, then echoing every byte until the client's end of stream)
/// or declines with a 400 if the path is `/no`.
async fn upgrade_target(heads: tokio::sync::mpsc::UnboundedSender<String>) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let heads = heads.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let declined = head.starts_with("GET /no ");
                let _ = heads.send(head);
                if declined {
                    let _ = s
                        .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\nno")
                        .await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    return;
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x-test\r\n\
                          Connection: Upgrade\r\n\r\nhello;",
                    )
                    .await;
                // Bytes the client sent right behind its head, then whatever follows.
                let _ = s.write_all(&buf[end..]).await;
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&chunk[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Upgrades leave the lean path at their head (the hand-over): what the client sent behind
/// the head, the target's 101 head and what follows it, and each side's end of stream must
/// all survive it.
#[tokio::test]
async fn upgrades_are_tunnelled_byte_for_byte() {
    let p = start_proxy(config()).await;
    let (tx, mut heads) = tokio::sync::mpsc::unbounded_channel();
    let up = upgrade_target(tx).await;
    p.route_to("/", up).await;

    // Switched: the target's head comes back as it was sent, with what followed it; bytes
    // sent behind the request head reach the target; then bytes flow both ways.
    let mut c = connect(&p).await;
    send(
        &mut c,
        b"GET /ws HTTP/1.1\r\nHost: h:8000\r\nConnection: keep-alive, Upgrade\r\n\
          Upgrade: x-test\r\nSec-WebSocket-Key: abc\r\n\r\nearly;",
    )
    .await;
    let a = read_answer(&mut c, false).await;
    assert_eq!(a.status, 101);
    assert_eq!(a.header("upgrade"), Some("x-test"));
    assert_eq!(a.header("connection"), Some("Upgrade"));
    let mut got = [0u8; 12];
    with_deadline(Duration::from_secs(10), c.read_exact(&mut got))
        .await
        .expect("greeting and echo");
    assert_eq!(&got, b"hello;early;");
    for msg in [
        &b"ping"[..],
        &[0u8, 255, 13, 10, 13, 10][..],
        &vec![7u8; 300_000][..],
    ] {
        send(&mut c, msg).await;
        let mut back = vec![0u8; msg.len()];
        with_deadline(Duration::from_secs(10), c.read_exact(&mut back))
            .await
            .expect("echo");
        assert!(back == msg, "echo of {} bytes differs", msg.len());
    }
    let head = heads.recv().await.expect("head");
    for line in [
        "connection: keep-alive, Upgrade\r\n",
        "upgrade: x-test\r\n",
        "sec-websocket-key: abc\r\n",
        "x-forwarded-proto: ws\r\n",
        "x-forwarded-port: 8000\r\n",
        "host: h:8000\r\n",
    ] {
        let lower = head.to_ascii_lowercase();
        assert!(
            lower.contains(&line.to_ascii_lowercase()),
            "{line:?} in {head}"
        );
    }
    // The client's end of stream reaches the target, whose close comes back.
    c.get_mut().shutdown().await.expect("shutdown");
    assert_closed(&mut c).await;

    // Declined: the target's answer reaches the client.
    let mut c = connect(&p).await;
    let a = ask(
        &mut c,
        b"GET /no HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: x-test\r\n\r\n",
    )
    .await;
    assert_eq!((a.status, a.text().as_str()), (400, "no"));
    p.shutdown().await;
}

/// A target that reads a request's head and the first 32 KiB of its body (as a server's read
/// buffer takes them in), answers `405` with `Connection: close` and closes at once without
/// reading the rest: the kernel then resets the connection, as an HTTP server that does not
/// drain would, while the proxy is still sending the body.
async fn early_refusing_target() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let head_end = seen.windows(4).position(|w| w == b"\r\n\r\n");
                    let wanted = head_end.map(|end| {
                        let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0usize);
                        end + 4 + length.min(32 * 1024)
                    });
                    if wanted.is_some_and(|w| seen.len() >= w) {
                        break;
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) if head_end.is_some() => break,
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 18\r\n\
                          Connection: close\r\n\r\nmethod not allowed",
                    )
                    .await;
            });
        }
    });
    addr
}

/// Sends `head` with a 100 KB body and then a GET on one connection through the proxy, and
/// returns the first answer, whether the writes all went out, and what followed the answer.
async fn upload_then_get(p: &Proxy, head: &str) -> (Answer, std::io::Result<()>, Vec<u8>) {
    let c = TcpStream::connect(p.public).await.expect("connect");
    let (r, mut w) = c.into_split();
    let mut request = head.as_bytes().to_vec();
    request.extend_from_slice(&[b'x'; 100_000]);
    request.extend_from_slice(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
    let writing = tokio::spawn(async move {
        w.write_all(&request).await?;
        w.shutdown().await
    });
    let mut r = BufReader::new(r);
    let a = read_answer(&mut r, false).await;
    let mut rest = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(10), r.read_to_end(&mut rest))
        .await
        .unwrap_or_else(|_| panic!("no close after {a:?}: {}", String::from_utf8_lossy(&rest)));
    let written = writing.await.expect("join");
    (a, end.and(written), rest)
}

#[tokio::test]
async fn an_early_answer_from_a_target_that_resets_reaches_the_client() {
    let target = early_refusing_target().await;
    let p = proxy_to(target).await;
    // The lean path (HTTP/1.1), then the general path (HTTP/1.0 goes to hyper).
    for (path, head) in [
        (
            "lean",
            "QUERY /hub/api/groups/0/users HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
        ),
        (
            "general",
            "QUERY /hub/api/groups/0/users HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\
             Content-Length: 100000\r\n\r\n",
        ),
    ] {
        for i in 0..20 {
            let (a, io, rest) = upload_then_get(&p, head).await;
            assert_eq!(
                (a.status, a.text().as_str()),
                (405, "method not allowed"),
                "{path} path, try {i}: {a:?}"
            );
            // The proxy read the rest of what the client sent before closing: no reset.
            io.unwrap_or_else(|e| panic!("{path} path, try {i}: connection reset: {e}"));
            let rest = String::from_utf8_lossy(&rest);
            assert!(
                rest.is_empty() || rest.starts_with("HTTP/1.1 405"),
                "{path} path, try {i}: after the answer: {rest}"
            );
        }
    }
    p.shutdown().await;
}

/// The request deadlines of the slow-client tests: 3 s for a head, 3 s for a body (plus one
/// second per 1000 bytes), while the idle timeout stays at 5 s, which a byte a second never
/// reaches.
fn deadline_config() -> nbhub_proxy::ProxyConfig {
    let mut cfg = config();
    cfg.headers_timeout = Some(Duration::from_secs(3));
    cfg.body_limit = nbhub_proxy::deadline::BodyLimit {
        timeout: Some(Duration::from_secs(3)),
        min_rate: 1000,
    };
    cfg
}

/// A target that reads each request's body and answers how long it was.
async fn counting_upstream() -> std::net::SocketAddr {
    upstream(|req: Request<hyper::body::Incoming>| async move {
        match req.into_body().collect().await {
            Ok(b) => Response::new(boxed(Bytes::from(format!("got {}", b.to_bytes().len())))),
            Err(e) => Response::new(boxed(Bytes::from(format!("body failed: {e}")))),
        }
    })
    .await
}

/// Slow clients (issue 20, point 4): a head or a body sent a byte a second is answered 408 and
/// closed at its deadline, on the lean path and on hyper's, while other clients are served;
/// a TLS handshake sent that slowly is given up at the head's deadline too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_and_bodies_are_closed_at_their_deadlines() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut tls_cfg = deadline_config();
    tls_cfg.tls = Some(self_signed_tls(dir.path()).0);
    let (p, tls) = (
        start_proxy(deadline_config()).await,
        start_proxy(tls_cfg).await,
    );
    let up = counting_upstream().await;
    p.route_to("/", up).await;

    // Meanwhile a normal client is served, request after request.
    let served = {
        let (public, stop) = (p.public, std::sync::Arc::new(tokio::sync::Notify::new()));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let client = crate::common::client();
            let mut n = 0;
            loop {
                let req = Request::get(format!("http://{public}/normal"))
                    .body(http_body_util::Full::default())
                    .expect("req");
                let answered = tokio::time::timeout(Duration::from_secs(2), client.request(req));
                let res = answered
                    .await
                    .expect("a normal request waited")
                    .expect("get");
                assert_eq!(res.status(), StatusCode::OK);
                n += 1;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stopped.notified() => return n,
                }
            }
        });
        (task, stop)
    };

    let slow: Vec<(&str, &Proxy, &[u8], bool)> = vec![
        (
            "lean path, head",
            &p,
            b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Slow: ",
            true,
        ),
        (
            "lean path, body",
            &p,
            b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
            true,
        ),
        (
            "hyper path, body",
            &p,
            b"POST /slow HTTP/1.0\r\nContent-Length: 100000\r\n\r\n",
            true,
        ),
        // The first bytes of a TLS record (a ClientHello), the rest never complete.
        ("TLS handshake", &tls, b"\x16\x03\x01\x02\x00\x01", false),
    ];
    let results = futures_util::future::join_all(
        slow.iter()
            .map(|(_, proxy, head, _)| slow_request(proxy.public, head, Duration::from_secs(20))),
    )
    .await;
    let mut failed = Vec::new();
    for ((what, _, _, answered), r) in slow.iter().zip(results) {
        let (got, after) = match r {
            Ok(x) => x,
            Err(e) => {
                failed.push(format!("{what}: {e}"));
                continue;
            }
        };
        if after < Duration::from_millis(2900) || after > Duration::from_secs(10) {
            failed.push(format!(
                "{what}: closed after {after:?}, not at the 3 s deadline; received {got:?}"
            ));
        } else if *answered
            && !(got.starts_with("HTTP/1.")
                && got[8..].starts_with(" 408 ")
                && got.to_ascii_lowercase().contains("connection: close"))
        {
            failed.push(format!("{what}: not a 408 with a close: {got:?}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    let (task, stop) = served;
    stop.notify_one();
    let n = task.await.expect("normal client");
    assert!(n >= 5, "only {n} normal requests were served meanwhile");
    let m = p.api("GET", "/api/routes", None).await;
    assert_eq!(m.0, StatusCode::OK);
    tls.shutdown().await;
    p.shutdown().await;
}

/// What the deadlines must not cut (issue 20, point 4): an upload at a sensible speed that
/// takes longer than the body deadline, an answer that streams for longer than both deadlines,
/// and an upgraded connection (a websocket) open for longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_leave_uploads_streams_and_upgrades_alone() {
    let p = start_proxy(deadline_config()).await;
    // Streams an answer of 6 pieces a second apart.
    let up = upstream(|_req: Request<hyper::body::Incoming>| async move {
        let s = futures_util::stream::unfold(0, |i| async move {
            if i == 6 {
                return None;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some((
                Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(format!("{i};")))),
                i + 1,
            ))
        });
        Response::new(BodyExt::boxed(StreamBody::new(s)))
    })
    .await;
    p.route_to("/events", up).await;
    let up = counting_upstream().await;
    p.route_to("/", up).await;
    let (tx, _heads) = tokio::sync::mpsc::unbounded_channel();
    let ws = upgrade_target(tx).await;
    p.route_to("/ws", ws).await;

    // 24 KB at 4 KB a second: 6 s, twice the base deadline, within the one the bytes earn.
    // Through the lean path (HTTP/1.1) and hyper's (HTTP/1.0).
    let upload = |version: &'static str| {
        let public = p.public;
        async move {
            let mut c = TcpStream::connect(public).await.expect("connect");
            let head =
                format!("PUT /up HTTP/{version}\r\nHost: x\r\nContent-Length: 24000\r\n\r\n");
            c.write_all(head.as_bytes()).await.expect("head");
            for _ in 0..24 {
                tokio::time::sleep(Duration::from_millis(250)).await;
                c.write_all(&[b'u'; 1000])
                    .await
                    .expect("a slow but steady upload was cut");
            }
            let a = read_answer(&mut BufReader::new(c), false).await;
            assert_eq!(
                (a.status, a.text()),
                (200, "got 24000".to_string()),
                "HTTP/{version}"
            );
        }
    };
    // A streamed answer (an event stream, kernel output) read as it comes.
    let stream = async {
        let mut c = connect(&p).await;
        send(&mut c, b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let a = with_deadline(Duration::from_secs(20), read_answer_slowly(&mut c)).await;
        assert_eq!((a.status, a.text().as_str()), (200, "0;1;2;3;4;5;"));
    };
    // An upgraded connection used now and then for 6 s.
    let upgraded = async {
        let mut c = connect(&p).await;
        send(
            &mut c,
            b"GET /ws/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: x-test\r\n\r\n",
        )
        .await;
        assert_eq!(read_answer(&mut c, false).await.status, 101);
        let mut hello = [0u8; 6];
        c.read_exact(&mut hello).await.expect("greeting");
        for i in 0..6u8 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            send(&mut c, &[b'0' + i]).await;
            let mut back = [0u8; 1];
            with_deadline(Duration::from_secs(5), c.read_exact(&mut back))
                .await
                .unwrap_or_else(|e| panic!("the upgraded connection was cut after {i} s: {e}"));
            assert_eq!(back[0], b'0' + i);
        }
    };
    tokio::join!(upload("1.1"), upload("1.0"), stream, upgraded);
    p.shutdown().await;
}

/// Like [`read_answer`], without its 10 s limit, for an answer that streams for a while.
async fn read_answer_slowly(r: &mut BufReader<TcpStream>) -> Answer {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(r.read_u8().await.expect("head"));
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head[9..12].parse().expect("status");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    assert!(chunked, "{head}");
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        while !line.ends_with("\r\n") {
            line.push(r.read_u8().await.expect("chunk size") as char);
        }
        let size = usize::from_str_radix(line.trim_end(), 16).expect("size");
        let mut chunk = vec![0u8; size + 2];
        r.read_exact(&mut chunk).await.expect("chunk");
        if size == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..size]);
    }
    Answer {
        status,
        headers: Vec::new(),
        body,
    }
}
