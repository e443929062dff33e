//! `announcements`: what admins tell every user (see `crate::announcements`).

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Db, SqlError};

/// One stored announcement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnouncementRow {
    pub id: i64,
    pub message: String,
    /// `info`, `warning` or `danger`.
    pub level: String,
    /// `""`: everyone; else one system's name.
    pub system: String,
    /// When it ends by itself (microseconds); `None`: when deleted.
    pub ends: Option<i64>,
    pub set_by: String,
    pub created: i64,
}

const COLUMNS: &str = "id, message, level, system, ends, set_by, created";

fn from_row(r: &AnyRow) -> Result<AnnouncementRow, SqlError> {
    Ok(AnnouncementRow {
        id: r.try_get("id")?,
        message: r.try_get("message")?,
        level: r.try_get("level")?,
        system: r.try_get("system")?,
        ends: r.try_get("ends")?,
        set_by: r.try_get("set_by")?,
        created: r.try_get("created")?,
    })
}

/// Stores a new announcement (`row.id` is ignored) and deletes the ones that ended before
/// `now`; the new row with its id.
pub async fn insert(db: &Db, row: &AnnouncementRow, now: i64) -> Result<AnnouncementRow, SqlError> {
    let mut tx = db.pool.begin().await?;
    sqlx::query("DELETE FROM announcements WHERE ends IS NOT NULL AND ends <= $1")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let sql = format!(
        "INSERT INTO announcements (message, level, system, ends, set_by, created) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    );
    let stored = sqlx::query(&sql)
        .bind(&row.message)
        .bind(&row.level)
        .bind(&row.system)
        .bind(row.ends)
        .bind(&row.set_by)
        .bind(row.created)
        .fetch_one(&mut *tx)
        .await?;
    let stored = from_row(&stored)?;
    tx.commit().await?;
    Ok(stored)
}

/// Deletes one; whether it existed.
pub async fn delete(db: &Db, id: i64) -> Result<bool, SqlError> {
    let done = sqlx::query("DELETE FROM announcements WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Every stored announcement, oldest first (expired ones included: they are not shown).
pub async fn all(db: &Db) -> Result<Vec<AnnouncementRow>, SqlError> {
    let sql = format!("SELECT {COLUMNS} FROM announcements ORDER BY id");
    let rows = sqlx::query(&sql).fetch_all(&db.pool).await?;
    rows.iter().map(from_row).collect()
}
