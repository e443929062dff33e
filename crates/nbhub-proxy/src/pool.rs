//! Keep-alive connections to targets, one pool per worker thread.
//!
//! Leaner than hyper-util's general client on the hot path: a checkout is a pop from a
//! per-target stack under an uncontended lock (only its worker thread uses it), and a
//! connection goes back when the response body has been read to its end, with no extra task
//! per request. Idle connections older than [`IDLE_TIMEOUT`] and closed ones are swept, so no
//! socket outlives its use.

use std::collections::HashMap;
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
use crate::tls::{UpstreamConnector, UpstreamIo};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Idle connections are closed after this long (swept every quarter of it, so at most 1.25
/// times it). Targets close idle connections too, and one closed just as we reuse it fails a
/// request whose body cannot be sent again, so ours should go first: 30 s (37.5 at most)
/// stays below the hub's 60 s (`request_header_timeout`); tornado servers keep theirs an hour.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// At most this many idle connections are kept per target.
const MAX_IDLE_PER_TARGET: usize = 512;

type Key = (bool, Authority);
/// Idle connections per target, most recently used last, with the time they went idle.
type Idle = HashMap<Key, Vec<(SendRequest<ReqBody>, Instant)>>;

pub struct Pool {
    connector: UpstreamConnector,
    idle: Mutex<Idle>,
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
        let mut idle = self.pool.lock();
        let v = idle.entry(self.key).or_default();
        if v.len() < MAX_IDLE_PER_TARGET {
            v.push((self.send, Instant::now()));
        }
    }
}

impl Pool {
    pub fn new(connector: UpstreamConnector) -> Arc<Self> {
        Arc::new(Pool {
            connector,
            idle: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Send `req` (absolute URI) over a pooled or new connection.
    pub async fn request(
        self: &Arc<Self>,
        mut req: Request<ReqBody>,
    ) -> Result<(Response<Incoming>, Checkin), BoxError> {
        let uri = req.uri().clone();
        let authority = uri.authority().cloned().ok_or("target without authority")?;
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
                None => (self.connect(&uri).await?, false),
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
                Err(mut e) => match (e.take_message(), again) {
                    // A pooled connection the target closed meanwhile, before our request
                    // went out: try again.
                    (Some(r), _) if reused => req = r,
                    (None, Some(r)) if !e.error().is_parse() && !e.error().is_user() => {
                        tracing::debug!("pooled connection failed ({}), retrying", e.error());
                        req = r;
                        fresh = true;
                    }
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    async fn checkout(&self, key: &Key) -> Option<SendRequest<ReqBody>> {
        loop {
            let (mut send, _) = self.lock().get_mut(key)?.pop()?;
            if send.is_closed() {
                continue;
            }
            if send.ready().await.is_ok() {
                return Some(send);
            }
        }
    }

    async fn connect(&self, uri: &Uri) -> Result<SendRequest<ReqBody>, BoxError> {
        let mut c = self.connector.clone();
        std::future::poll_fn(|cx| c.poll_ready(cx)).await?;
        let io = HearsOut {
            io: c.call(uri.clone()).await?,
            write_failed: false,
        };
        let (send, conn) = http1::Builder::new().handshake(io).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("upstream connection: {e}");
            }
        });
        Ok(send)
    }

    /// Drop closed connections and those idle for longer than [`IDLE_TIMEOUT`].
    pub fn sweep(&self) {
        let now = Instant::now();
        self.lock().retain(|_, v| {
            v.retain(|(s, since)| !s.is_closed() && now.duration_since(*since) < IDLE_TIMEOUT);
            !v.is_empty()
        });
    }

    /// Idle connections held (for tests and metrics).
    pub fn idle_count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
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
