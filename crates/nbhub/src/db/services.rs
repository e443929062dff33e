//! Services and roles, both loaded from the config at start-up (the config is the truth: entries
//! removed from it are removed here, with their tokens).

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{tokens, Db, SqlError};
use crate::config::{RoleConfig, ServiceConfig};

#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub id: i64,
    pub name: String,
    pub admin: bool,
    pub url: String,
    pub display: bool,
    pub info: Value,
}

fn from_row(row: &AnyRow) -> Result<Service, SqlError> {
    let info: String = row.try_get("info")?;
    Ok(Service {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        admin: row.try_get::<i64, _>("admin")? != 0,
        url: row.try_get("url")?,
        display: row.try_get::<i64, _>("display")? != 0,
        info: serde_json::from_str(&info).unwrap_or(Value::Null),
    })
}

pub async fn get(db: &Db, name: &str) -> Result<Option<Service>, SqlError> {
    let row =
        sqlx::query("SELECT id, name, admin, url, display, info FROM services WHERE name = $1")
            .bind(name)
            .fetch_optional(&db.pool)
            .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn get_by_id(db: &Db, id: i64) -> Result<Option<Service>, SqlError> {
    let row = sqlx::query("SELECT id, name, admin, url, display, info FROM services WHERE id = $1")
        .bind(id)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list(db: &Db) -> Result<Vec<Service>, SqlError> {
    let rows =
        sqlx::query("SELECT id, name, admin, url, display, info FROM services ORDER BY name")
            .fetch_all(&db.pool)
            .await?;
    rows.iter().map(from_row).collect()
}

pub async fn role_names(db: &Db, service_id: i64) -> Result<Vec<String>, SqlError> {
    let rows = sqlx::query(
        "SELECT r.name FROM roles r JOIN service_roles sr ON sr.role_id = r.id WHERE sr.service_id = $1 ORDER BY r.name",
    )
    .bind(service_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(|r| r.try_get("name")).collect()
}

/// Note on the token row that holds a service's configured `api_token`.
pub const CONFIG_TOKEN_NOTE: &str = "from config";

/// Makes the services table match the config, including each service's configured token.
pub async fn sync_from_config(db: &Db, services: &[ServiceConfig]) -> Result<(), SqlError> {
    let _authz = db.authz_write();
    let existing = list(db).await?;
    for old in &existing {
        if !services.iter().any(|s| s.name == old.name) {
            sqlx::query("DELETE FROM services WHERE id = $1")
                .bind(old.id)
                .execute(&db.pool)
                .await?;
        }
    }
    for s in services {
        let info = serde_json::to_string(&s.info).unwrap_or_else(|_| "{}".into());
        let id: i64 = match existing.iter().find(|e| e.name == s.name) {
            Some(e) => {
                sqlx::query("UPDATE services SET admin = $1, url = $2, display = $3, info = $4 WHERE id = $5")
                    .bind(i64::from(s.admin))
                    .bind(s.url.as_str())
                    .bind(i64::from(s.display))
                    .bind(info)
                    .bind(e.id)
                    .execute(&db.pool)
                    .await?;
                e.id
            }
            None => sqlx::query(
                "INSERT INTO services (name, admin, url, display, info) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(s.name.as_str())
            .bind(i64::from(s.admin))
            .bind(s.url.as_str())
            .bind(i64::from(s.display))
            .bind(info)
            .fetch_one(&db.pool)
            .await?
            .try_get("id")?,
        };
        // Keep exactly one config token row, matching the configured token.
        let owned = tokens::list_for(db, tokens::Owner::Service(id)).await?;
        let config_rows: Vec<&tokens::Token> = owned
            .iter()
            .filter(|t| t.note == CONFIG_TOKEN_NOTE)
            .collect();
        let mut keep = false;
        for t in &config_rows {
            if !keep && !s.api_token.is_empty() && tokens::matches(db, t.id, &s.api_token).await? {
                keep = true;
            } else {
                tokens::delete(db, t.id).await?;
            }
        }
        if !keep && !s.api_token.is_empty() {
            tokens::insert(
                db,
                &tokens::NewToken {
                    owner: tokens::Owner::Service(id),
                    token: &s.api_token,
                    rounds: tokens::CONFIGURED_ROUNDS,
                    client_id: tokens::API_CLIENT_ID,
                    session_id: None,
                    note: CONFIG_TOKEN_NOTE,
                    scopes: &["inherit".to_string()],
                    expires_at: None,
                },
            )
            .await?;
        }
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq)]
pub struct Role {
    pub name: String,
    pub description: String,
    pub scopes: Vec<String>,
}

pub async fn get_role(db: &Db, name: &str) -> Result<Option<Role>, SqlError> {
    let row = sqlx::query("SELECT name, description, scopes FROM roles WHERE name = $1")
        .bind(name)
        .fetch_optional(&db.pool)
        .await?;
    row.map(|r| {
        let scopes: String = r.try_get("scopes")?;
        Ok(Role {
            name: r.try_get("name")?,
            description: r.try_get("description")?,
            scopes: serde_json::from_str(&scopes).unwrap_or_default(),
        })
    })
    .transpose()
}

/// Makes the roles and their assignments match the config. Users named by a role are created if
/// missing (as JupyterHub's `load_roles` does); groups named by a role are created too.
pub async fn sync_roles_from_config(db: &Db, roles: &[RoleConfig]) -> Result<(), SqlError> {
    let _authz = db.authz_write();
    let mut tx = db.pool.begin().await?;
    let rows = sqlx::query("SELECT name FROM roles")
        .fetch_all(&mut *tx)
        .await?;
    for row in rows {
        let name: String = row.try_get("name")?;
        if !roles.iter().any(|r| r.name == name) {
            sqlx::query("DELETE FROM roles WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
    }
    for r in roles {
        let scopes = serde_json::to_string(&r.scopes).unwrap_or_else(|_| "[]".into());
        let updated = sqlx::query("UPDATE roles SET description = $1, scopes = $2 WHERE name = $3")
            .bind(r.description.as_str())
            .bind(&scopes)
            .bind(r.name.as_str())
            .execute(&mut *tx)
            .await?;
        if updated.rows_affected() == 0 {
            sqlx::query("INSERT INTO roles (name, description, scopes) VALUES ($1, $2, $3)")
                .bind(r.name.as_str())
                .bind(r.description.as_str())
                .bind(&scopes)
                .execute(&mut *tx)
                .await?;
        }
        let role_id: i64 = sqlx::query("SELECT id FROM roles WHERE name = $1")
            .bind(r.name.as_str())
            .fetch_one(&mut *tx)
            .await?
            .try_get("id")?;
        sqlx::query("DELETE FROM user_roles WHERE role_id = $1")
            .bind(role_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM group_roles WHERE role_id = $1")
            .bind(role_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM service_roles WHERE role_id = $1")
            .bind(role_id)
            .execute(&mut *tx)
            .await?;
        for u in &r.users {
            sqlx::query(
                "INSERT INTO users (name, admin, created, cookie_id, approved) SELECT $1, 0, $2, $3, 1 \
                 WHERE NOT EXISTS (SELECT 1 FROM users WHERE name = $1)",
            )
            .bind(u.as_str())
            .bind(super::now_micros())
            .bind(super::users::new_cookie_id())
            .execute(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO user_roles (user_id, role_id) SELECT id, $1 FROM users WHERE name = $2")
                .bind(role_id)
                .bind(u.as_str())
                .execute(&mut *tx)
                .await?;
        }
        for g in &r.groups {
            sqlx::query("INSERT INTO groups (name, properties) SELECT $1, '{}' WHERE NOT EXISTS (SELECT 1 FROM groups WHERE name = $1)")
                .bind(g.as_str())
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO group_roles (group_id, role_id) SELECT id, $1 FROM groups WHERE name = $2")
                .bind(role_id)
                .bind(g.as_str())
                .execute(&mut *tx)
                .await?;
        }
        for s in &r.services {
            sqlx::query("INSERT INTO service_roles (service_id, role_id) SELECT id, $1 FROM services WHERE name = $2")
                .bind(role_id)
                .bind(s.as_str())
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await
}
