//! `usage_sessions`: every server session, kept for the usage report (`crate::usage`,
//! docs/usage.md). Written beside `server_sessions` by the supervisor (`supervisor/history.rs`),
//! but never pruned and not deleted with the server or its user (the job is recorded with the
//! session's, `server_sessions::set_job`). At most one row per server is open (`ended` NULL).

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Db, SqlError};

/// What a start records (from the validated options).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewSession<'a> {
    pub server_id: i64,
    pub session_id: Option<i64>,
    pub user: &'a str,
    pub server: &'a str,
    pub system: &'a str,
    pub account: &'a str,
    pub partition: &'a str,
    pub nodes: i64,
    /// GPUs per node, as asked.
    pub gpus: i64,
    pub started: i64,
}

/// One session as the report reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageRow {
    pub id: i64,
    pub user: String,
    pub server: String,
    pub system: String,
    pub account: String,
    pub partition: String,
    pub nodes: i64,
    pub gpus: i64,
    pub job_id: Option<String>,
    pub started: i64,
    /// When the server was ready (NULL: it never was).
    pub ready: Option<i64>,
    pub ended: Option<i64>,
    /// Slurm accounting's figures, once the job ended: CPUs and GPUs held (all nodes) and
    /// seconds run.
    pub cpus: Option<i64>,
    pub elapsed: Option<i64>,
    pub job_gpus: Option<i64>,
    pub accounted: Option<i64>,
}

const COLUMNS: &str = "id, user_name, server_name, system, account, partition, nodes, gpus, \
     job_id, started, ready, ended, cpus, elapsed, job_gpus, accounted";

fn from_row(row: &AnyRow) -> Result<UsageRow, SqlError> {
    Ok(UsageRow {
        id: row.try_get("id")?,
        user: row.try_get("user_name")?,
        server: row.try_get("server_name")?,
        system: row.try_get("system")?,
        account: row.try_get("account")?,
        partition: row.try_get("partition")?,
        nodes: row.try_get("nodes")?,
        gpus: row.try_get("gpus")?,
        job_id: row.try_get("job_id")?,
        started: row.try_get("started")?,
        ready: row.try_get("ready")?,
        ended: row.try_get("ended")?,
        cpus: row.try_get("cpus")?,
        elapsed: row.try_get("elapsed")?,
        job_gpus: row.try_get("job_gpus")?,
        accounted: row.try_get("accounted")?,
    })
}

/// A new session, open; one left open by an earlier start of the server (its end never
/// recorded) is closed first, at this start.
pub async fn begin(db: &Db, s: &NewSession<'_>) -> Result<i64, SqlError> {
    let mut tx = db.pool.begin().await?;
    sqlx::query("UPDATE usage_sessions SET ended = $1 WHERE server_id = $2 AND ended IS NULL")
        .bind(s.started)
        .bind(s.server_id)
        .execute(&mut *tx)
        .await?;
    let row = sqlx::query(
        "INSERT INTO usage_sessions (server_id, session_id, user_name, server_name, system, \
         account, partition, nodes, gpus, started) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind(s.server_id)
    .bind(s.session_id)
    .bind(s.user)
    .bind(s.server)
    .bind(s.system)
    .bind(s.account)
    .bind(s.partition)
    .bind(s.nodes)
    .bind(s.gpus)
    .bind(s.started)
    .fetch_one(&mut *tx)
    .await?;
    let id: i64 = row.try_get("id")?;
    tx.commit().await?;
    Ok(id)
}

/// The open session's server became ready at `at`.
pub async fn set_ready(db: &Db, server_id: i64, at: i64) -> Result<(), SqlError> {
    sqlx::query(
        "UPDATE usage_sessions SET ready = $1 WHERE server_id = $2 AND ended IS NULL AND ready IS NULL",
    )
    .bind(at)
    .bind(server_id)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Ends the open session of `server_id`.
pub async fn end(db: &Db, server_id: i64, at: i64) -> Result<(), SqlError> {
    sqlx::query("UPDATE usage_sessions SET ended = $1 WHERE server_id = $2 AND ended IS NULL")
        .bind(at)
        .bind(server_id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// The sessions that overlap `[from, to)` (microseconds): started before `to` and not ended
/// before `from`; a session still open counts.
pub async fn overlapping(db: &Db, from: i64, to: i64) -> Result<Vec<UsageRow>, SqlError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM usage_sessions WHERE started < $1 AND (ended IS NULL OR ended > $2) \
         ORDER BY id"
    );
    let rows = sqlx::query(&sql)
        .bind(to)
        .bind(from)
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Ended sessions with a job and no accounting figures yet, ended after `since`, oldest
/// first, at most `limit`: what the accounting collector asks `sacct` about.
pub async fn unaccounted(db: &Db, since: i64, limit: i64) -> Result<Vec<UsageRow>, SqlError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM usage_sessions WHERE job_id IS NOT NULL AND ended IS NOT NULL \
         AND ended > $1 AND accounted IS NULL ORDER BY ended LIMIT $2"
    );
    let rows = sqlx::query(&sql)
        .bind(since)
        .bind(limit)
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Accounting's figures for the session `id`; its account too when the start named none
/// (the job was charged to the user's default account).
pub async fn set_accounting(
    db: &Db,
    id: i64,
    cpus: i64,
    elapsed: i64,
    gpus: i64,
    account: &str,
    at: i64,
) -> Result<(), SqlError> {
    sqlx::query(
        "UPDATE usage_sessions SET cpus = $1, elapsed = $2, job_gpus = $3, accounted = $4, \
         account = CASE WHEN account = '' THEN $5 ELSE account END WHERE id = $6",
    )
    .bind(cpus)
    .bind(elapsed)
    .bind(gpus)
    .bind(at)
    .bind(account)
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Every user's groups, as `(user, group)` pairs (the report's `by=group`: one query, however
/// many users the report has).
pub async fn user_groups(db: &Db) -> Result<Vec<(String, String)>, SqlError> {
    let rows = sqlx::query(
        "SELECT u.name AS user_name, g.name AS group_name FROM users u \
         JOIN user_groups ug ON ug.user_id = u.id JOIN groups g ON g.id = ug.group_id \
         ORDER BY u.name, g.name",
    )
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("user_name")?, r.try_get("group_name")?)))
        .collect()
}
