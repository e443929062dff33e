//! `[systems.ssh]`: how the hub reaches a system's login nodes.

use serde::{Deserialize, Serialize};

/// `[systems.ssh]`.
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
    /// The OpenSSH client.
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
