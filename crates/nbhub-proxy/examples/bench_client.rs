//! Benchmark client for bench/proxy.
//!
//! `bench_client ws URL CONNS SECS`: websocket echo round trips per second over CONNS sockets.
//! `bench_client routes API_URL N TARGET [TOKEN [FIRST]]`: time to add N routes (`/user/u<i>`,
//! i from FIRST, default 0) through the REST API (10 requests in flight, as JupyterHub's client).
//! `bench_client unroutes API_URL N TOKEN FIRST`: delete them again, the same way.
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
        Some("unroutes") => {
            let token = Some(args[4].clone());
            routes(&args[2], args[5].parse()?, args[3].parse()?, None, token).await
        }
        _ => anyhow::bail!(
            "usage: bench_client ws URL CONNS SECS | routes API_URL N TARGET [TOKEN [FIRST]] \
             | unroutes API_URL N TOKEN FIRST"
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
