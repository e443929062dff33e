//! Real Unix accounts for tests that run servers or batch jobs as another user.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A Unix account (with a group of its own as a supplementary group) made for one test, and
/// removed with its home when dropped.
pub struct TempAccount {
    pub name: String,
    pub group: String,
    pub home: PathBuf,
}

/// useradd/groupadd lock /etc/passwd and /etc/group and give up when another holds them:
/// the tests of one binary create their accounts one at a time.
/// The list holds the accounts of this process that exist, so that a tag two tests use at
/// once fails loudly instead of as useradd's "already exists".
static ACCOUNTS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

impl TempAccount {
    /// `nbt<tag><pid>` with its home at `home` (made by useradd). Needs root.
    pub fn create(tag: &str, home: &Path) -> Self {
        let mut made = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let suffix = std::process::id();
        let name = format!("nbt{tag}{suffix}");
        if made.contains(&name) {
            drop(made);
            panic!(
                "the account tag {tag:?} is used by two tests of this binary: give each its own"
            );
        }
        let group = format!("nbtg{tag}{suffix}");
        run(Command::new("groupadd").arg(&group));
        let user = retried(
            Command::new("useradd")
                .args(["-m", "-s", "/bin/sh", "-G", &group, "-d"])
                .arg(home)
                .arg(&name),
        );
        if let Err(failed) = settled(user) {
            // The account value does not exist yet, so its Drop (which takes the lock this
            // thread holds) does not run while this panic unwinds; the group goes here.
            let _ = Command::new("groupdel").arg(&group).status();
            panic!("useradd {name}: {failed}");
        }
        made.push(name.clone());
        TempAccount {
            name,
            group,
            home: home.to_path_buf(),
        }
    }
}

impl Drop for TempAccount {
    fn drop(&mut self) {
        let mut made = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        made.retain(|n| *n != self.name);
        // -r also removes the mail spool; its "not found" complaint is noise.
        let quiet = |cmd: &mut Command| cmd.stderr(std::process::Stdio::null()).status();
        let _ = quiet(Command::new("userdel").args(["-r", &self.name]));
        let _ = quiet(Command::new("groupdel").arg(&self.group));
    }
}

/// Runs `cmd` until it succeeds; panics with its error otherwise.
fn run(cmd: &mut Command) {
    let program = format!("{cmd:?}");
    let out = retried(cmd);
    if let Err(failed) = settled(out) {
        panic!("{program}: {failed}");
    }
}

/// Runs `cmd`, again after a pause while another process holds the account files' lock
/// (useradd and groupadd give up at once when another program, e.g. an admin's useradd or
/// another test binary, holds it).
fn retried(cmd: &mut Command) -> std::io::Result<std::process::Output> {
    let mut tries = 0;
    loop {
        let out = cmd.output()?;
        let locked = String::from_utf8_lossy(&out.stderr).contains("cannot lock");
        if out.status.success() || !locked || tries == 50 {
            return Ok(out);
        }
        tries += 1;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The error of a command's result, if it failed.
fn settled(out: std::io::Result<std::process::Output>) -> Result<(), String> {
    match out {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        Err(e) => Err(e.to_string()),
    }
}
