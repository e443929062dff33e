//! The hub caches resolved identities (token → owner and expanded scopes); a change that takes
//! a permission away must still hold on the very next request: a revoked token, a user removed
//! from the group that granted a scope, a deleted user.

use crate::common;

use common::hubproc::{admin, launch, HubProc, Options};
use common::user_token;
use reqwest::Method;
use serde_json::json;

async fn get(hub: &HubProc, token: &str, path: &str) -> u16 {
    let url = hub.public_url(&format!("/hub/api{path}"));
    common::get_as(&reqwest::Client::new(), url, token)
        .await
        .status()
        .as_u16()
}

/// Adds alice to (POST) or removes her from (DELETE) the group "readers".
async fn readers(hub: &HubProc, method: Method) {
    let users = json!({"users": ["alice"]});
    let (s, body) = admin(hub, method, "/groups/readers/users", Some(users)).await;
    assert_eq!(s, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_or_a_lost_group_scope_is_refused_on_the_next_request() {
    // Members of "readers" may read every user.
    let roles = "[[roles]]\nname = \"reader\"\nscopes = [\"read:users\"]\ngroups = [\"readers\"]\n\
        [[roles]]\nname = \"group-admin\"\nscopes = [\"groups\"]\nservices = [\"e2e-admin\"]\n";
    let Some(hub) = launch(Options::services(roles)).await else {
        return;
    };
    for name in ["alice", "bob", "carol"] {
        let (s, body) = admin(&hub, Method::POST, &format!("/users/{name}"), None).await;
        assert_eq!(s, 201, "{body}");
    }
    readers(&hub, Method::POST).await;

    let alice = user_token(&hub, "alice").await;
    // Warm the cache: several requests with the same token.
    for _ in 0..5 {
        assert_eq!(get(&hub, &alice, "/users/bob").await, 200, "{}", hub.log());
        assert_eq!(get(&hub, &alice, "/user").await, 200);
    }

    // Out of the group: the scope it granted is gone on the very next request.
    readers(&hub, Method::DELETE).await;
    assert_eq!(
        get(&hub, &alice, "/users/bob").await,
        404,
        "readers' scope must be gone"
    );
    assert_eq!(
        get(&hub, &alice, "/user").await,
        200,
        "her own model stays readable"
    );
    // And back in: granted on the next request too.
    readers(&hub, Method::POST).await;
    assert_eq!(get(&hub, &alice, "/users/bob").await, 200);

    // A revoked token is refused on the very next request.
    let (s, body) = admin(&hub, Method::GET, "/users/alice/tokens", None).await;
    assert_eq!(s, 200, "{body}");
    let listed: serde_json::Value = serde_json::from_str(&body).expect("json");
    let ids: Vec<String> = listed["api_tokens"]
        .as_array()
        .expect("api_tokens")
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_string())
        .collect();
    assert!(!ids.is_empty(), "{body}");
    for id in &ids {
        let (s, body) = admin(
            &hub,
            Method::DELETE,
            &format!("/users/alice/tokens/{id}"),
            None,
        )
        .await;
        assert_eq!(s, 204, "{body}");
    }
    assert_eq!(get(&hub, &alice, "/user").await, 403, "revoked token");

    // A deleted user's token is refused on the next request as well.
    let carol = user_token(&hub, "carol").await;
    assert_eq!(get(&hub, &carol, "/user").await, 200);
    assert_eq!(get(&hub, &carol, "/user").await, 200);
    let (s, body) = admin(&hub, Method::DELETE, "/users/carol", None).await;
    assert_eq!(s, 204, "{body}");
    assert_eq!(get(&hub, &carol, "/user").await, 403, "deleted user");
}
