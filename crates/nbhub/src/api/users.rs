//! `/users`, `/users/{name}`, `/user` (who am I) and activity reports.

use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use super::{json_response, timestamp, ApiIdentity, JsonBody, Page};
use crate::auth::scopes::Resource;
use crate::auth::{self, grant, Identity, Principal};
use crate::db::servers::ServerRow;
use crate::db::users::{ListQuery, SortKey, StateFilter, User, Visible};
use crate::db::{self, is_unique_violation};
use crate::error::{ApiError, ApiResult};
use crate::names;
use crate::state::AppState;
use crate::supervisor::Phase;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/user", get(whoami))
        .route("/users", get(list_users).post(create_users))
        .route(
            "/users/{name}",
            get(get_user)
                .post(create_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/users/{name}/activity", post(report_activity))
}

/// Scopes that let a caller see some part of a user.
const READ_USER_SCOPES: [&str; 6] = [
    "read:users",
    "read:users:name",
    "read:servers",
    "read:users:groups",
    "read:users:activity",
    "read:roles:users",
];

/// JupyterHub's `pending` field: what the server is in the middle of.
pub fn pending_of(phase: Phase) -> Value {
    match phase {
        Phase::Starting => json!("spawn"),
        Phase::Stopping => json!("stop"),
        Phase::Running | Phase::Stopped => Value::Null,
    }
}

/// The server model of JupyterHub (6.x).
pub fn server_model(state: &AppState, user: &str, row: &ServerRow, with_state: bool) -> Value {
    let base = state.config.hub.base_url.as_str();
    let prefix = crate::supervisor::server_prefix(base, user, &row.name);
    let escaped = names::url_escape(user);
    let progress = if row.name.is_empty() {
        format!("{base}hub/api/users/{escaped}/server/progress")
    } else {
        format!(
            "{base}hub/api/users/{escaped}/servers/{}/progress",
            names::url_escape(&row.name)
        )
    };
    let phase = state.supervisor.phase_of(row.user_id, &row.name);
    let ready = phase == Phase::Running;
    let pending = pending_of(phase);
    let mut m = json!({
        "name": row.name,
        "display_name": row.display_name,
        "full_name": format!("{user}/{}", row.name),
        "last_activity": timestamp(row.last_activity),
        "started": if phase == Phase::Stopped { Value::Null } else { timestamp(row.started) },
        "pending": pending,
        "ready": ready,
        "stopped": phase == Phase::Stopped,
        "url": prefix,
        "user_options": if row.user_options.is_null() { json!({}) } else { row.user_options.clone() },
        "progress_url": progress,
        "full_url": null,
        "full_progress_url": null,
    });
    if phase != Phase::Stopped {
        // The spawner's facts (Slurm: job id, partition, nodes, node list, end time).
        let spawner = &state.supervisor.spawner;
        if let Some(facts) = spawner.describe(&nbhub_spawner::SpawnerState(row.state.clone())) {
            m[spawner.kind()] = facts;
            // When the job said its end is near (its trap on Slurm's `--signal`, POST
            // …/ending): the home page's banner.
            let signal = state
                .supervisor
                .existing_slot(row.user_id, &row.name)
                .and_then(|slot| slot.end_signal())
                .and_then(crate::api::ending::micros);
            if let (Some(at), Value::Object(f)) = (signal, &mut m[spawner.kind()]) {
                f.insert("end_signal".into(), timestamp(Some(at)));
            }
        }
    }
    // Why the server's last session ended (kept across hub restarts): an extra key, as
    // JupyterHub's server model allows.
    m["last_session"] = state
        .supervisor
        .last_session(row.id)
        .map_or(Value::Null, |s| last_session_model(&s));
    if with_state {
        m["state"] = row.state.clone();
    }
    m
}

/// `last_session` of the server model: when it started and ended, how (`reason`, a word of
/// `supervisor::EndReason`) and what the user was told (`message`), its job and system.
fn last_session_model(s: &crate::supervisor::SessionView) -> Value {
    json!({
        "started": s.started,
        "ended": s.ended,
        "reason": s.reason,
        "message": s.message,
        "job_id": s.job_id,
        "system": s.system,
    })
}

/// The user model, with only the fields the caller's scopes allow.
pub async fn user_model(
    state: &AppState,
    ident: &Identity,
    user: &User,
    servers: &[ServerRow],
    include_stopped: bool,
) -> ApiResult<Value> {
    let res = Resource::User(&user.name);
    let can = |scope: &str| ident.allows(scope, &res);
    let read_users = can("read:users");
    let mut m = Map::new();
    let wants_groups = read_users || can("read:users:groups");
    let wants_roles = read_users || can("read:roles:users");
    let membership = if wants_groups || wants_roles {
        auth::membership(&state.authz, user.id).await?
    } else {
        Default::default()
    };
    if read_users || can("read:users:name") {
        m.insert("kind".into(), json!("user"));
        m.insert("name".into(), json!(user.name));
        m.insert("admin".into(), json!(user.admin));
        m.insert("user_info".into(), user.user_info.clone());
    }
    if wants_groups {
        m.insert("groups".into(), json!(membership.groups));
    }
    if read_users || can("read:users:activity") {
        m.insert("last_activity".into(), timestamp(user.last_activity));
    }
    if wants_roles {
        m.insert(
            "roles".into(),
            json!(auth::user_role_names(user, &membership)),
        );
        m.insert("admin".into(), json!(user.admin));
    }
    if read_users {
        m.insert("created".into(), timestamp(Some(user.created)));
    }
    let phase_of = |row: &ServerRow| state.supervisor.phase_of(row.user_id, &row.name);
    if read_users || can("read:servers") {
        let default = servers
            .iter()
            .find(|s| s.name.is_empty())
            .map(phase_of)
            .unwrap_or(Phase::Stopped);
        let server_url = (default == Phase::Running).then(|| {
            crate::supervisor::server_prefix(state.config.hub.base_url.as_str(), &user.name, "")
        });
        m.insert("server".into(), json!(server_url));
        m.insert("pending".into(), pending_of(default));
    }
    if can("read:servers") {
        let with_state = can("admin:server_state");
        let mut map = Map::new();
        for s in servers
            .iter()
            .filter(|s| include_stopped || phase_of(s) != Phase::Stopped)
        {
            let res = Resource::Server {
                user: &user.name,
                server: &s.name,
            };
            if ident.allows("read:servers", &res) {
                map.insert(
                    s.name.clone(),
                    server_model(state, &user.name, s, with_state),
                );
            }
        }
        m.insert("servers".into(), Value::Object(map));
    }
    if can("admin:auth_state") {
        m.insert(
            "auth_state".into(),
            state.authz.auth_states.for_api(user).await?,
        );
    }
    Ok(Value::Object(m))
}

async fn load_user(state: &AppState, name: &str) -> ApiResult<User> {
    db::users::get(&state.db, name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No such user: {name}")))
}

/// `GET /user`: who owns this token. Single-user servers depend on the exact answers here:
/// 200 with `name`, `kind` and fully expanded `scopes`, or 403 for any bad token.
async fn whoami(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
) -> ApiResult<Response> {
    let mut model = match &ident.principal {
        Principal::User(user) => {
            let servers = db::servers::list_for_user(&state.db, user.id).await?;
            user_model(&state, &ident, user, &servers, false).await?
        }
        Principal::Service(service) => {
            let res = Resource::Service(&service.name);
            let mut m = json!({"kind": "service", "name": service.name});
            if ident.allows("read:roles:services", &res) || ident.allows("read:services", &res) {
                m["roles"] = json!(auth::service_role_names(&state.authz, service).await?);
                m["admin"] = json!(service.admin);
            }
            m
        }
    };
    model["token_id"] = ident
        .token
        .as_ref()
        .map_or(Value::Null, |t| json!(t.api_id()));
    model["session_id"] = json!(ident.session_id);
    model["scopes"] = json!(ident.scopes.to_strings());
    Ok(axum::Json(model).into_response())
}

/// The query parameters of `GET /users` besides paging.
struct ListParams {
    name_filter: Option<String>,
    state: Option<StateFilter>,
    sort: SortKey,
    descending: bool,
    include_stopped: bool,
}

fn parse_list_query(query: Option<&str>) -> ApiResult<ListParams> {
    let q = |n: &str| crate::web::query_param(query, n);
    let state = match q("state").as_deref() {
        None | Some("") => None,
        Some("active") => Some(StateFilter::Active),
        Some("ready") => Some(StateFilter::Ready),
        Some("inactive") => Some(StateFilter::Inactive),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Unrecognized state filter: {other:?}; use one of active, ready, inactive"
            )))
        }
    };
    let sort_raw = q("sort").unwrap_or_else(|| "id".into());
    let (descending, key) = match sort_raw.strip_prefix('-') {
        Some(k) => (true, k.to_string()),
        None => (false, sort_raw.clone()),
    };
    let sort = match key.as_str() {
        "id" => SortKey::Id,
        "name" => SortKey::Name,
        "last_activity" => SortKey::LastActivity,
        _ => {
            return Err(ApiError::bad_request(format!(
                "Unrecognized sort {sort_raw:?}; use id, name or last_activity, with '-' for descending"
            )))
        }
    };
    let include_stopped = matches!(
        q("include_stopped_servers").as_deref(),
        Some("" | "1" | "true" | "True")
    );
    Ok(ListParams {
        name_filter: q("name_filter").filter(|f| !f.is_empty()),
        state,
        sort,
        descending,
        include_stopped,
    })
}

/// Which users a filtered `list:users` lets the caller see.
fn visible_users(ident: &Identity) -> ApiResult<Option<Visible>> {
    use crate::auth::scopes::{Access, Filter};
    match ident.scopes.access("list:users") {
        None => Err(ApiError::forbidden(
            "Action is not authorized with current scopes; requires any of [list:users]",
        )),
        Some(Access::All) => Ok(None),
        Some(Access::Filters(filters)) => {
            let mut v = Visible::default();
            for f in filters {
                match f {
                    Filter::User(u) => v.names.push(u.clone()),
                    Filter::Server { user, .. } => v.names.push(user.clone()),
                    Filter::Group(g) => v.groups.push(g.clone()),
                    Filter::Service(_) => {}
                }
            }
            Ok(Some(v))
        }
    }
}

async fn list_users(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    headers: HeaderMap,
    uri: OriginalUri,
) -> ApiResult<Response> {
    let visible = visible_users(&ident)?;
    let page = Page::from_request(&state, &headers, uri.query())?;
    let ListParams {
        name_filter,
        state: state_filter,
        sort,
        descending,
        include_stopped,
    } = parse_list_query(uri.query())?;
    let query = ListQuery {
        offset: page.offset,
        limit: page.limit,
        name_filter,
        state: state_filter,
        sort,
        descending,
        visible,
    };
    let (users, total) = db::users::list(&state.db, &query).await?;
    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let servers = db::servers::list_for_users(&state.db, &ids).await?;
    // One batch for the page's groups and roles; each user_model below then finds them cached.
    auth::memberships(&state.authz, &ids).await?;
    let mut items = Vec::with_capacity(users.len());
    for u in &users {
        let mine: Vec<ServerRow> = servers
            .iter()
            .filter(|s| s.user_id == u.id)
            .cloned()
            .collect();
        let mut model = user_model(&state, &ident, u, &mine, include_stopped).await?;
        // list:users always shows at least the name.
        if model.get("name").is_none() {
            model["kind"] = json!("user");
            model["name"] = json!(u.name);
        }
        items.push(model);
    }
    Ok(page.respond(items, total, &headers, &uri))
}

fn check_new_names(raw: &[String]) -> ApiResult<Vec<String>> {
    let mut names = Vec::with_capacity(raw.len());
    for r in raw {
        let n = names::normalize_username(r);
        if !names::is_valid_name(&n) {
            return Err(ApiError::bad_request(names::invalid_name_message(
                "user", r,
            )));
        }
        if !names.contains(&n) {
            names.push(n);
        }
    }
    Ok(names)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUsers {
    usernames: Vec<String>,
    #[serde(default)]
    admin: bool,
}

async fn create_users(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    ident.require("admin:users", &Resource::Global)?;
    let body: CreateUsers = serde_json::from_value(body).map_err(|e| {
        ApiError::bad_request(format!(
            "Expected {{\"usernames\": [names], \"admin\": bool}}: {e}"
        ))
    })?;
    if body.usernames.is_empty() {
        return Err(ApiError::bad_request(
            "Must specify at least one user to create",
        ));
    }
    let wanted = check_new_names(&body.usernames)?;
    if body.admin {
        grant::require_admin_to_grant_admin(&ident)?;
    }
    for n in &wanted {
        grant::require_admin_for_name(&ident, n, &state.config.authenticator.admin_users)?;
    }
    let mut to_create = Vec::new();
    for n in &wanted {
        if db::users::get(&state.db, n).await?.is_none() {
            to_create.push(n.clone());
        }
    }
    if to_create.is_empty() {
        return Err(ApiError::conflict(format!(
            "All {} users already exist",
            wanted.len()
        )));
    }
    let created = match db::users::create_many(&state.db, &to_create, body.admin).await {
        Err(e) if is_unique_violation(&e) => {
            return Err(ApiError::conflict(
                "A user was created meanwhile; try again",
            ))
        }
        other => other?,
    };
    let mut models = Vec::new();
    for u in &created {
        tracing::info!(user = %u.name, by = %ident.name(), "created user");
        models.push(user_model(&state, &ident, u, &[], false).await?);
    }
    Ok(json_response(StatusCode::CREATED, Value::Array(models)))
}

async fn get_user(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(name): Path<String>,
    uri: OriginalUri,
) -> ApiResult<Response> {
    ident.require_any(&READ_USER_SCOPES, &Resource::User(&name))?;
    let user = load_user(&state, &name).await?;
    let include_stopped = parse_list_query(uri.query())?.include_stopped;
    let servers = db::servers::list_for_user(&state.db, user.id).await?;
    Ok(
        axum::Json(user_model(&state, &ident, &user, &servers, include_stopped).await?)
            .into_response(),
    )
}

async fn create_user(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    ident.require("admin:users", &Resource::User(&name))?;
    let admin = match &body {
        Value::Null => false,
        Value::Object(m) => {
            if let Some(k) = m.keys().find(|k| *k != "admin") {
                return Err(ApiError::bad_request(format!(
                    "Unknown field {k:?}; only \"admin\" is allowed"
                )));
            }
            match m.get("admin") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(ApiError::bad_request("admin must be true or false")),
            }
        }
        _ => {
            return Err(ApiError::bad_request(
                "Body must be a JSON object such as {\"admin\": false}",
            ))
        }
    };
    let name = check_new_names(&[name])?.remove(0);
    if admin {
        grant::require_admin_to_grant_admin(&ident)?;
    }
    grant::require_admin_for_name(&ident, &name, &state.config.authenticator.admin_users)?;
    let user = match db::users::create(&state.db, &name, admin).await {
        Err(e) if is_unique_violation(&e) => {
            return Err(ApiError::conflict(format!("User {name} already exists")))
        }
        other => other?,
    };
    tracing::info!(user = %user.name, by = %ident.name(), "created user");
    Ok(json_response(
        StatusCode::CREATED,
        user_model(&state, &ident, &user, &[], false).await?,
    ))
}

async fn patch_user(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    ident.require("admin:users", &Resource::User(&name))?;
    let user = load_user(&state, &name).await?;
    grant::require_admin_to_modify(&ident, &user)?;
    let Value::Object(fields) = body else {
        return Err(ApiError::bad_request(
            "Body must be a JSON object with any of name, admin, groups, roles, auth_state",
        ));
    };
    let string_list = |key: &str, v: &Value| -> ApiResult<Vec<String>> {
        v.as_array()
            .and_then(|a| {
                a.iter()
                    .map(|x| x.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| ApiError::bad_request(format!("{key} must be a list of strings")))
    };
    // Check everything before changing anything, so a bad request changes nothing.
    let mut new_name = None;
    let mut admin = None;
    let mut groups = None;
    let mut roles = None;
    let mut auth_state = None;
    for (key, v) in &fields {
        match key.as_str() {
            "name" => {
                let n = v
                    .as_str()
                    .ok_or_else(|| ApiError::bad_request("name must be a string"))?;
                let n = check_new_names(&[n.to_string()])?.remove(0);
                grant::require_admin_for_name(&ident, &n, &state.config.authenticator.admin_users)?;
                if n != user.name && db::users::get(&state.db, &n).await?.is_some() {
                    return Err(ApiError::bad_request(format!(
                        "User {n} already exists, username must be unique"
                    )));
                }
                new_name = Some(n);
            }
            "admin" => {
                let a = v
                    .as_bool()
                    .ok_or_else(|| ApiError::bad_request("admin must be true or false"))?;
                if a != user.admin {
                    grant::require_admin_to_grant_admin(&ident)?;
                }
                admin = Some(a);
            }
            "groups" => {
                if state.config.authenticator.manage_groups {
                    return Err(ApiError::bad_request(
                        "Group management via API is disabled: the identity provider manages the groups (manage_groups)",
                    ));
                }
                let list = string_list("groups", v)?;
                let current = auth::membership(&state.authz, user.id).await?;
                for g in &list {
                    let Some(group) = db::groups::get(&state.db, g).await? else {
                        return Err(ApiError::bad_request(format!("No such group: {g}")));
                    };
                    if !current.groups.contains(g) {
                        grant::require_grantable_group(&state.db, &ident, &user.name, &group)
                            .await?;
                    }
                }
                groups = Some(list);
            }
            "roles" => {
                let list = string_list("roles", v)?;
                for r in &list {
                    if db::services::get_role(&state.db, r).await?.is_none() {
                        return Err(ApiError::bad_request(format!(
                            "No such role: {r} (roles are defined in the config; user and admin are implicit)"
                        )));
                    }
                }
                let current = auth::membership(&state.authz, user.id).await?;
                let added: Vec<String> = list
                    .iter()
                    .filter(|r| !current.roles.contains(*r))
                    .cloned()
                    .collect();
                grant::require_grantable_roles(&state.db, &ident, &user.name, &added).await?;
                roles = Some(list);
            }
            "auth_state" => {
                ident.require("admin:auth_state", &Resource::User(&name))?;
                if !(v.is_object() || v.is_null()) {
                    return Err(ApiError::bad_request(
                        "auth_state must be an object or null",
                    ));
                }
                auth_state = Some(v.clone());
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "Unknown field {other:?}; allowed: name, admin, groups, roles, auth_state"
                )))
            }
        }
    }
    if let Some(a) = admin {
        db::users::set_admin(&state.db, user.id, a).await?;
    }
    if let Some(g) = &groups {
        db::users::set_groups(&state.db, user.id, g).await?;
    }
    if let Some(r) = &roles {
        db::users::set_roles(&state.db, user.id, r).await?;
    }
    if let Some(s) = &auth_state {
        state
            .authz
            .auth_states
            .save(user.id, s)
            .await
            .map_err(|e| ApiError::internal(format!("saving auth_state: {e:?}")))?;
    }
    if let Some(n) = &new_name {
        if *n != user.name {
            let running = db::servers::list_for_user(&state.db, user.id)
                .await?
                .iter()
                .any(|s| state.supervisor.phase_of(s.user_id, &s.name) != Phase::Stopped);
            if running {
                return Err(ApiError::bad_request(format!(
                    "{} has running servers; stop them before renaming",
                    user.name
                )));
            }
            match db::users::rename(&state.db, user.id, n).await {
                Err(e) if is_unique_violation(&e) => {
                    return Err(ApiError::bad_request(format!(
                        "User {n} already exists, username must be unique"
                    )))
                }
                other => other?,
            }
        }
    }
    let user = db::users::get_by_id(&state.db, user.id)
        .await?
        .ok_or_else(|| ApiError::not_found("User was deleted meanwhile"))?;
    tracing::info!(user = %user.name, by = %ident.name(), "updated user");
    let servers = db::servers::list_for_user(&state.db, user.id).await?;
    Ok(axum::Json(user_model(&state, &ident, &user, &servers, false).await?).into_response())
}

async fn delete_user(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    ident.require("delete:users", &Resource::User(&name))?;
    let user = load_user(&state, &name).await?;
    if ident.user().is_some_and(|me| me.id == user.id) {
        return Err(ApiError::bad_request("Cannot delete yourself"));
    }
    grant::require_admin_to_delete(&ident, &user)?;
    let servers = db::servers::list_for_user(&state.db, user.id).await?;
    if servers
        .iter()
        .any(|s| state.supervisor.phase_of(s.user_id, &s.name) != Phase::Stopped)
    {
        return Err(ApiError::bad_request(format!(
            "{name}'s server is running or starting; stop it before deleting the user"
        )));
    }
    db::users::delete(&state.db, user.id).await?;
    tracing::info!(user = %name, by = %ident.name(), "deleted user");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /users/{name}/activity` from single-user servers (docs/wire.md#activity-reports).
async fn report_activity(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    ident.require("users:activity", &Resource::User(&name))?;
    let user = load_user(&state, &name).await?;
    let Value::Object(body) = body else {
        return Err(ApiError::bad_request(
            "Expected a JSON object with last_activity and/or servers",
        ));
    };
    if !body.contains_key("last_activity") && !body.contains_key("servers") {
        return Err(ApiError::bad_request(
            "Missing 'last_activity' or 'servers'",
        ));
    }
    let limit = db::now_micros() + 59 * 60 * 1_000_000;
    let parse = |v: &Value| -> ApiResult<i64> {
        let s = v.as_str().ok_or_else(|| {
            ApiError::bad_request(format!("last_activity must be an ISO8601 string, not {v}"))
        })?;
        let t = db::parse_timestamp(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid timestamp {s:?}; expected ISO8601 such as 2026-11-26T11:26:46.975213Z"
            ))
        })?;
        if t > limit {
            return Err(ApiError::bad_request(format!(
                "last_activity {s} is more than an hour in the future"
            )));
        }
        Ok(t)
    };
    let user_activity = body.get("last_activity").map(&parse).transpose()?;
    let mut server_updates = Vec::new();
    if let Some(servers) = body.get("servers") {
        let servers = servers
            .as_object()
            .ok_or_else(|| ApiError::bad_request("servers must be an object"))?;
        for (server_name, info) in servers {
            let t = info
                .as_object()
                .and_then(|i| i.get("last_activity"))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "servers[{server_name:?}] must be an object with last_activity"
                    ))
                })?;
            let t = parse(t)?;
            let row = db::servers::get(&state.db, user.id, server_name)
                .await?
                .ok_or_else(|| {
                    ApiError::bad_request(format!("No such server '{server_name}' for user {name}"))
                })?;
            server_updates.push((row.id, t));
        }
    }
    for (id, t) in &server_updates {
        db::servers::touch_activity(&state.db, *id, *t).await?;
    }
    let latest = server_updates
        .iter()
        .map(|(_, t)| *t)
        .chain(user_activity)
        .max();
    if let Some(t) = latest {
        db::users::touch_activity(&state.db, user.id, t).await?;
    }
    Ok((
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        "",
    )
        .into_response())
}
