//! A client connection on the lean path: the loop that reads a request head, acts on its
//! plan (`head::Plan`) and reads the next; the answers we give ourselves (health
//! check, no route, a target's failure, 408); and [`Prefixed`], the connection handed to the
//! general path with the bytes already read.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use http::{StatusCode, Uri};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::head::{plan, push_header, Plan};
use super::relay::Exchange;
use super::{CLIENT_BUF, MAX_HEAD, MAX_HEADERS};
use crate::forward::{self, ConnInfo, Forwarder, ProxyBody};

/// How a connection left the lean path.
pub enum Outcome {
    /// It ended: closed by either side, timed out, shut down, or failed.
    Done,
    /// The general path takes over, starting with the bytes already read.
    Fallback(TcpStream, BytesMut),
}

/// Serve a plain-TCP client connection until it ends or needs the general path.
pub async fn serve(
    fw: &Forwarder,
    info: &ConnInfo,
    mut client: TcpStream,
    stop: &mut watch::Receiver<crate::Phase>,
) -> Outcome {
    let idle = fw.config.client_idle_timeout();
    let headers_timeout = fw.config.headers_timeout;
    let mut buf = BytesMut::with_capacity(CLIENT_BUF);
    // The head we send on: the target's request head, then the client's response head.
    let mut head = Vec::with_capacity(1024);
    // The request target as the client sent it, for the error target's `?url=`.
    let mut orig = String::with_capacity(256);
    loop {
        // The head's deadline, from when its first bytes were found incomplete: a head that
        // arrives in one read (nearly all) never reads the clock for it.
        let mut head_deadline = None;
        let plan = loop {
            if !buf.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut req = httparse::Request::new(&mut headers);
                match req.parse(&buf) {
                    Ok(httparse::Status::Complete(n)) => {
                        break plan(fw, info, &req, n, &mut head, &mut orig)
                    }
                    Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
                    _ => return Outcome::Fallback(client, buf),
                }
            }
            // Stopping, an idle connection closes; draining after a handover, it stays until
            // its next request (answered with `Connection: close`) or its idle timeout, as it
            // would without an upgrade: closing it now could cross a request on the wire.
            if *stop.borrow() == crate::Phase::Stop {
                return Outcome::Done;
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(CLIENT_BUF);
            }
            // One timer per read, as before: the idle timeout, or the head's deadline if sooner.
            let now = Instant::now();
            let mut limit = now + idle;
            if let (false, Some(t)) = (buf.is_empty(), headers_timeout) {
                limit = limit.min(*head_deadline.get_or_insert(now + t));
            }
            let read = tokio::select! {
                biased;
                r = tokio::time::timeout_at(limit, client.read_buf(&mut buf)) => r,
                _ = stop.wait_for(|p| *p == crate::Phase::Stop) => return Outcome::Done,
            };
            match read {
                Ok(Ok(n)) if n > 0 => {}
                // Part of a request came, and not the rest in time.
                Err(_) if !buf.is_empty() => {
                    request_timeout(fw, &mut client).await;
                    return Outcome::Done;
                }
                _ => return Outcome::Done,
            }
        };
        let keep_going = match plan {
            Plan::Fallback => return Outcome::Fallback(client, buf),
            Plan::Answer {
                head_len,
                status,
                close,
                head_request,
            } => {
                fw.metrics.requests.fetch_add(1, Ordering::Relaxed);
                buf.advance(head_len);
                let close = close || fw.draining();
                let res = if status == StatusCode::OK {
                    forward::healthz()
                } else {
                    forward::error_for(fw, status, &uri_of(&orig)).await
                };
                answer(&mut client, res, close, head_request).await.is_ok() && !close
            }
            Plan::Forward {
                route,
                head_len,
                body,
                close,
                head_request,
            } => {
                fw.metrics.requests.fetch_add(1, Ordering::Relaxed);
                buf.advance(head_len);
                let exchange = Exchange {
                    fw,
                    route,
                    body,
                    close,
                    head_request,
                };
                exchange.run(&mut client, &mut buf, &mut head, &orig).await
            }
        };
        if !keep_going {
            // What the client sent that we did not read must not turn our close into a reset.
            crate::linger::close(&mut client).await;
            return Outcome::Done;
        }
    }
}

/// The answer to a request that did not arrive in time, as Node gives it (no error page: the
/// client is not waiting for one); the connection is closed after it.
const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// Answer 408 and close (without a reset, so that the answer arrives).
pub(super) async fn request_timeout(fw: &Forwarder, client: &mut TcpStream) {
    fw.metrics.error(StatusCode::REQUEST_TIMEOUT.as_u16());
    if client.write_all(REQUEST_TIMEOUT).await.is_ok() {
        crate::linger::close(client).await;
    }
}

pub(super) fn uri_of(target: &str) -> Uri {
    target.parse().unwrap_or_else(|_| Uri::from_static("/"))
}

/// Write our own answer (health check, error page) with a length, the body collected first
/// (these are small: a message, an `--error-path` page or the error target's page).
pub(super) async fn answer(
    client: &mut TcpStream,
    res: http::Response<ProxyBody>,
    close: bool,
    head_request: bool,
) -> io::Result<()> {
    let (parts, body) = res.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (k, v) in &parts.headers {
        if !matches!(
            k.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            push_header(&mut out, k.as_str().as_bytes(), v.as_bytes());
        }
    }
    push_header(
        &mut out,
        b"content-length",
        body.len().to_string().as_bytes(),
    );
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_request {
        out.extend_from_slice(&body);
    }
    client.write_all(&out).await
}

/// A connection handed to the general path: the bytes read so far come first.
pub struct Prefixed {
    prefix: BytesMut,
    io: TcpStream,
}

impl Prefixed {
    pub fn new(io: TcpStream, prefix: BytesMut) -> Self {
        Prefixed { prefix, io }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
