//! Slurm maintenance reservations (`Flags=MAINT`): the windows in which a system's nodes run
//! no user job. A start whose run time would reach into one is refused before `sbatch`, with
//! the window, rather than left pending for hours. `scontrol show reservation -o` is asked
//! at most every [`MAINT_TTL`], with `SLURM_TIME_FORMAT`, so that the times carry their offset.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

use crate::slurm::commands::Commands;
use crate::slurm::parse::{nothing, parse_records, SlurmTime};

/// How long the list of maintenance reservations is reused.
pub(crate) const MAINT_TTL: Duration = Duration::from_secs(30);

/// One reservation with the `MAINT` flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MaintWindow {
    pub name: String,
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
    /// `None`: every node of the cluster (`Nodes=ALL`, or a list the hub cannot read).
    pub nodes: Option<BTreeSet<String>>,
    pub partition: Option<String>,
}

impl MaintWindow {
    /// Whether a job in `partition` (whose nodes are `partition_nodes`) running from `now`
    /// for `runtime` (`None`: no limit) would reach into this window on every node it could
    /// use. A window covering only some of the partition's nodes leaves the others to run it.
    pub fn blocks(
        &self,
        partition: &str,
        partition_nodes: &[String],
        now: OffsetDateTime,
        runtime: Option<Duration>,
    ) -> bool {
        let ends_before = runtime.is_some_and(|r| now + r <= self.start);
        if ends_before || self.end <= now {
            return false;
        }
        if self.partition.as_deref() == Some(partition) {
            return true;
        }
        match &self.nodes {
            None => true,
            Some(set) => {
                !partition_nodes.is_empty() && partition_nodes.iter().all(|n| set.contains(n))
            }
        }
    }

    /// `from 2026-12-08 06:00 to 12:00 UTC` (the end's date only when it differs).
    pub fn window(&self) -> String {
        let (s, e) = (
            self.start.to_offset(time::UtcOffset::UTC),
            self.end.to_offset(time::UtcOffset::UTC),
        );
        let day = |t: OffsetDateTime| {
            format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
        };
        let clock = |t: OffsetDateTime| format!("{:02}:{:02}", t.hour(), t.minute());
        let end = if s.date() == e.date() {
            clock(e)
        } else {
            format!("{} {}", day(e), clock(e))
        };
        format!("from {} {} to {end} UTC", day(s), clock(s))
    }
}

/// The maintenance reservations in `scontrol show reservation -o` output (with
/// `SLURM_TIME_FORMAT`). Reservations without the flag, or whose times carry no offset, are
/// left out: without an offset the hub cannot tell when they are.
pub(crate) fn parse_maint(out: &str) -> Vec<MaintWindow> {
    parse_records(out, "ReservationName")
        .into_iter()
        .filter(|r| {
            r.get("Flags")
                .is_some_and(|f| f.split(',').any(|flag| flag == "MAINT"))
        })
        .filter_map(|r| {
            let at = |k: &str| SlurmTime::parse(r.get(k)?)?.instant();
            let nodes = r.get("Nodes").map(String::as_str).unwrap_or("ALL");
            Some(MaintWindow {
                name: r.get("ReservationName")?.clone(),
                start: at("StartTime")?,
                end: at("EndTime")?,
                nodes: if nodes == "ALL" {
                    None
                } else {
                    expand_hostlist(nodes)
                },
                partition: r.get("PartitionName").filter(|p| !nothing(p)).cloned(),
            })
        })
        .collect()
}

/// `node[01-03,7],gpu1` → `node01 node02 node03 node7 gpu1`; `None` for what this simple
/// reader does not understand (several bracket groups in one name), which then counts as
/// every node (a maintenance window is better announced too widely than missed).
pub(crate) fn expand_hostlist(list: &str) -> Option<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let mut depth = 0u32;
    let items = list.split(|c: char| {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        c == ',' && depth == 0
    });
    for item in items.filter(|i| !i.is_empty()) {
        let Some(open) = item.find('[') else {
            out.insert(item.to_owned());
            continue;
        };
        let close = item.rfind(']')?;
        let (prefix, ranges, suffix) = (&item[..open], &item[open + 1..close], &item[close + 1..]);
        if ranges.contains('[') || suffix.contains('[') {
            return None;
        }
        for range in ranges.split(',') {
            let (lo, hi) = range.split_once('-').unwrap_or((range, range));
            let width = lo.len();
            let (a, b): (u64, u64) = (lo.parse().ok()?, hi.parse().ok()?);
            if b < a || b - a > 100_000 {
                return None;
            }
            for n in a..=b {
                out.insert(format!("{prefix}{n:0width$}{suffix}"));
            }
        }
    }
    Some(out)
}

/// The maintenance windows of one cluster, asked at most every [`MAINT_TTL`].
pub(crate) struct MaintCache {
    commands: Commands,
    cached: tokio::sync::Mutex<Option<(Instant, Arc<Vec<MaintWindow>>)>>,
}

impl MaintCache {
    pub fn new(commands: Commands) -> Self {
        Self {
            commands,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// The windows now; when Slurm does not answer, the last ones known (or none): whether
    /// the controller answers is the tracker's to say.
    pub async fn windows(&self) -> Arc<Vec<MaintWindow>> {
        let mut cached = self.cached.lock().await;
        if let Some((at, list)) = cached.as_ref() {
            if at.elapsed() < MAINT_TTL {
                return Arc::clone(list);
            }
        }
        let fetched = self
            .commands
            .query_times("scontrol", &["show", "reservation", "-o"])
            .await;
        let list = match fetched {
            Ok(o) if o.ok => Arc::new(parse_maint(&o.stdout)),
            // "No reservations in the system" is printed on stdout with exit 0; anything
            // else is a failure: keep what was known, ask again next time.
            _ => {
                return cached
                    .as_ref()
                    .map(|(_, l)| Arc::clone(l))
                    .unwrap_or_default()
            }
        };
        *cached = Some((Instant::now(), Arc::clone(&list)));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const OUT: &str = "ReservationName=maint_dec StartTime=2026-12-08T07:00:00+0100 \
        EndTime=2026-12-08T13:00:00+0100 Duration=06:00:00 Nodes=node[3-4] NodeCnt=2 \
        CoreCnt=4 Features=(null) PartitionName=(null) Flags=MAINT,SPEC_NODES \
        TRES=cpu=4 Users=root Groups=(null) Accounts=(null) Licenses=(null) State=INACTIVE \
        BurstBuffer=(null) Watts=n/a MaxStartDelay=(null)\n\
        ReservationName=course StartTime=2026-12-08T07:00:00+0100 \
        EndTime=2026-12-08T13:00:00+0100 Duration=06:00:00 Nodes=node1 NodeCnt=1 \
        PartitionName=(null) Flags=SPEC_NODES Users=alice State=INACTIVE\n\
        ReservationName=all StartTime=2026-12-09T00:00:00+0000 \
        EndTime=2026-12-10T00:00:00+0000 Nodes=ALL PartitionName=(null) Flags=MAINT \
        State=INACTIVE\n";

    fn names(list: &[String]) -> Vec<String> {
        list.to_vec()
    }

    #[test]
    fn maintenance_reservations_are_read_with_their_times_in_utc() {
        let list = parse_maint(OUT);
        assert_eq!(list.len(), 2, "{list:?}");
        let m = &list[0];
        assert_eq!(m.name, "maint_dec");
        assert_eq!(m.start, datetime!(2026-12-08 06:00 UTC));
        assert_eq!(m.end, datetime!(2026-12-08 12:00 UTC));
        assert_eq!(m.window(), "from 2026-12-08 06:00 to 12:00 UTC");
        assert_eq!(list[1].nodes, None);
        assert_eq!(
            list[1].window(),
            "from 2026-12-09 00:00 to 2026-12-10 00:00 UTC"
        );
        // Without an offset the time is unknown: left out rather than guessed.
        assert!(parse_maint(&OUT.replace("+0100", "")).len() == 1);
    }

    #[test]
    fn a_window_blocks_only_a_run_time_that_reaches_into_it_on_every_node() {
        let m = &parse_maint(OUT)[0];
        let gpu = names(&["node3".into(), "node4".into()]);
        let batch = names(&[
            "node1".into(),
            "node2".into(),
            "node3".into(),
            "node4".into(),
        ]);
        let now = datetime!(2026-12-08 04:00 UTC);
        let h = |n: u64| Some(Duration::from_secs(n * 3600));
        assert!(m.blocks("gpu", &gpu, now, h(3)));
        assert!(!m.blocks("gpu", &gpu, now, h(2)), "ends as it begins");
        assert!(!m.blocks("gpu", &gpu, now, h(1)));
        assert!(m.blocks("gpu", &gpu, now, None), "no limit reaches it");
        assert!(!m.blocks("batch", &batch, now, h(3)), "node1-2 stay free");
        assert!(m.blocks("gpu", &gpu, datetime!(2026-12-08 07:00 UTC), h(1)));
        assert!(!m.blocks("gpu", &gpu, datetime!(2026-12-08 12:00 UTC), h(9)));
    }

    #[test]
    fn hostlists_are_expanded_with_their_padding() {
        let set = expand_hostlist("node[01-03,7],gpu1,x[9-10]y").unwrap();
        let got: Vec<&str> = set.iter().map(String::as_str).collect();
        assert_eq!(
            got,
            ["gpu1", "node01", "node02", "node03", "node7", "x10y", "x9y"]
        );
        assert_eq!(expand_hostlist("rack[1-2]node[1-2]"), None);
        assert_eq!(expand_hostlist("n[3-1]"), None);
    }
}
