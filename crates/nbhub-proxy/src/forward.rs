//! The hot path: route a client request, forward it to its target, stream the answer back.
//!
//! Per request: one table read (a trie walk under a read lock, an `Arc` clone), the upstream
//! URI built from shared parts (no copy of the path when no prefix is rewritten), a few header
//! inserts, and a connection from this worker's [`Pool`]. Bodies stream frame by frame in both
//! directions; each data frame bumps the route's `last_activity` with a relaxed atomic store.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

use crate::changes::Changes;
use crate::config::ProxyConfig;
use crate::deadline::DeadlineBody;
use crate::metrics::{GaugeGuard, Metrics};
use crate::pool::{Checkin, Pool};
use crate::routes::{Route, RouteTable};
use crate::tls::UpstreamConnector;
use crate::upstream::{Side, UpstreamError};

/// State shared by all connections and worker threads.
pub struct Shared {
    pub config: ProxyConfig,
    pub routes: RouteTable,
    /// Writes to `routes` go through here (the routes file, a handover's peer).
    pub changes: Changes,
    pub metrics: Metrics,
    /// Upgraded connections (websockets) being relayed: a draining process waits for them.
    pub tunnels: Tunnels,
    /// Requests for the hub waiting while it restarts (`--hub-wait`).
    pub hub_wait: crate::hubwait::HubWait,
    /// This process handed its sockets over and is draining: every answer closes its
    /// connection (`Connection: close`).
    draining: AtomicBool,
    connector: UpstreamConnector,
}

impl Shared {
    pub fn new(config: ProxyConfig, connector: UpstreamConnector) -> Self {
        let hub_wait = crate::hubwait::HubWait::new(config.hub_wait, config.hub_wait_max);
        Shared {
            config,
            routes: RouteTable::default(),
            changes: Changes::default(),
            metrics: Metrics::default(),
            tunnels: Tunnels::default(),
            hub_wait,
            draining: AtomicBool::new(false),
            connector,
        }
    }

    /// Whether answers close their connection: this process is draining after a handover.
    #[inline]
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// What a connect for a request on `route` needs to wait for a restarting hub: some only
    /// for the hub's route, with `--hub-wait` on.
    #[inline]
    pub fn hub_holder(&self, route: &Route) -> Option<crate::hubwait::Holder<'_>> {
        self.hub_wait.for_route(&self.metrics, route)
    }

    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

/// Count of upgraded connections being relayed, and a wake-up when none is left.
#[derive(Default)]
pub struct Tunnels {
    open: AtomicUsize,
    none_left: tokio::sync::Notify,
}

/// One relayed upgraded connection; counted until dropped.
pub struct Tunnel<'a>(&'a Tunnels);

impl Tunnels {
    pub fn open(&self) -> Tunnel<'_> {
        self.open.fetch_add(1, Ordering::Relaxed);
        Tunnel(self)
    }

    pub fn count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Returns once no upgraded connection is open.
    pub async fn none(&self) {
        loop {
            let woken = self.none_left.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            woken.await;
        }
    }
}

impl Drop for Tunnel<'_> {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.none_left.notify_waiters();
        }
    }
}

/// One worker thread's forwarding state: the shared state plus that thread's connection pool,
/// so that pooled upstream connections are driven on the thread that uses them.
pub struct Forwarder {
    pub shared: Arc<Shared>,
    /// Target connections of both paths: the lean HTTP/1.1 path's ([`crate::h1`]) and the
    /// general (hyper) path's (`https` targets, upgrades, HTTP/2).
    pub pool: Arc<Pool>,
    error_client: Client<UpstreamConnector, Empty<Bytes>>,
}

impl Forwarder {
    /// Must be called on the worker's runtime: the pool spawns its connection tasks there.
    pub fn new(shared: Arc<Shared>) -> Self {
        let mut b = Client::builder(TokioExecutor::new());
        b.pool_idle_timeout(crate::pool::IDLE_TIMEOUT)
            .pool_timer(hyper_util::rt::TokioTimer::new());
        Forwarder {
            pool: Pool::new(shared.connector.clone()),
            error_client: b.build(shared.connector.clone()),
            shared,
        }
    }
}

impl std::ops::Deref for Forwarder {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

/// What the forwarding path needs to know about the client connection.
pub struct ConnInfo {
    /// Client IP, ready to append to `X-Forwarded-For`.
    pub remote_ip: HeaderValue,
    pub tls: bool,
    /// The last `X-Forwarded-Port` value built on this connection: clients send the same
    /// `Host` on every request, so this saves an allocation per request.
    port_cache: std::sync::Mutex<Option<(u16, HeaderValue)>>,
}

impl ConnInfo {
    pub fn new(remote: SocketAddr, tls: bool) -> Self {
        let ip = match remote.ip() {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(std::net::IpAddr::V4)
                .unwrap_or(std::net::IpAddr::V6(v6)),
            v4 => v4,
        };
        let remote_ip =
            HeaderValue::try_from(ip.to_string()).unwrap_or(HeaderValue::from_static(""));
        ConnInfo {
            remote_ip,
            tls,
            port_cache: std::sync::Mutex::new(None),
        }
    }

    /// `X-Forwarded-Port` as http-proxy computes it: the `Host` header's port, else the
    /// scheme's default.
    pub(crate) fn forwarded_port(&self, host: Option<&[u8]>) -> HeaderValue {
        let port = host
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| s.rsplit_once(':'))
            .and_then(|(_, p)| p.parse::<u16>().ok());
        let Some(port) = port else {
            return HeaderValue::from_static(if self.tls { "443" } else { "80" });
        };
        // Uncontended (one request at a time on HTTP/1.1), so the lock is a single CAS.
        let mut cache = self.port_cache.lock().unwrap_or_else(|e| e.into_inner());
        match &*cache {
            Some((p, v)) if *p == port => v.clone(),
            _ => {
                let v = HeaderValue::from(port);
                *cache = Some((port, v.clone()));
                v
            }
        }
    }
}

pin_project! {
    /// A request body on its way to a target, within its deadline ([`crate::deadline`]); data
    /// frames count as route activity.
    pub struct ReqBody {
        // None: no body (a request sent again, see [`ReqBody::empty`]).
        #[pin]
        inner: Option<DeadlineBody<Incoming>>,
        route: Option<Arc<Route>>,
    }
}

impl ReqBody {
    /// The body of a request sent again, which had none.
    pub(crate) fn empty() -> Self {
        ReqBody {
            inner: None,
            route: None,
        }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(None);
        };
        let r = inner.poll_frame(cx);
        if let (Poll::Ready(Some(Ok(_))), Some(route)) = (&r, &this.route) {
            route.touch();
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(DeadlineBody::is_end_stream)
    }
    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), DeadlineBody::size_hint)
    }
}

pin_project! {
    /// Every response body we send: a target's (streamed, counting activity) or our own.
    #[project = ProxyBodyProj]
    pub enum ProxyBody {
        Upstream {
            #[pin] inner: Incoming,
            route: Option<Arc<Route>>,
            // The target connection, back to the pool once this body has ended.
            checkin: Option<Checkin>,
        },
        Full { data: Option<Bytes> },
    }
}

impl ProxyBody {
    pub fn full(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        ProxyBody::Full {
            data: if b.is_empty() { None } else { Some(b) },
        }
    }
    pub fn empty() -> Self {
        ProxyBody::Full { data: None }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            ProxyBodyProj::Upstream {
                inner,
                route,
                checkin,
            } => {
                let mut inner = inner;
                let r = inner.as_mut().poll_frame(cx);
                match &r {
                    Poll::Ready(Some(Ok(_))) => {
                        if let Some(route) = route {
                            route.touch();
                        }
                        if inner.is_end_stream() {
                            if let Some(c) = checkin.take() {
                                c.checkin();
                            }
                        }
                    }
                    Poll::Ready(None) => {
                        if let Some(c) = checkin.take() {
                            c.checkin();
                        }
                    }
                    _ => {}
                }
                r
            }
            ProxyBodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }
    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { inner, .. } => inner.is_end_stream(),
            ProxyBody::Full { data } => data.is_none(),
        }
    }
    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { inner, .. } => inner.size_hint(),
            ProxyBody::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

fn plain(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

/// The characters `encodeURIComponent` escapes.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Host for host routing: the `Host` header (or HTTP/2 authority) without the port.
fn routing_host(req: &Request<Incoming>) -> &str {
    let h = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    strip_host_port(h)
}

/// The path routes are looked up by: URL-decoded, as CHP does with decodeURIComponent
/// (decoded only if needed; left as it is if it does not decode to UTF-8).
pub(crate) fn routing_path(raw_path: &str) -> Cow<'_, str> {
    if raw_path.contains('%') {
        percent_decode_str(raw_path)
            .decode_utf8()
            .unwrap_or(Cow::Borrowed(raw_path))
    } else {
        Cow::Borrowed(raw_path)
    }
}

/// `host:port` → `host`, `[v6]:port` → `v6`.
pub(crate) fn strip_host_port(h: &str) -> &str {
    if h.starts_with('[') {
        // [v6]:port
        return h.split_once(']').map_or(h, |(a, _)| &a[1..]);
    }
    h.split(':').next().unwrap_or(h)
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == http::Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req.headers().get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .map(|s| s.to_ascii_lowercase().contains("upgrade"))
                .unwrap_or(false)
        })
}

// Header names as constants: parsing a `&str` name on every request showed up in profiles.
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Hop-by-hop headers that must not be passed on (RFC 9110 §7.6.1), except for upgrades.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    if let Some(c) = h.remove(header::CONNECTION) {
        if let Ok(s) = c.to_str() {
            for name in s.split(',') {
                if let Ok(n) = HeaderName::try_from(name.trim()) {
                    h.remove(n);
                }
            }
        }
    }
    for n in [
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ] {
        h.remove(n);
    }
    if let Some(te) = h.get(header::TE) {
        if te.as_bytes() != b"trailers" {
            h.remove(header::TE);
        }
    }
}

/// Append `value` to a comma-joined `X-Forwarded-*` header, as http-proxy's `xfwd` does.
fn append_forwarded(h: &mut HeaderMap, name: HeaderName, value: &HeaderValue) {
    match h.get(&name) {
        Some(old) if !old.is_empty() => {
            let mut v = Vec::with_capacity(old.len() + 1 + value.len());
            v.extend_from_slice(old.as_bytes());
            v.push(b',');
            v.extend_from_slice(value.as_bytes());
            if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(v)) {
                h.insert(name, v);
            }
        }
        _ => {
            h.insert(name, value.clone());
        }
    }
}

/// Answer one request on the public port.
pub async fn handle(
    shared: Arc<Forwarder>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    shared.metrics.requests.fetch_add(1, Ordering::Relaxed);
    if req.uri().path() == "/_chp_healthz" {
        return Ok(healthz());
    }
    let path = routing_path(req.uri().path());
    let host = shared.config.host_routing.then(|| routing_host(&req));
    let Some(route) = shared.routes.lookup(host, &path) else {
        tracing::debug!(path = %path, "no route");
        return Ok(error_response(&shared, StatusCode::NOT_FOUND, &req).await);
    };
    drop(path);
    Ok(forward(shared, conn, route, req).await)
}

/// The answer to `/_chp_healthz`.
pub(crate) fn healthz() -> Response<ProxyBody> {
    plain(StatusCode::OK, "application/json", r#"{"status": "OK"}"#)
}

fn upstream_uri(cfg: &ProxyConfig, route: &Route, host_routing: bool, uri: &Uri) -> Option<Uri> {
    let t = &route.target;
    let pq = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let pq = match upstream_path(cfg, route, host_routing, pq.as_str()) {
        Cow::Borrowed(_) => pq,
        Cow::Owned(s) => PathAndQuery::try_from(s).ok()?,
    };
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(t.scheme.clone());
    parts.authority = Some(t.authority.clone());
    parts.path_and_query = Some(pq);
    Uri::from_parts(parts).ok()
}

/// The path and query sent to the target for a request's `pq`, as CHP's prefix flags say:
/// the route's prefix dropped unless `--include-prefix`, the target's path prepended unless
/// `--no-prepend-path`. Borrowed when nothing changes.
pub(crate) fn upstream_path<'a>(
    cfg: &ProxyConfig,
    route: &Route,
    host_routing: bool,
    pq: &'a str,
) -> Cow<'a, str> {
    let t = &route.target;
    let path = pq.split_once('?').map_or(pq, |(p, _)| p);
    let prefix_len = if cfg.include_prefix || route.key.as_ref() == "/" {
        0
    } else {
        // The route key minus the host segment under host routing.
        let key: &str = &route.key;
        let key = if host_routing {
            key[1..].find('/').map_or("", |i| &key[i + 1..])
        } else {
            key
        };
        if path.starts_with(key) {
            key.len()
        } else {
            0
        }
    };
    let target_path = if cfg.prepend_path {
        t.path.as_str()
    } else {
        ""
    };
    if prefix_len == 0 && target_path.is_empty() {
        return Cow::Borrowed(pq);
    }
    let rest = &pq[prefix_len..];
    let mut s = String::with_capacity(target_path.len() + rest.len() + 1);
    s.push_str(target_path);
    if !rest.starts_with('/') {
        s.push('/');
    }
    s.push_str(rest);
    Cow::Owned(s)
}

async fn forward(
    shared: Arc<Forwarder>,
    conn: Arc<ConnInfo>,
    route: Arc<Route>,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let cfg = &shared.config;
    let upgrade = is_upgrade(&req);
    let Some(uri) = upstream_uri(cfg, &route, cfg.host_routing, req.uri()) else {
        return error_response(&shared, StatusCode::INTERNAL_SERVER_ERROR, &req).await;
    };
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let version = req.version();
    let (mut parts, body) = req.into_parts();
    // HTTP/2 clients send :authority instead of Host; targets speak HTTP/1.1 and need Host.
    if !parts.headers.contains_key(header::HOST) {
        if let Some(a) = parts.uri.authority() {
            if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                parts.headers.insert(header::HOST, v);
            }
        }
    }
    if !upgrade {
        strip_hop_by_hop(&mut parts.headers);
    }
    if cfg.x_forward {
        let h = &mut parts.headers;
        let port = conn.forwarded_port(h.get(header::HOST).map(HeaderValue::as_bytes));
        let proto = HeaderValue::from_static(match (upgrade, conn.tls) {
            (false, false) => "http",
            (false, true) => "https",
            (true, false) => "ws",
            (true, true) => "wss",
        });
        append_forwarded(h, X_FORWARDED_FOR, &conn.remote_ip);
        append_forwarded(h, X_FORWARDED_PORT, &port);
        append_forwarded(h, X_FORWARDED_PROTO, &proto);
        if !h.contains_key(&X_FORWARDED_HOST) {
            let host = h
                .get(header::HOST)
                .cloned()
                .unwrap_or(HeaderValue::from_static(""));
            h.insert(X_FORWARDED_HOST, host);
        }
    }
    for (k, v) in &cfg.custom_headers {
        parts.headers.insert(k.clone(), v.clone());
    }
    if cfg.change_origin {
        if let Ok(v) = HeaderValue::from_str(route.target.authority.as_str()) {
            parts.headers.insert(header::HOST, v);
        }
    }
    // Keep the original URL for the error target before the parts move.
    let orig_uri = parts.uri.clone();
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    let up_req = Request::from_parts(
        parts,
        ReqBody {
            inner: Some(DeadlineBody::new(body, cfg.body_limit)),
            route: Some(route.clone()),
        },
    );
    let sent = shared.pool.request(up_req, shared.hub_holder(&route));
    let res = match cfg.proxy_timeout {
        Some(t) => match tokio::time::timeout(t, sent).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::new(
                Side::Receive,
                false,
                format!("no response within {t:?}"),
            )),
        },
        None => sent.await,
    };
    let (mut res, checkin) = match res {
        Ok(r) => r,
        Err(e) => match e.status() {
            // The client, not the target, failed: the rest of its body did not come in time.
            StatusCode::REQUEST_TIMEOUT => {
                tracing::debug!(url = %orig_uri, "408: {e}");
                return request_timeout(&shared, version);
            }
            status => {
                tracing::warn!(target = %route.target.authority, url = %orig_uri, side = ?e.side(), reused = e.reused(), "{} {}: {e}", status.as_u16(), route.key);
                return error_for(&shared, status, &orig_uri).await;
            }
        },
    };
    if res.status().as_u16() < 300 {
        route.touch();
    }
    // Answer in the client's HTTP version, whatever the target spoke (e.g. HTTP/1.0).
    *res.version_mut() = version;
    if let Some(client_upgrade) = client_upgrade {
        if res.status() == StatusCode::SWITCHING_PROTOCOLS {
            let upstream_upgrade = hyper::upgrade::on(&mut res);
            let route = route.clone();
            let shared2 = shared.clone();
            tokio::spawn(async move {
                shared2
                    .metrics
                    .websockets_total
                    .fetch_add(1, Ordering::Relaxed);
                let _g = GaugeGuard::new(&shared2.metrics.websockets_active);
                let _t = shared2.tunnels.open();
                let (c, u) = match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!("websocket upgrade failed: {e}");
                        return;
                    }
                };
                let mut c = ActivityIo {
                    io: TokioIo::new(c),
                    route: route.clone(),
                };
                let mut u = ActivityIo {
                    io: TokioIo::new(u),
                    route,
                };
                if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                    tracing::debug!("websocket closed: {e}");
                }
            });
            let (parts, _) = res.into_parts();
            return Response::from_parts(parts, ProxyBody::empty());
        }
    } else {
        strip_hop_by_hop(res.headers_mut());
    }
    // A body that is already complete (204, HEAD, empty) may never be polled.
    let checkin = if res.body().is_end_stream() {
        checkin.checkin();
        None
    } else {
        Some(checkin)
    };
    res.map(|inner| ProxyBody::Upstream {
        inner,
        route: Some(route),
        checkin,
    })
}

/// The answer to a request whose body did not arrive in time; an HTTP/1 connection closes
/// after it (what is left of the body is never read).
fn request_timeout(shared: &Forwarder, version: http::Version) -> Response<ProxyBody> {
    shared.metrics.error(StatusCode::REQUEST_TIMEOUT.as_u16());
    let mut r = plain(StatusCode::REQUEST_TIMEOUT, "text/plain", "Request Timeout");
    if version < http::Version::HTTP_2 {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

pin_project! {
    /// One side of a proxied websocket: reads count as route activity.
    struct ActivityIo<T> {
        #[pin]
        io: T,
        route: Arc<Route>,
    }
}

impl<T: AsyncRead> AsyncRead for ActivityIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = this.io.poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.route.touch();
        }
        r
    }
}

impl<T: AsyncWrite> AsyncWrite for ActivityIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

async fn error_response(
    shared: &Forwarder,
    status: StatusCode,
    req: &Request<Incoming>,
) -> Response<ProxyBody> {
    error_for(shared, status, req.uri()).await
}

/// An error answer as CHP gives it: the error target's page with our status, else the
/// `--error-path` page, else the reason phrase.
pub(crate) async fn error_for(
    shared: &Forwarder,
    status: StatusCode,
    url: &Uri,
) -> Response<ProxyBody> {
    shared.metrics.error(status.as_u16());
    let cfg = &shared.config;
    if let Some(t) = &cfg.error_target {
        let orig = url.path_and_query().map_or("/", |p| p.as_str());
        let target = format!(
            "{}://{}{}/{}?url={}",
            t.scheme,
            t.authority,
            t.path,
            status.as_u16(),
            utf8_percent_encode(orig, URI_COMPONENT)
        );
        let fetched = match target.parse::<Uri>() {
            Ok(u) => {
                let mut r = Request::new(Empty::new());
                *r.uri_mut() = u;
                match cfg.proxy_timeout {
                    Some(d) => tokio::time::timeout(d, shared.error_client.request(r))
                        .await
                        .map_err(|_| "timeout".to_string())
                        .and_then(|r| r.map_err(|e| e.to_string())),
                    None => shared
                        .error_client
                        .request(r)
                        .await
                        .map_err(|e| e.to_string()),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        match fetched {
            Ok(res) => {
                let (parts, body) = res.into_parts();
                let mut out = Response::new(ProxyBody::Upstream {
                    inner: body,
                    route: None,
                    checkin: None,
                });
                *out.status_mut() = status;
                for h in [
                    header::CONTENT_TYPE,
                    header::CONTENT_ENCODING,
                    header::CONTENT_LENGTH,
                ] {
                    if let Some(v) = parts.headers.get(&h) {
                        out.headers_mut().insert(h, v.clone());
                    }
                }
                return out;
            }
            Err(e) => {
                tracing::error!("error target {target} failed: {e}");
                return plain(
                    status,
                    "text/plain",
                    status.canonical_reason().unwrap_or(""),
                );
            }
        }
    }
    if let Some(dir) = &cfg.error_path {
        for name in [
            format!("{}.html", status.as_u16()),
            "error.html".to_string(),
        ] {
            if let Ok(page) = tokio::fs::read(dir.join(name)).await {
                return plain(status, "text/html", page);
            }
        }
    }
    plain(
        status,
        "text/plain",
        status.canonical_reason().unwrap_or(""),
    )
}
