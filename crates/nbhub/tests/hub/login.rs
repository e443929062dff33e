//! Logging in through the form, as a browser does: cookies, XSRF, redirects.

use crate::common;

use common::{fetch, post_form};

use common::pagekit::{browser, browser_from, post_login, xsrf_of};
use common::sqlite_hub;
use nbhub::config::AuthenticatorKind;

async fn get_form(b: &reqwest::Client, url: &str) -> String {
    let resp = b.get(url).send().await.expect("get form");
    assert_eq!(resp.status(), 200);
    xsrf_of(&resp.text().await.expect("html"))
}

#[tokio::test]
async fn dummy_login_needs_xsrf_and_the_password() {
    let hub = sqlite_hub(|c| {
        common::dummy_password(c, "letmein");
        c.authenticator.failed_login_threshold = 3;
    })
    .await;
    let b = browser();

    // Not logged in: pages send us to the login page with `next`.
    let resp = b.get(hub.hub("/home")).send().await.expect("get");
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], "/hub/login?next=%2Fhub%2Fhome");

    let xsrf = get_form(&b, &hub.hub("/login")).await;
    // Without the XSRF token: 403, and no login cookie.
    let resp = post_login(&hub, &b, "alice", "letmein", None).await;
    assert_eq!(resp.status(), 403);
    assert!(resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .all(|c| !c.to_str().unwrap_or("").starts_with("jupyterhub-hub-login")));
    // A forged token: 403.
    let resp = post_login(&hub, &b, "alice", "letmein", Some("0123:abcd")).await;
    assert_eq!(resp.status(), 403);
    // Wrong password: 403 with the form again.
    let resp = post_login(&hub, &b, "alice", "nope", Some(&xsrf)).await;
    assert_eq!(resp.status(), 403);
    assert!(resp
        .text()
        .await
        .expect("html")
        .contains("Invalid username or password"));

    // Right password: 302 to the (local) next, with HttpOnly cookies.
    let resp = post_login(&hub, &b, "Alice", "letmein", Some(&xsrf)).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], "/hub/home?x=1");
    let cookies: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().expect("ascii").to_string())
        .collect();
    let login = cookies
        .iter()
        .find(|c| c.starts_with("jupyterhub-hub-login="))
        .expect("login cookie");
    assert!(
        login.contains("HttpOnly")
            && login.contains("Path=/hub/")
            && login.contains("SameSite=Lax"),
        "{login}"
    );
    let session = cookies
        .iter()
        .find(|c| c.starts_with("jupyterhub-session-id="))
        .expect("session cookie");
    assert!(session.split("; ").any(|a| a == "Path=/"), "{session}");

    let resp = b.get(hub.hub("/home")).send().await.expect("home");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.text().await.expect("html").contains("alice"),
        "the user name was normalised to lower case"
    );
    // The login cookie also authenticates API GETs from the browser.
    let resp = b.get(hub.api("/user")).send().await.expect("whoami");
    assert_eq!(resp.status(), 200);
    // … but a cookie-authenticated API POST without the XSRF token is refused.
    let resp = b
        .post(hub.api("/users/alice/tokens"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 403);

    // An off-site next is dropped.
    let resp = fetch(&b, hub.hub("/login?next=https%3A%2F%2Fevil.example%2Fx")).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers()["location"],
        "/hub/spawn",
        "the default landing: the spawn page"
    );

    // Logout clears the cookies; the home page wants a login again.
    let resp = b.get(hub.hub("/logout")).send().await.expect("logout");
    assert_eq!(resp.status(), 302);
    let resp = b.get(hub.hub("/home")).send().await.expect("home");
    assert_eq!(resp.status(), 302);
}

/// Failures slow down the client that makes them, for that name, and a client spraying many
/// names; nobody else. Before, three anonymous wrong passwords for a name made its owner's
/// right password wait too, so one request every five minutes kept `admin` out for good.
#[tokio::test]
async fn repeated_failures_slow_down_only_the_client_that_fails() {
    let hub = sqlite_hub(|c| {
        c.authenticator.password = "right".into();
        c.authenticator.allow_all = true;
        c.authenticator.failed_login_threshold = 2;
    })
    .await;
    let attacker = browser_from("192.0.2.66");
    let xsrf = get_form(&attacker, &hub.hub("/login")).await;
    for _ in 0..2 {
        let resp = post_login(&hub, &attacker, "carol", "wrong", Some(&xsrf)).await;
        assert_eq!(resp.status(), 403);
    }
    let resp = post_login(&hub, &attacker, "carol", "right", Some(&xsrf)).await;
    assert_eq!(
        resp.status(),
        429,
        "this client must wait, even with the right password"
    );
    assert!(resp.headers().contains_key("retry-after"));
    // carol herself, from her own address, is not kept out by the attacker's failures.
    let carol = browser_from("198.51.100.7");
    let xsrf_carol = get_form(&carol, &hub.hub("/login")).await;
    let resp = post_login(&hub, &carol, "carol", "right", Some(&xsrf_carol)).await;
    assert_eq!(resp.status(), 302, "carol signs in from her own address");
    // Another name is not affected for the attacker either …
    let resp = post_login(&hub, &attacker, "dave", "right", Some(&xsrf)).await;
    assert_eq!(resp.status(), 302);
    // … until it sprays one password over many names: then every name waits.
    let sprayer = browser_from("203.0.113.5");
    let xsrf = get_form(&sprayer, &hub.hub("/login")).await;
    let mut first_wait = None;
    for i in 0..30 {
        let status = post_login(&hub, &sprayer, &format!("user{i}"), "guess", Some(&xsrf))
            .await
            .status();
        if status == 429 {
            first_wait = Some(i);
            break;
        }
        assert_eq!(status, 403);
    }
    assert!(
        first_wait.is_some_and(|i| i >= 10),
        "a client spraying names is slowed down after some names, not at once: {first_wait:?}"
    );
}

/// A refused name is shown shortened, not echoed at any length.
#[tokio::test]
async fn a_refused_long_name_is_shortened_on_the_page() {
    let hub = sqlite_hub(|c| c.authenticator.password = "right".into()).await;
    let b = browser();
    let xsrf = get_form(&b, &hub.hub("/login")).await;
    let long = "x".repeat(1_000_000);
    let resp = post_login(&hub, &b, &long, "wrong", Some(&xsrf)).await;
    assert_eq!(resp.status(), 403);
    let html = resp.text().await.expect("html");
    assert!(html.len() < 50_000, "the page is {} bytes", html.len());
    assert!(html.contains(&format!("{}…", "x".repeat(100))));
}

/// Logging out ends that browser session on the server: a copy of its login cookie taken
/// before the logout signs no one in afterwards, also after a restart; another browser of the
/// same user stays signed in.
#[tokio::test]
async fn logout_ends_the_session_for_every_copy_of_its_cookie() {
    let hub = sqlite_hub(|c| c.authenticator.allow_all = true).await;
    let (laptop, jar) = common::pagekit::browser_with_jar(false);
    let phone = browser();
    common::pagekit::login(&hub, &laptop, "alice").await;
    common::pagekit::login(&hub, &phone, "alice").await;
    // The cookies as someone who copied them would send them.
    let copied = {
        use reqwest::cookie::CookieStore;
        let url: url::Url = hub.hub("/home").parse().expect("url");
        jar.cookies(&url)
            .and_then(|v| v.to_str().ok().map(str::to_string))
            .expect("cookies for /hub/")
    };
    let session_id = copied
        .split("jupyterhub-session-id=")
        .nth(1)
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_string();
    let thief = common::client();
    let home = |c: &reqwest::Client, cookie: Option<&str>| {
        let mut r = c.get(hub.hub("/home"));
        if let Some(cookie) = cookie {
            r = r.header("cookie", cookie);
        }
        r.send()
    };
    assert_eq!(
        home(&thief, Some(&copied)).await.expect("home").status(),
        200
    );
    let resp = laptop.get(hub.hub("/logout")).send().await.expect("logout");
    assert_eq!(resp.status(), 302);
    assert_eq!(home(&laptop, None).await.expect("home").status(), 302);
    assert_eq!(
        home(&thief, Some(&copied)).await.expect("home").status(),
        302,
        "the copied cookie no longer signs in"
    );
    assert_eq!(
        home(&phone, None).await.expect("home").status(),
        200,
        "the phone's session stays"
    );
    // Kept in the database too, so a restarted hub still refuses the copy.
    let ended = nbhub::db::sessions::live(&hub.state.db, nbhub::db::now_micros())
        .await
        .expect("ended sessions");
    assert!(ended.iter().any(|(sid, _)| *sid == session_id), "{ended:?}");
}

#[tokio::test]
async fn dummy_login_respects_allowed_and_blocked_users() {
    let hub = sqlite_hub(|c| {
        c.authenticator.allowed_users = vec!["erin".into()];
        c.authenticator.blocked_users = vec!["mallory".into()];
    })
    .await;
    let b = browser();
    let xsrf = get_form(&b, &hub.hub("/login")).await;
    assert_eq!(
        post_login(&hub, &b, "stranger", "x", Some(&xsrf))
            .await
            .status(),
        403
    );
    assert_eq!(
        post_login(&hub, &b, "mallory", "x", Some(&xsrf))
            .await
            .status(),
        403
    );
    assert_eq!(
        post_login(&hub, &b, "erin", "x", Some(&xsrf))
            .await
            .status(),
        302
    );
}

#[tokio::test]
async fn native_signup_approval_and_login() {
    let hub = sqlite_hub(|c| {
        c.authenticator.kind = AuthenticatorKind::Native;
        c.authenticator.enable_signup = true;
        c.authenticator.admin_users = vec!["root".into()];
    })
    .await;
    let alice = browser();
    let xsrf = get_form(&alice, &hub.hub("/signup")).await;
    let signup = |b: &reqwest::Client, user: &str, pw: &str, confirm: &str, x: &str| {
        let form = [
            ("username", user.to_string()),
            ("password", pw.to_string()),
            ("password_confirmation", confirm.to_string()),
            ("_xsrf", x.to_string()),
        ];
        b.post(hub.hub("/signup")).form(&form).send()
    };
    // Bad input: a clear 400 and no account.
    let resp = signup(&alice, "alice", "short", "short", &xsrf)
        .await
        .expect("post");
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.expect("html").contains("at least 8"));
    let resp = signup(&alice, "alice", "long enough 1", "long enough 2", &xsrf)
        .await
        .expect("post");
    assert_eq!(resp.status(), 400);
    assert!(nbhub::db::users::get(&hub.state.db, "alice")
        .await
        .expect("db")
        .is_none());
    // No XSRF: 403.
    let resp = alice
        .post(hub.hub("/signup"))
        .form(&[
            ("username", "alice"),
            ("password", "correct horse"),
            ("password_confirmation", "correct horse"),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 403);

    let resp = signup(&alice, "alice", "correct horse", "correct horse", &xsrf)
        .await
        .expect("post");
    assert_eq!(resp.status(), 200);
    assert!(resp
        .text()
        .await
        .expect("html")
        .contains("waiting for an administrator"));
    // Not approved yet.
    let resp = post_login(&hub, &alice, "alice", "correct horse", Some(&xsrf)).await;
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.expect("html").contains("approval"));

    // The admin signs up (approved at once, being in admin_users) and approves alice.
    let root = browser();
    let rx = get_form(&root, &hub.hub("/signup")).await;
    assert_eq!(
        signup(&root, "root", "admin password", "admin password", &rx)
            .await
            .expect("post")
            .status(),
        200
    );
    assert_eq!(
        post_login(&hub, &root, "root", "admin password", Some(&rx))
            .await
            .status(),
        302
    );
    let page = fetch(&root, hub.hub("/authorize")).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("alice"));
    let form_xsrf = xsrf_of(&html);
    let resp = post_form(
        &root,
        hub.hub("/authorize/alice"),
        &[("_xsrf", form_xsrf.as_str())],
    )
    .await;
    assert_eq!(resp.status(), 302, "approved, back to the list");

    // Now alice can log in, with the right password only.
    assert_eq!(
        post_login(&hub, &alice, "alice", "wrong password", Some(&xsrf))
            .await
            .status(),
        403
    );
    assert_eq!(
        post_login(&hub, &alice, "alice", "correct horse", Some(&xsrf))
            .await
            .status(),
        302
    );
    // A non-admin cannot approve.
    let resp = alice.get(hub.hub("/authorize")).send().await.expect("get");
    assert_eq!(resp.status(), 403);
    // The password is stored as an argon2 hash only.
    let row = nbhub::db::users::get(&hub.state.db, "alice")
        .await
        .expect("db")
        .expect("alice");
    assert!(row
        .password_hash
        .as_deref()
        .is_some_and(|h| h.starts_with("$argon2id$") && !h.contains("correct horse")));
}

/// PAM against a real Unix account made for the test (needs root, as the hub with PAM does).
#[tokio::test]
async fn pam_login_with_a_real_unix_account() {
    if !nbhub_testkit::is_root() {
        nbhub_testkit::missing_part(
            "root (to create a Unix account for the PAM test)",
            "running the tests as root, as CI does",
        );
        return;
    }
    let user = format!("nbpam{}", std::process::id() % 100_000);
    let created = std::process::Command::new("useradd")
        .args(["--no-create-home", "--shell", "/usr/sbin/nologin", &user])
        .status()
        .expect("useradd");
    assert!(created.success(), "useradd {user}");
    struct DropUser(String);
    impl Drop for DropUser {
        fn drop(&mut self) {
            let _ = std::process::Command::new("userdel").arg(&self.0).status();
        }
    }
    let _cleanup = DropUser(user.clone());
    let mut chpasswd = std::process::Command::new("chpasswd")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("chpasswd");
    {
        use std::io::Write;
        let stdin = chpasswd.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{user}:unix-pass-123").expect("write");
    }
    assert!(chpasswd.wait().expect("chpasswd").success());

    let hub = sqlite_hub(|c| {
        c.authenticator.kind = AuthenticatorKind::Pam;
        // The `other` service has no fail delay, which keeps the test quick.
        c.authenticator.pam_service = "other".into();
        c.authenticator.allowed_users = vec![user.clone()];
    })
    .await;
    let b = browser();
    let xsrf = get_form(&b, &hub.hub("/login")).await;
    assert_eq!(
        post_login(&hub, &b, &user, "wrong", Some(&xsrf))
            .await
            .status(),
        403
    );
    assert_eq!(
        post_login(&hub, &b, &user, "unix-pass-123", Some(&xsrf))
            .await
            .status(),
        302
    );
    // A Unix account not allowed by the config cannot log in even with its password.
    assert_eq!(
        post_login(&hub, &b, "root", "whatever", Some(&xsrf))
            .await
            .status(),
        403
    );
}
