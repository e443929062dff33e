//! The REST API through a real socket, as clients such as the idle culler use it.

use crate::common;

use common::fetch;

use common::{call, check_rows, client, new_token, row, sqlite_hub, TestHub, ADMIN_TOKEN};
use serde_json::{json, Value};

const PAGINATION: &str = "application/jupyterhub-pagination+json";

/// Creates alice and bob, a group, and returns a token for each.
async fn setup_users(hub: &TestHub) -> (String, String) {
    use reqwest::Method;
    let (s, users) = call(
        hub,
        Method::POST,
        "/users",
        ADMIN_TOKEN,
        Some(json!({"usernames": ["alice", "bob"]})),
    )
    .await;
    assert_eq!(s, 201, "{users}");
    assert_eq!(users.as_array().map(Vec::len), Some(2));
    assert_eq!(users[0]["name"], "alice");
    assert_eq!(users[0]["kind"], "user");
    assert_eq!(users[0]["admin"], false);
    let (s, g) = call(
        hub,
        Method::POST,
        "/groups/physics",
        ADMIN_TOKEN,
        Some(json!({"users": ["alice"]})),
    )
    .await;
    assert_eq!(s, 201, "{g}");
    assert_eq!(
        g,
        json!({"kind": "group", "name": "physics", "users": ["alice"], "properties": {}, "roles": []})
    );
    (
        new_token(hub, "alice", json!({"note": "alice's"})).await,
        new_token(hub, "bob", json!({})).await,
    )
}

#[tokio::test]
async fn version_is_public_and_every_response_has_the_header() {
    let hub = sqlite_hub(|_| {}).await;
    for path in ["/hub/api", "/hub/api/"] {
        let resp = fetch(&client(), format!("{}{path}", hub.url)).await;
        assert_eq!(resp.status(), 200);
        let v = resp.headers()["x-jupyterhub-version"]
            .to_str()
            .expect("header")
            .to_string();
        assert!(v.starts_with("6."), "{v}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["version"], v.as_str());
    }
    let resp = client().get(hub.api("/users")).send().await.expect("get");
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().contains_key("x-jupyterhub-version"));
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        body,
        json!({"status": 403, "message": "Missing or invalid credentials."})
    );
    let (s, body) = call(
        &hub,
        reqwest::Method::GET,
        "/no/such/thing",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(body["status"], 404);
}

#[tokio::test]
async fn admin_service_manages_users_groups_tokens_and_pages() {
    use reqwest::Method;
    let hub = sqlite_hub(|_| {}).await;
    let (alice_token, _) = setup_users(&hub).await;

    // whoami for the service
    let (s, me) = call(&hub, Method::GET, "/user", ADMIN_TOKEN, None).await;
    assert_eq!(s, 200);
    assert_eq!(me["kind"], "service");
    assert_eq!(me["name"], "admin-svc");
    assert!(me["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .any(|x| x == "admin:users"));

    // bare list without the pagination Accept header
    let (s, list) = call(&hub, Method::GET, "/users", ADMIN_TOKEN, None).await;
    assert_eq!(s, 200);
    let names: Vec<&str> = list
        .as_array()
        .expect("bare list")
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(list[0]["groups"], json!(["physics"]));
    assert_eq!(list[0]["roles"], json!(["user"]));
    assert_eq!(list[0]["servers"], json!({}));
    assert_eq!(list[0]["server"], Value::Null);
    assert_eq!(list[0]["pending"], Value::Null);

    // paginated: absolute next.url that can be fetched verbatim
    let resp = client()
        .get(hub.api("/users?limit=1"))
        .header("Authorization", format!("token {ADMIN_TOKEN}"))
        .header("Accept", PAGINATION)
        .send()
        .await
        .expect("get");
    let page: Value = resp.json().await.expect("json");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["items"][0]["name"], "alice");
    assert_eq!(page["_pagination"]["total"], 2);
    assert_eq!(page["_pagination"]["offset"], 0);
    let next_url = page["_pagination"]["next"]["url"]
        .as_str()
        .expect("next url");
    assert_eq!(
        next_url,
        format!("{}/hub/api/users?limit=1&offset=1", hub.url)
    );
    let page2: Value = client()
        .get(next_url)
        .header("Authorization", format!("token {ADMIN_TOKEN}"))
        .header("Accept", PAGINATION)
        .send()
        .await
        .expect("get next")
        .json()
        .await
        .expect("json");
    assert_eq!(page2["items"][0]["name"], "bob");
    assert_eq!(page2["_pagination"]["next"], Value::Null);

    // filters and sorting
    let (_, l) = call(
        &hub,
        Method::GET,
        "/users?name_filter=LIC&sort=-name",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(l.as_array().map(Vec::len), Some(1));
    let (_, l) = call(
        &hub,
        Method::GET,
        "/users?state=inactive&sort=-name",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(l[0]["name"], "bob");
    let admin = ADMIN_TOKEN;
    check_rows(
        &hub,
        vec![
            row(Method::GET, "/users?state=sleeping", admin, 400),
            row(Method::GET, "/users?limit=ten", admin, 400),
            // users: conflict, invalid names, patch, delete
            row(Method::POST, "/users", admin, 409).body(json!({"usernames": ["alice"]})),
            row(Method::POST, "/users", admin, 400)
                .body(json!({"usernames": ["a b"]}))
                .says("Invalid user name"),
            row(Method::POST, "/users/carol", admin, 201).body(json!({"admin": true})),
        ],
    )
    .await;
    let (s, u) = call(
        &hub,
        Method::PATCH,
        "/users/carol",
        ADMIN_TOKEN,
        Some(json!({"admin": false, "groups": ["physics"]})),
    )
    .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["admin"], false);
    assert_eq!(u["groups"], json!(["physics"]));
    check_rows(
        &hub,
        vec![
            row(Method::PATCH, "/users/carol", admin, 400).body(json!({"admin": "yes"})),
            row(Method::PATCH, "/users/carol", admin, 400).body(json!({"colour": 1})),
            row(Method::PATCH, "/users/carol", admin, 400)
                .body(json!({"groups": ["nope"], "admin": true})),
        ],
    )
    .await;
    let (_, u) = call(&hub, Method::GET, "/users/carol", ADMIN_TOKEN, None).await;
    assert_eq!(u["admin"], false, "a rejected PATCH changes nothing");
    check_rows(
        &hub,
        vec![
            row(Method::DELETE, "/users/carol", admin, 204),
            row(Method::GET, "/users/carol", admin, 404),
            row(Method::POST, "/users", admin, 400).body(json!("not an object")),
        ],
    )
    .await;
    let resp = client()
        .post(hub.api("/users"))
        .header("Authorization", format!("token {ADMIN_TOKEN}"))
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.expect("json error body");
    assert_eq!(e["status"], 400);

    // groups
    let (s, g) = call(
        &hub,
        Method::POST,
        "/groups/physics/users",
        ADMIN_TOKEN,
        Some(json!({"users": ["bob"]})),
    )
    .await;
    assert_eq!(s, 200, "{g}");
    assert_eq!(g["users"], json!(["alice", "bob"]));
    let (s, _) = call(
        &hub,
        Method::POST,
        "/groups/physics/users",
        ADMIN_TOKEN,
        Some(json!({"users": ["ghost"]})),
    )
    .await;
    assert_eq!(s, 400);
    let (s, g) = call(
        &hub,
        Method::DELETE,
        "/groups/physics/users",
        ADMIN_TOKEN,
        Some(json!({"users": ["bob"]})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(g["users"], json!(["alice"]));
    let (s, g) = call(
        &hub,
        Method::PUT,
        "/groups/physics/properties",
        ADMIN_TOKEN,
        Some(json!({"quota": 5})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(g["properties"], json!({"quota": 5}));
    let (s, _) = call(&hub, Method::POST, "/groups/physics", ADMIN_TOKEN, None).await;
    assert_eq!(s, 409);
    let (s, gs) = call(
        &hub,
        Method::POST,
        "/groups",
        ADMIN_TOKEN,
        Some(json!({"groups": ["chem", "bio"]})),
    )
    .await;
    assert_eq!(s, 201, "{gs}");
    let (_, gl) = call(&hub, Method::GET, "/groups", ADMIN_TOKEN, None).await;
    assert_eq!(gl.as_array().map(Vec::len), Some(3));
    let (s, _) = call(&hub, Method::DELETE, "/groups/bio", ADMIN_TOKEN, None).await;
    assert_eq!(s, 204);

    // tokens
    let (s, tl) = call(&hub, Method::GET, "/users/alice/tokens", ADMIN_TOKEN, None).await;
    assert_eq!(s, 200);
    let tokens = tl["api_tokens"].as_array().expect("api_tokens");
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["note"], "alice's");
    assert_eq!(tokens[0]["kind"], "api_token");
    assert_eq!(tokens[0]["oauth_client"], "JupyterHub");
    assert!(
        tokens[0].get("token").is_none(),
        "the secret is shown only once"
    );
    let id = tokens[0]["id"].as_str().expect("id").to_string();
    assert!(id.starts_with('a'));
    let (s, t) = call(
        &hub,
        Method::GET,
        &format!("/users/alice/tokens/{id}"),
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(t["user"], "alice");
    assert!(
        t["scopes"]
            .as_array()
            .expect("scopes")
            .iter()
            .any(|s| s == "read:users!user=alice"),
        "{t}"
    );
    let (s, _) = call(
        &hub,
        Method::GET,
        "/users/bob/tokens/{id}",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(s, 404);

    // alice's own token sees herself with fully expanded scopes
    let (s, me) = call(&hub, Method::GET, "/user", &alice_token, None).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["name"], "alice");
    assert_eq!(me["kind"], "user");
    let scopes: Vec<&str> = me["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(scopes.contains(&"access:servers!user=alice"), "{scopes:?}");
    assert!(
        scopes
            .iter()
            .all(|s| !s.ends_with("!user") && !s.ends_with("!server")),
        "no bare filters: {scopes:?}"
    );
    assert!(me["token_id"].as_str().is_some_and(|t| t.starts_with('a')));

    // services and info
    let (s, svcs) = call(&hub, Method::GET, "/services", ADMIN_TOKEN, None).await;
    assert_eq!(s, 200);
    assert_eq!(svcs["admin-svc"]["kind"], "service");
    let (s, info) = call(&hub, Method::GET, "/info", ADMIN_TOKEN, None).await;
    assert_eq!(s, 200);
    assert!(info["version"]
        .as_str()
        .is_some_and(|v| v.starts_with("6.")));
    let (s, _) = call(&hub, Method::GET, "/info", &alice_token, None).await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn a_user_cannot_reach_another_user() {
    use reqwest::Method;
    let hub = sqlite_hub(|_| {}).await;
    let (alice, bob) = setup_users(&hub).await;

    check_rows(
        &hub,
        vec![
            // reading bob: alice holds read:users only for herself → 404, as JupyterHub
            row(Method::GET, "/users/bob", &alice, 404),
            row(Method::GET, "/users/ghost", &alice, 404)
                .what("same answer for a user that does not exist"),
            // changing bob: alice has no admin:users at all → 403
            row(Method::PATCH, "/users/bob", &alice, 403)
                .body(json!({"admin": true}))
                .says("admin:users"),
            row(Method::DELETE, "/users/bob", &alice, 403),
            row(Method::GET, "/users/bob/tokens", &alice, 404),
            row(Method::POST, "/users/bob/tokens", &alice, 404).body(json!({})),
            row(Method::POST, "/users/bob/activity", &alice, 404)
                .body(json!({"last_activity": "2026-01-01T00:00:00Z"})),
            // listing users needs list:users
            row(Method::GET, "/users", &alice, 403),
        ],
    )
    .await;
    // she can read herself and make herself a narrower token, but not a wider one
    let (s, me) = call(&hub, Method::GET, "/users/alice", &alice, None).await;
    assert_eq!(s, 200);
    assert_eq!(me["name"], "alice");
    assert!(me.get("auth_state").is_none());
    let (s, t) = call(
        &hub,
        Method::POST,
        "/users/alice/tokens",
        &alice,
        Some(json!({"scopes": ["read:users:name!user=alice"]})),
    )
    .await;
    assert_eq!(s, 201, "{t}");
    let narrow = t["token"].as_str().expect("token").to_string();
    let (s, e) = call(
        &hub,
        Method::POST,
        "/users/alice/tokens",
        &narrow,
        Some(json!({"scopes": ["admin:users"]})),
    )
    .await;
    assert!(s == 403 || s == 404, "{s} {e}");
    check_rows(
        &hub,
        vec![
            row(Method::POST, "/users/alice/tokens", &alice, 403)
                .body(json!({"scopes": ["admin:users"]})),
            row(Method::POST, "/users/alice/tokens", &alice, 400)
                .body(json!({"scopes": ["read:usrs"]})),
        ],
    )
    .await;
    // bob's token works for bob
    let (s, me) = call(&hub, Method::GET, "/user", &bob, None).await;
    assert_eq!((s, me["name"].as_str()), (200, Some("bob")));

    // a revoked token: 403 from GET /user
    let (_, tl) = call(&hub, Method::GET, "/users/bob/tokens", ADMIN_TOKEN, None).await;
    let id = tl["api_tokens"][0]["id"].as_str().expect("id").to_string();
    let (s, _) = call(
        &hub,
        Method::DELETE,
        &format!("/users/bob/tokens/{id}"),
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, e) = call(&hub, Method::GET, "/user", &bob, None).await;
    assert_eq!(s, 403, "{e}");

    // an expired token: 403 (the expiry is made to pass by moving it into the past)
    let expiring = new_token(&hub, "bob", json!({"expires_in": 3600})).await;
    let (s, _) = call(&hub, Method::GET, "/user", &expiring, None).await;
    assert_eq!(s, 200);
    let row = nbhub::db::tokens::find(&hub.state.db, &expiring)
        .await
        .expect("db")
        .expect("live token");
    sqlx::query("UPDATE api_tokens SET expires_at = $1 WHERE id = $2")
        .bind(nbhub::db::now_micros() - 1)
        .bind(row.id)
        .execute(&hub.state.db.pool)
        .await
        .expect("update");
    // A write behind the hub's back announces itself as the db module's writes do, so that
    // the identity cache drops what it resolved before.
    drop(hub.state.db.authz_write());
    let (s, e) = call(&hub, Method::GET, "/user", &expiring, None).await;
    assert_eq!(s, 403, "{e}");
    // a token in the query string is ignored by the hub API, as JupyterHub
    let resp = fetch(&client(), format!("{}?token={alice}", hub.api("/user"))).await;
    assert_eq!(resp.status(), 403);
    // bearer works too
    let resp = client()
        .get(hub.api("/user"))
        .header("Authorization", format!("Bearer {alice}"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);

    // The raw tokens appear nowhere in the database files (main file, WAL and shared memory).
    hub.state.db.pool.close().await;
    let mut haystack = Vec::new();
    for entry in std::fs::read_dir(hub.dir.path()).expect("data dir") {
        let path = entry.expect("entry").path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("nbhub.sqlite"))
        {
            haystack.extend(std::fs::read(&path).expect("read db file"));
        }
    }
    assert!(haystack.len() > 4096, "database files were read");
    for secret in [
        alice.as_str(),
        bob.as_str(),
        expiring.as_str(),
        narrow.as_str(),
        ADMIN_TOKEN,
    ] {
        assert!(
            !haystack
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "a raw token is stored in the database"
        );
    }
}

#[tokio::test]
async fn activity_reports_move_forward_only_and_are_validated() {
    use reqwest::Method;
    let hub = sqlite_hub(|_| {}).await;
    setup_users(&hub).await;
    let body = json!({"last_activity": "2026-11-26T11:26:46.975213Z"});
    let (s, e) = call(
        &hub,
        Method::POST,
        "/users/alice/activity",
        ADMIN_TOKEN,
        Some(body),
    )
    .await;
    assert_eq!(s, 200, "{e}");
    let (_, u) = call(&hub, Method::GET, "/users/alice", ADMIN_TOKEN, None).await;
    assert_eq!(u["last_activity"], "2026-11-26T11:26:46.975213Z");
    let older = json!({"last_activity": "2020-01-01T00:00:00Z"});
    call(
        &hub,
        Method::POST,
        "/users/alice/activity",
        ADMIN_TOKEN,
        Some(older),
    )
    .await;
    let (_, u) = call(&hub, Method::GET, "/users/alice", ADMIN_TOKEN, None).await;
    assert_eq!(
        u["last_activity"], "2026-11-26T11:26:46.975213Z",
        "never moves back"
    );
    for bad in [
        json!({}),
        json!({"last_activity": "soon"}),
        json!({"last_activity": "2999-01-01T00:00:00Z"}),
        json!({"servers": {"nope": {"last_activity": "2026-11-26T11:26:46Z"}}}),
        json!([1]),
    ] {
        let (s, e) = call(
            &hub,
            Method::POST,
            "/users/alice/activity",
            ADMIN_TOKEN,
            Some(bad.clone()),
        )
        .await;
        assert_eq!(s, 400, "{bad} → {e}");
    }
}

#[tokio::test]
async fn named_servers_are_created_and_changed_without_starting() {
    use reqwest::Method;
    let hub = sqlite_hub(|c| {
        c.hub.allow_named_servers = true;
        c.hub.named_server_limit_per_user = 2;
    })
    .await;
    let (alice, bob) = setup_users(&hub).await;
    let put = |path: &'static str, body: Value| {
        let token = alice.clone();
        let hub = &hub;
        async move { call(hub, Method::PUT, path, &token, Some(body)).await }
    };
    let (s, m) = put(
        "/users/alice/servers/foo",
        json!({"display_name": "My Foo", "user_options": {"profile": "small"}}),
    )
    .await;
    assert_eq!(s, 201, "{m}");
    assert_eq!(m["name"], "foo");
    assert_eq!(m["display_name"], "My Foo");
    assert_eq!(m["user_options"], json!({"profile": "small"}));
    assert_eq!(
        (m["ready"].clone(), m["stopped"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(m["url"], "/user/alice/foo/");
    assert_eq!(m["started"], Value::Null);
    let (s, e) = put("/users/alice/servers/foo", json!({})).await;
    assert_eq!(s, 409, "{e}");
    // no display name: the server's name
    let (s, m) = put("/users/alice/servers/bar", Value::Null).await;
    assert_eq!(s, 201, "{m}");
    assert_eq!(m["display_name"], "bar");
    let (s, e) = put("/users/alice/servers/third", json!({})).await;
    assert_eq!(s, 400, "named_server_limit_per_user: {e}");
    for (path, body) in [
        ("/users/alice/servers/a%20b", json!({})),
        ("/users/alice/servers/x", json!({"display_name": 3})),
        ("/users/alice/servers/x", json!({"user_options": [1]})),
        ("/users/alice/servers/x", json!([])),
    ] {
        let (s, e) = put(path, body.clone()).await;
        assert_eq!(s, 400, "{path} {body}: {e}");
    }
    // the server exists: GET, and the user model lists it with include_stopped_servers
    let (s, m) = call(&hub, Method::GET, "/users/alice/servers/foo", &alice, None).await;
    assert_eq!((s, m["display_name"].clone()), (200, json!("My Foo")));
    // bob cannot create or change alice's servers, and cannot tell whether they exist
    check_rows(
        &hub,
        vec![
            row(Method::PUT, "/users/alice/servers/z", &bob, 404).body(json!({})),
            row(Method::PATCH, "/users/alice/servers/foo", &bob, 404).body(json!({"name": "mine"})),
        ],
    )
    .await;

    let patch = |path: &'static str, body: Value| {
        let token = alice.clone();
        let hub = &hub;
        async move { call(hub, Method::PATCH, path, &token, Some(body)).await }
    };
    let (s, m) = patch("/users/alice/servers/foo", json!({"name": "baz"})).await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["name"], "baz");
    assert_eq!(
        m["display_name"], "My Foo",
        "a rename keeps the display name"
    );
    assert_eq!(m["user_options"], json!({"profile": "small"}));
    assert_eq!(m["url"], "/user/alice/baz/");
    let (s, _) = call(&hub, Method::GET, "/users/alice/servers/foo", &alice, None).await;
    assert_eq!(s, 404, "the old name is gone");
    let (s, m) = patch(
        "/users/alice/servers/baz",
        json!({"display_name": "Baz", "user_options": {"profile": "big"}}),
    )
    .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(
        (m["display_name"].clone(), m["user_options"].clone()),
        (json!("Baz"), json!({"profile": "big"}))
    );
    let (s, e) = patch("/users/alice/servers/baz", json!({"name": "bar"})).await;
    assert_eq!(s, 409, "{e}");
    for body in [
        json!({}),
        json!({"color": "red"}),
        json!({"user_options": 5}),
        json!({"name": 5}),
        json!({"name": "no/slash"}),
        json!("baz"),
    ] {
        let (s, e) = patch("/users/alice/servers/baz", body.clone()).await;
        assert_eq!(s, 400, "{body}: {e}");
    }
    let (s, e) = patch("/users/alice/servers/ghost", json!({"name": "g2"})).await;
    assert_eq!(s, 404, "{e}");
    let (_, u) = call(
        &hub,
        Method::GET,
        "/users/alice?include_stopped_servers=1",
        &alice,
        None,
    )
    .await;
    let names: Vec<&String> = u["servers"].as_object().expect("servers").keys().collect();
    assert_eq!(names, ["bar", "baz"], "{u}");

    let off = sqlite_hub(|_| {}).await;
    call(&off, Method::POST, "/users/carol", ADMIN_TOKEN, None).await;
    let (s, e) = call(
        &off,
        Method::PUT,
        "/users/carol/servers/x",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(
        (s, e["message"].clone()),
        (400, json!("Named servers are not enabled."))
    );
}

#[tokio::test]
async fn deprecated_authorizations_answer_as_jupyterhub() {
    use nbhub::auth::session;
    use reqwest::Method;
    let hub = sqlite_hub(|_| {}).await;
    let (alice, bob) = setup_users(&hub).await;
    // The username/password form is gone since JupyterHub 2.0.
    let r = client()
        .post(hub.api("/authorizations/token"))
        .json(&json!({"username": "alice", "password": "x"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 404);
    let e: Value = r.json().await.expect("json");
    assert!(
        e["message"]
            .as_str()
            .unwrap_or("")
            .contains("/hub/api/users/:user/tokens"),
        "{e}"
    );
    // Any token may identify another token's owner: name and groups, nothing more.
    let (s, m) = call(
        &hub,
        Method::GET,
        &format!("/authorizations/token/{alice}"),
        &bob,
        None,
    )
    .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(
        (m["name"].clone(), m["kind"].clone()),
        (json!("alice"), json!("user"))
    );
    assert_eq!(m["groups"], json!(["physics"]));
    assert!(
        m.get("servers").is_none() && m.get("created").is_none(),
        "{m}"
    );
    let (s, m) = call(
        &hub,
        Method::GET,
        &format!("/authorizations/token/{ADMIN_TOKEN}"),
        &bob,
        None,
    )
    .await;
    assert_eq!(
        (s, m["kind"].clone(), m["name"].clone()),
        (200, json!("service"), json!("admin-svc"))
    );
    let (s, _) = call(
        &hub,
        Method::GET,
        "/authorizations/token/nonesuch-token",
        &bob,
        None,
    )
    .await;
    assert_eq!(s, 404);
    let r = fetch(
        &client(),
        hub.api(&format!("/authorizations/token/{alice}")),
    )
    .await;
    assert_eq!(r.status(), 403, "no credentials");

    // A login cookie identifies its user; only the hub's own cookie does.
    let cookie = common::login_cookie_value(&hub, "alice").await;
    let escaped: String = url::form_urlencoded::byte_serialize(cookie.as_bytes()).collect();
    let (s, m) = call(
        &hub,
        Method::GET,
        &format!("/authorizations/cookie/{}/{escaped}", session::LOGIN_COOKIE),
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!((s, m["name"].clone()), (200, json!("alice")), "{m}");
    let r = client()
        .get(hub.api(&format!("/authorizations/cookie/{}", session::LOGIN_COOKIE)))
        .header("Authorization", format!("token {ADMIN_TOKEN}"))
        .body(cookie.clone())
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200, "the value in the body");
    for path in [
        format!(
            "/authorizations/cookie/{}/forged|1|00",
            session::LOGIN_COOKIE
        ),
        format!("/authorizations/cookie/other-cookie/{escaped}"),
    ] {
        let (s, m) = call(&hub, Method::GET, &path, ADMIN_TOKEN, None).await;
        assert_eq!(s, 404, "{path}: {m}");
    }
    // A browser's cookie is not enough to use these endpoints.
    let r = client()
        .get(hub.api(&format!("/authorizations/token/{alice}")))
        .header("Cookie", format!("{}={cookie}", session::LOGIN_COOKIE))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn shutdown_needs_its_scope_and_stops_serving() {
    use reqwest::Method;
    let hub = sqlite_hub(|c| {
        c.roles.push(nbhub::config::RoleConfig {
            name: "stopper".into(),
            scopes: vec!["shutdown".into()],
            users: vec!["alice".into()],
            ..Default::default()
        });
    })
    .await;
    // alice exists already: the config gives her a role.
    call(&hub, Method::POST, "/users/bob", ADMIN_TOKEN, None).await;
    let alice = new_token(&hub, "alice", json!({})).await;
    let bob = new_token(&hub, "bob", json!({})).await;
    let (s, e) = call(&hub, Method::POST, "/shutdown", &bob, None).await;
    assert_eq!(s, 403, "{e}");
    for bad in [
        json!({"servers": "yes"}),
        json!({"proxy": 1}),
        json!([true]),
    ] {
        let (s, e) = call(&hub, Method::POST, "/shutdown", &alice, Some(bad.clone())).await;
        assert_eq!(s, 400, "{bad}: {e}");
    }
    assert_eq!(
        hub.state.shutdown.choice(),
        Default::default(),
        "nothing requested yet"
    );
    let (s, m) = call(
        &hub,
        Method::POST,
        "/shutdown",
        &alice,
        Some(json!({"servers": true, "proxy": false})),
    )
    .await;
    assert_eq!((s, m), (202, json!({"message": "Shutting down Hub"})));
    assert_eq!(
        hub.state.shutdown.choice(),
        nbhub::api::shutdown::ShutdownChoice {
            servers: Some(true),
            proxy: Some(false)
        }
    );
    // The listener closes: new connections are refused.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let c = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        if c.get(hub.api("/")).send().await.is_err() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the hub still serves");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A real nbhub-proxy on free ports with `token`; returns it and its API URL.
async fn start_proxy(binary: &std::path::Path, token: &str) -> (nbhub_testkit::ChildGuard, String) {
    let mut cmd = std::process::Command::new(binary);
    cmd.args([
        "--ip",
        "127.0.0.1",
        "--port",
        "0",
        "--api-ip",
        "127.0.0.1",
        "--api-port",
        "0",
    ])
    .env("CONFIGPROXY_AUTH_TOKEN", token);
    let guard = nbhub_testkit::ChildGuard::spawn("nbhub-proxy", cmd).expect("start nbhub-proxy");
    let line = guard
        .wait_for_line(
            |l| l.contains("api on "),
            std::time::Duration::from_secs(30),
        )
        .await;
    let api = line.split("api on ").nth(1).expect("api address");
    let port = nbhub_testkit::port_in_line(api).expect("api port");
    (guard, format!("http://127.0.0.1:{port}"))
}

#[tokio::test]
async fn patch_proxy_points_the_hub_at_a_new_proxy() {
    use reqwest::Method;
    let Some(binary) = common::hubproc::require_proxy_binary() else {
        return;
    };
    let (_old, old_api) = start_proxy(&binary, "old-proxy-token").await;
    let (_new, new_api) = start_proxy(&binary, "new-proxy-token").await;
    let hub = sqlite_hub(|c| {
        c.proxy.kind = nbhub::config::ProxyKind::External;
        c.proxy.api_url = nbhub::config::HttpUrl::parse(&old_api).expect("url");
        c.proxy.auth_token = "old-proxy-token".into();
        c.roles[0].scopes.push("proxy".into());
    })
    .await;
    let (s, e) = call(&hub, Method::POST, "/proxy", ADMIN_TOKEN, None).await;
    assert_eq!(s, 200, "{e}");
    let (_, routes) = call(&hub, Method::GET, "/proxy", ADMIN_TOKEN, None).await;
    assert!(
        routes.get("/").is_some(),
        "the hub route on the old proxy: {routes}"
    );
    // Refused, and the hub keeps its proxy: bad URL, wrong token, nobody listening, bad types.
    for body in [
        json!({"api_url": "not a url"}),
        json!({"api_url": new_api, "auth_token": "wrong"}),
        json!({"api_url": format!("http://127.0.0.1:{}", nbhub_testkit::free_port())}),
        json!({"auth_token": 5}),
        json!([]),
    ] {
        let (s, e) = call(
            &hub,
            Method::PATCH,
            "/proxy",
            ADMIN_TOKEN,
            Some(body.clone()),
        )
        .await;
        assert_eq!(s, 400, "{body}: {e}");
    }
    let (s, _) = call(&hub, Method::GET, "/proxy", ADMIN_TOKEN, None).await;
    assert_eq!(s, 200, "still on the old proxy");
    let (s, e) = call(
        &hub,
        Method::PATCH,
        "/proxy",
        ADMIN_TOKEN,
        Some(json!({"api_url": new_api, "auth_token": "new-proxy-token"})),
    )
    .await;
    assert_eq!(s, 200, "{e}");
    // The new proxy got the hub's routes at once.
    let r = client()
        .get(format!("{new_api}/api/routes"))
        .header("Authorization", "token new-proxy-token")
        .send()
        .await
        .expect("routes");
    let table: Value = r.json().await.expect("json");
    assert_eq!(table["/"]["hub"], true, "{table}");
    call(&hub, Method::POST, "/users/carol", ADMIN_TOKEN, None).await;
    let carol = new_token(&hub, "carol", json!({})).await;
    let (s, _) = call(&hub, Method::PATCH, "/proxy", &carol, Some(json!({}))).await;
    assert_eq!(s, 403, "needs the proxy scope");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_through_the_api_stops_the_hub_and_its_proxy() {
    use common::hubproc::{admin, HubProc, Options};
    use reqwest::Method;
    let Some(proxy) = common::hubproc::require_proxy_binary() else {
        return;
    };
    // No server is started here, so the single-user venv is not needed.
    let mut hub = HubProc::started(
        std::path::PathBuf::from("/nonexistent-venv"),
        &proxy,
        Options::services(
            "[[roles]]\nname = \"stopper\"\nscopes = [\"shutdown\"]\nservices = [\"e2e-admin\"]\n",
        ),
    )
    .await;
    let proxy_pid = hub.proxy_pid().expect("managed proxy pid");
    let (s, body) = admin(
        &hub,
        Method::POST,
        "/shutdown",
        Some(json!({"proxy": true})),
    )
    .await;
    assert_eq!(s, 202, "{body}");
    let status = hub
        .hub
        .as_mut()
        .expect("hub")
        .wait_exit(std::time::Duration::from_secs(30))
        .await;
    assert!(status.success(), "hub exit: {status:?}\n{}", hub.log());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{proxy_pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{proxy_pid}/stat"))
            .is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the proxy still runs after shutdown with proxy: true\n{}",
            hub.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn names_are_escaped_in_urls_and_paths_are_kept_as_sent() {
    use nbhub::auth::session;
    use reqwest::Method;
    let hub = sqlite_hub(|c| c.hub.allow_named_servers = true).await;
    let (s, e) = call(&hub, Method::POST, "/users/a+b", ADMIN_TOKEN, None).await;
    assert_eq!(s, 201, "{e}");
    let (s, m) = call(
        &hub,
        Method::PUT,
        "/users/a+b/servers/x+y",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(s, 201, "{m}");
    assert_eq!(m["url"], "/user/a%2Bb/x%2By/");
    assert_eq!(
        m["progress_url"],
        "/hub/api/users/a%2Bb/servers/x%2By/progress"
    );
    // A browser of a+b: a stopped server's spawn link and user-redirect keep names escaped and
    // the path as sent (%3F stays %3F).
    let user = nbhub::db::users::get(&hub.state.db, "a+b")
        .await
        .expect("db")
        .expect("user");
    let now = nbhub::db::now_micros() / 1_000_000;
    let cookie = format!(
        "{}={}",
        session::LOGIN_COOKIE,
        session::sign(
            &hub.state.cookie_secret,
            session::LOGIN_COOKIE,
            &user.cookie_id,
            now
        )
    );
    let r = client()
        .get(hub.hub("/user-redirect/lab/tree/a%3Fb.ipynb"))
        .header("Cookie", &cookie)
        .send()
        .await
        .expect("user-redirect");
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        "/hub/spawn/a%2Bb?next=%2Fuser%2Fa%252Bb%2Flab%2Ftree%2Fa%253Fb.ipynb"
    );
    let r = client()
        .get(hub.hub("/user/a%2Bb/api/contents/a%3Fb"))
        .header("Cookie", &cookie)
        .send()
        .await
        .expect("stopped server");
    assert_eq!(r.status(), 424);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .ends_with("/hub/spawn/a%2Bb"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_named_with_plus_reaches_the_server_and_redirects_keep_the_path() {
    use common::hubproc::{admin, real_parts, HubProc, Options};
    use reqwest::Method;
    let Some((venv, proxy)) = real_parts() else {
        return;
    };
    let hub = HubProc::started(venv, &proxy, Options::default()).await;
    let (s, body) = admin(&hub, Method::POST, "/users/a+b", None).await;
    assert_eq!(s, 201, "{body}");
    let (s, body) = admin(&hub, Method::POST, "/users/a+b/server", None).await;
    assert_eq!(s, 201, "{body}\n{}", hub.log());
    let (s, body) = admin(&hub, Method::POST, "/users/a+b/tokens", Some(json!({}))).await;
    assert_eq!(s, 201, "{body}");
    let token = serde_json::from_str::<Value>(&body).expect("json")["token"]
        .as_str()
        .expect("token")
        .to_string();
    let c = client();
    let get = |path: String| {
        let c = c.clone();
        let token = token.clone();
        let url = hub.public_url(&path);
        async move {
            c.get(url)
                .header("Authorization", format!("token {token}"))
                .send()
                .await
                .expect("get")
        }
    };
    // Through the proxy to the real server at its escaped prefix.
    let r = get("/user/a%2Bb/api/status".into()).await;
    assert_eq!(r.status(), 200, "{}", hub.log());
    // The hub's redirect to a running server keeps %3F escaped.
    let r = get("/hub/user/a%2Bb/api/contents/x%3Fy".into()).await;
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        "/user/a%2Bb/api/contents/x%3Fy?redirects=1"
    );
    let (s, _) = admin(&hub, Method::DELETE, "/users/a+b/server", None).await;
    assert_eq!(s, 204);
}

/// NUL characters, which PostgreSQL can neither store nor compare, get a 400 that says so on
/// every database, in a URL or anywhere in a JSON body — never a 500 (found by schemathesis:
/// `POST /groups/{name}/users` with a NUL in a user name was a 500 on PostgreSQL).
#[tokio::test]
async fn nul_characters_are_refused_with_400_on_every_database() {
    use reqwest::Method;
    let urls_dir = tempfile::tempdir().expect("tempdir");
    for (backend, url) in common::database_urls(urls_dir.path()).await {
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = common::start_hub(common::test_config(dir.path(), &url), dir).await;
        let (s, body) = call(
            &hub,
            Method::POST,
            "/groups/g",
            ADMIN_TOKEN,
            Some(json!({})),
        )
        .await;
        assert_eq!(s, 201, "{backend}: {body}");
        let cases = [
            (
                Method::POST,
                "/groups/g/users",
                Some(json!({"users": ["a\u{0}b"]})),
            ),
            (Method::GET, "/users/a%00b", None),
            (Method::GET, "/groups?offset=%00", None),
            (
                Method::POST,
                "/users",
                Some(json!({"usernames": ["x\u{0}"]})),
            ),
            (
                Method::PUT,
                "/groups/g/properties",
                Some(json!({"k\u{0}": {"nested": ["v\u{0}"]}})),
            ),
        ];
        for (method, path, body) in cases {
            let (s, answer) = call(&hub, method.clone(), path, ADMIN_TOKEN, body).await;
            assert_eq!(s, 400, "{backend}: {method} {path}: {answer}");
            assert!(
                answer["message"].as_str().unwrap_or("").contains("NUL"),
                "{backend}: {method} {path}: {answer}"
            );
        }
        let token = common::client()
            .post(hub.api("/oauth2/token"))
            .form(&[
                ("client_id", "c\u{0}"),
                ("client_secret", "s"),
                ("grant_type", "authorization_code"),
                ("code", "x"),
            ])
            .send()
            .await
            .expect("token request");
        assert_eq!(token.status(), 400, "{backend}: POST /oauth2/token");
        // The pages alike: a page for people, 400, before any form check or query.
        let page_cases: [(Method, &str, &[u8]); 5] = [
            (Method::POST, "/login", b"username=a%00b&password=pw"),
            (Method::POST, "/login", b"username=a\0b&password=pw"),
            (Method::POST, "/signup", b"username=x&password=y%00"),
            (Method::GET, "/spawn/a%00b", b""),
            (Method::GET, "/login?next=%2Fhub%00", b""),
        ];
        for (method, path, body) in page_cases {
            let resp = common::client()
                .request(method.clone(), hub.hub(path))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.to_vec())
                .send()
                .await
                .expect("page request");
            assert_eq!(resp.status(), 400, "{backend}: {method} {path}");
            let html = resp.text().await.expect("page");
            assert!(
                html.contains("NUL characters") && html.contains("<html"),
                "{backend}: {method} {path}: {html}"
            );
        }
    }
}

/// An answer given before the request body arrived (a 405, and a CORS preflight's 204) must
/// leave the connection usable: the hub reads the body first. It used to answer at once and
/// then close the keep-alive connection under the next request (schemathesis through the proxy
/// saw 503s).
#[tokio::test]
async fn early_answer_keeps_the_connection_for_the_next_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hub = sqlite_hub(|_| {}).await;
    let addr = hub.url.trim_start_matches("http://").to_string();
    for (method, status) in [("PUT", "405"), ("OPTIONS", "204")] {
        let mut conn = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        conn.set_nodelay(true).expect("nodelay");
        let body = r#"{"display_name": ""}"#;
        let head = format!(
            "{method} /hub/api/users/alice/server HTTP/1.1\r\nHost: {addr}\r\n\
             Origin: http://elsewhere.example\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes()).await.expect("write head");
        // The old hub answered within milliseconds, before the body; give it the chance to.
        let mut answers = Vec::new();
        let mut buf = [0u8; 4096];
        if let Ok(Ok(n)) =
            tokio::time::timeout(std::time::Duration::from_millis(300), conn.read(&mut buf)).await
        {
            answers.extend_from_slice(&buf[..n]);
        }
        let next = format!("GET /hub/api/ HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        // The body may meet a connection the hub already closed: that is the failure.
        let _ = conn.write_all(body.as_bytes()).await;
        let _ = conn.write_all(next.as_bytes()).await;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while String::from_utf8_lossy(&answers)
            .matches("HTTP/1.1 ")
            .count()
            < 2
        {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, conn.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => answers.extend_from_slice(&buf[..n]),
                other => panic!(
                    "{method}: the connection ended ({other:?}) after: {}",
                    String::from_utf8_lossy(&answers)
                ),
            }
        }
        let text = String::from_utf8_lossy(&answers);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status}")),
            "{method}: {text}"
        );
        assert!(text.contains("HTTP/1.1 200"), "{method}: {text}");
    }
}

/// Bodies are read before routing, within bounds: over 2 MiB is a 413 that says the limit
/// (and closes the connection), over 1 MiB of JSON is a 413 from the JSON reader.
#[tokio::test]
async fn too_large_bodies_get_413_with_the_limit() {
    let hub = sqlite_hub(|_| {}).await;
    for (size, limit) in [(3 << 20, "2 MiB"), ((1 << 20) + 10, "1 MiB")] {
        let r = client()
            .post(hub.api("/users"))
            .header("Authorization", format!("token {ADMIN_TOKEN}"))
            .header("Content-Type", "application/json")
            .body(vec![b' '; size])
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 413, "{size} bytes");
        let text = r.text().await.unwrap_or_default();
        assert!(text.contains(limit), "{size} bytes: {text}");
    }
}

/// A call with the admin service's token.
async fn as_admin(
    hub: &TestHub,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    call(hub, method, path, ADMIN_TOKEN, body).await
}

/// CVE-2024-41942 and its relatives: a caller holding `admin:users`, `groups` or `tokens`
/// on someone must not hand out more than it holds — admin, roles, groups with roles, tokens,
/// shares — nor change or delete an admin. Every write path of the API that can give scopes is
/// tried; each refusal leaves the database as it was, and an admin can still do each of them.
#[tokio::test]
async fn no_one_hands_out_scopes_they_do_not_hold() {
    use nbhub::config::{RoleConfig, ServiceConfig};
    use reqwest::Method;
    let service = |name: &str| ServiceConfig {
        name: name.into(),
        api_token: format!("{name}-token-0123456789"),
        ..Default::default()
    };
    let role = |name: &str, scopes: &[&str]| RoleConfig {
        name: name.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let hub = sqlite_hub(|c| {
        c.authenticator.admin_users = vec!["admin".into(), "root".into()];
        for s in ["usermgr", "groupmgr", "tokmgr"] {
            c.services.push(service(s));
        }
        let mut gadmin = role("gadmin", &["admin:users!group=g1", "admin:groups!group=g1"]);
        gadmin.users = vec!["gadm".into()];
        let mut usermgr = role("usermgr-role", &["admin:users"]);
        usermgr.services = vec!["usermgr".into()];
        let mut groupmgr = role("groupmgr-role", &["groups", "read:groups"]);
        groupmgr.services = vec!["groupmgr".into()];
        let mut tokmgr = role("tokmgr-role", &["tokens"]);
        tokmgr.services = vec!["tokmgr".into()];
        let mut g2role = role("g2-role", &["admin:servers"]);
        g2role.groups = vec!["g2".into()];
        c.roles.extend([gadmin, usermgr, groupmgr, tokmgr, g2role]);
    })
    .await;
    let (s, v) = as_admin(
        &hub,
        Method::POST,
        "/users",
        Some(json!({"usernames": ["alice", "carol", "gadm"]})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    for (g, users) in [("g1", json!(["carol"])), ("g2", json!([]))] {
        let (s, v) = as_admin(
            &hub,
            Method::POST,
            &format!("/groups/{g}"),
            Some(json!({"users": users})),
        )
        .await;
        assert!(s == 201 || s == 409, "{g}: {s} {v}");
        if s == 409 {
            // The role's group was made at start: add the members.
            let (s, v) = as_admin(
                &hub,
                Method::POST,
                &format!("/groups/{g}/users"),
                Some(json!({"users": users})),
            )
            .await;
            assert!(
                s == 200 || users.as_array().is_some_and(Vec::is_empty),
                "{s} {v}"
            );
        }
    }
    // An admin deleted root (it is still in admin_users): whoever creates it makes an admin.
    let (s, v) = as_admin(&hub, Method::DELETE, "/users/root", None).await;
    assert_eq!(s, 204, "{v}");
    let gadm = new_token(&hub, "gadm", json!({})).await;
    // The admin's own token, narrowed to admin:users: not the whole admin role.
    let narrow_admin = new_token(&hub, "admin", json!({"scopes": ["admin:users"]})).await;
    let (usermgr, groupmgr, tokmgr) = (
        "usermgr-token-0123456789",
        "groupmgr-token-0123456789",
        "tokmgr-token-0123456789",
    );

    // Joining a group without roles is no escalation (JupyterHub allows it too).
    let (s, v) = call(
        &hub,
        Method::POST,
        "/groups/g1/users",
        &gadm,
        Some(json!({"users": ["gadm"]})),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    let grant_admin = "Only admins can grant admin permissions";
    let modify_admin = "Only admins can modify other admins";
    // Each row: who calls what, the status and a part of the message.
    check_rows(
        &hub,
        vec![
            row(Method::PATCH, "/users/gadm", &gadm, 403)
                .body(json!({"admin": true}))
                .says(grant_admin)
                .what("gadm makes himself admin"),
            row(Method::GET, "/users/alice/tokens", &gadm, 404)
                .says("No access")
                .what("gadm reads alice's tokens"),
            row(Method::PATCH, "/users/carol", &gadm, 403)
                .body(json!({"roles": ["usermgr-role"]}))
                .says("Cannot give role usermgr-role")
                .what("gadm gives carol a role he lacks"),
            row(Method::POST, "/groups/g1/users", &gadm, 403)
                .body(json!({"users": ["admin"]}))
                .says(modify_admin)
                .what("gadm adds the admin to his group"),
            row(Method::POST, "/shares/carol/", &gadm, 403)
                .body(json!({"user": "gadm"}))
                .says("shares")
                .what("gadm shares carol's server"),
            row(Method::POST, "/users/newadm", usermgr, 403)
                .body(json!({"admin": true}))
                .says(grant_admin)
                .what("usermgr creates an admin"),
            row(Method::POST, "/users", usermgr, 403)
                .body(json!({"usernames": ["x1", "x2"], "admin": true}))
                .says(grant_admin)
                .what("usermgr creates admins in bulk"),
            row(Method::PATCH, "/users/admin", usermgr, 403)
                .body(json!({"admin": false}))
                .says(modify_admin)
                .what("usermgr demotes the admin"),
            row(Method::PATCH, "/users/admin", usermgr, 403)
                .body(json!({"name": "admin2"}))
                .says(modify_admin)
                .what("usermgr renames the admin"),
            row(Method::DELETE, "/users/admin", usermgr, 403)
                .says("Only admins can delete other admins")
                .what("usermgr deletes the admin"),
            row(Method::POST, "/users/root", usermgr, 403)
                .says("admin_users")
                .what("usermgr creates an admin_users name"),
            row(Method::PATCH, "/users/carol", usermgr, 403)
                .body(json!({"name": "root"}))
                .says("admin_users")
                .what("usermgr renames carol to an admin_users name"),
            row(Method::PATCH, "/users/carol", usermgr, 403)
                .body(json!({"groups": ["g1", "g2"]}))
                .says("Cannot add carol to group g2")
                .what("usermgr puts carol in a group with a role it lacks"),
            row(Method::POST, "/groups/g2/users", groupmgr, 403)
                .body(json!({"users": ["carol"]}))
                .says("Cannot add carol to group g2")
                .what("groupmgr adds carol to a group with a role it lacks"),
            row(Method::DELETE, "/groups/g1/users", groupmgr, 403)
                .body(json!({"users": ["admin"]}))
                .says(modify_admin)
                .what("groupmgr removes the admin from a group"),
            row(Method::POST, "/users/admin/tokens", tokmgr, 403)
                .body(json!({"scopes": ["read:tokens!user=admin"]}))
                .says(modify_admin)
                .what("tokmgr mints a token for the admin"),
            row(Method::PATCH, "/users/carol", &narrow_admin, 403)
                .body(json!({"admin": true}))
                .says(grant_admin)
                .what("a narrowed admin token grants admin"),
        ],
    )
    .await;

    // Nothing changed.
    let user = |name: &'static str| {
        let hub = &hub;
        async move {
            call(
                hub,
                Method::GET,
                &format!("/users/{name}"),
                ADMIN_TOKEN,
                None,
            )
            .await
        }
    };
    assert_eq!(user("gadm").await.1["admin"], false);
    assert_eq!(user("admin").await.1["admin"], true);
    assert_eq!(user("carol").await.1["roles"], json!(["user"]));
    assert_eq!(user("carol").await.1["groups"], json!(["g1"]));
    for gone in ["newadm", "x1", "root", "admin2"] {
        assert_eq!(user(gone).await.0, 404, "{gone} was created");
    }
    let (_, g2) = as_admin(&hub, Method::GET, "/groups/g2", None).await;
    assert_eq!(g2["users"], json!([]));
    let (_, g1) = as_admin(&hub, Method::GET, "/groups/g1", None).await;
    assert_eq!(g1["users"], json!(["carol", "gadm"]));
    let (_, toks) = as_admin(&hub, Method::GET, "/users/admin/tokens", None).await;
    let minted: Vec<&Value> = toks["api_tokens"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|t| t["note"] != "Requested via api by service admin-svc")
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(minted.len(), 0, "no token was minted for the admin: {toks}");

    // What is within the caller's scopes still works, and an admin can do all of it. Holding
    // `tokens` on a user is acting as that user (JupyterHub's meaning; portals mint their
    // users' tokens so): a token with what alice holds is minted for her.
    let (s, v) = call(
        &hub,
        Method::POST,
        "/users/alice/tokens",
        tokmgr,
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = call(
        &hub,
        Method::PATCH,
        "/users/carol",
        usermgr,
        Some(json!({"name": "carol2"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    for body in [
        json!({"admin": true}),
        json!({"admin": false}),
        json!({"roles": ["usermgr-role"], "groups": ["g1", "g2"]}),
    ] {
        let (s, v) = as_admin(&hub, Method::PATCH, "/users/carol2", Some(body)).await;
        assert_eq!(s, 200, "{v}");
    }
    let (s, v) = as_admin(
        &hub,
        Method::POST,
        "/users/root",
        Some(json!({"admin": true})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
}

/// Answers that carry a new secret (an API token, a share code) may not be kept by any cache.
#[tokio::test]
async fn answers_with_secrets_are_not_cached() {
    let hub = sqlite_hub(|_| {}).await;
    setup_users(&hub).await;
    for (path, body) in [
        ("/users/alice/tokens", json!({"note": "cached?"})),
        ("/share-codes/alice/", json!({})),
    ] {
        let resp = client()
            .post(hub.api(path))
            .header("Authorization", format!("token {ADMIN_TOKEN}"))
            .json(&body)
            .send()
            .await
            .expect("post");
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        assert_eq!(
            resp.headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-store"),
            "{path}"
        );
    }
}
