//! The supervisor holds state only for servers that exist: pages and API calls naming made-up
//! servers answer without allocating anything that outlives the request.

use crate::common;

use common::fetch;

use common::pagekit::signed_in;
use common::sqlite_hub;

#[tokio::test]
async fn made_up_server_names_allocate_no_slots() {
    let hub = sqlite_hub(|c| common::dummy_password(c, "pw")).await;
    let b = signed_in(&hub, "alice").await;

    for i in 0..300 {
        for path in [
            format!("/spawn-pending/alice/made-up-{i}"),
            format!("/spawn/alice/made-up-{i}"),
            format!("/user/alice/made-up-{i}/lab"),
        ] {
            let resp = b.get(hub.hub(&path)).send().await.expect("get");
            assert!(
                resp.status().is_client_error()
                    || resp.status().is_redirection()
                    || resp.status().is_success(),
                "{path}: {}",
                resp.status()
            );
        }
    }
    // The default server was looked at too, and never started: nothing is kept for it either.
    let resp = fetch(&b, hub.hub("/spawn-pending/alice")).await;
    assert!(!resp.status().is_server_error());
    assert_eq!(hub.state.supervisor.slot_count(), 0);
}
