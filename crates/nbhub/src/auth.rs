//! Who is making a request, and what they may do.
//!
//! A request is identified by an API token in the `Authorization` header (`token X` or
//! `bearer X`; never `?token=`, as JupyterHub) or by the hub's login cookie. Its permissions are a
//! [`ScopeSet`]: the owner's role scopes, narrowed by the token's own scopes, plus the identify
//! scopes every token has.

pub mod auth_state;
pub mod cache;
pub mod crypt;
pub mod grant;
pub mod native;
pub mod oidc;
pub mod pam;
pub mod scopes;
pub mod session;
pub mod share;
pub mod throttle;
pub mod xsrf;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use http::HeaderMap;

use crate::db::services::Service;
use crate::db::tokens::{self, Token};
use crate::db::users::User;
use crate::db::{self, now_micros};
use crate::error::{ApiError, ApiResult};
use scopes::{Owner, Resource, ScopeSet};

/// What resolving a caller needs: the database, the cache of resolved identities and the
/// auth_state store. The HTTP layer's `AppState` holds one; the core never sees `AppState`.
#[derive(Clone)]
pub struct Authz {
    pub db: db::Db,
    /// Resolved tokens and cookie users; see [`cache`].
    pub identities: Arc<cache::IdentityCache>,
    /// Users' auth_state: sealed, read, refreshed (`auth/auth_state.rs`).
    pub auth_states: Arc<auth_state::AuthStates>,
    /// `[authenticator] blocked_users`: their tokens and login cookies identify no one.
    pub blocked_users: Arc<HashSet<String>>,
}

impl Authz {
    /// Is this user in `blocked_users`? Their credentials, however old, are worth nothing.
    pub fn is_blocked(&self, user: &str) -> bool {
        self.blocked_users.contains(user)
    }
}

/// How often token use is written back (JupyterHub's `activity_resolution`).
const ACTIVITY_RESOLUTION_MICROS: i64 = 30 * 1_000_000;

#[derive(Clone, Debug)]
pub enum Principal {
    User(User),
    Service(Service),
}

impl Principal {
    pub fn name(&self) -> &str {
        match self {
            Principal::User(u) => &u.name,
            Principal::Service(s) => &s.name,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            Principal::User(_) => "user",
            Principal::Service(_) => "service",
        }
    }
}

/// An authenticated caller and its effective scopes.
#[derive(Clone, Debug)]
pub struct Identity {
    pub principal: Principal,
    /// The token used, if any (none for cookie logins).
    pub token: Option<Token>,
    pub scopes: Arc<ScopeSet>,
    pub session_id: Option<String>,
    /// Members of the groups named in `!group=` filters, loaded with the scopes so that
    /// permission checks need no database round trip.
    group_members: Arc<HashMap<String, HashSet<String>>>,
}

impl Identity {
    pub fn name(&self) -> &str {
        self.principal.name()
    }

    pub fn user(&self) -> Option<&User> {
        match &self.principal {
            Principal::User(u) => Some(u),
            Principal::Service(_) => None,
        }
    }

    pub fn groups_of(&self, user: &str) -> Vec<String> {
        self.group_members
            .iter()
            .filter(|(_, m)| m.contains(user))
            .map(|(g, _)| g.clone())
            .collect()
    }

    pub fn allows(&self, scope: &str, resource: &Resource) -> bool {
        self.scopes.allows(scope, resource, &|u| self.groups_of(u))
    }

    /// 403 when the scope is not held at all, 404 when it is held only for other resources
    /// (so that a caller cannot learn which users exist), as JupyterHub answers.
    pub fn require_any(&self, scopes: &[&str], resource: &Resource) -> ApiResult<()> {
        if scopes.iter().any(|s| self.allows(s, resource)) {
            return Ok(());
        }
        if scopes.iter().any(|s| self.scopes.has_any(s)) {
            return Err(ApiError::not_found(
                "No access to resources or resources not found",
            ));
        }
        Err(ApiError::forbidden(format!(
            "Action is not authorized with current scopes; requires any of [{}]",
            scopes.join(", ")
        )))
    }

    pub fn require(&self, scope: &str, resource: &Resource) -> ApiResult<()> {
        self.require_any(&[scope], resource)
    }
}

/// The token in an `Authorization: token X` or `bearer X` header (scheme case-insensitive).
pub fn token_from_headers(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(char::is_whitespace)?;
    let token = token.trim();
    ((scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer"))
        && !token.is_empty()
        && !token.contains(char::is_whitespace))
    .then_some(token)
}

/// The scopes of a role: the database's (config roles) or a built-in one.
pub(crate) async fn role_scopes(db: &db::Db, role: &str) -> Result<Vec<String>, db::SqlError> {
    if let Some(r) = db::services::get_role(db, role).await? {
        return Ok(r.scopes);
    }
    Ok(scopes::builtin_role_scopes(role)
        .map(|s| s.iter().map(|x| x.to_string()).collect())
        .unwrap_or_default())
}

/// All role names of a user: the implicit `user` (and `admin`) roles, assigned roles and the
/// roles of the user's groups.
/// The groups and database roles of these users: from the identity cache, the misses in one
/// batch (valid for the authorization epoch, as the cached identities).
pub async fn memberships(
    authz: &Authz,
    user_ids: &[i64],
) -> Result<HashMap<i64, Arc<db::users::Membership>>, db::SqlError> {
    let epoch = authz.db.authz_epoch();
    let mut out = HashMap::with_capacity(user_ids.len());
    let mut missing = Vec::new();
    for id in user_ids {
        match authz.identities.membership(*id, epoch) {
            Some(m) => {
                out.insert(*id, m);
            }
            None => missing.push(*id),
        }
    }
    if !missing.is_empty() {
        for (id, m) in db::users::memberships(&authz.db, &missing).await? {
            let m = Arc::new(m);
            authz.identities.put_membership(id, epoch, m.clone());
            out.insert(id, m);
        }
    }
    Ok(out)
}

pub async fn membership(
    authz: &Authz,
    user_id: i64,
) -> Result<Arc<db::users::Membership>, db::SqlError> {
    Ok(memberships(authz, &[user_id])
        .await?
        .remove(&user_id)
        .unwrap_or_default())
}

/// The user's role names: the implicit `user` (and `admin`), and those of the database.
pub fn user_role_names(user: &User, membership: &db::users::Membership) -> BTreeSet<String> {
    let mut roles: BTreeSet<String> = BTreeSet::from(["user".to_string()]);
    if user.admin {
        roles.insert("admin".into());
    }
    roles.extend(membership.roles.iter().cloned());
    roles
}

pub async fn service_role_names(
    authz: &Authz,
    service: &Service,
) -> Result<BTreeSet<String>, db::SqlError> {
    let mut roles: BTreeSet<String> = db::services::role_names(&authz.db, service.id)
        .await?
        .into_iter()
        .collect();
    if service.admin {
        roles.insert("admin".into());
    }
    Ok(roles)
}

/// Everything the principal may do (the union of its roles' scopes, expanded).
pub async fn owner_scopes(authz: &Authz, principal: &Principal) -> ApiResult<ScopeSet> {
    let roles = match principal {
        Principal::User(u) => user_role_names(u, &*membership(authz, u.id).await?),
        Principal::Service(s) => service_role_names(authz, s).await?,
    };
    let mut raw = Vec::new();
    for role in &roles {
        raw.extend(role_scopes(&authz.db, role).await?);
    }
    // Servers shared with the user (directly or through a group) add their scopes.
    if let Principal::User(u) = principal {
        raw.extend(db::shares::scopes_for_user(&authz.db, u.id).await?);
    }
    let owner = owner_of(principal);
    ScopeSet::expand(&raw, &owner, None, None)
        .map_err(|e| ApiError::internal(format!("role scopes: {e}")))
}

fn owner_of(principal: &Principal) -> Owner<'_> {
    match principal {
        Principal::User(u) => Owner::User { name: &u.name },
        Principal::Service(s) => Owner::Service { name: &s.name },
    }
}

/// Group names appearing in `!group=` filters of a scope set.
fn filter_groups(scopes: &ScopeSet) -> BTreeSet<String> {
    scopes
        .to_strings()
        .iter()
        .filter_map(|s| s.split_once("!group=").map(|(_, g)| g.to_string()))
        .collect()
}

async fn load_group_members(
    authz: &Authz,
    groups: BTreeSet<String>,
) -> Result<HashMap<String, HashSet<String>>, db::SqlError> {
    let mut map = HashMap::new();
    for g in groups {
        if let Some(group) = db::groups::get(&authz.db, &g).await? {
            map.insert(
                g,
                db::groups::members(&authz.db, group.id)
                    .await?
                    .into_iter()
                    .collect(),
            );
        }
    }
    Ok(map)
}

async fn load_principal(authz: &Authz, token: &Token) -> Result<Option<Principal>, db::SqlError> {
    Ok(match token.owner {
        tokens::Owner::User(id) => db::users::get_by_id(&authz.db, id)
            .await?
            .map(Principal::User),
        tokens::Owner::Service(id) => db::services::get_by_id(&authz.db, id)
            .await?
            .map(Principal::Service),
    })
}

/// The identity behind an API token; `None` for unknown, expired or revoked tokens, and for a
/// user's token once their identity provider refused to refresh their sign-in (as JupyterHub,
/// every request refreshes auth_state older than `auth_refresh_age`). Served from
/// [`cache::IdentityCache`] while nothing it depends on has changed.
pub async fn identity_for_token(authz: &Authz, raw: &str) -> ApiResult<Option<Identity>> {
    let identity = resolve_token(authz, raw).await?;
    if let Some(Principal::User(u)) = identity.as_ref().map(|i| &i.principal) {
        // A blocked user's tokens (their servers' own included) stop working at once: the
        // server can no longer sign anyone in, nor be reached through the hub.
        if authz.is_blocked(&u.name) {
            return Ok(None);
        }
        if !authz.auth_states.on_request(u).await {
            return Ok(None);
        }
    }
    Ok(identity)
}

async fn resolve_token(authz: &Authz, raw: &str) -> ApiResult<Option<Identity>> {
    let now = now_micros();
    let key = cache::token_key(raw);
    if let Some(hit) = authz.identities.token(&key, authz.db.authz_epoch()) {
        let token = hit.identity.token.as_ref();
        if token.and_then(|t| t.expires_at).is_some_and(|e| e <= now) {
            authz.identities.forget_token(&key);
            return Ok(None);
        }
        if now - hit.touched > ACTIVITY_RESOLUTION_MICROS {
            let recorded = match token {
                Some(token) => record_use(authz, token, &hit.identity.principal, now).await,
                None => Ok(()),
            };
            match recorded {
                Ok(()) => authz.identities.touched(&key, now),
                // The identity is known without the database: it serves while the database
                // restarts, and the use is written by a later request.
                Err(e) if db::is_unavailable(&e) => {
                    tracing::debug!(error = %e, "token use not recorded: the database is not reachable");
                }
                Err(e) => return Err(e.into()),
            }
        }
        return Ok(Some(hit.identity));
    }
    // Read before the queries: a write that lands meanwhile makes this entry stale at once.
    let epoch = authz.db.authz_epoch();
    let Some(token) = tokens::find(&authz.db, raw).await? else {
        return Ok(None);
    };
    let Some(principal) = load_principal(authz, &token).await? else {
        return Ok(None);
    };
    if let Principal::User(u) = &principal {
        if !u.approved {
            return Ok(None);
        }
    }
    let owner = owner_scopes(authz, &principal).await?;
    let owner_ref = owner_of(&principal);
    let token_scopes = ScopeSet::expand(&token.scopes, &owner_ref, None, Some(&owner))
        .map_err(|e| ApiError::internal(format!("token a{} scopes: {e}", token.id)))?;
    let mut groups = filter_groups(&owner);
    groups.extend(filter_groups(&token_scopes));
    let group_members = load_group_members(authz, groups).await?;
    let groups_of = |u: &str| -> Vec<String> {
        group_members
            .iter()
            .filter(|(_, m)| m.contains(u))
            .map(|(g, _)| g.clone())
            .collect()
    };
    let mut scopes = token_scopes.intersect(&owner, &groups_of);
    scopes.union(&scopes::identify_scopes(&owner_ref));

    let mut touched = token.last_activity.unwrap_or(0);
    if now - touched > ACTIVITY_RESOLUTION_MICROS {
        record_use(authz, &token, &principal, now).await?;
        touched = now;
    }
    let session_id = token.session_id.clone();
    let identity = Identity {
        principal,
        token: Some(token),
        scopes: Arc::new(scopes),
        session_id,
        group_members: Arc::new(group_members),
    };
    authz.identities.put_token(
        key,
        epoch,
        cache::TokenHit {
            identity: identity.clone(),
            touched,
        },
    );
    Ok(Some(identity))
}

/// Writes back a token's use (JupyterHub's `last_activity`, at `activity_resolution`).
async fn record_use(
    authz: &Authz,
    token: &Token,
    principal: &Principal,
    now: i64,
) -> Result<(), db::SqlError> {
    tokens::touch(&authz.db, token.id, now).await?;
    if let Principal::User(u) = principal {
        // A server's own token says nothing about the person being active.
        if !token.note.starts_with("Server at ") {
            db::users::touch_activity(&authz.db, u.id, now).await?;
        }
    }
    Ok(())
}

/// The identity of a user logged in with the hub cookie: all of the user's own scopes.
pub async fn identity_for_user(
    authz: &Authz,
    user: User,
    session_id: Option<String>,
) -> ApiResult<Identity> {
    let epoch = authz.db.authz_epoch();
    let user_id = user.id;
    let principal = Principal::User(user);
    let owner = match authz.identities.user(user_id, epoch) {
        Some(owner) => owner,
        None => {
            let scopes = owner_scopes(authz, &principal).await?;
            let group_members = load_group_members(authz, filter_groups(&scopes)).await?;
            let owner = cache::OwnerScopes {
                scopes: Arc::new(scopes),
                group_members: Arc::new(group_members),
            };
            authz.identities.put_user(user_id, epoch, owner.clone());
            owner
        }
    };
    Ok(Identity {
        principal,
        token: None,
        scopes: owner.scopes,
        session_id,
        group_members: owner.group_members,
    })
}
