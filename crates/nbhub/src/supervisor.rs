//! One supervisor per server (user, server name): the state machine
//! stopped → starting → running → stopping → stopped, one transition at a time, with a
//! progress log that any number of listeners can follow, and the state persisted at each step
//! so that a restarted hub picks every server up again.
//!
//! A spawn, step by step: a server row and a server API token (hashed in the database) and an
//! OAuth client are made; the spawner starts the process or job with JupyterHub's environment;
//! the hub probes `GET <prefix>api` until it answers below 500 (a batchspawner wrapper may
//! report another port meanwhile); only then is the proxy route added and the server ready.
//! Any failure stops what was started and removes the token and client again.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nbhub_spawner::{PollStatus, SpawnRequest, Spawner, SpawnerState, ValidatedOptions};
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use crate::auth::scopes;
use crate::config::Config;
use crate::db::{self, servers, tokens, users::User, Db};
use crate::oauth::server_client_id;
use crate::proxy::{hub_origin, Proxy};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Stopped,
    Starting,
    Running,
    Stopping,
}

/// What a slot knows beyond its phase.
#[derive(Clone, Debug, Default)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

struct SlotState {
    phase: Phase,
    endpoint: Option<Endpoint>,
    spawner_state: SpawnerState,
    /// The server's own API token row (batchspawner finds its server by it).
    token_id: Option<i64>,
    /// Progress events of the current (or last) spawn, for late listeners.
    events: Vec<Value>,
    /// Why the last spawn failed, if it did.
    failure: Option<String>,
    /// Why the server stopped when it was not asked to.
    exit_reason: Option<String>,
}

/// One server's supervisor.
pub struct Slot {
    pub user_id: i64,
    pub user: String,
    pub server_name: String,
    state: Mutex<SlotState>,
    /// Bumped on every phase change and every new event.
    changes: watch::Sender<u64>,
    /// One transition at a time.
    op: tokio::sync::Mutex<()>,
    cancel: AtomicBool,
    /// A port reported by batchspawner-singleuser while starting (0: none).
    reported_port: AtomicU32,
}

impl Slot {
    fn new(user_id: i64, user: &str, server_name: &str) -> Self {
        Slot {
            user_id,
            user: user.to_string(),
            server_name: server_name.to_string(),
            state: Mutex::new(SlotState {
                phase: Phase::Stopped,
                endpoint: None,
                spawner_state: SpawnerState::default(),
                token_id: None,
                events: Vec::new(),
                failure: None,
                exit_reason: None,
            }),
            changes: watch::channel(0).0,
            op: tokio::sync::Mutex::new(()),
            cancel: AtomicBool::new(false),
            reported_port: AtomicU32::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn phase(&self) -> Phase {
        self.lock().phase
    }

    pub fn endpoint(&self) -> Option<Endpoint> {
        self.lock().endpoint.clone()
    }

    pub fn failure(&self) -> Option<String> {
        self.lock().failure.clone()
    }

    pub fn exit_reason(&self) -> Option<String> {
        self.lock().exit_reason.clone()
    }

    pub fn token_id(&self) -> Option<i64> {
        self.lock().token_id
    }

    /// Events from index `from` on, and whether the stream has ended (ready or failed).
    pub fn events_since(&self, from: usize) -> (Vec<Value>, bool) {
        let st = self.lock();
        let events = st
            .events
            .get(from..)
            .map(<[Value]>::to_vec)
            .unwrap_or_default();
        let ended = st
            .events
            .last()
            .is_some_and(|e| e.get("ready").is_some() || e.get("failed").is_some());
        (events, ended)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn set_phase(&self, phase: Phase) {
        self.lock().phase = phase;
        self.changes.send_modify(|n| *n += 1);
    }

    fn push_event(&self, event: Value) {
        self.lock().events.push(event);
        self.changes.send_modify(|n| *n += 1);
    }

    /// batchspawner: the server reports the port it will listen on.
    pub fn report_port(&self, port: u16) {
        self.reported_port.store(u32::from(port), Ordering::SeqCst);
    }

    /// The URL prefix of this server, e.g. `/user/alice/` or `/user/alice/foo/`.
    pub fn prefix(&self, base_url: &str) -> String {
        server_prefix(base_url, &self.user, &self.server_name)
    }

    /// Waits until the phase is not `phase` any more, or `timeout` passes.
    pub async fn wait_while(&self, phase: Phase, timeout: Duration) -> Phase {
        let mut rx = self.subscribe();
        let wait = async {
            while self.phase() == phase {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
        self.phase()
    }
}

pub fn server_prefix(base_url: &str, user: &str, server: &str) -> String {
    if server.is_empty() {
        format!("{base_url}user/{user}/")
    } else {
        format!("{base_url}user/{user}/{server}/")
    }
}

/// Why a start or stop was refused; the API turns these into 4xx answers.
#[derive(Debug, thiserror::Error)]
pub enum SpawnRefused {
    #[error("{0} is already running")]
    AlreadyRunning(String),
    #[error("{0} is stopping; try again when it has stopped")]
    Stopping(String),
    #[error("{0}")]
    Limit(String),
    #[error("{0}")]
    BadRequest(String),
    /// The spawner refused these options, per field (the spawn page shows each next to its field).
    #[error("{}", nbhub_spawner::FieldError::join(.0))]
    InvalidOptions(Vec<nbhub_spawner::FieldError>),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for SpawnRefused {
    fn from(e: sqlx::Error) -> Self {
        SpawnRefused::Internal(format!("database: {e}"))
    }
}

pub struct Supervisor {
    db: Db,
    config: Arc<Config>,
    pub spawner: Arc<dyn Spawner>,
    pub proxy: Arc<Proxy>,
    slots: Mutex<HashMap<(i64, String), Arc<Slot>>>,
    http: reqwest::Client,
}

impl Supervisor {
    pub fn new(
        db: Db,
        config: Arc<Config>,
        spawner: Arc<dyn Spawner>,
        proxy: Arc<Proxy>,
    ) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Arc::new(Supervisor {
            db,
            config,
            spawner,
            proxy,
            slots: Mutex::new(HashMap::new()),
            http,
        })
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<(i64, String), Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The slot of a server, made on first use.
    pub fn slot(&self, user: &User, server_name: &str) -> Arc<Slot> {
        self.slots()
            .entry((user.id, server_name.to_string()))
            .or_insert_with(|| Arc::new(Slot::new(user.id, &user.name, server_name)))
            .clone()
    }

    /// The slot if the hub has one (a server that never started in this hub run has none).
    pub fn existing_slot(&self, user_id: i64, server_name: &str) -> Option<Arc<Slot>> {
        self.slots()
            .get(&(user_id, server_name.to_string()))
            .cloned()
    }

    pub fn phase_of(&self, user_id: i64, server_name: &str) -> Phase {
        self.existing_slot(user_id, server_name)
            .map_or(Phase::Stopped, |s| s.phase())
    }

    fn all_slots(&self) -> Vec<Arc<Slot>> {
        self.slots().values().cloned().collect()
    }

    fn count(&self, phase: Phase) -> usize {
        self.slots().values().filter(|s| s.phase() == phase).count()
    }

    /// Checks and begins a spawn; the work goes on in the background. Returns the slot to
    /// wait on. A spawn already under way is not an error (the caller answers 202).
    pub async fn start(
        self: &Arc<Self>,
        user: &User,
        server_name: &str,
        options: &Value,
    ) -> Result<Arc<Slot>, SpawnRefused> {
        let hub = &self.config.hub;
        let display = if server_name.is_empty() {
            user.name.clone()
        } else {
            format!("{}/{server_name}", user.name)
        };
        if !server_name.is_empty() && !hub.allow_named_servers {
            return Err(SpawnRefused::BadRequest(
                "Named servers are not enabled on this hub (allow_named_servers)".into(),
            ));
        }
        if !crate::names::is_valid_server_name(server_name) {
            return Err(SpawnRefused::BadRequest(
                crate::names::invalid_name_message("server", server_name),
            ));
        }
        let slot = self.slot(user, server_name);
        let op_slot = slot.clone();
        let _op = op_slot.op.lock().await;
        match slot.phase() {
            Phase::Running => return Err(SpawnRefused::AlreadyRunning(display)),
            Phase::Starting => return Ok(slot.clone()),
            Phase::Stopping => return Err(SpawnRefused::Stopping(display)),
            Phase::Stopped => {}
        }
        if !server_name.is_empty() && hub.named_server_limit_per_user > 0 {
            let existing = servers::list_for_user(&self.db, user.id).await?;
            let named = existing
                .iter()
                .filter(|s| !s.name.is_empty() && s.name != server_name)
                .count();
            if named >= hub.named_server_limit_per_user as usize {
                return Err(SpawnRefused::BadRequest(format!(
                    "User {} already has the maximum of {} named servers. One must be deleted before a new server can be created",
                    user.name, hub.named_server_limit_per_user
                )));
            }
        }
        if hub.concurrent_spawn_limit > 0
            && self.count(Phase::Starting) >= hub.concurrent_spawn_limit as usize
        {
            return Err(SpawnRefused::Limit(
                "Too many users trying to log in right now. Try again in a minute.".into(),
            ));
        }
        if hub.active_server_limit > 0
            && self.count(Phase::Starting) + self.count(Phase::Running)
                >= hub.active_server_limit as usize
        {
            return Err(SpawnRefused::Limit(
                "Active user limit exceeded. Try again in a few minutes.".into(),
            ));
        }
        let validated = self
            .spawner
            .validate_options(options)
            .map_err(SpawnRefused::InvalidOptions)?;

        let row = servers::ensure(&self.db, user.id, server_name).await?;
        let started = db::now_micros();
        servers::mark_starting(
            &self.db,
            row.id,
            &Value::Object(validated.0.clone()),
            started,
        )
        .await?;
        {
            let mut st = slot.lock();
            st.events.clear();
            st.failure = None;
            st.exit_reason = None;
            st.endpoint = None;
        }
        slot.cancel.store(false, Ordering::SeqCst);
        slot.reported_port.store(0, Ordering::SeqCst);
        slot.set_phase(Phase::Starting);
        slot.push_event(json!({"progress": 0, "message": "Server requested"}));
        tracing::info!(user = %user.name, server = %server_name, "spawn requested");

        let this = self.clone();
        let s = slot.clone();
        let user = user.clone();
        tokio::spawn(async move {
            let _op = s.op.lock().await;
            this.run_spawn(&user, &s, row.id, validated).await;
        });
        Ok(slot)
    }

    async fn run_spawn(
        &self,
        user: &User,
        slot: &Arc<Slot>,
        row_id: i64,
        options: ValidatedOptions,
    ) {
        let timeouts = self.config.spawner.timeouts();
        let outcome = tokio::time::timeout(
            timeouts.start_timeout + timeouts.http_timeout,
            self.spawn_steps(user, slot, row_id, options),
        )
        .await;
        let result = match outcome {
            Ok(r) => r,
            Err(_) => Err(format!(
                "Server at {} didn't start in {} seconds",
                slot.prefix(self.config.hub.base_url.as_str()),
                (timeouts.start_timeout + timeouts.http_timeout).as_secs()
            )),
        };
        match result {
            Ok(()) => {}
            Err(reason) => {
                tracing::warn!(user = %user.name, server = %slot.server_name, %reason, "spawn failed");
                self.cleanup(user.id, slot, row_id).await;
                slot.lock().failure = Some(reason.clone());
                let cancelled = slot.cancel.load(Ordering::SeqCst);
                let message = if cancelled {
                    "Spawn cancelled".to_string()
                } else {
                    format!("Spawn failed: {reason}")
                };
                slot.push_event(json!({"progress": 100, "failed": true, "message": message}));
                slot.set_phase(Phase::Stopped);
            }
        }
    }

    /// The spawn itself; an `Err` is a reason for the user.
    async fn spawn_steps(
        &self,
        user: &User,
        slot: &Arc<Slot>,
        row_id: i64,
        options: ValidatedOptions,
    ) -> Result<(), String> {
        let base = self.config.hub.base_url.as_str();
        let prefix = slot.prefix(base);
        let internal = |e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "spawn: internal error");
            "internal error in the hub (see its log)".to_string()
        };
        // The server's credentials: an API token and an OAuth client with the same secret.
        let token = tokens::generate();
        let access_scope = scopes::server_access_scope(&user.name, &slot.server_name);
        let token_scopes = vec![
            access_scope.clone(),
            format!("users:activity!user={}", user.name),
        ];
        let note = format!("Server at {prefix}");
        tokens::delete_by_note(&self.db, user.id, &note)
            .await
            .map_err(|e| internal(&e))?;
        let row = tokens::insert(
            &self.db,
            &tokens::NewToken {
                owner: tokens::Owner::User(user.id),
                token: &token,
                rounds: tokens::GENERATED_ROUNDS,
                client_id: tokens::API_CLIENT_ID,
                session_id: None,
                note: &note,
                scopes: &token_scopes,
                expires_at: None,
            },
        )
        .await
        .map_err(|e| internal(&e))?;
        slot.lock().token_id = Some(row.id);
        let client_id = server_client_id(&user.name, &slot.server_name);
        let callback = format!("{prefix}oauth_callback");
        db::oauth::upsert_client(
            &self.db,
            &db::oauth::NewClient {
                identifier: &client_id,
                description: &note,
                secret: &token,
                redirect_uri: &callback,
                allowed_scopes: std::slice::from_ref(&access_scope),
            },
        )
        .await
        .map_err(|e| internal(&e))?;

        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<nbhub_spawner::ProgressEvent>();
        let forward = {
            let slot = slot.clone();
            tokio::spawn(async move {
                let mut any = false;
                while let Some(ev) = rx.recv().await {
                    any = true;
                    slot.push_event(
                        serde_json::to_value(&ev)
                            .unwrap_or_else(|_| json!({"message": ev.message})),
                    );
                }
                any
            })
        };
        let request = SpawnRequest {
            user: user.name.clone(),
            unix_user: user.name.clone(),
            server_name: slot.server_name.clone(),
            service_prefix: prefix.clone(),
            env: self.environment(
                user,
                &slot.server_name,
                &prefix,
                &token,
                &client_id,
                &access_scope,
            ),
            user_options: options,
            progress: Some(tx),
        };
        let started = self.spawner.start(&request).await;
        drop(request);
        let spawner_spoke = forward.await.unwrap_or(false);
        let started = started.map_err(|e| e.to_string())?;
        if !spawner_spoke {
            slot.push_event(json!({"progress": 50, "message": "Spawning server..."}));
        }
        {
            let mut st = slot.lock();
            st.spawner_state = started.state.clone();
            st.endpoint = Some(Endpoint {
                host: started.host.clone(),
                port: started.port,
            });
        }
        servers::set_state(&self.db, row_id, &started.state.0)
            .await
            .map_err(|e| internal(&e))?;
        if slot.cancel.load(Ordering::SeqCst) {
            return Err("cancelled".into());
        }

        // Readiness: any answer below 500 from <prefix>api.
        let http_timeout = self.config.spawner.timeouts().http_timeout;
        let deadline = tokio::time::Instant::now() + http_timeout;
        let mut delay = Duration::from_millis(10);
        let mut last_poll = tokio::time::Instant::now();
        let port = loop {
            let port = match slot.reported_port.load(Ordering::SeqCst) {
                0 => started.port,
                p => p as u16,
            };
            let url = format!(
                "{}{prefix}api",
                nbhub_spawner::http_origin(&started.host, port)
            );
            if let Ok(resp) = self.http.get(&url).send().await {
                if resp.status().as_u16() < 500 {
                    break port;
                }
            }
            if slot.cancel.load(Ordering::SeqCst) {
                return Err("cancelled".into());
            }
            if last_poll.elapsed() > Duration::from_millis(500) {
                last_poll = tokio::time::Instant::now();
                if let PollStatus::Exited { reason } = self.spawner.poll(&started.state).await {
                    return Err(format!("the server exited before it answered: {reason}"));
                }
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "Server at {url} didn't respond in {} seconds",
                    http_timeout.as_secs()
                ));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        };
        slot.lock().endpoint = Some(Endpoint {
            host: started.host.clone(),
            port,
        });
        let target = nbhub_spawner::http_origin(&started.host, port);
        self.add_server_route(&slot.user, &slot.server_name, &target)
            .await
            .map_err(|e| format!("could not add the proxy route: {e}"))?;
        servers::mark_ready(&self.db, row_id, &started.host, port)
            .await
            .map_err(|e| internal(&e))?;
        slot.set_phase(Phase::Running);
        let html_prefix = prefix
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('"', "&quot;");
        slot.push_event(json!({
            "progress": 100,
            "ready": true,
            "message": format!("Server ready at {prefix}"),
            "html_message": format!("Server ready at <a href=\"{html_prefix}\">{html_prefix}</a>"),
            "url": prefix,
        }));
        tracing::info!(user = %slot.user, server = %slot.server_name, %target, "server ready");
        Ok(())
    }

    /// WIRE.md §a: the environment of a single-user server.
    fn environment(
        &self,
        user: &User,
        server: &str,
        prefix: &str,
        token: &str,
        client_id: &str,
        access_scope: &str,
    ) -> BTreeMap<String, String> {
        let base = self.config.hub.base_url.as_str();
        let api_url = format!("{}{base}hub/api", hub_origin(&self.config));
        let escaped_name: String =
            percent_encoding::utf8_percent_encode(&user.name, ACTIVITY_ESCAPE).to_string();
        let access =
            serde_json::to_string(&[access_scope, &format!("access:servers!user={}", user.name)])
                .unwrap_or_default();
        let mut env = BTreeMap::new();
        let mut set = |k: &str, v: String| {
            env.insert(k.to_string(), v);
        };
        set("JUPYTERHUB_API_TOKEN", token.to_string());
        set("JPY_API_TOKEN", token.to_string());
        set("JUPYTERHUB_CLIENT_ID", client_id.to_string());
        set(
            "JUPYTERHUB_ACTIVITY_URL",
            format!("{api_url}/users/{escaped_name}/activity"),
        );
        set("JUPYTERHUB_API_URL", api_url);
        set(
            "JUPYTERHUB_OAUTH_CALLBACK_URL",
            format!("{prefix}oauth_callback"),
        );
        set("JUPYTERHUB_OAUTH_ACCESS_SCOPES", access.clone());
        set("JUPYTERHUB_OAUTH_SCOPES", access);
        set("JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES", "[]".into());
        set("JUPYTERHUB_USER", user.name.clone());
        set("JUPYTERHUB_SERVER_NAME", server.to_string());
        set("JUPYTERHUB_SERVICE_PREFIX", prefix.to_string());
        set("JUPYTERHUB_BASE_URL", base.to_string());
        set("JUPYTERHUB_HOST", String::new());
        set("JUPYTERHUB_PUBLIC_URL", String::new());
        set("JUPYTERHUB_PUBLIC_HUB_URL", String::new());
        set("JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED", "0".into());
        env
    }

    async fn add_server_route(
        &self,
        user: &str,
        server: &str,
        target: &str,
    ) -> Result<(), crate::proxy::ProxyError> {
        let (spec, data) = server_route(self.config.hub.base_url.as_str(), user, server);
        self.proxy.client.add_route(&spec, target, &data).await
    }

    /// Removes what a server leaves behind: route, process or job, token, OAuth client, and
    /// marks the row stopped.
    async fn cleanup(&self, user_id: i64, slot: &Slot, row_id: i64) {
        let base = self.config.hub.base_url.as_str();
        let (spec, _) = server_route(base, &slot.user, &slot.server_name);
        if let Err(e) = self.proxy.client.delete_route(&spec).await {
            tracing::warn!(error = %e, route = %spec, "could not delete the proxy route (the route check will retry)");
        }
        let state = slot.lock().spawner_state.clone();
        if !state.is_empty() {
            if let Err(e) = self.spawner.stop(&state, Duration::from_secs(10)).await {
                tracing::warn!(error = %e, user = %slot.user, "stopping the server failed");
            }
        }
        let note = format!("Server at {}", slot.prefix(base));
        if let Err(e) = tokens::delete_by_note(&self.db, user_id, &note).await {
            tracing::error!(error = %e, "could not delete the server token");
        }
        if let Err(e) =
            db::oauth::delete_client(&self.db, &server_client_id(&slot.user, &slot.server_name))
                .await
        {
            tracing::error!(error = %e, "could not delete the server's OAuth client");
        }
        if let Err(e) = servers::mark_stopped(&self.db, row_id).await {
            tracing::error!(error = %e, "could not mark the server stopped");
        }
        let mut st = slot.lock();
        st.spawner_state = SpawnerState::default();
        st.endpoint = None;
        st.token_id = None;
    }

    /// Stops a server (or interrupts its spawn). Returns once stopped; callers that must
    /// answer sooner wait on the slot with a timeout.
    pub async fn stop(self: &Arc<Self>, slot: &Arc<Slot>) {
        slot.cancel.store(true, Ordering::SeqCst);
        let this = self.clone();
        let s = slot.clone();
        let task = tokio::spawn(async move {
            let _op = s.op.lock().await;
            if s.phase() != Phase::Running {
                return;
            }
            s.set_phase(Phase::Stopping);
            let row = servers::get(&this.db, s.user_id, &s.server_name)
                .await
                .ok()
                .flatten();
            if let Some(row) = row {
                this.cleanup(s.user_id, &s, row.id).await;
            }
            s.set_phase(Phase::Stopped);
            tracing::info!(user = %s.user, server = %s.server_name, "server stopped");
        });
        let _ = task.await;
    }

    /// Polls every running server; a dead one loses its route and is marked stopped with
    /// the reason.
    pub async fn poll_once(&self) {
        let running: Vec<Arc<Slot>> = self
            .all_slots()
            .into_iter()
            .filter(|s| s.phase() == Phase::Running)
            .collect();
        if running.is_empty() {
            return;
        }
        let states: Vec<SpawnerState> = running
            .iter()
            .map(|s| s.lock().spawner_state.clone())
            .collect();
        let results = self.spawner.poll_all(&states).await;
        for (slot, status) in running.iter().zip(results) {
            if let PollStatus::Exited { reason } = status {
                let Ok(_op) = slot.op.try_lock() else {
                    continue;
                };
                if slot.phase() != Phase::Running {
                    continue;
                }
                tracing::warn!(user = %slot.user, server = %slot.server_name, %reason, "server died");
                if let Ok(Some(row)) = servers::get(&self.db, slot.user_id, &slot.server_name).await
                {
                    self.cleanup(slot.user_id, slot, row.id).await;
                }
                slot.lock().exit_reason = Some(reason);
                slot.set_phase(Phase::Stopped);
            }
        }
    }

    /// At hub start: every server recorded as started is polled; alive ones are adopted,
    /// gone ones are marked stopped.
    pub async fn adopt(&self) -> Result<(), sqlx::Error> {
        for row in servers::list_started(&self.db).await? {
            let Some(user) = db::users::get_by_id(&self.db, row.user_id).await? else {
                continue;
            };
            let slot = self.slot(&user, &row.name);
            let state = SpawnerState(row.state.clone());
            let alive = !state.is_empty()
                && row.port.is_some()
                && matches!(self.spawner.poll(&state).await, PollStatus::Running);
            {
                let mut st = slot.lock();
                st.spawner_state = state.clone();
                st.endpoint = row.ip.clone().zip(row.port).map(|(host, port)| Endpoint {
                    host,
                    port: port as u16,
                });
            }
            if alive {
                slot.set_phase(Phase::Running);
                tracing::info!(user = %user.name, server = %row.name, "adopted a running server");
            } else {
                tracing::info!(user = %user.name, server = %row.name, "a server recorded as running is gone; marking it stopped");
                self.cleanup(user.id, &slot, row.id).await;
                slot.lock().exit_reason = Some("the server was gone when the hub restarted".into());
                slot.set_phase(Phase::Stopped);
            }
        }
        Ok(())
    }

    /// Stops every server (for `cleanup_servers`).
    pub async fn stop_all(self: &Arc<Self>) {
        for slot in self.all_slots() {
            if slot.phase() == Phase::Running {
                self.stop(&slot).await;
            }
        }
    }

    /// The routes the proxy should have: the hub's catch-all and one per running server.
    pub fn desired_routes(&self) -> BTreeMap<String, (String, Map<String, Value>)> {
        let base = self.config.hub.base_url.as_str();
        let mut routes = BTreeMap::new();
        let mut hub_data = Map::new();
        hub_data.insert("hub".into(), json!(true));
        hub_data.insert("jupyterhub".into(), json!(true));
        routes.insert(route_key(base), (hub_origin(&self.config), hub_data));
        for slot in self.all_slots() {
            if slot.phase() != Phase::Running {
                continue;
            }
            if let Some(ep) = slot.endpoint() {
                let (spec, data) = server_route(base, &slot.user, &slot.server_name);
                routes.insert(
                    route_key(&spec),
                    (nbhub_spawner::http_origin(&ep.host, ep.port), data),
                );
            }
        }
        for svc in &self.config.services {
            if svc.url.is_empty() {
                continue;
            }
            let mut data = Map::new();
            data.insert("service".into(), json!(svc.name));
            data.insert("jupyterhub".into(), json!(true));
            let target = crate::config::HttpUrl::parse(&svc.url)
                .map(|u| u.to_string())
                .unwrap_or_default();
            routes.insert(
                route_key(&format!("{base}services/{}/", svc.name)),
                (target, data),
            );
        }
        routes
    }

    /// Brings the proxy's table in line with `desired_routes`, and harvests activity.
    pub async fn sync_routes(&self) -> Result<(), crate::proxy::ProxyError> {
        let restarted = self.proxy.ensure_running().await?;
        if restarted {
            tracing::info!("proxy (re)started; restoring all routes");
        }
        let have = self.proxy.client.get_routes().await?;
        let want = self.desired_routes();
        for (key, (target, data)) in &want {
            let ok = have.get(key).is_some_and(|r| {
                &r.target == target && data.iter().all(|(k, v)| r.data.get(k) == Some(v))
            });
            if !ok {
                tracing::info!(route = %key, %target, "adding proxy route");
                self.proxy.client.add_route(key, target, data).await?;
            }
        }
        for (key, route) in &have {
            let ours = route
                .data
                .get("jupyterhub")
                .is_some_and(|v| v == &json!(true));
            if ours && !want.contains_key(key) {
                tracing::info!(route = %key, "removing stale proxy route");
                self.proxy.client.delete_route(key).await?;
            }
        }
        self.harvest_activity(&have).await;
        Ok(())
    }

    async fn harvest_activity(&self, routes: &BTreeMap<String, crate::proxy::Route>) {
        for route in routes.values() {
            let (Some(user), Some(ms)) = (
                route.data.get("user").and_then(Value::as_str),
                route.last_activity,
            ) else {
                continue;
            };
            let server = route
                .data
                .get("server_name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let Ok(Some(u)) = db::users::get(&self.db, user).await else {
                continue;
            };
            let micros = ms * 1000;
            if let Ok(Some(row)) = servers::get(&self.db, u.id, server).await {
                let _ = servers::touch_activity(&self.db, row.id, micros).await;
            }
            let _ = db::users::touch_activity(&self.db, u.id, micros).await;
        }
    }

    /// Runs the periodic tasks until the hub stops: the route check every
    /// `proxy.check_running_interval`, the server poll every `spawner.poll_interval`.
    pub fn spawn_background_tasks(self: &Arc<Self>) {
        self.proxy.watch_managed();
        let this = self.clone();
        tokio::spawn(async move {
            let interval = Duration::from_secs(this.config.proxy.check_running_interval.max(1));
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = this.proxy.exited.notified() => {}
                }
                if let Err(e) = this.sync_routes().await {
                    tracing::warn!(error = %e, "route check failed; retrying");
                }
            }
        });
        let this = self.clone();
        tokio::spawn(async move {
            let interval = this.config.spawner.timeouts().poll_interval;
            loop {
                tokio::time::sleep(interval).await;
                this.poll_once().await;
            }
        });
    }
}

/// Python's `quote(name, safe="@~")` for the activity URL.
const ACTIVITY_ESCAPE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'@');

/// The proxy key of a routespec: no trailing slash, root is `/`.
pub fn route_key(spec: &str) -> String {
    let k = spec.trim_end_matches('/');
    if k.is_empty() {
        "/".into()
    } else {
        k.into()
    }
}

/// The routespec and route data of a user's server, as JupyterHub stores them.
pub fn server_route(base_url: &str, user: &str, server: &str) -> (String, Map<String, Value>) {
    let mut data = Map::new();
    data.insert("user".into(), json!(user));
    data.insert("server_name".into(), json!(server));
    data.insert("jupyterhub".into(), json!(true));
    (server_prefix(base_url, user, server), data)
}
