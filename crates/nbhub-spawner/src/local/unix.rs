//! The Unix side of the local spawner: accounts, the privilege drop in the child, `/proc`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::unistd::User;

use crate::accounts::Member;
use crate::SpawnError;

/// A Unix account from the password database.
#[derive(Clone, Debug)]
pub(crate) struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub shell: PathBuf,
}

/// Looks `name` up (getpwnam; blocking: callers go through `accounts.rs`); `Ok(None)` when
/// there is no such account.
pub(crate) fn lookup_account(name: &str) -> Result<Option<Account>, SpawnError> {
    let user = User::from_name(name).map_err(|e| {
        SpawnError::io(
            format!("look up the Unix account {name}"),
            std::io::Error::from(e),
        )
    })?;
    Ok(user.map(|u| Account {
        name: u.name,
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        home: u.dir,
        shell: u.shell,
    }))
}

/// What the child does before exec to become the user: all prepared before the fork, because
/// between fork and exec only async-signal-safe calls are allowed (no allocation).
pub(crate) struct SwitchTo {
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
    home: CString,
}

impl SwitchTo {
    /// The account's uid, primary gid, supplementary groups (initgroups' list, looked up in
    /// `accounts.rs`) and home.
    pub fn new(member: &Member) -> Result<Self, SpawnError> {
        let account = &member.account;
        let groups = member.gids.clone();
        let home = CString::new(account.home.as_os_str().as_bytes()).map_err(|_| {
            SpawnError::Failed(format!("invalid home directory {:?}", account.home))
        })?;
        Ok(Self {
            uid: account.uid,
            gid: account.gid,
            groups,
            home,
        })
    }
}

/// Makes the child start a new session (so its own process group, away from the hub's
/// terminal: the server survives a hub restart and is stopped as a group), then, with
/// `switch`, drop to the user's groups, gid and uid and enter the home directory.
///
/// std's `Command::uid`/`gid` cannot do this: with a uid set it clears the supplementary
/// groups instead of setting them, and its `groups` is unstable. The chdir comes after the
/// setuid so that homes that root cannot enter (root-squashed NFS) still work.
#[allow(unsafe_code)]
pub(crate) fn detach_and_switch(cmd: &mut tokio::process::Command, switch: Option<SwitchTo>) {
    let hook = move || -> std::io::Result<()> {
        // Only raw syscalls on data prepared before the fork below: async-signal-safe.
        fn check(rc: libc::c_int) -> std::io::Result<()> {
            if rc == -1 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
        // SAFETY (all calls): plain syscalls on owned, NUL-terminated or length-checked data.
        unsafe {
            check(libc::setsid())?;
            if let Some(s) = &switch {
                check(libc::setgroups(s.groups.len() as _, s.groups.as_ptr()))?;
                check(libc::setgid(s.gid))?;
                check(libc::setuid(s.uid))?;
                check(libc::chdir(s.home.as_ptr()))?;
            }
        }
        Ok(())
    };
    // SAFETY: the hook allocates nothing and calls only async-signal-safe functions, as
    // required between fork and exec in a multi-threaded process.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// The fields of `/proc/<pid>/stat` the spawner needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub state: char,
    pub pgrp: i32,
    /// Clock ticks since boot: with the pid, identifies a process across pid reuse.
    pub start_time: u64,
}

impl ProcStat {
    /// Exited but not yet reaped (or being torn down).
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

pub(crate) fn proc_stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_stat(stat: &str) -> Option<ProcStat> {
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); pgrp is field 5, starttime field 22.
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Whether any live (non-zombie) process is in process group `pgid`. Zombies do not count:
/// they are dead, and orphaned ones may never be reaped where PID 1 does not reap.
pub(crate) fn group_alive(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
            .and_then(proc_stat)
            .is_some_and(|st| st.pgrp == pgid as i32 && !st.is_dead())
    })
}

/// The last `max_lines` lines of a log file (at most its last 64 KiB), or `None` when it
/// cannot be read or is empty.
pub(crate) fn log_tail(path: &Path, max_lines: usize) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let from = len.saturating_sub(64 * 1024);
    file.seek(SeekFrom::Start(from)).ok()?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    // A cut at 64 KiB leaves a partial first line: drop it unless it is all there is.
    let skip_partial = usize::from(from > 0 && lines.len() > 1);
    let start = lines.len().saturating_sub(max_lines).max(skip_partial);
    let tail = lines[start..].join("\n");
    (!tail.is_empty()).then_some(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let stat =
            "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let st = parse_stat(stat).expect("parses");
        assert_eq!(
            st,
            ProcStat {
                state: 'S',
                pgrp: 4242,
                start_time: 987654
            }
        );
    }

    #[test]
    fn reads_own_process() {
        let me = proc_stat(std::process::id()).expect("/proc/self");
        assert!(!me.is_dead());
        assert!(me.start_time > 0);
    }

    #[test]
    fn tail_of_a_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, "one\ntwo\n\nthree\nfour\n").unwrap();
        assert_eq!(log_tail(&path, 2).as_deref(), Some("three\nfour"));
        std::fs::write(&path, "").unwrap();
        assert_eq!(log_tail(&path, 2), None);
    }
}
