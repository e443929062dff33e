//! `nbhub import-config` as an admin moving from JupyterHub uses it (issue 25, acceptance 1):
//! the real binary on JupyterHub configs written in the style of real deployments
//! (`tests/data/jupyterhub_configs/`), each untranslated line reported with its line number and
//! the exit status saying so, every result passing `nbhub --check`, and hubs started from the
//! results behaving as the originals said: the authenticator and its users, the server's
//! limits and environment, named servers, the culler's role, templates, the OAuth provider.
//! The Slurm configs' hubs (partitions and limits on the form) are in tests/slurm/import_config.rs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::hubproc::{admin, real_parts, wait_ready, HubProc};
use crate::common::pagekit::{browser, post_login, xsrf_at};
use crate::common::{request, wait_until};
use reqwest::Method;
use serde_json::Value;

const NBHUB: &str = env!("CARGO_BIN_EXE_nbhub");

/// A config of the test data.
pub fn config_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/jupyterhub_configs")
        .join(name)
}

/// Runs `nbhub import-config FILE -o OUT`: (exit status, the TOML written, stderr).
pub fn import(name: &str, out_dir: &Path) -> (i32, String, String) {
    let out = out_dir.join(format!("{name}.toml"));
    let run = Command::new(NBHUB)
        .arg("import-config")
        .arg(config_file(name))
        .arg("-o")
        .arg(&out)
        .output()
        .expect("run nbhub import-config");
    let toml = std::fs::read_to_string(&out).unwrap_or_default();
    (
        run.status.code().unwrap_or(-1),
        toml,
        String::from_utf8_lossy(&run.stderr).into_owned(),
    )
}

/// The settings reported as not translated on stderr: `line N: what: why` each.
fn not_translated(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("nbhub import-config: not translated: "))
        .collect()
}

/// Each config: its exit status and the settings left out (the start of each report line).
const EXPECTED: &[(&str, i32, &[&str])] = &[
    (
        "batchspawner_pam.py",
        2,
        &["line 30: c.SlurmSpawner.batch_script: nbhub writes its own job script"],
    ),
    (
        "profiles_slurm.py",
        2,
        &[
            "line 17: c.ProfilesSpawner.profiles: req_options: differs between the profiles",
            "line 19: c.ProfilesSpawner.profiles[3] (\"Local server on the hub\"): a jupyterhub.spawner.LocalProcessSpawner profile",
        ],
    ),
    ("moss.py", 0, &[]),
    (
        "generic_oauth.py",
        2,
        &["line 22: c.GenericOAuthenticator.tls_verify: "],
    ),
    ("services_roles.py", 0, &[]),
    (
        "templates.py",
        2,
        &["line 10: c.JupyterHub.shutdown_on_logout: nbhub does not stop"],
    ),
    (
        "local_limits.py",
        2,
        &["line 22: c.LocalProcessSpawner.term_timeout: "],
    ),
    (
        "python_code.py",
        2,
        &[
            "line 15: c.Spawner.pre_spawn_hook: a Python callable (the function set_scratch (defined on line 7)) cannot be translated (do this with",
            "line 16: c.Spawner.cmd: its value is a call to os.environ.get()",
            "line 17: c.Spawner.options_form: ",
            "line 18: c.Spawner.post_stop_hook: a Python callable (a lambda) cannot be translated",
            "line 19: an `if` block: Python code (lines 19–20)",
            "line 21: a `for` block: Python code (lines 21–22)",
            "line 23: c.Spawner.default_url: its value is an f-string with expressions",
        ],
    ),
];

/// Every config: the exit status, exactly the untranslated lines (on stderr and at the top of
/// the file), and a result `nbhub --check` accepts.
#[test]
fn every_config_is_translated_or_its_lines_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, status, left_out) in EXPECTED {
        let (code, toml, stderr) = import(name, dir.path());
        assert_eq!(code, *status, "{name}: exit status\n{stderr}");
        let reported = not_translated(&stderr);
        assert_eq!(
            reported.len(),
            left_out.len(),
            "{name}: reported {reported:#?}"
        );
        for (got, want) in reported.iter().zip(left_out.iter()) {
            assert!(
                got.starts_with(want),
                "{name}: {got:?} should start with {want:?}"
            );
            // The same line in the file's header comment.
            assert!(
                toml.lines()
                    .any(|l| l.trim_start_matches(['#', ' ']) == *got),
                "{name}: {got:?} is not at the top of the file:\n{toml}"
            );
        }
        if left_out.is_empty() {
            assert!(stderr.contains("every setting was translated"), "{stderr}");
            assert!(!toml.contains("NOT TRANSLATED"), "{toml}");
        } else {
            assert!(
                toml.contains(&format!(
                    "# NOT TRANSLATED: these settings of the original are not in this file ({}):",
                    left_out.len()
                )),
                "{toml}"
            );
        }
        let check = Command::new(NBHUB)
            .arg("--config")
            .arg(dir.path().join(format!("{name}.toml")))
            .arg("--check")
            .output()
            .expect("run nbhub --check");
        assert!(
            check.status.success(),
            "{name}: --check: {}\n{toml}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
}

/// Without `-o` the TOML goes to stdout, the report to stderr; a file Python would refuse is
/// exit status 1 with its line, and nothing on stdout.
#[test]
fn stdout_without_output_and_syntax_errors_with_their_line() {
    let run = Command::new(NBHUB)
        .arg("import-config")
        .arg(config_file("services_roles.py"))
        .output()
        .expect("run");
    assert_eq!(run.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("[[roles]]") && stdout.contains("name = \"jupyterhub-idle-culler-role\""),
        "{stdout}"
    );
    for (name, message) in [
        (
            "syntax_error.py",
            "syntax_error.py, line 4: '{' is never closed",
        ),
        (
            "syntax_error_string.py",
            "syntax_error_string.py, line 2: unterminated string",
        ),
    ] {
        let run = Command::new(NBHUB)
            .arg("import-config")
            .arg(config_file(name))
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(message), "{name}: {stderr}");
        assert!(run.stdout.is_empty(), "{name}: wrote {:?}", run.stdout);
    }
}

/// The imported TOML of `name` (the import's own assertions are in the test above).
fn imported(name: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    import(name, dir.path()).1
}

/// The environment of the process of this hub whose environment has `marker`.
fn process_env(hub: &HubProc, marker: &str) -> Option<BTreeMap<String, String>> {
    let api = format!("127.0.0.1:{}/hub/api", hub.hub_port);
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        e.file_name().to_str()?.parse::<u32>().ok()?;
        let raw = std::fs::read(e.path().join("environ")).ok()?;
        let text = String::from_utf8_lossy(&raw);
        if !text.contains(&api) || !text.split('\0').any(|v| v == marker) {
            return None;
        }
        Some(
            text.split('\0')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    })
}

/// local_limits.py: the server gets MEM_LIMIT and CPU_LIMIT as JupyterHub gives them, the
/// environment (set, then updated), the default URL; a third named server is refused.
#[tokio::test]
async fn local_limits_reach_the_server_and_named_servers_are_limited() {
    let Some((venv, proxy)) = real_parts() else {
        return;
    };
    let toml = imported("local_limits.py");
    let config = nbhub::config::Config::from_toml_str(&toml, "imported").expect("loads");
    let mut args = config.spawner.args.clone();
    if nbhub_testkit::is_root() {
        args.push("--allow-root".into());
    }
    let singleuser = venv.join("bin/jupyterhub-singleuser").display().to_string();
    let hub = HubProc::from_toml(
        venv,
        &proxy,
        &toml,
        &[
            // Servers as the hub's own account (no Unix accounts for this test).
            ("NBHUB_LOCAL__SWITCH_USER", "false".into()),
            ("NBHUB_SPAWNER__CMD", format!("[{singleuser:?}]")),
            ("NBHUB_SPAWNER__ARGS", format!("{args:?}")),
        ],
    )
    .await;
    let user = "implimits";
    let (s, body) = admin(&hub, Method::POST, &format!("/users/{user}"), None).await;
    assert_eq!(s, 201, "{body}");
    let (s, body) = admin(&hub, Method::POST, &format!("/users/{user}/server"), None).await;
    assert!(s == 201 || s == 202, "start: {s} {body}");
    wait_ready(&hub, user, "", 60).await;
    let env = process_env(&hub, &format!("JUPYTERHUB_USER={user}")).expect("the server's process");
    for (k, v) in [
        ("MEM_LIMIT", "2147483648"),
        ("CPU_LIMIT", "1.5"),
        ("OMP_NUM_THREADS", "1"),
        ("SITE", "test"),
        ("EXTRA", "yes"),
        ("JUPYTERHUB_DEFAULT_URL", "/lab"),
    ] {
        assert_eq!(env.get(k).map(String::as_str), Some(v), "{k} in {env:#?}");
    }
    // named_server_limit_per_user = 2.
    for name in ["one", "two"] {
        let (s, body) = admin(
            &hub,
            Method::PUT,
            &format!("/users/{user}/servers/{name}"),
            None,
        )
        .await;
        assert!(s == 201 || s == 200, "named server {name}: {s} {body}");
    }
    let (s, body) = admin(
        &hub,
        Method::PUT,
        &format!("/users/{user}/servers/three"),
        None,
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("maximum of 2 named servers"), "{body}");
}

/// services_roles.py: the idle culler runs as a managed service whose token has exactly its
/// role's scopes; the monitoring service's fixed token reads the metrics, which need one.
#[tokio::test]
async fn the_culler_runs_with_its_role_and_the_monitoring_token_reads_metrics() {
    let Some((venv, proxy)) = real_parts() else {
        return;
    };
    // What the import's note says: sys.executable was written as python3; here that is the
    // venv's, where the culler is installed.
    let python = venv.join("bin/python3").display().to_string();
    let toml = imported("services_roles.py").replace("\"python3\"", &format!("{python:?}"));
    let hub = HubProc::from_toml(venv, &proxy, &toml, &[]).await;
    let marker = "JUPYTERHUB_SERVICE_NAME=jupyterhub-idle-culler-service";
    let culler = || async { process_env(&hub, marker) };
    let env = wait_until(Duration::from_secs(30), culler, || {
        format!("the culler never ran\n{}", hub.log())
    })
    .await;
    let token = env.get("JUPYTERHUB_API_TOKEN").expect("the culler's token");
    let (s, body) = request(&hub, Method::GET, "/user", token, None).await;
    assert_eq!(s, 200, "{body}");
    let model: Value = serde_json::from_str(&body).expect("json");
    let scopes: Vec<&str> = model["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for s in [
        "list:users",
        "read:users:activity",
        "read:servers",
        "delete:servers",
    ] {
        assert!(scopes.contains(&s), "{s} in {scopes:?}");
    }
    assert!(
        !scopes.iter().any(|s| s.starts_with("admin:")),
        "{scopes:?}"
    );
    // The culler lists users with it, as it does every --cull-every.
    let (s, body) = request(&hub, Method::GET, "/users", token, None).await;
    assert_eq!(s, 200, "{body}");
    let metrics = hub.public_url("/hub/metrics");
    let client = reqwest::Client::new();
    let anonymous = client.get(&metrics).send().await.expect("GET");
    assert_eq!(anonymous.status(), 403);
    let monitoring = client
        .get(&metrics)
        .header("Authorization", "token monitoring-token-0123456789abcdef")
        .send()
        .await
        .expect("GET");
    assert_eq!(monitoring.status(), 200);
}

/// templates.py: the site's template folder and variables on the login page; only the
/// allowed user signs in with the shared password.
#[tokio::test]
async fn templates_and_their_variables_and_only_the_allowed_user() {
    let Some((venv, proxy)) = real_parts() else {
        return;
    };
    let templates = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        templates.path().join("login.html"),
        "{% extends \"templates/login.html\" %}{% block login_container %}<p id=\"site\">{{ site }}: {{ announcement_login }}</p>{{ super() }}{% endblock %}",
    )
    .expect("write template");
    let toml = imported("templates.py");
    assert!(
        toml.contains("template_paths = [\"/srv/jupyterhub/templates\"]"),
        "{toml}"
    );
    // /srv/jupyterhub/templates is the site's; the test's folder stands in for it.
    let hub = HubProc::from_toml(
        venv,
        &proxy,
        &toml,
        &[(
            "NBHUB_HUB__TEMPLATE_PATHS",
            format!("[{:?}]", templates.path().display().to_string()),
        )],
    )
    .await;
    let b = browser();
    let login = hub.public_url("/hub/login");
    let page = b
        .get(&login)
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains("<p id=\"site\">HPC Centre: Maintenance on Friday</p>"),
        "{page}"
    );
    let xsrf = xsrf_at(&b, &login).await;
    let carol = post_login(&hub, &b, "carol", "tpl-pw", Some(&xsrf)).await;
    assert_eq!(carol.status(), 302, "carol is allowed");
    let other = browser();
    let xsrf = xsrf_at(&other, &login).await;
    let dave = post_login(&hub, &other, "dave", "tpl-pw", Some(&xsrf)).await;
    assert_eq!(dave.status(), 403, "dave is not in allowed_users");
}

/// generic_oauth.py against a real OpenID Connect provider (the `oidc-provider` of
/// tests/hub/oidc.rs, registered with the config's own client id, secret and callback URL):
/// sign-in goes to the authorize URL with the config's client id, scopes, callback and extra
/// parameter; a member of the allowed group signs in with the provider's groups as hers, one
/// of the admin group is an admin, one of neither is refused. Only the provider's endpoints
/// are the test's (it runs on this machine, not at login.example.org).
#[tokio::test]
async fn generic_oauth_signs_in_by_the_groups_the_config_names() {
    use crate::oidc;
    let Some((_node, oidc_dir)) = oidc::require_node_and_provider() else {
        return;
    };
    let Some((venv, proxy)) = real_parts() else {
        return;
    };
    let toml = imported("generic_oauth.py");
    let port = nbhub_testkit::free_port();
    let provider_url = format!("http://127.0.0.1:{port}");
    // The config's callback URL is the public one of the original site; the browser below
    // brings the provider's answer to this hub instead.
    let site_callback = "https://jupyter.example.org/hub/oauth_callback";
    let scripts = tempfile::tempdir().expect("tempdir");
    let _provider = oidc::start_provider_with(
        scripts.path(),
        &oidc_dir,
        port,
        site_callback.to_owned(),
        site_callback.replace("oauth_callback", "login"),
        &[
            ("CLIENT_ID", "jupyterhub".to_owned()),
            ("CLIENT_SECRET", "s3cr3t-from-keycloak".to_owned()),
        ],
    )
    .await;
    let hub = HubProc::from_toml(
        venv,
        &proxy,
        &toml,
        &[
            (
                "NBHUB_AUTHENTICATOR__AUTHORIZE_URL",
                format!("{provider_url}/auth"),
            ),
            (
                "NBHUB_AUTHENTICATOR__TOKEN_URL",
                format!("{provider_url}/token"),
            ),
            (
                "NBHUB_AUTHENTICATOR__USERDATA_URL",
                format!("{provider_url}/me"),
            ),
            // enable_auth_state needs the key, as in JupyterHub.
            ("JUPYTERHUB_CRYPT_KEY", "0".repeat(64)),
        ],
    )
    .await;
    let b = browser();
    let login = b
        .get(hub.public_url("/hub/login"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("html");
    assert!(login.contains("Sign in with HPC Login"), "{login}");
    let go = b
        .get(hub.public_url("/hub/oauth_login"))
        .send()
        .await
        .expect("GET");
    assert_eq!(go.status(), 302);
    let location = go.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let url = url::Url::parse(&location).expect("a URL");
    assert_eq!(url.path(), "/auth", "{location}");
    let q: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], "jupyterhub");
    assert_eq!(q["scope"], "openid profile groups");
    assert_eq!(q["redirect_uri"], site_callback);
    assert_eq!(q["kc_idp_hint"], "ldap");

    // Through the provider as each of its users; its answer brought to this hub.
    let sign_in = |login: &'static str| {
        let hub = &hub;
        async move {
            let b = oidc::timed_browser();
            let back = oidc::through_provider_from(
                &b,
                hub.public_url("/hub/oauth_login"),
                site_callback,
                login,
            )
            .await;
            let here = back.replace(
                "https://jupyter.example.org",
                hub.public_url("").trim_end_matches('/'),
            );
            oidc::callback(&b, &here).await
        }
    };
    let (status, _, html) = sign_in("alice").await;
    assert_eq!(status, 302, "alice is in hpc: {html}\n{}", hub.log());
    let (status, _, html) = sign_in("carol").await;
    assert_eq!(status, 302, "carol is in hpc and admins: {html}");
    let (status, _, html) = sign_in("dave").await;
    assert_eq!(status, 403, "dave is in no allowed group: {html}");
    let model = |name: &'static str| {
        let hub = &hub;
        async move {
            let (s, body) = admin(hub, Method::GET, &format!("/users/{name}"), None).await;
            assert_eq!(s, 200, "{body}");
            serde_json::from_str::<Value>(&body).expect("json")
        }
    };
    let alice = model("alice").await;
    assert_eq!(alice["admin"], false, "{alice}");
    assert_eq!(
        oidc::group_names(&alice),
        ["hpc", "students"],
        "manage_groups: {alice}"
    );
    assert_eq!(model("carol").await["admin"], true, "admin_groups");
}

/// python_code.py: what could be translated works: NativeAuthenticator's sign-up (on by
/// default there) with its minimum password length, sign-ups waiting for an admin.
#[tokio::test]
async fn python_code_config_keeps_the_native_sign_up_it_could_translate() {
    let Some((venv, proxy)) = real_parts() else {
        return;
    };
    let toml = imported("python_code.py");
    let hub = HubProc::from_toml(venv, &proxy, &toml, &[]).await;
    let b = browser();
    let signup = hub.public_url("/hub/signup");
    let xsrf = xsrf_at(&b, &signup).await;
    let short = b
        .post(&signup)
        .form(&[
            ("username", "newcomer"),
            ("password", "nine-char"),
            ("password_confirmation", "nine-char"),
            ("_xsrf", &xsrf),
        ])
        .send()
        .await
        .expect("POST");
    let page = short.text().await.expect("html");
    assert!(page.contains("at least 10 characters"), "{page}");
    let ok = b
        .post(&signup)
        .form(&[
            ("username", "newcomer"),
            ("password", "ten-chars!"),
            ("password_confirmation", "ten-chars!"),
            ("_xsrf", &xsrf),
        ])
        .send()
        .await
        .expect("POST");
    assert!(ok.status().is_success(), "{}", ok.status());
    // open_signup = False: the account waits for an admin.
    let login = hub.public_url("/hub/login");
    let xsrf = xsrf_at(&b, &login).await;
    let resp = post_login(&hub, &b, "newcomer", "ten-chars!", Some(&xsrf)).await;
    assert_ne!(resp.status(), 302, "an unapproved sign-up must not sign in");
}
