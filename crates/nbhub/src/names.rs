//! Names that reach URLs, file paths and command lines: users, groups, servers, services.
//! They are checked once, where they enter, against one conservative rule.

/// Letters, digits and `-_.@+`, 1–255 characters, not starting with `-` or `.`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '+'))
}

/// What JupyterHub's default authenticator does to a user name before anything else.
pub fn normalize_username(name: &str) -> String {
    name.trim().to_lowercase()
}

/// A server name: like a user name, but `""` is the default server.
pub fn is_valid_server_name(name: &str) -> bool {
    name.is_empty() || (is_valid_name(name) && !name.contains('@'))
}

/// A name as it appears in a URL path: percent-escaped except letters, digits and `-._~@`
/// (JupyterHub's `quote(name, safe="@~")`), so `a+b` is `a%2Bb`.
pub fn url_escape(name: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'@');
    percent_encoding::utf8_percent_encode(name, KEEP).to_string()
}

pub fn invalid_name_message(kind: &str, name: &str) -> String {
    format!(
        "Invalid {kind} name {name:?}: use 1 to 255 letters, digits and - _ . @ +, not starting with - or ."
    )
}

/// The OAuth client id of a user's server, as JupyterHub names it.
pub fn server_client_id(user: &str, server: &str) -> String {
    let q = |s: &str| -> String {
        percent_encoding::utf8_percent_encode(s, CLIENT_ID_ESCAPE).to_string()
    };
    if server.is_empty() {
        format!("jupyterhub-user-{}", q(user))
    } else {
        format!("jupyterhub-user-{}-{}", q(user), q(server))
    }
}

/// Python's `quote(s, safe="/")`: everything but unreserved characters and `/` is escaped.
const CLIENT_ID_ESCAPE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// `application/x-www-form-urlencoded` text of `s` (a query value, a form field).
pub fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_as_jupyterhub() {
        assert_eq!(server_client_id("alice", ""), "jupyterhub-user-alice");
        assert_eq!(
            server_client_id("a@b.c", "foo"),
            "jupyterhub-user-a%40b.c-foo"
        );
    }

    #[test]
    fn names() {
        for ok in ["alice", "bob-2", "a.b", "x@y.org", "ünï"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-rf",
            ".hidden",
            "a b",
            "a/b",
            "a;b",
            "$(x)",
            &"x".repeat(256),
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
        assert_eq!(normalize_username(" Alice "), "alice");
        assert_eq!(url_escape("a+b@x.org"), "a%2Bb@x.org");
        assert_eq!(url_escape("ünï"), "%C3%BCn%C3%AF");
    }
}
