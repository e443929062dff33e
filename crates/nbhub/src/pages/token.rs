//! `/hub/token`: the user's API tokens (request one, see when each was last used, revoke) and
//! the applications they authorised through OAuth. Creating and revoking go through the REST
//! API from the page's script, so the new secret is shown once and never stored in a page.

use axum::extract::{OriginalUri, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::{page_user, render};
use crate::auth::{self, Principal};
use crate::db::tokens;
use crate::error::ApiResult;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/token", get(token_page))
}

async fn token_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
) -> ApiResult<Response> {
    let (user, _) = match page_user(&state, &headers, &uri).await? {
        Ok(u) => u,
        Err(redirect) => return Ok(redirect),
    };
    tokens::purge_expired(&state.db).await?;
    let owner_scopes = auth::owner_scopes(&state.authz, &Principal::User(user.clone())).await?;
    let mut api_tokens = Vec::new();
    let mut oauth_clients = Vec::new();
    for t in tokens::list_for(&state.db, tokens::Owner::User(user.id)).await? {
        let model =
            crate::api::tokens::token_model(&state, &user.name, "user", &t, &owner_scopes).await?;
        if t.client_id == tokens::API_CLIENT_ID {
            api_tokens.push(model);
        } else {
            oauth_clients.push(json!({
                "token_id": model["id"],
                "description": model["oauth_client"],
                "scopes": model["scopes"],
                "created": model["created"],
                "last_activity": model["last_activity"],
            }));
        }
    }
    // Most recently used first, as people look for the token they just used.
    let last_used = |v: &Value| v["last_activity"].as_str().unwrap_or("").to_string();
    api_tokens.sort_by_key(|b| std::cmp::Reverse(last_used(b)));
    Ok(render(
        &state,
        &headers,
        "token.html",
        Some(&user),
        json!({
            "api_tokens": api_tokens,
            "oauth_clients": oauth_clients,
            "token_expires_in_max_seconds": state.config.hub.token_expires_in_max_seconds,
            "expires_in_options": expires_in_options(state.config.hub.token_expires_in_max_seconds),
        }),
    ))
}

/// The choices of the "Expires in" list: with `token_expires_in_max_seconds`, those within the
/// limit and the limit itself last ("Max"), as JupyterHub 5.1's page; else "Never" last. The
/// last one is selected.
fn expires_in_options(max: u64) -> Vec<Value> {
    let mut options: Vec<(String, String)> = [
        (3600, "1 hour"),
        (86400, "1 day"),
        (7 * 86400, "1 week"),
        (30 * 86400, "30 days"),
        (365 * 86400, "1 year"),
    ]
    .into_iter()
    .filter(|(secs, _)| max == 0 || *secs <= max)
    .map(|(secs, label)| (secs.to_string(), label.to_string()))
    .collect();
    if max == 0 {
        options.push((String::new(), "Never".into()));
    } else if !options.iter().any(|(secs, _)| *secs == max.to_string()) {
        let hours = max as f64 / 3600.0;
        let label = if hours / 24.0 < 3.0 {
            format!("Max ({hours:.0} hours)")
        } else {
            format!("Max ({:.0} days)", hours / 24.0)
        };
        options.push((max.to_string(), label));
    }
    options
        .into_iter()
        .map(|(value, label)| json!({"value": value, "label": label}))
        .collect()
}
