//! `GET /hub/api/` (version), `/info`, `/health`.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiIdentity, API_VERSION};
use crate::auth::scopes::Resource;
use crate::config::AuthenticatorKind;
use crate::error::ApiResult;
use crate::state::AppState;

/// Unauthenticated: single-user servers and the idle culler probe it at start.
pub async fn version() -> Response {
    (
        [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")],
        axum::Json(json!({"version": API_VERSION})),
    )
        .into_response()
}

pub async fn health() -> Response {
    axum::http::StatusCode::OK.into_response()
}

pub async fn info(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
) -> ApiResult<Response> {
    ident.require("read:hub", &Resource::Global)?;
    let authenticator = match state.config.authenticator.kind {
        AuthenticatorKind::Dummy => "nbhub.auth.DummyAuthenticator",
        AuthenticatorKind::Native => "nbhub.auth.NativeAuthenticator",
        AuthenticatorKind::Pam => "nbhub.auth.PAMAuthenticator",
        AuthenticatorKind::GenericOauth => "nbhub.auth.GenericOAuthenticator",
        AuthenticatorKind::SharedPassword => "nbhub.auth.SharedPasswordAuthenticator",
    };
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let version = env!("CARGO_PKG_VERSION");
    Ok(axum::Json(json!({
        "version": API_VERSION,
        "nbhub": {"version": version},
        "python": null,
        "sys_executable": exe,
        "spawner": {"class": "nbhub.spawner.LocalSpawner", "version": version},
        "authenticator": {"class": authenticator, "version": version},
    }))
    .into_response())
}
