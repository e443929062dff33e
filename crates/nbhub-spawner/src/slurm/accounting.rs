//! What Slurm's accounting (`sacct`, with slurmdbd) recorded about the jobs the hub started:
//! the CPUs and GPUs each held and for how long, for the hub's usage report (docs/usage.md).
//! One `sacct` per call for any number of jobs, run as the hub through the system's transport
//! (on this machine, or on a login node over SSH), as an argument vector.

use crate::slurm::parse::{is_final_state, nothing};
use crate::JobAccounting;

/// The columns asked for, in this order (`--parsable2`: separated by `|`, none at the end).
pub(crate) const SACCT_FORMAT: &str = "JobID,State,Account,AllocCPUS,ElapsedRaw,AllocTRES";

/// `sacct`'s arguments for these jobs: their allocations only (`--allocations`, not every
/// step); with `--jobs` Slurm searches from the epoch, so old jobs are found too.
pub(crate) fn sacct_args(job_ids: &[String]) -> Vec<String> {
    vec![
        "-j".to_owned(),
        job_ids.join(","),
        "--allocations".to_owned(),
        "--parsable2".to_owned(),
        "--noheader".to_owned(),
        format!("--format={SACCT_FORMAT}"),
    ]
}

/// Whether sacct's error says that this cluster keeps no accounting at all
/// (`AccountingStorageType=accounting_storage/none`): then there is nothing to wait for.
pub(crate) fn accounting_disabled(stderr: &str) -> bool {
    stderr.contains("accounting storage is disabled")
}

/// GPUs in an `AllocTRES` value (`billing=2,cpu=2,gres/gpu=1,gres/gpu:a100=1,mem=1G,node=1`):
/// the untyped `gres/gpu` count, which Slurm gives beside the typed ones; without it, the
/// typed ones added up.
pub(crate) fn tres_gpus(tres: &str) -> u64 {
    let mut untyped = None;
    let mut typed = 0;
    for item in tres.split(',') {
        let Some((name, count)) = item.trim().split_once('=') else {
            continue;
        };
        let count = count.trim().parse::<u64>().unwrap_or(0);
        if name == "gres/gpu" {
            untyped = Some(count);
        } else if name.starts_with("gres/gpu:") {
            typed += count;
        }
    }
    untyped.unwrap_or(typed)
}

/// The lines of `sacct --parsable2` with [`SACCT_FORMAT`], one per job; lines of other jobs
/// (array elements, heterogeneous components) and lines that do not parse are skipped.
pub(crate) fn parse_sacct(out: &str, job_ids: &[String]) -> Vec<JobAccounting> {
    out.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.trim_end().split('|').collect();
            let [id, state, account, cpus, elapsed, tres] = f[..] else {
                return None;
            };
            if !job_ids.iter().any(|j| j == id) {
                return None;
            }
            // "CANCELLED by 0": the state is the first word.
            let state = state.split_whitespace().next().unwrap_or("").to_owned();
            Some(JobAccounting {
                job_id: id.to_owned(),
                ended: is_final_state(&state),
                state,
                account: if nothing(account) {
                    String::new()
                } else {
                    account.to_owned()
                },
                cpus: cpus.trim().parse().ok()?,
                elapsed_secs: elapsed.trim().parse().ok()?,
                gpus: tres_gpus(tres),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_an_argument_vector_for_all_jobs_at_once() {
        let ids = vec!["17".to_owned(), "42".to_owned()];
        assert_eq!(
            sacct_args(&ids),
            [
                "-j",
                "17,42",
                "--allocations",
                "--parsable2",
                "--noheader",
                "--format=JobID,State,Account,AllocCPUS,ElapsedRaw,AllocTRES"
            ]
        );
    }

    #[test]
    fn gpus_come_from_the_untyped_gres_or_the_typed_ones_added_up() {
        assert_eq!(tres_gpus("billing=2,cpu=2,mem=1000M,node=1"), 0);
        assert_eq!(tres_gpus("cpu=4,gres/gpu=2,gres/gpu:a100=2,node=1"), 2);
        assert_eq!(tres_gpus("cpu=4,gres/gpu:a100=1,gres/gpu:v100=2"), 3);
        assert_eq!(tres_gpus(""), 0);
    }

    #[test]
    fn sacct_lines_give_each_asked_job_once() {
        let ids = vec!["17".to_owned(), "42".to_owned(), "50".to_owned()];
        let out = "17|COMPLETED|proj-a|2|125|billing=2,cpu=2,mem=500M,node=1\n\
                   42|CANCELLED by 0|proj-b|8|3600|cpu=8,gres/gpu=2,node=2\n\
                   50|RUNNING|(null)|1|30|cpu=1,node=1\n\
                   51|COMPLETED|x|1|1|cpu=1\n\
                   17.batch|COMPLETED||2|125|cpu=2\n\
                   garbage\n";
        let got = parse_sacct(out, &ids);
        assert_eq!(
            got,
            [
                JobAccounting {
                    job_id: "17".into(),
                    state: "COMPLETED".into(),
                    ended: true,
                    account: "proj-a".into(),
                    cpus: 2,
                    elapsed_secs: 125,
                    gpus: 0,
                },
                JobAccounting {
                    job_id: "42".into(),
                    state: "CANCELLED".into(),
                    ended: true,
                    account: "proj-b".into(),
                    cpus: 8,
                    elapsed_secs: 3600,
                    gpus: 2,
                },
                JobAccounting {
                    job_id: "50".into(),
                    state: "RUNNING".into(),
                    ended: false,
                    account: String::new(),
                    cpus: 1,
                    elapsed_secs: 30,
                    gpus: 0,
                },
            ]
        );
        assert!(accounting_disabled(
            "sacct: error: Slurm accounting storage is disabled\n"
        ));
        assert!(!accounting_disabled(
            "sacct: error: slurmdbd: connection refused"
        ));
    }
}
