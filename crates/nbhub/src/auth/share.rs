//! Accepting a share code (`/hub/accept-share`): the code is exchanged for a share of its
//! server with the user who follows the link. Domain logic beside the scopes it grants; the
//! page that asks for it only renders.

use crate::db::shares::{self, ShareCode, With};
use crate::db::users::User;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};

/// Exchanges a share code for a share of its server with `user` (at `/hub/accept-share`).
/// Returns the server's owner and name; an unknown or expired code is a 404.
pub async fn accept_code(db: &Db, user: &User, code: &str) -> ApiResult<ShareCode> {
    let found = shares::find_code(db, code, None)
        .await?
        .ok_or_else(|| ApiError::not_found("This share code is not valid or has expired"))?;
    shares::grant(db, found.server_id, With::User(user.id), &found.scopes).await?;
    shares::record_exchange(db, found.id).await?;
    tracing::info!(user = %user.name, owner = %found.owner, server = %found.server_name, "share code accepted");
    Ok(found)
}
