//! A hub restart bridged: requests for the hub's route wait while the hub does not listen.
//!
//! While the hub restarts (an upgrade, a crash until it is started again) nothing listens on
//! its port and a connection to it is refused. Rather than answering 503 at once, a request
//! whose route is the hub's (route data `"hub": true`, as JupyterHub and nbhub mark it, or
//! `--default-target`'s) waits here for the hub to listen again, up to `--hub-wait` seconds,
//! with at most `--hub-wait-max` requests waiting at a time; past either bound it gets the
//! 503 it would have had at once.
//!
//! Only the connection is waited for: a request is held while its connection to the hub
//! could not be opened (refused, reset), so nothing of it was sent and nothing is sent twice.
//! The connection is tried again with a short backoff (50 ms, doubling to 250 ms), and at
//! once when another waiting request got through (a [`Notify`]). Nothing of this runs on a
//! request whose connection opens: the normal path pays one branch on the error.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::routes::Route;
use crate::upstream::{Side, UpstreamError};

/// `--hub-wait-max`'s default: requests waiting for the hub at a time.
pub const DEFAULT_HUB_WAIT_MAX: usize = 2000;

const FIRST_PAUSE: Duration = Duration::from_millis(50);
const LONGEST_PAUSE: Duration = Duration::from_millis(250);

/// The bounds and the state of waiting for the hub, shared by every worker.
#[derive(Debug, Default)]
pub struct HubWait {
    /// How long one request may wait (`None`: not at all).
    limit: Option<Duration>,
    /// How many may wait at a time.
    max: usize,
    waiting: AtomicUsize,
    /// Woken when a waiting request reached the hub: the others try at once.
    back: Notify,
}

/// What a connect for one request needs to wait for the hub: the bounds and the counters.
#[derive(Clone, Copy)]
pub struct Holder<'a> {
    wait: &'a HubWait,
    metrics: &'a Metrics,
}

impl HubWait {
    pub fn new(limit: Option<Duration>, max: usize) -> Self {
        HubWait {
            limit: limit.filter(|l| !l.is_zero()),
            max,
            ..HubWait::default()
        }
    }

    /// The holder for a request on `route`: some only for the hub's route with waiting on.
    #[inline]
    pub fn for_route<'a>(&'a self, metrics: &'a Metrics, route: &Route) -> Option<Holder<'a>> {
        (route.hub && self.limit.is_some()).then_some(Holder {
            wait: self,
            metrics,
        })
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// Open a connection with `connect`; if it is refused and `holder` is some, try again until
/// the hub listens or the wait's bounds are reached (then the last failure is returned).
#[inline]
pub async fn connect<T, F, Fut>(
    holder: Option<Holder<'_>>,
    mut connect: F,
) -> Result<T, UpstreamError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, UpstreamError>>,
{
    let first = connect().await;
    match (holder, first) {
        (Some(h), Err(e)) if not_listening(&e) => h.hold(e, connect).await,
        (_, r) => r,
    }
}

/// Before a request for the hub goes on a new connection because its pooled ones were closed
/// (found closed at checkout, or closed under it, [`UpstreamError::retry`]): a pause, when
/// waiting is on. A hub that is
/// killed has its connections reset a moment before its listening socket closes; a connect
/// in that moment is accepted by the dying socket's queue and reset after the request went
/// out, which could not be sent a third time. After the pause the connect is refused, and
/// the request waits. Only the rare retry on the hub's route pays it.
pub async fn pause_before_retry(holder: Option<Holder<'_>>) {
    if holder.is_some() {
        tokio::time::sleep(FIRST_PAUSE).await;
    }
}

/// Counts one waiting request for as long as it lives (a request whose client went away is
/// dropped mid-wait).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Holder<'_> {
    #[cold]
    async fn hold<T, F, Fut>(
        self,
        mut last: UpstreamError,
        mut connect: F,
    ) -> Result<T, UpstreamError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, UpstreamError>>,
    {
        let Some(limit) = self.wait.limit else {
            return Err(last);
        };
        let m = self.metrics;
        if self.wait.waiting.fetch_add(1, Ordering::Relaxed) >= self.wait.max {
            self.wait.waiting.fetch_sub(1, Ordering::Relaxed);
            m.hub_gave_up.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                max = self.wait.max,
                "the hub does not listen and --hub-wait-max requests wait for it already: 503"
            );
            return Err(last);
        }
        let _waiting = Waiting(&self.wait.waiting);
        m.hub_held.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("the hub does not listen ({last}): the request waits for it");
        let deadline = Instant::now() + limit;
        let mut pause = FIRST_PAUSE;
        loop {
            let now = Instant::now();
            if now >= deadline {
                m.hub_gave_up.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "the hub did not listen again within --hub-wait ({limit:?}): 503 ({last})"
                );
                return Err(last);
            }
            let back = self.wait.back.notified();
            tokio::select! {
                _ = tokio::time::sleep_until((now + pause).min(deadline)) => {}
                _ = back => {}
            }
            pause = (pause * 2).min(LONGEST_PAUSE);
            match connect().await {
                Ok(c) => {
                    self.wait.back.notify_waiters();
                    return Ok(c);
                }
                Err(e) if not_listening(&e) => last = e,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Whether a failed connect says that nothing listens there (refused, or reset before the
/// connection was made): the hub is down, not broken.
pub fn not_listening(e: &UpstreamError) -> bool {
    if e.side() != Side::Connect {
        return false;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if matches!(
                io.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::NotConnected
            ) {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn refused() -> UpstreamError {
        UpstreamError::caused(
            Side::Connect,
            false,
            io::Error::from(io::ErrorKind::ConnectionRefused),
        )
    }

    fn hub_route() -> Route {
        let mut data = serde_json::Map::new();
        data.insert("hub".into(), true.into());
        Route::new(
            "/",
            data,
            crate::routes::Target::parse("http://127.0.0.1:1").expect("target"),
        )
    }

    #[test]
    fn only_a_refused_connect_is_waited_for() {
        assert!(not_listening(&refused()));
        let sent = UpstreamError::caused(
            Side::Receive,
            false,
            io::Error::from(io::ErrorKind::ConnectionReset),
        );
        assert!(!not_listening(&sent), "bytes went out: never again");
        let timeout = UpstreamError::caused(
            Side::Connect,
            false,
            io::Error::from(io::ErrorKind::TimedOut),
        );
        assert!(!not_listening(&timeout));
    }

    #[test]
    fn only_the_hub_route_waits_and_only_when_on() {
        let m = Metrics::default();
        let on = HubWait::new(Some(Duration::from_secs(1)), 10);
        let off = HubWait::new(Some(Duration::ZERO), 10);
        let user = Route::new(
            "/user/a",
            serde_json::Map::new(),
            crate::routes::Target::parse("http://127.0.0.1:1").expect("target"),
        );
        assert!(on.for_route(&m, &hub_route()).is_some());
        assert!(on.for_route(&m, &user).is_none());
        assert!(off.for_route(&m, &hub_route()).is_none());
    }

    #[tokio::test]
    async fn a_refused_connect_is_tried_again_until_it_opens_or_the_bound() {
        let m = Metrics::default();
        let w = HubWait::new(Some(Duration::from_millis(600)), 10);
        let route = hub_route();
        let tries = AtomicU32::new(0);
        let began = Instant::now();
        let r = connect(w.for_route(&m, &route), || async {
            if tries.fetch_add(1, Ordering::Relaxed) < 3 {
                Err(refused())
            } else {
                Ok(())
            }
        })
        .await;
        assert!(r.is_ok());
        assert!(began.elapsed() < Duration::from_millis(600));
        assert_eq!(m.hub_held.load(Ordering::Relaxed), 1);
        assert_eq!(m.hub_gave_up.load(Ordering::Relaxed), 0);
        assert_eq!(w.waiting(), 0);

        let began = Instant::now();
        let r: Result<(), _> = connect(w.for_route(&m, &route), || async { Err(refused()) }).await;
        assert!(r.is_err());
        assert!(
            began.elapsed() >= Duration::from_millis(600),
            "not before the bound"
        );
        assert!(began.elapsed() < Duration::from_millis(1500));
        assert_eq!(m.hub_gave_up.load(Ordering::Relaxed), 1);
        assert_eq!(w.waiting(), 0);
    }

    #[tokio::test]
    async fn past_the_count_bound_a_request_does_not_wait() {
        let m = Metrics::default();
        let w = HubWait::new(Some(Duration::from_secs(2)), 0);
        let route = hub_route();
        let began = Instant::now();
        let r: Result<(), _> = connect(w.for_route(&m, &route), || async { Err(refused()) }).await;
        assert!(r.is_err());
        assert!(began.elapsed() < Duration::from_millis(50));
        assert_eq!(m.hub_held.load(Ordering::Relaxed), 0);
        assert_eq!(m.hub_gave_up.load(Ordering::Relaxed), 1);
    }
}
