//! One supervisor per server (user, server name): a slot whose phase goes
//! stopped → starting → running → stopping → stopped, one transition at a time, with a
//! progress log any number of listeners follow, and the spawner's state persisted the moment
//! the spawner hands it over, so that a restarted hub picks every server (and every queued
//! job) up again.
//!
//! # Layout
//!
//! - this file: [`Supervisor`] (the slots, start and stop requests, the options form);
//! - `slot.rs`: [`Slot`], [`Phase`], [`Endpoint`]: one server's state machine;
//! - `spawn.rs`: the steps of a spawn, each with its own timeout, and the cleanup;
//! - `failure.rs`: [`SpawnFailure`]: which step failed, whether a retry may help, the message;
//! - `adopt.rs`: what a starting hub does with the servers recorded as started;
//! - `history.rs`: each server's recent sessions in the database ([`EndReason`], [`SessionView`]);
//! - `queue.rs`: the fair spawn queue above `concurrent_spawn_limit`;
//! - `tasks.rs`: the background loops (server poll, route check, activity) and route specs.

mod adopt;
mod failure;
mod history;
mod queue;
mod slot;
mod spawn;
mod tasks;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use nbhub_spawner::{Spawner, ValidatedOptions};
use serde_json::{json, Value};

use crate::config::Config;
use crate::db::{self, servers, users::User, Db};
use crate::proxy::Proxy;

pub use failure::{SpawnFailure, SpawnStep};
pub use history::{EndReason, SessionView, SESSIONS_KEPT};
pub use slot::{Endpoint, Phase, Slot};
pub use tasks::{route_key, server_route};

pub fn server_prefix(base_url: &str, user: &str, server: &str) -> String {
    let user = crate::names::url_escape(user);
    if server.is_empty() {
        format!("{base_url}user/{user}/")
    } else {
        format!(
            "{base_url}user/{user}/{}/",
            crate::names::url_escape(server)
        )
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
    /// The options did not validate; one message per field, for the form and the API.
    #[error("{}", nbhub_spawner::FieldError::join(.0))]
    InvalidOptions(Vec<nbhub_spawner::FieldError>),
    /// The user's sign-in at the identity provider has ended (`refresh_pre_spawn`): 403.
    #[error("{0}")]
    SignInAgain(String),
    /// Something the spawn needs first (the identity provider) did not answer: 503.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub use nbhub_spawner::BoxFuture;

/// Runs before a spawn is admitted (auth_state's refresh, `auth/auth_state.rs`): may refuse
/// it, and gives environment variables for the server.
pub trait PreSpawn: Send + Sync {
    fn before_spawn<'a>(
        &'a self,
        user: &'a User,
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, SpawnRefused>>;
}

impl SpawnRefused {
    /// A spawner's verdict on the options: invalid ones (400), or none given because what they
    /// are checked against cannot be asked now (503).
    pub fn from_field_errors(errors: Vec<nbhub_spawner::FieldError>) -> Self {
        match errors.iter().find(|e| e.is_unavailable()) {
            Some(e) => SpawnRefused::Unavailable(e.message.clone()),
            None => SpawnRefused::InvalidOptions(errors),
        }
    }
}

impl From<sqlx::Error> for SpawnRefused {
    fn from(e: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&e) {
            tracing::warn!(error = %e, "spawn refused: the database is not reachable");
            return SpawnRefused::Unavailable(crate::db::UNAVAILABLE_MESSAGE.into());
        }
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
    /// The histograms `/hub/metrics` shows, recorded where spawns, stops and polls happen.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Spawns beyond `concurrent_spawn_limit` wait here for their turn.
    pub queue: Arc<queue::SpawnQueue>,
    /// Set once by the hub's state (it needs the authenticator's parts).
    pre_spawn: OnceLock<Arc<dyn PreSpawn>>,
    /// Maintenance notices per system; every start is checked against them (`start`).
    pub maintenance: Arc<crate::maintenance::Maintenance>,
    /// Each server's last ended session, by server row id (`history.rs`).
    last_sessions: Mutex<HashMap<i64, SessionView>>,
    /// Told when a session ends: the accounting collector looks for its job's figures
    /// (`history.rs`).
    accounting_wake: Arc<tokio::sync::Notify>,
    /// True from the moment adoption is announced until it is over: a start waits for it,
    /// so that adoption (which stops a server whose start a killed hub cut) never takes a
    /// start of this run for one of the killed hub's.
    adopting: tokio::sync::watch::Sender<bool>,
    /// What the jobs this hub submits are tagged with (`SpawnRequest::tag`).
    job_tag: JobTag,
}

/// The tag on a spawn's job, `nbhub:<hub>:<run>:<server row>`: `hub` names this hub (kept in
/// `data_dir/nbhub_hub_id`, so that hubs sharing a batch system leave each other's jobs
/// alone), `run` this run of the hub process (a job of the running process is never taken
/// for one left behind by a killed one), the row the server it is for.
struct JobTag {
    hub: String,
    run: String,
}

impl JobTag {
    fn new(data_dir: &std::path::Path) -> JobTag {
        use rand::RngCore;
        let hub = match crate::secrets::load_or_create_secret(data_dir, "nbhub_hub_id") {
            Ok(id) => hex::encode(&id[..id.len().min(6)]),
            Err(e) => {
                tracing::warn!(error = %e, "cannot keep the hub's id in data_dir; jobs left by a killed hub will not be found");
                let mut id = [0u8; 6];
                rand::rngs::OsRng.fill_bytes(&mut id);
                hex::encode(id)
            }
        };
        let mut run = [0u8; 4];
        rand::rngs::OsRng.fill_bytes(&mut run);
        JobTag {
            hub,
            run: hex::encode(run),
        }
    }

    /// The start of every tag of this hub.
    fn hub_prefix(&self) -> String {
        format!("nbhub:{}:", self.hub)
    }

    /// The tag of a spawn for the server in row `row_id`.
    fn for_row(&self, row_id: i64) -> String {
        format!("nbhub:{}:{}:{row_id}", self.hub, self.run)
    }

    /// Whether `tag` was made by this run of the hub.
    fn is_this_run(&self, tag: &str) -> bool {
        tag.strip_prefix(&self.hub_prefix())
            .and_then(|rest| rest.split(':').next())
            .is_some_and(|run| run == self.run)
    }
}

impl Supervisor {
    pub fn new(
        db: Db,
        config: Arc<Config>,
        spawner: Arc<dyn Spawner>,
        proxy: Arc<Proxy>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Arc<Self> {
        // Readiness probes reach a server only while it starts: an idle connection kept for
        // reqwest's default 90 s would hold its buffers for each of 1,000 servers just started.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        Arc::new(Supervisor {
            db,
            spawner,
            proxy,
            slots: Mutex::new(HashMap::new()),
            http,
            metrics,
            queue: queue::SpawnQueue::new(
                config.hub.concurrent_spawn_limit,
                config.hub.spawn_queue_limit,
            ),
            job_tag: JobTag::new(&config.hub.data_dir),
            config,
            pre_spawn: OnceLock::new(),
            maintenance: Arc::default(),
            last_sessions: Mutex::default(),
            accounting_wake: Arc::default(),
            adopting: tokio::sync::watch::channel(false).0,
        })
    }

    /// Adoption of the servers recorded as started is about to begin (`adopt`): starts wait
    /// for it from now on. Said before the hub serves requests.
    pub fn adoption_pending(&self) {
        self.adopting.send_replace(true);
    }

    /// Waits while adoption is under way.
    async fn adopted(&self) {
        let mut adopting = self.adopting.subscribe();
        let _ = adopting.wait_for(|a| !*a).await;
    }

    /// The hook every spawn passes before it is admitted; set once.
    pub fn set_pre_spawn(&self, hook: Arc<dyn PreSpawn>) {
        let _ = self.pre_spawn.set(hook);
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<(i64, String), Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The slot of a server, made on first use.
    /// The slot of a server a start (or adoption) is about to use, made on first use.
    fn slot_entry(&self, user: &User, server_name: &str) -> Arc<Slot> {
        self.slots()
            .entry((user.id, server_name.to_string()))
            .or_insert_with(|| Arc::new(Slot::new(user.id, &user.name, server_name)))
            .clone()
    }

    /// The slot of a server, or a stopped one that is not kept: looking at a server that
    /// never started in this hub run (or one named in a URL that does not exist) allocates
    /// nothing that outlives the request.
    pub fn slot(&self, user: &User, server_name: &str) -> Arc<Slot> {
        self.existing_slot(user.id, server_name)
            .unwrap_or_else(|| Arc::new(Slot::new(user.id, &user.name, server_name)))
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

    /// How many servers the supervisor holds state for.
    pub fn slot_count(&self) -> usize {
        self.slots().len()
    }

    fn all_slots(&self) -> Vec<Arc<Slot>> {
        self.slots().values().cloned().collect()
    }

    /// Servers running now (`jupyterhub_running_servers`).
    pub fn running_count(&self) -> usize {
        self.count(Phase::Running)
    }

    /// Servers starting now.
    pub fn starting_count(&self) -> usize {
        self.count(Phase::Starting)
    }

    fn count(&self, phase: Phase) -> usize {
        self.slots().values().filter(|s| s.phase() == phase).count()
    }

    /// Who a spawner's form is for: the user, their groups, their last options.
    pub async fn form_context(
        &self,
        user: &User,
        server_name: &str,
    ) -> Result<nbhub_spawner::FormContext, sqlx::Error> {
        let groups = db::users::group_names(&self.db, user.id).await?;
        let last_options = servers::get(&self.db, user.id, server_name)
            .await?
            .and_then(|row| row.user_options.as_object().cloned())
            .filter(|o| !o.is_empty())
            .map(ValidatedOptions);
        Ok(nbhub_spawner::FormContext {
            user: user.name.clone(),
            unix_user: self.config.spawner.unix_user_for(&user.name),
            groups,
            admin: user.admin,
            server_name: server_name.to_string(),
            last_options,
        })
    }

    /// The options form `user` sees for `server_name`, if the spawner has one.
    pub async fn options_form(
        &self,
        user: &User,
        server_name: &str,
    ) -> Result<Option<nbhub_spawner::FormSpec>, sqlx::Error> {
        let ctx = self.form_context(user, server_name).await?;
        Ok(self.spawner.options_form(&ctx).await)
    }

    /// The options form `user` sees for `server_name`, filled in with `options` (a past
    /// session's, for Edit on the home page) instead of the last ones.
    pub async fn options_form_with(
        &self,
        user: &User,
        server_name: &str,
        options: serde_json::Map<String, Value>,
    ) -> Result<Option<nbhub_spawner::FormSpec>, sqlx::Error> {
        let mut ctx = self.form_context(user, server_name).await?;
        ctx.last_options = Some(ValidatedOptions(options));
        Ok(self.spawner.options_form(&ctx).await)
    }

    /// Checks and begins a spawn; the work goes on in the background. Returns the slot to
    /// wait on. A spawn already under way is not an error (the caller answers 202).
    pub async fn start(
        self: &Arc<Self>,
        user: &User,
        server_name: &str,
        options: &Value,
    ) -> Result<Arc<Slot>, SpawnRefused> {
        self.adopted().await;
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
        if self.config.authenticator.blocked_users.contains(&user.name) {
            return Err(SpawnRefused::SignInAgain(format!(
                "User {} is blocked (blocked_users): no server may start",
                user.name
            )));
        }
        let slot = self.slot_entry(user, server_name);
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
        if hub.active_server_limit > 0
            && self.count(Phase::Starting) + self.count(Phase::Running)
                >= hub.active_server_limit as usize
        {
            self.metrics
                .server_spawn_duration
                .observe(&["failure", "too-many-users"], Duration::ZERO);
            return Err(SpawnRefused::Limit(
                "Active user limit exceeded. Try again in a few minutes.".into(),
            ));
        }
        let ctx = self.form_context(user, server_name).await?;
        // apply_user_options: the options it names set spawner settings; they are checked
        // here (400 naming the option) and kept with the rest, but the spawner's own form
        // does not see them.
        let apply = &self.config.spawner.apply_user_options;
        let mut for_spawner = options.clone();
        let mut mapped = serde_json::Map::new();
        if let Some(map) = for_spawner.as_object_mut() {
            for key in apply.keys() {
                if let Some(v) = map.remove(key) {
                    mapped.insert(key.clone(), v);
                }
            }
        }
        let mut validated = self
            .spawner
            .validate_options(&ctx, &for_spawner)
            .await
            .map_err(SpawnRefused::from_field_errors)?;
        nbhub_spawner::overrides_for(&BTreeMap::new(), apply, &[], &mut mapped.clone())
            .map_err(SpawnRefused::from_field_errors)?;
        validated.0.extend(mapped);
        // A system in maintenance, unreachable or closed by Slurm: refused before anything
        // is written or submitted.
        crate::maintenance::check_start(&self.maintenance, &*self.spawner, &ctx, &validated)
            .await
            .map_err(|r| SpawnRefused::Unavailable(r.message))?;
        let extra_env = match self.pre_spawn.get() {
            Some(hook) => hook.before_spawn(user).await?,
            None => BTreeMap::new(),
        };
        // A place to run, or one in the queue; dropped on any failure below, which gives it
        // up again.
        let admission = self.queue.admit(&slot).map_err(|full| {
            self.metrics
                .server_spawn_duration
                .observe(&["failure", "throttled"], Duration::ZERO);
            SpawnRefused::Limit(if full.waiting == 0 {
                "Too many users trying to log in right now. Try again in a minute.".into()
            } else {
                format!(
                    "Too many users trying to log in right now: {} starts are waiting already. Try again in a few minutes.",
                    full.waiting
                )
            })
        })?;

        let row = servers::ensure(&self.db, user.id, server_name).await?;
        let started = db::now_micros();
        servers::mark_starting(
            &self.db,
            row.id,
            &Value::Object(validated.0.clone()),
            started,
        )
        .await?;
        self.history_begin(&user.name, server_name, row.id, &validated, started)
            .await;
        slot.reset_for_spawn();
        slot.set_phase(Phase::Starting);
        slot.push_event(json!({"progress": 0, "message": "Server requested"}));
        let admission = admission.announce(&slot);
        tracing::info!(user = %user.name, server = %server_name, "spawn requested");

        let this = self.clone();
        let s = slot.clone();
        let user = user.clone();
        tokio::spawn(async move {
            let _op = s.op.lock().await;
            let _permit = match admission {
                queue::Admission::Now(permit) => permit,
                queue::Admission::Queued(ticket) => {
                    let waited = std::time::Instant::now();
                    let turn = ticket.wait(&s).await;
                    this.metrics.spawn_queue_wait.observe(
                        &[if turn.is_some() {
                            "started"
                        } else {
                            "cancelled"
                        }],
                        waited.elapsed(),
                    );
                    match turn {
                        Some(permit) => permit,
                        None => {
                            let cancelled = SpawnFailure::cancelled(SpawnStep::Queue);
                            this.finish_spawn(user.id, &s, row.id, Err(cancelled)).await;
                            return;
                        }
                    }
                }
            };
            this.run_spawn(&user, &s, row.id, validated, extra_env)
                .await;
        });
        Ok(slot)
    }

    /// answer sooner wait on the slot with a timeout.
    pub async fn stop(self: &Arc<Self>, slot: &Arc<Slot>) {
        // A spawn under way (a job still queued, say) gives up and stops what it started.
        slot.request_cancel();
        let this = self.clone();
        let s = slot.clone();
        let task = tokio::spawn(async move {
            let _op = s.op.lock().await;
            if s.phase() != Phase::Running {
                return;
            }
            s.set_phase(Phase::Stopping);
            let began = std::time::Instant::now();
            let row = servers::get(&this.db, s.user_id, &s.server_name)
                .await
                .ok()
                .flatten();
            if let Some(row) = row {
                this.cleanup(s.user_id, &s, row.id).await;
                this.history_end(row.id, EndReason::Stopped, "stopped through the hub")
                    .await;
            }
            this.metrics
                .server_stop
                .observe(&["success"], began.elapsed());
            s.set_phase(Phase::Stopped);
            tracing::info!(user = %s.user, server = %s.server_name, "server stopped");
        });
        let _ = task.await;
    }

    /// Stops every server of these users, running or starting: `blocked_users` lose all access
    /// at once, their servers included, as in JupyterHub 5.
    pub async fn stop_servers_of(self: &Arc<Self>, names: &[String]) {
        for slot in self.all_slots() {
            if names.contains(&slot.user) && slot.phase() != Phase::Stopped {
                tracing::warn!(user = %slot.user, server = %slot.server_name, "stopping a server of a blocked user");
                self.stop(&slot).await;
            }
        }
    }

    /// Stops every server (for `cleanup_servers`).
    pub async fn stop_all(self: &Arc<Self>) {
        for slot in self.all_slots() {
            if slot.phase() == Phase::Running {
                self.stop(&slot).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::JobTag;

    #[test]
    fn a_job_tag_names_the_hub_the_run_and_the_server() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tag = JobTag::new(dir.path());
        let again = JobTag::new(dir.path());
        assert_eq!(tag.hub, again.hub, "the hub's id is kept in data_dir");
        assert_ne!(tag.run, again.run, "each run of the hub has its own");
        let t = tag.for_row(42);
        assert!(
            t.starts_with(&tag.hub_prefix()) && t.ends_with(":42"),
            "{t}"
        );
        assert!(tag.is_this_run(&t));
        assert!(
            !again.is_this_run(&t),
            "a later run sees a job of an earlier one"
        );
        assert!(!tag.is_this_run("nbhub:other:run:1"));
    }
}
