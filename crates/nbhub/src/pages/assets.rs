//! `/hub/static/…`: the pages' CSS, JavaScript, fonts and images, compiled into the binary by
//! `build.rs` (ours from `static/`, Bootstrap and Bootstrap Icons from npm). URLs carry the
//! file's content hash (`?v=…`), so such a request may be cached for a year; `/hub/logo`.

use axum::extract::{OriginalUri, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

pub struct Asset {
    pub path: &'static str,
    pub hash: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// What to do when the npm files were missing at build time.
pub const INSTALL_HINT: &str =
    "run `npm ci --prefix crates/nbhub/static` (scripts/test-env.sh does) and rebuild nbhub";

pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// The URL of a static file, with its content hash when we have the file.
pub fn url(static_prefix: &str, path: &str) -> String {
    let path = path.trim_start_matches('/');
    match find(path) {
        Some(a) => format!("{static_prefix}{path}?v={}", a.hash),
        None => format!("{static_prefix}{path}"),
    }
}

const YEAR: &str = "public, max-age=31536000, immutable";

pub async fn serve(Path(path): Path<String>, uri: OriginalUri, headers: HeaderMap) -> Response {
    let Some(asset) = find(&path) else {
        if MISSING_VENDOR.contains(&path.as_str()) {
            let msg = format!("{path} was not built into this nbhub: {INSTALL_HINT}\n");
            return (StatusCode::NOT_FOUND, msg).into_response();
        }
        return (StatusCode::NOT_FOUND, "404: no such static file\n").into_response();
    };
    let etag = format!("\"{}\"", asset.hash);
    let versioned = crate::web::query_param(uri.query(), "v").as_deref() == Some(asset.hash);
    let cache = if versioned { YEAR } else { "no-cache" };
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.bytes,
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    response
}

/// `/hub/logo`: the site's `logo_file`, else ours.
pub async fn logo(State(state): State<AppState>) -> Response {
    let file = &state.config.hub.logo_file;
    if !file.as_os_str().is_empty() {
        match tokio::fs::read(file).await {
            Ok(bytes) => {
                let ct = match file.extension().and_then(|e| e.to_str()) {
                    Some("svg") => "image/svg+xml",
                    Some("jpg" | "jpeg") => "image/jpeg",
                    Some("gif") => "image/gif",
                    Some("webp") => "image/webp",
                    _ => "image/png",
                };
                return (
                    [
                        (header::CONTENT_TYPE, ct),
                        (header::CACHE_CONTROL, "public, max-age=3600"),
                    ],
                    bytes,
                )
                    .into_response();
            }
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "cannot read [hub] logo_file");
            }
        }
    }
    match find("images/logo.svg") {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            a.bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
