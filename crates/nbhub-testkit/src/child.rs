//! A child process that is always cleaned up, and a reader of its output lines.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// How long a dropped child's group gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// How many lines of output a panic message shows.
const TAIL_LINES: usize = 200;

/// Which output stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The lines a child printed so far: each stream in order, the two streams interleaved as
/// their reader threads saw them (so only roughly in time order).
#[derive(Clone, Debug, Default)]
pub struct Output {
    pub lines: Vec<(Stream, String)>,
}

impl Output {
    /// All lines, without their stream.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for (_, line) in &self.lines {
            s.push_str(line);
            s.push('\n');
        }
        s
    }
}

impl fmt::Display for Output {
    /// The last lines, each marked with its stream, for panic messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let skip = self.lines.len().saturating_sub(TAIL_LINES);
        if skip > 0 {
            writeln!(f, "    … {skip} earlier lines")?;
        }
        for (stream, line) in &self.lines[skip..] {
            let tag = match stream {
                Stream::Stdout => "out",
                Stream::Stderr => "err",
            };
            writeln!(f, "    {tag}| {line}")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct State {
    output: Output,
    /// Streams that reached end of file (2 = the child closed both).
    closed: usize,
}

/// Shared between the reader threads and the guard. Both a condvar (blocking waits) and a
/// tokio `Notify` (async waits) are signalled on every change.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    notify: tokio::sync::Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A reader thread that panicked leaves the data intact: keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn signal(&self) {
        self.changed.notify_all();
        self.notify.notify_waiters();
    }
}

/// A running child process in its own process group. Dropping the guard (a test that ends,
/// passes or panics) sends SIGTERM to the whole group, SIGKILL after a short grace, and reaps
/// the child, so that no test leaves processes behind.
///
/// stdout and stderr are captured line by line; [`ChildGuard::wait_for_line`] waits for a
/// ready line and panics with the collected output when it does not come.
pub struct ChildGuard {
    name: String,
    child: Child,
    shared: Arc<Shared>,
    exit: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawns `cmd` in a new process group with stdin closed and stdout/stderr captured.
    /// `name` labels panic messages.
    pub fn spawn(name: &str, mut cmd: Command) -> std::io::Result<Self> {
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let shared = Arc::new(Shared::default());
        if let Some(out) = child.stdout.take() {
            spawn_reader(name, Stream::Stdout, out, Arc::clone(&shared))?;
        }
        if let Some(err) = child.stderr.take() {
            spawn_reader(name, Stream::Stderr, err, Arc::clone(&shared))?;
        }
        Ok(Self {
            name: name.to_owned(),
            child,
            shared,
            exit: None,
        })
    }

    /// The child's process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A snapshot of everything the child printed so far.
    pub fn output(&self) -> Output {
        self.shared.lock().output.clone()
    }

    /// The child's exit status if it has exited (reaps it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Waits (async) for the first output line for which `pred` is true and returns it.
    ///
    /// Panics, showing the output so far, when `timeout` passes or the child closes its output
    /// (usually: exits) first.
    pub async fn wait_for_line(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut scanned = 0;
        loop {
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            // Registered before checking, so a line arriving in between is not missed.
            notified.as_mut().enable();
            match self.scan(&pred, &mut scanned) {
                Scan::Found(line) => return line,
                Scan::Closed => self.fail("closed its output (exited?) before printing the line"),
                Scan::NotYet => {}
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                self.fail(&format!("did not print the line within {timeout:?}"));
            }
        }
    }

    /// Blocking variant of [`ChildGuard::wait_for_line`], for tests without a runtime.
    pub fn wait_for_line_blocking(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut scanned = 0;
        let mut state = self.shared.lock();
        loop {
            if let Some(line) = find(&state.output, &pred, &mut scanned) {
                return line;
            }
            if state.closed == 2 {
                drop(state);
                self.fail("closed its output (exited?) before printing the line");
            }
            let now = Instant::now();
            if now >= deadline {
                drop(state);
                self.fail(&format!("did not print the line within {timeout:?}"));
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits for the child to exit by itself and returns its status; panics with the output
    /// after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("did not exit within {timeout:?}"));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Stops the whole process group now (SIGTERM, then SIGKILL after a grace period) and
    /// returns the child's exit status. Dropping the guard does the same.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let pgid = Pid::from_raw(self.child.id() as i32);
        if self.try_wait().is_none() || group_alive(pgid) {
            let _ = killpg(pgid, Signal::SIGTERM);
            let deadline = Instant::now() + TERM_GRACE;
            while Instant::now() < deadline && (self.try_wait().is_none() || group_alive(pgid)) {
                std::thread::sleep(Duration::from_millis(10));
            }
            if self.try_wait().is_none() || group_alive(pgid) {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
        }
        if self.exit.is_none() {
            self.exit = self.child.wait().ok();
        }
        self.exit
    }

    fn scan(&self, pred: &impl Fn(&str) -> bool, scanned: &mut usize) -> Scan {
        let state = self.shared.lock();
        if let Some(line) = find(&state.output, pred, scanned) {
            Scan::Found(line)
        } else if state.closed == 2 {
            Scan::Closed
        } else {
            Scan::NotYet
        }
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "child '{}' (pid {}) {what}; its output:\n{}",
            self.name,
            self.child.id(),
            self.output()
        )
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

enum Scan {
    Found(String),
    Closed,
    NotYet,
}

fn find(output: &Output, pred: &impl Fn(&str) -> bool, scanned: &mut usize) -> Option<String> {
    let found = output.lines[*scanned..]
        .iter()
        .find(|(_, line)| pred(line))
        .map(|(_, line)| line.clone());
    *scanned = output.lines.len();
    found
}

/// Whether any live process is left in group `pgid`. Zombies do not count: orphans may never
/// be reaped where PID 1 does not reap, and they are dead anyway.
fn group_alive(pgid: Pid) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        // No /proc: fall back to asking the kernel (zombies then count as alive).
        return !matches!(killpg(pgid, None), Err(Errno::ESRCH));
    };
    entries.flatten().any(|entry| {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // Fields after the command name: state, ppid, pgrp, …
        let mut fields = stat
            .rsplit_once(')')
            .map_or("", |(_, r)| r)
            .split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let pgrp = fields.nth(1).and_then(|p| p.parse::<i32>().ok());
        pgrp == Some(pgid.as_raw()) && !matches!(state, "Z" | "X")
    })
}

fn spawn_reader(
    name: &str,
    stream: Stream,
    pipe: impl Read + Send + 'static,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("{name}-{stream:?}"))
        .spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        let line = line.trim_end_matches(['\n', '\r']).to_owned();
                        shared.lock().output.lines.push((stream, line));
                        shared.signal();
                    }
                }
            }
            shared.lock().closed += 1;
            shared.signal();
        })?;
    // Detached: a grandchild that escaped the group could hold the pipe open forever.
    Ok(())
}
