//! What the page tests share, for either hub fixture: the one cookie-keeping client (a
//! browser without JavaScript), the `_xsrf` field of a form page, and the sign-in through the
//! login form.

use std::sync::Arc;

use reqwest::cookie::Jar;
use reqwest::header::{HeaderMap, HeaderValue};

use super::Hub;

/// The cookie-keeping client every browser-like client here is made from: cookies in `jar`,
/// redirects followed (as a browser does) or not (so that a test can check each one).
pub fn cookie_client(jar: Arc<Jar>, follow_redirects: bool) -> reqwest::ClientBuilder {
    let policy = if follow_redirects {
        reqwest::redirect::Policy::limited(10)
    } else {
        reqwest::redirect::Policy::none()
    };
    reqwest::Client::builder()
        .cookie_provider(jar)
        .redirect(policy)
}

/// A browser: keeps cookies, does not follow redirects (so we can check them).
pub fn browser() -> reqwest::Client {
    cookie_client(Arc::default(), false)
        .build()
        .expect("client")
}

/// A browser that follows redirects, as a user's does.
pub fn browser_following() -> reqwest::Client {
    cookie_client(Arc::default(), true).build().expect("client")
}

/// A browser and its cookie jar (to read or plant cookies), following redirects or not.
pub fn browser_with_jar(follow_redirects: bool) -> (reqwest::Client, Arc<Jar>) {
    let jar = Arc::new(Jar::default());
    let client = cookie_client(jar.clone(), follow_redirects)
        .build()
        .expect("client");
    (client, jar)
}

/// A browser whose requests come, as the proxy in front of the hub says, from `ip`.
pub fn browser_from(ip: &str) -> reqwest::Client {
    let mut headers = HeaderMap::new();
    headers.insert("x-forwarded-for", HeaderValue::from_str(ip).expect("ip"));
    cookie_client(Arc::default(), false)
        .default_headers(headers)
        .build()
        .expect("client")
}

/// The `Location` of a redirect ("" when there is none).
pub fn location_header(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The hidden `_xsrf` value of a form page.
pub fn xsrf_of(html: &str) -> String {
    let marker = "name=\"_xsrf\" value=\"";
    let start = html.find(marker).expect("page has an _xsrf field") + marker.len();
    html[start..].split('"').next().expect("value").to_string()
}

/// The XSRF token a page gives its scripts (`window.jhdata.xsrf_token`), as JupyterLab and the
/// hub's own pages send it in `X-XSRFToken`.
pub fn page_xsrf(html: &str) -> String {
    let marker = "\"xsrf_token\":\"";
    let start = html.find(marker).expect("page has jhdata.xsrf_token") + marker.len();
    html[start..].split('"').next().expect("value").to_string()
}

/// The `_xsrf` value of the form at `url`, fetched in browser `b` (which keeps the session the
/// token is bound to).
pub async fn xsrf_at(b: &reqwest::Client, url: &str) -> String {
    xsrf_of(&super::fetch(b, url).await.text().await.expect("html"))
}

/// Posts the login form of `hub` in browser `b` as `name` with `password`, with `xsrf` when
/// given. The form comes back to `/hub/home?x=1`, so that a test can see `next` kept.
pub async fn post_login(
    hub: &impl Hub,
    b: &reqwest::Client,
    name: &str,
    password: &str,
    xsrf: Option<&str>,
) -> reqwest::Response {
    let mut form = vec![("username", name), ("password", password)];
    form.extend(xsrf.map(|x| ("_xsrf", x)));
    super::post_form(b, hub.url("/hub/login?next=%2Fhub%2Fhome%3Fx%3D1"), &form).await
}

/// Signs `name` in through the login form (with its XSRF token) in browser `b`, as a user
/// does; fails the test unless the hub lets them in.
pub async fn login(hub: &impl Hub, b: &reqwest::Client, name: &str) {
    let xsrf = xsrf_at(b, &hub.url("/hub/login")).await;
    let resp = post_login(hub, b, name, &hub.password(), Some(&xsrf)).await;
    // A browser that does not follow redirects sees the 302 away from the form; one that does
    // lands on a page that is not the form again.
    let status = resp.status();
    let left_the_form =
        status == 302 || (status.is_success() && !resp.url().path().ends_with("/hub/login"));
    assert!(left_the_form, "login of {name}: {status} at {}", resp.url());
}

/// A new browser (not following redirects), signed in as `name`.
pub async fn signed_in(hub: &impl Hub, name: &str) -> reqwest::Client {
    let b = browser();
    login(hub, &b, name).await;
    b
}
