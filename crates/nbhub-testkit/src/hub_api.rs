//! A stand-in for the hub's API in the spawner's tests and benchmarks: it answers
//! `GET /hub/api` as JupyterHub does and records the port reports of batch jobs
//! (`POST /hub/api/batchspawner`), which is all a job script talks to. The hub's own tests use
//! the real hub.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A hub API that answers `GET /hub/api` like JupyterHub and records batchspawner reports
/// (the Authorization header and the body).
#[derive(Clone, Default)]
pub struct HubApi {
    /// Each report's Authorization header and body, in arrival order.
    pub reports: Arc<Mutex<Vec<(String, Value)>>>,
}

impl HubApi {
    /// Listens on 127.0.0.1 (a free port); returns its API URL, `http://…/hub/api`.
    pub async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reports = Arc::clone(&self.reports);
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let reports = Arc::clone(&reports);
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 4096];
                    let head_end = loop {
                        if let Some(i) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&req[..head_end]).to_string();
                    let header = |name: &str| {
                        head.lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                            })
                            .unwrap_or_default()
                    };
                    let len: usize = header("content-length").parse().unwrap_or(0);
                    while req.len() < head_end + len {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                    let body = if path.ends_with("/batchspawner") {
                        let value = serde_json::from_slice(&req[head_end..]).unwrap_or(Value::Null);
                        reports
                            .lock()
                            .unwrap()
                            .push((header("authorization"), value));
                        r#"{"message": "BatchSpawner data configured"}"#
                    } else {
                        r#"{"version": "6.1.1"}"#
                    };
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                         X-JupyterHub-Version: 6.1.1\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                });
            }
        });
        format!("http://{addr}/hub/api")
    }

    /// The first report's Authorization header and port, waiting up to `timeout`.
    pub async fn wait_port(&self, timeout: Duration) -> (String, u16) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((auth, body)) = self.reports.lock().unwrap().first() {
                return (auth.clone(), body["port"].as_u64().unwrap() as u16);
            }
            assert!(
                Instant::now() < deadline,
                "no port report within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
