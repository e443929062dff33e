//! Keep-alive connections to targets, one pool per worker thread, for both forwarding paths:
//! plain TCP connections of the lean path ([`crate::h1`], plain-HTTP targets) and hyper
//! client connections of the general path ([`crate::forward`]: `https` targets, upgrades,
//! HTTP/2 and HTTP/1.0 clients). The two cannot share a connection (one is a raw socket the
//! lean path reads and writes itself, the other is driven by a hyper task), so the pool keeps
//! one idle stack per target for each, with one rule for both.
//!
//! Leaner than hyper-util's general client on the hot path: a checkout is a pop from a
//! per-target stack under an uncontended lock (only its worker thread uses it), and a
//! connection goes back when the response body has been read to its end, with no extra task
//! per request. Idle connections older than [`IDLE_TIMEOUT`] and closed ones are swept, so no
//! socket outlives its use.
//!
//! A pooled connection the target closed meanwhile fails the request sent on it; whether it
//! goes once more is [`UpstreamError::retry`]'s to say, for both paths.

use std::collections::HashMap;
use std::hash::Hash;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use http_body::Body;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use tower_service::Service;

use crate::forward::ReqBody;
use crate::h1::TargetConn;
use crate::hubwait::Holder;
use crate::tls::{UpstreamConnector, UpstreamIo};
use crate::upstream::{Side, UpstreamError};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Idle connections are closed after this long (swept every quarter of it, so at most 1.25
/// times it). Targets close idle connections too, and one closed just as we reuse it fails a
/// request whose body cannot be sent again, so ours should go first: 30 s (37.5 at most)
/// stays below the hub's 60 s (`request_header_timeout`); tornado servers keep theirs an hour.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// At most this many idle connections are kept per target.
const MAX_IDLE_PER_TARGET: usize = 512;

/// Idle connections per target, most recently used last, with the time they went idle.
struct Idle<K, C> {
    map: Mutex<HashMap<K, Vec<(C, Instant)>>>,
}

impl<K: Hash + Eq + Clone, C> Idle<K, C> {
    fn new() -> Self {
        Idle {
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Vec<(C, Instant)>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pop(&self, key: &K) -> Option<C> {
        self.lock().get_mut(key)?.pop().map(|(c, _)| c)
    }

    /// Keep `c` unless the target has [`MAX_IDLE_PER_TARGET`] already; the key is cloned only
    /// for a target's first idle connection.
    fn push(&self, key: &K, c: C) {
        let now = Instant::now();
        let mut idle = self.lock();
        let v = match idle.get_mut(key) {
            Some(v) => v,
            None => idle.entry(key.clone()).or_default(),
        };
        if v.len() < MAX_IDLE_PER_TARGET {
            v.push((c, now));
        }
    }

    /// Keep those idle for less than [`IDLE_TIMEOUT`] that `open` says are still open.
    fn sweep(&self, now: Instant, open: impl Fn(&C) -> bool) {
        self.lock().retain(|_, v| {
            v.retain(|(c, since)| now.duration_since(*since) < IDLE_TIMEOUT && open(c));
            !v.is_empty()
        });
    }

    fn count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }
}

/// A hyper connection's target: `https` or not, and the authority.
type Key = (bool, Authority);

pub struct Pool {
    connector: UpstreamConnector,
    /// The general path's connections.
    hyper: Idle<Key, SendRequest<ReqBody>>,
    /// The lean path's connections to plain-HTTP targets.
    plain: Idle<Authority, TargetConn>,
}

/// A connection lent out with a response; give it back with [`Checkin::checkin`] once the
/// response body has ended. Dropped instead, the connection closes.
pub struct Checkin {
    pool: Arc<Pool>,
    key: Key,
    send: SendRequest<ReqBody>,
}

impl Checkin {
    pub fn checkin(self) {
        if self.send.is_closed() {
            return;
        }
        self.pool.hyper.push(&self.key, self.send);
    }
}

/// Open a plain connection to `to` for the lean path (within `limit`, if given).
pub async fn connect_plain(
    to: &Authority,
    limit: Option<Duration>,
) -> Result<TargetConn, UpstreamError> {
    TargetConn::connect(to, limit)
        .await
        .map_err(|e| UpstreamError::caused(Side::Connect, false, e))
}

impl Pool {
    pub fn new(connector: UpstreamConnector) -> Arc<Self> {
        Arc::new(Pool {
            connector,
            hyper: Idle::new(),
            plain: Idle::new(),
        })
    }

    /// A plain connection to `to` for the lean path: an idle one that still looks open, else a
    /// new one (within `limit`, if given; waiting for a restarting hub with `hub`).
    pub async fn checkout_plain(
        &self,
        to: &Authority,
        limit: Option<Duration>,
        hub: Option<Holder<'_>>,
    ) -> Result<TargetConn, UpstreamError> {
        let mut closed = false;
        while let Some(mut c) = self.plain.pop(to) {
            // A close by the target that arrived since is seen here (a `recv(MSG_PEEK)` only
            // if the runtime saw the socket become readable).
            if c.still_open() {
                c.reused = true;
                return Ok(c);
            }
            closed = true;
        }
        if closed {
            // The target closed its idle connections: a hub that is going away, maybe.
            crate::hubwait::pause_before_retry(hub).await;
        }
        crate::hubwait::connect(hub, || connect_plain(to, limit)).await
    }

    /// A plain connection back from the lean path, ready for another request.
    pub fn checkin_plain(&self, to: &Authority, c: TargetConn) {
        self.plain.push(to, c);
    }

    /// Send `req` (absolute URI) over a pooled or new connection (a new one waits for a
    /// restarting hub with `hub`).
    pub async fn request(
        self: &Arc<Self>,
        mut req: Request<ReqBody>,
        hub: Option<Holder<'_>>,
    ) -> Result<(Response<Incoming>, Checkin), UpstreamError> {
        let uri = req.uri().clone();
        let authority = uri.authority().cloned().ok_or(UpstreamError::new(
            Side::Connect,
            false,
            "target without authority",
        ))?;
        let key = (uri.scheme() == Some(&Scheme::HTTPS), authority);
        // HTTP/1.1 to the target: origin-form request line.
        *req.uri_mut() = uri
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
        let mut fresh = false;
        loop {
            let pooled = if fresh {
                None
            } else {
                self.checkout(&key).await
            };
            let (mut send, reused) = match pooled {
                Some(s) => (s, true),
                None => (
                    crate::hubwait::connect(hub, || self.connect(&uri)).await?,
                    false,
                ),
            };
            // A request without a body can go once more if a pooled connection fails before
            // anything of an answer came (the target closed it as we sent): keep its head.
            let again = (reused && req.body().is_end_stream()).then(|| head_copy(&req));
            match send.try_send_request(req).await {
                Ok(res) => {
                    let c = Checkin {
                        pool: self.clone(),
                        key,
                        send,
                    };
                    return Ok((res, c));
                }
                Err(mut e) => {
                    // Handed back: the connection closed before our request went out.
                    let unsent = e.take_message();
                    fresh = unsent.is_none();
                    let failed =
                        UpstreamError::from_hyper(e.into_error(), unsent.is_some(), reused);
                    match unsent.or(again) {
                        // A pooled connection the target closed meanwhile: try again, on a
                        // fresh connection if the request went out on it.
                        Some(r) if failed.retry(true) => {
                            tracing::debug!("pooled connection failed ({failed}), retrying");
                            crate::hubwait::pause_before_retry(hub).await;
                            req = r;
                        }
                        _ => return Err(failed),
                    }
                }
            }
        }
    }

    async fn checkout(&self, key: &Key) -> Option<SendRequest<ReqBody>> {
        loop {
            let mut send = self.hyper.pop(key)?;
            if send.is_closed() {
                continue;
            }
            if send.ready().await.is_ok() {
                return Some(send);
            }
        }
    }

    async fn connect(&self, uri: &Uri) -> Result<SendRequest<ReqBody>, UpstreamError> {
        let failed = |e: BoxError| UpstreamError::caused(Side::Connect, false, e);
        let mut c = self.connector.clone();
        std::future::poll_fn(|cx| c.poll_ready(cx))
            .await
            .map_err(failed)?;
        let io = HearsOut {
            io: c.call(uri.clone()).await.map_err(failed)?,
            write_failed: false,
        };
        let (send, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| failed(e.into()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("upstream connection: {e}");
            }
        });
        Ok(send)
    }

    /// Drop closed connections and those idle for longer than [`IDLE_TIMEOUT`], of both kinds.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.hyper.sweep(now, |s| !s.is_closed());
        self.plain.sweep(now, TargetConn::still_open);
    }

    /// Idle connections held, of both kinds (for tests and metrics).
    pub fn idle_count(&self) -> usize {
        self.hyper.count() + self.plain.count()
    }
}

/// A copy of a body-less request's head, to send it again.
fn head_copy(req: &Request<ReqBody>) -> Request<ReqBody> {
    let mut r = Request::new(ReqBody::empty());
    *r.method_mut() = req.method().clone();
    *r.uri_mut() = req.uri().clone();
    *r.version_mut() = req.version();
    *r.headers_mut() = req.headers().clone();
    r
}

/// A target connection on which a failed write is not the end of the exchange. A target that
/// answers before it has read the whole request and then closes (a 405, a 413) resets the
/// connection, and our next write of the request body fails; hyper would give up on the
/// request there, with the target's answer unread in the socket. Here the rest of the request
/// goes nowhere instead, and hyper reads the answer, then the close.
struct HearsOut {
    io: UpstreamIo,
    write_failed: bool,
}

impl HearsOut {
    /// `Ok(n)` for a write that failed because the target is gone.
    fn heard_out<T>(&mut self, r: io::Result<T>, n: T) -> Poll<io::Result<T>> {
        match r {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                ) =>
            {
                tracing::debug!("target connection closed while we wrote to it: {e}");
                self.write_failed = true;
                Poll::Ready(Ok(n))
            }
            r => Poll::Ready(r),
        }
    }
}

impl hyper::rt::Read for HearsOut {
    #[inline]
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for HearsOut {
    #[inline]
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.write_failed {
            return Poll::Ready(Ok(buf.len()));
        }
        let r = ready!(Pin::new(&mut self.io).poll_write(cx, buf));
        self.heard_out(r, buf.len())
    }
    #[inline]
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let all = bufs.iter().map(|b| b.len()).sum();
        if self.write_failed {
            return Poll::Ready(Ok(all));
        }
        let r = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, bufs));
        self.heard_out(r, all)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    #[inline]
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write_failed {
            return Poll::Ready(Ok(()));
        }
        let r = ready!(Pin::new(&mut self.io).poll_flush(cx));
        self.heard_out(r, ())
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write_failed {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
