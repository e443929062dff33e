//! Counters and gauges, served in the OpenMetrics text format on `--metrics-port`.
//!
//! Plain relaxed atomics: one `fetch_add` per request on the hot path, nothing else. A scrape
//! reads them into a [`Collector`] that prometheus-client encodes.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

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
    /// Requests for the hub that waited for it to listen again (`--hub-wait`).
    pub hub_held: AtomicU64,
    /// Requests for the hub that got a 503 after all: past `--hub-wait` or `--hub-wait-max`.
    pub hub_gave_up: AtomicU64,
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

    /// The exposition, in the OpenMetrics text format (prometheus-client's encoder): the
    /// counters are read once, at scrape time; nothing of this runs per request.
    pub fn render(&self, routes: usize) -> String {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let g = |a: &AtomicI64| a.load(Ordering::Relaxed);
        let snapshot = Snapshot {
            counters: [
                (
                    "nbhub_proxy_requests",
                    "Requests received on the public port.",
                    l(&self.requests),
                ),
                (
                    "nbhub_proxy_connections",
                    "Client connections accepted.",
                    l(&self.connections_total),
                ),
                (
                    "nbhub_proxy_websockets",
                    "Websocket upgrades proxied.",
                    l(&self.websockets_total),
                ),
                (
                    "nbhub_proxy_api_requests",
                    "REST API requests.",
                    l(&self.api_requests),
                ),
                (
                    "nbhub_proxy_hub_held",
                    "Requests for the hub that waited for it to listen again (--hub-wait).",
                    l(&self.hub_held),
                ),
                (
                    "nbhub_proxy_hub_gave_up",
                    "Requests for the hub answered 503 past --hub-wait or --hub-wait-max.",
                    l(&self.hub_gave_up),
                ),
            ],
            errors: [
                (404, l(&self.errors_404)),
                (408, l(&self.errors_408)),
                (500, l(&self.errors_500)),
                (503, l(&self.errors_503)),
            ],
            gauges: [
                (
                    "nbhub_proxy_connections_active",
                    "Open client connections.",
                    g(&self.connections_active),
                ),
                (
                    "nbhub_proxy_websockets_active",
                    "Open proxied websockets.",
                    g(&self.websockets_active),
                ),
                (
                    "nbhub_proxy_routes",
                    "Routes in the table.",
                    i64::try_from(routes).unwrap_or(i64::MAX),
                ),
            ],
            workers: self
                .worker_connections
                .get()
                .map(|w| w.iter().map(|open| open.load(Ordering::Relaxed)).collect()),
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(snapshot));
        let mut s = String::with_capacity(2048);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut s, &registry);
        s
    }
}

/// The values of one scrape. Counter names go without `_total`: the encoder adds it to the
/// sample (`nbhub_proxy_requests_total 5`), as OpenMetrics has it.
#[derive(Debug)]
struct Snapshot {
    counters: [(&'static str, &'static str, u64); 6],
    /// `nbhub_proxy_errors_total{code}`.
    errors: [(u16, u64); 4],
    gauges: [(&'static str, &'static str, i64); 3],
    /// Open client connections per worker thread, once the workers have started.
    workers: Option<Vec<usize>>,
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        for &(name, help, v) in &self.counters {
            let c = ConstCounter::new(v);
            c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        let mut family = enc.encode_descriptor(
            "nbhub_proxy_errors",
            "Error responses by status code.",
            None,
            MetricType::Counter,
        )?;
        for &(code, v) in &self.errors {
            let labels = [("code", code)];
            ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
        }
        for &(name, help, v) in &self.gauges {
            let g = ConstGauge::new(v);
            g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        if let Some(workers) = &self.workers {
            let mut family = enc.encode_descriptor(
                "nbhub_proxy_worker_connections",
                "Open client connections per worker thread.",
                None,
                MetricType::Gauge,
            )?;
            for (worker, &open) in workers.iter().enumerate() {
                let labels = [("worker", worker)];
                let open = i64::try_from(open).unwrap_or(i64::MAX);
                ConstGauge::new(open).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_shows_every_counter_and_gauge() {
        let m = Metrics::default();
        m.requests.fetch_add(2, Ordering::Relaxed);
        m.error(404);
        m.error(503);
        m.error(502);
        let _active = GaugeGuard::new(&m.connections_active);
        let _ = m
            .worker_connections
            .set((0..2).map(AtomicUsize::new).collect());
        let text = m.render(7);
        for line in [
            "# TYPE nbhub_proxy_requests counter",
            "nbhub_proxy_requests_total 2",
            "nbhub_proxy_connections_total 0",
            "nbhub_proxy_websockets_total 0",
            "nbhub_proxy_api_requests_total 0",
            "nbhub_proxy_hub_held_total 0",
            "nbhub_proxy_hub_gave_up_total 0",
            "# TYPE nbhub_proxy_errors counter",
            "nbhub_proxy_errors_total{code=\"404\"} 1",
            "nbhub_proxy_errors_total{code=\"408\"} 0",
            "nbhub_proxy_errors_total{code=\"500\"} 1",
            "nbhub_proxy_errors_total{code=\"503\"} 1",
            "# TYPE nbhub_proxy_connections_active gauge",
            "nbhub_proxy_connections_active 1",
            "nbhub_proxy_websockets_active 0",
            "nbhub_proxy_routes 7",
            "nbhub_proxy_worker_connections{worker=\"0\"} 0",
            "nbhub_proxy_worker_connections{worker=\"1\"} 1",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
    }
}
