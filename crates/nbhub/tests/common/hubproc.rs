//! The whole system as a user meets it: the `nbhub` binary with its managed `nbhub-proxy`, and
//! the real `jupyterhub-singleuser` from the test venv. The hub binds port 0 and says which port
//! it got; the proxy listens on free ports. Everything it starts is killed when it is dropped,
//! even after the hub itself was killed with -9.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nbhub_testkit::{free_port, ChildGuard};

pub const ADMIN: &str = "e2e-admin-service-token";
pub const PASSWORD: &str = "pw";

pub struct HubProc {
    pub dir: nbhub_testkit::TempDir,
    pub config_path: PathBuf,
    pub public: u16,
    /// The hub's own port: 0 until the first start reads it from the hub's output.
    pub hub_port: u16,
    pub api_port: u16,
    pub hub: Option<ChildGuard>,
    pub venv: PathBuf,
    /// More environment for the hub process (e.g. `JUPYTERHUB_CRYPT_KEY`), read at each start.
    pub env: Vec<(String, String)>,
    /// The config's `[hub] base_url` without its last `/` (`""` for `/`), before every path.
    pub base_path: String,
}

/// A binary of this workspace next to the test executable's target directory.
pub fn workspace_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?; // target/debug/deps/x → target/debug
    let path = dir.join(name);
    path.exists().then_some(path)
}

/// Finds the built `nbhub-proxy`; a missing one fails under CI=true and skips loudly otherwise.
pub fn require_proxy_binary() -> Option<PathBuf> {
    let found = workspace_binary("nbhub-proxy");
    if found.is_none() {
        nbhub_testkit::missing_part(
            "the nbhub-proxy binary (target/<profile>/nbhub-proxy)",
            "cargo build --workspace --bins (scripts/test.sh does)",
        );
    }
    found
}

/// The real parts a real-binary hub needs: the venv (with `jupyterhub-singleuser`) and the
/// built `nbhub-proxy`. A missing one fails under CI=true and skips loudly otherwise (None).
pub fn real_parts() -> Option<(PathBuf, PathBuf)> {
    let venv = nbhub_testkit::require_venv()?;
    let proxy = require_proxy_binary()?;
    Some((venv, proxy))
}

/// A started real-binary hub with `opts`, or None (loudly) when a real part is missing.
pub async fn launch(opts: Options) -> Option<HubProc> {
    let (venv, proxy) = real_parts()?;
    Some(HubProc::started(venv, &proxy, opts).await)
}

#[derive(Default)]
pub struct Options {
    pub extra_toml: String,
    pub services: String,
    pub cmd_prefix: Vec<String>,
    /// Use an external proxy (that the test starts) with this token instead of a managed one.
    pub external_proxy_token: Option<String>,
    /// Run servers as Slurm jobs, with this `[slurm]` section (jobs run as the users' own
    /// Unix accounts, so the server gets no `--allow-root`).
    pub slurm: Option<String>,
    /// Run servers as Slurm jobs on several systems: these `[[systems]]` tables (instead of
    /// `slurm`).
    pub systems: Option<String>,
    /// More `[authenticator]` keys (e.g. `kind = "generic-oauth"` and its provider).
    pub authenticator: String,
    /// The ports must be known before the hub runs (an identity provider started first is
    /// told the hub's public callback URL): they are picked free rather than bound as 0.
    pub ports_known_in_advance: bool,
    /// More variables of `[spawner] environment` (beside `PATH`), e.g. `MODULEPATH`.
    pub spawner_env: Vec<(String, String)>,
    /// More `[proxy]` keys (e.g. `hub_wait = 2`).
    pub proxy_toml: String,
}

impl Options {
    /// The defaults with more `[[services]]`/`[[roles]]` TOML.
    pub fn services(toml: impl Into<String>) -> Options {
        Options {
            services: toml.into(),
            ..Options::default()
        }
    }
}

impl HubProc {
    /// [`HubProc::new`], then [`HubProc::start`].
    pub async fn started(venv: PathBuf, proxy: &Path, opts: Options) -> HubProc {
        let mut hub = HubProc::new(venv, proxy, opts);
        hub.start().await;
        hub
    }

    /// Writes the config; `start` runs the hub.
    pub fn new(venv: PathBuf, proxy: &Path, opts: Options) -> HubProc {
        let dir = nbhub_testkit::temp_dir_world_readable();
        // The hub and its managed proxy bind port 0 and the hub says which ports they got
        // (read back in `start`), so no port is picked here that another test could take
        // first. An external proxy the test starts itself, or an identity provider that must
        // know the hub's public URL, needs the ports before the hub runs: those are picked free.
        let (hub_port, public, api_port) =
            if opts.external_proxy_token.is_some() || opts.ports_known_in_advance {
                (free_port(), free_port(), free_port())
            } else {
                (0, 0, 0)
            };
        let singleuser = venv.join("bin/jupyterhub-singleuser").display().to_string();
        let mut cmd: Vec<String> = opts.cmd_prefix.clone();
        cmd.push(singleuser);
        let slurm_jobs = opts.slurm.is_some() || opts.systems.is_some();
        let args = if nbhub_testkit::is_root() && !slurm_jobs {
            "[\"--allow-root\"]"
        } else {
            "[]"
        };
        let spawner_kind = if slurm_jobs { "slurm" } else { "local" };
        let kind_section = match (&opts.slurm, &opts.systems) {
            (_, Some(systems)) => systems.clone(),
            // The test cluster's nodes are this machine: servers listen on loopback only.
            (Some(slurm), None) if !slurm.contains("bind_ip") => {
                format!("[slurm]\nbind_ip = \"127.0.0.1\"\n{slurm}")
            }
            (Some(slurm), None) => format!("[slurm]\n{slurm}"),
            (None, None) => "[local]\nswitch_user = false".to_string(),
        };
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let proxy_section = match &opts.external_proxy_token {
            Some(token) => format!("kind = \"external\"\nauth_token = \"{token}\""),
            None => format!("command = [\"{}\"]", proxy.display()),
        };
        let path_env = format!(
            "{}:{}",
            venv.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let more_env: String = opts
            .spawner_env
            .iter()
            .map(|(k, v)| format!(", {k} = {v:?}"))
            .collect();
        let config = format!(
            r#"
[hub]
bind_url = "http://127.0.0.1:{public}"
hub_bind_url = "http://127.0.0.1:{hub_port}"
data_dir = "{data}"
allow_named_servers = true
slow_spawn_timeout = 30
slow_stop_timeout = 30
log_level = "debug"
{extra}

[authenticator]
password = "{PASSWORD}"
allow_all = true
{authenticator}

[spawner]
kind = "{spawner_kind}"
cmd = {cmd:?}
args = {args}
poll_interval = 1
environment = {{ PATH = "{path_env}"{more_env} }}

{kind_section}

[proxy]
api_url = "http://127.0.0.1:{api_port}"
{proxy_section}
{proxy_toml}

[[services]]
name = "e2e-admin"
api_token = "{ADMIN}"

[[roles]]
name = "e2e-admin-role"
scopes = ["admin:users", "admin:servers", "tokens", "list:users", "read:users", "proxy"]
services = ["e2e-admin"]
{services}
"#,
            data = data.display(),
            extra = opts.extra_toml,
            authenticator = opts.authenticator,
            services = opts.services,
            proxy_toml = opts.proxy_toml,
        );
        let config_path = dir.path().join("nbhub.toml");
        std::fs::write(&config_path, config).expect("write config");
        HubProc {
            dir,
            config_path,
            public,
            hub_port,
            api_port,
            hub: None,
            venv,
            env: Vec::new(),
            base_path: String::new(),
        }
    }

    /// A hub run from a configuration written elsewhere (e.g. by `nbhub import-config`),
    /// unchanged but for what must differ on a test machine, given as `NBHUB_SECTION__KEY`
    /// overrides: ports picked by the system, a data dir of its own with SQLite, this
    /// build's proxy, and `overrides`. The fixture's admin service and its role are appended
    /// to the file, so that the test can use the API. Started.
    pub async fn from_toml(
        venv: PathBuf,
        proxy: &Path,
        toml: &str,
        overrides: &[(&str, String)],
    ) -> HubProc {
        let dir = nbhub_testkit::temp_dir_world_readable();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let config = format!(
            "{toml}\n# The test's own admin service.\n[[services]]\nname = \"e2e-admin\"\napi_token = \"{ADMIN}\"\n\n\
             [[roles]]\nname = \"e2e-admin-role\"\nscopes = [\"admin:users\", \"admin:servers\", \"tokens\", \"list:users\", \"read:users\", \"read:services\", \"read:roles\", \"proxy\"]\nservices = [\"e2e-admin\"]\n"
        );
        let config_path = dir.path().join("nbhub.toml");
        std::fs::write(&config_path, config).expect("write config");
        let mut env: Vec<(String, String)> = [
            ("NBHUB_HUB__BIND_URL", "http://127.0.0.1:0".to_owned()),
            ("NBHUB_HUB__HUB_BIND_URL", "http://127.0.0.1:0".to_owned()),
            ("NBHUB_HUB__DATA_DIR", data.display().to_string()),
            ("NBHUB_HUB__DB_URL", String::new()),
            ("NBHUB_PROXY__API_URL", "http://127.0.0.1:0".to_owned()),
            (
                "NBHUB_PROXY__COMMAND",
                format!("[{:?}]", proxy.display().to_string()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(overrides.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let base_path = nbhub::config::Config::from_toml_str(toml, "the config")
            .map(|c| c.hub.base_url.as_str().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        let mut hub = HubProc {
            dir,
            config_path,
            public: 0,
            hub_port: 0,
            api_port: 0,
            hub: None,
            venv,
            env,
            base_path,
        };
        hub.start().await;
        hub
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn public_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}{path}", self.public, self.base_path)
    }

    fn hub_command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nbhub"));
        cmd.arg("--config")
            .arg(&self.config_path)
            .current_dir(self.dir.path())
            .env_remove("JUPYTERHUB_CRYPT_KEY")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs the hub expecting it to refuse to start: its output once it has exited.
    pub async fn start_refused(&self) -> String {
        let mut guard = ChildGuard::spawn("nbhub", self.hub_command()).expect("start nbhub");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while guard.try_wait().is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the hub started although it should have refused: {}",
                guard.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let status = guard.try_wait().expect("exited");
        assert!(!status.success(), "the hub exited 0: {}", guard.output());
        // The readers may still hold the last lines.
        tokio::time::sleep(Duration::from_millis(100)).await;
        guard.output().to_string()
    }

    /// Starts the hub and waits until the proxy routes to it.
    pub async fn start(&mut self) {
        let cmd = self.hub_command();
        let guard = ChildGuard::spawn("nbhub", cmd).expect("start nbhub");
        let line = guard
            .wait_for_line(
                |l| l.contains("listening on") && l.contains("public URL"),
                Duration::from_secs(30),
            )
            .await;
        self.hub = Some(guard);
        // `nbhub … listening on http://H (public URL http://P/, proxy API http://A)`
        let port_after = |what: &str| {
            let at = line
                .find(what)
                .unwrap_or_else(|| panic!("{what} in {line}"));
            nbhub_testkit::port_in_line(&line[at..]).unwrap_or_else(|| panic!("{what}: {line}"))
        };
        let (port, public, api) = (
            port_after("listening on"),
            port_after("public URL"),
            port_after("proxy API"),
        );
        if self.hub_port == 0 {
            // A restart binds the same ports again: the proxy (adopted, not restarted) and
            // the running servers know the hub by them.
            (self.hub_port, self.public, self.api_port) = (port, public, api);
            let config = std::fs::read_to_string(&self.config_path).expect("read config");
            let config = config
                .replace(
                    "hub_bind_url = \"http://127.0.0.1:0\"",
                    &format!("hub_bind_url = \"http://127.0.0.1:{port}\""),
                )
                .replace(
                    "bind_url = \"http://127.0.0.1:0\"",
                    &format!("bind_url = \"http://127.0.0.1:{public}\""),
                )
                .replace(
                    "api_url = \"http://127.0.0.1:0\"",
                    &format!("api_url = \"http://127.0.0.1:{api}\""),
                );
            std::fs::write(&self.config_path, config).expect("write config");
        }
        assert_eq!(
            (port, public, api),
            (self.hub_port, self.public, self.api_port),
            "the hub's and the proxy's ports: {line}"
        );
        let url = self.public_url("/hub/api/");
        let routed = || async {
            let r = nbhub_testkit::http_get(&url).await.ok()?;
            (r.status == 200).then_some(())
        };
        let failure = || format!("the hub never answered through the proxy: {}", self.log());
        super::wait_until(Duration::from_secs(30), routed, failure).await;
    }

    /// The test's directory: the config, the data dir, the hub's log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The hub's output so far (for failure messages).
    pub fn log(&self) -> String {
        self.hub
            .as_ref()
            .map(|h| h.output().to_string())
            .unwrap_or_default()
    }

    pub fn kill9_hub(&mut self) {
        if let Some(mut h) = self.hub.take() {
            let pid = h.pid() as i32;
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            h.kill();
        }
    }

    /// Stops the hub as a service manager does: SIGTERM, and waits for it to exit (the
    /// managed proxy keeps running).
    pub async fn sigterm_hub(&mut self) {
        if let Some(mut h) = self.hub.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(h.pid() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            h.wait_exit(Duration::from_secs(30)).await;
        }
    }

    pub fn proxy_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.data_dir().join("nbhub-proxy.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Every process started for this hub: found by the hub API URL in its environment.
    fn our_processes(&self) -> Vec<i32> {
        let marker = format!("127.0.0.1:{}{}/hub/api", self.hub_port, self.base_path);
        let proxy_marker = format!("127.0.0.1:{}{}/hub/error", self.hub_port, self.base_path);
        let mut pids = Vec::new();
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                // Servers and services carry the hub API URL in their environment; the proxy
                // names the hub in its --error-target.
                if String::from_utf8_lossy(&env).contains(&marker)
                    || String::from_utf8_lossy(&cmdline).contains(&proxy_marker)
                {
                    pids.push(pid);
                }
            }
        }
        pids
    }
}

impl Drop for HubProc {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, killpg, Signal};
        use nix::unistd::Pid;
        self.kill9_hub();
        if let Some(pid) = self.proxy_pid() {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        for pid in self.our_processes() {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

impl super::Hub for HubProc {
    fn base_url(&self) -> String {
        self.public_url("")
    }
    fn password(&self) -> String {
        PASSWORD.into()
    }
    fn admin_token(&self) -> &str {
        ADMIN
    }
}

/// Calls the hub API (through the proxy) with the admin service token.
pub async fn admin(
    hub: &HubProc,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, String) {
    super::request(hub, method, path, ADMIN, body).await
}

/// The model of a running or starting server (`""`: the default one); `None` once stopped.
pub async fn server_model(hub: &HubProc, user: &str, server: &str) -> Option<serde_json::Value> {
    let (s, body) = admin(hub, reqwest::Method::GET, &format!("/users/{user}"), None).await;
    assert_eq!(s, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let model = v["servers"].get(server).cloned();
    model.filter(|m| !m.is_null())
}

/// Waits until the server is ready and returns its model; fails with the hub's log.
pub async fn wait_ready(hub: &HubProc, user: &str, server: &str, secs: u64) -> serde_json::Value {
    let ready = || async {
        server_model(hub, user, server)
            .await
            .filter(|m| m["ready"] == serde_json::json!(true))
    };
    let failure = || {
        format!(
            "{user}/{server} never became ready in {secs} s\n{}",
            hub.log()
        )
    };
    super::wait_until(Duration::from_secs(secs), ready, failure).await
}
