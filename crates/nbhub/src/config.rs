//! Configuration: one TOML file whose keys are JupyterHub's trait names in snake case, grouped
//! by class, overridden by `NBHUB_SECTION__KEY` environment variables.
//!
//! Layers, later wins: built-in defaults ← the TOML file ← environment. Unknown keys are errors,
//! and every error names the key, where it came from (file and line, or the variable) and what is
//! allowed, so an admin can fix it without reading the source.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub hub: HubConfig,
    pub authenticator: AuthenticatorConfig,
    /// What every spawner shares; `[local]` and `[slurm]` hold each spawner's own keys.
    pub spawner: nbhub_spawner::SpawnerConfig,
    pub local: nbhub_spawner::LocalConfig,
    pub slurm: nbhub_spawner::SlurmConfig,
    pub proxy: ProxyConfig,
    pub services: Vec<ServiceConfig>,
    pub roles: Vec<RoleConfig>,
}

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
}

impl AuthenticatorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthenticatorKind::Dummy => "dummy",
            AuthenticatorKind::Native => "native",
            AuthenticatorKind::Pam => "pam",
            AuthenticatorKind::GenericOauth => "generic-oauth",
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

/// An absolute `http://` or `https://` URL with a host.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl(url::Url);

impl HttpUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        let url = url::Url::parse(s).map_err(|e| format!("{s:?} is not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{s:?} must start with http:// or https://"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("{s:?} has no host"));
        }
        Ok(HttpUrl(url))
    }
    pub fn url(&self) -> &url::Url {
        &self.0
    }
    pub fn host(&self) -> &str {
        self.0.host_str().unwrap_or("127.0.0.1")
    }
    pub fn port(&self) -> u16 {
        self.0.port_or_known_default().unwrap_or(80)
    }
    pub fn is_https(&self) -> bool {
        self.0.scheme() == "https"
    }
    /// `scheme://host:port` with no path.
    pub fn origin(&self) -> String {
        self.0.origin().ascii_serialization()
    }
    /// The `host:port` to bind to; a bracketed IPv6 host is unbracketed.
    pub fn socket_addr_string(&self) -> String {
        let host = self.host().trim_start_matches('[').trim_end_matches(']');
        if host.contains(':') {
            format!("[{host}]:{}", self.port())
        } else {
            format!("{host}:{}", self.port())
        }
    }
}

impl fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Print as written by an admin: no trailing `/` on a bare origin.
        let s = self.0.as_str();
        f.write_str(if self.0.path() == "/" {
            s.trim_end_matches('/')
        } else {
            s
        })
    }
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HttpUrl::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for HttpUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A URL path prefix such as `/` or `/jupyter/`; normalised to start and end with `/`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BaseUrl(String);

impl BaseUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') {
            return Err(format!("{s:?} must be a path starting with '/'"));
        }
        if s.contains(['?', '#', ' ', '\\']) || s.contains("//") {
            return Err(format!(
                "{s:?} must be a plain path such as \"/\" or \"/jupyter/\""
            ));
        }
        let mut s = s.to_string();
        if !s.ends_with('/') {
            s.push('/');
        }
        Ok(BaseUrl(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for BaseUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        BaseUrl::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A configuration that could not be loaded; the message is for the admin.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Environment variables that override the file: `NBHUB_HUB__BIND_URL=…`.
pub const ENV_PREFIX: &str = "NBHUB_";

impl Config {
    /// Load `path` (if given) and apply the environment overrides from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let (text, origin) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    ConfigError(format!("cannot read config file {}: {e}", p.display()))
                })?;
                (text, p.display().to_string())
            }
            None => (String::new(), "<defaults>".to_string()),
        };
        let mut config = Config::from_toml_str(&text, &origin)?;
        // Only NBHUB_<SECTION>__<KEY> variables are config; other NBHUB_* names (the test and
        // demo scripts' own) are left alone.
        let overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__"))
            .collect();
        if !overrides.is_empty() {
            config = config.with_env_overrides(&overrides)?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Parse a TOML document; errors carry the key path, file and line.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(de).map_err(|err| {
            let key = err.path().to_string();
            let inner = err.into_inner();
            let position = inner
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!(", line {line}")
                })
                .unwrap_or_default();
            let key = if key == "." {
                String::new()
            } else {
                format!("key `{key}`: ")
            };
            let message = inner
                .message()
                .replace("expected u32", "expected a whole number (integer)")
                .replace("expected u64", "expected a whole number (integer)");
            ConfigError(format!("{origin}{position}: {key}{message}"))
        })
    }

    fn with_env_overrides(&self, overrides: &[(String, String)]) -> Result<Config, ConfigError> {
        let mut doc = toml::Value::try_from(self)
            .map_err(|e| ConfigError(format!("internal: cannot re-serialise config: {e}")))?;
        for (var, raw) in overrides {
            let rest = &var[ENV_PREFIX.len()..];
            let Some((section, key)) = rest.split_once("__") else {
                return Err(ConfigError(format!(
                    "environment variable {var}: expected {ENV_PREFIX}SECTION__KEY, e.g. NBHUB_HUB__BIND_URL"
                )));
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            let table = doc
                .get_mut(&section)
                .and_then(toml::Value::as_table_mut)
                .ok_or_else(|| {
                    ConfigError(format!(
                        "environment variable {var}: unknown section [{section}]; sections that take variables: hub, authenticator, spawner, local, slurm, proxy"
                    ))
                })?;
            if !table.contains_key(&key) {
                let allowed: Vec<&str> = table.keys().map(String::as_str).collect();
                return Err(ConfigError(format!(
                    "environment variable {var}: unknown key `{section}.{key}`; allowed: {}",
                    allowed.join(", ")
                )));
            }
            // A key whose value is text takes the variable as it is (no quoting needed); other
            // keys read it as TOML, so numbers, booleans and arrays work.
            let value = if table[&key].is_str() {
                toml::Value::String(raw.clone())
            } else {
                toml::from_str::<toml::Table>(&format!("v = {raw}"))
                    .ok()
                    .and_then(|mut t| t.remove("v"))
                    .unwrap_or_else(|| toml::Value::String(raw.clone()))
            };
            table.insert(key, value);
        }
        let text = toml::to_string(&doc)
            .map_err(|e| ConfigError(format!("internal: cannot re-serialise config: {e}")))?;
        Config::from_toml_str(&text, "environment (NBHUB_* variables)")
    }

    /// Checks that span several keys, or that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let h = &self.hub;
        if h.api_page_default_limit == 0 || h.api_page_max_limit == 0 {
            return Err(ConfigError(
                "key `hub.api_page_default_limit`/`hub.api_page_max_limit`: must be at least 1"
                    .into(),
            ));
        }
        if !h.hub_connect_url.is_empty() {
            HttpUrl::parse(&h.hub_connect_url)
                .map_err(|e| ConfigError(format!("key `hub.hub_connect_url`: {e}")))?;
        }
        self.spawner.validate().map_err(ConfigError)?;
        self.slurm.validate().map_err(ConfigError)?;
        if self.authenticator.kind == AuthenticatorKind::GenericOauth {
            self.validate_generic_oauth()?;
        }
        self.validate_auth_state()?;
        if self.proxy.kind == ProxyKind::External && self.proxy.auth_token.is_empty() {
            return Err(ConfigError(
                "key `proxy.auth_token`: an external proxy needs its CONFIGPROXY_AUTH_TOKEN here"
                    .into(),
            ));
        }
        if h.cookie_max_age_days == 0 {
            return Err(ConfigError(
                "key `hub.cookie_max_age_days`: must be at least 1".into(),
            ));
        }
        if !h.db_url.is_empty()
            && !["sqlite:", "postgres://", "postgresql://"]
                .iter()
                .any(|p| h.db_url.starts_with(p))
        {
            return Err(ConfigError(format!(
                "key `hub.db_url`: {:?} is not supported; use \"\" (SQLite in data_dir), sqlite://PATH or postgresql://USER@HOST/DB",
                crate::db::redact_url(&h.db_url)
            )));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in self.services.iter().enumerate() {
            if !crate::names::is_valid_name(&s.name) {
                return Err(ConfigError(format!(
                    "key `services[{i}].name`: {:?} is not a valid service name (letters, digits, '-', '_', '.', at most 255)",
                    s.name
                )));
            }
            if !names.insert(&s.name) {
                return Err(ConfigError(format!(
                    "key `services[{i}].name`: service {:?} is defined twice",
                    s.name
                )));
            }
            if !s.api_token.is_empty() && !(8..=255).contains(&s.api_token.len()) {
                return Err(ConfigError(format!(
                    "key `services[{i}].api_token`: must be 8 to 255 characters long"
                )));
            }
            if !s.url.is_empty() {
                HttpUrl::parse(&s.url)
                    .map_err(|e| ConfigError(format!("key `services[{i}].url`: {e}")))?;
            }
        }
        let mut role_names = std::collections::BTreeSet::new();
        for (i, r) in self.roles.iter().enumerate() {
            if r.name.is_empty() {
                return Err(ConfigError(format!(
                    "key `roles[{i}].name`: a role needs a name"
                )));
            }
            if !role_names.insert(&r.name) {
                return Err(ConfigError(format!(
                    "key `roles[{i}].name`: role {:?} is defined twice",
                    r.name
                )));
            }
            for (j, scope) in r.scopes.iter().enumerate() {
                crate::auth::scopes::validate_scope(scope)
                    .map_err(|e| ConfigError(format!("key `roles[{i}].scopes[{j}]`: {e}")))?;
            }
            for (j, svc) in r.services.iter().enumerate() {
                if !self.services.iter().any(|s| &s.name == svc) {
                    return Err(ConfigError(format!(
                        "key `roles[{i}].services[{j}]`: no [[services]] entry is named {svc:?}"
                    )));
                }
            }
        }
        Ok(())
    }

    fn validate_generic_oauth(&self) -> Result<(), ConfigError> {
        let a = &self.authenticator;
        let err =
            |key: &str, msg: &str| Err(ConfigError(format!("key `authenticator.{key}`: {msg}")));
        if a.client_id.is_empty() {
            return err(
                "client_id",
                "kind = \"generic-oauth\" needs the client id registered at the provider",
            );
        }
        if a.client_secret.is_empty() && a.client_secret_file.as_os_str().is_empty() {
            return err(
                "client_secret",
                "kind = \"generic-oauth\" needs client_secret or client_secret_file",
            );
        }
        for (key, value) in [
            ("issuer", &a.issuer),
            ("authorize_url", &a.authorize_url),
            ("token_url", &a.token_url),
            ("userdata_url", &a.userdata_url),
            ("oauth_callback_url", &a.oauth_callback_url),
            ("logout_redirect_url", &a.logout_redirect_url),
        ] {
            if !value.is_empty() {
                if let Err(e) = HttpUrl::parse(value) {
                    return err(key, &e);
                }
            }
        }
        if a.issuer.is_empty() && (a.authorize_url.is_empty() || a.token_url.is_empty()) {
            return err(
                "issuer",
                "kind = \"generic-oauth\" needs the provider's issuer (its endpoints are then discovered), or authorize_url and token_url (and userdata_url)",
            );
        }
        if a.issuer.is_empty() && a.userdata_url.is_empty() {
            return err(
                "userdata_url",
                "without an issuer the ID token cannot be verified, so the user's claims come from userdata_url: set it (or set issuer)",
            );
        }
        if !a.auth_state_groups_key.is_empty() && a.groups_claim_path().is_none() {
            return err(
                "auth_state_groups_key",
                "only \"oauth_user.<claim path>\" is understood (the provider's userinfo and ID token claims)",
            );
        }
        if a.username_claim.is_empty() {
            return err(
                "username_claim",
                "must name a claim, e.g. \"preferred_username\"",
            );
        }
        Ok(())
    }

    fn validate_auth_state(&self) -> Result<(), ConfigError> {
        let a = &self.authenticator;
        let err =
            |key: &str, msg: String| Err(ConfigError(format!("key `authenticator.{key}`: {msg}")));
        if !a.enable_auth_state {
            if a.refresh_pre_spawn {
                return err(
                    "refresh_pre_spawn",
                    "needs enable_auth_state = true (the tokens to refresh are kept in auth_state)"
                        .into(),
                );
            }
            if !a.auth_state_env.is_empty() {
                return err(
                    "auth_state_env",
                    "needs enable_auth_state = true (the values come from auth_state)".into(),
                );
            }
        }
        for (name, path) in &a.auth_state_env {
            let shaped = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !shaped || name.len() > 128 {
                return err(
                    "auth_state_env",
                    format!("{name:?} is not an environment variable name (A-Z, 0-9, _)"),
                );
            }
            if name.starts_with("JUPYTERHUB_") || name.starts_with("JPY_") {
                return err(
                    "auth_state_env",
                    format!(
                        "{name:?} would override one of the hub's own JUPYTERHUB_*/JPY_* variables"
                    ),
                );
            }
            if path.is_empty() || path.len() > 256 {
                return err(
                    "auth_state_env",
                    format!("{name}: give a key of auth_state, e.g. \"access_token\" or \"oauth_user.email\""),
                );
            }
        }
        for (k, v) in &a.extra_authorize_params {
            const OURS: [&str; 8] = [
                "response_type",
                "client_id",
                "redirect_uri",
                "scope",
                "state",
                "nonce",
                "code_challenge",
                "code_challenge_method",
            ];
            if OURS.contains(&k.as_str()) {
                return err(
                    "extra_authorize_params",
                    format!("{k:?} is set by the hub itself"),
                );
            }
            if k.is_empty() || v.chars().any(char::is_control) {
                return err(
                    "extra_authorize_params",
                    format!("{k:?}: a name and a value without control characters"),
                );
            }
        }
        for d in &a.username_strip_domains {
            if d.is_empty() || d.contains('@') || d.chars().any(char::is_whitespace) {
                return err(
                    "username_strip_domains",
                    format!("{d:?}: give domains without '@' (\"example.org\"), or \"*\""),
                );
            }
        }
        for (from, to) in &a.username_map {
            if !crate::names::is_valid_name(to) {
                return err(
                    "username_map",
                    format!("{from:?} maps to {to:?}, which is not a valid user name"),
                );
            }
        }
        Ok(())
    }

    /// Where the SQLite file or the PostgreSQL server is.
    pub fn database_url(&self) -> String {
        if self.hub.db_url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.hub.data_dir.join("nbhub.sqlite").display()
            )
        } else {
            self.hub.db_url.clone()
        }
    }
}

/// A complete, commented configuration with every key at its default. Saved unchanged it is a
/// valid config (a test checks that, and that no key is missing).
pub fn generate_config() -> String {
    let d = Config::default();
    let (h, a, px) = (&d.hub, &d.authenticator, &d.proxy);
    let list = |v: &[String]| format!("{v:?}");
    format!(
        r#"# nbhub configuration. Every key is shown with its default value.
# Keys are JupyterHub's trait names in snake case, grouped by class. Any key can be overridden by
# an environment variable NBHUB_<SECTION>__<KEY>, e.g. NBHUB_HUB__BIND_URL=http://0.0.0.0:8000

[hub]
# The public URL: the proxy listens here and users browse to it.
bind_url = "{bind_url}"
# Where the hub itself listens, behind the proxy.
hub_bind_url = "{hub_bind_url}"
# URL prefix of the whole site, e.g. "/jupyter/".
base_url = "{base_url}"
# The database (SQLite), cookie secret and proxy token live here.
data_dir = "{data_dir}"
# "" = SQLite file nbhub.sqlite in data_dir; or "postgresql://user:password@host/dbname".
db_url = "{db_url}"
# How long a login is remembered.
cookie_max_age_days = {cookie_max_age_days}
# Page size of paginated API lists, and the largest a client may ask for.
api_page_default_limit = {api_page_default_limit}
api_page_max_limit = {api_page_max_limit}
# error | warn | info | debug | trace (RUST_LOG overrides).
log_level = "{log_level}"
# How single-user servers reach the hub API; "" = hub_bind_url. Set it when servers run on
# other machines (e.g. Slurm compute nodes): "http://login-node.example:8081".
hub_connect_url = "{hub_connect_url}"
# Let users run several servers, each with a name (/user/<name>/<server>/).
allow_named_servers = {allow_named_servers}
# Most named servers per user; 0 = no limit.
named_server_limit_per_user = {named_server_limit_per_user}
# Most servers starting at once (more wait in the spawn queue, first come, first served);
# 0 = no limit.
concurrent_spawn_limit = {concurrent_spawn_limit}
# Most starts waiting in the spawn queue (more get 429); 0 = no queue: 429 at the limit.
spawn_queue_limit = {spawn_queue_limit}
# Most servers running at once (more get 429); 0 = no limit.
active_server_limit = {active_server_limit}
# Seconds the start/stop API calls wait before answering 202 (still in progress).
slow_spawn_timeout = {slow_spawn_timeout}
slow_stop_timeout = {slow_stop_timeout}
# Stop every user server when the hub stops (by default servers keep running and the next hub
# adopts them).
cleanup_servers = {cleanup_servers}
# After login, go straight to the user's running server.
redirect_to_server = {redirect_to_server}
# /hub/metrics (Prometheus) needs a token with the read:metrics scope; false = open to anyone.
authenticate_prometheus = {authenticate_prometheus}
# Folders searched for page templates first (page.html, login.html, …; Jinja syntax, JupyterHub's
# names and blocks); an override can {{% extends "templates/page.html" %}}.
template_paths = []
# An image for the navigation bar's logo; "" = the built-in one.
logo_file = ""
# Extra variables for every page template, e.g. {{ announcement = "Maintenance on Friday" }}.
template_vars = {{}}
# Seconds a client of the hub's own listener (hub_bind_url) has to send a request's head, the
# wait for it on a kept-alive connection included, and its body (at most 2 MiB); then the
# connection is closed (with a 408 for a late body), so that slow clients cannot hold it.
# 0 = no limit. Keep the head's above 40: nbhub-proxy reuses idle connections for up to 37 s.
request_header_timeout = {request_header_timeout}
request_body_timeout = {request_body_timeout}

[authenticator]
# dummy (a shared password: demos and tests only) | native (accounts in the hub's database) |
# pam (the machine's Unix accounts; the hub must run as root or be able to read /etc/shadow) |
# generic-oauth (an OpenID Connect identity provider; keys below).
kind = "{kind}"
# dummy: the shared password; "" accepts any password.
password = "{password}"
# These users are admins.
admin_users = {admin_users}
# Who may log in. Empty, with allow_all = false: only admin_users and users already in the database.
allowed_users = {allowed_users}
# Let anyone who authenticates log in.
allow_all = {allow_all}
# Never let these users log in.
blocked_users = {blocked_users}
# pam: the PAM service (a file in /etc/pam.d).
pam_service = "{pam_service}"
# native: offer a sign-up page at /hub/signup.
enable_signup = {enable_signup}
# native: approve sign-ups at once; otherwise an admin approves them at /hub/authorize.
open_signup = {open_signup}
# native: the shortest password accepted at sign-up.
minimum_password_length = {minimum_password_length}
# Failed logins of one client (address) for one name after which that client must wait before
# trying the name again, longer each time. Other clients are never delayed by its failures.
failed_login_threshold = {failed_login_threshold}
# generic-oauth (alias oidc): sign-in through an OpenID Connect provider, with the keys of
# OAuthenticator's GenericOAuthenticator. The client registered at the provider:
client_id = ""
client_secret = ""
# A file holding the client secret instead (wins over client_secret).
client_secret_file = ""
# Where the provider sends the browser back; "" = the URL the browser uses, with
# <base_url>hub/oauth_callback (behind a proxy: its X-Forwarded-Proto/-Host).
oauth_callback_url = ""
# The provider's issuer URL; the three URLs below then come from its
# /.well-known/openid-configuration. Or leave it "" and give the three URLs.
issuer = ""
authorize_url = ""
token_url = ""
userdata_url = ""
scope = {scope}
# The claim (a dotted path such as "attributes.uid") that is the hub user name.
username_claim = "{username_claim}"
# The label of the login button: "Sign in with …".
login_service = "{login_service}"
# Members of these provider groups may sign in; members of admin_groups are admins.
allowed_groups = []
admin_groups = []
# Where the groups are in the ID token or userinfo claims (a dotted path).
claim_groups_key = "{claim_groups_key}"
# Or OAuthenticator 16's spelling, "oauth_user.groups" (oauth_user = the userinfo claims);
# wins over claim_groups_key when set.
auth_state_groups_key = ""
# Make the hub's groups of a user follow the provider's groups at each sign-in.
manage_groups = false
# Let users already in the hub's database sign in even if no allow rule names them.
allow_existing_users = false
# Send the client secret with HTTP Basic auth (client_secret_basic); false: in the form body.
basic_auth = {basic_auth}
# After logout, send the browser here (the provider's end-session endpoint); id_token_hint and
# client_id are added.
logout_redirect_url = ""
# Skip the login page and go straight to the provider.
auto_login = false
# More parameters for the provider's authorization request, e.g. {{ prompt = "login" }}.
extra_authorize_params = {{}}
# The user name claim's @domain is stripped for these domains ("*": any), e.g. ["uni.example"].
username_strip_domains = []
# Provider names (after the rules above) that become other hub names, e.g. {{ "a.smith" = "asmith" }}.
username_map = {{}}
# Keep the provider's tokens and userinfo (auth_state), encrypted with the key(s) in the
# environment variable JUPYTERHUB_CRYPT_KEY (`openssl rand -hex 32`; several, ';'-separated,
# for rotation: the first encrypts). The hub does not start without a usable key.
enable_auth_state = false
# Refresh the tokens before a spawn when they are older than auth_refresh_age.
refresh_pre_spawn = false
# Seconds after which tokens are refreshed, at a signed-in user's next request (with a cookie
# or an API token) or spawn; 0: never at requests, at every spawn with refresh_pre_spawn.
auth_refresh_age = {auth_refresh_age}
# Environment variables for a user's server from their auth_state, opt-in, e.g.
# {{ OIDC_ACCESS_TOKEN = "access_token", OIDC_EMAIL = "oauth_user.email" }}.
auth_state_env = {{}}

{spawner}
{local}
{slurm}
[proxy]
# managed: the hub runs nbhub-proxy itself (kept running across hub restarts);
# external: a proxy you run (nbhub-proxy or configurable-http-proxy).
kind = "{px_kind}"
# The proxy's REST API.
api_url = "{px_api_url}"
# external: the proxy's CONFIGPROXY_AUTH_TOKEN; managed: "" = generated, kept in data_dir.
auth_token = ""
# managed: the proxy command; [] = nbhub-proxy next to the nbhub binary.
command = []
# Seconds between checks that the proxy runs and has every route.
check_running_interval = {px_check}
# Stop the managed proxy when the hub stops.
cleanup = {px_cleanup}

# External services with a fixed API token, e.g. an idle culler:
# [[services]]
# name = "culler"
# api_token = "a-long-random-secret"   # at least 8 characters; stored hashed
# admin = false
# url = ""                             # where it listens; routed at /services/<name>/
# display = true
# info = {{}}
# command = []                         # a managed service: the hub starts and restarts it
# environment = {{}}
# cwd = ""
# oauth_no_confirm = false

# Roles give scopes (JupyterHub's scope names) to users, groups and services:
# [[roles]]
# name = "culler-role"
# description = "cull idle servers"
# scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
# users = []
# groups = []
# services = ["culler"]
"#,
        bind_url = h.bind_url,
        hub_bind_url = h.hub_bind_url,
        base_url = h.base_url.as_str(),
        data_dir = h.data_dir.display(),
        db_url = h.db_url,
        cookie_max_age_days = h.cookie_max_age_days,
        api_page_default_limit = h.api_page_default_limit,
        api_page_max_limit = h.api_page_max_limit,
        log_level = h.log_level.as_str(),
        kind = a.kind.as_str(),
        password = a.password,
        admin_users = list(&a.admin_users),
        allowed_users = list(&a.allowed_users),
        allow_all = a.allow_all,
        blocked_users = list(&a.blocked_users),
        pam_service = a.pam_service,
        enable_signup = a.enable_signup,
        open_signup = a.open_signup,
        minimum_password_length = a.minimum_password_length,
        failed_login_threshold = a.failed_login_threshold,
        scope = list(&a.scope),
        username_claim = a.username_claim,
        login_service = a.login_service,
        claim_groups_key = a.claim_groups_key,
        basic_auth = a.basic_auth,
        auth_refresh_age = a.auth_refresh_age,
        hub_connect_url = h.hub_connect_url,
        allow_named_servers = h.allow_named_servers,
        named_server_limit_per_user = h.named_server_limit_per_user,
        concurrent_spawn_limit = h.concurrent_spawn_limit,
        spawn_queue_limit = h.spawn_queue_limit,
        active_server_limit = h.active_server_limit,
        slow_spawn_timeout = h.slow_spawn_timeout,
        slow_stop_timeout = h.slow_stop_timeout,
        cleanup_servers = h.cleanup_servers,
        redirect_to_server = h.redirect_to_server,
        authenticate_prometheus = h.authenticate_prometheus,
        request_header_timeout = h.request_header_timeout,
        request_body_timeout = h.request_body_timeout,
        spawner = d.spawner.to_commented_toml(),
        local = d.local.to_commented_toml(),
        slurm = d.slurm.to_commented_toml(),
        px_kind = "managed",
        px_api_url = px.api_url,
        px_check = px.check_running_interval,
        px_cleanup = px.cleanup,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        let c = Config::from_toml_str(text, "test.toml")?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn generated_config_is_valid_and_complete() {
        let text = generate_config();
        let parsed = load(&text).expect("generated config parses");
        assert_eq!(parsed, Config::default());
        // Every key of every section appears, uncommented.
        let doc = toml::Value::try_from(Config::default()).expect("serialises");
        for (section, table) in doc.as_table().expect("table") {
            let Some(table) = table.as_table() else {
                continue;
            };
            assert!(
                text.contains(&format!("[{section}]")),
                "section {section} missing"
            );
            for key in table.keys() {
                assert!(
                    text.lines().any(|l| l.starts_with(&format!("{key} = "))),
                    "key {section}.{key} missing from generate-config"
                );
            }
        }
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = load("[hub]\nbase_url = \"/\"\nbind_ulr = \"http://x\"\n")
            .unwrap_err()
            .0;
        assert!(err.contains("test.toml, line 3"), "{err}");
        assert!(err.contains("bind_ulr"), "{err}");
        assert!(
            err.contains("bind_url"),
            "should list what is allowed: {err}"
        );
    }

    #[test]
    fn bad_url_and_bad_type_name_the_key() {
        let err = load("[hub]\nbind_url = \"ftp://x\"\n").unwrap_err().0;
        assert!(
            err.contains("hub.bind_url") && err.contains("line 2") && err.contains("http://"),
            "{err}"
        );
        let err = load("[hub]\ncookie_max_age_days = \"two\"\n")
            .unwrap_err()
            .0;
        assert!(
            err.contains("hub.cookie_max_age_days") && err.contains("integer"),
            "{err}"
        );
        let err = load("[authenticator]\nkind = \"ldap\"\n").unwrap_err().0;
        assert!(
            err.contains("authenticator.kind") && err.contains("dummy"),
            "{err}"
        );
    }

    #[test]
    fn env_overrides_file() {
        let env = vec![
            ("NBHUB_HUB__BASE_URL".to_string(), "/jupyter".to_string()),
            (
                "NBHUB_HUB__COOKIE_MAX_AGE_DAYS".to_string(),
                "3".to_string(),
            ),
            (
                "NBHUB_AUTHENTICATOR__ADMIN_USERS".to_string(),
                "[\"root\"]".to_string(),
            ),
            (
                "NBHUB_AUTHENTICATOR__PASSWORD".to_string(),
                "123".to_string(),
            ),
        ];
        let c = Config::default()
            .with_env_overrides(&env)
            .expect("overrides apply");
        assert_eq!(c.hub.base_url.as_str(), "/jupyter/");
        assert_eq!(c.hub.cookie_max_age_days, 3);
        assert_eq!(c.authenticator.admin_users, vec!["root".to_string()]);
        assert_eq!(
            c.authenticator.password, "123",
            "a string key keeps a numeric-looking value as text"
        );
        let err = Config::default()
            .with_env_overrides(&[("NBHUB_HUB__NOPE".into(), "1".into())])
            .unwrap_err()
            .0;
        assert!(
            err.contains("NBHUB_HUB__NOPE") && err.contains("hub.nope"),
            "{err}"
        );
    }

    #[test]
    fn generic_oauth_is_checked() {
        let err = load("[authenticator]\nkind = \"oidc\"\nissuer = \"https://idp.example\"\n")
            .unwrap_err()
            .0;
        assert!(err.contains("authenticator.client_id"), "{err}");
        let base = "[authenticator]\nkind = \"generic-oauth\"\nclient_id = \"hub\"\nclient_secret = \"s\"\n";
        let err = load(base).unwrap_err().0;
        assert!(
            err.contains("authenticator.issuer") && err.contains("token_url"),
            "{err}"
        );
        let err = load(&format!("{base}issuer = \"idp.example\"\n"))
            .unwrap_err()
            .0;
        assert!(err.contains("authenticator.issuer"), "{err}");
        let c = load(&format!(
            "{base}issuer = \"https://idp.example/realms/hpc\"\n"
        ))
        .expect("issuer alone is enough");
        assert_eq!(c.authenticator.kind, AuthenticatorKind::GenericOauth);
        assert_eq!(c.authenticator.scope, ["openid", "profile", "email"]);
        let c = load(&format!(
            "{base}issuer = \"https://idp.example\"\nauth_state_groups_key = \"oauth_user.realm.groups\"\n"
        ))
        .expect("OAuthenticator 16's groups key");
        assert_eq!(c.authenticator.groups_claim_path(), Some("realm.groups"));
        let err = load(&format!(
            "{base}issuer = \"https://idp.example\"\nauth_state_groups_key = \"access_token.groups\"\n"
        ))
        .unwrap_err()
        .0;
        assert!(err.contains("authenticator.auth_state_groups_key"), "{err}");
        load(&format!(
            "{base}authorize_url = \"https://idp.example/auth\"\ntoken_url = \"https://idp.example/token\"\nuserdata_url = \"https://idp.example/me\"\n"
        ))
        .expect("the three URLs without an issuer");
    }

    #[test]
    fn roles_and_services_are_checked() {
        let err = load("[[roles]]\nname = \"r\"\nscopes = [\"read:usrs\"]\n")
            .unwrap_err()
            .0;
        assert!(err.contains("roles[0].scopes[0]"), "{err}");
        let err = load("[[roles]]\nname = \"r\"\nservices = [\"ghost\"]\n")
            .unwrap_err()
            .0;
        assert!(err.contains("ghost"), "{err}");
        let err = load("[[services]]\nname = \"c\"\napi_token = \"short\"\n")
            .unwrap_err()
            .0;
        assert!(err.contains("services[0].api_token"), "{err}");
    }
}
