//! The sections of the configuration file that are the hub's own (`[hub]`, `[authenticator]`,
//! `[proxy]`, `[[services]]`, `[[roles]]`), each a serde type with its defaults: the keys are
//! JupyterHub's trait names in snake case, unknown keys are errors.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::*;

/// `[hub]`: where things listen, where state lives, sessions and API paging.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    /// The public URL; the proxy listens here.
    pub bind_url: HttpUrl,
    /// Where the hub itself listens (behind the proxy).
    pub hub_bind_url: HttpUrl,
    /// URL prefix of the whole site; always starts and ends with `/`.
    pub base_url: BaseUrl,
    /// Database, cookie secret and proxy token live here.
    pub data_dir: PathBuf,
    /// Empty: an SQLite file `nbhub.sqlite` in data_dir; or `sqlite://…`, `postgresql://…`.
    pub db_url: String,
    /// How long a login cookie is accepted.
    pub cookie_max_age_days: u32,
    /// Default page size of paginated API lists.
    pub api_page_default_limit: u32,
    /// Largest page size a client may ask for.
    pub api_page_max_limit: u32,
    /// `error`, `warn`, `info`, `debug` or `trace` (RUST_LOG overrides).
    pub log_level: LogLevel,
    /// How single-user servers reach the hub API; empty: hub_bind_url.
    pub hub_connect_url: String,
    /// Let users run more than one server, each with a name.
    pub allow_named_servers: bool,
    /// Most named servers one user may have; 0: no limit.
    pub named_server_limit_per_user: u32,
    /// Most servers starting at once; further starts wait in the spawn queue. 0: no limit.
    pub concurrent_spawn_limit: u32,
    /// Most starts waiting in the spawn queue; further ones get 429. 0: no queue (429 at
    /// `concurrent_spawn_limit`, as JupyterHub).
    pub spawn_queue_limit: u32,
    /// Most servers running at once; further requests get 429. 0: no limit.
    pub active_server_limit: u32,
    /// How long `POST …/server` waits for the server before answering 202.
    pub slow_spawn_timeout: u64,
    /// How long `DELETE …/server` waits for the stop before answering 202.
    pub slow_stop_timeout: u64,
    /// Stop all user servers when the hub stops (JupyterHub's cleanup_servers).
    pub cleanup_servers: bool,
    /// After login, go to the user's running server (else /hub/home).
    pub redirect_to_server: bool,
    /// `/hub/metrics` needs the `read:metrics` scope (false: anyone may read it).
    pub authenticate_prometheus: bool,
    /// Folders searched for page templates before the built-in ones (JupyterHub's
    /// template_paths); the built-ins stay reachable as `templates/<name>`.
    pub template_paths: Vec<PathBuf>,
    /// Extra variables every page template sees.
    pub template_vars: serde_json::Map<String, serde_json::Value>,
    /// An image shown as the logo in the navigation bar; empty: the built-in one.
    pub logo_file: PathBuf,
    /// Seconds a client of the hub's own listener has to send a request head, the wait for it
    /// on a kept-alive connection included; then the connection is closed. 0: no limit.
    pub request_header_timeout: u64,
    /// Seconds a client of the hub's own listener has to send a request body; then 408 and
    /// the connection is closed. 0: no limit.
    pub request_body_timeout: u64,
    /// A TOML file of maintenance notices, one table per system (`[juwels] message = "…"`,
    /// optional `until` as RFC 3339), re-read when it changes; empty: none.
    pub maintenance_file: PathBuf,
    /// JupyterHub 5.1's `token_expires_in_max_seconds`: the longest expiry of a token a user
    /// requests (API, token page); a request without one gets this one. 0: no limit.
    pub token_expires_in_max_seconds: u64,
    /// CORS for `/hub/api`: the origin (or `*`) sent as `Access-Control-Allow-Origin`, and
    /// preflight `OPTIONS` answered for it; empty: only `/hub/api/` itself allows any origin.
    pub allow_origin: String,
    /// JupyterHub's `JUPYTERHUB_SERVER_SPAWN_DURATION_SECONDS_BUCKETS`: the upper bounds of
    /// `jupyterhub_server_spawn_duration_seconds`' buckets; empty: JupyterHub's defaults.
    pub server_spawn_duration_seconds_buckets: Vec<f64>,
    /// `JUPYTERHUB_SERVER_STOP_DURATION_SECONDS_BUCKETS`: the same for
    /// `jupyterhub_server_stop_seconds`; empty: Prometheus' defaults.
    pub server_stop_duration_seconds_buckets: Vec<f64>,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            bind_url: HttpUrl::parse("http://127.0.0.1:8000").expect("valid default"),
            hub_bind_url: HttpUrl::parse("http://127.0.0.1:8081").expect("valid default"),
            base_url: BaseUrl("/".into()),
            data_dir: PathBuf::from("."),
            db_url: String::new(),
            cookie_max_age_days: 14,
            api_page_default_limit: 50,
            api_page_max_limit: 200,
            log_level: LogLevel::Info,
            hub_connect_url: String::new(),
            allow_named_servers: false,
            named_server_limit_per_user: 0,
            concurrent_spawn_limit: 100,
            spawn_queue_limit: 1000,
            active_server_limit: 0,
            slow_spawn_timeout: 10,
            slow_stop_timeout: 10,
            cleanup_servers: false,
            redirect_to_server: true,
            authenticate_prometheus: true,
            template_paths: Vec::new(),
            template_vars: serde_json::Map::new(),
            logo_file: PathBuf::new(),
            request_header_timeout: 60,
            request_body_timeout: 60,
            maintenance_file: PathBuf::new(),
            token_expires_in_max_seconds: 0,
            allow_origin: String::new(),
            server_spawn_duration_seconds_buckets: Vec::new(),
            server_stop_duration_seconds_buckets: Vec::new(),
        }
    }
}

/// `[authenticator]`: who may log in.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthenticatorConfig {
    pub kind: AuthenticatorKind,
    /// dummy: the shared password (empty: any password).
    pub password: String,
    pub admin_users: Vec<String>,
    /// Empty and `allow_all = false`: only admin_users and users already in the database.
    pub allowed_users: Vec<String>,
    pub allow_all: bool,
    /// Never allowed to log in, whatever else says.
    pub blocked_users: Vec<String>,
    /// pam: the PAM service to authenticate against.
    pub pam_service: String,
    /// native: show a sign-up page.
    pub enable_signup: bool,
    /// native: sign-ups are approved at once instead of waiting for an admin.
    pub open_signup: bool,
    /// native: shortest password accepted at sign-up.
    pub minimum_password_length: u32,
    /// Failed logins of one client for one name before its further attempts are slowed down
    /// (other clients are not: nobody can lock an account out).
    pub failed_login_threshold: u32,
    // generic-oauth: OAuthenticator's GenericOAuthenticator keys, same names and meaning.
    pub client_id: String,
    pub client_secret: String,
    /// A file holding the client secret (kept out of the config file); wins over client_secret.
    pub client_secret_file: PathBuf,
    /// "" = the origin the browser uses + `<base_url>hub/oauth_callback`.
    pub oauth_callback_url: String,
    /// The provider's issuer; the endpoints below default from its discovery document.
    pub issuer: String,
    pub authorize_url: String,
    pub token_url: String,
    pub userdata_url: String,
    pub scope: Vec<String>,
    /// The claim (a dotted path into the claims) whose value is the user name.
    pub username_claim: String,
    /// The login button's label: "Sign in with {login_service}".
    pub login_service: String,
    pub allowed_groups: Vec<String>,
    pub admin_groups: Vec<String>,
    /// Where the groups are in the claims (a dotted path).
    pub claim_groups_key: String,
    /// OAuthenticator 16's newer spelling: `oauth_user.<path>`; wins over claim_groups_key.
    pub auth_state_groups_key: String,
    /// The hub's groups of a user follow the provider's at each sign-in.
    pub manage_groups: bool,
    pub allow_existing_users: bool,
    /// Sent to the provider's token endpoint with HTTP Basic auth (else in the form body).
    pub basic_auth: bool,
    /// After the hub's logout, send the browser here (the provider's end-session endpoint).
    pub logout_redirect_url: String,
    /// Skip the login page: go straight to the provider.
    pub auto_login: bool,
    /// More query parameters for the authorization request (e.g. `prompt`, `kc_idp_hint`).
    pub extra_authorize_params: BTreeMap<String, String>,
    /// `@domain` endings stripped from the user name claim (`"*"`: any domain).
    pub username_strip_domains: Vec<String>,
    /// JupyterHub's `username_map`: a provider's name (after the rules above) → the hub's name.
    pub username_map: BTreeMap<String, String>,
    /// Keep the provider's tokens and userinfo (auth_state), encrypted with
    /// `JUPYTERHUB_CRYPT_KEY`; the hub does not start without a usable key.
    pub enable_auth_state: bool,
    /// Refresh the tokens before a spawn when they are older than `auth_refresh_age`.
    pub refresh_pre_spawn: bool,
    /// Seconds after which a signed-in user's tokens are refreshed (at the next request or
    /// spawn); 0: never at requests, always before a spawn with `refresh_pre_spawn`.
    pub auth_refresh_age: u64,
    /// Environment variables for a user's server, from their auth_state: NAME = "dotted.path"
    /// (e.g. `OIDC_ACCESS_TOKEN = "access_token"`). Nothing is passed unless named here.
    pub auth_state_env: BTreeMap<String, String>,
    /// Refresh the tokens before a server stops (JupyterHub 5.4's `refresh_pre_stop`): a user
    /// whose sign-in cannot be refreshed must sign in again to stop it; an admin's stop goes on.
    pub refresh_pre_stop: bool,
    /// shared-password: the password of every user not in admin_users (8 characters at least;
    /// empty: no such user can log in).
    pub user_password: String,
    /// shared-password: the password of admin_users, and only theirs (32 characters at least,
    /// not user_password; empty: admins cannot log in).
    pub admin_password: String,
}

impl AuthenticatorConfig {
    /// generic-oauth: where the groups are in the claims, from either groups key.
    pub fn groups_claim_path(&self) -> Option<&str> {
        if self.auth_state_groups_key.is_empty() {
            return Some(&self.claim_groups_key);
        }
        self.auth_state_groups_key
            .strip_prefix("oauth_user.")
            .filter(|p| !p.is_empty())
    }
}

impl Default for AuthenticatorConfig {
    fn default() -> Self {
        AuthenticatorConfig {
            kind: AuthenticatorKind::Dummy,
            password: String::new(),
            admin_users: Vec::new(),
            allowed_users: Vec::new(),
            allow_all: false,
            blocked_users: Vec::new(),
            pam_service: "login".into(),
            enable_signup: false,
            open_signup: false,
            minimum_password_length: 8,
            failed_login_threshold: 3,
            client_id: String::new(),
            client_secret: String::new(),
            client_secret_file: PathBuf::new(),
            oauth_callback_url: String::new(),
            issuer: String::new(),
            authorize_url: String::new(),
            token_url: String::new(),
            userdata_url: String::new(),
            scope: vec!["openid".into(), "profile".into(), "email".into()],
            username_claim: "preferred_username".into(),
            login_service: "OpenID Connect".into(),
            allowed_groups: Vec::new(),
            admin_groups: Vec::new(),
            claim_groups_key: "groups".into(),
            auth_state_groups_key: String::new(),
            manage_groups: false,
            allow_existing_users: false,
            basic_auth: true,
            logout_redirect_url: String::new(),
            auto_login: false,
            extra_authorize_params: BTreeMap::new(),
            username_strip_domains: Vec::new(),
            username_map: BTreeMap::new(),
            enable_auth_state: false,
            refresh_pre_spawn: false,
            auth_refresh_age: 300,
            auth_state_env: BTreeMap::new(),
            refresh_pre_stop: false,
            user_password: String::new(),
            admin_password: String::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthenticatorKind {
    Dummy,
    Native,
    Pam,
    /// OpenID Connect / OAuth 2 sign-in through an identity provider (`auth/oidc.rs`).
    #[serde(rename = "generic-oauth", alias = "oidc")]
    GenericOauth,
    /// JupyterHub 5.1's SharedPasswordAuthenticator: `user_password` for users,
    /// `admin_password` for admin_users.
    #[serde(rename = "shared-password")]
    SharedPassword,
}

impl AuthenticatorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthenticatorKind::Dummy => "dummy",
            AuthenticatorKind::Native => "native",
            AuthenticatorKind::Pam => "pam",
            AuthenticatorKind::GenericOauth => "generic-oauth",
            AuthenticatorKind::SharedPassword => "shared-password",
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// `[proxy]`: the proxy in front of the hub.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// managed: the hub starts nbhub-proxy itself; external: a proxy someone else runs
    /// (nbhub-proxy or configurable-http-proxy).
    pub kind: ProxyKind,
    /// The proxy's REST API.
    pub api_url: HttpUrl,
    /// external: the proxy's CONFIGPROXY_AUTH_TOKEN. managed: empty means one is generated
    /// and kept in data_dir.
    pub auth_token: String,
    /// managed: the proxy command; empty: nbhub-proxy next to the nbhub binary.
    pub command: Vec<String>,
    /// Seconds between checks that the proxy runs and has every route.
    pub check_running_interval: u64,
    /// Stop a managed proxy when the hub stops (else it keeps serving across hub restarts).
    pub cleanup: bool,
    /// Seconds a request for `/hub/` waits at the managed proxy while the hub does not listen
    /// (a restart), before the 503 it would get at once (0: none waits).
    pub hub_wait: u64,
    /// Requests that may wait for the hub at a time (`hub_wait`); more get the 503 at once.
    pub hub_wait_max: usize,
    /// external: several proxies (their REST APIs), each kept with every route; instead of
    /// `api_url`, which is the one-proxy case.
    pub api_urls: Vec<HttpUrl>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            kind: ProxyKind::Managed,
            api_url: HttpUrl::parse("http://127.0.0.1:8001").expect("valid default"),
            auth_token: String::new(),
            command: Vec::new(),
            check_running_interval: 5,
            cleanup: false,
            hub_wait: 30,
            hub_wait_max: 2000,
            api_urls: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProxyKind {
    Managed,
    External,
}

/// `[[services]]`: an external service with a fixed API token.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    pub name: String,
    /// The service's API token (at least 8 characters); stored hashed.
    pub api_token: String,
    /// Grants the admin role (prefer a role with just the scopes it needs).
    pub admin: bool,
    /// Where the service listens; the proxy routes `/services/<name>/` there.
    pub url: String,
    /// Listed on the home page.
    pub display: bool,
    /// Free-form metadata shown by `GET /hub/api/services`.
    pub info: BTreeMap<String, serde_json::Value>,
    /// A managed service: the command the hub starts (and restarts) with JUPYTERHUB_* variables.
    pub command: Vec<String>,
    /// Extra environment variables of a managed service.
    pub environment: BTreeMap<String, String>,
    /// Working directory of a managed service; empty: data_dir.
    pub cwd: String,
    /// Skip the OAuth consent page for this service.
    pub oauth_no_confirm: bool,
}

/// `[[roles]]`: a named set of scopes given to users, groups and services.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RoleConfig {
    pub name: String,
    pub description: String,
    pub scopes: Vec<String>,
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub services: Vec<String>,
}
