//! Starting, stopping and watching users' servers: `/users/{name}/server`,
//! `/users/{name}/servers/{server}`, their `/progress` event streams, and `/batchspawner`.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::users::server_model;
use super::{ApiIdentity, JsonBody};
use crate::auth::scopes::Resource;
use crate::auth::Identity;
use crate::db::{self, users::User};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::supervisor::{Phase, Slot, SpawnRefused};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/users/{name}/server",
            get(get_default).post(start_default).delete(stop_default),
        )
        .route("/users/{name}/server/progress", get(progress_default))
        .route(
            "/users/{name}/servers/{server}",
            get(get_named).post(start_named).delete(stop_named),
        )
        .route(
            "/users/{name}/servers/{server}/progress",
            get(progress_named),
        )
        .route("/batchspawner", post(batchspawner))
}

async fn load_user(state: &AppState, name: &str) -> ApiResult<User> {
    db::users::get(&state.db, name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No such user: {name}")))
}

fn display(user: &str, server: &str) -> String {
    if server.is_empty() {
        user.to_string()
    } else {
        format!("{user}/{server}")
    }
}

async fn get_server(
    state: AppState,
    ident: Identity,
    name: String,
    server: String,
) -> ApiResult<Response> {
    ident.require(
        "read:servers",
        &Resource::Server {
            user: &name,
            server: &server,
        },
    )?;
    let user = load_user(&state, &name).await?;
    let row = db::servers::get(&state.db, user.id, &server)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("No such server: {}", display(&name, &server)))
        })?;
    let with_state = ident.allows(
        "admin:server_state",
        &Resource::Server {
            user: &name,
            server: &server,
        },
    );
    Ok(axum::Json(server_model(&state, &name, &row, with_state)).into_response())
}

async fn get_default(
    State(s): State<AppState>,
    ApiIdentity(i): ApiIdentity,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    get_server(s, i, name, String::new()).await
}

async fn get_named(
    State(s): State<AppState>,
    ApiIdentity(i): ApiIdentity,
    Path((name, server)): Path<(String, String)>,
) -> ApiResult<Response> {
    get_server(s, i, name, server).await
}

/// `{"user_options": {...}}` or (legacy) the options themselves.
fn options_from(body: Value) -> ApiResult<Value> {
    match body {
        Value::Null => Ok(json!({})),
        Value::Object(m)
            if m.contains_key("user_options")
                && m.keys().all(|k| k == "user_options" || k == "display_name") =>
        {
            Ok(match m.get("user_options") {
                Some(Value::Null) | None => json!({}),
                Some(v) => v.clone(),
            })
        }
        v @ Value::Object(_) => Ok(v),
        _ => Err(ApiError::bad_request(
            "The body must be a JSON object: {\"user_options\": {...}}",
        )),
    }
}

fn refused(e: SpawnRefused) -> ApiError {
    match e {
        SpawnRefused::AlreadyRunning(_)
        | SpawnRefused::Stopping(_)
        | SpawnRefused::BadRequest(_)
        | SpawnRefused::InvalidOptions(_) => ApiError::bad_request(e.to_string()),
        SpawnRefused::Limit(msg) => {
            let mut err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, msg);
            err.retry_after = Some(30);
            err
        }
        SpawnRefused::Internal(msg) => ApiError::internal(msg),
    }
}

/// Starts a server and waits up to `slow_spawn_timeout`: 201 when ready, 202 while starting.
pub async fn start_server(
    state: &AppState,
    user: &User,
    server: &str,
    options: &Value,
) -> ApiResult<Response> {
    let slot = state
        .supervisor
        .start(user, server, options)
        .await
        .map_err(refused)?;
    let timeout = Duration::from_secs(state.config.hub.slow_spawn_timeout);
    match slot.wait_while(Phase::Starting, timeout).await {
        Phase::Running => Ok((
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "text/plain")],
            "",
        )
            .into_response()),
        Phase::Starting => Ok((
            StatusCode::ACCEPTED,
            [(header::CONTENT_TYPE, "text/plain")],
            "",
        )
            .into_response()),
        _ => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "Spawn failed: {}",
                slot.failure()
                    .unwrap_or_else(|| "the server stopped".into())
            ),
        )),
    }
}

async fn start(
    state: AppState,
    ident: Identity,
    name: String,
    server: String,
    body: Value,
) -> ApiResult<Response> {
    ident.require(
        "start:servers",
        &Resource::Server {
            user: &name,
            server: &server,
        },
    )?;
    let user = load_user(&state, &name).await?;
    let options = options_from(body)?;
    tracing::info!(user = %name, server = %server, by = %ident.name(), "start requested through the API");
    start_server(&state, &user, &server, &options).await
}

async fn start_default(
    State(s): State<AppState>,
    ApiIdentity(i): ApiIdentity,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    start(s, i, name, String::new(), body).await
}

async fn start_named(
    State(s): State<AppState>,
    ApiIdentity(i): ApiIdentity,
    Path((name, server)): Path<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    if server.is_empty() {
        return Err(ApiError::bad_request("A named server needs a name"));
    }
    start(s, i, name, server, body).await
}

async fn stop(
    state: AppState,
    ident: Identity,
    name: String,
    server: String,
    body: Value,
) -> ApiResult<Response> {
    ident.require(
        "delete:servers",
        &Resource::Server {
            user: &name,
            server: &server,
        },
    )?;
    let user = load_user(&state, &name).await?;
    let remove = body.get("remove").and_then(Value::as_bool).unwrap_or(false);
    if remove && server.is_empty() {
        return Err(ApiError::bad_request(
            "The default server cannot be removed",
        ));
    }
    let row = db::servers::get(&state.db, user.id, &server).await?;
    if row.is_none() && !server.is_empty() {
        return Err(ApiError::not_found(format!(
            "No such server: {}",
            display(&name, &server)
        )));
    }
    let slot = state.supervisor.slot(&user, &server);
    tracing::info!(user = %name, server = %server, by = %ident.name(), "stop requested through the API");
    let sup = state.supervisor.clone();
    let stopping = slot.clone();
    let db = state.db.clone();
    let task = tokio::spawn(async move {
        sup.stop(&stopping).await;
        if remove {
            if let Ok(Some(row)) =
                db::servers::get(&db, stopping.user_id, &stopping.server_name).await
            {
                let _ = db::servers::delete(&db, row.id).await;
            }
        }
    });
    let timeout = Duration::from_secs(state.config.hub.slow_stop_timeout);
    match tokio::time::timeout(timeout, task).await {
        Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(_) => Ok(StatusCode::ACCEPTED.into_response()),
    }
}

async fn stop_default(
    State(s): State<AppState>,
    ApiIdentity(i): ApiIdentity,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    stop(s, i, name, String::new(), body).await
}

async fn stop_named(
    State(s): State<AppState>,
    ApiIdentity(i): ApiIdentity,
    Path((name, server)): Path<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    stop(s, i, name, server, body).await
}

/// The SSE stream of WIRE.md §g: `data: {json}\n\n` per event, `\n\n` at once and every 8 s.
pub fn progress_stream(slot: std::sync::Arc<Slot>) -> Response {
    struct Cursor {
        slot: std::sync::Arc<Slot>,
        rx: tokio::sync::watch::Receiver<u64>,
        sent: usize,
        started: bool,
        done: bool,
    }
    let rx = slot.subscribe();
    let cursor = Cursor {
        slot,
        rx,
        sent: 0,
        started: false,
        done: false,
    };
    let stream = futures_util::stream::unfold(cursor, |mut c| async move {
        if c.done {
            return None;
        }
        if !c.started {
            c.started = true;
            return Some((
                Ok::<_, std::convert::Infallible>(bytes::Bytes::from_static(b"\n\n")),
                c,
            ));
        }
        loop {
            let (events, ended) = c.slot.events_since(c.sent);
            if !events.is_empty() {
                c.sent += events.len();
                let mut chunk = String::new();
                for e in events {
                    chunk.push_str("data: ");
                    chunk.push_str(&e.to_string());
                    chunk.push_str("\n\n");
                }
                c.done = ended;
                return Some((Ok(bytes::Bytes::from(chunk)), c));
            }
            if ended || c.slot.phase() == Phase::Stopped && c.sent > 0 {
                return None;
            }
            match tokio::time::timeout(Duration::from_secs(8), c.rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return None,
                Err(_) => return Some((Ok(bytes::Bytes::from_static(b"\n\n")), c)),
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn progress(
    state: AppState,
    ident: Identity,
    name: String,
    server: String,
) -> ApiResult<Response> {
    ident.require(
        "read:servers",
        &Resource::Server {
            user: &name,
            server: &server,
        },
    )?;
    let user = load_user(&state, &name).await?;
    if db::servers::get(&state.db, user.id, &server)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!(
            "No such server: {}",
            display(&name, &server)
        )));
    }
    let slot = state.supervisor.slot(&user, &server);
    match slot.phase() {
        Phase::Running => {
            let url = slot.prefix(state.config.hub.base_url.as_str());
            let event = json!({
                "progress": 100, "ready": true,
                "message": format!("Server ready at {url}"),
                "html_message": format!("Server ready at <a href=\"{url}\">{url}</a>"),
                "url": url,
            });
            let body = format!("data: {event}\n\n");
            Ok((
                [
                    (header::CONTENT_TYPE, "text/event-stream"),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                body,
            )
                .into_response())
        }
        Phase::Starting => Ok(progress_stream(slot)),
        _ if slot.failure().is_some() => Ok(progress_stream(slot)),
        _ => Err(ApiError::bad_request(format!(
            "{} is not starting...",
            display(&name, &server)
        ))),
    }
}

async fn progress_default(
    State(s): State<AppState>,
    ApiIdentity(i): ApiIdentity,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    progress(s, i, name, String::new()).await
}

async fn progress_named(
    State(s): State<AppState>,
    ApiIdentity(i): ApiIdentity,
    Path((name, server)): Path<(String, String)>,
) -> ApiResult<Response> {
    progress(s, i, name, server).await
}

/// batchspawner-singleuser reports the port its server will listen on (WIRE.md §d). The
/// server's own token says which server this is.
async fn batchspawner(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let (Some(user), Some(token)) = (ident.user(), ident.token.as_ref()) else {
        return Err(ApiError::forbidden(
            "batchspawner reports need the server's own token",
        ));
    };
    let port = match body.get("port") {
        Some(v) => match v.as_u64().filter(|p| (1..=65535).contains(p)) {
            Some(p) => Some(p as u16),
            None => {
                return Err(ApiError::bad_request(
                    "port must be a number from 1 to 65535",
                ))
            }
        },
        None => None,
    };
    for server in db::servers::list_for_user(&state.db, user.id).await? {
        if let Some(slot) = state.supervisor.existing_slot(user.id, &server.name) {
            if slot.token_id() == Some(token.id) && slot.phase() == Phase::Starting {
                if let Some(p) = port {
                    tracing::info!(user = %user.name, server = %server.name, port = p, "batchspawner reported the server's port");
                    slot.report_port(p);
                }
            }
        }
    }
    Ok(axum::Json(json!({"message": "BatchSpawner data configured"})).into_response())
}
