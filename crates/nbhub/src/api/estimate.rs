//! When would a server with these options start? `POST /users/{name}/server/estimate` and
//! `/users/{name}/servers/{server}/estimate`, with the body of a start request. An nbhub
//! extension (JupyterHub has no such call): the spawn form asks it before the user submits.
//! For Slurm the answer is `sbatch --test-only`'s: a start time and nodes, or Slurm's reason.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

use super::servers::ServerRequest;
use super::{ApiIdentity, JsonBody};
use crate::auth::scopes::Resource;
use crate::auth::Identity;
use crate::db;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::supervisor::SpawnRefused;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/users/{name}/server/estimate", post(estimate_default))
        .route(
            "/users/{name}/servers/{server}/estimate",
            post(estimate_named),
        )
}

async fn estimate(
    state: AppState,
    ident: Identity,
    name: String,
    server: String,
    body: Value,
) -> ApiResult<Response> {
    // Only someone who may start the server may ask (and so learn about the user's form).
    ident.require(
        "start:servers",
        &Resource::Server {
            user: &name,
            server: &server,
        },
    )?;
    let user = db::users::get(&state.db, &name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No such user: {name}")))?;
    let options = ServerRequest::parse(body)?
        .user_options
        .unwrap_or_else(|| Value::Object(Default::default()));
    let sup = &state.supervisor;
    let ctx = sup.form_context(&user, &server).await?;
    let validated = sup
        .spawner
        .validate_options(&ctx, &options)
        .await
        .map_err(|errors| match SpawnRefused::from_field_errors(errors) {
            SpawnRefused::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m),
            other => ApiError::bad_request(other.to_string()),
        })?;
    match sup.spawner.estimate(&ctx, &validated).await {
        Some(Ok(estimate)) => Ok(axum::Json(estimate).into_response()),
        Some(Err(nbhub_spawner::SpawnError::TooSoon {
            message,
            retry_after,
        })) => {
            let mut err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, message);
            err.retry_after = Some(retry_after.as_secs().max(1));
            Err(err)
        }
        Some(Err(e)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
        )),
        None => Err(ApiError::not_found(format!(
            "The {} spawner cannot estimate start times",
            sup.spawner.kind()
        ))),
    }
}

async fn estimate_default(
    State(s): State<AppState>,
    ApiIdentity(i): ApiIdentity,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    estimate(s, i, name, String::new(), body).await
}

async fn estimate_named(
    State(s): State<AppState>,
    ApiIdentity(i): ApiIdentity,
    Path((name, server)): Path<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    estimate(s, i, name, server, body).await
}
