//! Command line of configurable-http-proxy 5.3.0 and the resolved [`ProxyConfig`].
//!
//! Every CHP flag is accepted by the parser; those we cannot honour are refused by
//! [`Args::into_config`] with a message rather than silently ignored.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use http::{HeaderName, HeaderValue};

use crate::deadline::BodyLimit;
use crate::routes::Target;

/// `--headers-timeout`'s default, Node's `headersTimeout` (which CHP runs under).
pub const DEFAULT_HEADERS_TIMEOUT: Duration = Duration::from_secs(60);
/// `--body-timeout` and `--body-min-rate`'s defaults: a minute, and one second more per
/// 1000 bytes received.
pub const DEFAULT_BODY_LIMIT: BodyLimit = BodyLimit {
    timeout: Some(Duration::from_secs(60)),
    min_rate: 1000,
};

/// `--upgrade-grace`'s default: ten minutes.
pub const DEFAULT_UPGRADE_GRACE: Duration = Duration::from_secs(600);

/// A flag in milliseconds where 0 means no limit.
fn millis_or_none(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// Flags as CHP spells them (`configurable-http-proxy --help`).
#[derive(Debug, Parser)]
#[command(
    name = "nbhub-proxy",
    version,
    about = "A configurable-http-proxy compatible reverse proxy"
)]
pub struct Args {
    /// Public-facing IP of the proxy ('' or '*' = all interfaces)
    #[arg(long, default_value = "")]
    pub ip: String,
    /// Public-facing port of the proxy
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// SSL key to use, if any
    #[arg(long)]
    pub ssl_key: Option<PathBuf>,
    /// SSL certificate to use, if any
    #[arg(long)]
    pub ssl_cert: Option<PathBuf>,
    /// SSL CA to verify client certificates with
    #[arg(long)]
    pub ssl_ca: Option<PathBuf>,
    /// Request an SSL certificate from clients
    #[arg(long)]
    pub ssl_request_cert: bool,
    /// Reject unauthorized SSL connections (only with --ssl-request-cert)
    #[arg(long)]
    pub ssl_reject_unauthorized: bool,
    /// Not supported (rustls negotiates TLS 1.2 and 1.3)
    #[arg(long)]
    pub ssl_protocol: Option<String>,
    /// Not supported (rustls' safe cipher suites are used)
    #[arg(long)]
    pub ssl_ciphers: Option<String>,
    /// Not supported
    #[arg(long)]
    pub ssl_allow_rc4: bool,
    /// Not supported (no DHE with rustls)
    #[arg(long)]
    pub ssl_dhparam: Option<PathBuf>,
    /// Inward-facing IP for API requests
    #[arg(long, default_value = "localhost")]
    pub api_ip: String,
    /// Inward-facing port for API requests (default: --port + 1)
    #[arg(long)]
    pub api_port: Option<u16>,
    #[arg(long)]
    pub api_ssl_key: Option<PathBuf>,
    #[arg(long)]
    pub api_ssl_cert: Option<PathBuf>,
    #[arg(long)]
    pub api_ssl_ca: Option<PathBuf>,
    #[arg(long)]
    pub api_ssl_request_cert: bool,
    #[arg(long)]
    pub api_ssl_reject_unauthorized: bool,
    /// Client certificate key for connections to https targets
    #[arg(long)]
    pub client_ssl_key: Option<PathBuf>,
    #[arg(long)]
    pub client_ssl_cert: Option<PathBuf>,
    /// CA to verify https targets with
    #[arg(long)]
    pub client_ssl_ca: Option<PathBuf>,
    #[arg(long)]
    pub client_ssl_request_cert: bool,
    #[arg(long)]
    pub client_ssl_reject_unauthorized: bool,
    /// Default proxy target (`proto://host[:port]`)
    // CHP's help text as it is: the doc comment above is rustdoc's (markdown).
    #[arg(long, help = "Default proxy target (proto://host[:port])")]
    pub default_target: Option<String>,
    /// Alternate server for handling proxy errors (`proto://host[:port]`)
    // CHP's help text as it is: the doc comment above is rustdoc's (markdown).
    #[arg(
        long,
        help = "Alternate server for handling proxy errors (proto://host[:port])"
    )]
    pub error_target: Option<String>,
    /// Alternate server for handling proxy errors (folder of `<code>.html` / error.html)
    // CHP's help text as it is: the doc comment above is rustdoc's (markdown).
    #[arg(
        long,
        help = "Alternate server for handling proxy errors (folder of <code>.html / error.html)"
    )]
    pub error_path: Option<PathBuf>,
    /// Redirect HTTP requests on this port to the server on HTTPS
    #[arg(long)]
    pub redirect_port: Option<u16>,
    /// Redirect HTTP requests from --redirect-port to this port
    #[arg(long)]
    pub redirect_to: Option<u16>,
    /// Write our PID to a file
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Don't add 'X-forward-' headers to proxied requests
    #[arg(long)]
    pub no_x_forward: bool,
    /// Avoid prepending target paths to proxied requests
    #[arg(long)]
    pub no_prepend_path: bool,
    /// Don't include the routing prefix in proxied requests
    #[arg(long)]
    pub no_include_prefix: bool,
    /// Not supported: rewrite the Location header host/port in redirect responses
    #[arg(long)]
    pub auto_rewrite: bool,
    /// Changes the origin of the host header to the target URL
    #[arg(long)]
    pub change_origin: bool,
    /// Not supported: rewrite the Location header protocol in redirect responses
    #[arg(long)]
    pub protocol_rewrite: Option<String>,
    /// Custom header to add to proxied requests ("Name: value"); repeatable
    #[arg(long)]
    pub custom_header: Vec<String>,
    /// Don't verify the certificates of https targets
    #[arg(long)]
    pub insecure: bool,
    /// Use host routing (host as first level of path)
    #[arg(long)]
    pub host_routing: bool,
    /// IP for the metrics server
    #[arg(long, default_value = "0.0.0.0")]
    pub metrics_ip: String,
    /// Port of the metrics server (metrics are served only if set)
    #[arg(long)]
    pub metrics_port: Option<u16>,
    /// Log level (debug, info, warn, error)
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Timeout (in millis) when reading a request from a client
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Timeout (in millis) when waiting for a response from a target
    #[arg(long)]
    pub proxy_timeout: Option<u64>,
    /// Only the in-memory store exists; any other value is refused
    #[arg(long)]
    pub storage_backend: Option<String>,
    /// Inbound keep-alive idle timeout (in millis)
    #[arg(long, default_value_t = 5000)]
    pub keep_alive_timeout: u64,
    /// Time (in millis) a client has to send a whole request head, from its first byte; 408
    /// and close after that (0: no limit)
    #[arg(long, default_value_t = 60_000)]
    pub headers_timeout: u64,
    /// Time (in millis) a client has to send a request body, extended by one second for every
    /// --body-min-rate bytes received; 408 and close after that (0: no limit)
    #[arg(long, default_value_t = 60_000)]
    pub body_timeout: u64,
    /// Bytes per second of request body that earn one more second of --body-timeout
    /// (0: --body-timeout is the whole allowance)
    #[arg(long, default_value_t = 1000)]
    pub body_min_rate: u64,
    /// Not supported: listen on a unix socket
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Not supported: API on a unix socket
    #[arg(long)]
    pub api_socket: Option<PathBuf>,
    /// Keep the route table in this file (rewritten atomically on every change) and serve its
    /// routes at start: a proxy restarted after a crash serves every route at once
    #[arg(long)]
    pub routes_file: Option<PathBuf>,
    /// Unix socket (mode 0600) on which a new process takes this one's sockets and routes
    /// over (default: beside --pid-file, `<pid file>.handover`; none without either)
    #[arg(long)]
    pub handover_socket: Option<PathBuf>,
    /// Take the sockets and routes over from the proxy serving this handover socket, which
    /// then drains and exits; this process then serves the same socket for the next upgrade
    #[arg(long, value_name = "HANDOVER_SOCKET")]
    pub take_over: Option<PathBuf>,
    /// Seconds a process that handed its sockets over keeps relaying open websockets and
    /// answering in-flight requests before it exits
    #[arg(long, default_value_t = 600)]
    pub upgrade_grace: u64,
    /// Seconds a request for the hub's route waits while the hub does not listen (a restart)
    /// before it gets a 503 (0: none waits)
    #[arg(long, default_value_t = 0)]
    pub hub_wait: u64,
    /// Requests that may wait for the hub at a time (--hub-wait); those past it get a 503
    #[arg(long, default_value_t = crate::hubwait::DEFAULT_HUB_WAIT_MAX)]
    pub hub_wait_max: usize,
    /// Shared secret of the REST API (environment only, as CHP)
    #[arg(skip)]
    pub auth_token: Option<String>,
}

/// Server-side TLS material for one listener.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub key: PathBuf,
    pub cert: PathBuf,
    pub ca: Option<PathBuf>,
    pub request_cert: bool,
    pub reject_unauthorized: bool,
}

/// Client-side TLS for https targets.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    pub key: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub insecure: bool,
}

/// Everything `run` needs, independent of how it was given.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub ip: String,
    pub port: u16,
    pub api_ip: String,
    pub api_port: u16,
    pub tls: Option<TlsFiles>,
    pub api_tls: Option<TlsFiles>,
    pub client_tls: ClientTls,
    pub default_target: Option<Target>,
    pub error_target: Option<Target>,
    pub error_path: Option<PathBuf>,
    pub redirect_port: Option<u16>,
    pub redirect_to: Option<u16>,
    pub pid_file: Option<PathBuf>,
    pub x_forward: bool,
    pub prepend_path: bool,
    pub include_prefix: bool,
    pub change_origin: bool,
    pub custom_headers: Vec<(HeaderName, HeaderValue)>,
    pub host_routing: bool,
    pub metrics_ip: String,
    pub metrics_port: Option<u16>,
    pub log_level: String,
    pub timeout: Option<Duration>,
    pub proxy_timeout: Option<Duration>,
    pub keep_alive_timeout: Duration,
    /// The whole request head within this, from its first byte (`None`: no limit).
    pub headers_timeout: Option<Duration>,
    /// How long a request body may take ([`BodyLimit`]).
    pub body_limit: BodyLimit,
    pub auth_token: Option<String>,
    /// Threads serving the public port (default: one per core).
    pub workers: Option<usize>,
    /// The routes file (`--routes-file`).
    pub routes_file: Option<PathBuf>,
    /// The control socket for upgrades (`--handover-socket`, or beside the pid file).
    pub handover_socket: Option<PathBuf>,
    /// The control socket of the process to take over from (`--take-over`).
    pub take_over: Option<PathBuf>,
    /// How long a process that handed its sockets over drains (`--upgrade-grace`).
    pub upgrade_grace: Duration,
    /// How long a request for the hub waits for it to listen (`--hub-wait`; `None`: not at all).
    pub hub_wait: Option<Duration>,
    /// How many requests may wait for the hub at a time (`--hub-wait-max`).
    pub hub_wait_max: usize,
}

impl ProxyConfig {
    /// How long a client connection may sit without a request (or, with `--timeout`, without
    /// progress on one) before it is closed.
    pub fn client_idle_timeout(&self) -> Duration {
        self.timeout.unwrap_or(self.keep_alive_timeout)
    }

    /// The bound hyper puts on reading a request head. hyper starts it when a connection
    /// begins waiting for a request, idle time included, so it bounds both.
    pub fn hyper_header_timeout(&self) -> Duration {
        let idle = self.client_idle_timeout();
        self.headers_timeout.map_or(idle, |h| h.min(idle))
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            ip: "127.0.0.1".into(),
            port: 0,
            api_ip: "127.0.0.1".into(),
            api_port: 0,
            tls: None,
            api_tls: None,
            client_tls: ClientTls::default(),
            default_target: None,
            error_target: None,
            error_path: None,
            redirect_port: None,
            redirect_to: None,
            pid_file: None,
            x_forward: true,
            prepend_path: true,
            include_prefix: true,
            change_origin: false,
            custom_headers: Vec::new(),
            host_routing: false,
            metrics_ip: "0.0.0.0".into(),
            metrics_port: None,
            log_level: "info".into(),
            timeout: None,
            proxy_timeout: None,
            keep_alive_timeout: Duration::from_millis(5000),
            headers_timeout: Some(DEFAULT_HEADERS_TIMEOUT),
            body_limit: DEFAULT_BODY_LIMIT,
            auth_token: None,
            workers: None,
            routes_file: None,
            handover_socket: None,
            take_over: None,
            upgrade_grace: DEFAULT_UPGRADE_GRACE,
            hub_wait: None,
            hub_wait_max: crate::hubwait::DEFAULT_HUB_WAIT_MAX,
        }
    }
}

fn server_tls(
    what: &str,
    key: Option<PathBuf>,
    cert: Option<PathBuf>,
    ca: Option<PathBuf>,
    request_cert: bool,
    reject_unauthorized: bool,
) -> Result<Option<TlsFiles>> {
    match (key, cert) {
        (Some(key), Some(cert)) => Ok(Some(TlsFiles {
            key,
            cert,
            ca,
            request_cert,
            reject_unauthorized,
        })),
        (None, None) => {
            if ca.is_some() || request_cert || reject_unauthorized {
                bail!("--{what}-ca/--{what}-request-cert/--{what}-reject-unauthorized need --{what}-key and --{what}-cert");
            }
            Ok(None)
        }
        _ => bail!("--{what}-key and --{what}-cert must be given together"),
    }
}

impl Args {
    /// Check the flags and resolve defaults; refuse the ones we cannot honour.
    pub fn into_config(self) -> Result<ProxyConfig> {
        let unsupported = [
            (
                self.ssl_protocol.is_some(),
                "--ssl-protocol (rustls negotiates TLS 1.2/1.3 itself)",
            ),
            (
                self.ssl_ciphers.is_some(),
                "--ssl-ciphers (rustls uses its own safe cipher suites)",
            ),
            (self.ssl_allow_rc4, "--ssl-allow-rc4 (RC4 is not available)"),
            (
                self.ssl_dhparam.is_some(),
                "--ssl-dhparam (rustls does not use DHE)",
            ),
            (self.auto_rewrite, "--auto-rewrite"),
            (self.protocol_rewrite.is_some(), "--protocol-rewrite"),
            (self.socket.is_some(), "--socket (unix sockets)"),
            (self.api_socket.is_some(), "--api-socket (unix sockets)"),
        ];
        for (given, what) in unsupported {
            if given {
                bail!("nbhub-proxy does not support {what}");
            }
        }
        if let Some(b) = &self.storage_backend {
            bail!("nbhub-proxy has only the in-memory route store; --storage-backend {b:?} is not supported");
        }
        if self.redirect_to.is_some() && self.redirect_port.is_none() {
            bail!("--redirect-to needs --redirect-port");
        }
        let tls = server_tls(
            "ssl",
            self.ssl_key,
            self.ssl_cert,
            self.ssl_ca,
            self.ssl_request_cert,
            self.ssl_reject_unauthorized,
        )?;
        if self.redirect_port.is_some() && tls.is_none() {
            bail!("--redirect-port only makes sense with --ssl-key and --ssl-cert");
        }
        let api_tls = server_tls(
            "api-ssl",
            self.api_ssl_key,
            self.api_ssl_cert,
            self.api_ssl_ca,
            self.api_ssl_request_cert,
            self.api_ssl_reject_unauthorized,
        )?;
        if self.client_ssl_key.is_some() != self.client_ssl_cert.is_some() {
            bail!("--client-ssl-key and --client-ssl-cert must be given together");
        }
        // CHP's --client-ssl-request-cert/-reject-unauthorized make it verify targets against
        // --client-ssl-ca; we always verify unless --insecure, so both are honoured as given.
        let client_tls = ClientTls {
            key: self.client_ssl_key,
            cert: self.client_ssl_cert,
            ca: self.client_ssl_ca,
            insecure: self.insecure,
        };
        let target = |s: Option<String>, what: &str| -> Result<Option<Target>> {
            s.filter(|s| !s.is_empty())
                .map(|s| Target::parse(&s).map_err(anyhow::Error::msg))
                .transpose()
                .with_context(|| format!("--{what}"))
        };
        let mut custom_headers = Vec::new();
        for h in &self.custom_header {
            let (name, value) = h
                .split_once(':')
                .with_context(|| format!("--custom-header {h:?}: expected \"Name: value\""))?;
            custom_headers.push((
                HeaderName::try_from(name.trim())
                    .with_context(|| format!("--custom-header {h:?}"))?,
                HeaderValue::try_from(value.trim())
                    .with_context(|| format!("--custom-header {h:?}"))?,
            ));
        }
        match self.log_level.to_ascii_lowercase().as_str() {
            "debug" | "info" | "warn" | "error" | "trace" => {}
            other => bail!("--log-level {other:?}: expected debug, info, warn or error"),
        }
        let api_port = match self.api_port {
            Some(p) => p,
            None => self
                .port
                .checked_add(1)
                .context("--port 65535 leaves no default --api-port")?,
        };
        // The control socket sits beside the pid file unless given; the one taken over from is
        // served next.
        let handover_socket = self.handover_socket.or_else(|| {
            self.take_over.clone().or_else(|| {
                self.pid_file.as_ref().map(|p| {
                    let mut s = p.as_os_str().to_owned();
                    s.push(".handover");
                    PathBuf::from(s)
                })
            })
        });
        Ok(ProxyConfig {
            routes_file: self.routes_file,
            handover_socket,
            take_over: self.take_over,
            upgrade_grace: Duration::from_secs(self.upgrade_grace),
            hub_wait: (self.hub_wait > 0).then(|| Duration::from_secs(self.hub_wait)),
            hub_wait_max: self.hub_wait_max,
            ip: self.ip,
            port: self.port,
            api_ip: self.api_ip,
            api_port,
            tls,
            api_tls,
            client_tls,
            default_target: target(self.default_target, "default-target")?,
            error_target: target(self.error_target, "error-target")?,
            error_path: self.error_path,
            redirect_port: self.redirect_port,
            redirect_to: self.redirect_to,
            pid_file: self.pid_file,
            x_forward: !self.no_x_forward,
            prepend_path: !self.no_prepend_path,
            include_prefix: !self.no_include_prefix,
            change_origin: self.change_origin,
            custom_headers,
            host_routing: self.host_routing,
            metrics_ip: self.metrics_ip,
            metrics_port: self.metrics_port,
            log_level: self.log_level.to_ascii_lowercase(),
            timeout: self.timeout.map(Duration::from_millis),
            proxy_timeout: self.proxy_timeout.map(Duration::from_millis),
            keep_alive_timeout: Duration::from_millis(self.keep_alive_timeout),
            headers_timeout: millis_or_none(self.headers_timeout),
            body_limit: BodyLimit {
                timeout: millis_or_none(self.body_timeout),
                min_rate: self.body_min_rate,
            },
            auth_token: self.auth_token.filter(|t| !t.is_empty()),
            workers: match std::env::var("NBHUB_PROXY_WORKERS") {
                Ok(v) => Some(v.parse().ok().filter(|&n: &usize| n > 0).ok_or_else(|| {
                    anyhow::anyhow!("NBHUB_PROXY_WORKERS must be a positive number, not {v:?}")
                })?),
                Err(_) => None,
            },
        })
    }
}

/// Resolve CHP's ip spelling to something we can bind: '' and '*' mean all interfaces,
/// `localhost` the loopback.
pub fn bind_host(ip: &str) -> &str {
    match ip {
        "" | "*" => "0.0.0.0",
        "localhost" => "127.0.0.1",
        other => other.trim_start_matches('[').trim_end_matches(']'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ProxyConfig> {
        let mut v = vec!["nbhub-proxy"];
        v.extend_from_slice(args);
        Args::try_parse_from(v)?.into_config()
    }

    #[test]
    fn jupyterhub_command_line() {
        let c = parse(&[
            "--ip",
            "127.0.0.1",
            "--port",
            "18000",
            "--api-ip",
            "127.0.0.1",
            "--api-port",
            "18001",
            "--error-target",
            "http://127.0.0.1:18181/hub/error",
            "--log-level",
            "info",
        ])
        .expect("parse");
        assert_eq!(c.port, 18000);
        assert_eq!(c.api_port, 18001);
        assert_eq!(c.error_target.expect("et").path, "/hub/error");
        assert!(c.x_forward && c.include_prefix && c.prepend_path);
    }

    #[test]
    fn defaults_and_refusals() {
        let c = parse(&["--port", "9000"]).expect("parse");
        assert_eq!(c.api_port, 9001);
        assert_eq!(c.api_ip, "localhost");
        assert!(parse(&["--ssl-ciphers", "RC4"]).is_err());
        assert!(parse(&["--storage-backend", "redis"]).is_err());
        assert!(parse(&["--ssl-key", "k.pem"]).is_err());
        assert!(parse(&["--no-such-flag"]).is_err());
        let c = parse(&["--custom-header", "X-A: b", "--no-x-forward"]).expect("parse");
        assert_eq!(c.custom_headers[0].0, "x-a");
        assert!(!c.x_forward);
    }

    #[test]
    fn hub_wait_is_off_unless_given() {
        let c = parse(&[]).expect("parse");
        assert_eq!(c.hub_wait, None);
        assert_eq!(c.hub_wait_max, crate::hubwait::DEFAULT_HUB_WAIT_MAX);
        let c = parse(&["--hub-wait", "30", "--hub-wait-max", "10"]).expect("parse");
        assert_eq!(c.hub_wait, Some(Duration::from_secs(30)));
        assert_eq!(c.hub_wait_max, 10);
        assert_eq!(parse(&["--hub-wait", "0"]).expect("parse").hub_wait, None);
    }

    #[test]
    fn request_deadlines() {
        let c = parse(&[]).expect("parse");
        assert_eq!(c.headers_timeout, Some(DEFAULT_HEADERS_TIMEOUT));
        assert_eq!(c.body_limit, DEFAULT_BODY_LIMIT);
        assert_eq!(
            (c.headers_timeout, c.body_limit),
            (
                ProxyConfig::default().headers_timeout,
                ProxyConfig::default().body_limit
            )
        );
        let c = parse(&[
            "--headers-timeout",
            "3000",
            "--body-timeout",
            "0",
            "--body-min-rate",
            "0",
        ])
        .expect("parse");
        assert_eq!(c.headers_timeout, Some(Duration::from_secs(3)));
        assert_eq!(c.body_limit, BodyLimit::NONE);
    }
}
