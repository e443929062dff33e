//! Server sharing: shares (scopes on one server for one user or group) and share codes
//! (hashed secrets a user exchanges for a share until they expire). Scopes are stored as bare
//! names; their filter is always the server's own, added where they are read.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::tokens::{self, GENERATED_ROUNDS, PREFIX_LEN};
use super::{now_micros, Db, SqlError};

/// Who a share is for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum With {
    User(i64),
    Group(i64),
}

/// Which shares (or codes) to list.
#[derive(Clone, Copy, Debug)]
pub enum Scope {
    /// All servers of an owner.
    Owner(i64),
    Server(i64),
    /// Shared with a user directly or through one of the user's groups.
    SharedWithUser(i64),
    SharedWithGroup(i64),
}

/// A share with the names an API model needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Share {
    pub id: i64,
    pub server_id: i64,
    pub owner_id: i64,
    pub owner: String,
    pub server_name: String,
    pub user: Option<String>,
    pub group: Option<String>,
    /// Bare scope names (`access:servers`).
    pub scopes: Vec<String>,
    pub created: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ShareCode {
    pub id: i64,
    pub server_id: i64,
    pub owner_id: i64,
    pub owner: String,
    pub server_name: String,
    pub scopes: Vec<String>,
    pub created: i64,
    pub expires_at: i64,
    pub exchange_count: i64,
    pub last_exchanged_at: Option<i64>,
}

/// `scope!server=owner/server` for every stored scope name.
pub fn filtered_scopes(scopes: &[String], owner: &str, server: &str) -> Vec<String> {
    scopes
        .iter()
        .map(|s| format!("{s}!server={owner}/{server}"))
        .collect()
}

fn scopes_of(row: &AnyRow) -> Result<Vec<String>, SqlError> {
    let text: String = row.try_get("scopes")?;
    Ok(serde_json::from_str(&text).unwrap_or_default())
}

const SHARE_SELECT: &str =
    "SELECT s.id, s.server_id, sv.user_id AS owner_id, o.name AS owner, sv.name AS server_name, \
     u.name AS user_name, g.name AS group_name, s.scopes, s.created \
     FROM shares s JOIN servers sv ON sv.id = s.server_id JOIN users o ON o.id = sv.user_id \
     LEFT JOIN users u ON u.id = s.user_id LEFT JOIN groups g ON g.id = s.group_id";

fn share_from_row(row: &AnyRow) -> Result<Share, SqlError> {
    Ok(Share {
        id: row.try_get("id")?,
        server_id: row.try_get("server_id")?,
        owner_id: row.try_get("owner_id")?,
        owner: row.try_get("owner")?,
        server_name: row.try_get("server_name")?,
        user: row.try_get("user_name")?,
        group: row.try_get("group_name")?,
        scopes: scopes_of(row)?,
        created: row.try_get("created")?,
    })
}

const CODE_SELECT: &str =
    "SELECT c.id, c.server_id, sv.user_id AS owner_id, o.name AS owner, sv.name AS server_name, \
     c.scopes, c.created, c.expires_at, c.exchange_count, c.last_exchanged_at, c.hashed \
     FROM share_codes c JOIN servers sv ON sv.id = c.server_id JOIN users o ON o.id = sv.user_id";

fn code_from_row(row: &AnyRow) -> Result<ShareCode, SqlError> {
    Ok(ShareCode {
        id: row.try_get("id")?,
        server_id: row.try_get("server_id")?,
        owner_id: row.try_get("owner_id")?,
        owner: row.try_get("owner")?,
        server_name: row.try_get("server_name")?,
        scopes: scopes_of(row)?,
        created: row.try_get("created")?,
        expires_at: row.try_get("expires_at")?,
        exchange_count: row.try_get("exchange_count")?,
        last_exchanged_at: row.try_get("last_exchanged_at")?,
    })
}

/// The WHERE clause of a listing; `$1` is the id.
fn condition(scope: Scope, table: &str) -> String {
    match scope {
        Scope::Owner(_) => "sv.user_id = $1".into(),
        Scope::Server(_) => format!("{table}.server_id = $1"),
        Scope::SharedWithUser(_) => format!(
            "({table}.user_id = $1 OR {table}.group_id IN (SELECT group_id FROM user_groups WHERE user_id = $1))"
        ),
        Scope::SharedWithGroup(_) => format!("{table}.group_id = $1"),
    }
}

fn scope_id(scope: Scope) -> i64 {
    match scope {
        Scope::Owner(id)
        | Scope::Server(id)
        | Scope::SharedWithUser(id)
        | Scope::SharedWithGroup(id) => id,
    }
}

/// One page of shares, oldest first, and the total.
pub async fn list(
    db: &Db,
    scope: Scope,
    offset: i64,
    limit: i64,
) -> Result<(Vec<Share>, i64), SqlError> {
    let cond = condition(scope, "s");
    let total: i64 = sqlx::query(&format!(
        "SELECT COUNT(*) AS n FROM shares s JOIN servers sv ON sv.id = s.server_id WHERE {cond}"
    ))
    .bind(scope_id(scope))
    .fetch_one(&db.pool)
    .await?
    .try_get("n")?;
    let rows = sqlx::query(&format!(
        "{SHARE_SELECT} WHERE {cond} ORDER BY s.id LIMIT $2 OFFSET $3"
    ))
    .bind(scope_id(scope))
    .bind(limit)
    .bind(offset)
    .fetch_all(&db.pool)
    .await?;
    let shares = rows.iter().map(share_from_row).collect::<Result<_, _>>()?;
    Ok((shares, total))
}

pub async fn find(db: &Db, server_id: i64, with: With) -> Result<Option<Share>, SqlError> {
    let (column, id) = match with {
        With::User(id) => ("user_id", id),
        With::Group(id) => ("group_id", id),
    };
    let row = sqlx::query(&format!(
        "{SHARE_SELECT} WHERE s.server_id = $1 AND s.{column} = $2"
    ))
    .bind(server_id)
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref().map(share_from_row).transpose()
}

/// Adds scopes to the share of `with` on a server, creating it if needed.
pub async fn grant(
    db: &Db,
    server_id: i64,
    with: With,
    scopes: &[String],
) -> Result<Share, SqlError> {
    let _authz = db.authz_write();
    for _ in 0..2 {
        if let Some(existing) = find(db, server_id, with).await? {
            let mut all = existing.scopes.clone();
            all.extend(scopes.iter().cloned());
            all.sort();
            all.dedup();
            if all != existing.scopes {
                set_scopes(db, existing.id, &all).await?;
            }
            return Ok(Share {
                scopes: all,
                ..existing
            });
        }
        let (user_id, group_id) = match with {
            With::User(id) => (Some(id), None),
            With::Group(id) => (None, Some(id)),
        };
        let mut sorted = scopes.to_vec();
        sorted.sort();
        sorted.dedup();
        let inserted = sqlx::query(
            "INSERT INTO shares (server_id, user_id, group_id, scopes, created) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(server_id)
        .bind(user_id)
        .bind(group_id)
        .bind(serde_json::to_string(&sorted).unwrap_or_else(|_| "[]".into()))
        .bind(now_micros())
        .execute(&db.pool)
        .await;
        match inserted {
            // Another request created it meanwhile: merge into that one.
            Err(e) if super::is_unique_violation(&e) => continue,
            Err(e) => return Err(e),
            Ok(_) => {}
        }
    }
    find(db, server_id, with)
        .await?
        .ok_or(sqlx::Error::RowNotFound)
}

pub async fn set_scopes(db: &Db, id: i64, scopes: &[String]) -> Result<(), SqlError> {
    let _authz = db.authz_write();
    sqlx::query("UPDATE shares SET scopes = $1 WHERE id = $2")
        .bind(serde_json::to_string(scopes).unwrap_or_else(|_| "[]".into()))
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

pub async fn delete(db: &Db, id: i64) -> Result<(), SqlError> {
    let _authz = db.authz_write();
    sqlx::query("DELETE FROM shares WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

pub async fn delete_for_server(db: &Db, server_id: i64) -> Result<u64, SqlError> {
    let _authz = db.authz_write();
    let done = sqlx::query("DELETE FROM shares WHERE server_id = $1")
        .bind(server_id)
        .execute(&db.pool)
        .await?;
    Ok(done.rows_affected())
}

/// Every scope shared with a user, directly or through a group, with its server filter.
pub async fn scopes_for_user(db: &Db, user_id: i64) -> Result<Vec<String>, SqlError> {
    let cond = condition(Scope::SharedWithUser(user_id), "s");
    let rows = sqlx::query(&format!(
        "SELECT s.scopes, o.name AS owner, sv.name AS server_name \
         FROM shares s JOIN servers sv ON sv.id = s.server_id JOIN users o ON o.id = sv.user_id \
         WHERE {cond}"
    ))
    .bind(user_id)
    .fetch_all(&db.pool)
    .await?;
    let mut out = Vec::new();
    for row in &rows {
        let owner: String = row.try_get("owner")?;
        let server: String = row.try_get("server_name")?;
        out.extend(filtered_scopes(&scopes_of(row)?, &owner, &server));
    }
    Ok(out)
}

/// A new code for a server; the secret is returned once and stored only hashed.
pub async fn create_code(
    db: &Db,
    server_id: i64,
    scopes: &[String],
    expires_at: i64,
) -> Result<(ShareCode, String), SqlError> {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let code = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let id: i64 = sqlx::query(
        "INSERT INTO share_codes (server_id, prefix, hashed, scopes, created, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(server_id)
    .bind(&code[..PREFIX_LEN])
    .bind(tokens::hash(&code, GENERATED_ROUNDS))
    .bind(serde_json::to_string(scopes).unwrap_or_else(|_| "[]".into()))
    .bind(now_micros())
    .bind(expires_at)
    .fetch_one(&db.pool)
    .await?
    .try_get("id")?;
    let row = sqlx::query(&format!("{CODE_SELECT} WHERE c.id = $1"))
        .bind(id)
        .fetch_one(&db.pool)
        .await?;
    Ok((code_from_row(&row)?, code))
}

/// Expired codes are never shown nor accepted; they are deleted when met.
pub async fn purge_expired_codes(db: &Db) -> Result<(), SqlError> {
    sqlx::query("DELETE FROM share_codes WHERE expires_at <= $1")
        .bind(now_micros())
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// One page of live codes, oldest first, and the total.
pub async fn list_codes(
    db: &Db,
    scope: Scope,
    offset: i64,
    limit: i64,
) -> Result<(Vec<ShareCode>, i64), SqlError> {
    purge_expired_codes(db).await?;
    let cond = condition(scope, "c");
    let total: i64 = sqlx::query(&format!(
        "SELECT COUNT(*) AS n FROM share_codes c JOIN servers sv ON sv.id = c.server_id WHERE {cond}"
    ))
    .bind(scope_id(scope))
    .fetch_one(&db.pool)
    .await?
    .try_get("n")?;
    let rows = sqlx::query(&format!(
        "{CODE_SELECT} WHERE {cond} ORDER BY c.id LIMIT $2 OFFSET $3"
    ))
    .bind(scope_id(scope))
    .bind(limit)
    .bind(offset)
    .fetch_all(&db.pool)
    .await?;
    let codes = rows.iter().map(code_from_row).collect::<Result<_, _>>()?;
    Ok((codes, total))
}

/// The live code matching a secret (optionally only on one server).
pub async fn find_code(
    db: &Db,
    code: &str,
    server_id: Option<i64>,
) -> Result<Option<ShareCode>, SqlError> {
    purge_expired_codes(db).await?;
    let Some(prefix) = code.get(..PREFIX_LEN) else {
        return Ok(None);
    };
    let rows = sqlx::query(&format!("{CODE_SELECT} WHERE c.prefix = $1"))
        .bind(prefix)
        .fetch_all(&db.pool)
        .await?;
    for row in &rows {
        let hashed: String = row.try_get("hashed")?;
        if tokens::verify(code, &hashed) {
            let found = code_from_row(row)?;
            if server_id.is_none_or(|id| id == found.server_id) {
                return Ok(Some(found));
            }
        }
    }
    Ok(None)
}

/// Deletes one code of a server (by id), or all of them (`None`); returns how many.
pub async fn delete_codes(db: &Db, server_id: i64, id: Option<i64>) -> Result<u64, SqlError> {
    let done = match id {
        Some(id) => {
            sqlx::query("DELETE FROM share_codes WHERE server_id = $1 AND id = $2")
                .bind(server_id)
                .bind(id)
                .execute(&db.pool)
                .await?
        }
        None => {
            sqlx::query("DELETE FROM share_codes WHERE server_id = $1")
                .bind(server_id)
                .execute(&db.pool)
                .await?
        }
    };
    Ok(done.rows_affected())
}

pub async fn record_exchange(db: &Db, id: i64) -> Result<(), SqlError> {
    sqlx::query(
        "UPDATE share_codes SET exchange_count = exchange_count + 1, last_exchanged_at = $1 WHERE id = $2",
    )
    .bind(now_micros())
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(())
}
