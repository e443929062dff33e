//! `GET /usage` (docs/usage.md): the usage report over a date range, per user, group, account
//! or system, as JSON or CSV (`?from=2026-12-01&to=2026-12-31&by=account&format=csv`). Needs
//! the `read:usage` scope (the admin role has it). A parameter that does not parse is a 400
//! naming it.

use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::ApiIdentity;
use crate::auth::scopes::Resource;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::usage::{self, By, Report};
use crate::web::query_param;

/// The scope the report needs.
pub const READ_SCOPE: &str = "read:usage";

pub fn routes() -> Router<AppState> {
    Router::new().route("/usage", get(get_usage))
}

/// How the report is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

/// The report the query asks for (`from`, `to`, `by`) and its format (`format`); a bad
/// parameter is a 400 naming it.
pub async fn report_for(state: &AppState, query: Option<&str>) -> ApiResult<(Report, Format)> {
    let bad = |e: usage::BadQuery| ApiError::bad_request(e.to_string());
    let range = usage::parse_range(
        query_param(query, "from").as_deref(),
        query_param(query, "to").as_deref(),
        time::OffsetDateTime::now_utc(),
    )
    .map_err(bad)?;
    let by = By::parse(query_param(query, "by").as_deref()).map_err(bad)?;
    let format = match query_param(query, "format").as_deref().map(str::trim) {
        None | Some("") | Some("json") => Format::Json,
        Some("csv") => Format::Csv,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format: {other:?} is not json or csv"
            )))
        }
    };
    Ok((usage::build(&state.db, by, range).await?, format))
}

/// The report as JSON: each line names its key with the `by` word (`{"user": "alice", …}`).
pub fn model(report: &Report) -> Value {
    let line = |key: Option<&str>, t: &usage::Totals| {
        let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
        if let (Some(key), Value::Object(m)) = (key, &mut v) {
            m.insert(report.by.as_str().to_owned(), Value::from(key));
        }
        v
    };
    json!({
        "by": report.by,
        "from": report.from,
        "to": report.to,
        "rows": report.rows.iter().map(|(k, t)| line(Some(k), t)).collect::<Vec<_>>(),
        "total": line(None, &report.total),
    })
}

/// The report as a CSV download, named after what it holds.
pub fn csv_response(report: &Report) -> Response {
    let day = |t: &str| t.get(..10).unwrap_or("").to_owned();
    let name = format!(
        "nbhub-usage-by-{}-{}-{}.csv",
        report.by.as_str(),
        day(&report.from),
        day(&report.to)
    );
    let mut r = usage::to_csv(report).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// `GET /usage`.
async fn get_usage(
    State(state): State<AppState>,
    ApiIdentity(ident): ApiIdentity,
    uri: OriginalUri,
) -> ApiResult<Response> {
    ident.require(READ_SCOPE, &Resource::Global)?;
    let (report, format) = report_for(&state, uri.query()).await?;
    Ok(match format {
        Format::Json => axum::Json(model(&report)).into_response(),
        Format::Csv => csv_response(&report),
    })
}
