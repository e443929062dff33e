//! Upgrade in place: a new process takes the listening sockets and the route table over from
//! the running one, which then drains (docs/proxy.md#upgrade-in-place).
//!
//! The running process listens on a control socket (`--handover-socket`, a Unix socket of mode
//! 0600). A new process started with `--take-over PATH` connects and says so; the running one
//! answers with its listening sockets (`SCM_RIGHTS`: public, API, metrics, redirect and the
//! control socket itself, named `handover`), then a snapshot of its routes. From the snapshot on, each process
//! sends the other every route change made through its own API, as lines of JSON on the same
//! connection, for as long as both live: the hub's writes reach the new process whichever of
//! the two takes them (the hub may still hold a keep-alive connection to the old API), and
//! the old one, still answering keep-alive connections while it drains, knows of routes added
//! since. The new process serves at once (both accept on the same sockets for a moment: the
//! kernel queues connections on the socket, not the process, so none is refused), then says
//! `ready`; only then does the old one stop accepting and drain, and answer `draining`, after
//! which the new one serves the control socket for the next upgrade. If the new process fails
//! or disconnects before `ready`, the old one carries on as if nothing happened.
//!
//! One upgrade at a time: the process serving the control socket refuses a second taker while
//! one is in progress, and stops serving it once it drains.
//!
//! `{"query":true}` is answered with `{"pid":N,"version":"…"}` (what the hub checks at
//! start). Lines: `{"take_over":{"pid":N,"version":"…"}}` (new → old); the byte `F` with the sockets
//! attached, `{"fds":["public","api",…],"pid":N,"version":"…"}`, `{"routes":{…}}` (old → new);
//! then either way `{"routes":{…}}` (routes added or replaced), `{"remove":"/key"}`; new → old
//! `{"ready":true}`; old → new `{"draining":true}`, later `{"activity":{"/key":ms}}` (traffic
//! the old process still relays); or `{"error":"…"}` and a close.

use std::io::{BufRead, BufReader, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::changes::{Attached, PeerId};
use crate::forward::Shared;
use crate::routes::{now_ms, parse_table, Route};
use crate::{Listeners, Phase};

/// How long either side waits for the other during the exchange before `ready`.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a draining process sends the activity of the routes it still relays.
const ACTIVITY_EVERY: Duration = Duration::from_secs(5);
/// The most sockets handed over: public, API, metrics, redirect, control.
const MAX_FDS: usize = 5;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The sockets a process can hand over, by name, as duplicates it owns.
pub struct Sockets(pub Vec<(&'static str, OwnedFd)>);

/// What a new process got from the one it takes over from.
pub struct TakenOver {
    pub listeners: Listeners,
    /// The control socket, to serve once the old process drains.
    pub control: Option<UnixListener>,
    /// The old process's routes.
    pub routes: Vec<Route>,
    pub link: Link,
}

/// The connection to the other process of a handover, with what was read past the snapshot.
pub struct Link {
    pub stream: UnixStream,
    pub read_ahead: Vec<u8>,
    pub pid: u32,
}

/// Bind the control socket at `path` (mode 0600): bound under a temporary name, its mode set,
/// then renamed into place, so that it is never reachable with a wider mode. A socket file
/// left by a process that died is replaced; one a live process answers on is an error.
pub fn bind_control(path: &Path) -> Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if UnixStream::connect(path).is_ok() {
        bail!(
            "a proxy already listens on the handover socket {} (start the new one with --take-over {0})",
            path.display()
        );
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let l = UnixListener::bind(&tmp)
        .with_context(|| format!("binding the handover socket {}", path.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("moving the handover socket to {}", path.display()))?;
    Ok(l)
}

/// Take the sockets and routes over from the process serving the control socket at `path`.
/// Blocking: called at start, before anything else runs.
pub fn take_over(path: &Path) -> Result<TakenOver> {
    let mut stream = UnixStream::connect(path)
        .with_context(|| format!("connecting to the handover socket {}", path.display()))?;
    stream.set_read_timeout(Some(STEP_TIMEOUT))?;
    stream.set_write_timeout(Some(STEP_TIMEOUT))?;
    let hello = json!({"take_over": {"pid": std::process::id(), "version": VERSION}});
    // A refusal may be on its way already: read it rather than stop at a failed write.
    let _ = stream.write_all(format!("{hello}\n").as_bytes());

    // The sockets come with the first byte, `F`; anything else is the start of an error line.
    let mut first = [0u8; 1];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        &stream,
        &mut [IoSliceMut::new(&mut first)],
        &mut cmsg,
        RecvFlags::CMSG_CLOEXEC,
    )
    .context("receiving the sockets")?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for m in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(it) = m {
            fds.extend(it);
        }
    }
    let mut reader = BufReader::new(stream.try_clone()?);
    if got.bytes != 1 || first[0] != b'F' {
        let mut rest = String::new();
        let _ = reader.read_line(&mut rest);
        let text = format!("{}{rest}", String::from_utf8_lossy(&first[..got.bytes]));
        let msg = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| format!("unexpected answer {:?}", text.trim()));
        bail!("the running proxy refused the handover: {msg}");
    }
    let header = read_json(&mut reader).context("reading the socket names")?;
    let names: Vec<String> = header
        .get("fds")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .context("no socket names")?;
    if names.len() != fds.len() {
        bail!("got {} sockets for {} names", fds.len(), names.len());
    }
    let pid = header.get("pid").and_then(Value::as_u64).unwrap_or(0) as u32;
    let mut named: Vec<(String, OwnedFd)> = names.into_iter().zip(fds).collect();
    let mut take = |name: &str| {
        named
            .iter()
            .position(|(n, _)| n == name)
            .map(|i| named.swap_remove(i).1)
    };
    let tcp = |fd: OwnedFd| -> Result<std::net::TcpListener> {
        let l = std::net::TcpListener::from(fd);
        l.set_nonblocking(true)?;
        Ok(l)
    };
    let listeners = Listeners::from_std(
        tcp(take("public").context("no public socket")?)?,
        tcp(take("api").context("no API socket")?)?,
        take("metrics").map(tcp).transpose()?,
        take("redirect").map(tcp).transpose()?,
    )?;
    let control = take("handover").map(UnixListener::from);
    let snapshot = read_json(&mut reader).context("reading the routes")?;
    let routes = match snapshot.get("routes") {
        Some(t) => parse_table(&t.to_string()).map_err(anyhow::Error::msg)?,
        None => bail!("no routes in the snapshot"),
    };
    let read_ahead = reader.buffer().to_vec();
    stream.set_read_timeout(None)?;
    stream.set_write_timeout(None)?;
    Ok(TakenOver {
        listeners,
        control,
        routes,
        link: Link {
            stream,
            read_ahead,
            pid,
        },
    })
}

fn read_json(reader: &mut impl BufRead) -> Result<Value> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        bail!("the running proxy closed the connection");
    }
    let v: Value = serde_json::from_str(&line).context("not JSON")?;
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        bail!("the running proxy refused the handover: {e}");
    }
    Ok(v)
}

/// The old process's side: what the control socket's server needs of `run`.
pub struct Server {
    pub shared: Arc<Shared>,
    /// The sockets to hand over; dropped once this process drains.
    pub sockets: Mutex<Option<Sockets>>,
    pub phase: Arc<watch::Sender<Phase>>,
    /// A taker is being served: a second one is refused.
    busy: AtomicBool,
}

impl Server {
    pub fn new(shared: Arc<Shared>, sockets: Sockets, phase: Arc<watch::Sender<Phase>>) -> Self {
        Server {
            shared,
            sockets: Mutex::new(Some(sockets)),
            phase,
            busy: AtomicBool::new(false),
        }
    }

    /// Close our copies of the sockets: this process will not hand them over any more.
    pub fn close_sockets(&self) {
        self.sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    /// Serve the control socket until this process drains (or stops).
    pub async fn serve(self: Arc<Self>, control: UnixListener) {
        let Ok(listener) = control
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixListener::from_std(control))
        else {
            tracing::error!("cannot serve the handover socket");
            return;
        };
        let mut phase = self.phase.subscribe();
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = phase.wait_for(|p| *p != Phase::Serve) => return,
            };
            let stream = match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::error!("handover socket: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if self.busy.swap(true, Ordering::AcqRel) {
                refuse(stream, "an upgrade is already in progress").await;
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = me.clone().hand_over(stream).await {
                    tracing::warn!("handover failed, serving on: {e:#}");
                }
                if *me.phase.borrow() == Phase::Serve {
                    me.busy.store(false, Ordering::Release);
                }
            });
        }
    }

    /// One taker: sockets and routes, then changes both ways until `ready`; then drain and
    /// keep the link (changes both ways, our routes' activity) while both live.
    async fn hand_over(self: Arc<Self>, stream: tokio::net::UnixStream) -> Result<()> {
        let std = stream.into_std()?;
        std.set_nonblocking(false)?;
        std.set_read_timeout(Some(STEP_TIMEOUT))?;
        std.set_write_timeout(Some(STEP_TIMEOUT))?;
        let me = self.clone();
        // The blocking part: hello, sockets, snapshot.
        let Some((std, attached, taker)) =
            tokio::task::spawn_blocking(move || me.send_sockets(std)).await??
        else {
            return Ok(());
        };
        tracing::info!(pid = taker, "handing the sockets over");
        std.set_read_timeout(None)?;
        std.set_write_timeout(None)?;
        std.set_nonblocking(true)?;
        let stream = tokio::net::UnixStream::from_std(std)?;
        let shared = self.shared.clone();
        let id = attached.id;
        let mut ready = false;
        let r = run_link(&shared, stream, Vec::new(), attached, |msg, out| {
            if msg.get("ready").is_some() && !ready {
                ready = true;
                // Stopping already (SIGTERM), this process does not drain: the new one sees it
                // go and serves on by itself.
                let drain = self.phase.send_if_modified(|p| {
                    let serving = *p == Phase::Serve;
                    if serving {
                        // Answers close their connections from now on (set first: whoever
                        // sees the phase sees this too); accepting stops (the phase).
                        self.shared.start_draining();
                        *p = Phase::Drain;
                    }
                    serving
                });
                if drain {
                    tracing::info!(pid = taker, "the new process is ready: draining");
                    self.close_sockets();
                    out.push("{\"draining\":true}\n".into());
                }
            }
        })
        .await;
        self.shared.changes.detach(id);
        match (ready, r) {
            (true, _) => Ok(()),
            (false, Err(e)) => Err(e),
            (false, Ok(())) => bail!("the new process (pid {taker}) went away before it was ready"),
        }
    }

    /// Hello, sockets and snapshot; `None` if the hello was a [`query`], answered.
    fn send_sockets(&self, mut std: UnixStream) -> Result<Option<(UnixStream, Attached, u32)>> {
        let mut reader = BufReader::new(std.try_clone()?);
        let hello = read_json(&mut reader)?;
        if hello.get("query").is_some() {
            let about = json!({"pid": std::process::id(), "version": VERSION});
            std.write_all(format!("{about}\n").as_bytes())?;
            return Ok(None);
        }
        let taker = hello
            .get("take_over")
            .and_then(|t| t.get("pid"))
            .and_then(Value::as_u64)
            .context("not a take_over request")? as u32;
        let guard = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        let Some(Sockets(sockets)) = guard.as_ref() else {
            bail!("this process is draining");
        };
        let names: Vec<&str> = sockets.iter().map(|(n, _)| *n).collect();
        let fds: Vec<_> = sockets.iter().map(|(_, fd)| fd.as_fd()).collect();
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut cmsg = SendAncillaryBuffer::new(&mut space);
        if !cmsg.push(SendAncillaryMessage::ScmRights(&fds)) {
            bail!("too many sockets to hand over");
        }
        rustix::net::sendmsg(
            &std,
            &[std::io::IoSlice::new(b"F")],
            &mut cmsg,
            SendFlags::empty(),
        )
        .context("sending the sockets")?;
        drop(guard);
        let header = json!({"fds": names, "pid": std::process::id(), "version": VERSION});
        std.write_all(format!("{header}\n").as_bytes())?;
        // From the snapshot on, our route changes go to the taker.
        let (attached, snapshot) = self.shared.changes.attach(&self.shared.routes);
        let sent = std.write_all(format!("{{\"routes\":{snapshot}}}\n").as_bytes());
        if let Err(e) = sent {
            self.shared.changes.detach(attached.id);
            return Err(e.into());
        }
        Ok(Some((std, attached, taker)))
    }
}

/// Pid and version of the proxy serving the handover socket at `path`, without taking
/// anything over (`{"query":true}`). Blocking, bounded by a few seconds.
pub fn query(path: &Path) -> Result<(u32, String)> {
    let mut stream = UnixStream::connect(path)
        .with_context(|| format!("connecting to the handover socket {}", path.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"{\"query\":true}\n")?;
    let v = read_json(&mut BufReader::new(stream))?;
    let pid = v.get("pid").and_then(Value::as_u64).context("no pid")? as u32;
    let version = v
        .get("version")
        .and_then(Value::as_str)
        .context("no version")?;
    Ok((pid, version.to_string()))
}

/// Refuse a taker with a reason. Its hello is read first: closing a socket with unread data
/// would reset it, and the taker would see a broken pipe instead of the reason.
async fn refuse(stream: tokio::net::UnixStream, why: &str) {
    let line = format!("{}\n", json!({ "error": why }));
    let mut stream = tokio::io::BufReader::new(stream);
    let mut hello = String::new();
    let _ = tokio::time::timeout(STEP_TIMEOUT, stream.read_line(&mut hello)).await;
    let _ = tokio::time::timeout(STEP_TIMEOUT, stream.get_mut().write_all(line.as_bytes())).await;
}

/// The new process's side of the link, from `ready` on: changes both ways (ours from
/// `attached`, attached before our API served anything), the old one's activity; once it
/// drains (or goes away), serve the control socket for the next upgrade.
pub async fn follow(
    shared: Arc<Shared>,
    link: Link,
    attached: Attached,
    on_drained: impl FnOnce() + Send,
) {
    let pid = link.pid;
    let id = attached.id;
    let stream = match link
        .stream
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(link.stream))
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("handover link: {e}");
            shared.changes.detach(id);
            on_drained();
            return;
        }
    };
    let mut on_drained = Some(on_drained);
    // `ready` goes first.
    let mut first = Some(String::from("{\"ready\":true}\n"));
    let r = run_link_with(
        &shared,
        stream,
        link.read_ahead,
        attached,
        &mut first,
        |msg, _| {
            if msg.get("draining").is_some() {
                // The line the upgrade command and tests wait for, bare as the ready line.
                eprintln!("nbhub-proxy took over from pid {pid}");
                if let Some(f) = on_drained.take() {
                    f();
                }
            }
        },
    )
    .await;
    shared.changes.detach(id);
    if let Err(e) = r {
        tracing::debug!("handover link: {e}");
    }
    if let Some(f) = on_drained.take() {
        tracing::warn!(pid, "the old process went away before it drained");
        f();
    }
}

async fn run_link(
    shared: &Shared,
    stream: tokio::net::UnixStream,
    read_ahead: Vec<u8>,
    attached: Attached,
    on_msg: impl FnMut(&Value, &mut Vec<String>),
) -> Result<()> {
    run_link_with(shared, stream, read_ahead, attached, &mut None, on_msg).await
}

/// Relay route changes both ways on a link until it closes: ours from `attached`, theirs
/// applied here (and passed on to our other peers). A draining process also sends the
/// activity of its routes every few seconds.
async fn run_link_with(
    shared: &Shared,
    stream: tokio::net::UnixStream,
    read_ahead: Vec<u8>,
    mut attached: Attached,
    first: &mut Option<String>,
    mut on_msg: impl FnMut(&Value, &mut Vec<String>),
) -> Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(std::io::Cursor::new(read_ahead).chain(rd)).lines();
    if let Some(f) = first.take() {
        wr.write_all(f.as_bytes()).await?;
    }
    let mut tick = tokio::time::interval(ACTIVITY_EVERY);
    let mut sent_at = now_ms();
    let mut out = Vec::new();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { return Ok(()) };
                let msg: Value = serde_json::from_str(&line).context("not JSON")?;
                apply(shared, &msg, attached.id);
                on_msg(&msg, &mut out);
            }
            line = attached.lines.recv() => match line {
                Some(l) => wr.write_all(l.as_bytes()).await?,
                None => return Ok(()),
            },
            _ = tick.tick(), if shared.draining() => {
                let now = now_ms();
                let touched: serde_json::Map<String, Value> = shared
                    .routes
                    .routes()
                    .iter()
                    .filter(|r| r.last_activity_ms() >= sent_at)
                    .map(|r| (r.key.to_string(), r.last_activity_ms().into()))
                    .collect();
                sent_at = now;
                if !touched.is_empty() {
                    let line = format!("{}\n", json!({ "activity": touched }));
                    wr.write_all(line.as_bytes()).await?;
                }
            }
        }
        for l in out.drain(..) {
            wr.write_all(l.as_bytes()).await?;
        }
    }
}

/// A change from peer `from`.
fn apply(shared: &Shared, msg: &Value, from: PeerId) {
    if let Some(t) = msg.get("routes") {
        match parse_table(&t.to_string()) {
            Ok(routes) => {
                for r in routes {
                    shared.changes.insert(&shared.routes, r, Some(from));
                }
            }
            Err(e) => tracing::warn!("handover link: {e}"),
        }
    } else if let Some(k) = msg.get("remove").and_then(Value::as_str) {
        shared.changes.remove(&shared.routes, k, Some(from));
    } else if let Some(Value::Object(a)) = msg.get("activity") {
        for (k, ms) in a {
            if let (Some(r), Some(ms)) = (shared.routes.get(k), ms.as_i64()) {
                r.touched_at(ms);
            }
        }
    }
}

/// Sockets from systemd (`LISTEN_FDS`, `LISTEN_PID`), told apart by `LISTEN_FDNAMES`
/// (`public`, `api`, `metrics`, `redirect`, `handover`); without names, in that order. `None`
/// if systemd passed none.
pub fn from_systemd() -> Result<Option<SystemdSockets>> {
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|v| v.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    let order = ["public", "api", "metrics", "redirect", "handover"];
    let mut out = SystemdSockets::default();
    for i in 0..fds.len() {
        let name = names
            .get(i)
            .map(String::as_str)
            .or_else(|| order.get(i).copied())
            .unwrap_or("");
        if name == "handover" {
            out.control = fds.take_unix_listener(i)?;
            continue;
        }
        let Some(l) = fds.take_tcp_listener(i)? else {
            continue;
        };
        l.set_nonblocking(true)?;
        match name {
            "public" => out.public = Some(l),
            "api" => out.api = Some(l),
            "metrics" => out.metrics = Some(l),
            "redirect" => out.redirect = Some(l),
            other => bail!("socket {i} from systemd is named {other:?}: expected one of {order:?}"),
        }
    }
    std::env::remove_var("LISTEN_FDNAMES");
    Ok(Some(out))
}

/// The sockets systemd passed; the ones it did not are bound as the flags say.
#[derive(Default)]
pub struct SystemdSockets {
    pub public: Option<std::net::TcpListener>,
    pub api: Option<std::net::TcpListener>,
    pub metrics: Option<std::net::TcpListener>,
    pub redirect: Option<std::net::TcpListener>,
    pub control: Option<UnixListener>,
}
