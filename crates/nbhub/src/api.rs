//! The REST API under `{base_url}hub/api`, conforming to JupyterHub's OpenAPI spec.
//!
//! Every handler takes an [`ApiIdentity`] (token or cookie + XSRF) and checks scopes itself
//! through `Identity::require*`, so the 403/404 distinction is made in one place.

pub mod announcements;
pub mod authorizations;
pub mod ending;
pub mod estimate;
pub mod groups;
pub mod info;
pub mod metrics;
pub mod proxy;
pub mod servers;
pub mod services;
pub mod shares;
pub mod shutdown;
pub mod systems;
pub mod tokens;
pub mod usage;
pub mod users;

use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::auth::{self, Identity};
use crate::db::now_micros;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::web::{public_origin, query_param};

/// The version we answer at `GET /hub/api/`: the JupyterHub API generation we implement (its
/// major number is what single-user servers compare), with our own version as a PEP 440 local
/// label so that `packaging.Version` (idle culler) parses it.
pub const API_VERSION: &str = concat!("6.1.1+nbhub.", env!("CARGO_PKG_VERSION"));

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(info::version))
        .route("/info", get(info::info))
        .route("/health", get(info::health))
        .merge(users::routes())
        .merge(servers::routes())
        .merge(ending::routes())
        .merge(estimate::routes())
        .merge(proxy::routes())
        .merge(tokens::routes())
        .merge(groups::routes())
        .merge(services::routes())
        .merge(authorizations::routes())
        .merge(shares::routes())
        .merge(shutdown::routes())
        .merge(systems::routes())
        .merge(usage::routes())
        .merge(announcements::routes())
        .merge(crate::oauth::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn(refuse_nul_in_url))
        .layer(axum::middleware::map_response(api_headers))
}

/// PostgreSQL can neither store nor compare text with NUL characters, so they are refused
/// before anything reaches the database, alike on every backend. A NUL can only come into a
/// URL percent-encoded (header values cannot hold one).
async fn refuse_nul_in_url(request: Request, next: axum::middleware::Next) -> Response {
    let uri = request.uri();
    let in_url = uri.path().contains("%00") || uri.query().is_some_and(|q| q.contains("%00"));
    if in_url {
        return ApiError::bad_request(crate::web::NUL_MESSAGE).into_response();
    }
    next.run(request).await
}

/// Does any string or object key in `value` hold a NUL character?
fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

async fn not_found(uri: OriginalUri) -> ApiError {
    ApiError::not_found(format!("No API endpoint at {}", uri.path()))
}

async fn api_headers(mut response: Response) -> Response {
    // The Content-Security-Policy is set for every response in `crate::app` (it needs base_url).
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("accept, content-type, authorization"),
    );
    response
}

/// Is `path` under `/hub/api` (the part CORS applies to)?
pub fn is_api_path(state: &AppState, path: &str) -> bool {
    let api = format!("{}api", state.hub_prefix());
    path.strip_prefix(&api)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A CORS preflight (`OPTIONS`) to `/hub/api`: answered at once, for any path, as JupyterHub's
/// API handlers do, with the allowed headers and methods and, when `[hub] allow_origin`
/// admits the caller's origin, that origin.
pub fn cors_preflight(state: &AppState, origin: Option<&HeaderValue>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("accept, content-type, authorization"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    allow_origin(state, origin, &mut response);
    response
}

/// `Access-Control-Allow-Origin` for an answer from `/hub/api`, by `[hub] allow_origin`: `*`
/// for any origin, else only the configured one (with `Vary: Origin`). Credentials (the login
/// cookie) are never allowed across origins: a page elsewhere calls the API with a token.
pub fn allow_origin(state: &AppState, origin: Option<&HeaderValue>, response: &mut Response) {
    let allowed = state.config.hub.allow_origin.as_str();
    let h = response.headers_mut();
    if allowed.is_empty() || h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        return;
    }
    if allowed == "*" {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        return;
    }
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin.filter(|o| o.as_bytes() == allowed.as_bytes()) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    }
}

/// The caller of an API endpoint. Token in the `Authorization` header, or the hub's login
/// cookie — which, for anything but a plain GET, also needs the XSRF token.
pub struct ApiIdentity(pub Identity);

impl FromRequestParts<AppState> for ApiIdentity {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(token) = auth::token_from_headers(&parts.headers) {
            return match auth::identity_for_token(&state.authz, token).await? {
                Some(identity) => Ok(ApiIdentity(identity)),
                None => Err(ApiError::missing_credentials()),
            };
        }
        let Some((user, session_id)) = crate::web::cookie_user(state, &parts.headers).await? else {
            return Err(ApiError::missing_credentials());
        };
        let safe_method = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        let fetch_mode = parts
            .headers
            .get("sec-fetch-mode")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("navigate");
        if !safe_method || fetch_mode != "navigate" {
            let submitted = query_param(parts.uri.query(), "_xsrf");
            if !crate::web::xsrf_ok(state, &parts.headers, Some(&user), submitted.as_deref()) {
                return Err(ApiError::forbidden("'_xsrf' argument missing or incorrect: cookie-authenticated API requests need the XSRF token"));
            }
        }
        Ok(ApiIdentity(
            auth::identity_for_user(&state.authz, user, session_id).await?,
        ))
    }
}

/// A JSON request body, with errors in our own format. An empty body reads as `null`; a body
/// with a NUL character in any string is refused (see [`refuse_nul_in_url`]).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Request body too large (1 MiB at most)",
                )
            })?;
        let text = if bytes.iter().all(u8::is_ascii_whitespace) {
            &b"null"[..]
        } else {
            &bytes[..]
        };
        let invalid = |e: serde_json::Error| {
            ApiError::bad_request(format!("Invalid JSON in request body: {e}"))
        };
        let value: Value = serde_json::from_slice(text).map_err(invalid)?;
        if contains_nul(&value) {
            return Err(ApiError::bad_request(crate::web::NUL_MESSAGE));
        }
        serde_json::from_value(value).map(JsonBody).map_err(invalid)
    }
}

pub fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// An answer that carries a secret (a new token, a share code): no cache may keep it.
pub fn secret_response(status: StatusCode, body: Value) -> Response {
    let mut r = json_response(status, body);
    no_store(&mut r);
    r
}

pub fn no_store(r: &mut Response) {
    use axum::http::{header, HeaderValue};
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// Offset/limit of a list request and whether the client asked for the paginated envelope.
pub struct Page {
    pub offset: i64,
    pub limit: i64,
    pub envelope: bool,
}

impl Page {
    pub fn from_request(
        state: &AppState,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> ApiResult<Page> {
        let envelope = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/jupyterhub-pagination+json")
            });
        let cfg = &state.config.hub;
        let number = |name: &str| -> ApiResult<Option<i64>> {
            match query_param(query, name) {
                None => Ok(None),
                Some(v) => v.trim().parse::<i64>().map(Some).map_err(|_| {
                    ApiError::bad_request(format!("{name} must be an integer, not {v:?}"))
                }),
            }
        };
        let offset = number("offset")?.unwrap_or(0).max(0);
        let max = i64::from(cfg.api_page_max_limit);
        // Without the envelope a client cannot see that it was cut, so give it the maximum.
        let default = if envelope {
            i64::from(cfg.api_page_default_limit).min(max)
        } else {
            max
        };
        let limit = number("limit")?.unwrap_or(default).clamp(1, max);
        Ok(Page {
            offset,
            limit,
            envelope,
        })
    }

    /// The bare list, or JupyterHub's `{"items", "_pagination"}` with an absolute `next.url`.
    pub fn respond(
        &self,
        items: Vec<Value>,
        total: i64,
        headers: &HeaderMap,
        uri: &OriginalUri,
    ) -> Response {
        if !self.envelope {
            return axum::Json(Value::Array(items)).into_response();
        }
        let next_offset = self.offset + self.limit;
        let next = if next_offset < total {
            let mut pairs: Vec<(String, String)> =
                url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                    .filter(|(k, _)| k != "offset" && k != "limit")
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
            pairs.push(("limit".into(), self.limit.to_string()));
            pairs.push(("offset".into(), next_offset.to_string()));
            let query = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish();
            json!({"offset": next_offset, "limit": self.limit, "url": format!("{}{}?{query}", public_origin(headers), uri.path())})
        } else {
            Value::Null
        };
        axum::Json(json!({
            "items": items,
            "_pagination": {"offset": self.offset, "limit": self.limit, "total": total, "next": next},
        }))
        .into_response()
    }
}

pub fn timestamp(micros: Option<i64>) -> Value {
    micros.map_or(Value::Null, |t| {
        Value::String(crate::db::format_timestamp(t))
    })
}

/// Seconds from now, as an absolute expiry, checked.
pub fn expiry_from(expires_in: Option<&Value>) -> ApiResult<Option<i64>> {
    match expires_in {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(secs) if secs > 0.0 && secs < 1e10 => Ok(Some(now_micros() + (secs * 1e6) as i64)),
            _ => Err(ApiError::bad_request(
                "expires_in must be a positive number of seconds",
            )),
        },
    }
}
