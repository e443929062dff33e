//! The REST API through a real socket, as clients such as the idle culler use it.

mod common;

use common::{client, sqlite_hub, TestHub, ADMIN_TOKEN};
use serde_json::{json, Value};

const PAGINATION: &str = "application/jupyterhub-pagination+json";

async fn call(
    hub: &TestHub,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client()
        .request(method, hub.api(path))
        .header("Authorization", format!("token {token}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn new_token(hub: &TestHub, user: &str, body: Value) -> String {
    let (status, t) = call(
        hub,
        reqwest::Method::POST,
        &format!("/users/{user}/tokens"),
        ADMIN_TOKEN,
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{t}");
    t["token"]
        .as_str()
        .expect("token in POST response")
        .to_string()
}

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
        let resp = client()
            .get(format!("{}{path}", hub.url))
            .send()
            .await
            .expect("get");
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
    let (s, e) = call(
        &hub,
        Method::GET,
        "/users?state=sleeping",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(s, 400, "{e}");
    let (s, _) = call(&hub, Method::GET, "/users?limit=ten", ADMIN_TOKEN, None).await;
    assert_eq!(s, 400);

    // users: conflict, invalid names, patch, delete
    let (s, e) = call(
        &hub,
        Method::POST,
        "/users",
        ADMIN_TOKEN,
        Some(json!({"usernames": ["alice"]})),
    )
    .await;
    assert_eq!(s, 409, "{e}");
    let (s, e) = call(
        &hub,
        Method::POST,
        "/users",
        ADMIN_TOKEN,
        Some(json!({"usernames": ["a b"]})),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap_or("")
            .contains("Invalid user name"),
        "{e}"
    );
    let (s, _) = call(
        &hub,
        Method::POST,
        "/users/carol",
        ADMIN_TOKEN,
        Some(json!({"admin": true})),
    )
    .await;
    assert_eq!(s, 201);
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
    let (s, e) = call(
        &hub,
        Method::PATCH,
        "/users/carol",
        ADMIN_TOKEN,
        Some(json!({"admin": "yes"})),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    let (s, e) = call(
        &hub,
        Method::PATCH,
        "/users/carol",
        ADMIN_TOKEN,
        Some(json!({"colour": 1})),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    let (s, e) = call(
        &hub,
        Method::PATCH,
        "/users/carol",
        ADMIN_TOKEN,
        Some(json!({"groups": ["nope"], "admin": true})),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    let (_, u) = call(&hub, Method::GET, "/users/carol", ADMIN_TOKEN, None).await;
    assert_eq!(u["admin"], false, "a rejected PATCH changes nothing");
    let (s, _) = call(&hub, Method::DELETE, "/users/carol", ADMIN_TOKEN, None).await;
    assert_eq!(s, 204);
    let (s, _) = call(&hub, Method::GET, "/users/carol", ADMIN_TOKEN, None).await;
    assert_eq!(s, 404);
    let (s, e) = call(
        &hub,
        Method::POST,
        "/users",
        ADMIN_TOKEN,
        Some(json!("not an object")),
    )
    .await;
    assert_eq!(s, 400, "{e}");
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

    // reading bob: alice holds read:users only for herself → 404, as JupyterHub
    let (s, e) = call(&hub, Method::GET, "/users/bob", &alice, None).await;
    assert_eq!(s, 404, "{e}");
    let (s, _) = call(&hub, Method::GET, "/users/ghost", &alice, None).await;
    assert_eq!(s, 404, "same answer for a user that does not exist");
    // changing bob: alice has no admin:users at all → 403
    let (s, e) = call(
        &hub,
        Method::PATCH,
        "/users/bob",
        &alice,
        Some(json!({"admin": true})),
    )
    .await;
    assert_eq!(s, 403, "{e}");
    assert!(
        e["message"].as_str().unwrap_or("").contains("admin:users"),
        "{e}"
    );
    let (s, _) = call(&hub, Method::DELETE, "/users/bob", &alice, None).await;
    assert_eq!(s, 403);
    let (s, _) = call(&hub, Method::GET, "/users/bob/tokens", &alice, None).await;
    assert_eq!(s, 404);
    let (s, _) = call(
        &hub,
        Method::POST,
        "/users/bob/tokens",
        &alice,
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = call(
        &hub,
        Method::POST,
        "/users/bob/activity",
        &alice,
        Some(json!({"last_activity": "2026-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(s, 404);
    // listing users needs list:users
    let (s, e) = call(&hub, Method::GET, "/users", &alice, None).await;
    assert_eq!(s, 403, "{e}");
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
    let (s, e) = call(
        &hub,
        Method::POST,
        "/users/alice/tokens",
        &alice,
        Some(json!({"scopes": ["admin:users"]})),
    )
    .await;
    assert_eq!(s, 403, "{e}");
    let (s, e) = call(
        &hub,
        Method::POST,
        "/users/alice/tokens",
        &alice,
        Some(json!({"scopes": ["read:usrs"]})),
    )
    .await;
    assert_eq!(s, 400, "{e}");
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
    let (s, e) = call(&hub, Method::GET, "/user", &expiring, None).await;
    assert_eq!(s, 403, "{e}");
    // a token in the query string is ignored by the hub API, as JupyterHub
    let resp = client()
        .get(format!("{}?token={alice}", hub.api("/user")))
        .send()
        .await
        .expect("get");
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
