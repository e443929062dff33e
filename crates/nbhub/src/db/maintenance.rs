//! `maintenance_notices`: the notices an admin set per system (see `crate::maintenance`).

use super::{Db, SqlError};

/// One stored notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoticeRow {
    pub system: String,
    pub message: String,
    /// RFC 3339, as validated when it was set.
    pub until: Option<String>,
    pub set_by: String,
    pub set_at: i64,
}

/// Sets (or replaces) the notice of `row.system`.
pub async fn put(db: &Db, row: &NoticeRow) -> Result<(), SqlError> {
    sqlx::query(
        "INSERT INTO maintenance_notices (system, message, until, set_by, set_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (system) DO UPDATE SET \
         message = excluded.message, until = excluded.until, set_by = excluded.set_by, \
         set_at = excluded.set_at",
    )
    .bind(&row.system)
    .bind(&row.message)
    .bind(&row.until)
    .bind(&row.set_by)
    .bind(row.set_at)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Clears the notice of `system`; whether there was one.
pub async fn delete(db: &Db, system: &str) -> Result<bool, SqlError> {
    let done = sqlx::query("DELETE FROM maintenance_notices WHERE system = $1")
        .bind(system)
        .execute(&db.pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Every stored notice (expired ones included: they are simply not applied).
pub async fn all(db: &Db) -> Result<Vec<NoticeRow>, SqlError> {
    use sqlx::Row;
    let rows = sqlx::query(
        "SELECT system, message, until, set_by, set_at FROM maintenance_notices ORDER BY system",
    )
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(NoticeRow {
                system: r.try_get("system")?,
                message: r.try_get("message")?,
                until: r.try_get("until")?,
                set_by: r.try_get("set_by")?,
                set_at: r.try_get("set_at")?,
            })
        })
        .collect()
}
