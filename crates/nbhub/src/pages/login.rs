//! `/hub/login`, `/hub/logout`, and the native authenticator's `/hub/signup` and `/hub/authorize`.

use axum::extract::{ConnectInfo, OriginalUri, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::json;

use super::{default_landing, error_page, render};
use crate::auth::{native, pam, session};
use crate::config::AuthenticatorKind;
use crate::db::{self, users::User};
use crate::error::{ApiError, ApiResult};
use crate::names;
use crate::state::AppState;
use crate::web::{cookie_user, login_redirect, with_cookies};
use crate::web::{is_https, next_param, xsrf_ok};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_form).post(login_submit))
        .route("/logout", get(logout))
        .route("/signup", get(signup_form).post(signup_submit))
        .route("/authorize", get(authorize_list))
        .route("/authorize/{name}", post(authorize_user))
}

fn xsrf_failure(state: &AppState, headers: &HeaderMap) -> Response {
    error_page(
        state,
        headers,
        StatusCode::FORBIDDEN,
        "'_xsrf' argument missing from POST, or it does not match the cookie. Reload the page and try again.",
        None,
    )
}

fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    uri: &OriginalUri,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let next = next_param(state, uri, headers);
    let login_url = match &next {
        Some(n) => format!(
            "{}login?next={}",
            state.hub_prefix(),
            url::form_urlencoded::byte_serialize(n.as_bytes()).collect::<String>()
        ),
        None => format!("{}login", state.hub_prefix()),
    };
    let auth = &state.config.authenticator;
    let signup_url = (auth.kind == AuthenticatorKind::Native && auth.enable_signup)
        .then(|| format!("{}signup", state.hub_prefix()));
    // With an identity provider the page shows its button instead of the password form.
    let authenticator_login_url = state
        .oidc
        .is_some()
        .then(|| super::oidc_login::start_url(state, next.as_deref()));
    let mut r = render(
        state,
        headers,
        "login.html",
        None,
        json!({"login_url": login_url, "username": username, "login_error": error, "signup_url": signup_url,
               "authenticator_login_url": authenticator_login_url, "login_service": auth.login_service}),
    );
    *r.status_mut() = status;
    r
}

async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
) -> ApiResult<Response> {
    if let Some((user, _)) = cookie_user(&state, &headers).await? {
        let target =
            next_param(&state, &uri, &headers).unwrap_or_else(|| default_landing(&state, &user));
        return Ok(with_cookies(
            crate::found(&target),
            login_cookies(&state, &headers, &user, false),
        ));
    }
    if state.oidc.is_some() && state.config.authenticator.auto_login {
        let next = next_param(&state, &uri, &headers);
        return Ok(crate::found(&super::oidc_login::start_url(
            &state,
            next.as_deref(),
        )));
    }
    Ok(login_page(&state, &headers, &uri, "", None, StatusCode::OK))
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    _xsrf: Option<String>,
}

/// Why a login did not succeed, for the page (never says whether the name exists).
enum Denied {
    BadCredentials,
    NotAllowed,
    Waiting,
    Misconfigured(String),
}

async fn authenticate(
    state: &AppState,
    name: &str,
    password: &str,
) -> ApiResult<Result<(), Denied>> {
    let auth = &state.config.authenticator;
    if auth.blocked_users.iter().any(|b| b == name) {
        return Ok(Err(Denied::NotAllowed));
    }
    match auth.kind {
        // Signs in at /hub/oauth_callback; login_submit never gets here.
        AuthenticatorKind::GenericOauth => return Ok(Err(Denied::NotAllowed)),
        AuthenticatorKind::Dummy => {
            if !auth.password.is_empty()
                && !crate::secrets::constant_time_eq(auth.password.as_bytes(), password.as_bytes())
            {
                return Ok(Err(Denied::BadCredentials));
            }
        }
        AuthenticatorKind::SharedPassword => {
            // As JupyterHub's SharedPasswordAuthenticator: admin_users sign in with
            // admin_password only, everyone else with user_password; an unset one signs no
            // one in.
            let expected = if auth.admin_users.iter().any(|a| a == name) {
                &auth.admin_password
            } else {
                &auth.user_password
            };
            if expected.is_empty()
                || !crate::secrets::constant_time_eq(expected.as_bytes(), password.as_bytes())
            {
                return Ok(Err(Denied::BadCredentials));
            }
        }
        AuthenticatorKind::Native => {
            let Some(user) = db::users::get(&state.db, name).await? else {
                return Ok(Err(Denied::BadCredentials));
            };
            let Some(hash) = user.password_hash.clone() else {
                return Ok(Err(Denied::BadCredentials));
            };
            let password = password.to_string();
            let ok = tokio::task::spawn_blocking(move || native::verify_password(&password, &hash))
                .await
                .map_err(ApiError::internal)?;
            if !ok {
                return Ok(Err(Denied::BadCredentials));
            }
            if !user.approved {
                return Ok(Err(Denied::Waiting));
            }
            return Ok(Ok(()));
        }
        AuthenticatorKind::Pam => {
            let (service, user, password) = (
                auth.pam_service.clone(),
                name.to_string(),
                password.to_string(),
            );
            let result =
                tokio::task::spawn_blocking(move || pam::authenticate(&service, &user, &password))
                    .await
                    .map_err(ApiError::internal)?;
            match result {
                Ok(()) => {}
                Err(pam::PamError::NoPermission { hint }) => {
                    return Ok(Err(Denied::Misconfigured(hint.to_string())))
                }
                Err(e) => {
                    // Debug only: the failed-login line (bounded) says it at info.
                    tracing::debug!(user = %name, error = %e, "PAM refused login");
                    return Ok(Err(Denied::BadCredentials));
                }
            }
        }
    }
    // Authenticated; now: allowed?
    let allowed = auth.allow_all
        || auth.admin_users.iter().any(|a| a == name)
        || auth.allowed_users.iter().any(|a| a == name)
        || db::users::get(&state.db, name).await?.is_some();
    Ok(if allowed {
        Ok(())
    } else {
        Err(Denied::NotAllowed)
    })
}

/// The cookies of a logged-in browser: the signed login cookie and a new session id.
pub(super) fn login_cookies(
    state: &AppState,
    headers: &HeaderMap,
    user: &User,
    fresh_login: bool,
) -> Vec<String> {
    let secure = is_https(state, headers);
    let now = db::now_micros() / 1_000_000;
    let max_age = i64::from(state.config.hub.cookie_max_age_days) * 86_400;
    // A new session at every login, so that a session id planted before it is worth nothing;
    // a browser already logged in keeps its session (and the OAuth tokens tied to it).
    let existing = session::get_cookie(headers, session::SESSION_COOKIE)
        .filter(|sid| !fresh_login && !sid.is_empty() && !state.ended_sessions.is_ended(sid));
    let mut cookies = Vec::with_capacity(2);
    let session_id = match existing {
        Some(sid) => sid.to_string(),
        None => {
            let sid = crate::web::new_session_id();
            cookies.push(crate::web::session_cookie(state, &sid, secure));
            sid
        }
    };
    let signed = session::sign(
        &state.cookie_secret,
        session::LOGIN_COOKIE,
        &session::login_value(&user.cookie_id, &session_id),
        now,
    );
    cookies.insert(
        0,
        session::set_cookie(
            session::LOGIN_COOKIE,
            &signed,
            &state.hub_prefix(),
            Some(max_age),
            secure,
        ),
    );
    cookies
}

/// At most this many characters of a refused name go back into the page or the log (JupyterHub
/// 5.5.0 bounds them too: a megabyte-long name was echoed and logged whole).
const SHOWN_NAME_CHARS: usize = 100;

fn shown_name(name: &str) -> String {
    match name.char_indices().nth(SHOWN_NAME_CHARS) {
        Some((cut, _)) => format!("{}…", &name[..cut]),
        None => name.to_string(),
    }
}

async fn login_submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    uri: OriginalUri,
    Form(form): Form<LoginForm>,
) -> ApiResult<Response> {
    let client = crate::web::client_ip(&headers, peer.ip());
    if state.oidc.is_some() {
        let msg = format!(
            "This hub signs in through {}: use the button.",
            state.config.authenticator.login_service
        );
        return Ok(login_page(
            &state,
            &headers,
            &uri,
            "",
            Some(&msg),
            StatusCode::FORBIDDEN,
        ));
    }
    let current = cookie_user(&state, &headers).await?.map(|(u, _)| u);
    if !xsrf_ok(&state, &headers, current.as_ref(), form._xsrf.as_deref()) {
        return Ok(xsrf_failure(&state, &headers));
    }
    let name = names::normalize_username(&form.username);
    if !names::is_valid_name(&name) || form.password.len() > 4096 {
        return Ok(login_page(
            &state,
            &headers,
            &uri,
            &shown_name(&form.username),
            Some("Invalid username or password."),
            StatusCode::FORBIDDEN,
        ));
    }
    if let Some(wait) = state.throttle.wait_for(client, &name) {
        let msg = format!(
            "Too many failed logins for {} from your address. Wait {} seconds and try again.",
            shown_name(&name),
            wait.as_secs().max(1)
        );
        let mut r = login_page(
            &state,
            &headers,
            &uri,
            &shown_name(&name),
            Some(&msg),
            StatusCode::TOO_MANY_REQUESTS,
        );
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Ok(r);
    }
    let began = std::time::Instant::now();
    let verdict = authenticate(&state, &name, &form.password).await?;
    state
        .metrics
        .observe_login(verdict.is_ok(), began.elapsed());
    match verdict {
        Ok(()) => {}
        Err(denied) => {
            let msg = match denied {
                Denied::BadCredentials => "Invalid username or password.".to_string(),
                Denied::NotAllowed => "Invalid username or password.".to_string(),
                Denied::Waiting => {
                    "Your account is waiting for an administrator's approval.".to_string()
                }
                Denied::Misconfigured(hint) => {
                    tracing::error!("PAM login impossible: {hint}");
                    format!("The hub cannot check passwords: {hint}.")
                }
            };
            let line = state.throttle.failed(client, &name);
            if line.log {
                tracing::info!(user = %shown_name(&name), %client, unlogged_before = line.suppressed, "failed login");
            }
            return Ok(login_page(
                &state,
                &headers,
                &uri,
                &shown_name(&name),
                Some(&msg),
                StatusCode::FORBIDDEN,
            ));
        }
    }
    state.throttle.succeeded(client, &name);
    let is_admin = state
        .config
        .authenticator
        .admin_users
        .iter()
        .any(|a| a == &name);
    let user = match db::users::get(&state.db, &name).await? {
        Some(u) => {
            if is_admin && !u.admin {
                db::users::set_admin(&state.db, u.id, true).await?;
            }
            u
        }
        None => match db::users::create(&state.db, &name, is_admin).await {
            Err(e) if db::is_unique_violation(&e) => db::users::get(&state.db, &name)
                .await?
                .ok_or_else(|| ApiError::internal("user vanished"))?,
            other => other?,
        },
    };
    tracing::info!(user = %user.name, "user logged in");
    let target =
        next_param(&state, &uri, &headers).unwrap_or_else(|| default_landing(&state, &user));
    Ok(with_cookies(
        crate::found(&target),
        login_cookies(&state, &headers, &user, true),
    ))
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some((user, sid)) = cookie_user(&state, &headers).await? {
        // Only a signed-in browser ends anything: a forged logout request ends nothing.
        end_login_session(&state, &headers, &user, sid.as_deref()).await?;
        tracing::info!(user = %user.name, "user logged out");
    }
    let base = state.config.hub.base_url.as_str();
    let hub = state.hub_prefix();
    let mut cookies = vec![
        session::clear_cookie(session::LOGIN_COOKIE, &hub),
        session::clear_cookie(session::SESSION_COOKIE, base),
        session::clear_cookie(session::XSRF_COOKIE, &hub),
        session::clear_cookie("jupyterhub-services", &format!("{base}services")),
    ];
    let auth = &state.config.authenticator;
    if let Some(oidc) = &state.oidc {
        let id_token = super::oidc_login::id_token_hint(&state, &headers);
        cookies.push(super::oidc_login::clear_id_token_cookie(&state));
        if !auth.logout_redirect_url.is_empty() {
            let target = crate::auth::oidc::logout_url(
                &auth.logout_redirect_url,
                &oidc.config().client_id,
                id_token.as_deref(),
            );
            return Ok(with_cookies(crate::found(&target), cookies));
        }
    }
    Ok(with_cookies(crate::found(&format!("{hub}login")), cookies))
}

/// Ends this browser's session on the server: its OAuth tokens (single-user server logins) are
/// deleted and its login cookie, and every copy of it, signs no one in any more. A cookie from
/// before sessions were named is ended by a new cookie_id for the user (every browser of the
/// user signs in again, once).
async fn end_login_session(
    state: &AppState,
    headers: &HeaderMap,
    user: &User,
    session_cookie: Option<&str>,
) -> ApiResult<()> {
    if let Some(sid) = session_cookie {
        db::tokens::delete_for_session(&state.db, sid).await?;
    }
    let max_age = i64::from(state.config.hub.cookie_max_age_days) * 86_400 * 1_000_000;
    let login_session = crate::web::login_cookie_value(state, headers)
        .and_then(|value| session::parse_login_value(&value).1.map(str::to_string));
    match login_session {
        Some(sid) => {
            if Some(sid.as_str()) != session_cookie {
                db::tokens::delete_for_session(&state.db, &sid).await?;
            }
            state.ended_sessions.end(&state.db, &sid, max_age).await?;
        }
        None => {
            db::users::reset_cookie_id(&state.db, user.id).await?;
        }
    }
    Ok(())
}

fn native_signup_enabled(state: &AppState) -> bool {
    let a = &state.config.authenticator;
    a.kind == AuthenticatorKind::Native && a.enable_signup
}

async fn signup_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !native_signup_enabled(&state) {
        return error_page(
            &state,
            &headers,
            StatusCode::NOT_FOUND,
            "Sign-up is not enabled on this hub.",
            None,
        );
    }
    render(
        &state,
        &headers,
        "signup.html",
        None,
        json!({"username": ""}),
    )
}

#[derive(Deserialize)]
struct SignupForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirmation: String,
    #[serde(default)]
    _xsrf: Option<String>,
}

async fn signup_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignupForm>,
) -> ApiResult<Response> {
    if !native_signup_enabled(&state) {
        return Ok(error_page(
            &state,
            &headers,
            StatusCode::NOT_FOUND,
            "Sign-up is not enabled on this hub.",
            None,
        ));
    }
    if !xsrf_ok(&state, &headers, None, form._xsrf.as_deref()) {
        return Ok(xsrf_failure(&state, &headers));
    }
    let auth = &state.config.authenticator;
    let name = names::normalize_username(&form.username);
    let fail = |msg: String| {
        let mut r = render(
            &state,
            &headers,
            "signup.html",
            None,
            json!({"username": form.username, "error": msg}),
        );
        *r.status_mut() = StatusCode::BAD_REQUEST;
        r
    };
    if !names::is_valid_name(&name) {
        return Ok(fail(names::invalid_name_message("user", &form.username)));
    }
    if form.password.chars().count() < auth.minimum_password_length as usize
        || form.password.len() > 1024
    {
        return Ok(fail(format!(
            "The password must be at least {} characters long.",
            auth.minimum_password_length
        )));
    }
    if form.password != form.password_confirmation {
        return Ok(fail("The two passwords differ.".into()));
    }
    let approved = auth.open_signup || auth.admin_users.contains(&name);
    let password = form.password.clone();
    let hash = tokio::task::spawn_blocking(move || native::hash_password(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    match db::users::get(&state.db, &name).await? {
        Some(existing) if existing.password_hash.is_some() => {
            return Ok(fail(format!("The name {name} is taken.")));
        }
        // An account an admin made without a password: claiming it needs approval again, so
        // nobody can take over a name just by signing up first.
        Some(existing) => {
            db::users::set_password(&state.db, existing.id, &hash).await?;
            db::users::set_approved(&state.db, existing.id, approved).await?;
        }
        None => match db::users::create_with_password(&state.db, &name, &hash, approved).await {
            Err(e) if db::is_unique_violation(&e) => {
                return Ok(fail(format!("The name {name} is taken.")))
            }
            other => {
                other?;
            }
        },
    }
    tracing::info!(user = %name, approved, "native sign-up");
    let message = if approved {
        "Your account is ready: sign in.".to_string()
    } else {
        "Your account was created and is waiting for an administrator's approval.".to_string()
    };
    Ok(render(
        &state,
        &headers,
        "signup.html",
        None,
        json!({"username": "", "message": message}),
    ))
}

async fn require_admin(
    state: &AppState,
    headers: &HeaderMap,
    uri: &OriginalUri,
) -> ApiResult<Result<User, Response>> {
    match cookie_user(state, headers).await? {
        None => Ok(Err(login_redirect(state, uri))),
        Some((u, _)) if u.admin => Ok(Ok(u)),
        Some((u, _)) => Ok(Err(error_page(
            state,
            headers,
            StatusCode::FORBIDDEN,
            "Only administrators can approve sign-ups.",
            Some(&u),
        ))),
    }
}

async fn authorize_list(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
) -> ApiResult<Response> {
    let admin = match require_admin(&state, &headers, &uri).await? {
        Ok(u) => u,
        Err(r) => return Ok(r),
    };
    let pending: Vec<_> = db::users::list_unapproved(&state.db)
        .await?
        .into_iter()
        .map(|u| json!({"name": u.name, "created": db::format_timestamp(u.created)}))
        .collect();
    Ok(render(
        &state,
        &headers,
        "authorize.html",
        Some(&admin),
        json!({ "pending": pending }),
    ))
}

#[derive(Deserialize)]
struct XsrfOnly {
    #[serde(default)]
    _xsrf: Option<String>,
}

async fn authorize_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    Path(name): Path<String>,
    Form(form): Form<XsrfOnly>,
) -> ApiResult<Response> {
    let admin = match require_admin(&state, &headers, &uri).await? {
        Ok(u) => u,
        Err(r) => return Ok(r),
    };
    if !xsrf_ok(&state, &headers, Some(&admin), form._xsrf.as_deref()) {
        return Ok(xsrf_failure(&state, &headers));
    }
    let Some(user) = db::users::get(&state.db, &name).await? else {
        return Ok(error_page(
            &state,
            &headers,
            StatusCode::NOT_FOUND,
            &format!("No such user: {name}"),
            Some(&admin),
        ));
    };
    db::users::set_approved(&state.db, user.id, true).await?;
    tracing::info!(user = %name, by = %admin.name, "approved sign-up");
    Ok(crate::found(&format!("{}authorize", state.hub_prefix())))
}
