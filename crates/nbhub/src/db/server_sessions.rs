//! `server_sessions`: each server's recent sessions, one row per start (the options it was
//! started with, its system and job, when it started and ended, and how). The supervisor
//! writes them (`supervisor/history.rs`); at most one row per server is open (`ended` NULL).

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{json_column, placeholders, Db, SqlError};

#[derive(Clone, Debug, PartialEq)]
pub struct SessionRow {
    pub id: i64,
    pub server_id: i64,
    pub user_options: Value,
    pub system: String,
    pub job_id: Option<String>,
    pub started: i64,
    pub ended: Option<i64>,
    /// One word of a fixed set (`supervisor::EndReason`); NULL while open.
    pub reason: Option<String>,
    /// What the user was told, one line.
    pub message: Option<String>,
}

const COLUMNS: &str =
    "id, server_id, user_options, system, job_id, started, ended, reason, message";

fn from_row(row: &AnyRow) -> Result<SessionRow, SqlError> {
    Ok(SessionRow {
        id: row.try_get("id")?,
        server_id: row.try_get("server_id")?,
        user_options: json_column(row, "user_options")?,
        system: row.try_get("system")?,
        job_id: row.try_get("job_id")?,
        started: row.try_get("started")?,
        ended: row.try_get("ended")?,
        reason: row.try_get("reason")?,
        message: row.try_get("message")?,
    })
}

/// A new session of `server_id`, open; a row left open by an earlier one (its end was never
/// recorded) is closed first as `lost`, and only the newest `keep` rows of the server stay.
pub async fn begin(
    db: &Db,
    server_id: i64,
    user_options: &Value,
    system: &str,
    started: i64,
    keep: usize,
) -> Result<i64, SqlError> {
    let mut tx = db.pool.begin().await?;
    sqlx::query(
        "UPDATE server_sessions SET ended = $1, reason = 'lost' WHERE server_id = $2 AND ended IS NULL",
    )
    .bind(started)
    .bind(server_id)
    .execute(&mut *tx)
    .await?;
    let row = sqlx::query(
        "INSERT INTO server_sessions (server_id, user_options, system, started) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(server_id)
    .bind(user_options.to_string())
    .bind(system)
    .bind(started)
    .fetch_one(&mut *tx)
    .await?;
    let id: i64 = row.try_get("id")?;
    sqlx::query(
        "DELETE FROM server_sessions WHERE server_id = $1 AND id NOT IN \
         (SELECT id FROM server_sessions WHERE server_id = $1 ORDER BY id DESC LIMIT $2)",
    )
    .bind(server_id)
    .bind(keep as i64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// The open session's job and system, once the spawner names them; in its usage record
/// (`usage_sessions`) too.
pub async fn set_job(db: &Db, server_id: i64, job_id: &str, system: &str) -> Result<(), SqlError> {
    let mut tx = db.pool.begin().await?;
    for table in ["server_sessions", "usage_sessions"] {
        let sql = format!(
            "UPDATE {table} SET job_id = $1, system = CASE WHEN $2 = '' THEN system ELSE $2 END \
             WHERE server_id = $3 AND ended IS NULL"
        );
        sqlx::query(&sql)
            .bind(job_id)
            .bind(system)
            .bind(server_id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Ends the open session of `server_id`; the row ended, if one was open.
pub async fn end(
    db: &Db,
    server_id: i64,
    ended: i64,
    reason: &str,
    message: &str,
) -> Result<Option<SessionRow>, SqlError> {
    let sql = format!(
        "UPDATE server_sessions SET ended = $1, reason = $2, message = $3 \
         WHERE server_id = $4 AND ended IS NULL RETURNING {COLUMNS}"
    );
    let rows = sqlx::query(&sql)
        .bind(ended)
        .bind(reason)
        .bind(message)
        .bind(server_id)
        .fetch_all(&db.pool)
        .await?;
    rows.last().map(from_row).transpose()
}

pub async fn get(db: &Db, id: i64) -> Result<Option<SessionRow>, SqlError> {
    let sql = format!("SELECT {COLUMNS} FROM server_sessions WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(&db.pool).await?;
    row.as_ref().map(from_row).transpose()
}

/// The sessions of these servers, newest first (the home page: one query for all of a
/// user's servers).
pub async fn list_for_servers(db: &Db, server_ids: &[i64]) -> Result<Vec<SessionRow>, SqlError> {
    if server_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM server_sessions WHERE server_id IN ({}) ORDER BY id DESC",
        placeholders(0, server_ids.len())
    );
    let mut q = sqlx::query(&sql);
    for id in server_ids {
        q = q.bind(*id);
    }
    let rows = q.fetch_all(&db.pool).await?;
    rows.iter().map(from_row).collect()
}

/// Every server's last ended session (read once when the hub starts).
pub async fn last_ended_all(db: &Db) -> Result<Vec<SessionRow>, SqlError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM server_sessions s WHERE id = \
         (SELECT MAX(id) FROM server_sessions t WHERE t.server_id = s.server_id AND t.ended IS NOT NULL)"
    );
    let rows = sqlx::query(&sql).fetch_all(&db.pool).await?;
    rows.iter().map(from_row).collect()
}
