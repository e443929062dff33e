//! Benchmark upstream for bench/proxy: `/…64k…` answers 64 KiB, anything else 1 KiB;
//! websocket upgrades are echoed. Usage: `bench_upstream PORT`.
use std::convert::Infallible;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

async fn handle(
    mut req: Request<Incoming>,
    small: Bytes,
    big: Bytes,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Some(key) = req.headers().get("sec-websocket-key") {
        let accept = derive_accept_key(key.as_bytes());
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(up) = on.await else { return };
            let mut ws =
                WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, None).await;
            while let Some(Ok(m)) = ws.next().await {
                if m.is_close() || ws.send(m).await.is_err() {
                    break;
                }
            }
        });
        return Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", accept)
            .body(Full::default())
            .unwrap_or_default());
    }
    let body = if req.uri().path().contains("64k") {
        big
    } else {
        small
    };
    Ok(Response::builder()
        .header("content-type", "application/octet-stream")
        .body(Full::new(body))
        .unwrap_or_default())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "0".into())
        .parse()?;
    let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("bench_upstream listening on http://{}", l.local_addr()?);
    let small = Bytes::from(vec![b'x'; 1024]);
    let big = Bytes::from(vec![b'y'; 64 * 1024]);
    loop {
        let (s, _) = l.accept().await?;
        let _ = s.set_nodelay(true);
        let (small, big) = (small.clone(), big.clone());
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req| handle(req, small.clone(), big.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .with_upgrades()
                .await;
        });
    }
}
