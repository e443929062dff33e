//! `POST /shutdown`: a clean stop of the hub on request (scope `shutdown`). The body may say
//! whether the servers and the proxy stop with it (`{"servers": bool, "proxy": bool}`, defaults
//! `hub.cleanup_servers` and `proxy.cleanup`); the hub answers 202, then stops as on SIGTERM.

use std::sync::Mutex;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::{ApiIdentity, JsonBody};
use crate::auth::scopes::Resource;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/shutdown", post(shutdown))
}

/// What a shutdown request asked for; `None` keeps the configured default.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ShutdownChoice {
    pub servers: Option<bool>,
    pub proxy: Option<bool>,
}

/// Set once by `POST /shutdown`; `run` stops serving when it is.
pub struct ShutdownSwitch {
    choice: Mutex<ShutdownChoice>,
    requested: watch::Sender<bool>,
}

impl Default for ShutdownSwitch {
    fn default() -> Self {
        ShutdownSwitch {
            choice: Mutex::new(ShutdownChoice::default()),
            requested: watch::channel(false).0,
        }
    }
}

impl ShutdownSwitch {
    pub fn request(&self, choice: ShutdownChoice) {
        *self.choice.lock().unwrap_or_else(|p| p.into_inner()) = choice;
        self.requested.send_replace(true);
    }

    pub fn choice(&self) -> ShutdownChoice {
        *self.choice.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves once a shutdown was requested.
    pub fn requested(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.requested.subscribe();
        async move {
            let _ = rx.wait_for(|r| *r).await;
        }
    }
}

fn flag(body: &Value, key: &str) -> ApiResult<Option<bool>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(ApiError::bad_request(format!(
            "{key} must be true or false, got {v}"
        ))),
    }
}

async fn shutdown(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    ident.require("shutdown", &Resource::Global)?;
    if !(body.is_null() || body.is_object()) {
        return Err(ApiError::bad_request(
            "The body must be a JSON object: {\"servers\": bool, \"proxy\": bool}",
        ));
    }
    let choice = ShutdownChoice {
        servers: flag(&body, "servers")?,
        proxy: flag(&body, "proxy")?,
    };
    tracing::info!(by = %ident.name(), ?choice, "shutdown requested through the API");
    // The answer goes out before the listener closes: graceful shutdown lets it finish.
    state.shutdown.request(choice);
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"message": "Shutting down Hub"})),
    )
        .into_response())
}
