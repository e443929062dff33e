//! nbhub: a multi-user hub for Jupyter, wire-compatible with JupyterHub, built for HPC centres.
//!
//! # Layout
//! Two layers and their composition; imports go one way, from the HTTP layer down to the
//! core, never up ([`layers`] holds the rule and its test; docs/ARCHITECTURE.md is the map).
//!
//! The core, which knows nothing of HTTP handlers, `AppState` or axum:
//! - [`config`]: the TOML configuration, environment overrides, `generate-config`.
//! - [`db`]: SQLite/PostgreSQL storage, one module per table.
//! - [`auth`]: identities and scopes (RBAC) behind the [`auth::Authz`] handle, cookies,
//!   XSRF, share codes, authenticators (PAM, native, OpenID Connect).
//! - [`supervisor`]: every user server's life (spawn, poll, stop, adopt) and the spawn queue.
//! - [`proxy`]: the client of the proxy's REST API, and the managed proxy process.
//! - [`services`]: managed services (`[[services]] command`).
//! - [`maintenance`]: maintenance notices per system and the check every start passes.
//! - [`metrics`]: the metrics registry and the Prometheus text format.
//! - [`names`]: the rules for user, group, server and OAuth client names, URL escaping.
//! - [`secrets`]: secrets kept in `data_dir`, constant-time comparison.
//! - [`error`]: [`error::ApiError`], the error a request ends with.
//! - [`layers`]: the import rule.
//!
//! The HTTP layer:
//! - [`api`]: the REST API under `{base_url}hub/api`, and `/hub/metrics`.
//! - [`pages`]: server-rendered pages (login, home, spawn, admin …) and their templates.
//! - [`oauth`]: the OAuth 2 provider single-user servers and services sign users in with.
//! - [`web`]: what `api`, `pages` and `oauth` share (the cookie user, redirects, XSRF, `next`,
//!   CSP, error responses).
//!
//! The composition: [`state`] (`AppState`, what every handler shares) and this file: [`init`]
//! builds the state, [`app`] the router, [`run`] serves the hub on a listener until a shutdown
//! future resolves; the binary (`main.rs`) and the tests both go through them.

pub mod announcements;
pub mod api;
pub mod auth;
pub mod check;
pub mod config;
pub mod db;
pub mod error;
pub mod import;
pub mod layers;
pub mod maintenance;
pub mod metrics;
pub mod names;
pub mod oauth;
pub mod pages;
pub mod proxy;
pub mod secrets;
pub mod services;
pub mod state;
pub mod supervisor;
pub mod usage;
pub mod web;

pub use web::{found, redirect};

use std::future::Future;

use axum::extract::{OriginalUri, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::config::Config;
use crate::db::Db;
use crate::state::AppState;

/// The `X-JupyterHub-Version` we send on every response.
pub const VERSION_HEADER: &str = "x-jupyterhub-version";

/// Opens the database, brings it in line with the config, and returns the shared state;
/// auth_state's key comes from `JUPYTERHUB_CRYPT_KEY`.
pub async fn init(config: Config) -> anyhow::Result<AppState> {
    let key = std::env::var(auth::crypt::CRYPT_KEY_ENV).ok();
    init_with_crypt_key(config, key.as_deref()).await
}

/// [`init`] with auth_state's key given (the variable's format) rather than read from the
/// environment.
pub async fn init_with_crypt_key(config: Config, key: Option<&str>) -> anyhow::Result<AppState> {
    use anyhow::Context;
    // Checked first: a hub that cannot keep auth_state safely does not start at all.
    let crypt = match key.filter(|k| !k.trim().is_empty()) {
        Some(k) => Some(auth::crypt::CryptKeeper::from_keys(k).map_err(anyhow::Error::msg)?),
        None if config.authenticator.enable_auth_state => anyhow::bail!(
            "[authenticator] enable_auth_state = true needs the encryption key in {}: one or more 32-byte keys, hex or base64, ';'-separated (make one with `openssl rand -hex 32`)",
            auth::crypt::CRYPT_KEY_ENV
        ),
        None => None,
    };
    std::fs::create_dir_all(&config.hub.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.hub.data_dir.display()))?;
    let url = config.database_url();
    let db = Db::connect(&url)
        .await
        .with_context(|| format!("cannot open database {}", db::redact_url(&url)))?;
    let secret = secrets::load_or_create_secret(&config.hub.data_dir, "nbhub_cookie_secret")
        .with_context(|| {
            format!(
                "cannot read or create the cookie secret in {}",
                config.hub.data_dir.display()
            )
        })?;
    db::services::sync_from_config(&db, &config.services)
        .await
        .context("loading [[services]]")?;
    db::services::sync_roles_from_config(&db, &config.roles)
        .await
        .context("loading [[roles]]")?;
    let blocked = &config.authenticator.blocked_users;
    for name in blocked {
        // As JupyterHub 5: a blocked user keeps no admin flag (blocked_users wins over
        // admin_users); their credentials are refused by `auth` (`Authz::is_blocked`).
        if let Some(u) = db::users::get(&db, name).await?.filter(|u| u.admin) {
            tracing::warn!(user = %name, "removing admin permissions from a blocked user");
            db::users::set_admin(&db, u.id, false).await?;
        }
    }
    for name in config
        .authenticator
        .admin_users
        .iter()
        .filter(|n| !blocked.contains(n))
    {
        match db::users::get(&db, name).await? {
            Some(u) if !u.admin => db::users::set_admin(&db, u.id, true).await?,
            Some(_) => {}
            None => {
                db::users::create(&db, name, true).await?;
            }
        }
    }
    for name in &config.authenticator.allowed_users {
        if db::users::get(&db, name).await?.is_none() {
            db::users::create(&db, name, false).await?;
        }
    }
    db::tokens::purge_expired(&db).await?;
    let config = std::sync::Arc::new(config);
    let spawner = make_spawner(&config)?;
    let proxy = proxy::Proxy::new(&config).context("cannot read or create the proxy token")?;
    let metrics = std::sync::Arc::new(metric_buckets(&config)?);
    let supervisor =
        supervisor::Supervisor::new(db.clone(), config.clone(), spawner, proxy, metrics);
    supervisor
        .maintenance
        .load(&db)
        .await
        .context("cannot read the maintenance notices")?;
    if !config.hub.maintenance_file.as_os_str().is_empty() {
        supervisor
            .maintenance
            .watch_file(config.hub.maintenance_file.clone())
            .await;
    }
    let state = AppState::new(config, db, secret, supervisor, crypt);
    state
        .ended_sessions
        .load(&state.db)
        .await
        .context("cannot read the ended browser sessions")?;
    state
        .announcements
        .load(&state.db)
        .await
        .context("cannot read the announcements")?;
    if let Some(oidc) = &state.oidc {
        oidc.startup_check().await.map_err(anyhow::Error::msg)?;
    }
    Ok(state)
}

/// The metrics registry with the buckets the config, or JupyterHub's environment variables
/// (which win, as in JupyterHub), choose.
fn metric_buckets(config: &Config) -> anyhow::Result<metrics::Metrics> {
    let pick = |env: &str, configured: &[f64]| -> anyhow::Result<Vec<f64>> {
        match metrics::buckets_from_env(env) {
            Some(parsed) => parsed.map_err(anyhow::Error::msg),
            None => Ok(configured.to_vec()),
        }
    };
    let spawn = pick(
        "JUPYTERHUB_SERVER_SPAWN_DURATION_SECONDS_BUCKETS",
        &config.hub.server_spawn_duration_seconds_buckets,
    )?;
    let stop = pick(
        "JUPYTERHUB_SERVER_STOP_DURATION_SECONDS_BUCKETS",
        &config.hub.server_stop_duration_seconds_buckets,
    )?;
    Ok(metrics::Metrics::with_buckets(&spawn, &stop))
}

/// The spawner `[spawner] kind` names, built from its own section (`[slurm]`, or
/// `[[systems]]`); what would make every job fail (a private venv, no sbatch) is said at
/// start-up.
fn make_spawner(config: &Config) -> anyhow::Result<std::sync::Arc<dyn nbhub_spawner::Spawner>> {
    let built = build_spawner(config)?;
    for (section, slurm) in &built.slurm {
        for problem in slurm.check_setup() {
            tracing::warn!("{section}: {problem}");
        }
        warn_if_jobs_cannot_reach_the_hub(config, slurm.clone());
    }
    Ok(built.spawner)
}

/// A spawner built from the config, and its Slurm spawners with the section each comes from
/// (`[slurm]`, `[[systems]] NAME`), for the checks of the machine.
pub(crate) struct BuiltSpawner {
    pub spawner: std::sync::Arc<dyn nbhub_spawner::Spawner>,
    pub slurm: Vec<(String, std::sync::Arc<nbhub_spawner::SlurmSpawner>)>,
}

/// The spawner of [`make_spawner`], without a word said or a task started (`nbhub --check`).
pub(crate) fn build_spawner(config: &Config) -> anyhow::Result<BuiltSpawner> {
    use nbhub_spawner::SpawnerKind;
    let data_dir = &config.hub.data_dir;
    Ok(match config.spawner.kind {
        SpawnerKind::Local => BuiltSpawner {
            spawner: std::sync::Arc::new(
                nbhub_spawner::LocalSpawner::new(
                    config.spawner.clone(),
                    config.local.clone(),
                    data_dir,
                )
                .map_err(|e| anyhow::anyhow!("[local]: {e}"))?,
            ),
            slurm: Vec::new(),
        },
        SpawnerKind::Slurm if !config.systems.is_empty() => {
            let systems =
                nbhub_spawner::SystemsSpawner::new(&config.spawner, &config.systems, data_dir)
                    .map_err(|e| anyhow::anyhow!("[[systems]]: {e}"))?;
            let slurm = systems
                .slurm_spawners()
                .map(|(name, slurm)| (format!("[[systems]] {name}"), slurm.clone()))
                .collect();
            BuiltSpawner {
                spawner: std::sync::Arc::new(systems),
                slurm,
            }
        }
        SpawnerKind::Slurm => {
            let slurm = std::sync::Arc::new(
                nbhub_spawner::SlurmSpawner::new(
                    config.spawner.clone(),
                    config.slurm.clone(),
                    data_dir,
                )
                .map_err(|e| anyhow::anyhow!("[slurm]: {e}"))?,
            );
            BuiltSpawner {
                spawner: slurm.clone(),
                slurm: vec![("[slurm]".to_owned(), slurm)],
            }
        }
    })
}

/// Slurm jobs call the hub API at `hub_connect_url` (default `hub_bind_url`): a loopback
/// address works only while the compute nodes are this machine (the dev cluster). Slurm is
/// asked in the background so that a slow controller does not delay start-up.
fn warn_if_jobs_cannot_reach_the_hub(
    config: &Config,
    slurm: std::sync::Arc<nbhub_spawner::SlurmSpawner>,
) {
    let url = if config.hub.hub_connect_url.is_empty() {
        config.hub.hub_bind_url.to_string()
    } else {
        config.hub.hub_connect_url.clone()
    };
    let host = url::Url::parse(&url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return;
    }
    tokio::spawn(async move {
        match slurm.remote_nodes().await {
            Ok(remote) if remote.is_empty() => {}
            Ok(remote) => tracing::warn!(
                "jobs reach the hub at {url}, a loopback address, but Slurm nodes {} are not \
                 this machine: their servers cannot reach the hub; set [hub] hub_connect_url \
                 to an address the nodes can reach",
                remote.join(", ")
            ),
            Err(e) => tracing::warn!(
                "jobs reach the hub at {url}, a loopback address: this works only when every \
                 Slurm node is this machine, which could not be checked ({e})"
            ),
        }
    });
}

/// Starts what runs beside the request handlers: re-adopts servers recorded as running,
/// starts (or finds) the proxy and gives it every route, then keeps checking both.
pub async fn start_background(state: &AppState) -> anyhow::Result<()> {
    use anyhow::Context;
    let sup = &state.supervisor;
    sup.adopt().await.context("re-adopting running servers")?;
    sup.stop_servers_of(&state.config.authenticator.blocked_users)
        .await;
    // A proxy that cannot be reached now is retried by the route check, every few seconds.
    if let Err(e) = sup.sync_routes().await {
        tracing::error!("the proxy is not reachable yet (retrying): {e}");
    }
    sup.spawn_background_tasks();
    services::start_all(&state.config, &state.db)
        .await
        .context("starting managed services")?;
    Ok(())
}

/// The whole hub as a router (for in-process tests with `oneshot`).
pub fn app(state: AppState) -> Router {
    let base = state.config.hub.base_url.as_str().to_string();
    let hub = format!("{base}hub");
    Router::new()
        // `nest` serves `{hub}/api` itself; clients also ask for `{hub}/api/`.
        .route(
            &format!("{hub}/api/"),
            axum::routing::get(api::info::version),
        )
        .nest(&format!("{hub}/api"), api::routes())
        .route(
            &format!("{hub}/health"),
            axum::routing::get(api::info::health),
        )
        .route(
            &format!("{hub}/metrics"),
            axum::routing::get(api::metrics::get_metrics),
        )
        .route(&format!("{hub}/"), axum::routing::get(pages::hub_root))
        // jupyterhub-announcement's endpoint, for the JupyterLab extensions that read it: the
        // proxy sends `/services/announcement/…` to the hub (its catch-all route) unless a
        // service named `announcement` has a URL of its own.
        .route(
            &format!("{base}services/announcement/latest"),
            axum::routing::get(api::announcements::latest)
                .options(api::announcements::latest_preflight),
        )
        .nest(
            &hub,
            pages::routes()
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    pages::refuse_nul,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    pages::html_errors,
                )),
        )
        .fallback(catch_all)
        .layer(axum::middleware::from_fn(read_body_first))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            common_headers,
        ))
        .with_state(state)
}

/// The largest request body the hub takes (axum's default limit for forms; JSON bodies have
/// their own, smaller one).
const MAX_BODY: usize = 2 << 20;

/// Reads the whole request body before any handler runs, as Tornado does for JupyterHub. A
/// handler that answers without reading the body (a 405, a 404, a 403) would otherwise leave
/// unread bytes, and the connection could not carry another request: the hub would close a
/// keep-alive connection that a client (the proxy's pool) may already be reusing. Too large a
/// body gets a 413 and the connection is closed (so does a body that breaks off: its client
/// is gone); one that does not arrive within `request_body_timeout` ([`run`]), a 408.
async fn read_body_first(request: Request, next: Next) -> Response {
    match buffer_body(request).await {
        Ok(request) => next.run(request).await,
        Err(response) => response,
    }
}

/// The request with its body read whole, or the answer when it cannot be ([`read_body_first`]).
async fn buffer_body(request: Request) -> Result<Request, Response> {
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => Ok(Request::from_parts(parts, axum::body::Body::from(bytes))),
        Err(e) => {
            let mut response = if nbhub_proxy::deadline::is_body_timeout(&e) {
                error::ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "The request body did not arrive in time",
                )
            } else {
                error::ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("Request body too large ({} MiB at most)", MAX_BODY >> 20),
                )
            }
            .into_response();
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                HeaderValue::from_static("close"),
            );
            Err(response)
        }
    }
}

/// Headers of every response: our version, and the Content-Security-Policy (unless the
/// handler chose one).
async fn common_headers(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let began = std::time::Instant::now();
    let method = request.method().clone();
    // The route pattern, not the path: one series per handler, as JupyterHub's handler names.
    // A clone of the matched route is a reference count, not a copy of the string.
    let handler = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .cloned();
    // CORS for /hub/api (docs/api.md): preflights are answered here, for every API path.
    let cors = api::is_api_path(&state, request.uri().path())
        .then(|| request.headers().get(axum::http::header::ORIGIN).cloned());
    let mut response = match &cors {
        // Its body is read first, as every request's (read_body_first): an answer that left
        // it unread would end a keep-alive connection.
        Some(origin) if method == axum::http::Method::OPTIONS => match buffer_body(request).await {
            Ok(_) => api::cors_preflight(&state, origin.as_ref()),
            Err(response) => response,
        },
        _ => next.run(request).await,
    };
    if let Some(origin) = &cors {
        api::allow_origin(&state, origin.as_ref(), &mut response);
    }
    state.metrics.request_duration.observe(
        &[
            method.as_str(),
            handler.as_ref().map_or("fallback", |p| p.as_str()),
            response.status().as_str(),
        ],
        began.elapsed(),
    );
    let is_html = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    let h = response.headers_mut();
    h.insert(VERSION_HEADER, HeaderValue::from_static(api::API_VERSION));
    if !h.contains_key(axum::http::header::CONTENT_SECURITY_POLICY) {
        let csp = if is_html {
            &state.csp_html
        } else {
            &state.csp_other
        };
        h.insert(axum::http::header::CONTENT_SECURITY_POLICY, csp.clone());
    }
    response
}

/// The hub owns the proxy's catch-all route: send everything else into `/hub/`, as JupyterHub.
async fn catch_all(
    axum::extract::State(state): axum::extract::State<AppState>,
    uri: OriginalUri,
) -> Response {
    let base = state.config.hub.base_url.as_str();
    let path = uri.path();
    let hub = format!("{base}hub");
    if path == hub {
        return crate::redirect(StatusCode::MOVED_PERMANENTLY, &format!("{hub}/"));
    }
    if path == base || path == base.trim_end_matches('/') {
        return crate::found(&format!("{hub}/"));
    }
    if let Some(rest) = path.strip_prefix(base) {
        if !rest.starts_with("hub/") {
            let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
            return crate::found(&format!("{hub}/{rest}{query}"));
        }
    }
    (StatusCode::NOT_FOUND, "404: Not Found").into_response()
}

/// Serves the hub on `listener` until `shutdown` resolves or `POST /hub/api/shutdown` asks, then
/// stops accepting and waits for the open connections to finish.
///
/// Slow clients (issue 20): a request head must arrive within `[hub] request_header_timeout`
/// (hyper's timer, which starts when a connection begins waiting for a request) and a body
/// within `request_body_timeout` ([`nbhub_proxy::deadline`]; `read_body_first` answers
/// 408); otherwise the connection is closed. Answers are never limited.
pub async fn run(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use nbhub_proxy::deadline::{BodyLimit, DeadlineBody};
    use tower::Service;

    let requested = state.shutdown.requested();
    // 0: no limit; anything past a century is as good as none (and cannot overflow a clock).
    let secs = |s: u64| (s > 0).then(|| std::time::Duration::from_secs(s.min(u32::MAX.into())));
    let header_timeout = secs(state.config.hub.request_header_timeout);
    let body_limit = BodyLimit {
        timeout: secs(state.config.hub.request_body_timeout),
        min_rate: 0,
    };
    let app = app(state);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    // As axum::serve: websockets over HTTP/2 need the CONNECT protocol.
    builder.http2().enable_connect_protocol();
    let builder = std::sync::Arc::new(builder);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let stop = async move {
        tokio::select! {
            _ = shutdown => {}
            _ = requested => {}
        }
    };
    tokio::pin!(stop);
    loop {
        let (io, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::error!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = io.set_nodelay(true);
        // Closed without a reset: the hub answers some requests before reading their bodies (a
        // 405, a 403 to an upload, a 408) and then closes, and a close with unread bytes would
        // make the kernel reset the connection, which can destroy the answer on its way.
        let io = TokioIo::new(nbhub_proxy::linger::Lingering::new(io));
        let router = app.clone();
        let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(remote));
            let req = req.map(|b| axum::body::Body::new(DeadlineBody::new(b, body_limit)));
            router.clone().call(req)
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let conn = builder.serve_connection_with_upgrades(io, svc);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!("connection from {remote}: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
