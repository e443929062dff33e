//! Running code in a single-user server's kernel through the proxy, as JupyterLab does: the
//! REST call that makes a kernel, then an `execute_request` over the kernel websocket.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

use super::hubproc::HubProc;

/// Makes a kernel on the server at `prefix` with a request the caller prepared (a browser
/// with its XSRF header, or a token); returns its id.
pub async fn create_kernel(
    hub: &HubProc,
    prefix: &str,
    request: reqwest::RequestBuilder,
) -> String {
    let resp = request
        .json(&json!({"name": "python3"}))
        .send()
        .await
        .expect("create kernel");
    assert_eq!(
        resp.status(),
        201,
        "create kernel at {}: {:?}",
        hub.public_url(prefix),
        resp.text().await
    );
    let kernel: Value = resp.json().await.expect("kernel json");
    kernel["id"].as_str().expect("kernel id").to_string()
}

/// Makes a kernel with the user's API token (no browser session, so no XSRF header needed).
pub async fn create_kernel_with_token(hub: &HubProc, prefix: &str, token: &str) -> String {
    let request = reqwest::Client::new()
        .post(hub.public_url(&format!("{prefix}api/kernels")))
        .header("Authorization", format!("token {token}"));
    create_kernel(hub, prefix, request).await
}

/// Executes `code` in kernel `id` over its websocket through the proxy; returns what it
/// printed.
pub async fn execute(hub: &HubProc, prefix: &str, id: &str, token: &str, code: &str) -> String {
    try_execute_within(hub, prefix, id, token, code, Duration::from_secs(60))
        .await
        .expect("the kernel answers through the proxy in time")
}

/// [`execute`] for a server that may not be reachable yet: `None` when the websocket cannot be
/// opened or the kernel does not answer within 20 s (to be asked again).
pub async fn try_execute(
    hub: &HubProc,
    prefix: &str,
    id: &str,
    token: &str,
    code: &str,
) -> Option<String> {
    try_execute_within(hub, prefix, id, token, code, Duration::from_secs(20)).await
}

async fn try_execute_within(
    hub: &HubProc,
    prefix: &str,
    id: &str,
    token: &str,
    code: &str,
    limit: Duration,
) -> Option<String> {
    let url = format!(
        "ws://127.0.0.1:{}{prefix}api/kernels/{id}/channels?session_id=e2e",
        hub.public
    );
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .expect("ws request");
    request.headers_mut().insert(
        "Authorization",
        format!("token {token}").parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.ok()?;
    let msg_id = uuid::Uuid::new_v4().to_string();
    let execute = json!({
        "header": {"msg_id": msg_id, "username": "e2e", "session": "e2e", "msg_type": "execute_request", "version": "5.3", "date": "2026-01-01T00:00:00Z"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": false, "store_history": false, "user_expressions": {}, "allow_stdin": false, "stop_on_error": true},
        "buffers": [],
    });
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        execute.to_string(),
    ))
    .await
    .ok()?;
    let read = async {
        let mut out = String::new();
        while let Some(Ok(msg)) = ws.next().await {
            let tokio_tungstenite::tungstenite::Message::Text(text) = msg else {
                continue;
            };
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if v["parent_header"]["msg_id"] != json!(msg_id) {
                continue;
            }
            match v["header"]["msg_type"].as_str() {
                Some("stream") => out.push_str(v["content"]["text"].as_str().unwrap_or("")),
                Some("error") => panic!("kernel error: {}", v["content"]),
                Some("status") if v["content"]["execution_state"] == "idle" && !out.is_empty() => {
                    break
                }
                _ => {}
            }
        }
        out
    };
    tokio::time::timeout(limit, read).await.ok()
}
