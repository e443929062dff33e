//! Benchmark client for bench/proxy.
//!
//! `bench_client ws URL CONNS SECS`: websocket echo round trips per second over CONNS sockets.
//! `bench_client routes API_URL N TARGET [TOKEN [FIRST]]`: time to add N routes (`/user/u<i>`,
//! i from FIRST, default 0) through the REST API (10 requests in flight, as JupyterHub's client).
//! `bench_client unroutes API_URL N TOKEN FIRST`: delete them again, the same way.
//! `bench_client churn HOST:PORT PATH SECS WEBSOCKETS`: for bench/proxy-upgrade, what clients
//! see while the proxy restarts: new connections (one request each, every 4 ms from each of
//! 2 tasks), keep-alive requests (2 tasks, the client's idle timeout 2 s) and WEBSOCKETS
//! websockets echoing every 50 ms, all to PATH; prints the counts of each and of failures
//! (refused connections, errors, non-200 answers, websockets closed by the other side).
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("ws") => ws(&args[2], args[3].parse()?, args[4].parse()?).await,
        Some("routes") => {
            let first = args.get(6).map_or(Ok(0), |s| s.parse())?;
            let target = Some(args[4].as_str());
            routes(
                &args[2],
                first,
                args[3].parse()?,
                target,
                args.get(5).cloned(),
            )
            .await
        }
        Some("churn") => churn(&args[2], &args[3], args[4].parse()?, args[5].parse()?).await,
        Some("unroutes") => {
            let token = Some(args[4].clone());
            routes(&args[2], args[5].parse()?, args[3].parse()?, None, token).await
        }
        _ => anyhow::bail!(
            "usage: bench_client ws URL CONNS SECS | routes API_URL N TARGET [TOKEN [FIRST]] \
             | unroutes API_URL N TOKEN FIRST | churn HOST:PORT PATH SECS WEBSOCKETS"
        ),
    }
}

async fn ws(url: &str, conns: usize, secs: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
            let msg = "x".repeat(64);
            let mut n = 0u64;
            while Instant::now() < deadline {
                ws.send(Message::text(msg.clone())).await?;
                match ws.next().await {
                    Some(Ok(_)) => n += 1,
                    _ => anyhow::bail!("websocket closed"),
                }
            }
            let _ = ws.close(None).await;
            Ok::<_, anyhow::Error>(n)
        }));
    }
    let start = Instant::now();
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    println!("{:.0}", total as f64 / start.elapsed().as_secs_f64());
    Ok(())
}

/// Add (with a target) or delete (without) the routes `/user/u<first>`… `/user/u<first+n-1>`.
async fn routes(
    api: &str,
    first: usize,
    n: usize,
    target: Option<&str>,
    token: Option<String>,
) -> anyhow::Result<()> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let start = Instant::now();
    let results = futures_util::stream::iter(first..first + n)
        .map(|i| {
            let client = client.clone();
            let token = token.clone();
            async move {
                let uri = format!("{api}/api/routes/user/u{i}");
                let (mut req, body, want) = match target {
                    Some(target) => (
                        http::Request::post(uri),
                        format!(
                            r#"{{"user": "u{i}", "server_name": "", "target": "{target}", "jupyterhub": true}}"#
                        ),
                        201,
                    ),
                    None => (http::Request::delete(uri), String::new(), 204),
                };
                if let Some(t) = token {
                    req = req.header("authorization", format!("token {t}"));
                }
                let res = client.request(req.body(Full::new(Bytes::from(body)))?).await?;
                let status = res.status();
                res.into_body().collect().await?;
                anyhow::ensure!(status == want, "status {status}");
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(10)
        .collect::<Vec<_>>()
        .await;
    for r in results {
        r?;
    }
    println!("{:.3}", start.elapsed().as_secs_f64());
    Ok(())
}

#[derive(Default)]
struct Churn {
    fresh: std::sync::atomic::AtomicU64,
    refused: std::sync::atomic::AtomicU64,
    fresh_failed: std::sync::atomic::AtomicU64,
    kept: std::sync::atomic::AtomicU64,
    kept_failed: std::sync::atomic::AtomicU64,
    echoes: std::sync::atomic::AtomicU64,
    ws_lost: std::sync::atomic::AtomicU64,
}

async fn churn(addr: &str, path: &str, secs: u64, websockets: usize) -> anyhow::Result<()> {
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = Arc::new(Churn::default());
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (c, addr, path) = (c.clone(), addr.to_string(), path.to_string());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(4));
            while Instant::now() < deadline {
                tick.tick().await;
                c.fresh.fetch_add(1, Relaxed);
                let mut s = match tokio::net::TcpStream::connect(&addr).await {
                    Ok(s) => s,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        c.refused.fetch_add(1, Relaxed);
                        continue;
                    }
                    Err(_) => {
                        c.fresh_failed.fetch_add(1, Relaxed);
                        continue;
                    }
                };
                let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut out = Vec::new();
                let ok = s.write_all(req.as_bytes()).await.is_ok()
                    && s.read_to_end(&mut out).await.is_ok()
                    && out.starts_with(b"HTTP/1.1 200 ");
                if !ok {
                    c.fresh_failed.fetch_add(1, Relaxed);
                }
            }
        }));
    }
    for _ in 0..2 {
        let (c, url) = (c.clone(), format!("http://{addr}{path}"));
        tasks.push(tokio::spawn(async move {
            let client = Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(2))
                .build_http::<Full<Bytes>>();
            let mut tick = tokio::time::interval(Duration::from_millis(4));
            while Instant::now() < deadline {
                tick.tick().await;
                c.kept.fetch_add(1, Relaxed);
                let req = http::Request::get(&url)
                    .body(Full::default())
                    .expect("request");
                let ok = match client.request(req).await {
                    Ok(r) => r.status() == 200 && r.into_body().collect().await.is_ok(),
                    Err(_) => false,
                };
                if !ok {
                    c.kept_failed.fetch_add(1, Relaxed);
                }
            }
        }));
    }
    for _ in 0..websockets {
        let (c, url) = (c.clone(), format!("ws://{addr}{path}"));
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while Instant::now() < deadline {
                tick.tick().await;
                let echoed = ws.send(Message::text("ping")).await.is_ok()
                    && matches!(ws.next().await, Some(Ok(Message::Text(_))));
                if !echoed {
                    c.ws_lost.fetch_add(1, Relaxed);
                    return;
                }
                c.echoes.fetch_add(1, Relaxed);
            }
            let _ = ws.close(None).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    println!(
        "fresh={} refused={} fresh_failed={} kept={} kept_failed={} websockets={websockets} \
         ws_lost={} echoes={}",
        c.fresh.load(Relaxed),
        c.refused.load(Relaxed),
        c.fresh_failed.load(Relaxed),
        c.kept.load(Relaxed),
        c.kept_failed.load(Relaxed),
        c.ws_lost.load(Relaxed),
        c.echoes.load(Relaxed),
    );
    Ok(())
}
