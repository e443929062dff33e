//! The spawn form, `/hub/spawn[/<name>[/<server>]]`: GET shows the spawner's options form
//! (or starts at once when it has none; `?session=<id>`: filled in with a past session's
//! options, the home page's Edit), POST starts with the submitted options; `POST
//! /hub/relaunch/<name>[/<server>]` starts with a past session's options (the home page's
//! Relaunch), checked again as any start. All go on to the pending page; a refused start
//! shows the form again with why.

use std::time::Duration;

use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde_json::{json, Map, Value};

use crate::db::users::User;
use crate::error::ApiResult;
use crate::names::url_escape;
use crate::pages::{error_page, login_redirect, render};
use crate::state::AppState;
use crate::supervisor::{server_prefix, Phase, SpawnRefused};
use crate::web::{next_param, xsrf_ok};

use super::{hub, path_part, spawn_target};
use crate::names::form_encode;

fn pending_url(state: &AppState, user: &str, server: &str, next: Option<&str>) -> String {
    let mut url = format!(
        "{}spawn-pending/{}{}",
        hub(state),
        url_escape(user),
        path_part(server)
    );
    if let Some(n) = next {
        url.push_str("?next=");
        url.push_str(&form_encode(n));
    }
    url
}

/// What a request to the spawn page brings.
pub(super) enum Requested {
    /// A GET: the form (filled in with a past session's options with `?session=<id>`), or a
    /// start with `opt-*` query options.
    Get,
    /// The form, posted.
    Form(Map<String, Value>),
    /// Relaunch: the options of the past session with this id, again.
    Relaunch(i64),
}

/// The options of session `id`, if it is one of `user`'s server `server`'s.
async fn past_options(
    state: &AppState,
    user: &User,
    server: &str,
    id: i64,
) -> ApiResult<Option<Map<String, Value>>> {
    let Some(row) = crate::db::servers::get(&state.db, user.id, server).await? else {
        return Ok(None);
    };
    let session = crate::db::server_sessions::get(&state.db, id).await?;
    Ok(session
        .filter(|s| s.server_id == row.id)
        .map(|s| s.user_options.as_object().cloned().unwrap_or_default()))
}

pub(super) async fn spawn_page(
    state: AppState,
    headers: HeaderMap,
    uri: OriginalUri,
    name: Option<String>,
    server: String,
    requested: Requested,
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
    // A past session's options: Relaunch, or Edit (`?session=<id>`).
    let session = match &requested {
        Requested::Relaunch(id) => Some(*id),
        Requested::Get => crate::web::query_param(uri.query(), "session")
            .map(|id| id.parse::<i64>().unwrap_or(-1)),
        Requested::Form(_) => None,
    };
    let past = match session {
        Some(id) => match past_options(&state, &user, &server, id).await? {
            Some(options) => Some(options),
            None => {
                return Ok(error_page(
                    &state,
                    &headers,
                    StatusCode::NOT_FOUND,
                    "No such session of this server: it may have been forgotten (the home page lists the recent ones).",
                    ident.user(),
                ))
            }
        },
        None => None,
    };
    // The form the user sees; with a past session's options filled in (as their last ones).
    let spec = match &past {
        Some(options) => {
            state
                .supervisor
                .options_form_with(&user, &server, options.clone())
                .await?
        }
        None => options_form(&state, &user, &server).await?,
    };
    // A relaunch refused shows the form at the spawn page's own address.
    let action = matches!(requested, Requested::Relaunch(_)).then(|| {
        format!(
            "{}spawn/{}{}",
            hub(&state),
            url_escape(&user.name),
            path_part(&server)
        )
    });
    // The form with nothing filled in but the spawner's defaults (or a past session's
    // options, which the spawner took as the user's last ones).
    let blank = |spec| {
        let form = SpawnForm {
            for_user: &user,
            server: &server,
            spec,
            message: None,
            submitted: None,
            errors: &[],
            action: None,
        };
        render_form(&state, &headers, &uri, ident.user(), &form)
    };
    // Options: the form's fields, a past session's, or `opt-*` query parameters.
    let (submitted, options) = match requested {
        Requested::Form(fields) => (Some(fields.clone()), Value::Object(fields)),
        Requested::Relaunch(_) => (None, Value::Object(past.unwrap_or_default())),
        Requested::Get if past.is_some() => {
            let Some(spec) = spec.as_ref().filter(|f| !f.fields.is_empty()) else {
                // Nothing to edit (the spawner takes no options): home, where Start is.
                return Ok(crate::found(&format!("{}home", hub(&state))));
            };
            return Ok(blank(spec));
        }
        Requested::Get => {
            let from_query: Map<String, Value> =
                url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                    .filter_map(|(k, v)| {
                        k.strip_prefix("opt-")
                            .map(|k| (k.to_string(), Value::String(v.into_owned())))
                    })
                    .collect();
            if let Some(spec) = spec.as_ref().filter(|f| !f.fields.is_empty()) {
                if from_query.is_empty() {
                    return Ok(blank(spec));
                }
            }
            (None, Value::Object(from_query))
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
    let unavailable = matches!(refused, SpawnRefused::Unavailable(_));
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
        // A system in maintenance or unreachable: the form again, with why (503), so that
        // another system or a shorter run time can be chosen.
        SpawnRefused::Unavailable(msg) if spec.is_some() => (Vec::new(), msg),
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
                action,
            };
            let mut page = render_form(&state, &headers, &uri, ident.user(), &form);
            if unavailable {
                *page.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            }
            Ok(page)
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
pub(super) async fn options_form(
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
    /// Where the form posts, when not to the page's own address (a refused relaunch).
    action: Option<String>,
}

fn render_form(
    state: &AppState,
    headers: &HeaderMap,
    uri: &OriginalUri,
    me: Option<&User>,
    form: &SpawnForm<'_>,
) -> Response {
    let fields = crate::pages::options_form::field_views(form.spec, form.submitted, form.errors);
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
    let own = uri.path_and_query().map_or_else(String::new, |p| {
        // Keep `next` (already checked when it is used) but not one-off query options.
        let next = crate::web::query_param(p.query(), "next")
            .map(|n| format!("?next={}", form_encode(&n)))
            .unwrap_or_default();
        format!("{}{next}", p.path())
    });
    let action = form.action.clone().unwrap_or(own);
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
            "closed_systems": crate::pages::system_status(state),
        }),
    );
    if form.message.is_some() {
        *page.status_mut() = StatusCode::BAD_REQUEST;
    }
    page
}

pub(super) async fn spawn_post(
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
    let Some((me, _)) = crate::web::cookie_user(&state, &headers).await? else {
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
    spawn_page(state, headers, uri, name, server, Requested::Form(fields)).await
}

/// `POST /hub/relaunch/<name>[/<server>]` with `_xsrf` and `session` (the home page's
/// Relaunch): that session's options again, validated again as any start.
async fn relaunch(
    state: AppState,
    headers: HeaderMap,
    uri: OriginalUri,
    name: String,
    server: String,
    form: Vec<(String, String)>,
) -> ApiResult<Response> {
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let Some((me, _)) = crate::web::cookie_user(&state, &headers).await? else {
        return Ok(login_redirect(&state, &uri));
    };
    if !xsrf_ok(&state, &headers, Some(&me), field("_xsrf")) {
        return Ok(error_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            "'_xsrf' argument missing from POST, or it does not match this browser's session. Reload the page and try again.",
            Some(&me),
        ));
    }
    let Some(id) = field("session").and_then(|v| v.trim().parse::<i64>().ok()) else {
        return Ok(error_page(
            &state,
            &headers,
            StatusCode::BAD_REQUEST,
            "'session' must be the number of a past session of this server.",
            Some(&me),
        ));
    };
    spawn_page(
        state,
        headers,
        uri,
        Some(name),
        server,
        Requested::Relaunch(id),
    )
    .await
}

pub(super) async fn relaunch_default(
    State(s): State<AppState>,
    h: HeaderMap,
    u: OriginalUri,
    Path(name): Path<String>,
    Form(f): Form<Vec<(String, String)>>,
) -> ApiResult<Response> {
    relaunch(s, h, u, name, String::new(), f).await
}
pub(super) async fn relaunch_named(
    State(s): State<AppState>,
    h: HeaderMap,
    u: OriginalUri,
    Path((name, server)): Path<(String, String)>,
    Form(f): Form<Vec<(String, String)>>,
) -> ApiResult<Response> {
    relaunch(s, h, u, name, server, f).await
}

pub(super) async fn spawn_self(
    State(s): State<AppState>,
    h: HeaderMap,
    u: OriginalUri,
) -> ApiResult<Response> {
    spawn_page(s, h, u, None, String::new(), Requested::Get).await
}
pub(super) async fn spawn_user(
    State(s): State<AppState>,
    h: HeaderMap,
    u: OriginalUri,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    spawn_page(s, h, u, Some(name), String::new(), Requested::Get).await
}
pub(super) async fn spawn_named(
    State(s): State<AppState>,
    h: HeaderMap,
    u: OriginalUri,
    Path((name, server)): Path<(String, String)>,
) -> ApiResult<Response> {
    spawn_page(s, h, u, Some(name), server, Requested::Get).await
}
pub(super) async fn spawn_self_post(
    State(s): State<AppState>,
    h: HeaderMap,
    u: OriginalUri,
    Form(f): Form<Vec<(String, String)>>,
) -> ApiResult<Response> {
    spawn_post(s, h, u, None, String::new(), f).await
}
pub(super) async fn spawn_user_post(
    State(s): State<AppState>,
    h: HeaderMap,
    u: OriginalUri,
    Path(name): Path<String>,
    Form(f): Form<Vec<(String, String)>>,
) -> ApiResult<Response> {
    spawn_post(s, h, u, Some(name), String::new(), f).await
}
pub(super) async fn spawn_named_post(
    State(s): State<AppState>,
    h: HeaderMap,
    u: OriginalUri,
    Path((name, server)): Path<(String, String)>,
    Form(f): Form<Vec<(String, String)>>,
) -> ApiResult<Response> {
    spawn_post(s, h, u, Some(name), server, f).await
}
