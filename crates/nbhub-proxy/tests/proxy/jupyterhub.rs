//! Acceptance 2: the real Python JupyterHub (from the test venv) runs nbhub-proxy as its
//! proxy; a user server it spawns is reachable through it, and a kernel's websocket works.
//!
//! The venv comes from `NBHUB_VENV`, else `<workspace>/.venv` (scripts/requirements-test.txt).
//! Without it the test fails under CI=true and otherwise skips loudly.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use nbhub_testkit::free_port;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

fn venv() -> PathBuf {
    match std::env::var_os("NBHUB_VENV") {
        Some(v) => PathBuf::from(v),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv"),
    }
}

/// The hub process; on drop: SIGTERM (the hub stops its servers and its proxy), then SIGKILL
/// its group, then any process still working in our temp dir (servers, kernels, the proxy all
/// run in sessions of their own).
struct Hub {
    child: Child,
    dir: PathBuf,
}

fn signal(sig: &str, target: &str) {
    let _ = Command::new("kill")
        .args([sig, "--", target])
        .stderr(Stdio::null())
        .status();
}

fn procs_in(dir: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if let Ok(cwd) = std::fs::read_link(e.path().join("cwd")) {
            if cwd.starts_with(dir) {
                out.push(pid);
            }
        }
    }
    out
}

impl Drop for Hub {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        signal("-TERM", &pid);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        signal("-KILL", &format!("-{pid}"));
        let _ = self.child.wait();
        for p in procs_in(&self.dir) {
            signal("-KILL", &p.to_string());
        }
    }
}

struct Client {
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    base: String,
    token: String,
}

impl Client {
    async fn call(&self, method: &str, path: &str, body: Option<&str>) -> (StatusCode, String) {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path))
            .header("authorization", format!("token {}", self.token))
            .body(Full::new(Bytes::from(body.unwrap_or("").to_string())))
            .expect("request");
        match tokio::time::timeout(Duration::from_secs(30), self.http.request(req)).await {
            Ok(Ok(res)) => {
                let s = res.status();
                let b = res
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                (s, String::from_utf8_lossy(&b).into_owned())
            }
            Ok(Err(e)) => (StatusCode::BAD_GATEWAY, format!("client error: {e}")),
            Err(_) => (StatusCode::GATEWAY_TIMEOUT, "client timeout".into()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_jupyterhub_uses_nbhub_proxy() {
    let venv = venv();
    let jupyterhub = venv.join("bin/jupyterhub");
    if !jupyterhub.exists() {
        let msg = format!(
            "the Python test venv is missing ({} not found): run `python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements-test.txt` or set NBHUB_VENV",
            jupyterhub.display()
        );
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{msg}");
        }
        eprintln!("\n!!!!! SKIPPING python_jupyterhub_uses_nbhub_proxy: {msg} !!!!!\n");
        return;
    }
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().canonicalize().expect("canon");
    std::fs::create_dir_all(dir.join("home/alice")).expect("home");
    let (public, api, hub) = (free_port(), free_port(), free_port());
    let svc_token = "0123456789abcdef0123456789abcdef";
    let proxy_bin = env!("CARGO_BIN_EXE_nbhub-proxy");
    let cfg = format!(
        r#"
c = get_config()  # noqa
c.JupyterHub.bind_url = "http://127.0.0.1:{public}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub}"
c.JupyterHub.db_url = "sqlite:///{dir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{dir}/cookie_secret"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api}"
c.ConfigurableHTTPProxy.command = ["{proxy_bin}"]
c.ConfigurableHTTPProxy.auth_token = "proxy-secret-for-test"
c.ConfigurableHTTPProxy.pid_file = "{dir}/proxy.pid"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = {{"alice"}}
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = "{dir}/home/{{username}}"
c.Spawner.cmd = ["{venv}/bin/jupyterhub-singleuser"]
c.Spawner.args = ["--allow-root"]
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.JupyterHub.services = [{{"name": "tester", "api_token": "{svc_token}"}}]
c.JupyterHub.load_roles = [{{
    "name": "tester",
    "scopes": ["admin:users", "admin:servers", "access:servers", "proxy"],
    "services": ["tester"],
}}]
"#,
        dir = dir.display(),
        venv = venv.display(),
    );
    std::fs::write(dir.join("jupyterhub_config.py"), cfg).expect("config");
    let log = std::fs::File::create(dir.join("hub.log")).expect("log");
    let path = format!(
        "{}/bin:{}",
        venv.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let child = std::process::Command::new(&jupyterhub)
        .arg("-f")
        .arg(dir.join("jupyterhub_config.py"))
        .current_dir(&dir)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("start jupyterhub");
    let mut hub_guard = Hub {
        child,
        dir: dir.clone(),
    };
    let hub_log = || std::fs::read_to_string(dir.join("hub.log")).unwrap_or_default();

    let c = Client {
        http: crate::common::client(),
        base: format!("http://127.0.0.1:{public}"),
        token: svc_token.into(),
    };
    // The hub API, through nbhub-proxy.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (s, _) = c.call("GET", "/hub/api/", None).await;
        if s == StatusCode::OK {
            break;
        }
        if let Ok(Some(status)) = hub_guard.child.try_wait() {
            panic!("jupyterhub exited ({status}):\n{}", hub_log());
        }
        assert!(
            Instant::now() < deadline,
            "hub not reachable through the proxy:\n{}",
            hub_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        hub_log().contains("nbhub-proxy listening on http://127.0.0.1:"),
        "JupyterHub did not start nbhub-proxy:\n{}",
        hub_log()
    );
    eprintln!("hub up through nbhub-proxy after {:?}", started.elapsed());

    let (s, b) = c
        .call("POST", "/hub/api/users/alice/server", Some("{}"))
        .await;
    assert!(
        s == StatusCode::CREATED || s == StatusCode::ACCEPTED,
        "{s} {b}\n{}",
        hub_log()
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (s, b) = c.call("GET", "/hub/api/users/alice", None).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let v = crate::common::json(&b);
        if v["servers"][""]["ready"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice's server not ready: {b}\n{}",
            hub_log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("alice's server ready after {:?}", started.elapsed());

    // The route JupyterHub added, as CHP would hold it.
    let proxy_api = Client {
        http: crate::common::client(),
        base: format!("http://127.0.0.1:{api}"),
        token: "proxy-secret-for-test".into(),
    };
    let (s, b) = proxy_api.call("GET", "/api/routes", None).await;
    assert_eq!(s, StatusCode::OK);
    let routes = crate::common::json(&b);
    assert_eq!(routes["/user/alice"]["user"], "alice", "{b}");
    assert_eq!(routes["/"]["hub"], true, "{b}");

    let (s, b) = c.call("GET", "/user/alice/api/status", None).await;
    assert_eq!(s, StatusCode::OK, "{b}\n{}", hub_log());
    assert!(crate::common::json(&b).get("started").is_some(), "{b}");

    let (s, b) = c
        .call(
            "POST",
            "/user/alice/api/kernels",
            Some(r#"{"name": "python3"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}\n{}", hub_log());
    let kernel = crate::common::json(&b)["id"]
        .as_str()
        .expect("kernel id")
        .to_string();

    let mut req = format!("ws://127.0.0.1:{public}/user/alice/api/kernels/{kernel}/channels")
        .into_client_request()
        .expect("ws request");
    req.headers_mut().insert(
        "authorization",
        format!("token {svc_token}").parse().expect("header"),
    );
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("ws connect timeout")
    .expect("ws connect");
    let msg_id = "nbhub-proxy-test-1";
    let execute = serde_json::json!({
        "header": {
            "msg_id": msg_id, "username": "tester", "session": "nbhub-proxy-test",
            "msg_type": "execute_request", "version": "5.3", "date": "2026-01-01T00:00:00.000Z",
        },
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {
            "code": "print(6*7)", "silent": false, "store_history": false,
            "user_expressions": {}, "allow_stdin": false, "stop_on_error": true,
        },
    });
    ws.send(Message::text(execute.to_string()))
        .await
        .expect("send");
    let got = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(m) = ws.next().await {
            let Ok(Message::Text(t)) = m else { continue };
            let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
            if v["parent_header"]["msg_id"] == msg_id && v["msg_type"] == "stream" {
                return v["content"]["text"].as_str().map(str::to_string);
            }
        }
        None
    })
    .await
    .expect("no kernel output within 60 s");
    assert_eq!(got.as_deref(), Some("42\n"));
    let _ = ws.close(None).await;
    eprintln!(
        "kernel said 42 through nbhub-proxy after {:?}",
        started.elapsed()
    );

    let (s, _) = c.call("DELETE", "/hub/api/users/alice/server", None).await;
    assert!(s.is_success(), "{s}");
    drop(hub_guard);
    // Nothing may survive the fixture.
    assert!(
        procs_in(&dir).is_empty(),
        "processes left in {}",
        dir.display()
    );
}
