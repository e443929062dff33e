//! The hub's side of the proxy: a client for the configurable-http-proxy REST API, the managed
//! `nbhub-proxy` process, and the periodic check that keeps its route table right.
//!
//! Routes the hub owns carry `"jupyterhub": true` in their data; others are never touched.
//! The managed proxy runs in its own process group and outlives the hub, so users keep their
//! connections while the hub restarts; the next hub finds it by its pid file and API token.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::sync::Mutex;

use crate::config::{Config, ProxyKind};

const PID_FILE: &str = "nbhub-proxy.pid";
/// The managed proxy's handover socket (docs/proxy.md#upgrade-in-place) and routes file.
const HANDOVER_SOCKET: &str = "nbhub-proxy.handover";
const ROUTES_FILE: &str = "nbhub-proxy-routes.json";
const TOKEN_FILE: &str = "nbhub_proxy_token";

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("proxy API at {url} unreachable: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("proxy API {method} {path} answered {status}: {body}")]
    Status {
        method: &'static str,
        path: String,
        status: u16,
        body: String,
    },
    #[error("cannot start the proxy: {0}")]
    Start(String),
    #[error("the hub is stopping: the managed proxy is not started again")]
    Stopping,
}

/// One route as the proxy reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub target: String,
    pub data: Map<String, Value>,
    /// Milliseconds since the epoch, from the route's `last_activity`.
    pub last_activity: Option<i64>,
}

/// The proxy reports route keys decoded (`/user/a+b`); the hub names them as it writes them
/// (`/user/a%2Bb`), so keys are escaped again with `/` kept, as JupyterHub reads them back.
fn requote_route_key(key: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'@')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(key, KEEP).to_string()
}

/// A client for the CHP REST API (`Authorization: token …`).
#[derive(Clone)]
pub struct ProxyClient {
    /// API URL and token; `PATCH /hub/api/proxy` can point them at another proxy.
    endpoint: Arc<std::sync::RwLock<(String, String)>>,
    http: reqwest::Client,
}

impl ProxyClient {
    pub fn new(api_url: &str, token: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        ProxyClient {
            endpoint: Arc::new(std::sync::RwLock::new(Self::endpoint_of(api_url, token))),
            http,
        }
    }

    fn endpoint_of(api_url: &str, token: &str) -> (String, String) {
        (api_url.trim_end_matches('/').to_string(), token.to_string())
    }

    /// From now on, talk to the proxy API at `api_url` with `token`.
    pub fn repoint(&self, api_url: &str, token: &str) {
        *self.endpoint.write().unwrap_or_else(|p| p.into_inner()) =
            Self::endpoint_of(api_url, token);
    }

    pub fn api(&self) -> String {
        self.endpoint
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    pub fn token(&self) -> String {
        self.endpoint
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    fn url(&self, routespec: &str) -> String {
        // CHP keys have no trailing slash; the root route is `/`.
        let path = routespec.trim_end_matches('/');
        format!(
            "{}/api/routes{}",
            self.api(),
            if path.is_empty() { "/" } else { path }
        )
    }

    async fn send(
        &self,
        method: &'static str,
        req: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<reqwest::Response, ProxyError> {
        req.header("Authorization", format!("token {}", self.token()))
            .send()
            .await
            .map_err(|source| ProxyError::Unreachable {
                url: self.api(),
                source,
            })
            .and_then(|r| {
                if r.status().is_server_error() {
                    Err(ProxyError::Status {
                        method,
                        path: path.to_string(),
                        status: r.status().as_u16(),
                        body: String::new(),
                    })
                } else {
                    Ok(r)
                }
            })
    }

    pub async fn add_route(
        &self,
        routespec: &str,
        target: &str,
        data: &Map<String, Value>,
    ) -> Result<(), ProxyError> {
        let mut body = data.clone();
        body.insert("target".into(), json!(target));
        let resp = self
            .send(
                "POST",
                self.http.post(self.url(routespec)).json(&body),
                routespec,
            )
            .await?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            return Err(ProxyError::Status {
                method: "POST",
                path: routespec.into(),
                status,
                body: resp.text().await.unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// Deletes a route; a route that is already gone is fine.
    pub async fn delete_route(&self, routespec: &str) -> Result<(), ProxyError> {
        let resp = self
            .send("DELETE", self.http.delete(self.url(routespec)), routespec)
            .await?;
        let status = resp.status().as_u16();
        if resp.status().is_success() || status == 404 {
            return Ok(());
        }
        Err(ProxyError::Status {
            method: "DELETE",
            path: routespec.into(),
            status,
            body: resp.text().await.unwrap_or_default(),
        })
    }

    /// Every route, keyed by path (`/`, `/user/alice`).
    pub async fn get_routes(&self) -> Result<BTreeMap<String, Route>, ProxyError> {
        let resp = self
            .send(
                "GET",
                self.http.get(format!("{}/api/routes", self.api())),
                "/",
            )
            .await?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            return Err(ProxyError::Status {
                method: "GET",
                path: "/".into(),
                status,
                body: resp.text().await.unwrap_or_default(),
            });
        }
        let all: Map<String, Value> =
            resp.json()
                .await
                .map_err(|source| ProxyError::Unreachable {
                    url: self.api(),
                    source,
                })?;
        Ok(all
            .into_iter()
            .filter_map(|(path, v)| {
                let mut data = v.as_object()?.clone();
                let target = data.remove("target")?.as_str()?.to_string();
                let last_activity = data
                    .remove("last_activity")
                    .and_then(|t| t.as_str().and_then(crate::db::parse_timestamp))
                    .map(|micros| micros / 1000);
                Some((
                    requote_route_key(&path),
                    Route {
                        target,
                        data,
                        last_activity,
                    },
                ))
            })
            .collect())
    }
}

/// Reads or creates the managed proxy's token (0600 in data_dir).
pub fn proxy_token(config: &Config) -> std::io::Result<String> {
    if !config.proxy.auth_token.is_empty() {
        return Ok(config.proxy.auth_token.clone());
    }
    let secret = crate::secrets::load_or_create_secret(&config.hub.data_dir, TOKEN_FILE)?;
    Ok(hex::encode(secret))
}

/// One proxy the hub keeps its routes in: the one proxy, or each of `[proxy] api_urls`.
pub struct Peer {
    pub client: ProxyClient,
    /// It had every route at its last check, and no route call failed since.
    in_sync: AtomicBool,
    /// Route calls (and checks) that failed, for the metrics.
    failed_calls: AtomicU64,
}

impl Peer {
    fn new(client: ProxyClient) -> Self {
        Peer {
            client,
            in_sync: AtomicBool::new(true),
            failed_calls: AtomicU64::new(0),
        }
    }

    pub fn in_sync(&self) -> bool {
        self.in_sync.load(Ordering::Relaxed)
    }

    /// A route call or a check failed: out of sync until a check has brought every route
    /// back. Said in the log once, when it goes out of sync.
    pub fn failed(&self, e: &ProxyError) {
        self.failed_calls.fetch_add(1, Ordering::Relaxed);
        if self.in_sync.swap(false, Ordering::Relaxed) {
            tracing::warn!(proxy = %self.client.api(), error = %e, "a proxy is out of sync; the route check restores its routes once it answers");
        }
    }

    /// A check found every route there (or put it there).
    pub fn synced(&self) {
        if !self.in_sync.swap(true, Ordering::Relaxed) {
            tracing::info!(proxy = %self.client.api(), "the proxy is in sync again: it has every route");
        }
    }
}

/// The proxy the hub talks to, and for a managed one, the means to (re)start it.
pub struct Proxy {
    /// The proxy (the first of several): the one a managed proxy is, the one `GET
    /// /hub/api/proxy` reads and `PATCH /hub/api/proxy` points elsewhere.
    pub client: ProxyClient,
    /// Every proxy routes go to: `client` alone, or each of `[proxy] api_urls` (the first
    /// shares `client`'s endpoint).
    peers: Vec<Peer>,
    managed: Option<Managed>,
    /// Signalled when a managed proxy this hub started exits, so routes are restored at once
    /// rather than at the next periodic check.
    pub exited: Arc<tokio::sync::Notify>,
    /// Set by [`Proxy::stop_managed`]: from then on nothing starts a proxy again, and the
    /// watchers stop, so that a clean stop leaves no proxy behind.
    stopping: Arc<AtomicBool>,
    /// The running proxy's version was compared with the binary's (once, at start).
    version_checked: AtomicBool,
}

struct Managed {
    /// `http://api-ip:api-port`
    api: String,
    command: Vec<String>,
    args: Vec<String>,
    token: String,
    data_dir: PathBuf,
    /// A port is 0: the proxy picks it, and says which in its ready line.
    picks_ports: bool,
    /// Serialises restarts.
    lock: Mutex<()>,
}

impl Proxy {
    pub fn new(config: &Config) -> std::io::Result<Arc<Proxy>> {
        let token = proxy_token(config)?;
        let client = match config.proxy.api_urls.first() {
            Some(first) => ProxyClient::new(&first.origin(), &token),
            None => ProxyClient::new(&config.proxy.api_url.origin(), &token),
        };
        let mut peers = vec![Peer::new(client.clone())];
        for u in config.proxy.api_urls.iter().skip(1) {
            peers.push(Peer::new(ProxyClient::new(&u.origin(), &token)));
        }
        let managed = (config.proxy.kind == ProxyKind::Managed).then(|| {
            let command = if config.proxy.command.is_empty() {
                vec![default_proxy_binary().display().to_string()]
            } else {
                config.proxy.command.clone()
            };
            let public = &config.hub.bind_url;
            let api = &config.proxy.api_url;
            let args = vec![
                "--ip".into(),
                public
                    .host()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                "--port".into(),
                public.port().to_string(),
                "--api-ip".into(),
                api.host()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                "--api-port".into(),
                api.port().to_string(),
                "--error-target".into(),
                format!(
                    "{}{}hub/error",
                    hub_origin(config),
                    config.hub.base_url.as_str()
                ),
                "--log-level".into(),
                "info".into(),
                "--handover-socket".into(),
                config
                    .hub
                    .data_dir
                    .join(HANDOVER_SOCKET)
                    .display()
                    .to_string(),
                "--routes-file".into(),
                config.hub.data_dir.join(ROUTES_FILE).display().to_string(),
                // A hub restart is bridged: requests for /hub/ wait for it, bounded.
                "--hub-wait".into(),
                config.proxy.hub_wait.to_string(),
                "--hub-wait-max".into(),
                config.proxy.hub_wait_max.to_string(),
            ];
            Managed {
                api: config.proxy.api_url.origin(),
                command,
                args,
                token: token.clone(),
                data_dir: config.hub.data_dir.clone(),
                picks_ports: public.port() == 0 || api.port() == 0,
                lock: Mutex::new(()),
            }
        });
        Ok(Arc::new(Proxy {
            client,
            peers,
            managed,
            exited: Arc::new(tokio::sync::Notify::new()),
            stopping: Arc::new(AtomicBool::new(false)),
            version_checked: AtomicBool::new(false),
        }))
    }

    /// Hands the running managed proxy over to a new process of the proxy command (the
    /// binary next to the hub by default), whether or not it changed: no connection refused,
    /// websockets kept, routes taken along (`nbhub upgrade-proxy`). Returns the new pid.
    pub async fn upgrade_managed(&self) -> Result<u32, ProxyError> {
        let Some(m) = &self.managed else {
            return Err(ProxyError::Start(
                "the proxy is external ([proxy] kind): upgrade it where it runs".into(),
            ));
        };
        let _guard = m.lock.lock().await;
        let socket = m.data_dir.join(HANDOVER_SOCKET);
        let take_over = ["--take-over".to_string(), socket.display().to_string()];
        let started = spawn_managed(
            m,
            &take_over,
            true,
            self.exited.clone(),
            self.stopping.clone(),
        )?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if log_since(&started.log, started.from).contains("nbhub-proxy took over from pid") {
                let _ = std::fs::write(m.data_dir.join(PID_FILE), started.pid.to_string());
                tracing::info!(pid = started.pid, "the managed proxy was upgraded in place");
                return Ok(started.pid);
            }
            if !pid_alive(started.pid as i32) || tokio::time::Instant::now() > deadline {
                return Err(ProxyError::Start(format!(
                    "the new proxy process did not take over (the running one serves on); \
                     its output:\n{}",
                    log_since(&started.log, started.from).trim_end()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// At start: a running managed proxy of another version than the proxy command's is
    /// upgraded in place. A proxy without a handover socket (started by an older hub) is left
    /// alone, with a note.
    async fn upgrade_if_outdated(&self) {
        let Some(m) = &self.managed else { return };
        let socket = m.data_dir.join(HANDOVER_SOCKET);
        let running = tokio::task::spawn_blocking(move || nbhub_proxy::handover::query(&socket))
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r);
        let running = match running {
            Ok((_, v)) => v,
            Err(e) => {
                tracing::info!("the running proxy cannot be upgraded in place ({e:#}); a restart of it would be needed to upgrade it");
                return;
            }
        };
        let Some(program) = m.command.first() else {
            return;
        };
        let out = tokio::process::Command::new(program)
            .args(&m.command[1..])
            .arg("--version")
            .output()
            .await;
        let binary = out
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .and_then(|s| s.rsplit(' ').next().map(str::to_string))
            .unwrap_or_default();
        if binary.is_empty() || binary == running {
            return;
        }
        tracing::info!(%running, %binary, "the running proxy is of another version: upgrading it in place");
        if let Err(e) = self.upgrade_managed().await {
            tracing::warn!("upgrading the proxy in place failed: {e}");
        }
    }

    /// Every proxy the routes go to (one, or each of `[proxy] api_urls`).
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// Adds a route to every proxy at once; one that fails is marked out of sync (the route
    /// check adds it later) and does not hold up the others. An error only when every proxy
    /// failed.
    pub async fn add_route(
        &self,
        routespec: &str,
        target: &str,
        data: &Map<String, Value>,
    ) -> Result<(), ProxyError> {
        self.each(|c| c.add_route(routespec, target, data)).await
    }

    /// Deletes a route from every proxy, as [`Proxy::add_route`] adds one.
    pub async fn delete_route(&self, routespec: &str) -> Result<(), ProxyError> {
        self.each(|c| c.delete_route(routespec)).await
    }

    async fn each<'a, F, Fut>(&'a self, call: F) -> Result<(), ProxyError>
    where
        F: Fn(&'a ProxyClient) -> Fut,
        Fut: std::future::Future<Output = Result<(), ProxyError>>,
    {
        let results =
            futures_util::future::join_all(self.peers.iter().map(|p| call(&p.client))).await;
        let mut first_error = None;
        let mut any_ok = false;
        for (peer, r) in self.peers.iter().zip(results) {
            match r {
                Ok(()) => any_ok = true,
                Err(e) => {
                    peer.failed(&e);
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if !any_ok => Err(e),
            _ => Ok(()),
        }
    }

    /// The proxies' state for `/hub/metrics`: in sync or not, and failed route calls, per
    /// proxy (label `proxy`, its API URL).
    pub fn metrics(&self) -> Vec<nbhub_spawner::BackendMetric> {
        let series = |f: &dyn Fn(&Peer) -> f64| {
            self.peers
                .iter()
                .map(|p| (vec![("proxy", p.client.api())], f(p)))
                .collect()
        };
        vec![
            nbhub_spawner::BackendMetric {
                name: "nbhub_proxy_in_sync",
                help: "1 while the proxy had every route at its last check and no route call to it failed since",
                kind: nbhub_spawner::MetricKind::Gauge,
                samples: series(&|p| f64::from(u8::from(p.in_sync()))),
            },
            nbhub_spawner::BackendMetric {
                name: "nbhub_proxy_route_failures_total",
                help: "Route calls and checks to the proxy that failed",
                kind: nbhub_spawner::MetricKind::Counter,
                samples: series(&|p| p.failed_calls.load(Ordering::Relaxed) as f64),
            },
        ]
    }

    pub fn is_managed(&self) -> bool {
        self.managed.is_some()
    }

    /// Makes sure the proxy answers: reuses a running one, else starts a managed proxy.
    /// Returns true if a new proxy process was started (its routes are empty).
    pub async fn ensure_running(&self) -> Result<bool, ProxyError> {
        if self.is_stopping() {
            return Err(ProxyError::Stopping);
        }
        if self.client.get_routes().await.is_ok() {
            if !self.version_checked.swap(true, Ordering::SeqCst) {
                self.upgrade_if_outdated().await;
            }
            return Ok(false);
        }
        let Some(m) = &self.managed else {
            return Err(ProxyError::Start(format!(
                "the external proxy at {} does not answer",
                self.client.api()
            )));
        };
        let _guard = m.lock.lock().await;
        // Checked again under the lock that `stop_managed` takes: no start slips past a stop.
        if self.is_stopping() {
            return Err(ProxyError::Stopping);
        }
        if self.client.get_routes().await.is_ok() {
            return Ok(false);
        }
        // A proxy we started earlier that is alive but wedged would hold the ports.
        if let Some(pid) = read_pid(&m.data_dir) {
            if pid_alive(pid) && is_proxy_process(pid) {
                tracing::warn!(pid, "managed proxy does not answer; restarting it");
                kill_group(pid).await;
            }
        }
        start_managed(m, self.exited.clone(), self.stopping.clone()).await?;
        Ok(true)
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Watches a managed proxy's pid (from its pid file, so also one an earlier hub started)
    /// every second and signals `exited` when it is gone: a check costs a stat, not a request.
    pub fn watch_managed(self: &Arc<Self>) {
        let Some(m) = &self.managed else { return };
        let data_dir = m.data_dir.clone();
        let exited = self.exited.clone();
        let stopping = self.stopping.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                if let Some(pid) = read_pid(&data_dir) {
                    if !pid_alive(pid) {
                        exited.notify_one();
                    }
                }
            }
        });
    }

    /// Stops a managed proxy for good (for `cleanup = true`, as the hub stops): first the
    /// watchers and restarts, which would otherwise see the exit and start a new proxy that
    /// keeps the public port after the hub is gone; then, once a start in progress is over,
    /// the proxy.
    pub async fn stop_managed(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(m) = &self.managed {
            let _guard = m.lock.lock().await;
            if let Some(pid) = read_pid(&m.data_dir) {
                if pid_alive(pid) && is_proxy_process(pid) {
                    kill_group(pid).await;
                }
            }
            let _ = std::fs::remove_file(m.data_dir.join(PID_FILE));
        }
    }
}

/// The public and API addresses in the first ready line nbhub-proxy printed to `log` after
/// byte `from`: `nbhub-proxy listening on http://127.0.0.1:8000, api on http://127.0.0.1:8001`.
fn ready_line_ports(log: &Path, from: u64) -> Option<(SocketAddr, SocketAddr)> {
    log_since(log, from).lines().find_map(parse_ready_line)
}

fn parse_ready_line(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = line.split_once("nbhub-proxy listening on ")?.1;
    let (public, rest) = rest.split_once(", api on ")?;
    let api = rest.split(',').next()?;
    let addr = |url: &str| url.split_once("://")?.1.trim().parse().ok();
    Some((addr(public)?, addr(api)?))
}

/// `[hub] bind_url` or `[proxy] api_url` with port 0 (tests, throwaway hubs): starts the
/// managed proxy before anything else, on ports the system picks, and writes the ports it
/// bound into `config`, so that every URL the hub hands out and every later restart of the
/// proxy name them. Nothing to do for other configurations.
pub async fn start_on_picked_ports(config: &mut Config) -> Result<(), ProxyError> {
    let picks = config.hub.bind_url.port() == 0 || config.proxy.api_url.port() == 0;
    if config.proxy.kind != ProxyKind::Managed || !picks {
        return Ok(());
    }
    let proxy = Proxy::new(config).map_err(|e| ProxyError::Start(e.to_string()))?;
    let Some(m) = &proxy.managed else {
        return Ok(());
    };
    let Some((public, api)) =
        start_managed(m, proxy.exited.clone(), proxy.stopping.clone()).await?
    else {
        return Err(ProxyError::Start(
            "it answered but did not say which ports it bound".into(),
        ));
    };
    let with_port = |u: &crate::config::HttpUrl, port: u16| {
        let mut url = u.url().clone();
        let _ = url.set_port(Some(port));
        crate::config::HttpUrl::parse(url.as_str()).map_err(ProxyError::Start)
    };
    config.hub.bind_url = with_port(&config.hub.bind_url, public.port())?;
    config.proxy.api_url = with_port(&config.proxy.api_url, api.port())?;
    Ok(())
}

/// `scheme://host:port` of the hub as the proxy and servers reach it.
pub fn hub_origin(config: &Config) -> String {
    if config.hub.hub_connect_url.is_empty() {
        config.hub.hub_bind_url.origin()
    } else {
        crate::config::HttpUrl::parse(&config.hub.hub_connect_url)
            .map(|u| u.origin())
            .unwrap_or_else(|_| config.hub.hub_bind_url.origin())
    }
}

/// `nbhub-proxy` next to the running `nbhub` binary.
pub(crate) fn default_proxy_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("nbhub-proxy")))
        .unwrap_or_else(|| PathBuf::from("nbhub-proxy"))
}

fn read_pid(data_dir: &Path) -> Option<i32> {
    std::fs::read_to_string(data_dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn pid_alive(pid: i32) -> bool {
    // Zombies count as dead: their cmdline is empty.
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

/// Guards against killing an unrelated process that reused the pid.
fn is_proxy_process(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let text = String::from_utf8_lossy(&c);
        text.contains("proxy")
    })
}

/// SIGTERM to the proxy's process group, SIGKILL if it is still there a second later. The
/// wait is a timer, not a sleep: it runs on the hub's async workers.
async fn kill_group(pid: i32) {
    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::Pid;
    let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
    for _ in 0..50 {
        if !pid_alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
}

/// A managed proxy process just started: its pid and its log, from where its output begins.
struct Spawned {
    pid: u32,
    log: PathBuf,
    from: u64,
}

/// Starts the proxy command with `extra` arguments, its output appended to the log, in a
/// process group of its own, and reaps it when it exits. Its pid goes to the pid file unless
/// it is taking over (`taking_over`): then only once it did.
fn spawn_managed(
    m: &Managed,
    extra: &[String],
    taking_over: bool,
    exited: Arc<tokio::sync::Notify>,
    stopping: Arc<AtomicBool>,
) -> Result<Spawned, ProxyError> {
    let program = m
        .command
        .first()
        .ok_or_else(|| ProxyError::Start("proxy.command is empty".into()))?;
    let log_path = m.data_dir.join("nbhub-proxy.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| ProxyError::Start(format!("cannot open {}: {e}", log_path.display())))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let log2 = log
        .try_clone()
        .map_err(|e| ProxyError::Start(e.to_string()))?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&m.command[1..])
        .args(&m.args)
        .args(extra)
        .env("CONFIGPROXY_AUTH_TOKEN", &m.token)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        // Its own process group: a Ctrl-C or a kill of the hub's group does not take it down.
        .process_group(0)
        .kill_on_drop(false);
    let mut child = cmd
        .spawn()
        .map_err(|e| ProxyError::Start(format!("{program}: {e}")))?;
    let pid = child.id().unwrap_or(0);
    if !taking_over {
        let _ = std::fs::write(m.data_dir.join(PID_FILE), pid.to_string());
    }
    tracing::info!(pid, command = %program, "started the managed proxy");
    let data_dir = m.data_dir.clone();
    // Reap it when it exits, so a dead proxy is not a zombie that looks alive.
    tokio::spawn(async move {
        let status = child.wait().await;
        if stopping.load(Ordering::SeqCst) {
            tracing::info!(pid, ?status, "the managed proxy stopped");
            return;
        }
        if read_pid(&data_dir).is_some_and(|p| p != pid as i32 && pid_alive(p)) {
            // Handed over to a new process, or a new one that failed to take over.
            tracing::info!(
                pid,
                ?status,
                "a managed proxy process exited; another one serves"
            );
            return;
        }
        tracing::warn!(pid, ?status, "the managed proxy exited");
        exited.notify_one();
    });
    Ok(Spawned {
        pid,
        log: log_path,
        from: log_start,
    })
}

/// What a log file holds after byte `from` (up to 1 MiB).
fn log_since(log: &Path, from: u64) -> String {
    use std::io::{Read, Seek};
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(log) {
        if f.seek(std::io::SeekFrom::Start(from)).is_ok() {
            let _ = f.take(1 << 20).read_to_string(&mut text);
        }
    }
    text
}

/// Starts the managed proxy and waits until its API answers; returns the public and API
/// addresses it printed once listening (they are what it bound when a port was 0).
async fn start_managed(
    m: &Managed,
    exited: Arc<tokio::sync::Notify>,
    stopping: Arc<AtomicBool>,
) -> Result<Option<(SocketAddr, SocketAddr)>, ProxyError> {
    let Spawned {
        log: log_path,
        from: log_start,
        ..
    } = spawn_managed(m, &[], false, exited, stopping)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut delay = Duration::from_millis(5);
    loop {
        // Port 0: the proxy's ready line (the first since `log_start`) says what it bound.
        let bound = ready_line_ports(&log_path, log_start);
        let api = match bound {
            Some((_, api)) if m.picks_ports => {
                let scheme = m.api.split_once("://").map_or("http", |(s, _)| s);
                format!("{scheme}://{api}")
            }
            _ => m.api.clone(),
        };
        if (bound.is_some() || !m.picks_ports)
            && ProxyClient::new(&api, &m.token).get_routes().await.is_ok()
        {
            return Ok(bound);
        }
        if tokio::time::Instant::now() > deadline {
            let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(10).collect();
            return Err(ProxyError::Start(format!(
                "it did not answer within 10 s; last lines of {}:\n{}",
                log_path.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_says_which_ports_the_proxy_bound() {
        let line = "nbhub-proxy listening on http://127.0.0.1:41091, api on http://127.0.0.1:42479, metrics on http://127.0.0.1:1";
        let (public, api) = parse_ready_line(line).expect("parsed");
        assert_eq!((public.port(), api.port()), (41091, 42479));
        let v6 = "x nbhub-proxy listening on https://[::1]:8000, api on http://[::1]:8001";
        let ports = parse_ready_line(v6).map(|(p, a)| (p.port(), a.port()));
        assert_eq!(ports, Some((8000, 8001)));
        assert_eq!(
            parse_ready_line("nbhub 0.1 listening on http://127.0.0.1:1"),
            None
        );
    }
}
