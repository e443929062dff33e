//! In-process fixtures: the proxy on port 0, hyper upstreams, a small HTTP client.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use nbhub_proxy::{Listeners, ProxyConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const TOKEN: &str = "test-secret";

/// The binary's flags for public and API ports on the loopback, picked by the kernel.
pub const LOCAL_PORTS: [&str; 8] = [
    "--ip",
    "127.0.0.1",
    "--port",
    "0",
    "--api-ip",
    "127.0.0.1",
    "--api-port",
    "0",
];

pub struct Proxy {
    pub public: SocketAddr,
    pub api: SocketAddr,
    pub metrics: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub client: Client<HttpConnector, Full<Bytes>>,
}

pub fn config() -> ProxyConfig {
    ProxyConfig {
        auth_token: Some(TOKEN.into()),
        ..ProxyConfig::default()
    }
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A proxy with the test config and one route, `/` to `http://{target}`.
pub async fn proxy_to(target: SocketAddr) -> Proxy {
    let p = start_proxy(config()).await;
    p.route_to("/", target).await;
    p
}

pub async fn start_proxy(cfg: ProxyConfig) -> Proxy {
    let public = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let api = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let metrics = if cfg.metrics_port.is_some() {
        Some(TcpListener::bind("127.0.0.1:0").await.expect("bind"))
    } else {
        None
    };
    let listeners = Listeners {
        public,
        api,
        metrics,
        redirect: None,
    };
    let public = listeners.public_addr().expect("addr");
    let api = listeners.api_addr().expect("addr");
    let metrics = listeners
        .metrics
        .as_ref()
        .map(|m| m.local_addr().expect("addr"));
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(nbhub_proxy::run(cfg, listeners, async move {
        let _ = rx.await;
    }));
    Proxy {
        public,
        api,
        metrics,
        stop: Some(tx),
        task: Some(task),
        client: client(),
    }
}

impl Proxy {
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("join").expect("run");
        }
    }

    /// One API call with the right token; returns status and body text.
    pub async fn api(&self, method: &str, path: &str, body: Option<&str>) -> (StatusCode, String) {
        self.api_with(method, path, body, Some(&format!("token {TOKEN}")))
            .await
    }

    pub async fn api_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        auth: Option<&str>,
    ) -> (StatusCode, String) {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.api, path));
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        let req = b
            .body(Full::new(Bytes::from(body.unwrap_or("").to_string())))
            .expect("request");
        let res = self.client.request(req).await.expect("api request");
        let status = res.status();
        let body = res.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Route `path` to the plain-HTTP target at `addr`.
    pub async fn route_to(&self, path: &str, addr: SocketAddr) {
        self.add_route(path, &format!("http://{addr}")).await;
    }

    pub async fn add_route(&self, path: &str, target: &str) {
        let (s, b) = self
            .api(
                "POST",
                &format!("/api/routes{path}"),
                Some(&format!(r#"{{"target": "{target}"}}"#)),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }

    /// GET through the public port.
    pub async fn get(&self, path: &str) -> (StatusCode, http::HeaderMap, String) {
        self.request(
            Request::get(format!("http://{}{}", self.public, path))
                .body(Full::default())
                .expect("req"),
        )
        .await
    }

    pub async fn request(
        &self,
        req: Request<Full<Bytes>>,
    ) -> (StatusCode, http::HeaderMap, String) {
        let res = self.client.request(req).await.expect("proxy request");
        let (parts, body) = res.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A hyper server on port 0 answering with `f`. Returns its address; it stops with the runtime.
pub async fn upstream<F, Fut>(f: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>>
        + Send
        + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let f = Arc::new(f);
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let f = f.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let f = f.clone();
                    async move { Ok::<_, Infallible>(f(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

pub fn boxed(b: impl Into<Bytes>) -> http_body_util::combinators::BoxBody<Bytes, Infallible> {
    Full::new(b.into()).boxed()
}

/// An upstream that answers every request with a JSON echo of it, tagged with `name`.
pub async fn echo_upstream(name: &'static str) -> SocketAddr {
    upstream(move |req: Request<Incoming>| async move {
        let headers: serde_json::Map<String, serde_json::Value> = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned().into(),
                )
            })
            .collect();
        let v = serde_json::json!({
            "name": name,
            "method": req.method().as_str(),
            "url": req.uri().to_string(),
            "headers": headers,
        });
        Response::new(boxed(v.to_string()))
    })
    .await
}

/// A websocket server on port 0 echoing every message back.
pub async fn ws_echo_server() -> SocketAddr {
    use futures_util::{SinkExt, StreamExt};
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_close() || ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A port nothing listens on (bound then released).
pub async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr").port()
}

pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Resident set size of this process in KiB.
pub fn rss_kib() -> u64 {
    rss_kib_of("self").expect("VmRSS")
}

/// Resident set size of a process (`"self"` or a pid) in KiB; `None` once it is gone.
pub fn rss_kib_of(pid: impl std::fmt::Display) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A self-signed certificate for `localhost`, written into `dir` as the proxy's TLS files.
pub fn self_signed_tls(
    dir: &std::path::Path,
) -> (nbhub_proxy::config::TlsFiles, rcgen::CertifiedKey) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).expect("w");
    std::fs::write(&key, ck.key_pair.serialize_pem()).expect("w");
    let files = nbhub_proxy::config::TlsFiles {
        key,
        cert,
        ..Default::default()
    };
    (files, ck)
}

/// The test config serving TLS with a fresh self-signed certificate written into `dir`, and
/// that certificate (for [`tls_connect`]).
pub fn tls_config(dir: &std::path::Path) -> (ProxyConfig, rcgen::CertifiedKey) {
    let (files, ck) = self_signed_tls(dir);
    let mut cfg = config();
    cfg.tls = Some(files);
    (cfg, ck)
}

/// A TLS connection to `addr` as `localhost`, trusting `ck`'s certificate, offering `alpn`.
pub async fn tls_connect(
    addr: SocketAddr,
    ck: &rcgen::CertifiedKey,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).expect("root");
    let mut cc = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("v")
    .with_root_certificates(roots)
    .with_no_client_auth();
    cc.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tokio_rustls::TlsConnector::from(Arc::new(cc))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").expect("n"),
            tcp,
        )
        .await
        .expect("tls")
}

pub async fn with_deadline<T>(d: Duration, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(d, f).await.expect("deadline passed")
}
