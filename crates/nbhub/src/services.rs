//! Managed services: `[[services]]` entries with a `command` are started by the hub with
//! JupyterHub's service environment, and started again if they exit. Services with a `url`
//! get an OAuth client, so they can log users in like single-user servers do.

use std::process::Stdio;
use std::time::Duration;

use crate::config::{Config, ServiceConfig};
use crate::db::{self, tokens, Db};
use crate::proxy::hub_origin;

/// Variables a service inherits from the hub's environment.
const SERVICE_ENV_KEEP: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "HOME",
    "USER",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "TZ",
];

/// Registers OAuth clients and starts every managed service; each runs in a task of its own.
pub async fn start_all(config: &Config, db: &Db) -> anyhow::Result<()> {
    for svc in &config.services {
        let token = service_token(db, svc).await?;
        if !svc.url.is_empty() {
            let prefix = format!("{}services/{}/", config.hub.base_url.as_str(), svc.name);
            db::oauth::upsert_client(
                db,
                &db::oauth::NewClient {
                    identifier: &format!("service-{}", svc.name),
                    description: &format!("Service {}", svc.name),
                    secret: &token,
                    redirect_uri: &format!("{prefix}oauth_callback"),
                    allowed_scopes: &[crate::auth::scopes::service_access_scope(&svc.name)],
                },
            )
            .await?;
        }
        if svc.command.is_empty() {
            continue;
        }
        let env = environment(config, svc, &token);
        let cwd = if svc.cwd.is_empty() {
            config.hub.data_dir.clone()
        } else {
            svc.cwd.clone().into()
        };
        let log_dir = config.hub.data_dir.join("logs");
        std::fs::create_dir_all(&log_dir)?;
        let svc = svc.clone();
        tokio::spawn(async move { supervise(svc, env, cwd, log_dir).await });
    }
    Ok(())
}

/// The service's API token: the configured one, or a fresh one each hub start.
async fn service_token(db: &Db, svc: &ServiceConfig) -> anyhow::Result<String> {
    if !svc.api_token.is_empty() {
        return Ok(svc.api_token.clone());
    }
    let service = db::services::get(db, &svc.name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("service {} missing from the database", svc.name))?;
    let token = tokens::generate();
    for old in tokens::list_for(db, tokens::Owner::Service(service.id)).await? {
        if old.note == "managed service token" {
            tokens::delete(db, old.id).await?;
        }
    }
    tokens::insert(
        db,
        &tokens::NewToken {
            owner: tokens::Owner::Service(service.id),
            token: &token,
            rounds: tokens::GENERATED_ROUNDS,
            client_id: tokens::API_CLIENT_ID,
            session_id: None,
            note: "managed service token",
            scopes: &["inherit".to_string()],
            expires_at: None,
        },
    )
    .await?;
    Ok(token)
}

fn environment(config: &Config, svc: &ServiceConfig, token: &str) -> Vec<(String, String)> {
    let base = config.hub.base_url.as_str();
    let prefix = format!("{base}services/{}/", svc.name);
    let access = serde_json::to_string(&[crate::auth::scopes::service_access_scope(&svc.name)])
        .unwrap_or_default();
    let mut env: Vec<(String, String)> = SERVICE_ENV_KEEP
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_string(), v)))
        .collect();
    let mut set = |k: &str, v: String| env.push((k.to_string(), v));
    set("JUPYTERHUB_SERVICE_NAME", svc.name.clone());
    set("JUPYTERHUB_API_TOKEN", token.to_string());
    set(
        "JUPYTERHUB_API_URL",
        format!("{}{base}hub/api", hub_origin(config)),
    );
    set("JUPYTERHUB_BASE_URL", base.to_string());
    set("JUPYTERHUB_CLIENT_ID", format!("service-{}", svc.name));
    set("JUPYTERHUB_SERVICE_PREFIX", prefix.clone());
    set("JUPYTERHUB_SERVICE_URL", svc.url.clone());
    set(
        "JUPYTERHUB_OAUTH_CALLBACK_URL",
        format!("{prefix}oauth_callback"),
    );
    set("JUPYTERHUB_OAUTH_ACCESS_SCOPES", access.clone());
    set("JUPYTERHUB_OAUTH_SCOPES", access);
    set("JUPYTERHUB_HOST", String::new());
    for (k, v) in &svc.environment {
        env.push((k.clone(), v.clone()));
    }
    env
}

/// Runs a service, restarting it when it exits (waiting longer after quick crashes).
async fn supervise(
    svc: ServiceConfig,
    env: Vec<(String, String)>,
    cwd: std::path::PathBuf,
    log_dir: std::path::PathBuf,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let log_path = log_dir.join(format!("service-{}.log", svc.name));
        let files = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .and_then(|f| Ok((f.try_clone()?, f)));
        let (out, err) = match files {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(service = %svc.name, error = %e, "cannot open the service log");
                return;
            }
        };
        let mut cmd = tokio::process::Command::new(&svc.command[0]);
        cmd.args(&svc.command[1..])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0)
            .kill_on_drop(true);
        let started = tokio::time::Instant::now();
        match cmd.spawn() {
            Ok(mut child) => {
                tracing::info!(service = %svc.name, pid = child.id(), log = %log_path.display(), "started managed service");
                let status = child.wait().await;
                tracing::warn!(service = %svc.name, ?status, "managed service exited; restarting it");
            }
            Err(e) => {
                tracing::error!(service = %svc.name, command = %svc.command[0], error = %e, "cannot start managed service")
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}
