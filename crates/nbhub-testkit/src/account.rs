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
static ACCOUNTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl TempAccount {
    /// `nbt<tag><pid>` with its home at `home` (made by useradd). Needs root.
    pub fn create(tag: &str, home: &Path) -> Self {
        let _one_at_a_time = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let suffix = std::process::id();
        let account = TempAccount {
            name: format!("nbt{tag}{suffix}"),
            group: format!("nbtg{tag}{suffix}"),
            home: home.to_path_buf(),
        };
        run(Command::new("groupadd").arg(&account.group));
        run(Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", "-G", &account.group, "-d"])
            .arg(home)
            .arg(&account.name));
        account
    }
}

impl Drop for TempAccount {
    fn drop(&mut self) {
        let _one_at_a_time = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        // -r also removes the mail spool; its "not found" complaint is noise.
        let quiet = |cmd: &mut Command| cmd.stderr(std::process::Stdio::null()).status();
        let _ = quiet(Command::new("userdel").args(["-r", &self.name]));
        let _ = quiet(Command::new("groupdel").arg(&self.group));
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
