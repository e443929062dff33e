//! The `nbhub` binary as an admin uses it: generate-config, start, config errors, token.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nbhub_testkit::free_port;

const NBHUB: &str = env!("CARGO_BIN_EXE_nbhub");

/// Kills the hub when the test ends, whatever happens, and the proxy it started (which runs
/// in a process group of its own and would otherwise outlive the hub, as designed). The proxy
/// is found by its `--error-target`, which names the hub's port.
struct Guard(Child, u16);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        kill_proxies_of(self.1);
    }
}

/// The proxies a hub on `hub_port` started, found by their `--error-target`.
fn proxies_of(hub_port: u16) -> Vec<i32> {
    let marker = format!("127.0.0.1:{hub_port}/hub/error");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(&marker)
        })
        .collect()
}

/// Kills the proxies of the hub on this port when the test ends.
struct ProxiesGuard(u16);

impl Drop for ProxiesGuard {
    fn drop(&mut self) {
        kill_proxies_of(self.0);
    }
}

fn kill_proxies_of(hub_port: u16) {
    // A proxy forked just before the hub died may not have exec'd yet: look a few times.
    for _ in 0..5 {
        for pid in proxies_of(hub_port) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `GET url` with a tiny HTTP/1.0 client until it answers, up to `deadline`.
fn first_answer(url_host: &str, path: &str, deadline: Duration) -> Option<(Duration, String)> {
    use std::io::{Read, Write};
    let start = Instant::now();
    while start.elapsed() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(url_host) {
            let _ =
                s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {url_host}\r\n\r\n").as_bytes());
            let mut out = String::new();
            if s.read_to_string(&mut out).is_ok() && out.starts_with("HTTP/1") {
                return Some((start.elapsed(), out));
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

fn generated_config(dir: &std::path::Path) -> std::path::PathBuf {
    let out = Command::new(NBHUB)
        .arg("generate-config")
        .output()
        .expect("run nbhub generate-config");
    assert!(out.status.success());
    let path = dir.join("x.toml");
    std::fs::write(&path, &out.stdout).expect("write config");
    path
}

#[test]
fn generated_config_starts_and_answers_within_300ms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = generated_config(dir.path());
    let port = free_port();
    let start = Instant::now();
    let child = Command::new(NBHUB)
        .args(["--config", config.to_str().expect("utf-8 path")])
        .current_dir(dir.path())
        // The generated file is used unchanged; only the ports are moved off the defaults.
        .env(
            "NBHUB_HUB__HUB_BIND_URL",
            format!("http://127.0.0.1:{port}"),
        )
        .env(
            "NBHUB_HUB__BIND_URL",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .env(
            "NBHUB_PROXY__API_URL",
            format!("http://127.0.0.1:{}", free_port()),
        )
        // No proxy process in this test: only the hub's own start-up is measured.
        .env("NBHUB_PROXY__KIND", "external")
        .env("NBHUB_PROXY__AUTH_TOKEN", "unused-in-this-test")
        .stderr(Stdio::null())
        .spawn()
        .expect("start nbhub");
    let _guard = Guard(child, port);
    let (_, response) = first_answer(
        &format!("127.0.0.1:{port}"),
        "/hub/api/",
        Duration::from_secs(10),
    )
    .expect("nbhub answered GET /hub/api/");
    let elapsed = start.elapsed();
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    assert!(response.contains("\"version\":\"6."), "{response}");
    eprintln!("nbhub answered GET /hub/api/ {elapsed:?} after launch");
    assert!(elapsed <= Duration::from_millis(300), "took {elapsed:?}");
    assert!(
        dir.path().join("nbhub.sqlite").exists(),
        "SQLite database created in data_dir"
    );
}

fn config_error(text: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).expect("write");
    let out = Command::new(NBHUB)
        .args(["-f", path.to_str().expect("utf-8")])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "exit status 2 for a bad config");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn config_errors_exit_2_and_name_the_key() {
    let e = config_error("[hub]\nbind_ulr = \"http://127.0.0.1:8000\"\n");
    assert!(
        e.contains("bad.toml, line 2") && e.contains("bind_ulr") && e.contains("expected one of"),
        "{e}"
    );
    let e = config_error("[hub]\nbind_url = \"not a url\"\n");
    assert!(e.contains("hub.bind_url") && e.contains("line 2"), "{e}");
    let e = config_error("[hub]\ncookie_max_age_days = \"14\"\n");
    assert!(
        e.contains("hub.cookie_max_age_days") && e.contains("integer"),
        "{e}"
    );
    let e = config_error("[authenticator]\nkind = \"ldap\"\n");
    assert!(
        e.contains("authenticator.kind") && e.contains("dummy"),
        "{e}"
    );
    let e = config_error("[spawnr]\n");
    assert!(e.contains("spawnr"), "{e}");
    let e = config_error("[hub]\ndb_url = \"mysql://x\"\n");
    assert!(e.contains("hub.db_url"), "{e}");

    // A bad environment override names the variable.
    let out = Command::new(NBHUB)
        .env("NBHUB_HUB__COOKIE_MAX_AGE_DAYS", "many")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("NBHUB_") && e.contains("cookie_max_age_days"),
        "{e}"
    );
}

/// `nbhub --check[=setup] -f FILE`: the exit status and what it printed (stdout, stderr).
fn check(text: &str, what: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("site.toml");
    std::fs::write(
        &path,
        text.replace("{dir}", &dir.path().display().to_string()),
    )
    .expect("write");
    let out = Command::new(NBHUB)
        .args(["-f", path.to_str().expect("utf-8"), what])
        .current_dir(dir.path())
        .output()
        .expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `--check` loads and validates without starting anything or writing a file: a valid config
/// exits 0 and says so; a bad key, and a reference to an entry that is not there, exit 2
/// naming the key and its line; `--check=setup` also finds what this machine lacks (a
/// proxy program, a template folder, a database that does not answer) and names the key.
#[test]
fn check_validates_without_starting_and_setup_checks_the_machine() {
    let (code, out, err) = check("[hub]\ndata_dir = \"{dir}/data\"\n", "--check");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("the configuration is valid"), "{out}");

    let (code, _, err) = check("[hub]\nbind_ulr = \"http://127.0.0.1:8000\"\n", "--check");
    assert_eq!(code, Some(2));
    assert!(
        err.contains("site.toml, line 2") && err.contains("bind_ulr"),
        "{err}"
    );

    let (code, _, err) = check(
        "[spawner]\nkind = \"slurm\"\n[[slurm.interfaces]]\nname = \"x\"\nurl = \"/x\"\nenvironments = [\"nosuch\"]\n",
        "--check",
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("site.toml, line 6: key `slurm.interfaces[0].environments`")
            && err.contains("'nosuch'"),
        "a reference between sections, with its line: {err}"
    );

    let setup = "[hub]\ndata_dir = \"{dir}/data\"\ntemplate_paths = [\"{dir}/no-templates\"]\n\
                 db_url = \"postgresql://nobody:secret@127.0.0.1:1/nbhub\"\n\
                 [proxy]\ncommand = [\"no-such-proxy-program\"]\n";
    let (code, out, err) = check(setup, "--check");
    assert_eq!(code, Some(0), "the config alone is valid: {out}{err}");
    let (code, _, err) = check(setup, "--check=setup");
    assert_eq!(code, Some(2), "{err}");
    for (key, words) in [
        ("hub.template_paths[0]", "is not a folder"),
        ("hub.db_url", "cannot use the database"),
        (
            "proxy.command",
            "no-such-proxy-program is not a program here",
        ),
    ] {
        assert!(
            err.contains(&format!("key `{key}`")) && err.contains(words),
            "--check=setup names {key}: {err}"
        );
    }
    assert!(!err.contains("secret"), "the password is not shown: {err}");
    assert!(err.contains("3 problem(s)"), "{err}");
}

#[test]
fn version_flag() {
    let out = Command::new(NBHUB).arg("--version").output().expect("run");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("nbhub {}", env!("CARGO_PKG_VERSION"))
    );
}

/// Writes `dir/nbhub.toml` for a hub on `port` with no proxy of its own, plus `extra`.
fn config_without_proxy(dir: &std::path::Path, port: u16, extra: &str) -> std::path::PathBuf {
    let config = dir.join("nbhub.toml");
    std::fs::write(
        &config,
        format!(
            "[hub]\nhub_bind_url = \"http://127.0.0.1:{port}\"\nbind_url = \"http://127.0.0.1:{}\"\n\
             [proxy]\nkind = \"external\"\nauth_token = \"unused\"\napi_url = \"http://127.0.0.1:{}\"\n{extra}",
            free_port(),
            free_port()
        ),
    )
    .expect("write");
    config
}

/// Starts `nbhub --config config` (listening on `port`) and waits until it answers.
fn start_hub(config: &std::path::Path, dir: &std::path::Path, port: u16) -> Guard {
    let child = Command::new(NBHUB)
        .arg("--config")
        .arg(config)
        .current_dir(dir)
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let guard = Guard(child, port);
    first_answer(
        &format!("127.0.0.1:{port}"),
        "/hub/api/",
        Duration::from_secs(10),
    )
    .expect("hub up");
    guard
}

#[test]
fn token_command_mints_a_working_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = config_without_proxy(
        dir.path(),
        port,
        "[authenticator]\nadmin_users = [\"root\"]\n",
    );
    let cfg = config.to_str().expect("utf-8");
    let out = Command::new(NBHUB)
        .args([
            "token",
            "--config",
            cfg,
            "root",
            "--note",
            "cli",
            "--expires-in",
            "600",
        ])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        token.len() == 32 && token.chars().all(|c| c.is_ascii_hexdigit()),
        "{token}"
    );
    let out = Command::new(NBHUB)
        .args(["token", "--config", cfg, "nobody"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user named nobody"));
    let out = Command::new(NBHUB)
        .args(["token", "--config", cfg, "root", "--scopes", "bogus"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());

    let _guard = start_hub(&config, dir.path(), port);
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(
        format!("GET /hub/api/user HTTP/1.0\r\nAuthorization: token {token}\r\n\r\n").as_bytes(),
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    assert!(
        out.contains(" 200 OK") && out.contains("\"name\":\"root\""),
        "{out}"
    );
}

/// The built `nbhub-proxy` next to `nbhub`; missing, the test fails under CI=true and skips
/// loudly otherwise.
fn proxy_binary() -> Option<std::path::PathBuf> {
    let path = std::path::Path::new(NBHUB).with_file_name("nbhub-proxy");
    if !path.exists() {
        nbhub_testkit::missing_part(
            "the nbhub-proxy binary (target/<profile>/nbhub-proxy)",
            "cargo build --workspace --bins (scripts/test.sh does)",
        );
        return None;
    }
    Some(path)
}

/// A hub in `dir` with a managed proxy (`proxy`, `[proxy]` keys `extra`), answering through
/// the proxy: the hub, its public and hub ports, and its config file.
fn managed_hub(
    dir: &std::path::Path,
    proxy: &std::path::Path,
    extra: &str,
) -> (nbhub_testkit::ChildGuard, u16, u16, std::path::PathBuf) {
    let (public, hub, api) = (free_port(), free_port(), free_port());
    let config = dir.join("nbhub.toml");
    std::fs::write(
        &config,
        format!(
            "[hub]\nbind_url = \"http://127.0.0.1:{public}\"\nhub_bind_url = \"http://127.0.0.1:{hub}\"\n\
             log_level = \"debug\"\n\
             [proxy]\napi_url = \"http://127.0.0.1:{api}\"\ncommand = [\"{}\"]\n{extra}\
             check_running_interval = 1\n",
            proxy.display()
        ),
    )
    .expect("write config");
    let mut cmd = Command::new(NBHUB);
    cmd.arg("--config").arg(&config).current_dir(dir);
    let nbhub = nbhub_testkit::ChildGuard::spawn("nbhub", cmd).expect("start nbhub");
    // Up once the proxy routes to the hub (before that, it answers 404 itself).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = first_answer(
            &format!("127.0.0.1:{public}"),
            "/hub/api/",
            Duration::from_secs(1),
        );
        if answer.is_some_and(|(_, a)| a.contains(" 200 ")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the hub never answered through the proxy:\n{}",
            nbhub.output().text()
        );
    }
    (nbhub, public, hub, config)
}

/// `nbhub upgrade-proxy` hands the managed proxy over to a new process: the hub answers
/// through the proxy all along, the pid file names the new process, the old one drains and
/// exits, and the hub does not start a proxy of its own meanwhile.
#[test]
fn upgrade_proxy_hands_the_managed_proxy_over() {
    let Some(proxy) = proxy_binary() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (nbhub, public, hub, config) = managed_hub(dir.path(), &proxy, "");
    let _guard = ProxiesGuard(hub);
    let old = proxies_of(hub);
    assert_eq!(old.len(), 1, "{}", nbhub.output().text());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut failed = Vec::new();
            let mut n = 0;
            // One attempt each: a refused connection or a cut answer counts.
            let once = || -> std::io::Result<String> {
                use std::io::{Read, Write};
                let mut s = std::net::TcpStream::connect(("127.0.0.1", public))?;
                s.write_all(b"GET /hub/api/ HTTP/1.0\r\nHost: x\r\n\r\n")?;
                let mut out = String::new();
                s.read_to_string(&mut out)?;
                Ok(out)
            };
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                match once() {
                    Ok(a) if a.starts_with("HTTP/1.1 200 ") || a.starts_with("HTTP/1.0 200 ") => {}
                    other => failed.push(other.map_err(|e| e.to_string())),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (n, failed)
        })
    };
    let out = Command::new(NBHUB)
        .arg("upgrade-proxy")
        .arg("--config")
        .arg(&config)
        .current_dir(dir.path())
        .output()
        .expect("nbhub upgrade-proxy");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let new_pid: i32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {text:?}"));
    assert_ne!(new_pid, old[0]);
    let pid_file = std::fs::read_to_string(dir.path().join("nbhub-proxy.pid")).unwrap_or_default();
    assert_eq!(pid_file.trim(), new_pid.to_string());
    // The old process drains (the hub's keep-alive connections close on their next answer or
    // idle timeout) and exits; the new one is the only proxy.
    let deadline = Instant::now() + Duration::from_secs(20);
    while proxies_of(hub) != vec![new_pid] {
        assert!(
            Instant::now() < deadline,
            "proxies {:?} after the upgrade to {new_pid}",
            proxies_of(hub)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (n, failed) = load.join().expect("load");
    assert!(
        n > 10 && failed.is_empty(),
        "{} of {n} requests failed: {failed:?}",
        failed.len()
    );
    let log = nbhub.output().text();
    assert_eq!(
        log.matches("started the managed proxy").count(),
        1,
        "the hub started a proxy of its own:\n{log}"
    );
}

/// A hub that starts while its managed proxy (left running by the hub before it) is of
/// another version than the proxy command hands the proxy over to the command's binary. The
/// other version is a wrapper that says 9.9.9 to `--version` and runs the same binary.
#[test]
fn a_hub_upgrades_a_proxy_of_another_version_at_start() {
    let Some(proxy) = proxy_binary() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut first, _public, hub, config) = managed_hub(dir.path(), &proxy, "");
    let _guard = ProxiesGuard(hub);
    let old = proxies_of(hub);
    assert_eq!(old.len(), 1, "{}", first.output().text());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    let _ = first.kill();

    let wrapper = dir.path().join("nbhub-proxy-next");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'nbhub-proxy 9.9.9'; exit 0; fi\nexec {} \"$@\"\n",
            proxy.display()
        ),
    )
    .expect("write wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text.replace(&proxy.display().to_string(), &wrapper.display().to_string());
    std::fs::write(&config, text).expect("config");
    let mut cmd = Command::new(NBHUB);
    cmd.arg("--config").arg(&config).current_dir(dir.path());
    let second = nbhub_testkit::ChildGuard::spawn("nbhub", cmd).expect("start nbhub");
    second.wait_for_line_blocking(
        |l| l.contains("the managed proxy was upgraded in place"),
        Duration::from_secs(30),
    );
    let log = second.output().text();
    assert!(log.contains("9.9.9"), "{log}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = proxies_of(hub);
        if now.len() == 1 && now != old {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "proxies {now:?} (before: {old:?})\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_clean_stop_with_cleanup_leaves_no_proxy_behind() {
    let Some(proxy) = proxy_binary() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut nbhub, public, hub, _config) = managed_hub(dir.path(), &proxy, "cleanup = true\n");
    let _proxies = ProxiesGuard(hub);
    assert_eq!(proxies_of(hub).len(), 1, "{}", nbhub.output().text());

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(nbhub.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    while nbhub.try_wait().is_none() {
        assert!(Instant::now() < deadline, "nbhub did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }
    let log = nbhub.output().text();
    assert!(log.contains("nbhub stopped"), "{log}");
    assert_eq!(
        log.matches("started the managed proxy").count(),
        1,
        "the proxy was started again during the stop:\n{log}"
    );
    // A proxy the hub forked as it went would show up within moments: watch for a while.
    let watch_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watch_until {
        let left = proxies_of(hub);
        assert!(left.is_empty(), "proxies {left:?} outlived the hub:\n{log}");
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", public)).is_ok(),
            "the public port {public} is still taken after the hub stopped:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_early_answer_from_the_hub_is_not_destroyed_by_a_reset() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = config_without_proxy(dir.path(), port, "");
    let _guard = start_hub(&config, dir.path(), port);
    // The hub refuses the method before reading the body, then closes the connection.
    let mut request = b"QUERY /hub/api/groups/0/users HTTP/1.1\r\nHost: x\r\n\
                        Content-Length: 100000\r\n\r\n"
        .to_vec();
    request.extend_from_slice(&[b'x'; 100_000]);
    request.extend_from_slice(b"GET /hub/api/ HTTP/1.1\r\nHost: x\r\n\r\n");
    for i in 0..20 {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut w = s.try_clone().expect("clone");
        let request = request.clone();
        let writer = std::thread::spawn(move || {
            w.write_all(&request)?;
            w.shutdown(std::net::Shutdown::Write)
        });
        let mut answer = Vec::new();
        let read = (&s).read_to_end(&mut answer);
        let written = writer.join().expect("join");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 405 "), "try {i}: {answer}");
        // Neither side saw a reset: the hub read what it did not want before closing.
        read.unwrap_or_else(|e| panic!("try {i}: reading the answer: {e}; got {answer}"));
        written.unwrap_or_else(|e| panic!("try {i}: sending the request: {e}"));
    }
}
