//! From claims to a user: the user name (claim, domain stripping, `username_map`), groups by
//! dotted path, and OAuthenticator's rules for who may sign in and who is admin.

use serde_json::Value;

use crate::config::AuthenticatorConfig;

use super::*;

/// May this user sign in, and are they admin (None: leave as it is)? OAuthenticator's rules.
pub fn decide(
    auth: &AuthenticatorConfig,
    who: &SignedIn,
    exists: bool,
) -> Result<Option<bool>, String> {
    let name = &who.username;
    if auth.blocked_users.contains(name) {
        return Err(format!("{name} may not sign in to this hub."));
    }
    // The provider's groups lost a leading '/' (Keycloak's full paths); so do the configured.
    let member_of = |list: &[String]| {
        list.iter()
            .any(|want| who.groups.iter().any(|g| g == want.trim_start_matches('/')))
    };
    let admin_user = auth.admin_users.contains(name);
    let admin_by_group = member_of(&auth.admin_groups);
    let allowed = auth.allow_all
        || admin_user
        || admin_by_group
        || auth.allowed_users.contains(name)
        || member_of(&auth.allowed_groups)
        || (auth.allow_existing_users && exists);
    if !allowed {
        let why = if auth.allowed_groups.is_empty() {
            String::new()
        } else {
            format!(" (members of {} may)", auth.allowed_groups.join(", "))
        };
        return Err(format!("{name} is not allowed to use this hub{why}."));
    }
    Ok(if admin_user || admin_by_group {
        Some(true)
    } else if !auth.admin_groups.is_empty() {
        // With admin_groups the provider decides: leaving the group ends admin rights.
        Some(false)
    } else {
        None
    })
}

/// The hub name for a provider's user name claim: an `@domain` listed in
/// `username_strip_domains` (or any, with `"*"`) cut off, lower-cased as every login's, then
/// `username_map`.
pub fn map_username(config: &AuthenticatorConfig, raw: &str) -> String {
    let mut name = raw.trim();
    if let Some((local, domain)) = name.rsplit_once('@') {
        let strip = config
            .username_strip_domains
            .iter()
            .any(|d| d == "*" || d.eq_ignore_ascii_case(domain));
        if strip && !local.is_empty() {
            name = local;
        }
    }
    let name = crate::names::normalize_username(name);
    config.username_map.get(&name).cloned().unwrap_or(name)
}

/// A claim by dotted path (`"realm_access.roles"`); a claim whose own name has dots is found too.
pub fn claim_at<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(claims, |v, part| v.get(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_from_claims() {
        let mut c = AuthenticatorConfig::default();
        assert_eq!(map_username(&c, "Alice@Uni.Example"), "alice@uni.example");
        c.username_strip_domains = vec!["uni.example".into()];
        assert_eq!(map_username(&c, "Alice@Uni.Example"), "alice");
        assert_eq!(
            map_username(&c, "alice@elsewhere.example"),
            "alice@elsewhere.example"
        );
        assert_eq!(map_username(&c, "@uni.example"), "@uni.example");
        c.username_strip_domains = vec!["*".into()];
        assert_eq!(map_username(&c, "bob@elsewhere.example"), "bob");
        c.username_map.insert("bob".into(), "robert".into());
        assert_eq!(map_username(&c, "Bob@x.example"), "robert");
    }

    #[test]
    fn claims_by_dotted_path() {
        let c = serde_json::json!({"a": {"b": ["x"]}, "c.d": 1, "name": "Alice"});
        assert_eq!(claim_at(&c, "a.b"), Some(&serde_json::json!(["x"])));
        assert_eq!(claim_at(&c, "c.d"), Some(&serde_json::json!(1)));
        assert_eq!(claim_at(&c, "a.z"), None);
    }

    fn who(name: &str, groups: &[&str]) -> SignedIn {
        SignedIn {
            username: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            id_token: None,
            auth_state: Value::Null,
        }
    }

    #[test]
    fn allowed_and_admin_groups() {
        let mut a = AuthenticatorConfig {
            allowed_groups: vec!["hpc".into()],
            admin_groups: vec!["admins".into()],
            ..Default::default()
        };
        assert_eq!(decide(&a, &who("alice", &["hpc"]), false), Ok(Some(false)));
        assert_eq!(
            decide(&a, &who("carol", &["admins"]), false),
            Ok(Some(true))
        );
        let err = decide(&a, &who("dave", &[]), true).unwrap_err();
        assert!(err.contains("dave") && err.contains("hpc"), "{err}");
        a.allow_existing_users = true;
        assert_eq!(decide(&a, &who("dave", &[]), true), Ok(Some(false)));
        a.blocked_users = vec!["alice".into()];
        assert!(decide(&a, &who("alice", &["hpc"]), true).is_err());
        a.allowed_groups = vec!["/hpc".into()];
        assert!(
            decide(&a, &who("bob", &["hpc"]), false).is_ok(),
            "Keycloak's full path"
        );
        a.admin_groups.clear();
        assert_eq!(decide(&a, &who("dave", &[]), true), Ok(None));
    }
}
