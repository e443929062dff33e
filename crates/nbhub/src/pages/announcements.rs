//! `POST /hub/admin/announcements` (the admin page's Announcements tab): `action=set` with
//! `message`, `level`, `system` and `until` (RFC 3339, optional), or `action=delete` with
//! `id`. Same rules and scope (`admin:announcements`) as the REST API (`api/announcements.rs`).

use std::collections::HashMap;

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;

use super::admin::admin_user;
use super::error_page;
use crate::api::announcements::{system_names, WRITE_SCOPE};
use crate::error::ApiResult;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/announcements", post(announcements_post))
}

async fn announcements_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> ApiResult<Response> {
    let field = |name: &str| form.get(name).map(String::as_str);
    let refusal = format!("Setting announcements needs the {WRITE_SCOPE} scope.");
    let xsrf = Some(field("_xsrf"));
    let me = match admin_user(&state, &headers, &uri, xsrf, &[WRITE_SCOPE], &refusal).await? {
        Ok(me) => me,
        Err(page) => return Ok(page),
    };
    let fail = |status, message: &str| error_page(&state, &headers, status, message, Some(&me));
    match field("action") {
        Some("set") => {
            let checked = crate::announcements::validate(
                field("message").unwrap_or(""),
                field("level"),
                field("system"),
                field("until"),
                &system_names(&state),
                time::OffsetDateTime::now_utc(),
            );
            match checked {
                Ok(new) => {
                    state.announcements.add(&state.db, new, &me.name).await?;
                }
                Err(e) => return Ok(fail(StatusCode::BAD_REQUEST, &e.to_string())),
            }
        }
        Some("delete") => {
            let id = field("id").and_then(|i| i.trim().parse::<i64>().ok());
            let Some(id) = id else {
                return Ok(fail(StatusCode::BAD_REQUEST, "id: must be a number"));
            };
            if !state.announcements.delete(&state.db, id).await? {
                return Ok(fail(
                    StatusCode::NOT_FOUND,
                    &format!("No announcement {id}"),
                ));
            }
        }
        _ => {
            return Ok(fail(
                StatusCode::BAD_REQUEST,
                "action: must be set or delete",
            ))
        }
    }
    Ok(crate::redirect(
        StatusCode::SEE_OTHER,
        &format!("{}admin#announcements", state.hub_prefix()),
    ))
}
