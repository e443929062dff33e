//! The provider's endpoints: from the config, or from its issuer's discovery document
//! (`/.well-known/openid-configuration`), cached for an hour and kept when the provider does
//! not answer; and fetching the provider's public JSON documents (discovery, JWKS).

use std::time::Instant;

use serde::Deserialize;

use super::*;

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

impl OidcClient {
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

    pub(super) async fn discover(&self) -> Result<Endpoints, SignInError> {
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
    pub(super) async fn get_json<T: serde::de::DeserializeOwned>(
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
}
