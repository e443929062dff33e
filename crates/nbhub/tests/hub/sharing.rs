//! Server sharing through the REST API and `/hub/accept-share`: grants and revocations change
//! what the shared user's tokens may do at once; share codes are exchanged until they expire.

use crate::common;

use common::{call, client, sqlite_hub, TestHub, ADMIN_TOKEN};
use reqwest::Method;
use serde_json::{json, Value};

async fn user_with_token(hub: &TestHub, name: &str) -> String {
    let (s, e) = call(
        hub,
        Method::POST,
        &format!("/users/{name}"),
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(s, 201, "{e}");
    common::user_token(hub, name).await
}

/// Users may share their own servers (JupyterHub's documented way: extend the `user` role).
fn users_may_share(c: &mut nbhub::config::Config) {
    c.roles.push(nbhub::config::RoleConfig {
        name: "user".into(),
        scopes: ["self", "shares!user", "read:users:name", "read:groups:name"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    });
}

/// The scopes the hub reports for a token, as a single-user server asks for them.
async fn scopes_of(hub: &TestHub, token: &str) -> Vec<String> {
    let (s, me) = call(hub, Method::GET, "/user", token, None).await;
    assert_eq!(s, 200, "{me}");
    serde_json::from_value(me["scopes"].clone()).expect("scopes")
}

/// A browser's login cookie for `name`, made with the hub's secret.
async fn login_cookie(hub: &TestHub, name: &str) -> String {
    let value = common::login_cookie_value(hub, name).await;
    format!("{}={value}", nbhub::auth::session::LOGIN_COOKIE)
}

#[tokio::test]
async fn shares_grant_and_revoke_access_to_one_server() {
    let hub = sqlite_hub(|c| {
        c.hub.allow_named_servers = true;
        c.roles[0].scopes.push("shares".into());
        users_may_share(c);
    })
    .await;
    let alice = user_with_token(&hub, "alice").await;
    let bob = user_with_token(&hub, "bob").await;
    let carol = user_with_token(&hub, "carol").await;
    let access = "access:servers!server=alice/".to_string();
    assert!(!scopes_of(&hub, &bob).await.contains(&access));

    // alice shares her default server with bob (the default scope is access:servers).
    let (s, share) = call(
        &hub,
        Method::POST,
        "/shares/alice/",
        &alice,
        Some(json!({"user": "bob"})),
    )
    .await;
    assert_eq!(s, 200, "{share}");
    assert_eq!(share["scopes"], json!([access]));
    assert_eq!(share["user"], json!({"name": "bob"}));
    assert_eq!(share["group"], Value::Null);
    assert_eq!(share["kind"], "user");
    assert_eq!(share["server"]["user"], json!({"name": "alice"}));
    assert_eq!(share["server"]["url"], "/user/alice/");
    assert!(
        scopes_of(&hub, &bob).await.contains(&access),
        "bob's token may use alice's server now"
    );
    assert!(!scopes_of(&hub, &carol).await.contains(&access));

    // Lists: by owner, by server, for bob.
    for path in ["/shares/alice", "/shares/alice/", "/users/bob/shared"] {
        let (s, list) = call(&hub, Method::GET, path, &alice, None).await;
        if path == "/users/bob/shared" {
            assert_eq!(s, 404, "alice may not read bob's shares");
            let (s, list) = call(&hub, Method::GET, path, &bob, None).await;
            assert_eq!((s, list.as_array().map(Vec::len)), (200, Some(1)), "{list}");
        } else {
            assert_eq!(
                (s, list.as_array().map(Vec::len)),
                (200, Some(1)),
                "{path}: {list}"
            );
        }
    }
    let (s, one) = call(&hub, Method::GET, "/users/bob/shared/alice/", &bob, None).await;
    assert_eq!((s, one["scopes"].clone()), (200, json!([access])));

    // Refusals: bob cannot share alice's server; alice cannot grant what she lacks, share
    // with nobody, or filter elsewhere.
    let (s, _) = call(
        &hub,
        Method::POST,
        "/shares/alice/",
        &bob,
        Some(json!({"user": "carol"})),
    )
    .await;
    assert_eq!(s, 404, "bob holds shares only for his own servers");
    for (body, want) in [
        (json!({"user": "carol", "scopes": ["admin:users"]}), 403),
        (
            json!({"user": "carol", "scopes": ["access:servers!server=bob/"]}),
            400,
        ),
        (json!({"user": "carol", "scopes": ["no-such-scope"]}), 400),
        (json!({"user": "nobody"}), 400),
        (json!({"user": "carol", "group": "g"}), 400),
        (json!({}), 400),
        (json!({"user": "carol", "extra": 1}), 400),
    ] {
        let (s, e) = call(
            &hub,
            Method::POST,
            "/shares/alice/",
            &alice,
            Some(body.clone()),
        )
        .await;
        assert_eq!(s, want, "{body}: {e}");
    }
    let (s, _) = call(
        &hub,
        Method::POST,
        "/shares/alice/nope",
        &alice,
        Some(json!({"user": "carol"})),
    )
    .await;
    assert_eq!(s, 404, "no such named server");
    let (s, _) = call(
        &hub,
        Method::POST,
        "/shares/alice",
        &alice,
        Some(json!({"user": "carol"})),
    )
    .await;
    assert_eq!(s, 405);

    // A group share reaches every member.
    call(
        &hub,
        Method::POST,
        "/groups/team",
        ADMIN_TOKEN,
        Some(json!({"users": ["carol"]})),
    )
    .await;
    let (s, e) = call(
        &hub,
        Method::POST,
        "/shares/alice/",
        &alice,
        Some(json!({"group": "team"})),
    )
    .await;
    assert_eq!(s, 200, "{e}");
    assert!(scopes_of(&hub, &carol).await.contains(&access));
    let (s, list) = call(&hub, Method::GET, "/groups/team/shared", ADMIN_TOKEN, None).await;
    assert_eq!((s, list.as_array().map(Vec::len)), (200, Some(1)), "{list}");
    let (s, _) = call(
        &hub,
        Method::DELETE,
        "/groups/team/shared/alice/",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(s, 204);
    assert!(!scopes_of(&hub, &carol).await.contains(&access));

    // Revoking: PATCH takes the scopes away at once; the answer is {} when none remain.
    let (s, left) = call(
        &hub,
        Method::PATCH,
        "/shares/alice/",
        &alice,
        Some(json!({"user": "bob"})),
    )
    .await;
    assert_eq!((s, left), (200, json!({})));
    assert!(
        !scopes_of(&hub, &bob).await.contains(&access),
        "revoked at once"
    );
    let (s, _) = call(&hub, Method::GET, "/users/bob/shared/alice/", &bob, None).await;
    assert_eq!(s, 404);
    // bob may leave a share himself; DELETE /shares removes them all.
    call(
        &hub,
        Method::POST,
        "/shares/alice/",
        &alice,
        Some(json!({"user": "bob"})),
    )
    .await;
    let (s, _) = call(&hub, Method::DELETE, "/users/bob/shared/alice/", &bob, None).await;
    assert_eq!(s, 204);
    call(
        &hub,
        Method::POST,
        "/shares/alice/",
        &alice,
        Some(json!({"user": "bob"})),
    )
    .await;
    let (s, _) = call(&hub, Method::DELETE, "/shares/alice/", &alice, None).await;
    assert_eq!(s, 204);
    let (_, list) = call(&hub, Method::GET, "/shares/alice", &alice, None).await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn share_codes_are_accepted_until_they_expire() {
    let hub = sqlite_hub(users_may_share).await;
    let alice = user_with_token(&hub, "alice").await;
    let bob = user_with_token(&hub, "bob").await;
    let access = "access:servers!server=alice/".to_string();
    for body in [
        json!({"expires_in": 5}),
        json!({"expires_in": "soon"}),
        json!({"scopes": "x"}),
    ] {
        let (s, e) = call(
            &hub,
            Method::POST,
            "/share-codes/alice/",
            &alice,
            Some(body.clone()),
        )
        .await;
        assert_eq!(s, 400, "{body}: {e}");
    }
    let (s, code) = call(
        &hub,
        Method::POST,
        "/share-codes/alice/",
        &alice,
        Some(json!({"expires_in": 60})),
    )
    .await;
    assert_eq!(s, 200, "{code}");
    let secret = code["code"].as_str().expect("code").to_string();
    let accept_url = code["accept_url"].as_str().expect("accept_url").to_string();
    assert!(
        accept_url.starts_with("/hub/accept-share?code="),
        "{accept_url}"
    );
    assert_eq!(code["scopes"], json!([access]));
    assert_eq!(code["exchange_count"], 0);
    let (s, list) = call(&hub, Method::GET, "/share-codes/alice", &alice, None).await;
    assert_eq!(s, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert!(
        list[0].get("code").is_none(),
        "the secret is shown only once"
    );

    // bob accepts it in his browser: a page, then a form POST with the XSRF token.
    let bob_cookie = login_cookie(&hub, "bob").await;
    let page = client()
        .get(format!("{}{accept_url}", hub.url))
        .header("Cookie", &bob_cookie)
        .send()
        .await
        .expect("accept page");
    assert_eq!(page.status(), 200);
    // The page may start a browser session too: the XSRF token is bound to it.
    let set_cookies: Vec<String> = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| c.split(';').next())
        .map(str::to_string)
        .collect();
    let xsrf_cookie = (!set_cookies.is_empty()).then(|| set_cookies.join("; "));
    let html = page.text().await.expect("html");
    assert!(html.contains("alice"), "{html}");
    let xsrf = common::pagekit::xsrf_of(&html);
    let cookies = match &xsrf_cookie {
        Some(x) => format!("{bob_cookie}; {x}"),
        None => bob_cookie.clone(),
    };
    let post = |form: Vec<(&'static str, String)>| {
        let cookies = cookies.clone();
        let url = hub.hub("/accept-share");
        async move {
            client()
                .post(url)
                .header("Cookie", cookies)
                .form(&form)
                .send()
                .await
                .expect("post")
        }
    };
    let r = post(vec![("code", secret.clone())]).await;
    assert_eq!(r.status(), 403, "no XSRF token");
    assert!(!scopes_of(&hub, &bob).await.contains(&access));
    let r = post(vec![("code", secret.clone()), ("_xsrf", xsrf.clone())]).await;
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/user/alice/");
    assert!(
        scopes_of(&hub, &bob).await.contains(&access),
        "the code gave bob access"
    );
    let (_, list) = call(&hub, Method::GET, "/share-codes/alice/", &alice, None).await;
    assert_eq!(list[0]["exchange_count"], 1);
    // alice cannot accept her own code; a wrong code is refused.
    let r = client()
        .get(format!("{}{accept_url}", hub.url))
        .header("Cookie", login_cookie(&hub, "alice").await)
        .send()
        .await
        .expect("own code");
    assert_eq!(r.status(), 403);
    let r = post(vec![("code", "not-a-code".into()), ("_xsrf", xsrf.clone())]).await;
    assert_eq!(r.status(), 400);

    // Expired: the code is gone from lists and refused.
    sqlx::query("UPDATE share_codes SET expires_at = 1")
        .execute(&hub.state.db.pool)
        .await
        .expect("expire");
    let r = post(vec![("code", secret.clone()), ("_xsrf", xsrf.clone())]).await;
    assert_eq!(r.status(), 400, "an expired code");
    let (_, list) = call(&hub, Method::GET, "/share-codes/alice", &alice, None).await;
    assert_eq!(list, json!([]));

    // Deleting codes: by id, by code, all.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, c) = call(
            &hub,
            Method::POST,
            "/share-codes/alice/",
            &alice,
            Some(json!({})),
        )
        .await;
        ids.push((
            c["id"].as_str().expect("id").to_string(),
            c["code"].as_str().expect("code").to_string(),
        ));
    }
    let (s, _) = call(
        &hub,
        Method::DELETE,
        &format!("/share-codes/alice/?id={}", ids[0].0),
        &alice,
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = call(
        &hub,
        Method::DELETE,
        &format!("/share-codes/alice/?id={}", ids[0].0),
        &alice,
        None,
    )
    .await;
    assert_eq!(s, 404);
    let q: String = url::form_urlencoded::byte_serialize(ids[1].1.as_bytes()).collect();
    let (s, _) = call(
        &hub,
        Method::DELETE,
        &format!("/share-codes/alice/?code={q}"),
        &alice,
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (_, list) = call(&hub, Method::GET, "/share-codes/alice/", &alice, None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let (s, _) = call(&hub, Method::DELETE, "/share-codes/alice/", &alice, None).await;
    assert_eq!(s, 204);
    let (_, list) = call(&hub, Method::GET, "/share-codes/alice/", &bob, None).await;
    assert!(
        list.get("status").is_some(),
        "bob may not list alice's codes: {list}"
    );
}

/// With the real jupyterhub-singleuser behind the proxy: bob's tokens reach alice's server only
/// while it is shared with him. (A fresh token per check: the single-user server caches each
/// token's identity for up to five minutes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_server_admits_bob_until_alice_revokes() {
    use common::hubproc::{admin, launch, Options};
    let roles =
        "[[roles]]\nname = \"user\"\nscopes = [\"self\", \"shares!user\", \"read:users:name\"]\n";
    let Some(hub) = launch(Options::services(roles)).await else {
        return;
    };
    for name in ["alice", "bob"] {
        let (s, body) = admin(&hub, Method::POST, &format!("/users/{name}"), None).await;
        assert_eq!(s, 201, "{body}");
    }
    let (s, body) = admin(&hub, Method::POST, "/users/alice/server", None).await;
    assert_eq!(s, 201, "{body}\n{}", hub.log());
    let token_of = |user: &'static str| common::user_token(&hub, user);
    let status_with = |token: String| {
        let url = hub.public_url("/user/alice/api/status");
        async move {
            common::get_as(&client(), url, &token)
                .await
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        status_with(token_of("bob").await).await,
        403,
        "not shared yet"
    );
    let alice = token_of("alice").await;
    let api = |method: Method, path: &'static str, body: Value| {
        let url = hub.public_url(&format!("/hub/api{path}"));
        let alice = alice.clone();
        async move {
            let r = client()
                .request(method, url)
                .header("Authorization", format!("token {alice}"))
                .json(&body)
                .send()
                .await
                .expect("api");
            r.status().as_u16()
        }
    };
    assert_eq!(
        api(Method::POST, "/shares/alice/", json!({"user": "bob"})).await,
        200
    );
    let bob = token_of("bob").await;
    assert_eq!(status_with(bob.clone()).await, 200, "shared");
    // bob runs code on alice's server through the proxy.
    let kernel_id = common::kernel::create_kernel_with_token(&hub, "/user/alice/", &bob).await;
    let printed =
        common::kernel::execute(&hub, "/user/alice/", &kernel_id, &bob, "print(6 * 7)").await;
    assert_eq!(printed.trim(), "42", "bob's code ran on alice's server");
    assert_eq!(
        api(Method::PATCH, "/shares/alice/", json!({"user": "bob"})).await,
        200
    );
    assert_eq!(status_with(token_of("bob").await).await, 403, "revoked");
    let (s, _) = admin(&hub, Method::DELETE, "/users/alice/server", None).await;
    assert_eq!(s, 204);
}
