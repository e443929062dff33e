//! How the hub proves to a login node that it acts for an account.
//!
//! With `certificate_authority`, each account gets an ed25519 key of its own, made once by
//! `ssh-keygen` in the transport's key directory (0700, the hub's; the key 0600), and a
//! certificate signed by the CA for that account alone (principal = the account, identity
//! `nbhub-<system>-<account>`, valid from five minutes ago, for clock skew, to
//! `certificate_lifetime` from now). Only opening a connection needs a valid certificate (an
//! open one stays up when it expires), so it is checked then and signed again when less than
//! a quarter of its lifetime is left; a restarted hub signs anew on first use.
//!
//! With `identity_file`, the template filled for the account names a key the site provides;
//! it must exist and be readable by the hub (ssh picks up `<file>-cert.pub` beside it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::ssh::config::{fill, SshConfig};
use crate::ssh::SshError;

/// The files ssh is given for one account.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    pub key: PathBuf,
    /// The certificate, when the hub signs one (else ssh looks beside the key).
    pub certificate: Option<PathBuf>,
}

/// The keys and certificates of one system's accounts.
pub(crate) struct Credentials {
    system: String,
    ssh_keygen: PathBuf,
    how: How,
    /// One lock per account: two connections for one account (a user's and the tracking
    /// one's) never make or sign its key at the same time.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Instant>>>>>,
}

enum How {
    Sign {
        ca: PathBuf,
        lifetime: Duration,
        dir: PathBuf,
    },
    Template(String),
}

impl Credentials {
    /// `key_dir` must be a directory only the hub can read (it is created 0700 when missing).
    pub fn new(system: &str, config: &SshConfig, key_dir: &Path) -> Self {
        let how = if config.certificate_authority.is_empty() {
            How::Template(config.identity_file.clone())
        } else {
            How::Sign {
                ca: PathBuf::from(&config.certificate_authority),
                lifetime: Duration::from_secs(config.certificate_lifetime),
                dir: key_dir.to_path_buf(),
            }
        };
        Self {
            system: system.to_owned(),
            ssh_keygen: sibling(&config.ssh, "ssh-keygen"),
            how,
            locks: Mutex::default(),
        }
    }

    /// The key (and certificate) to log in as `account`, made or renewed as needed.
    pub async fn for_account(&self, account: &str) -> Result<Identity, SshError> {
        let (ca, lifetime, dir) = match &self.how {
            How::Template(template) => return identity_file(&fill(template, account)).await,
            How::Sign { ca, lifetime, dir } => (ca, *lifetime, dir),
        };
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(account.to_owned())
            .or_default()
            .clone();
        let mut signed_at = lock.lock().await;
        let key = dir.join(account);
        let certificate = dir.join(format!("{account}-cert.pub"));
        if still_fresh(signed_at.map(|at| at.elapsed()), lifetime)
            && tokio::fs::metadata(&certificate).await.is_ok()
        {
            return Ok(Identity {
                key,
                certificate: Some(certificate),
            });
        }
        private_dir(dir).await?;
        let public = dir.join(format!("{account}.pub"));
        let identity = format!("nbhub-{}-{account}", self.system);
        if tokio::fs::metadata(&key).await.is_err() || tokio::fs::metadata(&public).await.is_err() {
            // A half-written pair from an interrupted run would make ssh-keygen ask whether
            // to overwrite.
            let _ = tokio::fs::remove_file(&key).await;
            let _ = tokio::fs::remove_file(&public).await;
            self.keygen(
                &["-q", "-t", "ed25519", "-N", "", "-C", &identity, "-f"],
                &key,
            )
            .await?;
        }
        let now = Instant::now();
        let validity = format!("-5m:+{}s", lifetime.as_secs());
        let ca = ca.to_str().unwrap_or_default();
        self.keygen(
            &[
                "-q", "-s", ca, "-I", &identity, "-n", account, "-V", &validity,
            ],
            &public,
        )
        .await?;
        *signed_at = Some(now);
        Ok(Identity {
            key,
            certificate: Some(certificate),
        })
    }

    /// Runs `ssh-keygen args path` (no shell) and says what it printed when it fails.
    async fn keygen(&self, args: &[&str], path: &Path) -> Result<(), SshError> {
        let out = tokio::process::Command::new(&self.ssh_keygen)
            .args(args)
            .arg(path)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| SshError::io(format!("run {}", self.ssh_keygen.display()), e))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(SshError::Config(format!(
                "{} {} {} failed: {}",
                self.ssh_keygen.display(),
                args.join(" "),
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }
}

/// A certificate signed `age` ago has more than a quarter of its `lifetime` left (`None`:
/// not signed by this hub yet).
fn still_fresh(age: Option<Duration>, lifetime: Duration) -> bool {
    age.is_some_and(|age| age < lifetime * 3 / 4)
}

/// `ssh-keygen` beside the configured `ssh` (`/usr/bin/ssh` → `/usr/bin/ssh-keygen`; a bare
/// name → the bare name, from PATH).
fn sibling(ssh: &str, name: &str) -> PathBuf {
    match Path::new(ssh).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(name),
        _ => PathBuf::from(name),
    }
}

/// Creates `dir` 0700 when missing, and refuses it when others can read it.
async fn private_dir(dir: &Path) -> Result<(), SshError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let path = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
            .map_err(|e| SshError::io(format!("create {}", path.display()), e))?;
        let mode = std::fs::metadata(&path)
            .map_err(|e| SshError::io(format!("read {}", path.display()), e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(SshError::Config(format!(
                "{} holds the users' SSH keys but is mode {:o}: it must be 0700",
                path.display(),
                mode & 0o777
            )));
        }
        Ok(())
    })
    .await
    .map_err(|e| SshError::Failed(format!("key directory check: {e}")))?
}

/// `identity_file` filled: it must exist and be readable by the hub.
async fn identity_file(path: &str) -> Result<Identity, SshError> {
    match tokio::fs::File::open(path).await {
        Ok(_) => Ok(Identity {
            key: PathBuf::from(path),
            certificate: None,
        }),
        Err(e) => Err(SshError::Config(format!(
            "identity_file {path} cannot be read by the hub: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_again_when_a_quarter_of_the_lifetime_is_left() {
        let hour = Duration::from_secs(3600);
        let ago = |mins: u64| Some(Duration::from_secs(mins * 60));
        assert!(!still_fresh(None, hour), "never signed by this hub");
        assert!(still_fresh(ago(0), hour));
        assert!(still_fresh(ago(44), hour));
        assert!(!still_fresh(ago(46), hour), "less than 15 minutes left");
    }

    #[test]
    fn ssh_keygen_is_found_beside_ssh() {
        assert_eq!(sibling("ssh", "ssh-keygen"), PathBuf::from("ssh-keygen"));
        assert_eq!(
            sibling("/opt/openssh/bin/ssh", "ssh-keygen"),
            PathBuf::from("/opt/openssh/bin/ssh-keygen")
        );
    }

    fn config(ca: &Path) -> SshConfig {
        SshConfig {
            certificate_authority: ca.to_str().unwrap().to_owned(),
            certificate_lifetime: 600,
            ..SshConfig::default()
        }
    }

    /// A real CA signs a real key: the certificate names the account and the system, the key
    /// is 0600 in a 0700 directory, and a second call reuses both.
    #[tokio::test]
    async fn signs_a_certificate_for_the_account() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let ca = tmp.path().join("ca");
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&ca)
            .status()
            .expect("ssh-keygen");
        assert!(made.success());
        let keys = tmp.path().join("keys");
        let creds = Credentials::new("juwels", &config(&ca), &keys);
        let id = creds.for_account("alice").await.expect("credentials");
        let cert = id.certificate.clone().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&keys), 0o700);
        assert_eq!(mode(&id.key), 0o600);
        let shown = std::process::Command::new("ssh-keygen")
            .arg("-L")
            .arg("-f")
            .arg(&cert)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&shown.stdout);
        assert!(text.contains("Key ID: \"nbhub-juwels-alice\""), "{text}");
        assert!(
            text.contains("Principals: \n                alice\n"),
            "{text}"
        );
        let before = std::fs::read(&cert).unwrap();
        let again = creds.for_account("alice").await.unwrap();
        assert_eq!(again.key, id.key);
        assert_eq!(
            std::fs::read(&cert).unwrap(),
            before,
            "signed again too soon"
        );
    }

    #[tokio::test]
    async fn a_missing_identity_file_is_a_config_error() {
        let config = SshConfig {
            identity_file: "/nonexistent/keys/{username}".into(),
            ..SshConfig::default()
        };
        let creds = Credentials::new("s", &config, Path::new("/nonexistent"));
        let err = creds.for_account("bob").await.unwrap_err();
        assert!(
            matches!(&err, SshError::Config(m) if m.contains("/nonexistent/keys/bob")),
            "{err}"
        );
    }
}
