//! Issue 24, point 6 and acceptance 6, on the real dev cluster: the hub killed with -9 while
//! 20 users' submissions are in flight leaves no orphan job. After it starts again, every job
//! of these users in the queue is one a server of the hub records (the `job_id` of its model),
//! any other was cancelled (it carried the hub's tag in its `--comment`, docs/slurm.md), and
//! every server is ready, failed with a reason, or waiting for the very job it records —
//! none is left starting with no job.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;

use super::common::eventually;
use super::common::hubproc::{server_model, HubProc, ADMIN};
use super::{parts, slurm, slurm_hub, CancelJobs, Parts, SlurmUser, CLUSTER};

const USERS: usize = 20;

/// Every job of `users` in the queue: id → user.
fn queued_jobs(p: &Parts, users: &BTreeSet<String>) -> BTreeMap<String, String> {
    let (ok, out) = slurm(&p.slurm_conf, "squeue", &["-h", "-o", "%i|%u"]);
    assert!(ok, "squeue: {out}");
    out.lines()
        .filter_map(|l| l.trim().split_once('|'))
        .filter(|(_, user)| users.contains(*user))
        .map(|(id, user)| (id.to_string(), user.to_string()))
        .collect()
}

/// Takes every node of `batch` (all four) with a job of root; returns its id.
fn block_batch_nodes(conf: &str) -> String {
    let args = [
        "--parsable",
        "-p",
        "batch",
        "-N",
        "4",
        "--exclusive",
        "-t",
        "10",
    ];
    let (ok, id) = slurm(
        conf,
        "sbatch",
        &[&args[..], &["-o", "/dev/null", "--wrap", "sleep 600"]].concat(),
    );
    assert!(ok, "blocker job: {id}");
    id.trim().to_string()
}

/// How a stopped server's progress stream ends: `Ok(Some(reason))` when it failed,
/// `Ok(None)` when the hub has no such server or it is not starting (its start never reached
/// the hub before the kill: nothing is left starting), `Err` otherwise.
async fn failure_of(hub: &HubProc, user: &str) -> Result<Option<String>, String> {
    let resp = reqwest::Client::new()
        .get(hub.public_url(&format!("/hub/api/users/{user}/server/progress")))
        .header("Authorization", format!("token {ADMIN}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status() == 404 || resp.status() == 400 {
        return Ok(None);
    }
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .find(|e| e["failed"] == json!(true))
        .and_then(|e| e["message"].as_str().map(str::to_string))
        .filter(|m| !m.is_empty())
        .map(Some)
        .ok_or(text)
}

/// What became of one user's server after the restart; `Err` while it is not settled.
async fn settled(
    hub: &HubProc,
    user: &str,
    queued: &BTreeMap<String, String>,
) -> Result<String, String> {
    match server_model(hub, user, "").await {
        Some(m) if m["ready"] == json!(true) => Ok("ready".into()),
        Some(m) => match m["slurm"]["job_id"].as_str() {
            Some(id) if queued.get(id).is_some_and(|u| u == user) => Ok(format!("job {id}")),
            _ => Err(format!(
                "{user}: starting with no job of its own in the queue: {m}"
            )),
        },
        None => match failure_of(hub, user).await {
            Ok(Some(reason)) => Ok(format!("failed: {reason}")),
            Ok(None) => Ok("never started".into()),
            Err(said) => Err(format!("{user}: stopped without a reason: {said}")),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hub_killed_during_twenty_submissions_leaves_no_orphan_job() {
    let Some(p) = parts() else { return };
    // Twenty jobs fill the cluster: it is this test's alone meanwhile.
    let _alone = CLUSTER.write().await;
    let mut hub = slurm_hub(&p, "");
    hub.start().await;
    let mut accounts = Vec::new();
    for i in 0..USERS {
        accounts.push(SlurmUser::new(&p, &hub, &format!("o{i}")).await);
    }
    let users: BTreeSet<String> = accounts.iter().map(|a| a.name.clone()).collect();
    // Every node taken: the servers' jobs wait in the queue. A job left behind then stays
    // there until someone cancels it (one that runs would die by itself, its token revoked),
    // and no JupyterLab loads the machine meanwhile.
    let blocker = block_batch_nodes(&p.slurm_conf);
    let _unblock = CancelJobs::job(&p.slurm_conf, &blocker);
    eventually(60, "the blocker running", || async {
        let (_, state) = slurm(&p.slurm_conf, "squeue", &["-h", "-j", &blocker, "-o", "%T"]);
        (state.trim() == "RUNNING").then_some(())
    })
    .await;

    // Twenty starts at once; their answers do not matter (the hub dies under them).
    let options = json!({"partition": "batch", "nodes": 1, "runtime": "00:10"});
    let starts: Vec<_> = users
        .iter()
        .map(|user| {
            let (hub_url, user, options) = (hub.public_url(""), user.clone(), options.clone());
            tokio::spawn(async move {
                let _ = reqwest::Client::new()
                    .post(format!("{hub_url}/hub/api/users/{user}/server"))
                    .header("Authorization", format!("token {ADMIN}"))
                    .json(&json!({ "user_options": options }))
                    .send()
                    .await;
            })
        })
        .collect();
    let first = eventually(60, "the first jobs in the queue", || async {
        let n = queued_jobs(&p, &users).len();
        (n >= 3).then_some(n)
    })
    .await;
    hub.kill9_hub();
    for s in starts {
        s.abort();
    }
    let at_kill = queued_jobs(&p, &users).len();
    eprintln!("killed the hub with {first} jobs seen, {at_kill} in the queue right after");
    hub.start().await;

    let outcome = eventually(
        90,
        "every job tracked or cancelled, every server settled",
        || {
            let (hub, p, users) = (&hub, &p, &users);
            async move {
                let queued = queued_jobs(p, users);
                let mut outcome = BTreeMap::new();
                for user in users {
                    match settled(hub, user, &queued).await {
                        Ok(what) => outcome.insert(user.clone(), what),
                        Err(why) => {
                            eprintln!("not yet: {why}");
                            return None;
                        }
                    };
                }
                // Every queued job is the one its user's server records.
                let tracked: BTreeSet<String> = outcome
                    .values()
                    .filter_map(|w| w.strip_prefix("job ").map(str::to_string))
                    .collect();
                let orphans: Vec<_> = queued.keys().filter(|id| !tracked.contains(*id)).collect();
                if !orphans.is_empty() {
                    eprintln!("not yet: jobs no server records: {orphans:?}");
                    return None;
                }
                Some(outcome)
            }
        },
    )
    .await;
    let failed = outcome.values().filter(|w| w.starts_with("failed")).count();
    let cancelled = hub
        .log()
        .matches("cancelled a job the hub submitted before it was killed")
        .count();
    eprintln!(
        "after the restart: {} tracked or ready, {failed} failed with a reason, {cancelled} \
         untracked jobs cancelled: {outcome:#?}",
        USERS - failed
    );
    // Cleanup: every job of these users, before their accounts go.
    for user in &users {
        slurm(&p.slurm_conf, "scancel", &["-u", user]);
    }
    eventually(60, "no job of these users left", || async {
        queued_jobs(&p, &users).is_empty().then_some(())
    })
    .await;
    drop(accounts);
}
