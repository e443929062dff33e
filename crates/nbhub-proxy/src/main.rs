//! nbhub-proxy: a configurable-http-proxy compatible reverse proxy. Thin: flags, tracing,
//! open files limit, sockets (bound, from systemd, or taken over from a running proxy), ready
//! line, run until SIGTERM/SIGINT or until handed over to a new process.
use anyhow::{Context, Result};
use clap::Parser;
use nbhub_proxy::{handover, Args, Ended, Listeners, ProxyConfig, Start};
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
    let (listeners, start) = sockets(&config).await?;
    // Taking over, the pid file is written once the old process drains (run_with): until
    // then the old one is the proxy, and it goes on being it if this one fails.
    if let (Some(p), None) = (&config.pid_file, &config.take_over) {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing --pid-file {}", p.display()))?;
    }
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    // The ready line goes out bare (no log prefix) so that the hub and tests can match it.
    eprintln!("{}", listeners.ready_line(&config)?);
    let pid_file = config.pid_file.clone();
    let control = config.handover_socket.clone();
    let taking_over = config.take_over.is_some();
    let r = nbhub_proxy::run_with(config, listeners, start, async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
    .await;
    // Handed over, the pid file and the control socket are the new process's; a taker that
    // failed leaves them to the process it did not take over from.
    let ours = match &r {
        Ok(Ended::Stopped) => true,
        Ok(Ended::HandedOver) => false,
        Err(_) => !taking_over,
    };
    if ours {
        for p in [pid_file, control].into_iter().flatten() {
            let _ = std::fs::remove_file(p);
        }
    }
    r.map(drop)
}

/// The listening sockets, and what the process starts with: taken over from a running proxy
/// (its routes too), else from systemd or bound as the flags say, with the routes file's
/// routes and a control socket for later upgrades.
async fn sockets(config: &ProxyConfig) -> Result<(Listeners, Start)> {
    if let Some(path) = &config.take_over {
        let t = handover::take_over(path)?;
        let start = Start {
            routes: t.routes,
            control: t.control,
            link: Some(t.link),
        };
        return Ok((t.listeners, start));
    }
    let mut start = Start::default();
    let listeners = match handover::from_systemd()? {
        Some(sd) => {
            start.control = sd.control;
            let bound = |l: Option<std::net::TcpListener>| {
                l.map(tokio::net::TcpListener::from_std).transpose()
            };
            Listeners::bind_missing(
                config,
                bound(sd.public)?,
                bound(sd.api)?,
                bound(sd.metrics)?,
                bound(sd.redirect)?,
            )
            .await?
        }
        None => Listeners::bind(config).await?,
    };
    if start.control.is_none() {
        start.control = config
            .handover_socket
            .as_deref()
            .map(handover::bind_control)
            .transpose()?;
    }
    if let Some(f) = &config.routes_file {
        start.routes = nbhub_proxy::changes::read_routes_file(f)?;
        tracing::info!("serving {} routes from {}", start.routes.len(), f.display());
    }
    Ok((listeners, start))
}
