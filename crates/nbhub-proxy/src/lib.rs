//! nbhub-proxy: a reverse proxy with the command line and REST API of
//! configurable-http-proxy (CHP) 5.3.0, for nbhub and for the Python JupyterHub.
//!
//! # Layout
//!
//! - [`config`]: CHP's flags (clap) and the resolved [`ProxyConfig`]; refused flags are errors.
//! - [`routes`]: the route table, a trie keyed by path segments; per-route `last_activity`.
//! - [`api`]: the REST API on the API port (`/api/routes`).
//! - [`h1`]: the lean path, plain HTTP/1.1 to plain-HTTP targets relayed raw — the hot path
//!   of a hub; its files: [`h1::conn`] (the client connection's loop, our own answers, the
//!   hand-over), [`h1::head`] (heads read and rewritten), [`h1::relay`] (one exchange),
//!   [`h1::chunked`] (chunked framing followed), [`h1::target`] (a plain target connection).
//! - [`forward`]: the general path (hyper): routing and forwarding with streamed bodies and
//!   websockets, for whatever the lean path hands over (`https` targets, upgrades, HTTP/2).
//! - [`pool`]: keep-alive connections to targets for both paths, one pool per worker thread.
//! - [`upstream`]: how an exchange with a target failed: retry or not, which status.
//! - [`tls`]: rustls server configs and the connector to `http`/`https` targets.
//! - [`linger`]: closing a connection without resetting it (the hub uses it too).
//! - [`metrics`]: counters in the OpenMetrics text format (prometheus-client) on
//!   `--metrics-port`.
//! - [`mem`]: glibc malloc thresholds for the buffer pattern, trimming when idle.
//! - [`deadline`]: deadlines for receiving request heads and bodies (slow clients).
//! - [`rlimit`]: the open files limit raised to the hard limit at start.
//! - [`changes`]: route writes beyond the table: the routes file, a handover's peer.
//! - [`handover`]: upgrade in place (sockets and routes to a new process), systemd sockets.
//! - [`hubwait`]: requests for the hub wait while it restarts (`--hub-wait`), bounded.
//!
//! Start it in-process with [`Listeners::bind`] (or listeners of your own on port 0) and
//! [`run`]; `run` returns once the shutdown future resolves and in-flight requests finish,
//! or once it handed its sockets over ([`run_with`], [`handover`]) and drained.

pub mod api;
pub mod changes;
pub mod config;
pub mod deadline;
pub mod forward;
pub mod h1;
pub mod handover;
pub mod hubwait;
pub mod linger;
pub mod mem;
pub mod metrics;
pub mod pool;
pub mod rlimit;
pub mod routes;
pub mod tls;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::Map;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use config::{Args, ProxyConfig};
use forward::{ConnInfo, Forwarder, ProxyBody, Shared};
use metrics::GaugeGuard;
use routes::{Route, Target};

/// How long `run` waits for in-flight requests after shutdown before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// A worker holding more than one connection above another leaves the next one to the
/// others for this long, then takes it anyway.
const ACCEPT_DEFER: Duration = Duration::from_millis(1);

/// The sockets the proxy serves. Bind them yourself (e.g. on port 0 in tests) or with
/// [`Listeners::bind`] from a config.
pub struct Listeners {
    pub public: TcpListener,
    pub api: TcpListener,
    pub metrics: Option<TcpListener>,
    /// Plain-HTTP port that redirects to the public HTTPS port (`--redirect-port`).
    pub redirect: Option<TcpListener>,
}

async fn bind(ip: &str, port: u16, what: &str) -> Result<TcpListener> {
    let host = config::bind_host(ip);
    TcpListener::bind((host, port))
        .await
        .with_context(|| format!("binding the {what} port on {host}:{port}"))
}

/// Where a process is in its life: serving, draining after a handover (accepting no more,
/// answers closing their connections, upgraded ones kept), or stopping (SIGTERM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Serve,
    Drain,
    Stop,
}

/// What a process starts with besides its sockets.
#[derive(Default)]
pub struct Start {
    /// Routes to serve at once: a handover's snapshot or the routes file.
    pub routes: Vec<Route>,
    /// The control socket to serve for the next upgrade (`--handover-socket`).
    pub control: Option<std::os::unix::net::UnixListener>,
    /// The process this one took over from (`--take-over`).
    pub link: Option<handover::Link>,
}

impl Listeners {
    /// Listeners from sockets already bound (systemd's, a handover's); non-blocking.
    pub fn from_std(
        public: std::net::TcpListener,
        api: std::net::TcpListener,
        metrics: Option<std::net::TcpListener>,
        redirect: Option<std::net::TcpListener>,
    ) -> Result<Self> {
        Ok(Listeners {
            public: TcpListener::from_std(public)?,
            api: TcpListener::from_std(api)?,
            metrics: metrics.map(TcpListener::from_std).transpose()?,
            redirect: redirect.map(TcpListener::from_std).transpose()?,
        })
    }

    /// Bind the ports a config names.
    pub async fn bind(config: &ProxyConfig) -> Result<Self> {
        Self::bind_missing(config, None, None, None, None).await
    }

    /// Bind the ports a config names that are not given already (systemd's sockets).
    pub async fn bind_missing(
        config: &ProxyConfig,
        public: Option<TcpListener>,
        api: Option<TcpListener>,
        metrics: Option<TcpListener>,
        redirect: Option<TcpListener>,
    ) -> Result<Self> {
        Ok(Listeners {
            public: match public {
                Some(l) => l,
                None => bind(&config.ip, config.port, "public").await?,
            },
            api: match api {
                Some(l) => l,
                None => bind(&config.api_ip, config.api_port, "API").await?,
            },
            metrics: match (metrics, config.metrics_port) {
                (Some(l), _) => Some(l),
                (None, Some(p)) => Some(bind(&config.metrics_ip, p, "metrics").await?),
                (None, None) => None,
            },
            redirect: match (redirect, config.redirect_port) {
                (Some(l), _) => Some(l),
                (None, Some(p)) => Some(bind(&config.ip, p, "redirect").await?),
                (None, None) => None,
            },
        })
    }

    pub fn public_addr(&self) -> std::io::Result<SocketAddr> {
        self.public.local_addr()
    }

    pub fn api_addr(&self) -> std::io::Result<SocketAddr> {
        self.api.local_addr()
    }

    /// The line the binary prints once it listens, which the hub and tests wait for:
    /// `nbhub-proxy listening on http://127.0.0.1:8000, api on http://127.0.0.1:8001`.
    pub fn ready_line(&self, config: &ProxyConfig) -> std::io::Result<String> {
        let s = |tls: bool| if tls { "https" } else { "http" };
        let mut line = format!(
            "nbhub-proxy listening on {}://{}, api on {}://{}",
            s(config.tls.is_some()),
            self.public_addr()?,
            s(config.api_tls.is_some()),
            self.api_addr()?
        );
        if let Some(m) = &self.metrics {
            line.push_str(&format!(", metrics on http://{}", m.local_addr()?));
        }
        Ok(line)
    }
}

/// Serve until `shutdown` resolves, then stop accepting, let in-flight requests finish
/// (up to 30 s) and return.
///
/// The public port is served by `config.workers` threads (default: one per core), each with a
/// single-threaded runtime and its own upstream pool, as nginx runs one worker per core: a
/// request and its upstream connection then stay on one thread, with no cross-thread wake-ups.
/// The API, metrics and redirect ports are served on the caller's runtime.
pub async fn run(
    config: ProxyConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    run_with(config, listeners, Start::default(), shutdown)
        .await
        .map(drop)
}

/// How [`run_with`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Shut down (the shutdown future, or a server failed).
    Stopped,
    /// A new process took the sockets over; this one drained.
    HandedOver,
}

/// Duplicates of the listening sockets, to hand over.
fn dup_sockets(
    listeners: &Listeners,
    control: &std::os::unix::net::UnixListener,
) -> Result<handover::Sockets> {
    use std::os::fd::{AsFd, OwnedFd};
    let dup = |fd: std::os::fd::BorrowedFd<'_>| -> Result<OwnedFd> {
        fd.try_clone_to_owned().context("duplicating a socket")
    };
    let mut v = vec![
        ("public", dup(listeners.public.as_fd())?),
        ("api", dup(listeners.api.as_fd())?),
    ];
    if let Some(m) = &listeners.metrics {
        v.push(("metrics", dup(m.as_fd())?));
    }
    if let Some(r) = &listeners.redirect {
        v.push(("redirect", dup(r.as_fd())?));
    }
    v.push(("handover", dup(control.as_fd())?));
    Ok(handover::Sockets(v))
}

/// [`run`], starting with routes, a control socket for upgrades, or the link to the process
/// this one takes over from ([`Start`]). A process whose sockets a new one took over drains
/// (`--upgrade-grace`) and returns.
pub async fn run_with(
    config: ProxyConfig,
    listeners: Listeners,
    start: Start,
    shutdown: impl Future<Output = ()>,
) -> Result<Ended> {
    let tls = config
        .tls
        .as_ref()
        .map(tls::server_config)
        .transpose()?
        .map(TlsAcceptor::from);
    let api_tls = config
        .api_tls
        .as_ref()
        .map(tls::server_config)
        .transpose()?
        .map(TlsAcceptor::from);
    let client_tls = tls::client_config(&config.client_tls)?;
    let connector = tls::UpstreamConnector::new(client_tls, config.proxy_timeout);
    let default_target = config.default_target.clone();
    let workers = config
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let shared = Arc::new(Shared::new(config, connector));
    if let Some(t) = default_target {
        let mut data = Map::new();
        data.insert(
            "target".into(),
            format!("{}://{}{}", t.scheme, t.authority, t.path).into(),
        );
        let mut route = Route::new("/", data, t);
        route.hub = true;
        shared.routes.insert(route);
    }
    // The running table (a handover's, the file's) wins over --default-target's "/".
    shared.changes.loaded(&shared.routes, start.routes);
    // Taking over, our API's writes go to the old process from the first one on.
    let link = start
        .link
        .map(|l| (l, shared.changes.attach(&shared.routes).0));
    let builder = Arc::new(server_builder(&shared.config));
    let phase = Arc::new(watch::Sender::new(Phase::Serve));
    let stop_rx = phase.subscribe();

    // The routes file, rewritten on every change until the end.
    let (file_done, file_stop) = watch::channel(false);
    let routes_file = shared.config.routes_file.clone().map(|path| {
        let s2 = shared.clone();
        tokio::spawn(async move { changes::keep_routes_file(&s2, path, file_stop).await })
    });

    // Public port: worker threads sharing the listening socket.
    // Copies of the sockets to hand over, if this process can be taken over.
    let sockets = match &start.control {
        Some(c) => dup_sockets(&listeners, c)?,
        None => handover::Sockets(Vec::new()),
    };
    let public = listeners.public.into_std().context("public listener")?;
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<Result<()>>(workers);
    let open: Arc<[AtomicUsize]> = (0..workers).map(|_| AtomicUsize::new(0)).collect();
    let _ = shared.metrics.worker_connections.set(open.clone());
    for i in 0..workers {
        let load = Load {
            open: open.clone(),
            me: i,
        };
        let listener = public.try_clone().context("sharing the public listener")?;
        let (shared, builder, tls, stop, done) = (
            shared.clone(),
            builder.clone(),
            tls.clone(),
            stop_rx.clone(),
            done_tx.clone(),
        );
        std::thread::Builder::new()
            .name(format!("nbhub-proxy-w{i}"))
            .spawn(move || {
                let r = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("worker runtime")
                    .and_then(|rt| {
                        rt.block_on(async move {
                            let listener = TcpListener::from_std(listener)?;
                            let fw = Arc::new(Forwarder::new(shared.clone()));
                            // Close idle and dead target connections: no socket outlives its use.
                            let pool = fw.pool.clone();
                            tokio::spawn(async move {
                                let mut tick = tokio::time::interval(pool::IDLE_TIMEOUT / 4);
                                loop {
                                    tick.tick().await;
                                    pool.sweep();
                                    mem::trim();
                                }
                            });
                            let lean = fw.clone();
                            let svc = move |info: Arc<ConnInfo>| {
                                let fw = fw.clone();
                                service_fn(move |req: Request<Incoming>| {
                                    let v = req.version();
                                    let fw = fw.clone();
                                    let res = forward::handle(fw.clone(), info.clone(), req);
                                    async move { Ok(closing(&fw, v, res.await?)) }
                                })
                            };
                            let port = Port {
                                listener,
                                tls,
                                load,
                            };
                            serve(port, builder, stop, shared, Some(lean), svc).await
                        })
                    });
                let _ = done.blocking_send(r);
            })
            .context("starting a worker thread")?;
    }
    drop(public);
    drop(done_tx);

    // API, metrics and redirect ports on this runtime.
    let mut tasks = tokio::task::JoinSet::new();
    {
        let s2 = shared.clone();
        let svc = move |_info: Arc<ConnInfo>| {
            let shared = s2.clone();
            service_fn(move |req: Request<Incoming>| {
                let v = req.version();
                let shared = shared.clone();
                let res = api::handle(shared.clone(), req);
                async move { Ok(closing(&shared, v, res.await?)) }
            })
        };
        tasks.spawn(serve(
            Port::single(listeners.api, api_tls),
            builder.clone(),
            stop_rx.clone(),
            shared.clone(),
            None,
            svc,
        ));
    }
    if let Some(l) = listeners.metrics {
        let s2 = shared.clone();
        let svc = move |_info: Arc<ConnInfo>| {
            let shared = s2.clone();
            service_fn(move |req: Request<Incoming>| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(serve_metrics(&shared, &req)) }
            })
        };
        tasks.spawn(serve(
            Port::single(l, None),
            builder.clone(),
            stop_rx.clone(),
            shared.clone(),
            None,
            svc,
        ));
    }
    if let Some(l) = listeners.redirect {
        let to = shared.config.redirect_to.unwrap_or(shared.config.port);
        let svc = move |_info: Arc<ConnInfo>| {
            service_fn(move |req: Request<Incoming>| async move {
                Ok::<_, std::convert::Infallible>(redirect(to, &req))
            })
        };
        tasks.spawn(serve(
            Port::single(l, None),
            builder.clone(),
            stop_rx.clone(),
            shared.clone(),
            None,
            svc,
        ));
    }

    // Upgrades: serve the control socket now, or, taking over, once the old process drains.
    let server = Arc::new(handover::Server::new(
        shared.clone(),
        sockets,
        phase.clone(),
    ));
    match (link, start.control) {
        (Some((link, attached)), control) => {
            let (s2, server) = (shared.clone(), server.clone());
            let pid_file = shared.config.pid_file.clone();
            tokio::spawn(handover::follow(s2, link, attached, move || {
                if let Some(p) = pid_file {
                    if let Err(e) = std::fs::write(&p, format!("{}\n", std::process::id())) {
                        tracing::error!("writing --pid-file {}: {e}", p.display());
                    }
                }
                if let Some(c) = control {
                    tokio::spawn(server.serve(c));
                }
            }));
        }
        (None, Some(control)) => {
            tokio::spawn(server.clone().serve(control));
        }
        (None, None) => {}
    }

    let mut failure = None;
    let mut phase_rx = phase.subscribe();
    tokio::pin!(shutdown);
    let mut signalled = false;
    tokio::select! {
        _ = &mut shutdown => signalled = true,
        _ = phase_rx.wait_for(|p| *p != Phase::Serve) => {}
        Some(r) = done_rx.recv() => failure = r.err(),
        Some(r) = tasks.join_next() => {
            failure = match r {
                Ok(r) => r.err(),
                Err(e) => Some(anyhow::anyhow!("server task failed: {e}")),
            };
        }
    }
    // Handed over (even if a SIGTERM came at the same moment): the sockets, the pid file and
    // the control socket are the new process's now.
    let handed_over = shared.draining();
    if handed_over && !signalled {
        tracing::info!(
            "handed over: draining (upgraded connections kept up to {:?})",
            shared.config.upgrade_grace
        );
    } else {
        tracing::info!("shutting down: closing listeners, finishing in-flight requests");
        phase.send_replace(Phase::Stop);
        // Our copies kept for a handover must not keep the ports open.
        server.close_sockets();
    }
    // While draining, a SIGTERM still stops at once.
    let stop_on_signal = {
        let phase = phase.clone();
        async move {
            if !signalled {
                shutdown.await;
                phase.send_replace(Phase::Stop);
            }
            std::future::pending::<()>().await
        }
    };
    let join = async {
        while let Some(r) = tasks.join_next().await {
            if let Ok(Err(e)) = r {
                failure.get_or_insert(e);
            }
        }
        while let Some(r) = done_rx.recv().await {
            if let Err(e) = r {
                failure.get_or_insert(e);
            }
        }
    };
    tokio::select! {
        _ = join => {}
        _ = stop_on_signal => {}
    }
    drop(server);
    let _ = file_done.send(true);
    if let Some(t) = routes_file {
        let _ = t.await;
    }
    match failure {
        Some(e) => Err(e),
        None if handed_over => Ok(Ended::HandedOver),
        None => Ok(Ended::Stopped),
    }
}

fn server_builder(config: &ProxyConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        // hyper starts this timer while a keep-alive connection waits for its next request,
        // which is what CHP's --keep-alive-timeout bounds; it runs on until the head is
        // complete, so it is the head's deadline on this path too.
        .header_read_timeout(config.hyper_header_timeout());
    builder.http2().timer(TokioTimer::new());
    builder
}

/// Accept connections until `stop`, then wait (up to 30 s) for the open ones to finish.
/// With `lean`, plain-TCP connections start on the lean HTTP/1.1 path ([`h1`]) and move to
/// hyper (`make_svc`) only if they need it.
async fn serve<S, F>(
    port: Port,
    builder: Arc<auto::Builder<TokioExecutor>>,
    mut stop: watch::Receiver<Phase>,
    shared: Arc<Shared>,
    lean: Option<Arc<Forwarder>>,
    make_svc: F,
) -> Result<()>
where
    F: Fn(Arc<ConnInfo>) -> S,
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<ProxyBody>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let Port {
        listener,
        tls,
        load,
    } = port;
    let graceful = GracefulShutdown::new();
    let idle = shared.config.client_idle_timeout();
    loop {
        if load.ahead() {
            tokio::select! {
                _ = tokio::time::sleep(ACCEPT_DEFER) => {}
                _ = stop.changed() => break,
            }
        }
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of fds and similar: back off briefly rather than spin.
                    tracing::error!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let info = Arc::new(ConnInfo::new(remote, tls.is_some()));
        let svc = make_svc(info.clone());
        let lean = lean.clone();
        let mut conn_stop = stop.clone();
        let builder = builder.clone();
        let shared = shared.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        // Counted from the accept on, so that a burst accepted in one go is seen at once.
        let open = load.open_one();
        tokio::spawn(async move {
            shared
                .metrics
                .connections_total
                .fetch_add(1, Ordering::Relaxed);
            let _g = GaugeGuard::new(&shared.metrics.connections_active);
            let _open = open;
            match tls {
                None => match lean {
                    Some(fw) => match h1::serve(&fw, &info, tcp, &mut conn_stop).await {
                        h1::Outcome::Done => drop(watcher),
                        h1::Outcome::Fallback(tcp, read) => {
                            let io = h1::Prefixed::new(tcp, read);
                            serve_conn(io, &builder, watcher, svc, idle, conn_stop, false).await
                        }
                    },
                    None => serve_conn(tcp, &builder, watcher, svc, idle, conn_stop, false).await,
                },
                // A handshake is part of receiving the first request: same deadline.
                Some(acc) => match handshake(&acc, tcp, shared.config.headers_timeout).await {
                    // HTTP/2 (ALPN h2) too: the builder knows it by its preface, and
                    // serve_conn closes the connection once idle, which hyper's HTTP/2 server
                    // alone never does (a client could hold it open for ever sending nothing).
                    Ok(s) => {
                        let h2 = s.get_ref().1.alpn_protocol() == Some(b"h2");
                        serve_conn(s, &builder, watcher, svc, idle, conn_stop, h2).await
                    }
                    Err(e) => tracing::debug!("TLS handshake with {remote} failed: {e}"),
                },
            }
        });
    }
    drop(listener);
    // Draining after a handover, connections (and upgraded ones: the public port's relays run
    // on this thread) get the upgrade grace; stopping, in-flight requests get DRAIN_TIMEOUT.
    let draining = *stop.borrow() == Phase::Drain;
    let limit = if draining {
        shared.config.upgrade_grace
    } else {
        DRAIN_TIMEOUT
    };
    let deadline = tokio::time::Instant::now() + limit;
    let wait_tunnels = draining && lean.is_some();
    let finished = async {
        graceful.shutdown().await;
        if wait_tunnels {
            shared.tunnels.none().await;
        }
    };
    tokio::select! {
        r = tokio::time::timeout_at(deadline, finished) => if r.is_err() {
            tracing::warn!("some connections did not finish within {limit:?}");
        },
        _ = stop.wait_for(|p| *p == Phase::Stop), if draining => {}
    }
    Ok(())
}

/// A TLS handshake, given up after `limit`.
async fn handshake(
    acc: &TlsAcceptor,
    tcp: tokio::net::TcpStream,
    limit: Option<Duration>,
) -> std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let hs = acc.accept(tcp);
    match limit {
        Some(t) => tokio::time::timeout(t, hs).await.unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no handshake within {t:?}"),
            ))
        }),
        None => hs.await,
    }
}

/// A listening socket as one worker serves it.
struct Port {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    load: Load,
}

impl Port {
    /// A listener served by one task alone (API, metrics, redirect).
    fn single(listener: TcpListener, tls: Option<TlsAcceptor>) -> Self {
        Port {
            listener,
            tls,
            load: Load::single(),
        }
    }
}

/// Connections open per worker of a listener. Workers sharing a listening socket race to
/// accept, and the first one awake would take a whole burst of new connections (a browser's,
/// a load generator's) while the others idle; a worker ahead of another leaves the next
/// connection to the others for a moment ([`ACCEPT_DEFER`]), as nginx's workers stop accepting
/// when fuller than the rest.
#[derive(Clone)]
struct Load {
    open: Arc<[AtomicUsize]>,
    me: usize,
}

impl Load {
    fn single() -> Self {
        Load {
            open: Arc::new([AtomicUsize::new(0)]),
            me: 0,
        }
    }

    /// Whether this worker holds more than one connection above another worker.
    fn ahead(&self) -> bool {
        let mine = self.open[self.me].load(Ordering::Relaxed);
        self.open
            .iter()
            .any(|o| mine > o.load(Ordering::Relaxed) + 1)
    }

    fn open_one(&self) -> OpenConnection {
        self.open[self.me].fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.clone())
    }
}

/// Counts a connection as open; the last one of a worker to close trims the heap
/// ([`mem::trim`]), so the buffers it freed go back to the kernel.
struct OpenConnection(Load);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if self.0.open[self.0.me].fetch_sub(1, Ordering::Relaxed) == 1 {
            mem::trim();
        }
    }
}

/// Serve a connection with hyper until it ends (`h2`: it speaks HTTP/2). Besides hyper's own timers, a connection that
/// moved no bytes either way for `idle_after` is shut down gracefully (an answer in progress
/// still finishes): under load hyper 1.12 left some idle keep-alive connections open past its
/// header-read timeout (2 and 9 of 80 API connections in a probe with 80 proxies in one
/// process; the soak test's straggler), and an idle connection must never outlive its use.
async fn serve_conn<I, S>(
    io: I,
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    svc: S,
    idle_after: Duration,
    mut stop: watch::Receiver<Phase>,
    h2: bool,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<ProxyBody>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let moved = Arc::new(AtomicU64::new(0));
    let io = Traffic {
        // hyper closes a connection after an answer given before the request body was read
        // (an early answer relayed, a 503): without a reset.
        io: linger::Lingering::new(io),
        moved: moved.clone(),
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut check = tokio::time::interval(idle_after);
    check.tick().await;
    let (mut seen, mut closing) = (0, false);
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!("connection: {e}");
                }
                break;
            }
            // Draining, an HTTP/2 connection is told to go (GOAWAY: the client sends what we
            // did not take on a new connection, which reaches the new process); an HTTP/1 one
            // gets `Connection: close` on its next answer ([`closing`]) instead, as closing
            // it now could cross a request.
            _ = stop.wait_for(|p| *p == Phase::Stop || (h2 && *p == Phase::Drain)), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = check.tick(), if !closing => {
                let now = moved.load(Ordering::Relaxed);
                if now == seen {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                seen = now;
            }
        }
    }
    // Counted by the graceful shutdown of the listener until here.
    drop(watcher);
}

pin_project_lite::pin_project! {
    /// A connection's IO that counts the reads and writes moving bytes.
    struct Traffic<I> {
        #[pin]
        io: I,
        moved: Arc<AtomicU64>,
    }
}

impl<I: AsyncRead> AsyncRead for Traffic<I> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = this.io.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.moved.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

impl<I: AsyncWrite> AsyncWrite for Traffic<I> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.project();
        let r = this.io.poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            this.moved.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.project();
        let r = this.io.poll_write_vectored(cx, bufs);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            this.moved.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

/// Draining after a handover, an HTTP/1 answer closes its connection (not a 101: that
/// connection goes on as a relay).
fn closing(
    shared: &Shared,
    version: http::Version,
    mut res: Response<ProxyBody>,
) -> Response<ProxyBody> {
    if shared.draining()
        && version < http::Version::HTTP_2
        && res.status() != StatusCode::SWITCHING_PROTOCOLS
    {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

fn serve_metrics(shared: &Shared, req: &Request<Incoming>) -> Response<ProxyBody> {
    if req.uri().path() != "/metrics" {
        let mut r = Response::new(ProxyBody::empty());
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    }
    let mut r = Response::new(ProxyBody::full(shared.metrics.render(shared.routes.len())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

/// `host:port` → `host`, `[::1]:port` → `[::1]`; a bare host or `[v6]` is left alone.
fn strip_port(h: &str) -> &str {
    match h.rsplit_once(':') {
        Some((host, port))
            if port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']')) =>
        {
            host
        }
        _ => h,
    }
}

fn redirect(to_port: u16, req: &Request<Incoming>) -> Response<ProxyBody> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(strip_port)
        .unwrap_or("localhost");
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let loc = if to_port == 443 {
        format!("https://{host}{pq}")
    } else {
        format!("https://{host}:{to_port}{pq}")
    };
    let mut r = Response::new(ProxyBody::empty());
    *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(v) = HeaderValue::try_from(loc) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Parse a target as the API does (for callers building routes in-process).
pub fn parse_target(s: &str) -> Result<Target> {
    Target::parse(s).map_err(anyhow::Error::msg)
}
