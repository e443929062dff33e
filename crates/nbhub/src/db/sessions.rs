//! `ended_sessions`: browser sessions a logout ended (see `auth::session::EndedSessions`).

use super::{Db, SqlError};

/// Records `session_id` as ended until `expires_at` (a repeated logout is no error), and
/// drops the rows nobody's cookie can name any more.
pub async fn end(db: &Db, session_id: &str, expires_at: i64, now: i64) -> Result<(), SqlError> {
    sqlx::query(
        "INSERT INTO ended_sessions (session_id, expires_at) VALUES ($1, $2) \
         ON CONFLICT (session_id) DO UPDATE SET expires_at = excluded.expires_at",
    )
    .bind(session_id)
    .bind(expires_at)
    .execute(&db.pool)
    .await?;
    sqlx::query("DELETE FROM ended_sessions WHERE expires_at < $1")
        .bind(now)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// The sessions still ended at `now`, with when they stop mattering.
pub async fn live(db: &Db, now: i64) -> Result<Vec<(String, i64)>, SqlError> {
    use sqlx::Row;
    let rows =
        sqlx::query("SELECT session_id, expires_at FROM ended_sessions WHERE expires_at >= $1")
            .bind(now)
            .fetch_all(&db.pool)
            .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("session_id")?, r.try_get("expires_at")?)))
        .collect()
}
