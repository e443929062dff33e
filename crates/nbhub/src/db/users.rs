//! Users, their group and role memberships, and native-authenticator passwords.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{json_column, now_micros, placeholders, Db, SqlError};

#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub admin: bool,
    pub created: i64,
    pub last_activity: Option<i64>,
    /// The value inside the signed login cookie; changing it logs the user out everywhere.
    pub cookie_id: String,
    pub user_info: Value,
    /// As stored: sealed by `auth::crypt` when the hub has a key, else plain JSON; read it
    /// with `auth::auth_state`.
    pub auth_state: Option<String>,
    /// native authenticator only.
    pub password_hash: Option<String>,
    /// native authenticator: false while a sign-up waits for an admin.
    pub approved: bool,
}

const COLUMNS: &str =
    "id, name, admin, created, last_activity, cookie_id, user_info, auth_state, password_hash, approved";

fn from_row(row: &AnyRow) -> Result<User, SqlError> {
    Ok(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        admin: row.try_get::<i64, _>("admin")? != 0,
        created: row.try_get("created")?,
        last_activity: row.try_get("last_activity")?,
        cookie_id: row.try_get("cookie_id")?,
        user_info: json_column(row, "user_info")?,
        auth_state: row
            .try_get::<Option<String>, _>("auth_state")?
            .filter(|s| !s.is_empty()),
        password_hash: row.try_get("password_hash")?,
        approved: row.try_get::<i64, _>("approved")? != 0,
    })
}

pub fn new_cookie_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub async fn get(db: &Db, name: &str) -> Result<Option<User>, SqlError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE name = $1");
    let row = sqlx::query(&sql)
        .bind(name)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn get_by_id(db: &Db, id: i64) -> Result<Option<User>, SqlError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(&db.pool).await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn get_by_cookie_id(db: &Db, cookie_id: &str) -> Result<Option<User>, SqlError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE cookie_id = $1");
    let row = sqlx::query(&sql)
        .bind(cookie_id)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Creates a user; a name that exists already is a unique violation (see `is_unique_violation`).
pub async fn create(db: &Db, name: &str, admin: bool) -> Result<User, SqlError> {
    let _authz = db.authz_write();
    let mut created = create_many(db, &[name.to_string()], admin).await?;
    created.pop().ok_or(SqlError::RowNotFound)
}

/// Creates all of `names` in one transaction: all or nothing.
pub async fn create_many(db: &Db, names: &[String], admin: bool) -> Result<Vec<User>, SqlError> {
    let _authz = db.authz_write();
    let mut tx = db.pool.begin().await?;
    let mut users = Vec::with_capacity(names.len());
    let sql = format!(
        "INSERT INTO users (name, admin, created, cookie_id, approved) VALUES ($1, $2, $3, $4, 1) RETURNING {COLUMNS}"
    );
    for name in names {
        let row = sqlx::query(&sql)
            .bind(name.as_str())
            .bind(i64::from(admin))
            .bind(now_micros())
            .bind(new_cookie_id())
            .fetch_one(&mut *tx)
            .await?;
        users.push(from_row(&row)?);
    }
    tx.commit().await?;
    Ok(users)
}

/// A native sign-up: a user row with a password hash, approved or waiting for an admin.
pub async fn create_with_password(
    db: &Db,
    name: &str,
    password_hash: &str,
    approved: bool,
) -> Result<User, SqlError> {
    let _authz = db.authz_write();
    let sql = format!(
        "INSERT INTO users (name, admin, created, cookie_id, password_hash, approved) VALUES ($1, 0, $2, $3, $4, $5) RETURNING {COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(name)
        .bind(now_micros())
        .bind(new_cookie_id())
        .bind(password_hash)
        .bind(i64::from(approved))
        .fetch_one(&db.pool)
        .await?;
    from_row(&row)
}

pub async fn set_password(db: &Db, id: i64, password_hash: &str) -> Result<(), SqlError> {
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(password_hash)
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

pub async fn set_approved(db: &Db, id: i64, approved: bool) -> Result<(), SqlError> {
    let _authz = db.authz_write();
    sqlx::query("UPDATE users SET approved = $1 WHERE id = $2")
        .bind(i64::from(approved))
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Native sign-ups waiting for an admin.
pub async fn list_unapproved(db: &Db) -> Result<Vec<User>, SqlError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE approved = 0 ORDER BY id");
    let rows = sqlx::query(&sql).fetch_all(&db.pool).await?;
    rows.iter().map(from_row).collect()
}

pub async fn set_admin(db: &Db, id: i64, admin: bool) -> Result<(), SqlError> {
    let _authz = db.authz_write();
    sqlx::query("UPDATE users SET admin = $1 WHERE id = $2")
        .bind(i64::from(admin))
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// The stored auth_state now (a `User` read earlier may predate a refresh).
pub async fn stored_auth_state(db: &Db, id: i64) -> Result<Option<String>, SqlError> {
    let row = sqlx::query("SELECT auth_state FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(&db.pool)
        .await?;
    Ok(match row {
        Some(r) => r.try_get::<Option<String>, _>("auth_state")?,
        None => None,
    }
    .filter(|s| !s.is_empty()))
}

/// Stores auth_state as `auth::crypt::to_stored` made it (`None` clears it).
pub async fn set_auth_state(db: &Db, id: i64, stored: Option<&str>) -> Result<(), SqlError> {
    sqlx::query("UPDATE users SET auth_state = $1 WHERE id = $2")
        .bind(stored)
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Renames a user and logs them out everywhere (new cookie id).
pub async fn rename(db: &Db, id: i64, new_name: &str) -> Result<(), SqlError> {
    let _authz = db.authz_write();
    sqlx::query("UPDATE users SET name = $1, cookie_id = $2 WHERE id = $3")
        .bind(new_name)
        .bind(new_cookie_id())
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// A new cookie id invalidates every login cookie of this user.
pub async fn rotate_cookie_id(db: &Db, id: i64) -> Result<String, SqlError> {
    let cookie_id = new_cookie_id();
    sqlx::query("UPDATE users SET cookie_id = $1 WHERE id = $2")
        .bind(&cookie_id)
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(cookie_id)
}

pub async fn delete(db: &Db, id: i64) -> Result<(), SqlError> {
    let _authz = db.authz_write();
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Moves `last_activity` forward only, never back.
pub async fn touch_activity(db: &Db, id: i64, at: i64) -> Result<(), SqlError> {
    sqlx::query(
        "UPDATE users SET last_activity = $1 WHERE id = $2 AND (last_activity IS NULL OR last_activity < $1)",
    )
    .bind(at)
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(())
}

pub async fn group_names(db: &Db, user_id: i64) -> Result<Vec<String>, SqlError> {
    let rows = sqlx::query(
        "SELECT g.name FROM groups g JOIN user_groups ug ON ug.group_id = g.id WHERE ug.user_id = $1 ORDER BY g.name",
    )
    .bind(user_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(|r| r.try_get("name")).collect()
}

/// What users belong to: their groups, and the names of the roles assigned to them directly or
/// through one of their groups (the implicit `user`/`admin` roles are not here).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    pub groups: Vec<String>,
    pub roles: BTreeSet<String>,
}

/// The memberships of many users in two queries (a page of the user list costs what one user does).
pub async fn memberships(db: &Db, user_ids: &[i64]) -> Result<HashMap<i64, Membership>, SqlError> {
    let mut out: HashMap<i64, Membership> = user_ids
        .iter()
        .map(|id| (*id, Membership::default()))
        .collect();
    // Well below SQLite's limit on bound parameters, twice over for the roles' UNION.
    for ids in user_ids.chunks(400) {
        let sql = format!(
            "SELECT ug.user_id, g.name FROM user_groups ug JOIN groups g ON g.id = ug.group_id \
             WHERE ug.user_id IN ({}) ORDER BY g.name",
            placeholders(0, ids.len())
        );
        let mut q = sqlx::query(&sql);
        for id in ids {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&db.pool).await? {
            let user_id: i64 = row.try_get("user_id")?;
            if let Some(m) = out.get_mut(&user_id) {
                m.groups.push(row.try_get("name")?);
            }
        }
        let sql = format!(
            "SELECT ur.user_id, r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id \
             WHERE ur.user_id IN ({}) \
             UNION SELECT ug.user_id, r.name FROM user_groups ug \
             JOIN group_roles gr ON gr.group_id = ug.group_id JOIN roles r ON r.id = gr.role_id \
             WHERE ug.user_id IN ({})",
            placeholders(0, ids.len()),
            placeholders(ids.len(), ids.len())
        );
        let mut q = sqlx::query(&sql);
        for id in ids.iter().chain(ids) {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&db.pool).await? {
            let user_id: i64 = row.try_get("user_id")?;
            if let Some(m) = out.get_mut(&user_id) {
                m.roles.insert(row.try_get("name")?);
            }
        }
    }
    Ok(out)
}

/// Roles assigned in the database (config or PATCH); the implicit `user`/`admin` roles are not here.
pub async fn role_names(db: &Db, user_id: i64) -> Result<Vec<String>, SqlError> {
    let rows = sqlx::query(
        "SELECT r.name FROM roles r JOIN user_roles ur ON ur.role_id = r.id WHERE ur.user_id = $1 ORDER BY r.name",
    )
    .bind(user_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(|r| r.try_get("name")).collect()
}

/// Replaces the user's groups; every group must exist (checked by the caller).
pub async fn set_groups(db: &Db, user_id: i64, groups: &[String]) -> Result<(), SqlError> {
    let _authz = db.authz_write();
    let mut tx = db.pool.begin().await?;
    sqlx::query("DELETE FROM user_groups WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    for g in groups {
        sqlx::query(
            "INSERT INTO user_groups (user_id, group_id) SELECT $1, id FROM groups WHERE name = $2",
        )
        .bind(user_id)
        .bind(g.as_str())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Replaces the user's groups with those an identity provider names (`manage_groups`): the
/// valid names only, groups made as needed.
pub async fn set_groups_creating(db: &Db, user_id: i64, groups: &[String]) -> Result<(), SqlError> {
    let groups: Vec<String> = groups
        .iter()
        .filter(|g| crate::names::is_valid_name(g))
        .cloned()
        .collect();
    let mut missing = Vec::new();
    for g in &groups {
        if super::groups::get(db, g).await?.is_none() {
            missing.push((g.clone(), Vec::new()));
        }
    }
    if !missing.is_empty() {
        if let Err(e) = super::groups::create_many(db, &missing).await {
            // Another sign-in made the same group at the same moment.
            if !super::is_unique_violation(&e) {
                return Err(e);
            }
        }
    }
    set_groups(db, user_id, &groups).await
}

/// Ends every browser session of the user: their login cookies name the old cookie id.
pub async fn reset_cookie_id(db: &Db, id: i64) -> Result<(), SqlError> {
    let _authz = db.authz_write();
    sqlx::query("UPDATE users SET cookie_id = $1 WHERE id = $2")
        .bind(new_cookie_id())
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Replaces the user's assigned roles; every role must exist (checked by the caller).
pub async fn set_roles(db: &Db, user_id: i64, roles: &[String]) -> Result<(), SqlError> {
    let _authz = db.authz_write();
    let mut tx = db.pool.begin().await?;
    sqlx::query("DELETE FROM user_roles WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    for r in roles {
        sqlx::query(
            "INSERT INTO user_roles (user_id, role_id) SELECT $1, id FROM roles WHERE name = $2",
        )
        .bind(user_id)
        .bind(r.as_str())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateFilter {
    /// Has a server that is starting, running or stopping.
    Active,
    /// Has a server that is ready.
    Ready,
    /// Has no active server.
    Inactive,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Id,
    Name,
    LastActivity,
}

/// Which users a caller may see when its `list:users` scope is filtered.
#[derive(Clone, Debug, Default)]
pub struct Visible {
    pub names: Vec<String>,
    pub groups: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct ListQuery {
    pub offset: i64,
    pub limit: i64,
    pub name_filter: Option<String>,
    pub state: Option<StateFilter>,
    pub sort: SortKey,
    pub descending: bool,
    /// None: every user.
    pub visible: Option<Visible>,
}

/// One page of users and the total that matched.
pub async fn list(db: &Db, q: &ListQuery) -> Result<(Vec<User>, i64), SqlError> {
    let mut conditions: Vec<String> = Vec::new();
    let mut args: Vec<String> = Vec::new();
    if let Some(filter) = &q.name_filter {
        let escaped = filter
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        args.push(format!("%{escaped}%"));
        conditions.push(format!("LOWER(name) LIKE ${} ESCAPE '\\'", args.len()));
    }
    match q.state {
        Some(StateFilter::Active) => conditions
            .push("EXISTS (SELECT 1 FROM servers s WHERE s.user_id = users.id AND s.started IS NOT NULL)".into()),
        Some(StateFilter::Ready) => conditions
            .push("EXISTS (SELECT 1 FROM servers s WHERE s.user_id = users.id AND s.port IS NOT NULL)".into()),
        Some(StateFilter::Inactive) => conditions.push(
            "NOT EXISTS (SELECT 1 FROM servers s WHERE s.user_id = users.id AND s.started IS NOT NULL)".into(),
        ),
        None => {}
    }
    if let Some(visible) = &q.visible {
        let mut alternatives = vec!["1 = 0".to_string()];
        if !visible.names.is_empty() {
            alternatives.push(format!(
                "name IN ({})",
                placeholders(args.len(), visible.names.len())
            ));
            args.extend(visible.names.iter().cloned());
        }
        if !visible.groups.is_empty() {
            alternatives.push(format!(
                "id IN (SELECT ug.user_id FROM user_groups ug JOIN groups g ON g.id = ug.group_id WHERE g.name IN ({}))",
                placeholders(args.len(), visible.groups.len())
            ));
            args.extend(visible.groups.iter().cloned());
        }
        conditions.push(format!("({})", alternatives.join(" OR ")));
    }
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let direction = if q.descending { "DESC" } else { "ASC" };
    let order = match q.sort {
        SortKey::Id => format!("id {direction}"),
        SortKey::Name => format!("name {direction}"),
        // Nulls last ascending, first descending, as JupyterHub.
        SortKey::LastActivity => {
            format!("(last_activity IS NULL) {direction}, last_activity {direction}, id ASC")
        }
    };

    let count_sql = format!("SELECT COUNT(*) AS n FROM users {where_clause}");
    let mut count = sqlx::query(&count_sql);
    for a in &args {
        count = count.bind(a.as_str());
    }
    let total: i64 = count.fetch_one(&db.pool).await?.try_get("n")?;

    let n = args.len();
    let sql = format!(
        "SELECT {COLUMNS} FROM users {where_clause} ORDER BY {order} LIMIT ${} OFFSET ${}",
        n + 1,
        n + 2
    );
    let mut query = sqlx::query(&sql);
    for a in &args {
        query = query.bind(a.as_str());
    }
    let rows = query
        .bind(q.limit)
        .bind(q.offset)
        .fetch_all(&db.pool)
        .await?;
    Ok((rows.iter().map(from_row).collect::<Result<_, _>>()?, total))
}

/// How many users there are (for `jupyterhub_total_users`).
pub async fn count(db: &Db) -> Result<i64, SqlError> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
        .fetch_one(&db.pool)
        .await?;
    row.try_get("n")
}

/// How many users were active in the last `secs` seconds (for `jupyterhub_active_users`).
pub async fn count_active_since(db: &Db, secs: i64) -> Result<i64, SqlError> {
    let since = now_micros() - secs * 1_000_000;
    let row = sqlx::query("SELECT COUNT(*) AS n FROM users WHERE last_activity >= $1")
        .bind(since)
        .fetch_one(&db.pool)
        .await?;
    row.try_get("n")
}
