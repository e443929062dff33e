//! The REST API of CHP on the API port: `/api/routes[/<path>]` (docs/wire.md#proxy-rest-api).

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::forward::{ProxyBody, Shared};
use crate::routes::{normalize_key, parse_iso_date, table_json, Route, Target};

/// Route data is small; refuse absurd bodies instead of buffering them.
const MAX_BODY: usize = 1 << 20;

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::full(body));
    *r.status_mut() = status;
    r
}

fn json_text(s: String) -> Response<ProxyBody> {
    let mut r = reply(StatusCode::OK, s);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// CHP's check: the header must contain `token\s+(\S+)` and the captured token must match.
fn authorized(token: Option<&str>, req: &Request<Incoming>) -> bool {
    let Some(expected) = token else {
        return true;
    };
    let Some(h) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    // An unanchored search, as CHP's regex: the first "token" followed by whitespace.
    let mut rest = h;
    while let Some(i) = rest.find("token") {
        let after = &rest[i + 5..];
        let trimmed = after.trim_start();
        if trimmed.len() < after.len() && !trimmed.is_empty() {
            let got = trimmed.split(char::is_whitespace).next().unwrap_or("");
            // Constant time in the token's bytes (subtle keeps the optimizer from
            // short-circuiting it); a wrong length fails at once, which tells nothing useful.
            return bool::from(got.as_bytes().ct_eq(expected.as_bytes()));
        }
        rest = after;
    }
    false
}

/// Handle one API request.
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    shared.metrics.api_requests.fetch_add(1, Ordering::Relaxed);
    let res = route_request(&shared, req).await;
    Ok(res)
}

async fn route_request(shared: &Shared, req: Request<Incoming>) -> Response<ProxyBody> {
    let decoded = percent_decode_str(req.uri().path())
        .decode_utf8_lossy()
        .into_owned();
    let Some(rest) = decoded.strip_prefix("/api/routes") else {
        return reply(StatusCode::NOT_FOUND, "");
    };
    if !(rest.is_empty() || rest.starts_with('/')) {
        return reply(StatusCode::NOT_FOUND, "");
    }
    let method = req.method().clone();
    if ![Method::GET, Method::POST, Method::DELETE].contains(&method) {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "Method not supported");
    }
    if !authorized(shared.config.auth_token.as_deref(), &req) {
        return reply(StatusCode::FORBIDDEN, "");
    }
    let key = normalize_key(rest);
    let res = match method {
        Method::GET if rest.is_empty() || rest == "/" => list_routes(shared, req.uri().query()),
        Method::GET => match shared.routes.get(&key) {
            Some(r) => json_text(r.to_json_string()),
            None => reply(StatusCode::NOT_FOUND, ""),
        },
        Method::POST => add_route(shared, key.clone(), req).await,
        _ => match shared.changes.remove(&shared.routes, &key, None) {
            Some(_) => {
                tracing::info!("Removing route {key}");
                reply(StatusCode::NO_CONTENT, "")
            }
            None => reply(StatusCode::NOT_FOUND, ""),
        },
    };
    tracing::debug!("{method} {decoded} {}", res.status().as_u16());
    res
}

fn list_routes(shared: &Shared, query: Option<&str>) -> Response<ProxyBody> {
    let mut inactive_since = None;
    if let Some(q) = query {
        let params: Vec<(String, String)> = q
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .map(|(k, v)| {
                let dec = |s: &str| {
                    percent_decode_str(&s.replace('+', " "))
                        .decode_utf8_lossy()
                        .into_owned()
                };
                (dec(k), dec(v))
            })
            .collect();
        // CHP prefers `inactiveSince`, then `inactive_since`; an empty value means no filter.
        let value = ["inactiveSince", "inactive_since"].iter().find_map(|name| {
            params
                .iter()
                .find(|(k, v)| k == name && !v.is_empty())
                .map(|(_, v)| v.clone())
        });
        if let Some(v) = value {
            match parse_iso_date(&v) {
                Some(ms) => inactive_since = Some(ms),
                None => {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        format!("Invalid datestamp '{v}' must be ISO8601."),
                    )
                }
            }
        }
    }
    let routes = shared.routes.routes();
    let out = table_json(
        routes
            .iter()
            .filter(|r| inactive_since.is_none_or(|since| r.last_activity_ms() < since)),
    );
    json_text(out)
}

async fn add_route(shared: &Shared, key: String, req: Request<Incoming>) -> Response<ProxyBody> {
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(StatusCode::BAD_REQUEST, format!("Body not valid JSON: {e}")),
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return reply(StatusCode::BAD_REQUEST, format!("Body not valid JSON: {e}")),
    };
    let mut data = match value {
        Value::Object(m) => m,
        _ => return reply(StatusCode::BAD_REQUEST, "Must specify 'target' as string"),
    };
    let Some(Value::String(target)) = data.get("target") else {
        return reply(StatusCode::BAD_REQUEST, "Must specify 'target' as string");
    };
    let target = match Target::parse(target) {
        Ok(t) => t,
        Err(e) => return reply(StatusCode::BAD_REQUEST, e),
    };
    if shared.config.host_routing {
        let host = key.trim_start_matches('/').split('/').next().unwrap_or("");
        data.insert("host".into(), Value::String(host.to_string()));
    }
    tracing::info!("Adding route {key} -> {}", target.authority);
    shared
        .changes
        .insert(&shared.routes, Route::new(&key, data, target), None);
    reply(StatusCode::CREATED, "")
}
