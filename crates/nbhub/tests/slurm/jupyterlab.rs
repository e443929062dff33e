//! Issue 23, point 5 (acceptance 7): inside JupyterLab, with nbhub-jupyterlab and
//! jupyter-resource-usage installed in the test venv (scripts/test-env.sh installs both): the
//! job's time left in the status bar, following `scontrol update TimeLimit=`; a toast at a
//! threshold given in seconds; the job script's trap on Slurm's end signal and the home page's
//! banner; the job's memory as jupyter-resource-usage's limit.

use super::*;

use common::get_as;

/// The status bar's text of nbhub-jupyterlab, e.g. `Job: 19:02 left`, in seconds.
const SECONDS_LEFT: &str =
    "(() => { const m = (document.querySelector('#nbhub-time-left')?.textContent || '')\
    .match(/^Job: (?:(\\d+):)?(\\d+):(\\d\\d) left$/); \
    return m ? (+(m[1] || 0)) * 3600 + (+m[2]) * 60 + (+m[3]) : null; })()";

/// Whether the page shows a JupyterLab toast containing `text`.
fn toast_says(text: &str) -> String {
    let q = serde_json::to_string(text).expect("text");
    format!(
        "[...document.querySelectorAll('.jp-toast-message, .Toastify__toast')]\
         .some(t => t.textContent.includes({q}))"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jupyterlab_shows_the_time_left_warns_and_the_hub_hears_the_end_signal() {
    let Some(p) = parts() else { return };
    let packages = Command::new(p.venv.join("bin/python"))
        .args(["-c", "import nbhub_jupyterlab, jupyter_resource_usage"])
        .status()
        .is_ok_and(|s| s.success());
    if !packages {
        nbhub_testkit::missing_part(
            "nbhub-jupyterlab and jupyter-resource-usage in the test venv",
            "scripts/test-env.sh",
        );
        return;
    }
    let Some(b) = chromium::Browser::start().await else {
        return;
    };
    let _shared = CLUSTER.read().await;
    let mut opts = slurm_options(&p, "extra_sbatch = [\"--mem=300M\"]\n", "");
    // A toast 19 minutes before the end of a 20-minute job; the end time asked for every
    // second (the hub's tracker polls every second too).
    opts.spawner_env = vec![
        ("NBHUB_JUPYTERLAB_WARN_SECONDS".into(), "1140".into()),
        ("NBHUB_JUPYTERLAB_REFRESH_SECONDS".into(), "1".into()),
    ];
    let mut hub = HubProc::new(p.venv.clone(), &p.proxy, opts);
    hub.start().await;
    let alice = SlurmUser::new(&p, &hub, "jl").await;
    let user = alice.name.as_str();
    let (s, body) = start(
        &hub,
        user,
        "",
        json!({"partition": "devel", "nodes": 1, "runtime": "00:20"}),
    )
    .await;
    assert!(s == 201 || s == 202, "start: {s} {body}");
    let model = wait_ready(&hub, user, "", 120).await;
    let job = model["slurm"]["job_id"]
        .as_str()
        .expect("job id")
        .to_owned();
    assert_eq!(
        (
            model["slurm"]["cpus"].as_u64(),
            model["slurm"]["memory_per_node"].as_str()
        ),
        (Some(1), Some("300M")),
        "the allocation from the tracker's squeue: {model}"
    );

    // The time left in JupyterLab's status bar, and the toast at 1140 s (19 minutes) left.
    let base = hub.public_url("");
    b.sign_in(&base, user, PASSWORD).await;
    b.goto(&format!("{base}/user/{user}/lab")).await;
    b.wait_until_for(
        &format!("{SECONDS_LEFT} > 1000 && {SECONDS_LEFT} <= 1200"),
        "the job's time left (up to 20 minutes) in JupyterLab's status bar",
        Duration::from_secs(90),
    )
    .await;
    b.wait_until_for(
        &toast_says("Your job ends in"),
        "the toast 1140 seconds before the end",
        Duration::from_secs(90),
    )
    .await;
    b.screenshots("jupyterlab-time-left").await;

    // An admin gives the job 30 minutes: the status bar follows within one poll.
    // (Other test runs share the cluster: a controller busy with them may answer "Unexpected
    // message received"; the update is asked again then.)
    eventually(30, "scontrol update TimeLimit=30", || async {
        let (ok, out) = slurm(
            &p.slurm_conf,
            "scontrol",
            &["update", &format!("JobId={job}"), "TimeLimit=30"],
        );
        ok.then_some(()).or_else(|| {
            eprintln!("scontrol update: {out}");
            None
        })
    })
    .await;
    b.wait_until_for(
        &format!("{SECONDS_LEFT} > 1500"),
        "the status bar following the new time limit",
        Duration::from_secs(10),
    )
    .await;

    // The hub's part of the end signal: only the job (its server's token) or an admin may say
    // it; the owner's own token may not.
    let token = user_token(&hub, user).await;
    let (s, body) = common::call(
        &hub,
        Method::POST,
        &format!("/users/{user}/server/ending"),
        &token,
        None,
    )
    .await;
    assert!(s == 403 || s == 404, "the owner's token: {s} {body}");

    // Slurm's signal to the job script, as `--signal=B:USR1@300` sends it before the end: the
    // trap tells the hub, and the home page shows the banner without JupyterLab.
    let (ok, out) = slurm(
        &p.slurm_conf,
        "scancel",
        &["--signal=USR1", "--batch", &job],
    );
    assert!(ok, "scancel --signal=USR1: {out}");
    b.wait_until_for(
        &toast_says("Slurm will stop this server at"),
        "JupyterLab's toast after the end signal",
        Duration::from_secs(30),
    )
    .await;
    b.goto(&format!("{base}/hub/home")).await;
    b.wait_until(
        "/will be stopped by Slurm at \\d\\d:\\d\\d: save your work/\
         .test(document.querySelector('.end-signal')?.textContent || '')",
        "the home page's banner after the job's end signal",
    )
    .await;
    let allocation = b.text(".allocation").await;
    assert_eq!(
        allocation, "1 CPU, 300M per node",
        "the home page's allocation"
    );
    b.screenshots("home-slurm-end-signal").await;
    let model = server_model(&hub, user, "").await.expect("still running");
    assert!(
        model["slurm"]["end_signal"].is_string(),
        "the REST model says when the end signal came: {model}"
    );
    assert_eq!(model["ready"], json!(true), "USR1 did not end the server");

    // jupyter-resource-usage: the job's --mem as the memory limit (MEM_LIMIT from the job).
    let metrics = get_as(
        &reqwest::Client::new(),
        hub.public_url(&format!("/user/{user}/api/metrics/v1")),
        &token,
    )
    .await;
    assert_eq!(metrics.status(), 200);
    let metrics: Value = metrics.json().await.expect("json");
    assert_eq!(
        metrics["limits"]["memory"]["rss"].as_u64(),
        Some(300 * 1024 * 1024),
        "{metrics}"
    );

    let (s, body) = admin(&hub, Method::DELETE, &format!("/users/{user}/server"), None).await;
    assert!(s == 204 || s == 202, "stop: {s} {body}");
    b.quit().await;
}
