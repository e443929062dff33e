//! Issue 22 end to end: two systems on one hub — the local dev cluster, and the SSH cluster
//! (`scripts/slurm-ssh-cluster`) whose controller, nodes and jobs live in a network namespace
//! the hub's side reaches only through the login node's SSH port. The hub has no Slurm
//! configuration for it and no route to its nodes: it submits and tracks over SSH and reaches
//! the servers through tunnels.

use super::*;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use nbhub_testkit::SshCluster;

/// The user's jobs on the SSH cluster as `id|partition|nodes|time limit|user|state`.
fn remote_jobs_of(c: &SshCluster, user: &str) -> Vec<String> {
    c.squeue_in_ns(&["-h", "-u", user, "-o", "%i|%P|%D|%l|%u|%T"])
        .lines()
        .filter(|l| l.contains('|'))
        .map(str::to_string)
        .collect()
}

/// A Slurm command inside the SSH cluster's namespace; (success, stdout + stderr).
fn remote_slurm(c: &SshCluster, program: &str, args: &[&str]) -> (bool, String) {
    let out = c
        .in_ns(program)
        .args(args)
        .env("SLURM_CONF", &c.slurm_conf)
        .output()
        .unwrap_or_else(|e| panic!("{program} in the namespace: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The config of two systems: `local` (the dev cluster) and `remote` (the SSH cluster, over
/// SSH through `login_hosts`, servers reached through tunnels), jobs tracked by `tracker`.
fn systems_toml(c: &SshCluster, p: &Parts, tracker: &str, login_hosts: &[String]) -> String {
    format!(
        r#"
[[systems]]
name = "local"
title = "Local cluster"
description = "the dev cluster"
transport = "local"
slurm_conf = "{local_conf}"
submit_as = "setuid"
poll_interval = 1
bind_ip = "127.0.0.1"

[[systems]]
name = "remote"
title = "Remote cluster"
description = "behind a login node"
transport = "ssh"
reach = "tunnel"
poll_interval = 1
bind_ip = "127.0.0.1"

[systems.ssh]
login_hosts = {login_hosts:?}
known_hosts = "{known_hosts}"
certificate_authority = "{ca}"
tracking_user = "{tracker}"
connect_timeout = 3
"#,
        local_conf = p.slurm_conf,
        known_hosts = c.known_hosts.display(),
        ca = c.ca_key.display(),
    )
}

/// Cancels a user's jobs on the SSH cluster when dropped.
struct CancelRemote<'a>(&'a SshCluster, String);

impl Drop for CancelRemote<'_> {
    fn drop(&mut self) {
        let _ = remote_slurm(self.0, "scancel", &["-u", &self.1]);
        self.0.end_sessions(&self.1);
    }
}

/// A hub with both systems, a tracking account and a user who may use both; bound in this
/// order, they drop hub first (its connections close), then the user's jobs and sessions,
/// then the accounts.
async fn two_system_hub<'a>(
    p: &'a Parts,
    c: &'a SshCluster,
    login_hosts: &[String],
    tag: &str,
    more_systems: &str,
) -> (TempAccount, SlurmUser<'a>, CancelRemote<'a>, HubProc) {
    let tracker = TempAccount::create(
        &format!("{tag}t"),
        &Path::new("/tmp").join(format!("nbhub-{tag}t-home")),
    );
    let mut hub = HubProc::new(
        p.venv.clone(),
        &p.proxy,
        Options {
            systems: Some(systems_toml(c, p, &tracker.name, login_hosts) + more_systems),
            extra_toml: "named_server_limit_per_user = 0".into(),
            ..Default::default()
        },
    );
    hub.start().await;
    let user = SlurmUser::new(p, &hub, tag).await;
    let cancel = CancelRemote(c, user.name.clone());
    (tracker, user, cancel, hub)
}

/// The API token a running server of `user` at `prefix` holds, read from its environment.
fn server_token(prefix: &str) -> String {
    let want = format!("JUPYTERHUB_SERVICE_PREFIX={prefix}");
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let vars: Vec<String> = environ
            .split(|b| *b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        if vars.contains(&want) {
            if let Some(token) = vars
                .iter()
                .find_map(|v| v.strip_prefix("JUPYTERHUB_API_TOKEN="))
                .filter(|t| !t.is_empty())
            {
                return token.to_owned();
            }
        }
    }
    panic!("no process serves {prefix} with a token");
}

/// Files under `dir` (not following links, at most `depth` deep) that hold `needle` and that
/// someone other than `owner_uid` can read: owned by another user, or readable by group or
/// others through folders they can enter (a file of mode 0644 in a 0700 folder is private).
fn readable_by_others_holding(
    dir: &Path,
    needle: &str,
    owner_uid: u32,
    depth: u32,
) -> Vec<PathBuf> {
    let enterable = |path: &Path| {
        path.ancestors()
            .skip(1)
            .all(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o011 != 0))
    };
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() && depth > 0 {
            found.extend(readable_by_others_holding(
                &path,
                needle,
                owner_uid,
                depth - 1,
            ));
        } else if meta.is_file() && meta.len() < 8 << 20 {
            let others = meta.uid() != owner_uid
                || (meta.permissions().mode() & 0o044 != 0 && enterable(&path));
            if others
                && std::fs::read(&path)
                    .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
            {
                found.push(path);
            }
        }
    }
    found
}

/// Acceptance 1 (API part) and 5: one server on each system through the API, each a job of
/// the user with the values asked for on its own cluster, each JupyterLab running code
/// through the proxy (the SSH one through a tunnel), DELETE cancelling each; the SSH
/// server's token in no job script, no command line, no file another user can read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_each_system_and_its_token_nowhere_else() {
    let Some(p) = parts() else { return };
    let Some(c) = SshCluster::get() else { return };
    let _shared = CLUSTER.read().await;
    let _doors = c.shared().await;
    // A Slurm maintenance reservation on the SSH cluster, two hours from now (acceptance 4,
    // below: asked about over SSH, a run time reaching into it is refused with its window).
    let resv = format!("nbhub_ssh_maint_{}", std::process::id());
    let (ok, out) = remote_slurm(
        &c,
        "scontrol",
        &[
            "create",
            "reservation",
            &format!("reservationname={resv}"),
            "starttime=now+2hours",
            "duration=120",
            "nodes=ALL",
            "flags=maint,ignore_jobs",
            "users=root",
        ],
    );
    assert!(ok, "create the reservation: {out}");
    struct Unreserve<'a>(&'a SshCluster, String);
    impl Drop for Unreserve<'_> {
        fn drop(&mut self) {
            let _ = remote_slurm(
                self.0,
                "scontrol",
                &["delete", &format!("reservationname={}", self.1)],
            );
        }
    }
    let _unreserve = Unreserve(&c, resv.clone());
    // A third system whose known_hosts holds another key for the same login node.
    let keys = nbhub_testkit::temp_dir_world_readable();
    let other = keys.path().join("other");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .expect("ssh-keygen");
    assert!(made.success());
    let other_key = std::fs::read_to_string(other.with_extension("pub")).expect("key");
    let mut words = other_key.split_whitespace();
    let (kind, key) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let wrong_known_hosts = keys.path().join("known_hosts");
    std::fs::write(
        &wrong_known_hosts,
        format!("[{}]:{} {kind} {key}\n", c.host, c.port),
    )
    .expect("write");
    let badkey = format!(
        "\n[[systems]]\nname = \"badkey\"\ntitle = \"Bad key\"\ntransport = \"ssh\"\n\
         reach = \"tunnel\"\n[systems.ssh]\nlogin_hosts = [\"{}\"]\nknown_hosts = \"{}\"\n\
         certificate_authority = \"{}\"\ntracking_user = \"nobody\"\n",
        c.login_host(1),
        wrong_known_hosts.display(),
        c.ca_key.display()
    );
    let (_tracker, alice, _cancel, hub) =
        two_system_hub(&p, &c, &[c.login_host(1)], "sy", &badkey).await;
    let user = alice.name.as_str();

    // Acceptance 6: a login node whose host key does not match is never trusted: the start is
    // refused with a message that says so, and nothing runs there.
    let (s, body) = start(
        &hub,
        user,
        "",
        json!({"system": "badkey", "partition": "devel", "nodes": 1, "runtime": "00:10"}),
    )
    .await;
    assert!(s == 503 || s == 400, "{s} {body}");
    assert!(body.contains("host key"), "the refusal says why: {body}");
    assert!(remote_jobs_of(&c, user).is_empty(), "no job");

    let (s, body) = start(
        &hub,
        user,
        "",
        json!({"system": "remote", "partition": "devel", "nodes": 1, "runtime": "00:10"}),
    )
    .await;
    assert!(
        s == 201 || s == 202,
        "start on remote: {s} {body}\n{}",
        hub.log()
    );
    let job = eventually(60, "the job in the SSH cluster's squeue", || async {
        remote_jobs_of(&c, user).into_iter().next()
    })
    .await;
    let fields: Vec<&str> = job.split('|').collect();
    assert_eq!(&fields[1..5], ["devel", "1", "10:00", user], "{job}");
    assert!(
        jobs_of(&p.slurm_conf, user).is_empty(),
        "nothing on the local cluster"
    );
    let model = wait_ready(&hub, user, "", 120).await;
    assert_eq!(model["slurm"]["system"], "remote", "{model}");
    assert_eq!(model["user_options"]["system"], "remote", "{model}");

    let token = user_token(&hub, user).await;
    let prefix = format!("/user/{user}/");
    let id = kernel::create_kernel_with_token(&hub, &prefix, &token).await;
    let printed = kernel::execute(
        &hub,
        &prefix,
        &id,
        &token,
        "import os; print(6*7, os.environ.get('SLURM_JOB_ID'))",
    )
    .await;
    assert_eq!(printed.trim(), format!("42 {}", fields[0]), "{}", hub.log());

    // Acceptance 5.
    let secret = server_token(&prefix);
    let (ok, script) = remote_slurm(&c, "scontrol", &["write", "batch_script", fields[0], "-"]);
    assert!(ok, "{script}");
    assert!(!script.contains(&secret), "the token is in the job script");
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            assert!(
                !String::from_utf8_lossy(&cmdline).contains(&secret),
                "the token is on the command line of {:?}: {}",
                entry.path(),
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            );
        }
    }
    let uid = std::fs::metadata(&alice.home).expect("home").uid();
    let mut leaks = Vec::new();
    for (dir, depth) in [
        (alice.home.clone(), 6),
        (PathBuf::from("/tmp"), 6),
        (PathBuf::from("/var/tmp"), 3),
        (PathBuf::from("/dev/shm"), 3),
        (hub.dir().to_path_buf(), 6),
    ] {
        leaks.extend(readable_by_others_holding(&dir, &secret, uid, depth));
    }
    assert!(
        leaks.is_empty(),
        "files another user can read hold the token: {leaks:?}"
    );

    // Acceptance 4 on the SSH system: an admin's notice refuses starts there with its
    // message, while the server running there and the other system work on.
    let notice = "The login nodes are being upgraded";
    let (s, body) = admin(
        &hub,
        Method::PUT,
        "/systems/remote/maintenance",
        Some(json!({"message": notice})),
    )
    .await;
    assert!(s == 200 || s == 204, "set the notice: {s} {body}");
    let remote_more =
        json!({"system": "remote", "partition": "devel", "nodes": 1, "runtime": "00:10"});
    let (s, body) = start(&hub, user, "more", remote_more.clone()).await;
    assert_eq!(s, 503, "{body}");
    assert!(
        body.contains(notice) && body.contains("Remote cluster"),
        "the refusal names the system and gives the notice: {body}"
    );
    assert_eq!(remote_jobs_of(&c, user).len(), 1, "nothing more submitted");
    let printed = kernel::execute(&hub, &prefix, &id, &token, "print(6*7)").await;
    assert_eq!(printed.trim(), "42", "the running server works on");
    let (s, body) = admin(&hub, Method::DELETE, "/systems/remote/maintenance", None).await;
    assert!(s == 200 || s == 204, "clear the notice: {s} {body}");
    // The reservation made at the start (the spawner caches what Slurm has for 30 s).
    let long = json!({"system": "remote", "partition": "batch", "nodes": 1, "runtime": "03:00:00"});
    let (s, body) = start(&hub, user, "more", long).await;
    assert_eq!(s, 503, "{body}");
    assert!(
        body.contains("in maintenance from") && body.contains(&resv),
        "the refusal gives the reservation's window: {body}"
    );
    assert_eq!(remote_jobs_of(&c, user).len(), 1, "nothing more submitted");

    // A named server on the local system beside it.
    let (s, body) = start(
        &hub,
        user,
        "here",
        json!({"system": "local", "partition": "devel", "nodes": 1, "runtime": "00:10"}),
    )
    .await;
    assert!(s == 201 || s == 202, "start on local: {s} {body}");
    let model = wait_ready(&hub, user, "here", 120).await;
    assert_eq!(model["slurm"]["system"], "local", "{model}");
    let local_jobs = jobs_of(&p.slurm_conf, user);
    assert_eq!(local_jobs.len(), 1, "{local_jobs:?}");
    let here = format!("/user/{user}/here/");
    let id = kernel::create_kernel_with_token(&hub, &here, &token).await;
    let printed = kernel::execute(&hub, &here, &id, &token, "print(6*7)").await;
    assert_eq!(printed.trim(), "42");

    for (path, on_remote) in [
        (format!("/users/{user}/server"), true),
        (format!("/users/{user}/servers/here"), false),
    ] {
        let (s, body) = admin(&hub, Method::DELETE, &path, None).await;
        assert!(s == 204 || s == 202, "stop {path}: {s} {body}");
        eventually(60, "the job gone", || async {
            let left = if on_remote {
                remote_jobs_of(&c, user)
            } else {
                jobs_of(&p.slurm_conf, user)
            };
            left.is_empty().then_some(())
        })
        .await;
    }
}

/// Acceptance 3: with two servers on the SSH system, the login node's sshd gone for a while
/// gives up neither (a start meanwhile is a clear 503) and both are reachable once it is
/// back; with two login hosts and the first one down, starts and tracking go through the
/// second; the hub killed with -9 and started again re-adopts both, tunnels restored, and a
/// kernel keeps its variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_servers_live_through_a_login_node_outage_and_a_hub_kill() {
    let Some(p) = parts() else { return };
    let Some(c) = SshCluster::get() else { return };
    let _shared = CLUSTER.read().await;
    // It closes the login nodes: no other test may use the SSH cluster meanwhile.
    let _alone = c.exclusive().await;
    let hosts = [c.login_host(1), c.login_host(2)];
    let (_tracker, bob, _cancel, mut hub) = two_system_hub(&p, &c, &hosts, "so", "").await;
    let user = bob.name.as_str();
    let remote = |runtime: &str| json!({"system": "remote", "partition": "batch", "nodes": 1, "runtime": runtime});
    for server in ["a", "b"] {
        let (s, body) = start(&hub, user, server, remote("00:20")).await;
        assert!(
            s == 201 || s == 202,
            "start {server}: {s} {body}\n{}",
            hub.log()
        );
    }
    let token = user_token(&hub, user).await;
    let mut kernels = Vec::new();
    for server in ["a", "b"] {
        wait_ready(&hub, user, server, 120).await;
        let prefix = format!("/user/{user}/{server}/");
        let id = kernel::create_kernel_with_token(&hub, &prefix, &token).await;
        kernel::execute(&hub, &prefix, &id, &token, "x = 6 * 7\nprint('set')").await;
        kernels.push((prefix, id));
    }
    let connections = || c.connections(user);
    assert_eq!(
        connections(),
        1,
        "one SSH connection for the user's two servers and commands"
    );

    // Both doors shut: the login nodes do not answer at all.
    // Login node 1 stays closed to the end: from here, everything goes through node 2.
    let _door1 = c.door_stop(1);
    let door2 = c.door_stop(2);
    let outage = tokio::time::Instant::now();
    let (s, body) = eventually(30, "a start refused with 503", || async {
        let (s, body) = start(&hub, user, "c", remote("00:10")).await;
        (s == 503).then_some((s, body))
    })
    .await;
    assert!(
        body.contains("remote") || body.contains("Remote"),
        "the 503 names the system: {s} {body}"
    );
    while outage.elapsed() < Duration::from_secs(60) {
        for server in ["a", "b"] {
            let model = server_model(&hub, user, server).await.unwrap_or_default();
            assert_eq!(
                model["ready"], true,
                "{server} given up during the outage: {model}"
            );
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    // The second door opens: everything goes through login node 2.
    door2.open();
    for (prefix, id) in &kernels {
        let printed = eventually(60, "the kernel reachable again", || async {
            kernel::try_execute(&hub, prefix, id, &token, "print(x)").await
        })
        .await;
        assert_eq!(printed.trim(), "42", "{prefix}");
    }
    let (s, body) = start(&hub, user, "c", remote("00:10")).await;
    assert!(
        s == 201 || s == 202,
        "a start through the second login node: {s} {body}"
    );
    wait_ready(&hub, user, "c", 120).await;

    // The hub killed and started again: both re-adopted, tunnels restored.
    hub.kill9_hub();
    hub.start().await;
    for (prefix, id) in &kernels {
        let printed = eventually(60, "the kernel reachable after the restart", || async {
            kernel::try_execute(&hub, prefix, id, &token, "print(x)").await
        })
        .await;
        assert_eq!(printed.trim(), "42", "{prefix}");
    }
    for server in ["a", "b", "c"] {
        let (s, body) = admin(
            &hub,
            Method::DELETE,
            &format!("/users/{user}/servers/{server}"),
            None,
        )
        .await;
        assert!(s == 204 || s == 202, "stop {server}: {s} {body}");
    }
    eventually(60, "the jobs gone", || async {
        remote_jobs_of(&c, user).is_empty().then_some(())
    })
    .await;
}

/// Acceptance 2: twenty servers on the SSH system cost one `squeue` per poll interval for
/// that system (counted by a wrapper on the login node's side), and one SSH connection for
/// their user (counted on the login node), whatever the number of commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_ssh_servers_cost_one_squeue_per_poll_and_one_connection() {
    let Some(p) = parts() else { return };
    let Some(c) = SshCluster::get() else { return };
    let _shared = CLUSTER.read().await;
    // It fills the SSH cluster's partitions.
    let _alone = c.exclusive().await;
    // A bin_dir (on the shared file system: the login node sees it too) whose squeue counts
    // its calls, the other commands as they are.
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
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(&count, "").expect("counter");
    std::fs::set_permissions(&count, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let tracker = TempAccount::create("sqt", &Path::new("/tmp").join("nbhub-sqt-home"));
    let systems = systems_toml(&c, &p, &tracker.name, &[c.login_host(1)]).replace(
        "reach = \"tunnel\"\npoll_interval = 1",
        &format!(
            "reach = \"tunnel\"\npoll_interval = 2\nbin_dir = \"{}\"",
            bin.path().display()
        ),
    );
    let mut hub = HubProc::new(
        p.venv.clone(),
        &p.proxy,
        Options {
            systems: Some(systems),
            extra_toml: "named_server_limit_per_user = 0".into(),
            ..Default::default()
        },
    );
    hub.start().await;
    let dave = SlurmUser::new(&p, &hub, "sr").await;
    let user = dave.name.as_str();
    let _cancel = CancelRemote(&c, user.to_owned());
    let starts = (0..20).map(|i| {
        let hub = &hub;
        async move {
            let name = format!("s{i}");
            let options =
                json!({"system": "remote", "partition": "batch", "nodes": 1, "runtime": "00:10"});
            (name.clone(), start(hub, user, &name, options).await)
        }
    });
    for (name, (s, body)) in futures_util::future::join_all(starts).await {
        assert!(s == 201 || s == 202, "start {name}: {s} {body}");
    }
    eventually(90, "20 jobs on the SSH cluster", || async {
        (remote_jobs_of(&c, user).len() == 20).then_some(())
    })
    .await;
    let calls = || {
        std::fs::read_to_string(&count)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let connections = || c.connections(user);
    let before = calls();
    let window = Duration::from_secs(10);
    let mut most = 0;
    let until = tokio::time::Instant::now() + window;
    while tokio::time::Instant::now() < until {
        most = most.max(connections());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let during = calls() - before;
    assert!(
        during <= 7,
        "{during} squeue calls in {} s for 20 servers: expected one per 2 s poll",
        window.as_secs()
    );
    assert!(
        during >= 3,
        "the tracker should keep polling: {during} calls"
    );
    assert_eq!(most, 1, "the user's 20 servers share one SSH connection");
}

/// Acceptance 1, the browser part: in Chromium the form offers both systems; the SSH system
/// picked, its own partitions shown, the form starts a job there, and JupyterLab loads in the
/// browser through the proxy — its sign-in with the hub (OAuth) goes through the reverse
/// forward, its pages through the forward to the compute node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_form_in_a_browser_starts_jupyterlab_on_the_ssh_system() {
    let Some(p) = parts() else { return };
    let Some(c) = SshCluster::get() else { return };
    let Some(b) = chromium::Browser::start().await else {
        return;
    };
    let _shared = CLUSTER.read().await;
    let _doors = c.shared().await;
    let (_tracker, erin, _cancel, hub) =
        two_system_hub(&p, &c, &[c.login_host(1)], "sbr", "").await;
    let user = erin.name.as_str();
    let base = hub.public_url("");
    b.sign_in(&base, user, PASSWORD).await;
    b.goto(&format!("{base}/hub/spawn/{user}")).await;
    b.find("#opt-system").await;
    let systems = b
        .eval(
            "return [...document.querySelectorAll('#opt-system option')].map(o => o.value)",
            json!([]),
        )
        .await;
    assert_eq!(systems, json!(["local", "remote"]));
    super::choose(&b, "system", "remote").await;
    let partitions = b
        .eval(
            "return [...document.querySelectorAll('[id=\"opt-remote.partition\"] option')].map(o => o.value)",
            json!([]),
        )
        .await;
    assert_eq!(
        partitions,
        json!(["batch", "devel"]),
        "the SSH cluster's own partitions, asked over SSH"
    );
    super::choose(&b, "remote.partition", "devel").await;
    b.fill("[id='opt-remote.runtime']", "00:10").await;
    b.eval(
        "document.querySelector('#spawn-submit').scrollIntoView({block: 'center', behavior: 'instant'})",
        json!([]),
    )
    .await;
    b.click("#spawn-submit").await;
    let job = eventually(60, "the job on the SSH cluster", || async {
        remote_jobs_of(&c, user).into_iter().next()
    })
    .await;
    let fields: Vec<&str> = job.split('|').collect();
    assert_eq!(&fields[1..5], ["devel", "1", "10:00", user], "{job}");
    b.wait_until_for(
        &format!(
            "location.pathname.startsWith('/user/{user}/') && document.querySelector('#jp-main-dock-panel')"
        ),
        "JupyterLab's main area, through the tunnels",
        Duration::from_secs(120),
    )
    .await;
    let model = server_model(&hub, user, "").await.expect("the server");
    assert_eq!(model["slurm"]["system"], "remote", "{model}");
    b.quit().await;
    let (s, body) = admin(&hub, Method::DELETE, &format!("/users/{user}/server"), None).await;
    assert!(s == 204 || s == 202, "stop: {s} {body}");
    eventually(60, "the job gone", || async {
        remote_jobs_of(&c, user).is_empty().then_some(())
    })
    .await;
}
