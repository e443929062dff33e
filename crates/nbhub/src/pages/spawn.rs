//! The URL dance of docs/wire.md#user-urls: `/hub/user/<name>/…` (redirect to a running server, 424 for a
//! stopped one), `/hub/user-redirect/…`, `/hub/spawn…`, `/hub/spawn-pending/…`, and the
//! proxy's error target `/hub/error/<code>`.

use std::time::Duration;

use axum::extract::{OriginalUri, Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde_json::{json, Map, Value};

use super::{error_page, login_redirect, render};
use crate::auth::scopes::Resource;
use crate::auth::{self, Identity};
use crate::db::{self, users::User};
use crate::error::ApiResult;
use crate::names::url_escape;
use crate::state::AppState;
use crate::supervisor::{server_prefix, Phase, SpawnRefused};
use crate::web::{next_param, xsrf_ok};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/user/{name}", get(user_redirect_bare))
        .route(
            "/user/{name}/",
            get(user_redirect_root).post(user_redirect_root),
        )
        .route("/user/{name}/{*path}", axum::routing::any(user_redirect))
        .route("/user-redirect/{*path}", get(user_redirect_self))
        .route("/spawn", get(spawn_self).post(spawn_self_post))
        .route("/spawn/{name}", get(spawn_user).post(spawn_user_post))
        .route(
            "/spawn/{name}/{server}",
            get(spawn_named).post(spawn_named_post),
        )
        .route("/spawn-pending/{name}", get(pending_default))
        .route("/spawn-pending/{name}/{server}", get(pending_named))
        .route("/error/{code}", get(error_target))
}

/// The same answer for a server one may not see and one that does not exist.
fn no_access(state: &AppState, headers: &HeaderMap, ident: &Identity) -> Response {
    error_page(
        state,
        headers,
        StatusCode::NOT_FOUND,
        "No access to this server, or it does not exist.",
        ident.user(),
    )
}

/// The caller of a page: the login cookie, or (for API clients following redirects) a token.
async fn page_identity(state: &AppState, headers: &HeaderMap) -> ApiResult<Option<Identity>> {
    if let Some(token) = auth::token_from_headers(headers) {
        return auth::identity_for_token(&state.authz, token).await;
    }
    match super::cookie_user(state, headers).await? {
        Some((user, session)) => Ok(Some(
            auth::identity_for_user(&state.authz, user, session).await?,
        )),
        None => Ok(None),
    }
}

fn hub(state: &AppState) -> String {
    state.hub_prefix()
}

fn path_part(server: &str) -> String {
    if server.is_empty() {
        String::new()
    } else {
        format!("/{}", crate::names::url_escape(server))
    }
}

use crate::web::encode;

fn server_display(user: &str, server: &str) -> String {
    if server.is_empty() {
        format!("{user}'s server")
    } else {
        format!("{user}'s server {server}")
    }
}

async fn user_redirect_bare(uri: OriginalUri) -> Response {
    crate::found(&format!("{}/", uri.path()))
}

async fn user_redirect_root(
    State(state): State<AppState>,
    headers: HeaderMap,
    method: Method,
    uri: OriginalUri,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    to_server(state, headers, method, uri, name, String::new()).await
}

async fn user_redirect(
    State(state): State<AppState>,
    headers: HeaderMap,
    method: Method,
    uri: OriginalUri,
    Path((name, path)): Path<(String, String)>,
) -> ApiResult<Response> {
    to_server(state, headers, method, uri, name, path).await
}

/// Does the client want JSON rather than a page (JupyterLab's API calls)?
fn wants_json(headers: &HeaderMap, method: &Method, path: &str) -> bool {
    if method != Method::GET || path.split('/').any(|seg| seg == "api") {
        return true;
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let json_at = accept.find("application/json");
    let html_at = accept.find("text/html");
    match (json_at, html_at) {
        (Some(j), Some(h)) => j < h,
        (Some(_), None) => true,
        _ => false,
    }
}

/// `/hub/user/<name>/<path>`: a request that reached the hub because the proxy had no route.
async fn to_server(
    state: AppState,
    headers: HeaderMap,
    method: Method,
    uri: OriginalUri,
    name: String,
    path: String,
) -> ApiResult<Response> {
    let Some(ident) = page_identity(&state, &headers).await? else {
        return Ok(login_redirect(&state, &uri));
    };
    let base = state.config.hub.base_url.as_str();
    // The same answer as for a server one may not access: who exists is not told.
    let Some(user) = db::users::get(&state.db, &name).await? else {
        return Ok(no_access(&state, &headers, &ident));
    };
    // The rest of the path as the client sent it, still escaped (`%3F` must stay `%3F`).
    let raw_rest = uri
        .path()
        .strip_prefix(&format!("{}user/", hub(&state)))
        .and_then(|r| r.split_once('/'))
        .map_or("", |(_, rest)| rest);
    // A first path segment naming one of the user's named servers selects it.
    let mut server = String::new();
    let mut rest = raw_rest.to_string();
    if state.config.hub.allow_named_servers {
        let first = path.split('/').next().unwrap_or("");
        if !first.is_empty() && db::servers::get(&state.db, user.id, first).await?.is_some() {
            server = first.to_string();
            rest = raw_rest.split_once('/').map_or("", |(_, r)| r).to_string();
        }
    }
    let ename = url_escape(&name);
    if !ident.allows(
        "access:servers",
        &Resource::Server {
            user: &name,
            server: &server,
        },
    ) {
        return Ok(no_access(&state, &headers, &ident));
    }
    let prefix = server_prefix(base, &name, &server);
    let slot = state.supervisor.slot(&user, &server);
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    match slot.phase() {
        Phase::Running => {
            let redirects: u64 = query
                .iter()
                .find(|(k, _)| k == "redirects")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            if redirects >= 4 {
                return Ok(error_page(
                    &state,
                    &headers,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Redirect loop detected.",
                    ident.user(),
                ));
            }
            if redirects > 0 {
                // The proxy may not have the route yet; give it a moment, longer each time.
                tokio::time::sleep(Duration::from_secs((1u64 << redirects).min(10))).await;
            }
            let mut pairs: Vec<(String, String)> = query
                .into_iter()
                .filter(|(k, _)| k != "redirects")
                .collect();
            pairs.push(("redirects".into(), (redirects + 1).to_string()));
            let q = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish();
            Ok(crate::found(&format!("{prefix}{rest}?{q}")))
        }
        Phase::Starting => {
            let target = format!(
                "{}spawn-pending/{ename}{}?next={}",
                hub(&state),
                path_part(&server),
                encode(uri.path_and_query().map_or("", |p| p.as_str()))
            );
            Ok(crate::redirect(StatusCode::SEE_OTHER, &target))
        }
        _ if slot.failure().is_some() && !wants_json(&headers, &method, &path) => {
            let target = format!(
                "{}spawn-pending/{ename}{}?next={}",
                hub(&state),
                path_part(&server),
                encode(uri.path_and_query().map_or("", |p| p.as_str()))
            );
            Ok(crate::redirect(StatusCode::SEE_OTHER, &target))
        }
        _ => {
            let spawn_url = format!(
                "{}spawn/{ename}{}?next={}",
                hub(&state),
                path_part(&server),
                encode(uri.path_and_query().map_or("", |p| p.as_str()))
            );
            if wants_json(&headers, &method, &path) {
                let origin = crate::web::public_origin(&headers);
                let message = format!(
                    "JupyterHub server no longer running at {}. Restart the server at {origin}{}spawn/{ename}{}",
                    uri.path(),
                    hub(&state),
                    path_part(&server)
                );
                return Ok((
                    StatusCode::FAILED_DEPENDENCY,
                    axum::Json(json!({"status": 424, "message": message})),
                )
                    .into_response());
            }
            let mut page = render(
                &state,
                &headers,
                "not_running.html",
                ident.user(),
                json!({"server_display": server_display(&name, &server), "spawn_url": spawn_url, "exit_reason": slot.exit_reason(), "stopping": slot.phase() == Phase::Stopping}),
            );
            *page.status_mut() = StatusCode::FAILED_DEPENDENCY;
            Ok(page)
        }
    }
}

async fn user_redirect_self(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    Path(path): Path<String>,
) -> ApiResult<Response> {
    let Some((user, _)) = super::cookie_user(&state, &headers).await? else {
        return Ok(login_redirect(&state, &uri));
    };
    // The path as sent, still escaped, not the decoded `path`.
    let raw = uri
        .path()
        .strip_prefix(&format!("{}user-redirect/", hub(&state)))
        .unwrap_or(&path);
    let mut next = format!(
        "{}{raw}",
        server_prefix(state.config.hub.base_url.as_str(), &user.name, "")
    );
    if let Some(q) = uri.query() {
        next.push('?');
        next.push_str(q);
    }
    Ok(crate::found(&format!(
        "{}spawn/{}?next={}",
        hub(&state),
        url_escape(&user.name),
        encode(&next)
    )))
}

/// Checks login and permission on `name`'s `server` (one of `scopes`); Err is the page to
/// show. The scope is checked before the user is looked up, so that a server one may not touch
/// and a user who does not exist get the same answer.
async fn spawn_target(
    state: &AppState,
    headers: &HeaderMap,
    uri: &OriginalUri,
    name: Option<&str>,
    server: &str,
    scopes: &[&str],
) -> ApiResult<Result<(Identity, User), Response>> {
    let Some((me, session)) = super::cookie_user(state, headers).await? else {
        return Ok(Err(login_redirect(state, uri)));
    };
    let ident = auth::identity_for_user(&state.authz, me.clone(), session).await?;
    let name = name.unwrap_or(&me.name).to_string();
    let res = Resource::Server {
        user: &name,
        server,
    };
    if !scopes.iter().any(|s| ident.allows(s, &res)) {
        return Ok(Err(no_access(state, headers, &ident)));
    }
    let target = if name == me.name {
        me
    } else {
        match db::users::get(&state.db, &name).await? {
            Some(u) => u,
            None => return Ok(Err(no_access(state, headers, &ident))),
        }
    };
    Ok(Ok((ident, target)))
}

fn pending_url(state: &AppState, user: &str, server: &str, next: Option<&str>) -> String {
    let mut url = format!(
        "{}spawn-pending/{}{}",
        hub(state),
        url_escape(user),
        path_part(server)
    );
    if let Some(n) = next {
        url.push_str("?next=");
        url.push_str(&encode(n));
    }
    url
}

async fn spawn_page(
    state: AppState,
    headers: HeaderMap,
    uri: OriginalUri,
    name: Option<String>,
    server: String,
    form: Option<Map<String, Value>>,
) -> ApiResult<Response> {
    let target = spawn_target(
        &state,
        &headers,
        &uri,
        name.as_deref(),
        &server,
        &["start:servers"],
    );
    let (ident, user) = match target.await? {
        Ok(t) => t,
        Err(page) => return Ok(page),
    };
    if !server.is_empty() && !state.config.hub.allow_named_servers {
        return Ok(error_page(
            &state,
            &headers,
            StatusCode::BAD_REQUEST,
            "Named servers are not enabled on this hub.",
            ident.user(),
        ));
    }
    let next = next_param(&state, &uri, &headers);
    let prefix = server_prefix(state.config.hub.base_url.as_str(), &user.name, &server);
    let slot = state.supervisor.slot(&user, &server);
    match slot.phase() {
        Phase::Running => return Ok(crate::found(next.as_deref().unwrap_or(&prefix))),
        Phase::Starting => {
            return Ok(crate::found(&pending_url(
                &state,
                &user.name,
                &server,
                next.as_deref(),
            )))
        }
        _ => {}
    }
    // Options: the form's fields, or `opt-*` query parameters.
    let spec = options_form(&state, &user, &server).await?;
    let submitted = form.clone();
    let options = match form {
        Some(fields) => Value::Object(fields),
        None => {
            let from_query: Map<String, Value> =
                url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                    .filter_map(|(k, v)| {
                        k.strip_prefix("opt-")
                            .map(|k| (k.to_string(), Value::String(v.into_owned())))
                    })
                    .collect();
            if let Some(spec) = spec.as_ref().filter(|f| !f.fields.is_empty()) {
                if from_query.is_empty() {
                    let form = SpawnForm {
                        for_user: &user,
                        server: &server,
                        spec,
                        message: None,
                        submitted: None,
                        errors: &[],
                    };
                    return Ok(render_form(&state, &headers, &uri, ident.user(), &form));
                }
            }
            Value::Object(from_query)
        }
    };
    let refused = match state.supervisor.start(&user, &server, &options).await {
        Ok(slot) => {
            slot.wait_while(Phase::Starting, Duration::from_secs(1))
                .await;
            return Ok(crate::found(&pending_url(
                &state,
                &user.name,
                &server,
                next.as_deref(),
            )));
        }
        Err(e) => e,
    };
    let (errors, message) = match refused {
        SpawnRefused::InvalidOptions(errors) => {
            let general: Vec<&str> = errors
                .iter()
                .filter(|e| {
                    e.field.is_empty() || spec.as_ref().and_then(|s| s.field(&e.field)).is_none()
                })
                .map(|e| e.message.as_str())
                .collect();
            let message = if general.is_empty() {
                "Some options are not valid: see the marked fields.".to_string()
            } else {
                general.join("; ")
            };
            (errors, message)
        }
        SpawnRefused::BadRequest(msg) => (Vec::new(), msg),
        SpawnRefused::AlreadyRunning(_) => {
            return Ok(crate::found(next.as_deref().unwrap_or(&prefix)))
        }
        other => {
            let (status, user) = match &other {
                // Their sessions have ended: the page offers to sign in.
                SpawnRefused::SignInAgain(_) => (StatusCode::FORBIDDEN, None),
                SpawnRefused::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ident.user()),
                SpawnRefused::Limit(_) => (StatusCode::TOO_MANY_REQUESTS, ident.user()),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, ident.user()),
            };
            return Ok(error_page(
                &state,
                &headers,
                status,
                &other.to_string(),
                user,
            ));
        }
    };
    match &spec {
        Some(spec) => {
            let form = SpawnForm {
                for_user: &user,
                server: &server,
                spec,
                message: Some(&message),
                submitted: submitted.as_ref(),
                errors: &errors,
            };
            Ok(render_form(&state, &headers, &uri, ident.user(), &form))
        }
        None => Ok(error_page(
            &state,
            &headers,
            StatusCode::BAD_REQUEST,
            &message,
            ident.user(),
        )),
    }
}

/// The spawner's options form for `user` (None: it takes no options).
async fn options_form(
    state: &AppState,
    user: &User,
    server: &str,
) -> ApiResult<Option<nbhub_spawner::FormSpec>> {
    Ok(state.supervisor.options_form(user, server).await?)
}

/// What the spawn page shows: whose server, the form, and what was wrong with the last try.
struct SpawnForm<'a> {
    for_user: &'a User,
    server: &'a str,
    spec: &'a nbhub_spawner::FormSpec,
    message: Option<&'a str>,
    submitted: Option<&'a Map<String, Value>>,
    errors: &'a [nbhub_spawner::FieldError],
}

fn render_form(
    state: &AppState,
    headers: &HeaderMap,
    uri: &OriginalUri,
    me: Option<&User>,
    form: &SpawnForm<'_>,
) -> Response {
    let fields = super::options_form::field_views(form.spec, form.submitted, form.errors);
    let options_html = match state
        .templates
        .render_fragment("options_form.html", &json!({ "fields": fields }))
    {
        Ok(html) => html,
        Err(e) => {
            return crate::error::ApiError::internal(format!("template options_form.html: {e:#}"))
                .into_response()
        }
    };
    let action = uri.path_and_query().map_or_else(String::new, |p| {
        // Keep `next` (already checked when it is used) but not one-off query options.
        let next = crate::web::query_param(p.query(), "next")
            .map(|n| format!("?next={}", encode(&n)))
            .unwrap_or_default();
        format!("{}{next}", p.path())
    });
    let can_estimate = serde_json::to_value(form.spec)
        .ok()
        .and_then(|v| v["can_estimate"].as_bool())
        .unwrap_or(false);
    let name = crate::names::url_escape(&form.for_user.name);
    let estimate_url = if form.server.is_empty() {
        format!("{}api/users/{name}/server/estimate", hub(state))
    } else {
        format!(
            "{}api/users/{name}/servers/{}/estimate",
            hub(state),
            crate::names::url_escape(form.server)
        )
    };
    let mut page = render(
        state,
        headers,
        "spawn.html",
        me,
        json!({
            "url": action,
            "spawner_options_form": options_html,
            "error_message": form.message,
            "for_user": {"name": form.for_user.name},
            "server_name": form.server,
            "can_estimate": can_estimate,
            "estimate_url": estimate_url,
        }),
    );
    if form.message.is_some() {
        *page.status_mut() = StatusCode::BAD_REQUEST;
    }
    page
}

async fn spawn_post(
    state: AppState,
    headers: HeaderMap,
    uri: OriginalUri,
    name: Option<String>,
    server: String,
    form: Vec<(String, String)>,
) -> ApiResult<Response> {
    let submitted = form
        .iter()
        .find(|(k, _)| k == "_xsrf")
        .map(|(_, v)| v.as_str());
    let Some((me, _)) = super::cookie_user(&state, &headers).await? else {
        return Ok(login_redirect(&state, &uri));
    };
    if !xsrf_ok(&state, &headers, Some(&me), submitted) {
        return Ok(error_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            "'_xsrf' argument missing from POST, or it does not match this browser's session. Reload the page and try again.",
            Some(&me),
        ));
    }
    let fields: Map<String, Value> = form
        .into_iter()
        .filter(|(k, _)| k != "_xsrf")
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    spawn_page(state, headers, uri, name, server, Some(fields)).await
}

async fn spawn_self(
    State(s): State<AppState>,
    h: HeaderMap,
    u: OriginalUri,
) -> ApiResult<Response> {
    spawn_page(s, h, u, None, String::new(), None).await
}
async fn spawn_user(
    State(s): State<AppState>,
    h: HeaderMap,
    u: OriginalUri,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    spawn_page(s, h, u, Some(name), String::new(), None).await
}
async fn spawn_named(
    State(s): State<AppState>,
    h: HeaderMap,
    u: OriginalUri,
    Path((name, server)): Path<(String, String)>,
) -> ApiResult<Response> {
    spawn_page(s, h, u, Some(name), server, None).await
}
async fn spawn_self_post(
    State(s): State<AppState>,
    h: HeaderMap,
    u: OriginalUri,
    Form(f): Form<Vec<(String, String)>>,
) -> ApiResult<Response> {
    spawn_post(s, h, u, None, String::new(), f).await
}
async fn spawn_user_post(
    State(s): State<AppState>,
    h: HeaderMap,
    u: OriginalUri,
    Path(name): Path<String>,
    Form(f): Form<Vec<(String, String)>>,
) -> ApiResult<Response> {
    spawn_post(s, h, u, Some(name), String::new(), f).await
}
async fn spawn_named_post(
    State(s): State<AppState>,
    h: HeaderMap,
    u: OriginalUri,
    Path((name, server)): Path<(String, String)>,
    Form(f): Form<Vec<(String, String)>>,
) -> ApiResult<Response> {
    spawn_post(s, h, u, Some(name), server, f).await
}

async fn pending(
    state: AppState,
    headers: HeaderMap,
    uri: OriginalUri,
    name: String,
    server: String,
) -> ApiResult<Response> {
    let target = spawn_target(
        &state,
        &headers,
        &uri,
        Some(&name),
        &server,
        &["servers", "read:servers"],
    );
    let (ident, user) = match target.await? {
        Ok(t) => t,
        Err(page) => return Ok(page),
    };
    let next = next_param(&state, &uri, &headers);
    let base = state.config.hub.base_url.as_str();
    let prefix = server_prefix(base, &user.name, &server);
    let slot = state.supervisor.slot(&user, &server);
    let spawn_url = format!(
        "{}spawn/{}{}{}",
        hub(&state),
        crate::names::url_escape(&user.name),
        path_part(&server),
        next.as_deref()
            .map(|n| format!("?next={}", encode(n)))
            .unwrap_or_default()
    );
    let ctx = |extra: Value| {
        let mut v =
            json!({"server_display": server_display(&user.name, &server), "spawn_url": spawn_url});
        if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
            m.extend(e);
        }
        v
    };
    match slot.phase() {
        Phase::Running => Ok(crate::found(next.as_deref().unwrap_or(&prefix))),
        Phase::Starting => {
            // The page's script adds the XSRF token that the event stream needs.
            let api = format!(
                "{base}hub/api/users/{}",
                crate::names::url_escape(&user.name)
            );
            let server_api = if server.is_empty() {
                format!("{api}/server")
            } else {
                format!("{api}/servers/{}", crate::names::url_escape(&server))
            };
            Ok(render(
                &state,
                &headers,
                "spawn_pending.html",
                ident.user(),
                ctx(json!({
                    "progress_url": format!("{server_api}/progress"),
                    "stop_url": server_api,
                    "next_url": next.as_deref().unwrap_or(&prefix),
                })),
            ))
        }
        Phase::Stopping => Ok(render(
            &state,
            &headers,
            "stop_pending.html",
            ident.user(),
            ctx(json!({})),
        )),
        Phase::Stopped => {
            if let Some(failed) = slot.failure() {
                let mut page = render(
                    &state,
                    &headers,
                    "not_running.html",
                    ident.user(),
                    ctx(json!({"failed": failed})),
                );
                *page.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                return Ok(page);
            }
            Ok(render(
                &state,
                &headers,
                "not_running.html",
                ident.user(),
                ctx(json!({"exit_reason": slot.exit_reason()})),
            ))
        }
    }
}

async fn pending_default(
    State(s): State<AppState>,
    h: HeaderMap,
    u: OriginalUri,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    pending(s, h, u, name, String::new()).await
}
async fn pending_named(
    State(s): State<AppState>,
    h: HeaderMap,
    u: OriginalUri,
    Path((name, server)): Path<(String, String)>,
) -> ApiResult<Response> {
    pending(s, h, u, name, server).await
}

/// The proxy's `--error-target`: render the error for the code it passes.
async fn error_target(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(code): Path<u16>,
    uri: OriginalUri,
) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let url = crate::web::query_param(uri.query(), "url").unwrap_or_default();
    let message = match code {
        503 => format!(
            "The server at {url} is not answering: it has stopped or is restarting. \
             Start it again from your home page."
        ),
        404 => format!("No page at {url}."),
        _ => String::new(),
    };
    let user = super::cookie_user(&state, &headers)
        .await
        .ok()
        .flatten()
        .map(|(u, _)| u);
    // The proxy fetches this page itself, without the visitor's cookies, so `user` is
    // usually unknown although the visitor is signed in: the next step is the home page
    // (which asks to sign in when needed), never a "Sign in" button.
    super::error_page_with(
        &state,
        &headers,
        status,
        &message,
        user.as_ref(),
        json!({"home_button": true}),
    )
}
