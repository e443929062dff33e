//! The Slurm spawner's setup checks, for the hub to report at start-up: programs every user
//! must be able to run (jobs run as the users), Slurm's client and configuration, and nodes
//! whose address is not a loopback one (a hub that listens on loopback only cannot be reached
//! from them). Apart from the spawner's work: these run once, read files and resolve names.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{parse, SlurmSpawner};

impl SlurmSpawner {
    /// Problems that keep jobs from working, for the hub to report at start-up: the server
    /// command (and its `#!` interpreter) and the job script's Python must be readable and
    /// executable by every user, `sbatch` must exist, `SLURM_CONF` must be readable by all.
    pub fn check_setup(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.commands.ssh().is_some() {
            // Everything below is about this machine; the system's commands run on its login
            // nodes, which the first start-up query reaches (or not, as its health says).
            return problems;
        }
        let cmd = &self.spawner.cmd[0];
        check_everyone_runs(cmd, "[spawner] cmd", &mut problems);
        check_everyone_runs(&self.slurm.python, "[slurm] python", &mut problems);
        let sbatch = self.commands.program("sbatch");
        if resolve(&sbatch.display().to_string()).is_none() {
            problems.push(format!(
                "sbatch not found ({}): install Slurm's client or set [slurm] bin_dir",
                sbatch.display()
            ));
        }
        self.check_environments(&mut problems);
        let conf = self.commands.slurm_conf();
        if !conf.is_empty() {
            match std::fs::metadata(conf) {
                Ok(m) if m.permissions().mode() & 0o004 != 0 => {}
                Ok(_) => problems.push(format!(
                    "[slurm] slurm_conf {conf} is not readable by every user (jobs are submitted as the users)"
                )),
                Err(e) => problems.push(format!("[slurm] slurm_conf {conf}: {e}")),
            }
        }
        problems
    }

    /// What can be seen from here of `[[slurm.environments]]`: a prefix's server must be
    /// runnable by every user, a container runtime on `PATH`, an image file present, Lmod's
    /// shell setup present for modules (jobs run on the nodes: this machine stands for them).
    fn check_environments(&self, problems: &mut Vec<String>) {
        for e in &self.slurm.environments {
            let key = format!("environment '{}'", e.name);
            if !e.prefix.is_empty() {
                let server = format!(
                    "{}/bin/{}",
                    e.prefix.trim_end_matches('/'),
                    super::session::SERVER_PROGRAM
                );
                check_everyone_runs(&server, &format!("{key} (prefix)"), problems);
            }
            if let Some(c) = &e.container {
                let program = c.runtime.program();
                if resolve(program).is_none() {
                    problems.push(format!(
                        "{key}: the container runtime {program} is not on PATH"
                    ));
                }
                if c.image.starts_with('/') && !Path::new(&c.image).exists() {
                    problems.push(format!("{key}: the image {} does not exist", c.image));
                }
            }
            if !e.modules.is_empty() && !LMOD_INIT.iter().any(|f| Path::new(f).exists()) {
                problems.push(format!(
                    "{key}: Lmod is not set up here (none of {} exists), so `module load` may fail in the jobs",
                    LMOD_INIT.join(", ")
                ));
            }
        }
    }

    /// The nodes whose address is not a loopback one, as `scontrol show node` lists them
    /// (`[slurm] node_address` when that is a template); `Err` when Slurm cannot be asked.
    pub async fn remote_nodes(&self) -> Result<Vec<String>, String> {
        if self.tunnel.is_some() {
            // The hub reaches these nodes through the login node, whatever their addresses.
            return Ok(Vec::new());
        }
        let out = self
            .commands
            .query("scontrol", &["show", "node", "-o"])
            .await
            .map_err(|e| e.to_string())?;
        if !out.ok {
            return Err(parse::slurm_error(&out.stderr));
        }
        let mut remote = Vec::new();
        for line in out.stdout.lines() {
            let fields = parse::parse_kv(line);
            let Some(name) = fields.get("NodeName") else {
                continue;
            };
            let addr = if self.slurm.node_address == "NodeAddr" {
                fields
                    .get("NodeAddr")
                    .cloned()
                    .unwrap_or_else(|| name.clone())
            } else {
                self.slurm.node_address.replace("{node}", name)
            };
            if !is_loopback_host(&addr).await {
                remote.push(name.clone());
            }
        }
        Ok(remote)
    }
}

/// The files that give a shell Lmod's `module` (the job script reads the first it finds).
pub(crate) const LMOD_INIT: [&str; 3] = [
    "/etc/profile.d/lmod.sh",
    "/usr/share/lmod/lmod/init/bash",
    "/etc/profile.d/modules.sh",
];

/// `program` as a path: itself when it has a `/`, else found on PATH.
fn resolve(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

/// Adds a problem when `program` (and the interpreter of its `#!` line) is not readable and
/// executable by every user, up every parent directory.
fn check_everyone_runs(program: &str, key: &str, problems: &mut Vec<String>) {
    let Some(path) = resolve(program) else {
        problems.push(format!("{key}: {program} not found"));
        return;
    };
    let mut check = |path: &Path, what: &str| {
        let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        match std::fs::metadata(&real) {
            Ok(m) if m.permissions().mode() & 0o005 == 0o005 => {}
            Ok(m) => problems.push(format!(
                "{key}: {what} {} (mode {:o}) is not readable and executable by every user; \
                 jobs run as the users",
                real.display(),
                m.permissions().mode() & 0o777
            )),
            Err(e) => problems.push(format!("{key}: {what} {}: {e}", real.display())),
        }
        for dir in real.ancestors().skip(1) {
            if let Ok(m) = std::fs::metadata(dir) {
                if m.permissions().mode() & 0o001 == 0 {
                    problems.push(format!(
                        "{key}: other users cannot enter {} (mode {:o}), so they cannot run {}",
                        dir.display(),
                        m.permissions().mode() & 0o777,
                        real.display()
                    ));
                    break;
                }
            }
        }
    };
    check(&path, "the program");
    let head = std::fs::read(&path)
        .ok()
        .map(|b| b.into_iter().take(256).collect::<Vec<u8>>())
        .unwrap_or_default();
    if head.starts_with(b"#!") {
        let line = String::from_utf8_lossy(&head[2..]);
        let line = line.lines().next().unwrap_or("");
        let mut words = line.split_whitespace();
        if let Some(interp) = words.next() {
            let interp = if interp.ends_with("/env") {
                words.find(|w| !w.starts_with('-')).and_then(resolve)
            } else {
                Some(PathBuf::from(interp))
            };
            match interp {
                Some(i) => check(&i, "its interpreter"),
                None => problems.push(format!(
                    "{key}: the interpreter in the #! line of {} was not found",
                    path.display()
                )),
            }
        }
    }
}

/// Whether `host` (a name or an address) resolves only to loopback addresses.
async fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_matches(['[', ']']);
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    match tokio::net::lookup_host((bare, 0)).await {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SlurmConfig, SpawnerConfig};

    #[test]
    fn setup_check_names_unusable_programs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let script = dir.path().join("serve");
        std::fs::write(&script, "#!/usr/bin/python3\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let spawner = SlurmSpawner::new(
            SpawnerConfig {
                cmd: vec![script.display().to_string()],
                ..Default::default()
            },
            SlurmConfig {
                bin_dir: "/nonexistent".into(),
                ..Default::default()
            },
            Path::new("/tmp"),
        )
        .unwrap();
        let problems = spawner.check_setup();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("cannot enter") && p.contains("[spawner] cmd")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("sbatch not found")),
            "{problems:?}"
        );
    }

    #[test]
    fn setup_check_names_unusable_environments() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("env");
        std::fs::create_dir_all(prefix.join("bin")).unwrap();
        let server = prefix.join("bin/jupyterhub-singleuser");
        std::fs::write(&server, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&server, std::fs::Permissions::from_mode(0o700)).unwrap();
        let spawner = SlurmSpawner::new(
            SpawnerConfig {
                cmd: vec!["/bin/true".into()],
                ..Default::default()
            },
            SlurmConfig {
                environments: vec![
                    crate::EnvironmentConfig {
                        name: "mine".into(),
                        prefix: prefix.display().to_string(),
                        ..Default::default()
                    },
                    crate::EnvironmentConfig {
                        name: "boxed".into(),
                        container: Some(crate::ContainerConfig {
                            image: "/nonexistent/lab.sif".into(),
                            runtime: crate::ContainerRuntime::Charliecloud,
                        }),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
            Path::new("/tmp"),
        )
        .unwrap();
        let problems = spawner.check_setup();
        let has = |words: &[&str]| problems.iter().any(|p| words.iter().all(|w| p.contains(w)));
        assert!(
            has(&[
                "environment 'mine' (prefix)",
                "not readable and executable by every user"
            ]),
            "{problems:?}"
        );
        assert!(
            has(&[
                "environment 'boxed'",
                "the image /nonexistent/lab.sif does not exist"
            ]),
            "{problems:?}"
        );
        if resolve("ch-run").is_none() {
            assert!(has(&["ch-run is not on PATH"]), "{problems:?}");
        }
    }
}
