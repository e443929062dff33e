//! Signing in through an OpenID Connect provider (`kind = "generic-oauth"`), against a real one:
//! the `oidc-provider` npm package (OpenID-certified), run by node with a small config written
//! here, its own login and consent pages submitted by a cookie-keeping client. Faults the real
//! provider will not produce on demand (a token signed by another key, for another audience,
//! expired, with another nonce) come from a small "rogue" issuer that signs its own tokens with
//! `jose` (oidc-provider's JWT library).
//!
//! Needs node and `NBHUB_OIDC_PROVIDER_DIR` (scripts/test-env.sh installs both); under CI=true a
//! missing one fails the test.

use crate::common;

use common::{fetch, post_form};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::hubproc::{self, require_proxy_binary, HubProc, Options};
use common::{call, sqlite_hub, TestHub, ADMIN_TOKEN};
use nbhub::config::{AuthenticatorKind, Config};
use nbhub_testkit::{free_port, missing_part, ChildGuard};
use reqwest::cookie::CookieStore;
use reqwest::Method;

const CLIENT_ID: &str = "nbhub-test";
const CLIENT_SECRET: &str = "a-client-secret-for-the-test-0123456789";

/// oidc-provider with four accounts (groups in a `groups` claim, given out with `profile`),
/// one confidential client, its dev login and consent pages, RP-initiated logout, token
/// revocation. With `REFRESH=1` it issues refresh tokens (a new one at each use) and prints
/// every grant; with `USERINFO_JWT=1` its userinfo answers are JWTs signed with its key.
pub(crate) const PROVIDER_JS: &str = r#"
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
const { default: Provider } = await import(
  pathToFileURL(join(process.env.OIDC_DIR, 'node_modules/oidc-provider/lib/index.js')).href);
const port = Number(process.env.PORT);
const groups = { alice: ['hpc', 'students'], carol: ['admins', 'hpc'], dave: [], erin: ['hpc'] };
const refresh = process.env.REFRESH === '1';
const jwtUserinfo = process.env.USERINFO_JWT === '1';
const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: process.env.CLIENT_ID,
    client_secret: process.env.CLIENT_SECRET,
    redirect_uris: [process.env.REDIRECT_URI],
    post_logout_redirect_uris: [process.env.POST_LOGOUT_URI],
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: refresh ? ['authorization_code', 'refresh_token'] : ['authorization_code'],
    ...(jwtUserinfo ? { userinfo_signed_response_alg: 'RS256' } : {}),
  }],
  ...(refresh ? {
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: () => true,
  } : {}),
  claims: { openid: ['sub'], profile: ['preferred_username', 'name', 'groups'], email: ['email'] },
  async findAccount(ctx, id) {
    if (!(id in groups)) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, name: id.toUpperCase(), email: `${id}@example.org`, groups: groups[id] };
      },
    };
  },
  cookies: { keys: ['a-cookie-key-for-the-test-only'] },
  features: {
    devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true },
    revocation: { enabled: true }, jwtUserinfo: { enabled: jwtUserinfo },
  },
});
provider.on('grant.success', (ctx) => console.log(`grant ${ctx.oidc.params.grant_type}`));
provider.on('grant.error', (ctx, err) => console.log(`grant refused ${ctx.oidc.params?.grant_type}: ${err.message}`));
provider.listen(port, '127.0.0.1', () => console.log(`oidc-provider listening on ${port}`));
"#;

/// An issuer that answers like a provider but signs (or leaves out) what the test asks for: `POST /mode` with
/// the next token's fault, then the usual authorize → token dance (no login page).
const ROGUE_JS: &str = r#"
import http from 'node:http';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
const jose = await import(pathToFileURL(join(process.env.OIDC_DIR, 'node_modules/jose/dist/webapi/index.js')).href);
const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const published = await jose.generateKeyPair('RS256', { extractable: true });
const other = await jose.generateKeyPair('RS256', { extractable: true });
const keys = [{ ...(await jose.exportJWK(published.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' }];
let mode = 'good';
const codes = new Map();
const json = (res, status, body) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify(body)); };
http.createServer(async (req, res) => {
  const url = new URL(req.url, issuer);
  if (url.pathname === '/.well-known/openid-configuration') {
    return json(res, 200, { issuer, authorization_endpoint: `${issuer}/auth`, token_endpoint: `${issuer}/token`, jwks_uri: `${issuer}/keys` });
  }
  // The keys moved: the JWKS URI the discovery names redirects (the hub follows it).
  if (url.pathname === '/keys') { res.writeHead(301, { location: '/jwks' }); return res.end(); }
  if (url.pathname === '/jwks') return json(res, 200, { keys });
  if (url.pathname === '/mode' && req.method === 'POST') {
    let body = ''; for await (const c of req) body += c;
    mode = body; res.writeHead(204); return res.end();
  }
  if (url.pathname === '/auth') {
    const code = `code-${codes.size}`;
    codes.set(code, { nonce: url.searchParams.get('nonce'), mode });
    const back = new URL(url.searchParams.get('redirect_uri'));
    back.searchParams.set('code', code);
    back.searchParams.set('state', url.searchParams.get('state'));
    res.writeHead(302, { location: back.href }); return res.end();
  }
  if (url.pathname === '/token' && req.method === 'POST') {
    let body = ''; for await (const c of req) body += c;
    const got = codes.get(new URLSearchParams(body).get('code'));
    if (!got) return json(res, 400, { error: 'invalid_grant' });
    const now = Math.floor(Date.now() / 1000);
    const m = got.mode;
    // A key rotation: a new key is published, and the token signed with it at once.
    let rotated;
    if (m === 'rotate') {
      rotated = await jose.generateKeyPair('ES256', { extractable: true });
      keys.push({ ...(await jose.exportJWK(rotated.publicKey)), kid: 'k3', alg: 'ES256', use: 'sig' });
    }
    const claims = {
      preferred_username: m === 'good' ? 'frank' : m === 'rotate' ? 'grace' : `mallory-${m}`,
      nonce: m === 'wrong-nonce' ? 'another-nonce' : got.nonce,
    };
    let signer = new jose.SignJWT(claims)
      .setProtectedHeader(m === 'rotate' ? { alg: 'ES256', kid: 'k3' }
        : { alg: m === 'hs256' ? 'HS256' : 'RS256', kid: m === 'unknown-kid' ? 'k2' : 'k1' })
      .setIssuer(m === 'wrong-iss' ? 'http://elsewhere.example' : issuer)
      .setSubject(`sub-${m}`)
      .setAudience(m === 'wrong-aud' ? 'another-client' : process.env.CLIENT_ID)
      .setIssuedAt(m === 'expired' ? now - 7200 : m === 'future-iat' ? now + 3600 : now)
      .setExpirationTime(m === 'expired' ? now - 3600 : now + 7200);
    const key = m === 'other-key' ? other.privateKey
      : m === 'hs256' ? new TextEncoder().encode(process.env.CLIENT_SECRET)
      : m === 'rotate' ? rotated.privateKey : published.privateKey;
    if (m === 'no-id-token') return json(res, 200, { access_token: 'at', token_type: 'Bearer' });
    return json(res, 200, { access_token: 'at', token_type: 'Bearer', id_token: await signer.sign(key) });
  }
  res.writeHead(404); res.end();
}).listen(port, '127.0.0.1', () => console.log(`rogue issuer listening on ${port}`));
"#;

/// node and the oidc-provider package, or None (the test fails under CI=true).
pub(crate) fn require_node_and_provider() -> Option<(PathBuf, PathBuf)> {
    let how = "scripts/test-env.sh (it installs oidc-provider into .nbhub-test/oidc-provider), then eval \"$(cat .nbhub-test/env)\"";
    let node = Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success());
    if node.is_none() {
        missing_part("node (nodejs)", how);
        return None;
    }
    let dir = std::env::var_os("NBHUB_OIDC_PROVIDER_DIR").map(PathBuf::from);
    match dir {
        Some(d) if d.join("node_modules/oidc-provider/package.json").is_file() => {
            Some((PathBuf::from("node"), d))
        }
        _ => {
            missing_part(
                "the oidc-provider npm package (NBHUB_OIDC_PROVIDER_DIR)",
                how,
            );
            None
        }
    }
}

/// What a test of the whole binary needs: the provider, the venv and the proxy binary.
fn require_provider_venv_and_proxy() -> Option<(PathBuf, PathBuf, PathBuf)> {
    let (_node, oidc_dir) = require_node_and_provider()?;
    Some((
        oidc_dir,
        nbhub_testkit::require_venv()?,
        require_proxy_binary()?,
    ))
}

fn start_node(
    name: &str,
    script: &str,
    dir: &Path,
    oidc_dir: &Path,
    port: u16,
    env: &[(&str, String)],
) -> ChildGuard {
    let path = nbhub_testkit::write_file(dir, &format!("{name}.mjs"), script);
    let mut cmd = Command::new("node");
    cmd.arg(path)
        .env("OIDC_DIR", oidc_dir)
        .env("PORT", port.to_string())
        .env("CLIENT_ID", CLIENT_ID)
        .env("CLIENT_SECRET", CLIENT_SECRET);
    for (k, v) in env {
        cmd.env(k, v);
    }
    ChildGuard::spawn(name, cmd).expect("start node")
}

/// The hub signs in at `issuer` as the test's client, and lands on /hub/home.
fn signs_in_at(c: &mut Config, issuer: &str) {
    let a = &mut c.authenticator;
    a.kind = AuthenticatorKind::GenericOauth;
    a.client_id = CLIENT_ID.into();
    a.client_secret = CLIENT_SECRET.into();
    a.issuer = issuer.into();
    c.hub.redirect_to_server = false;
}

/// The real provider on `port`, for one client with these redirect URIs; killed on drop.
async fn start_provider(
    scripts: &Path,
    oidc_dir: &Path,
    port: u16,
    redirect_uri: String,
    post_logout_uri: String,
) -> ChildGuard {
    start_provider_with(scripts, oidc_dir, port, redirect_uri, post_logout_uri, &[]).await
}

pub(crate) async fn start_provider_with(
    scripts: &Path,
    oidc_dir: &Path,
    port: u16,
    redirect_uri: String,
    post_logout_uri: String,
    more: &[(&str, String)],
) -> ChildGuard {
    let mut env = vec![
        ("REDIRECT_URI", redirect_uri),
        ("POST_LOGOUT_URI", post_logout_uri),
    ];
    env.extend(more.iter().cloned());
    let provider = start_node("oidc-provider", PROVIDER_JS, scripts, oidc_dir, port, &env);
    provider
        .wait_for_line(|l| l.contains("listening on"), Duration::from_secs(30))
        .await;
    provider
}

/// A browser that keeps cookies and does not follow redirects, so each step can be checked;
/// a request to the provider or the hub gives up after a minute.
pub(crate) fn timed_browser() -> reqwest::Client {
    browser_with(Arc::new(reqwest::cookie::Jar::default()), false)
}

fn browser_with(jar: Arc<reqwest::cookie::Jar>, follow_redirects: bool) -> reqwest::Client {
    let policy = if follow_redirects {
        reqwest::redirect::Policy::limited(20)
    } else {
        reqwest::redirect::Policy::none()
    };
    common::pagekit::cookie_client(jar, follow_redirects)
        .redirect(policy)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

fn location(resp: &reqwest::Response) -> Option<String> {
    let loc = resp.headers().get("location")?.to_str().ok()?;
    resp.url().join(loc).ok().map(String::from)
}

/// Starts a sign-in at the hub and follows it through the provider (its login form with
/// `login`, then its consent form; an empty `login` cancels instead) up to the redirect back
/// to the hub's callback, which is returned without being followed.
async fn through_provider(b: &reqwest::Client, hub: &TestHub, login: &str) -> String {
    let (start, callback) = (hub.hub("/oauth_login"), hub.hub("/oauth_callback"));
    through_provider_from(b, start, &callback, login).await
}

pub(crate) async fn through_provider_from(
    b: &reqwest::Client,
    start: String,
    callback: &str,
    login: &str,
) -> String {
    let mut url = start;
    let mut form: Option<Vec<(&str, String)>> = None;
    for _ in 0..20 {
        let req = match form.take() {
            Some(f) => b.post(&url).form(&f),
            None => b.get(&url),
        };
        let resp = req.send().await.expect("request");
        if let Some(next) = location(&resp) {
            if next.starts_with(callback) {
                return next;
            }
            url = next;
            continue;
        }
        let page_url = resp.url().clone();
        let status = resp.status();
        let html = resp.text().await.expect("page");
        assert_eq!(status, 200, "{page_url}: {html}");
        if login.is_empty() {
            // Cancel at the provider: its "[ Cancel ]" link.
            let cancel = html
                .split("\">[ Cancel ]")
                .next()
                .and_then(|before| before.rsplit("href=\"").next())
                .unwrap_or_else(|| panic!("no cancel link at {page_url}: {html}"));
            url = page_url.join(cancel).expect("cancel link").to_string();
            continue;
        }
        let action = html
            .split("action=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_else(|| panic!("no form at {page_url}: {html}"));
        url = page_url.join(action).expect("form action").to_string();
        form = Some(if html.contains("value=\"login\"") {
            vec![
                ("prompt", "login".into()),
                ("login", login.into()),
                ("password", "any".into()),
            ]
        } else if html.contains("value=\"consent\"") {
            vec![("prompt", "consent".into())]
        } else {
            panic!("an unexpected page at {page_url}: {html}")
        });
    }
    panic!("no redirect back to the hub after 20 steps (last {url})")
}

/// The hub's answer to the callback: a redirect on success, else the error page's text.
pub(crate) async fn callback(b: &reqwest::Client, url: &str) -> (u16, Option<String>, String) {
    let resp = b.get(url).send().await.expect("callback");
    let status = resp.status().as_u16();
    let loc = location(&resp);
    (status, loc, resp.text().await.unwrap_or_default())
}

async fn user(hub: &TestHub, name: &str) -> Option<serde_json::Value> {
    let (status, body) = call(
        hub,
        Method::GET,
        &format!("/users/{name}"),
        ADMIN_TOKEN,
        None,
    )
    .await;
    match status {
        200 => Some(body),
        404 => None,
        other => panic!("GET /users/{name}: {other} {body}"),
    }
}

pub(crate) fn group_names(u: &serde_json::Value) -> Vec<String> {
    let mut g: Vec<String> = u["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    g.sort();
    g
}

fn assert_refused(status: u16, html: &str, expect: &str) {
    assert_eq!(status, 403, "{html}");
    assert!(
        html.contains(expect),
        "the page should say {expect:?}: {html}"
    );
    assert!(
        html.contains("Try again") && html.contains("href=\"&#x2f;hub&#x2f;login\""),
        "a way to retry: {html}"
    );
}

#[tokio::test]
async fn sign_in_through_a_real_openid_provider() {
    let Some((_node, oidc_dir)) = require_node_and_provider() else {
        return;
    };
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    // The hub starts first (its callback URL names its port): the provider is not up yet, so
    // its discovery happens at the first sign-in. It keeps auth_state, refreshed after a
    // second; this provider gives no refresh tokens.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::test_config(dir.path(), "");
    let adjust = |c: &mut Config| {
        signs_in_at(c, &issuer);
        let a = &mut c.authenticator;
        a.enable_auth_state = true;
        a.auth_refresh_age = 1;
        a.login_service = "Example IdP".into();
        a.allowed_groups = vec!["hpc".into()];
        a.admin_groups = vec!["admins".into()];
        a.manage_groups = true;
        a.logout_redirect_url = format!("{issuer}/session/end");
    };
    adjust(&mut config);
    let hub = common::start_hub_keyed(config, dir, Some(KEY_A)).await;
    let scripts = tempfile::tempdir().expect("tempdir");
    let mut provider = start_provider(
        scripts.path(),
        &oidc_dir,
        port,
        hub.hub("/oauth_callback"),
        hub.hub("/login"),
    )
    .await;

    // The login page offers the provider's button instead of the password form; the form
    // itself is refused.
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let b = browser_with(jar.clone(), false);
    let resp = b.get(hub.hub("/login")).send().await.expect("login page");
    let html = resp.text().await.expect("html");
    assert!(html.contains("Sign in with Example IdP"), "{html}");
    // (minijinja escapes the slashes of attribute values)
    assert!(
        html.contains("href=\"&#x2f;hub&#x2f;oauth_login\""),
        "{html}"
    );
    assert!(!html.contains("type=\"password\""), "{html}");
    let resp = post_form(
        &b,
        hub.hub("/login"),
        &[("username", "alice"), ("password", "x")],
    )
    .await;
    assert_eq!(resp.status(), 403);

    // alice: through the provider's login and consent pages, back to the hub's home page.
    let back = through_provider(&b, &hub, "alice").await;
    let state_cookie = jar
        .cookies(&back.parse().expect("url"))
        .and_then(|h| h.to_str().ok().map(str::to_string))
        .expect("the sign-in's state cookie");
    let (status, loc, html) = callback(&b, &back).await;
    assert_eq!(status, 302, "{html}");
    assert_eq!(loc.as_deref(), Some(hub.hub("/home").as_str()));
    let home = b.get(hub.hub("/home")).send().await.expect("home");
    assert_eq!(home.status(), 200);
    assert!(home.text().await.expect("home").contains("alice"));
    let alice = user(&hub, "alice").await.expect("alice exists");
    assert_eq!(group_names(&alice), ["hpc", "students"]);
    assert_eq!(alice["admin"], false);
    // No refresh token: past auth_refresh_age the access token still serves (it has not
    // expired), so alice stays signed in.
    assert!(alice["auth_state"]["access_token"].is_string(), "{alice}");
    assert!(alice["auth_state"]["refresh_token"].is_null(), "{alice}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let home = b.get(hub.hub("/home")).send().await.expect("home");
    assert_eq!(
        home.status(),
        200,
        "still signed in without a refresh token"
    );
    // The same callback again (a replay): refused, nothing changes.
    let (status, _, html) = callback(&b, &back).await;
    assert_refused(status, &html, "not started in this browser");
    // Even with the state cookie kept (captured), a state is accepted only once.
    let resp = common::client()
        .get(&back)
        .header("cookie", &state_cookie)
        .send()
        .await
        .expect("replay");
    let status = resp.status().as_u16();
    assert_refused(status, &resp.text().await.expect("page"), "already used");

    // carol: admin through admin_groups.
    let carol_browser = timed_browser();
    let back = through_provider(&carol_browser, &hub, "carol").await;
    let (status, _, html) = callback(&carol_browser, &back).await;
    assert_eq!(status, 302, "{html}");
    let carol = user(&hub, "carol").await.expect("carol exists");
    assert_eq!(carol["admin"], true);
    assert_eq!(group_names(&carol), ["admins", "hpc"]);
    // The provider manages the groups: the API will not change them (JupyterHub's answer),
    // and the admin page offers no way to.
    for (method, path, body) in [
        (
            Method::POST,
            "/groups/hpc/users",
            serde_json::json!({"users": ["carol"]}),
        ),
        (
            Method::DELETE,
            "/groups/hpc/users",
            serde_json::json!({"users": ["alice"]}),
        ),
        (Method::POST, "/groups/new-one", serde_json::json!({})),
        (Method::DELETE, "/groups/hpc", serde_json::json!({})),
        (
            Method::PATCH,
            "/users/alice",
            serde_json::json!({"groups": []}),
        ),
    ] {
        let (status, answer) = call(&hub, method.clone(), path, ADMIN_TOKEN, Some(body)).await;
        assert_eq!(status, 400, "{method} {path}: {answer}");
        assert!(
            answer
                .to_string()
                .contains("Group management via API is disabled"),
            "{answer}"
        );
    }
    assert_eq!(
        group_names(&user(&hub, "alice").await.expect("alice")),
        ["hpc", "students"]
    );
    let admin_page = fetch(&carol_browser, hub.hub("/admin")).await;
    assert_eq!(admin_page.status(), 200);
    let admin_page = admin_page.text().await.expect("html");
    assert!(
        admin_page.contains("id=\"groups-managed\"") && !admin_page.contains("add-group-form"),
        "{admin_page}"
    );

    // dave is in no allowed group: a clear page, and no user.
    let dave_browser = timed_browser();
    let back = through_provider(&dave_browser, &hub, "dave").await;
    let (status, _, html) = callback(&dave_browser, &back).await;
    assert_refused(status, &html, "dave is not allowed to use this hub");
    assert!(user(&hub, "dave").await.is_none(), "no user made for dave");

    // erin cancels at the provider: its refusal, on a clear page, and no user.
    let erin_browser = timed_browser();
    let back = through_provider(&erin_browser, &hub, "").await;
    let (status, _, html) = callback(&erin_browser, &back).await;
    assert_refused(status, &html, "did not sign you in (access_denied");
    assert!(user(&hub, "erin").await.is_none(), "no user made for erin");

    // A forged state (erin's real code, another state): refused, no user.
    let erin_browser = timed_browser();
    let back = through_provider(&erin_browser, &hub, "erin").await;
    let mut forged = url::Url::parse(&back).expect("url");
    let pairs: Vec<(String, String)> = forged
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                "forged".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let (status, _, html) = callback(&erin_browser, forged.as_str()).await;
    assert_refused(status, &html, "state does not match");
    assert!(user(&hub, "erin").await.is_none(), "no user made for erin");

    // Logout ends the hub session and goes to the provider's end-session endpoint with the
    // ID token as hint, which the provider accepts (its logout confirmation page).
    let resp = b.get(hub.hub("/logout")).send().await.expect("logout");
    assert_eq!(resp.status(), 302);
    let end = location(&resp).expect("a redirect");
    assert!(end.starts_with(&format!("{issuer}/session/end?")), "{end}");
    assert!(
        end.contains("id_token_hint=") && end.contains(&format!("client_id={CLIENT_ID}")),
        "{end}"
    );
    let resp = b.get(&end).send().await.expect("end session");
    let status = resp.status();
    let page = resp.text().await.expect("page");
    assert_eq!(status, 200, "the provider takes the hint: {page}");
    assert!(page.contains("<form"), "{page}");
    let resp = b.get(hub.hub("/home")).send().await.expect("home");
    assert_eq!(resp.status(), 302, "logged out of the hub");

    // The provider goes down between its redirect and the hub's code exchange: a clear page
    // (not a 500) and no user.
    let erin_browser = timed_browser();
    let back = through_provider(&erin_browser, &hub, "erin").await;
    provider.kill();
    let (status, _, html) = callback(&erin_browser, &back).await;
    assert_eq!(status, 503, "{html}");
    assert!(html.contains("could not be reached"), "{html}");
    assert!(html.contains("Try again"), "{html}");
    assert!(user(&hub, "erin").await.is_none(), "no user made for erin");
}

/// A provider that has never answered (discovery impossible): a clear 503 page, no redirect.
#[tokio::test]
async fn a_provider_that_never_answered_gives_a_clear_page() {
    let issuer = format!("http://127.0.0.1:{}", free_port());
    let hub = sqlite_hub(|c| signs_in_at(c, &issuer)).await;
    let resp = fetch(&timed_browser(), hub.hub("/oauth_login")).await;
    assert_eq!(resp.status(), 503);
    let html = resp.text().await.expect("page");
    assert!(
        html.contains("could not be reached") && html.contains("discovery"),
        "{html}"
    );
    assert!(html.contains("Try again"), "{html}");
}

#[tokio::test]
async fn forged_id_tokens_are_refused() {
    let Some((_node, oidc_dir)) = require_node_and_provider() else {
        return;
    };
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let scripts = tempfile::tempdir().expect("tempdir");
    let rogue = start_node(
        "rogue-issuer",
        ROGUE_JS,
        scripts.path(),
        &oidc_dir,
        port,
        &[],
    );
    rogue
        .wait_for_line(|l| l.contains("listening on"), Duration::from_secs(30))
        .await;
    let hub = sqlite_hub(|c| {
        signs_in_at(c, &issuer);
        c.authenticator.allow_all = true;
        c.authenticator.auto_login = true;
    })
    .await;
    let http = common::client();
    let attempt_from = |mode: &'static str, start: String| {
        let (http, issuer) = (http.clone(), issuer.clone());
        async move {
            let resp = http
                .post(format!("{issuer}/mode"))
                .body(mode)
                .send()
                .await
                .expect("set mode");
            assert_eq!(resp.status(), 204);
            let b = timed_browser();
            let resp = b.get(&start).send().await.expect("start");
            let to_issuer = location(&resp).expect("to the issuer");
            let resp = b.get(&to_issuer).send().await.expect("authorize");
            let back = location(&resp).expect("back to the hub");
            callback(&b, &back).await
        }
    };
    let attempt = |mode: &'static str| attempt_from(mode, hub.hub("/oauth_login"));
    // auto_login: the login page sends the browser on to the provider at once, keeping `next`.
    let resp = fetch(&http, hub.hub("/login?next=%2Fhub%2Ftoken")).await;
    assert_eq!(resp.status(), 302);
    let start = location(&resp).expect("to oauth_login");
    assert_eq!(start, hub.hub("/oauth_login?next=%2Fhub%2Ftoken"));
    // The rogue issuer's well-formed token is accepted (so the cases below fail for their
    // fault alone), and the sign-in ends at `next`.
    let (status, loc, html) = attempt_from("good", start).await;
    assert_eq!(status, 302, "{html}");
    assert_eq!(loc.as_deref(), Some(hub.hub("/token").as_str()));
    assert!(user(&hub, "frank").await.is_some());
    // A `next` to another site is not followed: home instead.
    let evil = hub.hub("/oauth_login?next=https%3A%2F%2Fevil.example%2Fsteal");
    let (status, loc, html) = attempt_from("good", evil).await;
    assert_eq!(status, 302, "{html}");
    assert_eq!(loc.as_deref(), Some(hub.hub("/home").as_str()));
    for (mode, expect) in [
        ("other-key", "signature does not match"),
        ("unknown-kid", "a key the provider does not publish"),
        ("wrong-aud", "issued for another client"),
        ("expired", "it has expired"),
        ("wrong-nonce", "nonce"),
        ("wrong-iss", "not issued by"),
        ("hs256", "public keys are accepted"),
        ("future-iat", "issued in the future"),
        ("no-id-token", "sent no ID token"),
    ] {
        let (status, _, html) = attempt(mode).await;
        assert_refused(status, &html, expect);
        assert!(
            user(&hub, &format!("mallory-{mode}")).await.is_none(),
            "{mode}: no user made"
        );
    }
    // The provider rotates its keys (a new ES256 key, unknown to the hub's cached JWKS): the
    // hub fetches the JWKS again and accepts the token.
    let (status, _, html) = attempt("rotate").await;
    assert_eq!(status, 302, "{html}");
    assert!(user(&hub, "grace").await.is_some());
}

/// The whole way, through the proxy and the `nbhub` binary: alice signs in at the provider,
/// starts her server and reaches JupyterLab (the server's own OAuth login rides on the hub
/// session the provider sign-in made).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_provider_sign_in_jupyterlab_opens() {
    let Some((oidc_dir, venv, proxy)) = require_provider_venv_and_proxy() else {
        return;
    };
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let mut hub = HubProc::new(
        venv,
        &proxy,
        Options {
            extra_toml: "redirect_to_server = false".into(),
            authenticator: format!(
                "kind = \"generic-oauth\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\nissuer = \"{issuer}\"\n\
                 manage_groups = true\nauth_state_groups_key = \"oauth_user.groups\"\n"
            ),
            ports_known_in_advance: true,
            ..Options::default()
        },
    );
    let scripts = tempfile::tempdir().expect("tempdir");
    let _provider = start_provider(
        scripts.path(),
        &oidc_dir,
        port,
        hub.public_url("/hub/oauth_callback"),
        hub.public_url("/hub/login"),
    )
    .await;
    hub.start().await;

    let jar = Arc::new(reqwest::cookie::Jar::default());
    let b = browser_with(jar.clone(), false);
    let back = through_provider_from(
        &b,
        hub.public_url("/hub/oauth_login"),
        &hub.public_url("/hub/oauth_callback"),
        "alice",
    )
    .await;
    let (status, loc, html) = callback(&b, &back).await;
    assert_eq!(status, 302, "{html}\n{}", hub.log());
    assert_eq!(loc.as_deref(), Some(hub.public_url("/hub/home").as_str()));

    // OAuthenticator 16's groups key works as claim_groups_key does.
    let (_, body) = hubproc::admin(&hub, Method::GET, "/users/alice", None).await;
    let alice: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(group_names(&alice), ["hpc", "students"], "{body}");

    let (status, body) = hubproc::admin(&hub, Method::POST, "/users/alice/server", None).await;
    assert_eq!(status, 201, "{body}\n{}", hub.log());
    let resp = browser_with(jar, true)
        .get(hub.public_url("/user/alice/lab"))
        .send()
        .await
        .expect("lab");
    assert_eq!(resp.status(), 200, "{}", hub.log());
    assert_eq!(resp.url().path(), "/user/alice/lab");
    assert!(resp.text().await.expect("html").contains("JupyterLab"));
}

const KEY_A: &str = "6f1e1e7c2b5a4d3c9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d";
const KEY_B: &str = "Vtq2Jk3n7rWc8Yb1Xp4Zs6Lm0Qd5Hf9Ag2Ke8Tu3Ri0="; // base64
const KEY_C: &str = "0000000000000000000000000000000000000000000000000000000000000001";

async fn auth_state_of(hub: &HubProc, name: &str) -> serde_json::Value {
    let (status, body) = hubproc::admin(hub, Method::GET, &format!("/users/{name}"), None).await;
    assert_eq!(status, 200, "{body}");
    let user: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert!(
        user.get("auth_state").is_some(),
        "admin:auth_state shows it: {user}"
    );
    user["auth_state"].clone()
}

/// Signs `login` in with a fresh cookie-keeping browser; the browser.
async fn sign_in_through_the_proxy(hub: &HubProc, login: &str) -> reqwest::Client {
    let b = timed_browser();
    let callback_url = hub.public_url("/hub/oauth_callback");
    let back =
        through_provider_from(&b, hub.public_url("/hub/oauth_login"), &callback_url, login).await;
    let (status, _, html) = callback(&b, &back).await;
    assert_eq!(status, 302, "{html}\n{}", hub.log());
    b
}

fn refresh_grants(provider: &ChildGuard) -> usize {
    provider
        .output()
        .to_string()
        .lines()
        .filter(|l| l.contains("grant refresh_token"))
        .count()
}

/// Checks that the provider has printed exactly `n` refresh grants (its output arrives a
/// little after the hub's answer).
async fn assert_refresh_grants(provider: &ChildGuard, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while refresh_grants(provider) < n && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(refresh_grants(provider), n, "{}", provider.output());
}

/// `GET /hub/api/user` with `token`, through the proxy.
async fn whoami(hub: &HubProc, token: &str) -> reqwest::Response {
    common::client()
        .get(hub.public_url("/hub/api/user"))
        .header("Authorization", format!("token {token}"))
        .send()
        .await
        .expect("/hub/api/user")
}

/// Starts alice's server with the admin token: the status and body.
async fn start_alice(hub: &HubProc) -> (u16, String) {
    hubproc::admin(hub, Method::POST, "/users/alice/server", None).await
}

async fn stop_alice(hub: &HubProc) {
    let (status, body) = hubproc::admin(hub, Method::DELETE, "/users/alice/server", None).await;
    assert!(status == 202 || status == 204, "{status} {body}");
    common::eventually(60, "alice's server to stop", || async {
        let (_, body) = hubproc::admin(hub, Method::GET, "/users/alice", None).await;
        let user: serde_json::Value = serde_json::from_str(&body).expect("json");
        user["servers"].get("").is_none().then_some(())
    })
    .await;
}

/// The whole binary with its proxy, `enable_auth_state` and the key in JUPYTERHUB_CRYPT_KEY,
/// against the real provider issuing refresh tokens (rotated at each use) and signed userinfo:
/// the hub will not start without a usable key; the tokens are in the database only sealed;
/// tokens older than `auth_refresh_age` are refreshed once before a spawn and once at the
/// browser's next request; the server gets exactly what `auth_state_env` maps; a refused
/// refresh ends the sign-in; a changed key makes auth_state unreadable until the user signs in
/// again; with the old key still listed after a new one, it is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_state_is_sealed_refreshed_and_mapped_into_the_server() {
    let Some((oidc_dir, venv, proxy)) = require_provider_venv_and_proxy() else {
        return;
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    let script = scratch.path().join("env_server.py");
    std::fs::write(&script, common::TINY_SERVER).expect("script");
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let mut hub = HubProc::new(
        venv.clone(),
        &proxy,
        Options {
            cmd_prefix: vec![
                venv.join("bin/python").display().to_string(),
                script.display().to_string(),
            ],
            // OAuthenticator's recipe for servers that need their owner's fresh access token:
            // the user and server roles with admin:auth_state!user.
            services: r#"
[[roles]]
name = "auth-state-reader"
scopes = ["admin:auth_state"]
services = ["e2e-admin"]

[[roles]]
name = "user"
scopes = ["self", "admin:auth_state!user"]

[[roles]]
name = "server"
scopes = ["users:activity!user", "access:servers!server", "admin:auth_state!user"]
"#
            .into(),
            authenticator: format!(
                r#"kind = "generic-oauth"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
issuer = "{issuer}"
manage_groups = true
enable_auth_state = true
refresh_pre_spawn = true
auth_refresh_age = 2
auth_state_env = {{ OIDC_ACCESS_TOKEN = "access_token", OIDC_GROUPS = "oauth_user.groups", OIDC_EMAIL = "oauth_user.email" }}
"#
            ),
            ports_known_in_advance: true,
            ..Options::default()
        },
    );

    // Without a key, or with a malformed one, the hub does not start, and says why.
    let out = hub.start_refused().await;
    assert!(
        out.contains("JUPYTERHUB_CRYPT_KEY") && out.contains("openssl rand -hex 32"),
        "{out}"
    );
    hub.env = vec![("JUPYTERHUB_CRYPT_KEY".into(), "not-a-key".into())];
    let out = hub.start_refused().await;
    assert!(out.contains("key 1 is not 32 bytes"), "{out}");

    let mut provider = start_provider_with(
        scratch.path(),
        &oidc_dir,
        port,
        hub.public_url("/hub/oauth_callback"),
        hub.public_url("/hub/login"),
        &[("REFRESH", "1".into()), ("USERINFO_JWT", "1".into())],
    )
    .await;
    hub.env = vec![("JUPYTERHUB_CRYPT_KEY".into(), KEY_A.into())];
    hub.start().await;

    // alice signs in: auth_state holds the tokens and the (signed) userinfo.
    let b = sign_in_through_the_proxy(&hub, "alice").await;
    let first = auth_state_of(&hub, "alice").await;
    let access = first["access_token"]
        .as_str()
        .expect("access token")
        .to_string();
    let refresh = first["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_string();
    assert!(
        first["id_token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3),
        "{first}"
    );
    assert_eq!(
        first["oauth_user"]["groups"],
        serde_json::json!(["hpc", "students"]),
        "{first}"
    );
    assert_eq!(first["oauth_user"]["email"], "alice@example.org");
    assert!(
        hub.log().contains("the userinfo is a signed JWT"),
        "{}",
        hub.log()
    );

    // In the database only sealed: neither token is in the raw SQLite files.
    let mut raw = Vec::new();
    for entry in std::fs::read_dir(hub.data_dir())
        .expect("data dir")
        .flatten()
    {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("nbhub.sqlite")
        {
            raw.extend(std::fs::read(entry.path()).expect("read"));
        }
    }
    let holds = |needle: &str| raw.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(holds("nbhub-aead-v1:"), "a sealed auth_state is stored");
    assert!(
        !holds(&access) && !holds(&refresh),
        "a token in the clear on disk"
    );
    assert!(
        !holds("alice@example.org"),
        "the userinfo in the clear on disk"
    );

    // A robot account made through the API has no auth_state: its token works (nothing to
    // refresh), but a spawn, which needs auth_state here, asks it to sign in.
    let (status, body) = hubproc::admin(
        &hub,
        Method::POST,
        "/users",
        Some(serde_json::json!({"usernames": ["robot"]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let robot_token = common::user_token(&hub, "robot").await;
    for _ in 0..2 {
        assert_eq!(whoami(&hub, &robot_token).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(2100)).await;
    }
    let (status, body) = hubproc::admin(&hub, Method::POST, "/users/robot/server", None).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("keeps no sign-in of robot"), "{body}");

    // Older than auth_refresh_age: one refresh grant before the spawn, and the server gets
    // the new access token and the mapped claims, not the refresh token.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let grants = refresh_grants(&provider);
    let (status, body) = start_alice(&hub).await;
    assert!(
        status == 201 || status == 202,
        "{status} {body}\n{}",
        hub.log()
    );
    assert_refresh_grants(&provider, grants + 1).await;
    hubproc::wait_ready(&hub, "alice", "", 60).await;
    let second = auth_state_of(&hub, "alice").await;
    let new_access = second["access_token"].as_str().expect("access token");
    assert_ne!(new_access, access, "refreshed");
    assert_ne!(
        second["refresh_token"], first["refresh_token"],
        "rotated, and kept"
    );
    let env: serde_json::Value = reqwest::get(hub.public_url("/user/alice/env"))
        .await
        .expect("env")
        .json()
        .await
        .expect("env json");
    assert_eq!(env["OIDC_ACCESS_TOKEN"], new_access);
    assert_eq!(env["OIDC_GROUPS"], "[\"hpc\",\"students\"]");
    assert_eq!(env["OIDC_EMAIL"], "alice@example.org");
    let refresh_now = second["refresh_token"].as_str().expect("refresh token");
    let leaked: Vec<_> = env
        .as_object()
        .expect("object")
        .iter()
        .filter(|(_, v)| v.as_str().is_some_and(|v| v.contains(refresh_now)))
        .collect();
    assert!(
        leaked.is_empty(),
        "the refresh token is not mapped: {leaked:?}"
    );

    // On use: the browser's next request after auth_refresh_age refreshes once more.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let resp = fetch(&b, hub.public_url("/hub/home")).await;
    assert_eq!(resp.status(), 200, "{}", hub.log());
    assert_refresh_grants(&provider, grants + 2).await;

    // API tokens alike, as JupyterHub: the server's own token (given admin:auth_state!user by
    // the server role) reads its owner at /hub/api/user and gets a freshly refreshed token.
    let server_token = env["JUPYTERHUB_API_TOKEN"].as_str().expect("server token");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let before = auth_state_of(&hub, "alice").await;
    let me: serde_json::Value = whoami(&hub, server_token).await.json().await.expect("json");
    assert_refresh_grants(&provider, grants + 3).await;
    let fresh = me["auth_state"]["access_token"]
        .as_str()
        .expect("auth_state in the model");
    assert_ne!(fresh, before["access_token"].as_str().expect("old"), "{me}");
    assert_eq!(fresh, auth_state_of(&hub, "alice").await["access_token"]);
    let alice_token = common::user_token(&hub, "alice").await;

    // The provider revokes the refresh token: the next refresh is refused, the spawn says
    // to sign in again, and the browser's session has ended.
    stop_alice(&hub).await;
    let third = auth_state_of(&hub, "alice").await;
    let resp = common::client()
        .post(format!("{issuer}/token/revocation"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            (
                "token",
                third["refresh_token"].as_str().expect("refresh token"),
            ),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .await
        .expect("revoke");
    assert_eq!(resp.status(), 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, body) = start_alice(&hub).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("refused to refresh") && body.contains("Sign in again"),
        "{body}"
    );
    let resp = fetch(&b, hub.public_url("/hub/home")).await;
    assert_eq!(resp.status(), 302, "signed out");
    let resp = whoami(&hub, &alice_token).await;
    assert_eq!(resp.status(), 403, "her API tokens too");

    // alice signs in again; then the hub restarts with another key: her auth_state cannot be
    // read (null in the API, and a spawn asks her to sign in again) until she does.
    sign_in_through_the_proxy(&hub, "alice").await;
    hub.kill9_hub();
    hub.env = vec![("JUPYTERHUB_CRYPT_KEY".into(), KEY_B.into())];
    hub.start().await;
    assert_eq!(auth_state_of(&hub, "alice").await, serde_json::Value::Null);
    let (status, body) = start_alice(&hub).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("cannot be read") && body.contains("Sign in again"),
        "{body}"
    );
    sign_in_through_the_proxy(&hub, "alice").await;
    let with_b = auth_state_of(&hub, "alice").await;
    assert!(with_b["access_token"].is_string(), "{with_b}");

    // Rotation: a new key first, the old one still listed: what the old one sealed is read.
    hub.kill9_hub();
    hub.env = vec![("JUPYTERHUB_CRYPT_KEY".into(), format!("{KEY_C};{KEY_B}"))];
    hub.start().await;
    assert_eq!(
        auth_state_of(&hub, "alice").await["access_token"],
        with_b["access_token"]
    );
    provider.kill();
}

/// JupyterHub 5.4's `refresh_pre_stop`, against the real provider: alice's tokens are refreshed
/// at the provider before her server stops (even with `auth_refresh_age = 0`, which turns the
/// refresh at requests off); once the provider refuses the refresh, her own stop is refused
/// with "sign in again" and the server keeps running, while an admin's stop goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_pre_stop_refreshes_before_a_stop() {
    let Some((oidc_dir, venv, proxy)) = require_provider_venv_and_proxy() else {
        return;
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    let script = scratch.path().join("tiny_server.py");
    std::fs::write(&script, common::TINY_SERVER).expect("script");
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let mut hub = HubProc::new(
        venv.clone(),
        &proxy,
        Options {
            cmd_prefix: vec![
                venv.join("bin/python").display().to_string(),
                script.display().to_string(),
            ],
            services: "[[roles]]\nname = \"auth-state-reader\"\nscopes = [\"admin:auth_state\"]\nservices = [\"e2e-admin\"]\n".into(),
            authenticator: format!(
                "kind = \"generic-oauth\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n\
                 issuer = \"{issuer}\"\nenable_auth_state = true\nrefresh_pre_stop = true\nauth_refresh_age = 0\n"
            ),
            ports_known_in_advance: true,
            ..Options::default()
        },
    );
    let provider = start_provider_with(
        scratch.path(),
        &oidc_dir,
        port,
        hub.public_url("/hub/oauth_callback"),
        hub.public_url("/hub/login"),
        &[("REFRESH", "1".into())],
    )
    .await;
    hub.env = vec![("JUPYTERHUB_CRYPT_KEY".into(), KEY_A.into())];
    hub.start().await;
    sign_in_through_the_proxy(&hub, "alice").await;
    let alice_token = common::user_token(&hub, "alice").await;
    let stop_as_alice = || {
        common::request(
            &hub,
            Method::DELETE,
            "/users/alice/server",
            &alice_token,
            None,
        )
    };

    // A stop by alice herself: one refresh grant at the provider first, then the stop.
    let (status, body) = start_alice(&hub).await;
    assert!(status == 201 || status == 202, "{status} {body}");
    hubproc::wait_ready(&hub, "alice", "", 60).await;
    let grants = refresh_grants(&provider);
    let before = auth_state_of(&hub, "alice").await;
    let (status, body) = stop_as_alice().await;
    assert!(
        status == 204 || status == 202,
        "{status} {body}\n{}",
        hub.log()
    );
    assert_refresh_grants(&provider, grants + 1).await;
    let after = auth_state_of(&hub, "alice").await;
    assert_ne!(
        after["access_token"], before["access_token"],
        "refreshed before the stop"
    );
    common::eventually(60, "alice's server to stop", || async {
        hubproc::server_model(&hub, "alice", "")
            .await
            .is_none()
            .then_some(())
    })
    .await;

    // The provider revokes the refresh token: alice's own stop is refused, nothing stops.
    let (status, body) = start_alice(&hub).await;
    assert!(status == 201 || status == 202, "{status} {body}");
    hubproc::wait_ready(&hub, "alice", "", 60).await;
    let resp = common::client()
        .post(format!("{issuer}/token/revocation"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            (
                "token",
                after["refresh_token"].as_str().expect("refresh token"),
            ),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .await
        .expect("revoke");
    assert_eq!(resp.status(), 200);
    let (status, body) = stop_as_alice().await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Sign in again"), "{body}");
    assert!(
        hubproc::server_model(&hub, "alice", "").await.is_some(),
        "the refused stop left the server running"
    );
    // An admin's stop goes on regardless (JupyterHub: "Stopping anyway").
    stop_alice(&hub).await;
    assert!(hub.log().contains("stopping anyway"), "{}", hub.log());
}
