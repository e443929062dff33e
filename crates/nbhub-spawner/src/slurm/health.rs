//! A system's health as the Slurm spawner sees it, and whether a start may go ahead now:
//! the controller answers (the tracker's last `squeue`), not every partition offered is down
//! or drained (the form's cached `sinfo`), and no maintenance reservation reaches into the
//! run time asked for (`reservations.rs`).

// Declared here rather than in `slurm.rs`: only health and the form's cache use it.
#[path = "reservations.rs"]
pub(crate) mod reservations;

use std::time::Duration;

use crate::slurm::parse::PartitionInfo;
use crate::PartitionConfig;
use crate::{FormContext, Health, SpawnError, ValidatedOptions};

use super::SlurmSpawner;

impl SlurmSpawner {
    /// What the spawner last saw of its cluster (never asks Slurm: pages and metrics read it).
    pub fn health(&self) -> Health {
        if let Some(reason) = self.unreachable() {
            return Health::Unreachable { reason };
        }
        match self.cluster.cached() {
            Some(snap) => match self.all_down(&snap.partitions) {
                Some(reason) => Health::Down { reason },
                None => Health::Ok,
            },
            None => Health::Ok,
        }
    }

    /// Why the system cannot be asked now: no login node answered (over SSH), or the last
    /// tracking query failed.
    fn unreachable(&self) -> Option<String> {
        self.commands
            .ssh()
            .and_then(|ssh| ssh.unreachable())
            .or_else(|| self.tracker.unreachable())
    }

    /// Why no partition offered can take a job now, if none can.
    fn all_down(&self, partitions: &[PartitionInfo]) -> Option<String> {
        all_down(&self.slurm.partitions, partitions)
    }

    /// The name a message begins with: its `[[systems]] name`, or "The cluster".
    fn called(&self) -> String {
        match self.system_name() {
            "" => "The cluster".to_owned(),
            name => name.to_owned(),
        }
    }

    /// Whether a start with `options` may go ahead now (see `Spawner::admit`).
    pub async fn admit_job(
        &self,
        ctx: &FormContext,
        options: &ValidatedOptions,
    ) -> Result<(), SpawnError> {
        let _ = ctx;
        let unavailable = |message: String| SpawnError::Unavailable {
            system: self.system_name().to_owned(),
            message,
        };
        if let Some(reason) = self.unreachable() {
            return Err(unavailable(format!(
                "{} is not reachable: {reason}",
                self.called()
            )));
        }
        // The snapshot the options were just validated against (cached for seconds).
        let Ok(snap) = self.cluster.snapshot().await else {
            return Ok(());
        };
        let down = || match self.all_down(&snap.partitions) {
            Some(reason) => Err(unavailable(format!(
                "{} cannot run servers now: {reason}",
                self.called()
            ))),
            None => Ok(()),
        };
        let Some(partition) = options
            .get_str("partition")
            .and_then(|name| snap.partitions.iter().find(|p| p.name == name))
        else {
            return down();
        };
        let runtime = options
            .get_str("runtime")
            .and_then(crate::parse_clock_duration)
            .or(partition.default_time_secs)
            .or(partition.max_time_secs)
            .map(Duration::from_secs);
        let now = time::OffsetDateTime::now_utc();
        let windows = self.cluster.maint.windows().await;
        let blocking = windows
            .iter()
            .filter(|w| w.blocks(&partition.name, &partition.nodes, now, runtime))
            .min_by_key(|w| w.start);
        match blocking {
            Some(w) => Err(unavailable(format!(
                "{} is in maintenance {} (Slurm reservation {}); choose a shorter run time or \
                 start after it",
                self.called(),
                w.window(),
                w.name
            ))),
            // Checked after the reservations: during a maintenance the window says more
            // than "every partition is down".
            None => down(),
        }
    }
}

/// Why no partition offered (`[[slurm.partitions]]`, or all of Slurm's) can take a job now,
/// if none can: each is down (its state is not UP) or all its nodes are out of service.
fn all_down(configured: &[PartitionConfig], partitions: &[PartitionInfo]) -> Option<String> {
    let offered: Vec<&PartitionInfo> = partitions
        .iter()
        .filter(|p| configured.is_empty() || configured.iter().any(|c| c.name == p.name))
        .collect();
    let closed = |p: &PartitionInfo| !p.up || (p.total_nodes > 0 && p.down_nodes >= p.total_nodes);
    if offered.is_empty() || !offered.iter().all(|p| closed(p)) {
        return None;
    }
    let names: Vec<&str> = offered.iter().map(|p| p.name.as_str()).collect();
    Some(format!(
        "every partition ({}) is down or drained",
        names.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::parse::parse_partitions;

    const PARTS: &str = "PartitionName=batch Default=YES State=UP TotalNodes=2 MaxTime=08:00:00\n\
        PartitionName=gpu State=UP TotalNodes=1 MaxTime=04:00:00\n\
        PartitionName=old State=DOWN TotalNodes=1\n";

    fn sinfo(batch: [&str; 2], gpu: &str) -> String {
        format!(
            "node1|batch*|{}|0/2/0/2|2048|(null)|gpu:0|\n\
             node2|batch*|{}|0/2/0/2|2048|(null)|gpu:0|\n\
             node3|gpu|{gpu}|0/2/0/2|2048|gpu:2|gpu:0|\n\
             node4|old|idle|0/2/0/2|2048|(null)|gpu:0|\n",
            batch[0], batch[1]
        )
    }

    #[test]
    fn down_only_when_every_offered_partition_is_closed() {
        let parts = |b: [&str; 2], g: &str| parse_partitions(PARTS, &sinfo(b, g));
        let offered = |names: &[&str]| -> Vec<PartitionConfig> {
            names
                .iter()
                .map(|n| PartitionConfig {
                    name: (*n).to_owned(),
                    ..Default::default()
                })
                .collect()
        };
        let p = parts(["idle", "allocated"], "idle");
        assert_eq!(p[0].nodes, ["node1", "node2"]);
        assert_eq!(all_down(&[], &p), None, "busy is not down");
        let p = parts(["drained", "down*"], "idle");
        assert_eq!(p[0].down_nodes, 2);
        assert_eq!(all_down(&[], &p), None, "gpu still takes jobs");
        let p = parts(["drained", "down*"], "draining");
        assert_eq!(
            all_down(&[], &p).as_deref(),
            Some("every partition (batch, gpu, old) is down or drained")
        );
        let p = parts(["drained", "idle*"], "idle");
        assert_eq!(
            all_down(&offered(&["batch", "old"]), &p).as_deref(),
            Some("every partition (batch, old) is down or drained"),
            "only the partitions offered count; not responding is out of service"
        );
        assert_eq!(
            all_down(&offered(&["batch"]), &[]),
            None,
            "nothing known yet"
        );
    }
}
