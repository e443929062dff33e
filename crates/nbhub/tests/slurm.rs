//! The Slurm spawner end to end: the `nbhub` binary with its managed proxy, the local Slurm
//! cluster `scripts/slurm-dev-cluster` starts (test-env.sh exports its `SLURM_CONF`), real
//! Unix accounts made per test, and the real `jupyterhub-singleuser` + JupyterLab as the job.
//!
//! Tests share one cluster: the ones that stop slurmctld or fill a partition take the cluster
//! for themselves, those that use the gpu partition take it in turn, the others share it.

mod common;
#[path = "slurm/import_config.rs"]
mod import_config;
#[path = "slurm/jupyterlab.rs"]
mod jupyterlab;
#[path = "slurm/maintenance.rs"]
mod maintenance;
#[path = "slurm/orphans.rs"]
mod orphans;
#[path = "slurm/relaunch.rs"]
mod relaunch;
#[path = "slurm/session.rs"]
mod session;
#[path = "slurm/ssh.rs"]
mod ssh;
#[path = "slurm/systems.rs"]
mod systems;
#[path = "slurm/usage.rs"]
mod usage;

use common::fetch;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::browser as chromium;
use common::eventually;
use common::hubproc::{
    admin, require_proxy_binary, server_model, wait_ready, HubProc, Options, ADMIN, PASSWORD,
};
use common::kernel;
use common::pagekit::{browser_following, login};
use common::prometheus::{parse, sample, scrape};
use common::status_of;
use common::user_token;
use nbhub_testkit::{is_root, TempAccount};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::RwLock;

/// Shared by the tests that only use the cluster; taken alone by the one that stops it.
static CLUSTER: RwLock<()> = RwLock::const_new(());
/// Taken by the tests that use the gpu partition: some of them fill it on purpose.
static GPU_PARTITION: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What every test here needs: root (accounts, setuid submission), the venv, the proxy and
/// a running cluster. A missing part fails under CI=true and skips loudly otherwise.
struct Parts {
    venv: PathBuf,
    proxy: PathBuf,
    slurm_conf: String,
}

fn parts() -> Option<Parts> {
    if !is_root() {
        nbhub_testkit::missing_part(
            "root (Slurm jobs run as real Unix accounts the test creates)",
            "running the tests as root (CI does)",
        );
        return None;
    }
    let venv = nbhub_testkit::require_venv()?;
    let proxy = require_proxy_binary()?;
    let slurm_conf = std::env::var("SLURM_CONF")
        .ok()
        .filter(|c| Path::new(c).is_file());
    let Some(slurm_conf) = slurm_conf else {
        nbhub_testkit::missing_part(
            "a running Slurm cluster (SLURM_CONF pointing at its slurm.conf)",
            "scripts/slurm-dev-cluster start (scripts/test-env.sh runs it)",
        );
        return None;
    };
    Some(Parts {
        venv,
        proxy,
        slurm_conf,
    })
}

/// Runs a Slurm command with the cluster's config; returns (success, stdout + stderr).
fn slurm(conf: &str, program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .env("SLURM_CONF", conf)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The user's jobs as `id|partition|nodes|time limit|user|state`, one per line.
fn jobs_of(conf: &str, user: &str) -> Vec<String> {
    let (_, out) = slurm(
        conf,
        "squeue",
        &["-h", "-u", user, "-o", "%i|%P|%D|%l|%u|%T"],
    );
    out.lines()
        .filter(|l| l.contains('|'))
        .map(str::to_string)
        .collect()
}

/// A hub whose servers are Slurm jobs, polled every second.
fn slurm_hub(p: &Parts, extra_slurm: &str) -> HubProc {
    slurm_hub_with(p, extra_slurm, "")
}

/// [`slurm_hub`] with more `[authenticator]` keys (e.g. `admin_users`).
fn slurm_hub_with(p: &Parts, extra_slurm: &str, authenticator: &str) -> HubProc {
    HubProc::new(
        p.venv.clone(),
        &p.proxy,
        slurm_options(p, extra_slurm, authenticator),
    )
}

/// The options of [`slurm_hub_with`], for a test that needs more of them.
fn slurm_options(p: &Parts, extra_slurm: &str, authenticator: &str) -> Options {
    Options {
        slurm: Some(format!(
            "slurm_conf = \"{}\"\nsubmit_as = \"setuid\"\npoll_interval = 1\n{extra_slurm}",
            p.slurm_conf
        )),
        extra_toml: "named_server_limit_per_user = 0".into(),
        services: "[[roles]]\nname = \"metrics\"\nscopes = [\"read:metrics\"]\nservices = [\"e2e-admin\"]\n".into(),
        authenticator: authenticator.into(),
        ..Default::default()
    }
}

/// The user most tests here need: a real Unix account (its home in a temp dir) that is also a
/// hub user of the same name, whose Slurm jobs are cancelled when the test ends (the fields
/// drop in order: the jobs, then the account, then the homes).
struct SlurmUser<'a> {
    _cancel: CancelJobs<'a>,
    account: TempAccount,
    _homes: nbhub_testkit::TempDir,
}

impl<'a> SlurmUser<'a> {
    async fn new(p: &'a Parts, hub: &HubProc, tag: &str) -> SlurmUser<'a> {
        let homes = nbhub_testkit::temp_dir_world_readable();
        let account = TempAccount::create(tag, &homes.path().join(tag));
        let name = &account.name;
        let (s, body) = admin(hub, Method::POST, &format!("/users/{name}"), None).await;
        assert_eq!(s, 201, "create user {name}: {body}");
        SlurmUser {
            _cancel: CancelJobs::of_user(&p.slurm_conf, name),
            account,
            _homes: homes,
        }
    }
}

impl std::ops::Deref for SlurmUser<'_> {
    type Target = TempAccount;
    fn deref(&self) -> &TempAccount {
        &self.account
    }
}

/// Takes both GPU nodes with a job of root, so that a server asking for the gpu partition
/// waits in the queue; returns the job id (cancel it with [`CancelJobs::job`]).
fn block_gpu_nodes(conf: &str) -> String {
    let (ok, blocker) = slurm(
        conf,
        "sbatch",
        &[
            "--parsable",
            "-p",
            "gpu",
            "-N",
            "2",
            "--exclusive",
            "-t",
            "10",
            "-o",
            "/dev/null",
            "--wrap",
            "sleep 600",
        ],
    );
    assert!(ok, "blocker job: {blocker}");
    blocker.trim().to_string()
}

/// Cancels jobs when dropped, whatever the test did: `scancel ARGS`.
struct CancelJobs<'a> {
    conf: &'a str,
    args: Vec<String>,
}

impl<'a> CancelJobs<'a> {
    fn of_user(conf: &'a str, user: &str) -> Self {
        Self {
            conf,
            args: vec!["-u".into(), user.into()],
        }
    }

    fn job(conf: &'a str, id: &str) -> Self {
        Self {
            conf,
            args: vec![id.into()],
        }
    }
}

impl Drop for CancelJobs<'_> {
    fn drop(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let _ = slurm(self.conf, "scancel", &args);
    }
}

async fn start(hub: &HubProc, user: &str, server: &str, options: Value) -> (u16, String) {
    let path = if server.is_empty() {
        format!("/users/{user}/server")
    } else {
        format!("/users/{user}/servers/{server}")
    };
    admin(
        hub,
        Method::POST,
        &path,
        Some(json!({ "user_options": options })),
    )
    .await
}

/// Runs `code` in a new kernel of `user`'s default server, through the proxy; what it printed.
async fn run_in_new_kernel(hub: &HubProc, user: &str, code: &str) -> String {
    let token = user_token(hub, user).await;
    let prefix = format!("/user/{user}/");
    let id = kernel::create_kernel_with_token(hub, &prefix, &token).await;
    kernel::execute(hub, &prefix, &id, &token, code).await
}

/// Acceptance 1 and 3: bad options get a 400 naming the field and no job; a good request
/// runs as the user's job with those values, its kernel runs code through the proxy, and
/// DELETE cancels the job and removes the route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_start_is_a_job_of_the_user_and_stop_cancels_it() {
    let Some(p) = parts() else { return };
    let _shared = CLUSTER.read().await;
    // A site field, to be refused out of its range.
    let mem_field = "[[slurm.fields]]\nname = \"mem_mb\"\nlabel = \"Memory per node (MB)\"\ntype = \"int\"\nmin = 64\nmax = 1024\nsbatch = \"--mem={value}M\"\n";
    let mut hub = slurm_hub(&p, mem_field);
    hub.start().await;
    let alice = SlurmUser::new(&p, &hub, "sa").await;
    let user = alice.name.as_str();

    for (options, field) in [
        (
            json!({"partition": "devel", "nodes": 0, "runtime": "00:10"}),
            "nodes",
        ),
        (
            json!({"partition": "batch", "nodes": 99, "runtime": "00:10"}),
            "nodes",
        ),
        (
            json!({"partition": "devel", "nodes": "2; rm -rf ~", "runtime": "00:10"}),
            "nodes",
        ),
        (
            json!({"partition": "devel", "nodes": 1, "runtime": "01:00"}),
            "runtime",
        ),
        (
            json!({"partition": "devel", "nodes": 1, "runtime": "-5"}),
            "runtime",
        ),
        (
            json!({"partition": "nosuch", "nodes": 1, "runtime": "00:10"}),
            "partition",
        ),
        (
            json!({"partition": "devel", "nodes": 1, "runtime": "00:10", "gpus": 1}),
            "gpus",
        ),
        (
            json!({"partition": "devel\n#SBATCH --uid=0", "nodes": 1, "runtime": "00:10"}),
            "partition",
        ),
        (
            json!({"partition": "devel", "nodes": 1, "runtime": "00:10", "account": "not-yours"}),
            "account",
        ),
        (
            json!({"partition": "devel", "nodes": 1, "runtime": "00:10", "mem_mb": 99999}),
            "mem_mb",
        ),
        (
            json!({"partition": "devel", "nodes": 1, "runtime": "00:10\n#SBATCH -N 4"}),
            "runtime",
        ),
    ] {
        let (s, body) = start(&hub, user, "", options.clone()).await;
        assert_eq!(s, 400, "{options}: {body}");
        assert!(
            body.contains(field),
            "{options}: the answer should name {field}: {body}"
        );
    }
    assert!(
        jobs_of(&p.slurm_conf, user).is_empty(),
        "no job may be submitted for bad input: {:?}",
        jobs_of(&p.slurm_conf, user)
    );

    // Acceptance 7 through the API: Slurm's estimate, rate-limited per user.
    let estimate = |options: Value| {
        let hub = &hub;
        async move {
            admin(
                hub,
                Method::POST,
                &format!("/users/{user}/server/estimate"),
                Some(json!({ "user_options": options })),
            )
            .await
        }
    };
    let good = json!({"partition": "devel", "nodes": 1, "runtime": "00:10"});
    let (s, body) = estimate(good.clone()).await;
    assert_eq!(s, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(answer["fits"], json!(true), "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("start"),
        "{answer}"
    );
    let (s, body) = estimate(good).await;
    assert_eq!(s, 429, "a second estimate at once is refused: {body}");
    let (s, body) = estimate(json!({"partition": "devel", "nodes": 3})).await;
    assert_eq!(
        s, 400,
        "bad options are refused before Slurm is asked: {body}"
    );
    assert!(body.contains("nodes"), "{body}");

    let (s, body) = start(
        &hub,
        user,
        "",
        json!({"partition": "devel", "nodes": 1, "runtime": "00:10"}),
    )
    .await;
    assert!(s == 201 || s == 202, "start: {s} {body}");
    let job = job_in_squeue(&p.slurm_conf, user).await;
    let fields: Vec<&str> = job.split('|').collect();
    assert_eq!(&fields[1..5], ["devel", "1", "10:00", user], "{job}");
    let model = wait_ready(&hub, user, "", 120).await;
    assert_eq!(model["user_options"]["partition"], "devel", "{model}");
    assert!(
        model["user_options"].get("system").is_none() && model["slurm"]["system"].is_null(),
        "one [slurm] cluster: no system anywhere: {model}"
    );
    assert_eq!(
        model["slurm"]["job_id"].to_string().trim_matches('"'),
        fields[0],
        "{model}"
    );
    assert_eq!(model["slurm"]["partition"], "devel", "{model}");

    let printed = run_in_new_kernel(
        &hub,
        user,
        "import os; print(6*7, os.environ.get('SLURM_JOB_ID'))",
    )
    .await;
    assert_eq!(printed.trim(), format!("42 {}", fields[0]), "{}", hub.log());

    stop_default_server(&hub, &p.slurm_conf, user).await;
    let prefix = format!("/user/{user}");
    eventually(30, "the route removed", || async {
        let (_, routes) = admin(&hub, Method::GET, "/proxy", None).await;
        (!routes.contains(&prefix)).then_some(())
    })
    .await;
}

/// Acceptance 4: a job that reaches its time limit, and one cancelled from outside, are seen
/// within a poll interval or two, and the reason is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_ending_by_time_limit_or_scancel_are_noticed() {
    let Some(p) = parts() else { return };
    let _shared = CLUSTER.read().await;
    let mut hub = slurm_hub(&p, "");
    hub.start().await;
    let bob = SlurmUser::new(&p, &hub, "sb").await;
    let user = bob.name.as_str();
    let (s, body) = start(
        &hub,
        user,
        "short",
        json!({"partition": "devel", "nodes": 1, "runtime": "1"}),
    )
    .await;
    assert!(s == 201 || s == 202, "{body}");
    let (s, body) = start(
        &hub,
        user,
        "victim",
        json!({"partition": "batch", "nodes": 1, "runtime": "00:30"}),
    )
    .await;
    assert!(s == 201 || s == 202, "{body}");
    let victim = wait_ready(&hub, user, "victim", 120).await;
    wait_ready(&hub, user, "short", 120).await;
    let victim_job = victim["slurm"]["job_id"]
        .to_string()
        .trim_matches('"')
        .to_string();
    let (ok, out) = slurm(&p.slurm_conf, "scancel", &[&victim_job]);
    assert!(ok, "scancel: {out}");
    eventually(10, "the cancelled job seen stopped", || async {
        server_model(&hub, user, "victim")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    // Slurm checks time limits about every 30 s: a 1-minute job ends 60-90 s after it started.
    eventually(150, "the timed-out job seen stopped", || async {
        server_model(&hub, user, "short")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    let log = hub.log();
    assert!(
        log.contains("CANCELLED"),
        "the reason should name CANCELLED: {log}"
    );
    assert!(
        log.contains("TIMEOUT"),
        "the reason should name TIMEOUT: {log}"
    );
    // The home page says why each ended.
    let b = browser_following();
    login(&hub, &b, user).await;
    let home = fetch(&b, hub.public_url("/hub/home"))
        .await
        .text()
        .await
        .expect("html");
    assert!(
        home.contains("reached its time limit"),
        "the home page should say the job reached its time limit: {home}"
    );
    assert!(
        home.contains("was cancelled"),
        "the home page should say the job was cancelled: {home}"
    );
}

/// Acceptance 5: with slurmctld down, running servers stay running and reachable, nothing is
/// marked stopped, a new spawn fails with a clear message; tracking resumes by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_outage_gives_up_no_server() {
    let Some(p) = parts() else { return };
    let _alone = CLUSTER.write().await;
    let mut hub = slurm_hub(&p, "");
    hub.start().await;
    let carol = SlurmUser::new(&p, &hub, "sc").await;
    let user = carol.name.as_str();
    for server in ["one", "two"] {
        let (s, body) = start(
            &hub,
            user,
            server,
            json!({"partition": "batch", "nodes": 1, "runtime": "00:30"}),
        )
        .await;
        assert!(s == 201 || s == 202, "{body}");
    }
    wait_ready(&hub, user, "one", 120).await;
    wait_ready(&hub, user, "two", 120).await;
    let token = user_token(&hub, user).await;
    // The poller's metrics, as Prometheus' own parser reads them.
    let poller = poller_metrics(&p, &hub).await;
    assert!(poller("nbhub_slurm_polls_total{\"result\": \"answered\"}") >= 1.0);
    assert_eq!(poller("nbhub_slurm_controller_up{}"), 1.0);
    assert_eq!(poller("nbhub_slurm_jobs{\"state\": \"RUNNING\"}"), 2.0);

    let ctld = Controller::stop(&p.slurm_conf);
    // A minute without a controller: 60 polls that cannot be answered.
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut spawn_tried = false;
    while tokio::time::Instant::now() < until {
        for server in ["one", "two"] {
            let model = server_model(&hub, user, server).await;
            assert!(
                model.as_ref().is_some_and(|m| m["ready"] == json!(true)),
                "{server} must stay running while the controller is down: {model:?}\n{}",
                hub.log()
            );
            let status =
                status_of(&hub, &format!("/user/{user}/{server}/api/status"), &token).await;
            assert_eq!(status, 200, "{server} must stay reachable");
        }
        // Once the hub's view of the partitions (5 s) is older than the outage, a start is
        // refused at once: 503 (nothing is wrong with its options), with the reason.
        if !spawn_tried && until - tokio::time::Instant::now() < Duration::from_secs(45) {
            spawn_tried = true;
            let (s, body) = start(
                &hub,
                user,
                "three",
                json!({"partition": "devel", "nodes": 1, "runtime": "00:10"}),
            )
            .await;
            assert_eq!(s, 503, "{body}");
            assert!(
                body.to_lowercase().contains("controller does not answer"),
                "the refused spawn should say the controller cannot be reached: {body}"
            );
            assert!(
                server_model(&hub, user, "three").await.is_none(),
                "no server three"
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let poller = poller_metrics(&p, &hub).await;
    assert_eq!(
        poller("nbhub_slurm_controller_up{}"),
        0.0,
        "metrics during the outage"
    );
    assert!(poller("nbhub_slurm_polls_total{\"result\": \"failed\"}") >= 1.0);
    drop(ctld);
    // Tracking goes on by itself: an outside scancel is noticed again.
    let one = server_model(&hub, user, "one").await.expect("one");
    let job = one["slurm"]["job_id"]
        .to_string()
        .trim_matches('"')
        .to_string();
    eventually(30, "the controller back", || async {
        slurm(&p.slurm_conf, "scancel", &[&job]).0.then_some(())
    })
    .await;
    eventually(
        30,
        "the cancelled server seen stopped after the outage",
        || async {
            server_model(&hub, user, "one")
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert!(server_model(&hub, user, "two")
        .await
        .is_some_and(|m| m["ready"] == json!(true)));
}

/// `/hub/metrics` parsed by `prometheus_client`; the closure looks a sample up by its key.
async fn poller_metrics(p: &Parts, hub: &HubProc) -> impl Fn(&str) -> f64 {
    let (status, text) = scrape(hub, Some(ADMIN)).await;
    assert_eq!(status, 200, "{text}");
    let samples = parse(&p.venv, &text);
    move |key| sample(&samples, key)
}

/// slurmctld stopped for a while; started again when dropped.
struct Controller {
    conf: String,
}

impl Controller {
    fn stop(conf: &str) -> Controller {
        let text = std::fs::read_to_string(conf).expect("slurm.conf");
        let pid_file = text
            .lines()
            .find_map(|l| l.strip_prefix("SlurmctldPidFile="))
            .expect("SlurmctldPidFile in slurm.conf");
        let pid: i32 = std::fs::read_to_string(pid_file.trim())
            .expect("slurmctld pid file")
            .trim()
            .parse()
            .expect("pid");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while slurm(conf, "scontrol", &["ping"]).1.contains("UP") {
            assert!(
                std::time::Instant::now() < deadline,
                "slurmctld did not stop"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Controller {
            conf: conf.to_string(),
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let status = Command::new("slurmctld")
            .args(["-f", &self.conf])
            .env("SLURM_CONF", &self.conf)
            .status();
        assert!(status.is_ok_and(|s| s.success()), "restarting slurmctld");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !slurm(&self.conf, "scontrol", &["ping"]).1.contains("UP") {
            assert!(
                std::time::Instant::now() < deadline,
                "slurmctld did not come back"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Acceptance 6: with 20 servers running or pending, the hub asks squeue once per poll
/// interval (counted by a wrapper), not once per server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_servers_cost_one_squeue_per_poll() {
    let Some(p) = parts() else { return };
    // It fills the devel partition: the cluster is its own meanwhile.
    let _alone = CLUSTER.write().await;
    // A bin_dir whose squeue counts its calls, the other commands as they are.
    let bin = nbhub_testkit::temp_dir_world_readable();
    let count = bin.path().join("squeue.calls");
    for program in ["sbatch", "scancel", "sinfo", "scontrol", "sacctmgr"] {
        if let Some(real) = nbhub_testkit::which(program) {
            std::os::unix::fs::symlink(real, bin.path().join(program)).expect("symlink");
        }
    }
    let squeue = nbhub_testkit::which("squeue").expect("squeue on PATH");
    let wrapper = bin.path().join("squeue");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho x >> '{}'\nexec '{}' \"$@\"\n",
            count.display(),
            squeue.display()
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let hub = HubProc::started(
        p.venv.clone(),
        &p.proxy,
        Options {
            slurm: Some(format!(
                "slurm_conf = \"{}\"\nsubmit_as = \"setuid\"\npoll_interval = 2\nbin_dir = \"{}\"\n",
                p.slurm_conf,
                bin.path().display()
            )),
            extra_toml: "named_server_limit_per_user = 0".into(),
            ..Default::default()
        },
    )
    .await;
    let dave = SlurmUser::new(&p, &hub, "sd").await;
    let user = dave.name.as_str();
    // All at once: a start call waits up to slow_spawn_timeout, and most of these jobs queue.
    let starts = (0..20).map(|i| {
        let hub = &hub;
        async move {
            let name = format!("s{i}");
            let options = json!({"partition": "devel", "nodes": 1, "runtime": "00:10"});
            (name.clone(), start(hub, user, &name, options).await)
        }
    });
    for (name, (s, body)) in futures_util::future::join_all(starts).await {
        assert!(s == 201 || s == 202, "start {name}: {s} {body}");
    }
    eventually(60, "20 jobs in the queue", || async {
        (jobs_of(&p.slurm_conf, user).len() == 20).then_some(())
    })
    .await;
    let calls = |path: &Path| {
        std::fs::read_to_string(path)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let before = calls(&count);
    let window = Duration::from_secs(10);
    tokio::time::sleep(window).await;
    let during = calls(&count) - before;
    // One per 2-second poll (5 in 10 s), give or take one at each edge.
    assert!(
        during <= 7,
        "{during} squeue calls in {} s for 20 servers: expected one per poll interval",
        window.as_secs()
    );
    assert!(
        during >= 3,
        "the tracker should keep polling: {during} calls"
    );
}

/// Acceptance 8: the hub killed (-9) with one job pending and another running re-adopts
/// both: the pending one becomes ready when it runs, the running one keeps its kernel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_hub_readopts_pending_and_running_jobs() {
    let Some(p) = parts() else { return };
    let _shared = CLUSTER.read().await;
    let _gpu = GPU_PARTITION.lock().await;
    let mut hub = slurm_hub(&p, "");
    hub.start().await;
    let erin = SlurmUser::new(&p, &hub, "se").await;
    let user = erin.name.as_str();
    let (s, body) = start(
        &hub,
        user,
        "",
        json!({"partition": "batch", "nodes": 1, "runtime": "00:30"}),
    )
    .await;
    assert!(s == 201 || s == 202, "{body}");
    wait_ready(&hub, user, "", 120).await;
    let token = user_token(&hub, user).await;
    let prefix = format!("/user/{user}/");
    let kernel_id = kernel::create_kernel_with_token(&hub, &prefix, &token).await;
    kernel::execute(&hub, &prefix, &kernel_id, &token, "x = 6 * 7\nprint('set')").await;

    let blocker = block_gpu_nodes(&p.slurm_conf);
    let _unblock = CancelJobs::job(&p.slurm_conf, &blocker);
    let (s, body) = start(
        &hub,
        user,
        "queued",
        json!({"partition": "gpu", "nodes": 1, "runtime": "00:10"}),
    )
    .await;
    assert!(s == 202, "a queued job answers 202: {s} {body}");
    eventually(30, "the queued job pending", || async {
        jobs_of(&p.slurm_conf, user)
            .into_iter()
            .find(|j| j.contains("|gpu|") && j.ends_with("PENDING"))
    })
    .await;

    hub.kill9_hub();
    hub.start().await;
    // Adoption runs in the background once the hub listens.
    eventually(30, "both jobs adopted", || async {
        let log = hub.log();
        (log.contains("adopted a running server")
            && log.contains("taking up a start that was under way"))
        .then_some(())
    })
    .await;
    let printed = kernel::execute(&hub, &prefix, &kernel_id, &token, "print(x)").await;
    assert_eq!(
        printed.trim(),
        "42",
        "the kernel lived through the hub restart"
    );
    let (ok, out) = slurm(&p.slurm_conf, "scancel", &[&blocker]);
    assert!(ok, "{out}");
    let model = wait_ready(&hub, user, "queued", 120).await;
    assert_eq!(model["slurm"]["partition"], "gpu", "{model}");
}

/// Acceptance 2 (and the pages' Slurm parts): in Chromium, the form lists the three
/// partitions with their live limits, estimates a start, and `batch` with 2 nodes and 30
/// minutes becomes a 2-node job; the pending page shows Slurm's states; JupyterLab loads; the
/// home page shows the job and its time left, and stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spawn_form_in_a_browser_starts_a_two_node_job() {
    let Some(p) = parts() else { return };
    let Some(b) = chromium::Browser::start().await else {
        return;
    };
    let _shared = CLUSTER.read().await;
    let mut hub = slurm_hub(&p, "");
    hub.start().await;
    let carol = SlurmUser::new(&p, &hub, "sw").await;
    let user = carol.name.as_str();
    let base = hub.public_url("");

    b.sign_in(&base, user, PASSWORD).await;
    b.goto(&format!("{base}/hub/spawn/{user}")).await;
    b.find("#opt-partition").await;
    let picker = b
        .eval("return !!document.querySelector('#opt-system')", json!([]))
        .await;
    assert_eq!(
        picker,
        json!(false),
        "one [slurm] cluster: no system picker"
    );
    let partitions = b
        .eval(
            "return [...document.querySelectorAll('#opt-partition option')].map(o => o.value)",
            json!([]),
        )
        .await;
    assert_eq!(partitions, json!(["batch", "devel", "gpu"]));
    // Each partition's facts (the page shows those of the one selected).
    let info = b
        .eval(
            "return [...document.querySelectorAll('#opt-partition-info li')].map(li => li.dataset.choice + ': ' + li.textContent).join('\\n')",
            json!([]),
        )
        .await;
    let info = info.as_str().unwrap_or_default();
    for (partition, limit) in [("batch", "8:00:00"), ("devel", "30:00"), ("gpu", "4:00:00")] {
        let line = info
            .lines()
            .find(|l| l.starts_with(&format!("{partition}: ")))
            .unwrap_or_else(|| panic!("no live facts for {partition}: {info}"));
        assert!(
            line.contains("nodes free") && line.contains(limit.trim_start_matches('0')),
            "{partition} should show its free nodes and MaxTime {limit}: {line}"
        );
    }
    choose_partition(&b, "batch").await;
    b.fill("#opt-nodes", "2").await;
    b.fill("#opt-runtime", "00:30").await;
    b.click("#estimate-btn").await;
    b.wait_until(
        "/start/i.test(document.querySelector('#estimate-result').textContent)",
        "Slurm's estimate on the form",
    )
    .await;
    b.screenshots("spawn-slurm").await;

    let job = submit_the_form(&b, &p, user).await;
    let fields: Vec<&str> = job.split('|').collect();
    assert_eq!(&fields[1..5], ["batch", "2", "30:00", user], "{job}");
    if b.url().await.contains("/spawn-pending/") {
        b.wait_until(
            "/Submitted job|Running on/.test(document.querySelector('#progress-log').textContent) \
             || location.pathname.startsWith('/user/')",
            "Slurm's states on the progress page",
        )
        .await;
        b.screenshots("spawn_pending-slurm").await;
    }
    b.wait_until_for(
        &format!(
            "location.pathname.startsWith('/user/{user}/') && document.querySelector('#jp-main-dock-panel')"
        ),
        "JupyterLab's main area",
        Duration::from_secs(120),
    )
    .await;

    b.goto(&format!("{base}/hub/home")).await;
    b.wait_until(
        "/\\d+:\\d\\d/.test(document.querySelector('.time-left')?.textContent || '')",
        "the job's time left counting down",
    )
    .await;
    let facts = b.text(".server-facts").await;
    assert!(
        facts.contains(fields[0]) && facts.contains("batch") && facts.contains("node["),
        "the home page should show the job id, partition and node list: {facts}"
    );
    let warned = b
        .eval(
            "return !document.querySelector('#time-warning').classList.contains('d-none')",
            json!([]),
        )
        .await;
    assert_eq!(warned, json!(false), "no warning with 30 minutes left");
    b.screenshots("home-slurm").await;

    // A server with under ten minutes left raises the warning banner.
    let (s, body) = start(
        &hub,
        user,
        "short",
        json!({"partition": "devel", "nodes": 1, "runtime": "00:05"}),
    )
    .await;
    assert!(s == 201 || s == 202, "start short: {s} {body}");
    wait_ready(&hub, user, "short", 120).await;
    b.goto(&format!("{base}/hub/home")).await;
    b.wait_until(
        "!document.querySelector('#time-warning').classList.contains('d-none') \
         && /save your work/.test(document.querySelector('#time-warning').textContent)",
        "the warning banner for the job with 5 minutes left",
    )
    .await;
    b.screenshots("home-slurm-warning").await;
    let (s, body) = admin(
        &hub,
        Method::DELETE,
        &format!("/users/{user}/servers/short"),
        None,
    )
    .await;
    assert!(s == 204 || s == 202, "stop short: {s} {body}");
    eventually(60, "short stopped", || async {
        server_model(&hub, user, "short")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    b.goto(&format!("{base}/hub/home")).await;
    b.click("#stop").await;
    b.wait_until_for(
        "document.querySelector('#default-status').textContent.trim() === 'Stopped'",
        "the server shown stopped",
        Duration::from_secs(60),
    )
    .await;
    eventually(60, "the job gone from squeue", || async {
        jobs_of(&p.slurm_conf, user).is_empty().then_some(())
    })
    .await;
    b.quit().await;
}

/// What the demo shows (issue 9, point 9): `gpu` with one GPU runs JupyterLab on a GPU node,
/// and the kernel sees the GPU Slurm gave it in `CUDA_VISIBLE_DEVICES`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gpu_job_runs_on_a_gpu_node_and_sees_its_gpu() {
    let Some(p) = parts() else { return };
    let _shared = CLUSTER.read().await;
    let _gpu = GPU_PARTITION.lock().await;
    let mut hub = slurm_hub(&p, "");
    hub.start().await;
    let erin = SlurmUser::new(&p, &hub, "sg").await;
    let user = erin.name.as_str();
    let (s, body) = start(
        &hub,
        user,
        "",
        json!({"partition": "gpu", "nodes": 1, "runtime": "00:10", "gpus": 1}),
    )
    .await;
    assert!(s == 201 || s == 202, "start: {s} {body}");
    let model = wait_ready(&hub, user, "", 120).await;
    let node_list = model["slurm"]["node_list"].as_str().unwrap_or_default();
    assert!(
        node_list == "node3" || node_list == "node4",
        "a gpu job runs on node3 or node4: {model}"
    );
    let printed = run_in_new_kernel(&hub, user, "import os; print(os.environ.get('SLURMD_NODENAME'), os.environ.get('CUDA_VISIBLE_DEVICES'))").await;
    let (node, gpus) = printed.trim().split_once(' ').unwrap_or_default();
    assert_eq!(
        node, node_list,
        "the kernel runs on the job's node: {printed}"
    );
    assert!(
        gpus == "0" || gpus == "1",
        "one of the node's two GPUs is visible: {printed}"
    );
}

/// A job waiting in the queue: the pending page shows Slurm's reason and its Cancel button
/// cancels the job; with `[slurm] max_queue_wait` a job that waits longer is cancelled with a
/// message saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_is_cancelled_from_the_pending_page_or_after_max_queue_wait() {
    let Some(p) = parts() else { return };
    let Some(b) = chromium::Browser::start().await else {
        return;
    };
    let _shared = CLUSTER.read().await;
    let _gpu = GPU_PARTITION.lock().await;
    let mut hub = slurm_hub(&p, "max_queue_wait = 15\n");
    hub.start().await;
    let frank = SlurmUser::new(&p, &hub, "sq").await;
    let user = frank.name.as_str();
    let blocker = block_gpu_nodes(&p.slurm_conf);
    let _unblock = CancelJobs::job(&p.slurm_conf, &blocker);
    let base = hub.public_url("");

    b.sign_in(&base, user, PASSWORD).await;
    b.goto(&format!("{base}/hub/spawn/{user}")).await;
    b.eval(
        "const s = document.querySelector('#opt-partition'); s.value = 'gpu'; \
         s.dispatchEvent(new Event('change', {bubbles: true}));",
        json!([]),
    )
    .await;
    b.fill("#opt-nodes", "1").await;
    b.fill("#opt-runtime", "00:10").await;
    b.click("#spawn-submit").await;
    b.wait_until(
        "location.pathname.includes('/spawn-pending/') \
         && /Pending: /.test(document.querySelector('#progress-log').textContent)",
        "Slurm's pending reason on the progress page",
    )
    .await;
    b.screenshots("spawn_pending-queued").await;
    assert_eq!(jobs_of(&p.slurm_conf, user).len(), 1, "one job queued");
    b.click("#cancel-spawn").await;
    b.wait_until(
        "location.pathname === '/hub/home'",
        "back home after Cancel",
    )
    .await;
    eventually(30, "the cancelled job gone from squeue", || async {
        jobs_of(&p.slurm_conf, user).is_empty().then_some(())
    })
    .await;
    b.quit().await;

    // Through the API, left waiting: cancelled after max_queue_wait, with the reason.
    let (s, body) = start(
        &hub,
        user,
        "",
        json!({"partition": "gpu", "nodes": 1, "runtime": "00:10"}),
    )
    .await;
    // The call waits up to slow_spawn_timeout (30 s here), longer than max_queue_wait: the
    // failure comes in its answer, as JupyterHub's "Spawn failed" 500.
    assert_eq!(s, 500, "the spawn fails within the call: {body}");
    assert!(
        body.contains("max_queue_wait"),
        "the failure should name max_queue_wait: {body}"
    );
    assert!(server_model(&hub, user, "").await.is_none());
    assert!(
        jobs_of(&p.slurm_conf, user).is_empty(),
        "the job waiting too long is cancelled"
    );
}

/// Stops `user`'s default server through the API and waits until squeue lists no job of
/// theirs.
async fn stop_default_server(hub: &HubProc, conf: &str, user: &str) {
    let (s, body) = admin(hub, Method::DELETE, &format!("/users/{user}/server"), None).await;
    assert!(s == 204 || s == 202, "stop: {s} {body}");
    eventually(60, "the job gone from squeue", || async {
        jobs_of(conf, user).is_empty().then_some(())
    })
    .await;
}

/// `user`'s first job once squeue lists it, as [`jobs_of`] does.
async fn job_in_squeue(conf: &str, user: &str) -> String {
    eventually(30, "the job in squeue", || async {
        jobs_of(conf, user).into_iter().next()
    })
    .await
}

/// Submits the spawn form open in `b` and waits for the progress page and for `user`'s job in
/// squeue; returns the job as [`jobs_of`] lists it.
async fn submit_the_form(b: &chromium::Browser, p: &Parts, user: &str) -> String {
    // A form taller than the window: the button is brought into view first, at once
    // (Bootstrap makes scrolling smooth, and a click during the scroll misses).
    b.eval(
        "document.querySelector('#spawn-submit').scrollIntoView({block: 'center', behavior: 'instant'})",
        json!([]),
    )
    .await;
    b.click("#spawn-submit").await;
    b.wait_until(
        "location.pathname.includes('/spawn-pending/') || location.pathname.startsWith('/user/')",
        "the progress page",
    )
    .await;
    job_in_squeue(&p.slurm_conf, user).await
}

/// Selects `value` in the form's partition list as a user would (a change event).
async fn choose_partition(b: &chromium::Browser, value: &str) {
    choose(b, "partition", value).await;
}

/// Selects `value` in the form's select for option `field` as a user would (a change event).
async fn choose(b: &chromium::Browser, field: &str, value: &str) {
    b.eval(
        "const s = document.getElementById(`opt-${arguments[0]}`); s.value = arguments[1]; \
         s.dispatchEvent(new Event('change', {bubbles: true}));",
        json!([field, value]),
    )
    .await;
}

/// The live facts the form shows for `partition`.
async fn partition_facts(b: &chromium::Browser, partition: &str) -> String {
    b.find("#opt-partition-info").await;
    b.eval(
        "return document.querySelector(`#opt-partition-info li[data-choice='${arguments[0]}']`)?.textContent || ''",
        json!([partition]),
    )
    .await
    .as_str()
    .unwrap_or_default()
    .to_string()
}

/// Issue 20, points 9, 10 and 14 in Chromium against the dev cluster: the form follows the
/// partition chosen (nodes max, hints, default run time), says which run times it takes, tells
/// GPUs on a mixed partition as they are and refuses 4 nodes × 1 GPU on `batch` (the form, and
/// the server with a 400 naming the field), counts free GPUs (none while a job holds them all),
/// and the admin page's running tab shows the job, partition, nodes and time left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_form_follows_the_partition_and_counts_free_gpus() {
    let Some(p) = parts() else { return };
    let Some(b) = chromium::Browser::start().await else {
        return;
    };
    let _shared = CLUSTER.read().await;
    let mut hub = slurm_hub_with(&p, "", "admin_users = [\"formadmin\"]");
    hub.start().await;
    let dana = SlurmUser::new(&p, &hub, "sf").await;
    let user = dana.name.as_str();
    let base = hub.public_url("");
    let spawn_url = format!("{base}/hub/spawn/{user}");
    b.sign_in(&base, user, PASSWORD).await;
    b.goto(&spawn_url).await;
    b.find("#opt-partition").await;
    assert_eq!(
        b.text("label[for='opt-runtime']").await.trim(),
        "Run time (hh:mm:ss, hh:mm or minutes)",
        "the label names every form the run time takes"
    );

    // devel: 1 node, 30 minutes, 10 by default.
    choose_partition(&b, "devel").await;
    b.wait_until(
        "document.querySelector('#opt-nodes').max === '1' \
         && /from 1 to 1$/.test(document.querySelector('#opt-nodes-help').textContent) \
         && document.querySelector('#opt-runtime').value === '00:10:00' \
         && /to 00:30:00$/.test(document.querySelector('#opt-runtime-help').textContent)",
        "devel's node limit, run time limit and default run time",
    )
    .await;
    b.screenshots("spawn-slurm-devel").await;
    // gpu: 2 nodes, 4 hours, 30 minutes by default.
    choose_partition(&b, "gpu").await;
    b.wait_until(
        "document.querySelector('#opt-nodes').max === '2' \
         && document.querySelector('#opt-runtime').value === '00:30:00' \
         && /to 04:00:00$/.test(document.querySelector('#opt-runtime-help').textContent)",
        "gpu's limits and default",
    )
    .await;

    // batch: GPUs on only 2 of its 4 nodes.
    choose_partition(&b, "batch").await;
    b.wait_until(
        "document.querySelector('#opt-nodes').max === '4' \
         && document.querySelector('#opt-runtime').value === '01:00:00'",
        "batch's limits and default",
    )
    .await;
    let facts = partition_facts(&b, "batch").await;
    assert!(
        facts.contains("GPUs on 2 of 4 nodes") && !facts.contains("2 GPUs per node"),
        "batch has GPUs on 2 of its 4 nodes: {facts}"
    );
    b.fill("#opt-gpus", "1").await;
    b.fill("#opt-nodes", "4").await;
    b.wait_until(
        "!document.querySelector('#opt-nodes-check').hidden \
         && /only 2 node/.test(document.querySelector('#opt-nodes-check').textContent) \
         && document.querySelector('#opt-nodes').max === '2'",
        "4 nodes × 1 GPU refused on the form",
    )
    .await;
    b.screenshots("spawn-slurm-gpu-refused").await;
    b.eval("window.__stayed = 1;", json!([])).await;
    b.click("#spawn-submit").await;
    let stayed = b
        .eval(
            "return window.__stayed === 1 && location.pathname.includes('/hub/spawn/')",
            json!([]),
        )
        .await;
    assert_eq!(
        stayed,
        json!(true),
        "Start does not submit what the form refuses"
    );
    let (s, body) = start(
        &hub,
        user,
        "",
        json!({"partition": "batch", "nodes": 4, "gpus": 1, "runtime": "00:10"}),
    )
    .await;
    assert_eq!(
        s, 400,
        "the server refuses 4 nodes × 1 GPU on batch: {body}"
    );
    assert!(
        body.contains("nodes") && body.contains("only 2 node"),
        "the answer names the field: {body}"
    );
    assert!(jobs_of(&p.slurm_conf, user).is_empty(), "no job submitted");

    // Free GPUs: none while a job of root holds every GPU (its nodes keep a free CPU).
    {
        let _gpu = GPU_PARTITION.lock().await;
        let (ok, out) = slurm(
            &p.slurm_conf,
            "sbatch",
            &[
                "--parsable",
                "-p",
                "gpu",
                "-N",
                "2",
                "--ntasks-per-node=1",
                "--gres=gpu:2",
                "-t",
                "10",
                "-o",
                "/dev/null",
                "--wrap",
                "sleep 600",
            ],
        );
        assert!(ok, "GPU job: {out}");
        let gpu_job = out.trim().to_string();
        let _unblock = CancelJobs::job(&p.slurm_conf, &gpu_job);
        eventually(120, "the GPU job running", || async {
            let (_, state) = slurm(&p.slurm_conf, "squeue", &["-h", "-j", &gpu_job, "-o", "%T"]);
            (state.trim() == "RUNNING").then_some(())
        })
        .await;
        let facts = eventually(30, "no GPU free on the form", || async {
            b.goto(&spawn_url).await;
            let facts = partition_facts(&b, "gpu").await;
            facts.contains("0 of 4 GPUs free").then_some(facts)
        })
        .await;
        assert!(facts.contains("GPUs on 2 of 2 nodes"), "{facts}");
        let batch = partition_facts(&b, "batch").await;
        assert!(batch.contains("0 of 4 GPUs free"), "{batch}");
        let (ok, out) = slurm(&p.slurm_conf, "scancel", &[&gpu_job]);
        assert!(ok, "{out}");
        eventually(60, "GPUs free again on the form", || async {
            b.goto(&spawn_url).await;
            let facts = partition_facts(&b, "gpu").await;
            (facts.contains("of 4 GPUs free") && !facts.contains("0 of 4 GPUs free")).then_some(())
        })
        .await;
    }

    // The admin page's running tab: job, partition, nodes, time left.
    let (s, body) = start(
        &hub,
        user,
        "",
        json!({"partition": "devel", "nodes": 1, "runtime": "00:10"}),
    )
    .await;
    assert!(s == 201 || s == 202, "start: {s} {body}");
    let model = wait_ready(&hub, user, "", 120).await;
    let job = model["slurm"]["job_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!job.is_empty(), "{model}");
    b.goto(&format!("{base}/hub/logout")).await;
    b.sign_in(&base, "formadmin", PASSWORD).await;
    b.goto(&format!("{base}/hub/admin")).await;
    b.click("#tab-running").await;
    b.wait_until(
        "document.querySelector('#pane-running').classList.contains('show')",
        "the running servers tab shown",
    )
    .await;
    let row = format!("#running-table tr.running-row[data-user='{user}']");
    b.wait_until(
        &format!(
            "/^\\d+:\\d\\d/.test(document.querySelector(\"{row} .time-left\").textContent.trim())"
        ),
        "the job's time left counting down on the admin page",
    )
    .await;
    let cells = b
        .eval(
            &format!(
                "const r = document.querySelector(\"{row}\"); \
                 return ['.job-id', '.partition', '.nodes'].map(c => r.querySelector(c).textContent.trim())"
            ),
            json!([]),
        )
        .await;
    assert_eq!(cells[0], json!(job), "{cells}");
    assert_eq!(cells[1], json!("devel"), "{cells}");
    assert!(
        cells[2].as_str().unwrap_or_default().starts_with("1 (node"),
        "one node, and which: {cells}"
    );
    let headers = b.text("#running-table thead").await;
    for h in ["Job", "Partition", "Nodes", "Time left"] {
        assert!(headers.contains(h), "{headers}");
    }
    b.screenshots("admin-running-slurm").await;
    // On a phone the table scrolls by itself; the page does not.
    b.set_width(390, 844).await;
    let widths = b
        .eval(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]",
            json!([]),
        )
        .await;
    assert_eq!(
        widths[0], widths[1],
        "the admin page is no wider than a phone: {widths}"
    );
    b.set_width(1280, 900).await;
    let (s, body) = admin(&hub, Method::DELETE, &format!("/users/{user}/server"), None).await;
    assert!(s == 204 || s == 202, "stop: {s} {body}");
    b.quit().await;
}

/// The home page of `user` in Chromium, signed in.
async fn open_home(b: &chromium::Browser, hub: &HubProc, user: &str) {
    let base = hub.public_url("");
    b.sign_in(&base, user, PASSWORD).await;
    b.goto(&format!("{base}/hub/home")).await;
    b.find("#default-status").await;
}

/// A JavaScript test of the default server's status badge on the home page.
fn default_status_is(label: &str) -> String {
    format!("document.querySelector('#default-status').textContent.trim() === '{label}'")
}

/// Issue 20, points 11, 8 and 7, in Chromium: a queued job reads "Pending" with Slurm's
/// reason on the home page, and follows to Running without a reload; a job cancelled from
/// outside is marked stopped within seconds although the hub's own poll comes once a minute
/// (the tracker tells the supervisor); the home page then says why in one line, and shows
/// the job's last lines only on request, escaped, with secrets masked. The job's output is
/// in `~/.nbhub/logs/` (point 13).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_shows_a_queued_job_as_pending_and_an_outside_scancel_at_once() {
    let Some(p) = parts() else { return };
    let Some(b) = chromium::Browser::start().await else {
        return;
    };
    let _shared = CLUSTER.read().await;
    let _gpu = GPU_PARTITION.lock().await;
    let mut hub = slurm_hub(&p, "");
    // The hub's own poll comes once a minute: only the tracker's word can be this quick.
    hub.env
        .push(("NBHUB_SPAWNER__POLL_INTERVAL".into(), "60".into()));
    hub.start().await;
    let acct = SlurmUser::new(&p, &hub, "sp").await;
    let user = acct.name.as_str();
    let blocker = block_gpu_nodes(&p.slurm_conf);
    let _unblock = CancelJobs::job(&p.slurm_conf, &blocker);
    let (s, body) = start(
        &hub,
        user,
        "",
        json!({"partition": "gpu", "nodes": 1, "runtime": "00:10"}),
    )
    .await;
    assert_eq!(s, 202, "a queued job answers 202: {body}");

    open_home(&b, &hub, user).await;
    b.wait_until(
        &default_status_is("Pending"),
        "the queued job shown as Pending",
    )
    .await;
    let why = b.text(".pending-reason").await;
    assert!(
        why.contains("waiting"),
        "the home page should say why the job waits, as Slurm does: {why}"
    );
    b.screenshots("home-slurm-pending").await;
    b.eval("window.__no_reload = 1;", json!([])).await;
    let (ok, out) = slurm(&p.slurm_conf, "scancel", &[&blocker]);
    assert!(ok, "{out}");
    b.wait_until_for(
        &format!(
            "{} && window.__no_reload === 1 && !document.querySelector('.pending-reason') \
             && /\\d+:\\d\\d/.test(document.querySelector('.time-left')?.textContent || '')",
            default_status_is("Running")
        ),
        "the job shown running, with its time left, without a reload",
        Duration::from_secs(120),
    )
    .await;

    let model = server_model(&hub, user, "").await.expect("running");
    let job = model["slurm"]["job_id"]
        .as_str()
        .expect("job id")
        .to_string();
    let home = acct.home.clone();
    let log = home.join(format!(".nbhub/logs/nbhub-slurm-{job}.log"));
    eventually(30, "the job's output in ~/.nbhub/logs", || async {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("nbhub: starting the server"))
    })
    .await;
    assert!(
        !home.join(format!("nbhub-slurm-{job}.log")).exists(),
        "no output file in the home folder itself"
    );
    // What a server may log in debug mode: a token, a cookie value, markup.
    let secret = "0f3c9a8e1b2d4c6e8a0b1c2d3e4f5a6b";
    let xsrf = "0d8e5f6a7b8c9d0e1f2a3b4c5d6e7f80";
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("the job's log");
        writeln!(
            f,
            "[D 2026-12-07 10:00:00 ServerApp] Authorization: token {secret}\n\
             Set-Cookie: _xsrf=2|4c7a3c1b|{xsrf}|1765000000; Path=/user/{user}/\n\
             <script>window.__injected = 1</script>"
        )
        .expect("append");
    }

    let cancelled = std::time::Instant::now();
    let (ok, out) = slurm(&p.slurm_conf, "scancel", &[&job]);
    assert!(ok, "{out}");
    eventually(10, "the cancelled server marked stopped", || async {
        server_model(&hub, user, "").await.is_none().then_some(())
    })
    .await;
    let took = cancelled.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "the hub took {took:?} to notice the cancelled job (its own poll interval is 60 s)"
    );
    // The page notices within its refresh and shows why.
    b.wait_until(
        "document.querySelector('.exit-reason')",
        "why the server stopped, on the home page",
    )
    .await;
    assert!(
        b.eval(
            "return document.querySelector('#default-status').textContent.trim()",
            json!([])
        )
        .await
            == json!("Stopped")
    );
    let reason = b.text(".exit-reason").await;
    assert!(reason.contains("was cancelled"), "{reason}");
    assert!(
        !reason.trim().contains('\n') && reason.len() < 200,
        "the reason is one line: {reason}"
    );
    let details = b
        .eval(
            "const d = document.querySelector('details.exit-log'); \
             return d && [d.open, d.querySelector('summary').textContent.trim()]",
            json!([]),
        )
        .await;
    assert_eq!(
        details,
        json!([false, "Show the job's last lines"]),
        "the last lines are shown on request"
    );
    b.click("details.exit-log summary").await;
    let lines = b.text(".exit-log-lines").await;
    assert!(
        lines.contains("ServerApp] received signal 15"),
        "the real server's last lines: {lines}"
    );
    assert!(lines.contains("Authorization: token [hidden]"), "{lines}");
    assert!(
        !lines.contains(secret) && !lines.contains(xsrf),
        "secrets are masked: {lines}"
    );
    assert!(
        lines.contains("<script>window.__injected = 1</script>"),
        "markup is shown as text: {lines}"
    );
    let injected = b
        .eval(
            "return [window.__injected === undefined, document.querySelectorAll('.exit-note script').length]",
            json!([]),
        )
        .await;
    assert_eq!(injected, json!([true, 0]), "nothing of the log runs");
    b.screenshots("home-slurm-cancelled").await;
    b.quit().await;
}

/// Issue 20, point 6, in Chromium: Stop on the home page takes the job's time left and the
/// "save your work" banner away at once, and the job's facts once it stopped, without a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_on_home_takes_the_time_left_and_the_warning_away_at_once() {
    let Some(p) = parts() else { return };
    let Some(b) = chromium::Browser::start().await else {
        return;
    };
    let _shared = CLUSTER.read().await;
    let mut hub = slurm_hub(&p, "");
    hub.start().await;
    let acct = SlurmUser::new(&p, &hub, "sx").await;
    let user = acct.name.as_str();
    let (s, body) = start(
        &hub,
        user,
        "",
        json!({"partition": "devel", "nodes": 1, "runtime": "00:05"}),
    )
    .await;
    assert!(s == 201 || s == 202, "start: {s} {body}");
    wait_ready(&hub, user, "", 120).await;

    open_home(&b, &hub, user).await;
    b.wait_until(
        "!document.querySelector('#time-warning').classList.contains('d-none') \
         && /\\d+:\\d\\d/.test(document.querySelector('.time-left')?.textContent || '')",
        "the time left and the warning banner of a 5-minute job",
    )
    .await;
    b.eval("window.__no_reload = 1;", json!([])).await;
    b.click("#stop").await;
    let shown = "return [document.querySelector('#default-status').textContent.trim(), \
                 !!document.querySelector('.time-left'), \
                 !document.querySelector('#time-warning').classList.contains('d-none'), \
                 !!document.querySelector('.server-facts')]";
    b.wait_until(
        "document.querySelector('#default-status').textContent.trim() !== 'Running'",
        "the server shown stopping",
    )
    .await;
    let stopping = b.eval(shown, json!([])).await;
    assert_eq!(
        (&stopping[1], &stopping[2]),
        (&json!(false), &json!(false)),
        "while it stops, no time left counts down and no banner warns: {stopping}"
    );
    b.wait_until_for(
        &format!(
            "{} && window.__no_reload === 1",
            default_status_is("Stopped")
        ),
        "the server shown stopped without a reload",
        Duration::from_secs(60),
    )
    .await;
    let stopped = b.eval(shown, json!([])).await;
    assert_eq!(
        stopped,
        json!(["Stopped", false, false, false]),
        "a stopped server has no job facts left on the page"
    );
    b.quit().await;
}
