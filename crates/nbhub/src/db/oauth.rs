//! OAuth clients (one per single-user server and per service) and authorization codes.
//! Client secrets and codes are stored hashed.

use sqlx::Row;

use super::{now_micros, tokens, Db, SqlError};

#[derive(Clone, Debug, PartialEq)]
pub struct Client {
    pub identifier: String,
    pub description: String,
    pub redirect_uri: String,
    pub allowed_scopes: Vec<String>,
}

pub struct NewClient<'a> {
    pub identifier: &'a str,
    pub description: &'a str,
    pub secret: &'a str,
    pub redirect_uri: &'a str,
    pub allowed_scopes: &'a [String],
}

/// Creates or replaces a client (its secret changes with every server start).
pub async fn upsert_client(db: &Db, c: &NewClient<'_>) -> Result<(), SqlError> {
    let mut tx = db.pool.begin().await?;
    sqlx::query("DELETE FROM oauth_clients WHERE identifier = $1")
        .bind(c.identifier)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO oauth_clients (identifier, description, secret, redirect_uri, allowed_scopes) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(c.identifier)
    .bind(c.description)
    .bind(tokens::hash(c.secret, tokens::GENERATED_ROUNDS))
    .bind(c.redirect_uri)
    .bind(serde_json::to_string(c.allowed_scopes).unwrap_or_else(|_| "[]".into()))
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

pub async fn get_client(db: &Db, identifier: &str) -> Result<Option<Client>, SqlError> {
    let row = sqlx::query("SELECT identifier, description, redirect_uri, allowed_scopes FROM oauth_clients WHERE identifier = $1")
        .bind(identifier)
        .fetch_optional(&db.pool)
        .await?;
    row.map(|r| {
        let scopes: String = r.try_get("allowed_scopes")?;
        Ok(Client {
            identifier: r.try_get("identifier")?,
            description: r.try_get("description")?,
            redirect_uri: r.try_get("redirect_uri")?,
            allowed_scopes: serde_json::from_str(&scopes).unwrap_or_default(),
        })
    })
    .transpose()
}

/// Checks a client's secret.
pub async fn verify_client_secret(
    db: &Db,
    identifier: &str,
    secret: &str,
) -> Result<bool, SqlError> {
    let row = sqlx::query("SELECT secret FROM oauth_clients WHERE identifier = $1")
        .bind(identifier)
        .fetch_optional(&db.pool)
        .await?;
    Ok(match row {
        Some(r) => tokens::verify(secret, &r.try_get::<String, _>("secret")?),
        None => false,
    })
}

/// Deletes a client with its codes and the tokens issued through it.
pub async fn delete_client(db: &Db, identifier: &str) -> Result<(), SqlError> {
    let _authz = db.authz_write();
    let mut tx = db.pool.begin().await?;
    sqlx::query("DELETE FROM oauth_codes WHERE client_id = $1")
        .bind(identifier)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM api_tokens WHERE client_id = $1")
        .bind(identifier)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM oauth_clients WHERE identifier = $1")
        .bind(identifier)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

#[derive(Clone, Debug, PartialEq)]
pub struct Code {
    pub client_id: String,
    pub redirect_uri: String,
    pub session_id: Option<String>,
    pub user_id: i64,
    pub scopes: Vec<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
}

fn code_hash(code: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(code.as_bytes()))
}

/// Stores a code valid for `ttl_secs`.
pub async fn insert_code(db: &Db, code: &str, c: &Code, ttl_secs: i64) -> Result<(), SqlError> {
    sqlx::query(
        "INSERT INTO oauth_codes (client_id, code_hash, expires_at, redirect_uri, session_id, user_id, scopes, code_challenge, code_challenge_method) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(c.client_id.as_str())
    .bind(code_hash(code))
    .bind(now_micros() + ttl_secs * 1_000_000)
    .bind(c.redirect_uri.as_str())
    .bind(c.session_id.as_deref())
    .bind(c.user_id)
    .bind(serde_json::to_string(&c.scopes).unwrap_or_else(|_| "[]".into()))
    .bind(c.code_challenge.as_deref())
    .bind(c.code_challenge_method.as_deref())
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Takes a code: it is deleted whether or not it is still valid, so it works at most once.
pub async fn take_code(db: &Db, code: &str) -> Result<Option<Code>, SqlError> {
    let hash = code_hash(code);
    let mut tx = db.pool.begin().await?;
    let row = sqlx::query(
        "SELECT client_id, redirect_uri, session_id, user_id, scopes, code_challenge, code_challenge_method, expires_at \
         FROM oauth_codes WHERE code_hash = $1",
    )
    .bind(&hash)
    .fetch_optional(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM oauth_codes WHERE code_hash = $1")
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let Some(r) = row else { return Ok(None) };
    if r.try_get::<i64, _>("expires_at")? <= now_micros() {
        return Ok(None);
    }
    let scopes: String = r.try_get("scopes")?;
    Ok(Some(Code {
        client_id: r.try_get("client_id")?,
        redirect_uri: r.try_get("redirect_uri")?,
        session_id: r.try_get("session_id")?,
        user_id: r.try_get("user_id")?,
        scopes: serde_json::from_str(&scopes).unwrap_or_default(),
        code_challenge: r.try_get("code_challenge")?,
        code_challenge_method: r.try_get("code_challenge_method")?,
    }))
}
