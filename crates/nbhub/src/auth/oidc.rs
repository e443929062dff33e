//! The OpenID Connect / OAuth 2 client behind `kind = "generic-oauth"`: the provider's endpoints
//! (discovered from its issuer, cached and refreshed), the authorization request (state, nonce,
//! PKCE S256), the code exchange, the ID token's verification against the provider's JWKS and
//! the claims that decide who the user is. The HTTP handlers are in `pages/oidc_login.rs`.
//!
//! Nothing here writes to the database: a sign-in is checked completely before a user exists.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::RngCore;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::AuthenticatorConfig;

/// How long the discovery document and the JWKS are trusted before they are fetched again.
const METADATA_MAX_AGE: Duration = Duration::from_secs(3600);
/// Clock skew allowed between the hub and the provider for `exp`, `iat` and `nbf`.
pub const CLOCK_SKEW_SECS: u64 = 60;
/// How long a sign-in may take at the provider (the state cookie's lifetime).
pub const LOGIN_MAX_AGE_SECS: i64 = 600;
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

/// The provider's endpoints, from the config and/or its discovery document.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// The `iss` an ID token must carry ("" without discovery: ID tokens are not used).
    pub issuer: String,
    pub authorize: String,
    pub token: String,
    pub userinfo: Option<String>,
    pub jwks_uri: Option<String>,
    pub end_session: Option<String>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    #[serde(default)]
    jwks_uri: Option<String>,
    #[serde(default)]
    end_session_endpoint: Option<String>,
}

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

/// The token endpoint's answer: the fields read, and all of it for auth_state.
struct TokenResponse {
    access_token: Option<String>,
    refresh_token: Option<String>,
    id_token: Option<String>,
    expires_in: Option<u64>,
    scope: Option<String>,
    raw: serde_json::Map<String, Value>,
}

impl TokenResponse {
    fn from_json(raw: serde_json::Map<String, Value>) -> Self {
        let text = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_string);
        TokenResponse {
            access_token: text("access_token"),
            refresh_token: text("refresh_token"),
            id_token: text("id_token"),
            expires_in: raw.get("expires_in").and_then(Value::as_u64),
            scope: text("scope"),
            raw,
        }
    }
}

/// The grant sent to the token endpoint.
enum Grant<'a> {
    Code {
        code: &'a str,
        redirect_uri: &'a str,
        verifier: &'a str,
    },
    Refresh(&'a str),
}

/// What the ID token must say besides the usual checks.
enum IdTokenCheck<'a> {
    /// At sign-in: this browser's nonce.
    Nonce(&'a str),
    /// After a refresh (OpenID Connect Core 12.2): the same subject as before, no nonce needed.
    Subject(Option<&'a str>),
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

    /// The endpoints, fetched again once they are older than an hour (the old ones are kept if
    /// the provider does not answer then).
    pub async fn endpoints(&self) -> Result<Endpoints, SignInError> {
        let mut cached = self.endpoints.lock().await;
        if let Some((at, e)) = cached.as_ref() {
            if at.elapsed() < METADATA_MAX_AGE {
                return Ok(e.clone());
            }
        }
        match self.discover().await {
            Ok(e) => {
                *cached = Some((Instant::now(), e.clone()));
                Ok(e)
            }
            Err(err) => match cached.as_ref() {
                Some((_, old)) => {
                    tracing::warn!("OpenID discovery refresh failed, keeping the old one: {err:?}");
                    Ok(old.clone())
                }
                None => Err(err),
            },
        }
    }

    async fn discover(&self) -> Result<Endpoints, SignInError> {
        let c = &self.config;
        let explicit = |s: &String| (!s.is_empty()).then(|| s.clone());
        if c.issuer.is_empty() {
            return Ok(Endpoints {
                issuer: String::new(),
                authorize: c.authorize_url.clone(),
                token: c.token_url.clone(),
                userinfo: explicit(&c.userdata_url),
                jwks_uri: None,
                end_session: None,
            });
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            c.issuer.trim_end_matches('/')
        );
        let doc: Discovery = self.get_json(&url, "discovery").await?;
        if doc.issuer.trim_end_matches('/') != c.issuer.trim_end_matches('/') {
            return Err(SignInError::ProviderUnavailable(format!(
                "The identity provider's discovery document names issuer {:?}, not the configured {:?}.",
                doc.issuer, c.issuer
            )));
        }
        Ok(Endpoints {
            issuer: doc.issuer,
            authorize: explicit(&c.authorize_url).unwrap_or(doc.authorization_endpoint),
            token: explicit(&c.token_url).unwrap_or(doc.token_endpoint),
            userinfo: explicit(&c.userdata_url).or(doc.userinfo_endpoint),
            jwks_uri: doc.jwks_uri,
            end_session: doc.end_session_endpoint,
        })
    }

    /// A public JSON document of the provider (discovery, JWKS).
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        what: &str,
    ) -> Result<T, SignInError> {
        let resp = self
            .public_http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| SignInError::provider(what, e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(SignInError::provider(
                what,
                format!("{url} answered {status}"),
            ));
        }
        resp.json()
            .await
            .map_err(|e| SignInError::provider(what, format!("{url}: {e}")))
    }

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

    /// The callback's code → tokens → verified claims → who signed in. No side effects.
    pub async fn finish(
        &self,
        pending: &PendingLogin,
        code: &str,
        redirect_uri: &str,
    ) -> Result<SignedIn, SignInError> {
        let e = self.endpoints().await?;
        let grant = Grant::Code {
            code,
            redirect_uri,
            verifier: &pending.code_verifier,
        };
        let tokens = self.token_request(&e, grant).await?;
        self.signed_in(&e, tokens, IdTokenCheck::Nonce(&pending.nonce))
            .await
    }

    /// A refresh grant with the kept refresh token: new tokens, their ID token verified again
    /// (same subject), the userinfo fetched again. A refused refresh is `Refused`.
    pub async fn refresh(&self, previous: &Value) -> Result<SignedIn, SignInError> {
        let Some(refresh_token) = previous["refresh_token"].as_str() else {
            return Err(SignInError::Refused(
                "The identity provider gave no refresh token, and the access token has expired."
                    .into(),
            ));
        };
        let e = self.endpoints().await?;
        let mut tokens = self
            .token_request(&e, Grant::Refresh(refresh_token))
            .await?;
        // A provider that does not rotate refresh tokens leaves the old one valid.
        if tokens.refresh_token.is_none() {
            tokens.refresh_token = Some(refresh_token.to_string());
        }
        let check = IdTokenCheck::Subject(SignedIn::subject_of(previous));
        let mut signed_in = self.signed_in(&e, tokens, check).await?;
        // Without a new ID token the old one is still the hint for logout.
        if signed_in.auth_state["id_token"].is_null() {
            signed_in.auth_state["id_token"] = previous["id_token"].clone();
        }
        if let (Some(before), Some(now)) = (
            SignedIn::subject_of(previous),
            SignedIn::subject_of(&signed_in.auth_state),
        ) {
            if before != now {
                return Err(SignInError::Refused(
                    "The identity provider's refreshed tokens are about another subject.".into(),
                ));
            }
        }
        Ok(signed_in)
    }

    /// Tokens → verified claims → who signed in.
    async fn signed_in(
        &self,
        e: &Endpoints,
        tokens: TokenResponse,
        check: IdTokenCheck<'_>,
    ) -> Result<SignedIn, SignInError> {
        let mut claims = serde_json::Map::new();
        let mut subject = None;
        let oidc = !e.issuer.is_empty();
        let refreshing = matches!(check, IdTokenCheck::Subject(_));
        let id_token = match &tokens.id_token {
            Some(raw) if oidc => {
                let verified = self.verify_id_token(e, raw, &check).await?;
                subject = verified
                    .get("sub")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                claims.extend(verified);
                Some(raw.clone())
            }
            // A refresh need not return a new ID token (OpenID Connect Core 12.2).
            None if oidc && !refreshing && self.config.scope.iter().any(|s| s == "openid") => {
                return Err(SignInError::Refused(
                    "The identity provider sent no ID token although the scope asked for openid."
                        .into(),
                ))
            }
            // Plain OAuth 2 (no issuer, so no keys to check an ID token with): the claims come
            // from userdata_url alone.
            _ => None,
        };
        if let IdTokenCheck::Subject(Some(before)) = check {
            subject.get_or_insert_with(|| before.to_string());
        }
        if let Some(userinfo) = &e.userinfo {
            let access = tokens.access_token.as_deref().ok_or_else(|| {
                SignInError::Refused("The identity provider sent no access token.".into())
            })?;
            let info = self.userinfo(e, userinfo, access).await?;
            // OpenID Connect Core 5.3.2: userinfo about someone else must not be used.
            if let (Some(sub), Some(info_sub)) = (&subject, info.get("sub").and_then(Value::as_str))
            {
                if sub != info_sub {
                    return Err(SignInError::Refused(
                        "The identity provider's userinfo is about another subject than the ID token."
                            .into(),
                    ));
                }
            }
            claims.extend(info);
        }
        // Claims that only say what the token is about, not who the user is.
        for k in [
            "nonce",
            "at_hash",
            "c_hash",
            "auth_time",
            "exp",
            "iat",
            "nbf",
            "jti",
        ] {
            claims.remove(k);
        }
        let claims = Value::Object(claims);
        let raw_name = claim_at(&claims, &self.config.username_claim)
            .and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .ok_or_else(|| {
                SignInError::Refused(format!(
                    "The identity provider did not say who you are: its answer has no claim {:?} (username_claim).",
                    self.config.username_claim
                ))
            })?;
        let username = map_username(&self.config, &raw_name);
        if !crate::names::is_valid_name(&username) {
            return Err(SignInError::Refused(crate::names::invalid_name_message(
                "user", &raw_name,
            )));
        }
        let groups_path = self.config.groups_claim_path().unwrap_or("groups");
        let groups = match claim_at(&claims, groups_path) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                // Keycloak's full group paths ("/hpc") name the same groups as "hpc".
                .map(|g| g.trim_start_matches('/').to_string())
                .filter(|g| !g.is_empty())
                .collect(),
            Some(Value::String(g)) => vec![g.trim_start_matches('/').to_string()],
            _ => Vec::new(),
        };
        let now = jsonwebtoken::get_current_timestamp();
        let scope: Vec<&str> = match &tokens.scope {
            Some(s) => s.split_whitespace().collect(),
            None => self.config.scope.iter().map(String::as_str).collect(),
        };
        let auth_state = serde_json::json!({
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "id_token": id_token,
            "scope": scope,
            "token_response": Value::Object(tokens.raw),
            "oauth_user": claims,
            "token_issued_at": now,
            "expires_at": tokens.expires_in.map(|s| now + s),
        });
        Ok(SignedIn {
            username,
            groups,
            id_token,
            auth_state,
        })
    }

    /// The userinfo claims: JSON, or a JWT signed by the provider (`application/jwt`, OpenID
    /// Connect Core 5.3.2), whose signature, issuer and audience are checked.
    async fn userinfo(
        &self,
        e: &Endpoints,
        url: &str,
        access: &str,
    ) -> Result<serde_json::Map<String, Value>, SignInError> {
        let what = "userinfo";
        let resp = self
            .http
            .get(url)
            .header("accept", "application/json, application/jwt")
            .bearer_auth(access)
            .send()
            .await
            .map_err(|err| SignInError::provider(what, err))?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(SignInError::Refused(format!(
                "The identity provider's userinfo refused the access token ({status})."
            )));
        }
        if !status.is_success() {
            return Err(SignInError::provider(
                what,
                format!("{url} answered {status}"),
            ));
        }
        let is_jwt = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/jwt"));
        let body = resp
            .bytes()
            .await
            .map_err(|err| SignInError::provider(what, err))?;
        if !is_jwt {
            return serde_json::from_slice(&body)
                .map_err(|err| SignInError::provider(what, format!("{url}: {err}")));
        }
        let raw = std::str::from_utf8(&body)
            .map_err(|err| SignInError::provider(what, err))?
            .trim();
        tracing::debug!("the userinfo is a signed JWT: checking it");
        self.verify_jwt(e, raw, "userinfo", |validation| {
            // A signed userinfo carries iss and aud, but no exp or iat of necessity.
            validation.set_required_spec_claims(&["iss", "aud", "sub"]);
            validation.validate_exp = false;
        })
        .await
    }

    async fn token_request(
        &self,
        e: &Endpoints,
        grant: Grant<'_>,
    ) -> Result<TokenResponse, SignInError> {
        let secret = self
            .secret
            .as_ref()
            .map_err(|e| SignInError::ProviderUnavailable(e.clone()))?;
        let mut form = match grant {
            Grant::Code {
                code,
                redirect_uri,
                verifier,
            } => vec![
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
            ],
            Grant::Refresh(token) => {
                vec![("grant_type", "refresh_token"), ("refresh_token", token)]
            }
        };
        let mut req = self
            .http
            .post(&e.token)
            .header("accept", "application/json");
        if self.config.basic_auth {
            // RFC 6749 2.3.1: both parts form-encoded before the Basic encoding.
            req = req.basic_auth(
                crate::names::form_encode(&self.config.client_id),
                Some(crate::names::form_encode(secret)),
            );
        } else {
            form.push(("client_id", self.config.client_id.as_str()));
            form.push(("client_secret", secret.as_str()));
        }
        let resp = req
            .form(&form)
            .send()
            .await
            .map_err(|err| SignInError::provider("token endpoint", err))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|err| SignInError::provider("token endpoint", err))?;
        let parsed = serde_json::from_slice::<serde_json::Map<String, Value>>(&body)
            .ok()
            .map(TokenResponse::from_json);
        let error = parsed
            .as_ref()
            .and_then(|t| t.raw.get("error").and_then(Value::as_str));
        match (parsed.as_ref(), error) {
            (Some(_), None) if status.is_success() => Ok(parsed.expect("checked")),
            (Some(t), Some(error)) => Err(SignInError::Refused(format!(
                "The identity provider refused the sign-in ({error}{}).",
                t.raw
                    .get("error_description")
                    .and_then(Value::as_str)
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ))),
            _ if status.is_server_error() => Err(SignInError::provider(
                "token endpoint",
                format!("it answered {status}"),
            )),
            _ => Err(SignInError::Refused(format!(
                "The identity provider's token endpoint answered {status} without tokens."
            ))),
        }
    }

    /// Verifies signature (JWKS), `iss`, `aud`, `exp`, `iat`, `nbf`, and the nonce or the
    /// subject; the claims.
    async fn verify_id_token(
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
    async fn verify_jwt(
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
    async fn signing_key(
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

/// May this user sign in, and are they admin (None: leave as it is)? OAuthenticator's rules.
pub fn decide(
    auth: &AuthenticatorConfig,
    who: &SignedIn,
    exists: bool,
) -> Result<Option<bool>, String> {
    let name = &who.username;
    if auth.blocked_users.contains(name) {
        return Err(format!("{name} may not sign in to this hub."));
    }
    // The provider's groups lost a leading '/' (Keycloak's full paths); so do the configured.
    let member_of = |list: &[String]| {
        list.iter()
            .any(|want| who.groups.iter().any(|g| g == want.trim_start_matches('/')))
    };
    let admin_user = auth.admin_users.contains(name);
    let admin_by_group = member_of(&auth.admin_groups);
    let allowed = auth.allow_all
        || admin_user
        || admin_by_group
        || auth.allowed_users.contains(name)
        || member_of(&auth.allowed_groups)
        || (auth.allow_existing_users && exists);
    if !allowed {
        let why = if auth.allowed_groups.is_empty() {
            String::new()
        } else {
            format!(" (members of {} may)", auth.allowed_groups.join(", "))
        };
        return Err(format!("{name} is not allowed to use this hub{why}."));
    }
    Ok(if admin_user || admin_by_group {
        Some(true)
    } else if !auth.admin_groups.is_empty() {
        // With admin_groups the provider decides: leaving the group ends admin rights.
        Some(false)
    } else {
        None
    })
}

/// The hub name for a provider's user name claim: an `@domain` listed in
/// `username_strip_domains` (or any, with `"*"`) cut off, lower-cased as every login's, then
/// `username_map`.
pub fn map_username(config: &AuthenticatorConfig, raw: &str) -> String {
    let mut name = raw.trim();
    if let Some((local, domain)) = name.rsplit_once('@') {
        let strip = config
            .username_strip_domains
            .iter()
            .any(|d| d == "*" || d.eq_ignore_ascii_case(domain));
        if strip && !local.is_empty() {
            name = local;
        }
    }
    let name = crate::names::normalize_username(name);
    config.username_map.get(&name).cloned().unwrap_or(name)
}

/// A claim by dotted path (`"realm_access.roles"`); a claim whose own name has dots is found too.
pub fn claim_at<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(claims, |v, part| v.get(part))
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

    #[test]
    fn user_names_from_claims() {
        let mut c = AuthenticatorConfig::default();
        assert_eq!(map_username(&c, "Alice@Uni.Example"), "alice@uni.example");
        c.username_strip_domains = vec!["uni.example".into()];
        assert_eq!(map_username(&c, "Alice@Uni.Example"), "alice");
        assert_eq!(
            map_username(&c, "alice@elsewhere.example"),
            "alice@elsewhere.example"
        );
        assert_eq!(map_username(&c, "@uni.example"), "@uni.example");
        c.username_strip_domains = vec!["*".into()];
        assert_eq!(map_username(&c, "bob@elsewhere.example"), "bob");
        c.username_map.insert("bob".into(), "robert".into());
        assert_eq!(map_username(&c, "Bob@x.example"), "robert");
    }

    #[test]
    fn claims_by_dotted_path() {
        let c = serde_json::json!({"a": {"b": ["x"]}, "c.d": 1, "name": "Alice"});
        assert_eq!(claim_at(&c, "a.b"), Some(&serde_json::json!(["x"])));
        assert_eq!(claim_at(&c, "c.d"), Some(&serde_json::json!(1)));
        assert_eq!(claim_at(&c, "a.z"), None);
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

    fn who(name: &str, groups: &[&str]) -> SignedIn {
        SignedIn {
            username: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            id_token: None,
            auth_state: Value::Null,
        }
    }

    #[test]
    fn allowed_and_admin_groups() {
        let mut a = AuthenticatorConfig {
            allowed_groups: vec!["hpc".into()],
            admin_groups: vec!["admins".into()],
            ..Default::default()
        };
        assert_eq!(decide(&a, &who("alice", &["hpc"]), false), Ok(Some(false)));
        assert_eq!(
            decide(&a, &who("carol", &["admins"]), false),
            Ok(Some(true))
        );
        let err = decide(&a, &who("dave", &[]), true).unwrap_err();
        assert!(err.contains("dave") && err.contains("hpc"), "{err}");
        a.allow_existing_users = true;
        assert_eq!(decide(&a, &who("dave", &[]), true), Ok(Some(false)));
        a.blocked_users = vec!["alice".into()];
        assert!(decide(&a, &who("alice", &["hpc"]), true).is_err());
        a.allowed_groups = vec!["/hpc".into()];
        assert!(
            decide(&a, &who("bob", &["hpc"]), false).is_ok(),
            "Keycloak's full path"
        );
        a.admin_groups.clear();
        assert_eq!(decide(&a, &who("dave", &[]), true), Ok(None));
    }
}
