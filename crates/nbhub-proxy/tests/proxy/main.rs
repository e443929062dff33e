//! The proxy's integration tests, in one binary: the proxy in-process on port 0 (and, for
//! JupyterHub, the real Python JupyterHub running the built binary), behaviour by behaviour.
//!
//! - [`api`]: the REST API (docs/wire.md#proxy-rest-api).
//! - [`forward`]: forwarding: routing, headers, prefixes, errors, streaming, websockets, TLS,
//!   shutdown.
//! - [`http1`]: the lean HTTP/1.1 path on the wire, byte for byte.
//! - [`jupyterhub`]: the real JupyterHub with nbhub-proxy as its proxy.
//! - [`upgrade`]: upgrade in place and the routes file, with the built binary as processes.
//!
//! The soak test (`tests/soak.rs`) is a binary of its own: it runs for minutes (600 s under
//! CI=true) against the built binary and measures that process's sockets and memory, which
//! should not share the run with these tests.

#[path = "../common/mod.rs"]
mod common;

mod api;
mod forward;
mod http1;
mod jupyterhub;
mod upgrade;
