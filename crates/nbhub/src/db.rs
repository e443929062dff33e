//! The database: SQLite by default, PostgreSQL when `hub.db_url` says so.
//!
//! One set of queries serves both backends through sqlx's `Any` driver: placeholders are `$N`
//! (SQLite understands them too), timestamps are `BIGINT` microseconds, booleans are 0/1 and JSON
//! is `TEXT`. Each backend has its own migrations folder because DDL differs (id columns).
//!
//! # Layout
//! - [`users`]: users, their groups and roles, native passwords.
//! - [`groups`]: groups and membership.
//! - [`servers`]: one row per (user, server name): the spawner's record.
//! - [`server_sessions`]: each server's recent sessions (options, job, start, end, how).
//! - [`usage`]: every session, kept for the usage report (never pruned).
//! - [`announcements`]: what admins tell every user.
//! - [`tokens`]: API tokens, stored as salted hashes.
//! - [`oauth`]: OAuth clients and codes.
//! - [`services`] and roles loaded from the config.

pub mod announcements;
pub mod groups;
pub mod maintenance;
pub mod oauth;
pub mod server_sessions;
pub mod servers;
pub mod services;
pub mod sessions;
pub mod shares;
pub mod tokens;
pub mod usage;
pub mod users;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

pub use sqlx::Error as SqlError;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    /// Bumped after every write that can change who a token or user is or what it may do
    /// (tokens, users, groups, roles, shares, services): cached identities from an older epoch
    /// are not used (see `crate::auth::cache`).
    authz_epoch: Arc<AtomicU64>,
}

/// Bumps the authorization epoch when dropped, i.e. after the write it guards has finished
/// (committed or failed: a needless bump only costs one cache miss).
pub struct AuthzWrite<'a>(Option<&'a AtomicU64>);

impl AuthzWrite<'_> {
    /// The write changed nothing (no row matched): cached identities stay valid.
    pub fn unchanged(mut self) {
        self.0 = None;
    }
}

impl Drop for AuthzWrite<'_> {
    fn drop(&mut self) {
        if let Some(epoch) = self.0 {
            epoch.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Replaces the password in a database URL, for logs and error messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

impl Db {
    /// Connect and run the migrations of the backend the URL names.
    pub async fn connect(url: &str) -> Result<Db, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let mut options = AnyPoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT);
        options = match backend {
            // One connection: SQLite has one writer anyway, and with several a writer that
            // finds the database locked sleeps in SQLite's busy handler (1, 2, 5, 10 … ms).
            // One connection queues statements in order; they take microseconds, nothing holds
            // it across other work, and in bench/hub it halved the CPU per API request. A
            // local file cannot drop the connection: no ping before each statement.
            Backend::Sqlite => options
                .max_connections(1)
                .test_before_acquire(false)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        // WAL with synchronous = NORMAL cannot corrupt the database; a power
                        // cut may lose the last commits, but no commit waits for an fsync.
                        for pragma in [
                            "PRAGMA foreign_keys = ON",
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = NORMAL",
                            "PRAGMA busy_timeout = 5000",
                        ] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                        Ok(())
                    })
                }),
            // A connection that died with a restart of the server is found by the ping before
            // it is handed out (`test_before_acquire`) and replaced; one idle for a minute is
            // closed, so that few dead ones wait in the pool after an outage.
            Backend::Postgres => options
                .max_connections(16)
                .test_before_acquire(true)
                .idle_timeout(Duration::from_secs(60)),
        };
        let pool = options.connect(url).await?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&pool).await?;
        Ok(Db {
            pool,
            backend,
            authz_epoch: Arc::default(),
        })
    }

    /// The authorization epoch now; read it before the queries whose result is cached.
    pub fn authz_epoch(&self) -> u64 {
        self.authz_epoch.load(Ordering::Acquire)
    }

    /// Held by a write to tokens, users, groups, roles, shares or services.
    pub fn authz_write(&self) -> AuthzWrite<'_> {
        AuthzWrite(Some(&self.authz_epoch))
    }
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1000) as i64
}

/// JupyterHub's timestamp format: naive UTC with microseconds and a `Z`
/// (`2026-11-26T11:26:43.545556Z`; the fraction dropped when it is zero, as Python does).
pub fn format_timestamp(micros: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000) else {
        return String::new();
    };
    let frac = t.microsecond();
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if frac == 0 {
        format!("{base}Z")
    } else {
        format!("{base}.{frac:06}Z")
    }
}

/// Parse an ISO-8601 timestamp as clients send it (`Z`, an offset, or naive = UTC).
pub fn parse_timestamp(s: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    let s = s.trim();
    let parsed = time::OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| time::OffsetDateTime::parse(&format!("{s}Z"), &Rfc3339))
        .ok()?;
    Some((parsed.unix_timestamp_nanos() / 1000) as i64)
}

/// Reads an optional JSON text column.
pub(crate) fn json_column(row: &AnyRow, column: &str) -> Result<serde_json::Value, sqlx::Error> {
    let text: Option<String> = row.try_get(column)?;
    Ok(match text {
        Some(t) if !t.is_empty() => serde_json::from_str(&t).unwrap_or(serde_json::Value::Null),
        _ => serde_json::Value::Null,
    })
}

/// Builds `$1, $2, …` placeholder lists for `IN (…)` clauses, starting after `first`.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first + 1..=first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How long a query waits for a connection. While the database is down, the pool keeps
/// trying to connect until then: this bounds how long a request waits before its 503.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// When a client told that the database is unavailable should try again (`Retry-After`).
pub const RETRY_AFTER_SECS: u64 = 5;

/// What the client of a request that needed an unreachable database is told.
pub const UNAVAILABLE_MESSAGE: &str = "The hub's database is not reachable; retry in a few seconds";

/// The database could not be reached (restart, failover, network): a state that passes,
/// unlike a query that is wrong. Nothing was written by the statement that failed this way
/// unless its commit had been acknowledged, which the caller then did not see: callers
/// answer "try again", never "done".
#[derive(Debug, thiserror::Error)]
#[error("the database is not reachable: {0}")]
pub struct Unavailable(pub sqlx::Error);

/// True when `err` says the database is not reachable now rather than that the statement
/// failed: no connection within [`ACQUIRE_TIMEOUT`], a broken or refused connection, or the
/// server going away (PostgreSQL's `57P01` admin_shutdown, `57P02` crash_shutdown, `57P03`
/// cannot_connect_now, the `08` connection-exception class).
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            matches!(code.as_ref(), "57P01" | "57P02" | "57P03") || code.starts_with("08")
        }),
        // A connection that ended in the middle of a message.
        sqlx::Error::Protocol(msg) => {
            let msg = msg.to_ascii_lowercase();
            msg.contains("connection") && (msg.contains("closed") || msg.contains("reset"))
        }
        _ => false,
    }
}

/// True for a unique-constraint violation on either backend.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.is_unique_violation() || db.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_in_jupyterhub_format() {
        let t = parse_timestamp("2026-11-26T11:26:43.545556Z").expect("parses");
        assert_eq!(format_timestamp(t), "2026-11-26T11:26:43.545556Z");
        let t = parse_timestamp("2026-11-26T11:26:43Z").expect("parses");
        assert_eq!(format_timestamp(t), "2026-11-26T11:26:43Z");
        assert_eq!(
            parse_timestamp("2026-11-26T11:26:43.5"),
            parse_timestamp("2026-11-26T11:26:43.500Z")
        );
        assert!(parse_timestamp("yesterday").is_none());
    }

    #[test]
    fn an_unreachable_database_is_told_from_a_failed_query() {
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(is_unavailable(&sqlx::Error::Io(refused)));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        assert!(!is_unavailable(&sqlx::Error::ColumnNotFound("id".into())));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgresql://u:secret@h/db"),
            "postgresql://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
