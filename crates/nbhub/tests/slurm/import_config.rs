//! `nbhub import-config` on the Slurm configs (issue 25, acceptance 1): hubs started from what
//! the real binary wrote for batchspawner + PAM, wrapspawner's Slurm profiles and
//! jupyterhub_moss offer the partitions and limits the originals did on the dev cluster's
//! form, sign users in as the originals did, and a profile's job runs where and as long as
//! the profile said. What is left out and the exit statuses are checked in
//! tests/hub/import_config.rs; here only the hubs.
//!
//! The configs are JupyterHub's, not this machine's: the test overrides only what must differ
//! here, as `NBHUB_*` variables (the cluster's slurm.conf, servers on loopback, setuid
//! submission, the test venv's server), never what the test checks.

use super::*;

/// `nbhub import-config` of a config of tests/data/jupyterhub_configs: the TOML written.
fn imported(name: &str) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/jupyterhub_configs")
        .join(name);
    let out = Command::new(env!("CARGO_BIN_EXE_nbhub"))
        .arg("import-config")
        .arg(&file)
        .output()
        .expect("run nbhub import-config");
    assert!(
        matches!(out.status.code(), Some(0 | 2)),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The overrides every hub here needs on this machine.
fn machine(p: &Parts) -> Vec<(&'static str, String)> {
    let singleuser = p
        .venv
        .join("bin/jupyterhub-singleuser")
        .display()
        .to_string();
    vec![
        ("NBHUB_SLURM__SLURM_CONF", p.slurm_conf.clone()),
        ("NBHUB_SLURM__BIND_IP", "127.0.0.1".into()),
        ("NBHUB_SLURM__SUBMIT_AS", "[\"setuid\"]".into()),
        ("NBHUB_SLURM__POLL_INTERVAL", "1".into()),
        ("NBHUB_SPAWNER__CMD", format!("[{singleuser:?}]")),
        ("NBHUB_SPAWNER__POLL_INTERVAL", "1".into()),
    ]
}

/// A select of the spawn form: `(value, label, data-limits)` per option.
fn select_options(html: &str, field: &str) -> Vec<(String, String, String)> {
    let Some(start) = html.find(&format!("id=\"opt-{field}\"")) else {
        return Vec::new();
    };
    let select = &html[start..];
    let select = &select[..select.find("</select>").expect("the select ends")];
    select
        .split("<option value=\"")
        .skip(1)
        .map(|o| {
            let value = o.split('"').next().unwrap_or_default().to_owned();
            let limits = o
                .split_once("data-limits='")
                .map(|(_, r)| r.split('\'').next().unwrap_or_default().to_owned())
                .unwrap_or_default();
            let label = o
                .split_once('>')
                .map(|(_, r)| r.split("</option>").next().unwrap_or_default())
                .unwrap_or_default()
                .replace("&#x2f;", "/");
            (value, label, limits)
        })
        .collect()
}

/// The spawn form of `user` (signed in in `b`).
async fn spawn_form(hub: &HubProc, b: &reqwest::Client, user: &str) -> String {
    fetch(b, hub.public_url(&format!("/hub/spawn/{user}")))
        .await
        .text()
        .await
        .expect("html")
}

/// Signs `user` in with `password` through the login form; the status of the answer.
async fn sign_in(hub: &HubProc, b: &reqwest::Client, user: &str, password: &str) -> u16 {
    let login = hub.public_url("/hub/login");
    let xsrf = common::pagekit::xsrf_at(b, &login).await;
    common::pagekit::post_login(hub, b, user, password, Some(&xsrf))
        .await
        .status()
        .as_u16()
}

/// Sets a Unix account's password (for PAM).
fn set_password(user: &str, password: &str) {
    use std::io::Write;
    let mut chpasswd = Command::new("chpasswd")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("chpasswd");
    writeln!(chpasswd.stdin.as_mut().expect("stdin"), "{user}:{password}").expect("write");
    assert!(chpasswd.wait().expect("chpasswd").success());
}

/// batchspawner_pam.py: PAM signs in the allowed users only, under the base URL of its
/// bind_url; the form offers the one partition of req_partition, bounded by req_runtime, and
/// the prologue's modules as the environment.
#[tokio::test]
async fn batchspawner_pam_signs_in_allowed_users_and_offers_its_partition() {
    let Some(p) = parts() else { return };
    let _shared = CLUSTER.read().await;
    let homes = nbhub_testkit::temp_dir_world_readable();
    let allowed = TempAccount::create("ipa", &homes.path().join("ipa"));
    let other = TempAccount::create("ipb", &homes.path().join("ipb"));
    set_password(&allowed.name, "pam-pass-123");
    set_password(&other.name, "pam-pass-456");
    let toml = imported("batchspawner_pam.py");
    assert!(
        toml.contains("allowed_users = [\"alice\", \"bob\"]"),
        "{toml}"
    );
    let mut env = machine(&p);
    // alice and bob are the original site's accounts; this machine's allowed one joins them.
    env.push((
        "NBHUB_AUTHENTICATOR__ALLOWED_USERS",
        format!("[\"alice\", \"bob\", {:?}]", allowed.name),
    ));
    let hub = HubProc::from_toml(p.venv.clone(), &p.proxy, &toml, &env).await;
    assert!(
        hub.public_url("/").ends_with("/jupyter/"),
        "base_url from bind_url"
    );
    let refused = common::pagekit::browser();
    assert_eq!(
        sign_in(&hub, &refused, &other.name, "pam-pass-456").await,
        403,
        "a Unix account not in allowed_users"
    );
    let b = common::pagekit::browser();
    assert_eq!(sign_in(&hub, &b, &allowed.name, "pam-pass-123").await, 302);
    let form = spawn_form(&hub, &b, &allowed.name).await;
    let partitions = select_options(&form, "partition");
    let names: Vec<&str> = partitions.iter().map(|(v, _, _)| v.as_str()).collect();
    assert_eq!(names, ["devel"], "{form}");
    assert!(
        form.contains("00:30:00") || form.contains("30 min"),
        "the 30 minutes of req_runtime on the form:\n{form}"
    );
    let envs = select_options(&form, "environment");
    assert_eq!(envs.len(), 1, "{form}");
    assert_eq!(envs[0].0, "default");
    assert!(envs[0].1.contains("Python/3.12"), "{envs:?}");
    // A longer run time than the partition's max is refused before Slurm is asked.
    let (s, body) = admin(
        &hub,
        Method::POST,
        &format!("/users/{}/server", allowed.name),
        Some(json!({"partition": "devel", "runtime": "00:45", "environment": "default"})),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("runtime"), "{body}");
}

/// profiles_slurm.py: each Slurm profile is a partition on the form with the profile's label
/// and run time; a start on the "Quick test" profile's partition runs there, with the
/// profiles' common CPUs, and asks no longer than the user chose.
#[tokio::test]
async fn profiles_are_partitions_with_their_labels_and_run_times() {
    let Some(p) = parts() else { return };
    let _shared = CLUSTER.read().await;
    let toml = imported("profiles_slurm.py");
    let hub = HubProc::from_toml(p.venv.clone(), &p.proxy, &toml, &machine(&p)).await;
    let user = SlurmUser::new(&p, &hub, "ipp").await;
    let b = common::pagekit::browser();
    assert_eq!(sign_in(&hub, &b, &user.name, "profiles-pw").await, 302);
    let form = spawn_form(&hub, &b, &user.name).await;
    let partitions = select_options(&form, "partition");
    let shown: Vec<(&str, &str)> = partitions
        .iter()
        .map(|(v, l, _)| (v.as_str(), l.as_str()))
        .collect();
    assert_eq!(
        shown,
        [
            ("devel", "Quick test (30 min)"),
            ("batch", "Batch node, up to 2 hours"),
            ("gpu", "GPU node"),
        ],
        "{form}"
    );
    let (s, body) = admin(
        &hub,
        Method::POST,
        &format!("/users/{}/server", user.name),
        Some(json!({"partition": "batch", "runtime": "2:30:00"})),
    )
    .await;
    assert_eq!(s, 400, "beyond the profile's 2 hours: {body}");
    let (s, body) = admin(
        &hub,
        Method::POST,
        &format!("/users/{}/server", user.name),
        Some(json!({"partition": "devel", "runtime": "00:10"})),
    )
    .await;
    assert!(s == 201 || s == 202, "start: {s} {body}");
    wait_ready(&hub, &user.name, "", 120).await;
    let jobs = jobs_of(&p.slurm_conf, &user.name);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let fields: Vec<&str> = jobs[0].split('|').collect();
    assert_eq!((fields[1], fields[3]), ("devel", "10:00"), "{jobs:?}");
    let (_, cpus) = slurm(
        &p.slurm_conf,
        "squeue",
        &["-h", "-u", &user.name, "-o", "%c"],
    );
    assert_eq!(cpus.trim(), "1", "req_nprocs of every profile");
}

/// moss.py: MOSlurmSpawner's partitions with their descriptions and run-time limits, the
/// largest max_nprocs as the CPUs field's bound, the Jupyter environments as environments.
#[tokio::test]
async fn moss_partitions_limits_and_environments_are_on_the_form() {
    let Some(p) = parts() else { return };
    let _shared = CLUSTER.read().await;
    let toml = imported("moss.py");
    let hub = HubProc::from_toml(p.venv.clone(), &p.proxy, &toml, &machine(&p)).await;
    let user = SlurmUser::new(&p, &hub, "ipm").await;
    let b = common::pagekit::browser();
    assert_eq!(sign_in(&hub, &b, &user.name, "moss-pw").await, 302);
    let form = spawn_form(&hub, &b, &user.name).await;
    let partitions = select_options(&form, "partition");
    let names: Vec<&str> = partitions.iter().map(|(v, _, _)| v.as_str()).collect();
    assert_eq!(names, ["devel", "batch"], "{form}");
    assert!(form.contains("Quick tests, x86_64"), "{form}");
    assert!(form.contains("Batch nodes, x86_64"), "{form}");
    let nprocs = form
        .split("id=\"opt-nprocs\"")
        .nth(1)
        .and_then(|r| r.split('>').next())
        .unwrap_or_default();
    assert!(nprocs.contains("max=\"4\""), "the CPUs field: {nprocs}");
    let envs: Vec<(String, String)> = select_options(&form, "environment")
        .into_iter()
        .map(|(v, l, _)| (v, l))
        .collect();
    assert_eq!(
        envs,
        [
            ("default".to_owned(), "Default".to_owned()),
            ("modules".to_owned(), "Lmod stack".to_owned()),
        ]
    );
    // batch's max_runtime of 2 hours bounds the run time.
    let (s, body) = admin(
        &hub,
        Method::POST,
        &format!("/users/{}/server", user.name),
        Some(json!({"partition": "batch", "runtime": "3:00:00", "environment": "default"})),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("runtime"), "{body}");
}
