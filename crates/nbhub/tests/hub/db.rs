//! The database layer, run against every backend: SQLite always, PostgreSQL when the test
//! script has started one (and always in CI, where its absence fails the test).

use crate::common;

use nbhub::config::{RoleConfig, ServiceConfig};
use nbhub::db::{self, groups, oauth, servers, services, tokens, users, Db};
use serde_json::json;

async fn each_backend<F, Fut>(test: F)
where
    F: Fn(Db) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("tempdir");
    for (backend, url) in common::database_urls(dir.path()).await {
        eprintln!("-- running on {backend}");
        let db = Db::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{backend}: connect: {e}"));
        test(db.clone()).await;
        // Migrations are idempotent: connecting again must not fail.
        Db::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{backend}: reconnect: {e}"));
        db.pool.close().await;
    }
}

#[tokio::test]
async fn users_crud_listing_and_atomic_batches() {
    each_backend(|db| async move {
        let created =
            users::create_many(&db, &["alice".into(), "bob".into(), "carol".into()], false)
                .await
                .expect("create");
        assert_eq!(created.len(), 3);
        assert!(created
            .iter()
            .all(|u| !u.admin && u.approved && u.cookie_id.len() == 32));
        // A batch with one existing name creates nothing at all.
        let err = users::create_many(&db, &["dave".into(), "alice".into()], false)
            .await
            .expect_err("duplicate");
        assert!(db::is_unique_violation(&err), "{err}");
        assert!(
            users::get(&db, "dave").await.expect("get").is_none(),
            "no half-written batch"
        );

        let alice = users::get(&db, "alice").await.expect("get").expect("alice");
        users::set_admin(&db, alice.id, true).await.expect("admin");
        users::touch_activity(&db, alice.id, 2_000)
            .await
            .expect("touch");
        users::touch_activity(&db, alice.id, 1_000)
            .await
            .expect("touch");
        let alice = users::get_by_id(&db, alice.id)
            .await
            .expect("get")
            .expect("alice");
        assert!(alice.admin);
        assert_eq!(
            alice.last_activity,
            Some(2_000),
            "activity never moves back"
        );
        assert_eq!(
            users::get_by_cookie_id(&db, &alice.cookie_id)
                .await
                .expect("get")
                .map(|u| u.name),
            Some("alice".into())
        );
        let new_cookie = users::rotate_cookie_id(&db, alice.id)
            .await
            .expect("rotate");
        assert!(users::get_by_cookie_id(&db, &alice.cookie_id)
            .await
            .expect("get")
            .is_none());
        assert!(users::get_by_cookie_id(&db, &new_cookie)
            .await
            .expect("get")
            .is_some());

        let q = |name_filter: Option<&str>, sort, descending, offset, limit| users::ListQuery {
            offset,
            limit,
            name_filter: name_filter.map(str::to_string),
            state: None,
            sort,
            descending,
            visible: None,
        };
        let (page, total) = users::list(&db, &q(None, users::SortKey::Name, true, 0, 2))
            .await
            .expect("list");
        assert_eq!(total, 3);
        assert_eq!(
            page.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
            ["carol", "bob"]
        );
        let (page, _) = users::list(&db, &q(None, users::SortKey::Name, true, 2, 2))
            .await
            .expect("list");
        assert_eq!(page.len(), 1);
        let (page, total) = users::list(&db, &q(Some("AR"), users::SortKey::Id, false, 0, 10))
            .await
            .expect("list");
        assert_eq!((total, page[0].name.as_str()), (1, "carol"));
        let (page, _) = users::list(&db, &q(Some("%"), users::SortKey::Id, false, 0, 10))
            .await
            .expect("list");
        assert!(page.is_empty(), "LIKE wildcards in the filter are literal");
        // last_activity: nulls last ascending, first descending
        let (page, _) = users::list(&db, &q(None, users::SortKey::LastActivity, false, 0, 10))
            .await
            .expect("list");
        assert_eq!(page[0].name, "alice");
        let (page, _) = users::list(&db, &q(None, users::SortKey::LastActivity, true, 0, 10))
            .await
            .expect("list");
        assert_eq!(page[2].name, "alice");
        // restricted visibility (filtered list:users)
        let mut vis = q(None, users::SortKey::Id, false, 0, 10);
        vis.visible = Some(users::Visible {
            names: vec!["bob".into()],
            groups: vec![],
        });
        let (page, total) = users::list(&db, &vis).await.expect("list");
        assert_eq!((total, page[0].name.as_str()), (1, "bob"));
        vis.visible = Some(users::Visible::default());
        assert_eq!(users::list(&db, &vis).await.expect("list").1, 0);

        users::rename(&db, alice.id, "alicia")
            .await
            .expect("rename");
        assert!(users::get(&db, "alicia").await.expect("get").is_some());
        users::delete(&db, alice.id).await.expect("delete");
        assert!(users::get(&db, "alicia").await.expect("get").is_none());
    })
    .await;
}

#[tokio::test]
async fn groups_membership_and_cascades() {
    each_backend(|db| async move {
        users::create_many(&db, &["alice".into(), "bob".into()], false)
            .await
            .expect("users");
        let g = groups::create_many(&db, &[("physics".into(), vec!["alice".into()])])
            .await
            .expect("group")
            .remove(0);
        groups::add_users(&db, g.id, &["bob".into(), "alice".into()])
            .await
            .expect("add");
        assert_eq!(
            groups::members(&db, g.id).await.expect("members"),
            ["alice", "bob"]
        );
        groups::remove_users(&db, g.id, &["alice".into()])
            .await
            .expect("remove");
        assert_eq!(groups::members(&db, g.id).await.expect("members"), ["bob"]);
        groups::set_properties(&db, g.id, &json!({"quota": 1}))
            .await
            .expect("props");
        assert_eq!(
            groups::get(&db, "physics")
                .await
                .expect("get")
                .expect("g")
                .properties,
            json!({"quota": 1})
        );
        let bob = users::get(&db, "bob").await.expect("get").expect("bob");
        assert_eq!(
            users::group_names(&db, bob.id).await.expect("groups"),
            ["physics"]
        );
        users::set_groups(&db, bob.id, &[])
            .await
            .expect("set groups");
        assert!(groups::members(&db, g.id)
            .await
            .expect("members")
            .is_empty());
        groups::add_users(&db, g.id, &["bob".into()])
            .await
            .expect("add");
        // Deleting a user removes the membership; deleting the group removes it too.
        users::delete(&db, bob.id).await.expect("delete");
        assert!(groups::members(&db, g.id)
            .await
            .expect("members")
            .is_empty());
        let (list, total) = groups::list(&db, 0, 10, None).await.expect("list");
        assert_eq!((list.len(), total), (1, 1));
        assert_eq!(
            groups::list(&db, 0, 10, Some(&[])).await.expect("list").1,
            0
        );
        groups::delete(&db, g.id).await.expect("delete");
        assert!(groups::get(&db, "physics").await.expect("get").is_none());
    })
    .await;
}

#[tokio::test]
async fn tokens_are_hashed_found_expired_and_revoked() {
    each_backend(|db| async move {
        let alice = users::create(&db, "alice", false).await.expect("alice");
        let secret = tokens::generate();
        let scopes = vec!["read:users!user=alice".to_string()];
        let row = tokens::insert(
            &db,
            &tokens::NewToken {
                owner: tokens::Owner::User(alice.id),
                token: &secret,
                rounds: tokens::GENERATED_ROUNDS,
                client_id: tokens::API_CLIENT_ID,
                session_id: Some("sess1"),
                note: "n",
                scopes: &scopes,
                expires_at: None,
            },
        )
        .await
        .expect("insert");
        assert_eq!(row.scopes, scopes);
        let found = tokens::find(&db, &secret)
            .await
            .expect("find")
            .expect("found");
        assert_eq!(found.id, row.id);
        assert!(tokens::find(&db, &tokens::generate())
            .await
            .expect("find")
            .is_none());
        assert!(tokens::find(&db, "short").await.expect("find").is_none());
        // Only a hash is stored.
        let stored: Vec<(String, String)> = sqlx::query_as("SELECT prefix, hashed FROM api_tokens")
            .fetch_all(&db.pool)
            .await
            .expect("select");
        assert!(stored
            .iter()
            .all(|(p, h)| p.len() == 4 && h.starts_with("sha512:") && !h.contains(&secret)));
        // Expiry
        let expired = tokens::generate();
        tokens::insert(
            &db,
            &tokens::NewToken {
                owner: tokens::Owner::User(alice.id),
                token: &expired,
                rounds: 1,
                client_id: tokens::API_CLIENT_ID,
                session_id: None,
                note: "",
                scopes: &[],
                expires_at: Some(db::now_micros() - 1),
            },
        )
        .await
        .expect("insert");
        assert!(tokens::find(&db, &expired).await.expect("find").is_none());
        assert_eq!(
            tokens::list_for(&db, tokens::Owner::User(alice.id))
                .await
                .expect("list")
                .len(),
            1
        );
        assert_eq!(tokens::purge_expired(&db).await.expect("purge"), 1);
        tokens::touch(&db, row.id, 42).await.expect("touch");
        assert_eq!(
            tokens::get(&db, row.id)
                .await
                .expect("get")
                .expect("row")
                .last_activity,
            Some(42)
        );
        // Logout revokes the session's tokens.
        tokens::delete_for_session(&db, "sess1")
            .await
            .expect("delete");
        assert!(tokens::find(&db, &secret).await.expect("find").is_none());
    })
    .await;
}

#[tokio::test]
async fn services_and_roles_follow_the_config() {
    each_backend(|db| async move {
        let mut svc = vec![ServiceConfig {
            name: "culler".into(),
            api_token: "culler-secret-token".into(),
            ..Default::default()
        }];
        let roles = vec![RoleConfig {
            name: "culler-role".into(),
            scopes: vec!["list:users".into()],
            services: vec!["culler".into()],
            users: vec!["newbie".into()],
            groups: vec!["staff".into()],
            ..Default::default()
        }];
        services::sync_from_config(&db, &svc).await.expect("sync");
        services::sync_roles_from_config(&db, &roles)
            .await
            .expect("roles");
        let found = tokens::find(&db, "culler-secret-token")
            .await
            .expect("find")
            .expect("service token");
        let culler = services::get(&db, "culler")
            .await
            .expect("get")
            .expect("culler");
        assert_eq!(found.owner, tokens::Owner::Service(culler.id));
        assert_eq!(
            services::role_names(&db, culler.id).await.expect("roles"),
            ["culler-role"]
        );
        let newbie = users::get(&db, "newbie")
            .await
            .expect("get")
            .expect("role users are created");
        assert_eq!(
            users::role_names(&db, newbie.id).await.expect("roles"),
            ["culler-role"]
        );
        assert!(groups::get(&db, "staff").await.expect("get").is_some());
        // Syncing again is a no-op; a changed token replaces the old one.
        services::sync_from_config(&db, &svc).await.expect("sync");
        assert_eq!(
            tokens::list_for(&db, tokens::Owner::Service(culler.id))
                .await
                .expect("list")
                .len(),
            1
        );
        svc[0].api_token = "another-secret-token".into();
        services::sync_from_config(&db, &svc).await.expect("sync");
        assert!(tokens::find(&db, "culler-secret-token")
            .await
            .expect("find")
            .is_none());
        assert!(tokens::find(&db, "another-secret-token")
            .await
            .expect("find")
            .is_some());
        // Removed from the config: gone, with its tokens.
        services::sync_roles_from_config(&db, &[])
            .await
            .expect("roles");
        services::sync_from_config(&db, &[]).await.expect("sync");
        assert!(services::get(&db, "culler").await.expect("get").is_none());
        assert!(tokens::find(&db, "another-secret-token")
            .await
            .expect("find")
            .is_none());
        assert!(services::get_role(&db, "culler-role")
            .await
            .expect("get")
            .is_none());
    })
    .await;
}

#[tokio::test]
async fn servers_and_oauth_records() {
    each_backend(|db| async move {
        let alice = users::create(&db, "alice", false).await.expect("alice");
        let row = servers::ensure(&db, alice.id, "").await.expect("ensure");
        assert_eq!(
            servers::ensure(&db, alice.id, "").await.expect("ensure").id,
            row.id,
            "one row per name"
        );
        servers::mark_starting(&db, row.id, &json!({"partition": "debug"}), 1_000)
            .await
            .expect("start");
        servers::set_state(&db, row.id, &json!({"pid": 42}))
            .await
            .expect("state");
        servers::mark_ready(&db, row.id, "127.0.0.1", 8888)
            .await
            .expect("ready");
        let r = servers::get(&db, alice.id, "")
            .await
            .expect("get")
            .expect("row");
        assert_eq!(
            (r.started, r.port, r.ip.as_deref()),
            (Some(1_000), Some(8888), Some("127.0.0.1"))
        );
        assert_eq!(r.state, json!({"pid": 42}));
        assert_eq!(servers::list_started(&db).await.expect("list").len(), 1);
        let (ready, _) = users::list(
            &db,
            &users::ListQuery {
                offset: 0,
                limit: 10,
                name_filter: None,
                state: Some(users::StateFilter::Ready),
                sort: users::SortKey::Id,
                descending: false,
                visible: None,
            },
        )
        .await
        .expect("list");
        assert_eq!(ready.len(), 1);
        servers::mark_stopped(&db, row.id).await.expect("stop");
        assert!(servers::list_started(&db).await.expect("list").is_empty());

        oauth::upsert_client(
            &db,
            &oauth::NewClient {
                identifier: "jupyterhub-user-alice",
                description: "Server at /user/alice/",
                secret: "client-secret",
                redirect_uri: "/user/alice/oauth_callback",
                allowed_scopes: &["access:servers!server=alice/".to_string()],
            },
        )
        .await
        .expect("client");
        assert!(
            oauth::verify_client_secret(&db, "jupyterhub-user-alice", "client-secret")
                .await
                .expect("verify")
        );
        assert!(
            !oauth::verify_client_secret(&db, "jupyterhub-user-alice", "wrong")
                .await
                .expect("verify")
        );
        let code = oauth::Code {
            client_id: "jupyterhub-user-alice".into(),
            redirect_uri: "/user/alice/oauth_callback".into(),
            session_id: Some("s".into()),
            user_id: alice.id,
            scopes: vec![],
            code_challenge: Some("abc".into()),
            code_challenge_method: Some("S256".into()),
        };
        oauth::insert_code(&db, "the-code", &code, 300)
            .await
            .expect("code");
        assert_eq!(
            oauth::take_code(&db, "the-code").await.expect("take"),
            Some(code.clone())
        );
        assert_eq!(
            oauth::take_code(&db, "the-code").await.expect("take"),
            None,
            "a code works once"
        );
        oauth::insert_code(&db, "old-code", &code, -1)
            .await
            .expect("code");
        assert_eq!(
            oauth::take_code(&db, "old-code").await.expect("take"),
            None,
            "expired"
        );
        oauth::delete_client(&db, "jupyterhub-user-alice")
            .await
            .expect("delete");
        assert!(oauth::get_client(&db, "jupyterhub-user-alice")
            .await
            .expect("get")
            .is_none());
    })
    .await;
}

/// The API scenario of the foundation, on PostgreSQL (the SQLite one is in api.rs).
#[tokio::test]
async fn hub_api_on_postgres() {
    let Some(url) = common::fresh_postgres_db().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::test_config(dir.path(), &url);
    let hub = common::start_hub(config, dir).await;
    let c = common::client();
    let auth = format!("token {}", common::ADMIN_TOKEN);
    let resp = c
        .post(hub.api("/users"))
        .header("Authorization", &auth)
        .json(&json!({"usernames": ["alice", "bob"]}))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 201);
    let t: serde_json::Value = c
        .post(hub.api("/users/alice/tokens"))
        .header("Authorization", &auth)
        .json(&json!({}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let alice = format!("token {}", t["token"].as_str().expect("token"));
    assert_eq!(
        c.get(hub.api("/user"))
            .header("Authorization", &alice)
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    assert_eq!(
        c.get(hub.api("/users/bob"))
            .header("Authorization", &alice)
            .send()
            .await
            .expect("get")
            .status(),
        404
    );
    assert_eq!(
        c.get(hub.api("/users"))
            .header("Authorization", &alice)
            .send()
            .await
            .expect("get")
            .status(),
        403
    );
    let page: serde_json::Value = c
        .get(hub.api("/users?limit=1"))
        .header("Authorization", &auth)
        .header("Accept", "application/jupyterhub-pagination+json")
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(page["_pagination"]["total"], 2);
    assert!(page["_pagination"]["next"]["url"]
        .as_str()
        .is_some_and(|u| u.starts_with("http://127.0.0.1:")));
}

/// Issue 22, point 6: an admin's maintenance notice is stored, so that a hub started again
/// (a fresh `Maintenance` read from the database) still refuses starts with it; cleared, it
/// is gone for the next hub too.
#[tokio::test]
async fn maintenance_notices_outlive_the_hub() {
    use nbhub::maintenance::Maintenance;
    each_backend(|db| async move {
        let until = time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(3600);
        let first = Maintenance::default();
        first
            .set(&db, "juwels", "New file system".into(), Some(until), "ada")
            .await
            .expect("set");
        first
            .set(&db, "jureca", "Cooling".into(), None, "ada")
            .await
            .expect("set");
        // Set again: replaced, not added.
        first
            .set(&db, "jureca", "Cooling, day 2".into(), None, "bob")
            .await
            .expect("set");
        let again = Maintenance::default();
        again.load(&db).await.expect("load");
        let juwels = again.notice("juwels").expect("juwels notice");
        assert_eq!(juwels.message, "New file system");
        assert_eq!(
            juwels.until.map(|u| u.unix_timestamp()),
            Some(until.unix_timestamp())
        );
        assert_eq!(juwels.set_by.as_deref(), Some("ada"));
        let jureca = again.notice("jureca").expect("jureca notice");
        assert_eq!(
            (
                jureca.message.as_str(),
                jureca.until,
                jureca.set_by.as_deref()
            ),
            ("Cooling, day 2", None, Some("bob"))
        );
        assert_eq!(again.notice("jusuf"), None);
        again.clear(&db, "juwels").await.expect("clear");
        let third = Maintenance::default();
        third.load(&db).await.expect("load");
        assert_eq!(third.notice("juwels"), None);
        assert!(third.notice("jureca").is_some());
        third.clear(&db, "jureca").await.expect("clear");
    })
    .await;
}

/// Each server's recent sessions: one open at a time (a new one closes a forgotten one as
/// `lost`), the job and the end recorded on the open one, only the newest kept, every
/// server's last ended one in one query, and a deleted server takes its history along.
#[tokio::test]
async fn server_sessions_keep_the_last_few_and_how_each_ended() {
    use db::server_sessions as sessions;
    each_backend(|db| async move {
        let alice = users::create_many(&db, &["alice".into()], false)
            .await
            .expect("user")
            .remove(0);
        let default = servers::ensure(&db, alice.id, "").await.expect("server");
        let named = servers::ensure(&db, alice.id, "gpu").await.expect("server");
        let options = json!({"partition": "devel", "runtime": "00:01:00", "modules": ["a", "b"]});
        sessions::begin(&db, default.id, &options, "", 10, 3)
            .await
            .expect("begin");
        sessions::set_job(&db, default.id, "41", "alpha")
            .await
            .expect("job");
        let ended = sessions::end(
            &db,
            default.id,
            20,
            "time_limit",
            "The job reached its time limit",
        )
        .await
        .expect("end")
        .expect("an open session");
        assert_eq!(
            (
                ended.job_id.as_deref(),
                ended.system.as_str(),
                ended.ended,
                ended.reason.as_deref()
            ),
            (Some("41"), "alpha", Some(20), Some("time_limit"))
        );
        assert_eq!(ended.user_options, options, "the options as they were");
        assert!(
            sessions::end(&db, default.id, 21, "stopped", "")
                .await
                .expect("end")
                .is_none(),
            "nothing open: nothing ended"
        );
        // A start whose end was never recorded is closed as lost by the next one.
        sessions::begin(&db, default.id, &options, "", 30, 3)
            .await
            .expect("begin");
        sessions::begin(&db, default.id, &options, "", 40, 3)
            .await
            .expect("begin");
        sessions::begin(&db, default.id, &options, "", 50, 3)
            .await
            .expect("begin");
        let listed = sessions::list_for_servers(&db, &[default.id, named.id])
            .await
            .expect("list");
        let what: Vec<(i64, Option<&str>)> = listed
            .iter()
            .map(|s| (s.started, s.reason.as_deref()))
            .collect();
        assert_eq!(
            what,
            [(50, None), (40, Some("lost")), (30, Some("lost"))],
            "the newest three, newest first"
        );
        sessions::begin(&db, named.id, &json!({}), "", 60, 3)
            .await
            .expect("begin");
        sessions::end(&db, named.id, 70, "stopped", "stopped through the hub")
            .await
            .expect("end");
        let mut last: Vec<(i64, i64)> = sessions::last_ended_all(&db)
            .await
            .expect("last")
            .iter()
            .map(|s| (s.server_id, s.started))
            .collect();
        last.sort();
        assert_eq!(last, [(default.id, 40), (named.id, 60)]);
        servers::delete(&db, named.id).await.expect("delete");
        assert!(sessions::list_for_servers(&db, &[named.id])
            .await
            .expect("list")
            .is_empty());
    })
    .await;
}

/// Usage records (`usage_sessions`, migration 0007) on both backends: one open per server (a
/// forgotten one closed by the next start), the job with the history's, ready and end; the
/// range query takes what overlaps it; accounting's figures fill a default account; and
/// neither the history's pruning nor deleting the server or its user takes them away.
/// Announcements (0008): stored with their id, expired ones deleted when the next is set.
#[tokio::test]
async fn usage_records_outlive_the_history_and_the_user() {
    use db::usage;
    each_backend(|db| async move {
        let bob = users::create_many(&db, &["bob".into()], false)
            .await
            .expect("user")
            .remove(0);
        let server = servers::ensure(&db, bob.id, "").await.expect("server");
        let start = |at: i64, account: &'static str| usage::NewSession {
            server_id: server.id,
            user: "bob",
            account,
            partition: "devel",
            nodes: 2,
            gpus: 1,
            started: at,
            ..Default::default()
        };
        usage::begin(&db, &start(10, "")).await.expect("begin");
        db::server_sessions::begin(&db, server.id, &json!({}), "", 10, 1)
            .await
            .expect("history");
        db::server_sessions::set_job(&db, server.id, "41", "alpha")
            .await
            .expect("job");
        usage::set_ready(&db, server.id, 12).await.expect("ready");
        usage::end(&db, server.id, 20).await.expect("end");
        // A second start that is never ended, then a third: the second is closed at 40.
        usage::begin(&db, &start(30, "p2")).await.expect("begin");
        usage::begin(&db, &start(40, "p3")).await.expect("begin");
        db::server_sessions::begin(&db, server.id, &json!({}), "", 40, 1)
            .await
            .expect("history, keeping one");
        let all = usage::overlapping(&db, 0, 100).await.expect("all");
        let what: Vec<_> = all
            .iter()
            .map(|r| {
                (
                    r.started,
                    r.ready,
                    r.ended,
                    r.job_id.as_deref(),
                    r.system.as_str(),
                )
            })
            .collect();
        assert_eq!(
            what,
            [
                (10, Some(12), Some(20), Some("41"), "alpha"),
                (30, None, Some(40), None, ""),
                (40, None, None, None, ""),
            ]
        );
        assert_eq!(
            (
                all[0].user.as_str(),
                all[0].partition.as_str(),
                all[0].nodes,
                all[0].gpus
            ),
            ("bob", "devel", 2, 1)
        );
        let between: Vec<i64> = usage::overlapping(&db, 20, 35)
            .await
            .expect("range")
            .iter()
            .map(|r| r.started)
            .collect();
        assert_eq!(
            between,
            [30],
            "ended at 20 is before [20, 35); 40 starts after it"
        );
        let waiting = usage::unaccounted(&db, 0, 10).await.expect("unaccounted");
        assert_eq!(waiting.len(), 1, "only the ended session with a job");
        usage::set_accounting(&db, waiting[0].id, 8, 3600, 2, "proj-a", 99)
            .await
            .expect("accounting");
        let first = &usage::overlapping(&db, 0, 100).await.expect("all")[0];
        assert_eq!(
            (
                first.cpus,
                first.elapsed,
                first.job_gpus,
                first.accounted,
                first.account.as_str()
            ),
            (Some(8), Some(3600), Some(2), Some(99), "proj-a"),
            "the job's account where the start named none"
        );
        assert!(usage::unaccounted(&db, 0, 10)
            .await
            .expect("none")
            .is_empty());
        users::delete(&db, bob.id).await.expect("delete bob");
        assert_eq!(
            usage::overlapping(&db, 0, 100).await.expect("kept").len(),
            3,
            "a deleted user's usage stays"
        );

        use db::announcements::{self, AnnouncementRow};
        let row = |message: &str, ends: Option<i64>| AnnouncementRow {
            id: 0,
            message: message.into(),
            level: "warning".into(),
            system: String::new(),
            ends,
            set_by: "root".into(),
            created: 5,
        };
        let old = announcements::insert(&db, &row("old", Some(50)), 10)
            .await
            .expect("insert");
        let new = announcements::insert(&db, &row("new", None), 60)
            .await
            .expect("insert");
        assert!(new.id > old.id);
        let left: Vec<String> = announcements::all(&db)
            .await
            .expect("all")
            .into_iter()
            .map(|a| a.message)
            .collect();
        assert_eq!(
            left,
            ["new"],
            "the one that ended at 50 went when the next was set"
        );
        assert!(announcements::delete(&db, new.id).await.expect("delete"));
        assert!(!announcements::delete(&db, new.id).await.expect("again"));
    })
    .await;
}
