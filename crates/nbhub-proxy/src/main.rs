//! nbhub-proxy: a configurable-http-proxy compatible reverse proxy. Thin: flags, tracing,
//! open files limit, bind, ready line, run until SIGTERM/SIGINT.
use anyhow::{Context, Result};
use clap::Parser;
use nbhub_proxy::{Args, Listeners};
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    nbhub_proxy::mem::tune();
    if let Err(e) = real_main().await {
        eprintln!("nbhub-proxy: error: {e:#}");
        std::process::exit(1);
    }
}

async fn real_main() -> Result<()> {
    let mut args = Args::parse();
    args.auth_token = std::env::var("CONFIGPROXY_AUTH_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    // Unlike CHP, no open API: whoever can reach it could send any user's traffic anywhere.
    if args.auth_token.is_none() {
        anyhow::bail!(
            "CONFIGPROXY_AUTH_TOKEN is not set: the REST API must have a token \
             (JupyterHub and nbhub set one; export CONFIGPROXY_AUTH_TOKEN=<a long random secret>)"
        );
    }
    let config = args.into_config()?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("nbhub_proxy={}", config.log_level))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Every connection is a file descriptor: use all the system allows (as nginx does).
    nbhub_proxy::rlimit::raise_nofile_limit_logged();
    let listeners = Listeners::bind(&config).await?;
    if let Some(p) = &config.pid_file {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing --pid-file {}", p.display()))?;
    }
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    // The ready line goes out bare (no log prefix) so that the hub and tests can match it.
    eprintln!("{}", listeners.ready_line(&config)?);
    let pid_file = config.pid_file.clone();
    let r = nbhub_proxy::run(config, listeners, async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
    .await;
    if let Some(p) = pid_file {
        let _ = std::fs::remove_file(p);
    }
    r
}
