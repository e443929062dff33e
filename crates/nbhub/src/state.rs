//! The state every handler shares: config, database, secrets, templates. Cheap to clone.

use std::ops::Deref;
use std::sync::Arc;

use axum::http::HeaderValue;

use crate::auth::throttle::LoginThrottle;
use crate::config::Config;
use crate::db::Db;
use crate::supervisor::Supervisor;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Arc<Config>,
    /// Every user server's supervisor, the spawner and the proxy.
    pub supervisor: Arc<Supervisor>,
    /// The metrics registry (`/hub/metrics`), shared with the supervisor.
    pub metrics: Arc<crate::metrics::Metrics>,
    pub db: Db,
    /// Signs login cookies and XSRF tokens.
    pub cookie_secret: Vec<u8>,
    pub throttle: LoginThrottle,
    /// Browser sessions a logout ended; their login cookies sign no one in.
    pub ended_sessions: crate::auth::session::EndedSessions,
    /// Who a request is and what it may do: the database, the identity cache, auth_state.
    pub authz: crate::auth::Authz,
    pub templates: crate::pages::Templates,
    /// Set by `POST /hub/api/shutdown`.
    pub shutdown: crate::api::shutdown::ShutdownSwitch,
    /// The OpenID Connect client, with `[authenticator] kind = "generic-oauth"`.
    pub oidc: Option<Arc<crate::auth::oidc::OidcClient>>,
    /// The Content-Security-Policy headers of HTML pages and of everything else, made once
    /// rather than per response.
    pub csp_html: HeaderValue,
    pub csp_other: HeaderValue,
    /// What admins tell every user (every page, `/services/announcement/latest`).
    pub announcements: Arc<crate::announcements::Announcements>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(
        config: Arc<Config>,
        db: Db,
        cookie_secret: Vec<u8>,
        supervisor: Arc<Supervisor>,
        crypt: Option<crate::auth::crypt::CryptKeeper>,
    ) -> Self {
        let throttle = LoginThrottle::new(config.authenticator.failed_login_threshold);
        let templates = crate::pages::Templates::new(&config);
        let oidc = (config.authenticator.kind == crate::config::AuthenticatorKind::GenericOauth)
            .then(|| Arc::new(crate::auth::oidc::OidcClient::new(&config.authenticator)));
        let auth_states = Arc::new(crate::auth::auth_state::AuthStates::new(
            db.clone(),
            config.clone(),
            crypt.map(Arc::new),
            oidc.clone(),
        ));
        supervisor.set_pre_spawn(auth_states.clone());
        let hub_prefix = format!("{}hub/", config.hub.base_url.as_str());
        let csp = |is_html| {
            HeaderValue::from_str(&crate::web::content_security_policy(&hub_prefix, is_html))
                .unwrap_or_else(|_| HeaderValue::from_static("frame-ancestors 'none'"))
        };
        let (csp_html, csp_other) = (csp(true), csp(false));
        let blocked_users = Arc::new(config.authenticator.blocked_users.iter().cloned().collect());
        AppState(Arc::new(Inner {
            config,
            metrics: supervisor.metrics.clone(),
            supervisor,
            db: db.clone(),
            cookie_secret,
            throttle,
            ended_sessions: Default::default(),
            authz: crate::auth::Authz {
                db: db.clone(),
                identities: Default::default(),
                auth_states,
                blocked_users,
            },
            templates,
            shutdown: Default::default(),
            oidc,
            csp_html,
            csp_other,
            announcements: Arc::default(),
        }))
    }

    /// `{base_url}hub/`
    pub fn hub_prefix(&self) -> String {
        format!("{}hub/", self.config.hub.base_url.as_str())
    }
}
