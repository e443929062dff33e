//! The hub's own part of a Slurm spawn, over SSH through a login node next to the local
//! transport, and the cost of tracking many jobs over SSH (bench/systems runs it; root, the
//! dev cluster and the SSH cluster running).
//!
//! For each transport, `BENCH_SPAWNS` spawns one after the other, each timed in two parts that
//! are the hub's work and not the batch system's: from the start request to `sbatch`
//! returning (the job id persisted), and from the job's port report to the hub knowing where
//! it reaches the server (`Spawner::reach`: at once locally, a forward through the login node
//! over SSH). Between the two the job waits for its node, which is Slurm's time, not ours;
//! after them the server starts up (it reports its port first), shown apart.
//! Then `BENCH_JOBS` held jobs tracked for `BENCH_WINDOW` seconds with a 1 s poll interval:
//! the time of one tracking query and the CPU (this process and its children: the ssh
//! clients) per query. Prints p50/p99 per transport and the SSH/local ratios.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use nbhub_spawner::{
    BackendMetric, SlurmConfig, SlurmSpawner, SlurmState, SpawnRequest, SpawnUpdate, Spawner,
    SpawnerConfig, SpawnerState, SshConfig, Updates, ValidatedOptions,
};
use nbhub_testkit::{HubApi, SshCluster, TempAccount};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds of this process and its waited-for children so far (/proc/self/stat: utime,
/// stime, cutime, cstime, in USER_HZ ticks, which Linux fixes at 100 per second).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The command name may hold spaces: the fields start after its closing parenthesis.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("stat") + 2..]
        .split(' ')
        .collect();
    fields[11..15]
        .iter()
        .map(|f| f.parse::<f64>().unwrap_or(0.0))
        .sum::<f64>()
        / 100.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A server that answers HTTP on the port the job script picked.
fn server_cmd() -> SpawnerConfig {
    SpawnerConfig {
        cmd: vec![
            "/bin/sh".into(),
            "-c".into(),
            "p=${JUPYTERHUB_SERVICE_URL#http://*:}; exec /usr/bin/python3 -m http.server --bind 127.0.0.1 ${p%%/*}".into(),
        ],
        ..Default::default()
    }
}

fn request(user: &str, api: &str, n: usize, updates: Updates) -> SpawnRequest {
    let server = format!("b{n}");
    let mut req = SpawnRequest::new(user, &server);
    req.env = BTreeMap::from([
        ("JUPYTERHUB_API_TOKEN".to_owned(), format!("{n:032}")),
        ("JUPYTERHUB_API_URL".to_owned(), api.to_owned()),
        (
            "JUPYTERHUB_SERVICE_PREFIX".to_owned(),
            format!("/user/{user}/{server}/"),
        ),
    ]);
    let options = serde_json::json!({"partition": "devel", "nodes": 1, "runtime": "00:05:00"});
    req.user_options = ValidatedOptions(options.as_object().expect("object").clone());
    req.updates = updates;
    req
}

struct Figures {
    submit: Vec<f64>,
    reach: Vec<f64>,
    /// Not the hub's part: the server's own start-up after it reported its port (it reports
    /// first), seen through the way `reach` opened.
    answer: Vec<f64>,
    query: f64,
    cpu_per_query: f64,
}

fn metric(metrics: &[BackendMetric], name: &str, label: Option<&str>) -> f64 {
    metrics
        .iter()
        .find(|m| m.name == name)
        .and_then(|m| {
            m.samples
                .iter()
                .find(|(labels, _)| label.is_none_or(|l| labels.iter().any(|(_, v)| v == l)))
        })
        .map_or(0.0, |(_, v)| *v)
}

/// Submits `n` held jobs (they never run) with `sbatch` on the cluster; their ids.
fn held_jobs(sbatch: impl Fn() -> Command, n: u64) -> Vec<String> {
    (0..n)
        .map(|_| {
            let out = sbatch()
                .args([
                    "--parsable",
                    "--hold",
                    "-p",
                    "devel",
                    "-t",
                    "5",
                    "-o",
                    "/dev/null",
                    "--wrap",
                    "true",
                ])
                .output()
                .expect("sbatch");
            assert!(out.status.success(), "sbatch: {out:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
        .collect()
}

/// What every transport's run shares.
struct Run<'a> {
    user: &'a str,
    api: &'a HubApi,
    api_url: &'a str,
    spawns: usize,
    window: Duration,
}

async fn measure(name: &str, spawner: SlurmSpawner, run: &Run<'_>, held: &[String]) -> Figures {
    let Run {
        user,
        api,
        api_url,
        spawns,
        window,
    } = *run;
    let mut submit = Vec::new();
    let mut reach = Vec::new();
    let mut answer = Vec::new();
    for n in 0..spawns {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let req = request(user, api_url, n, Updates::new(tx));
        let reports_before = api.reports.lock().expect("reports").len();
        let asked = Instant::now();
        let start = spawner.start(&req);
        tokio::pin!(start);
        let mut submitted = None;
        let started = loop {
            tokio::select! {
                done = &mut start => break done.expect("start"),
                Some(update) = rx.recv() => {
                    if let (SpawnUpdate::State(_), None) = (&update, submitted) {
                        submitted = Some(asked.elapsed().as_secs_f64());
                    }
                }
            }
        };
        submit.push(submitted.expect("the job id was persisted"));
        let port = loop {
            let reports = api.reports.lock().expect("reports").clone();
            if let Some((_, body)) = reports.get(reports_before) {
                break body["port"].as_u64().expect("port") as u16;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let reported = Instant::now();
        let reached = spawner
            .reach(&started.state, &started.host, port)
            .await
            .expect("reach");
        reach.push(reported.elapsed().as_secs_f64());
        let opened = Instant::now();
        let url = format!("http://{}:{}/", reached.host, reached.port);
        nbhub_testkit::wait_for_http(&url, Duration::from_secs(30)).await;
        answer.push(opened.elapsed().as_secs_f64());
        let state = reached.state.unwrap_or(started.state);
        spawner
            .stop(&state, Duration::from_secs(10))
            .await
            .expect("stop");
        eprintln!("[bench] {name}: spawn {}/{spawns}", n + 1);
    }
    // Tracking: the held jobs, asked about once per second.
    let states: Vec<SpawnerState> = held
        .iter()
        .map(|id| {
            SlurmState {
                system: String::new(),
                job_id: id.clone(),
                user: "root".into(),
                partition: "devel".into(),
                nodes: 1,
                output: "/dev/null".into(),
                host: None,
                tunnel: None,
                hub_tunnel: None,
            }
            .to_state()
        })
        .collect();
    spawner.poll_all(&states).await;
    let before = spawner.metrics();
    let cpu = cpu_seconds();
    let until = Instant::now() + window;
    while Instant::now() < until {
        spawner.poll_all(&states).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let cpu = cpu_seconds() - cpu;
    let after = spawner.metrics();
    let queries = metric(&after, "nbhub_slurm_polls_total", Some("answered"))
        - metric(&before, "nbhub_slurm_polls_total", Some("answered"));
    let seconds = metric(&after, "nbhub_slurm_poll_seconds_total", None)
        - metric(&before, "nbhub_slurm_poll_seconds_total", None);
    submit.sort_by(f64::total_cmp);
    reach.sort_by(f64::total_cmp);
    answer.sort_by(f64::total_cmp);
    Figures {
        submit,
        reach,
        answer,
        query: seconds / queries.max(1.0),
        cpu_per_query: cpu / queries.max(1.0),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let spawns = env_or("BENCH_SPAWNS", 50) as usize;
    let jobs = env_or("BENCH_JOBS", 100);
    let window = Duration::from_secs(env_or("BENCH_WINDOW", 20));
    let local_conf = std::env::var("SLURM_CONF").expect("SLURM_CONF (the dev cluster)");
    let cluster = SshCluster::get().expect("the SSH cluster (scripts/slurm-ssh-cluster start)");
    let homes = nbhub_testkit::TempDir::new().expect("temp dir");
    std::fs::set_permissions(
        homes.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let user = TempAccount::create("bu", &homes.path().join("bu"));
    let tracker = TempAccount::create("bt", &homes.path().join("bt"));
    let api = HubApi::default();
    let api_url = api.start().await;
    let data = nbhub_testkit::TempDir::new().expect("temp dir");
    let slurm = |conf: &str| SlurmConfig {
        slurm_conf: conf.to_owned(),
        poll_interval: 1,
        bind_ip: "127.0.0.1".into(),
        ..Default::default()
    };

    let local_held = held_jobs(
        || {
            let mut c = Command::new("sbatch");
            c.env("SLURM_CONF", &local_conf);
            c
        },
        jobs,
    );
    let local = SlurmSpawner::for_system(
        server_cmd(),
        slurm(&local_conf),
        data.path(),
        "local",
        None,
        false,
    )
    .expect("local spawner");
    let run = Run {
        user: &user.name,
        api: &api,
        api_url: &api_url,
        spawns,
        window,
    };
    let local = measure("local", local, &run, &local_held).await;
    let _ = Command::new("scancel")
        .args(&local_held)
        .env("SLURM_CONF", &local_conf)
        .status();

    let ssh_held = held_jobs(
        || {
            let mut c = cluster.in_ns("sbatch");
            c.env("SLURM_CONF", &cluster.slurm_conf);
            c
        },
        jobs,
    );
    let ssh_config = SshConfig {
        login_hosts: vec![cluster.login_host(1)],
        known_hosts: cluster.known_hosts.display().to_string(),
        certificate_authority: cluster.ca_key.display().to_string(),
        tracking_user: tracker.name.clone(),
        ..Default::default()
    };
    let ssh = SlurmSpawner::for_system(
        server_cmd(),
        slurm(""),
        data.path(),
        "ssh",
        Some(&ssh_config),
        true,
    )
    .expect("ssh spawner");
    let ssh = measure("ssh", ssh, &run, &ssh_held).await;
    let _ = cluster
        .in_ns("scancel")
        .args(&ssh_held)
        .env("SLURM_CONF", &cluster.slurm_conf)
        .status();

    let ms = |s: f64| format!("{:8.1} ms", s * 1e3);
    println!("\nThe hub's part of a Slurm spawn, {spawns} spawns per transport (p50 / p99):");
    println!(
        "  {:<34} {:>22} {:>22}  ratio p50",
        "", "local", "ssh + tunnel"
    );
    for (what, l, s) in [
        ("request -> sbatch returned", &local.submit, &ssh.submit),
        ("port report -> reachable (reach)", &local.reach, &ssh.reach),
        (
            "(then the server's first answer)",
            &local.answer,
            &ssh.answer,
        ),
    ] {
        println!(
            "  {what:<34} {} / {} {} / {}  {:.2}",
            ms(percentile(l, 0.5)),
            ms(percentile(l, 0.99)),
            ms(percentile(s, 0.5)),
            ms(percentile(s, 0.99)),
            percentile(s, 0.5) / percentile(l, 0.5)
        );
    }
    println!("\nTracking {jobs} jobs (one squeue per poll for all of them):");
    println!(
        "  one query:          local {}   ssh {}   ratio {:.2}",
        ms(local.query),
        ms(ssh.query),
        ssh.query / local.query
    );
    println!(
        "  CPU per query:      local {}   ssh {}   ratio {:.2}",
        ms(local.cpu_per_query),
        ms(ssh.cpu_per_query),
        ssh.cpu_per_query / local.cpu_per_query
    );
}
