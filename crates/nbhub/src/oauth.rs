//! The OAuth 2 provider single-user servers and services log users in with (docs/wire.md#oauth-2):
//! authorization-code grant with PKCE, clients authenticated by their secret in the form body
//! (or HTTP Basic), codes valid for five minutes and usable once.

use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use base64::Engine;
use rand::Rng;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::auth::scopes::{self, Owner, Resource};
use crate::auth::{self, session};
use crate::db::{self, oauth, tokens, users::User};
use crate::error::ApiResult;
use crate::pages::{error_page, render};
use crate::state::AppState;
use crate::web::{cookie_user, login_redirect};

/// How long an authorization code stays valid.
const CODE_TTL_SECS: i64 = 300;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/oauth2/authorize",
            get(authorize).post(authorize_confirmed),
        )
        .route("/oauth2/token", post(token))
}

/// A random `[A-Za-z0-9]` string (codes).
fn random_code(len: usize) -> String {
    rand::rngs::OsRng
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

#[derive(Deserialize, Default)]
struct AuthorizeParams {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    response_type: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    code_challenge: Option<String>,
    #[serde(default)]
    code_challenge_method: Option<String>,
}

/// What an authorization request asks for, once checked.
struct Checked {
    client: oauth::Client,
    /// The scope a user must hold to use the client (its server or service).
    access: Option<String>,
    own_server: bool,
}

async fn check_request(
    state: &AppState,
    headers: &HeaderMap,
    p: &AuthorizeParams,
    user: &User,
    session_id: Option<String>,
) -> ApiResult<Result<Checked, Response>> {
    let bad = |msg: &str| {
        Ok(Err(error_page(
            state,
            headers,
            StatusCode::BAD_REQUEST,
            msg,
            Some(user),
        )))
    };
    let Some(client) = oauth::get_client(&state.db, &p.client_id).await? else {
        return bad(&format!("No such OAuth client: {:?}", p.client_id));
    };
    if p.redirect_uri != client.redirect_uri {
        return bad("The redirect_uri does not match the one registered for this client.");
    }
    if p.response_type != "code" {
        return bad("Only response_type=code is supported.");
    }
    if let Some(method) = &p.code_challenge_method {
        if method != "S256" && method != "plain" {
            return bad("code_challenge_method must be S256 or plain.");
        }
    }
    let access = client
        .allowed_scopes
        .iter()
        .find(|s| s.starts_with("access:"))
        .cloned();
    // A client for one of this user's own servers: no consent page, as JupyterHub.
    let own_prefix = format!("access:servers!server={}/", user.name);
    let own_server = access
        .as_deref()
        .is_some_and(|a| a.starts_with(&own_prefix));
    // The user must be allowed to use what the client stands for (its server or service).
    let ident = auth::identity_for_user(&state.authz, user.clone(), session_id).await?;
    if let Some((scope, res)) = access.as_deref().and_then(resource_of) {
        if !ident.allows(scope, &res) {
            let msg = format!(
                "You do not have permission to access {}",
                client.description
            );
            return Ok(Err(error_page(
                state,
                headers,
                StatusCode::FORBIDDEN,
                &msg,
                Some(user),
            )));
        }
    }
    Ok(Ok(Checked {
        client,
        access,
        own_server,
    }))
}

fn resource_of(access: &str) -> Option<(&'static str, Resource<'_>)> {
    let (scope, filter) = access.split_once('!')?;
    let scope: &'static str = match scope {
        "access:servers" => "access:servers",
        "access:services" => "access:services",
        _ => return None,
    };
    let res = if let Some(rest) = filter.strip_prefix("server=") {
        let (user, server) = rest.split_once('/')?;
        Resource::Server { user, server }
    } else if let Some(svc) = filter.strip_prefix("service=") {
        Resource::Service(svc)
    } else {
        return None;
    };
    Some((scope, res))
}

async fn issue_code(
    state: &AppState,
    user: &User,
    p: &AuthorizeParams,
    checked: &Checked,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let mut scopes_granted: Vec<String> = checked.access.iter().cloned().collect();
    scopes_granted.extend(scopes::identify_scopes(&Owner::User { name: &user.name }).to_strings());
    let code = random_code(30);
    let existing_session =
        session::get_cookie(headers, session::SESSION_COOKIE).map(str::to_string);
    let session_id = existing_session
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    oauth::insert_code(
        &state.db,
        &code,
        &oauth::Code {
            client_id: checked.client.identifier.clone(),
            redirect_uri: checked.client.redirect_uri.clone(),
            session_id: Some(session_id.clone()),
            user_id: user.id,
            scopes: scopes_granted,
            code_challenge: p.code_challenge.clone().filter(|c| !c.is_empty()),
            code_challenge_method: p.code_challenge.as_ref().map(|_| {
                p.code_challenge_method
                    .clone()
                    .unwrap_or_else(|| "plain".into())
            }),
        },
        CODE_TTL_SECS,
    )
    .await?;
    let mut target = format!(
        "{}{}code={code}",
        checked.client.redirect_uri,
        if checked.client.redirect_uri.contains('?') {
            '&'
        } else {
            '?'
        }
    );
    if let Some(s) = &p.state {
        target.push_str("&state=");
        target.extend(url::form_urlencoded::byte_serialize(s.as_bytes()));
    }
    tracing::info!(user = %user.name, client = %checked.client.identifier, "issued OAuth code");
    let mut response = crate::found(&target);
    if existing_session.is_none() {
        let secure = state.config.hub.bind_url.is_https();
        let cookie = session::set_cookie(
            session::SESSION_COOKIE,
            &session_id,
            state.config.hub.base_url.as_str(),
            None,
            secure,
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(response)
}

async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    axum::extract::Query(p): axum::extract::Query<AuthorizeParams>,
) -> ApiResult<Response> {
    let Some((user, session_id)) = cookie_user(&state, &headers).await? else {
        return Ok(login_redirect(&state, &uri));
    };
    let checked = match check_request(&state, &headers, &p, &user, session_id).await? {
        Ok(c) => c,
        Err(page) => return Ok(page),
    };
    if checked.own_server {
        return issue_code(&state, &user, &p, &checked, &headers).await;
    }
    // Someone else's server or a service: ask first.
    let action = uri
        .path_and_query()
        .map_or_else(String::new, |p| p.as_str().to_string());
    Ok(render(
        &state,
        &headers,
        "oauth.html",
        Some(&user),
        json!({"client": checked.client.description, "access": checked.access, "action": action}),
    ))
}

#[derive(Deserialize)]
struct ConsentForm {
    #[serde(default)]
    _xsrf: Option<String>,
}

async fn authorize_confirmed(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    axum::extract::Query(p): axum::extract::Query<AuthorizeParams>,
    Form(form): Form<ConsentForm>,
) -> ApiResult<Response> {
    let Some((user, session_id)) = cookie_user(&state, &headers).await? else {
        return Ok(login_redirect(&state, &uri));
    };
    if !crate::web::xsrf_ok(&state, &headers, Some(&user), form._xsrf.as_deref()) {
        return Ok(error_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            "'_xsrf' argument missing from POST",
            Some(&user),
        ));
    }
    let checked = match check_request(&state, &headers, &p, &user, session_id).await? {
        Ok(c) => c,
        Err(page) => return Ok(page),
    };
    issue_code(&state, &user, &p, &checked, &headers).await
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    code_verifier: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

/// Client credentials from the form body, or from HTTP Basic.
fn client_credentials(headers: &HeaderMap, form: &TokenForm) -> Option<(String, String)> {
    if let (Some(id), Some(secret)) = (&form.client_id, &form.client_secret) {
        return Some((id.clone(), secret.clone()));
    }
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unquote = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unquote(id)?, unquote(secret)?))
}

fn pkce_ok(challenge: &str, method: &str, verifier: &str) -> bool {
    let computed = match method {
        "S256" => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes())),
        _ => verifier.to_string(),
    };
    crate::secrets::constant_time_eq(computed.as_bytes(), challenge.as_bytes())
}

async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> ApiResult<Response> {
    let Some((client_id, secret)) = client_credentials(&headers, &form) else {
        return Ok(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client_id and client_secret are required",
        ));
    };
    // The form and the Basic credentials bypass the API's NUL check (see `api::JsonBody`).
    let fields = [&client_id, &secret, &form.code, &form.redirect_uri];
    if fields.iter().any(|f| f.contains('\0'))
        || form
            .code_verifier
            .as_deref()
            .is_some_and(|v| v.contains('\0'))
    {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            crate::web::NUL_MESSAGE,
        ));
    }
    if !oauth::verify_client_secret(&state.db, &client_id, &secret).await? {
        return Ok(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        ));
    }
    if form.grant_type != "authorization_code" {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only authorization_code is supported",
        ));
    }
    let Some(code) = oauth::take_code(&state.db, &form.code).await? else {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "unknown, used or expired code",
        ));
    };
    if code.client_id != client_id || code.redirect_uri != form.redirect_uri {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the code was issued to another client or redirect_uri",
        ));
    }
    if let Some(challenge) = &code.code_challenge {
        let method = code.code_challenge_method.as_deref().unwrap_or("plain");
        match &form.code_verifier {
            Some(v) if pkce_ok(challenge, method, v) => {}
            _ => {
                return Ok(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "PKCE code_verifier does not match",
                ))
            }
        }
    }
    let access_token = tokens::generate();
    let lifetime_secs = i64::from(state.config.hub.cookie_max_age_days) * 86_400;
    let client = oauth::get_client(&state.db, &client_id).await?;
    tokens::insert(
        &state.db,
        &tokens::NewToken {
            owner: tokens::Owner::User(code.user_id),
            token: &access_token,
            rounds: tokens::GENERATED_ROUNDS,
            client_id: &client_id,
            session_id: code.session_id.as_deref(),
            note: &client.map_or_else(|| client_id.clone(), |c| c.description),
            scopes: &code.scopes,
            expires_at: Some(db::now_micros() + lifetime_secs * 1_000_000),
        },
    )
    .await?;
    let mut r = axum::Json(json!({
        "access_token": access_token,
        "expires_in": lifetime_secs,
        "token_type": "Bearer",
        "scope": code.scopes.join(" "),
    }))
    .into_response();
    crate::api::no_store(&mut r);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(pkce_ok(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "S256",
            verifier
        ));
        assert!(!pkce_ok(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "S256",
            "other"
        ));
        assert!(pkce_ok("abc", "plain", "abc"));
    }
}
