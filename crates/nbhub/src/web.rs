//! Helpers every web-facing module shares (the REST API, the pages, OAuth): who the browser
//! is, query parameters, the public origin, redirects, XSRF tokens, the `next` rule, the
//! Content-Security-Policy. Nothing here depends on `api` or `pages`, which both build on it.

mod respond;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::auth::{session, xsrf};
use crate::db::{self, users::User};
use crate::error::ApiResult;
use crate::state::AppState;

/// What a request with a NUL character (in a name, a value or the URL) is told: PostgreSQL can
/// neither store nor compare such text, so the API, the pages and OAuth refuse it alike.
pub const NUL_MESSAGE: &str =
    "NUL characters (\\u0000, %00) are not allowed in names, values or URLs";

/// The user whose valid login cookie this request carries, and the browser session id.
pub async fn cookie_user(
    state: &AppState,
    headers: &HeaderMap,
) -> ApiResult<Option<(User, Option<String>)>> {
    let Some(value) = login_cookie_value(state, headers) else {
        return Ok(None);
    };
    // A cookie of a session that was logged out (a copy taken before the logout) is no login.
    let (cookie_id, login_session) = session::parse_login_value(&value);
    if login_session.is_some_and(|sid| state.ended_sessions.is_ended(sid)) {
        return Ok(None);
    }
    let user = db::users::get_by_cookie_id(&state.db, cookie_id)
        .await?
        .filter(|u| u.approved && !state.authz.is_blocked(&u.name));
    // With auth_state: tokens older than auth_refresh_age are refreshed first; a refused
    // refresh ends the sign-in, and this browser is then no longer signed in.
    let user = match user {
        Some(u) if !state.authz.auth_states.on_request(&u).await => None,
        other => other,
    };
    let session_id = session::get_cookie(headers, session::SESSION_COOKIE).map(str::to_string);
    Ok(user.map(|u| (u, session_id)))
}

/// The value of the login cookie, if its signature holds and it has not expired (see
/// [`session::parse_login_value`]).
pub fn login_cookie_value(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let raw = session::get_cookie(headers, session::LOGIN_COOKIE)?;
    let max_age = i64::from(state.config.hub.cookie_max_age_days) * 86_400;
    let now = db::now_micros() / 1_000_000;
    session::verify(
        &state.cookie_secret,
        session::LOGIN_COOKIE,
        raw,
        now,
        max_age,
    )
}

/// The client's address, for counting its failed logins: the last `X-Forwarded-For` entry (the
/// one the proxy in front of the hub appended; earlier ones are the client's own word), else the
/// connection's peer. As JupyterHub (Tornado's `xheaders`), the hub's own port is expected to be
/// reachable only by its proxy.
pub fn client_ip(headers: &HeaderMap, peer: std::net::IpAddr) -> std::net::IpAddr {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|ip| ip.trim().parse().ok())
        .unwrap_or(peer)
}

pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

use crate::names::form_encode;

/// `scheme://host` as the client sees it, honouring the proxy's X-Forwarded-* headers.
pub fn public_origin(headers: &HeaderMap) -> String {
    let proto = first_header(headers, "x-forwarded-proto")
        .filter(|p| p == "https" || p == "http")
        .unwrap_or_else(|| "http".into());
    let host = request_host(headers).unwrap_or_else(|| "127.0.0.1".into());
    format!("{proto}://{host}")
}

fn first_header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').next().unwrap_or("").trim().to_string())
}

/// The host (with port) the browser addressed, if it is a plausible host name.
pub fn request_host(headers: &HeaderMap) -> Option<String> {
    first_header(headers, "x-forwarded-host")
        .or_else(|| first_header(headers, "host"))
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
        })
}

/// Whether the browser talks to us over https (directly or through the proxy).
pub fn is_https(state: &AppState, headers: &HeaderMap) -> bool {
    state.config.hub.bind_url.is_https()
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.starts_with("https"))
}

/// A redirect with an explicit status (axum's `Redirect::to` is a 303; JupyterHub uses 302).
pub fn redirect(status: StatusCode, location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (status, [(header::LOCATION, v)]).into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "bad redirect target").into_response(),
    }
}

/// `302 Found`, JupyterHub's usual redirect.
pub fn found(location: &str) -> Response {
    redirect(StatusCode::FOUND, location)
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

/// Sends an anonymous visitor to the login page, keeping where they wanted to go.
pub fn login_redirect(state: &AppState, uri: &Uri) -> Response {
    let next = uri.path_and_query().map_or("/", |p| p.as_str());
    found(&format!(
        "{}login?next={}",
        state.hub_prefix(),
        form_encode(next)
    ))
}

/// The `next` query parameter of this request, if it is a safe local target.
pub fn next_param(state: &AppState, uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let next = query_param(uri.query(), "next")?;
    safe_next(
        &next,
        request_host(headers).as_deref(),
        state.config.hub.base_url.as_str(),
    )
}

/// JupyterHub's `next` rule, made strict: the result is a local path under `base_url`, whatever
/// decoding and clean-up a browser applies to a `Location` (browsers drop tabs and newlines,
/// read `\` as `/`, and take `//host` as another host). An absolute URL is accepted only when
/// it names this host, and is reduced to its path. Anything else is refused (`None`), and the
/// caller falls back to its default page.
pub fn safe_next(next: &str, request_host: Option<&str>, base_url: &str) -> Option<String> {
    if next.is_empty() || next.len() > 4096 {
        return None;
    }
    let local = if next.starts_with('/') {
        next.to_string()
    } else {
        // Only an absolute http(s) URL to this very host may stand for a local path.
        let url = url::Url::parse(next).ok()?;
        if !matches!(url.scheme(), "http" | "https") || url.username() != "" {
            return None;
        }
        let host = url.host_str()?;
        let with_port = url
            .port()
            .map_or(host.to_string(), |p| format!("{host}:{p}"));
        let req = request_host?;
        if with_port != req && host != req {
            return None;
        }
        // The raw text after the authority, so that `//evil` in the path is still seen.
        let after_scheme = next.split_once("://")?.1;
        let path_start = after_scheme.find(['/', '?', '#'])?;
        let rest = &after_scheme[path_start..];
        if !rest.starts_with('/') {
            return None;
        }
        rest.to_string()
    };
    if local.chars().any(char::is_whitespace) {
        return None;
    }
    // Check every decoding a browser or an intermediary might apply.
    let mut form = local.clone();
    for round in 0.. {
        if !is_plain_local_path(&form) {
            return None;
        }
        let decoded = percent_encoding::percent_decode_str(&form)
            .decode_utf8_lossy()
            .into_owned();
        if decoded == form {
            break;
        }
        if round == 3 {
            // Still encoded after four rounds: nobody honest nests encodings that deep.
            return None;
        }
        form = decoded;
    }
    let base = base_url.trim_end_matches('/');
    if !base.is_empty() && local != base && !local.starts_with(&format!("{base}/")) {
        return None;
    }
    Some(local)
}

/// `/something`: not `//`, no backslash, no `..` segment, no control character.
fn is_plain_local_path(s: &str) -> bool {
    let path = s.split(['?', '#']).next().unwrap_or("");
    s.starts_with('/')
        && !s.starts_with("//")
        && !s.contains('\\')
        && !path.split('/').any(|seg| seg == "..")
        && !s.chars().any(char::is_control)
}

/// What an XSRF token is bound to: the browser session, and the login when there is one, so
/// that a token obtained in one browser (or planted as a cookie) fails in another.
fn xsrf_binding(headers: &HeaderMap, session_id: Option<&str>, user: Option<&User>) -> String {
    let sid = session_id
        .or_else(|| session::get_cookie(headers, session::SESSION_COOKIE))
        .unwrap_or("");
    format!("{sid}|{}", user.map_or("", |u| u.cookie_id.as_str()))
}

/// The XSRF token of this browser for its current session (and login): the existing cookie if
/// it is still valid for them, else a new one. The returned cookies (a session id for a new
/// visitor, the `_xsrf` cookie) must be set on the response.
pub fn xsrf_token(
    state: &AppState,
    headers: &HeaderMap,
    user: Option<&User>,
) -> (String, Vec<String>) {
    let secure = is_https(state, headers);
    let mut cookies = Vec::new();
    let mut session_id = session::get_cookie(headers, session::SESSION_COOKIE).map(str::to_string);
    if session_id.is_none() {
        let sid = new_session_id();
        cookies.push(session_cookie(state, &sid, secure));
        session_id = Some(sid);
    }
    let binding = xsrf_binding(headers, session_id.as_deref(), user);
    if let Some(existing) = session::get_cookie(headers, session::XSRF_COOKIE) {
        if xsrf::check(
            &state.cookie_secret,
            &binding,
            Some(existing),
            Some(existing),
        ) {
            return (existing.to_string(), cookies);
        }
    }
    let token = xsrf::new_token(&state.cookie_secret, &binding);
    cookies.push(session::set_cookie(
        session::XSRF_COOKIE,
        &token,
        &state.hub_prefix(),
        Some(3600),
        secure,
    ));
    (token, cookies)
}

/// Whether a form POST (or a cookie-authenticated API write) carries this browser's XSRF
/// token: the `_xsrf` field or query parameter, or the `X-XSRFToken` header.
pub fn xsrf_ok(
    state: &AppState,
    headers: &HeaderMap,
    user: Option<&User>,
    submitted: Option<&str>,
) -> bool {
    let header_token = headers.get("x-xsrftoken").and_then(|v| v.to_str().ok());
    xsrf::check(
        &state.cookie_secret,
        &xsrf_binding(headers, None, user),
        session::get_cookie(headers, session::XSRF_COOKIE),
        submitted.filter(|s| !s.is_empty()).or(header_token),
    )
}

pub fn new_session_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The `jupyterhub-session-id` cookie (Path base_url: single-user servers read it).
pub fn session_cookie(state: &AppState, session_id: &str, secure: bool) -> String {
    session::set_cookie(
        session::SESSION_COOKIE,
        session_id,
        state.config.hub.base_url.as_str(),
        None,
        secure,
    )
}

/// The Content-Security-Policy of every response: no framing, reports to the hub; API answers
/// (not HTML) load nothing at all.
pub fn content_security_policy(hub_prefix: &str, is_html: bool) -> String {
    let mut csp = format!("frame-ancestors 'none'; report-uri {hub_prefix}security/csp-report");
    if !is_html {
        csp.push_str("; default-src 'none'");
    }
    csp
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: Option<&str> = Some("127.0.0.1:8000");

    fn next(n: &str) -> Option<String> {
        safe_next(n, HOST, "/")
    }

    #[test]
    fn local_paths_pass() {
        assert_eq!(next("/user/alice/lab").as_deref(), Some("/user/alice/lab"));
        assert_eq!(
            next("/hub/home?x=1#top").as_deref(),
            Some("/hub/home?x=1#top")
        );
        assert_eq!(
            next("/user/alice/lab/tree/a%20b.ipynb").as_deref(),
            Some("/user/alice/lab/tree/a%20b.ipynb")
        );
        assert_eq!(
            next("http://127.0.0.1:8000/hub/home?x=1").as_deref(),
            Some("/hub/home?x=1")
        );
    }

    #[test]
    fn hostile_next_values_are_refused() {
        let hostile = [
            "http://127.0.0.1:8000//evil.example/x",
            "http://127.0.0.1:8000/\\evil.example/x",
            "/\t/evil.example",
            "/%09/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "/%0a/evil.example",
            "//evil.example",
            "//x",
            "///x",
            "/\\x",
            "\\\\x",
            "\\/x",
            "https://evil",
            "https://evil.example/hub/home",
            "http://127.0.0.1:8000@evil.example/",
            "http://user@127.0.0.1:8000/hub/",
            "/%2F/evil.example",
            "/%2f%2fevil.example",
            "%2F%2Fevil.example",
            "/%5Cevil.example",
            "/%255C%255Cevil",
            "javascript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            " /hub/home",
            "relative/path",
            "",
        ];
        for n in hostile {
            assert_eq!(next(n), None, "{n:?} must be refused");
        }
    }

    #[test]
    fn next_stays_under_base_url() {
        assert_eq!(
            safe_next("/prefix/hub/home", HOST, "/prefix/").as_deref(),
            Some("/prefix/hub/home")
        );
        assert_eq!(safe_next("/other/app", HOST, "/prefix/"), None);
        assert_eq!(safe_next("/prefixed", HOST, "/prefix/"), None);
    }
}
