//! JupyterHub's names mapped onto nbhub's configuration: the hub (`c.JupyterHub`), the
//! authenticators (PAM, Dummy, Native, SharedPassword, OAuthenticator's generic ones), the
//! spawners (`Spawner`, `LocalProcessSpawner`, batchspawner's `SlurmSpawner`, wrapspawner's
//! `ProfilesSpawner` of Slurm profiles, jupyterhub_moss's `MOSlurmSpawner`), services, roles,
//! templates and the proxy. docs/migrating.md has the same table in words.

use nbhub_spawner::{CustomField, CustomType, CustomValue, EnvironmentConfig, PartitionConfig};

use super::pyconfig::{Item, Value};
use super::traits::{boolean, dict, json, number, string, strings, whole, Entry, Traits};
use super::{Provenance, Report};
use crate::config::{
    AuthenticatorKind, BaseUrl, Config, HttpUrl, LogLevel, ProxyKind, RoleConfig, ServiceConfig,
};

/// What to do instead of a callable, per trait.
pub(super) fn callable_hint(name: &str) -> &'static str {
    match name {
        "pre_spawn_hook" => {
            "do this with [spawner] environment, [[slurm.environments]] or [slurm] job_template_file"
        }
        "post_stop_hook" => "do this in the job's epilogue or in a service that watches /hub/api",
        "auth_state_hook" => "[authenticator] auth_state_env passes auth_state keys to servers",
        "options_from_form" | "options_form" => {
            "nbhub's spawn form is built from [[slurm.partitions]], [[slurm.fields]] and [[slurm.environments]]"
        }
        "post_auth_hook" | "modify_auth_state_hook" => {
            "[authenticator] admin_groups, allowed_groups and username_map cover the usual uses"
        }
        "username_claim" | "claim_groups_key" | "username_key" => {
            "give the claim's dotted path as a string"
        }
        "environment" => "give each variable a fixed value in [spawner] environment",
        _ => "give its result as a literal value",
    }
}

/// The authenticators nbhub has an equivalent for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Auth {
    Pam,
    Dummy,
    Native,
    SharedPassword,
    Generic,
    Auth0,
}

impl Auth {
    /// The classes whose traits apply, general first.
    fn classes(self) -> &'static [&'static str] {
        match self {
            Auth::Pam => &["Authenticator", "LocalAuthenticator", "PAMAuthenticator"],
            Auth::Dummy => &["Authenticator", "DummyAuthenticator"],
            Auth::Native => &["Authenticator", "NativeAuthenticator"],
            Auth::SharedPassword => &["Authenticator", "SharedPasswordAuthenticator"],
            Auth::Generic => &["Authenticator", "OAuthenticator", "GenericOAuthenticator"],
            Auth::Auth0 => &["Authenticator", "OAuthenticator", "Auth0OAuthenticator"],
        }
    }

    fn from_name(name: &str) -> Option<Auth> {
        let last = name.rsplit('.').next().unwrap_or(name);
        Some(match (name, last) {
            ("pam" | "default", _) | (_, "PAMAuthenticator") => Auth::Pam,
            ("dummy", _) | (_, "DummyAuthenticator") => Auth::Dummy,
            ("native", _) | (_, "NativeAuthenticator") => Auth::Native,
            ("shared-password", _) | (_, "SharedPasswordAuthenticator") => Auth::SharedPassword,
            ("generic-oauth" | "generic" | "oidc", _)
            | (_, "GenericOAuthenticator" | "LocalGenericOAuthenticator") => Auth::Generic,
            ("auth0", _) | (_, "Auth0OAuthenticator" | "LocalAuth0OAuthenticator") => Auth::Auth0,
            _ => return None,
        })
    }
}

/// The spawners nbhub has an equivalent for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spawn {
    Local,
    Slurm,
    Moss,
    /// wrapspawner's ProfilesSpawner: its profiles' class decides the rest.
    Profiles,
}

impl Spawn {
    fn from_name(name: &str) -> Option<Spawn> {
        let last = name.rsplit('.').next().unwrap_or(name);
        Some(match (name, last) {
            ("localprocess" | "default", _) | (_, "LocalProcessSpawner") => Spawn::Local,
            ("slurm", _) | (_, "SlurmSpawner") => Spawn::Slurm,
            ("moss", _) | (_, "MOSlurmSpawner") => Spawn::Moss,
            (_, "ProfilesSpawner") => Spawn::Profiles,
            _ => return None,
        })
    }
}

const LOCAL_CLASSES: &[&str] = &["Spawner", "LocalProcessSpawner"];
const SLURM_CLASSES: &[&str] = &["Spawner", "BatchSpawnerBase", "SlurmSpawner"];
const MOSS_CLASSES: &[&str] = &[
    "Spawner",
    "BatchSpawnerBase",
    "SlurmSpawner",
    "MOSlurmSpawner",
];
const PROFILES: &[&str] = &["WrapSpawner", "ProfilesSpawner"];
const PROFILES_SLURM: &[&str] = &[
    "Spawner",
    "BatchSpawnerBase",
    "SlurmSpawner",
    "WrapSpawner",
    "ProfilesSpawner",
];
const HUB: &[&str] = &["JupyterHub"];
const PROXY: &[&str] = &["Proxy", "ConfigurableHTTPProxy"];

/// Every class this translation knows; a trait of one not in use is a note, not a loss.
const KNOWN_CLASSES: &[&str] = &[
    "JupyterHub",
    "Application",
    "Authenticator",
    "LocalAuthenticator",
    "PAMAuthenticator",
    "DummyAuthenticator",
    "NativeAuthenticator",
    "SharedPasswordAuthenticator",
    "OAuthenticator",
    "GenericOAuthenticator",
    "Auth0OAuthenticator",
    "Spawner",
    "LocalProcessSpawner",
    "BatchSpawnerBase",
    "SlurmSpawner",
    "MOSlurmSpawner",
    "WrapSpawner",
    "ProfilesSpawner",
    "Proxy",
    "ConfigurableHTTPProxy",
];

/// The translation under way.
struct Tx<'a> {
    t: Traits,
    r: &'a mut Report,
    c: Config,
    prov: Provenance,
}

/// A setting read: its typed value, where it was set, how the file names it.
struct Read<T> {
    value: T,
    line: usize,
    name: String,
}

impl Tx<'_> {
    /// Reads `name` from `classes` as `T`; a wrong type is reported and gives None.
    fn read<T>(
        &mut self,
        classes: &[&str],
        name: &str,
        conv: impl Fn(&Value) -> Result<T, String>,
    ) -> Option<Read<T>> {
        let (entry, shown) = self.t.get(classes, name)?;
        match conv(&entry.value) {
            Ok(value) => Some(Read {
                value,
                line: entry.line,
                name: shown,
            }),
            Err(why) => {
                self.r.left_out(entry.line, shown, why);
                None
            }
        }
    }

    fn entry(&mut self, classes: &[&str], name: &str) -> Option<(Entry, String)> {
        self.t.get(classes, name)
    }

    /// Records that nbhub's `key` came from this setting.
    fn source<T>(&mut self, key: &str, read: &Read<T>) {
        self.source_line(key, read.line, &read.name);
    }

    fn source_line(&mut self, key: &str, line: usize, name: &str) {
        self.prov
            .entry(key.to_owned())
            .or_default()
            .push(format!("line {line}: {name}"));
    }

    fn left_out<T>(&mut self, read: &Read<T>, why: impl Into<String>) {
        self.r.left_out(read.line, read.name.clone(), why.into());
    }

    fn note<T>(&mut self, read: &Read<T>, why: impl Into<String>) {
        self.r.note(read.line, read.name.clone(), why.into());
    }

    /// Settings nbhub does otherwise: each read and reported as left out with `why`.
    fn not_carried(&mut self, classes: &[&str], names: &[&str], why: &str) {
        for name in names {
            if let Some(r) = self.read(classes, name, |v| Ok(v.clone())) {
                self.left_out(&r, why);
            }
        }
    }

    /// Settings whose effect nbhub has without them: each read and noted.
    fn noted(&mut self, classes: &[&str], names: &[&str], why: &str) {
        for name in names {
            if let Some(r) = self.read(classes, name, |v| Ok(v.clone())) {
                self.note(&r, why);
            }
        }
    }
}

/// Translates the parsed file; what is not carried over goes to `report`.
pub(super) fn translate(items: &[Item], report: &mut Report) -> (Config, Provenance) {
    let mut moss_by_call = None;
    for item in items {
        match item {
            Item::Import { line, text } => report.note(
                *line,
                text.clone(),
                "imports are not needed: nbhub reads the settings, it runs no Python".into(),
            ),
            Item::Code { line, what, .. } if what.contains("jupyterhub_moss.set_config") => {
                moss_by_call = Some(*line);
                report.note(
                    *line,
                    "jupyterhub_moss.set_config(c)".into(),
                    "taken as c.JupyterHub.spawner_class = MOSlurmSpawner (what it sets)".into(),
                );
            }
            Item::Code {
                line,
                end_line,
                what,
            } if what.starts_with("a function definition") => report.note(
                *line,
                what.clone(),
                format!(
                    "lines {line}–{end_line}: Python code is not translated; the settings that use it are listed"
                ),
            ),
            Item::Code {
                line,
                end_line,
                what,
            } => {
                let lines = if end_line > line {
                    format!(" (lines {line}–{end_line})")
                } else {
                    String::new()
                };
                report.left_out(
                    *line,
                    what.clone(),
                    format!("Python code{lines} is not run by nbhub: redo what it does in the TOML"),
                );
            }
            Item::Setting { .. } => {}
        }
    }
    let t = Traits::collect(items, report);
    let mut tx = Tx {
        t,
        r: report,
        c: Config::default(),
        prov: Provenance::new(),
    };
    tx.hub();
    tx.proxy();
    tx.services_and_roles();
    let auth = tx.authenticator_class();
    tx.authenticator(auth);
    let spawner_classes = tx.spawner(moss_by_call);
    for (line, name, class) in tx.t.unused() {
        if KNOWN_CLASSES.contains(&class.as_str()) {
            let in_use = match class.as_str() {
                "JupyterHub" | "Application" | "Proxy" | "ConfigurableHTTPProxy" => true,
                c if c.ends_with("Authenticator") => auth.is_some_and(|a| a.classes().contains(&c)),
                c => spawner_classes.contains(&c),
            };
            if !in_use {
                tx.r.note(
                    line,
                    name,
                    format!(
                        "{class} is not in use in this config, so this had no effect there either"
                    ),
                );
                continue;
            }
            tx.r.left_out(line, name, "nbhub has no equivalent of this setting".into());
        } else {
            tx.r.left_out(
                line,
                name,
                format!("{class} is not a class nbhub knows an equivalent of"),
            );
        }
    }
    (tx.c, tx.prov)
}

impl Tx<'_> {
    fn hub(&mut self) {
        // Where the public side listens: bind_url, or ip and port.
        let bind = self.read(HUB, "bind_url", string);
        let ip = self.read(HUB, "ip", string);
        let port = self.read(HUB, "port", whole);
        if let Some(b) = &bind {
            match split_url(&b.value) {
                Some((origin, path)) => {
                    if let Ok(url) = HttpUrl::parse(&origin) {
                        self.c.hub.bind_url = url;
                        self.source("hub.bind_url", b);
                    }
                    if path != "/" {
                        if let Ok(base) = BaseUrl::parse(&path) {
                            self.c.hub.base_url = base;
                            self.source("hub.base_url", b);
                        }
                    }
                }
                None => self.left_out(b, "not an http(s) URL"),
            }
        }
        if ip.is_some() || port.is_some() {
            let host = ip
                .as_ref()
                .map_or("0.0.0.0".to_owned(), |i| host_of(&i.value));
            let p = port.as_ref().map_or(8000, |p| p.value);
            let origin = bind
                .as_ref()
                .and_then(|b| split_url(&b.value))
                .map(|(o, _)| o);
            let url = match (&ip, &port, origin) {
                // bind_url given: ip and port only change their part of it.
                (_, _, Some(o)) => {
                    let mut u = url::Url::parse(&o).ok();
                    if let Some(u) = &mut u {
                        if ip.is_some() {
                            let _ = u.set_host(Some(host.trim_matches(['[', ']'])));
                        }
                        if port.is_some() {
                            let _ = u.set_port(Some(p as u16));
                        }
                    }
                    u.map(|u| u.as_str().trim_end_matches('/').to_owned())
                }
                _ => Some(format!("http://{host}:{p}")),
            };
            if let Some(Ok(url)) = url.map(|u| HttpUrl::parse(&u)) {
                self.c.hub.bind_url = url;
                for r in [
                    &ip.map(|r| (r.line, r.name)),
                    &port.map(|r| (r.line, r.name)),
                ]
                .into_iter()
                .flatten()
                {
                    self.source_line("hub.bind_url", r.0, &r.1);
                }
            }
        }
        if let Some(b) = self.read(HUB, "base_url", string) {
            let mut path = b.value.clone();
            if !path.starts_with('/') {
                path.insert(0, '/');
            }
            match BaseUrl::parse(&path) {
                Ok(base) => {
                    self.c.hub.base_url = base;
                    self.source("hub.base_url", &b);
                }
                Err(e) => self.left_out(&b, e),
            }
        }
        // The hub's own listener.
        let hub_bind = self.read(HUB, "hub_bind_url", string);
        let hub_ip = self.read(HUB, "hub_ip", string);
        let hub_port = self.read(HUB, "hub_port", whole);
        let hub_url = match (&hub_bind, &hub_ip, &hub_port) {
            (Some(b), _, _) => split_url(&b.value).map(|(o, _)| o),
            (None, None, None) => None,
            _ => Some(format!(
                "http://{}:{}",
                hub_ip
                    .as_ref()
                    .map_or("127.0.0.1".to_owned(), |i| host_of(&i.value)),
                hub_port.as_ref().map_or(8081, |p| p.value)
            )),
        };
        if let Some(Ok(url)) = hub_url.map(|u| HttpUrl::parse(&u)) {
            self.c.hub.hub_bind_url = url;
            let sources = [
                hub_bind.map(|r| (r.line, r.name)),
                hub_ip.map(|r| (r.line, r.name)),
                hub_port.map(|r| (r.line, r.name)),
            ];
            for (line, name) in sources.into_iter().flatten() {
                self.source_line("hub.hub_bind_url", line, &name);
            }
        }
        // How servers reach the hub.
        let all_interfaces = matches!(self.c.hub.hub_bind_url.host(), "0.0.0.0" | "[::]" | "::");
        let connect_given = ["hub_connect_url", "hub_connect_ip", "hub_connect_port"]
            .iter()
            .any(|t| self.t.has(HUB, t));
        if all_interfaces && !connect_given {
            let (line, name) = self
                .prov
                .get("hub.hub_bind_url")
                .and_then(|v| v.first())
                .and_then(|s| s.strip_prefix("line "))
                .and_then(|s| s.split_once(": "))
                .map_or((0, "c.JupyterHub.hub_ip".to_owned()), |(l, n)| {
                    (l.parse().unwrap_or(0), n.to_owned())
                });
            self.r.note(
                line,
                name,
                "the hub listens on every interface: JupyterHub then tells servers its host name; in nbhub set [hub] hub_connect_url to the address servers reach the hub at".into(),
            );
        }
        if let Some(u) = self.read(HUB, "hub_connect_url", string) {
            self.c.hub.hub_connect_url = u.value.clone();
            self.source("hub.hub_connect_url", &u);
        } else {
            let ip = self.read(HUB, "hub_connect_ip", string);
            let port = self.read(HUB, "hub_connect_port", whole);
            if ip.is_some() || port.is_some() {
                let host = ip
                    .as_ref()
                    .map_or(self.c.hub.hub_bind_url.host().to_owned(), |i| {
                        host_of(&i.value)
                    });
                let p = port
                    .as_ref()
                    .map_or(self.c.hub.hub_bind_url.port(), |p| p.value as u16);
                self.c.hub.hub_connect_url = format!("http://{host}:{p}");
                for r in [ip.map(|r| (r.line, r.name)), port.map(|r| (r.line, r.name))]
                    .into_iter()
                    .flatten()
                {
                    self.source_line("hub.hub_connect_url", r.0, &r.1);
                }
            }
        }
        if let Some(d) = self.read(HUB, "db_url", string) {
            if d.value.starts_with("sqlite") {
                self.note(
                    &d,
                    "nbhub keeps its own database (its tables differ from JupyterHub's): SQLite in [hub] data_dir; users are created again as they sign in",
                );
            } else {
                self.left_out(
                    &d,
                    "nbhub's tables differ from JupyterHub's: give nbhub a database of its own in [hub] db_url (postgresql://…)",
                );
            }
        }
        if let Some(f) = self.read(HUB, "cookie_secret_file", string) {
            let dir = std::path::Path::new(&f.value)
                .parent()
                .filter(|d| !d.as_os_str().is_empty());
            if let Some(dir) = dir {
                self.c.hub.data_dir = dir.to_path_buf();
                self.source("hub.data_dir", &f);
            }
            self.note(
                &f,
                "nbhub keeps its cookie secret (and database, proxy token) in [hub] data_dir, set to this file's folder; users sign in again once",
            );
        }
        macro_rules! copy {
            ($trait:literal, $conv:expr, $field:ident) => {
                if let Some(r) = self.read(HUB, $trait, $conv) {
                    self.c.hub.$field = r.value.clone();
                    self.source(concat!("hub.", stringify!($field)), &r);
                }
            };
        }
        copy!("allow_named_servers", boolean, allow_named_servers);
        copy!(
            "named_server_limit_per_user",
            |v: &Value| whole(v).map(|n| n.min(u32::MAX as u64) as u32),
            named_server_limit_per_user
        );
        copy!(
            "concurrent_spawn_limit",
            |v: &Value| whole(v).map(|n| n.min(u32::MAX as u64) as u32),
            concurrent_spawn_limit
        );
        copy!(
            "active_server_limit",
            |v: &Value| whole(v).map(|n| n.min(u32::MAX as u64) as u32),
            active_server_limit
        );
        copy!("cleanup_servers", boolean, cleanup_servers);
        copy!("redirect_to_server", boolean, redirect_to_server);
        copy!("authenticate_prometheus", boolean, authenticate_prometheus);
        copy!(
            "api_page_default_limit",
            |v: &Value| whole(v).map(|n| n.clamp(1, u32::MAX as u64) as u32),
            api_page_default_limit
        );
        copy!(
            "api_page_max_limit",
            |v: &Value| whole(v).map(|n| n.clamp(1, u32::MAX as u64) as u32),
            api_page_max_limit
        );
        copy!(
            "cookie_max_age_days",
            |v: &Value| whole(v).map(|n| n.clamp(1, u32::MAX as u64) as u32),
            cookie_max_age_days
        );
        if let Some(r) = self.read(HUB, "template_paths", strings) {
            self.c.hub.template_paths = r.value.iter().map(Into::into).collect();
            self.source("hub.template_paths", &r);
            self.note(
                &r,
                "nbhub's templates keep JupyterHub's names and blocks (docs/pages.md); check the pages once: they are rendered with minijinja",
            );
        }
        if let Some(r) = self.read(HUB, "template_vars", |v| match json(v)? {
            serde_json::Value::Object(m) => Ok(m),
            _ => Err("expected a dict".into()),
        }) {
            self.c.hub.template_vars = r.value.clone();
            self.source("hub.template_vars", &r);
        }
        if let Some(r) = self.read(HUB, "logo_file", string) {
            self.c.hub.logo_file = r.value.clone().into();
            self.source("hub.logo_file", &r);
        }
        for class in ["JupyterHub", "Application"] {
            if let Some(r) = self.read(&[class], "log_level", log_level) {
                self.c.hub.log_level = r.value;
                self.source("hub.log_level", &r);
            }
        }
        // Known, and done otherwise or not at all.
        self.not_carried(
            HUB,
            &["shutdown_on_logout"],
            "nbhub does not stop a user's servers at logout; the idle culler (a [[services]] entry) stops idle ones",
        );
        self.not_carried(
            HUB,
            &["ssl_cert", "ssl_key"],
            "the managed nbhub-proxy serves plain HTTP: put TLS in front of it, or run nbhub-proxy yourself with --ssl-cert/--ssl-key as an external proxy (docs/proxy.md)",
        );
        self.not_carried(
            HUB,
            &[
                "extra_handlers",
                "tornado_settings",
                "extra_log_file",
                "data_files_path",
                "jinja_environment_options",
                "default_server_name",
                "pid_file",
                "internal_ssl",
                "init_spawners_timeout",
                "last_activity_interval",
                "statsd_host",
                "custom_scopes",
                "load_groups",
            ],
            "nbhub has no equivalent of this setting",
        );
        self.noted(
            HUB,
            &["admin_access", "upgrade_db", "allow_root"],
            "nbhub has no such switch: admins act through roles and scopes, the database is migrated at start-up",
        );
        if let Some(r) = self.read(HUB, "cleanup_proxy", boolean) {
            self.c.proxy.cleanup = r.value;
            self.source("proxy.cleanup", &r);
        }
    }

    fn proxy(&mut self) {
        if let Some(r) = self.read(HUB, "proxy_class", |v| Ok(class_name(v))) {
            if !r.value.contains("ConfigurableHTTPProxy") && r.value != "configurable-http-proxy" {
                self.left_out(
                    &r,
                    "nbhub speaks configurable-http-proxy's API only (nbhub-proxy, or configurable-http-proxy itself)",
                );
            }
        }
        let mut external_line = 0;
        if let Some(r) = self.read(PROXY, "should_start", boolean) {
            if !r.value {
                self.c.proxy.kind = ProxyKind::External;
                self.source("proxy.kind", &r);
                external_line = r.line;
            }
        }
        if let Some(r) = self.read(PROXY, "api_url", string) {
            match HttpUrl::parse(&r.value) {
                Ok(u) => {
                    self.c.proxy.api_url = u;
                    self.source("proxy.api_url", &r);
                }
                Err(e) => self.left_out(&r, e),
            }
        }
        if let Some(r) = self.read(PROXY, "auth_token", string) {
            self.c.proxy.auth_token = r.value.clone();
            self.source("proxy.auth_token", &r);
        }
        if self.c.proxy.kind == ProxyKind::External && self.c.proxy.auth_token.is_empty() {
            // JupyterHub reads CONFIGPROXY_AUTH_TOKEN from its environment; nbhub wants it
            // in the file (or NBHUB_PROXY__AUTH_TOKEN).
            self.c.proxy.auth_token = "CHANGE-ME-to-CONFIGPROXY_AUTH_TOKEN".into();
            self.r.left_out(
                external_line,
                "CONFIGPROXY_AUTH_TOKEN".into(),
                "an external proxy's token came from the environment: set [proxy] auth_token (or NBHUB_PROXY__AUTH_TOKEN); a placeholder is written".into(),
            );
        }
        self.not_carried(
            PROXY,
            &["command", "pid_file", "debug", "extra_routes"],
            "the managed proxy is nbhub-proxy, started by the hub ([proxy] command only replaces its program)",
        );
    }

    fn services_and_roles(&mut self) {
        if let Some((entry, name)) = self.entry(HUB, "services") {
            match entry.value.items() {
                Some(list) => {
                    for (i, s) in list.iter().enumerate() {
                        let shown = format!("{name}[{i}]");
                        if let Some(svc) = self.service(s, entry.item_line(i), &shown) {
                            self.c.services.push(svc);
                        }
                    }
                    if !self.c.services.is_empty() {
                        self.source_line("services", entry.line, &name);
                    }
                }
                None => self.r.left_out(
                    entry.line,
                    name,
                    format!("expected a list of dicts, not {}", entry.value.kind()),
                ),
            }
        }
        if let Some((entry, name)) = self.entry(HUB, "load_roles") {
            match entry.value.items() {
                Some(list) => {
                    for (i, role) in list.iter().enumerate() {
                        let shown = format!("{name}[{i}]");
                        if let Some(role) = self.role(role, entry.item_line(i), &shown) {
                            self.c.roles.push(role);
                        }
                    }
                    if !self.c.roles.is_empty() {
                        self.source_line("roles", entry.line, &name);
                    }
                }
                None => self.r.left_out(
                    entry.line,
                    name,
                    format!("expected a list of dicts, not {}", entry.value.kind()),
                ),
            }
        }
    }

    /// One entry of `c.JupyterHub.services`.
    fn service(&mut self, v: &Value, line: usize, shown: &str) -> Option<ServiceConfig> {
        let pairs = match dict(v) {
            Ok(p) => p,
            Err(e) => {
                self.r.left_out(line, shown.to_owned(), e);
                return None;
            }
        };
        let mut svc = ServiceConfig::default();
        for (key, value) in &pairs {
            let at = format!("{shown}[{key:?}]");
            let r: Result<(), String> = (|| {
                match key.as_str() {
                    "name" => svc.name = string(value)?,
                    "api_token" => {
                        let t = string(value)?;
                        if !(8..=255).contains(&t.len()) {
                            return Err("nbhub wants a token of 8 to 255 characters".into());
                        }
                        svc.api_token = t;
                    }
                    "admin" => svc.admin = boolean(value)?,
                    "url" => {
                        let u = string(value)?;
                        HttpUrl::parse(&u)?;
                        svc.url = u;
                    }
                    "display" => svc.display = boolean(value)?,
                    "oauth_no_confirm" => svc.oauth_no_confirm = boolean(value)?,
                    "cwd" => svc.cwd = string(value)?,
                    "info" => {
                        for (k, v) in dict(value)? {
                            svc.info.insert(k, json(&v)?);
                        }
                    }
                    "environment" => {
                        for (k, v) in dict(value)? {
                            svc.environment.insert(k, env_value(&v)?);
                        }
                    }
                    "command" => {
                        let items: Vec<Value> = match value {
                            Value::Str(_) => vec![value.clone()],
                            other => other
                                .items()
                                .ok_or_else(|| format!("expected a list, not {}", other.kind()))?
                                .to_vec(),
                        };
                        let mut command = Vec::new();
                        for item in &items {
                            match item {
                                Value::Str(s) => command.push(s.clone()),
                                // [sys.executable, "-m", "jupyterhub_idle_culler", …]
                                Value::Class(c) if c == "sys.executable" => {
                                    self.r.note(
                                        line,
                                        at.clone(),
                                        "sys.executable (the hub's own Python) is written as python3: nbhub has no Python of its own; the service's package must be installed for that python3 (or give its path)".into(),
                                    );
                                    command.push("python3".into());
                                }
                                other => return Err(format!("a command part that is {}", other.kind())),
                            }
                        }
                        svc.command = command;
                    }
                    "user" | "oauth_client_id" | "oauth_redirect_uri" | "oauth_roles"
                    | "oauth_client_allowed_scopes" | "oauth_client_scopes" => {
                        return Err(match key.as_str() {
                            "user" => "nbhub runs managed services as its own account".into(),
                            _ => "nbhub's services use the client id service-<name> and the redirect /services/<name>/oauth_callback; their OAuth scopes are the defaults".into(),
                        })
                    }
                    _ => return Err("not a key of a service".into()),
                }
                Ok(())
            })();
            if let Err(why) = r {
                self.r.left_out(line, at, why);
            }
        }
        if !crate::names::is_valid_name(&svc.name) {
            self.r.left_out(
                line,
                shown.to_owned(),
                format!(
                    "{:?} is not a service name nbhub takes (letters, digits, '-', '_', '.')",
                    svc.name
                ),
            );
            return None;
        }
        if self.c.services.iter().any(|s| s.name == svc.name) {
            self.r.left_out(
                line,
                shown.to_owned(),
                format!("service {:?} is defined twice", svc.name),
            );
            return None;
        }
        if svc
            .command
            .iter()
            .any(|c| c.contains("jupyterhub_idle_culler") || c.contains("jupyterhub-idle-culler"))
        {
            self.r.note(
                line,
                shown.to_owned(),
                "the idle culler runs as a managed service, as it did; its role (load_roles) gives it its scopes".into(),
            );
        }
        Some(svc)
    }

    /// One entry of `c.JupyterHub.load_roles`.
    fn role(&mut self, v: &Value, line: usize, shown: &str) -> Option<RoleConfig> {
        let pairs = match dict(v) {
            Ok(p) => p,
            Err(e) => {
                self.r.left_out(line, shown.to_owned(), e);
                return None;
            }
        };
        let mut role = RoleConfig::default();
        for (key, value) in &pairs {
            let at = format!("{shown}[{key:?}]");
            let r: Result<(), String> = (|| {
                match key.as_str() {
                    "name" => role.name = string(value)?,
                    "description" => role.description = string(value)?,
                    "scopes" => {
                        for s in strings(value)? {
                            match crate::auth::scopes::validate_scope(&s) {
                                Ok(()) => role.scopes.push(s),
                                Err(e) => {
                                    self.r
                                        .left_out(line, at.clone(), format!("scope {s:?}: {e}"))
                                }
                            }
                        }
                    }
                    "users" => role.users = strings(value)?,
                    "groups" => role.groups = strings(value)?,
                    "services" => {
                        for s in strings(value)? {
                            if self.c.services.iter().any(|x| x.name == s) {
                                role.services.push(s);
                            } else {
                                self.r.left_out(
                                    line,
                                    at.clone(),
                                    format!("service {s:?} is not among c.JupyterHub.services (nbhub needs it there)"),
                                );
                            }
                        }
                    }
                    _ => return Err("not a key of a role".into()),
                }
                Ok(())
            })();
            if let Err(why) = r {
                self.r.left_out(line, at, why);
            }
        }
        if role.name.is_empty() || self.c.roles.iter().any(|r| r.name == role.name) {
            self.r.left_out(
                line,
                shown.to_owned(),
                "a role needs a name of its own".into(),
            );
            return None;
        }
        Some(role)
    }

    fn authenticator_class(&mut self) -> Option<Auth> {
        let Some(r) = self.read(HUB, "authenticator_class", |v| Ok(class_name(v))) else {
            // JupyterHub's default.
            self.c.authenticator.kind = AuthenticatorKind::Pam;
            return Some(Auth::Pam);
        };
        match Auth::from_name(&r.value) {
            Some(a) => {
                self.c.authenticator.kind = match a {
                    Auth::Pam => AuthenticatorKind::Pam,
                    Auth::Dummy => AuthenticatorKind::Dummy,
                    Auth::SharedPassword => AuthenticatorKind::SharedPassword,
                    Auth::Native => AuthenticatorKind::Native,
                    Auth::Generic | Auth::Auth0 => AuthenticatorKind::GenericOauth,
                };
                self.source("authenticator.kind", &r);
                Some(a)
            }
            None => {
                // Nobody signs in until the admin chooses: native without sign-up has no
                // accounts. Never the dummy one, which would let anyone in.
                self.c.authenticator.kind = AuthenticatorKind::Native;
                self.source("authenticator.kind", &r);
                self.left_out(
                    &r,
                    format!(
                        "{} has no nbhub equivalent (nbhub has pam, native, dummy and generic-oauth for any OpenID Connect provider); written as native without sign-up, so nobody can sign in until you choose",
                        r.value
                    ),
                );
                None
            }
        }
    }

    fn authenticator(&mut self, auth: Option<Auth>) {
        let classes = auth.map_or(&["Authenticator"][..], Auth::classes);
        macro_rules! copy {
            ($trait:literal, $conv:expr, $field:ident) => {
                if let Some(r) = self.read(classes, $trait, $conv) {
                    self.c.authenticator.$field = r.value.clone().into();
                    self.source(concat!("authenticator.", stringify!($field)), &r);
                }
            };
        }
        copy!("admin_users", strings, admin_users);
        copy!("allowed_users", strings, allowed_users);
        copy!("whitelist", strings, allowed_users);
        copy!("blocked_users", strings, blocked_users);
        copy!("blacklist", strings, blocked_users);
        copy!("allow_all", boolean, allow_all);
        copy!("allow_existing_users", boolean, allow_existing_users);
        copy!("auto_login", boolean, auto_login);
        copy!("enable_auth_state", boolean, enable_auth_state);
        copy!("refresh_pre_spawn", boolean, refresh_pre_spawn);
        copy!("auth_refresh_age", whole, auth_refresh_age);
        copy!("manage_groups", boolean, manage_groups);
        if let Some(r) = self.read(classes, "username_map", |v| {
            dict(v)?
                .into_iter()
                .map(|(k, v)| Ok((k, string(&v)?)))
                .collect::<Result<std::collections::BTreeMap<_, _>, String>>()
        }) {
            self.c.authenticator.username_map = r.value.clone();
            self.source("authenticator.username_map", &r);
        }
        self.not_carried(
            classes,
            &[
                "delete_invalid_users",
                "username_pattern",
                "otp_required_for_login",
                "request_otp",
            ],
            "nbhub has no equivalent of this setting",
        );
        match auth {
            Some(Auth::Pam) => {
                copy!("service", string, pam_service);
                self.not_carried(
                    classes,
                    &["allowed_groups", "admin_groups", "group_whitelist"],
                    "nbhub's PAM sign-in does not look at Unix groups: list the users in allowed_users/admin_users, or give the group a role",
                );
                self.not_carried(
                    classes,
                    &[
                        "open_sessions",
                        "create_system_users",
                        "add_user_cmd",
                        "check_account",
                        "pam_normalize_username",
                    ],
                    "nbhub's PAM sign-in authenticates only (no PAM session, no account creation)",
                );
                self.noted(
                    classes,
                    &["encoding"],
                    "nbhub passes names and passwords as UTF-8",
                );
            }
            Some(Auth::Dummy) => copy!("password", string, password),
            Some(Auth::SharedPassword) => {
                // JupyterHub refuses to start with shorter ones; so would nbhub.
                let at_least = |min: usize| {
                    move |v: &Value| {
                        let p = string(v)?;
                        if p.chars().count() < min {
                            return Err(format!(
                                "JupyterHub and nbhub need at least {min} characters, not {}",
                                p.chars().count()
                            ));
                        }
                        Ok(p)
                    }
                };
                copy!("user_password", at_least(8), user_password);
                copy!("admin_password", at_least(32), admin_password);
                if !self.c.authenticator.admin_password.is_empty()
                    && self.c.authenticator.admin_password == self.c.authenticator.user_password
                {
                    self.c.authenticator.admin_password.clear();
                    if let Some(r) = self.read(classes, "admin_password", string) {
                        self.left_out(
                            &r,
                            "the same as user_password, which JupyterHub and nbhub refuse",
                        );
                    }
                }
            }
            Some(Auth::Native) => {
                // NativeAuthenticator offers sign-up unless told not to.
                self.c.authenticator.enable_signup = true;
                copy!("enable_signup", boolean, enable_signup);
                copy!("open_signup", boolean, open_signup);
                copy!(
                    "minimum_password_length",
                    |v: &Value| whole(v).map(|n| n as u32),
                    minimum_password_length
                );
                self.not_carried(
                    classes,
                    &["check_common_password", "allowed_failed_logins", "seconds_before_next_try", "ask_email_on_signup", "allow_2fa", "tos", "recaptcha_key", "recaptcha_secret", "import_from_firstuse", "enable_signup_notification"],
                    "nbhub's native accounts have no equivalent (repeated failures are slowed down by failed_login_threshold)",
                );
            }
            Some(a @ (Auth::Generic | Auth::Auth0)) => self.oauth(classes, a),
            None => {}
        }
    }

    fn oauth(&mut self, classes: &[&str], a: Auth) {
        macro_rules! copy {
            ($trait:literal, $conv:expr, $field:ident) => {
                if let Some(r) = self.read(classes, $trait, $conv) {
                    self.c.authenticator.$field = r.value.clone().into();
                    self.source(concat!("authenticator.", stringify!($field)), &r);
                }
            };
        }
        if a == Auth::Auth0 {
            let domain = self.read(classes, "auth0_domain", string).or_else(|| {
                self.read(classes, "auth0_subdomain", string).map(|r| Read {
                    value: format!("{}.auth0.com", r.value),
                    ..r
                })
            });
            if let Some(d) = domain {
                let base = format!("https://{}", d.value.trim_end_matches('/'));
                self.c.authenticator.authorize_url = format!("{base}/authorize");
                self.c.authenticator.token_url = format!("{base}/oauth/token");
                self.c.authenticator.userdata_url = format!("{base}/userinfo");
                for k in ["authorize_url", "token_url", "userdata_url"] {
                    self.source(&format!("authenticator.{k}"), &d);
                }
            }
            self.c.authenticator.username_claim = "email".into();
            self.c.authenticator.login_service = "Auth0".into();
            self.c.authenticator.scope = vec!["openid".into(), "email".into()];
        } else {
            // GenericOAuthenticator's defaults where they differ from nbhub's.
            self.c.authenticator.username_claim = "username".into();
            self.c.authenticator.login_service = "OAuth 2.0".into();
        }
        copy!("client_id", string, client_id);
        copy!("client_secret", string, client_secret);
        copy!("oauth_callback_url", string, oauth_callback_url);
        copy!("authorize_url", string, authorize_url);
        copy!("token_url", string, token_url);
        copy!("userdata_url", string, userdata_url);
        copy!("scope", strings, scope);
        copy!("username_key", string, username_claim);
        copy!("username_claim", string, username_claim);
        copy!("login_service", string, login_service);
        copy!("allowed_groups", strings, allowed_groups);
        copy!("admin_groups", strings, admin_groups);
        copy!("claim_groups_key", string, claim_groups_key);
        copy!("auth_state_groups_key", string, auth_state_groups_key);
        copy!("basic_auth", boolean, basic_auth);
        copy!("logout_redirect_url", string, logout_redirect_url);
        if let Some(r) = self.read(classes, "extra_authorize_params", |v| {
            dict(v)?
                .into_iter()
                .map(|(k, v)| Ok((k, string(&v)?)))
                .collect::<Result<std::collections::BTreeMap<_, _>, String>>()
        }) {
            self.c.authenticator.extra_authorize_params = r.value.clone();
            self.source("authenticator.extra_authorize_params", &r);
        }
        if self.c.authenticator.client_id.is_empty() {
            self.c.authenticator.client_id = "CHANGE-ME".into();
            self.r.left_out(
                0,
                "OAUTH_CLIENT_ID".into(),
                "the client id was not in the file (OAuthenticator reads OAUTH_CLIENT_ID from the environment): set [authenticator] client_id; a placeholder is written".into(),
            );
        }
        if self.c.authenticator.client_secret.is_empty() {
            self.c.authenticator.client_secret = "CHANGE-ME".into();
            self.r.left_out(
                0,
                "OAUTH_CLIENT_SECRET".into(),
                "the client secret was not in the file (OAuthenticator reads OAUTH_CLIENT_SECRET from the environment): set [authenticator] client_secret or client_secret_file; a placeholder is written".into(),
            );
        }
        for (key, value) in [
            ("authorize_url", self.c.authenticator.authorize_url.clone()),
            ("token_url", self.c.authenticator.token_url.clone()),
            ("userdata_url", self.c.authenticator.userdata_url.clone()),
        ] {
            if value.is_empty() {
                let placeholder = format!("https://CHANGE-ME.example/{key}");
                match key {
                    "authorize_url" => self.c.authenticator.authorize_url = placeholder,
                    "token_url" => self.c.authenticator.token_url = placeholder,
                    _ => self.c.authenticator.userdata_url = placeholder,
                }
                self.r.left_out(
                    0,
                    format!("OAUTH2_{}", key.to_ascii_uppercase()),
                    format!("the provider's {key} was not in the file (OAuthenticator reads it from the environment): set [authenticator] {key} (or issuer); a placeholder is written"),
                );
            }
        }
        self.not_carried(
            classes,
            &[
                "userdata_params",
                "userdata_token_method",
                "token_params",
                "tls_verify",
                "validate_server_cert",
                "http_request_kwargs",
                "enable_loginpage",
                "refresh_user_hook",
                "allowed_scopes",
                "admin_users_claim",
                "user_info_to_username",
                "custom_403_message",
            ],
            "nbhub's generic-oauth has no equivalent of this setting",
        );
    }

    /// The spawner; returns the classes whose traits applied.
    fn spawner(&mut self, moss_by_call: Option<usize>) -> &'static [&'static str] {
        let class = self.read(HUB, "spawner_class", |v| Ok(class_name(v)));
        let kind = match (&class, moss_by_call) {
            (Some(r), _) => match Spawn::from_name(&r.value) {
                Some(k) => Some(k),
                None => {
                    self.left_out(
                        r,
                        format!(
                            "{} has no nbhub equivalent: nbhub runs servers as local processes or Slurm jobs; written as local processes",
                            r.value
                        ),
                    );
                    None
                }
            },
            (None, Some(_)) => Some(Spawn::Moss),
            (None, None) => Some(Spawn::Local),
        };
        let kind = match kind {
            Some(Spawn::Profiles) => self.profiles(),
            other => other,
        };
        let classes = match kind {
            Some(Spawn::Slurm) | Some(Spawn::Profiles) => SLURM_CLASSES,
            Some(Spawn::Moss) => MOSS_CLASSES,
            _ => LOCAL_CLASSES,
        };
        if matches!(kind, Some(Spawn::Slurm | Spawn::Moss | Spawn::Profiles)) {
            self.c.spawner.kind = nbhub_spawner::SpawnerKind::Slurm;
            if let Some(r) = &class {
                self.source("spawner.kind", r);
            }
        }
        self.spawner_common(classes);
        self.overrides(classes);
        match kind {
            Some(Spawn::Slurm | Spawn::Moss | Spawn::Profiles) => self.slurm(classes),
            _ => self.local(classes),
        }
        if kind == Some(Spawn::Moss) {
            self.moss();
        }
        if kind == Some(Spawn::Profiles) {
            return PROFILES_SLURM;
        }
        classes
    }

    fn spawner_common(&mut self, classes: &[&str]) {
        let slurm = self.c.spawner.kind == nbhub_spawner::SpawnerKind::Slurm;
        if let Some(r) = self.read(classes, "cmd", strings) {
            self.c.spawner.cmd = r.value.clone();
            self.source("spawner.cmd", &r);
        }
        if let Some(r) = self.read(classes, "args", strings) {
            self.c.spawner.args = r.value.clone();
            self.source("spawner.args", &r);
        }
        if let Some((e, name)) = self.t.get(classes, "env_keep") {
            match strings(&e.value) {
                Ok(v) => {
                    if e.extends_default {
                        self.c.spawner.env_keep.extend(v);
                    } else {
                        self.c.spawner.env_keep = v;
                    }
                    self.source_line("spawner.env_keep", e.line, &name);
                }
                Err(why) => self.r.left_out(e.line, name, why),
            }
        }
        if let Some((e, name)) = self.t.get(classes, "environment") {
            match dict(&e.value) {
                Ok(pairs) => {
                    for (k, v) in pairs {
                        match env_value(&v) {
                            Ok(v) => {
                                self.c.spawner.environment.insert(k, v);
                            }
                            Err(why) => self.r.left_out(e.line, format!("{name}[{k:?}]"), why),
                        }
                    }
                    self.source_line("spawner.environment", e.line, &name);
                }
                Err(why) => self.r.left_out(e.line, name, why),
            }
        }
        for (trait_, key) in [
            ("notebook_dir", "notebook_dir"),
            ("default_url", "default_url"),
        ] {
            if let Some(r) = self.read(classes, trait_, string) {
                // JupyterHub's {username}; `~` is the home, which "" means in nbhub.
                let v = if r.value == "~" {
                    String::new()
                } else {
                    r.value.clone()
                };
                if key == "notebook_dir" {
                    self.c.spawner.notebook_dir = v;
                } else {
                    self.c.spawner.default_url = v;
                }
                self.source(&format!("spawner.{key}"), &r);
            }
        }
        for name in ["start_timeout", "http_timeout", "poll_interval"] {
            if let Some(r) = self.read(classes, name, whole) {
                let v = r.value.max(1);
                match name {
                    "start_timeout" => self.c.spawner.start_timeout = v,
                    "http_timeout" => self.c.spawner.http_timeout = v,
                    _ => self.c.spawner.poll_interval = v,
                }
                self.source(&format!("spawner.{name}"), &r);
            }
        }
        if let Some(r) = self.read(classes, "disable_user_config", boolean) {
            if r.value {
                self.c
                    .spawner
                    .environment
                    .insert("JUPYTERHUB_DISABLE_USER_CONFIG".into(), "1".into());
                self.source("spawner.environment", &r);
            }
        }
        if let Some(r) = self.read(classes, "debug", boolean) {
            if r.value {
                self.c.spawner.args.push("--debug".into());
                self.source("spawner.args", &r);
            }
        }
        // Limits: JupyterHub passes them to the server as variables (LocalProcessSpawner
        // enforces none); a Slurm job's come from its allocation.
        for (name, var) in [
            ("mem_limit", "MEM_LIMIT"),
            ("mem_guarantee", "MEM_GUARANTEE"),
            ("cpu_limit", "CPU_LIMIT"),
            ("cpu_guarantee", "CPU_GUARANTEE"),
        ] {
            let conv = |v: &Value| {
                if name.starts_with("mem") {
                    bytes(v).map(|b| b.to_string())
                } else {
                    number(v).map(|n| format!("{n:?}"))
                }
            };
            if let Some(r) = self.read(classes, name, conv) {
                if slurm {
                    self.note(&r, "a Slurm job's MEM_LIMIT and CPU_LIMIT come from its allocation (req_memory, req_nprocs)");
                } else {
                    self.c
                        .spawner
                        .environment
                        .insert(var.into(), r.value.clone());
                    self.source("spawner.environment", &r);
                    self.note(&r, format!("passed to the server as {var}, as JupyterHub does (a local process is not limited by it, there either)"));
                }
            }
        }
        for name in [
            "pre_spawn_hook",
            "post_stop_hook",
            "auth_state_hook",
            "options_from_form",
        ] {
            if let Some(r) = self.read(classes, name, |v| Ok(v.clone())) {
                self.left_out(
                    &r,
                    format!(
                        "a Python callable cannot be translated ({})",
                        callable_hint(name)
                    ),
                );
            }
        }
        self.not_carried(classes, &["options_form"], callable_hint("options_form"));
        self.not_carried(
            classes,
            &[
                "port",
                "consecutive_failure_limit",
                "server_token_scopes",
                "oauth_client_allowed_scopes",
                "oauth_roles",
                "ssl_alt_names",
                "hub_connect_url",
            ],
            "nbhub has no equivalent of this spawner setting",
        );
    }

    /// JupyterHub 5.2's `group_overrides` and 5.3's declarative `apply_user_options`, when they
    /// are dicts (a callable is code, reported by `read`); each entry nbhub cannot take is
    /// reported with the setting's line, the others kept.
    fn overrides(&mut self, classes: &[&str]) {
        if let Some(r) = self.read(classes, "apply_user_options", dict) {
            for (option, target) in &r.value {
                let one = string(target).and_then(|t| {
                    let map = std::collections::BTreeMap::from([(option.clone(), t)]);
                    nbhub_spawner::validate_apply_user_options(&map).map(|()| map)
                });
                match one {
                    Ok(map) => self.c.spawner.apply_user_options.extend(map),
                    Err(why) => self
                        .r
                        .left_out(r.line, format!("{}[{option:?}]", r.name), why),
                }
            }
            self.source("spawner.apply_user_options", &r);
        }
        if let Some(r) = self.read(classes, "group_overrides", dict) {
            for (name, entry) in &r.value {
                let item = format!("{}[{name:?}]", r.name);
                match group_override(entry, &format!("spawner.group_overrides.{name}")) {
                    Ok((go, skipped)) => {
                        for (key, why) in skipped {
                            self.r.left_out(
                                r.line,
                                format!("{item}[\"spawner_override\"][{key:?}]"),
                                why,
                            );
                        }
                        self.c.spawner.group_overrides.insert(name.clone(), go);
                    }
                    Err(why) => self.r.left_out(r.line, item, why),
                }
            }
            self.source("spawner.group_overrides", &r);
        }
    }

    fn local(&mut self, classes: &[&str]) {
        if let Some(r) = self.read(classes, "ip", string) {
            self.c.local.ip = r.value.clone();
            self.source("local.ip", &r);
        }
        self.not_carried(
            classes,
            &[
                "popen_kwargs",
                "shell_cmd",
                "interrupt_timeout",
                "term_timeout",
                "kill_timeout",
                "home_dir_template",
            ],
            "nbhub's local spawner starts and stops servers itself (as the user, in their home)",
        );
    }

    fn slurm(&mut self, classes: &[&str]) {
        if let Some(r) = self.read(classes, "exec_prefix", string) {
            let prefix = r
                .value
                .replace("{{username}}", "{username}")
                .replace("{{ username }}", "{username}");
            let words: Vec<String> = prefix.split_whitespace().map(str::to_owned).collect();
            if words.is_empty() {
                self.c.slurm.submit_as = vec!["setuid".into()];
                self.note(&r, "an empty prefix submitted as the hub's account; nbhub submits as the user: setuid (the hub runs as root)");
            } else if words.iter().any(|w| w.contains("{username}")) {
                self.c.slurm.submit_as = words;
            } else {
                self.left_out(
                    &r,
                    "nbhub's submit_as prefix must name the user with {username}",
                );
            }
            self.source("slurm.submit_as", &r);
        } else {
            // batchspawner's default prefix.
            self.c.slurm.submit_as = ["sudo", "-E", "-u", "{username}"]
                .map(String::from)
                .to_vec();
            self.r.note(
                0,
                "c.BatchSpawnerBase.exec_prefix".into(),
                "not set: batchspawner's default `sudo -E -u {username}` is written as [slurm] submit_as (nbhub can also submit as root with \"setuid\")".into(),
            );
        }
        if let Some(r) = self.read(classes, "ip", string) {
            self.c.slurm.bind_ip = r.value.clone();
            self.source("slurm.bind_ip", &r);
        }
        let runtime = self.read(classes, "req_runtime", string);
        if let Some(r) = self.read(classes, "req_partition", string) {
            if !r.value.is_empty() && self.c.slurm.partitions.is_empty() {
                let mut p = PartitionConfig {
                    name: r.value.clone(),
                    ..Default::default()
                };
                if let Some(rt) = &runtime {
                    p.max_time = slurm_time(&rt.value);
                    self.source("slurm.partitions", rt);
                }
                if nbhub_spawner::parse_slurm_duration(&p.max_time).is_none()
                    && !p.max_time.is_empty()
                {
                    p.max_time.clear();
                }
                self.c.slurm.partitions.push(p);
                self.source("slurm.partitions", &r);
                if let Some(rt) = &runtime {
                    self.note(rt, "nbhub's form asks for the run time: the partition's max_time is this, its default Slurm's DefaultTime");
                }
            }
        } else if let Some(rt) = &runtime {
            if self.c.slurm.partitions.is_empty() {
                self.left_out(rt, "nbhub's form asks for the run time, up to a partition's max_time: with no req_partition there is no partition to bound");
            }
        }
        for (name, flag) in [
            ("req_nprocs", "--cpus-per-task"),
            ("req_memory", "--mem"),
            ("req_qos", "--qos"),
            ("req_reservation", "--reservation"),
            ("req_ngpus", "--gres"),
            ("req_constraint", "--constraint"),
        ] {
            if let Some(r) = self.read(classes, name, |v| match v {
                Value::Int(i) => Ok(i.to_string()),
                other => string(other),
            }) {
                if r.value.is_empty() {
                    continue;
                }
                let v = if name == "req_ngpus" {
                    format!("gpu:{}", r.value)
                } else {
                    r.value.clone()
                };
                self.c.slurm.extra_sbatch.push(format!("{flag}={v}"));
                self.source("slurm.extra_sbatch", &r);
            }
        }
        if let Some(r) = self.read(classes, "req_account", string) {
            if !r.value.is_empty() {
                self.c.slurm.accounts = vec![r.value.clone()];
                self.source("slurm.accounts", &r);
                self.note(&r, "offered as the one account when Slurm runs without accounting; with accounting, the user's associations are offered");
            }
        }
        if let Some(r) = self.read(classes, "req_options", string) {
            match sbatch_options(&r.value) {
                Some(opts) => {
                    self.c.slurm.extra_sbatch.extend(opts);
                    self.source("slurm.extra_sbatch", &r);
                }
                None => self.left_out(&r, "not a list of sbatch options nbhub can pass one by one"),
            }
        }
        if let Some(r) = self.read(classes, "req_keepvars_extra", string) {
            self.c.spawner.env_keep.extend(
                r.value
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty()),
            );
            self.source("spawner.env_keep", &r);
        }
        if let Some(r) = self.read(classes, "req_prologue", string) {
            match module_loads(&r.value) {
                Some(modules) if !modules.is_empty() => {
                    self.c.slurm.environments.push(EnvironmentConfig {
                        name: "default".into(),
                        title: format!("Modules: {}", modules.join(" ")),
                        modules,
                        ..Default::default()
                    });
                    self.source("slurm.environments", &r);
                    self.note(&r, "its `module load` lines are the environment \"default\" (the server is the jupyterhub-singleuser the modules put on PATH)");
                }
                Some(_) => {}
                None => self.left_out(&r, "nbhub's job script runs no free prologue (only `module load` lines are carried over): put it in a [slurm] job_template_file"),
            }
        }
        self.not_carried(
            classes,
            &["req_epilogue"],
            "nbhub's job script runs no epilogue: put it in a [slurm] job_template_file",
        );
        if let Some(r) = self.read(classes, "batch_script", string) {
            let kept = literal_sbatch_lines(&r.value);
            if !kept.is_empty() {
                self.c.slurm.extra_sbatch.extend(kept.iter().cloned());
                self.source("slurm.extra_sbatch", &r);
            }
            let kept = if kept.is_empty() {
                String::new()
            } else {
                format!(
                    " Its fixed #SBATCH lines ({}) are in extra_sbatch.",
                    kept.join(" ")
                )
            };
            self.left_out(&r, format!("nbhub writes its own job script (the port report to the hub, the end signal, the environment), so a batchspawner template cannot be used as it is: the request's resources come from the form and [slurm]; for a site's own script set [slurm] job_template_file to a minijinja template (docs/slurm.md).{kept}"));
        }
        self.not_carried(
            classes,
            &["batch_submit_cmd", "batch_query_cmd", "batch_cancel_cmd"],
            "nbhub runs sbatch, squeue and scancel itself ([slurm] bin_dir says where they are, submit_as as whom)",
        );
        self.not_carried(
            classes,
            &[
                "req_host",
                "req_cluster",
                "req_queue",
                "connect_to_job_cmd",
                "req_homedir",
                "req_username",
            ],
            "nbhub has no equivalent of this batchspawner setting",
        );
        self.noted(
            classes,
            &["startup_poll_interval", "state_pending_re", "state_running_re", "state_exechost_re", "state_unknown_re", "req_srun", "req_keepvars", "batchspawner_singleuser_cmd"],
            "nbhub tracks jobs with one squeue per poll ([slurm] poll_interval) and starts the server itself: this is not needed",
        );
    }

    /// wrapspawner's ProfilesSpawner: Slurm profiles become partitions on the form.
    fn profiles(&mut self) -> Option<Spawn> {
        let Some((entry, name)) = self.t.get(PROFILES, "profiles") else {
            return Some(Spawn::Local);
        };
        let Some(list) = entry.value.items() else {
            self.r
                .left_out(entry.line, name, "expected a list of profiles".into());
            return Some(Spawn::Local);
        };
        let mut slurm_profiles = Vec::new();
        for (i, p) in list.iter().enumerate() {
            let at = format!("{name}[{i}]");
            let pl = entry.item_line(i);
            let parts = p.items().unwrap_or_default();
            let (Some(display), Some(class), Some(overrides)) = (
                parts.first().and_then(Value::as_str),
                parts.get(2),
                parts.get(3),
            ) else {
                self.r.left_out(
                    pl,
                    at,
                    "a profile is (display, key, class, {overrides})".into(),
                );
                continue;
            };
            match Spawn::from_name(&class_name(class)) {
                Some(Spawn::Slurm | Spawn::Moss) => match dict(overrides) {
                    Ok(o) => slurm_profiles.push((display.to_owned(), at, o, pl)),
                    Err(why) => self.r.left_out(pl, at, why),
                },
                _ => self.r.left_out(
                    pl,
                    format!("{at} ({display:?})"),
                    format!("a {} profile: nbhub's form offers Slurm partitions, so only the Slurm profiles are carried over", class_name(class)),
                ),
            }
        }
        if slurm_profiles.is_empty() {
            return Some(Spawn::Local);
        }
        self.source_line("spawner.kind", entry.line, &name);
        // Overrides that every Slurm profile sets alike are the spawner's own; the others
        // (but partition and run time) cannot differ per partition in nbhub.
        let mut keys: Vec<String> = slurm_profiles
            .iter()
            .flat_map(|(_, _, o, _)| o.iter().map(|(k, _)| k.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        let global_partition = self.t.has(SLURM_CLASSES, "req_partition");
        let global_runtime = self.read(SLURM_CLASSES, "req_runtime", string);
        for key in &keys {
            if key == "req_partition" || key == "req_runtime" {
                continue;
            }
            let values: Vec<Option<&Value>> = slurm_profiles
                .iter()
                .map(|(_, _, o, _)| o.iter().find(|(k, _)| k == key).map(|(_, v)| v))
                .collect();
            let same = values[0].is_some() && values.iter().all(|v| *v == values[0]);
            // The first profile that sets it otherwise (or, failing that, leaves it out).
            let differs = values
                .iter()
                .position(|v| v.is_some() && *v != values[0])
                .or_else(|| values.iter().position(Option::is_none));
            if same {
                self.t.insert(
                    "SlurmSpawner",
                    key,
                    values[0].cloned().unwrap_or(Value::None),
                    entry.line,
                );
            } else {
                // Reported at the first profile that differs from the others.
                let at = differs.map_or(entry.line, |j| slurm_profiles[j].3);
                self.r.left_out(
                    at,
                    format!("{name}: {key}"),
                    "differs between the profiles: nbhub's partitions carry no settings of their own; add a [[slurm.fields]] entry for it, or set it once".into(),
                );
            }
        }
        for (display, at, o, pl) in slurm_profiles {
            let get = |k: &str| o.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
            let partition = get("req_partition").and_then(|v| v.as_str().map(str::to_owned));
            let Some(partition) = partition else {
                if !global_partition {
                    self.r.left_out(pl, at, format!("profile {display:?} names no req_partition: Slurm's default partition is offered anyway"));
                }
                continue;
            };
            if self.c.slurm.partitions.iter().any(|p| p.name == partition) {
                self.r.left_out(pl, at, format!("profile {display:?} is a second one on partition {partition}: nbhub offers each partition once (the first profile's label is used)"));
                continue;
            }
            let runtime = get("req_runtime")
                .and_then(|v| v.as_str().map(str::to_owned))
                .or_else(|| global_runtime.as_ref().map(|r| r.value.clone()))
                .map(|t| slurm_time(&t))
                .filter(|t| nbhub_spawner::parse_slurm_duration(t).is_some())
                .unwrap_or_default();
            self.c.slurm.partitions.push(PartitionConfig {
                name: partition,
                label: display,
                max_time: runtime,
                ..Default::default()
            });
        }
        self.source_line("slurm.partitions", entry.line, &name);
        self.noted(
            PROFILES,
            &["default_profile", "child_state_key"],
            "nbhub's form opens with the user's last choice, or the first partition",
        );
        Some(Spawn::Profiles)
    }

    /// jupyterhub_moss's partitions: partitions, their run-time limits, a CPUs field and the
    /// Jupyter environments.
    fn moss(&mut self) {
        let Some(r) = self.read(MOSS_CLASSES, "partitions", dict) else {
            return;
        };
        let entry = self.t.get(MOSS_CLASSES, "partitions").map(|(e, _)| e);
        let mut max_nprocs = 0u64;
        for (i, (name, spec)) in r.value.iter().enumerate() {
            let at = format!("{}[{name:?}]", r.name);
            let pl = entry.as_ref().map_or(r.line, |e| e.item_line(i));
            let fields = match dict(spec) {
                Ok(f) => f,
                Err(why) => {
                    self.r.left_out(pl, at, why);
                    continue;
                }
            };
            let get = |k: &str| {
                fields
                    .iter()
                    .find(|(x, _): &&(String, Value)| x == k)
                    .map(|(_, v)| v.clone())
            };
            let description = [get("description"), get("architecture")]
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            let max_time = get("max_runtime")
                .and_then(|v| whole(&v).ok())
                .map(hms)
                .unwrap_or_default();
            if let Some(n) = get("max_nprocs").and_then(|v| whole(&v).ok()) {
                max_nprocs = max_nprocs.max(n);
            }
            self.c.slurm.partitions.push(PartitionConfig {
                name: name.clone(),
                description,
                max_time,
                ..Default::default()
            });
            if let Some(envs) = get("jupyter_environments") {
                match dict(&envs) {
                    Ok(envs) => {
                        for (key, env) in envs {
                            self.moss_environment(&key, &env, pl, &at);
                        }
                    }
                    Err(why) => self
                        .r
                        .left_out(pl, format!("{at}[\"jupyter_environments\"]"), why),
                }
            }
            for key in ["gpu", "max_ngpus", "simple"] {
                if get(key).is_some_and(|v| v != Value::None && v != Value::Int(0))
                    && key != "simple"
                {
                    self.r.note(pl, format!("{at}[{key:?}]"), "nbhub reads a partition's GPUs from Slurm (Gres) and offers a GPUs field where it has some".into());
                }
            }
        }
        self.source("slurm.partitions", &r);
        if max_nprocs > 0 {
            self.c.slurm.fields.push(CustomField {
                name: "nprocs".into(),
                label: "CPUs".into(),
                kind: CustomType::Int,
                min: Some(1.0),
                max: Some(max_nprocs as f64),
                default: Some(CustomValue::Int(1)),
                help: "CPUs per task".into(),
                sbatch: "--cpus-per-task={value}".into(),
                ..Default::default()
            });
            self.source("slurm.fields", &r);
            self.note(&r, format!("max_nprocs is a CPUs field (--cpus-per-task) up to {max_nprocs}, the largest of the partitions' (nbhub's fields are not per partition)"));
        }
        if !self.c.slurm.environments.is_empty() {
            self.source("slurm.environments", &r);
        }
    }

    fn moss_environment(&mut self, key: &str, env: &Value, line: usize, at: &str) {
        let shown = format!("{at}[\"jupyter_environments\"][{key:?}]");
        let Ok(fields) = dict(env) else {
            self.r.left_out(line, shown, "expected a dict".into());
            return;
        };
        let get = |k: &str| {
            fields
                .iter()
                .find(|(x, _): &&(String, Value)| x == k)
                .and_then(|(_, v)| v.as_str().map(str::to_owned))
        };
        let mut e = EnvironmentConfig {
            name: key.to_owned(),
            title: get("description").unwrap_or_default(),
            ..Default::default()
        };
        let modules: Vec<String> = get("modules")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        match (get("path").filter(|p| !p.is_empty()), modules.is_empty()) {
            (Some(path), true) => {
                let p = path.trim_end_matches('/');
                e.prefix = p.strip_suffix("/bin").unwrap_or(p).to_owned();
            }
            (None, false) => e.modules = modules,
            (Some(_), false) => {
                self.r.left_out(
                    line,
                    shown,
                    "both a path and modules: an nbhub environment has one of them".into(),
                );
                return;
            }
            (None, true) => {
                self.r
                    .left_out(line, shown, "neither a path nor modules".into());
                return;
            }
        }
        match self.c.slurm.environments.iter().find(|x| x.name == e.name) {
            Some(same) if same.prefix == e.prefix && same.modules == e.modules => {}
            Some(_) => self.r.left_out(line, shown, format!("another partition's environment {key:?} differs: nbhub's environments are offered with every partition, so only the first is kept")),
            None => self.c.slurm.environments.push(e),
        }
    }
}

/// `"http://host:port/path/"` → (`"http://host:port"`, `"/path/"`); an empty host is every
/// interface.
fn split_url(u: &str) -> Option<(String, String)> {
    let fixed = u.replacen("://:", "://0.0.0.0:", 1);
    let url = url::Url::parse(&fixed).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    let mut path = url.path().to_owned();
    if !path.ends_with('/') {
        path.push('/');
    }
    Some((format!("{}://{host}:{port}", url.scheme()), path))
}

/// JupyterHub's `ip`: `""` is every interface; an IPv6 address goes in brackets.
fn host_of(ip: &str) -> String {
    match ip {
        "" | "*" => "0.0.0.0".into(),
        v6 if v6.contains(':') && !v6.starts_with('[') => format!("[{v6}]"),
        other => other.into(),
    }
}

/// The dotted name of a class given as a string or an imported name.
fn class_name(v: &Value) -> String {
    match v {
        Value::Str(s) | Value::Class(s) => s.clone(),
        other => other.to_string(),
    }
}

fn log_level(v: &Value) -> Result<LogLevel, String> {
    let n = match v {
        Value::Int(i) => *i,
        Value::Str(s) => match s.to_ascii_uppercase().as_str() {
            "DEBUG" => 10,
            "INFO" => 20,
            "WARN" | "WARNING" => 30,
            "ERROR" | "CRITICAL" | "FATAL" => 40,
            other => return Err(format!("{other:?} is not a log level")),
        },
        other => return Err(format!("expected a log level, not {}", other.kind())),
    };
    Ok(match n {
        ..=9 => LogLevel::Trace,
        10..=19 => LogLevel::Debug,
        20..=29 => LogLevel::Info,
        30..=39 => LogLevel::Warn,
        _ => LogLevel::Error,
    })
}

/// A server's environment variable's value: text, or a number or boolean as Python's str().
/// One entry of `group_overrides`: `{"groups": [...], "spawner_override": {...}}`. The settings
/// nbhub's overrides cannot set come back as (name, why) to be reported.
#[allow(clippy::type_complexity)]
fn group_override(
    entry: &Value,
    key: &str,
) -> Result<(nbhub_spawner::GroupOverride, Vec<(String, String)>), String> {
    let mut go = nbhub_spawner::GroupOverride::default();
    let mut skipped = Vec::new();
    let mut seen_override = false;
    for (k, v) in dict(entry)? {
        match k.as_str() {
            "groups" => go.groups = strings(&v)?,
            "spawner_override" => {
                seen_override = true;
                let o = &mut go.spawner_override;
                for (setting, value) in dict(&v)? {
                    match setting.as_str() {
                        "environment" => {
                            for (name, val) in dict(&value)? {
                                o.environment.insert(name, env_value(&val)?);
                            }
                        }
                        "default_url" => o.default_url = Some(string(&value)?),
                        "notebook_dir" => o.notebook_dir = Some(string(&value)?),
                        "args" => o.args = Some(strings(&value)?),
                        _ => skipped.push((
                            setting,
                            "nbhub's group_overrides set environment, default_url, notebook_dir, args and extra_sbatch (Slurm); which partitions and limits a group has is [[slurm.allow]]'s".to_owned(),
                        )),
                    }
                }
            }
            other => {
                return Err(format!(
                    "an entry has groups and spawner_override, not {other:?}"
                ))
            }
        }
    }
    if go.groups.is_empty() || !seen_override {
        return Err("an entry needs both groups and spawner_override".to_owned());
    }
    go.spawner_override.validate(key)?;
    Ok((go, skipped))
}

fn env_value(v: &Value) -> Result<String, String> {
    match v {
        Value::Str(s) => Ok(s.clone()),
        Value::Int(i) => Ok(i.to_string()),
        Value::Float(f) => Ok(format!("{f:?}")),
        Value::Bool(b) => Ok(if *b { "True" } else { "False" }.into()),
        other => Err(format!(
            "a variable's value must be text, not {}",
            other.kind()
        )),
    }
}

/// JupyterHub's ByteSpecification: an integer, or a number with K, M, G or T (powers of 1024).
fn bytes(v: &Value) -> Result<u64, String> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as u64),
        Value::Str(s) => {
            let s = s.trim();
            let (num, unit) =
                s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
            let n: f64 = num
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a size such as 2G"))?;
            let mult = match unit.to_ascii_uppercase().as_str() {
                "" => 1u64,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1 << 40,
                other => return Err(format!("{other:?} is not K, M, G or T")),
            };
            Ok((n * mult as f64) as u64)
        }
        other => Err(format!(
            "expected a size such as \"2G\", not {}",
            other.kind()
        )),
    }
}

/// batchspawner's runtime (`"8:00:00"`, `"30"` minutes) in Slurm's syntax.
fn slurm_time(t: &str) -> String {
    t.trim().to_owned()
}

/// Seconds as `H:MM:SS`.
fn hms(secs: u64) -> String {
    format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `req_options`' words as separate sbatch options: `--qos normal -C ib` → `--qos=normal`,
/// `-Cib`. None when a word is not part of an option.
fn sbatch_options(text: &str) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    let mut words = text.split_whitespace().peekable();
    while let Some(w) = words.next() {
        if !w.starts_with('-') {
            return None;
        }
        let takes_value = !w.contains('=') && (w.len() == 2 || w.starts_with("--"));
        match words.peek() {
            Some(next) if takes_value && !next.starts_with('-') => {
                let sep = if w.starts_with("--") { "=" } else { "" };
                out.push(format!("{w}{sep}{next}"));
                words.next();
            }
            _ => out.push(w.to_owned()),
        }
    }
    Some(out)
}

/// The modules of a prologue that only loads modules (`module load a b`, `ml a`, `module
/// purge`); None when it does anything else.
fn module_loads(prologue: &str) -> Option<Vec<String>> {
    let mut modules = Vec::new();
    for line in prologue
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["module", "purge"] | ["ml", "purge"] => {}
            ["module", "load" | "add", rest @ ..] | ["ml", rest @ ..] if !rest.is_empty() => {
                if rest
                    .iter()
                    .any(|m| m.starts_with('-') || m.contains(['$', '`', ';', '&', '|']))
                {
                    return None;
                }
                modules.extend(rest.iter().map(|m| (*m).to_owned()));
            }
            _ => return None,
        }
    }
    Some(modules)
}

/// The `#SBATCH` lines of a batchspawner script without a template placeholder and not about
/// what nbhub sets itself (partition, time, output, job name, working directory, export).
fn literal_sbatch_lines(script: &str) -> Vec<String> {
    const NBHUB_SETS: &[&str] = &[
        "--partition",
        "-p",
        "--time",
        "-t",
        "--output",
        "-o",
        "--error",
        "-e",
        "--job-name",
        "-J",
        "--chdir",
        "-D",
        "--workdir",
        "--export",
        "--get-user-env",
        "--parsable",
        "--cpus-per-task",
        "-c",
        "--mem",
        "--nodes",
        "-N",
        "--account",
        "-A",
        "--gres",
        "--reservation",
        "--qos",
        "-q",
        "--signal",
    ];
    script
        .lines()
        .filter_map(|l| l.trim().strip_prefix("#SBATCH"))
        .map(str::trim)
        .filter(|o| !o.contains('{') && !o.contains('%') && o.starts_with('-'))
        .filter(|o| {
            let flag = o.split(['=', ' ']).next().unwrap_or(o);
            let short = if flag.len() > 2 && !flag.starts_with("--") {
                &flag[..2]
            } else {
                flag
            };
            !NBHUB_SETS.contains(&flag) && !NBHUB_SETS.contains(&short)
        })
        .filter_map(|o| sbatch_options(o).filter(|v| v.len() == 1))
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The translation of `src`: the config and the report.
    fn tr(src: &str) -> (Config, Report) {
        let items = super::super::pyconfig::parse(src).expect("parses");
        let mut report = Report::default();
        let (config, _) = translate(&items, &mut report);
        report.sort();
        (config, report)
    }

    fn left_out(r: &Report) -> Vec<String> {
        r.left_out
            .iter()
            .map(|n| format!("{}: {}", n.line, n.what))
            .collect()
    }

    #[test]
    fn jupyterhub_defaults_where_they_differ_from_nbhub() {
        let (c, r) = tr("c = get_config()\nc.JupyterHub.ip = ''\n");
        assert_eq!(
            c.authenticator.kind,
            AuthenticatorKind::Pam,
            "no authenticator_class: PAM"
        );
        assert_eq!(c.spawner.kind, nbhub_spawner::SpawnerKind::Local);
        assert_eq!(c.hub.bind_url.to_string(), "http://0.0.0.0:8000");
        assert!(r.left_out.is_empty(), "{r:?}");
    }

    #[test]
    fn group_overrides_and_apply_user_options_are_carried_over() {
        let src = "c.Spawner.apply_user_options = {'start_in': 'default_url', 'image': 'image'}\n\
c.Spawner.group_overrides = {\n\
    '01-gpu': {'groups': ['gpu'], 'spawner_override': {'environment': {'GPU': '1'}, 'default_url': '/lab/gpu', 'mem_limit': '8G'}},\n\
    'bad': {'groups': ['x']},\n\
}\n";
        let (c, r) = tr(src);
        let s = &c.spawner;
        assert_eq!(s.apply_user_options.len(), 1, "{s:?}");
        assert_eq!(s.apply_user_options["start_in"], "default_url");
        let go = &s.group_overrides["01-gpu"];
        assert_eq!(go.groups, ["gpu"]);
        assert_eq!(go.spawner_override.environment["GPU"], "1");
        assert_eq!(go.spawner_override.default_url.as_deref(), Some("/lab/gpu"));
        assert!(!s.group_overrides.contains_key("bad"));
        assert_eq!(
            left_out(&r),
            [
                "1: c.Spawner.apply_user_options[\"image\"]",
                "2: c.Spawner.group_overrides[\"01-gpu\"][\"spawner_override\"][\"mem_limit\"]",
                "2: c.Spawner.group_overrides[\"bad\"]",
            ]
        );
        assert!(s.validate().is_ok(), "{:?}", s.validate());
    }

    #[test]
    fn shared_password_keeps_both_passwords() {
        let (c, r) = tr("c.JupyterHub.authenticator_class = 'shared-password'\nc.SharedPasswordAuthenticator.user_password = 'a-long-password'\nc.SharedPasswordAuthenticator.admin_password = 'an-admin-password-of-32-chars-xx'\n");
        assert_eq!(c.authenticator.kind, AuthenticatorKind::SharedPassword);
        assert_eq!(c.authenticator.user_password, "a-long-password");
        assert_eq!(
            c.authenticator.admin_password,
            "an-admin-password-of-32-chars-xx"
        );
        assert!(r.left_out.is_empty(), "{r:?}");
        // JupyterHub's length rules: a shorter admin password (or one equal to the users')
        // is reported, not written into a config that would not load.
        let (c, r) = tr("c.JupyterHub.authenticator_class = 'shared-password'\nc.SharedPasswordAuthenticator.user_password = 'a-long-password'\nc.SharedPasswordAuthenticator.admin_password = 'too-short'\n");
        assert_eq!(c.authenticator.admin_password, "");
        assert_eq!(
            left_out(&r),
            ["3: c.SharedPasswordAuthenticator.admin_password"]
        );
        let same = "an-admin-password-of-32-chars-xx";
        let (c, r) = tr(&format!("c.JupyterHub.authenticator_class = 'shared-password'\nc.SharedPasswordAuthenticator.user_password = '{same}'\nc.SharedPasswordAuthenticator.admin_password = '{same}'\n"));
        assert_eq!(c.authenticator.admin_password, "");
        assert_eq!(
            left_out(&r),
            ["3: c.SharedPasswordAuthenticator.admin_password"]
        );
        assert!(c.validate().is_ok());
    }

    #[test]
    fn an_unknown_authenticator_lets_nobody_in() {
        let (c, r) = tr(
            "c.JupyterHub.authenticator_class = 'github'\nc.GitHubOAuthenticator.client_id = 'x'\n",
        );
        assert_eq!(c.authenticator.kind, AuthenticatorKind::Native);
        assert!(!c.authenticator.enable_signup);
        assert_eq!(
            left_out(&r),
            [
                "1: c.JupyterHub.authenticator_class",
                "2: c.GitHubOAuthenticator.client_id"
            ]
        );
    }

    #[test]
    fn lists_extend_their_default_and_dicts_merge() {
        let (c, _) = tr("c.Spawner.env_keep.append('TZ')\nc.Spawner.environment = {'A': 1}\nc.Spawner.environment.update({'B': True})\nc.Spawner.args += ['--x']\n");
        assert!(c.spawner.env_keep.starts_with(&["PATH".to_owned()]));
        assert_eq!(c.spawner.env_keep.last().map(String::as_str), Some("TZ"));
        assert_eq!(
            c.spawner.environment.get("A").map(String::as_str),
            Some("1")
        );
        assert_eq!(
            c.spawner.environment.get("B").map(String::as_str),
            Some("True")
        );
        assert_eq!(c.spawner.args, ["--x"]);
    }

    #[test]
    fn the_most_specific_class_wins_and_unused_classes_are_notes() {
        let (c, r) = tr("c.JupyterHub.spawner_class = 'batchspawner.SlurmSpawner'\nc.Spawner.cmd = 'a'\nc.SlurmSpawner.cmd = 'b'\nc.LocalProcessSpawner.term_timeout = 5\nc.PAMAuthenticator.open_sessions = False\nc.JupyterHub.authenticator_class = 'dummy'\n");
        assert_eq!(c.spawner.cmd, ["b"]);
        assert!(left_out(&r).is_empty(), "{r:?}");
        assert_eq!(
            r.notes
                .iter()
                .filter(|n| n.why.contains("not in use"))
                .count(),
            2,
            "{r:?}"
        );
    }

    #[test]
    fn batchspawner_requests_become_sbatch_options() {
        let (c, r) = tr("c.JupyterHub.spawner_class = 'batchspawner.SlurmSpawner'\nc.SlurmSpawner.req_nprocs = '4'\nc.SlurmSpawner.req_memory = '8G'\nc.SlurmSpawner.req_options = '-C ib --qos long'\nc.SlurmSpawner.req_partition = 'batch'\nc.SlurmSpawner.req_runtime = '8:00:00'\nc.SlurmSpawner.req_prologue = 'source /etc/site.sh'\n");
        assert_eq!(
            c.slurm.extra_sbatch,
            ["--cpus-per-task=4", "--mem=8G", "-Cib", "--qos=long"]
        );
        assert_eq!(c.slurm.partitions[0].name, "batch");
        assert_eq!(c.slurm.partitions[0].max_time, "8:00:00");
        assert_eq!(
            c.slurm.submit_as,
            ["sudo", "-E", "-u", "{username}"],
            "batchspawner's default"
        );
        assert_eq!(left_out(&r), ["7: c.SlurmSpawner.req_prologue"]);
    }

    #[test]
    fn tls_and_a_foreign_database_are_left_out() {
        let (c, r) = tr("c.JupyterHub.ssl_cert = '/etc/x.pem'\nc.JupyterHub.db_url = 'postgresql://jh@db/jupyterhub'\nc.JupyterHub.hub_ip = '0.0.0.0'\n");
        assert_eq!(c.hub.db_url, "");
        assert_eq!(
            left_out(&r),
            ["1: c.JupyterHub.ssl_cert", "2: c.JupyterHub.db_url"]
        );
        assert!(
            r.notes.iter().any(|n| n.why.contains("hub_connect_url")),
            "{r:?}"
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(
            split_url("http://:8000/jhub"),
            Some(("http://0.0.0.0:8000".into(), "/jhub/".into()))
        );
        assert_eq!(bytes(&Value::Str("2G".into())), Ok(2 << 30));
        assert_eq!(bytes(&Value::Str("512M".into())), Ok(512 << 20));
        assert_eq!(
            sbatch_options("--qos normal -C ib --exclusive"),
            Some(vec![
                "--qos=normal".into(),
                "-Cib".into(),
                "--exclusive".into()
            ])
        );
        assert_eq!(sbatch_options("normal"), None);
        assert_eq!(
            module_loads("module purge\nmodule load Python/3.12 JupyterLab\n"),
            Some(vec!["Python/3.12".into(), "JupyterLab".into()])
        );
        assert_eq!(module_loads("source /opt/env.sh"), None);
        assert_eq!(hms(12 * 3600), "12:00:00");
        assert_eq!(
            literal_sbatch_lines("#!/bin/bash\n#SBATCH --partition={partition}\n#SBATCH --exclusive\n#SBATCH --constraint=ib\n#SBATCH --time={runtime}\n#SBATCH -o /dev/null\n{cmd}\n"),
            vec!["--exclusive".to_owned(), "--constraint=ib".to_owned()]
        );
    }
}
