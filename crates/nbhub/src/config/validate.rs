//! The checks that span several keys or that serde cannot express (an OAuth provider's
//! endpoints, auth_state's key, roles and services), each error naming the key.

use super::*;

impl Config {
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
        if !self.systems.is_empty() {
            if self.spawner.kind != nbhub_spawner::SpawnerKind::Slurm {
                return Err(ConfigError(
                    "key `systems`: [[systems]] are Slurm systems; set [spawner] kind = \"slurm\""
                        .into(),
                ));
            }
            if self.slurm != nbhub_spawner::SlurmConfig::default() {
                return Err(ConfigError(
                    "key `slurm`: [slurm] and [[systems]] are both given; with [[systems]] each system holds its own Slurm keys".into(),
                ));
            }
            nbhub_spawner::validate_systems(&self.systems).map_err(ConfigError)?;
        }
        if self.authenticator.kind == AuthenticatorKind::GenericOauth {
            self.validate_generic_oauth()?;
        }
        self.validate_auth_state()?;
        self.validate_shared_password()?;
        self.validate_jupyterhub5_hub_keys()?;
        if self.proxy.kind == ProxyKind::External && self.proxy.auth_token.is_empty() {
            return Err(ConfigError(
                "key `proxy.auth_token`: an external proxy needs its CONFIGPROXY_AUTH_TOKEN here"
                    .into(),
            ));
        }
        if !self.proxy.api_urls.is_empty() {
            if self.proxy.api_url != ProxyConfig::default().api_url {
                return Err(ConfigError(
                    "keys `proxy.api_url` and `proxy.api_urls`: give one of them (api_urls lists \
                     every proxy; api_url is the one-proxy case)"
                        .into(),
                ));
            }
            if self.proxy.kind != ProxyKind::External {
                return Err(ConfigError(
                    "key `proxy.api_urls`: several proxies are external proxies; set [proxy] \
                     kind = \"external\""
                        .into(),
                ));
            }
            let mut seen = std::collections::BTreeSet::new();
            for u in &self.proxy.api_urls {
                if !seen.insert(u.origin()) {
                    return Err(ConfigError(format!(
                        "key `proxy.api_urls`: {} is listed twice",
                        u.origin()
                    )));
                }
            }
        }
        if h.maintenance_file.is_dir() {
            return Err(ConfigError(format!(
                "key `hub.maintenance_file`: {} is a directory; name a TOML file (it need not \
                 exist yet)",
                h.maintenance_file.display()
            )));
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

    /// SharedPasswordAuthenticator's rules (JupyterHub 5.1): a user password of 8 characters
    /// at least, an admin password of 32 at least, and never the same one.
    fn validate_shared_password(&self) -> Result<(), ConfigError> {
        let a = &self.authenticator;
        let err =
            |key: &str, msg: String| Err(ConfigError(format!("key `authenticator.{key}`: {msg}")));
        let (user, admin) = (
            a.user_password.chars().count(),
            a.admin_password.chars().count(),
        );
        if user > 0 && user < 8 {
            return err(
                "user_password",
                format!("must be at least 8 characters long, got {user} characters"),
            );
        }
        if admin > 0 && admin < 32 {
            return err(
                "admin_password",
                format!("must be at least 32 characters, not {admin}"),
            );
        }
        if admin > 0 && a.user_password == a.admin_password {
            return err(
                "admin_password",
                "user_password and admin_password cannot be the same".into(),
            );
        }
        if a.kind != AuthenticatorKind::SharedPassword && (user > 0 || admin > 0) {
            return err(
                if user > 0 {
                    "user_password"
                } else {
                    "admin_password"
                },
                "is a key of kind = \"shared-password\" (dummy's shared password is `password`)"
                    .into(),
            );
        }
        if a.refresh_pre_stop && !a.enable_auth_state {
            return err(
                "refresh_pre_stop",
                "needs enable_auth_state = true (the tokens to refresh are kept in auth_state)"
                    .into(),
            );
        }
        Ok(())
    }

    /// The `[hub]` keys of JupyterHub 5.x: CORS and the metrics' buckets.
    fn validate_jupyterhub5_hub_keys(&self) -> Result<(), ConfigError> {
        let h = &self.hub;
        let origin = h.allow_origin.as_str();
        if !origin.is_empty() && origin != "*" {
            let parsed = url::Url::parse(origin).ok();
            let bare = parsed.as_ref().is_some_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && u.path() == "/"
                    && !origin.ends_with('/')
                    && u.query().is_none()
                    && u.username().is_empty()
            });
            if !bare {
                return Err(ConfigError(format!(
                    "key `hub.allow_origin`: {origin:?} is not an origin; give \"*\" or \
                     scheme://host[:port] without a path, e.g. \"https://lab.example.org\""
                )));
            }
        }
        for (key, buckets) in [
            (
                "server_spawn_duration_seconds_buckets",
                &h.server_spawn_duration_seconds_buckets,
            ),
            (
                "server_stop_duration_seconds_buckets",
                &h.server_stop_duration_seconds_buckets,
            ),
        ] {
            crate::metrics::check_buckets(buckets)
                .map_err(|e| ConfigError(format!("key `hub.{key}`: {e}")))?;
        }
        Ok(())
    }
}
