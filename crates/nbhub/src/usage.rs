//! The usage report (docs/usage.md): who used how much, per user, group, account or system,
//! over a date range — from the sessions the hub recorded (`db/usage.rs`) and, where Slurm
//! keeps accounting, the CPU and GPU figures `sacct` gave for their jobs
//! ([`collect_accounting`]). The admin page (`/hub/admin/usage`) and the REST API
//! (`GET /hub/api/usage`) both answer with [`report`], as JSON, HTML or [`to_csv`].
//!
//! What a session counts in a range `[from, to)`:
//! - `hours`: the time its server ran (from ready to the end, or to now while it runs) inside
//!   the range; a start that never became ready counts as a session with no hours;
//! - `node_hours`: `hours` × the nodes asked for;
//! - `cpu_hours`: from accounting only: the CPUs the job held × the seconds it ran, the share
//!   of the job inside the range (the job taken as ending when the session ended);
//! - `gpu_hours`: from accounting when the job has its figures (GPUs held × seconds run, the
//!   same share), else the GPUs per node asked for × nodes × `hours`;
//! - `accounted_sessions`: how many of the sessions had accounting's figures.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, Time, UtcOffset};

use crate::db::{self, usage::UsageRow, Db};

/// A report's range: `[from, to)`, microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub from: i64,
    pub to: i64,
}

/// A bad query parameter: which one, and why (the API answers 400 naming it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BadQuery {
    pub field: &'static str,
    pub message: String,
}

fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

/// `from` or `to` as given: a day (`2026-12-01`, UTC; `to`'s day is included) or a time in
/// RFC 3339.
fn parse_bound(field: &'static str, text: &str, end_of_day: bool) -> Result<i64, BadQuery> {
    let text = text.trim();
    let day_format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(day) = Date::parse(text, &day_format) {
        let day = if end_of_day {
            day.next_day().ok_or_else(|| BadQuery {
                field,
                message: format!("{text} is out of range"),
            })?
        } else {
            day
        };
        return Ok(micros(day.with_time(Time::MIDNIGHT).assume_utc()));
    }
    OffsetDateTime::parse(text, &Rfc3339)
        .map(micros)
        .map_err(|_| BadQuery {
            field,
            message: format!(
                "{text:?} is not a date (YYYY-MM-DD, e.g. 2026-12-01) or a time in RFC 3339 (e.g. 2026-12-01T08:00:00Z)"
            ),
        })
}

/// The range of `from` and `to` (each optional): by default from the first day of this month
/// (UTC) to the end of today.
pub fn parse_range(
    from: Option<&str>,
    to: Option<&str>,
    now: OffsetDateTime,
) -> Result<Range, BadQuery> {
    let today = now.to_offset(UtcOffset::UTC).date();
    let from = match from.filter(|f| !f.trim().is_empty()) {
        Some(f) => parse_bound("from", f, false)?,
        None => micros(
            today
                .replace_day(1)
                .unwrap_or(today)
                .with_time(Time::MIDNIGHT)
                .assume_utc(),
        ),
    };
    let to = match to.filter(|t| !t.trim().is_empty()) {
        Some(t) => parse_bound("to", t, true)?,
        None => micros(
            today
                .next_day()
                .unwrap_or(today)
                .with_time(Time::MIDNIGHT)
                .assume_utc(),
        ),
    };
    if from >= to {
        return Err(BadQuery {
            field: "from",
            message: format!(
                "must be before to ({} is not before {})",
                db::format_timestamp(from),
                db::format_timestamp(to)
            ),
        });
    }
    Ok(Range { from, to })
}

/// What the totals are taken per.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum By {
    User,
    Group,
    Account,
    System,
}

impl By {
    pub const NAMES: &'static str = "user, group, account or system";

    pub fn parse(word: Option<&str>) -> Result<By, BadQuery> {
        match word.map(str::trim).unwrap_or("") {
            "" | "user" => Ok(By::User),
            "group" => Ok(By::Group),
            "account" => Ok(By::Account),
            "system" => Ok(By::System),
            other => Err(BadQuery {
                field: "by",
                message: format!("{other:?} is not one of {}", By::NAMES),
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            By::User => "user",
            By::Group => "group",
            By::Account => "account",
            By::System => "system",
        }
    }
}

/// The figures of some sessions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    pub sessions: u64,
    pub hours: f64,
    pub node_hours: f64,
    pub cpu_hours: f64,
    pub gpu_hours: f64,
    pub accounted_sessions: u64,
}

impl Totals {
    fn add(&mut self, other: &Totals) {
        self.sessions += other.sessions;
        self.hours += other.hours;
        self.node_hours += other.node_hours;
        self.cpu_hours += other.cpu_hours;
        self.gpu_hours += other.gpu_hours;
        self.accounted_sessions += other.accounted_sessions;
    }

    /// Rounded to 4 decimals (a third of a second of an hour) for people and files.
    fn rounded(mut self) -> Totals {
        let r = |x: f64| (x * 10_000.0).round() / 10_000.0;
        self.hours = r(self.hours);
        self.node_hours = r(self.node_hours);
        self.cpu_hours = r(self.cpu_hours);
        self.gpu_hours = r(self.gpu_hours);
        self
    }
}

/// Seconds of `[a, b)` inside `[from, to)` (microseconds in, seconds out).
fn overlap_secs(a: i64, b: i64, range: Range) -> f64 {
    let start = a.max(range.from);
    let end = b.min(range.to);
    if end > start {
        (end - start) as f64 / 1e6
    } else {
        0.0
    }
}

/// What one session counts in `range` (see the module's documentation); `now` ends a
/// session that still runs.
pub fn session_totals(row: &UsageRow, range: Range, now: i64) -> Totals {
    let end = row.ended.unwrap_or(now);
    let secs = row
        .ready
        .map_or(0.0, |ready| overlap_secs(ready, end, range));
    let hours = secs / 3600.0;
    let nodes = row.nodes.max(1) as f64;
    let mut t = Totals {
        sessions: 1,
        hours,
        node_hours: hours * nodes,
        gpu_hours: hours * nodes * row.gpus.max(0) as f64,
        ..Totals::default()
    };
    if let (Some(cpus), Some(elapsed), Some(_)) = (row.cpus, row.elapsed, row.accounted) {
        let elapsed = elapsed.max(0);
        // The job's run, taken as ending when the session ended.
        let share = if elapsed == 0 {
            0.0
        } else {
            overlap_secs(end - elapsed * 1_000_000, end, range) / elapsed as f64
        };
        let run_hours = elapsed as f64 * share / 3600.0;
        t.cpu_hours = cpus.max(0) as f64 * run_hours;
        t.gpu_hours = row.job_gpus.unwrap_or(0).max(0) as f64 * run_hours;
        t.accounted_sessions = 1;
    }
    t
}

/// A report: one line per key (sorted), and the total of every session once.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub by: By,
    pub from: String,
    pub to: String,
    pub rows: Vec<(String, Totals)>,
    pub total: Totals,
}

/// The keys a session counts under: its user, its account (`""`: the default one), its
/// system (`maintenance::DEFAULT_SYSTEM` on a hub without systems), or each group of its user
/// (`""`: in none) — so with `by=group` a session counts once per group, and the lines can
/// add up to more than the total.
fn keys_of<'a>(row: &'a UsageRow, by: By, groups: &'a HashMap<&str, Vec<&str>>) -> Vec<&'a str> {
    match by {
        By::User => vec![row.user.as_str()],
        By::Account => vec![row.account.as_str()],
        By::System if row.system.is_empty() => vec![crate::maintenance::DEFAULT_SYSTEM],
        By::System => vec![row.system.as_str()],
        By::Group => match groups.get(row.user.as_str()) {
            Some(gs) if !gs.is_empty() => gs.clone(),
            _ => vec![""],
        },
    }
}

/// The report of `rows` over `range` per `by`; `user_groups` are `(user, group)` pairs.
pub fn report(
    rows: &[UsageRow],
    user_groups: &[(String, String)],
    by: By,
    range: Range,
    now: i64,
) -> Report {
    let mut groups: HashMap<&str, Vec<&str>> = HashMap::new();
    for (user, group) in user_groups {
        groups
            .entry(user.as_str())
            .or_default()
            .push(group.as_str());
    }
    let mut lines: BTreeMap<&str, Totals> = BTreeMap::new();
    let mut total = Totals::default();
    for row in rows {
        let t = session_totals(row, range, now);
        total.add(&t);
        for key in keys_of(row, by, &groups) {
            lines.entry(key).or_default().add(&t);
        }
    }
    Report {
        by,
        from: db::format_timestamp(range.from),
        to: db::format_timestamp(range.to),
        rows: lines
            .into_iter()
            .map(|(k, t)| (k.to_owned(), t.rounded()))
            .collect(),
        total: total.rounded(),
    }
}

/// Reads the sessions of `range` and reports them.
pub async fn build(db: &Db, by: By, range: Range) -> Result<Report, sqlx::Error> {
    let rows = db::usage::overlapping(db, range.from, range.to).await?;
    let user_groups = if by == By::Group {
        db::usage::user_groups(db).await?
    } else {
        Vec::new()
    };
    Ok(report(&rows, &user_groups, by, range, db::now_micros()))
}

/// One CSV cell: quoted when it holds a separator, a quote or a line break; a text that a
/// spreadsheet would take for a formula (`=`, `+`, `-`, `@` first) gets a `'` in front.
fn csv_cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The report as CSV: a header naming the key (`user`, `group` …) and the figures, one line per
/// key; no total line, so that a column adds up to the report's total (but with `by=group`).
pub fn to_csv(report: &Report) -> String {
    let mut out = format!(
        "{},sessions,hours,node_hours,cpu_hours,gpu_hours,accounted_sessions\r\n",
        report.by.as_str()
    );
    for (key, t) in &report.rows {
        out.push_str(&format!(
            "{},{},{:.4},{:.4},{:.4},{:.4},{}\r\n",
            csv_cell(key),
            t.sessions,
            t.hours,
            t.node_hours,
            t.cpu_hours,
            t.gpu_hours,
            t.accounted_sessions
        ));
    }
    out
}

/// How far back ended sessions are still asked about: a job accounting does not know after
/// this long is left without figures.
pub const ACCOUNTING_HORIZON: Duration = Duration::from_secs(3 * 24 * 3600);
/// How many sessions one round asks about (per round, all systems together).
const ACCOUNTING_BATCH: i64 = 500;

/// What one round of [`collect_accounting`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// Sessions that got their figures.
    pub stored: usize,
    /// Sessions still waiting (their job not ended or not known yet, or the system failed).
    pub waiting: usize,
}

/// Asks the spawner's accounting (`sacct`, one query per system) about the ended sessions
/// that have a job and no figures yet, and stores the figures of the jobs that ended.
/// `no_accounting` holds the systems that keep none (they are not asked again while there).
pub async fn collect_accounting(
    db: &Db,
    spawner: &dyn nbhub_spawner::Spawner,
    no_accounting: &mut std::collections::HashSet<String>,
) -> Result<Collected, sqlx::Error> {
    let now = db::now_micros();
    let since = now - ACCOUNTING_HORIZON.as_micros() as i64;
    let rows = db::usage::unaccounted(db, since, ACCOUNTING_BATCH).await?;
    let mut per_system: BTreeMap<&str, Vec<&UsageRow>> = BTreeMap::new();
    for row in &rows {
        if !no_accounting.contains(&row.system) {
            per_system.entry(row.system.as_str()).or_default().push(row);
        }
    }
    let mut done = Collected::default();
    for (system, rows) in per_system {
        let ids: Vec<String> = rows.iter().filter_map(|r| r.job_id.clone()).collect();
        let figures = match spawner.job_accounting(system, &ids).await {
            Ok(Some(figures)) => figures,
            Ok(None) => {
                tracing::info!(
                    system,
                    "no Slurm accounting: usage has no CPU hours from sacct"
                );
                no_accounting.insert(system.to_owned());
                continue;
            }
            Err(e) => {
                tracing::warn!(system, error = %e, "could not read the jobs' accounting");
                done.waiting += rows.len();
                continue;
            }
        };
        for row in rows {
            let job = figures
                .iter()
                .find(|f| Some(&f.job_id) == row.job_id.as_ref() && f.ended);
            let Some(job) = job else {
                done.waiting += 1;
                continue;
            };
            let n = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
            db::usage::set_accounting(
                db,
                row.id,
                n(job.cpus),
                n(job.elapsed_secs),
                n(job.gpus),
                &job.account,
                now,
            )
            .await?;
            done.stored += 1;
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const H: i64 = 3_600_000_000;

    fn day(y: i32, m: u8, d: u8) -> i64 {
        micros(
            Date::from_calendar_date(y, time::Month::try_from(m).unwrap(), d)
                .unwrap()
                .with_time(Time::MIDNIGHT)
                .assume_utc(),
        )
    }

    #[test]
    fn ranges_take_days_or_times_and_refuse_the_rest_naming_the_parameter() {
        let now = datetime!(2026-12-07 21:00 UTC);
        assert_eq!(
            parse_range(None, None, now).unwrap(),
            Range {
                from: day(2026, 12, 1),
                to: day(2026, 12, 8)
            },
            "this month up to the end of today"
        );
        assert_eq!(
            parse_range(Some("2026-11-01"), Some("2026-11-30"), now).unwrap(),
            Range {
                from: day(2026, 11, 1),
                to: day(2026, 12, 1)
            },
            "to's day is included"
        );
        assert_eq!(
            parse_range(
                Some("2026-11-01T06:00:00+01:00"),
                Some("2026-11-01T07:00:00Z"),
                now
            )
            .unwrap(),
            Range {
                from: day(2026, 11, 1) + 5 * H,
                to: day(2026, 11, 1) + 7 * H
            }
        );
        for (from, to, field, words) in [
            ("2026-13-01", "", "from", "is not a date"),
            (
                "",
                "yesterday",
                "to",
                "\"yesterday\" is not a date (YYYY-MM-DD",
            ),
            ("2026-12-05", "2026-12-01", "from", "must be before to"),
            (
                "2026-12-01T10:00:00Z",
                "2026-12-01T09:00:00Z",
                "from",
                "must be before",
            ),
        ] {
            let err = parse_range(Some(from), Some(to), now).unwrap_err();
            assert_eq!(err.field, field, "{from} {to}: {err}");
            assert!(err.message.contains(words), "{from} {to}: {err}");
        }
        assert_eq!(By::parse(None).unwrap(), By::User);
        assert_eq!(By::parse(Some("account")).unwrap(), By::Account);
        assert_eq!(By::parse(Some("node")).unwrap_err().field, "by");
    }

    fn session(
        user: &str,
        account: &str,
        system: &str,
        ready: i64,
        ended: Option<i64>,
    ) -> UsageRow {
        UsageRow {
            user: user.into(),
            account: account.into(),
            system: system.into(),
            nodes: 1,
            started: ready - 60_000_000,
            ready: Some(ready),
            ended,
            job_id: Some("1".into()),
            ..Default::default()
        }
    }

    #[test]
    fn hours_are_the_servers_time_inside_the_range() {
        let range = Range {
            from: day(2026, 12, 1),
            to: day(2026, 12, 2),
        };
        let t0 = range.from;
        // Inside: 2 h on 2 nodes with 1 GPU per node asked.
        let mut a = session("alice", "p1", "", t0 + H, Some(t0 + 3 * H));
        a.nodes = 2;
        a.gpus = 1;
        let t = session_totals(&a, range, t0 + 30 * H);
        assert_eq!(
            (t.sessions, t.hours, t.node_hours, t.gpu_hours),
            (1, 2.0, 4.0, 4.0)
        );
        assert_eq!((t.cpu_hours, t.accounted_sessions), (0.0, 0));
        // Across the start of the range: only the part inside.
        let b = session("bob", "p1", "", t0 - 2 * H, Some(t0 + H));
        assert_eq!(session_totals(&b, range, t0 + 30 * H).hours, 1.0);
        // Still running: up to now.
        let c = session("carol", "", "", t0 + 20 * H, None);
        assert_eq!(session_totals(&c, range, t0 + 21 * H).hours, 1.0);
        // Never ready: a session without hours.
        let mut d = session("dave", "", "", t0 + H, Some(t0 + 2 * H));
        d.ready = None;
        let t = session_totals(&d, range, t0 + 30 * H);
        assert_eq!((t.sessions, t.hours), (1, 0.0));
    }

    #[test]
    fn accounting_figures_give_cpu_and_gpu_hours_with_the_share_in_the_range() {
        let range = Range {
            from: day(2026, 12, 1),
            to: day(2026, 12, 2),
        };
        let t0 = range.from;
        let mut a = session("alice", "p1", "", t0 + H, Some(t0 + 3 * H));
        a.gpus = 4;
        (a.cpus, a.elapsed, a.job_gpus, a.accounted) = (Some(8), Some(7200), Some(2), Some(1));
        let t = session_totals(&a, range, t0 + 30 * H);
        assert_eq!(
            (t.cpu_hours, t.gpu_hours, t.accounted_sessions),
            (16.0, 4.0, 1)
        );
        // A job of 4 h ending 1 h into the range: a quarter of it counts.
        let mut b = session("bob", "p1", "", t0 - 3 * H, Some(t0 + H));
        (b.cpus, b.elapsed, b.job_gpus, b.accounted) = (Some(2), Some(4 * 3600), Some(0), Some(1));
        let t = session_totals(&b, range, t0 + 30 * H);
        assert_eq!((t.hours, t.cpu_hours), (1.0, 2.0));
    }

    #[test]
    fn lines_per_key_add_up_to_the_total_but_groups_overlap() {
        let range = Range {
            from: day(2026, 12, 1),
            to: day(2026, 12, 2),
        };
        let t0 = range.from;
        let rows = vec![
            session("alice", "p1", "alpha", t0 + H, Some(t0 + 2 * H)),
            session("alice", "p2", "beta", t0 + H, Some(t0 + 3 * H)),
            session("bob", "p1", "alpha", t0 + H, Some(t0 + 4 * H)),
            session("carol", "", "", t0 + H, Some(t0 + 5 * H)),
        ];
        let groups = vec![
            ("alice".to_owned(), "chem".to_owned()),
            ("alice".to_owned(), "phys".to_owned()),
            ("bob".to_owned(), "phys".to_owned()),
        ];
        let now = t0 + 30 * H;
        let per = |by| {
            report(&rows, &groups, by, range, now)
                .rows
                .into_iter()
                .map(|(k, t)| (k, t.hours))
                .collect::<Vec<_>>()
        };
        let s = |k: &str, h: f64| (k.to_owned(), h);
        assert_eq!(
            per(By::User),
            [s("alice", 3.0), s("bob", 3.0), s("carol", 4.0)]
        );
        assert_eq!(per(By::Account), [s("", 4.0), s("p1", 4.0), s("p2", 2.0)]);
        assert_eq!(
            per(By::System),
            [s("alpha", 4.0), s("beta", 2.0), s("default", 4.0)]
        );
        assert_eq!(
            per(By::Group),
            [s("", 4.0), s("chem", 3.0), s("phys", 6.0)],
            "alice counts in both her groups; carol in none"
        );
        let r = report(&rows, &groups, By::Account, range, now);
        assert_eq!((r.total.sessions, r.total.hours), (4, 10.0));
        let csv = to_csv(&r);
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("account,sessions,hours,node_hours,cpu_hours,gpu_hours,accounted_sessions")
        );
        let hours: f64 = lines
            .map(|l| l.split(',').nth(2).unwrap().parse::<f64>().unwrap())
            .sum();
        assert_eq!(hours, r.total.hours, "the CSV adds up to the total");
        assert!(
            csv.contains("\r\n,1,4.0000,"),
            "the default account is an empty cell: {csv}"
        );
    }

    #[test]
    fn csv_cells_are_quoted_and_never_formulas() {
        assert_eq!(csv_cell("alice"), "alice");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_cell("-x,y"), "\"'-x,y\"");
    }
}
