//! Tests of the configuration as an admin meets it: the generated file, errors that name
//! the key and line, environment overrides, the cross-key checks.

use super::*;

fn load(text: &str) -> Result<Config, ConfigError> {
    let c = Config::from_toml_str(text, "test.toml")?;
    c.validate()?;
    Ok(c)
}

#[test]
fn generated_config_is_valid_and_complete() {
    let text = generate_config();
    let parsed = load(&text).expect("generated config parses");
    assert_eq!(parsed, Config::default());
    // Every key of every section appears, uncommented.
    let doc = toml::Value::try_from(Config::default()).expect("serialises");
    for (section, table) in doc.as_table().expect("table") {
        let Some(table) = table.as_table() else {
            continue;
        };
        assert!(
            text.contains(&format!("[{section}]")),
            "section {section} missing"
        );
        for key in table.keys() {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{key} = "))),
                "key {section}.{key} missing from generate-config"
            );
        }
    }
}

#[test]
fn unknown_key_names_key_and_line() {
    let err = load("[hub]\nbase_url = \"/\"\nbind_ulr = \"http://x\"\n")
        .unwrap_err()
        .0;
    assert!(err.contains("test.toml, line 3"), "{err}");
    assert!(err.contains("bind_ulr"), "{err}");
    assert!(
        err.contains("bind_url"),
        "should list what is allowed: {err}"
    );
}

#[test]
fn bad_url_and_bad_type_name_the_key() {
    let err = load("[hub]\nbind_url = \"ftp://x\"\n").unwrap_err().0;
    assert!(
        err.contains("hub.bind_url") && err.contains("line 2") && err.contains("http://"),
        "{err}"
    );
    let err = load("[hub]\ncookie_max_age_days = \"two\"\n")
        .unwrap_err()
        .0;
    assert!(
        err.contains("hub.cookie_max_age_days") && err.contains("integer"),
        "{err}"
    );
    let err = load("[authenticator]\nkind = \"ldap\"\n").unwrap_err().0;
    assert!(
        err.contains("authenticator.kind") && err.contains("dummy"),
        "{err}"
    );
}

#[test]
fn env_overrides_file() {
    let env = vec![
        ("NBHUB_HUB__BASE_URL".to_string(), "/jupyter".to_string()),
        (
            "NBHUB_HUB__COOKIE_MAX_AGE_DAYS".to_string(),
            "3".to_string(),
        ),
        (
            "NBHUB_AUTHENTICATOR__ADMIN_USERS".to_string(),
            "[\"root\"]".to_string(),
        ),
        (
            "NBHUB_AUTHENTICATOR__PASSWORD".to_string(),
            "123".to_string(),
        ),
    ];
    let c = Config::default()
        .with_env_overrides(&env)
        .expect("overrides apply");
    assert_eq!(c.hub.base_url.as_str(), "/jupyter/");
    assert_eq!(c.hub.cookie_max_age_days, 3);
    assert_eq!(c.authenticator.admin_users, vec!["root".to_string()]);
    assert_eq!(
        c.authenticator.password, "123",
        "a string key keeps a numeric-looking value as text"
    );
    let err = Config::default()
        .with_env_overrides(&[("NBHUB_HUB__NOPE".into(), "1".into())])
        .unwrap_err()
        .0;
    assert!(
        err.contains("NBHUB_HUB__NOPE") && err.contains("hub.nope"),
        "{err}"
    );
}

#[test]
fn generic_oauth_is_checked() {
    let err = load("[authenticator]\nkind = \"oidc\"\nissuer = \"https://idp.example\"\n")
        .unwrap_err()
        .0;
    assert!(err.contains("authenticator.client_id"), "{err}");
    let base =
        "[authenticator]\nkind = \"generic-oauth\"\nclient_id = \"hub\"\nclient_secret = \"s\"\n";
    let err = load(base).unwrap_err().0;
    assert!(
        err.contains("authenticator.issuer") && err.contains("token_url"),
        "{err}"
    );
    let err = load(&format!("{base}issuer = \"idp.example\"\n"))
        .unwrap_err()
        .0;
    assert!(err.contains("authenticator.issuer"), "{err}");
    let c = load(&format!(
        "{base}issuer = \"https://idp.example/realms/hpc\"\n"
    ))
    .expect("issuer alone is enough");
    assert_eq!(c.authenticator.kind, AuthenticatorKind::GenericOauth);
    assert_eq!(c.authenticator.scope, ["openid", "profile", "email"]);
    let c = load(&format!(
        "{base}issuer = \"https://idp.example\"\nauth_state_groups_key = \"oauth_user.realm.groups\"\n"
    ))
    .expect("OAuthenticator 16's groups key");
    assert_eq!(c.authenticator.groups_claim_path(), Some("realm.groups"));
    let err = load(&format!(
        "{base}issuer = \"https://idp.example\"\nauth_state_groups_key = \"access_token.groups\"\n"
    ))
    .unwrap_err()
    .0;
    assert!(err.contains("authenticator.auth_state_groups_key"), "{err}");
    load(&format!(
        "{base}authorize_url = \"https://idp.example/auth\"\ntoken_url = \"https://idp.example/token\"\nuserdata_url = \"https://idp.example/me\"\n"
    ))
    .expect("the three URLs without an issuer");
}

#[test]
fn roles_and_services_are_checked() {
    let err = load("[[roles]]\nname = \"r\"\nscopes = [\"read:usrs\"]\n")
        .unwrap_err()
        .0;
    assert!(err.contains("roles[0].scopes[0]"), "{err}");
    let err = load("[[roles]]\nname = \"r\"\nservices = [\"ghost\"]\n")
        .unwrap_err()
        .0;
    assert!(err.contains("ghost"), "{err}");
    let err = load("[[services]]\nname = \"c\"\napi_token = \"short\"\n")
        .unwrap_err()
        .0;
    assert!(err.contains("services[0].api_token"), "{err}");
}

/// Two systems, one local and one over SSH, as `[[systems]]` tables.
const SYSTEMS: &str = r#"
[spawner]
kind = "slurm"

[[systems]]
name = "alpha"
title = "Alpha"
slurm_conf = "/etc/slurm-alpha/slurm.conf"
poll_interval = 2
[[systems.partitions]]
name = "devel"
[[systems.allow]]
users = ["*"]
partitions = ["devel"]

[[systems]]
name = "beta"
transport = "ssh"
reach = "tunnel"
[systems.ssh]
login_hosts = ["login1:2222", "login2"]
known_hosts = "/etc/nbhub/known_hosts"
identity_file = "/etc/nbhub/keys/{username}"
tracking_user = "nbhub"
"#;

#[test]
fn systems_load_and_round_trip() {
    let c = load(SYSTEMS).expect("two systems");
    let names: Vec<&str> = c.systems.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["alpha", "beta"]);
    assert_eq!(c.systems[0].slurm.poll_interval, 2);
    assert_eq!(c.systems[0].slurm.partitions[0].name, "devel");
    assert_eq!(c.systems[1].transport, nbhub_spawner::Transport::Ssh);
    assert_eq!(c.systems[1].reach, nbhub_spawner::Reach::Tunnel);
    assert_eq!(
        c.systems[1].ssh.as_ref().map(|s| s.login_hosts.len()),
        Some(2)
    );
    assert_eq!(c.slurm, nbhub_spawner::SlurmConfig::default());
    // Serde writes every section, `[slurm]` at its defaults too; a file with both shapes is
    // refused, so only `[[systems]]` is kept.
    let text = toml::to_string(&c).expect("serialises");
    let mut doc: toml::Table = toml::from_str(&text).expect("toml");
    doc.remove("slurm");
    let again = load(&toml::to_string(&doc).expect("toml")).expect("round trip");
    assert_eq!(again, c);
    // Environment overrides keep the systems.
    let c2 = c
        .with_env_overrides(&[("NBHUB_HUB__BASE_URL".into(), "/j".into())])
        .expect("override");
    assert_eq!(c2.systems, c.systems);
    let err = c
        .with_env_overrides(&[("NBHUB_SLURM__POLL_INTERVAL".into(), "3".into())])
        .unwrap_err()
        .0;
    assert!(err.contains("[[systems]]"), "{err}");
}

#[test]
fn systems_errors_name_the_key_and_line() {
    let typo = SYSTEMS.replace("poll_interval = 2", "poll_intervall = 2");
    let err = load(&typo).unwrap_err().0;
    assert!(
        err.contains("key `systems[0].poll_intervall`: unknown field") && err.contains("line 5"),
        "{err}"
    );
    assert!(
        err.contains("poll_interval"),
        "lists what is allowed: {err}"
    );
    let err = load(&SYSTEMS.replace("login_hosts", "login_host"))
        .unwrap_err()
        .0;
    assert!(err.contains("key `systems[1].ssh.login_host`"), "{err}");
    let err = load(&SYSTEMS.replace("poll_interval = 2", "poll_interval = 0"))
        .unwrap_err()
        .0;
    assert!(err.contains("key `systems[0].poll_interval`"), "{err}");
    let err = load(&SYSTEMS.replace("name = \"beta\"", "name = \"alpha\""))
        .unwrap_err()
        .0;
    assert!(err.contains("key `systems[1].name`"), "{err}");
    let err = load(&SYSTEMS.replace("name = \"beta\"", "name = \"Beta Two\""))
        .unwrap_err()
        .0;
    assert!(err.contains("key `systems[1].name`"), "{err}");
    let err = load(&SYSTEMS.replace("transport = \"ssh\"\n", ""))
        .unwrap_err()
        .0;
    assert!(err.contains("key `systems[1].transport`"), "{err}");
    let err = load(&SYSTEMS.replace("kind = \"slurm\"", "kind = \"local\""))
        .unwrap_err()
        .0;
    assert!(
        err.contains("key `systems`") && err.contains("slurm"),
        "{err}"
    );
    let err = load(&format!("{SYSTEMS}\n[slurm]\n")).unwrap_err().0;
    assert!(
        err.contains("[slurm] and [[systems]] are both given"),
        "{err}"
    );
}

#[test]
fn generated_config_shows_both_shapes() {
    let text = generate_config();
    assert!(text.lines().any(|l| l == "[slurm]"), "today's [slurm]");
    for example in ["# [[systems]]", "# [systems.ssh]", "# transport = \"ssh\""] {
        assert!(text.contains(example), "{example} missing");
    }
}

#[test]
fn several_proxies_are_external_and_exclude_api_url() {
    let external = "[proxy]\nkind = \"external\"\nauth_token = \"t\"\n";
    let c = load(&format!(
        "{external}api_urls = [\"http://10.0.0.1:8001\", \"http://10.0.0.2:8001\"]\n"
    ))
    .expect("two proxies");
    assert_eq!(c.proxy.api_urls.len(), 2);
    assert_eq!(c.proxy.hub_wait, 30, "the default wait for the hub");
    let both = load(&format!(
        "{external}api_url = \"http://10.0.0.1:8001\"\napi_urls = [\"http://10.0.0.2:8001\"]\n"
    ))
    .unwrap_err()
    .0;
    assert!(
        both.contains("proxy.api_url") && both.contains("proxy.api_urls"),
        "{both}"
    );
    let managed = load("[proxy]\napi_urls = [\"http://10.0.0.2:8001\"]\n")
        .unwrap_err()
        .0;
    assert!(managed.contains("external"), "{managed}");
    let twice = load(&format!(
        "{external}api_urls = [\"http://10.0.0.2:8001\", \"http://10.0.0.2:8001/\"]\n"
    ))
    .unwrap_err()
    .0;
    assert!(twice.contains("twice"), "{twice}");
}

#[test]
fn shared_password_rules_are_jupyterhubs() {
    let with = |user: &str, admin: &str| {
        load(&format!(
            "[authenticator]\nkind = \"shared-password\"\nuser_password = \"{user}\"\nadmin_password = \"{admin}\"\n"
        ))
    };
    let long = "x".repeat(32);
    assert!(with("eight-ch", &long).is_ok());
    assert!(
        with("", "").is_ok(),
        "nobody can log in: allowed, as JupyterHub (it logs it)"
    );
    let err = with("short", "").unwrap_err().0;
    assert!(
        err.contains("authenticator.user_password") && err.contains("at least 8"),
        "{err}"
    );
    let err = with("eight-ch", &"y".repeat(31)).unwrap_err().0;
    assert!(
        err.contains("authenticator.admin_password")
            && err.contains("at least 32 characters, not 31"),
        "{err}"
    );
    let err = with(&long, &long).unwrap_err().0;
    assert!(err.contains("cannot be the same"), "{err}");
    let err = load("[authenticator]\nuser_password = \"eight-ch\"\n")
        .unwrap_err()
        .0;
    assert!(err.contains("shared-password"), "{err}");
}

#[test]
fn allow_origin_and_buckets_are_checked() {
    assert!(load("[hub]\nallow_origin = \"https://lab.example.org:8443\"\n").is_ok());
    assert!(load("[hub]\nallow_origin = \"*\"\n").is_ok());
    let err = load("[hub]\nallow_origin = \"https://lab.example.org/path\"\n")
        .unwrap_err()
        .0;
    assert!(err.contains("hub.allow_origin"), "{err}");
    let err = load("[hub]\nserver_spawn_duration_seconds_buckets = [10.0, 5.0]\n")
        .unwrap_err()
        .0;
    assert!(
        err.contains("server_spawn_duration_seconds_buckets") && err.contains("ascend"),
        "{err}"
    );
}
