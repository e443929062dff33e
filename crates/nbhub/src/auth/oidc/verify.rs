//! The ID token's verification: signature against the provider's JWKS (asymmetric algorithms
//! only), issuer, audience, times with [`CLOCK_SKEW_SECS`] of skew, and the nonce at sign-in or
//! the subject after a refresh.

use std::time::Instant;

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::*;

/// Clock skew allowed between the hub and the provider for `exp`, `iat` and `nbf`.
pub const CLOCK_SKEW_SECS: u64 = 60;

/// Asymmetric algorithms only: an HS256 token would be "signed" with our own client secret.
const ACCEPTED_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// What the ID token must say besides the usual checks.
pub(super) enum IdTokenCheck<'a> {
    /// At sign-in: this browser's nonce.
    Nonce(&'a str),
    /// After a refresh (OpenID Connect Core 12.2): the same subject as before, no nonce needed.
    Subject(Option<&'a str>),
}

/// The signing key with this kid (or the only signing key, for a token without kid) whose
/// declared algorithm, if any, is the token's.
fn pick_key(set: &JwkSet, kid: Option<&str>, alg: Algorithm) -> Option<Jwk> {
    let usable = |k: &&Jwk| {
        !matches!(k.common.public_key_use, Some(PublicKeyUse::Encryption))
            && k.common
                .key_algorithm
                .is_none_or(|a| a.to_string() == format!("{alg:?}"))
    };
    match kid {
        Some(kid) => set
            .keys
            .iter()
            .filter(usable)
            .find(|k| k.common.key_id.as_deref() == Some(kid))
            .cloned(),
        None => {
            let mut candidates = set.keys.iter().filter(usable);
            match (candidates.next(), candidates.next()) {
                (Some(only), None) => Some(only.clone()),
                _ => None,
            }
        }
    }
}

impl OidcClient {
    /// Verifies signature (JWKS), `iss`, `aud`, `exp`, `iat`, `nbf`, and the nonce or the
    /// subject; the claims.
    pub(super) async fn verify_id_token(
        &self,
        e: &Endpoints,
        raw: &str,
        check: &IdTokenCheck<'_>,
    ) -> Result<serde_json::Map<String, Value>, SignInError> {
        let claims = self
            .verify_jwt(e, raw, "ID token", |validation| {
                validation.validate_nbf = true;
                validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
            })
            .await?;
        let bad = |why: String| SignInError::Refused(format!("The ID token was refused: {why}."));
        let now = jsonwebtoken::get_current_timestamp();
        match claims.get("iat").and_then(Value::as_f64) {
            Some(iat) if iat <= (now + CLOCK_SKEW_SECS) as f64 => {}
            _ => return Err(bad("it claims to be issued in the future".into())),
        }
        match check {
            IdTokenCheck::Nonce(expected) => {
                let nonce = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
                if !crate::secrets::constant_time_eq(nonce.as_bytes(), expected.as_bytes()) {
                    return Err(bad(
                        "its nonce is not the one this browser's sign-in sent (a replayed token?)"
                            .into(),
                    ));
                }
            }
            IdTokenCheck::Subject(Some(before)) => {
                if claims.get("sub").and_then(Value::as_str) != Some(before) {
                    return Err(bad("after a refresh it names another subject".into()));
                }
            }
            IdTokenCheck::Subject(None) => {}
        }
        // OpenID Connect Core 3.1.3.7: with several audiences, azp must be us.
        if let Some(azp) = claims.get("azp").and_then(Value::as_str) {
            if azp != self.config.client_id {
                return Err(bad(format!("it was issued to client {azp:?}")));
            }
        }
        Ok(claims)
    }

    /// A JWT from the provider: signed with one of its published keys (asymmetric only), for
    /// us (`aud`), by it (`iss`), within its validity with 60 s of skew; the claims.
    pub(super) async fn verify_jwt(
        &self,
        e: &Endpoints,
        raw: &str,
        what: &str,
        adjust: impl FnOnce(&mut Validation),
    ) -> Result<serde_json::Map<String, Value>, SignInError> {
        let bad = |why: String| SignInError::Refused(format!("The {what} was refused: {why}."));
        let jwks_uri = e.jwks_uri.as_deref().ok_or_else(|| {
            SignInError::ProviderUnavailable(format!(
                "The identity provider's discovery document names no jwks_uri, so its {what} cannot be checked."
            ))
        })?;
        let header = jsonwebtoken::decode_header(raw).map_err(|err| bad(err.to_string()))?;
        if !ACCEPTED_ALGORITHMS.contains(&header.alg) {
            return Err(bad(format!(
                "it is signed with {:?}; only the provider's public keys are accepted",
                header.alg
            )));
        }
        let jwk = self
            .signing_key(jwks_uri, header.kid.as_deref(), header.alg)
            .await?
            .ok_or_else(|| {
                bad(format!(
                    "it is signed with a key the provider does not publish (kid {:?})",
                    header.kid.as_deref().unwrap_or("")
                ))
            })?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|err| bad(err.to_string()))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = CLOCK_SKEW_SECS;
        validation.set_audience(&[&self.config.client_id]);
        validation.set_issuer(&[&e.issuer]);
        adjust(&mut validation);
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(raw, &key, &validation)
            .map_err(|err| {
            use jsonwebtoken::errors::ErrorKind;
            bad(match err.kind() {
                ErrorKind::InvalidSignature => "its signature does not match".into(),
                ErrorKind::ExpiredSignature => "it has expired".into(),
                ErrorKind::InvalidAudience => format!(
                    "it was issued for another client (not {:?})",
                    self.config.client_id
                ),
                ErrorKind::InvalidIssuer => format!("it was not issued by {:?}", e.issuer),
                ErrorKind::ImmatureSignature => "it is not valid yet".into(),
                ErrorKind::MissingRequiredClaim(c) => format!("it has no {c:?} claim"),
                _ => err.to_string(),
            })
        })?;
        Ok(data.claims)
    }

    /// The provider's key for `kid`; an unknown kid fetches the JWKS again once (key rotation).
    pub(super) async fn signing_key(
        &self,
        jwks_uri: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Option<Jwk>, SignInError> {
        let mut cached = self.jwks.lock().await;
        let fresh = matches!(cached.as_ref(), Some((at, uri, _)) if uri == jwks_uri && at.elapsed() < METADATA_MAX_AGE);
        if fresh {
            if let Some((_, _, set)) = cached.as_ref() {
                if let Some(k) = pick_key(set, kid, alg) {
                    return Ok(Some(k));
                }
            }
        }
        let set: JwkSet = self.get_json(jwks_uri, "JWKS").await?;
        let found = pick_key(&set, kid, alg);
        *cached = Some((Instant::now(), jwks_uri.to_string(), set));
        Ok(found)
    }
}
