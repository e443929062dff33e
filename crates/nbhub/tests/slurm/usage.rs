//! Usage (issue 25, point 4 and acceptance 3) on two real Slurm systems: `dev`, the shared dev
//! cluster (no accounting), and `acct`, a cluster of the test's own with slurmdbd
//! (`nbhub_testkit::AccountingCluster`, as the spawner's accounting test uses). Three users'
//! sessions — two charged to accounts on `acct`, one on `dev` — give the hours per user,
//! account and system in the REST API and on the admin page; the CSV adds up to the same; and
//! the CPU hours of the `acct` jobs are what `sacct` says.

use super::*;

use common::pagekit::signed_in;
use nbhub_testkit::AccountingCluster;

/// A hub admin for the page (no Unix account needed).
const USAGE_ADMIN: &str = "usadmin";

/// The hub with the systems `dev` and `acct`; its admin service may read usage.
fn usage_hub(p: &Parts, acct_conf: &str) -> HubProc {
    let system = |name: &str, conf: &str| {
        format!(
            "[[systems]]\nname = \"{name}\"\ntitle = \"{name} cluster\"\nslurm_conf = \"{conf}\"\n\
             submit_as = \"setuid\"\npoll_interval = 1\nbind_ip = \"127.0.0.1\"\n"
        )
    };
    HubProc::new(
        p.venv.clone(),
        &p.proxy,
        Options {
            systems: Some([system("dev", &p.slurm_conf), system("acct", acct_conf)].concat()),
            extra_toml: "named_server_limit_per_user = 0".into(),
            services: "[[roles]]\nname = \"usage\"\nscopes = [\"read:usage\"]\nservices = [\"e2e-admin\"]\n"
                .into(),
            authenticator: format!("admin_users = [\"{USAGE_ADMIN}\"]"),
            ..Default::default()
        },
    )
}

/// `GET /hub/api/usage?QUERY` with the admin service's token, as JSON.
async fn usage(hub: &HubProc, query: &str) -> Value {
    let (s, body) = admin(hub, Method::GET, &format!("/usage?{query}"), None).await;
    assert_eq!(s, 200, "{body}");
    serde_json::from_str(&body).expect("json")
}

/// The line of `key` in a report per `by`.
fn line<'a>(report: &'a Value, by: &str, key: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r[by] == key)
        .unwrap_or_else(|| panic!("no {by} {key:?} in {report}"))
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// What `sacct` itself says of a job: its CPU hours (AllocCPUS × ElapsedRaw) and its run
/// time in hours.
fn sacct_hours(conf: &str, job: &str) -> (f64, f64) {
    let (ok, out) = slurm(
        conf,
        "sacct",
        &["-j", job, "-X", "-n", "-P", "--format=AllocCPUS,ElapsedRaw"],
    );
    assert!(ok, "sacct: {out}");
    let fields: Vec<f64> = out
        .trim()
        .split('|')
        .map(|f| f.parse().unwrap_or_else(|_| panic!("sacct: {out}")))
        .collect();
    (fields[0] * fields[1] / 3600.0, fields[1] / 3600.0)
}

/// The same figures, as the report rounds them (4 decimals).
fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() < 2e-4, "{what}: {a} and {b}");
}

/// Acceptance 3: three users' sessions on two systems → hours per user, account and system
/// in the API and on the admin page; the CSV adds up to the report's total; with accounting,
/// the CPU hours are sacct's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_per_user_account_and_system_and_cpu_hours_from_sacct() {
    let Some(p) = parts() else { return };
    if !AccountingCluster::installed() {
        return;
    }
    let _shared = CLUSTER.read().await;
    let cluster = AccountingCluster::start();
    cluster.sacctmgr(&["add", "account", "proj-a,proj-b", "cluster=nbhubdev"]);
    let mut hub = usage_hub(&p, &cluster.conf);
    hub.start().await;
    let began = std::time::Instant::now();
    let ua = SlurmUser::new(&p, &hub, "ua").await;
    let ub = SlurmUser::new(&p, &hub, "ub").await;
    let uc = SlurmUser::new(&p, &hub, "uc").await;
    let _cancel_on_acct = [&ua, &ub].map(|u| CancelJobs::of_user(&cluster.conf, &u.name));
    for (user, account) in [(&ua, "proj-a"), (&ub, "proj-b")] {
        let account = format!("account={account}");
        cluster.sacctmgr(&["add", "user", &user.name, &account, "cluster=nbhubdev"]);
    }

    // Three sessions: two on acct, each charged to its account, one on dev.
    let starts = [
        (
            &ua,
            "acct",
            json!({"system": "acct", "partition": "devel", "runtime": "00:10", "account": "proj-a"}),
        ),
        (
            &ub,
            "acct",
            json!({"system": "acct", "partition": "devel", "runtime": "00:10", "account": "proj-b"}),
        ),
        (
            &uc,
            "dev",
            json!({"system": "dev", "partition": "devel", "runtime": "00:10"}),
        ),
    ];
    for (user, _, options) in &starts {
        let (s, body) = start(&hub, &user.name, "", options.clone()).await;
        assert!(s == 201 || s == 202, "start {}: {s} {body}", user.name);
    }
    let mut jobs = Vec::new();
    for (user, system, _) in &starts {
        let model = wait_ready(&hub, &user.name, "", 180).await;
        assert_eq!(model["slurm"]["system"], *system, "{model}");
        let job = model["slurm"]["job_id"]
            .to_string()
            .trim_matches('"')
            .to_owned();
        jobs.push(job);
    }
    // Running sessions count already, up to now.
    let running = usage(&hub, "by=user").await;
    for (user, _, _) in &starts {
        assert_eq!(
            line(&running, "user", &user.name)["sessions"],
            1,
            "{running}"
        );
    }
    assert_eq!(running["total"]["accounted_sessions"], 0, "{running}");

    for (user, _, _) in &starts {
        let path = format!("/users/{}/server", user.name);
        let (s, body) = admin(&hub, Method::DELETE, &path, None).await;
        assert!(s == 204 || s == 202, "stop {}: {s} {body}", user.name);
    }
    for (user, _, _) in &starts {
        eventually(60, "the server stopped", || async {
            server_model(&hub, &user.name, "")
                .await
                .is_none()
                .then_some(())
        })
        .await;
    }
    // The acct jobs' figures come from sacct once Slurm recorded their end.
    let by_user = eventually(120, "sacct's figures for both jobs on acct", || async {
        let report = usage(&hub, "by=user").await;
        (report["total"]["accounted_sessions"] == 2).then_some(report)
    })
    .await;
    let most = began.elapsed().as_secs_f64() / 3600.0;
    for (i, (user, system, _)) in starts.iter().enumerate() {
        let l = line(&by_user, "user", &user.name);
        let hours = num(&l["hours"]);
        assert!(hours > 0.0 && hours < most, "{}: {l}", user.name);
        assert_eq!(l["sessions"], 1, "{l}");
        if *system == "acct" {
            let (cpu_hours, run_hours) = sacct_hours(&cluster.conf, &jobs[i]);
            close(
                num(&l["cpu_hours"]),
                cpu_hours,
                "CPU hours: the report's and sacct's",
            );
            assert!(cpu_hours > 0.0, "{}: sacct {cpu_hours}", user.name);
            // The server ran inside its job: within the start-up and the stop of it.
            assert!(
                (hours - run_hours).abs() < 60.0 / 3600.0,
                "{}: server {hours} h, job {run_hours} h",
                user.name
            );
            assert_eq!(l["accounted_sessions"], 1, "{l}");
        } else {
            assert_eq!(
                (num(&l["cpu_hours"]), &l["accounted_sessions"]),
                (0.0, &json!(0)),
                "no accounting on dev: {l}"
            );
        }
    }

    // Per account and per system: the same hours, grouped.
    let by_account = usage(&hub, "by=account").await;
    for (user, account) in [(&ua, "proj-a"), (&ub, "proj-b"), (&uc, "")] {
        let hours = &line(&by_user, "user", &user.name)["hours"];
        assert_eq!(
            &line(&by_account, "account", account)["hours"],
            hours,
            "{by_account}"
        );
    }
    let by_system = usage(&hub, "by=system").await;
    let hours_of = |u: &SlurmUser| num(&line(&by_user, "user", &u.name)["hours"]);
    close(
        num(&line(&by_system, "system", "acct")["hours"]),
        hours_of(&ua) + hours_of(&ub),
        "acct",
    );
    close(
        num(&line(&by_system, "system", "dev")["hours"]),
        hours_of(&uc),
        "dev",
    );
    close(
        num(&by_system["total"]["hours"]),
        num(&by_user["total"]["hours"]),
        "the same total",
    );

    // The CSV: a line per account, adding up to the report's total.
    let resp = common::get_as(
        &common::client(),
        hub.public_url("/hub/api/usage?by=account&format=csv"),
        ADMIN,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    assert_eq!(header("content-type"), "text/csv; charset=utf-8");
    assert!(
        header("content-disposition").starts_with("attachment; filename=\"nbhub-usage-by-account-")
    );
    let csv = resp.text().await.expect("csv");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("account,sessions,hours,node_hours,cpu_hours,gpu_hours,accounted_sessions")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 3, "{csv}");
    let column = |i: usize| {
        rows.iter()
            .map(|r| r[i].parse::<f64>().expect("number"))
            .sum::<f64>()
    };
    close(
        column(1),
        num(&by_account["total"]["sessions"]),
        "CSV sessions",
    );
    close(column(2), num(&by_account["total"]["hours"]), "CSV hours");
    close(
        column(4),
        num(&by_account["total"]["cpu_hours"]),
        "CSV CPU hours",
    );
    for r in &rows {
        close(
            r[2].parse().expect("hours"),
            num(&line(&by_account, "account", r[0])["hours"]),
            r[0],
        );
    }

    // The admin page: the same lines, and the same CSV.
    let b = signed_in(&hub, USAGE_ADMIN).await;
    let html = fetch(&b, hub.public_url("/hub/admin/usage?by=account"))
        .await
        .text()
        .await
        .expect("html");
    for account in ["proj-a", "proj-b"] {
        let at = html
            .find(&format!("data-key=\"{account}\""))
            .unwrap_or_else(|| panic!("{account} on the page: {html}"));
        let cell = "class=\"text-end hours\">";
        let from = at + html[at..].find(cell).expect("hours cell") + cell.len();
        let shown: f64 = html[from..]
            .split('<')
            .next()
            .unwrap_or("")
            .parse()
            .expect("hours");
        close(
            shown,
            num(&line(&by_account, "account", account)["hours"]),
            account,
        );
    }
    assert!(html.contains("(default account)"), "dev's session: {html}");
    let page_csv = fetch(&b, hub.public_url("/hub/admin/usage?by=account&format=csv"))
        .await
        .text()
        .await
        .expect("csv");
    assert_eq!(page_csv, csv, "the page's download is the API's");

    // Bad dates and other callers.
    let (s, body) = admin(&hub, Method::GET, "/usage?from=2026-02-30", None).await;
    assert_eq!(s, 400, "{body}");
    assert!(
        body.contains("from: \\\"2026-02-30\\\" is not a date"),
        "{body}"
    );
    let (s, body) = admin(
        &hub,
        Method::GET,
        "/usage?from=2026-12-05&to=2026-12-01",
        None,
    )
    .await;
    assert!(s == 400 && body.contains("must be before to"), "{s} {body}");
    let page = fetch(&b, hub.public_url("/hub/admin/usage?to=soon")).await;
    assert_eq!(page.status(), 400);
    let token = user_token(&hub, &ua.name).await;
    assert_eq!(status_of(&hub, "/hub/api/usage", &token).await, 403);
    let user_page = signed_in(&hub, &ua.name).await;
    let page = fetch(&user_page, hub.public_url("/hub/admin/usage")).await;
    assert_eq!(page.status(), 403);
}
