//! The hub's cookies: the signed login cookie `jupyterhub-hub-login` (holds the user's cookie_id
//! and the browser session it was issued to), the plain `jupyterhub-session-id` that
//! single-user servers read, and their attributes; and the sessions a logout ended.

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secrets::constant_time_eq;

pub const LOGIN_COOKIE: &str = "jupyterhub-hub-login";
pub const SESSION_COOKIE: &str = "jupyterhub-session-id";
pub const XSRF_COOKIE: &str = "_xsrf";

fn mac(secret: &[u8], parts: &[&str]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    for p in parts {
        m.update(p.as_bytes());
        m.update(b"|");
    }
    hex::encode(m.finalize().into_bytes())
}

/// `value|issued|mac`, bound to the cookie's name so one cookie cannot stand in for another.
pub fn sign(secret: &[u8], name: &str, value: &str, issued_secs: i64) -> String {
    let issued = issued_secs.to_string();
    let tag = mac(secret, &[name, value, &issued]);
    format!("{value}|{issued}|{tag}")
}

/// The value of a signed cookie if its signature holds and it is not older than `max_age_secs`.
pub fn verify(
    secret: &[u8],
    name: &str,
    signed: &str,
    now_secs: i64,
    max_age_secs: i64,
) -> Option<String> {
    let mut parts = signed.rsplitn(3, '|');
    let (tag, issued, value) = (parts.next()?, parts.next()?, parts.next()?);
    let issued_secs: i64 = issued.parse().ok()?;
    if now_secs - issued_secs > max_age_secs || issued_secs > now_secs + 60 {
        return None;
    }
    constant_time_eq(
        mac(secret, &[name, value, issued]).as_bytes(),
        tag.as_bytes(),
    )
    .then(|| value.to_string())
}

/// The login cookie's value: the user's cookie_id and the browser session it belongs to, so
/// that a logout can end that one session (and every copy of its cookie) on the server.
pub fn login_value(cookie_id: &str, session_id: &str) -> String {
    format!("{cookie_id}:{session_id}")
}

/// `(cookie_id, session_id)` of a verified login cookie's value; cookies issued before
/// sessions were named carry no session.
pub fn parse_login_value(value: &str) -> (&str, Option<&str>) {
    match value.split_once(':') {
        Some((id, sid)) if !sid.is_empty() => (id, Some(sid)),
        _ => (value, None),
    }
}

/// Browser sessions ended by a logout, kept in memory (checked on every cookie request) and in
/// the database (`db::sessions`, read back at start), each until its cookie would have expired.
#[derive(Default)]
pub struct EndedSessions {
    ended: Mutex<HashMap<String, i64>>,
}

impl EndedSessions {
    pub async fn load(&self, db: &crate::db::Db) -> Result<(), crate::db::SqlError> {
        let rows = crate::db::sessions::live(db, crate::db::now_micros()).await?;
        self.lock().extend(rows);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_ended(&self, session_id: &str) -> bool {
        self.lock().contains_key(session_id)
    }

    /// Ends `session_id` for `max_age_micros` from now: in memory at once, then in the database.
    pub async fn end(
        &self,
        db: &crate::db::Db,
        session_id: &str,
        max_age_micros: i64,
    ) -> Result<(), crate::db::SqlError> {
        let now = crate::db::now_micros();
        let until = now.saturating_add(max_age_micros);
        {
            let mut map = self.lock();
            map.retain(|_, t| *t >= now);
            map.insert(session_id.to_string(), until);
        }
        crate::db::sessions::end(db, session_id, until, now).await
    }
}

/// Reads one cookie from the `Cookie` headers (the first of that name), its value without
/// surrounding double quotes.
pub fn get_cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name_raw() == Some(name))
        .and_then(|c| c.value_raw())
        .map(|v| v.trim_matches('"'))
}

/// A `Set-Cookie` value: HttpOnly and SameSite=Lax always, Secure on https.
pub fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age_secs: Option<i64>,
    secure: bool,
) -> String {
    let mut c = base_cookie(name, value, path);
    if let Some(age) = max_age_secs {
        c.set_max_age(time::Duration::seconds(age));
    }
    if secure {
        c.set_secure(true);
    }
    c.to_string()
}

/// A `Set-Cookie` value that removes the cookie (expired, empty).
pub fn clear_cookie(name: &str, path: &str) -> String {
    let mut c = base_cookie(name, "", path);
    c.set_max_age(time::Duration::ZERO);
    c.set_expires(time::OffsetDateTime::UNIX_EPOCH);
    c.to_string()
}

fn base_cookie<'c>(name: &'c str, value: &'c str, path: &'c str) -> cookie::Cookie<'c> {
    cookie::Cookie::build((name, value))
        .path(path)
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_and_written() {
        let mut headers = http::HeaderMap::new();
        headers.append(http::header::COOKIE, "a=1; b=\"2\"".parse().unwrap());
        headers.append(http::header::COOKIE, "c=x=y; a=ignored".parse().unwrap());
        assert_eq!(get_cookie(&headers, "a"), Some("1"));
        assert_eq!(get_cookie(&headers, "b"), Some("2"));
        assert_eq!(get_cookie(&headers, "c"), Some("x=y"));
        assert_eq!(get_cookie(&headers, "d"), None);
        let set = set_cookie("n", "v", "/hub/", Some(60), true);
        for part in [
            "n=v",
            "Path=/hub/",
            "HttpOnly",
            "SameSite=Lax",
            "Max-Age=60",
            "Secure",
        ] {
            assert!(set.split("; ").any(|p| p == part), "{part} in {set}");
        }
        assert!(!set_cookie("n", "v", "/", None, false).contains("Secure"));
        let clear = clear_cookie("n", "/");
        assert!(clear.starts_with("n=;"), "{clear}");
        assert!(
            clear.contains("Max-Age=0") && clear.contains("Expires=Thu, 01 Jan 1970 00:00:00 GMT")
        );
    }

    #[test]
    fn signed_cookies() {
        let s = sign(b"secret", LOGIN_COOKIE, "abc", 1000);
        assert_eq!(
            verify(b"secret", LOGIN_COOKIE, &s, 1010, 100).as_deref(),
            Some("abc")
        );
        assert_eq!(
            verify(b"other", LOGIN_COOKIE, &s, 1010, 100),
            None,
            "wrong secret"
        );
        assert_eq!(
            verify(b"secret", SESSION_COOKIE, &s, 1010, 100),
            None,
            "wrong name"
        );
        assert_eq!(
            verify(b"secret", LOGIN_COOKIE, &s, 2000, 100),
            None,
            "too old"
        );
        let forged = s.replace("abc", "abd");
        assert_eq!(
            verify(b"secret", LOGIN_COOKIE, &forged, 1010, 100),
            None,
            "forged"
        );
    }

    #[test]
    fn login_values_name_their_session() {
        let v = login_value("cid", "sid");
        assert_eq!(parse_login_value(&v), ("cid", Some("sid")));
        assert_eq!(parse_login_value("cid"), ("cid", None));
        assert_eq!(parse_login_value("cid:"), ("cid:", None));
    }

    #[test]
    fn cookie_attributes() {
        let c = set_cookie("a", "b", "/hub/", Some(10), true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.contains("Secure"));
        assert!(!set_cookie("a", "b", "/", None, false).contains("Secure"));
    }
}
