//! API tokens. Only a salted hash and a 4-character prefix (to find candidates) are stored; the
//! token itself is shown once, when it is made.
//!
//! Hash format, as JupyterHub's: `sha512:<rounds>:<salt hex>:<digest hex>` where the digest is
//! sha512(salt ‖ token × rounds). Tokens the hub makes are 128 random bits, so one round is
//! enough; tokens an admin writes into the config may be weak and get 16384 rounds.

use rand::RngCore;
use sha2::{Digest, Sha512};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{now_micros, Db, SqlError};

pub const PREFIX_LEN: usize = 4;
pub const GENERATED_ROUNDS: u32 = 1;
pub const CONFIGURED_ROUNDS: u32 = 16384;
/// The `client_id` of plain API tokens (not issued through OAuth).
pub const API_CLIENT_ID: &str = "jupyterhub";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    User(i64),
    Service(i64),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub id: i64,
    pub owner: Owner,
    pub client_id: String,
    pub session_id: Option<String>,
    pub note: String,
    pub scopes: Vec<String>,
    pub created: i64,
    pub expires_at: Option<i64>,
    pub last_activity: Option<i64>,
}

impl Token {
    /// The API's id form, `a<row id>`.
    pub fn api_id(&self) -> String {
        format!("a{}", self.id)
    }
}

pub struct NewToken<'a> {
    pub owner: Owner,
    pub token: &'a str,
    pub rounds: u32,
    pub client_id: &'a str,
    pub session_id: Option<&'a str>,
    pub note: &'a str,
    pub scopes: &'a [String],
    pub expires_at: Option<i64>,
}

const COLUMNS: &str =
    "id, hashed, user_id, service_id, client_id, session_id, note, scopes, created, expires_at, last_activity";

fn from_row(row: &AnyRow) -> Result<Token, SqlError> {
    let user_id: Option<i64> = row.try_get("user_id")?;
    let service_id: Option<i64> = row.try_get("service_id")?;
    let owner = match (user_id, service_id) {
        (Some(u), _) => Owner::User(u),
        (None, Some(s)) => Owner::Service(s),
        (None, None) => return Err(SqlError::Decode("api token without owner".into())),
    };
    let scopes: String = row.try_get("scopes")?;
    Ok(Token {
        id: row.try_get("id")?,
        owner,
        client_id: row.try_get("client_id")?,
        session_id: row.try_get("session_id")?,
        note: row.try_get("note")?,
        scopes: serde_json::from_str(&scopes).unwrap_or_default(),
        created: row.try_get("created")?,
        expires_at: row.try_get("expires_at")?,
        last_activity: row.try_get("last_activity")?,
    })
}

/// A new token: 32 lowercase hex characters, like JupyterHub's.
pub fn generate() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn hash(token: &str, rounds: u32) -> String {
    let mut salt = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt = hex::encode(salt);
    format!("sha512:{rounds}:{salt}:{}", digest(token, rounds, &salt))
}

fn digest(token: &str, rounds: u32, salt_hex: &str) -> String {
    let mut h = Sha512::new();
    h.update(salt_hex.as_bytes());
    for _ in 0..rounds.max(1) {
        h.update(token.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Checks `token` against a stored hash in constant time.
pub fn verify(token: &str, hashed: &str) -> bool {
    let mut parts = hashed.splitn(4, ':');
    let (Some("sha512"), Some(rounds), Some(salt), Some(expected)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(rounds) = rounds.parse::<u32>() else {
        return false;
    };
    crate::secrets::constant_time_eq(digest(token, rounds, salt).as_bytes(), expected.as_bytes())
}

fn prefix(token: &str) -> &str {
    token.get(..PREFIX_LEN).unwrap_or(token)
}

pub async fn insert(db: &Db, t: &NewToken<'_>) -> Result<Token, SqlError> {
    let (user_id, service_id) = match t.owner {
        Owner::User(id) => (Some(id), None),
        Owner::Service(id) => (None, Some(id)),
    };
    let sql = format!(
        "INSERT INTO api_tokens (prefix, hashed, user_id, service_id, client_id, session_id, note, scopes, created, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(prefix(t.token))
        .bind(hash(t.token, t.rounds))
        .bind(user_id)
        .bind(service_id)
        .bind(t.client_id)
        .bind(t.session_id)
        .bind(t.note)
        .bind(serde_json::to_string(t.scopes).unwrap_or_else(|_| "[]".into()))
        .bind(now_micros())
        .bind(t.expires_at)
        .fetch_one(&db.pool)
        .await?;
    from_row(&row)
}

/// The live (unexpired) token row for a presented token, if any.
pub async fn find(db: &Db, token: &str) -> Result<Option<Token>, SqlError> {
    if !(8..=255).contains(&token.len()) {
        return Ok(None);
    }
    let sql = format!("SELECT {COLUMNS} FROM api_tokens WHERE prefix = $1 AND (expires_at IS NULL OR expires_at > $2)");
    let rows = sqlx::query(&sql)
        .bind(prefix(token))
        .bind(now_micros())
        .fetch_all(&db.pool)
        .await?;
    for row in &rows {
        let hashed: String = row.try_get("hashed")?;
        if verify(token, &hashed) {
            return from_row(row).map(Some);
        }
    }
    Ok(None)
}

/// True if `token` matches the stored hash of row `id` (used to keep config tokens in sync).
pub async fn matches(db: &Db, id: i64, token: &str) -> Result<bool, SqlError> {
    let row = sqlx::query("SELECT hashed FROM api_tokens WHERE id = $1")
        .bind(id)
        .fetch_optional(&db.pool)
        .await?;
    Ok(match row {
        Some(r) => verify(token, &r.try_get::<String, _>("hashed")?),
        None => false,
    })
}

pub async fn get(db: &Db, id: i64) -> Result<Option<Token>, SqlError> {
    let sql = format!("SELECT {COLUMNS} FROM api_tokens WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(&db.pool).await?;
    row.as_ref().map(from_row).transpose()
}

/// Unexpired tokens of an owner, oldest first.
pub async fn list_for(db: &Db, owner: Owner) -> Result<Vec<Token>, SqlError> {
    let (column, id) = match owner {
        Owner::User(id) => ("user_id", id),
        Owner::Service(id) => ("service_id", id),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM api_tokens WHERE {column} = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY id"
    );
    let rows = sqlx::query(&sql)
        .bind(id)
        .bind(now_micros())
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(from_row).collect()
}

pub async fn delete(db: &Db, id: i64) -> Result<(), SqlError> {
    let _authz = db.authz_write();
    sqlx::query("DELETE FROM api_tokens WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Revoking an OAuth token revokes every token the user got through that client.
pub async fn delete_for_client(db: &Db, user_id: i64, client_id: &str) -> Result<(), SqlError> {
    let _authz = db.authz_write();
    sqlx::query("DELETE FROM api_tokens WHERE user_id = $1 AND client_id = $2")
        .bind(user_id)
        .bind(client_id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// A server's own token is found by its note (`Server at /user/alice/`).
pub async fn delete_by_note(db: &Db, user_id: i64, note: &str) -> Result<(), SqlError> {
    let authz = db.authz_write();
    let done =
        sqlx::query("DELETE FROM api_tokens WHERE user_id = $1 AND note = $2 AND client_id = $3")
            .bind(user_id)
            .bind(note)
            .bind(API_CLIENT_ID)
            .execute(&db.pool)
            .await?;
    // A first spawn has no old token to revoke: the other users' cached identities stay.
    if done.rows_affected() == 0 {
        authz.unchanged();
    }
    Ok(())
}

/// Logout: the session's OAuth tokens go with it.
pub async fn delete_for_session(db: &Db, session_id: &str) -> Result<(), SqlError> {
    let _authz = db.authz_write();
    sqlx::query("DELETE FROM api_tokens WHERE session_id = $1")
        .bind(session_id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

pub async fn purge_expired(db: &Db) -> Result<u64, SqlError> {
    let _authz = db.authz_write();
    let done =
        sqlx::query("DELETE FROM api_tokens WHERE expires_at IS NOT NULL AND expires_at <= $1")
            .bind(now_micros())
            .execute(&db.pool)
            .await?;
    Ok(done.rows_affected())
}

pub async fn touch(db: &Db, id: i64, at: i64) -> Result<(), SqlError> {
    sqlx::query("UPDATE api_tokens SET last_activity = $1 WHERE id = $2")
        .bind(at)
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let token = generate();
        assert_eq!(token.len(), 32);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
        let h = hash(&token, GENERATED_ROUNDS);
        assert!(h.starts_with("sha512:1:"));
        assert!(!h.contains(&token));
        assert!(verify(&token, &h));
        assert!(!verify("0123456789abcdef0123456789abcdef", &h));
        let h = hash("config-token", CONFIGURED_ROUNDS);
        assert!(verify("config-token", &h));
        assert!(!verify("config-token", "plain"));
    }
}
