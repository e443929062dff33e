//! The spawn form per user, from live cluster data (`scontrol show partition`, `sinfo` per
//! node, `scontrol show reservation`, `sacctmgr`) fetched at most once per few seconds however
//! many pages ask (single flight), and the validation of submitted options against the same
//! data. Each partition choice carries its own limits for the other fields (nodes, run time,
//! GPUs), so that the page follows the partition chosen.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::time::Instant;

use crate::lock;
use crate::options::{format_slurm_duration, CLOCK_FORMS};
use crate::slurm::commands::Commands;
use crate::slurm::config::{CustomType, SlurmConfig};
use crate::slurm::parse::{
    controller_unreachable, parse_partitions, parse_reservations, slurm_error, PartitionInfo,
    Reservation, SINFO_NODES,
};
use crate::{
    Choice, FieldError, FieldKind, FieldLimits, FormContext, FormField, FormSpec, MaxBy,
    SpawnError, ValidatedOptions, VisibleWhen,
};

/// How long live data is reused.
const CLUSTER_TTL: Duration = Duration::from_secs(5);
/// How long a user's Slurm accounts are reused.
const ACCOUNTS_TTL: Duration = Duration::from_secs(60);

/// What the cluster looks like now.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub partitions: Vec<PartitionInfo>,
    pub reservations: Vec<Reservation>,
}

/// Live data, cached and shared.
pub(crate) struct Cluster {
    commands: Commands,
    snapshot: tokio::sync::Mutex<Option<(Instant, Arc<Snapshot>)>>,
    /// `None`: not known yet whether Slurm runs accounting.
    accounting: Mutex<Option<bool>>,
    accounts: Mutex<HashMap<String, (Instant, Vec<String>)>>,
    /// Maintenance reservations, for `admit` (`reservations.rs`).
    pub maint: crate::slurm::health::reservations::MaintCache,
}

impl Cluster {
    pub fn new(commands: Commands) -> Self {
        Self {
            maint: crate::slurm::health::reservations::MaintCache::new(commands.clone()),
            commands,
            snapshot: tokio::sync::Mutex::new(None),
            accounting: Mutex::new(None),
            accounts: Mutex::default(),
        }
    }

    /// The current snapshot: cached for a few seconds; concurrent callers share one fetch.
    /// When Slurm does not answer, a stale snapshot is better than none.
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>, SpawnError> {
        let mut cached = self.snapshot.lock().await;
        if let Some((at, snap)) = cached.as_ref() {
            if at.elapsed() < CLUSTER_TTL {
                return Ok(Arc::clone(snap));
            }
        }
        match self.fetch().await {
            Ok(snap) => {
                let snap = Arc::new(snap);
                *cached = Some((Instant::now(), Arc::clone(&snap)));
                Ok(snap)
            }
            Err(e) => Err(e),
        }
    }

    /// The last snapshot fetched, however old, without asking Slurm (for `health`, which
    /// must not wait); `None` before the first fetch or while one is under way.
    pub fn cached(&self) -> Option<Arc<Snapshot>> {
        let cached = self.snapshot.try_lock().ok()?;
        cached.as_ref().map(|(_, snap)| Arc::clone(snap))
    }

    async fn fetch(&self) -> Result<Snapshot, SpawnError> {
        let parts = self
            .commands
            .query("scontrol", &["show", "partition", "-o"])
            .await?;
        if !parts.ok {
            return Err(unanswered("scontrol show partition", &parts.stderr));
        }
        let sinfo = self.commands.query("sinfo", &SINFO_NODES).await?;
        if !sinfo.ok {
            return Err(unanswered("sinfo", &sinfo.stderr));
        }
        let resv = self
            .commands
            .query("scontrol", &["show", "reservation", "-o"])
            .await?;
        Ok(Snapshot {
            partitions: parse_partitions(&parts.stdout, &sinfo.stdout),
            reservations: if resv.ok {
                parse_reservations(&resv.stdout)
            } else {
                Vec::new()
            },
        })
    }

    /// The accounts `user` has associations with, or `None` when Slurm runs no accounting.
    pub async fn slurm_accounts(&self, user: &str) -> Option<Vec<String>> {
        if *lock(&self.accounting) == Some(false) {
            return None;
        }
        if let Some((at, list)) = lock(&self.accounts).get(user) {
            if at.elapsed() < ACCOUNTS_TTL {
                return Some(list.clone());
            }
        }
        let filter = format!("user={user}");
        let out = self
            .commands
            .query(
                "sacctmgr",
                &["-n", "-P", "show", "assoc", &filter, "format=account"],
            )
            .await;
        match out {
            Ok(o) if o.ok => {
                *lock(&self.accounting) = Some(true);
                let mut list: Vec<String> = o
                    .stdout
                    .lines()
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned)
                    .collect();
                list.dedup();
                lock(&self.accounts).insert(user.to_owned(), (Instant::now(), list.clone()));
                Some(list)
            }
            // "You are not running a supported accounting_storage plugin", or no sacctmgr.
            _ => {
                *lock(&self.accounting) = Some(false);
                None
            }
        }
    }
}

fn unanswered(what: &str, stderr: &str) -> SpawnError {
    if controller_unreachable(stderr) {
        SpawnError::Failed(
            "Slurm's controller does not answer right now; please try again in a minute".to_owned(),
        )
    } else {
        SpawnError::Failed(format!("{what} failed: {}", slurm_error(stderr)))
    }
}

/// A partition as one user is offered it: Slurm's limits narrowed by the config.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Offered {
    pub name: String,
    pub label: String,
    pub description: String,
    pub max_nodes: u32,
    pub max_time_secs: Option<u64>,
    pub default_time_secs: Option<u64>,
    pub gpus_per_node: u32,
    pub live: PartitionInfo,
}

impl Offered {
    /// The most nodes one job may have with `gpus` GPUs per node: the partition's limit, and
    /// no more than the nodes that have that many GPUs.
    pub fn max_nodes_with_gpus(&self, gpus: u32) -> u32 {
        self.max_nodes.min(self.live.nodes_with_gpus(gpus))
    }

    fn gpus_message(&self) -> String {
        format!(
            "partition {} has only {{max}} node(s) with {{value}} or more GPUs",
            self.name
        )
    }
}

/// Everything one user may choose from.
#[derive(Clone, Debug, Default)]
pub(crate) struct UserChoices {
    pub partitions: Vec<Offered>,
    pub default_partition: Option<String>,
    /// `None`: no account field.
    pub accounts: Option<Vec<String>>,
    pub reservations: Vec<String>,
    /// Custom choice field → allowed choices.
    pub custom_choices: HashMap<String, Vec<String>>,
    /// Why there is nothing to choose from (Slurm unreachable).
    pub problem: Option<String>,
    /// The system's modules, when an environment lets users add some.
    pub modules: Option<crate::slurm::session::Available>,
}

/// What `allow` rules let this user use of one kind; `None`: no rule restricts that kind.
fn allowed<'a>(
    config: &'a SlurmConfig,
    ctx: &FormContext,
    pick: impl Fn(&'a crate::slurm::config::AllowRule) -> Option<&'a Vec<String>>,
) -> Option<Vec<&'a str>> {
    let mut restricted = false;
    let mut out = Vec::new();
    for rule in &config.allow {
        let Some(values) = pick(rule).filter(|v| !v.is_empty()) else {
            continue;
        };
        restricted = true;
        if rule.applies_to(&ctx.user, &ctx.groups) {
            out.extend(values.iter().map(String::as_str));
        }
    }
    restricted.then_some(out)
}

pub(crate) fn user_choices(
    config: &SlurmConfig,
    ctx: &FormContext,
    snapshot: Result<&Snapshot, String>,
    unix_groups: &[String],
    slurm_accounts: Option<Vec<String>>,
) -> UserChoices {
    let snap = match snapshot {
        Ok(s) => s,
        Err(problem) => {
            return UserChoices {
                problem: Some(problem),
                ..Default::default()
            }
        }
    };
    let may_partition = allowed(config, ctx, |r| Some(&r.partitions));
    let named: Vec<(&str, Option<&crate::slurm::config::PartitionConfig>)> =
        if config.partitions.is_empty() {
            snap.partitions
                .iter()
                .map(|p| (p.name.as_str(), None))
                .collect()
        } else {
            config
                .partitions
                .iter()
                .map(|p| (p.name.as_str(), Some(p)))
                .collect()
        };
    let mut partitions = Vec::new();
    for (name, conf) in named {
        let Some(live) = snap.partitions.iter().find(|p| p.name == name) else {
            continue;
        };
        if !live.up || may_partition.as_ref().is_some_and(|a| !a.contains(&name)) {
            continue;
        }
        if let Some(groups) = &live.allow_groups {
            if !groups.iter().any(|g| unix_groups.contains(g)) {
                continue;
            }
        }
        let slurm_nodes = live
            .max_nodes
            .unwrap_or(live.total_nodes)
            .min(live.total_nodes.max(1));
        let max_nodes = match conf.map(|c| c.max_nodes).filter(|n| *n > 0) {
            Some(n) => n.min(slurm_nodes),
            None => slurm_nodes,
        };
        let conf_time = conf.and_then(|c| crate::parse_slurm_duration(&c.max_time));
        let max_time_secs = match (live.max_time_secs, conf_time) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let default_time_secs = live
            .default_time_secs
            .or(max_time_secs)
            .map(|d| max_time_secs.map_or(d, |m| d.min(m)));
        let label = conf
            .map(|c| c.label.clone())
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| name.to_owned());
        partitions.push(Offered {
            name: name.to_owned(),
            label,
            description: conf.map(|c| c.description.clone()).unwrap_or_default(),
            max_nodes,
            max_time_secs,
            default_time_secs,
            gpus_per_node: live.gpus_per_node(),
            live: live.clone(),
        });
    }
    let default_partition = partitions
        .iter()
        .find(|p| p.live.default)
        .or(partitions.first())
        .map(|p| p.name.clone());

    let may_account = allowed(config, ctx, |r| Some(&r.accounts));
    let accounts = slurm_accounts
        .or_else(|| (!config.accounts.is_empty()).then(|| config.accounts.clone()))
        .map(|list| {
            list.into_iter()
                .filter(|a| may_account.as_ref().is_none_or(|m| m.contains(&a.as_str())))
                .collect::<Vec<_>>()
        });

    let reservations = snap
        .reservations
        .iter()
        .filter(|r| {
            r.users.iter().any(|u| u == &ctx.unix_user)
                || r.groups.iter().any(|g| unix_groups.contains(g))
                || accounts
                    .as_ref()
                    .is_some_and(|a| r.accounts.iter().any(|ra| a.contains(ra)))
        })
        .map(|r| r.name.clone())
        .collect();

    let mut custom_choices = HashMap::new();
    for f in config
        .fields
        .iter()
        .filter(|f| f.kind == CustomType::Choice)
    {
        let may = allowed(config, ctx, |r| r.choices.get(&f.name));
        let list = f
            .choices
            .iter()
            .filter(|c| may.as_ref().is_none_or(|m| m.contains(&c.as_str())))
            .cloned()
            .collect();
        custom_choices.insert(f.name.clone(), list);
    }
    UserChoices {
        partitions,
        default_partition,
        accounts,
        reservations,
        custom_choices,
        problem: None,
        modules: None,
    }
}

fn partition_info(p: &Offered) -> String {
    let live = &p.live;
    // Free: nodes a job could start on now (idle, or mixed with CPUs free).
    let mut parts = vec![format!(
        "{} of {} nodes free",
        live.free_nodes, live.total_nodes
    )];
    parts.push(format!(
        "{} CPUs and {} per node",
        live.cpus_per_node,
        memory(live.mem_mb_per_node)
    ));
    if p.gpus_per_node > 0 {
        let fewest = live.node_gpus.iter().copied().min().unwrap_or(0);
        let per_node = if fewest == p.gpus_per_node {
            format!("{fewest} per node")
        } else {
            format!("{fewest} to {} per node", p.gpus_per_node)
        };
        parts.push(format!(
            "GPUs on {} of {} nodes, {per_node}",
            live.node_gpus.len(),
            live.total_nodes
        ));
        parts.push(format!(
            "{} of {} GPUs free",
            live.free_gpus,
            live.gpus_total()
        ));
    }
    parts.push(format!("up to {} node{}", p.max_nodes, plural(p.max_nodes)));
    parts.push(match p.max_time_secs {
        Some(t) => format!("up to {}", format_slurm_duration(t)),
        None => "no time limit".to_owned(),
    });
    if !p.description.is_empty() {
        parts.insert(0, p.description.clone());
    }
    parts.join(" · ")
}

fn memory(mb: u64) -> String {
    if mb >= 1024 && mb.is_multiple_of(1024) {
        format!("{} GiB", mb / 1024)
    } else {
        format!("{mb} MiB")
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The form for one user.
pub(crate) fn build_form(config: &SlurmConfig, ctx: &FormContext, c: &UserChoices) -> FormSpec {
    let last = |name: &str| ctx.last_options.as_ref().and_then(|o| o.get(name)).cloned();
    let mut fields = Vec::new();
    let has_gpus = c.partitions.iter().any(|p| p.gpus_per_node > 0);

    let mut partition = FormField::new(
        "partition",
        "Partition",
        FieldKind::Select {
            choices: c
                .partitions
                .iter()
                .map(|p| {
                    let mut choice = Choice::new(&p.name, &p.label);
                    choice.info = Some(partition_info(p));
                    let mut data = Map::new();
                    data.insert("max_nodes".into(), p.max_nodes.into());
                    data.insert("max_time_secs".into(), json!(p.max_time_secs));
                    data.insert("default_time_secs".into(), json!(p.default_time_secs));
                    data.insert("gpus_per_node".into(), p.gpus_per_node.into());
                    data.insert("gpu_nodes".into(), p.live.node_gpus.len().into());
                    data.insert("free_gpus".into(), p.live.free_gpus.into());
                    data.insert("free_nodes".into(), p.live.free_nodes.into());
                    data.insert("total_nodes".into(), p.live.total_nodes.into());
                    choice.data = data;
                    choice.limits = partition_limits(p, has_gpus);
                    choice
                })
                .collect(),
        },
    );
    partition.required = true;
    partition.default = c.default_partition.clone().map(Value::from);
    partition.help = Some(match &c.problem {
        Some(p) => p.clone(),
        None => "Where the server runs; the numbers are live.".to_owned(),
    });
    fields.push(partition);

    let max_nodes = c.partitions.iter().map(|p| p.max_nodes).max().unwrap_or(1);
    let mut nodes = FormField::new(
        "nodes",
        "Nodes",
        FieldKind::Int {
            min: Some(1),
            max: Some(max_nodes.into()),
        },
    );
    nodes.default = Some(1.into());
    nodes.help = Some("How many compute nodes the job gets (up to the partition's limit).".into());
    fields.push(nodes);

    let max_time = c
        .partitions
        .iter()
        .map(|p| p.max_time_secs)
        .try_fold(0u64, |acc, t| t.map(|t| acc.max(t)));
    let default_time = c
        .partitions
        .iter()
        .find(|p| Some(&p.name) == c.default_partition.as_ref())
        .and_then(|p| p.default_time_secs);
    let mut runtime = FormField::new(
        "runtime",
        format!("Run time ({CLOCK_FORMS})"),
        FieldKind::Duration {
            min_secs: Some(60),
            max_secs: max_time,
            clock: true,
        },
    );
    runtime.default = default_time.map(|t| Value::from(format_slurm_duration(t)));
    runtime.help = Some("The job ends after this time; at most the partition's limit.".into());
    fields.push(runtime);

    if let Some(accounts) = &c.accounts {
        let mut account = FormField::new(
            "account",
            "Account",
            FieldKind::Select {
                choices: accounts.iter().map(|a| Choice::new(a, a)).collect(),
            },
        );
        account.default = accounts.first().cloned().map(Value::from);
        account.help = Some("The account the run time is charged to.".into());
        fields.push(account);
    }

    let gpu_parts: Vec<String> = c
        .partitions
        .iter()
        .filter(|p| p.gpus_per_node > 0)
        .map(|p| p.name.clone())
        .collect();
    if !gpu_parts.is_empty() {
        let max = c
            .partitions
            .iter()
            .map(|p| p.gpus_per_node)
            .max()
            .unwrap_or(0);
        let mut gpus = FormField::new(
            "gpus",
            "GPUs per node",
            FieldKind::Int {
                min: Some(0),
                max: Some(max.into()),
            },
        );
        gpus.default = Some(0.into());
        gpus.visible_when = Some(VisibleWhen {
            field: "partition".into(),
            values: gpu_parts,
        });
        fields.push(gpus);
    }

    if !c.reservations.is_empty() {
        let mut choices = vec![Choice::new("", "No reservation")];
        choices.extend(c.reservations.iter().map(|r| Choice::new(r, r)));
        let mut resv = FormField::new("reservation", "Reservation", FieldKind::Select { choices });
        resv.help = Some("Run inside a reservation you may use.".into());
        fields.push(resv);
    }

    fields.extend(crate::slurm::session::form_fields(
        config,
        c.modules.as_ref(),
    ));

    for f in &config.fields {
        let kind = match f.kind {
            CustomType::Int => FieldKind::Int {
                min: f.min.map(|m| m.ceil() as i64),
                max: f.max.map(|m| m.floor() as i64),
            },
            CustomType::Float => FieldKind::Float {
                min: f.min,
                max: f.max,
            },
            CustomType::Text => FieldKind::Text {
                max_len: Some(200),
                pattern: (!f.pattern.is_empty()).then(|| f.pattern.clone()),
            },
            CustomType::Bool => FieldKind::Checkbox,
            CustomType::Choice => FieldKind::Select {
                choices: c
                    .custom_choices
                    .get(&f.name)
                    .into_iter()
                    .flatten()
                    .map(|v| Choice::new(v, v))
                    .collect(),
            },
        };
        let mut field = FormField::new(
            &f.name,
            if f.label.is_empty() {
                &f.name
            } else {
                &f.label
            },
            kind,
        );
        field.required = f.required;
        field.default = f.default.as_ref().map(|d| d.to_json());
        field.help = (!f.help.is_empty()).then(|| f.help.clone());
        fields.push(field);
    }

    for field in &mut fields {
        field.value = last(&field.name).or_else(|| field.default.clone());
    }
    // Added modules are kept as a list; the form's field is their text.
    if let Some(field) = fields.iter_mut().find(|f| f.name == "modules") {
        if let Some(Value::Array(items)) = &field.value {
            let text: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            field.value = Some(text.join(" ").into());
        }
    }
    // Without a run time of their own, the form opens with the default of the partition it
    // opens with (the user's last one), not the default partition's.
    let opens_with = last("partition")
        .and_then(|v| v.as_str().map(str::to_owned))
        .and_then(|name| c.partitions.iter().find(|p| p.name == name));
    if let (Some(p), None) = (opens_with, last("runtime")) {
        if let Some(field) = fields.iter_mut().find(|f| f.name == "runtime") {
            field.value = p
                .default_time_secs
                .map(|t| Value::from(format_slurm_duration(t)));
        }
    }
    FormSpec {
        fields,
        can_estimate: true,
    }
}

/// What choosing partition `p` does to the other fields: its node limit (fewer with GPUs on
/// a partition where not every node has them), its run time limit and default, its GPUs.
fn partition_limits(p: &Offered, has_gpus: bool) -> BTreeMap<String, FieldLimits> {
    let mut limits = BTreeMap::new();
    let max_by = (p.gpus_per_node > 0).then(|| MaxBy {
        field: "gpus".into(),
        max: (0..=p.gpus_per_node)
            .map(|g| p.max_nodes_with_gpus(g).into())
            .collect(),
        message: p.gpus_message(),
    });
    limits.insert(
        "nodes".into(),
        FieldLimits {
            min: Some(1),
            max: Some(p.max_nodes.into()),
            default: None,
            max_by,
        },
    );
    limits.insert(
        "runtime".into(),
        FieldLimits {
            min: Some(60),
            max: p.max_time_secs.and_then(|t| i64::try_from(t).ok()),
            default: p
                .default_time_secs
                .map(|t| Value::from(format_slurm_duration(t))),
            max_by: None,
        },
    );
    if has_gpus {
        limits.insert(
            "gpus".into(),
            FieldLimits {
                min: Some(0),
                max: Some(p.gpus_per_node.into()),
                ..Default::default()
            },
        );
    }
    limits
}

/// Checks submitted options against the form (types, config limits) and then against the
/// chosen partition's live limits. Fills in the partition's default run time.
pub(crate) fn validate(
    config: &SlurmConfig,
    form: &FormSpec,
    choices: &UserChoices,
    submitted: &Value,
) -> Result<ValidatedOptions, Vec<FieldError>> {
    if let Some(problem) = &choices.problem {
        return Err(vec![FieldError::unavailable(problem.clone())]);
    }
    let submitted = &*crate::slurm::session::modules_as_text(submitted);
    let mut options = form.validate(submitted)?;
    let mut errors = Vec::new();
    let partition = options
        .get_str("partition")
        .and_then(|name| choices.partitions.iter().find(|p| p.name == name));
    let Some(p) = partition else {
        return Err(vec![FieldError::new(
            "partition",
            "no partition is available to you",
        )]);
    };
    let nodes = options.get_i64("nodes").unwrap_or(1);
    if nodes > i64::from(p.max_nodes) {
        errors.push(FieldError::new(
            "nodes",
            format!(
                "partition {} allows at most {} node{} per job",
                p.name,
                p.max_nodes,
                plural(p.max_nodes)
            ),
        ));
    }
    // The form's default run time is the default partition's: use the chosen one's instead.
    let runtime_given = match submitted.get("runtime") {
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Array(a)) => a
            .iter()
            .any(|v| v.as_str().is_some_and(|s| !s.trim().is_empty())),
        Some(Value::Null) | None => false,
        Some(_) => true,
    };
    if !runtime_given {
        match p.default_time_secs {
            Some(d) => options
                .0
                .insert("runtime".into(), format_slurm_duration(d).into()),
            None => options.0.remove("runtime"),
        };
    } else if let Some(secs) = options
        .get_str("runtime")
        .and_then(crate::parse_clock_duration)
    {
        if let Some(max) = p.max_time_secs.filter(|m| secs > *m) {
            errors.push(FieldError::new(
                "runtime",
                format!(
                    "partition {} allows at most {} (hh:mm:ss)",
                    p.name,
                    format_slurm_duration(max)
                ),
            ));
        }
    }
    let gpus = options.get_i64("gpus").unwrap_or(0);
    if gpus > 0 && p.gpus_per_node == 0 {
        errors.push(FieldError::new(
            "gpus",
            format!(
                "partition {} has no GPUs; choose 0 or a partition with GPUs",
                p.name
            ),
        ));
    } else if gpus > i64::from(p.gpus_per_node) {
        errors.push(FieldError::new(
            "gpus",
            format!(
                "nodes of partition {} have at most {} GPUs",
                p.name, p.gpus_per_node
            ),
        ));
    } else if let Ok(g @ 1..) = u32::try_from(gpus) {
        // A mixed partition: only some nodes have GPUs, and Slurm refuses a job asking
        // more nodes with GPUs than there are.
        let max = p.max_nodes_with_gpus(g);
        if nodes > i64::from(max) {
            errors.push(FieldError::new(
                "nodes",
                p.gpus_message()
                    .replace("{max}", &max.to_string())
                    .replace("{value}", &g.to_string()),
            ));
        }
    }
    if options.get_str("reservation") == Some("") {
        options.0.remove("reservation");
    }
    crate::slurm::session::validate_options(
        config,
        submitted,
        &mut options,
        &mut errors,
        choices.modules.as_ref(),
    );
    if errors.is_empty() {
        Ok(options)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::config::{AllowRule, CustomField, PartitionConfig};

    fn snapshot() -> Snapshot {
        let scontrol = "PartitionName=batch AllowGroups=ALL Default=YES DefaultTime=01:00:00 MaxNodes=4 MaxTime=08:00:00 State=UP TotalNodes=4\n\
            PartitionName=devel AllowGroups=ALL Default=NO DefaultTime=00:10:00 MaxNodes=1 MaxTime=00:30:00 State=UP TotalNodes=2\n\
            PartitionName=gpu AllowGroups=ALL Default=NO DefaultTime=00:30:00 MaxNodes=2 MaxTime=04:00:00 State=UP TotalNodes=2\n";
        // The dev cluster with every GPU of node3 taken by a 1-CPU job.
        let sinfo = "node1|devel|idle|0/2/0/2|2048|(null)|gpu:0|\nnode1|batch*|idle|0/2/0/2|2048|(null)|gpu:0|\n\
                     node2|devel|idle|0/2/0/2|2048|(null)|gpu:0|\nnode2|batch*|idle|0/2/0/2|2048|(null)|gpu:0|\n\
                     node3|batch*|mixed|1/1/0/2|2048|gpu:2|gpu:2|\nnode3|gpu|mixed|1/1/0/2|2048|gpu:2|gpu:2|\n\
                     node4|batch*|idle|0/2/0/2|2048|gpu:2|gpu:0|\nnode4|gpu|idle|0/2/0/2|2048|gpu:2|gpu:0|\n";
        Snapshot {
            partitions: parse_partitions(scontrol, sinfo),
            reservations: Vec::new(),
        }
    }

    fn config() -> SlurmConfig {
        SlurmConfig {
            accounts: vec!["proj1".into(), "proj2".into()],
            partitions: vec![
                PartitionConfig {
                    name: "devel".into(),
                    label: "Quick tests".into(),
                    ..Default::default()
                },
                PartitionConfig {
                    name: "batch".into(),
                    max_nodes: 2,
                    ..Default::default()
                },
                PartitionConfig {
                    name: "gpu".into(),
                    ..Default::default()
                },
            ],
            fields: vec![CustomField {
                name: "mem_gb".into(),
                kind: CustomType::Int,
                min: Some(1.0),
                max: Some(8.0),
                ..Default::default()
            }],
            allow: vec![AllowRule {
                users: vec!["*".into()],
                accounts: vec!["proj1".into()],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn form_for(user: &str) -> (FormSpec, UserChoices) {
        let config = config();
        let ctx = FormContext::new(user);
        let choices = user_choices(&config, &ctx, Ok(&snapshot()), &[], None);
        (build_form(&config, &ctx, &choices), choices)
    }

    #[test]
    fn the_form_shows_live_limits_narrowed_by_the_config() {
        let (form, choices) = form_for("alice");
        let FieldKind::Select { choices: parts } = &form.field("partition").unwrap().kind else {
            panic!()
        };
        let names: Vec<&str> = parts.iter().map(|c| c.value.as_str()).collect();
        assert_eq!(names, ["devel", "batch", "gpu"]);
        assert_eq!(parts[0].label, "Quick tests");
        assert_eq!(parts[1].data["max_nodes"], json!(2));
        let gpu_info = parts[2].info.as_deref().unwrap();
        assert!(
            gpu_info.contains("2 of 2 nodes free")
                && gpu_info.contains("GPUs on 2 of 2 nodes, 2 per node")
                && gpu_info.contains("2 of 4 GPUs free"),
            "{gpu_info}"
        );
        assert_eq!(choices.default_partition.as_deref(), Some("batch"));
        assert_eq!(
            form.field("runtime").unwrap().default,
            Some(json!("01:00:00"))
        );
        assert_eq!(
            form.field("gpus")
                .unwrap()
                .visible_when
                .as_ref()
                .unwrap()
                .values,
            ["batch", "gpu"]
        );
        let FieldKind::Select { choices: accounts } = &form.field("account").unwrap().kind else {
            panic!()
        };
        assert_eq!(accounts.len(), 1, "proj2 is not allowed");
        assert!(form.can_estimate);
    }

    #[test]
    fn bad_values_are_refused_per_field() {
        let (form, choices) = form_for("alice");
        let check = |v: Value| validate(&config(), &form, &choices, &v);
        let ok = check(json!({"partition": "devel", "nodes": 1, "runtime": "00:10"})).unwrap();
        assert_eq!(ok.get_str("runtime"), Some("00:10:00"));
        let ok = check(json!({"partition": "gpu", "gpus": 1})).unwrap();
        assert_eq!(ok.get_str("runtime"), Some("00:30:00"));
        for (bad, field, words) in [
            (
                json!({"partition": "devel", "nodes": 0}),
                "nodes",
                "at least 1",
            ),
            (
                json!({"partition": "devel", "nodes": 99}),
                "nodes",
                "at most",
            ),
            (
                json!({"partition": "devel", "nodes": 2}),
                "nodes",
                "devel allows at most 1 node",
            ),
            (
                json!({"partition": "devel", "nodes": "2; rm -rf ~"}),
                "nodes",
                "whole number",
            ),
            (
                json!({"partition": "devel", "runtime": "01:00"}),
                "runtime",
                "at most 00:30:00",
            ),
            (
                json!({"partition": "devel", "runtime": "-5"}),
                "runtime",
                "run time",
            ),
            (json!({"partition": "nosuch"}), "partition", "not one of"),
            (json!({"partition": "devel", "gpus": 1}), "gpus", "no GPUs"),
            (
                json!({"partition": "devel", "account": "proj2"}),
                "account",
                "not one of",
            ),
            (
                json!({"partition": "devel", "mem_gb": 9}),
                "mem_gb",
                "at most 8",
            ),
            (
                json!({"partition": "devel\n#SBATCH --uid=0"}),
                "partition",
                "not one of",
            ),
        ] {
            let errors = check(bad.clone()).unwrap_err();
            assert!(
                errors
                    .iter()
                    .any(|e| e.field == field && e.message.contains(words)),
                "{bad}: {errors:?}"
            );
        }
    }

    /// The dev cluster as it is, no `[[slurm.partitions]]`: batch is mixed (GPUs on 2 of its
    /// 4 nodes), devel has 1 node and 30 minutes.
    fn live_form(last: Option<Value>) -> (FormSpec, UserChoices) {
        let config = SlurmConfig::default();
        let mut ctx = FormContext::new("alice");
        ctx.last_options = last.map(|v| ValidatedOptions(v.as_object().unwrap().clone()));
        let choices = user_choices(&config, &ctx, Ok(&snapshot()), &[], None);
        (build_form(&config, &ctx, &choices), choices)
    }

    #[test]
    fn each_partition_carries_its_limits_for_the_other_fields() {
        let (form, _) = live_form(None);
        let FieldKind::Select { choices: parts } = &form.field("partition").unwrap().kind else {
            panic!()
        };
        let [batch, devel, gpu] = &parts[..] else {
            panic!("{parts:?}")
        };
        assert_eq!(devel.limits["nodes"].max, Some(1));
        assert_eq!(devel.limits["runtime"].max, Some(1800));
        assert_eq!(devel.limits["runtime"].default, Some(json!("00:10:00")));
        assert_eq!(devel.limits["gpus"].max, Some(0));
        assert_eq!(batch.limits["nodes"].max, Some(4));
        assert_eq!(
            batch.limits["nodes"].max_by.as_ref().map(|m| &m.max[..]),
            Some(&[4, 2, 2][..]),
            "with 1 or 2 GPUs per node, only batch's 2 GPU nodes"
        );
        assert_eq!(gpu.limits["runtime"].default, Some(json!("00:30:00")));
        let info = batch.info.as_deref().unwrap();
        assert!(
            info.contains("GPUs on 2 of 4 nodes, 2 per node") && info.contains("4 of 4 nodes free"),
            "{info}"
        );
        assert!(!info.contains("2 GPUs per node"), "{info}");
        let runtime = form.field("runtime").unwrap();
        assert_eq!(runtime.label, "Run time (hh:mm:ss, hh:mm or minutes)");
        assert_eq!(runtime.value, Some(json!("01:00:00")));
        // Opened with devel last time: devel's default run time, not batch's.
        let (form, _) = live_form(Some(json!({"partition": "devel"})));
        assert_eq!(
            form.field("runtime").unwrap().value,
            Some(json!("00:10:00"))
        );
    }

    #[test]
    fn more_gpu_nodes_than_the_partition_has_are_refused() {
        let (form, choices) = live_form(None);
        let check = |v: Value| validate(&config(), &form, &choices, &v);
        let errors = check(json!({"partition": "batch", "nodes": 4, "gpus": 1})).unwrap_err();
        assert_eq!(
            errors,
            [FieldError::new(
                "nodes",
                "partition batch has only 2 node(s) with 1 or more GPUs"
            )]
        );
        assert!(check(json!({"partition": "batch", "nodes": 3, "gpus": 2})).is_err());
        let ok = check(json!({"partition": "batch", "nodes": 2, "gpus": 2})).unwrap();
        assert_eq!(ok.get_i64("gpus"), Some(2));
        check(json!({"partition": "batch", "nodes": 4, "gpus": 0})).unwrap();
        let errors = check(json!({"partition": "gpu", "nodes": 1, "gpus": 3})).unwrap_err();
        assert_eq!(errors[0].field, "gpus", "{errors:?}");
    }

    #[test]
    fn environment_interface_and_directory_are_fields_checked_against_the_config() {
        let config = SlurmConfig {
            partitions: vec![PartitionConfig {
                name: "devel".into(),
                ..Default::default()
            }],
            ..crate::slurm::session::tests::config()
        };
        let ctx = FormContext::new("alice");
        let choices = user_choices(&config, &ctx, Ok(&snapshot()), &[], None);
        let form = build_form(&config, &ctx, &choices);
        let values = |name: &str| -> Vec<String> {
            let FieldKind::Select { choices } = &form.field(name).unwrap().kind else {
                panic!("{name}")
            };
            choices.iter().map(|c| c.value.clone()).collect()
        };
        assert_eq!(values("environment"), ["python-2025", "venv", "box"]);
        assert_eq!(values("interface"), ["lab", "vscode"]);
        assert_eq!(values("directory"), ["home", "project"]);
        let FieldKind::Select { choices: ifaces } = &form.field("interface").unwrap().kind else {
            panic!()
        };
        assert_eq!(ifaces[1].data["environments"], json!(["box"]));
        let check = |v: Value| validate(&config, &form, &choices, &v);
        let ok = check(json!({"partition": "devel"})).unwrap();
        assert_eq!(ok.get_str("environment"), Some("python-2025"));
        assert_eq!(ok.get_str("interface"), Some("lab"));
        assert_eq!(ok.get_str("directory"), Some("home"));
        let ok = check(json!({"partition": "devel", "environment": "box", "interface": "vscode"}))
            .unwrap();
        assert_eq!(ok.get_str("interface"), Some("vscode"));
        for (bad, field, words) in [
            (
                json!({"environment": "nosuch"}),
                "environment",
                "not one of",
            ),
            (
                json!({"environment": "x; rm -rf ~"}),
                "environment",
                "not one of",
            ),
            (
                json!({"environment": "venv\n"}),
                "environment",
                "not one of",
            ),
            (
                json!({"interface": ["lab", "tree"]}),
                "interface",
                "choices",
            ),
            (
                json!({"environment": "venv", "interface": "vscode"}),
                "interface",
                "'vscode' is not available with environment 'venv' (only with box)",
            ),
            (json!({"directory": "../etc"}), "directory", "not one of"),
            (
                json!({"directory": "project"}),
                "directory",
                "'project' is a project directory: choose an account",
            ),
        ] {
            let mut options = bad.as_object().unwrap().clone();
            options.insert("partition".into(), "devel".into());
            let errors = check(Value::Object(options)).unwrap_err();
            assert!(
                errors
                    .iter()
                    .any(|e| e.field == field && e.message.contains(words)),
                "{bad}: {errors:?}"
            );
        }
        // An interface limited to other environments, not asked for: the first that fits.
        let mut config = config.clone();
        config.interfaces.swap(0, 1);
        let form = build_form(&config, &ctx, &choices);
        let ok = validate(&config, &form, &choices, &json!({"partition": "devel"})).unwrap();
        assert_eq!(ok.get_str("interface"), Some("lab"));
    }

    #[test]
    fn users_add_modules_the_system_has_to_an_environment_that_lets_them() {
        let mut config = SlurmConfig {
            partitions: vec![PartitionConfig {
                name: "devel".into(),
                ..Default::default()
            }],
            ..crate::slurm::session::tests::config()
        };
        config.environments[0].add_modules = true;
        let mut ctx = FormContext::new("alice");
        ctx.last_options = Some(ValidatedOptions(
            json!({"modules": ["GCC/12", "R"]})
                .as_object()
                .unwrap()
                .clone(),
        ));
        let mut choices = user_choices(&config, &ctx, Ok(&snapshot()), &[], None);
        choices.modules = Some(Ok(std::sync::Arc::new(vec![
            "GCC".into(),
            "GCC/12".into(),
            "R".into(),
            "R/4.4".into(),
        ])));
        let form = build_form(&config, &ctx, &choices);
        let field = form.field("modules").unwrap();
        assert_eq!(
            field.visible_when.as_ref().unwrap().values,
            ["python-2025"],
            "only with the environment that takes more"
        );
        assert_eq!(
            field.value,
            Some(json!("GCC/12 R")),
            "the last ones, as text"
        );
        assert!(
            field.help.as_deref().unwrap().contains("4 available"),
            "{field:?}"
        );
        let check = |v: Value| validate(&config, &form, &choices, &v);
        for given in [json!("GCC/12, R/4.4"), json!(["GCC/12", "R/4.4"])] {
            let ok = check(
                json!({"partition": "devel", "environment": "python-2025", "modules": given}),
            )
            .unwrap();
            assert_eq!(ok.get("modules"), Some(&json!(["GCC/12", "R/4.4"])));
        }
        let ok = check(json!({"partition": "devel", "modules": ""})).unwrap();
        assert_eq!(ok.get("modules"), None);
        for (bad, words) in [
            (json!("GCC/13"), "'GCC/13' is not a module of this system"),
            (json!("x; rm -rf ~"), "'x;' is not a module of this system"),
            (json!("GCC\nR"), "one line"),
            (json!(["GCC", 3]), "must be text"),
        ] {
            let errors =
                check(json!({"partition": "devel", "environment": "python-2025", "modules": bad}))
                    .unwrap_err();
            assert!(
                errors
                    .iter()
                    .any(|e| e.field == "modules" && e.message.contains(words)),
                "{bad}: {errors:?}"
            );
        }
        let errors = check(json!({"partition": "devel", "environment": "venv", "modules": "R"}))
            .unwrap_err();
        assert_eq!(
            errors,
            [FieldError::new(
                "modules",
                "environment 'venv' takes no more modules"
            )]
        );
        choices.modules = Some(Err("Lmod is not there".into()));
        let errors = validate(
            &config,
            &form,
            &choices,
            &json!({"partition": "devel", "modules": "R"}),
        )
        .unwrap_err();
        assert!(
            errors[0].message.contains("Lmod is not there"),
            "{errors:?}"
        );
    }
}
