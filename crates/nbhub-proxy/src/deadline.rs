//! Deadlines for receiving a request, so that a client sending its head or body a byte at a
//! time cannot hold a connection (and a file descriptor) for ever: an idle timeout alone is
//! reset by every byte.
//!
//! The head must be complete within a fixed time (`--headers-timeout`, as Node's
//! `headersTimeout`). A body may take `timeout`, extended by one second for every `min_rate`
//! bytes received (Apache's `mod_reqtimeout` scheme): a large upload at any sensible speed is
//! never cut, as a fixed total would cut it (a 2 GB upload to JupyterLab takes minutes), while
//! a trickle is closed after about `timeout`. Answers are never limited: websockets after the
//! upgrade, event streams and kernel output run as long as they run.
//!
//! The hub uses [`DeadlineBody`] and [`is_body_timeout`] for its own listener too.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn StdError + Send + Sync>;

/// How long a request body may take to arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyLimit {
    /// The base allowance; `None`: no deadline.
    pub timeout: Option<Duration>,
    /// Bytes per second that earn one more second each; 0: the deadline is fixed.
    pub min_rate: u64,
}

impl BodyLimit {
    /// No deadline at all.
    pub const NONE: BodyLimit = BodyLimit {
        timeout: None,
        min_rate: 0,
    };

    /// When a body that began at `start` and brought `received` bytes so far must be complete
    /// (`None`: never).
    #[inline]
    pub fn deadline(&self, start: Instant, received: u64) -> Option<Instant> {
        // A sum past what an Instant can hold is as good as no deadline.
        let base = start.checked_add(self.timeout?)?;
        if self.min_rate == 0 {
            return Some(base);
        }
        base.checked_add(Duration::from_millis(
            received.saturating_mul(1000) / self.min_rate,
        ))
    }
}

/// The error a body gives when its deadline passed; find it in a chain with
/// [`is_body_timeout`].
#[derive(Debug)]
pub struct BodyTimeout;

impl fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl StdError for BodyTimeout {}

/// Whether `e` or one of its sources is a [`BodyTimeout`].
pub fn is_body_timeout(mut e: &(dyn StdError + 'static)) -> bool {
    loop {
        if e.is::<BodyTimeout>() {
            return true;
        }
        match e.source() {
            Some(s) => e = s,
            None => return false,
        }
    }
}

pin_project! {
    /// A request body that fails with [`BodyTimeout`] once its [`BodyLimit`] passes. The timer
    /// is created only if the body has to be waited for, and re-armed only when it fires (the
    /// deadline moves with every byte, the timer lazily).
    pub struct DeadlineBody<B> {
        #[pin]
        inner: B,
        limit: BodyLimit,
        start: Instant,
        received: u64,
        #[pin]
        timer: Option<Sleep>,
        expired: bool,
    }
}

impl<B> DeadlineBody<B> {
    /// The body's time starts now.
    pub fn new(inner: B, limit: BodyLimit) -> Self {
        DeadlineBody {
            inner,
            limit,
            start: Instant::now(),
            received: 0,
            timer: None,
            expired: false,
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let mut this = self.project();
        if *this.expired {
            return Poll::Ready(Some(Err(BodyTimeout.into())));
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    *this.received += d.remaining() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let Some(deadline) = this.limit.deadline(*this.start, *this.received) else {
                    return Poll::Pending;
                };
                if this.timer.is_none() {
                    this.timer.set(Some(tokio::time::sleep_until(deadline)));
                }
                let Some(mut timer) = this.timer.as_pin_mut() else {
                    return Poll::Pending;
                };
                loop {
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    // The timer was set for an earlier deadline; bytes since moved it on.
                    let deadline = this.limit.deadline(*this.start, *this.received);
                    match deadline {
                        Some(d) if d > timer.deadline() => timer.as_mut().reset(d),
                        _ => {
                            *this.expired = true;
                            return Poll::Ready(Some(Err(BodyTimeout.into())));
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_moves_with_the_bytes() {
        let start = Instant::now();
        let fixed = BodyLimit {
            timeout: Some(Duration::from_secs(60)),
            min_rate: 0,
        };
        assert_eq!(
            fixed.deadline(start, 1 << 30),
            Some(start + Duration::from_secs(60))
        );
        let rated = BodyLimit {
            timeout: Some(Duration::from_secs(60)),
            min_rate: 1000,
        };
        assert_eq!(
            rated.deadline(start, 5000),
            Some(start + Duration::from_secs(65))
        );
        // No overflow, whatever the count.
        assert!(rated
            .deadline(start, u64::MAX)
            .is_some_and(|d| d > start + Duration::from_secs(1 << 40)));
        assert_eq!(BodyLimit::NONE.deadline(start, 0), None);
    }

    #[test]
    fn a_timeout_is_found_in_a_chain() {
        #[derive(Debug)]
        struct Outer(BodyTimeout);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("outer")
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        assert!(is_body_timeout(&Outer(BodyTimeout)));
        assert!(!is_body_timeout(&std::io::Error::other("x")));
    }
}
