//! Several Slurm systems in one hub (`[spawner] kind = "slurm"` with `[[systems]]`): a
//! [`SystemsSpawner`] holds one [`SlurmSpawner`] per system, in the config's order, and sends
//! each call to the system it is about: a start, a validation or an estimate by
//! `user_options.system`, everything about a running server by the system its state names
//! ([`SlurmState::system`]).
//!
//! # Layout
//!
//! - this file: [`SystemsSpawner`], dispatch, the merged signals and metrics;
//! - `systems/config.rs`: [`SystemConfig`], one `[[systems]]` table, and its checks;
//! - `systems/form.rs`: the one form for every system (the system first, each system's fields
//!   under names of their own) and the mapping of what it posts back to flat options.

mod config;
mod form;

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

pub use config::{
    commented_systems_example, is_system_name, validate_systems, Reach, SystemConfig, Transport,
};
pub use form::SYSTEM;

use crate::config::SpawnerConfig;
use crate::{
    BackendMetric, BoxFuture, Estimate, FieldError, FieldKind, FormContext, FormSpec, PollStatus,
    Reached, SlurmConfig, SlurmSpawner, SlurmState, SpawnError, SpawnRequest, Spawner,
    SpawnerState, Started, SystemInfo, TaggedJob, Timeouts, Updates, ValidatedOptions,
};

/// One system: its names and its spawner.
struct System {
    name: String,
    title: String,
    description: String,
    spawner: Arc<SlurmSpawner>,
}

/// Runs servers on several Slurm systems (see the module's documentation).
pub struct SystemsSpawner {
    systems: Vec<System>,
    /// The children's ended signals merged (made at the first ask, inside the runtime).
    ended: OnceLock<Option<watch::Receiver<u64>>>,
}

/// One system's spawner, over its transport: Slurm's commands on this machine, or on the
/// system's login nodes over SSH (with `reach = "tunnel"`, the servers reached through them).
fn build_system(
    spawner: &SpawnerConfig,
    system: &SystemConfig,
    data_dir: &Path,
) -> Result<SlurmSpawner, SpawnError> {
    SlurmSpawner::for_system(
        spawner.clone(),
        system.slurm.clone(),
        data_dir,
        &system.name,
        system
            .ssh
            .as_ref()
            .filter(|_| system.transport == Transport::Ssh),
        system.reach == Reach::Tunnel,
    )
}

impl SystemsSpawner {
    /// A spawner for `[spawner]` and `[[systems]]` (at least one).
    pub fn new(
        spawner: &SpawnerConfig,
        systems: &[SystemConfig],
        data_dir: &Path,
    ) -> Result<Self, SpawnError> {
        if systems.is_empty() {
            return Err(SpawnError::Config("[[systems]] lists no system".to_owned()));
        }
        validate_systems(systems).map_err(SpawnError::Config)?;
        let systems = systems
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let built = build_system(spawner, s, data_dir).map_err(|e| match e {
                    SpawnError::Config(m) => SpawnError::Config(format!("systems[{i}]: {m}")),
                    other => other,
                })?;
                Ok(System {
                    name: s.name.clone(),
                    title: s.display_title().to_owned(),
                    description: s.description.clone(),
                    spawner: Arc::new(built),
                })
            })
            .collect::<Result<Vec<_>, SpawnError>>()?;
        Ok(Self {
            systems,
            ended: OnceLock::new(),
        })
    }

    /// Each system's name and spawner, in the config's order (for the hub's start-up checks).
    pub fn slurm_spawners(&self) -> impl Iterator<Item = (&str, &Arc<SlurmSpawner>)> {
        self.systems.iter().map(|s| (s.name.as_str(), &s.spawner))
    }

    fn names(&self) -> Vec<&str> {
        self.systems.iter().map(|s| s.name.as_str()).collect()
    }

    fn by_name(&self, name: &str) -> Option<&System> {
        self.systems.iter().find(|s| s.name == name)
    }

    /// The system a state names; `Err` says why there is none, for the user.
    fn of_state(&self, state: &SpawnerState) -> Result<&System, String> {
        let Some(st) = SlurmState::from_state(state) else {
            return Err("no Slurm job is recorded".to_owned());
        };
        if st.system.is_empty() {
            return Err(format!(
                "job {} was recorded without a system (it was started before [[systems]] was configured)",
                st.job_id
            ));
        }
        self.by_name(&st.system).ok_or_else(|| {
            format!(
                "job {} runs on system '{}', which is not configured any more ([[systems]])",
                st.job_id, st.system
            )
        })
    }

    /// The system validated options name.
    fn of_options(&self, options: &ValidatedOptions) -> Result<&System, SpawnError> {
        let name = options.get_str(SYSTEM).unwrap_or_default();
        self.by_name(name).ok_or_else(|| {
            SpawnError::InvalidOptions(vec![FieldError::new(
                SYSTEM,
                unknown_system(name, &self.names()),
            )])
        })
    }

    /// Whether `ctx.user` may use `system` (its form for them asked live).
    async fn is_offered(&self, system: &System, ctx: &FormContext) -> bool {
        let form = system
            .spawner
            .options_form(&system_ctx(ctx, &system.name))
            .await
            .unwrap_or_default();
        may_use(system.spawner.config(), ctx, &form)
    }

    /// The first system `ctx.user` may use, asking one system after the other.
    async fn first_offered(&self, ctx: &FormContext) -> Option<&System> {
        for s in &self.systems {
            if self.is_offered(s, ctx).await {
                return Some(s);
            }
        }
        None
    }

    /// The names of the systems `ctx.user` may use.
    async fn allowed(&self, ctx: &FormContext) -> Vec<&str> {
        self.offered(ctx)
            .await
            .into_iter()
            .map(|(s, _)| s.name.as_str())
            .collect()
    }

    /// The systems `ctx.user` may use, with the form each offers them, in the config's order.
    /// Every system's live data is asked for at once.
    async fn offered(&self, ctx: &FormContext) -> Vec<(&System, FormSpec)> {
        let forms = join_all(self.systems.iter().map(|s| async move {
            let ctx = system_ctx(ctx, &s.name);
            s.spawner.options_form(&ctx).await.unwrap_or_default()
        }))
        .await;
        self.systems
            .iter()
            .zip(forms)
            .filter(|(s, form)| may_use(s.spawner.config(), ctx, form))
            .collect()
    }

    async fn validate(
        &self,
        ctx: &FormContext,
        submitted: &Value,
    ) -> Result<ValidatedOptions, Vec<FieldError>> {
        let split = form::split(submitted, &self.names())?;
        // Only the system asked for is asked for its live data (one that does not answer
        // must not slow down starts on the others); all of them only to say which to choose.
        let refuse = |message: String| Err(vec![FieldError::new(SYSTEM, message)]);
        let system = match split.system.as_deref().map(|n| (n, self.by_name(n))) {
            None => match self.first_offered(ctx).await {
                Some(s) => s,
                None => return refuse("no system is available to you".to_owned()),
            },
            Some((name, None)) => return refuse(unknown_system(name, &self.allowed(ctx).await)),
            Some((name, Some(s))) if !self.is_offered(s, ctx).await => {
                return refuse(format!(
                    "system '{name}' is not available to you{}",
                    choose_one_of(&self.allowed(ctx).await)
                ))
            }
            Some((_, Some(s))) => s,
        };
        let system_ctx = system_ctx(ctx, &system.name);
        match system
            .spawner
            .validate_options(&system_ctx, &split.options)
            .await
        {
            Ok(mut options) => {
                options
                    .0
                    .insert(SYSTEM.to_owned(), Value::from(system.name.clone()));
                Ok(options)
            }
            Err(errors) if split.prefixed => Err(form::prefix_errors(&system.name, errors)),
            Err(errors) => Err(errors),
        }
    }

    async fn form(&self, ctx: &FormContext) -> FormSpec {
        if let [only] = &self.systems[..] {
            // One system: its own form, no picker.
            let ctx = system_ctx(ctx, &only.name);
            return only.spawner.options_form(&ctx).await.unwrap_or_default();
        }
        let offered = self.offered(ctx).await;
        let offers = offered
            .into_iter()
            .map(|(s, form)| form::Offer {
                name: &s.name,
                title: &s.title,
                info: system_info(&s.description, &s.spawner.health()),
                form,
            })
            .collect();
        let last = ctx.last_options.as_ref().and_then(|o| o.get_str(SYSTEM));
        form::combine(offers, last)
    }

    /// The children's ended signals as one (see [`merge_signals`]).
    fn merged_ended(&self) -> Option<watch::Receiver<u64>> {
        tokio::runtime::Handle::try_current().ok()?;
        let children: Vec<watch::Receiver<u64>> = self
            .systems
            .iter()
            .filter_map(|s| s.spawner.ended_signal())
            .collect();
        (!children.is_empty()).then(|| merge_signals(children))
    }
}

/// One signal that changes whenever one of `children` does: a small task per child, which
/// ends when that child's sender or every receiver of the merged signal is gone.
fn merge_signals(children: Vec<watch::Receiver<u64>>) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0u64);
    let tx = Arc::new(tx);
    for mut child in children {
        let tx = Arc::clone(&tx);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = child.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        tx.send_modify(|n| *n = n.wrapping_add(1));
                    }
                    () = tx.closed() => break,
                }
            }
        });
    }
    rx
}

/// `ctx` for one system: the user's last options only if they were for that system.
fn system_ctx(ctx: &FormContext, system: &str) -> FormContext {
    let mut ctx = ctx.clone();
    let last_here = ctx
        .last_options
        .as_ref()
        .is_some_and(|o| o.get_str(SYSTEM).is_none_or(|s| s == system));
    if !last_here {
        ctx.last_options = None;
    }
    ctx
}

/// Whether `ctx.user` may use a system: its allow rules leave them a partition, and, when
/// its form has an account field (Slurm accounting, or `accounts` in the config), an account.
fn may_use(config: &SlurmConfig, ctx: &FormContext, form: &FormSpec) -> bool {
    let mut restricted = false;
    let mut mine: Vec<&str> = Vec::new();
    for rule in config.allow.iter().filter(|r| !r.partitions.is_empty()) {
        restricted = true;
        if rule.applies_to(&ctx.user, &ctx.groups) {
            mine.extend(rule.partitions.iter().map(String::as_str));
        }
    }
    if restricted
        && (mine.is_empty()
            || (!config.partitions.is_empty()
                && !config
                    .partitions
                    .iter()
                    .any(|p| mine.contains(&p.name.as_str()))))
    {
        return false;
    }
    !matches!(
        form.field("account").map(|f| &f.kind),
        Some(FieldKind::Select { choices }) if choices.is_empty()
    )
}

/// The line next to a system on the form: its description and what the hub sees of it.
fn system_info(description: &str, health: &crate::Health) -> Option<String> {
    let state = match health {
        crate::Health::Ok => None,
        crate::Health::Unreachable { reason } => Some(format!("not reachable now: {reason}")),
        crate::Health::Down { reason } => Some(format!("cannot run servers now: {reason}")),
    };
    let parts: Vec<String> = (!description.is_empty())
        .then(|| description.to_owned())
        .into_iter()
        .chain(state)
        .collect();
    (!parts.is_empty()).then(|| parts.join(" · "))
}

fn unknown_system(name: &str, choices: &[&str]) -> String {
    let shown: String = name.chars().take(40).collect();
    format!("unknown system '{shown}'{}", choose_one_of(choices))
}

fn choose_one_of(choices: &[&str]) -> String {
    if choices.is_empty() {
        "; no system is available to you".to_owned()
    } else {
        format!("; choose one of {}", choices.join(", "))
    }
}

/// Runs futures concurrently on this task; their answers in their order.
async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, out) in futures.iter_mut().zip(done.iter_mut()) {
            if out.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

impl Spawner for SystemsSpawner {
    fn kind(&self) -> &'static str {
        "slurm"
    }

    fn start<'a>(&'a self, req: &'a SpawnRequest) -> BoxFuture<'a, Result<Started, SpawnError>> {
        Box::pin(async move { self.of_options(&req.user_options)?.spawner.start(req).await })
    }

    fn resume<'a>(
        &'a self,
        state: &'a SpawnerState,
        updates: &'a Updates,
    ) -> BoxFuture<'a, Result<Started, SpawnError>> {
        Box::pin(async move {
            match self.of_state(state) {
                Ok(s) => s.spawner.resume(state, updates).await,
                Err(why) => Err(SpawnError::Failed(why)),
            }
        })
    }

    fn poll<'a>(&'a self, state: &'a SpawnerState) -> BoxFuture<'a, PollStatus> {
        Box::pin(async move {
            match self.of_state(state) {
                Ok(s) => s.spawner.poll(state).await,
                Err(why) => unknown_state(state, why),
            }
        })
    }

    fn poll_all<'a>(&'a self, states: &'a [SpawnerState]) -> BoxFuture<'a, Vec<PollStatus>> {
        Box::pin(async move {
            // Each system's states in one batch (one squeue per system), all systems at once.
            let mut out: Vec<Option<PollStatus>> = vec![None; states.len()];
            let mut groups: Vec<(Vec<usize>, Vec<SpawnerState>)> =
                self.systems.iter().map(|_| Default::default()).collect();
            for (i, state) in states.iter().enumerate() {
                match self.of_state(state) {
                    Ok(s) => {
                        let at = self
                            .systems
                            .iter()
                            .position(|x| x.name == s.name)
                            .unwrap_or_default();
                        groups[at].0.push(i);
                        groups[at].1.push(state.clone());
                    }
                    Err(why) => out[i] = Some(unknown_state(state, why)),
                }
            }
            let answers = join_all(
                self.systems
                    .iter()
                    .zip(&groups)
                    .filter(|(_, (at, _))| !at.is_empty())
                    .map(|(s, (at, group))| async move { (at, s.spawner.poll_all(group).await) }),
            )
            .await;
            for (at, statuses) in answers {
                for (i, status) in at.iter().zip(statuses) {
                    out[*i] = Some(status);
                }
            }
            out.into_iter()
                .map(|s| {
                    s.unwrap_or(PollStatus::Unknown {
                        reason: "the system did not answer about this job".to_owned(),
                    })
                })
                .collect()
        })
    }

    fn untracked_jobs<'a>(
        &'a self,
        prefix: &'a str,
        tracked: &'a [SpawnerState],
    ) -> BoxFuture<'a, Result<Vec<TaggedJob>, SpawnError>> {
        Box::pin(async move {
            // Every system at once; one that does not answer fails the whole answer, so that
            // the hub asks again rather than act on half of the queue.
            let answers = join_all(
                self.systems
                    .iter()
                    .map(|s| s.spawner.untracked_jobs(prefix, tracked)),
            )
            .await;
            let mut jobs = Vec::new();
            for answer in answers {
                jobs.extend(answer?);
            }
            Ok(jobs)
        })
    }

    fn stop<'a>(
        &'a self,
        state: &'a SpawnerState,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), SpawnError>> {
        Box::pin(async move {
            match self.of_state(state) {
                Ok(s) => s.spawner.stop(state, timeout).await,
                // Nothing recorded: nothing to stop.
                Err(_) if SlurmState::from_state(state).is_none() => Ok(()),
                Err(why) => Err(SpawnError::Failed(format!("cannot cancel: {why}"))),
            }
        })
    }

    fn options_form<'a>(&'a self, ctx: &'a FormContext) -> BoxFuture<'a, Option<FormSpec>> {
        Box::pin(async move { Some(self.form(ctx).await) })
    }

    fn validate_options<'a>(
        &'a self,
        ctx: &'a FormContext,
        options: &'a Value,
    ) -> BoxFuture<'a, Result<ValidatedOptions, Vec<FieldError>>> {
        Box::pin(self.validate(ctx, options))
    }

    fn estimate<'a>(
        &'a self,
        ctx: &'a FormContext,
        options: &'a ValidatedOptions,
    ) -> BoxFuture<'a, Option<Result<Estimate, SpawnError>>> {
        Box::pin(async move {
            match self.of_options(options) {
                Ok(s) => {
                    let ctx = system_ctx(ctx, &s.name);
                    s.spawner.estimate(&ctx, options).await
                }
                Err(e) => Some(Err(e)),
            }
        })
    }

    fn describe(&self, state: &SpawnerState) -> Option<Value> {
        let system = self.of_state(state).ok()?;
        let mut facts = system.spawner.describe(state)?;
        if let Value::Object(m) = &mut facts {
            m.insert("system".into(), Value::from(system.name.clone()));
            m.insert("system_title".into(), Value::from(system.title.clone()));
        }
        Some(facts)
    }

    fn timeouts(&self) -> Timeouts {
        let mut all = self.systems.iter().map(|s| s.spawner.timeouts());
        let first = all.next().unwrap_or_default();
        all.fold(first, |mut t, other| {
            t.poll_interval = t.poll_interval.min(other.poll_interval);
            t
        })
    }

    fn ended_signal(&self) -> Option<watch::Receiver<u64>> {
        self.ended.get_or_init(|| self.merged_ended()).clone()
    }

    fn last_output(&self, state: &SpawnerState) -> Option<String> {
        self.of_state(state).ok()?.spawner.last_output(state)
    }

    fn systems(&self) -> Vec<SystemInfo> {
        self.systems
            .iter()
            .map(|s| SystemInfo {
                name: s.name.clone(),
                title: s.title.clone(),
                description: s.description.clone(),
                health: s.spawner.health(),
            })
            .collect()
    }

    fn job_accounting<'a>(
        &'a self,
        system: &'a str,
        job_ids: &'a [String],
    ) -> BoxFuture<'a, Result<Option<Vec<crate::JobAccounting>>, SpawnError>> {
        Box::pin(async move {
            match self.by_name(system) {
                Some(s) => s.spawner.job_accounting(system, job_ids).await,
                // A system no longer configured: nothing can be asked any more.
                None => Ok(None),
            }
        })
    }

    fn system_of(&self, state: &SpawnerState) -> Option<String> {
        // Every system reads a state the same way, also one naming a system gone from the
        // config.
        self.systems.first()?.spawner.system_of(state)
    }

    fn admit<'a>(
        &'a self,
        ctx: &'a FormContext,
        options: &'a ValidatedOptions,
    ) -> BoxFuture<'a, Result<(), SpawnError>> {
        Box::pin(async move {
            let s = self.of_options(options)?;
            let ctx = system_ctx(ctx, &s.name);
            s.spawner.admit(&ctx, options).await
        })
    }

    fn reach<'a>(
        &'a self,
        state: &'a SpawnerState,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, Result<Reached, SpawnError>> {
        Box::pin(async move {
            match self.of_state(state) {
                Ok(s) => s.spawner.reach(state, host, port).await,
                Err(why) => Err(SpawnError::Failed(why)),
            }
        })
    }

    fn restore<'a>(
        &'a self,
        state: &'a SpawnerState,
    ) -> BoxFuture<'a, Result<Option<Reached>, SpawnError>> {
        Box::pin(async move {
            // A job on a system the hub does not know has nothing to restore; its polls say why.
            match self.of_state(state) {
                Ok(s) => s.spawner.restore(state).await,
                Err(_) => Ok(None),
            }
        })
    }

    fn metrics(&self) -> Vec<BackendMetric> {
        let mut out: Vec<BackendMetric> = Vec::new();
        for s in &self.systems {
            for mut family in s.spawner.metrics() {
                for (labels, _) in &mut family.samples {
                    labels.push(("system", s.name.clone()));
                }
                match out.iter_mut().find(|f| f.name == family.name) {
                    Some(f) => f.samples.append(&mut family.samples),
                    None => out.push(family),
                }
            }
        }
        out
    }
}

/// A state whose system the hub does not know: nothing recorded is gone; a job on an unknown
/// system is not given up (it may be configured again), but it cannot be asked about.
fn unknown_state(state: &SpawnerState, why: String) -> PollStatus {
    if SlurmState::from_state(state).is_none() {
        PollStatus::Exited { reason: why }
    } else {
        PollStatus::Unknown { reason: why }
    }
}

#[cfg(test)]
mod tests;
