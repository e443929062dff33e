//! Parsers for what Slurm's commands print (22.05's text forms: `|`-separated `squeue`/`sinfo`
//! formats and `scontrol -o`'s one-line `Key=Value` records), and Slurm's words in plain words.

use std::collections::BTreeMap;

use crate::options::parse_slurm_duration;

/// The `squeue` format the tracker asks for; [`parse_squeue`] reads it.
/// The last three are the allocation the home page shows: CPUs, memory per node (`256M`) and
/// the generic resources asked per node (`gres:gpu:2`).
pub(crate) const SQUEUE_FORMAT: &str = "%i|%T|%r|%B|%N|%P|%S|%L|%D|%l|%C|%m|%b";

/// One job as `squeue` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JobInfo {
    pub id: String,
    /// `PENDING`, `RUNNING`, `COMPLETING`, `CANCELLED`, `TIMEOUT`, …
    pub state: String,
    /// Why it pends (`Resources`, `Priority`, …) or `None`.
    pub reason: String,
    /// The node the batch script runs on (empty while pending).
    pub batch_host: String,
    pub node_list: String,
    pub partition: String,
    /// Start (estimated while pending), Slurm's local time with its offset
    /// ([`SLURM_TIME_FORMAT`]), `None` when unknown.
    pub start: Option<String>,
    /// Seconds left before the time limit (running jobs).
    pub time_left: Option<u64>,
    pub nodes: u32,
    pub time_limit: String,
    /// CPUs (allocated while running, asked for while pending); 0: not known.
    pub cpus: u32,
    /// Memory per node as Slurm prints it (`256M`, `4G`); empty: not known.
    pub memory: String,
    /// GPUs per node (from the generic resources asked, `gres:gpu:2`).
    pub gpus_per_node: u32,
}

impl JobInfo {
    pub fn is_running(&self) -> bool {
        matches!(self.state.as_str(), "RUNNING" | "COMPLETING" | "STAGE_OUT")
            && !self.batch_host.is_empty()
    }

    /// A state the job never leaves.
    pub fn is_final(&self) -> bool {
        is_final_state(&self.state)
    }
}

pub(crate) fn is_final_state(state: &str) -> bool {
    matches!(
        state,
        "COMPLETED"
            | "CANCELLED"
            | "FAILED"
            | "TIMEOUT"
            | "NODE_FAIL"
            | "PREEMPTED"
            | "BOOT_FAIL"
            | "DEADLINE"
            | "OUT_OF_MEMORY"
            | "REVOKED"
            | "SPECIAL_EXIT"
    )
}

/// `None`, `N/A`, `(null)`, `Unknown` and empty all mean "nothing".
pub(crate) fn nothing(s: &str) -> bool {
    matches!(
        s,
        "" | "None" | "N/A" | "n/a" | "(null)" | "Unknown" | "(None)"
    )
}

fn opt(s: &str) -> Option<String> {
    (!nothing(s)).then(|| s.to_owned())
}

/// Reads `squeue -h -o SQUEUE_FORMAT` output; lines that do not fit are skipped.
pub(crate) fn parse_squeue(out: &str) -> Vec<JobInfo> {
    out.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.trim().split('|').collect();
            if f.len() != 13 || f[0].is_empty() {
                return None;
            }
            Some(JobInfo {
                id: f[0].to_owned(),
                state: f[1].to_owned(),
                reason: f[2].to_owned(),
                batch_host: opt(f[3]).unwrap_or_default(),
                node_list: opt(f[4]).unwrap_or_default(),
                partition: f[5].to_owned(),
                start: opt(f[6]),
                time_left: parse_slurm_duration(f[7]),
                nodes: f[8].parse().unwrap_or(0),
                time_limit: f[9].to_owned(),
                cpus: f[10].parse().unwrap_or(0),
                memory: opt(f[11]).filter(|m| m != "0").unwrap_or_default(),
                gpus_per_node: gpus_per_node(f[12]),
            })
        })
        .collect()
}

/// GPUs per node from `squeue`'s `%b` (`gres:gpu:2`, `gres/gpu:a100:2`, `gpu`, several
/// separated by commas); 0 without any.
fn gpus_per_node(tres: &str) -> u32 {
    tres.split(',')
        .filter(|item| item.split([':', '/']).any(|w| w == "gpu"))
        .map(|item| {
            item.rsplit(':')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(1)
        })
        .sum()
}

/// One `scontrol show … -o` record: `Key=Value` pairs separated by spaces. A value may hold
/// spaces (`OS=Linux 6.1 #1 SMP`): a word that does not look like `Key=` continues it.
pub(crate) fn parse_kv(line: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut last: Option<String> = None;
    for word in line.split_whitespace() {
        let key = word.split_once('=').map(|(k, _)| k).filter(|k| {
            !k.is_empty()
                && k.as_bytes()[0].is_ascii_alphabetic()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_/:".contains(&b))
        });
        match (key, &last) {
            (Some(k), _) => {
                let value = &word[k.len() + 1..];
                out.insert(k.to_owned(), value.to_owned());
                last = Some(k.to_owned());
            }
            (None, Some(k)) => {
                if let Some(v) = out.get_mut(k) {
                    v.push(' ');
                    v.push_str(word);
                }
            }
            (None, None) => {}
        }
    }
    out
}

/// All records of `scontrol show partition|reservation|node -o` that have `key`.
pub(crate) fn parse_records(out: &str, key: &str) -> Vec<BTreeMap<String, String>> {
    out.lines()
        .map(parse_kv)
        .filter(|r| r.contains_key(key))
        .collect()
}

/// A partition's limits (`scontrol show partition -o`) and live state (its nodes in `sinfo`).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct PartitionInfo {
    pub name: String,
    pub default: bool,
    pub up: bool,
    /// `None`: unlimited.
    pub max_nodes: Option<u32>,
    pub max_time_secs: Option<u64>,
    pub default_time_secs: Option<u64>,
    pub total_nodes: u32,
    /// Nodes a job could start on now: up, idle or mixed, with CPUs free.
    pub free_nodes: u32,
    pub cpus_per_node: u32,
    pub mem_mb_per_node: u64,
    /// The GPUs of each node that has any (a mixed partition has fewer than `total_nodes`).
    pub node_gpus: Vec<u32>,
    /// GPUs not in use on the free nodes.
    pub free_gpus: u32,
    /// `AllowGroups` (Unix groups), `None` = all.
    pub allow_groups: Option<Vec<String>>,
    pub allow_accounts: Option<Vec<String>>,
    /// Its nodes as `sinfo` listed them (a maintenance reservation covering all of them
    /// closes the partition).
    pub nodes: Vec<String>,
    /// Nodes that take no new job: down, drained or draining, failing, not responding.
    pub down_nodes: u32,
}

impl PartitionInfo {
    /// The most GPUs one node has.
    pub fn gpus_per_node(&self) -> u32 {
        self.node_gpus.iter().copied().max().unwrap_or(0)
    }

    pub fn gpus_total(&self) -> u32 {
        self.node_gpus.iter().sum()
    }

    /// How many nodes have at least `gpus` GPUs: the most nodes a job asking that many GPUs
    /// per node can ever get here (all of them for 0).
    pub fn nodes_with_gpus(&self, gpus: u32) -> u32 {
        if gpus == 0 {
            return self.total_nodes;
        }
        self.node_gpus.iter().filter(|g| **g >= gpus).count() as u32
    }
}

fn list_or_all(v: Option<&String>) -> Option<Vec<String>> {
    let v = v?;
    (v != "ALL" && !nothing(v)).then(|| v.split(',').map(str::to_owned).collect())
}

/// The `sinfo` query [`parse_partitions`] reads: one line per node and partition, every field
/// ended by `|` (`:0` = no width limit; Gres strings hold commas).
pub(crate) const SINFO_NODES: [&str; 4] = [
    "-h",
    "-N",
    "-O",
    "NodeList:0|,Partition:0|,StateLong:0|,CPUsState:0|,Memory:0|,Gres:0|,GresUsed:0|",
];

/// One node of `sinfo -N -O …` ([`SINFO_NODES`]), once per partition it is in.
#[derive(Clone, Debug, PartialEq)]
struct NodeLine<'a> {
    partition: &'a str,
    name: &'a str,
    /// `idle`, `mixed`, `allocated`, `drained`, `down*`, …
    state: &'a str,
    idle_cpus: u32,
    total_cpus: u32,
    mem_mb: u64,
    gpus: u32,
    gpus_used: u32,
}

fn parse_node_line(line: &str) -> Option<NodeLine<'_>> {
    let f: Vec<&str> = line.trim().split('|').map(str::trim).collect();
    if f.len() < 7 || f[0].is_empty() {
        return None;
    }
    // CPUsState: allocated/idle/other/total.
    let cpus: Vec<u32> = f[3].split('/').filter_map(|n| n.parse().ok()).collect();
    Some(NodeLine {
        name: f[0],
        // The default partition has a `*`.
        partition: f[1].trim_end_matches('*'),
        state: f[2],
        idle_cpus: cpus.get(1).copied().unwrap_or(0),
        total_cpus: cpus.get(3).copied().unwrap_or(0),
        mem_mb: f[4].trim_end_matches('+').parse().unwrap_or(0),
        gpus: gpu_count(f[5]),
        gpus_used: gpu_count(f[6]),
    })
}

/// A node a job could start on now: responding, neither down nor drained, not fully
/// allocated (a MIXED node with free CPUs counts: Slurm shares nodes between jobs).
fn usable(n: &NodeLine<'_>) -> bool {
    // `*` not responding, `~` powered off, `#` powering up, `!` powering down, `%` powering
    // down, `$` maintenance reservation, `@` reboot pending, `^` rebooting, `-` planned.
    let base = n
        .state
        .trim_end_matches(['*', '~', '#', '!', '%', '$', '@', '^', '-', '+']);
    matches!(base, "idle" | "mixed") && !n.state.ends_with('*') && n.idle_cpus > 0
}

/// A node that takes no new job whatever frees up: down, drained or draining, failing, or not
/// responding (`*`). Allocated nodes are busy, not out of service.
fn out_of_service(n: &NodeLine<'_>) -> bool {
    let base = n
        .state
        .trim_end_matches(['*', '~', '#', '!', '%', '$', '@', '^', '-', '+']);
    n.state.ends_with('*')
        || matches!(
            base,
            "down" | "drained" | "draining" | "drain" | "fail" | "failing" | "inval" | "future"
        )
}

/// Partitions from `scontrol show partition -o`, completed by their nodes as
/// `sinfo` [`SINFO_NODES`] lists them: nodes free now, the smallest CPUs and memory per node,
/// each node's GPUs (`Gres`) and those not in use (`Gres` minus `GresUsed`) on free nodes.
pub(crate) fn parse_partitions(scontrol: &str, sinfo: &str) -> Vec<PartitionInfo> {
    let mut parts: Vec<PartitionInfo> = parse_records(scontrol, "PartitionName")
        .into_iter()
        .map(|r| {
            let get = |k: &str| r.get(k).map(String::as_str).unwrap_or("");
            PartitionInfo {
                name: get("PartitionName").to_owned(),
                default: get("Default") == "YES",
                up: get("State") == "UP",
                max_nodes: get("MaxNodes").parse().ok(),
                max_time_secs: parse_slurm_duration(get("MaxTime")),
                default_time_secs: parse_slurm_duration(get("DefaultTime")),
                total_nodes: get("TotalNodes").parse().unwrap_or(0),
                allow_groups: list_or_all(r.get("AllowGroups")),
                allow_accounts: list_or_all(r.get("AllowAccounts")),
                ..Default::default()
            }
        })
        .collect();
    for node in sinfo.lines().filter_map(parse_node_line) {
        let Some(p) = parts.iter_mut().find(|p| p.name == node.partition) else {
            continue;
        };
        p.nodes.push(node.name.to_owned());
        if out_of_service(&node) {
            p.down_nodes += 1;
        }
        if usable(&node) {
            p.free_nodes += 1;
            p.free_gpus += node.gpus.saturating_sub(node.gpus_used);
        }
        p.cpus_per_node = smallest(p.cpus_per_node, node.total_cpus);
        p.mem_mb_per_node = smallest(p.mem_mb_per_node, node.mem_mb);
        if node.gpus > 0 {
            p.node_gpus.push(node.gpus);
        }
    }
    parts
}

/// The smaller of two sizes, where 0 is "not known yet".
fn smallest<T: Ord + Default + Copy>(now: T, new: T) -> T {
    if now == T::default() {
        new
    } else {
        now.min(new)
    }
}

/// The items of a Gres string, split at the commas outside parentheses:
/// `gpu:a100:2(IDX:0,2),shard:8` → `gpu:a100:2(IDX:0,2)`, `shard:8`.
fn gres_items(gres: &str) -> impl Iterator<Item = &str> {
    let mut depth = 0u32;
    gres.split(move |c: char| {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        c == ',' && depth == 0
    })
}

/// GPUs in a `Gres` or `GresUsed` string: `gpu:2`, `gpu:a100:4(S:0-1)`, `gpu:2,shard:8`,
/// `gpu:a100:1(IDX:0),gpu:v100:1(IDX:1)` → 2, 4, 2, 2; `(null)`, `gpu:0` → 0; a bare `gpu`
/// (or `gpu:type`) is one.
pub(crate) fn gpu_count(gres: &str) -> u32 {
    gres_items(gres)
        .map(|g| g.split('(').next().unwrap_or(g).trim())
        .filter(|g| g.split(':').next() == Some("gpu"))
        .map(|g| {
            let last = g.rsplit(':').next().unwrap_or("");
            if g == "gpu" || !last.bytes().all(|b| b.is_ascii_digit()) {
                1
            } else {
                last.parse::<u32>().unwrap_or(0)
            }
        })
        .sum()
}

/// A reservation a user may be offered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reservation {
    pub name: String,
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub accounts: Vec<String>,
    pub partition: Option<String>,
    pub end: String,
    pub nodes: String,
}

pub(crate) fn parse_reservations(out: &str) -> Vec<Reservation> {
    let list = |r: &BTreeMap<String, String>, k: &str| -> Vec<String> {
        r.get(k)
            .filter(|v| !nothing(v))
            .map(|v| v.split(',').map(str::to_owned).collect())
            .unwrap_or_default()
    };
    parse_records(out, "ReservationName")
        .into_iter()
        .filter(|r| {
            r.get("State")
                .is_none_or(|s| s == "ACTIVE" || s == "INACTIVE")
        })
        .map(|r| Reservation {
            name: r["ReservationName"].clone(),
            users: list(&r, "Users"),
            groups: list(&r, "Groups"),
            accounts: list(&r, "Accounts"),
            partition: r.get("PartitionName").and_then(|p| opt(p)),
            end: r.get("EndTime").cloned().unwrap_or_default(),
            nodes: r.get("Nodes").cloned().unwrap_or_default(),
        })
        .collect()
}

/// What `sbatch --test-only` said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TestOnly {
    Fits {
        start: String,
        nodes: String,
        partition: String,
    },
    Refused(String),
}

/// `sbatch: Job 15 to start at 2026-11-26T11:25:34 using 1 processors on nodes node1 in
/// partition devel` (on stderr), or the reason (`allocation failure: …`, `sbatch: error: …`).
pub(crate) fn parse_test_only(stderr: &str) -> TestOnly {
    for line in stderr.lines() {
        if let Some(rest) = line.split_once(" to start at ").map(|(_, r)| r) {
            let mut words = rest.split_whitespace();
            let start = words.next().unwrap_or("").to_owned();
            let after = |key: &str| {
                rest.split_once(key)
                    .and_then(|(_, r)| r.split_whitespace().next())
                    .unwrap_or("")
                    .to_owned()
            };
            return TestOnly::Fits {
                start,
                nodes: after(" on nodes "),
                partition: after(" in partition "),
            };
        }
    }
    TestOnly::Refused(slurm_error(stderr))
}

/// The meaningful part of a Slurm error on stderr: the last line, without `sbatch: error: `,
/// `Batch job submission failed: ` or `allocation failure: `.
pub(crate) fn slurm_error(stderr: &str) -> String {
    let line = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .max_by_key(|l| {
            // Prefer the line that says why.
            (l.contains("failed:") || l.contains("failure:")) as u8
        })
        .unwrap_or("Slurm gave no reason");
    let mut msg = line;
    for prefix in [
        "sbatch: error: ",
        "squeue: error: ",
        "scancel: error: ",
        "sbatch: fatal: ",
        "Batch job submission failed: ",
        "allocation failure: ",
        "slurm_load_jobs error: ",
        "slurm_load_partitions: ",
    ] {
        msg = msg.strip_prefix(prefix).unwrap_or(msg);
    }
    msg.to_owned()
}

/// The controller did not answer (as opposed to an answer we did not like).
pub(crate) fn controller_unreachable(stderr: &str) -> bool {
    stderr.contains("Unable to contact slurm controller")
        || stderr.contains("Socket timed out")
        || stderr.contains("Connection refused")
        || stderr.contains("Zero Bytes were transmitted")
}

/// Why a job pends, in plain words.
pub(crate) fn pending_reason(reason: &str) -> String {
    match reason {
        "None" | "" => "waiting to be scheduled".to_owned(),
        "Resources" => "waiting for resources".to_owned(),
        "Priority" => "waiting for jobs with a higher priority".to_owned(),
        "ReqNodeNotAvail" => "the requested nodes are not available".to_owned(),
        "PartitionDown" => "the partition is down".to_owned(),
        "PartitionInactive" => "the partition is inactive".to_owned(),
        "PartitionNodeLimit" => "more nodes than the partition allows".to_owned(),
        "PartitionTimeLimit" => "a run time over the partition's limit".to_owned(),
        "Reservation" => "waiting for the reservation to start".to_owned(),
        "Dependency" => "waiting for another job".to_owned(),
        "BeginTime" => "waiting for its start time".to_owned(),
        "JobHeldUser" => "held by the user".to_owned(),
        "JobHeldAdmin" => "held by an administrator".to_owned(),
        "QOSMaxJobsPerUserLimit" | "AssocMaxJobsLimit" => {
            "you have as many jobs running as you may".to_owned()
        }
        "AssocGrpCPUMinutesLimit" | "AssocGrpBillingMinutes" => {
            "the account's compute budget is used up".to_owned()
        }
        "NodeDown" => "a node it needs is down".to_owned(),
        "BadConstraints" => "the request cannot be satisfied".to_owned(),
        other => format!("Slurm's reason: {other}"),
    }
}

/// How a job ended, in plain words, from its final state, `Reason` and `ExitCode` (`3:0`
/// = exit code 3, `0:15` = killed by signal 15).
pub(crate) fn end_reason(state: &str, reason: &str, exit_code: &str, time_limit: &str) -> String {
    let (code, signal) = exit_code.split_once(':').unwrap_or((exit_code, "0"));
    let why = if nothing(reason) {
        String::new()
    } else {
        format!(" (Slurm's reason: {reason})")
    };
    match state {
        "TIMEOUT" => {
            format!("The job reached its time limit ({time_limit}) and was ended by Slurm.")
        }
        "CANCELLED" => "The job was cancelled (scancel).".to_owned(),
        "NODE_FAIL" => "The job ended because its node failed.".to_owned(),
        "PREEMPTED" => "The job was preempted by another job.".to_owned(),
        "BOOT_FAIL" => "The job's node failed to boot.".to_owned(),
        "DEADLINE" => "The job reached its deadline.".to_owned(),
        "OUT_OF_MEMORY" => "The job ran out of memory.".to_owned(),
        "COMPLETED" => "The job ended: the server exited normally.".to_owned(),
        "FAILED" if signal != "0" => {
            format!("The job failed: the server was killed by signal {signal}{why}.")
        }
        "FAILED" => format!("The job failed with exit code {code}{why}."),
        other => format!("The job ended in state {other}{why}."),
    }
}

/// How the hub asks Slurm to print the times it compares (`SLURM_TIME_FORMAT`, set for the
/// tracker's `squeue` and the estimate's `sbatch --test-only`): Slurm's usual
/// `2026-11-26T14:05:00`, followed by the UTC offset Slurm's command used (`+0100`).
///
/// Why an offset rather than our own local time: Slurm's commands run with a cleared
/// environment, so they print in the zone of the machine's `/etc/localtime`, which need not be
/// the hub's `TZ`; and asking the C library for the local time (`localtime_r`) in a
/// multi-threaded process races with `setenv` (the `time` crate refuses it for that reason).
/// With the offset in Slurm's own output, "now" in Slurm's zone is the UTC clock moved by
/// that offset: no zone lookup in the hub at all, and right across daylight-saving changes.
/// Times stay shown as Slurm's wall clock (the offset is not shown), as before.
pub(crate) const SLURM_TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%z";

/// A time as Slurm prints it: the wall clock of Slurm's zone, and that zone's UTC offset when
/// Slurm printed one ([`SLURM_TIME_FORMAT`]; a site whose `sudo` drops the variable gets
/// Slurm's standard form without it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlurmTime {
    clock: time::PrimitiveDateTime,
    offset: Option<time::UtcOffset>,
}

impl SlurmTime {
    /// `2026-11-26T14:05:00+0100` or `2026-11-26T14:05:00`; `None` for anything else
    /// (`N/A`, `Unknown`).
    pub fn parse(text: &str) -> Option<Self> {
        use time::macros::format_description;
        let (clock, offset) = match text.get(19..) {
            Some("") => (text, None),
            Some(off) => (text.get(..19)?, Some(off)),
            None => return None,
        };
        let clock = time::PrimitiveDateTime::parse(
            clock,
            format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        )
        .ok()?;
        let offset = match offset {
            Some(off) => Some(
                time::UtcOffset::parse(
                    off,
                    format_description!("[offset_hour sign:mandatory][offset_minute]"),
                )
                .ok()?,
            ),
            None => None,
        };
        Some(Self { clock, offset })
    }

    /// The instant this time names; `None` without an offset (then it cannot be known).
    pub fn instant(&self) -> Option<time::OffsetDateTime> {
        self.offset.map(|off| self.clock.assume_offset(off))
    }

    /// Whether this time has come at `now`. Without an offset it cannot be known: `false`.
    pub fn has_come(&self, now: time::OffsetDateTime) -> bool {
        self.offset
            .is_some_and(|off| self.clock.assume_offset(off) <= now)
    }

    /// `14:05` when it is today in Slurm's zone at `now`, else `2026-11-27 14:05` (also when
    /// Slurm printed no offset: then "today" is unknown).
    pub fn short(&self, now: time::OffsetDateTime) -> String {
        let (h, m) = (self.clock.hour(), self.clock.minute());
        match self.offset {
            Some(off) if now.to_offset(off).date() == self.clock.date() => {
                format!("{h:02}:{m:02}")
            }
            _ => {
                let d = self.clock.date();
                format!(
                    "{:04}-{:02}-{:02} {h:02}:{m:02}",
                    d.year(),
                    u8::from(d.month()),
                    d.day()
                )
            }
        }
    }
}

/// `2026-11-26T14:05:00+0100` → `14:05` (today) or `2026-11-27 14:05`; text that is no time
/// is shown as it is.
pub(crate) fn short_time(slurm_time: &str) -> String {
    match SlurmTime::parse(slurm_time) {
        Some(t) => t.short(time::OffsetDateTime::now_utc()),
        None => slurm_time.to_owned(),
    }
}

/// A time as Slurm prints it by default (`2026-11-26T14:05:00`), without the offset it was
/// asked for: what the estimate has always handed on. Text that is no time is kept.
pub(crate) fn standard_form(slurm_time: &str) -> String {
    match SlurmTime::parse(slurm_time) {
        Some(_) => slurm_time[..19].to_owned(),
        None => slurm_time.to_owned(),
    }
}

/// Whether a time Slurm printed has come (an estimate of "now": the job would start at once).
pub(crate) fn has_come(slurm_time: &str) -> bool {
    SlurmTime::parse(slurm_time).is_some_and(|t| t.has_come(time::OffsetDateTime::now_utc()))
}

/// One line of `squeue -o %i|%u|%P|%k` (id, user, partition, comment) for a job whose
/// comment starts with `prefix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CommentedJob {
    pub id: String,
    pub user: String,
    pub partition: String,
    pub comment: String,
}

/// The jobs of a `squeue -h -o %i|%u|%P|%k` listing whose comment starts with `prefix`.
pub(crate) fn jobs_commented(text: &str, prefix: &str) -> Vec<CommentedJob> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.trim().splitn(4, '|');
            let (id, user, partition, comment) = (f.next()?, f.next()?, f.next()?, f.next()?);
            (!id.is_empty() && !prefix.is_empty() && comment.starts_with(prefix)).then(|| {
                CommentedJob {
                    id: id.to_owned(),
                    user: user.to_owned(),
                    partition: partition.to_owned(),
                    comment: comment.to_owned(),
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commented_jobs_are_picked_by_their_prefix() {
        let out = "12|alice|batch|nbhub:ab12:77:3\n\
                   13|bob|gpu|(null)\n\
                   14|carol|batch|nbhub:ffff:1:1\n\
                   broken line\n";
        assert_eq!(
            jobs_commented(out, "nbhub:ab12:"),
            vec![CommentedJob {
                id: "12".into(),
                user: "alice".into(),
                partition: "batch".into(),
                comment: "nbhub:ab12:77:3".into(),
            }]
        );
        assert!(jobs_commented(out, "").is_empty());
    }

    #[test]
    fn squeue_lines() {
        let out = "7|RUNNING|None|node1|node1|devel|2026-11-26T11:20:16|9:59|1|10:00|2|512M|N/A\n\
                   16|PENDING|Resources|n/a||batch|N/A|10:00|2|10:00|4|1G|gres:gpu:2\n\
                   garbage\n";
        let jobs = parse_squeue(out);
        assert_eq!(jobs.len(), 2);
        assert!(jobs[0].is_running());
        assert_eq!(jobs[0].time_left, Some(599));
        assert_eq!(jobs[0].start.as_deref(), Some("2026-11-26T11:20:16"));
        assert!(!jobs[1].is_running() && !jobs[1].is_final());
        assert_eq!(jobs[1].batch_host, "");
        assert_eq!(jobs[1].start, None);
        assert_eq!(jobs[1].nodes, 2);
        assert_eq!(
            (jobs[0].cpus, jobs[0].memory.as_str(), jobs[0].gpus_per_node),
            (2, "512M", 0)
        );
        assert_eq!(
            (jobs[1].cpus, jobs[1].memory.as_str(), jobs[1].gpus_per_node),
            (4, "1G", 2)
        );
        assert_eq!(gpus_per_node("gres/gpu:a100:4,gres:license:1"), 4);
        assert_eq!(gpus_per_node("gres:gpu"), 1);
        assert_eq!(gpus_per_node("gres:gpus_are_not_here:3"), 0);
        let invalid =
            parse_squeue("8|RUNNING|None|node1|node1|devel|N/A|INVALID|1|1:00|1|256M|N/A\n");
        assert_eq!(invalid[0].time_left, None);
    }

    #[test]
    fn key_value_records_keep_values_with_spaces() {
        let line = "NodeName=node1 Arch=x86_64 CoresPerSocket=1  CPUAlloc=0 Gres=(null) \
                    NodeAddr=127.0.0.1 OS=Linux 6.18.44-fc-v857 #1 SMP PREEMPT_DYNAMIC @0  \
                    RealMemory=2048 AllocTRES= TRES=cpu=1,mem=256M";
        let r = parse_kv(line);
        assert_eq!(r["NodeAddr"], "127.0.0.1");
        assert_eq!(r["OS"], "Linux 6.18.44-fc-v857 #1 SMP PREEMPT_DYNAMIC @0");
        assert_eq!(r["AllocTRES"], "");
        assert_eq!(r["TRES"], "cpu=1,mem=256M");
        assert_eq!(r["RealMemory"], "2048");
    }

    #[test]
    fn partitions_from_scontrol_and_sinfo() {
        let scontrol = "PartitionName=batch AllowGroups=ALL AllowAccounts=ALL Default=YES DefaultTime=01:00:00 MaxNodes=4 MaxTime=08:00:00 Nodes=node[1-4] State=UP TotalCPUs=8 TotalNodes=4\n\
            PartitionName=devel AllowGroups=hpc,staff AllowAccounts=ALL Default=NO DefaultTime=00:10:00 MaxNodes=1 MaxTime=00:30:00 State=UP TotalNodes=2\n\
            PartitionName=gpu AllowGroups=ALL Default=NO DefaultTime=NONE MaxNodes=UNLIMITED MaxTime=UNLIMITED State=DOWN TotalNodes=2\n";
        // What Slurm 22.05 prints for the dev cluster with one 1-GPU job on node3 (MIXED: one
        // CPU in use) and a 1-CPU job on node1.
        let sinfo = "node1|devel|mixed|1/1/0/2|2048|(null)|gpu:0|\n\
                     node1|batch*|mixed|1/1/0/2|2048|(null)|gpu:0|\n\
                     node2|devel|idle|0/2/0/2|2048|(null)|gpu:0|\n\
                     node2|batch*|idle|0/2/0/2|2048|(null)|gpu:0|\n\
                     node3|batch*|mixed|1/1/0/2|2048|gpu:2|gpu:1|\n\
                     node3|gpu|mixed|1/1/0/2|2048|gpu:2|gpu:1|\n\
                     node4|batch*|idle|0/2/0/2|4096|gpu:2|gpu:0|\n\
                     node4|gpu|idle|0/2/0/2|4096|gpu:2|gpu:0|\n\
                     garbage\n";
        let p = parse_partitions(scontrol, sinfo);
        assert_eq!(p.len(), 3);
        assert!(p[0].default && p[0].up);
        assert_eq!(
            (p[0].free_nodes, p[0].total_nodes, p[0].gpus_per_node()),
            (4, 4, 2),
            "MIXED nodes with free CPUs count as free"
        );
        assert_eq!(p[0].node_gpus, [2, 2], "GPUs on 2 of 4 nodes");
        assert_eq!((p[0].gpus_total(), p[0].free_gpus), (4, 3));
        assert_eq!(
            (0..4).map(|g| p[0].nodes_with_gpus(g)).collect::<Vec<_>>(),
            [4, 2, 2, 0]
        );
        assert_eq!(p[0].max_time_secs, Some(8 * 3600));
        assert_eq!(p[0].default_time_secs, Some(3600));
        assert_eq!(
            p[1].allow_groups.as_deref(),
            Some(&["hpc".to_owned(), "staff".to_owned()][..])
        );
        assert_eq!(p[1].max_nodes, Some(1));
        assert_eq!((p[1].free_nodes, p[1].gpus_per_node()), (2, 0));
        assert!(!p[2].up);
        assert_eq!((p[2].max_nodes, p[2].max_time_secs), (None, None));
        assert_eq!((p[2].mem_mb_per_node, p[2].gpus_per_node()), (2048, 2));
        assert_eq!(p[2].free_gpus, 3);
    }

    #[test]
    fn gres_and_gres_used() {
        for (gres, gpus) in [
            ("gpu:2", 2),
            ("gpu:a100:4(S:0-1)", 4),
            ("gpu:2,shard:8", 2),
            ("gpu:0", 0),
            ("(null)", 0),
            ("", 0),
            ("gpu:1(IDX:0)", 1),
            ("gpu:a100:2(IDX:0,2),gpu:v100:1(IDX:3)", 3),
            ("shard:8,gpu:tesla:1(IDX:N/A)", 1),
            ("mps:100,gpumem:4G", 0),
            ("gpu", 1),
        ] {
            assert_eq!(gpu_count(gres), gpus, "{gres}");
        }
        // Taken GPUs leave a node free (CPUs) but not its GPUs; nodes that cannot run a job
        // count for neither.
        let scontrol = "PartitionName=gpu Default=NO State=UP TotalNodes=5\n";
        let sinfo = "node3|gpu|mixed|1/1/0/2|2048|gpu:2|gpu:2(IDX:0-1)|\n\
                     node4|gpu|allocated|2/0/0/2|2048|gpu:2|gpu:1(IDX:0)|\n\
                     node5|gpu|drained|0/0/2/2|2048|gpu:2|gpu:0|\n\
                     node6|gpu|idle*|0/2/0/2|2048|gpu:2|gpu:0|\n\
                     node7|gpu|idle|0/2/0/2|2048|gpu:4|gpu:0|\n";
        let p = &parse_partitions(scontrol, sinfo)[0];
        assert_eq!((p.free_nodes, p.free_gpus), (2, 4));
        assert_eq!((p.gpus_total(), p.gpus_per_node()), (12, 4));
        assert_eq!((p.nodes_with_gpus(2), p.nodes_with_gpus(3)), (5, 1));
    }

    #[test]
    fn reservations_and_test_only() {
        let out = "ReservationName=nbtest StartTime=2026-12-02T07:35:20 EndTime=2026-12-02T08:35:20 Nodes=node1 PartitionName=(null) Users=root,alice Groups=(null) Accounts=(null) State=ACTIVE\n";
        let r = parse_reservations(out);
        assert_eq!(r[0].users, ["root", "alice"]);
        assert!(r[0].groups.is_empty() && r[0].partition.is_none());
        assert!(parse_reservations("No reservations in the system\n").is_empty());

        let fits = parse_test_only("sbatch: Job 2 to start at 2026-11-26T11:20:16 using 2 processors on nodes node[1-2] in partition batch\n");
        assert_eq!(
            fits,
            TestOnly::Fits {
                start: "2026-11-26T11:20:16".into(),
                nodes: "node[1-2]".into(),
                partition: "batch".into()
            }
        );
        // With SLURM_TIME_FORMAT (as the estimate asks): the offset stays with the time.
        let with_offset = parse_test_only("sbatch: Job 3 to start at 2026-12-07T12:17:10+0100 using 1 processors on nodes node1 in partition batch\n");
        let TestOnly::Fits { start, nodes, .. } = with_offset else {
            panic!("{with_offset:?}")
        };
        assert_eq!(
            (start.as_str(), nodes.as_str()),
            ("2026-12-07T12:17:10+0100", "node1")
        );
        assert!(has_come(&start));
        assert_eq!(standard_form(&start), "2026-12-07T12:17:10");
        assert_eq!(standard_form("N/A"), "N/A");
        let line =
            "16|PENDING|Resources|n/a||batch|2026-11-26T14:05:00-0500|10:00|2|10:00|2|1G|N/A\n";
        let start = parse_squeue(line)[0].start.clone().unwrap();
        assert_eq!(
            SlurmTime::parse(&start)
                .unwrap()
                .short(time::macros::datetime!(2026-11-26 19:00 UTC)),
            "14:05"
        );
        assert_eq!(
            parse_test_only("allocation failure: Node count specification invalid\n"),
            TestOnly::Refused("Node count specification invalid".into())
        );
        assert_eq!(
            slurm_error("sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)\n"),
            "Unable to contact slurm controller (connect failure)"
        );
        assert!(controller_unreachable(
            "slurm_load_jobs error: Unable to contact slurm controller (connect failure)"
        ));
    }

    #[test]
    fn words_for_states() {
        assert_eq!(pending_reason("Resources"), "waiting for resources");
        assert!(
            end_reason("TIMEOUT", "TimeLimit", "0:0", "00:01:00").contains("time limit (00:01:00)")
        );
        assert_eq!(
            end_reason("FAILED", "NonZeroExitCode", "3:0", ""),
            "The job failed with exit code 3 (Slurm's reason: NonZeroExitCode)."
        );
    }

    #[test]
    fn slurm_times() {
        use time::macros::datetime;
        // Slurm in UTC+1: 23:30 there on the 26th is 22:30 UTC.
        let t = SlurmTime::parse("2026-11-26T23:30:00+0100").unwrap();
        assert!(t.has_come(datetime!(2026-11-26 22:30 UTC)));
        assert!(!t.has_come(datetime!(2026-11-26 22:29:59 UTC)));
        // "Today" is Slurm's day: 23:10 UTC on the 26th is already the 27th in UTC+1 …
        assert_eq!(t.short(datetime!(2026-11-26 22:00 UTC)), "23:30");
        assert_eq!(t.short(datetime!(2026-11-26 23:10 UTC)), "2026-11-26 23:30");
        // … and in UTC-5 the 26th lasts until 05:00 UTC on the 27th.
        let west = SlurmTime::parse("2026-11-26T23:30:00-0500").unwrap();
        assert_eq!(west.short(datetime!(2026-11-27 04:59 UTC)), "23:30");
        assert!(!west.has_come(datetime!(2026-11-27 04:29 UTC)));
        assert!(west.has_come(datetime!(2026-11-27 04:30 UTC)));
        // Slurm's standard form (no offset): the date is always shown, "now" never assumed.
        let plain = SlurmTime::parse("2026-11-26T14:05:00").unwrap();
        assert_eq!(
            plain.short(datetime!(2026-11-26 14:00 UTC)),
            "2026-11-26 14:05"
        );
        assert!(!plain.has_come(datetime!(2030-01-01 0:00 UTC)));
        // Not a time: shown as it is.
        for text in [
            "N/A",
            "Unknown",
            "",
            "2026-11-26T14:05:00+01",
            "2026-13-01T00:00:00",
        ] {
            assert_eq!(SlurmTime::parse(text), None, "{text}");
        }
        assert_eq!(short_time("N/A"), "N/A");
        // The real clock: a time just printed for now is today and has come.
        let now = time::OffsetDateTime::now_utc();
        let printed = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+0000",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        );
        assert!(has_come(&printed));
        assert_eq!(short_time(&printed), printed[11..16]);
    }
}
