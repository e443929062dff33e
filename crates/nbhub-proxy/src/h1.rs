//! The lean path: plain HTTP/1.1 from a client to a plain-HTTP target, in one task per client
//! connection, with no per-request allocation once a connection's buffers have grown.
//!
//! This is the hot path of a hub: every request a browser makes to a single-user server. A
//! request head is parsed in place (httparse), the target's head is written straight into a
//! reused buffer with the forwarding headers, and the head goes out in the same `writev` as
//! the first piece of the body; the answer comes back the same way, and bodies are relayed raw
//! (`Content-Length` counted, chunked framing tracked, never re-encoded). Target connections
//! are kept per worker in [`Upstreams`].
//!
//! Anything unusual is not handled here: the connection, with the bytes already read, goes to
//! the general hyper path ([`crate::forward`]) for the rest of its life — upgrades
//! (websockets), `Expect: 100-continue`, HTTP/1.0 and HTTP/2 clients, `https` targets, odd
//! framing, and heads hyper should reject with its own 4xx. That hand-over happens only at a
//! request boundary, before anything of the request has been sent on.

use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::uri::{Authority, Scheme};
use http::{StatusCode, Uri};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::forward::{self, ConnInfo, Forwarder, ProxyBody};
use crate::routes::Route;

/// Heads larger than this go to hyper, which answers 431.
const MAX_HEAD: usize = 64 * 1024;
/// Header lines per head; more go to hyper (which allows 100 as well, then answers 431).
const MAX_HEADERS: usize = 100;
/// A client connection's read buffer starts at this size.
const CLIENT_BUF: usize = 8 * 1024;
/// A target connection's read buffer starts at this size and doubles, up to
/// [`MAX_UPSTREAM_READ`], while reads fill it: large answers then need one `recv` per piece the
/// kernel holds rather than one per 16 KiB.
const UPSTREAM_READ: usize = 16 * 1024;
const MAX_UPSTREAM_READ: usize = 256 * 1024;
/// Idle target connections kept per target and worker.
const MAX_IDLE_PER_TARGET: usize = 512;

/// How a connection left the lean path.
pub enum Outcome {
    /// It ended: closed by either side, timed out, shut down, or failed.
    Done,
    /// The general path takes over, starting with the bytes already read.
    Fallback(TcpStream, BytesMut),
}

/// How a message body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the target closes the connection (a response with neither length nor chunking).
    UntilClose,
}

/// What to do with a parsed request head.
enum Plan {
    Fallback,
    /// Answer it ourselves (health check, no route); close afterwards if it has a body we
    /// would have to skip.
    Answer {
        head_len: usize,
        status: StatusCode,
        close: bool,
        head_request: bool,
    },
    Forward {
        route: Arc<Route>,
        head_len: usize,
        body: Framing,
        close: bool,
        head_request: bool,
    },
}

/// Serve a plain-TCP client connection until it ends or needs the general path.
pub async fn serve(
    fw: &Forwarder,
    info: &ConnInfo,
    mut client: TcpStream,
    stop: &mut watch::Receiver<bool>,
) -> Outcome {
    let idle = fw.config.client_idle_timeout();
    let headers_timeout = fw.config.headers_timeout;
    let mut buf = BytesMut::with_capacity(CLIENT_BUF);
    // The head we send on: the target's request head, then the client's response head.
    let mut head = Vec::with_capacity(1024);
    // The request target as the client sent it, for the error target's `?url=`.
    let mut orig = String::with_capacity(256);
    loop {
        // The head's deadline, from when its first bytes were found incomplete: a head that
        // arrives in one read (nearly all) never reads the clock for it.
        let mut head_deadline = None;
        let plan = loop {
            if !buf.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut req = httparse::Request::new(&mut headers);
                match req.parse(&buf) {
                    Ok(httparse::Status::Complete(n)) => {
                        break plan(fw, info, &req, n, &mut head, &mut orig)
                    }
                    Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
                    _ => return Outcome::Fallback(client, buf),
                }
            }
            if *stop.borrow() {
                return Outcome::Done;
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(CLIENT_BUF);
            }
            // One timer per read, as before: the idle timeout, or the head's deadline if sooner.
            let now = Instant::now();
            let mut limit = now + idle;
            if let (false, Some(t)) = (buf.is_empty(), headers_timeout) {
                limit = limit.min(*head_deadline.get_or_insert(now + t));
            }
            let read = tokio::select! {
                biased;
                r = tokio::time::timeout_at(limit, client.read_buf(&mut buf)) => r,
                _ = stop.changed() => return Outcome::Done,
            };
            match read {
                Ok(Ok(n)) if n > 0 => {}
                // Part of a request came, and not the rest in time.
                Err(_) if !buf.is_empty() => {
                    request_timeout(fw, &mut client).await;
                    return Outcome::Done;
                }
                _ => return Outcome::Done,
            }
        };
        let keep_going = match plan {
            Plan::Fallback => return Outcome::Fallback(client, buf),
            Plan::Answer {
                head_len,
                status,
                close,
                head_request,
            } => {
                fw.metrics.requests.fetch_add(1, Ordering::Relaxed);
                buf.advance(head_len);
                let res = if status == StatusCode::OK {
                    forward::healthz()
                } else {
                    forward::error_for(fw, status, &uri_of(&orig)).await
                };
                answer(&mut client, res, close, head_request).await.is_ok() && !close
            }
            Plan::Forward {
                route,
                head_len,
                body,
                close,
                head_request,
            } => {
                fw.metrics.requests.fetch_add(1, Ordering::Relaxed);
                buf.advance(head_len);
                let exchange = Exchange {
                    fw,
                    route,
                    body,
                    close,
                    head_request,
                };
                exchange.run(&mut client, &mut buf, &mut head, &orig).await
            }
        };
        if !keep_going {
            // What the client sent that we did not read must not turn our close into a reset.
            crate::linger::close(&mut client).await;
            return Outcome::Done;
        }
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &v[start..end.max(start)]
}

fn parse_length(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// `Connection` header tokens other than `close`/`keep-alive`: the headers they name are
/// hop-by-hop too. A handful at most in practice; more send the request to the general path.
#[derive(Default)]
struct ConnectionTokens<'a> {
    names: [&'a [u8]; 8],
    len: usize,
}

impl<'a> ConnectionTokens<'a> {
    fn push(&mut self, t: &'a [u8]) -> bool {
        if self.len == self.names.len() {
            return false;
        }
        self.names[self.len] = t;
        self.len += 1;
        true
    }
    fn contains(&self, name: &[u8]) -> bool {
        self.names[..self.len]
            .iter()
            .any(|t| t.eq_ignore_ascii_case(name))
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) that are never passed on as they came.
fn is_hop_by_hop(name: &[u8]) -> bool {
    [
        &b"connection"[..],
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
    ]
    .iter()
    .any(|h| h.eq_ignore_ascii_case(name))
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Route a parsed request and write the target's head into `out`.
fn plan(
    fw: &Forwarder,
    info: &ConnInfo,
    req: &httparse::Request<'_, '_>,
    head_len: usize,
    out: &mut Vec<u8>,
    orig: &mut String,
) -> Plan {
    let cfg = &fw.config;
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Plan::Fallback;
    };
    // Origin-form targets of visible ASCII only: anything else is hyper's to judge.
    if method == "CONNECT"
        || !target.starts_with('/')
        || !target.bytes().all(|b| b.is_ascii_graphic())
    {
        return Plan::Fallback;
    }
    orig.clear();
    orig.push_str(target);
    let mut host: Option<&[u8]> = None;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = false;
    let mut tokens = ConnectionTokens::default();
    let (mut xff, mut xfport, mut xfproto, mut xfhost) = (None, None, None, false);
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            host.get_or_insert(h.value);
        } else if name.eq_ignore_ascii_case(b"content-length") {
            match (parse_length(h.value), length) {
                (Some(n), None) => length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => return Plan::Fallback,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if chunked || !trim(h.value).eq_ignore_ascii_case(b"chunked") {
                return Plan::Fallback;
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for t in h.value.split(|&b| b == b',').map(trim) {
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                    continue;
                }
                let names_a_header = !t.is_empty() && !t.eq_ignore_ascii_case(b"keep-alive");
                if t.eq_ignore_ascii_case(b"upgrade") || (names_a_header && !tokens.push(t)) {
                    // Upgrades (websockets) and long token lists are the general path's.
                    return Plan::Fallback;
                }
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            return Plan::Fallback;
        } else if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            xff.get_or_insert(h.value);
        } else if name.eq_ignore_ascii_case(b"x-forwarded-port") {
            xfport.get_or_insert(h.value);
        } else if name.eq_ignore_ascii_case(b"x-forwarded-proto") {
            xfproto.get_or_insert(h.value);
        } else if name.eq_ignore_ascii_case(b"x-forwarded-host") {
            xfhost = true;
        }
    }
    if chunked && length.is_some() {
        return Plan::Fallback;
    }
    let body = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) if n > 0 => Framing::Length(n),
        _ => Framing::None,
    };
    let head_request = method == "HEAD";
    let raw_path = target.split_once('?').map_or(target, |(p, _)| p);
    if raw_path == "/_chp_healthz" {
        return Plan::Answer {
            head_len,
            status: StatusCode::OK,
            close: close || body != Framing::None,
            head_request,
        };
    }
    let path = forward::routing_path(raw_path);
    let routing_host = if cfg.host_routing {
        let h = host.and_then(|h| std::str::from_utf8(h).ok()).unwrap_or("");
        Some(forward::strip_host_port(h))
    } else {
        None
    };
    let Some(route) = fw.routes.lookup(routing_host, &path) else {
        tracing::debug!(path = %path, "no route");
        return Plan::Answer {
            head_len,
            status: StatusCode::NOT_FOUND,
            close: close || body != Framing::None,
            head_request,
        };
    };
    if route.target.scheme != Scheme::HTTP {
        return Plan::Fallback;
    }

    // The target's head.
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(forward::upstream_path(cfg, &route, cfg.host_routing, target).as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let skip = is_hop_by_hop(name)
            || (name.eq_ignore_ascii_case(b"te")
                && !trim(h.value).eq_ignore_ascii_case(b"trailers"))
            || tokens.contains(name)
            || (cfg.x_forward
                && (name.eq_ignore_ascii_case(b"x-forwarded-for")
                    || name.eq_ignore_ascii_case(b"x-forwarded-port")
                    || name.eq_ignore_ascii_case(b"x-forwarded-proto")))
            || (cfg.change_origin && name.eq_ignore_ascii_case(b"host"))
            || cfg
                .custom_headers
                .iter()
                .any(|(n, _)| n.as_str().as_bytes().eq_ignore_ascii_case(name));
        if !skip {
            push_header(out, name, h.value);
        }
    }
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if cfg.change_origin {
        push_header(out, b"host", route.target.authority.as_str().as_bytes());
    }
    if cfg.x_forward {
        // Appended to what the client sent, comma-joined, as http-proxy's `xfwd` does.
        let mut forwarded = |name: &[u8], old: Option<&[u8]>, v: &[u8]| {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            if let Some(old) = old.filter(|o| !o.is_empty()) {
                out.extend_from_slice(old);
                out.push(b',');
            }
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        };
        forwarded(b"x-forwarded-for", xff, info.remote_ip.as_bytes());
        forwarded(
            b"x-forwarded-port",
            xfport,
            info.forwarded_port(host).as_bytes(),
        );
        forwarded(b"x-forwarded-proto", xfproto, b"http");
        if !xfhost {
            push_header(out, b"x-forwarded-host", host.unwrap_or(b""));
        }
    }
    for (n, v) in &cfg.custom_headers {
        push_header(out, n.as_str().as_bytes(), v.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    Plan::Forward {
        route,
        head_len,
        body,
        close,
        head_request,
    }
}

/// The answer to a request that did not arrive in time, as Node gives it (no error page: the
/// client is not waiting for one); the connection is closed after it.
const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// Answer 408 and close (without a reset, so that the answer arrives).
async fn request_timeout(fw: &Forwarder, client: &mut TcpStream) {
    fw.metrics.error(StatusCode::REQUEST_TIMEOUT.as_u16());
    if client.write_all(REQUEST_TIMEOUT).await.is_ok() {
        crate::linger::close(client).await;
    }
}

fn uri_of(target: &str) -> Uri {
    target.parse().unwrap_or_else(|_| Uri::from_static("/"))
}

/// Write our own answer (health check, error page) with a length, the body collected first
/// (these are small: a message, an `--error-path` page or the error target's page).
async fn answer(
    client: &mut TcpStream,
    res: http::Response<ProxyBody>,
    close: bool,
    head_request: bool,
) -> io::Result<()> {
    let (parts, body) = res.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (k, v) in &parts.headers {
        if !matches!(
            k.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            push_header(&mut out, k.as_str().as_bytes(), v.as_bytes());
        }
    }
    push_header(
        &mut out,
        b"content-length",
        body.len().to_string().as_bytes(),
    );
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_request {
        out.extend_from_slice(&body);
    }
    client.write_all(&out).await
}

/// One request forwarded to its target and the answer relayed back.
struct Exchange<'a> {
    fw: &'a Forwarder,
    route: Arc<Route>,
    body: Framing,
    close: bool,
    head_request: bool,
}

/// Why an exchange stopped early.
enum Failed {
    /// The client went away or broke the protocol: drop everything.
    Client,
    /// The client did not send the request body in time (and nothing was answered yet).
    Timeout,
    /// The target failed before its answer began: answer 503 (closing if the request body
    /// was not read to its end).
    Target(String, bool),
}

impl Exchange<'_> {
    /// Forward the request whose head is in `head` (its body starts in `buf`) and relay the
    /// answer; true if the client connection can take another request.
    async fn run(
        self,
        client: &mut TcpStream,
        buf: &mut BytesMut,
        head: &mut Vec<u8>,
        orig: &str,
    ) -> bool {
        match self.exchange(client, buf, head).await {
            Ok(keep) => keep,
            Err(Failed::Client) => false,
            Err(Failed::Timeout) => {
                request_timeout(self.fw, client).await;
                false
            }
            Err(Failed::Target(e, body_pending)) => {
                tracing::warn!(target = %self.route.target.authority, url = %orig, "503 {}: {e}", self.route.key);
                let res =
                    forward::error_for(self.fw, StatusCode::SERVICE_UNAVAILABLE, &uri_of(orig))
                        .await;
                let close = self.close || body_pending;
                answer(client, res, close, self.head_request).await.is_ok() && !close
            }
        }
    }

    async fn exchange(
        &self,
        client: &mut TcpStream,
        buf: &mut BytesMut,
        head: &mut Vec<u8>,
    ) -> Result<bool, Failed> {
        let fw = self.fw;
        let authority = &self.route.target.authority;
        // The first piece of the body goes out with the head.
        let mut chunks = ChunkedTracker::default();
        let (first, mut left) = match self.body {
            Framing::Length(n) => {
                let k = (buf.len() as u64).min(n);
                (k as usize, Framing::Length(n - k))
            }
            Framing::Chunked => match chunks.feed(buf) {
                Ok(Some(k)) => (k, Framing::None),
                Ok(None) => (buf.len(), Framing::Chunked),
                Err(()) => return Err(Failed::Client),
            },
            _ => (0, Framing::None),
        };
        let left_is_done = |l: Framing| matches!(l, Framing::None | Framing::Length(0));
        // The request can be sent again: it has no body, or all of it is in `buf`.
        let whole_request_here = left_is_done(left);
        // A pooled connection the target closed meanwhile fails on the write or on the first
        // read of the answer, with nothing of an answer: then the request goes once more, on a
        // fresh connection, if it is still whole in hand (as browsers resend on a reused
        // connection). A target that answered before the write failed is heard out instead.
        let sent = async {
            let mut up = fw
                .upstreams
                .checkout(authority, fw.config.proxy_timeout)
                .await
                .map_err(|e| Failed::Target(e.to_string(), !whole_request_here))?;
            loop {
                let retry = |up: &Upstream, r: &dyn std::fmt::Debug| {
                    let again = up.reused && whole_request_here;
                    if again {
                        tracing::debug!(
                            "pooled connection to {authority} closed ({r:?}), retrying"
                        );
                    }
                    again
                };
                if let Err(e) = write_two(&mut up.io, head, &buf[..first]).await {
                    if up.answer_waiting().await {
                        return Ok((up, !whole_request_here));
                    }
                    if retry(&up, &e) {
                        up = fw
                            .upstreams
                            .connect(authority, fw.config.proxy_timeout)
                            .await
                            .map_err(|e| Failed::Target(e.to_string(), false))?;
                        continue;
                    }
                    return Err(Failed::Target(e.to_string(), !whole_request_here));
                }
                if !whole_request_here {
                    return Ok((up, false));
                }
                match up.fill(fw.config.proxy_timeout).await {
                    Ok(n) if n > 0 => return Ok((up, false)),
                    r if retry(&up, &r) => {
                        up = fw
                            .upstreams
                            .connect(authority, fw.config.proxy_timeout)
                            .await
                            .map_err(|e| Failed::Target(e.to_string(), false))?;
                    }
                    Ok(_) => return Err(Failed::Target("connection closed".into(), false)),
                    Err(e) => return Err(Failed::Target(e.to_string(), false)),
                }
            }
        }
        .await;
        // Whatever happened, the body bytes taken so far are this request's, not the next one's.
        buf.advance(first);
        // `cut_short`: the target answered before it had the whole request, so the rest of
        // the client's body is never read and the client's connection closes after the answer.
        let (mut up, mut cut_short) = sent?;

        // The rest of the request body, as the client sends it, unless the target answers
        // before it has all of it (a 413, say): then that answer goes back and the client's
        // connection closes after it, as the rest of its body is never read.
        // Each wait for the client is bounded by the idle timeout, and the whole body by its
        // deadline (from the first wait on, moved on by each byte received): one timer per read.
        let idle = fw.config.client_idle_timeout();
        let body_limit = fw.config.body_limit;
        let (mut start, mut received) = (None, first as u64);
        'body: while !cut_short && !left_is_done(left) {
            if buf.is_empty() {
                buf.reserve(CLIENT_BUF);
                let now = Instant::now();
                let mut limit = now + idle;
                if let Some(d) = body_limit.deadline(*start.get_or_insert(now), received) {
                    limit = limit.min(d);
                }
                let read = tokio::select! {
                    r = tokio::time::timeout_at(limit, client.read_buf(buf)) => r,
                    r = up.io.readable() => {
                        if r.is_ok() && up.answer_started().map_err(|e| Failed::Target(e.to_string(), true))? {
                            cut_short = true;
                            break 'body;
                        }
                        continue 'body;
                    }
                };
                match read {
                    Ok(Ok(n)) if n > 0 => received += n as u64,
                    Err(_) => return Err(Failed::Timeout),
                    _ => return Err(Failed::Client),
                }
            }
            let k = match left {
                Framing::Length(n) => {
                    let k = (buf.len() as u64).min(n);
                    left = Framing::Length(n - k);
                    k as usize
                }
                _ => match chunks.feed(buf) {
                    Ok(Some(k)) => {
                        left = Framing::None;
                        k
                    }
                    Ok(None) => buf.len(),
                    Err(()) => return Err(Failed::Client),
                },
            };
            let mut piece = &buf[..k];
            while !piece.is_empty() {
                let written = tokio::select! {
                    r = up.io.writable() => match r.and_then(|()| up.io.try_write(piece)) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        r => r,
                    },
                    r = up.io.readable() => {
                        if r.is_ok() && up.answer_started().map_err(|e| Failed::Target(e.to_string(), true))? {
                            cut_short = true;
                            break 'body;
                        }
                        continue;
                    }
                };
                let e = match written {
                    Ok(n) if n > 0 => {
                        piece = &piece[n..];
                        continue;
                    }
                    Ok(_) => "connection closed".to_string(),
                    Err(e) => e.to_string(),
                };
                // A target that answers and closes without reading the body resets the
                // connection: its answer may well be waiting for us all the same.
                if up.answer_waiting().await {
                    cut_short = true;
                    break 'body;
                }
                return Err(Failed::Target(e, true));
            }
            buf.advance(k);
            self.route.touch();
        }

        // The answer's head (informational 1xx answers are dropped, as hyper's client does).
        let answer = loop {
            if !up.buf.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut res = httparse::Response::new(&mut headers);
                match res.parse(&up.buf) {
                    Ok(httparse::Status::Complete(n)) => {
                        let code = res.code.unwrap_or(0);
                        if (100..200).contains(&code) && code != 101 {
                            up.buf.advance(n);
                            continue;
                        }
                        let close = self.close || cut_short;
                        break response_head(&res, n, self.head_request, close, head);
                    }
                    Ok(httparse::Status::Partial) if up.buf.len() < MAX_HEAD => {}
                    Ok(_) => return Err(Failed::Target("answer head too large".into(), cut_short)),
                    Err(e) => return Err(Failed::Target(format!("bad answer: {e}"), cut_short)),
                }
            }
            match up.fill(fw.config.proxy_timeout).await {
                Ok(n) if n > 0 => {}
                Ok(_) => return Err(Failed::Target("connection closed".into(), cut_short)),
                Err(e) => return Err(Failed::Target(e.to_string(), cut_short)),
            }
        };
        let Some(ResponseHead {
            head_len,
            status,
            body,
            reusable,
        }) = answer
        else {
            return Err(Failed::Target(
                "unexpected 101 Switching Protocols".into(),
                cut_short,
            ));
        };
        if status < 300 {
            self.route.touch();
        }
        let close = self.close || cut_short || body == Framing::UntilClose;
        up.buf.advance(head_len);

        // The answer's body: the first piece with the head, then as the target sends it.
        let mut chunks = ChunkedTracker::default();
        let mut left = body;
        let mut extra = false;
        let mut piece = |up_buf: &BytesMut, left: &mut Framing| -> Result<usize, Failed> {
            Ok(match *left {
                Framing::Length(n) => {
                    let k = (up_buf.len() as u64).min(n);
                    extra |= (up_buf.len() as u64) > n;
                    *left = Framing::Length(n - k);
                    k as usize
                }
                Framing::Chunked => match chunks.feed(up_buf) {
                    Ok(Some(k)) => {
                        extra |= k < up_buf.len();
                        *left = Framing::None;
                        k
                    }
                    Ok(None) => up_buf.len(),
                    Err(()) => return Err(Failed::Client),
                },
                Framing::UntilClose => up_buf.len(),
                Framing::None => {
                    extra |= !up_buf.is_empty();
                    0
                }
            })
        };
        let k = piece(&up.buf, &mut left)?;
        if write_two(client, head, &up.buf[..k]).await.is_err() {
            return Err(Failed::Client);
        }
        up.buf.clear();
        while !left_is_done(left) {
            let n = up.fill(None).await.map_err(|_| Failed::Client)?;
            if n == 0 {
                if left == Framing::UntilClose {
                    break;
                }
                // The target closed mid-answer: the client sees a short answer and a close.
                return Err(Failed::Client);
            }
            let k = piece(&up.buf, &mut left)?;
            if client.write_all(&up.buf[..k]).await.is_err() {
                return Err(Failed::Client);
            }
            up.buf.clear();
            self.route.touch();
        }
        if reusable && !extra && !cut_short && !up.write_failed && left != Framing::UntilClose {
            fw.upstreams.checkin(authority, up);
        }
        Ok(!close)
    }
}

struct ResponseHead {
    head_len: usize,
    status: u16,
    body: Framing,
    /// The target keeps the connection open after this answer.
    reusable: bool,
}

/// Write the client's response head for a target's answer into `out`; `None` for a 101.
fn response_head(
    res: &httparse::Response<'_, '_>,
    head_len: usize,
    head_request: bool,
    client_close: bool,
    out: &mut Vec<u8>,
) -> Option<ResponseHead> {
    let code = res.code.unwrap_or(502);
    if code == 101 {
        return None;
    }
    let mut length: Option<u64> = None;
    let mut bad_length = false;
    let mut chunked = false;
    let mut other_coding = false;
    let mut close = res.version != Some(1);
    let mut tokens = ConnectionTokens::default();
    for h in res.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            match (parse_length(h.value), length) {
                (Some(n), None) => length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => bad_length = true,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // The last coding decides: chunked framing, or else the body runs to the close.
            let last = h.value.rsplit(|&b| b == b',').next().map(trim);
            chunked = last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
            other_coding = !chunked;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for t in h.value.split(|&b| b == b',').map(trim) {
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    // An HTTP/1.0 target that keeps its connection says so.
                    close &= res.version != Some(0);
                } else if !t.is_empty() {
                    // Too many to track: pass them on rather than guess.
                    let _ = tokens.push(t);
                }
            }
        }
    }
    let no_body = head_request || (100..200).contains(&code) || code == 204 || code == 304;
    let body = if no_body {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if other_coding || bad_length {
        Framing::UntilClose
    } else {
        match length {
            Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&itoa_u16(code).0);
    out.push(b' ');
    out.extend_from_slice(res.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in res.headers.iter() {
        let name = h.name.as_bytes();
        let skip = is_hop_by_hop(name)
            || name.eq_ignore_ascii_case(b"te")
            || tokens.contains(name)
            || (bad_length && name.eq_ignore_ascii_case(b"content-length"))
            || (chunked && name.eq_ignore_ascii_case(b"content-length"));
        if !skip {
            push_header(out, name, h.value);
        }
    }
    if body == Framing::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if client_close || body == Framing::UntilClose {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Some(ResponseHead {
        head_len,
        status: code,
        body,
        reusable: !close && body != Framing::UntilClose,
    })
}

/// Three ASCII digits of a status code, without a formatter.
struct Code([u8; 3]);

fn itoa_u16(code: u16) -> Code {
    let c = code.min(999);
    Code([
        b'0' + (c / 100) as u8,
        b'0' + (c / 10 % 10) as u8,
        b'0' + (c % 10) as u8,
    ])
}

/// Write `a` then `b` with as few `writev` calls as the socket allows.
async fn write_two(io: &mut TcpStream, mut a: &[u8], mut b: &[u8]) -> io::Result<()> {
    while !a.is_empty() || !b.is_empty() {
        let n = if b.is_empty() {
            io.write(a).await?
        } else if a.is_empty() {
            io.write(b).await?
        } else {
            io.write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
                .await?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        if n >= a.len() {
            b = &b[n - a.len()..];
            a = &[];
        } else {
            a = &a[n..];
        }
    }
    Ok(())
}

/// Follows chunked framing (RFC 9112 §7.1) over bytes relayed raw, to find where a body ends.
#[derive(Default)]
struct ChunkedTracker {
    state: ChunkState,
    size: u64,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    SizeStart,
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    EndLf,
    Done,
}

impl ChunkedTracker {
    /// Consume `data`: `Some(n)` when the body ends after its first `n` bytes, `None` when it
    /// continues past them, `Err` on broken framing.
    fn feed(&mut self, data: &[u8]) -> Result<Option<usize>, ()> {
        use ChunkState::*;
        let mut i = 0;
        while i < data.len() {
            if self.state == Done {
                return Ok(Some(i));
            }
            if self.state == Data {
                let take = self.size.min((data.len() - i) as u64);
                i += take as usize;
                self.size -= take;
                if self.size == 0 {
                    self.state = DataCr;
                }
                continue;
            }
            let b = data[i];
            i += 1;
            self.state = match (self.state, b) {
                (SizeStart, _) => {
                    self.size = hex(b).ok_or(())?;
                    Size
                }
                (Size, _) if hex(b).is_some() => {
                    self.size = self
                        .size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(hex(b).unwrap_or(0)))
                        .ok_or(())?;
                    Size
                }
                (Size, b';' | b' ' | b'\t') => Extension,
                (Size | Extension, b'\r') => SizeLf,
                (Size | Extension | SizeLf, b'\n') => {
                    if self.size == 0 {
                        TrailerStart
                    } else {
                        Data
                    }
                }
                (Extension, _) => Extension,
                (DataCr, b'\r') => DataLf,
                (DataCr | DataLf, b'\n') => SizeStart,
                (TrailerStart, b'\r') => EndLf,
                (TrailerStart | EndLf, b'\n') => Done,
                (Trailer, b'\n') => TrailerStart,
                (TrailerStart | Trailer, _) => Trailer,
                _ => return Err(()),
            };
        }
        Ok((self.state == Done).then_some(i))
    }
}

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

/// A connection to a target.
pub struct Upstream {
    io: TcpStream,
    /// What the target sent that has not been relayed yet.
    buf: BytesMut,
    read_size: usize,
    idle_since: Instant,
    reused: bool,
    /// A write failed: the connection is done once its answer is read.
    write_failed: bool,
}

impl Upstream {
    /// Read what the target has sent into `buf` (within `limit`, if given); 0 at its close.
    async fn fill(&mut self, limit: Option<Duration>) -> io::Result<usize> {
        self.buf.reserve(self.read_size);
        let spare = self.buf.capacity() - self.buf.len();
        let n = match limit {
            None => self.io.read_buf(&mut self.buf).await?,
            Some(t) => tokio::time::timeout(t, self.io.read_buf(&mut self.buf))
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {t:?}"))
                })??,
        };
        if n == spare && self.read_size < MAX_UPSTREAM_READ {
            self.read_size *= 2;
        }
        Ok(n)
    }

    /// After the runtime saw the connection readable while a request body is still going
    /// out: whether the target has begun its answer (a stale readiness reads nothing).
    fn answer_started(&mut self) -> io::Result<bool> {
        self.buf.reserve(self.read_size);
        match self.io.try_read_buf(&mut self.buf) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed during the request body",
            )),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// After a write to the target failed (it reset the connection): read what it sent before
    /// that, all of which is in the socket by now; whether anything of an answer is there.
    async fn answer_waiting(&mut self) -> bool {
        self.write_failed = true;
        // A reset socket is readable at once, but the runtime may not have seen it yet (and
        // `try_read` reads only what it saw).
        let _ = tokio::time::timeout(Duration::from_secs(1), self.io.readable()).await;
        loop {
            self.buf.reserve(self.read_size);
            match self.io.try_read_buf(&mut self.buf) {
                Ok(n) if n > 0 => {}
                _ => return !self.buf.is_empty(),
            }
        }
    }

    /// Whether a connection that sat idle still looks open: no end of stream or stray bytes
    /// waiting. Costs a `recv(MSG_PEEK)` only if the runtime saw it become readable.
    fn still_open(&self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut byte = [0u8; 1];
        let mut rb = ReadBuf::new(&mut byte);
        matches!(self.io.poll_peek(&mut cx, &mut rb), Poll::Pending)
    }
}

/// One worker's idle connections to plain-HTTP targets.
#[derive(Default)]
pub struct Upstreams {
    idle: Mutex<HashMap<Authority, Vec<Upstream>>>,
}

impl Upstreams {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Authority, Vec<Upstream>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn checkout(&self, to: &Authority, limit: Option<Duration>) -> io::Result<Upstream> {
        loop {
            let popped = self.lock().get_mut(to).and_then(Vec::pop);
            match popped {
                Some(mut up) => {
                    // A close by the target that arrived since is seen here (a `recv(MSG_PEEK)`
                    // only if the runtime saw the socket become readable).
                    if !up.still_open() {
                        continue;
                    }
                    up.reused = true;
                    return Ok(up);
                }
                None => return self.connect(to, limit).await,
            }
        }
    }

    async fn connect(&self, to: &Authority, limit: Option<Duration>) -> io::Result<Upstream> {
        let host = to.host().trim_start_matches('[').trim_end_matches(']');
        let port = to.port_u16().unwrap_or(80);
        let connecting = TcpStream::connect((host, port));
        let io = match limit {
            None => connecting.await?,
            Some(t) => tokio::time::timeout(t, connecting).await.map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no connection within {t:?}"),
                )
            })??,
        };
        let _ = io.set_nodelay(true);
        Ok(Upstream {
            io,
            buf: BytesMut::new(),
            read_size: UPSTREAM_READ,
            idle_since: Instant::now(),
            reused: false,
            write_failed: false,
        })
    }

    fn checkin(&self, to: &Authority, mut up: Upstream) {
        up.idle_since = Instant::now();
        let mut idle = self.lock();
        let v = match idle.get_mut(to) {
            Some(v) => v,
            None => idle.entry(to.clone()).or_default(),
        };
        if v.len() < MAX_IDLE_PER_TARGET {
            v.push(up);
        }
    }

    /// Close connections idle for longer than `max_idle`, and those the target has closed.
    pub fn sweep(&self, max_idle: Duration) {
        self.lock().retain(|_, v| {
            v.retain(|u| u.idle_since.elapsed() < max_idle && u.still_open());
            !v.is_empty()
        });
    }

    /// Idle connections held (for tests).
    pub fn idle_count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }
}

/// A connection handed to the general path: the bytes read so far come first.
pub struct Prefixed {
    prefix: BytesMut,
    io: TcpStream,
}

impl Prefixed {
    pub fn new(io: TcpStream, prefix: BytesMut) -> Self {
        Prefixed { prefix, io }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(input: &[u8], step: usize) -> Result<Option<usize>, ()> {
        let mut t = ChunkedTracker::default();
        let mut off = 0;
        for piece in input.chunks(step) {
            if let Some(k) = t.feed(piece)? {
                return Ok(Some(off + k));
            }
            off += piece.len();
        }
        Ok(None)
    }

    #[test]
    fn chunked_framing_is_followed_in_any_split() {
        let body = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\n";
        for step in 1..body.len() {
            let mut input = body.to_vec();
            input.extend_from_slice(b"GET / HTTP/1.1\r\n");
            assert_eq!(feed_all(&input, step), Ok(Some(body.len())), "step {step}");
        }
        assert_eq!(feed_all(b"0\r\n\r\n", 1), Ok(Some(5)));
        assert_eq!(feed_all(b"0\n\n", 1), Ok(Some(3)));
        assert_eq!(feed_all(b"5\r\nhel", 2), Ok(None));
        assert_eq!(feed_all(b"zz\r\n", 1), Err(()));
        assert_eq!(feed_all(b"5\r\nhelloXX", 3), Err(()));
        assert_eq!(feed_all(b"fffffffffffffffff\r\n", 4), Err(()));
    }

    #[test]
    fn status_codes_as_digits() {
        assert_eq!(itoa_u16(200).0, *b"200");
        assert_eq!(itoa_u16(404).0, *b"404");
        assert_eq!(itoa_u16(1000).0, *b"999");
    }
}
