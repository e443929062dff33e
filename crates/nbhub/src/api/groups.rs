//! `/groups`: groups, their members and properties.

use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::{json, Value};

use super::{json_response, ApiIdentity, JsonBody, Page};
use crate::auth::scopes::{Access, Filter, Resource};
use crate::auth::{grant, Identity};
use crate::db::groups::Group;
use crate::db::{self, is_unique_violation};
use crate::error::{ApiError, ApiResult};
use crate::names;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/groups", get(list_groups).post(create_groups))
        .route(
            "/groups/{name}",
            get(get_group).post(create_group).delete(delete_group),
        )
        .route(
            "/groups/{name}/users",
            post(add_group_users).delete(remove_group_users),
        )
        .route("/groups/{name}/properties", put(set_group_properties))
}

async fn group_model(state: &AppState, ident: &Identity, g: &Group) -> ApiResult<Value> {
    let res = Resource::Group(&g.name);
    if !ident.allows("read:groups", &res) {
        return Ok(json!({"kind": "group", "name": g.name}));
    }
    let mut m = json!({
        "kind": "group",
        "name": g.name,
        "users": db::groups::members(&state.db, g.id).await?,
        "properties": g.properties,
    });
    if ident.allows("read:roles:groups", &res) {
        m["roles"] = json!(db::groups::role_names(&state.db, g.id).await?);
    }
    Ok(m)
}

async fn load_group(state: &AppState, name: &str) -> ApiResult<Group> {
    db::groups::get(&state.db, name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No such group: {name}")))
}

async fn list_groups(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    headers: HeaderMap,
    uri: OriginalUri,
) -> ApiResult<Response> {
    let visible: Option<Vec<String>> = match ident.scopes.access("list:groups") {
        None => {
            return Err(ApiError::forbidden(
                "Action is not authorized with current scopes; requires any of [list:groups]",
            ))
        }
        Some(Access::All) => None,
        Some(Access::Filters(filters)) => Some(
            filters
                .iter()
                .filter_map(|f| {
                    if let Filter::Group(g) = f {
                        Some(g.clone())
                    } else {
                        None
                    }
                })
                .collect(),
        ),
    };
    let page = Page::from_request(&state, &headers, uri.query())?;
    let (groups, total) =
        db::groups::list(&state.db, page.offset, page.limit, visible.as_deref()).await?;
    let mut items = Vec::with_capacity(groups.len());
    for g in &groups {
        items.push(group_model(&state, &ident, g).await?);
    }
    Ok(page.respond(items, total, &headers, &uri))
}

/// A `{"users": [...]}` body (or none); every user must exist.
async fn users_in_body(state: &AppState, body: &Value, required: bool) -> ApiResult<Vec<String>> {
    let users = match body.get("users") {
        None | Some(Value::Null) if !required => return Ok(Vec::new()),
        None | Some(Value::Null) => {
            return Err(ApiError::bad_request(
                "Must specify users: {\"users\": [names]}",
            ))
        }
        Some(v) => v
            .as_array()
            .and_then(|a| {
                a.iter()
                    .map(|x| x.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| ApiError::bad_request("users must be a list of user names"))?,
    };
    let mut missing = Vec::new();
    for u in &users {
        if db::users::get(&state.db, u).await?.is_none() {
            missing.push(u.clone());
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::bad_request(format!(
            "No such users: {}",
            missing.join(", ")
        )));
    }
    Ok(users)
}

fn check_group_name(name: &str) -> ApiResult<()> {
    if names::is_valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(names::invalid_name_message(
            "group", name,
        )))
    }
}

/// With `manage_groups` the identity provider decides who is in which group: JupyterHub's
/// answer to the API calls that would change that.
fn check_groups_not_managed(state: &AppState) -> ApiResult<()> {
    if state.config.authenticator.manage_groups {
        return Err(ApiError::bad_request(
            "Group management via API is disabled: the identity provider manages the groups (manage_groups)",
        ));
    }
    Ok(())
}

async fn create_groups(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    ident.require("admin:groups", &Resource::Global)?;
    check_groups_not_managed(&state)?;
    let names: Vec<String> = body
        .get("groups")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
        })
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("Expected {\"groups\": [names]} with at least one group")
        })?;
    let users = users_in_body(&state, &body, false).await?;
    grant::require_no_admin_among(&state.db, &ident, &users).await?;
    let mut to_create = Vec::new();
    for n in &names {
        check_group_name(n)?;
        if db::groups::get(&state.db, n).await?.is_some() {
            return Err(ApiError::conflict(format!("Group {n} already exists")));
        }
        to_create.push((n.clone(), users.clone()));
    }
    let created = match db::groups::create_many(&state.db, &to_create).await {
        Err(e) if is_unique_violation(&e) => {
            return Err(ApiError::conflict(
                "A group was created meanwhile; try again",
            ))
        }
        other => other?,
    };
    let mut models = Vec::new();
    for g in &created {
        models.push(group_model(&state, &ident, g).await?);
    }
    Ok(json_response(StatusCode::CREATED, Value::Array(models)))
}

async fn get_group(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    ident.require_any(
        &["read:groups", "read:groups:name"],
        &Resource::Group(&name),
    )?;
    let g = load_group(&state, &name).await?;
    Ok(axum::Json(group_model(&state, &ident, &g).await?).into_response())
}

async fn create_group(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    ident.require("admin:groups", &Resource::Group(&name))?;
    check_groups_not_managed(&state)?;
    check_group_name(&name)?;
    let users = users_in_body(&state, &body, false).await?;
    grant::require_no_admin_among(&state.db, &ident, &users).await?;
    if db::groups::get(&state.db, &name).await?.is_some() {
        return Err(ApiError::conflict(format!("Group {name} already exists")));
    }
    let created = match db::groups::create_many(&state.db, &[(name.clone(), users)]).await {
        Err(e) if is_unique_violation(&e) => {
            return Err(ApiError::conflict(format!("Group {name} already exists")))
        }
        other => other?,
    };
    let g = created
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("group insert returned nothing"))?;
    Ok(json_response(
        StatusCode::CREATED,
        group_model(&state, &ident, &g).await?,
    ))
}

async fn delete_group(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    ident.require("delete:groups", &Resource::Group(&name))?;
    check_groups_not_managed(&state)?;
    let g = load_group(&state, &name).await?;
    db::groups::delete(&state.db, g.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn add_group_users(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    ident.require("groups", &Resource::Group(&name))?;
    check_groups_not_managed(&state)?;
    let g = load_group(&state, &name).await?;
    let users = users_in_body(&state, &body, true).await?;
    grant::require_membership_change(&state.db, &ident, &g, &users, &[]).await?;
    db::groups::add_users(&state.db, g.id, &users).await?;
    Ok(axum::Json(group_model(&state, &ident, &g).await?).into_response())
}

async fn remove_group_users(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    ident.require("groups", &Resource::Group(&name))?;
    check_groups_not_managed(&state)?;
    let g = load_group(&state, &name).await?;
    let users = users_in_body(&state, &body, true).await?;
    grant::require_membership_change(&state.db, &ident, &g, &[], &users).await?;
    db::groups::remove_users(&state.db, g.id, &users).await?;
    Ok(axum::Json(group_model(&state, &ident, &g).await?).into_response())
}

async fn set_group_properties(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    ident.require("groups", &Resource::Group(&name))?;
    let mut g = load_group(&state, &name).await?;
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "Group properties must be a JSON object",
        ));
    }
    db::groups::set_properties(&state.db, g.id, &body).await?;
    g.properties = body;
    Ok(axum::Json(group_model(&state, &ident, &g).await?).into_response())
}
