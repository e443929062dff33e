//! `/users/{name}/tokens`: a user's API tokens.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::{expiry_from, timestamp, ApiIdentity, JsonBody};
use crate::auth::scopes::{Owner, Resource, ScopeSet};
use crate::auth::{self, Principal};
use crate::db::tokens::{self, Token};
use crate::db::{self, oauth};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/users/{name}/tokens", get(list_tokens).post(create_token))
        .route(
            "/users/{name}/tokens/{token_id}",
            get(get_token).delete(delete_token),
        )
}

/// The token model; `scopes` are the token's own scopes expanded for its owner.
pub async fn token_model(
    state: &AppState,
    owner_name: &str,
    owner_kind: &str,
    t: &Token,
    owner_scopes: &ScopeSet,
) -> ApiResult<Value> {
    let owner = if owner_kind == "user" {
        Owner::User { name: owner_name }
    } else {
        Owner::Service { name: owner_name }
    };
    let scopes = ScopeSet::expand(&t.scopes, &owner, None, Some(owner_scopes))
        .map(|s| s.to_strings())
        .unwrap_or_else(|_| t.scopes.clone());
    let oauth_client = if t.client_id == tokens::API_CLIENT_ID {
        "JupyterHub".to_string()
    } else {
        oauth::get_client(&state.db, &t.client_id)
            .await?
            .map_or_else(|| t.client_id.clone(), |c| c.description)
    };
    Ok(json!({
        owner_kind: owner_name,
        "id": t.api_id(),
        "kind": "api_token",
        "roles": [],
        "scopes": scopes,
        "created": timestamp(Some(t.created)),
        "last_activity": timestamp(t.last_activity),
        "expires_at": timestamp(t.expires_at),
        "note": t.note,
        "session_id": t.session_id,
        "oauth_client": oauth_client,
    }))
}

async fn load_user(state: &AppState, name: &str) -> ApiResult<db::users::User> {
    db::users::get(&state.db, name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No such user: {name}")))
}

fn parse_token_id(raw: &str) -> ApiResult<i64> {
    raw.strip_prefix('a')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| ApiError::not_found(format!("No such token: {raw}")))
}

async fn list_tokens(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    ident.require("read:tokens", &Resource::User(&name))?;
    let user = load_user(&state, &name).await?;
    tokens::purge_expired(&state.db).await?;
    let owner_scopes = auth::owner_scopes(&state.authz, &Principal::User(user.clone())).await?;
    let mut models = Vec::new();
    for t in tokens::list_for(&state.db, tokens::Owner::User(user.id)).await? {
        models.push(token_model(&state, &name, "user", &t, &owner_scopes).await?);
    }
    Ok(axum::Json(json!({"api_tokens": models})).into_response())
}

async fn create_token(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    ident.require("tokens", &Resource::User(&name))?;
    let user = load_user(&state, &name).await?;
    crate::auth::grant::require_token_owner(&ident, &user)?;
    let body = match body {
        Value::Null => serde_json::Map::new(),
        Value::Object(m) => m,
        _ => {
            return Err(ApiError::bad_request(
                "Body must be a JSON object with note, expires_in, scopes",
            ))
        }
    };
    for key in body.keys() {
        if !["note", "expires_in", "scopes", "roles"].contains(&key.as_str()) {
            return Err(ApiError::bad_request(format!(
                "Unknown field {key:?}; allowed: note, expires_in, scopes, roles"
            )));
        }
    }
    let note = match body.get("note") {
        None | Some(Value::Null) => {
            if ident.name() == name {
                "Requested via api".to_string()
            } else {
                format!(
                    "Requested via api by {} {}",
                    ident.principal.kind(),
                    ident.name()
                )
            }
        }
        Some(Value::String(s)) if s.len() <= 1000 => s.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "note must be a string of at most 1000 characters",
            ))
        }
    };
    let expires_at = limited_expiry(state.config.hub.token_expires_in_max_seconds, &body)?;
    let mut requested: Vec<String> = Vec::new();
    for key in ["scopes", "roles"] {
        match body.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for item in items {
                    let s = item.as_str().ok_or_else(|| {
                        ApiError::bad_request(format!("{key} must be a list of strings"))
                    })?;
                    if key == "roles" {
                        let scopes = role_scopes_for_token(&state, s).await?;
                        requested.extend(scopes);
                    } else {
                        crate::auth::scopes::validate_scope(s)
                            .map_err(|e| ApiError::bad_request(e.to_string()))?;
                        requested.push(s.to_string());
                    }
                }
            }
            Some(_) => {
                return Err(ApiError::bad_request(format!(
                    "{key} must be a list of strings"
                )))
            }
        }
    }
    let owner_principal = Principal::User(user.clone());
    let owner_scopes = auth::owner_scopes(&state.authz, &owner_principal).await?;
    let owner_ref = Owner::User { name: &user.name };
    // As JupyterHub: holding `tokens` on a user means minting any token that user could hold;
    // no scopes asked means `inherit`. Asking for more than the owner has is refused.
    if requested.is_empty() {
        requested = vec!["inherit".into()];
    }
    let wanted = ScopeSet::expand(&requested, &owner_ref, None, Some(&owner_scopes))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let excess = wanted.excess_over(&owner_scopes, &|u| ident.groups_of(u));
    if !excess.is_empty() {
        return Err(ApiError::forbidden(format!(
            "Not assigning requested scopes {} not held by user {}",
            excess.join(", "),
            user.name
        )));
    }
    let secret = tokens::generate();
    let row = tokens::insert(
        &state.db,
        &tokens::NewToken {
            owner: tokens::Owner::User(user.id),
            token: &secret,
            rounds: tokens::GENERATED_ROUNDS,
            client_id: tokens::API_CLIENT_ID,
            session_id: None,
            note: &note,
            scopes: &requested,
            expires_at,
        },
    )
    .await?;
    tracing::info!(user = %name, token = %row.api_id(), by = %ident.name(), "created API token");
    let mut model = token_model(&state, &name, "user", &row, &owner_scopes).await?;
    model["token"] = json!(secret);
    Ok(super::secret_response(StatusCode::CREATED, model))
}

/// The expiry of a requested token under JupyterHub 5.1's `token_expires_in_max_seconds`: a
/// request without `expires_in` gets the longest allowed (the nearest to "never"), one asking
/// for more is refused with 400, as JupyterHub answers.
fn limited_expiry(max: u64, body: &serde_json::Map<String, Value>) -> ApiResult<Option<i64>> {
    let asked = body.get("expires_in").filter(|v| !v.is_null());
    if max == 0 {
        return expiry_from(asked);
    }
    match asked {
        None => expiry_from(Some(&json!(max))),
        Some(v) => {
            let expires_at = expiry_from(Some(v))?;
            if v.as_f64().is_some_and(|secs| secs > max as f64) {
                return Err(ApiError::bad_request(format!(
                    "token expires_in: {v} must not exceed {max}"
                )));
            }
            Ok(expires_at)
        }
    }
}

async fn role_scopes_for_token(state: &AppState, role: &str) -> ApiResult<Vec<String>> {
    if let Some(r) = db::services::get_role(&state.db, role).await? {
        return Ok(r.scopes);
    }
    crate::auth::scopes::builtin_role_scopes(role)
        .map(|s| s.iter().map(|x| x.to_string()).collect())
        .ok_or_else(|| ApiError::bad_request(format!("No such role: {role}")))
}

async fn owned_token(
    state: &AppState,
    name: &str,
    raw_id: &str,
) -> ApiResult<(db::users::User, Token)> {
    let user = load_user(state, name).await?;
    let id = parse_token_id(raw_id)?;
    match tokens::get(&state.db, id).await? {
        Some(t)
            if t.owner == tokens::Owner::User(user.id)
                && t.expires_at.is_none_or(|e| e > db::now_micros()) =>
        {
            Ok((user, t))
        }
        _ => Err(ApiError::not_found(format!("No such token: {raw_id}"))),
    }
}

async fn get_token(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path((name, token_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    ident.require("read:tokens", &Resource::User(&name))?;
    let (user, t) = owned_token(&state, &name, &token_id).await?;
    let owner_scopes = auth::owner_scopes(&state.authz, &Principal::User(user)).await?;
    Ok(axum::Json(token_model(&state, &name, "user", &t, &owner_scopes).await?).into_response())
}

async fn delete_token(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path((name, token_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    ident.require("tokens", &Resource::User(&name))?;
    let (user, t) = owned_token(&state, &name, &token_id).await?;
    if t.client_id == tokens::API_CLIENT_ID {
        tokens::delete(&state.db, t.id).await?;
    } else {
        // Revoking an OAuth grant revokes every token issued through that client.
        tokens::delete_for_client(&state.db, user.id, &t.client_id).await?;
    }
    tracing::info!(user = %name, token = %token_id, by = %ident.name(), "revoked API token");
    Ok(StatusCode::NO_CONTENT.into_response())
}
