//! The Slurm spawner against the real dev cluster (`scripts/slurm-dev-cluster start`, with
//! `SLURM_CONF` exported): jobs run as a throw-away Unix account, report their port to a tiny
//! in-test hub API, and are tracked, estimated, cancelled and timed out by the real Slurm.
//!
//! The test that stops slurmctld takes the cluster lock for writing; the others that need the
//! controller take it for reading. The time-limit test (60–90 s) needs no lock: it only waits.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nbhub_spawner::{
    CustomField, CustomType, FormContext, PollStatus, SlurmConfig, SlurmSpawner, SlurmState,
    SpawnRequest, SpawnUpdate, Spawner, SpawnerConfig, SpawnerState, Started, SystemConfig,
    SystemsSpawner, Updates, ValidatedOptions,
};
use nbhub_testkit::{
    http_get, is_root, temp_dir, temp_dir_world_readable, AccountingCluster, TempDir,
};
use serde_json::{json, Value};
use tokio::sync::RwLock;

static CONTROLLER: RwLock<()> = RwLock::const_new(());

/// The dev cluster, or a loud skip (a failure under CI).
fn require_cluster() -> Option<String> {
    if !is_root() {
        nbhub_testkit::missing_part(
            "root (to create a Unix account that jobs run as)",
            "the tests as root (CI does)",
        );
        return None;
    }
    let conf = std::env::var("SLURM_CONF").unwrap_or_default();
    let up = !conf.is_empty()
        && Command::new("sinfo")
            .arg("-h")
            .env("SLURM_CONF", &conf)
            .output()
            .is_ok_and(|o| o.status.success());
    if !up {
        nbhub_testkit::missing_part(
            "the Slurm dev cluster (SLURM_CONF unset, or sinfo fails)",
            "eval \"$(scripts/slurm-dev-cluster start)\" (scripts/test-env.sh does it)",
        );
        return None;
    }
    Some(conf)
}

/// The set-up most tests here share: the cluster's config, with the controller held for
/// reading (the test that stops it holds it for writing).
async fn shared_cluster() -> Option<(String, tokio::sync::RwLockReadGuard<'static, ()>)> {
    let conf = require_cluster()?;
    Some((conf, CONTROLLER.read().await))
}

/// Stops the job of `started`, as the hub does (ten seconds to go).
async fn stop(spawner: &SlurmSpawner, started: &Started) {
    spawner
        .stop(&started.state, Duration::from_secs(10))
        .await
        .expect("stop");
}

/// A Unix account with a home every job can write its output to, removed when dropped.
struct Account {
    name: String,
    _base: TempDir,
}

static ACCOUNTS: Mutex<()> = Mutex::new(());
static SERIAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Account {
    fn create() -> Self {
        let _one_at_a_time = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let base = temp_dir_world_readable();
        let n = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("nbs{}x{n}", std::process::id());
        let out = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", "-d"])
            .arg(base.path().join("home"))
            .arg(&name)
            .output()
            .unwrap();
        assert!(out.status.success(), "useradd: {out:?}");
        Account { name, _base: base }
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        let _one_at_a_time = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let _ = Command::new("userdel")
            .args(["-r", &self.name])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn request(user: &str, unix_user: &str, api_url: &str, options: Value) -> SpawnRequest {
    let mut req = SpawnRequest::new(user, "");
    req.unix_user = unix_user.to_owned();
    req.env = [
        ("JUPYTERHUB_API_TOKEN", TOKEN.to_owned()),
        ("JPY_API_TOKEN", TOKEN.to_owned()),
        ("JUPYTERHUB_CLIENT_ID", format!("jupyterhub-user-{user}")),
        ("JUPYTERHUB_API_URL", api_url.to_owned()),
        ("JUPYTERHUB_USER", user.to_owned()),
        ("JUPYTERHUB_SERVER_NAME", String::new()),
        ("JUPYTERHUB_SERVICE_PREFIX", format!("/user/{user}/")),
        ("JUPYTERHUB_BASE_URL", "/".to_owned()),
        (
            "JUPYTERHUB_OAUTH_CALLBACK_URL",
            format!("/user/{user}/oauth_callback"),
        ),
        ("JUPYTERHUB_OAUTH_SCOPES", "[]".to_owned()),
        ("JUPYTERHUB_OAUTH_ACCESS_SCOPES", "[]".to_owned()),
        ("JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES", "[]".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect::<BTreeMap<_, _>>();
    req.user_options = ValidatedOptions(options.as_object().unwrap().clone());
    req
}

/// A server that serves HTTP on the port the job script picked.
fn http_server_cmd() -> SpawnerConfig {
    SpawnerConfig {
        cmd: vec![
            "/bin/sh".into(),
            "-c".into(),
            "p=${JUPYTERHUB_SERVICE_URL#http://*:}; exec /usr/bin/python3 -m http.server --bind 127.0.0.1 ${p%%/*}".into(),
        ],
        ..Default::default()
    }
}

fn slurm_config(conf: &str) -> SlurmConfig {
    SlurmConfig {
        slurm_conf: conf.to_owned(),
        poll_interval: 1,
        accounts: vec!["proj1".into(), "proj2".into()],
        allow: vec![nbhub_spawner::AllowRule {
            users: vec!["*".into()],
            accounts: vec!["proj1".into()],
            ..Default::default()
        }],
        fields: vec![CustomField {
            name: "mem_mb".into(),
            label: "Memory per node (MB)".into(),
            kind: CustomType::Int,
            min: Some(64.0),
            max: Some(1024.0),
            sbatch: "--mem={value}M".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn spawner(cmd: SpawnerConfig, slurm: SlurmConfig) -> SlurmSpawner {
    SlurmSpawner::new(cmd, slurm, Path::new("/tmp")).expect("spawner")
}

fn squeue_of(conf: &str, user: &str) -> String {
    let out = Command::new("squeue")
        .args(["-h", "-u", user, "-o", "%i|%T|%P|%D|%l|%u"])
        .env("SLURM_CONF", conf)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn job_id(started: &Started) -> String {
    SlurmState::from_state(&started.state).unwrap().job_id
}

async fn wait_poll(
    spawner: &SlurmSpawner,
    state: &SpawnerState,
    timeout: Duration,
    done: impl Fn(&PollStatus) -> bool,
) -> PollStatus {
    let deadline = Instant::now() + timeout;
    loop {
        let status = spawner.poll(state).await;
        if done(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "poll still says {status:?} after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_form_shows_live_partitions_and_bad_values_submit_nothing() {
    let (conf, _cluster) = nbhub_testkit::require!(shared_cluster().await);
    let account = Account::create();
    let spawner = spawner(http_server_cmd(), slurm_config(&conf));
    let mut ctx = FormContext::new(&account.name);
    ctx.last_options = Some(ValidatedOptions(
        json!({"partition": "devel"}).as_object().unwrap().clone(),
    ));
    let form = spawner.options_form(&ctx).await.expect("a form");
    assert!(form.can_estimate);
    let partition = form.field("partition").unwrap();
    assert_eq!(
        partition.value,
        Some(json!("devel")),
        "opens with the last value"
    );
    let nbhub_spawner::FieldKind::Select { choices } = &partition.kind else {
        panic!("{partition:?}")
    };
    let names: Vec<&str> = choices.iter().map(|c| c.value.as_str()).collect();
    assert_eq!(names, ["batch", "devel", "gpu"]);
    let data = |i: usize, key: &str| choices[i].data[key].clone();
    assert_eq!(
        (
            data(0, "max_nodes"),
            data(1, "max_nodes"),
            data(2, "max_nodes")
        ),
        (json!(4), json!(1), json!(2))
    );
    assert_eq!(data(1, "max_time_secs"), json!(1800));
    assert_eq!(data(1, "default_time_secs"), json!(600));
    assert_eq!(data(2, "gpus_per_node"), json!(2));
    let info = choices[2].info.as_deref().unwrap();
    assert!(
        info.contains("nodes free") && info.contains("GPUs on 2 of 2 nodes, 2 per node"),
        "{info}"
    );
    assert!(form.field("gpus").unwrap().visible_when.is_some());

    let ok = spawner
        .validate_options(
            &ctx,
            &json!({"partition": "devel", "nodes": 1, "runtime": "00:10"}),
        )
        .await
        .expect("valid");
    assert_eq!(ok.get_str("runtime"), Some("00:10:00"));
    for (bad, field) in [
        (json!({"partition": "devel", "nodes": 0}), "nodes"),
        (json!({"partition": "batch", "nodes": 99}), "nodes"),
        (
            json!({"partition": "devel", "nodes": "2; rm -rf ~"}),
            "nodes",
        ),
        (json!({"partition": "devel", "runtime": "01:00"}), "runtime"),
        (json!({"partition": "devel", "runtime": "-5"}), "runtime"),
        (json!({"partition": "nosuch"}), "partition"),
        (json!({"partition": "devel", "gpus": 1}), "gpus"),
        (json!({"partition": "devel", "account": "proj2"}), "account"),
        (json!({"partition": "devel", "mem_mb": 4096}), "mem_mb"),
        (
            json!({"partition": "devel\n#SBATCH --nodes=4"}),
            "partition",
        ),
    ] {
        let errors = spawner.validate_options(&ctx, &bad).await.unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.field == field && !e.message.is_empty()),
            "{bad} -> {errors:?}"
        );
    }
    assert_eq!(squeue_of(&conf, &account.name), "", "nothing was submitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_as_the_user_reports_its_port_and_stops() {
    let (conf, _cluster) = nbhub_testkit::require!(shared_cluster().await);
    let account = Account::create();
    let hub = nbhub_testkit::HubApi::default();
    let api = hub.start().await;
    let spawner = spawner(http_server_cmd(), slurm_config(&conf));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut req = request(
        "alice",
        &account.name,
        &api,
        json!({"partition": "devel", "nodes": 1, "runtime": "00:10:00", "account": "proj1", "mem_mb": 512}),
    );
    req.updates = Updates::new(tx);
    let started = tokio::time::timeout(Duration::from_secs(60), spawner.start(&req))
        .await
        .expect("running within 60 s")
        .expect("start");
    assert_eq!((started.host.as_str(), started.port), ("127.0.0.1", 0));
    let id = job_id(&started);

    let mut updates = Vec::new();
    while let Ok(u) = rx.try_recv() {
        updates.push(u);
    }
    assert!(
        matches!(&updates[0], SpawnUpdate::State(s) if SlurmState::from_state(s).unwrap().job_id == id),
        "{updates:?}"
    );
    let messages: Vec<String> = updates
        .iter()
        .filter_map(|u| match u {
            SpawnUpdate::Progress(p) => Some(p.message.clone()),
            _ => None,
        })
        .collect();
    assert!(
        messages.contains(&format!("Submitted job {id} to devel")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.starts_with("Running on node")),
        "{messages:?}"
    );
    assert!(updates.contains(&SpawnUpdate::Running), "{updates:?}");

    let queue = squeue_of(&conf, &account.name);
    assert_eq!(
        queue,
        format!("{id}|RUNNING|devel|1|10:00|{}", account.name)
    );
    // The token reached the job through the environment, never the command line.
    let (auth, port) = hub.wait_port(Duration::from_secs(30)).await;
    assert_eq!(auth, format!("token {TOKEN}"));
    let record = Command::new("scontrol")
        .args(["show", "job", "-o", &id])
        .env("SLURM_CONF", &conf)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&record.stdout).contains(TOKEN));
    let url = format!("http://{}:{port}/", started.host);
    let resp = nbhub_testkit::wait_for_http(&url, Duration::from_secs(20)).await;
    assert_eq!(resp.status, 200);
    assert_eq!(spawner.poll(&started.state).await, PollStatus::Running);
    let described = spawner.describe(&started.state).unwrap();
    assert_eq!(described["job_id"], json!(id));
    assert_eq!(described["partition"], json!("devel"));
    assert_eq!(described["state"], json!("RUNNING"));
    assert!(described["node_list"].as_str().unwrap().starts_with("node"));
    assert!(
        described["end_time"].as_str().unwrap().contains('T'),
        "{described}"
    );

    stop(&spawner, &started).await;
    assert_eq!(squeue_of(&conf, &account.name), "", "the job is gone");
    assert!(http_get(&url).await.is_err(), "the server is dead");
    let status = wait_poll(&spawner, &started.state, Duration::from_secs(10), |s| {
        matches!(s, PollStatus::Exited { .. })
    })
    .await;
    assert!(format!("{status:?}").contains("cancelled"), "{status:?}");
}

/// Both end reasons in one line, told to the hub at once (`ended_signal`), with the job's
/// last lines apart (`last_output`), secrets masked; the output file is in `~/.nbhub/logs/`,
/// a folder of the user's made by the job with mode 0700.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_limit_and_an_outside_scancel_are_seen_with_their_reasons() {
    let conf = nbhub_testkit::require!(require_cluster());
    let account = Account::create();
    let hub = nbhub_testkit::HubApi::default();
    let api = hub.start().await;
    // The server prints its token first, as a careless debug log would.
    let mut cmd = http_server_cmd();
    cmd.cmd[2] = format!(
        "echo \"Authorization: token $JUPYTERHUB_API_TOKEN\"; echo '<b>bold</b>'; {}",
        cmd.cmd[2]
    );
    let spawner = Arc::new(spawner(cmd, slurm_config(&conf)));
    let mut ended = spawner
        .ended_signal()
        .expect("the Slurm spawner tells of ends");
    let start = |runtime: &str| {
        let req = request(
            "bob",
            &account.name,
            &api,
            json!({"partition": "devel", "nodes": 1, "runtime": runtime}),
        );
        let spawner = Arc::clone(&spawner);
        async move {
            let _cluster = CONTROLLER.read().await;
            tokio::time::timeout(Duration::from_secs(60), spawner.start(&req))
                .await
                .expect("running")
                .expect("start")
        }
    };
    let (short, other) = tokio::join!(start("00:01"), start("00:10"));

    let home = home_of(&account.name);
    let logs = home.join(".nbhub/logs");
    for job in [&short, &other] {
        let output = SlurmState::from_state(&job.state).unwrap().output;
        assert_eq!(
            output,
            logs.join(format!("nbhub-slurm-{}.log", job_id(job))),
            "the job's output goes to ~/.nbhub/logs/"
        );
        wait_until(
            "the job script's first line",
            Duration::from_secs(30),
            || {
                std::fs::read_to_string(&output)
                    .is_ok_and(|t| t.contains("nbhub: starting the server"))
            },
        );
    }
    use std::os::unix::fs::MetadataExt;
    for dir in [home.join(".nbhub"), logs.clone()] {
        let meta = std::fs::metadata(&dir).expect("the log folder");
        assert_eq!(meta.mode() & 0o777, 0o700, "{} is private", dir.display());
        assert_eq!(
            meta.uid(),
            nix::unistd::User::from_name(&account.name)
                .unwrap()
                .unwrap()
                .uid
                .as_raw(),
            "{} belongs to the user",
            dir.display()
        );
    }
    // scancel from outside (as root, as an admin would): the spawner says so by itself.
    ended.borrow_and_update();
    let out = Command::new("scancel")
        .arg(job_id(&other))
        .env("SLURM_CONF", &conf)
        .output()
        .unwrap();
    assert!(out.status.success());
    tokio::time::timeout(Duration::from_secs(5), ended.changed())
        .await
        .expect("the end is signalled within a few seconds")
        .expect("signal");
    let PollStatus::Exited { reason } = spawner.poll(&other.state).await else {
        panic!("after the signal, poll says the job ended")
    };
    assert!(reason.contains("cancelled"), "{reason}");
    assert!(!reason.contains('\n'), "one line: {reason}");
    let last = spawner.last_output(&other.state).expect("the last lines");
    assert!(last.contains("nbhub: starting the server"), "{last}");
    assert!(last.contains("Authorization: token [hidden]"), "{last}");
    assert!(!last.contains(TOKEN), "the token is masked: {last}");
    assert!(
        last.contains("<b>bold</b>"),
        "text, escaped by the page: {last}"
    );

    let status = wait_poll(&spawner, &short.state, Duration::from_secs(150), |s| {
        matches!(s, PollStatus::Exited { .. })
    })
    .await;
    let PollStatus::Exited { reason } = status else {
        unreachable!()
    };
    assert!(reason.contains("time limit"), "{reason}");
    assert!(!reason.contains('\n'), "one line: {reason}");
    let last = spawner.last_output(&short.state).expect("the last lines");
    assert!(last.contains("nbhub: starting the server"), "{last}");
}

/// The home folder of a Unix account.
fn home_of(user: &str) -> PathBuf {
    nix::unistd::User::from_name(user)
        .unwrap()
        .expect("account")
        .dir
}

fn controller_pid(conf: &str) -> Option<u32> {
    let text = std::fs::read_to_string(conf).ok()?;
    let file = text
        .lines()
        .find_map(|l| l.strip_prefix("SlurmctldPidFile="))?;
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

fn controller_up(conf: &str) -> bool {
    Command::new("scontrol")
        .arg("ping")
        .env("SLURM_CONF", conf)
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("is UP"))
}

fn start_controller(conf: &str) {
    let restarted = Command::new("slurmctld")
        .args(["-f", conf])
        .status()
        .unwrap();
    assert!(restarted.success());
    wait_until("slurmctld back", Duration::from_secs(30), || {
        controller_up(conf)
    });
}

/// Brings slurmctld back even when the test fails, so that the others can go on.
struct RestartController<'a>(&'a str);

impl Drop for RestartController<'_> {
    fn drop(&mut self) {
        if !controller_up(self.0) {
            start_controller(self.0);
        }
    }
}

fn wait_until(what: &str, timeout: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_controller_is_unknown_and_tracking_resumes() {
    let conf = nbhub_testkit::require!(require_cluster());
    let _cluster = CONTROLLER.write().await;
    let account = Account::create();
    let hub = nbhub_testkit::HubApi::default();
    let api = hub.start().await;
    let spawner = spawner(http_server_cmd(), slurm_config(&conf));
    let req = request(
        "carol",
        &account.name,
        &api,
        json!({"partition": "batch", "nodes": 1, "runtime": "00:10"}),
    );
    let started = spawner.start(&req).await.expect("start");
    let (_, port) = hub.wait_port(Duration::from_secs(30)).await;
    let url = format!("http://{}:{port}/", started.host);
    nbhub_testkit::wait_for_http(&url, Duration::from_secs(20)).await;

    let pid = controller_pid(&conf).expect("slurmctld's pid file");
    let _restart = RestartController(&conf);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let ping = || controller_up(&conf);
    wait_until("slurmctld down", Duration::from_secs(30), || !ping());
    // Slurm's clients retry for about 10 s before they give up on the controller.
    let status = wait_poll(&spawner, &started.state, Duration::from_secs(40), |s| {
        matches!(s, PollStatus::Unknown { .. })
    })
    .await;
    assert!(
        format!("{status:?}").contains("does not answer"),
        "{status:?}"
    );
    assert_eq!(
        http_get(&url).await.unwrap().status,
        200,
        "the server keeps running"
    );
    let failed = spawner
        .start(&request(
            "carol",
            &account.name,
            &api,
            json!({"partition": "devel", "nodes": 1}),
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(failed.contains("controller does not answer"), "{failed}");

    start_controller(&conf);
    wait_poll(&spawner, &started.state, Duration::from_secs(20), |s| {
        *s == PollStatus::Running
    })
    .await;
    stop(&spawner, &started).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_jobs_cost_one_squeue_per_poll_interval() {
    let (conf, _cluster) = nbhub_testkit::require!(shared_cluster().await);
    // A bin_dir whose squeue counts its calls, then runs the real one.
    let bin = temp_dir();
    let counter = bin.path().join("squeue-calls");
    for tool in ["sbatch", "scancel", "scontrol", "sinfo", "sacctmgr"] {
        if let Some(real) = nbhub_testkit::which(tool) {
            std::os::unix::fs::symlink(real, bin.path().join(tool)).unwrap();
        }
    }
    let wrapper = bin.path().join("squeue");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho x >> {}\nexec {} \"$@\"\n",
            counter.display(),
            nbhub_testkit::which("squeue").unwrap().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let spawner = Arc::new(spawner(
        http_server_cmd(),
        SlurmConfig {
            bin_dir: bin.path().display().to_string(),
            ..slurm_config(&conf)
        },
    ));
    // Twenty held jobs: pending, using nothing.
    let mut states = Vec::new();
    for _ in 0..20 {
        let out = Command::new("sbatch")
            .args([
                "--parsable",
                "--hold",
                "-p",
                "batch",
                "-t",
                "5",
                "-o",
                "/dev/null",
                "--wrap",
                "sleep 60",
            ])
            .env("SLURM_CONF", &conf)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        states.push(
            SlurmState {
                system: String::new(),
                job_id: id,
                user: "root".into(),
                partition: "batch".into(),
                nodes: 1,
                output: "/dev/null".into(),
                host: None,
                tunnel: None,
                hub_tunnel: None,
            }
            .to_state(),
        );
    }
    let calls = || {
        std::fs::read_to_string(&counter)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let all = spawner.poll_all(&states).await;
    assert!(
        all.iter().all(|s| matches!(s, PollStatus::Pending { .. })),
        "{all:?}"
    );
    let before = calls();
    // 20 supervisors polling every 100 ms for 3 poll intervals.
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for state in states.clone() {
        let spawner = Arc::clone(&spawner);
        tasks.push(tokio::spawn(async move {
            while t0.elapsed() < Duration::from_secs(3) {
                let s = spawner.poll(&state).await;
                assert!(matches!(s, PollStatus::Pending { .. }), "{s:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let during = calls() - before;
    let ids: Vec<String> = states
        .iter()
        .map(|s| SlurmState::from_state(s).unwrap().job_id)
        .collect();
    let _ = Command::new("scancel")
        .args(&ids)
        .env("SLURM_CONF", &conf)
        .status();
    assert!(
        (2..=4).contains(&during),
        "{during} squeue calls in 3 s with a 1 s poll interval for 20 jobs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estimates_give_slurms_start_or_its_reason() {
    let (conf, _cluster) = nbhub_testkit::require!(shared_cluster().await);
    let account = Account::create();
    let spawner = spawner(http_server_cmd(), slurm_config(&conf));
    let options = |v: Value| ValidatedOptions(v.as_object().unwrap().clone());
    let mut ctx = FormContext::new("dave");
    ctx.unix_user = account.name.clone();
    let fits = spawner
        .estimate(
            &ctx,
            &options(json!({"partition": "devel", "nodes": 1, "runtime": "00:10:00"})),
        )
        .await
        .unwrap()
        .expect("an estimate");
    assert!(fits.fits, "{fits:?}");
    assert!(fits.start.is_some() && fits.nodes.is_some(), "{fits:?}");
    assert!(fits.message.contains("start"), "{fits:?}");
    let limited = spawner
        .estimate(&ctx, &options(json!({"partition": "devel", "nodes": 1})))
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(limited.contains("one estimate every"), "{limited}");

    ctx.user = "dave2".into();
    let refused = spawner
        .estimate(
            &ctx,
            &options(json!({"partition": "devel", "nodes": 2, "runtime": "00:10:00"})),
        )
        .await
        .unwrap()
        .expect("an answer");
    assert!(!refused.fits, "{refused:?}");
    assert!(
        refused.message.contains("Node count specification invalid"),
        "{refused:?}"
    );
    assert_eq!(squeue_of(&conf, &account.name), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_singleuser_server_runs_as_a_job() {
    let conf = nbhub_testkit::require!(require_cluster());
    let venv = nbhub_testkit::require!(nbhub_testkit::require_venv());
    let _cluster = CONTROLLER.read().await;
    let account = Account::create();
    let hub = nbhub_testkit::HubApi::default();
    let api = hub.start().await;
    let spawner = spawner(
        SpawnerConfig {
            cmd: vec![venv.join("bin/jupyterhub-singleuser").display().to_string()],
            ..Default::default()
        },
        slurm_config(&conf),
    );
    let problems = spawner.check_setup();
    assert!(problems.is_empty(), "{problems:?}");
    let req = request(
        "erin",
        &account.name,
        &api,
        json!({"partition": "gpu", "nodes": 1, "runtime": "00:10", "gpus": 1}),
    );
    let started = spawner.start(&req).await.expect("start");
    let (_, port) = hub.wait_port(Duration::from_secs(30)).await;
    let url = format!("http://{}:{port}/user/erin/api", started.host);
    let resp = nbhub_testkit::wait_for_http(&url, Duration::from_secs(90)).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let node = spawner.describe(&started.state).unwrap()["node_list"].clone();
    assert!(node == json!("node3") || node == json!("node4"), "{node}");
    stop(&spawner, &started).await;
    assert_eq!(squeue_of(&conf, &account.name), "");
}

/// Where Slurm runs accounting, the account field offers the user's associations, refuses
/// any other account, and the job is charged to the one picked. With several systems (issue
/// 22), one with accounting is offered only to the users with an association there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_come_from_the_users_slurm_associations() {
    let dev_conf = nbhub_testkit::require!(require_cluster());
    if !AccountingCluster::installed() {
        return;
    }
    let cluster = AccountingCluster::start();
    let account = Account::create();
    cluster.sacctmgr(&["add", "account", "proj-a,proj-b,proj-c", "cluster=nbhubdev"]);
    cluster.sacctmgr(&[
        "add",
        "user",
        &account.name,
        "account=proj-a,proj-b",
        "cluster=nbhubdev",
    ]);
    let slurm = SlurmConfig {
        slurm_conf: cluster.conf.clone(),
        poll_interval: 1,
        ..Default::default()
    };
    let spawner = spawner(http_server_cmd(), slurm);
    let ctx = FormContext::new(&account.name);
    let form = spawner.options_form(&ctx).await.expect("a form");
    let field = form.field("account").expect("an account field");
    let nbhub_spawner::FieldKind::Select { choices } = &field.kind else {
        panic!("{field:?}")
    };
    let offered: Vec<&str> = choices.iter().map(|c| c.value.as_str()).collect();
    assert_eq!(offered, ["proj-a", "proj-b"], "the user's associations");
    let errors = spawner
        .validate_options(
            &ctx,
            &json!({"partition": "devel", "nodes": 1, "runtime": "00:05", "account": "proj-c"}),
        )
        .await
        .unwrap_err();
    assert!(
        errors.iter().any(|e| e.field == "account"),
        "an account without an association is refused: {errors:?}"
    );
    systems_follow_the_associations(&dev_conf, &cluster, &account).await;

    let options = spawner
        .validate_options(
            &ctx,
            &json!({"partition": "devel", "nodes": 1, "runtime": "00:05", "account": "proj-b"}),
        )
        .await
        .expect("valid");
    let hub = nbhub_testkit::HubApi::default();
    let api = hub.start().await;
    let mut req = request(&account.name, &account.name, &api, json!({}));
    req.user_options = options;
    let started = tokio::time::timeout(Duration::from_secs(60), spawner.start(&req))
        .await
        .expect("running within 60 s")
        .expect("start");
    let id = job_id(&started);
    let out = Command::new("squeue")
        .args(["-h", "-j", &id, "-o", "%a|%u"])
        .env("SLURM_CONF", &cluster.conf)
        .output()
        .expect("squeue");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("proj-b|{}", account.name),
        "the job is charged to the account picked"
    );
    stop(&spawner, &started).await;
}

/// The dev cluster (no accounting) as `dev` and the accounting cluster as `acct`: `account`
/// (associations on `acct`) is offered both, a user without any only `dev`, and a start on
/// `acct` for them is refused on the field `system`.
async fn systems_follow_the_associations(
    dev_conf: &str,
    cluster: &AccountingCluster,
    account: &Account,
) {
    // The dev cluster's controller must answer: the test that stops it waits.
    let _shared = CONTROLLER.read().await;
    let system = |name: &str, conf: &str| SystemConfig {
        name: name.into(),
        slurm: SlurmConfig {
            slurm_conf: conf.to_owned(),
            ..Default::default()
        },
        ..Default::default()
    };
    let systems = SystemsSpawner::new(
        &http_server_cmd(),
        &[system("dev", dev_conf), system("acct", &cluster.conf)],
        Path::new("/tmp"),
    )
    .expect("systems");
    let offered = |form: Option<nbhub_spawner::FormSpec>| {
        let form = form.expect("a form");
        let Some(nbhub_spawner::FieldKind::Select { choices }) =
            form.field("system").map(|f| f.kind.clone())
        else {
            panic!("a system picker: {form:?}")
        };
        choices.into_iter().map(|c| c.value).collect::<Vec<_>>()
    };
    let ctx = FormContext::new(&account.name);
    assert_eq!(offered(systems.options_form(&ctx).await), ["dev", "acct"]);
    let stranger = Account::create();
    let ctx = FormContext::new(&stranger.name);
    assert_eq!(
        offered(systems.options_form(&ctx).await),
        ["dev"],
        "no association on acct"
    );
    let errors = systems
        .validate_options(&ctx, &json!({"system": "acct", "partition": "devel"}))
        .await
        .unwrap_err();
    assert_eq!(
        errors,
        [nbhub_spawner::FieldError::new(
            "system",
            "system 'acct' is not available to you; choose one of dev"
        )]
    );
}

/// Issue 20, point 10: `batch` has GPUs on only 2 of its 4 nodes: the form says so (not "2
/// GPUs per node"), each partition carries its own limits for the other fields, and 4 nodes ×
/// 1 GPU is refused on the nodes field before Slurm is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_partition_offers_only_its_gpu_nodes() {
    let (conf, _cluster) = nbhub_testkit::require!(shared_cluster().await);
    let spawner = spawner(http_server_cmd(), slurm_config(&conf));
    let ctx = FormContext::new("root");
    let form = spawner.options_form(&ctx).await.expect("a form");
    let nbhub_spawner::FieldKind::Select { choices } = &form.field("partition").unwrap().kind
    else {
        panic!("{form:?}")
    };
    let batch = choices.iter().find(|c| c.value == "batch").unwrap();
    let info = batch.info.as_deref().unwrap();
    assert!(
        info.contains("GPUs on 2 of 4 nodes, 2 per node") && info.contains("of 4 GPUs free"),
        "{info}"
    );
    let max_by = batch.limits["nodes"]
        .max_by
        .as_ref()
        .expect("nodes by GPUs");
    assert_eq!(
        (max_by.field.as_str(), &max_by.max[..]),
        ("gpus", &[4, 2, 2][..])
    );
    let devel = choices.iter().find(|c| c.value == "devel").unwrap();
    assert_eq!(devel.limits["nodes"].max, Some(1));
    assert_eq!(devel.limits["runtime"].default, Some(json!("00:10:00")));

    let errors = spawner
        .validate_options(
            &ctx,
            &json!({"partition": "batch", "nodes": 4, "gpus": 1, "runtime": "00:10"}),
        )
        .await
        .unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.field == "nodes" && e.message.contains("only 2 node")),
        "{errors:?}"
    );
    spawner
        .validate_options(
            &ctx,
            &json!({"partition": "batch", "nodes": 2, "gpus": 2, "runtime": "00:10"}),
        )
        .await
        .expect("2 nodes × 2 GPUs fit batch's GPU nodes");
}

/// Issue 22, a system reached over SSH with `reach = "tunnel"` (`scripts/slurm-ssh-cluster`:
/// its nodes are in a network namespace the test's side reaches only through the login
/// node): `sbatch` runs on the login node as the user, the API token reaches the job in a
/// file (not in the job script), the job reports its port to the hub through the reverse
/// forward, the hub reaches the server through the forward `reach` opens, a forward lost with
/// a fresh spawner (a restarted hub) comes back with `restore` on the same port, and stop
/// cancels the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_ssh_the_job_and_the_hub_reach_each_other_through_tunnels() {
    let cluster = nbhub_testkit::require!(nbhub_testkit::SshCluster::get());
    let _doors = cluster.shared().await;
    let account = Account::create();
    let tracker = Account::create();
    let hub = nbhub_testkit::HubApi::default();
    let api = hub.start().await;
    let data = temp_dir();
    let ssh = nbhub_spawner::SshConfig {
        login_hosts: vec![cluster.login_host(1)],
        known_hosts: cluster.known_hosts.display().to_string(),
        certificate_authority: cluster.ca_key.display().to_string(),
        tracking_user: tracker.name.clone(),
        ..Default::default()
    };
    let make = || {
        SlurmSpawner::for_system(
            http_server_cmd(),
            SlurmConfig {
                poll_interval: 1,
                ..Default::default()
            },
            data.path(),
            "remote",
            Some(&ssh),
            true,
        )
        .expect("spawner")
    };
    let spawner = make();
    let req = request(
        "alice",
        &account.name,
        &api,
        json!({"partition": "devel", "nodes": 1, "runtime": "00:10:00"}),
    );
    let started = tokio::time::timeout(Duration::from_secs(90), spawner.start(&req))
        .await
        .expect("running within 90 s")
        .expect("start");
    let id = job_id(&started);
    let queue = cluster.squeue_in_ns(&["-h", "-j", &id, "-o", "%T|%P|%u"]);
    assert_eq!(queue.trim(), format!("RUNNING|devel|{}", account.name));
    let (auth, port) = hub.wait_port(Duration::from_secs(60)).await;
    assert_eq!(
        auth,
        format!("token {TOKEN}"),
        "the token came through the file"
    );
    let script = cluster
        .in_ns("scontrol")
        .args(["write", "batch_script", &id, "-"])
        .env("SLURM_CONF", &cluster.slurm_conf)
        .output()
        .expect("scontrol");
    let script = String::from_utf8_lossy(&script.stdout).into_owned();
    assert!(script.contains("NBHUB_TOKEN_FILE="), "{script}");
    assert!(!script.contains(TOKEN), "the token is in the job script");
    assert!(
        http_get(&format!("http://{}:{port}/", started.host))
            .await
            .is_err(),
        "the node is not reachable from the hub's side directly"
    );
    let reached = spawner
        .reach(&started.state, &started.host, port)
        .await
        .expect("reach");
    assert_eq!(reached.host, "127.0.0.1");
    let state = reached.state.clone().expect("the tunnel is recorded");
    let url = format!("http://127.0.0.1:{}/", reached.port);
    let resp = nbhub_testkit::wait_for_http(&url, Duration::from_secs(20)).await;
    assert_eq!(resp.status, 200);

    // A restarted hub: a new spawner, the old one's connections gone.
    drop(spawner);
    assert!(
        http_get(&url).await.is_err(),
        "the forward died with its connection"
    );
    let spawner = make();
    let restored = spawner.restore(&state).await.expect("restore");
    assert_eq!(restored, None, "the same local port again");
    let resp = nbhub_testkit::wait_for_http(&url, Duration::from_secs(20)).await;
    assert_eq!(resp.status, 200);
    assert_eq!(spawner.poll(&state).await, PollStatus::Running);

    spawner
        .stop(&state, Duration::from_secs(10))
        .await
        .expect("stop");
    assert_eq!(
        cluster
            .squeue_in_ns(&["-h", "-u", &account.name, "-o", "%T"])
            .trim(),
        "",
        "the job is gone"
    );
}
