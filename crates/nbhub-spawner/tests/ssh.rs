//! The SSH transport against a real OpenSSH sshd: the login nodes of the Slurm cluster that
//! scripts/slurm-ssh-cluster runs in a network namespace of its own (real Slurm behind them),
//! real Unix accounts, certificates signed by the cluster's user CA. Runs as root.

use std::path::Path;
use std::time::{Duration, Instant};

use nbhub_spawner::{Forward, SshConfig, SshError, SshTransport, Who};
use nbhub_testkit::{require, ChildGuard, SshCluster, TempAccount, TempDir};

const T: Duration = Duration::from_secs(30);

/// A test's accounts and the transport's state directory.
struct Fixture {
    cluster: SshCluster,
    state: TempDir,
    _homes: TempDir,
    user: TempAccount,
    tracker: TempAccount,
}

impl Fixture {
    fn new(tag: &str) -> Option<Self> {
        let cluster = SshCluster::get()?;
        let homes = nbhub_testkit::temp_dir_world_readable();
        let user = TempAccount::create(&format!("{tag}u"), &homes.path().join("user"));
        let tracker = TempAccount::create(&format!("{tag}t"), &homes.path().join("tracker"));
        Some(Self {
            cluster,
            state: nbhub_testkit::temp_dir(),
            _homes: homes,
            user,
            tracker,
        })
    }

    fn config(&self, doors: &[u8]) -> SshConfig {
        SshConfig {
            login_hosts: doors.iter().map(|&n| self.cluster.login_host(n)).collect(),
            known_hosts: self.cluster.known_hosts.display().to_string(),
            certificate_authority: self.cluster.ca_key.display().to_string(),
            tracking_user: self.tracker.name.clone(),
            connect_timeout: 5,
            ..SshConfig::default()
        }
    }

    fn transport(&self, doors: &[u8]) -> SshTransport {
        SshTransport::new("nbhubssh", &self.config(doors), self.state.path()).expect("transport")
    }

    fn me(&self) -> Who<'_> {
        Who::User(&self.user.name)
    }
}

impl Drop for Fixture {
    /// The accounts go after their sessions on the login node (the transports, locals of
    /// the test, are dropped first).
    fn drop(&mut self) {
        self.cluster.end_sessions(&self.user.name);
        self.cluster.end_sessions(&self.tracker.name);
    }
}

async fn stdout_of(t: &SshTransport, who: Who<'_>, argv: &[&str]) -> String {
    let out = t.run(who, argv, None, T).await.expect("run over ssh");
    assert!(out.ok, "{argv:?}: {out:?}");
    out.stdout
}

/// Polls `check` until it is true or `within` passes.
async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_a_command_as_the_user_with_a_signed_certificate() {
    let f = require!(Fixture::new("who"));
    let _doors = f.cluster.shared().await;
    let t = f.transport(&[1]);
    assert_eq!(stdout_of(&t, f.me(), &["whoami"]).await.trim(), f.user.name);
    // The login node's session has its cluster's Slurm configuration (sshd's SetEnv).
    let conf = stdout_of(&t, f.me(), &["printenv", "SLURM_CONF"]).await;
    assert_eq!(Path::new(conf.trim()), f.cluster.slurm_conf);
    // A failing command is the command's failure, not the connection's.
    let out = t
        .run(f.me(), &["sh", "-c", "echo oops >&2; exit 3"], None, T)
        .await
        .expect("the connection works");
    assert!(!out.ok);
    assert_eq!(out.code, Some(3));
    assert_eq!(out.stderr.trim(), "oops");
    // stdin reaches the command (how secrets travel).
    let out = t
        .run(f.me(), &["cat"], Some(b"secret\nlines\n"), T)
        .await
        .unwrap();
    assert_eq!(out.stdout, "secret\nlines\n");
    // Much output before the input is read, and much input (beyond what ssh's channel
    // windows and the pipes hold): neither side waits for the other.
    const MB8: usize = 8 << 20;
    let big = vec![b'x'; MB8];
    let out = t
        .run(
            f.me(),
            &["sh", "-c", "head -c 8388608 /dev/zero; wc -c"],
            Some(&big),
            T,
        )
        .await
        .unwrap();
    assert_eq!(out.stdout.len(), MB8 + "8388608\n".len());
    assert!(
        out.stdout.ends_with("8388608\n"),
        "{:?}",
        &out.stdout[MB8..]
    );
    // A command that takes too long is a timeout; the connection stays.
    let err = t
        .run(f.me(), &["sleep", "3"], None, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::Timeout { .. }), "{err:?}");
    assert_eq!(stdout_of(&t, f.me(), &["echo", "still"]).await, "still\n");
    assert_eq!(f.cluster.connections(&f.user.name), 1);
    assert!(t.unreachable().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_survive_the_remote_shell() {
    let f = require!(Fixture::new("quo"));
    let _doors = f.cluster.shared().await;
    let t = f.transport(&[1]);
    let nasty = [
        "",
        "it's",
        "$(id)",
        "`id`",
        "a;b",
        "*",
        "~",
        "-n",
        "line\nbreak",
        "two  spaces",
        "back\\slash",
        "\"q\"",
        "ünïcødé ✓",
        "'; touch /tmp/nbhub-pwned #",
        "$HOME ${PATH}",
    ];
    let mut argv = vec!["printf", "%s\\0"];
    argv.extend_from_slice(&nasty);
    let out = stdout_of(&t, f.me(), &argv).await;
    let got: Vec<&str> = out.split('\0').collect();
    assert_eq!(got[..nasty.len()], nasty[..], "printed {out:?}");
    assert_eq!(got.len(), nasty.len() + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_share_one_connection_per_account() {
    let f = require!(Fixture::new("con"));
    let _doors = f.cluster.shared().await;
    let t = f.transport(&[1]);
    let runs = (0..20).map(|i| {
        let t = &t;
        let f = &f;
        async move {
            let n = i.to_string();
            stdout_of(t, f.me(), &["sh", "-c", "sleep 0.3; echo $1", "-", &n]).await
        }
    });
    let outs = futures_join_all(runs).await;
    for (i, out) in outs.iter().enumerate() {
        assert_eq!(out.trim(), i.to_string());
    }
    assert_eq!(
        f.cluster.connections(&f.user.name),
        1,
        "counted on the login node"
    );
    // The tracking account's connection is another one, of its own account.
    let me = stdout_of(&t, Who::Tracking, &["whoami"]).await;
    assert_eq!(me.trim(), f.tracker.name);
    assert_eq!(f.cluster.connections(&f.tracker.name), 1);
    assert_eq!(f.cluster.connections(&f.user.name), 1);
    assert_eq!(t.open_connections(), 2);
    drop(t);
    eventually("the connections close with the transport", T, || async {
        f.cluster.connections(&f.user.name) == 0 && f.cluster.connections(&f.tracker.name) == 0
    })
    .await;
}

/// All of `futs`, run concurrently, in order (a join_all without the futures crate).
async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut outs: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (fut, out) in set.iter_mut().zip(outs.iter_mut()) {
            if out.is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outs.into_iter().map(|o| o.expect("ready")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_node_with_another_host_key_is_refused() {
    let f = require!(Fixture::new("hk"));
    let _doors = f.cluster.shared().await;
    // known_hosts with another key for both login nodes.
    let other = f.state.path().join("other");
    keygen(&["-q", "-t", "ed25519", "-N", "", "-f"], &other);
    let key = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let key: Vec<&str> = key.split_whitespace().take(2).collect();
    let known = f.state.path().join("known_hosts");
    std::fs::write(
        &known,
        format!(
            "[127.0.0.1]:{} {}\n[127.0.0.1]:{} {}\n",
            f.cluster.port,
            key.join(" "),
            f.cluster.port2,
            key.join(" ")
        ),
    )
    .unwrap();
    let config = SshConfig {
        known_hosts: known.display().to_string(),
        ..f.config(&[1, 2])
    };
    let t = SshTransport::new("nbhubssh", &config, f.state.path()).unwrap();
    let marker = f.user.home.join("ran");
    let err = t
        .run(f.me(), &["touch", marker.to_str().unwrap()], None, T)
        .await
        .expect_err("a wrong host key must fail");
    match &err {
        SshError::HostKey { host, message } => {
            assert!(host.starts_with("127.0.0.1:"), "{host}");
            assert!(message.contains(known.to_str().unwrap()), "{message}");
        }
        other => panic!("expected a host key error, got {other:?}"),
    }
    assert!(err
        .to_string()
        .contains("does not match the known_hosts file"));
    assert!(!marker.exists(), "the command ran");
    assert_eq!(f.cluster.connections(&f.user.name), 0);
    assert!(t.unreachable().is_some());
    let spawn_error = nbhub_spawner::SpawnError::from(err);
    assert!(matches!(spawn_error, nbhub_spawner::SpawnError::Failed(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_go_through_the_second_login_node_when_the_first_is_down() {
    let f = require!(Fixture::new("two"));
    let _doors = f.cluster.exclusive().await;
    let first = f.cluster.door_stop(1);
    let t = f.transport(&[1, 2]);
    let result = t.run(f.me(), &["whoami"], None, T).await;
    let on_second = f.cluster.connections(&f.user.name);
    // Then the first one comes back and takes no new connection while the second works.
    first.open();
    let out = result.expect("the second login node serves");
    assert_eq!(out.stdout.trim(), f.user.name);
    assert_eq!(on_second, 1);
    let me = stdout_of(&t, Who::Tracking, &["whoami"]).await;
    assert_eq!(me.trim(), f.tracker.name);

    // Every login node down: the system is unavailable, and says why.
    let doors = (f.cluster.door_stop(1), f.cluster.door_stop(2));
    let t2 = SshTransport::new("nbhubssh", &f.config(&[1, 2]), &f.state.path().join("b")).unwrap();
    let err = t2.run(f.me(), &["whoami"], None, T).await;
    drop(doors);
    let err = err.expect_err("no login node answers");
    assert!(matches!(err, SshError::Unreachable { .. }), "{err:?}");
    let why = t2.unreachable().expect("the health says why");
    assert!(
        why.contains(&f.cluster.login_host(1)) && why.contains(&f.cluster.login_host(2)),
        "{why}"
    );
    assert!(matches!(
        nbhub_spawner::SpawnError::from(err),
        nbhub_spawner::SpawnError::Unavailable { .. }
    ));
}

/// A server in the namespace (python's http.server, on a port it picks) reached through a
/// local forward, and a server on the hub's side reached from the login node through a remote
/// forward; the login node drops the connection and comes back: the next command reconnects
/// and both forwards are back on the same ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_come_back_on_the_same_ports_after_a_dropped_connection() {
    let f = require!(Fixture::new("fwd"));
    let _doors = f.cluster.exclusive().await;
    let served = nbhub_testkit::temp_dir_world_readable();
    std::fs::write(served.path().join("inside.txt"), "from the namespace\n").unwrap();
    std::fs::write(served.path().join("outside.txt"), "from the hub\n").unwrap();
    let http = |mut cmd: std::process::Command| {
        cmd.args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0"])
            .current_dir(served.path());
        cmd
    };
    let inside = ChildGuard::spawn(
        "http.server in the namespace",
        http(f.cluster.in_ns("python3")),
    )
    .expect("python3 in the namespace");
    let outside = ChildGuard::spawn("http.server", http(std::process::Command::new("python3")))
        .expect("python3");
    let port_of = |child: &ChildGuard| {
        let line = child.wait_for_line_blocking(|l| l.contains("Serving HTTP"), T);
        nbhub_testkit::port_in_line(&line)
            .or_else(|| line.split_whitespace().nth(5).and_then(|p| p.parse().ok()))
            .unwrap_or_else(|| panic!("no port in {line:?}"))
    };
    let (inside_port, outside_port) = (port_of(&inside), port_of(&outside));

    let t = f.transport(&[1]);
    let local = t
        .forward_local(&f.user.name, "127.0.0.1", inside_port, 0)
        .await
        .expect("forward_local");
    let remote = t
        .forward_remote(&f.user.name, "127.0.0.1", 0, "127.0.0.1", outside_port)
        .await
        .expect("forward_remote");
    assert_ne!(remote, 0);
    let fetch_local = || async move {
        nbhub_testkit::http_get(&format!("http://127.0.0.1:{local}/inside.txt"))
            .await
            .ok()
            .filter(|r| r.status == 200)
            .map(|r| r.body)
    };
    let fetch_remote = |t| fetch_on_login_node(t, &f.user.name, remote);
    assert_eq!(fetch_local().await.as_deref(), Some("from the namespace\n"));
    assert_eq!(fetch_remote(&t).await.as_deref(), Some("from the hub\n"));
    // The same spec again: ssh gives the same port, and one cancel leaves it to the other.
    let again = t
        .forward_remote(&f.user.name, "127.0.0.1", 0, "127.0.0.1", outside_port)
        .await
        .unwrap();
    assert_eq!(again, remote);
    t.cancel_forwards(&f.user.name, &[Forward::Remote(again)])
        .await
        .unwrap();
    assert_eq!(fetch_remote(&t).await.as_deref(), Some("from the hub\n"));
    // Another one, cancelled on the connection that allocated its port (asked as port 0).
    let extra = t
        .forward_remote(&f.user.name, "127.0.0.1", 0, "localhost", outside_port)
        .await
        .unwrap();
    assert_ne!(extra, remote);
    assert!(fetch_on_login_node(&t, &f.user.name, extra).await.is_some());
    t.cancel_forwards(&f.user.name, &[Forward::Remote(extra)])
        .await
        .expect("cancel a forward whose port the login node picked");
    assert_eq!(fetch_on_login_node(&t, &f.user.name, extra).await, None);

    // The login node goes away: the connection drops, the health says so.
    let door = f.cluster.door_stop(1);
    eventually("the transport notices", T, || async {
        t.open_connections() == 0
    })
    .await;
    eventually("the health names the login node", T, || async {
        t.unreachable().is_some()
    })
    .await;
    assert_eq!(fetch_local().await, None);
    // Back: the background task re-opens the connection with its forwards, unasked.
    door.open();
    eventually("the local forward is back on its port", T, || async {
        fetch_local().await.as_deref() == Some("from the namespace\n")
    })
    .await;
    assert!(t.unreachable().is_none());
    assert_eq!(stdout_of(&t, f.me(), &["whoami"]).await.trim(), f.user.name);
    assert_eq!(fetch_remote(&t).await.as_deref(), Some("from the hub\n"));
    assert_eq!(f.cluster.connections(&f.user.name), 1);

    // Cancelled forwards are gone, and stay gone after another reconnect.
    t.cancel_forwards(
        &f.user.name,
        &[Forward::Local(local), Forward::Remote(remote)],
    )
    .await
    .expect("cancel");
    assert_eq!(fetch_local().await, None);
    assert_eq!(fetch_remote(&t).await, None);
}

/// `http://127.0.0.1:<port>/outside.txt` fetched on the login node, as `user`.
async fn fetch_on_login_node(t: &SshTransport, user: &str, port: u16) -> Option<String> {
    let url = format!("http://127.0.0.1:{port}/outside.txt");
    let script = "import sys, urllib.request; \
                  print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end='')";
    t.run(Who::User(user), &["python3", "-c", script, &url], None, T)
        .await
        .ok()
        .filter(|o| o.ok)
        .map(|o| o.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sbatch_over_ssh_and_squeue_as_the_tracking_user() {
    let f = require!(Fixture::new("job"));
    let _doors = f.cluster.shared().await;
    let t = f.transport(&[1, 2]);
    let name = format!("nbhub ssh test {}", f.user.name);
    let out = t
        .run(
            f.me(),
            &[
                "sbatch",
                "--parsable",
                "-p",
                "devel",
                "-t",
                "5",
                "-J",
                &name,
                "--wrap",
                "sleep 300",
            ],
            None,
            T,
        )
        .await
        .expect("sbatch over ssh");
    assert!(out.ok, "sbatch: {out:?}");
    let job = out.stdout.trim().to_owned();
    assert!(job.parse::<u64>().is_ok(), "sbatch printed {job:?}");
    let seen = stdout_of(
        &t,
        Who::Tracking,
        &["squeue", "-h", "-j", &job, "-o", "%i|%u|%j|%P"],
    )
    .await;
    assert_eq!(seen.trim(), format!("{job}|{}|{name}|devel", f.user.name));
    let in_ns = f.cluster.squeue_in_ns(&["-h", "-j", &job, "-o", "%i|%u"]);
    assert_eq!(in_ns.trim(), format!("{job}|{}", f.user.name));

    let out = t.run(f.me(), &["scancel", &job], None, T).await.unwrap();
    assert!(out.ok, "scancel: {out:?}");
    eventually(
        "the job leaves the queue",
        Duration::from_secs(60),
        || async {
            let q = t
                .run(
                    Who::Tracking,
                    &["squeue", "-h", "-j", &job, "-o", "%T"],
                    None,
                    T,
                )
                .await
                .unwrap();
            !q.stdout.contains("RUNNING") && !q.stdout.contains("PENDING")
        },
    )
    .await;
}

/// A hub killed with -9 leaves its ControlMasters running; the restarted hub (a new transport
/// on the same state directory) finds the socket, has the old master exit, and opens its own:
/// still one connection for the user on the login node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_hub_replaces_the_connection_it_left_behind() {
    let f = require!(Fixture::new("rst"));
    let _doors = f.cluster.shared().await;
    let before = f.transport(&[1]);
    assert_eq!(
        stdout_of(&before, f.me(), &["whoami"]).await.trim(),
        f.user.name
    );
    assert_eq!(f.cluster.connections(&f.user.name), 1);
    let after = f.transport(&[1]);
    assert_eq!(
        stdout_of(&after, f.me(), &["whoami"]).await.trim(),
        f.user.name
    );
    eventually("the old connection goes", T, || async {
        before.open_connections() == 0
    })
    .await;
    assert_eq!(f.cluster.connections(&f.user.name), 1);
    assert_eq!(after.open_connections(), 1);
}

/// `ssh-keygen args` (no shell), which must succeed.
fn keygen(args: &[&str], path: &Path) {
    let ok = std::process::Command::new("ssh-keygen")
        .args(args)
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(ok.success(), "ssh-keygen {args:?} {}", path.display());
}

/// A certificate from a CA the login nodes do not trust: the login node refuses it, and the
/// error says who was refused where.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    let f = require!(Fixture::new("ca"));
    let _doors = f.cluster.shared().await;
    let ca = f.state.path().join("other_ca");
    keygen(&["-q", "-t", "ed25519", "-N", "", "-f"], &ca);
    let config = SshConfig {
        certificate_authority: ca.display().to_string(),
        ..f.config(&[1])
    };
    let t = SshTransport::new("nbhubssh", &config, f.state.path()).unwrap();
    let err = t.run(f.me(), &["whoami"], None, T).await.unwrap_err();
    match &err {
        SshError::Auth { user, host, .. } => {
            assert_eq!(user, &f.user.name);
            assert_eq!(host, &f.cluster.login_host(1));
        }
        other => panic!("expected an authentication error, got {other:?}"),
    }
    assert_eq!(f.cluster.connections(&f.user.name), 0);
}

/// `identity_file` instead of a CA: the site's key per user (here signed by the cluster's CA,
/// its certificate beside it, which ssh picks up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_file_per_user_logs_in() {
    let f = require!(Fixture::new("idf"));
    let _doors = f.cluster.shared().await;
    let keys = f.state.path().join("site-keys");
    std::fs::create_dir(&keys).unwrap();
    for account in [&f.user.name, &f.tracker.name] {
        let key = keys.join(account);
        keygen(&["-q", "-t", "ed25519", "-N", "", "-f"], &key);
        let ca = f.cluster.ca_key.to_str().unwrap();
        keygen(
            &["-q", "-s", ca, "-I", "site", "-n", account, "-V", "-5m:+1h"],
            &keys.join(format!("{account}.pub")),
        );
    }
    let config = SshConfig {
        certificate_authority: String::new(),
        identity_file: format!("{}/{{username}}", keys.display()),
        ..f.config(&[1])
    };
    let t = SshTransport::new("nbhubssh", &config, f.state.path()).unwrap();
    assert_eq!(stdout_of(&t, f.me(), &["whoami"]).await.trim(), f.user.name);
    assert_eq!(
        stdout_of(&t, Who::Tracking, &["whoami"]).await.trim(),
        f.tracker.name
    );
    // A user without a key: the admin's problem, said as such.
    let err = t
        .run(Who::User("nobody"), &["whoami"], None, T)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SshError::Config(m) if m.contains(&format!("{}/nobody", keys.display()))),
        "{err:?}"
    );
}

/// A command whose connection is gone when it starts (here: its control socket removed under
/// it) never opens a connection of its own: it is run again on a new connection, once, and
/// the old one is ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_without_its_connection_runs_on_a_new_one() {
    let f = require!(Fixture::new("lost"));
    let _doors = f.cluster.shared().await;
    let t = f.transport(&[1]);
    assert_eq!(stdout_of(&t, f.me(), &["whoami"]).await.trim(), f.user.name);
    let sockets: Vec<_> = std::fs::read_dir(f.state.path().join("c"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(sockets.len(), 1, "one control socket: {sockets:?}");
    std::fs::remove_file(&sockets[0]).unwrap();
    assert_eq!(stdout_of(&t, f.me(), &["whoami"]).await.trim(), f.user.name);
    eventually("the old connection ends", T, || async {
        f.cluster.connections(&f.user.name) == 1
    })
    .await;
    assert_eq!(t.open_connections(), 1);
}
