//! Tracking every job with one `squeue` per poll interval, whatever the number of servers:
//! one background task asks about all tracked jobs at once and keeps the answer; `poll`,
//! `describe` and waiting starts read it (a watch channel says a new answer is in).
//!
//! A job seen in a final state (or no longer known) is looked up once with `scontrol show
//! job -o` for its reason and exit code, and the `ended` signal changes, so that the hub
//! learns of it at once rather than at its own poll interval. When the controller does not
//! answer, every job is "unknown" (never ended) until it answers again; the task just goes on
//! asking.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::slurm::commands::Commands;
use crate::slurm::parse::{
    controller_unreachable, end_reason, is_final_state, parse_kv, parse_squeue, slurm_error,
    JobInfo, SQUEUE_FORMAT,
};
use crate::{lock, BackendMetric, MetricKind};

/// A burst of new jobs shares one query: the task waits this long after a wake-up.
const COALESCE: Duration = Duration::from_millis(250);
/// Ended jobs are forgotten after this long.
const KEEP_ENDED: Duration = Duration::from_secs(3600);

/// What the tracker knows about one job.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum View {
    /// No answer about it yet.
    Unseen,
    /// In the queue or running (`at`: when squeue said so). Boxed: an answer is far larger
    /// than the other views.
    Queued { info: Box<JobInfo>, at: SystemTime },
    /// Gone; `reason` in plain words, one line.
    Ended { state: String, reason: String },
}

struct Entry {
    view: View,
    ended_at: Option<Instant>,
}

/// How the queries went, for `/hub/metrics`.
#[derive(Default)]
struct PollStats {
    answered: u64,
    failed: u64,
    seconds: f64,
    last_seconds: f64,
}

struct Inner {
    commands: Commands,
    interval: Duration,
    jobs: Mutex<HashMap<String, Entry>>,
    /// Why the last query failed (`None`: it worked).
    unreachable: Mutex<Option<String>>,
    stats: Mutex<PollStats>,
    wake: Arc<Notify>,
    rounds: watch::Sender<u64>,
    /// Changes after a round that saw jobs end.
    ended: watch::Sender<u64>,
}

/// The shared tracker (cheap to clone).
#[derive(Clone)]
pub(crate) struct Tracker {
    inner: Arc<Inner>,
    started: Arc<std::sync::Once>,
}

impl Tracker {
    pub fn new(commands: Commands, interval: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                commands,
                interval,
                jobs: Mutex::default(),
                unreachable: Mutex::default(),
                stats: Mutex::default(),
                wake: Arc::new(Notify::new()),
                rounds: watch::channel(0).0,
                ended: watch::channel(0).0,
            }),
            started: Arc::new(std::sync::Once::new()),
        }
    }

    /// Starts tracking `job_id` (no-op when tracked) and makes the next query come soon.
    pub fn track(&self, job_id: &str) {
        self.started.call_once(|| {
            tokio::spawn(run(
                Arc::downgrade(&self.inner),
                Arc::clone(&self.inner.wake),
            ));
        });
        let mut jobs = lock(&self.inner.jobs);
        let entry = jobs.entry(job_id.to_owned()).or_insert(Entry {
            view: View::Unseen,
            ended_at: None,
        });
        let unseen = entry.view == View::Unseen;
        drop(jobs);
        if unseen {
            self.inner.wake.notify_one();
        }
    }

    pub fn untrack(&self, job_id: &str) {
        lock(&self.inner.jobs).remove(job_id);
    }

    pub fn view(&self, job_id: &str) -> Option<View> {
        lock(&self.inner.jobs).get(job_id).map(|e| e.view.clone())
    }

    /// Why the controller could not be asked last time (`None`: it answered).
    pub fn unreachable(&self) -> Option<String> {
        lock(&self.inner.unreachable).clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.rounds.subscribe()
    }

    /// Changes whenever a round saw tracked jobs end.
    pub fn subscribe_ended(&self) -> watch::Receiver<u64> {
        self.inner.ended.subscribe()
    }

    /// Waits (up to `timeout`) for a query that answered or failed after now.
    pub async fn next_round(&self, timeout: Duration) {
        let mut rx = self.subscribe();
        rx.borrow_and_update();
        let _ = tokio::time::timeout(timeout, rx.changed()).await;
    }

    pub fn interval(&self) -> Duration {
        self.inner.interval
    }

    /// The poller's figures: queries answered and failed, time spent in them, whether the
    /// controller answers, and the tracked jobs by Slurm state.
    pub fn metrics(&self) -> Vec<BackendMetric> {
        let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
        for entry in lock(&self.inner.jobs).values() {
            let state = match &entry.view {
                View::Unseen => "UNSEEN".to_owned(),
                View::Queued { info, .. } => info.state.clone(),
                View::Ended { .. } => "ENDED".to_owned(),
            };
            *by_state.entry(state).or_default() += 1;
        }
        let stats = lock(&self.inner.stats);
        let one = |v: f64| vec![(Vec::new(), v)];
        vec![
            BackendMetric {
                name: "nbhub_slurm_polls_total",
                help:
                    "squeue queries of the job poller (one per interval for every job), by result",
                kind: MetricKind::Counter,
                samples: vec![
                    (
                        vec![("result", "answered".to_owned())],
                        stats.answered as f64,
                    ),
                    (vec![("result", "failed".to_owned())], stats.failed as f64),
                ],
            },
            BackendMetric {
                name: "nbhub_slurm_poll_seconds_total",
                help: "Time spent in the job poller's squeue queries",
                kind: MetricKind::Counter,
                samples: one(stats.seconds),
            },
            BackendMetric {
                name: "nbhub_slurm_last_poll_seconds",
                help: "How long the last squeue query of the job poller took",
                kind: MetricKind::Gauge,
                samples: one(stats.last_seconds),
            },
            BackendMetric {
                name: "nbhub_slurm_controller_up",
                help: "1 when the last query reached Slurm's controller, 0 when it failed",
                kind: MetricKind::Gauge,
                samples: one(if self.unreachable().is_none() {
                    1.0
                } else {
                    0.0
                }),
            },
            BackendMetric {
                name: "nbhub_slurm_jobs",
                help: "Jobs of user servers the poller tracks, by Slurm state (UNSEEN: not yet \
                       answered for; ENDED: gone, kept an hour for their end reason)",
                kind: MetricKind::Gauge,
                samples: by_state
                    .into_iter()
                    .map(|(state, n)| (vec![("state", state)], n as f64))
                    .collect(),
            },
        ]
    }
}

/// The background task: one query per interval (sooner for new jobs), until the spawner
/// is dropped.
async fn run(weak: Weak<Inner>, wake: Arc<Notify>) {
    let mut last = Instant::now()
        .checked_sub(Duration::from_secs(3600))
        .unwrap_or_else(Instant::now);
    loop {
        let Some(interval) = weak.upgrade().map(|inner| inner.interval) else {
            return;
        };
        // No strong reference while waiting, so that the spawner can go away.
        let woken = tokio::select! {
            _ = wake.notified() => true,
            _ = tokio::time::sleep_until(last + interval) => false,
        };
        if woken {
            tokio::time::sleep_until((last + COALESCE).max(Instant::now() + COALESCE / 5)).await;
        }
        let Some(inner) = weak.upgrade() else { return };
        last = Instant::now();
        inner.round().await;
        inner.rounds.send_modify(|n| *n += 1);
    }
}

impl Inner {
    async fn round(&self) {
        let ids: Vec<String> = {
            let mut jobs = lock(&self.jobs);
            jobs.retain(|_, e| e.ended_at.is_none_or(|t| t.elapsed() < KEEP_ENDED));
            jobs.iter()
                .filter(|(_, e)| !matches!(e.view, View::Ended { .. }))
                .map(|(id, _)| id.clone())
                .collect()
        };
        if ids.is_empty() {
            return;
        }
        let list = ids.join(",");
        let asked = Instant::now();
        let mut out = self
            .commands
            .query_times(
                "squeue",
                &["-h", "-t", "all", "-j", &list, "-o", SQUEUE_FORMAT],
            )
            .await;
        // One unknown id (purged long ago) makes the whole -j query fail: ask for all jobs.
        if matches!(&out, Ok(o) if !o.ok && o.stderr.contains("Invalid job id")) {
            out = self
                .commands
                .query_times("squeue", &["-h", "-t", "all", "-o", SQUEUE_FORMAT])
                .await;
        }
        {
            let mut stats = lock(&self.stats);
            let took = asked.elapsed().as_secs_f64();
            stats.seconds += took;
            stats.last_seconds = took;
            match &out {
                Ok(o) if o.ok => stats.answered += 1,
                _ => stats.failed += 1,
            }
        }
        let out = match out {
            Ok(o) if o.ok => o,
            Ok(o) => {
                let why = if controller_unreachable(&o.stderr) {
                    "Slurm's controller does not answer".to_owned()
                } else {
                    format!("squeue failed: {}", slurm_error(&o.stderr))
                };
                tracing::warn!(reason = %why, "could not ask Slurm about jobs");
                *lock(&self.unreachable) = Some(why);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not run squeue");
                *lock(&self.unreachable) = Some(e.to_string());
                return;
            }
        };
        *lock(&self.unreachable) = None;
        let now = SystemTime::now();
        let seen: HashMap<String, JobInfo> = parse_squeue(&out.stdout)
            .into_iter()
            .map(|j| (j.id.clone(), j))
            .collect();
        let mut ended = Vec::new();
        {
            let mut jobs = lock(&self.jobs);
            for id in &ids {
                let Some(entry) = jobs.get_mut(id) else {
                    continue;
                };
                match seen.get(id) {
                    Some(info) if !info.is_final() => {
                        entry.view = View::Queued {
                            info: Box::new(info.clone()),
                            at: now,
                        }
                    }
                    other => ended.push((id.clone(), other.cloned())),
                }
            }
        }
        let any_ended = !ended.is_empty();
        for (id, info) in ended {
            let (state, reason) = self.end_of(&id, info.as_ref()).await;
            tracing::info!(job = %id, %state, %reason, "Slurm job ended");
            if let Some(entry) = lock(&self.jobs).get_mut(&id) {
                entry.view = View::Ended { state, reason };
                entry.ended_at = Some(Instant::now());
            }
        }
        if any_ended {
            self.ended.send_modify(|n| *n += 1);
        }
    }

    /// Looks a job that left the queue up once: its final state, and why it ended in plain
    /// words (one line; the job's last lines are `SlurmSpawner::last_output`'s).
    async fn end_of(&self, id: &str, info: Option<&JobInfo>) -> (String, String) {
        let record = match self
            .commands
            .query("scontrol", &["show", "job", "-o", id])
            .await
        {
            Ok(o) if o.ok => Some(parse_kv(o.stdout.lines().next().unwrap_or(""))),
            _ => None,
        };
        let get = |k: &str| record.as_ref().and_then(|r| r.get(k)).cloned();
        let state = get("JobState")
            .filter(|s| is_final_state(s))
            .or_else(|| info.map(|i| i.state.clone()))
            .unwrap_or_else(|| "GONE".to_owned());
        let reason = if state == "GONE" {
            format!("Slurm no longer knows job {id}: it ended a while ago.")
        } else {
            end_reason(
                &state,
                &get("Reason").unwrap_or_default(),
                &get("ExitCode").unwrap_or_default(),
                &get("TimeLimit")
                    .or_else(|| info.map(|i| i.time_limit.clone()))
                    .unwrap_or_default(),
            )
        };
        (state, reason)
    }
}
