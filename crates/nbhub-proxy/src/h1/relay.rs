//! One exchange on the lean path: the request's head and body sent to the target, its
//! answer's head and body relayed back, the target connection returned to the pool when
//! both ends agree it can carry another.
//!
//! A pooled connection the target closed while it sat idle is found out on the write or the
//! first read, and the request goes once more on a fresh connection while it is whole in
//! hand; a target that answers before it has the whole request is heard out. How a target
//! failed is an [`UpstreamError`], which decides the retry and the status.

use std::io::{self, IoSlice};
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::chunked::ChunkedTracker;
use super::conn::{answer, request_timeout, uri_of};
use super::head::{response_head, ResponseHead};
use super::{Framing, CLIENT_BUF, MAX_HEAD, MAX_HEADERS};
use crate::forward::{self, Forwarder};
use crate::routes::Route;
use crate::upstream::{Side, UpstreamError};

/// One request forwarded to its target and the answer relayed back.
pub(super) struct Exchange<'a> {
    pub(super) fw: &'a Forwarder,
    pub(super) route: Arc<Route>,
    pub(super) body: Framing,
    pub(super) close: bool,
    pub(super) head_request: bool,
}

/// Why an exchange stopped early.
enum Failed {
    /// The client went away or broke the protocol: drop everything.
    Client,
    /// The client did not send the request body in time (and nothing was answered yet).
    Timeout,
    /// The target failed before its answer began: answer with the error's status (closing
    /// if the request body was not read to its end).
    Target {
        error: UpstreamError,
        body_pending: bool,
    },
}

impl Failed {
    fn target(error: UpstreamError, body_pending: bool) -> Self {
        Failed::Target {
            error,
            body_pending,
        }
    }
}

impl Exchange<'_> {
    /// Forward the request whose head is in `head` (its body starts in `buf`) and relay the
    /// answer; true if the client connection can take another request.
    pub(super) async fn run(
        self,
        client: &mut TcpStream,
        buf: &mut BytesMut,
        head: &mut Vec<u8>,
        orig: &str,
    ) -> bool {
        match self.exchange(client, buf, head).await {
            Ok(keep) => keep,
            Err(Failed::Client) => false,
            Err(Failed::Timeout) => {
                request_timeout(self.fw, client).await;
                false
            }
            Err(Failed::Target {
                error,
                body_pending,
            }) => {
                let status = error.status();
                tracing::warn!(target = %self.route.target.authority, url = %orig, side = ?error.side(), reused = error.reused(), "{} {}: {error}", status.as_u16(), self.route.key);
                let res = forward::error_for(self.fw, status, &uri_of(orig)).await;
                let close = self.close || body_pending || self.fw.draining();
                answer(client, res, close, self.head_request).await.is_ok() && !close
            }
        }
    }

    async fn exchange(
        &self,
        client: &mut TcpStream,
        buf: &mut BytesMut,
        head: &mut Vec<u8>,
    ) -> Result<bool, Failed> {
        let fw = self.fw;
        let authority = &self.route.target.authority;
        // The first piece of the body goes out with the head.
        let mut chunks = ChunkedTracker::default();
        let (first, mut left) = match self.body {
            Framing::Length(n) => {
                let k = (buf.len() as u64).min(n);
                (k as usize, Framing::Length(n - k))
            }
            Framing::Chunked => match chunks.feed(buf) {
                Ok(Some(k)) => (k, Framing::None),
                Ok(None) => (buf.len(), Framing::Chunked),
                Err(()) => return Err(Failed::Client),
            },
            _ => (0, Framing::None),
        };
        let left_is_done = |l: Framing| matches!(l, Framing::None | Framing::Length(0));
        // The request can be sent again: it has no body, or all of it is in `buf`.
        let whole_request_here = left_is_done(left);
        // A pooled connection the target closed meanwhile fails on the write or on the first
        // read of the answer, with nothing of an answer: then the request goes once more, on a
        // fresh connection, if it is still whole in hand (as browsers resend on a reused
        // connection). A target that answered before the write failed is heard out instead.
        let sent = async {
            let timeout = fw.config.proxy_timeout;
            let hub = fw.hub_holder(&self.route);
            let mut up = fw
                .pool
                .checkout_plain(authority, timeout, hub)
                .await
                .map_err(|e| Failed::target(e, !whole_request_here))?;
            loop {
                let failed = if let Err(e) = write_two(&mut up.io, head, &buf[..first]).await {
                    if up.answer_waiting().await {
                        return Ok((up, !whole_request_here));
                    }
                    UpstreamError::caused(Side::Send, up.reused, e)
                } else if !whole_request_here {
                    return Ok((up, false));
                } else {
                    match up.fill(timeout).await {
                        Ok(n) if n > 0 => return Ok((up, false)),
                        Ok(_) => UpstreamError::new(Side::Receive, up.reused, "connection closed"),
                        Err(e) => UpstreamError::caused(Side::Receive, up.reused, e),
                    }
                };
                if !failed.retry(whole_request_here) {
                    return Err(Failed::target(failed, !whole_request_here));
                }
                tracing::debug!("pooled connection to {authority} closed ({failed}), retrying");
                crate::hubwait::pause_before_retry(hub).await;
                up =
                    crate::hubwait::connect(hub, || crate::pool::connect_plain(authority, timeout))
                        .await
                        .map_err(|e| Failed::target(e, !whole_request_here))?;
            }
        }
        .await;
        // Whatever happened, the body bytes taken so far are this request's, not the next one's.
        buf.advance(first);
        // `cut_short`: the target answered before it had the whole request, so the rest of
        // the client's body is never read and the client's connection closes after the answer.
        let (mut up, mut cut_short) = sent?;

        // The rest of the request body, as the client sends it, unless the target answers
        // before it has all of it (a 413, say): then that answer goes back and the client's
        // connection closes after it, as the rest of its body is never read.
        // Each wait for the client is bounded by the idle timeout, and the whole body by its
        // deadline (from the first wait on, moved on by each byte received): one timer per read.
        let idle = fw.config.client_idle_timeout();
        let body_limit = fw.config.body_limit;
        let (mut start, mut received) = (None, first as u64);
        'body: while !cut_short && !left_is_done(left) {
            if buf.is_empty() {
                buf.reserve(CLIENT_BUF);
                let now = Instant::now();
                let mut limit = now + idle;
                if let Some(d) = body_limit.deadline(*start.get_or_insert(now), received) {
                    limit = limit.min(d);
                }
                let read = tokio::select! {
                    r = tokio::time::timeout_at(limit, client.read_buf(buf)) => r,
                    r = up.io.readable() => {
                        if r.is_ok() && up.answer_started().map_err(|e| Failed::target(UpstreamError::caused(Side::Receive, up.reused, e), true))? {
                            cut_short = true;
                            break 'body;
                        }
                        continue 'body;
                    }
                };
                match read {
                    Ok(Ok(n)) if n > 0 => received += n as u64,
                    Err(_) => return Err(Failed::Timeout),
                    _ => return Err(Failed::Client),
                }
            }
            let k = match left {
                Framing::Length(n) => {
                    let k = (buf.len() as u64).min(n);
                    left = Framing::Length(n - k);
                    k as usize
                }
                _ => match chunks.feed(buf) {
                    Ok(Some(k)) => {
                        left = Framing::None;
                        k
                    }
                    Ok(None) => buf.len(),
                    Err(()) => return Err(Failed::Client),
                },
            };
            let mut piece = &buf[..k];
            while !piece.is_empty() {
                let written = tokio::select! {
                    r = up.io.writable() => match r.and_then(|()| up.io.try_write(piece)) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        r => r,
                    },
                    r = up.io.readable() => {
                        if r.is_ok() && up.answer_started().map_err(|e| Failed::target(UpstreamError::caused(Side::Receive, up.reused, e), true))? {
                            cut_short = true;
                            break 'body;
                        }
                        continue;
                    }
                };
                let e = match written {
                    Ok(n) if n > 0 => {
                        piece = &piece[n..];
                        continue;
                    }
                    Ok(_) => UpstreamError::new(Side::Send, up.reused, "connection closed"),
                    Err(e) => UpstreamError::caused(Side::Send, up.reused, e),
                };
                // A target that answers and closes without reading the body resets the
                // connection: its answer may well be waiting for us all the same.
                if up.answer_waiting().await {
                    cut_short = true;
                    break 'body;
                }
                return Err(Failed::target(e, true));
            }
            buf.advance(k);
            self.route.touch();
        }

        // Draining after a handover, the answer closes the connection: decided once, so that
        // the head says what the connection then does.
        let close_after = self.close || fw.draining();
        // The answer's head (informational 1xx answers are dropped, as hyper's client does).
        let answer = loop {
            if !up.buf.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut res = httparse::Response::new(&mut headers);
                match res.parse(&up.buf) {
                    Ok(httparse::Status::Complete(n)) => {
                        let code = res.code.unwrap_or(0);
                        if (100..200).contains(&code) && code != 101 {
                            up.buf.advance(n);
                            continue;
                        }
                        let close = close_after || cut_short;
                        break response_head(&res, n, self.head_request, close, head);
                    }
                    Ok(httparse::Status::Partial) if up.buf.len() < MAX_HEAD => {}
                    Ok(_) => {
                        let e =
                            UpstreamError::new(Side::Answer, up.reused, "answer head too large");
                        return Err(Failed::target(e, cut_short));
                    }
                    Err(e) => {
                        let e =
                            UpstreamError::new(Side::Answer, up.reused, format!("bad answer: {e}"));
                        return Err(Failed::target(e, cut_short));
                    }
                }
            }
            let e = match up.fill(fw.config.proxy_timeout).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => UpstreamError::new(Side::Receive, up.reused, "connection closed"),
                Err(e) => UpstreamError::caused(Side::Receive, up.reused, e),
            };
            return Err(Failed::target(e, cut_short));
        };
        let Some(ResponseHead {
            head_len,
            status,
            body,
            reusable,
        }) = answer
        else {
            let e = UpstreamError::new(
                Side::Answer,
                up.reused,
                "unexpected 101 Switching Protocols",
            );
            return Err(Failed::target(e, cut_short));
        };
        if status < 300 {
            self.route.touch();
        }
        let close = close_after || cut_short || body == Framing::UntilClose;
        up.buf.advance(head_len);

        // The answer's body: the first piece with the head, then as the target sends it.
        let mut chunks = ChunkedTracker::default();
        let mut left = body;
        let mut extra = false;
        let mut piece = |up_buf: &BytesMut, left: &mut Framing| -> Result<usize, Failed> {
            Ok(match *left {
                Framing::Length(n) => {
                    let k = (up_buf.len() as u64).min(n);
                    extra |= (up_buf.len() as u64) > n;
                    *left = Framing::Length(n - k);
                    k as usize
                }
                Framing::Chunked => match chunks.feed(up_buf) {
                    Ok(Some(k)) => {
                        extra |= k < up_buf.len();
                        *left = Framing::None;
                        k
                    }
                    Ok(None) => up_buf.len(),
                    Err(()) => return Err(Failed::Client),
                },
                Framing::UntilClose => up_buf.len(),
                Framing::None => {
                    extra |= !up_buf.is_empty();
                    0
                }
            })
        };
        let k = piece(&up.buf, &mut left)?;
        if write_two(client, head, &up.buf[..k]).await.is_err() {
            return Err(Failed::Client);
        }
        up.buf.clear();
        while !left_is_done(left) {
            let n = up.fill(None).await.map_err(|_| Failed::Client)?;
            if n == 0 {
                if left == Framing::UntilClose {
                    break;
                }
                // The target closed mid-answer: the client sees a short answer and a close.
                return Err(Failed::Client);
            }
            let k = piece(&up.buf, &mut left)?;
            if client.write_all(&up.buf[..k]).await.is_err() {
                return Err(Failed::Client);
            }
            up.buf.clear();
            self.route.touch();
        }
        if reusable && !extra && !cut_short && !up.write_failed && left != Framing::UntilClose {
            fw.pool.checkin_plain(authority, up);
        }
        Ok(!close)
    }
}

/// Write `a` then `b` with as few `writev` calls as the socket allows.
async fn write_two(io: &mut TcpStream, mut a: &[u8], mut b: &[u8]) -> io::Result<()> {
    while !a.is_empty() || !b.is_empty() {
        let n = if b.is_empty() {
            io.write(a).await?
        } else if a.is_empty() {
            io.write(b).await?
        } else {
            io.write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
                .await?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        if n >= a.len() {
            b = &b[n - a.len()..];
            a = &[];
        } else {
            a = &a[n..];
        }
    }
    Ok(())
}
