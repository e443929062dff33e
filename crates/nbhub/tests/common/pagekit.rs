//! What the page tests share: a cookie-keeping client that does not follow redirects, the
//! `_xsrf` field of a form page, and a login through the form.

use super::TestHub;

/// A browser: keeps cookies, does not follow redirects (so we can check them).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A browser whose requests come, as the proxy in front of the hub says, from `ip`.
pub fn browser_from(ip: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-forwarded-for",
        reqwest::header::HeaderValue::from_str(ip).expect("ip"),
    );
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .expect("client")
}

/// The hidden `_xsrf` value of a form page.
pub fn xsrf_of(html: &str) -> String {
    let marker = "name=\"_xsrf\" value=\"";
    let start = html.find(marker).expect("page has an _xsrf field") + marker.len();
    html[start..].split('"').next().expect("value").to_string()
}

/// Logs `name` in (dummy authenticator, any password) in browser `b`.
pub async fn login(hub: &TestHub, b: &reqwest::Client, name: &str) {
    let page = b.get(hub.hub("/login")).send().await.expect("login page");
    let xsrf = xsrf_of(&page.text().await.expect("html"));
    let resp = b
        .post(hub.hub("/login"))
        .form(&[("username", name), ("password", "x"), ("_xsrf", &xsrf)])
        .send()
        .await
        .expect("post login");
    assert_eq!(resp.status(), 302, "login of {name}");
}
