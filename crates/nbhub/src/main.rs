//! The `nbhub` command: run the hub, print a config, mint a token.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nbhub::config::{self, Config};

#[derive(Parser)]
#[command(
    name = "nbhub",
    version,
    about = "A multi-user hub for Jupyter, built for HPC centres"
)]
struct Cli {
    /// The configuration file (default: ./nbhub.toml if present).
    #[arg(short = 'f', long = "config", global = true)]
    config: Option<PathBuf>,
    /// Read page templates from disk on every request (for editing them; debug builds always do).
    #[arg(long, global = true)]
    template_reload: bool,
    /// Load and validate the configuration, say what is wrong (with its key and line) and
    /// exit; `--check=setup` also checks this machine (commands, paths, Slurm, the database).
    #[arg(
        long,
        value_enum,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "config",
        value_name = "WHAT"
    )]
    check: Option<nbhub::check::Level>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print a complete, commented configuration with every key at its default.
    GenerateConfig,
    /// Print a new API token for USER (as `jupyterhub token`).
    Token {
        user: String,
        /// A note to remember what the token is for.
        #[arg(long)]
        note: Option<String>,
        /// Seconds until the token expires (default: never).
        #[arg(long)]
        expires_in: Option<u64>,
        /// Scopes of the token (default: everything the user may do).
        #[arg(long, num_args = 1..)]
        scopes: Vec<String>,
    },
    /// Translate a JupyterHub config (jupyterhub_config.py, read without running it) into
    /// nbhub's TOML (docs/migrating.md). Every setting not carried over is listed, with its
    /// line and why, at the top of the output and on stderr. Exit status: 0 all translated,
    /// 2 something left out, 1 the file could not be read (a syntax error names its line).
    ImportConfig {
        /// The JupyterHub config file.
        file: PathBuf,
        /// Where to write nbhub's TOML (default: standard output).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
    /// Hand the running managed proxy over to a new process of the proxy binary (changed or
    /// not): no connection refused, websockets and routes kept (docs/proxy.md).
    UpgradeProxy,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.template_reload {
        nbhub::pages::set_template_reload(true);
    }
    if let Some(Command::GenerateConfig) = cli.command {
        print!("{}", config::generate_config());
        return ExitCode::SUCCESS;
    }
    if let Some(Command::ImportConfig { file, output }) = &cli.command {
        return import_config(file, output.as_deref());
    }
    let path = cli.config.clone().or_else(|| {
        let default = PathBuf::from("nbhub.toml");
        default.exists().then_some(default)
    });
    let config = match Config::load(path.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nbhub: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = std::env::var("RUST_LOG")
        .unwrap_or_else(|_| format!("nbhub={0},tower_http={0}", config.hub.log_level.as_str()));
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nbhub: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(level) = cli.check {
        let shown = path
            .as_deref()
            .map_or("the defaults".to_owned(), |p| p.display().to_string());
        let problems = runtime.block_on(nbhub::check::problems(&config, level));
        if problems.is_empty() {
            let what = match level {
                nbhub::check::Level::Config => "the configuration is valid",
                nbhub::check::Level::Setup => {
                    "the configuration is valid and this machine has what it needs"
                }
            };
            println!("nbhub: {shown}: {what}");
            return ExitCode::SUCCESS;
        }
        for p in &problems {
            eprintln!("nbhub: {p}");
        }
        eprintln!("nbhub: {shown}: {} problem(s)", problems.len());
        return ExitCode::from(2);
    }
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Token {
                user,
                note,
                expires_in,
                scopes,
            }) => mint_token(config, &user, note, expires_in, scopes).await,
            Some(Command::UpgradeProxy) => upgrade_proxy(config).await,
            _ => serve(config).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nbhub: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `nbhub import-config`: exit 0 when everything was translated, 2 when something was
/// left out, 1 when the file could not be read or translated.
fn import_config(file: &std::path::Path, output: Option<&std::path::Path>) -> ExitCode {
    let shown = file.display().to_string();
    let source = match std::fs::read_to_string(file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nbhub import-config: cannot read {shown}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let imported = match nbhub::import::import(&source, &shown) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("nbhub import-config: {e}");
            return ExitCode::FAILURE;
        }
    };
    let written = match output {
        Some(path) => std::fs::write(path, &imported.toml)
            .map_err(|e| format!("cannot write {}: {e}", path.display())),
        None => {
            use std::io::Write;
            std::io::stdout()
                .write_all(imported.toml.as_bytes())
                .map_err(|e| format!("cannot write the output: {e}"))
        }
    };
    if let Err(e) = written {
        eprintln!("nbhub import-config: {e}");
        return ExitCode::FAILURE;
    }
    let report = &imported.report;
    for n in &report.notes {
        eprintln!("nbhub import-config: note: {n}");
    }
    for n in &report.left_out {
        eprintln!("nbhub import-config: not translated: {n}");
    }
    if report.left_out.is_empty() {
        eprintln!("nbhub import-config: {shown}: every setting was translated");
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "nbhub import-config: {shown}: {} setting(s) not translated (listed above and at the top of the output)",
            report.left_out.len()
        );
        ExitCode::from(2)
    }
}

async fn serve(mut config: Config) -> anyhow::Result<()> {
    use anyhow::Context;
    let began = std::time::Instant::now();
    let addr = config.hub.hub_bind_url.socket_addr_string();
    // Bound before init: with port 0 in hub_bind_url the system picks a free port, and the
    // proxy's default and error targets and the servers' API URL must name the one it picked.
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    if config.hub.hub_bind_url.port() == 0 {
        let mut url = config.hub.hub_bind_url.url().clone();
        let _ = url.set_port(Some(local.port()));
        config.hub.hub_bind_url =
            config::HttpUrl::parse(url.as_str()).map_err(anyhow::Error::msg)?;
    }
    // Likewise the managed proxy's ports, when they are 0: it starts first, on the ports the
    // system picks, and the config names them from then on.
    nbhub::proxy::start_on_picked_ports(&mut config)
        .await
        .context("cannot start the proxy on the ports the system picks")?;
    let public = config.hub.bind_url.to_string();
    // With several proxies, the first (as the hub's `client`).
    let proxy_api = config
        .proxy
        .api_urls
        .first()
        .unwrap_or(&config.proxy.api_url)
        .to_string();
    let state = nbhub::init(config).await?;
    tracing::info!(
        "nbhub {} listening on http://{local} (public URL {public}, proxy API {proxy_api})",
        env!("CARGO_PKG_VERSION")
    );
    // The hub answers at once; the proxy and the adoption of running servers follow (a start
    // asked for meanwhile waits for the adoption).
    state.supervisor.adoption_pending();
    let background = state.clone();
    tokio::spawn(async move {
        let started = nbhub::start_background(&background).await;
        background
            .supervisor
            .metrics
            .hub_startup
            .observe(&[], began.elapsed());
        if let Err(e) = started {
            // A hub without its background duties (adoption, route sync, polling) would
            // serve users while never noticing dead servers or a restarted proxy: stop.
            tracing::error!("cannot start the hub's background tasks: {e:#}; stopping");
            std::process::exit(1);
        }
    });
    nbhub::run(state.clone(), listener, shutdown_signal()).await?;
    // POST /hub/api/shutdown may override both defaults.
    let asked = state.shutdown.choice();
    if asked.servers.unwrap_or(state.config.hub.cleanup_servers) {
        tracing::info!("cleanup_servers: stopping every user server");
        state.supervisor.stop_all().await;
    }
    if asked.proxy.unwrap_or(state.config.proxy.cleanup) {
        state.supervisor.proxy.stop_managed().await;
    }
    tracing::info!("nbhub stopped");
    Ok(())
}

async fn upgrade_proxy(config: Config) -> anyhow::Result<()> {
    let proxy = nbhub::proxy::Proxy::new(&config)?;
    let pid = proxy.upgrade_managed().await?;
    println!("the proxy was handed over to a new process, pid {pid}");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn mint_token(
    config: Config,
    user: &str,
    note: Option<String>,
    expires_in: Option<u64>,
    scopes: Vec<String>,
) -> anyhow::Result<()> {
    use anyhow::{bail, Context};
    use nbhub::db;
    let name = nbhub::names::normalize_username(user);
    if !nbhub::names::is_valid_name(&name) {
        bail!("{}", nbhub::names::invalid_name_message("user", user));
    }
    for s in &scopes {
        nbhub::auth::scopes::validate_scope(s).with_context(|| format!("--scopes {s}"))?;
    }
    let state = nbhub::init(config).await?;
    let user = match db::users::get(&state.db, &name).await? {
        Some(u) => u,
        None => bail!("no user named {name}; users are created when they first log in, or with POST /hub/api/users"),
    };
    let token = db::tokens::generate();
    let scopes = if scopes.is_empty() {
        vec!["inherit".to_string()]
    } else {
        scopes
    };
    let expires_at = expires_in.map(|s| db::now_micros() + (s as i64) * 1_000_000);
    db::tokens::insert(
        &state.db,
        &db::tokens::NewToken {
            owner: db::tokens::Owner::User(user.id),
            token: &token,
            rounds: db::tokens::GENERATED_ROUNDS,
            client_id: db::tokens::API_CLIENT_ID,
            session_id: None,
            note: note
                .as_deref()
                .unwrap_or("Requested via nbhub token command"),
            scopes: &scopes,
            expires_at,
        },
    )
    .await?;
    println!("{token}");
    Ok(())
}
