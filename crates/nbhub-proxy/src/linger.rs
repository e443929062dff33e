//! Closing a connection without resetting it.
//!
//! A server that closes a TCP connection while bytes it never read are waiting makes the
//! kernel answer with a reset, and a reset can destroy the answer still on its way to the
//! client (or make the client's next write fail before it reads that answer). That happens
//! whenever an answer goes out before the request body was read: a refusal of an upload, a
//! 405 to a request with a body, a 503 from the proxy. So a connection is closed the way
//! servers have long done it (Apache's and nginx's "lingering close"): send the FIN, then read
//! and discard what the client still sends until it closes its side, within bounds
//! ([`MAX_BYTES`], [`MAX_TIME`], [`MAX_SILENCE`]), and only then close the socket.
//!
//! [`Lingering`] wraps a connection's IO so that its `shutdown` does this; everything else
//! passes straight through. The hub serves its connections through it as well.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Discarded at most: a client sending more than this after our answer gets its reset.
pub const MAX_BYTES: usize = 16 << 20;
/// The longest a closing connection is kept for.
pub const MAX_TIME: Duration = Duration::from_secs(10);
/// A client silent for this long has sent everything it meant to.
pub const MAX_SILENCE: Duration = Duration::from_millis(500);

/// IO whose `shutdown` is a lingering close (see the module documentation).
pub struct Lingering<I> {
    io: I,
    closing: Option<Closing>,
}

struct Closing {
    fin_sent: bool,
    left: usize,
    until: Instant,
    silence: Pin<Box<Sleep>>,
}

impl<I> Lingering<I> {
    pub fn new(io: I) -> Self {
        Lingering { io, closing: None }
    }

    pub fn get_ref(&self) -> &I {
        &self.io
    }

    pub fn get_mut(&mut self) -> &mut I {
        &mut self.io
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Lingering<I> {
    #[inline]
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Lingering<I> {
    #[inline]
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    #[inline]
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    #[inline]
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let closing = this.closing.get_or_insert_with(|| {
            let now = Instant::now();
            Closing {
                fin_sent: false,
                left: MAX_BYTES,
                until: now + MAX_TIME,
                silence: Box::pin(tokio::time::sleep_until(now + MAX_SILENCE)),
            }
        });
        if !closing.fin_sent {
            let sent = ready!(Pin::new(&mut this.io).poll_shutdown(cx));
            closing.fin_sent = true;
            if sent.is_err() {
                // Nothing more can be said on this connection: nothing to wait for.
                return Poll::Ready(Ok(()));
            }
        }
        let mut scratch = [0u8; 8192];
        loop {
            let mut rb = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.io).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                    closing.left = closing.left.saturating_sub(rb.filled().len());
                    if closing.left == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    let next = (Instant::now() + MAX_SILENCE).min(closing.until);
                    closing.silence.as_mut().reset(next);
                }
                // The client's end of stream (or its reset): the socket can go.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    ready!(closing.silence.as_mut().poll(cx));
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

/// A lingering close of a connection we own.
pub async fn close<I: AsyncRead + AsyncWrite + Unpin>(io: I) {
    use tokio::io::AsyncWriteExt;
    let _ = Lingering::new(io).shutdown().await;
}
