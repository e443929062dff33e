//! Server-rendered pages: login, logout, sign-up and approval (native), home, tokens, admin,
//! the spawn pages, and the static files they use.
//!
//! Templates use JupyterHub's names, blocks and context names (`page.html` with
//! `{% block main %}`, `static_url()`, `xsrf_form_html()` …), in Jinja syntax. They are
//! embedded in the binary; `[hub] template_paths` are searched first, and the built-ins stay
//! reachable as `templates/<name>` so that a site's `page.html` can extend ours. Names end in
//! `.html`, so auto-escaping is on everywhere. Every form POST carries the XSRF token.

pub mod admin;
pub mod announcements;
pub mod assets;
pub mod home;
pub mod login;
pub mod oidc_login;
pub mod options_form;
pub mod share;
pub mod spawn;
pub mod token;
pub mod usage;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use minijinja::value::Value as JinjaValue;
use serde_json::{json, Value};

use crate::config::Config;
use crate::db::users::User;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::web::{cookie_user, login_redirect, with_cookies};

const TEMPLATES: &[(&str, &str)] = &[
    ("page.html", include_str!("../templates/page.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("signup.html", include_str!("../templates/signup.html")),
    (
        "authorize.html",
        include_str!("../templates/authorize.html"),
    ),
    ("home.html", include_str!("../templates/home.html")),
    (
        "server_history.html",
        include_str!("../templates/server_history.html"),
    ),
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
        "stop_pending.html",
        include_str!("../templates/stop_pending.html"),
    ),
    (
        "not_running.html",
        include_str!("../templates/not_running.html"),
    ),
    ("token.html", include_str!("../templates/token.html")),
    ("admin.html", include_str!("../templates/admin.html")),
    (
        "admin_usage.html",
        include_str!("../templates/admin_usage.html"),
    ),
    ("macros.html", include_str!("../templates/macros.html")),
    (
        "options_form.html",
        include_str!("../templates/options_form.html"),
    ),
];

/// Set by `nbhub --template-reload`: read templates from disk on every page (debug builds
/// always do).
static TEMPLATE_RELOAD: AtomicBool = AtomicBool::new(cfg!(debug_assertions));

pub fn set_template_reload(on: bool) {
    TEMPLATE_RELOAD.store(on, Ordering::Relaxed);
}

/// The page templates: the site's folders first, then the built-ins.
pub struct Templates {
    env: minijinja::Environment<'static>,
    site_paths: Arc<Vec<PathBuf>>,
    hub_prefix: String,
}

impl Templates {
    pub fn new(config: &Config) -> Templates {
        let site_paths = Arc::new(config.hub.template_paths.clone());
        let hub_prefix = format!("{}hub/", config.hub.base_url.as_str());
        if !assets::MISSING_VENDOR.is_empty() {
            tracing::warn!(
                "the pages' Bootstrap files were not built in ({}): {}",
                assets::MISSING_VENDOR.join(", "),
                assets::INSTALL_HINT
            );
        }
        Templates {
            env: environment(site_paths.clone(), &hub_prefix, false),
            site_paths,
            hub_prefix,
        }
    }

    /// Renders a template to a string (a whole page, or a fragment such as the options form).
    pub fn render_fragment(&self, name: &str, ctx: &Value) -> Result<String, minijinja::Error> {
        if TEMPLATE_RELOAD.load(Ordering::Relaxed) {
            let env = environment(self.site_paths.clone(), &self.hub_prefix, true);
            return env.get_template(name)?.render(ctx);
        }
        self.env.get_template(name)?.render(ctx)
    }
}

/// The built-in template `name`: from the source tree when reloading (if it is there), else
/// the copy compiled in.
fn builtin(name: &str, from_disk: bool) -> Option<String> {
    if from_disk {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("templates")
            .join(name);
        if let Ok(text) = std::fs::read_to_string(path) {
            return Some(text);
        }
    }
    TEMPLATES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| s.to_string())
}

/// A template name a loader may join to a folder: relative, no `..`.
fn is_safe_name(name: &str) -> bool {
    !name.starts_with('/') && !name.split(['/', '\\']).any(|s| s == ".." || s.is_empty())
}

fn environment(
    site_paths: Arc<Vec<PathBuf>>,
    hub_prefix: &str,
    from_disk: bool,
) -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_loader(move |name: &str| {
        if !is_safe_name(name) {
            return Ok(None);
        }
        if let Some(rest) = name.strip_prefix("templates/") {
            return Ok(builtin(rest, from_disk));
        }
        for dir in site_paths.iter() {
            let path = dir.join(name);
            if path.is_file() {
                return std::fs::read_to_string(&path).map(Some).map_err(|e| {
                    minijinja::Error::new(
                        minijinja::ErrorKind::TemplateNotFound,
                        format!("cannot read {}: {e}", path.display()),
                    )
                });
            }
        }
        Ok(builtin(name, from_disk))
    });
    let static_prefix = format!("{hub_prefix}static/");
    env.add_function("static_url", move |path: String| -> JinjaValue {
        let url = assets::url(&static_prefix, &path);
        // Plain URLs stay readable in the page (auto-escaping would write `/` as `&#x2f;`).
        if url
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-?=~".contains(c))
        {
            JinjaValue::from_safe_string(url)
        } else {
            JinjaValue::from(url)
        }
    });
    env.add_function("xsrf_form_html", |state: &minijinja::State| -> JinjaValue {
        let token = state
            .lookup("xsrf_token")
            .map(|v| v.to_string())
            .unwrap_or_default();
        let escaped = minijinja::HtmlEscape(&token).to_string();
        JinjaValue::from_safe_string(format!(
            r#"<input type="hidden" name="_xsrf" value="{escaped}">"#
        ))
    });
    env
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(hub_root))
        .route("/logo", get(assets::logo))
        .route("/static/{*path}", get(assets::serve))
        .route("/security/csp-report", axum::routing::post(csp_report))
        .merge(home::routes())
        .merge(token::routes())
        .merge(admin::routes())
        .merge(usage::routes())
        .merge(announcements::routes())
        .merge(login::routes())
        .merge(oidc_login::routes())
        .merge(spawn::routes())
        .merge(share::routes())
}

/// PostgreSQL can neither store nor compare text with NUL characters: a page's URL or form
/// holding one gets a 400 page before anything reaches the database, alike on every backend
/// (the API has its own check, with JSON answers).
pub async fn refuse_nul(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let uri = request.uri();
    let mut nul = uri.path().contains("%00") || uri.query().is_some_and(|q| q.contains("%00"));
    let is_form = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let request = if is_form && !nul {
        // Already read whole by the hub's outermost layer: this only takes the bytes again.
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        nul = bytes.contains(&0) || bytes.windows(3).any(|w| w == b"%00");
        axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))
    } else {
        request
    };
    if nul {
        let headers = request.headers().clone();
        return error_page(
            &state,
            &headers,
            StatusCode::BAD_REQUEST,
            crate::web::NUL_MESSAGE,
            None,
        );
    }
    next.run(request).await
}

/// A page that fails with an [`crate::error::ApiError`] (the database unreachable during a
/// restart, say) answers a browser with the error page rather than the API's JSON body; the
/// status and `Retry-After` stay. Scripts that ask for JSON (`Accept: application/json`, as
/// the pages' own scripts send) keep getting JSON.
pub async fn html_errors(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let wants_html = request
        .headers()
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if !wants_html {
        return next.run(request).await;
    }
    let headers = request.headers().clone();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || !is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    let message = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("Error").to_string());
    let mut page = error_page(&state, &headers, status, &message, None);
    if let Some(retry) = parts.headers.get(axum::http::header::RETRY_AFTER) {
        page.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, retry.clone());
    }
    page
}

/// Browsers post Content-Security-Policy violations here; they are logged (bounded).
async fn csp_report(body: axum::body::Bytes) -> StatusCode {
    let text = String::from_utf8_lossy(&body[..body.len().min(2048)]);
    tracing::warn!(report = %text, "Content-Security-Policy violation");
    StatusCode::NO_CONTENT
}

/// The systems a start would be refused on now, each with the message a start would get
/// (`{name, state, message}`; state: maintenance, unreachable or down), for the status box of
/// the spawn form and the home page.
pub fn system_status(state: &AppState) -> Value {
    let closed: Vec<Value> = crate::api::systems::states(state)
        .iter()
        .filter_map(|s| {
            let message = s.closed()?;
            let kind = match (&s.maintenance, &s.health) {
                (Some(_), _) => "maintenance",
                (None, nbhub_spawner::Health::Unreachable { .. }) => "unreachable",
                _ => "down",
            };
            Some(json!({"name": s.name, "state": kind, "message": message}))
        })
        .collect();
    Value::Array(closed)
}

/// Renders a template with JupyterHub's common context (`base_url` is the hub's prefix,
/// `prefix` the site's, `user`, `static_url()`, `xsrf_form_html()`, the `template_vars`),
/// and sets the browser's XSRF cookies.
pub fn render(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    user: Option<&User>,
    ctx: Value,
) -> Response {
    let (xsrf, cookies) = crate::web::xsrf_token(state, headers, user);
    let hub = state.hub_prefix();
    let prefix = state.config.hub.base_url.as_str();
    let page = name.trim_end_matches(".html");
    let vars = &state.config.hub.template_vars;
    let announcement = vars
        .get(&format!("announcement_{page}"))
        .or_else(|| vars.get("announcement"))
        .cloned()
        .unwrap_or(Value::Null);
    let user_json = user.map(|u| json!({"name": u.name, "admin": u.admin}));
    let announcements = announcements_view(state);
    let mut full = Value::Object(vars.clone());
    if let Value::Object(m) = &mut full {
        m.extend(
            json!({
                "base_url": hub,
                "prefix": prefix,
                "login_url": format!("{hub}login"),
                "logout_url": format!("{hub}logout"),
                "logo_url": format!("{hub}logo"),
                "version": env!("CARGO_PKG_VERSION"),
                "user": user_json,
                "xsrf_token": xsrf,
                "xsrf": xsrf,
                "announcement": announcement,
                "announcements": announcements,
                "page": page,
                "jhdata": {
                    "base_url": hub,
                    "prefix": prefix,
                    "user": user.map(|u| u.name.clone()),
                    "admin": user.is_some_and(|u| u.admin),
                    "xsrf_token": xsrf,
                },
            })
            .as_object()
            .cloned()
            .unwrap_or_default(),
        );
        if let Value::Object(extra) = ctx {
            m.extend(extra);
        }
    }
    let response = match state.templates.render_fragment(name, &full) {
        Ok(html) => Html(html).into_response(),
        Err(e) => ApiError::internal(format!("template {name}: {e:#}")).into_response(),
    };
    with_cookies(response, cookies)
}

/// The announcements in force, newest first, for the layout (`page.html`) and the admin
/// page: text (escaped by the template like any value), level, system and end.
fn announcements_view(state: &AppState) -> Vec<Value> {
    state
        .announcements
        .active()
        .iter()
        .map(|a| {
            json!({
                "id": a.id,
                "message": a.message,
                "level": a.level,
                "system": a.system,
                "system_title": a.system.as_deref().map(|s| crate::api::announcements::system_title(state, s)),
                "until": a.until.map(crate::db::format_timestamp),
                "set_by": a.set_by,
            })
        })
        .collect()
}

pub fn error_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    message: &str,
    user: Option<&User>,
) -> Response {
    error_page_with(state, headers, status, message, user, json!({}))
}

/// `error_page` with more template variables (e.g. `retry_url`: a "Try again" button).
pub fn error_page_with(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    message: &str,
    user: Option<&User>,
    extra: Value,
) -> Response {
    let mut ctx = json!({"status_code": status.as_u16(), "status_message": status.canonical_reason().unwrap_or(""), "message": message, "error_message": message});
    if let (Value::Object(m), Value::Object(extra)) = (&mut ctx, extra) {
        m.extend(extra);
    }
    let mut r = render(state, headers, "error.html", user, ctx);
    *r.status_mut() = status;
    r
}

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

/// The signed-in user of a page, or the login redirect to answer with.
pub async fn page_user(
    state: &AppState,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
) -> ApiResult<Result<(User, Option<String>), Response>> {
    Ok(match cookie_user(state, headers).await? {
        Some(u) => Ok(u),
        None => Err(login_redirect(state, uri)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse() {
        let env = environment(Arc::new(Vec::new()), "/hub/", false);
        for (name, _) in TEMPLATES {
            assert!(env.get_template(name).is_ok(), "{name}");
            let prefixed = format!("templates/{name}");
            assert!(env.get_template(&prefixed).is_ok(), "{prefixed}");
        }
    }

    #[test]
    fn loader_refuses_paths_outside_its_folders() {
        assert!(!is_safe_name("../etc/passwd"));
        assert!(!is_safe_name("/etc/passwd"));
        assert!(!is_safe_name("a/../../b.html"));
        assert!(is_safe_name("templates/page.html"));
    }
}
