//! Issue 22, point 6 and acceptance 4, on the real dev cluster: maintenance notices set by an
//! admin (API, admin page, `[hub] maintenance_file`) and Slurm's own maintenance reservations
//! refuse new starts on the system with their reason (503, nothing submitted, nothing
//! written), leave running servers alone, and are shown on the spawn form and the home page.
//! A hub with only `[slurm]` has one system, `default`.

use std::path::Path;

use reqwest::Method;
use serde_json::{json, Value};

use super::common::eventually;
use super::common::hubproc::{admin, server_model, wait_ready, HubProc, PASSWORD};
use super::common::{request, user_token};
use super::{
    chromium, jobs_of, parts, slurm, slurm_hub_with, start, Parts, SlurmUser, CLUSTER,
    GPU_PARTITION,
};

/// A Slurm hub (see `slurm_hub_with`) whose `[hub] maintenance_file` is `file`.
fn hub_with_file(p: &Parts, file: &Path, authenticator: &str) -> HubProc {
    let mut hub = slurm_hub_with(p, "", authenticator);
    hub.env.push((
        "NBHUB_HUB__MAINTENANCE_FILE".into(),
        file.display().to_string(),
    ));
    hub
}

const SHORT: &str = "00:10";

fn devel() -> Value {
    json!({"partition": "devel", "nodes": 1, "runtime": SHORT})
}

/// The `default` system as `GET /hub/api/systems` shows it.
async fn default_system(hub: &HubProc) -> Value {
    let (s, body) = admin(hub, Method::GET, "/systems", None).await;
    assert_eq!(s, 200, "{body}");
    let list: Value = serde_json::from_str(&body).expect("json");
    let default = list
        .as_array()
        .and_then(|l| l.iter().find(|s| s["name"] == "default"))
        .cloned();
    default.unwrap_or_else(|| panic!("no system `default` in {list}"))
}

/// The admin sets a notice (API), a start is refused with it and submits nothing while a
/// running server runs on; bad notices get a 400 naming the field, a user's token a 403;
/// cleared, starts work again. Then the maintenance file: a notice written to it refuses
/// starts within seconds, a broken file keeps the last good notices, the file removed lets
/// starts go ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_refuses_starts_and_leaves_running_servers_alone() {
    let Some(p) = parts() else { return };
    let _shared = CLUSTER.read().await;
    let files = nbhub_testkit::temp_dir_world_readable();
    let file = files.path().join("maintenance.toml");
    let mut hub = hub_with_file(&p, &file, "");
    hub.start().await;
    let alice = SlurmUser::new(&p, &hub, "mt").await;
    let user = alice.name.as_str();

    // A server that runs before the maintenance begins.
    let (s, body) = start(&hub, user, "before", devel()).await;
    assert!(s == 201 || s == 202, "start: {s} {body}");
    wait_ready(&hub, user, "before", 120).await;
    let token = user_token(&hub, user).await;
    let reachable = || async {
        let url = hub.public_url(&format!("/user/{user}/before/api/status"));
        let resp = super::common::get_as(&super::common::client(), url, &token).await;
        resp.status().as_u16()
    };
    assert_eq!(reachable().await, 200);

    assert_eq!(default_system(&hub).await["maintenance"], Value::Null);
    let path = "/systems/default/maintenance";
    for (body, field) in [
        (json!({"message": ""}), "message"),
        (json!({"message": "x".repeat(1001)}), "message"),
        (json!({"until": "2099-01-01T00:00:00Z"}), "message"),
        (json!({"message": 7}), "message"),
        (json!({"message": "m", "until": "tomorrow"}), "until"),
        (
            json!({"message": "m", "until": "2020-01-01T00:00:00Z"}),
            "until",
        ),
        (json!({"message": "m", "until": 5}), "until"),
        (json!({"message": "m", "untill": "x"}), "untill"),
    ] {
        let (s, answer) = admin(&hub, Method::PUT, path, Some(body.clone())).await;
        assert_eq!(s, 400, "{body}: {answer}");
        let v: Value = serde_json::from_str(&answer).expect("json");
        assert_eq!(v["status"], 400, "{answer}");
        assert!(
            v["message"].as_str().unwrap_or("").starts_with(field),
            "{body}: the answer names {field}: {answer}"
        );
    }
    let (s, answer) = request(
        &hub,
        Method::PUT,
        path,
        &token,
        Some(json!({"message": "m"})),
    )
    .await;
    assert_eq!(s, 403, "a user may not set maintenance: {answer}");
    let (s, _) = request(&hub, Method::DELETE, path, &token, None).await;
    assert_eq!(s, 403, "nor clear it");
    let (s, answer) = admin(
        &hub,
        Method::PUT,
        "/systems/nosuch/maintenance",
        Some(json!({"message": "m"})),
    )
    .await;
    assert_eq!(s, 404, "{answer}");
    assert_eq!(
        default_system(&hub).await["maintenance"],
        Value::Null,
        "refused notices change nothing"
    );

    let notice = json!({"message": "Upgrading the file systems", "until": "2099-12-08T12:00:00Z"});
    let (s, answer) = admin(&hub, Method::PUT, path, Some(notice)).await;
    assert_eq!(s, 200, "{answer}");
    let system = default_system(&hub).await;
    assert_eq!(
        system["maintenance"]["message"], "Upgrading the file systems",
        "{system}"
    );
    assert_eq!(system["maintenance"]["until"], "2099-12-08T12:00:00Z");
    // A user's own token reads the systems too.
    let (s, listed) = request(&hub, Method::GET, "/systems", &token, None).await;
    assert_eq!(s, 200);
    assert!(listed.contains("Upgrading the file systems"), "{listed}");

    let (s, answer) = start(&hub, user, "", devel()).await;
    assert_eq!(s, 503, "{answer}");
    let v: Value = serde_json::from_str(&answer).expect("json");
    assert_eq!(v["status"], 503);
    assert_eq!(
        v["message"],
        "The cluster is in maintenance until 2099-12-08 12:00 UTC: Upgrading the file systems",
        "{answer}"
    );
    assert_eq!(jobs_of(&p.slurm_conf, user).len(), 1, "no job submitted");
    assert!(
        server_model(&hub, user, "").await.is_none(),
        "no server row started"
    );

    // The running server is left alone: polled on, reachable, not stopped.
    let running = server_model(&hub, user, "before").await;
    assert_eq!(running.map(|m| m["ready"].clone()), Some(json!(true)));
    assert_eq!(reachable().await, 200);

    // The metrics show it.
    let metric = super::poller_metrics(&p, &hub).await;
    assert_eq!(
        metric(r#"nbhub_system_maintenance{"system": "default"}"#),
        1.0
    );
    assert_eq!(metric(r#"nbhub_system_up{"system": "default"}"#), 1.0);

    // Cleared: the start goes ahead.
    let (s, answer) = admin(&hub, Method::DELETE, path, None).await;
    assert_eq!(s, 204, "{answer}");
    let (s, answer) = start(&hub, user, "", devel()).await;
    assert!(
        s == 201 || s == 202,
        "start after the notice is cleared: {s} {answer}"
    );
    let (s, answer) = admin(&hub, Method::DELETE, &format!("/users/{user}/server"), None).await;
    assert!(s == 202 || s == 204, "{answer}");
    eventually(60, "the default server stopped", || async {
        server_model(&hub, user, "").await.is_none().then_some(())
    })
    .await;

    // The maintenance file: refused within a few seconds of writing it.
    std::fs::write(
        &file,
        "[default]\nmessage = \"Cooling water maintenance\"\n",
    )
    .expect("write file");
    eventually(10, "the file's notice taken up", || async {
        let m = default_system(&hub).await["maintenance"].clone();
        (m["source"] == "file").then_some(())
    })
    .await;
    let (s, refused) = start(&hub, user, "", devel()).await;
    assert_eq!(s, 503, "{refused}");
    assert!(
        refused.contains("The cluster is in maintenance: Cooling water maintenance"),
        "{refused}"
    );
    assert_eq!(jobs_of(&p.slurm_conf, user).len(), 1, "no job submitted");
    // A broken file keeps the last good notices (and the log says why).
    std::fs::write(&file, "[default]\nmessage = \n").expect("write file");
    eventually(10, "the broken file noticed", || async {
        hub.log()
            .contains("maintenance file not taken up")
            .then_some(())
    })
    .await;
    let (s, _) = start(&hub, user, "", devel()).await;
    assert_eq!(s, 503, "the last good notice stays");
    // Removed: allowed again.
    std::fs::remove_file(&file).expect("remove file");
    eventually(10, "the file's notice gone", || async {
        default_system(&hub).await["maintenance"]
            .is_null()
            .then_some(())
    })
    .await;
    let (s, answer) = start(&hub, user, "", devel()).await;
    assert!(s == 201 || s == 202, "{s} {answer}");
    assert_eq!(reachable().await, 200, "the first server ran on throughout");
}

/// Deletes a Slurm reservation when dropped, whatever the test did.
struct Reservation<'a> {
    conf: &'a str,
    name: String,
}

impl<'a> Reservation<'a> {
    /// A maintenance reservation of both GPU nodes (no other test needs them for hours)
    /// from 2 hours from now, for 2 hours: it reaches into a 3-hour run time in the gpu
    /// partition, not into a 1-hour one.
    fn gpu_maintenance(conf: &'a str) -> Self {
        let name = format!("nbhub_test_maint_{}", std::process::id());
        let guard = Self { conf, name };
        let (ok, out) = slurm(
            conf,
            "scontrol",
            &[
                "create",
                "reservation",
                &format!("reservationname={}", guard.name),
                "starttime=now+2hours",
                "duration=120",
                "nodes=node[3-4]",
                "flags=maint",
                "users=root",
            ],
        );
        assert!(ok, "create the reservation: {out}");
        guard
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let name = format!("reservationname={}", self.name);
        let (ok, out) = slurm(self.conf, "scontrol", &["delete", &name]);
        if !ok {
            eprintln!("could not delete reservation {}: {out}", self.name);
        }
    }
}

/// A Slurm reservation with the MAINT flag refuses a start whose run time reaches into it,
/// with its window; a run time that ends before it begins starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slurm_maintenance_reservation_refuses_a_run_time_reaching_into_it() {
    let Some(p) = parts() else { return };
    let _shared = CLUSTER.read().await;
    let _gpu = GPU_PARTITION.lock().await;
    let resv = Reservation::gpu_maintenance(&p.slurm_conf);
    let files = nbhub_testkit::temp_dir_world_readable();
    let mut hub = hub_with_file(&p, &files.path().join("none.toml"), "");
    hub.start().await;
    let alice = SlurmUser::new(&p, &hub, "mr").await;
    let user = alice.name.as_str();

    let long = json!({"partition": "gpu", "nodes": 1, "runtime": "03:00:00"});
    let (s, answer) = start(&hub, user, "", long).await;
    assert_eq!(s, 503, "{answer}");
    let v: Value = serde_json::from_str(&answer).expect("json");
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("The cluster is in maintenance from ")
            && message.contains(" UTC (Slurm reservation ")
            && message.contains(&resv.name)
            && message.contains("choose a shorter run time or start after it"),
        "{answer}"
    );
    assert!(jobs_of(&p.slurm_conf, user).is_empty(), "no job submitted");
    // The same run time elsewhere (batch also has node1-2) is not affected.
    let short = json!({"partition": "gpu", "nodes": 1, "runtime": "01:00:00"});
    let (s, answer) = start(&hub, user, "", short).await;
    assert!(
        s == 201 || s == 202,
        "a run time ending before it: {s} {answer}"
    );
    eventually(30, "the job in squeue", || async {
        jobs_of(&p.slurm_conf, user).into_iter().next()
    })
    .await;
    let (s, answer) = admin(&hub, Method::DELETE, &format!("/users/{user}/server"), None).await;
    assert!(s == 202 || s == 204, "{answer}");
}

/// Acceptance 4 in Chromium: the admin page's systems tab sets a notice (a form with its
/// XSRF token); the spawn form and the home page show it; the form's start is refused with
/// it and the form shown again; the tab clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_sets_a_notice_the_form_and_home_show() {
    let Some(p) = parts() else { return };
    let Some(b) = chromium::Browser::start().await else {
        return;
    };
    let _shared = CLUSTER.read().await;
    let files = nbhub_testkit::temp_dir_world_readable();
    // The admin needs no Unix account: they only use the admin page.
    let mut hub = hub_with_file(
        &p,
        &files.path().join("none.toml"),
        "admin_users = [\"mtadmin\"]",
    );
    hub.start().await;
    let alice = SlurmUser::new(&p, &hub, "mb").await;
    let user = alice.name.as_str();
    let base = hub.public_url("");
    b.sign_in(&base, "mtadmin", PASSWORD).await;
    b.goto(&format!("{base}/hub/admin")).await;
    b.click("#tab-systems").await;
    b.fill(
        ".system-card[data-system='default'] input[name='message']",
        "Network switch swap",
    )
    .await;
    b.fill(
        ".system-card[data-system='default'] input[name='until']",
        "2099-01-02T03:04:00Z",
    )
    .await;
    b.click(".system-card[data-system='default'] .set-maintenance-form button[type='submit']")
        .await;
    b.wait_until(
        "document.querySelector('.system-card .system-notice')?.textContent.includes('Network switch swap')",
        "the notice on the admin page",
    )
    .await;
    let (_, listed) = admin(&hub, Method::GET, "/systems", None).await;
    assert!(listed.contains("Network switch swap"), "{listed}");

    let expected = "The cluster is in maintenance until 2099-01-02 03:04 UTC: Network switch swap";
    b.goto(&format!("{base}/hub/logout")).await;
    b.sign_in(&base, user, PASSWORD).await;
    b.goto(&format!("{base}/hub/home")).await;
    b.wait_until(
        &format!("document.querySelector('.system-status')?.textContent.trim() === '{expected}'"),
        "the notice on the home page",
    )
    .await;
    // And beside the server on that system.
    let note = b.text("section .system-note").await;
    assert_eq!(note.trim(), expected);
    b.goto(&format!("{base}/hub/spawn")).await;
    b.wait_until(
        &format!("document.querySelector('.system-status')?.textContent.trim() === '{expected}'"),
        "the notice on the spawn form",
    )
    .await;
    b.click("#spawn-submit").await;
    b.wait_until(
        &format!("document.querySelector('#spawn-error')?.textContent.trim() === '{expected}'"),
        "the refusal on the form shown again",
    )
    .await;
    b.find("#spawn_form").await;
    assert!(jobs_of(&p.slurm_conf, user).is_empty(), "no job submitted");

    b.goto(&format!("{base}/hub/logout")).await;
    b.sign_in(&base, "mtadmin", PASSWORD).await;
    b.goto(&format!("{base}/hub/admin")).await;
    b.click("#tab-systems").await;
    b.click(".system-card[data-system='default'] .clear-maintenance-form button")
        .await;
    b.wait_until(
        "document.querySelector('.system-card') && !document.querySelector('.system-card .system-notice')",
        "the notice cleared",
    )
    .await;
    b.goto(&format!("{base}/hub/logout")).await;
    b.sign_in(&base, user, PASSWORD).await;
    b.goto(&format!("{base}/hub/home")).await;
    b.find("#default-status").await;
    let shown = b
        .eval(
            "return document.querySelectorAll('.system-status').length",
            json!([]),
        )
        .await;
    assert_eq!(shown, json!(0));
    b.quit().await;
}
