//! XSRF protection for forms and cookie-authenticated API calls: a double-submit token whose
//! cookie value is also signed with the hub's secret, so a cookie planted by someone else (for
//! example by a single-user server on the same origin) does not validate.

use rand::RngCore;

use super::session;

/// A new token: random part and its signature.
pub fn new_token(secret: &[u8]) -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let nonce = hex::encode(bytes);
    let tag = session::sign(secret, session::XSRF_COOKIE, &nonce, 0);
    // Only `nonce:mac` is needed; drop the issued-time field of the generic signer.
    let mac = tag.rsplit('|').next().unwrap_or_default();
    format!("{nonce}:{mac}")
}

/// True if the token is well-formed, signed by us, and equal to the cookie's.
pub fn check(secret: &[u8], cookie: Option<&str>, submitted: Option<&str>) -> bool {
    let (Some(cookie), Some(submitted)) = (cookie, submitted) else {
        return false;
    };
    if cookie.is_empty()
        || !crate::db::tokens::constant_time_eq(cookie.as_bytes(), submitted.as_bytes())
    {
        return false;
    }
    let Some((nonce, mac)) = cookie.split_once(':') else {
        return false;
    };
    session::verify(
        secret,
        session::XSRF_COOKIE,
        &format!("{nonce}|0|{mac}"),
        0,
        i64::MAX,
    )
    .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_submit_with_signature() {
        let t = new_token(b"k");
        assert!(check(b"k", Some(&t), Some(&t)));
        assert!(!check(b"k", Some(&t), None));
        assert!(!check(b"k", None, Some(&t)));
        assert!(!check(b"k", Some(&t), Some("x")));
        assert!(!check(b"other", Some(&t), Some(&t)), "not signed by us");
        assert!(!check(b"k", Some("a:b"), Some("a:b")));
    }
}
