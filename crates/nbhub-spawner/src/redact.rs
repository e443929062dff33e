//! Secrets masked out of a server's log before anyone is shown it.
//!
//! A Jupyter server's log holds what must not reach a page: OAuth codes and states in the
//! redirects it logs, its XSRF cookie, tokens in URLs, `Authorization` headers, and whatever
//! the user's own code prints. The last lines of a job are shown to its owner after it ended
//! (the home page, the pending page), so every quote of a log goes through [`mask_secrets`].

use std::sync::LazyLock;

use regex::{Captures, Regex};

/// What a masked value is replaced by.
const HIDDEN: &str = "[hidden]";

/// `Authorization: token abc`, `authorization=Bearer abc`: the credential (the scheme stays).
static AUTHORIZATION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)(authorization["']?\s*[:=]\s*["']?)(?:(token|bearer|basic)\s+)?[^\s"',;]+"#)
        .expect("regex")
});

/// `Cookie: a=1; b=2` and `Set-Cookie: _xsrf=…; Path=/`: everything after the header name
/// (each value is masked by [`COOKIE_VALUE`]).
static COOKIE_HEADER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)(\bcookie\s*:\s*)(.*)").expect("regex"));
static COOKIE_VALUE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"([\w.!#$%&'*+^`|~-]+)=("?)[^;,\s"]*"#).expect("regex"));
/// Cookie attributes, whose values are not secret.
const COOKIE_ATTRIBUTES: &[&str] = &["path", "domain", "expires", "max-age", "samesite"];

/// `token=…`, `_xsrf=…`, `JUPYTERHUB_API_TOKEN=…`, `"client_secret": "…"`, `password: …`:
/// a key naming a secret, then `=` or `:`, then the value.
static SECRET_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)([\w.-]*(?:token|secret|passw(?:or)?d|xsrf|csrf|cookie|api_?key|session|credential)[\w.-]*["']?\s*[=:]\s*["']?)([^\s"'&;,)\]}>]+)"#,
    )
    .expect("regex")
});

/// A run of 32 or more characters of hex, base64 or base64url: a token or key by its looks.
static LONG_RUN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[A-Za-z0-9+_-]{32,}={0,2}").expect("regex"));

/// `text` with secrets replaced by `[hidden]`: credentials of `Authorization` headers, cookie
/// values, the value of any key naming a secret (`token`, `_xsrf`, `…_TOKEN`, `secret`,
/// `password`, `session`, `api_key`, …) in `key=value` or `key: value` form, and any run of 32
/// or more hex/base64 characters with both letters and digits. Errs on the side of hiding:
/// a long kernel id is masked too.
pub fn mask_secrets(text: &str) -> String {
    let text = AUTHORIZATION.replace_all(text, |c: &Captures| match c.get(2) {
        Some(scheme) => format!("{}{} {HIDDEN}", &c[1], scheme.as_str()),
        None => format!("{}{HIDDEN}", &c[1]),
    });
    let text = COOKIE_HEADER.replace_all(&text, |c: &Captures| {
        let values = COOKIE_VALUE.replace_all(&c[2], |v: &Captures| {
            if COOKIE_ATTRIBUTES.contains(&v[1].to_ascii_lowercase().as_str()) {
                v[0].to_owned()
            } else {
                format!("{}={}{HIDDEN}", &v[1], &v[2])
            }
        });
        format!("{}{values}", &c[1])
    });
    let text = SECRET_KEY.replace_all(&text, |c: &Captures| {
        // A cookie header's values were masked one by one already.
        if c[2].contains("[hidden") {
            c[0].to_owned()
        } else {
            format!("{}{HIDDEN}", &c[1])
        }
    });
    let text = LONG_RUN.replace_all(&text, |c: &Captures| {
        let run = &c[0];
        let digits = run.bytes().any(|b| b.is_ascii_digit());
        let letters = run.bytes().any(|b| b.is_ascii_alphabetic());
        if digits && letters {
            HIDDEN.to_owned()
        } else {
            run.to_owned()
        }
    });
    text.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_a_jupyter_log_are_hidden() {
        let token = "0f3c9a8e1b2d4c6e8a0b1c2d3e4f5a6b";
        let lines = [
            (
                format!("[D 2026-12-07 ServerApp] Authorization: token {token}"),
                "Authorization: token [hidden]",
            ),
            (
                "GET /user/a/oauth_callback?code=Xk9_pq2Lm7ZtR4vW8yB1nC3dF5gH6jK0sTuVwXyZ&state=eyJ1dWlkIjoiYWJjIn0 200".to_owned(),
                "oauth_callback?code=[hidden]&state=eyJ1dWlkIjoiYWJjIn0 200",
            ),
            (
                "Set-Cookie: _xsrf=2|4c7a3c1b|0d8e5f6a7b8c9d0e1f2a3b4c5d6e7f80|1765000000; Path=/user/a/".to_owned(),
                "Set-Cookie: _xsrf=[hidden]; Path=/user/a/",
            ),
            (
                "Cookie: jupyterhub-session-id=abc; jupyterhub-user-a=2|1:0|10:17|a".to_owned(),
                "Cookie: jupyterhub-session-id=[hidden]; jupyterhub-user-a=[hidden]",
            ),
            (
                "env JUPYTERHUB_API_TOKEN=short-but-secret JPY_API_TOKEN=x".to_owned(),
                "env JUPYTERHUB_API_TOKEN=[hidden] JPY_API_TOKEN=[hidden]",
            ),
            (
                "http://node1:4321/lab?token=abc123&x=1".to_owned(),
                "http://node1:4321/lab?token=[hidden]&x=1",
            ),
            (
                r#"{"client_secret": "s3cr3t", "password":"pw"}"#.to_owned(),
                r#"{"client_secret": "[hidden]", "password":"[hidden]"}"#,
            ),
            (
                "key: dGhpcyBpcyBhIHNlY3JldCBrZXkgb2YgNDAgYnl0ZXM= done".to_owned(),
                "key: [hidden] done",
            ),
            (
                format!("loaded {token}"),
                "loaded [hidden]",
            ),
        ];
        for (line, want) in &lines {
            let masked = mask_secrets(line);
            assert!(masked.contains(want), "{line}\n→ {masked}\nwanted {want}");
        }
        // What is not secret stays readable.
        for plain in [
            "[I 2026-12-07 10:00:01.123 ServerApp] jupyter_lsp | extension was successfully loaded.",
            "/usr/lib/python3/dist-packages/jupyter_server_terminals/__init__.py:12",
            "nbhub: starting the server on node1 port 40123",
            "slurmstepd: error: *** JOB 12 ON node1 CANCELLED AT 2026-12-07T10:00:02 ***",
            "Language server pylsp not found: skipping",
        ] {
            assert_eq!(mask_secrets(plain), plain);
        }
        // Several lines keep their line breaks.
        assert_eq!(mask_secrets("a\ntoken=x\nb"), "a\ntoken=[hidden]\nb");
    }
}
