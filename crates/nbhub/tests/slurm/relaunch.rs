//! Relaunch and history, and the start notification (issue 23, points 4 and 6): a server's
//! recent sessions are kept in the database across hub restarts, the home page offers to
//! relaunch one (its options checked again) or edit it, the REST server model says why the
//! last one ended; the pending page's tab title follows the start and the browser notifies
//! when the server is ready.

use super::*;

/// The model of `user`'s server `server`, stopped or not (`include_stopped_servers`).
async fn any_server_model(hub: &HubProc, user: &str, server: &str) -> Value {
    let (s, body) = admin(
        hub,
        Method::GET,
        &format!("/users/{user}?include_stopped_servers"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    v["servers"][server].clone()
}

/// The home page again, in a browser signed in already (the login cookie outlives restarts).
async fn go_home(b: &chromium::Browser, hub: &HubProc) {
    b.goto(&hub.public_url("/hub/home")).await;
    b.find("#default-status").await;
}

/// Adds `toml` to the end of the hub's config file (for its next start).
fn append_config(hub: &HubProc, toml: &str) {
    let mut config = std::fs::read_to_string(&hub.config_path).expect("config");
    config.push_str(toml);
    std::fs::write(&hub.config_path, config).expect("write config");
}

/// Acceptance 6 (and 9 for Relaunch): alice's 1-minute job reaches its time limit; the REST
/// model says so, and after a hub restart still does; the home page says it reached its time
/// limit and one click on Relaunch (in Chromium) is a new job with the same options; Edit
/// shows the form filled in with them; the history lists both sessions after another
/// restart. With the partition no longer offered (a config change and a restart), Relaunch
/// shows the form with the refusal next to the field, the other values kept, and no job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_ended_by_its_time_limit_is_relaunched_from_the_home_page_after_a_hub_restart() {
    let Some(p) = parts() else { return };
    let Some(b) = chromium::Browser::start().await else {
        return;
    };
    let _shared = CLUSTER.read().await;
    let mut hub = slurm_hub(&p, "");
    hub.start().await;
    let alice = SlurmUser::new(&p, &hub, "rl").await;
    let user = alice.name.as_str();
    let (s, body) = start(
        &hub,
        user,
        "",
        json!({"partition": "devel", "nodes": 1, "runtime": "00:01"}),
    )
    .await;
    assert!(s == 201 || s == 202, "start: {s} {body}");
    let first = wait_ready(&hub, user, "", 120).await;
    let first_job = first["slurm"]["job_id"]
        .as_str()
        .expect("job id")
        .to_owned();
    let options = first["user_options"].clone();
    assert_eq!(options["partition"], "devel", "{first}");
    // Slurm checks time limits about every 30 s: a 1-minute job ends 60-90 s after it started.
    eventually(150, "the timed-out job seen stopped", || async {
        server_model(&hub, user, "").await.is_none().then_some(())
    })
    .await;
    let last = any_server_model(&hub, user, "").await["last_session"].clone();
    assert_eq!(last["reason"], "time_limit", "{last}");
    assert_eq!(last["job_id"], first_job.as_str(), "{last}");
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|m| m.contains("time limit")),
        "{last}"
    );
    assert!(last["ended"].is_string(), "{last}");

    // A restart in between forgets nothing.
    hub.kill9_hub();
    hub.start().await;
    let after = any_server_model(&hub, user, "").await["last_session"].clone();
    assert_eq!(
        after, last,
        "the last session's end is kept across a restart"
    );

    open_home(&b, &hub, user).await;
    let said = b.text(".last-session-said").await;
    assert!(
        said.contains("reached its time limit") && said.contains(&first_job),
        "the home page should say the job reached its time limit: {said}"
    );
    b.screenshots("home-relaunch").await;

    // Edit: the form, filled in with that session's options.
    b.click(".last-session .edit-session").await;
    b.find("#opt-partition").await;
    let shown = b
        .eval(
            "return [document.querySelector('#opt-partition').value, document.querySelector('#opt-runtime').value]",
            json!([]),
        )
        .await;
    assert_eq!(shown[0], "devel", "Edit fills in the partition: {shown}");
    assert!(
        shown[1].as_str().is_some_and(|r| r.contains("01")),
        "Edit fills in the run time: {shown}"
    );
    assert!(
        jobs_of(&p.slurm_conf, user).is_empty(),
        "Edit starts nothing"
    );

    // Relaunch: one click, a new job with the same options.
    go_home(&b, &hub).await;
    b.click(".last-session .relaunch-btn").await;
    let job = job_in_squeue(&p.slurm_conf, user).await;
    let fields: Vec<&str> = job.split('|').collect();
    assert_ne!(fields[0], first_job, "a new job: {job}");
    assert_eq!(&fields[1..5], ["devel", "1", "1:00", user], "{job}");
    let second = wait_ready(&hub, user, "", 120).await;
    assert_eq!(second["user_options"], options, "the same options");
    let second_job = second["slurm"]["job_id"].as_str().expect("job").to_owned();
    stop_default_server(&hub, &p.slurm_conf, user).await;

    // Another restart: both sessions listed, newest first.
    hub.kill9_hub();
    hub.start().await;
    go_home(&b, &hub).await;
    let listed = b
        .eval(
            "return [...document.querySelectorAll('.server-history .session-item')].map(li => [li.dataset.reason, li.textContent])",
            json!([]),
        )
        .await;
    let listed = listed.as_array().expect("sessions").clone();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0][0], "stopped", "{listed:?}");
    assert!(listed[0][1].as_str().unwrap_or("").contains(&second_job));
    assert_eq!(listed[1][0], "time_limit", "{listed:?}");
    assert!(listed[1][1].as_str().unwrap_or("").contains(&first_job));
    let reason = any_server_model(&hub, user, "").await["last_session"]["reason"].clone();
    assert_eq!(reason, "stopped");

    // devel is no longer offered: Relaunch of the time-limited session is refused on the
    // form, naming the field, with its other values kept, and submits nothing.
    append_config(&hub, "\n[[slurm.partitions]]\nname = \"batch\"\n");
    hub.kill9_hub();
    hub.start().await;
    go_home(&b, &hub).await;
    b.click("details.server-history summary").await;
    b.click(".session-item[data-reason='time_limit'] .relaunch-btn")
        .await;
    b.wait_until(
        "document.querySelector('#opt-partition') && location.pathname.includes('/hub/relaunch/')",
        "the form again after the refused relaunch",
    )
    .await;
    let page = b.text("main").await;
    assert!(
        page.contains("devel"),
        "the refusal names the value refused: {page}"
    );
    let runtime = b
        .eval(
            "return document.querySelector('#opt-runtime').value",
            json!([]),
        )
        .await;
    assert!(
        runtime.as_str().is_some_and(|r| r.contains("01")),
        "the session's other values are kept: {runtime}"
    );
    b.screenshots("spawn-relaunch-refused").await;
    assert!(
        jobs_of(&p.slurm_conf, user).is_empty(),
        "a refused relaunch submits no job"
    );
    assert!(server_model(&hub, user, "").await.is_none());
    b.quit().await;
}

/// Records what the pending page does with the browser, in the origin's localStorage (it
/// survives the page's redirect to the server): every notification constructed
/// (`__nbhub_notes`) and every title set (`__nbhub_titles`). Headless Chromium shows no
/// notifications itself.
const RECORDER: &str = r#"(() => {
  const log = (key, v) => {
    try {
      const a = JSON.parse(localStorage.getItem(key) || "[]");
      a.push(v);
      localStorage.setItem(key, JSON.stringify(a));
    } catch (e) {}
  };
  const Real = window.Notification;
  if (Real) {
    window.Notification = class extends Real {
      constructor(title, options) {
        log("__nbhub_notes", { title, body: (options || {}).body || "" });
        super(title, options);
      }
    };
  }
  const title = Object.getOwnPropertyDescriptor(Document.prototype, "title");
  Object.defineProperty(Document.prototype, "title", {
    configurable: true,
    get() { return title.get.call(this); },
    set(v) { log("__nbhub_titles", v); title.set.call(this, v); },
  });
})();"#;

/// Acceptance 8: the pending page of a job waiting in the queue says "Queued" in its tab
/// title and offers "Notify me when it starts" while the browser has not been asked; with
/// notifications allowed in Chromium it offers no button,
/// then, once the job runs, "Starting" and "Ready", and constructs the notification "Your
/// server is ready" before it goes on to JupyterLab.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pending_page_notifies_when_the_queued_job_starts() {
    let Some(p) = parts() else { return };
    let Some(b) = chromium::Browser::start().await else {
        return;
    };
    let _shared = CLUSTER.read().await;
    let _gpu = GPU_PARTITION.lock().await;
    let mut hub = slurm_hub(&p, "");
    hub.start().await;
    let acct = SlurmUser::new(&p, &hub, "rn").await;
    let user = acct.name.as_str();
    let base = hub.public_url("");
    // Not asked yet: the page offers the button.
    b.cdp(
        "Browser.setPermission",
        json!({"permission": {"name": "notifications"}, "setting": "prompt", "origin": base}),
    )
    .await;
    b.cdp(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({ "source": RECORDER }),
    )
    .await;
    let blocker = block_gpu_nodes(&p.slurm_conf);
    let _unblock = CancelJobs::job(&p.slurm_conf, &blocker);

    b.sign_in(&base, user, PASSWORD).await;
    b.goto(&format!("{base}/hub/spawn/{user}")).await;
    choose_partition(&b, "gpu").await;
    b.fill("#opt-nodes", "1").await;
    b.fill("#opt-runtime", "00:10").await;
    b.click("#spawn-submit").await;
    b.wait_until(
        "location.pathname.includes('/spawn-pending/') && document.title === 'Queued · nbhub' \
         && !document.querySelector('#notify-btn').classList.contains('d-none')",
        "the tab title saying Queued while the job waits, and the button to be notified",
    )
    .await;
    b.screenshots("spawn_pending-notify-button").await;
    // Allowed (what the button asks for; headless Chromium cannot answer a prompt).
    b.cdp(
        "Browser.grantPermissions",
        json!({"permissions": ["notifications"], "origin": base}),
    )
    .await;
    let pending = b.url().await;
    b.goto(&pending).await;
    b.wait_until(
        "document.title === 'Queued · nbhub'",
        "the tab title saying Queued again",
    )
    .await;
    let permission = b
        .eval(
            "return [Notification.permission, document.querySelector('#notify-btn').classList.contains('d-none')]",
            json!([]),
        )
        .await;
    assert_eq!(
        permission,
        json!(["granted", true]),
        "permission given: no button"
    );
    b.screenshots("spawn_pending-queued-title").await;
    let (ok, out) = slurm(&p.slurm_conf, "scancel", &[&blocker]);
    assert!(ok, "{out}");
    b.wait_until_for(
        &format!(
            "location.pathname.startsWith('/user/{user}/') && document.querySelector('#jp-main-dock-panel')"
        ),
        "JupyterLab after the job started",
        Duration::from_secs(120),
    )
    .await;
    let recorded = b
        .eval(
            "return [JSON.parse(localStorage.getItem('__nbhub_notes') || '[]'), \
                     JSON.parse(localStorage.getItem('__nbhub_titles') || '[]')]",
            json!([]),
        )
        .await;
    let notes = recorded[0].as_array().expect("notes");
    assert_eq!(notes.len(), 1, "one notification: {recorded}");
    assert_eq!(notes[0]["title"], "Your server is ready", "{recorded}");
    let titles: Vec<&str> = recorded[1]
        .as_array()
        .expect("titles")
        .iter()
        .filter_map(Value::as_str)
        .filter(|t| t.ends_with(" · nbhub"))
        .collect();
    let at = |t: &str| titles.iter().position(|x| *x == t);
    let (queued, ready) = (at("Queued · nbhub"), at("Ready · nbhub"));
    assert!(
        queued.is_some() && ready.is_some() && queued < ready,
        "the title goes from Queued to Ready: {titles:?}"
    );
    assert!(
        titles[queued.unwrap_or(0)..].contains(&"Starting · nbhub"),
        "and says Starting once the job runs: {titles:?}"
    );
    b.quit().await;
    stop_default_server(&hub, &p.slurm_conf, user).await;
}
