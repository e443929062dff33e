//! The lean path: plain HTTP/1.1 from a client to a plain-HTTP target, in one task per client
//! connection, with no per-request allocation once a connection's buffers have grown.
//!
//! This is the hot path of a hub: every request a browser makes to a single-user server. A
//! request head is parsed in place (httparse), the target's head is written straight into a
//! reused buffer with the forwarding headers, and the head goes out in the same `writev` as
//! the first piece of the body; the answer comes back the same way, and bodies are relayed raw
//! (`Content-Length` counted, chunked framing tracked, never re-encoded). Target connections
//! are kept per worker in the [`crate::pool::Pool`].
//!
//! Anything unusual is not handled here: the connection, with the bytes already read, goes to
//! the general hyper path ([`crate::forward`]) for the rest of its life — upgrades
//! (websockets), `Expect: 100-continue`, HTTP/1.0 and HTTP/2 clients, `https` targets, odd
//! framing, and heads hyper should reject with its own 4xx. That hand-over happens only at a
//! request boundary, before anything of the request has been sent on.
//!
//! - [`conn`]: the client connection's loop (read a head, act on its plan, repeat), our own
//!   answers (health check, errors, 408), and the hand-over to the general path.
//! - [`head`]: reading a request head into a plan and writing the target's head; reading the
//!   target's answer head and writing the client's.
//! - [`relay`]: one exchange: the request to the target, its answer back; a target failure
//!   as an [`crate::upstream::UpstreamError`].
//! - [`chunked`]: following chunked framing over bytes relayed raw.
//! - [`target`]: a plain connection to a target and its reads.

pub mod chunked;
pub mod conn;
pub mod head;
pub mod relay;
pub mod target;

pub use conn::{serve, Outcome, Prefixed};
pub use target::TargetConn;

/// Heads larger than this go to hyper, which answers 431.
const MAX_HEAD: usize = 64 * 1024;
/// Header lines per head; more go to hyper (which allows 100 as well, then answers 431).
const MAX_HEADERS: usize = 100;
/// A client connection's read buffer starts at this size.
const CLIENT_BUF: usize = 8 * 1024;

/// How a message body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the target closes the connection (a response with neither length nor chunking).
    UntilClose,
}
