//! The steps of a spawn, each timed on its own: credentials (a server API token, hashed in
//! the database, and an OAuth client with the same secret); the spawner's start, whose state
//! is persisted the moment the spawner hands it over (a job id as soon as `sbatch` answers);
//! the wait for the server's process to run (a batch queue: not counted against
//! `start_timeout`); the wait for a reported port (batchspawner) within `start_timeout`; the
//! readiness probe `GET <prefix>api` within `http_timeout`; then the proxy route. A failure,
//! a timeout or a cancel at any step stops what was started, with the last persisted state,
//! and removes the token and client again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use nbhub_spawner::{
    PollStatus, SpawnRequest, SpawnUpdate, SpawnerState, Started, Updates, ValidatedOptions,
};
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use super::{server_route, Endpoint, Phase, Slot, SpawnFailure, SpawnStep, Supervisor};
use crate::auth::scopes;
use crate::db::{self, servers, tokens, users::User};
use crate::names::server_client_id;
use crate::proxy::hub_origin;

/// How often a starting server is polled while the probe waits for it (cheap for every
/// spawner: batch backends answer from their shared, batched query).
const PROBE_POLL: Duration = Duration::from_millis(500);

impl Supervisor {
    /// Runs a spawn to its end (ready, failed, timed out or cancelled) and records it.
    pub(super) async fn run_spawn(
        &self,
        user: &User,
        slot: &Arc<Slot>,
        row_id: i64,
        options: ValidatedOptions,
        extra_env: BTreeMap<String, String>,
    ) {
        let began = std::time::Instant::now();
        let result = self
            .spawn_steps(user, slot, row_id, options, extra_env)
            .await;
        self.record_spawn(&result, began.elapsed());
        self.finish_spawn(user.id, slot, row_id, result).await;
    }

    /// Takes up a start an earlier hub run began (its job may still wait in the queue).
    pub(super) async fn run_resume(&self, user_id: i64, slot: &Arc<Slot>, row_id: i64) {
        let state = slot.lock().spawner_state.clone();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let updates = Updates::new(tx);
        let result = {
            let launch = self.spawner.resume(&state, &updates);
            self.drive_start(slot, row_id, launch, rx).await
        };
        drop(updates);
        let result = match result {
            Ok((started, armed)) => self.wait_ready(slot, row_id, started, armed).await,
            Err(e) => Err(e),
        };
        self.finish_spawn(user_id, slot, row_id, result).await;
    }

    /// `jupyterhub_server_spawn_duration_seconds`: success, or failure (a cancel included).
    fn record_spawn(&self, result: &Result<(), SpawnFailure>, took: Duration) {
        let status = if result.is_ok() { "success" } else { "failure" };
        self.metrics
            .server_spawn_duration
            .observe(&[status, ""], took);
    }

    pub(super) async fn finish_spawn(
        &self,
        user_id: i64,
        slot: &Arc<Slot>,
        row_id: i64,
        result: Result<(), SpawnFailure>,
    ) {
        let Err(failure) = result else { return };
        let cancelled = slot.is_cancelled();
        if cancelled {
            tracing::info!(user = %slot.user, server = %slot.server_name, "spawn cancelled");
        } else {
            tracing::warn!(
                user = %slot.user,
                server = %slot.server_name,
                step = ?failure.step(),
                retry_may_help = failure.retry_may_help(),
                reason = %failure,
                "spawn failed"
            );
        }
        self.cleanup(user_id, slot, row_id).await;
        let message = if cancelled {
            "Spawn cancelled".to_string()
        } else {
            format!("Spawn failed: {failure}")
        };
        let reason = if cancelled {
            super::EndReason::SpawnCancelled
        } else {
            super::EndReason::SpawnFailed
        };
        self.history_end(row_id, reason, failure.message()).await;
        slot.lock().failure = Some(failure);
        slot.push_event(json!({"progress": 100, "failed": true, "message": message}));
        slot.set_phase(Phase::Stopped);
    }

    /// The spawn itself; an `Err` says which step failed and why, for the user.
    async fn spawn_steps(
        &self,
        user: &User,
        slot: &Arc<Slot>,
        row_id: i64,
        options: ValidatedOptions,
        extra_env: BTreeMap<String, String>,
    ) -> Result<(), SpawnFailure> {
        let credentials = |e| SpawnFailure::internal(SpawnStep::Credentials, e);
        let base = self.config.hub.base_url.as_str();
        let prefix = slot.prefix(base);
        // The server's credentials: an API token and an OAuth client with the same secret.
        let token = tokens::generate();
        let access_scope = scopes::server_access_scope(&user.name, &slot.server_name);
        let token_scopes =
            server_token_scopes(&self.config, &user.name, &slot.server_name, &access_scope);
        let note = format!("Server at {prefix}");
        tokens::delete_by_note(&self.db, user.id, &note)
            .await
            .map_err(credentials)?;
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
        .map_err(credentials)?;
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
        .map_err(credentials)?;

        let mut env = self.environment(
            user,
            &slot.server_name,
            &prefix,
            &token,
            &client_id,
            &access_scope,
        );
        // auth_state_env: never over the hub's own variables.
        for (k, v) in extra_env {
            env.entry(k).or_insert(v);
        }
        // group_overrides and apply_user_options (checked in `Supervisor::start`): the
        // settings of this start that differ from the config; mapped options are not the
        // spawner's.
        let mut options = options;
        let groups = db::users::group_names(&self.db, user.id)
            .await
            .map_err(credentials)?;
        let sp = &self.config.spawner;
        let overrides = nbhub_spawner::overrides_for(
            &sp.group_overrides,
            &sp.apply_user_options,
            &groups,
            &mut options.0,
        )
        .map_err(|e| {
            SpawnFailure::internal(SpawnStep::Start, nbhub_spawner::FieldError::join(&e))
        })?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let request = SpawnRequest {
            user: user.name.clone(),
            unix_user: self.config.spawner.unix_user_for(&user.name),
            server_name: slot.server_name.clone(),
            service_prefix: prefix.clone(),
            env,
            user_options: options,
            updates: Updates::new(tx),
            tag: self.job_tag.for_row(row_id),
            overrides,
        };
        let (started, armed) = self
            .drive_start(slot, row_id, self.spawner.start(&request), rx)
            .await?;
        drop(request);
        self.wait_ready(slot, row_id, started, armed).await
    }

    /// Runs a spawner's start (or resume) while handling what it reports: progress lines go
    /// to the slot, states are persisted at once, and `start_timeout` is armed when the
    /// server's process runs. Returns the start's answer and when `start_timeout` was armed
    /// (`None`: the spawner never said it runs, so the clock starts now).
    async fn drive_start(
        &self,
        slot: &Arc<Slot>,
        row_id: i64,
        launch: nbhub_spawner::BoxFuture<'_, Result<Started, nbhub_spawner::SpawnError>>,
        mut rx: UnboundedReceiver<SpawnUpdate>,
    ) -> Result<(Started, Option<Instant>), SpawnFailure> {
        let start_timeout = self.config.spawner.timeouts().start_timeout;
        let mut launch = launch;
        let mut armed: Option<Instant> = None;
        let mut spoke = false;
        let mut updates_open = true;
        let outcome = loop {
            let deadline = armed.map(|t| t + start_timeout);
            tokio::select! {
                result = &mut launch => break result.map_err(|e| SpawnFailure::spawner(&e)),
                update = rx.recv(), if updates_open => match update {
                    Some(update) => {
                        spoke |= matches!(update, SpawnUpdate::Progress(_));
                        self.apply_update(slot, row_id, update, &mut armed).await;
                    }
                    None => updates_open = false,
                },
                _ = sleep_until_opt(deadline) => {
                    let message = self.timed_out(slot, "start", start_timeout);
                    break Err(SpawnFailure::timed_out(SpawnStep::Start, message));
                }
                _ = slot.cancelled() => break Err(SpawnFailure::cancelled(SpawnStep::Start)),
            }
        };
        // What the spawner said just before it returned.
        while let Ok(update) = rx.try_recv() {
            spoke |= matches!(update, SpawnUpdate::Progress(_));
            self.apply_update(slot, row_id, update, &mut armed).await;
        }
        let started = outcome?;
        if !spoke {
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
            .map_err(|e| SpawnFailure::internal(SpawnStep::Record, e))?;
        if slot.is_cancelled() {
            return Err(SpawnFailure::cancelled(SpawnStep::Start));
        }
        Ok((started, armed))
    }

    async fn apply_update(
        &self,
        slot: &Slot,
        row_id: i64,
        update: SpawnUpdate,
        armed: &mut Option<Instant>,
    ) {
        match update {
            SpawnUpdate::Progress(ev) => {
                let mut event =
                    serde_json::to_value(&ev).unwrap_or_else(|_| json!({"message": ev.message}));
                event["state"] = json!(self.start_state(slot));
                slot.push_event(event);
            }
            SpawnUpdate::State(state) => {
                // Persisted at once: a hub killed now still knows the job and stops or
                // adopts it; a timeout or cancel now stops it.
                slot.lock().spawner_state = state.clone();
                if let Err(e) = servers::set_state(&self.db, row_id, &state.0).await {
                    tracing::error!(error = %e, "could not persist the spawner state");
                }
                self.history_job(row_id, &state).await;
            }
            SpawnUpdate::Running => {
                armed.get_or_insert_with(Instant::now);
            }
        }
    }

    /// The start's state for the pending page (its tab title): `queued` while the spawner
    /// says the server waits in a batch queue (the facts' `pending`, as the home page reads
    /// them), `starting` otherwise.
    fn start_state(&self, slot: &Slot) -> &'static str {
        let state = slot.lock().spawner_state.clone();
        let pending = self
            .spawner
            .describe(&state)
            .is_some_and(|f| f.get("pending").is_some_and(|p| !p.is_null()));
        if pending {
            "queued"
        } else {
            "starting"
        }
    }

    /// "Server at /user/alice/ didn't {what} in N seconds".
    fn timed_out(&self, slot: &Slot, what: &str, limit: Duration) -> String {
        let prefix = slot.prefix(self.config.hub.base_url.as_str());
        format!(
            "Server at {prefix} didn't {what} in {} seconds",
            limit.as_secs()
        )
    }

    /// After the start: the reported port (if the spawner left it to the server), the
    /// readiness probe (any answer below 500 from `<prefix>api`), then the route.
    async fn wait_ready(
        &self,
        slot: &Arc<Slot>,
        row_id: i64,
        started: Started,
        armed: Option<Instant>,
    ) -> Result<(), SpawnFailure> {
        let timeouts = self.config.spawner.timeouts();
        let prefix = slot.prefix(self.config.hub.base_url.as_str());
        let mut port = match slot.reported_port() {
            0 => started.port,
            p => p,
        };
        if port == 0 {
            slot.push_event(json!({"message": "Waiting for the server to report its port"}));
            let deadline = armed.unwrap_or_else(Instant::now) + timeouts.start_timeout;
            port = tokio::select! {
                p = slot.port_reported() => p,
                _ = tokio::time::sleep_until(deadline) => {
                    let message = self.timed_out(slot, "report its port", timeouts.start_timeout);
                    return Err(SpawnFailure::timed_out(SpawnStep::Port, message));
                }
                _ = slot.cancelled() => return Err(SpawnFailure::cancelled(SpawnStep::Port)),
                reason = self.wait_exit(&started.state) => {
                    let message = self.died_starting(&started.state, "started", &reason);
                    return Err(SpawnFailure::exited(SpawnStep::Port, message));
                }
            };
        }
        let deadline = Instant::now() + timeouts.http_timeout;
        let mut delay = Duration::from_millis(10);
        let mut last_poll = Instant::now();
        let mut reached = self.reach(slot, row_id, &started, port).await?;
        let mut reached_for = port;
        let reached = loop {
            // A batchspawner wrapper may report another port meanwhile.
            let current = match slot.reported_port() {
                0 => port,
                p => p,
            };
            if current != reached_for {
                reached = self.reach(slot, row_id, &started, current).await?;
                reached_for = current;
            }
            let url = format!(
                "{}{prefix}api",
                nbhub_spawner::http_origin(&reached.host, reached.port)
            );
            if let Ok(resp) = self.http.get(&url).send().await {
                if resp.status().as_u16() < 500 {
                    break reached;
                }
            }
            if slot.is_cancelled() {
                return Err(SpawnFailure::cancelled(SpawnStep::Probe));
            }
            if last_poll.elapsed() > PROBE_POLL {
                last_poll = Instant::now();
                if let PollStatus::Exited { reason } = self.spawner.poll(&started.state).await {
                    let message = self.died_starting(&started.state, "answered", &reason);
                    return Err(SpawnFailure::exited(SpawnStep::Probe, message));
                }
            }
            if Instant::now() > deadline {
                let message = format!(
                    "Server at {url} didn't respond in {} seconds",
                    timeouts.http_timeout.as_secs()
                );
                return Err(SpawnFailure::timed_out(SpawnStep::Probe, message));
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = slot.cancelled() => return Err(SpawnFailure::cancelled(SpawnStep::Probe)),
            }
            delay = (delay * 2).min(PROBE_POLL);
        };
        let (host, port) = (reached.host, reached.port);
        slot.lock().endpoint = Some(Endpoint {
            host: host.clone(),
            port,
        });
        let target = nbhub_spawner::http_origin(&host, port);
        self.add_server_route(&slot.user, &slot.server_name, &target)
            .await
            .map_err(SpawnFailure::proxy)?;
        servers::mark_ready(&self.db, row_id, &host, port)
            .await
            .map_err(|e| SpawnFailure::internal(SpawnStep::Record, e))?;
        self.history_ready(row_id).await;
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

    /// Where the hub and the proxy reach the server the job says listens at `port`
    /// (`Spawner::reach`: a tunnel through a login node, or there itself); a state that
    /// records a tunnel is persisted at once, so that a restarted hub opens it again.
    async fn reach(
        &self,
        slot: &Slot,
        row_id: i64,
        started: &Started,
        port: u16,
    ) -> Result<nbhub_spawner::Reached, SpawnFailure> {
        let state = slot.lock().spawner_state.clone();
        let state = if state.is_empty() {
            started.state.clone()
        } else {
            state
        };
        let reached = self
            .spawner
            .reach(&state, &started.host, port)
            .await
            .map_err(|e| SpawnFailure::spawner(&e))?;
        if let Some(state) = &reached.state {
            slot.lock().spawner_state = state.clone();
            servers::set_state(&self.db, row_id, &state.0)
                .await
                .map_err(|e| SpawnFailure::internal(SpawnStep::Record, e))?;
        }
        Ok(reached)
    }

    /// Why a server that died while starting failed, with its last lines: the cause (a crash
    /// at start-up, a bad command) is often there.
    fn died_starting(&self, state: &SpawnerState, before: &str, reason: &str) -> String {
        let head = format!("the server exited before it {before}: {reason}");
        match self.spawner.last_output(state) {
            // A Slurm job script that gave up says why itself ("cannot enter directory …").
            Some(tail) => match nbhub_spawner::job_script_error(&tail) {
                Some(own) => format!(
                    "the server exited before it {before}: {own}. {reason} Last output:\n{tail}"
                ),
                None => format!("{head} Last output:\n{tail}"),
            },
            None => head,
        }
    }

    /// Resolves with the reason once the server is seen gone (polled every [`PROBE_POLL`]).
    async fn wait_exit(&self, state: &SpawnerState) -> String {
        loop {
            tokio::time::sleep(PROBE_POLL).await;
            if let PollStatus::Exited { reason } = self.spawner.poll(state).await {
                return reason;
            }
        }
    }

    /// The environment of a single-user server (docs/wire.md).
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

    pub(super) async fn add_server_route(
        &self,
        user: &str,
        server: &str,
        target: &str,
    ) -> Result<(), crate::proxy::ProxyError> {
        let (spec, data) = server_route(self.config.hub.base_url.as_str(), user, server);
        self.proxy.add_route(&spec, target, &data).await
    }

    /// Removes what a server leaves behind: route, process or job, token, OAuth client, and
    /// marks the row stopped.
    pub(super) async fn cleanup(&self, user_id: i64, slot: &Slot, row_id: i64) {
        let base = self.config.hub.base_url.as_str();
        let (spec, _) = server_route(base, &slot.user, &slot.server_name);
        if let Err(e) = self.proxy.delete_route(&spec).await {
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
        st.end_signal = None;
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Python's `quote(name, safe="@~")` for the activity URL.
const ACTIVITY_ESCAPE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'@');

/// The server token's scopes: JupyterHub's `server` role (activity and access to this server),
/// or the scopes a `[[roles]] name = "server"` gives it instead, with bare `!user`/`!server`
/// filters naming this server's owner and server (e.g. `admin:auth_state!user`, so that the
/// server can read its owner's fresh tokens). The access scope is always in: the server's
/// OAuth client needs it. Whatever the owner lacks is dropped when the token is used.
fn server_token_scopes(
    config: &crate::config::Config,
    user: &str,
    server: &str,
    access_scope: &str,
) -> Vec<String> {
    let Some(role) = config.roles.iter().find(|r| r.name == "server") else {
        return vec![
            access_scope.to_string(),
            format!("users:activity!user={user}"),
        ];
    };
    let mut scopes: Vec<String> = role
        .scopes
        .iter()
        .map(|s| {
            if let Some(base) = s.strip_suffix("!user") {
                format!("{base}!user={user}")
            } else if let Some(base) = s.strip_suffix("!server") {
                format!("{base}!server={user}/{server}")
            } else {
                s.clone()
            }
        })
        .collect();
    if !scopes.iter().any(|s| s == access_scope) {
        scopes.push(access_scope.to_string());
    }
    scopes
}
