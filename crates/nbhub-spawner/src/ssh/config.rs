//! `[systems.ssh]`: how the hub reaches a system's login nodes.

use serde::{Deserialize, Serialize};

/// `[systems.ssh]`. Defaults: `user = "{unix_user}"`, `certificate_lifetime = 3600`,
/// `hub_tunnel_host = "127.0.0.1"`, `ssh = "ssh"`, `connect_timeout = 10`; `login_hosts`,
/// `known_hosts`, `tracking_user` and one of `certificate_authority` / `identity_file` must be
/// set (see [`SshConfig::validate`]).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SshConfig {
    /// The login nodes, `host` or `host:port` (`[v6]:port`), tried in order: one that does not
    /// answer is skipped and the next command goes to the next one.
    pub login_hosts: Vec<String>,
    /// A site-managed known_hosts file with the login nodes' host keys. Host keys are checked
    /// strictly: a login node missing from it, or with another key, is never trusted.
    pub known_hosts: String,
    /// The account on the system, `{unix_user}` and `{username}` replaced.
    pub user: String,
    /// A CA private key the login nodes trust (`TrustedUserCAKeys`): the hub signs a
    /// short-lived certificate per user, principal = that user's account. `""`: use
    /// `identity_file`.
    pub certificate_authority: String,
    /// Seconds a signed certificate is valid.
    pub certificate_lifetime: u64,
    /// A private key per user, `{unix_user}` and `{username}` replaced, e.g.
    /// `/etc/nbhub/keys/{username}`; used when `certificate_authority` is `""`.
    pub identity_file: String,
    /// The hub's own account on the system, for the queries shared by every user (one
    /// `squeue` per poll interval, `sinfo`, `scontrol`). Authenticated as any user is.
    pub tracking_user: String,
    /// Where the reverse forward to the hub's API listens on the login node, and so the
    /// address the jobs reach the hub at (`reach = "tunnel"`): the login node's address on
    /// the compute nodes' network (anything but a loopback address needs `GatewayPorts
    /// clientspecified` in its sshd).
    pub hub_tunnel_host: String,
    /// The OpenSSH client; `ssh-keygen` is taken from the same directory (from PATH when this
    /// is a bare name).
    pub ssh: String,
    /// Seconds a login node may take to accept a connection before the next one is tried.
    pub connect_timeout: u64,
}

impl Default for SshConfig {
    fn default() -> Self {
        Self {
            login_hosts: Vec::new(),
            known_hosts: String::new(),
            user: "{unix_user}".to_owned(),
            certificate_authority: String::new(),
            certificate_lifetime: 3600,
            identity_file: String::new(),
            tracking_user: String::new(),
            hub_tunnel_host: "127.0.0.1".to_owned(),
            ssh: "ssh".to_owned(),
            connect_timeout: 10,
        }
    }
}

/// One of `login_hosts`, split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LoginHost {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for LoginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` (port 22 when none).
pub(crate) fn parse_login_host(entry: &str) -> Result<LoginHost, String> {
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("'{entry}' has no closing ']'"))?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| format!("'{entry}': expected ':port' after ']'"))?,
                ),
            ),
        }
    } else {
        match entry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (entry, None),
        }
    };
    // The name goes to ssh as an argument: nothing it could read as an option or a user.
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
    if host.is_empty() || host.starts_with('-') || !host.chars().all(plain) {
        return Err(format!(
            "'{entry}' is not a host name or address (letters, digits, '.', '-', '_'; IPv6 in [])"
        ));
    }
    let port = match port {
        None => 22,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("'{entry}': '{p}' is not a port")),
        },
    };
    Ok(LoginHost {
        host: host.to_owned(),
        port,
    })
}

/// A path ssh is given in an `-o Key=value` option: absolute, and free of what its option
/// parser splits on or expands (whitespace, quotes, `%`, `\`).
pub(crate) fn check_option_path(key: &str, path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{key} must be an absolute path, not '{path}'"));
    }
    if path
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '%' | '\\'))
    {
        return Err(format!(
            "{key} = '{path}': a path for ssh must not contain whitespace, quotes, '%' or '\\'"
        ));
    }
    Ok(())
}

/// A name used as a login name, a certificate principal and a file name: what POSIX calls a
/// portable user name.
pub(crate) fn check_account(account: &str) -> Result<(), String> {
    let ok = !account.is_empty()
        && !account.starts_with('-')
        && !account.starts_with('.')
        && account
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{account}' cannot be an account on a login node (letters, digits, '_', '.', '-')"
        ))
    }
}

/// `template` with `{unix_user}` and `{username}` replaced by the Unix account. The transport
/// is given the Unix account only, so both name it.
pub(crate) fn fill(template: &str, unix_user: &str) -> String {
    template
        .replace("{unix_user}", unix_user)
        .replace("{username}", unix_user)
}

impl SshConfig {
    /// Checks what can be checked before any connection; messages name the key as
    /// `key_prefix.key` (e.g. `systems[1].ssh.login_hosts`).
    pub fn validate(&self, key_prefix: &str) -> Result<(), String> {
        let key = |k: &str| format!("{key_prefix}.{k}");
        if self.login_hosts.is_empty() {
            return Err(format!(
                "{} must name at least one login node",
                key("login_hosts")
            ));
        }
        for entry in &self.login_hosts {
            parse_login_host(entry).map_err(|e| format!("{}: {e}", key("login_hosts")))?;
        }
        if self.known_hosts.is_empty() {
            return Err(format!(
                "{} must name the site's known_hosts file with the login nodes' host keys \
                 (host keys are checked strictly, never trusted on first use)",
                key("known_hosts")
            ));
        }
        check_option_path(&key("known_hosts"), &self.known_hosts)?;
        if self.user.is_empty() {
            return Err(format!("{} must not be empty", key("user")));
        }
        check_account(&fill(&self.user, "x")).map_err(|e| format!("{}: {e}", key("user")))?;
        match (
            self.certificate_authority.is_empty(),
            self.identity_file.is_empty(),
        ) {
            (true, true) => {
                return Err(format!(
                    "{} or {} must be set: how the hub proves to the login nodes that it acts \
                     for a user",
                    key("certificate_authority"),
                    key("identity_file")
                ))
            }
            (false, false) => {
                return Err(format!(
                    "set {} or {}, not both",
                    key("certificate_authority"),
                    key("identity_file")
                ))
            }
            (false, true) => {
                check_option_path(&key("certificate_authority"), &self.certificate_authority)?;
                if self.certificate_lifetime < 300 {
                    return Err(format!(
                        "{} must be at least 300 seconds, not {}",
                        key("certificate_lifetime"),
                        self.certificate_lifetime
                    ));
                }
            }
            (true, false) => {
                check_option_path(&key("identity_file"), &fill(&self.identity_file, "x"))?;
            }
        }
        if self.tracking_user.is_empty() {
            return Err(format!(
                "{} must name the hub's own account on the system (for squeue, sinfo)",
                key("tracking_user")
            ));
        }
        check_account(&self.tracking_user).map_err(|e| format!("{}: {e}", key("tracking_user")))?;
        if self.hub_tunnel_host.is_empty() {
            return Err(format!("{} must not be empty", key("hub_tunnel_host")));
        }
        if self.ssh.is_empty() {
            return Err(format!("{} must name the OpenSSH client", key("ssh")));
        }
        if self.connect_timeout == 0 {
            return Err(format!(
                "{} must be at least 1 second",
                key("connect_timeout")
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> SshConfig {
        SshConfig {
            login_hosts: vec!["login1.example.org".into(), "[::1]:2222".into()],
            known_hosts: "/etc/nbhub/known_hosts".into(),
            certificate_authority: "/etc/nbhub/user_ca".into(),
            tracking_user: "nbhub".into(),
            ..SshConfig::default()
        }
    }

    #[test]
    fn login_hosts_parse() {
        let p = |s| parse_login_host(s);
        assert_eq!(
            p("a.b").unwrap(),
            LoginHost {
                host: "a.b".into(),
                port: 22
            }
        );
        assert_eq!(
            p("a:2200").unwrap(),
            LoginHost {
                host: "a".into(),
                port: 2200
            }
        );
        assert_eq!(
            p("[::1]:7").unwrap(),
            LoginHost {
                host: "::1".into(),
                port: 7
            }
        );
        assert_eq!(p("[::1]").unwrap().to_string(), "[::1]:22");
        for bad in [
            "",
            "-oProxyCommand=x",
            "a b",
            "a:0",
            "a:x",
            "[::1",
            "u@h",
            "a:",
        ] {
            assert!(p(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn validate_names_the_key() {
        assert_eq!(valid().validate("systems[1].ssh"), Ok(()));
        let cases: Vec<(SshConfig, &str)> = vec![
            (
                SshConfig {
                    login_hosts: vec![],
                    ..valid()
                },
                "systems[1].ssh.login_hosts",
            ),
            (
                SshConfig {
                    login_hosts: vec!["a b".into()],
                    ..valid()
                },
                "systems[1].ssh.login_hosts",
            ),
            (
                SshConfig {
                    known_hosts: "".into(),
                    ..valid()
                },
                "systems[1].ssh.known_hosts",
            ),
            (
                SshConfig {
                    known_hosts: "rel/path".into(),
                    ..valid()
                },
                "systems[1].ssh.known_hosts",
            ),
            (
                SshConfig {
                    certificate_authority: "".into(),
                    ..valid()
                },
                "systems[1].ssh.certificate_authority",
            ),
            (
                SshConfig {
                    identity_file: "/k/{username}".into(),
                    ..valid()
                },
                "not both",
            ),
            (
                SshConfig {
                    certificate_lifetime: 10,
                    ..valid()
                },
                "systems[1].ssh.certificate_lifetime",
            ),
            (
                SshConfig {
                    tracking_user: "".into(),
                    ..valid()
                },
                "systems[1].ssh.tracking_user",
            ),
            (
                SshConfig {
                    user: "a b{unix_user}".into(),
                    ..valid()
                },
                "systems[1].ssh.user",
            ),
            (
                SshConfig {
                    connect_timeout: 0,
                    ..valid()
                },
                "systems[1].ssh.connect_timeout",
            ),
        ];
        for (config, want) in cases {
            let err = config.validate("systems[1].ssh").unwrap_err();
            assert!(err.contains(want), "{err:?} does not name {want}");
        }
        let by_key = SshConfig {
            certificate_authority: "".into(),
            identity_file: "/etc/nbhub/keys/{username}".into(),
            ..valid()
        };
        assert_eq!(by_key.validate("x"), Ok(()));
    }
}
