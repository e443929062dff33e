//! Route changes beyond this process: the routes file (`--routes-file`) and, during a
//! handover, the other process of the pair ([`crate::handover`]).
//!
//! Every write to the route table that the API (or a peer) makes goes through [`Changes`]: it
//! applies the change, passes it on to the peers as a line of JSON, and bumps a version the
//! routes file's writer waits on. None of this is on the request path: requests only read the
//! table.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::forward::Shared;
use crate::routes::{table_json, Route, RouteTable};

/// Which peer a change came from (it is not sent back there).
pub type PeerId = u64;

/// How long the routes file's writer waits after a change for more (one write for a burst,
/// e.g. a hub re-adding its routes at start).
const COALESCE: Duration = Duration::from_millis(50);

type Peer = (PeerId, mpsc::UnboundedSender<Arc<str>>);

/// Route writes, their peers and their version.
pub struct Changes {
    /// Held while a change is applied and sent, so that a snapshot taken under it and the
    /// changes sent after it line up: none lost, none twice.
    peers: Mutex<Vec<Peer>>,
    next_peer: AtomicU64,
    version: watch::Sender<u64>,
}

impl Default for Changes {
    fn default() -> Self {
        Changes {
            peers: Mutex::new(Vec::new()),
            next_peer: AtomicU64::new(1),
            version: watch::Sender::new(0),
        }
    }
}

/// A peer's end: its id and the lines to send it.
pub struct Attached {
    pub id: PeerId,
    pub lines: mpsc::UnboundedReceiver<Arc<str>>,
}

impl Changes {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Peer>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(peers: &[Peer], from: Option<PeerId>, line: impl FnOnce() -> String) {
        if peers.iter().all(|(id, _)| Some(*id) == from) {
            return;
        }
        let line: Arc<str> = line().into();
        for (id, tx) in peers {
            if Some(*id) != from {
                let _ = tx.send(line.clone());
            }
        }
    }

    /// Add or replace a route (from the API, or from peer `from`).
    pub fn insert(&self, routes: &RouteTable, route: Route, from: Option<PeerId>) {
        let peers = self.lock();
        Self::send(&peers, from, || {
            format!("{{\"routes\":{{{}}}}}\n", entry_json(&route))
        });
        routes.insert(route);
        self.version.send_modify(|v| *v += 1);
    }

    /// Remove a route (from the API, or from peer `from`).
    pub fn remove(
        &self,
        routes: &RouteTable,
        key: &str,
        from: Option<PeerId>,
    ) -> Option<Arc<Route>> {
        let peers = self.lock();
        let r = routes.remove(key);
        if r.is_some() {
            Self::send(&peers, from, || {
                format!(
                    "{{\"remove\":{}}}\n",
                    serde_json::Value::String(key.to_string())
                )
            });
            self.version.send_modify(|v| *v += 1);
        }
        r
    }

    /// A new peer: every change from now on is sent to it, and `snapshot` is the table as it
    /// was just before (the two taken together, so that nothing falls between them).
    pub fn attach(&self, routes: &RouteTable) -> (Attached, String) {
        let mut peers = self.lock();
        let snapshot = table_json(&routes.routes());
        let id = self.next_peer.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        peers.push((id, tx));
        (Attached { id, lines: rx }, snapshot)
    }

    /// The peer is gone: send it nothing more.
    pub fn detach(&self, id: PeerId) {
        self.lock().retain(|(p, _)| *p != id);
    }

    /// Routes loaded at start (the routes file or a snapshot) count as a change: the file is
    /// written with them at once.
    pub fn loaded(&self, routes: &RouteTable, loaded: Vec<Route>) {
        let _peers = self.lock();
        for r in loaded {
            routes.insert(r);
        }
        self.version.send_modify(|v| *v += 1);
    }
}

/// `"key":{…}` of one route, as in [`table_json`].
fn entry_json(route: &Route) -> String {
    let mut s = serde_json::to_string(&*route.key).unwrap_or_else(|_| "\"\"".into());
    s.push(':');
    route.write_json(&mut s);
    s
}

/// Keep `path` holding the route table: rewritten (a temporary file renamed over it, so a
/// reader or a crash sees the old table or the new one, never half of one) after every change,
/// a burst of changes written once. Runs until `stop`; the last change is written before it
/// returns. A process that handed over writes no more: the file is its successor's, and a
/// late write of ours could undo a newer one.
pub async fn keep_routes_file(shared: &Shared, path: PathBuf, mut stop: watch::Receiver<bool>) {
    let (changes, routes) = (&shared.changes, &shared.routes);
    let mut version = changes.version.subscribe();
    version.mark_changed();
    loop {
        tokio::select! {
            r = version.changed() => if r.is_err() { break },
            _ = stop.wait_for(|s| *s) => break,
        }
        tokio::select! {
            _ = tokio::time::sleep(COALESCE) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        if shared.draining() {
            return;
        }
        version.mark_unchanged();
        write_table(routes, &path).await;
    }
    if version.has_changed().unwrap_or(false) && !shared.draining() {
        write_table(routes, &path).await;
    }
}

async fn write_table(routes: &RouteTable, path: &Path) {
    let text = table_json(&routes.routes());
    let p = path.to_path_buf();
    let r = tokio::task::spawn_blocking(move || write_atomic(&p, text.as_bytes())).await;
    match r {
        Ok(Ok(())) => tracing::debug!("wrote the routes file {}", path.display()),
        Ok(Err(e)) => tracing::error!("writing the routes file {}: {e}", path.display()),
        Err(e) => tracing::error!("writing the routes file {}: {e}", path.display()),
    }
}

/// Write `bytes` to `path` atomically: a temporary file beside it (mode 0600), synced, then
/// renamed over it. The temporary file's name has our pid: two processes of a handover may
/// write at the same time.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// The routes of a routes file; none if it does not exist yet. Their `last_activity` is now,
/// as for routes a hub adds again: the file is not kept on every request.
pub fn read_routes_file(path: &Path) -> anyhow::Result<Vec<Route>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(anyhow::anyhow!(
                "reading --routes-file {}: {e}",
                path.display()
            ))
        }
    };
    let now = crate::routes::now_ms();
    let routes = crate::routes::parse_table(&text)
        .map_err(|e| anyhow::anyhow!("--routes-file {}: {e}", path.display()))?;
    for r in &routes {
        r.touched_at(now);
    }
    Ok(routes)
}
