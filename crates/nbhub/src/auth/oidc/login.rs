//! The sign-in's round trip through the provider: what the browser carries ([`PendingLogin`]:
//! state, nonce, PKCE verifier, in a signed cookie), the authorization URL, the one-time use of
//! a state, and the logout URL.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::*;

/// How long a sign-in may take at the provider (the state cookie's lifetime).
pub const LOGIN_MAX_AGE_SECS: i64 = 600;

/// What the browser carries through the provider, in a signed cookie: checked at the callback.
#[derive(Clone, Debug, serde::Serialize, Deserialize, PartialEq)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub code_verifier: String,
    /// Where to go after the sign-in (already checked to be local).
    pub next: Option<String>,
}

impl PendingLogin {
    pub fn new(next: Option<String>) -> Self {
        PendingLogin {
            state: random_token(),
            nonce: random_token(),
            code_verifier: random_token(),
            next,
        }
    }
    /// PKCE S256: base64url(sha256(verifier)).
    pub fn code_challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.code_verifier.as_bytes()))
    }
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }
    pub fn decode(s: &str) -> Option<Self> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).ok()?).ok()
    }
}

/// 32 random bytes, base64url: a state, a nonce or a PKCE verifier (43 characters).
fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// The provider's end-session URL for a logout, with `id_token_hint` and `client_id` added
/// (OpenID Connect RP-Initiated Logout) unless the configured URL sets them itself.
pub fn logout_url(base: &str, client_id: &str, id_token: Option<&str>) -> String {
    let Ok(mut url) = url::Url::parse(base) else {
        return base.to_string();
    };
    let has = |name: &str| url.query_pairs().any(|(k, _)| k == name);
    let (has_hint, has_client) = (has("id_token_hint"), has("client_id"));
    {
        let mut q = url.query_pairs_mut();
        if let (Some(t), false) = (id_token, has_hint) {
            q.append_pair("id_token_hint", t);
        }
        if !has_client {
            q.append_pair("client_id", client_id);
        }
    }
    url.into()
}

impl OidcClient {
    /// Where to send the browser: the authorization endpoint with state, nonce and PKCE.
    pub async fn authorize_url(
        &self,
        pending: &PendingLogin,
        redirect_uri: &str,
    ) -> Result<String, SignInError> {
        let e = self.endpoints().await?;
        let mut url = url::Url::parse(&e.authorize).map_err(|err| {
            SignInError::ProviderUnavailable(format!(
                "The authorization endpoint {:?} is not a URL ({err}).",
                e.authorize
            ))
        })?;
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in &self.config.extra_authorize_params {
                q.append_pair(k, v);
            }
        }
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &self.config.scope.join(" "))
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &pending.code_challenge())
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    /// Marks a state as used; false if it was used before (a replayed callback).
    pub fn consume_state(&self, state: &str) -> bool {
        let Ok(mut used) = self.used_states.lock() else {
            return false;
        };
        let max_age = Duration::from_secs(LOGIN_MAX_AGE_SECS as u64 + 60);
        used.retain(|_, at| at.elapsed() < max_age);
        used.insert(state.to_string(), Instant::now()).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_login_round_trips_and_pkce_is_s256() {
        let p = PendingLogin::new(Some("/hub/home".into()));
        assert_eq!(PendingLogin::decode(&p.encode()), Some(p.clone()));
        assert_eq!(p.state.len(), 43);
        assert_ne!(p.state, p.nonce);
        // RFC 7636 appendix B.
        let rfc = PendingLogin {
            code_verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into(),
            ..p
        };
        assert_eq!(
            rfc.code_challenge(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(PendingLogin::decode("not base64 json"), None);
    }

    #[test]
    fn logout_url_adds_the_hint_once() {
        let u = logout_url("https://idp.example/logout?x=1", "hub", Some("t.k.n"));
        assert_eq!(
            u,
            "https://idp.example/logout?x=1&id_token_hint=t.k.n&client_id=hub"
        );
        let u = logout_url("https://idp.example/logout?client_id=other", "hub", None);
        assert_eq!(u, "https://idp.example/logout?client_id=other");
    }
}
