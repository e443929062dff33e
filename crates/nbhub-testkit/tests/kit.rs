//! Tests of the kit itself, with real child processes.

use std::process::Command;
use std::time::Duration;

use nbhub_testkit::{free_port, http_get, wait_for_http, wait_for_tcp, ChildGuard};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn sh(script: &str) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", script]);
    cmd
}

/// Alive = exists and is not a zombie (PID 1 of a container may never reap orphans).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let after = stat
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start())
                .unwrap_or("");
            !after.starts_with('Z') && !after.starts_with('X')
        }
        Err(_) => false,
    }
}

#[tokio::test]
async fn ready_line_gives_the_port() {
    let child = ChildGuard::spawn(
        "printer",
        sh("echo starting; echo 'listening on http://127.0.0.1:4321' >&2; exec sleep 60"),
    )
    .expect("spawn sh");
    let line = child
        .wait_for_line(|l| l.contains("listening on"), Duration::from_secs(10))
        .await;
    assert_eq!(nbhub_testkit::port_in_line(&line), Some(4321));
    // stdout and stderr are read by separate threads: their order between streams is not
    // guaranteed, so wait for the stdout line too rather than assuming it came first.
    child
        .wait_for_line(|l| l == "starting", Duration::from_secs(10))
        .await;
    assert!(child.output().text().contains("starting"));
}

#[test]
fn drop_kills_the_whole_group() {
    let child =
        ChildGuard::spawn("parent", sh("sleep 300 & echo grandchild $!; wait")).expect("spawn sh");
    let line =
        child.wait_for_line_blocking(|l| l.starts_with("grandchild"), Duration::from_secs(10));
    let grandchild: u32 = line["grandchild ".len()..].parse().unwrap();
    let parent = child.pid();
    assert!(alive(grandchild) && alive(parent));
    drop(child);
    assert!(!alive(parent), "the parent survived the guard");
    // The grandchild got SIGTERM with its group; it is gone or, at worst, a zombie.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while alive(grandchild) {
        assert!(
            std::time::Instant::now() < deadline,
            "grandchild {grandchild} survived the guard"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn kill_ignores_sigterm_then_sigkills() {
    let mut child = ChildGuard::spawn(
        "stubborn",
        sh("trap '' TERM; echo ready; while :; do sleep 1; done"),
    )
    .expect("spawn sh");
    child.wait_for_line_blocking(|l| l == "ready", Duration::from_secs(10));
    let status = child.kill().expect("reaped");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9));
}

#[test]
fn timeout_panics_with_the_output() {
    let child =
        ChildGuard::spawn("quiet", sh("echo hello-from-child; exec sleep 60")).expect("spawn sh");
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        child.wait_for_line_blocking(|l| l == "never", Duration::from_millis(300))
    }))
    .expect_err("must time out");
    let msg = err.downcast_ref::<String>().expect("a String panic");
    assert!(msg.contains("did not print the line"), "{msg}");
    assert!(msg.contains("hello-from-child"), "{msg}");
}

#[tokio::test]
async fn early_exit_panics_at_once() {
    let child =
        ChildGuard::spawn("crasher", sh("echo 'fatal: no config' >&2; exit 3")).expect("spawn sh");
    let started = std::time::Instant::now();
    let err = tokio::spawn(async move {
        child
            .wait_for_line(|l| l.contains("listening"), Duration::from_secs(30))
            .await
    })
    .await
    .expect_err("must panic");
    assert!(started.elapsed() < Duration::from_secs(10));
    let panic = err.into_panic();
    let msg = panic.downcast_ref::<String>().expect("a String panic");
    assert!(
        msg.contains("closed its output") && msg.contains("fatal: no config"),
        "{msg}"
    );
}

#[tokio::test]
async fn http_helpers_talk_to_a_port_zero_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = sock.read(&mut buf).await;
            let _ = sock
                .write_all(b"HTTP/1.1 404 Not Found\r\nX-JupyterHub-Version: 6.1.1\r\nContent-Length: 4\r\n\r\nnope")
                .await;
        }
    });
    wait_for_tcp(addr, Duration::from_secs(5)).await;
    let resp = wait_for_http(
        &format!("http://{addr}/user/alice/api"),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.header("X-JupyterHub-Version"), Some("6.1.1"));
    assert_eq!(resp.body, "nope");
    // Nothing listens on a port that was just released.
    assert!(http_get(&format!("http://127.0.0.1:{}/", free_port()))
        .await
        .is_err());
}

#[test]
fn finds_the_workspace_root() {
    let root = nbhub_testkit::workspace_root();
    assert!(
        root.join("crates").join("nbhub-testkit").is_dir(),
        "{}",
        root.display()
    );
}
