//! One row per (user, server name): the spawner's persisted record. `started` is set while the
//! server is starting or running; `ip`/`port` only once it is ready.

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{json_column, placeholders, Db, SqlError};

#[derive(Clone, Debug, PartialEq)]
pub struct ServerRow {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub display_name: String,
    pub state: Value,
    pub user_options: Value,
    pub started: Option<i64>,
    pub last_activity: Option<i64>,
    pub ip: Option<String>,
    pub port: Option<i64>,
}

const COLUMNS: &str =
    "id, user_id, name, display_name, state, user_options, started, last_activity, ip, port";

fn from_row(row: &AnyRow) -> Result<ServerRow, SqlError> {
    Ok(ServerRow {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        display_name: row.try_get("display_name")?,
        state: json_column(row, "state")?,
        user_options: json_column(row, "user_options")?,
        started: row.try_get("started")?,
        last_activity: row.try_get("last_activity")?,
        ip: row.try_get("ip")?,
        port: row.try_get("port")?,
    })
}

pub async fn get(db: &Db, user_id: i64, name: &str) -> Result<Option<ServerRow>, SqlError> {
    let sql = format!("SELECT {COLUMNS} FROM servers WHERE user_id = $1 AND name = $2");
    let row = sqlx::query(&sql)
        .bind(user_id)
        .bind(name)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list_for_user(db: &Db, user_id: i64) -> Result<Vec<ServerRow>, SqlError> {
    let sql = format!("SELECT {COLUMNS} FROM servers WHERE user_id = $1 ORDER BY name");
    let rows = sqlx::query(&sql).bind(user_id).fetch_all(&db.pool).await?;
    rows.iter().map(from_row).collect()
}

/// The servers of many users in one query (for user lists).
pub async fn list_for_users(db: &Db, user_ids: &[i64]) -> Result<Vec<ServerRow>, SqlError> {
    if user_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM servers WHERE user_id IN ({}) ORDER BY user_id, name",
        placeholders(0, user_ids.len())
    );
    let mut q = sqlx::query(&sql);
    for id in user_ids {
        q = q.bind(*id);
    }
    let rows = q.fetch_all(&db.pool).await?;
    rows.iter().map(from_row).collect()
}

/// Every server recorded as started (for re-adoption when the hub starts).
pub async fn list_started(db: &Db) -> Result<Vec<ServerRow>, SqlError> {
    let sql = format!("SELECT {COLUMNS} FROM servers WHERE started IS NOT NULL ORDER BY id");
    let rows = sqlx::query(&sql).fetch_all(&db.pool).await?;
    rows.iter().map(from_row).collect()
}

/// The row for (user, name), created if missing.
pub async fn ensure(db: &Db, user_id: i64, name: &str) -> Result<ServerRow, SqlError> {
    if let Some(row) = get(db, user_id, name).await? {
        return Ok(row);
    }
    let sql = format!("INSERT INTO servers (user_id, name) VALUES ($1, $2) RETURNING {COLUMNS}");
    match sqlx::query(&sql)
        .bind(user_id)
        .bind(name)
        .fetch_one(&db.pool)
        .await
    {
        Ok(row) => from_row(&row),
        // Lost a race with another request: the row exists now.
        Err(e) if super::is_unique_violation(&e) => get(db, user_id, name).await?.ok_or(e),
        Err(e) => Err(e),
    }
}

/// Records a start: options and start time, no endpoint yet.
pub async fn mark_starting(
    db: &Db,
    id: i64,
    user_options: &Value,
    started: i64,
) -> Result<(), SqlError> {
    sqlx::query(
        "UPDATE servers SET user_options = $1, started = $2, ip = NULL, port = NULL WHERE id = $3",
    )
    .bind(user_options.to_string())
    .bind(started)
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(())
}

pub async fn set_state(db: &Db, id: i64, state: &Value) -> Result<(), SqlError> {
    sqlx::query("UPDATE servers SET state = $1 WHERE id = $2")
        .bind(state.to_string())
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// A port a starting server reported (batchspawner); `ip` stays unset until it is ready, so a
/// restarted hub knows the port of a server it resumes.
pub async fn set_reported_port(db: &Db, id: i64, port: u16) -> Result<(), SqlError> {
    sqlx::query("UPDATE servers SET port = $1 WHERE id = $2 AND ip IS NULL")
        .bind(i64::from(port))
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

pub async fn mark_ready(db: &Db, id: i64, ip: &str, port: u16) -> Result<(), SqlError> {
    sqlx::query("UPDATE servers SET ip = $1, port = $2 WHERE id = $3")
        .bind(ip)
        .bind(i64::from(port))
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

pub async fn mark_stopped(db: &Db, id: i64) -> Result<(), SqlError> {
    sqlx::query(
        "UPDATE servers SET started = NULL, ip = NULL, port = NULL, state = '{}' WHERE id = $1",
    )
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Moves `last_activity` forward only.
pub async fn touch_activity(db: &Db, id: i64, at: i64) -> Result<(), SqlError> {
    sqlx::query(
        "UPDATE servers SET last_activity = $1 WHERE id = $2 AND (last_activity IS NULL OR last_activity < $1)",
    )
    .bind(at)
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(())
}

pub async fn delete(db: &Db, id: i64) -> Result<(), SqlError> {
    let _authz = db.authz_write();
    sqlx::query("DELETE FROM servers WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// A new named server that has not started yet. `None` when the name is taken.
pub async fn create(
    db: &Db,
    user_id: i64,
    name: &str,
    display_name: &str,
    user_options: &Value,
) -> Result<Option<ServerRow>, SqlError> {
    let sql = format!(
        "INSERT INTO servers (user_id, name, display_name, user_options) VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"
    );
    match sqlx::query(&sql)
        .bind(user_id)
        .bind(name)
        .bind(display_name)
        .bind(user_options.to_string())
        .fetch_one(&db.pool)
        .await
    {
        Ok(row) => from_row(&row).map(Some),
        Err(e) if super::is_unique_violation(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Renames a server and sets its display name and options, in one statement. `None` when the
/// new name is taken.
pub async fn update(
    db: &Db,
    id: i64,
    name: &str,
    display_name: &str,
    user_options: &Value,
) -> Result<Option<ServerRow>, SqlError> {
    let _authz = db.authz_write();
    let sql = format!(
        "UPDATE servers SET name = $1, display_name = $2, user_options = $3 WHERE id = $4 RETURNING {COLUMNS}"
    );
    match sqlx::query(&sql)
        .bind(name)
        .bind(display_name)
        .bind(user_options.to_string())
        .bind(id)
        .fetch_optional(&db.pool)
        .await
    {
        Ok(row) => row.as_ref().map(from_row).transpose(),
        Err(e) if super::is_unique_violation(&e) => Ok(None),
        Err(e) => Err(e),
    }
}
