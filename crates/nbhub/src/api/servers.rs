//! Starting, stopping and watching users' servers: `/users/{name}/server`,
//! `/users/{name}/servers/{server}`, their `/progress` event streams, and `/batchspawner`.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use super::users::server_model;
use super::{ApiIdentity, JsonBody};
use crate::auth::scopes::Resource;
use crate::auth::Identity;
use crate::db::{self, users::User};
use crate::error::{ApiError, ApiResult};
use crate::names;
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
            get(get_named)
                .put(create_named)
                .patch(edit_named)
                .post(start_named)
                .delete(stop_named),
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

/// The body of a server request: `{"user_options": {...}|null, "display_name": "..."}`, or
/// (legacy) the options themselves; empty means neither.
pub(super) struct ServerRequest {
    pub(super) display_name: Option<String>,
    pub(super) user_options: Option<Value>,
}

impl ServerRequest {
    pub(super) fn parse(body: Value) -> ApiResult<ServerRequest> {
        let mut m = match body {
            Value::Null => Map::new(),
            Value::Object(m) => m,
            _ => return Err(ApiError::bad_request("Body must be a JSON object")),
        };
        let display_name = match m.get("display_name") {
            None => None,
            Some(Value::String(d)) => Some(check_display_name(d)?),
            Some(_) => return Err(ApiError::bad_request("display_name must be a string")),
        };
        let user_options = match m.get("user_options") {
            Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "user_options must be an object or null",
                ))
            }
            // Neither key: the body is the options (JupyterHub before 6.0).
            None if display_name.is_none() && !m.is_empty() => {
                Some(Value::Object(std::mem::take(&mut m)))
            }
            None => None,
        };
        Ok(ServerRequest {
            display_name,
            user_options,
        })
    }
}

/// Display names are shown in pages: any text without control characters, 255 at most.
fn check_display_name(name: &str) -> ApiResult<String> {
    if name.chars().count() > 255 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "Invalid display_name {name:?}: at most 255 characters, no control characters"
        )));
    }
    Ok(name.to_string())
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
        SpawnRefused::SignInAgain(msg) => ApiError::new(StatusCode::FORBIDDEN, msg),
        SpawnRefused::Unavailable(msg) => {
            let mut err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, msg);
            err.retry_after = Some(crate::db::RETRY_AFTER_SECS);
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
    // Waiting in the spawn queue: say so at once, with the place (the body is ours; clients
    // that know only JupyterHub read the 202 and follow the progress as for any slow spawn).
    if let Some(ahead) = slot.queue_ahead() {
        return Ok((
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({
                "status": "queued",
                "queue_ahead": ahead,
                "message": format!("Waiting to start: {ahead} ahead of you"),
            })),
        )
            .into_response());
    }
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
        _ => match slot.spawn_failure() {
            // The system could not take it now (its login nodes or controller do not
            // answer): a refusal in all but timing, so it is answered as one.
            Some(f) if f.is_unavailable() => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                f.message().to_owned(),
            )),
            failure => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "Spawn failed: {}",
                    failure
                        .map(|f| f.message().to_owned())
                        .unwrap_or_else(|| "the server stopped".into())
                ),
            )),
        },
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
    let request = ServerRequest::parse(body)?;
    let stored = db::servers::get(&state.db, user.id, &server).await?;
    // No options: those of the last start (or of PUT/PATCH), as JupyterHub.
    let options = match request.user_options {
        Some(o) => o,
        None => stored
            .map(|row| row.user_options)
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({})),
    };
    tracing::info!(user = %name, server = %server, by = %ident.name(), "start requested through the API");
    let response = start_server(&state, &user, &server, &options).await?;
    let display_name = request.display_name.filter(|d| !d.is_empty());
    if let (false, Some(display_name)) = (server.is_empty(), display_name) {
        if let Some(row) = db::servers::get(&state.db, user.id, &server).await? {
            db::servers::update(
                &state.db,
                row.id,
                &row.name,
                &display_name,
                &row.user_options,
            )
            .await?;
        }
    }
    Ok(response)
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

/// JupyterHub's rules for a new named server (or a new name): named servers enabled, a valid
/// name, and (when it adds one) no more than `named_server_limit_per_user`.
async fn check_new_named_server(
    state: &AppState,
    user: &User,
    server: &str,
    adds_one: bool,
) -> ApiResult<()> {
    let hub = &state.config.hub;
    if !hub.allow_named_servers {
        return Err(ApiError::bad_request("Named servers are not enabled."));
    }
    if server.is_empty() || !names::is_valid_server_name(server) {
        return Err(ApiError::bad_request(names::invalid_name_message(
            "server", server,
        )));
    }
    let limit = hub.named_server_limit_per_user as usize;
    if adds_one && limit > 0 {
        let named = db::servers::list_for_user(&state.db, user.id)
            .await?
            .iter()
            .filter(|s| !s.name.is_empty())
            .count();
        if named >= limit {
            return Err(ApiError::bad_request(format!(
                "User {} already has the maximum of {limit} named servers. One must be deleted before a new server can be created",
                user.name
            )));
        }
    }
    Ok(())
}

fn already_has(user: &str, server: &str) -> ApiError {
    ApiError::conflict(format!("User {user} already has server {server}"))
}

/// `PUT /users/{name}/servers/{server}`: a named server that exists but has not started.
async fn create_named(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path((name, server)): Path<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    ident.require(
        "start:servers",
        &Resource::Server {
            user: &name,
            server: &server,
        },
    )?;
    let user = load_user(&state, &name).await?;
    let request = ServerRequest::parse(body)?;
    if db::servers::get(&state.db, user.id, &server)
        .await?
        .is_some()
    {
        return Err(already_has(&name, &server));
    }
    check_new_named_server(&state, &user, &server, true).await?;
    let display_name = request
        .display_name
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| server.clone());
    let options = request.user_options.unwrap_or_else(|| json!({}));
    let row = db::servers::create(&state.db, user.id, &server, &display_name, &options)
        .await?
        .ok_or_else(|| already_has(&name, &server))?;
    tracing::info!(user = %name, server = %server, by = %ident.name(), "named server created through the API");
    let with_state = ident.allows(
        "admin:server_state",
        &Resource::Server {
            user: &name,
            server: &server,
        },
    );
    Ok((
        StatusCode::CREATED,
        axum::Json(server_model(&state, &name, &row, with_state)),
    )
        .into_response())
}

/// `PATCH /users/{name}/servers/{server}`: rename a stopped server, or change its display
/// name or stored options. The default server can be renamed too (it becomes a named one).
async fn edit_named(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    Path((name, server)): Path<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    fn resource<'a>(user: &'a str, server: &'a str) -> Resource<'a> {
        Resource::Server { user, server }
    }
    ident.require("start:servers", &resource(&name, &server))?;
    let user = load_user(&state, &name).await?;
    let Value::Object(fields) = body else {
        return Err(ApiError::bad_request(
            "Body must be a JSON object with at least one of name, display_name, user_options",
        ));
    };
    if fields.is_empty() {
        return Err(ApiError::bad_request(
            "Must specify at least one field to modify.",
        ));
    }
    if let Some(k) = fields
        .keys()
        .find(|k| !["name", "display_name", "user_options"].contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "Unexpected field {k:?}; supported fields: name, display_name, user_options"
        )));
    }
    let new_name = match fields.get("name") {
        None => None,
        Some(Value::String(n)) => Some(n.clone()),
        Some(_) => return Err(ApiError::bad_request("name must be a string")),
    };
    let display_name = match fields.get("display_name") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(check_display_name(d)?),
        Some(_) => return Err(ApiError::bad_request("display_name must be a string")),
    };
    let user_options = match fields.get("user_options") {
        None => None,
        Some(v @ Value::Object(_)) => Some(v.clone()),
        Some(_) => return Err(ApiError::bad_request("user_options must be a dict")),
    };
    if let Some(new) = &new_name {
        ident.require("start:servers", &resource(&name, new))?;
        check_new_named_server(&state, &user, new, server.is_empty()).await?;
    }
    let row = db::servers::get(&state.db, user.id, &server)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("User {name} has no such server {server:?}")))?;
    if state.supervisor.phase_of(user.id, &server) != Phase::Stopped {
        return Err(ApiError::bad_request(format!(
            "{} is active. Please stop it before modifying it.",
            display(&name, &server)
        )));
    }
    let target = new_name.clone().unwrap_or_else(|| server.clone());
    if target != server
        && db::servers::get(&state.db, user.id, &target)
            .await?
            .is_some()
    {
        return Err(already_has(&name, &target));
    }
    // A rename keeps the display name unless a new one is given, as JupyterHub.
    let display_name = display_name
        .filter(|d| !d.is_empty())
        .unwrap_or(row.display_name.clone());
    let options = user_options.unwrap_or(row.user_options.clone());
    let row = db::servers::update(&state.db, row.id, &target, &display_name, &options)
        .await?
        .ok_or_else(|| already_has(&name, &target))?;
    tracing::info!(user = %name, server = %server, new_name = %target, by = %ident.name(), "server changed through the API");
    let with_state = ident.allows("admin:server_state", &resource(&name, &target));
    Ok(axum::Json(server_model(&state, &name, &row, with_state)).into_response())
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
    if state.supervisor.phase_of(user.id, &server) != Phase::Stopped {
        refresh_pre_stop(&state, &ident, &user).await?;
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

/// JupyterHub 5.4's `refresh_pre_stop`: the owner's tokens are refreshed before the stop (a
/// spawner may need them to stop the server). When that fails, the owner stopping their own
/// server is told to sign in again (403, nothing stopped); anyone else's stop (an admin, a
/// service, the culler) goes on with a warning, as JupyterHub.
async fn refresh_pre_stop(state: &AppState, ident: &Identity, owner: &User) -> ApiResult<()> {
    let a = &state.config.authenticator;
    if !a.refresh_pre_stop || state.oidc.is_none() {
        return Ok(());
    }
    let Err(stale) = state.authz.auth_states.fresh_forced(owner).await else {
        return Ok(());
    };
    let by_owner = ident.user().is_some_and(|u| u.id == owner.id);
    if by_owner {
        use crate::auth::auth_state::Stale;
        return Err(match stale {
            Stale::SignInAgain(m) | Stale::Missing(m) => ApiError::forbidden(m),
            Stale::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m),
            Stale::Internal(m) => ApiError::internal(m),
        });
    }
    tracing::warn!(user = %owner.name, by = %ident.name(), "the user may have stale auth info (refresh_pre_stop failed: {stale:?}); stopping anyway");
    Ok(())
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

/// The SSE stream of docs/wire.md#progress-event-stream: `data: {json}\n\n` per event, `\n\n` at once and every 8 s.
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

/// batchspawner-singleuser reports the port its server will listen on (docs/wire.md#batchspawners-port-report). The
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
                    // Kept, so that a hub restarted before the server is ready still knows it.
                    db::servers::set_reported_port(&state.db, server.id, p).await?;
                }
            }
        }
    }
    Ok(axum::Json(json!({"message": "BatchSpawner data configured"})).into_response())
}
