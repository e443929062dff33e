//! Server-rendered pages: login, logout, sign-up and approval (native), home.
//!
//! Templates use JupyterHub's names and blocks (`page.html` with `{% block main %}`), in Jinja
//! syntax, embedded in the binary. Every form POST carries the XSRF token.

pub mod login;
pub mod share;
pub mod spawn;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::auth::{session, xsrf};
use crate::db::{self, users::User};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

const TEMPLATES: &[(&str, &str)] = &[
    ("page.html", include_str!("../templates/page.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("signup.html", include_str!("../templates/signup.html")),
    (
        "authorize.html",
        include_str!("../templates/authorize.html"),
    ),
    ("home.html", include_str!("../templates/home.html")),
    ("error.html", include_str!("../templates/error.html")),
    ("oauth.html", include_str!("../templates/oauth.html")),
    (
        "accept-share.html",
        include_str!("../templates/accept-share.html"),
    ),
    ("spawn.html", include_str!("../templates/spawn.html")),
    (
        "spawn_pending.html",
        include_str!("../templates/spawn_pending.html"),
    ),
    (
        "not_running.html",
        include_str!("../templates/not_running.html"),
    ),
];

/// The template environment; `.html` names keep auto-escaping on.
pub fn templates() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    for (name, source) in TEMPLATES {
        if let Err(e) = env.add_template(name, source) {
            // Embedded templates are checked by the test suite; this only guards edits.
            tracing::error!(template = name, error = %e, "bad built-in template");
        }
    }
    env
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(hub_root))
        .route("/home", get(home))
        .merge(login::routes())
        .merge(spawn::routes())
        .merge(share::routes())
}

/// Renders a template with the common context (base_url, user, version).
pub fn render(state: &AppState, name: &str, user: Option<&User>, ctx: Value) -> Response {
    let mut full = json!({
        "base_url": state.config.hub.base_url.as_str(),
        "version": env!("CARGO_PKG_VERSION"),
        "user": user.map(|u| json!({"name": u.name, "admin": u.admin})),
    });
    if let (Some(full), Value::Object(extra)) = (full.as_object_mut(), ctx) {
        full.extend(extra);
    }
    match state
        .templates
        .get_template(name)
        .and_then(|t| t.render(&full))
    {
        Ok(html) => {
            let mut r = Html(html).into_response();
            r.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "frame-ancestors 'none'; report-uri /hub/security/csp-report",
                ),
            );
            r
        }
        Err(e) => ApiError::internal(format!("template {name}: {e}")).into_response(),
    }
}

pub fn error_page(
    state: &AppState,
    status: StatusCode,
    message: &str,
    user: Option<&User>,
) -> Response {
    let mut r = render(
        state,
        "error.html",
        user,
        json!({"status_code": status.as_u16(), "status_message": status.canonical_reason().unwrap_or(""), "message": message}),
    );
    *r.status_mut() = status;
    r
}

/// The user whose valid login cookie this request carries, and the browser session id.
pub async fn cookie_user(
    state: &AppState,
    headers: &HeaderMap,
) -> ApiResult<Option<(User, Option<String>)>> {
    let Some(raw) = session::get_cookie(headers, session::LOGIN_COOKIE) else {
        return Ok(None);
    };
    let max_age = i64::from(state.config.hub.cookie_max_age_days) * 86_400;
    let now = db::now_micros() / 1_000_000;
    let Some(cookie_id) = session::verify(
        &state.cookie_secret,
        session::LOGIN_COOKIE,
        raw,
        now,
        max_age,
    ) else {
        return Ok(None);
    };
    let user = db::users::get_by_cookie_id(&state.db, &cookie_id)
        .await?
        .filter(|u| u.approved);
    let session_id = session::get_cookie(headers, session::SESSION_COOKIE).map(str::to_string);
    Ok(user.map(|u| (u, session_id)))
}

/// Sends an anonymous visitor to the login page, keeping where they wanted to go.
pub fn login_redirect(state: &AppState, uri: &axum::http::Uri) -> Response {
    let next = uri.path_and_query().map_or("/", |p| p.as_str());
    let encoded: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
    crate::found(&format!("{}login?next={encoded}", state.hub_prefix()))
}

/// Where a user goes after login when no `next` was given.
/// Where a user goes after login when no `next` was given: their running server, else the
/// spawn page (or home with `redirect_to_server = false`).
pub fn default_landing(state: &AppState, user: &User) -> String {
    if !state.config.hub.redirect_to_server {
        return format!("{}home", state.hub_prefix());
    }
    if state.supervisor.phase_of(user.id, "") == crate::supervisor::Phase::Running {
        return crate::supervisor::server_prefix(
            state.config.hub.base_url.as_str(),
            &user.name,
            "",
        );
    }
    format!("{}spawn", state.hub_prefix())
}

pub async fn hub_root(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: HeaderMap,
    uri: axum::extract::OriginalUri,
) -> ApiResult<Response> {
    match cookie_user(&state, &headers).await? {
        Some((user, _)) => Ok(crate::found(&default_landing(&state, &user))),
        None => Ok(login_redirect(&state, &uri)),
    }
}

async fn home(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: HeaderMap,
    uri: axum::extract::OriginalUri,
) -> ApiResult<Response> {
    match cookie_user(&state, &headers).await? {
        Some((user, _)) => Ok(render(&state, "home.html", Some(&user), json!({}))),
        None => Ok(login_redirect(&state, &uri)),
    }
}

/// Whether the browser talks to us over https (directly or through the proxy).
pub fn is_https(state: &AppState, headers: &HeaderMap) -> bool {
    state.config.hub.bind_url.is_https()
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.starts_with("https"))
}

/// The XSRF token of this browser: the existing cookie if it is ours, else a new one (which the
/// caller must set as a cookie).
pub fn xsrf_token(state: &AppState, headers: &HeaderMap) -> (String, Option<String>) {
    if let Some(existing) = session::get_cookie(headers, session::XSRF_COOKIE) {
        if xsrf::check(&state.cookie_secret, Some(existing), Some(existing)) {
            return (existing.to_string(), None);
        }
    }
    let token = xsrf::new_token(&state.cookie_secret);
    let cookie = session::set_cookie(
        session::XSRF_COOKIE,
        &token,
        &state.hub_prefix(),
        Some(3600),
        is_https(state, headers),
    );
    (token.clone(), Some(cookie))
}

/// Adds `Set-Cookie` headers.
pub fn with_cookies(mut response: Response, cookies: impl IntoIterator<Item = String>) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// JupyterHub's `next` rules: only local paths (an absolute URL is accepted only when it
/// points at this host, and is reduced to its path); anything else is dropped.
pub fn safe_next(next: &str, request_host: Option<&str>) -> Option<String> {
    let next = next.replace('\\', "%5C");
    if next.is_empty() {
        return None;
    }
    if let Ok(url) = url::Url::parse(&next) {
        let same_host = match (url.host_str(), request_host) {
            (Some(h), Some(req)) => {
                let with_port = url.port().map_or(h.to_string(), |p| format!("{h}:{p}"));
                with_port == req || h == req
            }
            _ => false,
        };
        if !same_host || !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        let mut local = url.path().to_string();
        if let Some(q) = url.query() {
            local.push('?');
            local.push_str(q);
        }
        return Some(local);
    }
    if !next.starts_with('/') || next.starts_with("//") || next.contains(['\r', '\n']) {
        return None;
    }
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse() {
        let env = templates();
        for (name, _) in TEMPLATES {
            assert!(env.get_template(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn next_is_local_only() {
        assert_eq!(
            safe_next("/user/alice/lab", None).as_deref(),
            Some("/user/alice/lab")
        );
        assert_eq!(safe_next("https://evil.example/x", Some("hub.org")), None);
        assert_eq!(safe_next("//evil.example/x", None), None);
        assert_eq!(safe_next("///evil.example/x", None), None);
        assert_eq!(
            safe_next("/\\evil.example", None).as_deref(),
            Some("/%5Cevil.example")
        );
        assert_eq!(safe_next("javascript:alert(1)", None), None);
        assert_eq!(
            safe_next("http://hub.org:8000/hub/home?x=1", Some("hub.org:8000")).as_deref(),
            Some("/hub/home?x=1")
        );
        assert_eq!(safe_next("relative", None), None);
    }
}
