//! Groups and their members.

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{placeholders, Db, SqlError};

#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub id: i64,
    pub name: String,
    pub properties: Value,
}

fn from_row(row: &AnyRow) -> Result<Group, SqlError> {
    let properties: String = row.try_get("properties")?;
    Ok(Group {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        properties: serde_json::from_str(&properties)
            .unwrap_or_else(|_| Value::Object(Default::default())),
    })
}

pub async fn get(db: &Db, name: &str) -> Result<Option<Group>, SqlError> {
    let row = sqlx::query("SELECT id, name, properties FROM groups WHERE name = $1")
        .bind(name)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// One page of groups (optionally only `visible` ones) and the total.
pub async fn list(
    db: &Db,
    offset: i64,
    limit: i64,
    visible: Option<&[String]>,
) -> Result<(Vec<Group>, i64), SqlError> {
    let (where_clause, args): (String, Vec<&str>) = match visible {
        None => (String::new(), Vec::new()),
        Some([]) => ("WHERE 1 = 0".into(), Vec::new()),
        Some(names) => (
            format!("WHERE name IN ({})", placeholders(0, names.len())),
            names.iter().map(String::as_str).collect(),
        ),
    };
    let count_sql = format!("SELECT COUNT(*) AS n FROM groups {where_clause}");
    let mut count = sqlx::query(&count_sql);
    for a in &args {
        count = count.bind(*a);
    }
    let total: i64 = count.fetch_one(&db.pool).await?.try_get("n")?;
    let sql = format!(
        "SELECT id, name, properties FROM groups {where_clause} ORDER BY id LIMIT ${} OFFSET ${}",
        args.len() + 1,
        args.len() + 2
    );
    let mut query = sqlx::query(&sql);
    for a in &args {
        query = query.bind(*a);
    }
    let rows = query.bind(limit).bind(offset).fetch_all(&db.pool).await?;
    Ok((rows.iter().map(from_row).collect::<Result<_, _>>()?, total))
}

/// Creates groups with their members in one transaction. Members must exist (checked by caller).
pub async fn create_many(
    db: &Db,
    groups: &[(String, Vec<String>)],
) -> Result<Vec<Group>, SqlError> {
    let _authz = db.authz_write();
    let mut tx = db.pool.begin().await?;
    let mut created = Vec::new();
    for (name, users) in groups {
        let row = sqlx::query("INSERT INTO groups (name, properties) VALUES ($1, '{}') RETURNING id, name, properties")
            .bind(name.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let group = from_row(&row)?;
        for u in users {
            sqlx::query("INSERT INTO user_groups (user_id, group_id) SELECT id, $1 FROM users WHERE name = $2")
                .bind(group.id)
                .bind(u.as_str())
                .execute(&mut *tx)
                .await?;
        }
        created.push(group);
    }
    tx.commit().await?;
    Ok(created)
}

pub async fn delete(db: &Db, id: i64) -> Result<(), SqlError> {
    let _authz = db.authz_write();
    sqlx::query("DELETE FROM groups WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

pub async fn members(db: &Db, group_id: i64) -> Result<Vec<String>, SqlError> {
    let rows = sqlx::query(
        "SELECT u.name FROM users u JOIN user_groups ug ON ug.user_id = u.id WHERE ug.group_id = $1 ORDER BY u.name",
    )
    .bind(group_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(|r| r.try_get("name")).collect()
}

pub async fn role_names(db: &Db, group_id: i64) -> Result<Vec<String>, SqlError> {
    let rows = sqlx::query(
        "SELECT r.name FROM roles r JOIN group_roles gr ON gr.role_id = r.id WHERE gr.group_id = $1 ORDER BY r.name",
    )
    .bind(group_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(|r| r.try_get("name")).collect()
}

/// Adds users (by name) to a group, ignoring ones already in it; all in one transaction.
pub async fn add_users(db: &Db, group_id: i64, users: &[String]) -> Result<(), SqlError> {
    let _authz = db.authz_write();
    let mut tx = db.pool.begin().await?;
    for u in users {
        sqlx::query(
            "INSERT INTO user_groups (user_id, group_id) SELECT id, $1 FROM users WHERE name = $2 \
             AND NOT EXISTS (SELECT 1 FROM user_groups ug WHERE ug.group_id = $1 AND ug.user_id = users.id)",
        )
        .bind(group_id)
        .bind(u.as_str())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

pub async fn remove_users(db: &Db, group_id: i64, users: &[String]) -> Result<(), SqlError> {
    let _authz = db.authz_write();
    let mut tx = db.pool.begin().await?;
    for u in users {
        sqlx::query("DELETE FROM user_groups WHERE group_id = $1 AND user_id IN (SELECT id FROM users WHERE name = $2)")
            .bind(group_id)
            .bind(u.as_str())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

pub async fn set_properties(db: &Db, group_id: i64, properties: &Value) -> Result<(), SqlError> {
    sqlx::query("UPDATE groups SET properties = $1 WHERE id = $2")
        .bind(properties.to_string())
        .bind(group_id)
        .execute(&db.pool)
        .await?;
    Ok(())
}
