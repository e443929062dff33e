//! The hub's cookies: the signed login cookie `jupyterhub-hub-login` (holds the user's cookie_id),
//! the plain `jupyterhub-session-id` that single-user servers read, and their attributes.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::db::tokens::constant_time_eq;

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

/// Reads one cookie from a `Cookie` header.
pub fn get_cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// A `Set-Cookie` value: HttpOnly and SameSite=Lax always, Secure on https.
pub fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age_secs: Option<i64>,
    secure: bool,
) -> String {
    let mut c = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age_secs {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

pub fn clear_cookie(name: &str, path: &str) -> String {
    format!("{name}=; Path={path}; HttpOnly; SameSite=Lax; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT")
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn cookie_attributes() {
        let c = set_cookie("a", "b", "/hub/", Some(10), true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.contains("Secure"));
        assert!(!set_cookie("a", "b", "/", None, false).contains("Secure"));
    }
}
