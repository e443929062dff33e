//! `/hub/oauth_login` and `/hub/oauth_callback`: signing in through an OpenID Connect provider
//! (`kind = "generic-oauth"`; the protocol is in `auth/oidc.rs`).
//!
//! The browser carries the sign-in's state, nonce and PKCE verifier in a signed cookie bound
//! to the callback's path; the callback checks it, lets `OidcClient::finish` verify everything
//! the provider says, decides whether the user may sign in, and only then creates or updates
//! the user and sets the login cookie.

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::json;

use super::default_landing;
use crate::auth::oidc::{PendingLogin, SignInError, SignedIn, LOGIN_MAX_AGE_SECS};
use crate::auth::session;
use crate::db;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::web::with_cookies;
use crate::web::{is_https, next_param, public_origin, query_param};

const STATE_COOKIE: &str = "nbhub-oauth-state";
const ID_TOKEN_COOKIE: &str = "nbhub-oidc-id-token";
/// Browsers drop cookies above 4 KiB; a larger ID token is simply not kept for the logout.
const MAX_ID_TOKEN_COOKIE: usize = 3500;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/oauth_login", get(oauth_login))
        .route("/oauth_callback", get(oauth_callback))
}

/// `{hub}oauth_login`, with `next` when given.
pub fn start_url(state: &AppState, next: Option<&str>) -> String {
    let base = format!("{}oauth_login", state.hub_prefix());
    match next {
        Some(n) => format!("{base}?next={}", crate::names::form_encode(n)),
        None => base,
    }
}

fn callback_url(state: &AppState, headers: &HeaderMap) -> String {
    let configured = &state.config.authenticator.oauth_callback_url;
    if configured.is_empty() {
        format!(
            "{}{}oauth_callback",
            public_origin(headers),
            state.hub_prefix()
        )
    } else {
        configured.clone()
    }
}

fn callback_path(state: &AppState) -> String {
    format!("{}oauth_callback", state.hub_prefix())
}

/// The ID token kept from the sign-in, for `id_token_hint` at logout.
pub fn id_token_hint(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let raw = session::get_cookie(headers, ID_TOKEN_COOKIE)?;
    let max_age = i64::from(state.config.hub.cookie_max_age_days) * 86_400;
    session::verify(
        &state.cookie_secret,
        ID_TOKEN_COOKIE,
        raw,
        db::now_micros() / 1_000_000,
        max_age,
    )
}

pub fn clear_id_token_cookie(state: &AppState) -> String {
    session::clear_cookie(ID_TOKEN_COOKIE, &format!("{}logout", state.hub_prefix()))
}

/// A failed sign-in: the reason, and a way to start again.
fn failure(state: &AppState, headers: &HeaderMap, err: SignInError) -> Response {
    let (status, message) = match err {
        SignInError::Refused(m) => (StatusCode::FORBIDDEN, m),
        SignInError::ProviderUnavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
    };
    tracing::info!(
        status = status.as_u16(),
        "sign-in through the identity provider failed: {message}"
    );
    super::error_page_with(
        state,
        headers,
        status,
        &message,
        None,
        json!({"retry_url": format!("{}login", state.hub_prefix())}),
    )
}

fn not_enabled(state: &AppState, headers: &HeaderMap) -> Response {
    super::error_page(
        state,
        headers,
        StatusCode::NOT_FOUND,
        "This hub does not sign in through an identity provider.",
        None,
    )
}

async fn oauth_login(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
) -> Response {
    let Some(oidc) = &state.oidc else {
        return not_enabled(&state, &headers);
    };
    let pending = PendingLogin::new(next_param(&state, &uri, &headers));
    let target = match oidc
        .authorize_url(&pending, &callback_url(&state, &headers))
        .await
    {
        Ok(t) => t,
        Err(e) => return failure(&state, &headers, e),
    };
    let now = db::now_micros() / 1_000_000;
    let signed = session::sign(&state.cookie_secret, STATE_COOKIE, &pending.encode(), now);
    let cookie = session::set_cookie(
        STATE_COOKIE,
        &signed,
        &callback_path(&state),
        Some(LOGIN_MAX_AGE_SECS),
        is_https(&state, &headers),
    );
    with_cookies(crate::found(&target), [cookie])
}

async fn oauth_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
) -> ApiResult<Response> {
    if state.oidc.is_none() {
        return Ok(not_enabled(&state, &headers));
    }
    // Whatever happens, this sign-in's state is used up.
    let clear_state = session::clear_cookie(STATE_COOKIE, &callback_path(&state));
    let began = std::time::Instant::now();
    let verdict = callback(&state, &headers, &uri).await?;
    state
        .metrics
        .observe_login(verdict.is_ok(), began.elapsed());
    let response = match verdict {
        Ok(response) => response,
        Err(e) => failure(&state, &headers, e),
    };
    Ok(with_cookies(response, [clear_state]))
}

async fn callback(
    state: &AppState,
    headers: &HeaderMap,
    uri: &OriginalUri,
) -> ApiResult<Result<Response, SignInError>> {
    let Some(oidc) = &state.oidc else {
        return Ok(Err(SignInError::Refused("not enabled".into())));
    };
    let refused = |m: &str| Ok(Err(SignInError::Refused(m.to_string())));
    let query = uri.query();
    let pending = session::get_cookie(headers, STATE_COOKIE)
        .and_then(|raw| {
            session::verify(
                &state.cookie_secret,
                STATE_COOKIE,
                raw,
                db::now_micros() / 1_000_000,
                LOGIN_MAX_AGE_SECS,
            )
        })
        .and_then(|v| PendingLogin::decode(&v));
    let Some(pending) = pending else {
        return refused(
            "This sign-in was not started in this browser, or it took longer than 10 minutes.",
        );
    };
    let given_state = query_param(query, "state").unwrap_or_default();
    if !crate::secrets::constant_time_eq(given_state.as_bytes(), pending.state.as_bytes()) {
        return refused("The sign-in's state does not match the one this browser started (a forged or stale link).");
    }
    // The provider's own refusal (e.g. access_denied), shown once the state proved it is
    // the answer to this browser's sign-in; cut short, it is text from a URL.
    if let Some(error) = query_param(query, "error") {
        let detail = query_param(query, "error_description")
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        let said: String = format!("{error}{detail}").chars().take(300).collect();
        return refused(&format!(
            "The identity provider did not sign you in ({said})."
        ));
    }
    let Some(code) = query_param(query, "code").filter(|c| !c.is_empty() && c.len() <= 4096) else {
        return refused("The identity provider sent no authorization code.");
    };
    if !oidc.consume_state(&pending.state) {
        return refused("This sign-in was already used (a replayed link).");
    }
    let signed_in = match oidc
        .finish(&pending, &code, &callback_url(state, headers))
        .await
    {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let exists = db::users::get(&state.db, &signed_in.username)
        .await?
        .is_some();
    let admin = match crate::auth::oidc::decide(&state.config.authenticator, &signed_in, exists) {
        Ok(admin) => admin,
        Err(msg) => {
            tracing::info!(user = %signed_in.username, groups = ?signed_in.groups, "sign-in refused: {msg}");
            return refused(&msg);
        }
    };
    // Every check passed: now the user is made or updated.
    let user = upsert_user(state, &signed_in, admin).await?;
    if let Err(e) = state
        .authz
        .auth_states
        .signed_in(user.id, &signed_in.auth_state)
        .await
    {
        return Err(ApiError::internal(format!("saving auth_state: {e:?}")));
    }
    tracing::info!(user = %user.name, groups = ?signed_in.groups, "user signed in through the identity provider");
    let target = pending
        .next
        .clone()
        .unwrap_or_else(|| default_landing(state, &user));
    let secure = is_https(state, headers);
    let mut cookies = super::login::login_cookies(state, headers, &user, true);
    if let Some(t) = signed_in
        .id_token
        .as_deref()
        .filter(|t| t.len() <= MAX_ID_TOKEN_COOKIE)
    {
        let now = db::now_micros() / 1_000_000;
        let max_age = i64::from(state.config.hub.cookie_max_age_days) * 86_400;
        cookies.push(session::set_cookie(
            ID_TOKEN_COOKIE,
            &session::sign(&state.cookie_secret, ID_TOKEN_COOKIE, t, now),
            &format!("{}logout", state.hub_prefix()),
            Some(max_age),
            secure,
        ));
    }
    Ok(Ok(with_cookies(crate::found(&target), cookies)))
}

async fn upsert_user(
    state: &AppState,
    who: &SignedIn,
    admin: Option<bool>,
) -> ApiResult<db::users::User> {
    let name = &who.username;
    let mut user = match db::users::get(&state.db, name).await? {
        Some(u) => u,
        None => match db::users::create(&state.db, name, admin.unwrap_or(false)).await {
            Err(e) if db::is_unique_violation(&e) => db::users::get(&state.db, name)
                .await?
                .ok_or_else(|| ApiError::internal("user vanished"))?,
            other => other?,
        },
    };
    if let Some(admin) = admin.filter(|a| *a != user.admin) {
        db::users::set_admin(&state.db, user.id, admin).await?;
        user.admin = admin;
    }
    if state.config.authenticator.manage_groups {
        db::users::set_groups_creating(&state.db, user.id, &who.groups).await?;
    }
    Ok(user)
}
