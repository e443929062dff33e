//! How an exchange with a target failed, and what follows from it.
//!
//! Both forwarding paths (the lean one in [`crate::h1`], the hyper one in [`crate::forward`]
//! over [`crate::pool`]) report a failed exchange as one [`UpstreamError`]: which side of
//! the exchange failed, whether the connection came from the pool, and the message. The two
//! decisions a failure leads to are made here and nowhere else:
//!
//! - [`UpstreamError::retry`]: send the request once more, on another connection? Only when
//!   a pooled connection failed before anything of an answer came (the target closed it as we
//!   reused it, as browsers assume too) and the request is still whole in hand.
//! - [`UpstreamError::status`]: what the client is answered: 503, as configurable-http-proxy
//!   answers any target failure, or 408 when it was the client's request body that did not
//!   come in time.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;

use http::StatusCode;

type BoxError = Box<dyn StdError + Send + Sync>;

/// The part of the exchange that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Opening the connection: resolving, TCP, TLS, the HTTP handshake, or no such target.
    Connect,
    /// Sending the request: a write failed, or the connection closed before the request went
    /// out.
    Send,
    /// Waiting for the answer: the connection closed or failed, or nothing came in time,
    /// before any of it came.
    Receive,
    /// The answer came and is not one we can pass on (a malformed or oversized head, an
    /// unasked-for `101`).
    Answer,
    /// The request itself could not be sent as it was: the client's body broke off, or the
    /// HTTP client refused it.
    Request,
    /// The client's request body did not arrive in time while we relayed it: the client's
    /// failure, not the target's.
    ClientTimeout,
}

/// A failed exchange with a target.
#[derive(Debug)]
pub struct UpstreamError {
    side: Side,
    /// The connection had served a request before this one (it came from the pool).
    reused: bool,
    message: Cow<'static, str>,
    source: Option<BoxError>,
}

impl UpstreamError {
    pub fn new(side: Side, reused: bool, message: impl Into<Cow<'static, str>>) -> Self {
        UpstreamError {
            side,
            reused,
            message: message.into(),
            source: None,
        }
    }

    /// A failure whose cause is an error of its own (an I/O or hyper error): its message is
    /// the cause's chain of messages.
    pub fn caused(side: Side, reused: bool, cause: impl Into<BoxError>) -> Self {
        let cause = cause.into();
        UpstreamError {
            side,
            reused,
            message: Cow::Owned(chain(&*cause)),
            source: Some(cause),
        }
    }

    /// A hyper client error, sorted by side: `unsent` when hyper handed the request back
    /// (the connection closed before it went out).
    pub fn from_hyper(e: hyper::Error, unsent: bool, reused: bool) -> Self {
        let side = if crate::deadline::is_body_timeout(&e) {
            Side::ClientTimeout
        } else if unsent {
            Side::Send
        } else if e.is_parse() {
            Side::Answer
        } else if e.is_user() {
            Side::Request
        } else {
            Side::Receive
        };
        Self::caused(side, reused, e)
    }

    pub fn side(&self) -> Side {
        self.side
    }

    pub fn reused(&self) -> bool {
        self.reused
    }

    /// Whether to send the request again on another connection, given whether it is still
    /// whole in hand (no body, or all of it read and not yet streamed away).
    ///
    /// A pooled connection the target closed while it sat idle fails on the write or on the
    /// first read of the answer, with nothing of an answer come: the request never reached the
    /// target, or the target dropped it unanswered. A fresh connection that fails, an answer
    /// that came malformed, or a request that failed on our side would fail again.
    pub fn retry(&self, whole: bool) -> bool {
        self.reused && whole && matches!(self.side, Side::Send | Side::Receive)
    }

    /// The status the client is answered with.
    pub fn status(&self) -> StatusCode {
        match self.side {
            Side::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            Side::Connect | Side::Send | Side::Receive | Side::Answer | Side::Request => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for UpstreamError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// `e: its source: its source's source …`, for the log.
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIDES: [Side; 6] = [
        Side::Connect,
        Side::Send,
        Side::Receive,
        Side::Answer,
        Side::Request,
        Side::ClientTimeout,
    ];

    #[test]
    fn only_a_reused_connection_that_failed_before_the_answer_retries_a_whole_request() {
        for side in SIDES {
            for reused in [false, true] {
                for whole in [false, true] {
                    let e = UpstreamError::new(side, reused, "x");
                    let expect = reused && whole && matches!(side, Side::Send | Side::Receive);
                    assert_eq!(
                        e.retry(whole),
                        expect,
                        "{side:?}, reused {reused}, whole {whole}"
                    );
                }
            }
        }
    }

    #[test]
    fn target_failures_are_503_and_a_late_client_body_408() {
        for side in SIDES {
            for reused in [false, true] {
                let want = if side == Side::ClientTimeout {
                    StatusCode::REQUEST_TIMEOUT
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                assert_eq!(UpstreamError::new(side, reused, "x").status(), want);
            }
        }
    }

    #[test]
    fn the_message_is_the_cause_chain() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("connecting")
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = UpstreamError::caused(Side::Connect, false, Outer(io));
        assert_eq!(e.to_string(), "connecting: refused");
        assert!(e.source().is_some());
    }

    #[test]
    fn a_late_client_body_is_found_through_the_chain() {
        let e = UpstreamError::caused(Side::Request, false, crate::deadline::BodyTimeout);
        assert!(crate::deadline::is_body_timeout(&e));
    }
}
