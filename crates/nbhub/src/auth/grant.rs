//! Who may hand out what. Holding a scope on a user lets a caller act on that user, but never
//! lets the caller give anyone — the target or themselves — more than the caller holds:
//!
//! * only an admin grants or removes admin, and only an admin changes, deletes or mints a token
//!   for an admin (JupyterHub's answers since CVE-2024-41942: "Only admins can grant admin
//!   permissions", "Only admins can modify other admins");
//! * a role given to a user (directly, or through a group the user is added to) must carry only
//!   scopes the caller holds for that user;
//! * a name in `admin_users` becomes an admin at its next sign-in or at the hub's next start, so
//!   creating or renaming a user to such a name is granting admin;
//! * holding `tokens` on a user is acting as that user (JupyterHub's meaning: a portal mints
//!   its users' tokens with it), so only an admin mints a token for an admin.
//!
//! "Admin" here is an admin principal whose request carries the whole admin role: an admin's
//! token narrowed to a few scopes cannot hand out what it does not hold either.

use crate::db::users::User;
use crate::db::{self, Db};
use crate::error::{ApiError, ApiResult};

use super::scopes::{self, Owner, ScopeSet};
use super::{Identity, Principal};

pub const GRANT_ADMIN: &str = "Only admins can grant admin permissions";
pub const MODIFY_ADMIN: &str = "Only admins can modify other admins";
pub const DELETE_ADMIN: &str = "Only admins can delete other admins";

/// An admin principal whose request holds every scope of the admin role, unfiltered.
pub fn is_admin(ident: &Identity) -> bool {
    let principal_admin = match &ident.principal {
        Principal::User(u) => u.admin,
        Principal::Service(s) => s.admin,
    };
    principal_admin
        && scopes::builtin_role_scopes("admin")
            .unwrap_or_default()
            .iter()
            .flat_map(|s| scopes::expand_scope_name(s))
            .all(|s| ident.scopes.access(&s).is_some_and(|a| a.is_all()))
}

fn forbidden_unless_admin(ident: &Identity, message: &str) -> ApiResult<()> {
    if is_admin(ident) {
        Ok(())
    } else {
        Err(ApiError::forbidden(message))
    }
}

/// Making someone admin (or taking it away).
pub fn require_admin_to_grant_admin(ident: &Identity) -> ApiResult<()> {
    forbidden_unless_admin(ident, GRANT_ADMIN)
}

/// Any change to an admin user: fields, groups, tokens.
pub fn require_admin_to_modify(ident: &Identity, target: &User) -> ApiResult<()> {
    if target.admin {
        forbidden_unless_admin(ident, MODIFY_ADMIN)
    } else {
        Ok(())
    }
}

pub fn require_admin_to_delete(ident: &Identity, target: &User) -> ApiResult<()> {
    if target.admin {
        forbidden_unless_admin(ident, DELETE_ADMIN)
    } else {
        Ok(())
    }
}

/// A user named in `admin_users` is made admin when they sign in and when the hub starts, so
/// creating one (or renaming someone to one) is granting admin.
pub fn require_admin_for_name(
    ident: &Identity,
    name: &str,
    admin_users: &[String],
) -> ApiResult<()> {
    if admin_users.iter().any(|a| a == name) && !is_admin(ident) {
        return Err(ApiError::forbidden(format!(
            "{GRANT_ADMIN}: {name} is one of the hub's admin_users"
        )));
    }
    Ok(())
}

/// The scopes `raw` gives to user `target`, beyond what the caller holds (empty: grantable).
fn excess(ident: &Identity, raw: &[String], target: &str) -> ApiResult<Vec<String>> {
    let owner = Owner::User { name: target };
    let given = ScopeSet::expand(raw, &owner, None, None)
        .map_err(|e| ApiError::internal(format!("role scopes: {e}")))?;
    Ok(given.excess_over(&ident.scopes, &|u| ident.groups_of(u)))
}

/// Giving `roles` to user `target`: each role's scopes must be held by the caller.
pub async fn require_grantable_roles(
    db: &Db,
    ident: &Identity,
    target: &str,
    roles: &[String],
) -> ApiResult<()> {
    for role in roles {
        let raw = super::role_scopes(db, role).await?;
        let over = excess(ident, &raw, target)?;
        if !over.is_empty() {
            return Err(ApiError::forbidden(format!(
                "Cannot give role {role} to {target}: it grants {} that you do not hold",
                over.join(", ")
            )));
        }
    }
    Ok(())
}

/// Adding user `target` to `group`: the group's roles must be grantable to them.
pub async fn require_grantable_group(
    db: &Db,
    ident: &Identity,
    target: &str,
    group: &db::groups::Group,
) -> ApiResult<()> {
    for role in db::groups::role_names(db, group.id).await? {
        let raw = super::role_scopes(db, &role).await?;
        let over = excess(ident, &raw, target)?;
        if !over.is_empty() {
            return Err(ApiError::forbidden(format!(
                "Cannot add {target} to group {}: its role {role} grants {} that you do not hold",
                group.name,
                over.join(", ")
            )));
        }
    }
    Ok(())
}

/// Changing the members of a group: no admin unless the caller is one, and each added user
/// gets only what the caller could give them.
pub async fn require_membership_change(
    db: &Db,
    ident: &Identity,
    group: &db::groups::Group,
    added: &[String],
    removed: &[String],
) -> ApiResult<()> {
    require_no_admin_among(db, ident, added).await?;
    require_no_admin_among(db, ident, removed).await?;
    for name in added {
        require_grantable_group(db, ident, name, group).await?;
    }
    Ok(())
}

/// Admins among users whose groups change are changed admins.
pub async fn require_no_admin_among(db: &Db, ident: &Identity, names: &[String]) -> ApiResult<()> {
    for name in names {
        if let Some(u) = db::users::get(db, name).await? {
            require_admin_to_modify(ident, &u)?;
        }
    }
    Ok(())
}

/// A token minted for `owner` by someone else. Holding `tokens` on a user is JupyterHub's
/// power to act as that user (API clients such as portals mint users' tokens with it), so the
/// token may carry what its owner holds; but an admin's token only an admin mints.
pub fn require_token_owner(ident: &Identity, owner: &User) -> ApiResult<()> {
    if ident.user().is_some_and(|me| me.id == owner.id) {
        return Ok(());
    }
    require_admin_to_modify(ident, owner)
}
