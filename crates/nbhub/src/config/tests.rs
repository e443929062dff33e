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
