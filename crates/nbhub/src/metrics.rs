//! The metrics registry: the histograms the hub records, with JupyterHub's names
//! (`jupyterhub_…`) so that a site's dashboards and alerts carry over, and the Prometheus text
//! format they are written in. Histograms are recorded where things happen (the supervisor,
//! the login pages, every request); gauges (users, running servers) are counted when
//! Prometheus asks, by the handler of `/hub/metrics` (`api/metrics.rs`).
//!
//! The text is written here rather than by the `prometheus-client` crate: that crate writes
//! OpenMetrics (its own content type, `_total` appended to counter names, `# EOF`), which
//! would rename the spawner's counters and change what JupyterHub's scrapers and dashboards
//! read; JupyterHub serves the classic text format 0.0.4, and so does nbhub. Recording costs a
//! lock and a map lookup with no allocation for a series seen before (`Histogram::observe`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Prometheus' default buckets: requests and quick operations.
const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// JupyterHub's spawn buckets: spawns take a while (a batch job may queue for minutes).
const SPAWN_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0,
];

/// One histogram per label set, each with cumulative bucket counts, a sum and a count.
pub struct Histogram {
    name: &'static str,
    help: &'static str,
    label_names: &'static [&'static str],
    /// Upper bounds, ascending; `+Inf` is always added when rendered.
    buckets: std::borrow::Cow<'static, [f64]>,
    /// Keyed by the label values joined with [`SEP`].
    series: Mutex<BTreeMap<String, Series>>,
}

/// Joins label values into a series key (a control character no label value holds).
const SEP: char = '\u{1f}';

#[derive(Clone, Default)]
struct Series {
    /// Observations at or below each bucket's bound (not yet cumulative).
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    const fn new(
        name: &'static str,
        help: &'static str,
        label_names: &'static [&'static str],
        buckets: &'static [f64],
    ) -> Self {
        Histogram {
            name,
            help,
            label_names,
            buckets: std::borrow::Cow::Borrowed(buckets),
            series: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Series>> {
        self.series.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes a label set appear with zero counts, as JupyterHub does for every status, so that
    /// dashboards and alerts see the series before its first event.
    fn touch(&self, labels: &[&str]) {
        let n = self.buckets.len();
        self.lock().entry(key(labels)).or_insert_with(|| Series {
            counts: vec![0; n],
            ..Series::default()
        });
    }

    pub fn observe(&self, labels: &[&str], value: Duration) {
        thread_local! {
            /// The series key is built here, so that a series seen before costs no allocation.
            static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        let secs = value.as_secs_f64();
        let bucket = self.buckets.iter().position(|b| secs <= *b);
        let n = self.buckets.len();
        let mut series = self.lock();
        KEY.with_borrow_mut(|k| {
            k.clear();
            for (i, label) in labels.iter().enumerate() {
                if i > 0 {
                    k.push(SEP);
                }
                k.push_str(label);
            }
            if !series.contains_key(k.as_str()) {
                let fresh = Series {
                    counts: vec![0; n],
                    ..Series::default()
                };
                series.insert(k.clone(), fresh);
            }
            if let Some(s) = series.get_mut(k.as_str()) {
                if let Some(i) = bucket {
                    s.counts[i] += 1;
                }
                s.sum += secs;
                s.count += 1;
            }
        });
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} histogram", self.name);
        for (values, s) in self.lock().iter() {
            let labels: Vec<String> = self
                .label_names
                .iter()
                .zip(values.split(SEP))
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            let joined = labels.join(",");
            let with = |extra: &str| {
                if joined.is_empty() {
                    format!("{{{extra}}}")
                } else {
                    format!("{{{joined},{extra}}}")
                }
            };
            let mut cumulative = 0;
            for (bound, c) in self.buckets.iter().zip(&s.counts) {
                cumulative += c;
                let _ = writeln!(
                    out,
                    "{}_bucket{} {cumulative}",
                    self.name,
                    with(&format!("le=\"{bound:?}\""))
                );
            }
            let _ = writeln!(
                out,
                "{}_bucket{} {}",
                self.name,
                with("le=\"+Inf\""),
                s.count
            );
            let plain = if joined.is_empty() {
                String::new()
            } else {
                format!("{{{joined}}}")
            };
            let _ = writeln!(out, "{}_sum{plain} {}", self.name, s.sum);
            let _ = writeln!(out, "{}_count{plain} {}", self.name, s.count);
        }
    }
}

/// Bucket bounds a site gives: numbers, ascending, none negative (`+Inf` may end them).
pub fn check_buckets(buckets: &[f64]) -> Result<(), String> {
    if buckets.iter().any(|b| b.is_nan() || *b < 0.0) {
        return Err("bucket bounds are seconds: numbers of 0 or more".into());
    }
    if buckets.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("bucket bounds must ascend, each once: {buckets:?}"));
    }
    Ok(())
}

/// JupyterHub's way of setting the buckets: an environment variable of comma-separated
/// numbers (`inf` allowed). `None` when unset or blank.
pub fn buckets_from_env(name: &str) -> Option<Result<Vec<f64>, String>> {
    let raw = std::env::var(name).ok()?;
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let parsed: Result<Vec<f64>, String> = raw
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<f64>()
                .map_err(|_| format!("{name}: {p:?} is not a number"))
        })
        .collect();
    Some(parsed.and_then(|b| {
        check_buckets(&b)
            .map(|()| b)
            .map_err(|e| format!("{name}: {e}"))
    }))
}

fn key(labels: &[&str]) -> String {
    labels.join(&SEP.to_string())
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Every histogram the hub records.
pub struct Metrics {
    pub request_duration: Histogram,
    pub server_spawn_duration: Histogram,
    pub server_stop: Histogram,
    pub server_poll: Histogram,
    pub check_routes: Histogram,
    pub proxy_poll: Histogram,
    pub hub_startup: Histogram,
    pub login_duration: Histogram,
    pub spawn_queue_wait: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// One login attempt (password or identity provider), by outcome.
    pub fn observe_login(&self, succeeded: bool, took: std::time::Duration) {
        let outcome = if succeeded { "success" } else { "failure" };
        self.login_duration.observe(&[outcome], took);
    }

    pub fn new() -> Self {
        Self::with_buckets(&[], &[])
    }

    /// The registry with the spawn and stop histograms' buckets a site chose (JupyterHub's
    /// `JUPYTERHUB_SERVER_SPAWN_DURATION_SECONDS_BUCKETS` and `…_STOP_…`); empty: the defaults.
    /// The bounds are checked by [`check_buckets`]; `+Inf` among them is dropped (it is always
    /// there).
    pub fn with_buckets(spawn: &[f64], stop: &[f64]) -> Self {
        let mut m = Self::default_buckets();
        let finite =
            |b: &[f64]| -> Vec<f64> { b.iter().copied().filter(|x| x.is_finite()).collect() };
        if !spawn.is_empty() {
            m.server_spawn_duration.buckets = finite(spawn).into();
        }
        if !stop.is_empty() {
            m.server_stop.buckets = finite(stop).into();
        }
        m.touch_known_series();
        m
    }

    fn default_buckets() -> Self {
        Metrics {
            request_duration: Histogram::new(
                "jupyterhub_request_duration_seconds",
                "Request duration for all HTTP requests",
                &["method", "handler", "code"],
                DEFAULT_BUCKETS,
            ),
            server_spawn_duration: Histogram::new(
                "jupyterhub_server_spawn_duration_seconds",
                "Time taken for server spawning operation",
                &["status", "reason"],
                SPAWN_BUCKETS,
            ),
            server_stop: Histogram::new(
                "jupyterhub_server_stop_seconds",
                "Time taken for server stopping operation",
                &["status"],
                DEFAULT_BUCKETS,
            ),
            server_poll: Histogram::new(
                "jupyterhub_server_poll_duration_seconds",
                "Time taken to poll if server is running",
                &["status"],
                DEFAULT_BUCKETS,
            ),
            check_routes: Histogram::new(
                "jupyterhub_check_routes_duration_seconds",
                "Time taken to validate all routes in proxy",
                &[],
                DEFAULT_BUCKETS,
            ),
            proxy_poll: Histogram::new(
                "jupyterhub_proxy_poll_duration_seconds",
                "Duration for polling all routes from proxy",
                &[],
                DEFAULT_BUCKETS,
            ),
            hub_startup: Histogram::new(
                "jupyterhub_hub_startup_duration_seconds",
                "Time taken for Hub to start",
                &[],
                DEFAULT_BUCKETS,
            ),
            login_duration: Histogram::new(
                "jupyterhub_login_duration_seconds",
                "duration for all authentication attempts",
                &["status"],
                DEFAULT_BUCKETS,
            ),
            spawn_queue_wait: Histogram::new(
                "nbhub_spawn_queue_wait_seconds",
                "Time spawns waited in the spawn queue for their turn (beyond concurrent_spawn_limit)",
                &["status"],
                SPAWN_BUCKETS,
            ),
        }
    }

    /// The series JupyterHub shows before their first event.
    fn touch_known_series(&self) {
        let m = self;
        for status in ["started", "cancelled"] {
            m.spawn_queue_wait.touch(&[status]);
        }
        for status in ["success", "failure", "error"] {
            m.server_spawn_duration.touch(&[status, ""]);
        }
        for reason in ["throttled", "too-many-users", "already-pending"] {
            m.server_spawn_duration.touch(&["failure", reason]);
        }
        for status in ["success", "failure"] {
            m.server_stop.touch(&[status]);
            m.login_duration.touch(&[status]);
        }
        for status in ["running", "stopped"] {
            m.server_poll.touch(&[status]);
        }
    }

    /// Writes every histogram in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        for h in self.histograms() {
            h.render(out);
        }
    }

    fn histograms(&self) -> [&Histogram; 9] {
        [
            &self.request_duration,
            &self.server_spawn_duration,
            &self.server_stop,
            &self.server_poll,
            &self.check_routes,
            &self.proxy_poll,
            &self.hub_startup,
            &self.login_duration,
            &self.spawn_queue_wait,
        ]
    }
}

/// Writes one gauge; `samples` pairs rendered labels (`k="v"`, or `""`) with values.
pub fn gauge(out: &mut String, name: &str, help: &str, samples: &[(&str, i64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// Writes one of the spawner's own metrics (e.g. Slurm's queue).
pub fn backend_metric(out: &mut String, m: &nbhub_spawner::BackendMetric) {
    let _ = writeln!(out, "# HELP {} {}", m.name, m.help);
    let _ = writeln!(out, "# TYPE {} {}", m.name, m.kind.as_str());
    for (labels, value) in &m.samples {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
            .collect();
        if labels.is_empty() {
            let _ = writeln!(out, "{} {value}", m.name);
        } else {
            let _ = writeln!(out, "{}{{{}}} {value}", m.name, labels.join(","));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_renders_cumulative_buckets_sum_and_count() {
        let h = Histogram::new("x_seconds", "help", &["status"], &[0.1, 1.0]);
        h.observe(&["ok"], Duration::from_millis(50));
        h.observe(&["ok"], Duration::from_millis(500));
        h.observe(&["ok"], Duration::from_secs(5));
        let mut out = String::new();
        h.render(&mut out);
        assert!(
            out.contains("x_seconds_bucket{status=\"ok\",le=\"0.1\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{status=\"ok\",le=\"1.0\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{status=\"ok\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("x_seconds_count{status=\"ok\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_sum{status=\"ok\"} 5.55"), "{out}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
