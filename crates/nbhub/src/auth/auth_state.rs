//! auth_state: what an identity provider gave at sign-in (its tokens and userinfo), kept per
//! user, sealed with `JUPYTERHUB_CRYPT_KEY` (`auth/crypt.rs`), refreshed when it is older than
//! `auth_refresh_age` (at the user's next request, with the cookie or an API token, and before
//! a spawn with `refresh_pre_spawn`), and handed to a user's server only through
//! `auth_state_env`.
//!
//! A refresh the provider refuses drops the tokens and ends the user's browser sessions; an
//! auth_state no key opens refuses their requests until they sign in again; without any, a
//! spawn that needs it asks them to sign in; a provider that does not answer leaves everything as it is. Refreshes of one user run one
//! at a time: providers that rotate refresh tokens revoke the whole grant when one is used
//! twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::crypt::{CryptKeeper, Unreadable};
use super::oidc::{OidcClient, SignInError};
use crate::config::Config;
use crate::db::{self, users::User, Db};
use crate::supervisor::{BoxFuture, PreSpawn, SpawnRefused};

/// Why a user's auth_state cannot be used now.
#[derive(Debug)]
pub enum Stale {
    /// The user must sign in again (a refused refresh, an unreadable auth_state).
    SignInAgain(String),
    /// There is no auth_state (a user made through the API, or not signed in since
    /// `enable_auth_state`): nothing to refresh, but a spawn that needs it cannot go on.
    Missing(String),
    /// The provider did not answer; nothing was changed.
    Unavailable(String),
    Internal(String),
}

impl From<Stale> for SpawnRefused {
    fn from(s: Stale) -> Self {
        match s {
            Stale::SignInAgain(m) | Stale::Missing(m) => SpawnRefused::SignInAgain(m),
            Stale::Unavailable(m) => SpawnRefused::Unavailable(m),
            Stale::Internal(m) => SpawnRefused::Internal(m),
        }
    }
}

impl From<sqlx::Error> for Stale {
    fn from(e: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&e) {
            return Stale::Unavailable(crate::db::UNAVAILABLE_MESSAGE.into());
        }
        Stale::Internal(format!("database: {e}"))
    }
}

/// A value put in a server's environment is at most this long (an ID token is ~1 KiB).
const MAX_ENV_VALUE: usize = 32 * 1024;

pub struct AuthStates {
    db: Db,
    config: Arc<Config>,
    crypt: Option<Arc<CryptKeeper>>,
    /// Set with `kind = "generic-oauth"` and `enable_auth_state`: the tokens can be refreshed.
    oidc: Option<Arc<OidcClient>>,
    /// One refresh at a time per user.
    locks: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
    /// When each user's auth_state was last found fresh: requests in between skip the check.
    checked: Mutex<HashMap<i64, Instant>>,
    /// Users who must sign in again (no auth_state, an unreadable one, a refused refresh):
    /// their requests are refused without a query until auth_state is written again.
    needs_sign_in: Mutex<HashSet<i64>>,
}

impl AuthStates {
    pub fn new(
        db: Db,
        config: Arc<Config>,
        crypt: Option<Arc<CryptKeeper>>,
        oidc: Option<Arc<OidcClient>>,
    ) -> Self {
        let oidc = oidc.filter(|_| config.authenticator.enable_auth_state);
        AuthStates {
            db,
            config,
            crypt,
            oidc,
            locks: Default::default(),
            checked: Default::default(),
            needs_sign_in: Default::default(),
        }
    }

    /// The user's auth_state as JSON (null when there is none).
    pub fn read(&self, user: &User) -> Result<Value, Unreadable> {
        super::crypt::read_stored(self.crypt.as_deref(), user.id, user.auth_state.as_deref())
    }

    /// For the REST API, read now (the request itself may just have refreshed it): what
    /// cannot be read is null, with a warning in the log.
    pub async fn for_api(&self, user: &User) -> Result<Value, sqlx::Error> {
        let stored = db::users::stored_auth_state(&self.db, user.id).await?;
        let read = super::crypt::read_stored(self.crypt.as_deref(), user.id, stored.as_deref());
        Ok(read.unwrap_or_else(|why| {
            tracing::warn!(user = %user.name, "auth_state cannot be read: {why}");
            Value::Null
        }))
    }

    /// Stores `value` (sealed when the hub has a key).
    pub async fn save(&self, user_id: i64, value: &Value) -> Result<(), Stale> {
        let stored = super::crypt::to_stored(self.crypt.as_deref(), user_id, value)
            .map_err(Stale::Internal)?;
        db::users::set_auth_state(&self.db, user_id, stored.as_deref()).await?;
        if let Ok(mut n) = self.needs_sign_in.lock() {
            n.remove(&user_id);
        }
        Ok(())
    }

    /// After a sign-in: the new auth_state, fresh from now.
    pub async fn signed_in(&self, user_id: i64, value: &Value) -> Result<(), Stale> {
        if !self.config.authenticator.enable_auth_state {
            return Ok(());
        }
        self.save(user_id, value).await?;
        self.mark_checked(user_id);
        Ok(())
    }

    fn mark_checked(&self, user_id: i64) {
        if let Ok(mut c) = self.checked.lock() {
            c.insert(user_id, Instant::now());
        }
    }

    fn refresh_age(&self) -> Duration {
        Duration::from_secs(self.config.authenticator.auth_refresh_age)
    }

    /// A browser request of a signed-in user: false when they must sign in again (their
    /// sessions have then been ended). Costs a map lookup unless `auth_refresh_age` has passed.
    pub async fn on_request(&self, user: &User) -> bool {
        // auth_refresh_age = 0 turns the refresh at requests off, as JupyterHub's.
        if self.oidc.is_none() || self.config.authenticator.auth_refresh_age == 0 {
            return true;
        }
        if self
            .needs_sign_in
            .lock()
            .is_ok_and(|n| n.contains(&user.id))
        {
            return false;
        }
        let recent = self
            .checked
            .lock()
            .ok()
            .and_then(|c| c.get(&user.id).copied())
            .is_some_and(|at| at.elapsed() < self.refresh_age());
        if recent {
            return true;
        }
        match self.fresh(user).await {
            Ok(_) => true,
            Err(Stale::SignInAgain(why)) => {
                tracing::info!(user = %user.name, "signed out: {why}");
                false
            }
            // Nothing to refresh: the requests of such a user (a robot account with API
            // tokens only, say) go on.
            Err(Stale::Missing(_)) => {
                self.mark_checked(user.id);
                true
            }
            Err(e) => {
                // The provider is away: keep the session, and ask again after a while.
                tracing::warn!(user = %user.name, "auth_state refresh postponed: {e:?}");
                self.mark_checked(user.id);
                true
            }
        }
    }

    /// The user's auth_state, refreshed first if its tokens are older than
    /// `auth_refresh_age` or have expired.
    pub async fn fresh(&self, user: &User) -> Result<Value, Stale> {
        self.refreshed(user, false).await
    }

    /// The user's auth_state, refreshed at the provider now, whatever its age (JupyterHub's
    /// `refresh_user(force=True)`, as `refresh_pre_stop` asks).
    pub async fn fresh_forced(&self, user: &User) -> Result<Value, Stale> {
        self.refreshed(user, true).await
    }

    async fn refreshed(&self, user: &User, force: bool) -> Result<Value, Stale> {
        let lock = {
            let mut locks = self
                .locks
                .lock()
                .map_err(|_| Stale::Internal("lock".into()))?;
            locks.entry(user.id).or_default().clone()
        };
        let _one_at_a_time = lock.lock().await;
        let name = &user.name;
        // Read again under the lock: a refresh just before this one changed it.
        let Some(user) = db::users::get_by_id(&self.db, user.id).await? else {
            return Err(Stale::SignInAgain(format!("{name} no longer exists")));
        };
        let state = match self.read(&user) {
            Ok(Value::Null) => {
                return Err(Stale::Missing(format!(
                    "The hub keeps no sign-in of {} from the identity provider (auth_state), which this needs. Sign in again.",
                    user.name
                )))
            }
            Ok(s) => s,
            Err(why) => {
                let why = format!("their saved sign-in cannot be read: {why}");
                return Err(self.must_sign_in(&user, &why));
            }
        };
        let now = jsonwebtoken::get_current_timestamp();
        let issued = state["token_issued_at"].as_u64().unwrap_or(0);
        let expired = state["expires_at"].as_u64().is_some_and(|at| at <= now);
        let young = now.saturating_sub(issued) < self.config.authenticator.auth_refresh_age;
        if !force && young && !expired {
            self.mark_checked(user.id);
            return Ok(state);
        }
        let Some(oidc) = &self.oidc else {
            return Ok(state);
        };
        // Many providers give no refresh token: the access token then serves until it expires,
        // and only then must the user sign in again.
        if state["refresh_token"].as_str().is_none() {
            if expired {
                let why =
                    "the access token has expired, and the identity provider gave no refresh token";
                return Err(self.end_sign_in(&user, why).await);
            }
            self.mark_checked(user.id);
            return Ok(state);
        }
        let refreshed = match oidc.refresh(&state).await {
            Ok(r) => r,
            Err(SignInError::ProviderUnavailable(m)) => return Err(Stale::Unavailable(m)),
            Err(SignInError::Refused(m)) => {
                let why = format!("the identity provider refused to refresh it: {m}");
                return Err(self.end_sign_in(&user, &why).await);
            }
        };
        if refreshed.username != user.name {
            let why = format!(
                "the identity provider now names them {:?}",
                refreshed.username
            );
            return Err(self.end_sign_in(&user, &why).await);
        }
        match super::oidc::decide(&self.config.authenticator, &refreshed, true) {
            Err(why) => return Err(self.end_sign_in(&user, &why).await),
            Ok(Some(admin)) if admin != user.admin => {
                db::users::set_admin(&self.db, user.id, admin).await?
            }
            Ok(_) => {}
        }
        if self.config.authenticator.manage_groups {
            db::users::set_groups_creating(&self.db, user.id, &refreshed.groups).await?;
        }
        self.save(user.id, &refreshed.auth_state).await?;
        self.mark_checked(user.id);
        tracing::info!(user = %user.name, "tokens refreshed at the identity provider");
        Ok(refreshed.auth_state)
    }

    /// The provider ended the sign-in: its tokens are dropped and the user is logged out
    /// everywhere (once: later requests stop at `needs_sign_in`).
    async fn end_sign_in(&self, user: &User, why: &str) -> Stale {
        if let Err(e) = db::users::set_auth_state(&self.db, user.id, None).await {
            return Stale::Internal(format!("database: {e}"));
        }
        if let Err(e) = db::users::reset_cookie_id(&self.db, user.id).await {
            return Stale::Internal(format!("database: {e}"));
        }
        self.must_sign_in(user, why)
    }

    /// The user's requests are refused until auth_state is written again, by a sign-in (no
    /// write here: an auth_state no key opens is readable again if the old key comes back);
    /// the reason, for the page or the API.
    fn must_sign_in(&self, user: &User, why: &str) -> Stale {
        if let Ok(mut c) = self.checked.lock() {
            c.remove(&user.id);
        }
        if let Ok(mut n) = self.needs_sign_in.lock() {
            n.insert(user.id);
        }
        Stale::SignInAgain(format!(
            "The sign-in of {} has ended ({why}). Sign in again.",
            user.name
        ))
    }

    /// The variables `auth_state_env` maps from the user's auth_state.
    fn environment(&self, user: &User, state: &Value) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for (name, path) in &self.config.authenticator.auth_state_env {
            let value = match super::oidc::claim_at(state, path) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            if value.contains('\0') || value.len() > MAX_ENV_VALUE {
                tracing::warn!(user = %user.name, variable = %name, "auth_state value left out of the server's environment: it holds a NUL or is over 32 KiB");
                continue;
            }
            env.insert(name.clone(), value);
        }
        env
    }

    async fn before_spawn_inner(&self, user: &User) -> Result<BTreeMap<String, String>, Stale> {
        let a = &self.config.authenticator;
        if !a.enable_auth_state || (!a.refresh_pre_spawn && a.auth_state_env.is_empty()) {
            return Ok(BTreeMap::new());
        }
        let state = if a.refresh_pre_spawn && self.oidc.is_some() {
            self.fresh(user).await?
        } else {
            self.read(user).map_err(|why| {
                Stale::SignInAgain(format!(
                    "The saved sign-in of {} cannot be read ({why}). Sign in again.",
                    user.name
                ))
            })?
        };
        Ok(self.environment(user, &state))
    }
}

impl PreSpawn for AuthStates {
    fn before_spawn<'a>(
        &'a self,
        user: &'a User,
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, SpawnRefused>> {
        Box::pin(async move { self.before_spawn_inner(user).await.map_err(Into::into) })
    }
}
