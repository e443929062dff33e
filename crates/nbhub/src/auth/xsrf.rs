//! XSRF protection for forms and cookie-authenticated API calls: a double-submit token whose
//! value is signed with the hub's secret together with what it is bound to (the browser's
//! session id and login, as JupyterHub ≥ 4.1 derives its token from the session). A token
//! issued to another browser, or a cookie planted by someone else (for example by a
//! single-user server on the same origin), does not validate.

use rand::RngCore;

use super::session;

fn mac(secret: &[u8], nonce: &str, binding: &str) -> String {
    let tag = session::sign(
        secret,
        session::XSRF_COOKIE,
        &format!("{nonce}|{binding}"),
        0,
    );
    // Only the MAC is needed; drop the value and issued-time fields of the generic signer.
    tag.rsplit('|').next().unwrap_or_default().to_string()
}

/// A new token for `binding`: random part and its signature.
pub fn new_token(secret: &[u8], binding: &str) -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let nonce = hex::encode(bytes);
    let mac = mac(secret, &nonce, binding);
    format!("{nonce}:{mac}")
}

/// True if the submitted token equals the cookie's and is our signature for `binding`.
pub fn check(secret: &[u8], binding: &str, cookie: Option<&str>, submitted: Option<&str>) -> bool {
    let (Some(cookie), Some(submitted)) = (cookie, submitted) else {
        return false;
    };
    if cookie.is_empty()
        || !crate::secrets::constant_time_eq(cookie.as_bytes(), submitted.as_bytes())
    {
        return false;
    }
    let Some((nonce, tag)) = cookie.split_once(':') else {
        return false;
    };
    crate::secrets::constant_time_eq(mac(secret, nonce, binding).as_bytes(), tag.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_submit_with_signature() {
        let t = new_token(b"k", "sid|cid");
        assert!(check(b"k", "sid|cid", Some(&t), Some(&t)));
        assert!(!check(b"k", "sid|cid", Some(&t), None));
        assert!(!check(b"k", "sid|cid", None, Some(&t)));
        assert!(!check(b"k", "sid|cid", Some(&t), Some("x")));
        assert!(
            !check(b"other", "sid|cid", Some(&t), Some(&t)),
            "not signed by us"
        );
        assert!(!check(b"k", "sid|cid", Some("a:b"), Some("a:b")));
    }

    #[test]
    fn bound_to_the_session() {
        let t = new_token(b"k", "sid-a|");
        assert!(!check(b"k", "sid-b|", Some(&t), Some(&t)), "other session");
        assert!(
            !check(b"k", "sid-a|cookie", Some(&t), Some(&t)),
            "after login"
        );
    }
}
