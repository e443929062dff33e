//! Server sharing, as JupyterHub 5+: `/shares/{owner}[/{server}]` (grant, revoke, list),
//! `/share-codes/{owner}[/{server}]` (codes a user exchanges at `/hub/accept-share`),
//! `/users/{name}/shared…` and `/groups/{name}/shared…` (what was shared with them).
//!
//! A share's scopes always carry the filter of its server (`access:servers!server=alice/`);
//! they join the scopes of the user (or the group's members) when identities are built.
//! A path ending in `/` after the owner means the owner's default server.

use std::collections::HashMap;

use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};

use super::{timestamp, ApiIdentity, JsonBody, Page};
use crate::auth::scopes::{self, Resource};
use crate::auth::Identity;
use crate::db::servers::ServerRow;
use crate::db::shares::{self, Scope, Share, ShareCode, With};
use crate::db::{self, users::User};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::supervisor::Phase;

/// Share codes live one day unless asked otherwise; from a minute to a year.
const CODE_DEFAULT_SECS: i64 = 86_400;
const CODE_MIN_SECS: i64 = 60;
const CODE_MAX_SECS: i64 = 525_600 * 60;

pub fn routes() -> Router<AppState> {
    let server_shares = || {
        get(list_server_shares)
            .post(grant_share)
            .patch(revoke_share)
            .delete(delete_server_shares)
    };
    let server_codes = || {
        get(list_server_codes)
            .post(create_code)
            .delete(delete_codes)
    };
    let user_shared = || get(get_user_share).delete(leave_user_share);
    let group_shared = || get(get_group_share).delete(delete_group_share);
    Router::new()
        .route("/shares/{owner}", get(list_owner_shares))
        .route("/shares/{owner}/", server_shares())
        .route("/shares/{owner}/{server}", server_shares())
        .route("/share-codes/{owner}", get(list_owner_codes))
        .route("/share-codes/{owner}/", server_codes())
        .route("/share-codes/{owner}/{server}", server_codes())
        .route("/users/{name}/shared", get(list_user_shared))
        .route("/users/{name}/shared/{owner}/", user_shared())
        .route("/users/{name}/shared/{owner}/{server}", user_shared())
        .route("/groups/{name}/shared", get(list_group_shared))
        .route("/groups/{name}/shared/{owner}/", group_shared())
        .route("/groups/{name}/shared/{owner}/{server}", group_shared())
}

type Params = Path<HashMap<String, String>>;

fn param<'a>(p: &'a HashMap<String, String>, key: &str) -> &'a str {
    p.get(key).map_or("", String::as_str)
}

fn server_resource<'a>(p: &'a HashMap<String, String>) -> Resource<'a> {
    Resource::Server {
        user: param(p, "owner"),
        server: param(p, "server"),
    }
}

fn no_such_server(owner: &str, server: &str) -> ApiError {
    ApiError::not_found(format!("No such server: {owner}/{server}"))
}

/// The owner and the server's row. The default server of an existing user always exists
/// (its row is made on first use); a named one must have been created.
async fn lookup_server(
    state: &AppState,
    owner: &str,
    server: &str,
) -> ApiResult<(User, ServerRow)> {
    let user = db::users::get(&state.db, owner)
        .await?
        .ok_or_else(|| no_such_server(owner, server))?;
    let row = if server.is_empty() {
        Some(db::servers::ensure(&state.db, user.id, "").await?)
    } else {
        db::servers::get(&state.db, user.id, server).await?
    };
    let row = row.ok_or_else(|| no_such_server(owner, server))?;
    Ok((user, row))
}

/// The part of the server model a share shows.
fn shared_server(state: &AppState, owner: &str, server: &str, owner_id: i64) -> Value {
    let base = state.config.hub.base_url.as_str();
    json!({
        "user": {"name": owner},
        "name": server,
        "url": crate::supervisor::server_prefix(base, owner, server),
        "full_url": null,
        "ready": state.supervisor.phase_of(owner_id, server) == Phase::Running,
    })
}

fn share_model(state: &AppState, share: &Share) -> Value {
    json!({
        "server": shared_server(state, &share.owner, &share.server_name, share.owner_id),
        "scopes": shares::filtered_scopes(&share.scopes, &share.owner, &share.server_name),
        "user": share.user.as_ref().map(|n| json!({"name": n})),
        "group": share.group.as_ref().map(|n| json!({"name": n})),
        "kind": if share.group.is_some() { "group" } else { "user" },
        "created_at": timestamp(Some(share.created)),
    })
}

fn code_model(state: &AppState, code: &ShareCode, secret: Option<&str>) -> Value {
    let mut m = json!({
        "server": shared_server(state, &code.owner, &code.server_name, code.owner_id),
        "scopes": shares::filtered_scopes(&code.scopes, &code.owner, &code.server_name),
        "id": format!("sc_{}", code.id),
        "created_at": timestamp(Some(code.created)),
        "expires_at": timestamp(Some(code.expires_at)),
        "exchange_count": code.exchange_count,
        "last_exchanged_at": timestamp(code.last_exchanged_at),
    });
    if let Some(secret) = secret {
        let q: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        m["code"] = json!(secret);
        m["accept_url"] = json!(format!("{}accept-share?code={q}", state.hub_prefix()));
        m["full_accept_url"] = Value::Null;
    }
    m
}

/// A page of shares or (with `codes`) of share codes.
async fn respond(
    state: &AppState,
    scope: Scope,
    codes: bool,
    headers: &HeaderMap,
    uri: &OriginalUri,
) -> ApiResult<Response> {
    let page = Page::from_request(state, headers, uri.query())?;
    let (items, total) = if codes {
        let (rows, total) = shares::list_codes(&state.db, scope, page.offset, page.limit).await?;
        (
            rows.iter().map(|c| code_model(state, c, None)).collect(),
            total,
        )
    } else {
        let (rows, total) = shares::list(&state.db, scope, page.offset, page.limit).await?;
        (rows.iter().map(|s| share_model(state, s)).collect(), total)
    };
    Ok(page.respond(items, total, headers, uri))
}

/// Everything shared (or every code) of any of an owner's servers.
async fn list_for_owner(
    state: AppState,
    ident: Identity,
    owner: String,
    codes: bool,
    headers: HeaderMap,
    uri: OriginalUri,
) -> ApiResult<Response> {
    ident.require("read:shares", &Resource::User(&owner))?;
    let user = db::users::get(&state.db, &owner)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No such user: {owner}")))?;
    respond(&state, Scope::Owner(user.id), codes, &headers, &uri).await
}

/// The shares (or codes) of one server.
async fn list_for_server(
    state: AppState,
    ident: Identity,
    p: HashMap<String, String>,
    codes: bool,
    headers: HeaderMap,
    uri: OriginalUri,
) -> ApiResult<Response> {
    ident.require("read:shares", &server_resource(&p))?;
    let (_, row) = lookup_server(&state, param(&p, "owner"), param(&p, "server")).await?;
    respond(&state, Scope::Server(row.id), codes, &headers, &uri).await
}

async fn list_owner_shares(
    State(s): State<AppState>,
    ApiIdentity(i): ApiIdentity,
    Path(owner): Path<String>,
    h: HeaderMap,
    u: OriginalUri,
) -> ApiResult<Response> {
    list_for_owner(s, i, owner, false, h, u).await
}

async fn list_server_shares(
    State(s): State<AppState>,
    ApiIdentity(i): ApiIdentity,
    Path(p): Params,
    h: HeaderMap,
    u: OriginalUri,
) -> ApiResult<Response> {
    list_for_server(s, i, p, false, h, u).await
}

/// What a grant or revoke names: exactly one user or group, and optionally scopes.
struct ShareRequest {
    with_user: Option<String>,
    with_group: Option<String>,
    scopes: Option<Vec<String>>,
    expires_in: Option<i64>,
}

/// Checks a body against the keys allowed for it (JupyterHub forbids any other).
fn parse_request(body: Value, allowed: &[&str]) -> ApiResult<ShareRequest> {
    let fields = match body {
        Value::Null => Map::new(),
        Value::Object(m) => m,
        _ => return Err(ApiError::bad_request("The body must be a JSON object")),
    };
    if let Some(k) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "Unexpected field {k:?}; allowed: {}",
            allowed.join(", ")
        )));
    }
    let text = |key: &str| -> ApiResult<Option<String>> {
        match fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::bad_request(format!("{key} must be a string"))),
        }
    };
    let scopes = match fields.get("scopes") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| ApiError::bad_request("scopes must be a list of strings"))
                })
                .collect::<ApiResult<Vec<String>>>()?,
        ),
        Some(_) => return Err(ApiError::bad_request("scopes must be a list of strings")),
    };
    let expires_in = match fields.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(secs) if (CODE_MIN_SECS as f64..=CODE_MAX_SECS as f64).contains(&secs) => {
                Some(secs as i64)
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "expires_in must be a number of seconds from {CODE_MIN_SECS} to {CODE_MAX_SECS}"
                )))
            }
        },
    };
    Ok(ShareRequest {
        with_user: text("user")?,
        with_group: text("group")?,
        scopes: scopes.filter(|s| !s.is_empty()),
        expires_in,
    })
}

fn exactly_one(r: &ShareRequest) -> ApiResult<()> {
    match (&r.with_user, &r.with_group) {
        (Some(_), None) | (None, Some(_)) => Ok(()),
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "Expected exactly one of `user` or `group`, not both.",
        )),
        (None, None) => Err(ApiError::bad_request(
            "Specify exactly one of `user` or `group`",
        )),
    }
}

/// The bare scope names of a request, each allowed only with this server's filter (or none).
fn bare_scopes(requested: &[String], owner: &str, server: &str) -> ApiResult<Vec<String>> {
    let own_filter = format!("server={owner}/{server}");
    let mut out = Vec::new();
    for raw in requested {
        let (name, filter) = raw.split_once('!').unwrap_or((raw.as_str(), ""));
        if !filter.is_empty() && filter != own_filter {
            return Err(ApiError::bad_request(format!(
                "!{filter} not allowed on sharing {raw}, only !{own_filter}"
            )));
        }
        if !scopes::is_known_scope(name) || scopes::is_metascope(name) {
            return Err(ApiError::bad_request(format!(
                "Scope {name:?} cannot be shared: no such scope"
            )));
        }
        out.push(name.to_string());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The scopes to share (default `access:servers`), each of which the caller must hold on
/// this server itself.
fn grantable_scopes(
    ident: &Identity,
    r: &ShareRequest,
    owner: &str,
    server: &str,
) -> ApiResult<Vec<String>> {
    let requested = r
        .scopes
        .clone()
        .unwrap_or_else(|| vec!["access:servers".to_string()]);
    let bare = bare_scopes(&requested, owner, server)?;
    let res = Resource::Server {
        user: owner,
        server,
    };
    for s in &bare {
        if !ident.allows(s, &res) {
            return Err(ApiError::forbidden(format!(
                "Do not have permission to grant share with scope {s}!server={owner}/{server}"
            )));
        }
    }
    Ok(bare)
}

/// `POST /shares/{owner}/{server}`: share with a user or group (scopes are added to any
/// existing share).
async fn grant_share(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(p): Params,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    ident.require("shares", &server_resource(&p))?;
    let (owner, server) = (param(&p, "owner"), param(&p, "server"));
    let request = parse_request(body, &["scopes", "user", "group"])?;
    exactly_one(&request)?;
    let granted = grantable_scopes(&ident, &request, owner, server)?;
    let with = if let Some(name) = &request.with_user {
        if !ident.allows("read:users:name", &Resource::User(name)) {
            return Err(ApiError::forbidden(
                "Need scope 'read:users:name' to share with users by name",
            ));
        }
        let u = db::users::get(&state.db, name)
            .await?
            .ok_or_else(|| ApiError::bad_request(format!("No such user: {name}")))?;
        With::User(u.id)
    } else {
        let name = request.with_group.as_deref().unwrap_or("");
        if !ident.allows("read:groups:name", &Resource::Group(name)) {
            return Err(ApiError::forbidden(
                "Need scope 'read:groups:name' to share with groups by name",
            ));
        }
        let g = db::groups::get(&state.db, name)
            .await?
            .ok_or_else(|| ApiError::bad_request(format!("No such group: {name}")))?;
        With::Group(g.id)
    };
    let (_, row) = lookup_server(&state, owner, server).await?;
    let share = shares::grant(&state.db, row.id, with, &granted).await?;
    tracing::info!(by = %ident.name(), %owner, %server, scopes = ?granted, "server shared");
    Ok(axum::Json(share_model(&state, &share)).into_response())
}

/// `PATCH /shares/{owner}/{server}`: revoke some scopes (or all) of one user's or group's
/// share. Answers the share if scopes remain, else `{}`; revoking what is not held is no error.
async fn revoke_share(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(p): Params,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    ident.require("shares", &server_resource(&p))?;
    let (owner, server) = (param(&p, "owner"), param(&p, "server"));
    let request = parse_request(body, &["scopes", "user", "group"])?;
    exactly_one(&request)?;
    let (_, row) = lookup_server(&state, owner, server).await?;
    let with = match (&request.with_user, &request.with_group) {
        (Some(name), _) => db::users::get(&state.db, name)
            .await?
            .map(|u| With::User(u.id)),
        (_, Some(name)) => db::groups::get(&state.db, name)
            .await?
            .map(|g| With::Group(g.id)),
        _ => None,
    };
    let Some(share) = (match with {
        Some(w) => shares::find(&state.db, row.id, w).await?,
        None => None,
    }) else {
        return Ok(axum::Json(json!({})).into_response());
    };
    let remaining: Vec<String> = match &request.scopes {
        None => Vec::new(),
        Some(revoked) => {
            let own_filter = format!("!server={owner}/{server}");
            share
                .scopes
                .iter()
                .filter(|s| {
                    !revoked
                        .iter()
                        .any(|r| r == *s || *r == format!("{s}{own_filter}"))
                })
                .cloned()
                .collect()
        }
    };
    tracing::info!(by = %ident.name(), %owner, %server, remaining = ?remaining, "share revoked");
    if remaining.is_empty() {
        shares::delete(&state.db, share.id).await?;
        return Ok(axum::Json(json!({})).into_response());
    }
    shares::set_scopes(&state.db, share.id, &remaining).await?;
    let share = Share {
        scopes: remaining,
        ..share
    };
    Ok(axum::Json(share_model(&state, &share)).into_response())
}

/// `DELETE /shares/{owner}/{server}`: nobody shares the server any more.
async fn delete_server_shares(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(p): Params,
) -> ApiResult<Response> {
    ident.require("shares", &server_resource(&p))?;
    let (owner, server) = (param(&p, "owner"), param(&p, "server"));
    let (_, row) = lookup_server(&state, owner, server).await?;
    let n = shares::delete_for_server(&state.db, row.id).await?;
    tracing::info!(by = %ident.name(), %owner, %server, deleted = n, "all shares of a server deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_owner_codes(
    State(s): State<AppState>,
    ApiIdentity(i): ApiIdentity,
    Path(owner): Path<String>,
    h: HeaderMap,
    u: OriginalUri,
) -> ApiResult<Response> {
    list_for_owner(s, i, owner, true, h, u).await
}

async fn list_server_codes(
    State(s): State<AppState>,
    ApiIdentity(i): ApiIdentity,
    Path(p): Params,
    h: HeaderMap,
    u: OriginalUri,
) -> ApiResult<Response> {
    list_for_server(s, i, p, true, h, u).await
}

/// `POST /share-codes/{owner}/{server}`: a new code; its secret is in this answer only.
async fn create_code(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(p): Params,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    ident.require("shares", &server_resource(&p))?;
    let (owner, server) = (param(&p, "owner"), param(&p, "server"));
    let request = parse_request(body, &["scopes", "expires_in"])?;
    let granted = grantable_scopes(&ident, &request, owner, server)?;
    let (_, row) = lookup_server(&state, owner, server).await?;
    let expires_at = db::now_micros() + request.expires_in.unwrap_or(CODE_DEFAULT_SECS) * 1_000_000;
    let (code, secret) = shares::create_code(&state.db, row.id, &granted, expires_at).await?;
    tracing::info!(by = %ident.name(), %owner, %server, id = code.id, "share code issued");
    Ok(super::secret_response(
        StatusCode::OK,
        code_model(&state, &code, Some(&secret)),
    ))
}

/// `DELETE /share-codes/{owner}/{server}[?code=…|?id=sc_N]`: one code, or all of the server's.
async fn delete_codes(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(p): Params,
    uri: OriginalUri,
) -> ApiResult<Response> {
    ident.require("shares", &server_resource(&p))?;
    let (owner, server) = (param(&p, "owner"), param(&p, "server"));
    let (_, row) = lookup_server(&state, owner, server).await?;
    let one = if let Some(code) = crate::web::query_param(uri.query(), "code") {
        let found = shares::find_code(&state.db, &code, Some(row.id))
            .await?
            .ok_or_else(|| ApiError::not_found("No matching code found"))?;
        Some(found.id)
    } else if let Some(id) = crate::web::query_param(uri.query(), "id") {
        let missing = || ApiError::not_found(format!("No code found matching id={id}"));
        let n: i64 = id
            .strip_prefix("sc_")
            .and_then(|n| n.parse().ok())
            .ok_or_else(missing)?;
        if shares::delete_codes(&state.db, row.id, Some(n)).await? == 0 {
            return Err(missing());
        }
        return Ok(StatusCode::NO_CONTENT.into_response());
    } else {
        None
    };
    let n = shares::delete_codes(&state.db, row.id, one).await?;
    tracing::info!(by = %ident.name(), %owner, %server, deleted = n, "share codes deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_user_shared(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(name): Path<String>,
    headers: HeaderMap,
    uri: OriginalUri,
) -> ApiResult<Response> {
    ident.require("read:users:shares", &Resource::User(&name))?;
    let user = db::users::get(&state.db, &name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No such user: {name}")))?;
    respond(
        &state,
        Scope::SharedWithUser(user.id),
        false,
        &headers,
        &uri,
    )
    .await
}

async fn list_group_shared(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(name): Path<String>,
    headers: HeaderMap,
    uri: OriginalUri,
) -> ApiResult<Response> {
    ident.require("read:groups:shares", &Resource::Group(&name))?;
    let group = db::groups::get(&state.db, &name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No such group: {name}")))?;
    respond(
        &state,
        Scope::SharedWithGroup(group.id),
        false,
        &headers,
        &uri,
    )
    .await
}

/// The share of one user or group on one server, or 404.
async fn one_share(state: &AppState, p: &HashMap<String, String>, group: bool) -> ApiResult<Share> {
    let (name, owner, server) = (param(p, "name"), param(p, "owner"), param(p, "server"));
    let kind = if group { "group" } else { "user" };
    let missing = || {
        ApiError::not_found(format!(
            "No such share for {kind} {name} on {owner}/{server}"
        ))
    };
    let with = if group {
        db::groups::get(&state.db, name)
            .await?
            .map(|g| With::Group(g.id))
    } else {
        db::users::get(&state.db, name)
            .await?
            .map(|u| With::User(u.id))
    }
    .ok_or_else(missing)?;
    let (_, row) = lookup_server(state, owner, server)
        .await
        .map_err(|_| missing())?;
    shares::find(&state.db, row.id, with)
        .await?
        .ok_or_else(missing)
}

async fn get_user_share(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(p): Params,
) -> ApiResult<Response> {
    ident.require("read:users:shares", &Resource::User(param(&p, "name")))?;
    let share = one_share(&state, &p, false).await?;
    Ok(axum::Json(share_model(&state, &share)).into_response())
}

/// `DELETE /users/{name}/shared/{owner}/{server}`: a user leaves a server shared with them.
async fn leave_user_share(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(p): Params,
) -> ApiResult<Response> {
    ident.require("users:shares", &Resource::User(param(&p, "name")))?;
    let share = one_share(&state, &p, false).await?;
    shares::delete(&state.db, share.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_group_share(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(p): Params,
) -> ApiResult<Response> {
    ident.require("read:groups:shares", &Resource::Group(param(&p, "name")))?;
    let share = one_share(&state, &p, true).await?;
    Ok(axum::Json(share_model(&state, &share)).into_response())
}

async fn delete_group_share(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(p): Params,
) -> ApiResult<Response> {
    ident.require("groups:shares", &Resource::Group(param(&p, "name")))?;
    let share = one_share(&state, &p, true).await?;
    shares::delete(&state.db, share.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
