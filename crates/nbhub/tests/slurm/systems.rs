//! Several systems in one hub (`[[systems]]`, issue 22 points 1 and 5): two systems on the
//! same dev cluster, both reached locally, with different partitions — `alpha` offers only
//! `devel` to everyone, `beta` only `batch`, and only to the hub group `beta-users`.

use super::*;

use common::pagekit::signed_in;

/// The group whose members may use `beta`.
const BETA_USERS: &str = "beta-users";
/// A hub admin (for the admin page; no Unix account).
const SYSTEMS_ADMIN: &str = "sysadmin";

/// A hub with the systems `alpha` and `beta` on the dev cluster, polled every second.
fn systems_hub(p: &Parts) -> HubProc {
    let system = |name: &str, title: &str, partition: &str, allow: &str| {
        format!(
            "[[systems]]\nname = \"{name}\"\ntitle = \"{title}\"\ndescription = \"{partition} only\"\n\
             slurm_conf = \"{conf}\"\nsubmit_as = \"setuid\"\npoll_interval = 1\n\
             bind_ip = \"127.0.0.1\"\n[[systems.partitions]]\nname = \"{partition}\"\n{allow}\n",
            conf = p.slurm_conf
        )
    };
    let systems = [
        system("alpha", "Alpha cluster", "devel", ""),
        system(
            "beta",
            "Beta cluster",
            "batch",
            &format!("[[systems.allow]]\ngroups = [\"{BETA_USERS}\"]\npartitions = [\"batch\"]\n"),
        ),
    ]
    .concat();
    HubProc::new(
        p.venv.clone(),
        &p.proxy,
        Options {
            systems: Some(systems),
            extra_toml: "named_server_limit_per_user = 0".into(),
            services: "[[roles]]\nname = \"groups\"\nscopes = [\"admin:groups\", \"groups\"]\nservices = [\"e2e-admin\"]\n".into(),
            authenticator: format!("admin_users = [\"{SYSTEMS_ADMIN}\"]"),
            ..Default::default()
        },
    )
}

/// Puts `user` in the group that may use `beta`.
async fn let_use_beta(hub: &HubProc, user: &str) {
    let (s, body) = admin(hub, Method::POST, &format!("/groups/{BETA_USERS}"), None).await;
    assert!(s == 201 || s == 409, "create group: {s} {body}");
    let (s, body) = admin(
        hub,
        Method::POST,
        &format!("/groups/{BETA_USERS}/users"),
        Some(json!({"users": [user]})),
    )
    .await;
    assert_eq!(s, 200, "add {user} to {BETA_USERS}: {body}");
}

/// The systems the spawn page offers `user` (signed in as them), from its HTML.
async fn offered_systems(hub: &HubProc, user: &str) -> Vec<String> {
    let b = signed_in(hub, user).await;
    let html = fetch(&b, hub.public_url(&format!("/hub/spawn/{user}")))
        .await
        .text()
        .await
        .expect("html");
    let Some(start) = html.find("id=\"opt-system\"") else {
        return Vec::new();
    };
    let select = &html[start..];
    let select = &select[..select.find("</select>").expect("the select ends")];
    select
        .split("<option value=\"")
        .skip(1)
        .filter_map(|o| o.split('"').next())
        .map(str::to_string)
        .collect()
}

/// Issue 22, points 1 and 5 and acceptance 6 (but the host key) through the API: the form
/// offers each user the systems they may use; an unknown system, a system the user may not
/// use and a partition of the other system are each a 400 naming the field, with no job; a
/// start on `beta` is a job in `batch`, its REST model names the system, its JupyterLab runs
/// code through the proxy, the home page shows the system's title; a named server on `alpha`
/// runs beside it in `devel`; DELETE cancels both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_systems_on_one_form_and_the_api_starts_on_the_one_asked_for() {
    let Some(p) = parts() else { return };
    let _shared = CLUSTER.read().await;
    let mut hub = systems_hub(&p);
    hub.start().await;
    let alice = SlurmUser::new(&p, &hub, "ya").await;
    let bob = SlurmUser::new(&p, &hub, "yb").await;
    let (user, other) = (alice.name.as_str(), bob.name.as_str());
    let_use_beta(&hub, user).await;

    assert_eq!(offered_systems(&hub, user).await, ["alpha", "beta"]);
    assert_eq!(
        offered_systems(&hub, other).await,
        ["alpha"],
        "beta is for {BETA_USERS} only"
    );

    for (who, options, field, words) in [
        (
            user,
            json!({"system": "gamma", "partition": "devel", "runtime": "00:10"}),
            "system",
            "unknown system 'gamma'; choose one of alpha, beta",
        ),
        (
            other,
            json!({"system": "beta", "partition": "batch", "runtime": "00:10"}),
            "system",
            "system 'beta' is not available to you; choose one of alpha",
        ),
        (
            user,
            json!({"system": "alpha", "partition": "batch", "runtime": "00:10"}),
            "partition",
            "'batch' is not one of the choices (devel)",
        ),
        (
            user,
            json!({"system": "beta", "partition": "devel", "runtime": "00:10"}),
            "partition",
            "'devel' is not one of the choices (batch)",
        ),
        (
            user,
            json!({"system": 7, "partition": "devel"}),
            "system",
            "must be the name of a system",
        ),
    ] {
        let (s, body) = start(&hub, who, "", options.clone()).await;
        assert_eq!(s, 400, "{options}: {body}");
        assert!(
            body.contains(&format!("{field}: {words}")),
            "{options}: the answer should name {field}: {body}"
        );
        assert!(
            server_model(&hub, who, "").await.is_none(),
            "{options}: nothing written: {body}"
        );
    }
    // The form's own post (no JavaScript: every system's fields are posted): the other
    // system's are ignored, and an error is marked at the field under its form name.
    let b = signed_in(&hub, user).await;
    let url = hub.public_url(&format!("/hub/spawn/{user}"));
    let xsrf = common::pagekit::xsrf_at(&b, &url).await;
    let resp = common::post_form(
        &b,
        &url,
        &[
            ("_xsrf", xsrf.as_str()),
            ("system", "beta"),
            ("alpha.partition", "devel"),
            ("alpha.runtime", "00:10"),
            ("beta.partition", "batch"),
            ("beta.runtime", "99:00:00"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let page = resp.text().await.expect("html");
    assert!(
        page.contains("id=\"opt-beta.runtime-error\">must be at most 08:00:00</div>"),
        "the error at beta's run time: {page}"
    );
    assert_eq!(page.matches("field-error").count(), 1, "one error: {page}");
    for who in [user, other] {
        assert!(
            jobs_of(&p.slurm_conf, who).is_empty(),
            "no job may be submitted for bad input: {:?}",
            jobs_of(&p.slurm_conf, who)
        );
    }

    // The estimate goes to the system asked for.
    let (s, body) = admin(
        &hub,
        Method::POST,
        &format!("/users/{user}/server/estimate"),
        Some(json!({"user_options": {"system": "beta", "partition": "batch", "runtime": "00:10"}})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("\"fits\":true"), "{body}");

    let (s, body) = start(
        &hub,
        user,
        "",
        json!({"system": "beta", "partition": "batch", "runtime": "00:10"}),
    )
    .await;
    assert!(s == 201 || s == 202, "start: {s} {body}");
    let job = job_in_squeue(&p.slurm_conf, user).await;
    let fields: Vec<&str> = job.split('|').collect();
    assert_eq!(&fields[1..5], ["batch", "1", "10:00", user], "{job}");
    let model = wait_ready(&hub, user, "", 120).await;
    assert_eq!(
        model["user_options"],
        json!({"system": "beta", "partition": "batch", "runtime": "00:10:00", "nodes": 1, "gpus": 0}),
        "{model}"
    );
    assert_eq!(model["slurm"]["system"], "beta", "{model}");
    assert_eq!(model["slurm"]["system_title"], "Beta cluster", "{model}");
    assert_eq!(model["slurm"]["partition"], "batch", "{model}");
    assert_eq!(
        model["slurm"]["job_id"].to_string().trim_matches('"'),
        fields[0],
        "{model}"
    );

    // JupyterLab on beta runs code through the proxy.
    let printed = run_in_new_kernel(
        &hub,
        user,
        "import os; print(6*7, os.environ.get('SLURM_JOB_PARTITION'))",
    )
    .await;
    assert_eq!(printed.trim(), "42 batch", "{}", hub.log());

    let b = signed_in(&hub, user).await;
    let home = fetch(&b, hub.public_url("/hub/home"))
        .await
        .text()
        .await
        .expect("html");
    assert!(
        home.contains("<dt>System</dt><dd class=\"server-system\">Beta cluster</dd>"),
        "the home page should show the system's title: {home}"
    );
    let b = signed_in(&hub, SYSTEMS_ADMIN).await;
    let admin_page = fetch(&b, hub.public_url("/hub/admin"))
        .await
        .text()
        .await
        .expect("html");
    assert!(
        admin_page.contains("<th scope=\"col\">System</th>")
            && admin_page.contains("<td class=\"system\">Beta cluster</td>"),
        "the admin page's running servers name the system: {admin_page}"
    );

    // A named server on the other system at the same time: each system its own job.
    let (s, body) = start(
        &hub,
        user,
        "on-alpha",
        json!({"system": "alpha", "partition": "devel", "runtime": "00:10"}),
    )
    .await;
    assert!(s == 201 || s == 202, "start on alpha: {s} {body}");
    let model = wait_ready(&hub, user, "on-alpha", 120).await;
    assert_eq!(model["slurm"]["system"], "alpha", "{model}");
    assert_eq!(model["slurm"]["partition"], "devel", "{model}");
    let mut partitions: Vec<String> = jobs_of(&p.slurm_conf, user)
        .iter()
        .map(|j| j.split('|').nth(1).unwrap_or_default().to_string())
        .collect();
    partitions.sort();
    assert_eq!(partitions, ["batch", "devel"]);
    let (s, body) = admin(
        &hub,
        Method::DELETE,
        &format!("/users/{user}/servers/on-alpha"),
        None,
    )
    .await;
    assert!(s == 204 || s == 202, "stop on alpha: {s} {body}");

    stop_default_server(&hub, &p.slurm_conf, user).await;
}

/// The form in Chromium: the system comes first; each system's own fields show only while it
/// is picked (and only they are posted and estimated with); `beta` with its `batch` becomes a
/// job there, and the form opens again with the system and run time chosen last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_form_in_a_browser_shows_the_picked_system_s_fields_only() {
    let Some(p) = parts() else { return };
    let Some(b) = chromium::Browser::start().await else {
        return;
    };
    let _shared = CLUSTER.read().await;
    let mut hub = systems_hub(&p);
    hub.start().await;
    let carol = SlurmUser::new(&p, &hub, "yc").await;
    let user = carol.name.as_str();
    let_use_beta(&hub, user).await;
    let base = hub.public_url("");

    b.sign_in(&base, user, PASSWORD).await;
    b.goto(&format!("{base}/hub/spawn/{user}")).await;
    b.find("#opt-system").await;
    let shown = || async {
        b.eval(
            "return [...document.querySelectorAll('.option-field')].filter(f => !f.hidden).map(f => f.id.slice('field-'.length))",
            json!([]),
        )
        .await
    };
    assert_eq!(
        shown().await,
        json!(["system", "alpha.partition", "alpha.nodes", "alpha.runtime"]),
        "alpha, the first system, is picked at first"
    );
    let info = b.text("#opt-system-info").await;
    assert!(
        info.contains("devel only"),
        "the system's description: {info}"
    );
    choose(&b, "system", "beta").await;
    assert_eq!(
        shown().await,
        json!([
            "system",
            "beta.partition",
            "beta.nodes",
            "beta.runtime",
            "beta.gpus"
        ]),
        "batch has GPU nodes: beta's GPU field shows with it"
    );
    let partitions = b
        .eval(
            "return [...document.querySelectorAll('[id=\"opt-beta.partition\"] option')].map(o => o.value)",
            json!([]),
        )
        .await;
    assert_eq!(partitions, json!(["batch"]));
    b.fill("[id='opt-beta.runtime']", "00:20").await;
    // The estimate goes with the picked system's fields only.
    b.eval("document.querySelector('#estimate-btn').click()", json!([]))
        .await;
    b.wait_until(
        "/start/i.test(document.querySelector('#estimate-result').textContent) \
         && !/No estimate/.test(document.querySelector('#estimate-result').textContent)",
        "Slurm's estimate for beta on the form",
    )
    .await;
    b.screenshots("spawn-systems").await;
    let job = submit_the_form(&b, &p, user).await;
    let fields: Vec<&str> = job.split('|').collect();
    assert_eq!(&fields[1..5], ["batch", "1", "20:00", user], "{job}");
    let model = server_model(&hub, user, "").await.expect("the server");
    assert_eq!(
        model["user_options"],
        json!({"system": "beta", "partition": "batch", "runtime": "00:20:00", "nodes": 1, "gpus": 0}),
        "{model}"
    );
    stop_default_server(&hub, &p.slurm_conf, user).await;
    // The form opens with what was chosen last.
    b.goto(&format!("{base}/hub/spawn/{user}")).await;
    b.find("#opt-system").await;
    let chosen = b
        .eval(
            "return [document.querySelector('#opt-system').value, document.querySelector('[id=\"opt-beta.runtime\"]').value]",
            json!([]),
        )
        .await;
    assert_eq!(chosen, json!(["beta", "00:20:00"]));
    b.quit().await;
}
