//! The local spawner against real processes: the real `jupyterhub-singleuser` from the test
//! venv (talking to a tiny in-test hub API), shell commands that die or ignore SIGTERM, and,
//! as root, a throw-away Unix account to switch to.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nbhub_spawner::{
    FormContext, LocalConfig, LocalSpawner, LocalState, PollStatus, SpawnError, SpawnRequest,
    SpawnUpdate, Spawner, SpawnerConfig, Started, Updates,
};
use nbhub_testkit::{
    http_get, is_root, require, require_venv, temp_dir, HttpResponse, TempAccount,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers `GET /hub/api` like JupyterHub 6.1.1 (the single-user server checks it at start
/// and exits when it fails), 404 for anything else.
async fn fake_hub_api() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 2048];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&req);
                let path = head.split(' ').nth(1).unwrap_or("");
                let (status, body) = if path == "/hub/api" || path == "/hub/api/" {
                    ("200 OK", r#"{"version": "6.1.1"}"#)
                } else {
                    (
                        "404 Not Found",
                        r#"{"status": 404, "message": "Not Found"}"#,
                    )
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
                     X-JupyterHub-Version: 6.1.1\r\nAccess-Control-Allow-Origin: *\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/hub/api")
}

/// The environment the hub gives alice's default server (docs/wire.md#single-user-server-environment), minus what the spawner
/// adds itself.
fn hub_env(api_url: &str, user: &str) -> BTreeMap<String, String> {
    let token = format!(
        "{:032x}",
        u128::from(std::process::id()) << 64 | 0x5ed2c77d609e4af9
    );
    let scopes = format!(r#"["access:servers!server={user}/", "access:servers!user={user}"]"#);
    [
        ("JUPYTERHUB_API_TOKEN", token.clone()),
        ("JPY_API_TOKEN", token),
        ("JUPYTERHUB_CLIENT_ID", format!("jupyterhub-user-{user}")),
        ("JUPYTERHUB_API_URL", api_url.to_owned()),
        (
            "JUPYTERHUB_OAUTH_CALLBACK_URL",
            format!("/user/{user}/oauth_callback"),
        ),
        ("JUPYTERHUB_OAUTH_ACCESS_SCOPES", scopes.clone()),
        ("JUPYTERHUB_OAUTH_SCOPES", scopes),
        ("JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES", "[]".to_owned()),
        ("JUPYTERHUB_USER", user.to_owned()),
        ("JUPYTERHUB_SERVER_NAME", String::new()),
        ("JUPYTERHUB_SERVICE_PREFIX", format!("/user/{user}/")),
        ("JUPYTERHUB_BASE_URL", "/".to_owned()),
        ("JUPYTERHUB_HOST", String::new()),
        ("JUPYTERHUB_PUBLIC_URL", String::new()),
        ("JUPYTERHUB_PUBLIC_HUB_URL", String::new()),
        ("JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED", "0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn sh_config(script: &str) -> SpawnerConfig {
    SpawnerConfig {
        cmd: vec!["/bin/sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

/// A spawner whose servers are `script` run by sh as the test's own user, and the server
/// `server` of `user` started with it.
async fn sh_started(
    data: &Path,
    script: &str,
    user: &str,
    server: &str,
) -> (LocalSpawner, Started) {
    let spawner = LocalSpawner::new(sh_config(script), same_user(), data).unwrap();
    let started = spawner
        .start(&SpawnRequest::new(user, server))
        .await
        .expect("start");
    (spawner, started)
}

/// Servers as the test's own user, in the spawner's homes folder.
fn same_user() -> LocalConfig {
    LocalConfig {
        switch_user: false,
        ..Default::default()
    }
}

fn switching() -> LocalConfig {
    LocalConfig::default()
}

/// Live (non-zombie) processes of a process group.
fn group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        if fields[2] == pgid.to_string() && !matches!(fields[0], "Z" | "X") {
            out.push(pid);
        }
    }
    out
}

fn state_of(started: &Started) -> LocalState {
    LocalState::from_state(&started.state).expect("a local state")
}

/// Polls the server's log until a line satisfies `pred`.
async fn wait_log_line(path: &Path, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| pred(l)) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no such line in {} within {timeout:?}; it holds:\n{text}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The hub's readiness wait: probe until < 500, failing at once (with the reason) if the
/// server dies meanwhile.
async fn wait_ready(spawner: &LocalSpawner, started: &Started, timeout: Duration) -> HttpResponse {
    let url = format!("{}/user/alice/api", started.url());
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(50);
    loop {
        if let Ok(resp) = http_get(&url).await {
            if resp.status < 500 {
                return resp;
            }
        }
        if let PollStatus::Exited { reason } = spawner.poll(&started.state).await {
            panic!("the server died before it answered: {reason}");
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer within {timeout:?}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

async fn wait_exited(spawner: &LocalSpawner, started: &Started, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let PollStatus::Exited { reason } = spawner.poll(&started.state).await {
            return reason;
        }
        assert!(Instant::now() < deadline, "still running after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_singleuser_starts_answers_and_stops() {
    let venv: PathBuf = require!(require_venv());
    let t0 = Instant::now();
    let api_url = fake_hub_api().await;
    let data = temp_dir();
    let config = SpawnerConfig {
        cmd: vec![venv.join("bin/jupyterhub-singleuser").display().to_string()],
        // jupyter_server refuses root without it; the spawner does not hide that.
        args: if is_root() {
            vec!["--allow-root".into()]
        } else {
            vec![]
        },
        default_url: "/lab".into(),
        ..Default::default()
    };
    let spawner = LocalSpawner::new(config.clone(), same_user(), data.path()).unwrap();
    let (tx, mut progress) = tokio::sync::mpsc::unbounded_channel();
    let mut req = SpawnRequest::new("alice", "");
    req.env = hub_env(&api_url, "alice");
    req.updates = Updates::new(tx);

    let started = spawner.start(&req).await.expect("start");
    assert_eq!(started.host, "127.0.0.1");
    let mut updates = Vec::new();
    while let Ok(update) = progress.try_recv() {
        updates.push(update);
    }
    assert!(
        updates.iter().any(|u| matches!(u, SpawnUpdate::Progress(e) if e.message.contains(&started.port.to_string()))),
        "{updates:?}"
    );
    // The state reaches the hub before `start` returns, and the process runs at once.
    assert!(
        updates.contains(&SpawnUpdate::State(started.state.clone())),
        "{updates:?}"
    );
    assert!(updates.contains(&SpawnUpdate::Running), "{updates:?}");

    let resp = wait_ready(&spawner, &started, Duration::from_secs(60)).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(resp.body.contains("version"), "{resp:?}");
    eprintln!("jupyterhub-singleuser ready after {:?}", t0.elapsed());
    assert_eq!(spawner.poll(&started.state).await, PollStatus::Running);

    let st = state_of(&started);
    assert_eq!(st.pid, st.pgid);
    let home = data.path().join("homes/alice");
    assert!(home.is_dir());
    let environ = std::fs::read(format!("/proc/{}/environ", st.pid)).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    for var in [
        format!(
            "JUPYTERHUB_SERVICE_URL=http://127.0.0.1:{}/user/alice/",
            st.port
        ),
        format!("HOME={}", home.display()),
        "USER=alice".to_owned(),
        "JUPYTERHUB_DEFAULT_URL=/lab".to_owned(),
    ] {
        assert!(
            environ.split('\0').any(|v| v == var),
            "{var} missing from the server's environment"
        );
    }

    // A restarted hub (a new spawner, same state) re-adopts the running server.
    let restarted = LocalSpawner::new(config, same_user(), data.path()).unwrap();
    assert_eq!(restarted.poll(&started.state).await, PollStatus::Running);

    let t1 = Instant::now();
    spawner
        .stop(&started.state, Duration::from_secs(10))
        .await
        .expect("stop");
    eprintln!("stopped in {:?}", t1.elapsed());
    assert!(
        group_members(st.pgid).is_empty(),
        "processes left in the group"
    );
    let reason = wait_exited(&spawner, &started, Duration::from_secs(5)).await;
    assert!(reason.starts_with("The server process exited"), "{reason}");
    assert!(
        reason.contains("Jupyter"),
        "the log tail should show the server's output: {reason}"
    );
    match restarted.poll(&started.state).await {
        PollStatus::Exited { reason } => assert!(reason.contains("no longer running"), "{reason}"),
        other => panic!("the re-adopting spawner still sees the server: {other:?}"),
    }
    // Stopping again is not an error.
    restarted
        .stop(&started.state, Duration::from_secs(1))
        .await
        .expect("second stop");
}

#[tokio::test]
async fn a_server_that_exits_at_once_says_why() {
    let data = temp_dir();
    let script = "echo 'starting up'; echo 'Fatal: the config file is broken' >&2; exit 3";
    let (spawner, started) = sh_started(data.path(), script, "bob", "").await;
    let reason = wait_exited(&spawner, &started, Duration::from_secs(10)).await;
    assert!(reason.contains("exit status: 3"), "{reason}");
    assert!(
        reason.contains("Fatal: the config file is broken"),
        "{reason}"
    );
    assert!(reason.contains("bob.log"), "{reason}");
    // The batch form answers in order, empty states included.
    let all = spawner
        .poll_all(&[started.state.clone(), Default::default()])
        .await;
    assert!(
        matches!(&all[..], [PollStatus::Exited { reason: a }, PollStatus::Exited { reason: b }]
        if a.contains("exit status: 3") && b == "no server process is recorded")
    );
}

#[tokio::test]
async fn stop_kills_the_whole_group_and_escalates_to_sigkill() {
    let data = temp_dir();
    // The shell and its background child ignore SIGTERM: stop must escalate.
    let script = "trap '' TERM; sleep 300 & echo \"child $!\"; wait";
    let (spawner, started) = sh_started(data.path(), script, "carol", "lab2").await;
    let st = state_of(&started);
    assert!(
        st.log_path.ends_with("carol--lab2.log"),
        "{}",
        st.log_path.display()
    );
    let line = wait_log_line(
        &st.log_path,
        |l| l.starts_with("child "),
        Duration::from_secs(10),
    )
    .await;
    let child: u32 = line["child ".len()..].parse().unwrap();
    assert!(group_members(st.pgid).contains(&child));

    let t = Instant::now();
    spawner
        .stop(&started.state, Duration::from_millis(300))
        .await
        .expect("stop");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        t.elapsed()
    );
    assert!(
        group_members(st.pgid).is_empty(),
        "processes left in the group"
    );
    let reason = wait_exited(&spawner, &started, Duration::from_secs(5)).await;
    assert!(reason.contains("SIGKILL"), "{reason}");
}

#[tokio::test]
async fn start_errors_are_readable() {
    let data = temp_dir();
    let missing = LocalSpawner::new(
        SpawnerConfig {
            cmd: vec!["/nonexistent/jupyterhub-singleuser".into()],
            ..Default::default()
        },
        same_user(),
        data.path(),
    )
    .unwrap();
    let err = missing
        .start(&SpawnRequest::new("dave", ""))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "could not start /nonexistent/jupyterhub-singleuser as dave: \
         No such file or directory (os error 2)"
    );

    let switching = LocalSpawner::new(SpawnerConfig::default(), switching(), data.path()).unwrap();
    let err = switching
        .start(&SpawnRequest::new("nbhub-no-such-user", ""))
        .await
        .unwrap_err();
    assert!(matches!(err, SpawnError::NoUnixAccount { .. }));
    assert_eq!(
        err.to_string(),
        "user nbhub-no-such-user has no Unix account on this machine"
    );
}

#[tokio::test]
async fn the_local_spawner_takes_no_options() {
    let spawner =
        LocalSpawner::new(SpawnerConfig::default(), switching(), Path::new("/tmp")).unwrap();
    let ctx = FormContext::new("alice");
    assert!(spawner.options_form(&ctx).await.is_none());
    assert!(spawner
        .validate_options(&ctx, &serde_json::Value::Null)
        .await
        .unwrap()
        .is_empty());
    assert!(spawner
        .validate_options(&ctx, &serde_json::json!({}))
        .await
        .unwrap()
        .is_empty());
    let errors = spawner
        .validate_options(&ctx, &serde_json::json!({"partition": "gpu"}))
        .await
        .unwrap_err();
    assert_eq!(errors[0].field, "partition");
    assert_eq!(
        errors[0].message,
        "unknown option: this server takes no options"
    );
}

#[tokio::test]
async fn switch_user_runs_as_the_account_with_its_groups() {
    if !is_root() {
        nbhub_testkit::missing_part(
            "root (to create a Unix account and switch to it)",
            "the tests as root (CI does)",
        );
        return;
    }
    let base = nbhub_testkit::temp_dir_world_readable();
    let home = base.path().join("home");
    let account = TempAccount::create("s", &home);
    let user = nix::unistd::User::from_name(&account.name)
        .unwrap()
        .unwrap();
    let group = nix::unistd::Group::from_name(&account.group)
        .unwrap()
        .unwrap();

    let data = temp_dir();
    let spawner = LocalSpawner::new(
        SpawnerConfig {
            cmd: vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo \"id uid=$(id -u) gid=$(id -g) groups=$(id -G) user=$USER home=$HOME \
                 cwd=$(pwd) shell=$SHELL\"; exec sleep 300"
                    .into(),
            ],
            ..Default::default()
        },
        switching(),
        data.path(),
    )
    .unwrap();
    let started = spawner
        .start(&SpawnRequest::new(&account.name, ""))
        .await
        .expect("start as the account");
    let st = state_of(&started);
    let line = wait_log_line(
        &st.log_path,
        |l| l.starts_with("id "),
        Duration::from_secs(10),
    )
    .await;
    let field = |key: &str| -> String {
        let start = line.find(&format!(" {key}=")).unwrap() + key.len() + 2;
        // groups= holds spaces: it runs up to the next " key=".
        let rest = &line[start..];
        let end = rest
            .find(" user=")
            .filter(|_| key == "groups")
            .unwrap_or_else(|| rest.find(' ').unwrap_or(rest.len()));
        rest[..end].to_owned()
    };
    assert_eq!(field("uid"), user.uid.to_string(), "{line}");
    assert_eq!(field("gid"), user.gid.to_string(), "{line}");
    let groups = field("groups");
    assert!(
        groups.split(' ').any(|g| g == group.gid.to_string()),
        "{line}"
    );
    assert!(
        !groups.split(' ').any(|g| g == "0"),
        "root's group kept: {line}"
    );
    assert_eq!(field("user"), account.name, "{line}");
    assert_eq!(field("home"), home.display().to_string(), "{line}");
    assert_eq!(field("cwd"), home.display().to_string(), "{line}");
    assert_eq!(field("shell"), "/bin/sh", "{line}");

    spawner
        .stop(&started.state, Duration::from_secs(5))
        .await
        .expect("stop");
    assert!(group_members(st.pgid).is_empty());
    let reason = wait_exited(&spawner, &started, Duration::from_secs(5)).await;
    assert!(reason.contains("SIGTERM"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_user_runs_the_real_singleuser_as_the_account() {
    if !is_root() {
        nbhub_testkit::missing_part(
            "root (to create a Unix account and switch to it)",
            "the tests as root (CI does)",
        );
        return;
    }
    let venv: PathBuf = require!(require_venv());
    let base = nbhub_testkit::temp_dir_world_readable();
    let home = base.path().join("home");
    let account = TempAccount::create("j", &home);
    let user = nix::unistd::User::from_name(&account.name)
        .unwrap()
        .unwrap();
    let python = venv.join("bin/python");
    let reachable = Command::new(&python)
        .args(["-c", "import jupyterhub"])
        .uid(user.uid.as_raw())
        .gid(user.gid.as_raw())
        .current_dir("/")
        .status()
        .is_ok_and(|s| s.success());
    if !reachable {
        // Not a missing part but a property of where the venv lives: say so loudly.
        eprintln!(
            "\n*** SKIPPED switch_user_runs_the_real_singleuser_as_the_account: other accounts \
             cannot run {} (a private parent directory?). Create the venv with \
             NBHUB_VENV=/tmp/nbhub-venv NBHUB_PYTHON=/usr/bin/python3 scripts/test-env.sh ***\n",
            python.display()
        );
        return;
    }

    let api_url = fake_hub_api().await;
    let data = temp_dir();
    let spawner = LocalSpawner::new(
        SpawnerConfig {
            cmd: vec![venv.join("bin/jupyterhub-singleuser").display().to_string()],
            ..Default::default()
        },
        switching(),
        data.path(),
    )
    .unwrap();
    let mut req = SpawnRequest::new("alice", "");
    req.unix_user = account.name.clone();
    req.env = hub_env(&api_url, "alice");
    let started = spawner.start(&req).await.expect("start");
    let resp = wait_ready(&spawner, &started, Duration::from_secs(60)).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let st = state_of(&started);
    let status = std::fs::read_to_string(format!("/proc/{}/status", st.pid)).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|u| u == user.uid.to_string()),
        "{uid_line}"
    );
    // jupyter_server wrote its runtime files into the account's home, as the account.
    let runtime = home.join(".local/share/jupyter/runtime");
    let meta = std::fs::metadata(&runtime).expect("runtime dir in the account's home");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        user.uid.as_raw()
    );

    spawner
        .stop(&started.state, Duration::from_secs(10))
        .await
        .expect("stop");
    assert!(group_members(st.pgid).is_empty());
    assert!(matches!(
        spawner.poll(&started.state).await,
        PollStatus::Exited { .. }
    ));
}
