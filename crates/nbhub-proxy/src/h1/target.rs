//! A plain-TCP connection to a plain-HTTP target, as the lean path uses it: opened, read
//! into a buffer that grows with large answers, checked for a close while it sat idle, and
//! heard out when the target answered before it read the whole request.
//!
//! The idle ones are kept in the worker's [`crate::pool::Pool`].

use std::io;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use http::uri::Authority;
use tokio::io::{AsyncReadExt, ReadBuf};
use tokio::net::TcpStream;

/// A target connection's read buffer starts at this size and doubles, up to
/// [`MAX_UPSTREAM_READ`], while reads fill it: large answers then need one `recv` per piece the
/// kernel holds rather than one per 16 KiB.
const UPSTREAM_READ: usize = 16 * 1024;
const MAX_UPSTREAM_READ: usize = 256 * 1024;

/// A plain-TCP connection to a target.
pub struct TargetConn {
    pub(super) io: TcpStream,
    /// What the target sent that has not been relayed yet.
    pub(super) buf: BytesMut,
    read_size: usize,
    /// It has served a request before (it came from the pool).
    pub(crate) reused: bool,
    /// A write failed: the connection is done once its answer is read.
    pub(super) write_failed: bool,
}

impl TargetConn {
    /// Open a connection to `to` (within `limit`, if given).
    pub(crate) async fn connect(to: &Authority, limit: Option<Duration>) -> io::Result<Self> {
        let host = to.host().trim_start_matches('[').trim_end_matches(']');
        let port = to.port_u16().unwrap_or(80);
        let connecting = TcpStream::connect((host, port));
        let io = match limit {
            None => connecting.await?,
            Some(t) => tokio::time::timeout(t, connecting).await.map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no connection within {t:?}"),
                )
            })??,
        };
        let _ = io.set_nodelay(true);
        Ok(TargetConn {
            io,
            buf: BytesMut::new(),
            read_size: UPSTREAM_READ,
            reused: false,
            write_failed: false,
        })
    }

    /// Read what the target has sent into `buf` (within `limit`, if given); 0 at its close.
    pub(super) async fn fill(&mut self, limit: Option<Duration>) -> io::Result<usize> {
        self.buf.reserve(self.read_size);
        let spare = self.buf.capacity() - self.buf.len();
        let n = match limit {
            None => self.io.read_buf(&mut self.buf).await?,
            Some(t) => tokio::time::timeout(t, self.io.read_buf(&mut self.buf))
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {t:?}"))
                })??,
        };
        if n == spare && self.read_size < MAX_UPSTREAM_READ {
            self.read_size *= 2;
        }
        Ok(n)
    }

    /// After the runtime saw the connection readable while a request body is still going
    /// out: whether the target has begun its answer (a stale readiness reads nothing).
    pub(super) fn answer_started(&mut self) -> io::Result<bool> {
        self.buf.reserve(self.read_size);
        match self.io.try_read_buf(&mut self.buf) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed during the request body",
            )),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// After a write to the target failed (it reset the connection): read what it sent before
    /// that, all of which is in the socket by now; whether anything of an answer is there.
    pub(super) async fn answer_waiting(&mut self) -> bool {
        self.write_failed = true;
        // A reset socket is readable at once, but the runtime may not have seen it yet (and
        // `try_read` reads only what it saw).
        let _ = tokio::time::timeout(Duration::from_secs(1), self.io.readable()).await;
        loop {
            self.buf.reserve(self.read_size);
            match self.io.try_read_buf(&mut self.buf) {
                Ok(n) if n > 0 => {}
                _ => return !self.buf.is_empty(),
            }
        }
    }

    /// Whether a connection that sat idle still looks open: no end of stream or stray bytes
    /// waiting. Costs a `recv(MSG_PEEK)` only if the runtime saw it become readable.
    pub(crate) fn still_open(&self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut byte = [0u8; 1];
        let mut rb = ReadBuf::new(&mut byte);
        matches!(self.io.poll_peek(&mut cx, &mut rb), Poll::Pending)
    }
}
