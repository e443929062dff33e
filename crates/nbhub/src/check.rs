//! `nbhub --check`: the configuration is read and validated as the hub would at start-up
//! (types, keys, references between sections, the spawner's own sections) without starting
//! anything, and with `--check=setup` this machine is asked too: the spawner's commands and
//! paths (Slurm's, a prefix's server, a container runtime), the database, the proxy's
//! program, the template folders and other files the config names. Nothing is written: no
//! database is created or migrated, no folder made.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{AuthenticatorKind, Config, ProxyKind};

/// How far `--check` goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Level {
    /// The configuration only.
    Config,
    /// The configuration and this machine.
    Setup,
}

/// What is wrong, one line each; empty when all is well. The configuration itself was
/// already loaded (its errors, with key and line, come from [`Config::load`]).
pub async fn problems(config: &Config, level: Level) -> Vec<String> {
    let built = match crate::build_spawner(config) {
        Ok(built) => built,
        // The spawner's sections are checked when it is built: nothing below makes sense
        // without it.
        Err(e) => return vec![format!("{e:#}")],
    };
    if level == Level::Config {
        return Vec::new();
    }
    let mut found = Vec::new();
    for (section, slurm) in &built.slurm {
        found.extend(
            slurm
                .check_setup()
                .into_iter()
                .map(|p| format!("{section}: {p}")),
        );
    }
    found.extend(data_dir(&config.hub.data_dir));
    found.extend(database(config).await);
    found.extend(proxy_program(config));
    found.extend(files(config));
    found
}

/// The data folder exists and is writable, or can be made.
fn data_dir(dir: &Path) -> Option<String> {
    let existing = dir
        .ancestors()
        .find(|d| d.exists())
        .unwrap_or(Path::new("/"));
    let writable = nix::unistd::access(existing, nix::unistd::AccessFlags::W_OK).is_ok();
    (!writable).then(|| {
        format!(
            "key `hub.data_dir`: {} cannot be written by this account ({})",
            dir.display(),
            existing.display()
        )
    })
}

/// The database answers a query. SQLite's file is not created: a missing one is fine (the
/// hub makes it), but its folder must be there or makeable.
async fn database(config: &Config) -> Option<String> {
    use sqlx::Connection;
    if config.hub.db_url.is_empty() {
        return None;
    }
    let url = config.hub.db_url.as_str();
    if url.starts_with("sqlite:") {
        let path = url
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:")
            .split('?')
            .next()
            .unwrap_or_default();
        let folder = Path::new(path).parent().unwrap_or(Path::new("."));
        return (!folder.as_os_str().is_empty() && !folder.is_dir()).then(|| {
            format!(
                "key `hub.db_url`: the SQLite file's folder {} does not exist",
                folder.display()
            )
        });
    }
    sqlx::any::install_default_drivers();
    let shown = crate::db::redact_url(url);
    let asked = async {
        let mut conn = sqlx::AnyConnection::connect(url).await?;
        sqlx::query("SELECT 1").execute(&mut conn).await?;
        conn.close().await
    };
    match tokio::time::timeout(Duration::from_secs(10), asked).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!(
            "key `hub.db_url`: cannot use the database {shown}: {e}"
        )),
        Err(_) => Some(format!(
            "key `hub.db_url`: the database {shown} did not answer within 10 s"
        )),
    }
}

/// A managed proxy's program can be run.
fn proxy_program(config: &Config) -> Option<String> {
    if config.proxy.kind != ProxyKind::Managed {
        return None;
    }
    let (program, key) = match config.proxy.command.first() {
        Some(p) => (PathBuf::from(p), "key `proxy.command`"),
        None => (
            crate::proxy::default_proxy_binary(),
            "the managed proxy (nbhub-proxy next to nbhub)",
        ),
    };
    runnable(&program)
        .is_none()
        .then(|| format!("{key}: {} is not a program here", program.display()))
}

/// `program` as the hub would run it: a path, or a name on `PATH`.
fn runnable(program: &Path) -> Option<PathBuf> {
    let executable =
        |p: &Path| p.is_file() && nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok();
    if program.components().count() > 1 {
        return executable(program).then(|| program.to_path_buf());
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(program))
        .find(|p| executable(p))
}

/// The other files and programs the config names.
fn files(config: &Config) -> Vec<String> {
    let mut found = Vec::new();
    for (i, dir) in config.hub.template_paths.iter().enumerate() {
        if !dir.is_dir() {
            found.push(format!(
                "key `hub.template_paths[{i}]`: {} is not a folder",
                dir.display()
            ));
        }
    }
    if !config.hub.logo_file.as_os_str().is_empty() && !config.hub.logo_file.is_file() {
        found.push(format!(
            "key `hub.logo_file`: {} is not a file",
            config.hub.logo_file.display()
        ));
    }
    let a = &config.authenticator;
    if !a.client_secret_file.as_os_str().is_empty()
        && std::fs::File::open(&a.client_secret_file).is_err()
    {
        found.push(format!(
            "key `authenticator.client_secret_file`: {} cannot be read",
            a.client_secret_file.display()
        ));
    }
    if a.kind == AuthenticatorKind::Pam {
        let service = Path::new("/etc/pam.d").join(&a.pam_service);
        if !service.exists() {
            found.push(format!(
                "key `authenticator.pam_service`: there is no {}",
                service.display()
            ));
        }
    }
    for (i, s) in config.services.iter().enumerate() {
        if let Some(program) = s.command.first() {
            if runnable(Path::new(program)).is_none() {
                found.push(format!(
                    "key `services[{i}].command`: {program} is not a program here"
                ));
            }
        }
    }
    found
}
