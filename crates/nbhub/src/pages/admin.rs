//! `/hub/admin` (the `admin-ui` scope): users with search, sort and pagination done by the
//! database (one page of rows per request, so 10,000 users cost what 50 do), running servers,
//! groups. The page's script acts through the REST API; search and paging are plain links.

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::home::status_of;
use super::{error_page, page_user, render};
use crate::auth::{self, scopes::Resource};
use crate::db::{self, users, users::User};
use crate::error::ApiResult;
use crate::state::AppState;
use crate::supervisor::{server_prefix, Phase};
use crate::web::query_param;

pub const PAGE_SIZE: i64 = 50;

pub fn routes() -> Router<AppState> {
    Router::new().route("/admin", get(admin_page)).route(
        "/admin/systems/{name}/maintenance",
        axum::routing::post(maintenance_post),
    )
}

fn parse_sort(raw: &str) -> (users::SortKey, bool, &'static str) {
    match raw {
        "-name" => (users::SortKey::Name, true, "-name"),
        "last_activity" => (users::SortKey::LastActivity, false, "last_activity"),
        "-last_activity" => (users::SortKey::LastActivity, true, "-last_activity"),
        _ => (users::SortKey::Name, false, "name"),
    }
}

/// The signed-in user of an admin page or form, if they hold `admin-ui` and each of `scopes`;
/// else the page to answer with: the login redirect, a 403 page for a form POST without the
/// XSRF token (`xsrf`: the form's, `None` for a GET), or a 403 page saying `refusal`.
pub(super) async fn admin_user(
    state: &AppState,
    headers: &HeaderMap,
    uri: &OriginalUri,
    xsrf: Option<Option<&str>>,
    scopes: &[&str],
    refusal: &str,
) -> ApiResult<Result<User, Response>> {
    let (me, session) = match page_user(state, headers, uri).await? {
        Ok(u) => u,
        Err(redirect) => return Ok(Err(redirect)),
    };
    let fail =
        |message: &str| error_page(state, headers, StatusCode::FORBIDDEN, message, Some(&me));
    if let Some(submitted) = xsrf {
        if !crate::web::xsrf_ok(state, headers, Some(&me), submitted) {
            return Ok(Err(fail(
                "'_xsrf' argument missing from POST, or it does not match this browser's session. Reload the page and try again.",
            )));
        }
    }
    let ident = auth::identity_for_user(&state.authz, me.clone(), session).await?;
    let held = |scope: &str| ident.allows(scope, &Resource::Global);
    if !held("admin-ui") || !scopes.iter().all(|s| held(s)) {
        return Ok(Err(fail(refusal)));
    }
    Ok(Ok(me))
}

async fn admin_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
) -> ApiResult<Response> {
    let refusal = "The admin page is for administrators. Ask one if you need access.";
    let me = match admin_user(&state, &headers, &uri, None, &[], refusal).await? {
        Ok(me) => me,
        Err(page) => return Ok(page),
    };
    let query = uri.query();
    let name_filter = query_param(query, "name_filter").unwrap_or_default();
    let (sort, descending, sort_name) = parse_sort(&query_param(query, "sort").unwrap_or_default());
    let offset = query_param(query, "offset")
        .and_then(|o| o.parse::<i64>().ok())
        .unwrap_or(0)
        .max(0);
    let (page, total) = users::list(
        &state.db,
        &users::ListQuery {
            offset,
            limit: PAGE_SIZE,
            name_filter: (!name_filter.is_empty()).then(|| name_filter.clone()),
            state: None,
            sort,
            descending,
            visible: None,
        },
    )
    .await?;
    let ids: Vec<i64> = page.iter().map(|u| u.id).collect();
    let rows = db::servers::list_for_users(&state.db, &ids).await?;
    let base = state.config.hub.base_url.as_str();
    let users_view: Vec<Value> = page
        .iter()
        .map(|u| {
            let phase = state.supervisor.phase_of(u.id, "");
            let (status, label) = status_of(phase);
            let named_count = rows
                .iter()
                .filter(|r| r.user_id == u.id && !r.name.is_empty())
                .count();
            json!({
                "name": u.name,
                "admin": u.admin,
                "last_activity": crate::api::timestamp(u.last_activity),
                "status": status,
                "status_label": label,
                "active": phase != Phase::Stopped,
                "ready": phase == Phase::Running,
                "url": server_prefix(base, &u.name, ""),
                "named_count": named_count,
            })
        })
        .collect();
    let page_url = |off: i64| {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("name_filter", &name_filter)
            .append_pair("sort", sort_name)
            .append_pair("offset", &off.to_string())
            .finish();
        format!("?{q}")
    };
    let prev_url = (offset > 0).then(|| page_url((offset - PAGE_SIZE).max(0)));
    let next_url = (offset + PAGE_SIZE < total).then(|| page_url(offset + PAGE_SIZE));
    let running = running_servers(&state).await?;
    let (groups, _) = db::groups::list(&state.db, 0, 500, None).await?;
    let mut groups_view = Vec::new();
    for g in groups {
        let members = db::groups::members(&state.db, g.id).await?;
        groups_view.push(json!({"name": g.name, "users": members}));
    }
    Ok(render(
        &state,
        &headers,
        "admin.html",
        Some(&me),
        json!({
            "users": users_view,
            "total": total,
            "first": if total == 0 { 0 } else { offset + 1 },
            "last": (offset + PAGE_SIZE).min(total),
            "name_filter": name_filter,
            "sort": sort_name,
            "prev_url": prev_url,
            "next_url": next_url,
            "running_facts": running.iter().any(|s| s["facts"].is_object()),
            "running_systems": running.iter().any(|s| s["facts"]["system"].is_string()),
            "running": running,
            "groups": groups_view,
            "allow_named_servers": state.config.hub.allow_named_servers,
            "groups_managed": state.config.authenticator.manage_groups,
            "systems": systems_view(&state),
        }),
    ))
}

/// Every server that is starting or running, with its owner and what the spawner tells about
/// it (for Slurm: job, partition, nodes, end time), as the REST model carries it.
async fn running_servers(state: &AppState) -> ApiResult<Vec<Value>> {
    let base = state.config.hub.base_url.as_str();
    let kind = state.supervisor.spawner.kind();
    let mut out = Vec::new();
    for row in db::servers::list_started(&state.db).await? {
        let Some(owner) = db::users::get_by_id(&state.db, row.user_id).await? else {
            continue;
        };
        let model = crate::api::users::server_model(state, &owner.name, &row, false);
        let facts = model
            .get(kind)
            .filter(|f| f.is_object())
            .cloned()
            .unwrap_or(Value::Null);
        out.push(json!({
            "user": owner.name,
            "name": row.name,
            "started": crate::api::timestamp(row.started),
            "last_activity": crate::api::timestamp(row.last_activity),
            "url": server_prefix(base, &owner.name, &row.name),
            "facts": facts,
            "options": options_used(&row.user_options),
        }));
    }
    Ok(out)
}

/// The options a server was started with, as `name: value` pairs for the admin page (JupyterHub
/// 5.3's "profile used" column).
fn options_used(options: &Value) -> Vec<Value> {
    super::home::option_values(options)
        .filter(|(_, v)| !v.is_empty() && v != "null")
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect()
}

/// The systems tab: each system's health and notice, for the forms that set and clear it.
fn systems_view(state: &AppState) -> Vec<Value> {
    crate::api::systems::states(state)
        .iter()
        .map(|s| {
            let (health, reason) = match &s.health {
                nbhub_spawner::Health::Ok => ("ok", None),
                nbhub_spawner::Health::Unreachable { reason } => ("not reachable", Some(reason)),
                nbhub_spawner::Health::Down { reason } => ("down", Some(reason)),
            };
            json!({
                "name": s.name,
                "title": crate::maintenance::display_name(&nbhub_spawner::SystemInfo {
                    name: s.name.clone(),
                    title: s.title.clone(),
                    description: String::new(),
                    health: nbhub_spawner::Health::Ok,
                }),
                "description": s.description,
                "health": health,
                "reason": reason,
                "notice": s.maintenance,
                "until": s.maintenance.as_ref().and_then(|n| n.until).map(crate::maintenance::short_utc),
                "closed": s.closed(),
            })
        })
        .collect()
}

/// `POST /hub/admin/systems/{name}/maintenance` (the systems tab's forms): `action=set` with
/// `message` and `until` (RFC 3339, optional), or `action=clear`. Same rules as the REST API.
async fn maintenance_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    axum::extract::Path(name): axum::extract::Path<String>,
    axum::Form(form): axum::Form<std::collections::HashMap<String, String>>,
) -> ApiResult<Response> {
    let writer = crate::api::systems::WRITE_SCOPE;
    let xsrf = Some(form.get("_xsrf").map(String::as_str));
    let refusal = format!("Setting maintenance needs the {writer} scope.");
    let me = match admin_user(&state, &headers, &uri, xsrf, &[writer], &refusal).await? {
        Ok(me) => me,
        Err(page) => return Ok(page),
    };
    let fail = |status, message: &str| error_page(&state, &headers, status, message, Some(&me));
    if !crate::api::systems::states(&state)
        .iter()
        .any(|s| s.name == name)
    {
        return Ok(fail(
            StatusCode::NOT_FOUND,
            &format!("No such system: {name}"),
        ));
    }
    let maintenance = &state.supervisor.maintenance;
    match form.get("action").map(String::as_str) {
        Some("clear") => maintenance.clear(&state.db, &name).await?,
        Some("set") => {
            let until = form.get("until").map(String::as_str);
            let message = form.get("message").map_or("", String::as_str);
            match crate::maintenance::validate_notice(
                message,
                until,
                time::OffsetDateTime::now_utc(),
            ) {
                Ok((message, until)) => {
                    maintenance
                        .set(&state.db, &name, message, until, &me.name)
                        .await?;
                }
                Err(e) => return Ok(fail(StatusCode::BAD_REQUEST, &e.to_string())),
            }
        }
        _ => {
            return Ok(fail(
                StatusCode::BAD_REQUEST,
                "action: must be set or clear",
            ))
        }
    }
    Ok(crate::redirect(
        StatusCode::SEE_OTHER,
        &format!("{}admin#systems", state.hub_prefix()),
    ))
}
