//! The packages (scripts/package.sh) as a site installs them: the `.deb` into a clean Debian 12
//! (a chroot made from a cached mmdebstrap tarball, with no apt lists: nothing comes from a
//! registry), the commands of docs/admin-guide.md run there, the hub and its proxy started with
//! their units' own `ExecStart` lines (as the units' `User=`, with their environment, the proxy
//! with its socket unit's sockets through `systemd-socket-activate`) answering `/hub/api/`, and
//! `dpkg -r` keeping the config (`--purge` removing it, not the data); the `.rpm`'s file list
//! and config files.
//!
//! Needs root (chroot, mounts), `systemd-socket-activate`, `rpm`, and the Debian base tarball
//! that scripts/test-env.sh makes (`NBHUB_DEBIAN_BASE`); cargo-deb and cargo-generate-rpm are
//! installed by scripts/package.sh itself when missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nbhub_testkit::{free_port, missing_part, which, workspace_root, ChildGuard};

/// Where the admin guide is, relative to the workspace root; its ```sh blocks are run here.
const GUIDE: &str = "docs/admin-guide.md";
/// Where the packages are copied inside the chroot (the guide's install command runs there).
const PKG_DIR: &str = "/root/nbhub-packages";

/// Runs `cmd`, panics with its output unless it succeeds; returns stdout.
fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}): {cmd:?}\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The real parts this test needs, or `None` after a loud skip (a failure under CI=true).
fn requirements() -> Option<PathBuf> {
    if !nix::unistd::geteuid().is_root() {
        missing_part(
            "root (chroot and mounts for the clean Debian 12)",
            "scripts/test.sh as root",
        );
        return None;
    }
    for tool in ["systemd-socket-activate", "rpm", "chroot", "mount"] {
        if which(tool).is_none() {
            missing_part(&format!("`{tool}` on PATH"), "scripts/test-env.sh");
            return None;
        }
    }
    let base = std::env::var_os("NBHUB_DEBIAN_BASE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".nbhub-test/debian12-base-systemd-sudo.tar.zst"));
    if !base.is_file() {
        missing_part(
            &format!("the Debian 12 base tarball {} (mmdebstrap)", base.display()),
            "scripts/test-env.sh",
        );
        return None;
    }
    Some(base)
}

/// A clean Debian 12 tree with /proc mounted; unmounted and removed when dropped.
struct Chroot {
    dir: tempfile::TempDir,
    mounted: Vec<PathBuf>,
}

impl Chroot {
    fn new(base: &Path) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("nbhub-deb12-")
            .tempdir_in("/var/tmp")
            .expect("temporary folder for the chroot");
        run(
            "extracting the Debian 12 base",
            Command::new("tar")
                .arg("--zstd")
                .arg("-xf")
                .arg(base)
                .arg("-C")
                .arg(dir.path()),
        );
        let mut chroot = Chroot {
            dir,
            mounted: Vec::new(),
        };
        let proc = chroot.path("/proc");
        run(
            "mounting /proc in the chroot",
            Command::new("mount")
                .args(["-t", "proc", "proc"])
                .arg(&proc),
        );
        chroot.mounted.push(proc);
        chroot
    }

    /// A path of the chroot, as the host sees it.
    fn path(&self, inside: &str) -> PathBuf {
        self.dir.path().join(inside.trim_start_matches('/'))
    }

    /// `chroot DIR argv…` as root, with a clean environment.
    fn command(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new("chroot");
        cmd.arg(self.dir.path())
            .args(argv)
            .env_clear()
            .env("PATH", SYSTEMD_PATH)
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    }

    fn read(&self, inside: &str) -> String {
        std::fs::read_to_string(self.path(inside))
            .unwrap_or_else(|e| panic!("read {inside} in the chroot: {e}"))
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        for m in self.mounted.iter().rev() {
            let ok = Command::new("umount")
                .arg(m)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                // Busy (a process still in it): detach it, so the folder can go.
                let _ = Command::new("umount").arg("-l").arg(m).status();
            }
        }
    }
}

/// The PATH systemd gives services.
const SYSTEMD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A unit file with its drop-ins (`/etc/systemd/system/<unit>.d/*.conf`) applied as systemd
/// applies them: later assignments add to a list, an empty one clears it.
#[derive(Debug, Default)]
struct Unit {
    /// `section.key` → every value in order.
    keys: BTreeMap<String, Vec<String>>,
}

impl Unit {
    fn load(chroot: &Chroot, name: &str) -> Unit {
        let mut unit = Unit::default();
        unit.parse(&chroot.read(&format!("/lib/systemd/system/{name}")));
        let dropins = chroot.path(&format!("/etc/systemd/system/{name}.d"));
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dropins)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        files.sort();
        for f in files {
            unit.parse(&std::fs::read_to_string(&f).expect("read a drop-in"));
        }
        unit
    }

    fn parse(&mut self, text: &str) {
        let mut section = String::new();
        let mut logical = String::new();
        for raw in text.lines() {
            let line = raw.trim();
            if logical.is_empty() && (line.starts_with('#') || line.starts_with(';')) {
                continue;
            }
            if let Some(cont) = line.strip_suffix('\\') {
                logical.push_str(cont);
                logical.push(' ');
                continue;
            }
            logical.push_str(line);
            let full = std::mem::take(&mut logical);
            let full = full.trim();
            if full.is_empty() {
                continue;
            }
            if full.starts_with('[') {
                section = full.trim_matches(['[', ']']).to_owned();
                continue;
            }
            let (key, value) = full.split_once('=').expect("a unit line key=value");
            let values = self
                .keys
                .entry(format!("{section}.{}", key.trim()))
                .or_default();
            let value = value.trim();
            if value.is_empty() {
                values.clear();
            } else {
                values.push(value.to_owned());
            }
        }
    }

    fn all(&self, key: &str) -> &[String] {
        self.keys.get(key).map_or(&[], Vec::as_slice)
    }

    fn one(&self, key: &str) -> &str {
        match self.all(key) {
            [v] => v,
            other => panic!("{key}: expected one value, got {other:?}"),
        }
    }

    /// `ExecStart=` as an argument vector (this test's units use no quoting or prefixes).
    fn exec_start(&self) -> Vec<String> {
        let line = self.one("Service.ExecStart");
        assert!(
            !line.contains(['"', '\'', '$']) && !line.starts_with(['-', '@', '+', '!']),
            "ExecStart uses quoting, variables or prefixes this test does not parse: {line}"
        );
        line.split_whitespace().map(str::to_owned).collect()
    }

    /// The service's environment: `Environment=` and `EnvironmentFile=` (read in the chroot).
    fn environment(&self, chroot: &Chroot) -> Vec<(String, String)> {
        let mut env = vec![("PATH".to_owned(), SYSTEMD_PATH.to_owned())];
        for file in self.all("Service.EnvironmentFile") {
            let (optional, file) = match file.strip_prefix('-') {
                Some(f) => (true, f),
                None => (false, file.as_str()),
            };
            let Ok(text) = std::fs::read_to_string(chroot.path(file)) else {
                assert!(optional, "EnvironmentFile {file} is missing in the chroot");
                continue;
            };
            for line in text.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (k, v) = line
                    .split_once('=')
                    .expect("KEY=VALUE in an environment file");
                env.push((k.to_owned(), v.to_owned()));
            }
        }
        for assignments in self.all("Service.Environment") {
            for a in assignments.split_whitespace() {
                let (k, v) = a.split_once('=').expect("Environment=KEY=VALUE");
                env.push((k.to_owned(), v.to_owned()));
            }
        }
        env
    }

    /// `chroot --userspec=… --groups=…` for the unit's `User=`/`Group=`, with the user's
    /// groups (systemd calls initgroups for User=) and `SupplementaryGroups=`, read from the
    /// chroot's own /etc/passwd and /etc/group; then its `WorkingDirectory=`.
    fn as_its_user(&self, chroot: &Chroot) -> Vec<String> {
        let user = self.one("Service.User");
        let passwd = chroot.read("/etc/passwd");
        let fields: Vec<&str> = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f[0] == user)
            .unwrap_or_else(|| panic!("no user {user} in the chroot's /etc/passwd"))
            .clone();
        let (uid, mut gid) = (fields[2].to_owned(), fields[3].to_owned());
        let groups = chroot.read("/etc/group");
        let gid_of = |name: &str| {
            groups
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f[0] == name)
                .unwrap_or_else(|| panic!("no group {name} in the chroot"))[2]
                .to_owned()
        };
        if let [g] = self.all("Service.Group") {
            gid = gid_of(g);
        }
        let mut supplementary: Vec<String> = groups
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .filter(|f| f.len() == 4 && f[3].split(',').any(|m| m == user))
            .map(|f| f[2].to_owned())
            .collect();
        for names in self.all("Service.SupplementaryGroups") {
            supplementary.extend(names.split_whitespace().map(gid_of));
        }
        supplementary.push(gid.clone());
        let mut argv = vec![
            // By path: systemd-socket-activate runs it with the unit's PATH.
            which("chroot")
                .expect("chroot on PATH")
                .display()
                .to_string(),
            format!("--userspec={uid}:{gid}"),
            format!("--groups={}", supplementary.join(",")),
            chroot.dir.path().display().to_string(),
        ];
        if let [dir] = self.all("Service.WorkingDirectory") {
            argv.extend(["/usr/bin/env".to_owned(), format!("--chdir={dir}")]);
        }
        argv
    }
}

/// The ```sh blocks of the admin guide, in order, as one script.
fn guide_commands() -> String {
    let guide = std::fs::read_to_string(workspace_root().join(GUIDE)).expect("read the guide");
    let mut script = String::new();
    let mut inside = false;
    for line in guide.lines() {
        if inside {
            if line.trim_start().starts_with("```") {
                inside = false;
            } else {
                script.push_str(line);
                script.push('\n');
            }
        } else if line.trim() == "```sh" {
            inside = true;
        }
    }
    assert!(!inside, "{GUIDE}: a ```sh block is not closed");
    script
}

#[test]
fn deb_installs_on_debian12_and_its_units_start_the_hub() {
    let base = nbhub_testkit::require!(requirements());
    let began = Instant::now();
    let root = workspace_root();
    let out = tempfile::tempdir().expect("a folder for the packages");

    // The packages, from the debug binaries the tests run anyway (no release build).
    let listed = run(
        "scripts/package.sh",
        Command::new(root.join("scripts/package.sh"))
            .args(["--profile", "dev", "--no-build", "--fast", "--out"])
            .arg(out.path()),
    );
    let find = |suffix: &str| -> PathBuf {
        listed
            .lines()
            .map(PathBuf::from)
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap_or_else(|| panic!("package.sh printed no *{suffix}: {listed}"))
    };
    let (deb, rpm) = (find(".deb"), find(".rpm"));
    eprintln!("packages built in {:?}", began.elapsed());

    // The .rpm: its files, and the config marked as one (kept on upgrades and removal).
    let files = run("rpm -qpl", Command::new("rpm").arg("-qpl").arg(&rpm));
    for f in [
        "/usr/bin/nbhub",
        "/usr/bin/nbhub-proxy",
        "/etc/nbhub/nbhub.toml",
        "/usr/lib/nbhub/setup",
        "/usr/lib/systemd/system/nbhub.service",
        "/usr/lib/systemd/system/nbhub-proxy.service",
        "/usr/lib/systemd/system/nbhub-proxy.socket",
        "/usr/share/nbhub/templates/page.html",
        "/usr/share/nbhub/static/css/nbhub.css",
        "/usr/share/doc/nbhub/admin-guide.md",
    ] {
        assert!(
            files.lines().any(|l| l == f),
            "the .rpm lacks {f}; it holds:\n{files}"
        );
    }
    let configs = run("rpm -qpc", Command::new("rpm").arg("-qpc").arg(&rpm));
    assert_eq!(
        configs.trim(),
        "/etc/nbhub/nbhub.toml",
        "the .rpm's config files"
    );
    let scripts = run(
        "rpm -qp --scripts",
        Command::new("rpm").args(["-qp", "--scripts"]).arg(&rpm),
    );
    assert!(
        scripts.contains("/usr/lib/nbhub/setup"),
        "the .rpm's %post does not run the set-up: {scripts}"
    );

    // A clean Debian 12, the .deb copied in; the guide's commands install it and check it.
    let chroot = Chroot::new(&base);
    std::fs::create_dir_all(chroot.path(PKG_DIR)).unwrap();
    std::fs::copy(&deb, chroot.path(PKG_DIR).join(deb.file_name().unwrap())).unwrap();
    let guide = guide_commands();
    assert!(
        guide.contains("apt-get install ./nbhub_*.deb"),
        "{GUIDE}: no ```sh block installs the package"
    );
    let script = format!("set -euxo pipefail\ncd {PKG_DIR}\n{guide}");
    run(
        "the admin guide's commands in the chroot",
        &mut chroot.command(&["/bin/bash", "-c", &script]),
    );
    let status = run(
        "dpkg-query",
        &mut chroot.command(&["dpkg-query", "-W", "-f", "${Status}", "nbhub"]),
    );
    assert_eq!(status, "install ok installed");
    eprintln!("installed, guide run, after {:?}", began.elapsed());

    // Free ports, set the way a site would: drop-ins for the socket unit and the hub's unit.
    let (public, api, hub) = (free_port(), free_port(), free_port());
    let dropin = |unit: &str, text: String| {
        let dir = chroot.path(&format!("/etc/systemd/system/{unit}.d"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ports.conf"), text).unwrap();
    };
    dropin(
        "nbhub-proxy.socket",
        format!("[Socket]\nListenStream=\nListenStream=127.0.0.1:{public}\nListenStream=127.0.0.1:{api}\n"),
    );
    dropin(
        "nbhub.service",
        format!(
            "[Service]\nEnvironment=NBHUB_HUB__BIND_URL=http://127.0.0.1:{public} \
             NBHUB_HUB__HUB_BIND_URL=http://127.0.0.1:{hub} NBHUB_PROXY__API_URL=http://127.0.0.1:{api}\n"
        ),
    );
    // Not only its exit status: an unknown key or a bad value is only a warning there.
    let verify = chroot
        .command(&[
            "systemd-analyze",
            "verify",
            "/lib/systemd/system/nbhub.service",
            "/lib/systemd/system/nbhub-proxy.service",
            "/lib/systemd/system/nbhub-proxy.socket",
        ])
        .output()
        .expect("run systemd-analyze verify in the chroot");
    assert!(
        verify.status.success() && verify.stdout.is_empty() && verify.stderr.is_empty(),
        "systemd-analyze verify (with the drop-ins) is not clean: {}\n{}{}",
        verify.status,
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );

    // Hardening: the proxy's unit scores "OK" (below 2.0 of 10) in systemd's own exposure
    // rating; the hub's must leave setuid programs working (sudo for Slurm submission).
    run(
        "systemd-analyze security of nbhub-proxy.service",
        &mut chroot.command(&[
            "systemd-analyze",
            "security",
            "--offline=true",
            "--threshold=20",
            "--no-pager",
            "/lib/systemd/system/nbhub-proxy.service",
        ]),
    );

    // The proxy: its socket unit's sockets passed as systemd passes them (LISTEN_FDS, in
    // ListenStream order), its unit's ExecStart run as its User= in the chroot. Like systemd,
    // systemd-socket-activate starts it on the first connection (the hub's first API call).
    let socket = Unit::load(&chroot, "nbhub-proxy.socket");
    let proxy_unit = Unit::load(&chroot, "nbhub-proxy.service");
    let mut activate = Command::new("systemd-socket-activate");
    activate.env_clear();
    for listen in socket.all("Socket.ListenStream") {
        activate.arg("-l").arg(listen);
    }
    for (k, v) in proxy_unit.environment(&chroot) {
        activate.arg("-E").arg(format!("{k}={v}"));
    }
    activate
        .args(proxy_unit.as_its_user(&chroot))
        .args(proxy_unit.exec_start());
    let proxy =
        ChildGuard::spawn("nbhub-proxy (socket-activated)", activate).expect("start the proxy");

    // The hub: its unit's ExecStart, as its User=, with its environment (drop-in included).
    let hub_unit = Unit::load(&chroot, "nbhub.service");
    assert_eq!(
        hub_unit.one("Service.NoNewPrivileges"),
        "no",
        "sudo must work"
    );
    for implies_nnp in [
        "SystemCallFilter",
        "RestrictAddressFamilies",
        "PrivateDevices",
        "RestrictSUIDSGID",
        "CapabilityBoundingSet",
    ] {
        assert!(
            hub_unit.all(&format!("Service.{implies_nnp}")).is_empty(),
            "nbhub.service sets {implies_nnp}=, which keeps sudo from changing user"
        );
    }
    assert_eq!(proxy_unit.one("Service.NoNewPrivileges"), "yes");
    let argv = [hub_unit.as_its_user(&chroot), hub_unit.exec_start()].concat();
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(hub_unit.environment(&chroot));
    let hub_proc = ChildGuard::spawn("nbhub (its unit's ExecStart)", cmd).expect("start the hub");
    hub_proc.wait_for_line_blocking(|l| l.contains("listening on"), Duration::from_secs(30));

    // Through the proxy's public socket: the hub's route is there and the API answers.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = format!("http://127.0.0.1:{public}/hub/api/");
    let answer = rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut pause = Duration::from_millis(20);
        loop {
            // Until the hub has added its route, the proxy answers 404.
            match nbhub_testkit::http_get(&url).await {
                Ok(r) if r.status == 200 => break r,
                last if tokio::time::Instant::now() > deadline => {
                    panic!(
                        "{url} did not answer 200 within 30 s; last: {last:?}\nhub:\n{}\nproxy:\n{}",
                        hub_proc.output(),
                        proxy.output()
                    )
                }
                _ => {}
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    });
    let body: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON from /hub/api/");
    // JupyterHub's version the API speaks, then this build's: "6.1.1+nbhub.0.1.0".
    let version = body["version"].as_str().unwrap_or_default();
    assert!(
        version.ends_with(concat!("+nbhub.", env!("CARGO_PKG_VERSION"))),
        "/hub/api/ through the proxy: {body}"
    );
    // Each runs as the user nbhub, as its unit says.
    for (name, child) in [("nbhub", &hub_proc), ("nbhub-proxy", &proxy)] {
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.pid())).unwrap();
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(!uid.contains("\t0\t"), "{name} runs as root: {uid}");
    }
    eprintln!(
        "the hub answered through the proxy after {:?}",
        began.elapsed()
    );
    drop(hub_proc);
    drop(proxy);

    // dpkg -r: the binaries go, the config stays.
    run(
        "dpkg -r nbhub",
        &mut chroot.command(&["dpkg", "-r", "nbhub"]),
    );
    assert!(
        !chroot.path("/usr/bin/nbhub").exists(),
        "dpkg -r left /usr/bin/nbhub"
    );
    assert!(
        chroot.path("/etc/nbhub/nbhub.toml").is_file(),
        "dpkg -r removed /etc/nbhub/nbhub.toml"
    );
    let status = run(
        "dpkg-query",
        &mut chroot.command(&["dpkg-query", "-W", "-f", "${Status}", "nbhub"]),
    );
    assert_eq!(status, "deinstall ok config-files");

    // dpkg --purge: the config and the token go; the hub's data (users, tokens) stays.
    run(
        "dpkg --purge nbhub",
        &mut chroot.command(&["dpkg", "--purge", "nbhub"]),
    );
    for gone in ["/etc/nbhub/nbhub.toml", "/etc/nbhub/proxy.env"] {
        assert!(!chroot.path(gone).exists(), "dpkg --purge left {gone}");
    }
    assert!(
        chroot.path("/var/lib/nbhub/nbhub.sqlite").is_file(),
        "dpkg --purge removed the hub's database"
    );
    eprintln!("whole test: {:?}", began.elapsed());
}
