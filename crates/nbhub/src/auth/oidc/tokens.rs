//! The token endpoint: exchanging the code at sign-in and the refresh token later, the
//! userinfo endpoint, and what both make of the answer ([`SignedIn`], auth_state).

use serde_json::Value;

use super::verify::IdTokenCheck;
use super::*;

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

impl OidcClient {
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
}
