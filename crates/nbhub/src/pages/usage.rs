//! `/hub/admin/usage` (scopes `admin-ui` and `read:usage`): the usage report over a date range
//! per user, group, account or system, with a CSV download of the same (`?format=csv`). The
//! query is the REST API's (`GET /hub/api/usage`, `api/usage.rs`), so both give the same
//! figures; a bad date is a 400 page naming the field.

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::json;

use super::admin::admin_user;
use super::{error_page, render};
use crate::api::usage::{csv_response, model, report_for, Format, READ_SCOPE};
use crate::error::ApiResult;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/usage", get(usage_page))
}

/// The last day a report's end (`to`, exclusive, JupyterHub's timestamp format) includes,
/// as the date field shows it.
fn last_day(to: &str) -> String {
    crate::db::parse_timestamp(to)
        .map(|t| crate::db::format_timestamp(t - 1))
        .and_then(|t| t.get(..10).map(str::to_owned))
        .unwrap_or_default()
}

async fn usage_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
) -> ApiResult<Response> {
    let refusal = format!("The usage report is for administrators with the {READ_SCOPE} scope.");
    let me = match admin_user(&state, &headers, &uri, None, &[READ_SCOPE], &refusal).await? {
        Ok(me) => me,
        Err(page) => return Ok(page),
    };
    let (report, format) = match report_for(&state, uri.query()).await {
        Ok(r) => r,
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            return Ok(error_page(
                &state,
                &headers,
                e.status,
                &e.message,
                Some(&me),
            ))
        }
        Err(e) => return Err(e),
    };
    if format == Format::Csv {
        return Ok(csv_response(&report));
    }
    let from = report.from.get(..10).unwrap_or("").to_owned();
    let to = last_day(&report.to);
    let csv_query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("from", &from)
        .append_pair("to", &to)
        .append_pair("by", report.by.as_str())
        .append_pair("format", "csv")
        .finish();
    Ok(render(
        &state,
        &headers,
        "admin_usage.html",
        Some(&me),
        json!({
            "report": model(&report),
            "by": report.by.as_str(),
            "from_day": from,
            "to_day": to,
            "csv_url": format!("{}admin/usage?{csv_query}", state.hub_prefix()),
        }),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_form_shows_the_last_day_the_range_includes() {
        assert_eq!(super::last_day("2026-12-08T00:00:00Z"), "2026-12-07");
        assert_eq!(super::last_day("2026-12-08T10:30:00Z"), "2026-12-08");
    }
}
