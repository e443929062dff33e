//! Counters and gauges, served in the Prometheus text format on `--metrics-port`.
//!
//! Plain relaxed atomics: one `fetch_add` per request on the hot path, nothing else.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

#[derive(Debug, Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub errors_404: AtomicU64,
    /// Requests whose head or body did not arrive in time.
    pub errors_408: AtomicU64,
    pub errors_500: AtomicU64,
    pub errors_503: AtomicU64,
    pub connections_total: AtomicU64,
    pub connections_active: AtomicI64,
    pub websockets_total: AtomicU64,
    pub websockets_active: AtomicI64,
    pub api_requests: AtomicU64,
    /// Open client connections per worker thread of the public port (set once they start).
    pub worker_connections: OnceLock<Arc<[AtomicUsize]>>,
}

/// Decrements a gauge when dropped, so every exit path of a connection is counted.
pub struct GaugeGuard<'a>(&'a AtomicI64);

impl<'a> GaugeGuard<'a> {
    pub fn new(g: &'a AtomicI64) -> Self {
        g.fetch_add(1, Ordering::Relaxed);
        GaugeGuard(g)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    pub fn error(&self, status: u16) {
        let c = match status {
            404 => &self.errors_404,
            408 => &self.errors_408,
            503 => &self.errors_503,
            _ => &self.errors_500,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, routes: usize) -> String {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let g = |a: &AtomicI64| a.load(Ordering::Relaxed);
        let mut s = String::with_capacity(1024);
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = write!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            );
        };
        counter(
            "nbhub_proxy_requests_total",
            "Requests received on the public port.",
            l(&self.requests),
        );
        counter(
            "nbhub_proxy_connections_total",
            "Client connections accepted.",
            l(&self.connections_total),
        );
        counter(
            "nbhub_proxy_websockets_total",
            "Websocket upgrades proxied.",
            l(&self.websockets_total),
        );
        counter(
            "nbhub_proxy_api_requests_total",
            "REST API requests.",
            l(&self.api_requests),
        );
        let _ = write!(
            s,
            "# HELP nbhub_proxy_errors_total Error responses by status code.\n# TYPE nbhub_proxy_errors_total counter\n\
             nbhub_proxy_errors_total{{code=\"404\"}} {}\nnbhub_proxy_errors_total{{code=\"408\"}} {}\n\
             nbhub_proxy_errors_total{{code=\"500\"}} {}\nnbhub_proxy_errors_total{{code=\"503\"}} {}\n",
            l(&self.errors_404),
            l(&self.errors_408),
            l(&self.errors_500),
            l(&self.errors_503)
        );
        let mut gauge = |name: &str, help: &str, v: i64| {
            let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n");
        };
        gauge(
            "nbhub_proxy_connections_active",
            "Open client connections.",
            g(&self.connections_active),
        );
        gauge(
            "nbhub_proxy_websockets_active",
            "Open proxied websockets.",
            g(&self.websockets_active),
        );
        gauge("nbhub_proxy_routes", "Routes in the table.", routes as i64);
        if let Some(workers) = self.worker_connections.get() {
            s.push_str(
                "# HELP nbhub_proxy_worker_connections Open client connections per worker thread.\n\
                 # TYPE nbhub_proxy_worker_connections gauge\n",
            );
            for (i, open) in workers.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "nbhub_proxy_worker_connections{{worker=\"{i}\"}} {}",
                    open.load(Ordering::Relaxed)
                );
            }
        }
        s
    }
}
