//! The OpenID Connect / OAuth 2 client behind `kind = "generic-oauth"`: the provider's endpoints
//! (discovered from its issuer, cached and refreshed), the authorization request (state, nonce,
//! PKCE S256), the code exchange, the ID token's verification against the provider's JWKS and
//! the claims that decide who the user is. The HTTP handlers are in `pages/oidc_login.rs`.
//!
//! Nothing here writes to the database: a sign-in is checked completely before a user exists.
//!
//! # Layout
//!
//! - this file: [`OidcClient`] (its configuration, secret and caches), [`SignedIn`],
//!   [`SignInError`];
//! - `oidc/discovery.rs`: the provider's endpoints ([`Endpoints`]), discovered and cached;
//! - `oidc/login.rs`: the round trip through the provider ([`PendingLogin`]), the logout URL;
//! - `oidc/tokens.rs`: code exchange, refresh, userinfo;
//! - `oidc/verify.rs`: the ID token's signature and claims against the JWKS;
//! - `oidc/claims.rs`: claims → user name, groups, may sign in, admin.

mod claims;
mod discovery;
mod login;
mod tokens;
mod verify;

pub use claims::{claim_at, decide, map_username};
pub use discovery::Endpoints;
pub use login::{logout_url, PendingLogin, LOGIN_MAX_AGE_SECS};
pub use verify::CLOCK_SKEW_SECS;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use serde_json::Value;

use crate::config::AuthenticatorConfig;

/// How long the discovery document and the JWKS are trusted before they are fetched again.
const METADATA_MAX_AGE: Duration = Duration::from_secs(3600);

/// Why a sign-in failed; each becomes a page with a way to try again.
#[derive(Debug)]
pub enum SignInError {
    /// The request or what the provider answered is not acceptable (4xx).
    Refused(String),
    /// The provider could not be reached or answered nonsense (503).
    ProviderUnavailable(String),
}

impl SignInError {
    fn provider(what: &str, e: impl std::fmt::Display) -> Self {
        SignInError::ProviderUnavailable(format!(
            "The identity provider could not be reached ({what}: {e})."
        ))
    }
}

/// Who the provider says signed in.
#[derive(Debug)]
pub struct SignedIn {
    /// The hub user name (normalised as every login's).
    pub username: String,
    pub groups: Vec<String>,
    /// The raw ID token, for `id_token_hint` at logout.
    pub id_token: Option<String>,
    /// OAuthenticator's auth_state: `access_token`, `refresh_token`, `id_token`, `scope`,
    /// `token_response`, `oauth_user` (the claims), and ours: `token_issued_at` and
    /// `expires_at` (Unix seconds). Kept only with `enable_auth_state`.
    pub auth_state: Value,
}

impl SignedIn {
    /// The subject (`sub`) the provider knows this user by, from the kept claims.
    pub fn subject_of(auth_state: &Value) -> Option<&str> {
        auth_state["oauth_user"]["sub"].as_str()
    }
}

pub struct OidcClient {
    config: AuthenticatorConfig,
    /// For the token and userinfo endpoints: no redirects.
    http: reqwest::Client,
    /// For the public discovery document and JWKS: a few redirects, never from https to http.
    public_http: reqwest::Client,
    secret: Result<String, String>,
    endpoints: tokio::sync::Mutex<Option<(Instant, Endpoints)>>,
    jwks: tokio::sync::Mutex<Option<(Instant, String, JwkSet)>>,
    /// States whose callback was accepted, until they expire: a replayed callback is refused
    /// even by a browser that kept the state cookie.
    used_states: std::sync::Mutex<HashMap<String, Instant>>,
}

impl OidcClient {
    pub fn new(config: &AuthenticatorConfig) -> Self {
        let secret = if config.client_secret_file.as_os_str().is_empty() {
            Ok(config.client_secret.clone())
        } else {
            std::fs::read_to_string(&config.client_secret_file)
                .map(|s| s.trim().to_string())
                .map_err(|e| {
                    format!(
                        "key `authenticator.client_secret_file`: cannot read {}: {e}",
                        config.client_secret_file.display()
                    )
                })
        };
        let client = |redirect| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .connect_timeout(Duration::from_secs(5))
                .redirect(redirect)
                .user_agent(concat!("nbhub/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default()
        };
        // Token and userinfo answers are never redirects to be followed with our secret.
        let http = client(reqwest::redirect::Policy::none());
        let public_http = client(reqwest::redirect::Policy::custom(|attempt| {
            let downgrade = attempt
                .previous()
                .first()
                .is_some_and(|first| first.scheme() == "https")
                && attempt.url().scheme() != "https";
            if downgrade {
                attempt.error("a redirect from https to http")
            } else if attempt.previous().len() > 5 {
                attempt.error("more than 5 redirects")
            } else {
                attempt.follow()
            }
        }));
        OidcClient {
            config: config.clone(),
            http,
            public_http,
            secret,
            endpoints: Default::default(),
            jwks: Default::default(),
            used_states: Default::default(),
        }
    }

    /// At the hub's start: the secret must be readable; the discovery is fetched now if the
    /// provider answers (otherwise at the first sign-in, so the hub does not depend on it).
    pub async fn startup_check(&self) -> Result<(), String> {
        self.secret.as_ref().map_err(Clone::clone)?;
        match self.endpoints().await {
            Ok(e) => tracing::info!(authorize = %e.authorize, "OpenID provider discovered"),
            Err(e) => tracing::warn!(
                "OpenID provider not reachable at start, trying again at the first sign-in: {e:?}"
            ),
        }
        Ok(())
    }

    pub fn config(&self) -> &AuthenticatorConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_secret_file_is_read_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing");
        let config = AuthenticatorConfig {
            client_secret_file: missing.clone(),
            ..Default::default()
        };
        let err = OidcClient::new(&config).startup_check().await.unwrap_err();
        assert!(
            err.contains("client_secret_file") && err.contains(&missing.display().to_string()),
            "{err}"
        );
        let file = dir.path().join("secret");
        std::fs::write(&file, "s3cret\n").expect("write");
        let client = OidcClient::new(&AuthenticatorConfig {
            client_secret_file: file,
            ..Default::default()
        });
        assert_eq!(
            client.secret.as_deref(),
            Ok("s3cret"),
            "trailing newline dropped"
        );
    }
}
