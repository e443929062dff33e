//! The session around the server (issue 23, points 1 to 3): a software environment, an
//! interface and a directory chosen on the form. Environments here are `prefix` ones (a venv
//! the test makes on top of the test venv, and the test venv), Lmod `modules` (Debian's Lmod,
//! module files the test writes) and a Charliecloud `container` (Debian's runtime, an image
//! the test assembles); the other runtimes are covered by the job script's unit tests
//! (`nbhub-spawner`'s `slurm::session`). Interfaces: JupyterLab, Notebook 7 and an app of
//! jupyter-server-proxy the test defines.

use super::*;

use common::get_as;

/// A hub with two prefix environments (`venv`: `prefix`; `other`: the test venv), the
/// interfaces `lab`, `tree` and `hello` (these two only with `venv`), and the directories
/// `work` and `locked` in the user's home.
fn session_hub(p: &Parts, prefix: &Path) -> HubProc {
    let (venv, prefix) = (p.venv.display(), prefix.display());
    slurm_hub(
        p,
        &format!(
            "[[slurm.environments]]\nname = \"venv\"\ntitle = \"A venv of its own\"\nprefix = \"{prefix}\"\n\
             [[slurm.environments]]\nname = \"other\"\nprefix = \"{venv}\"\n\
             [[slurm.interfaces]]\nname = \"lab\"\nurl = \"/lab\"\n\
             [[slurm.interfaces]]\nname = \"tree\"\nurl = \"/tree\"\nenvironments = [\"venv\"]\n\
             [[slurm.interfaces]]\nname = \"hello\"\nurl = \"/hello/\"\nenvironments = [\"venv\"]\n\
             [[slurm.directories]]\nname = \"work\"\npath = \"{{home}}/work\"\n\
             [[slurm.directories]]\nname = \"locked\"\npath = \"{{home}}/locked\"\n"
        ),
    )
}

/// A venv at `dir/env` of its own (its own `sys.prefix`) that reaches the test venv's packages
/// (a `.pth` adds its site-packages), with a `bin/jupyterhub-singleuser` of its own: what a
/// site's prefix is, without installing anything.
fn venv_on_top_of(venv: &Path, dir: &Path) -> PathBuf {
    let prefix = dir.join("env");
    let made = Command::new(venv.join("bin/python"))
        .args(["-m", "venv", "--without-pip"])
        .arg(&prefix)
        .status()
        .expect("python -m venv");
    assert!(made.success());
    let site = |root: &Path| {
        let lib = root.join("lib");
        let python = std::fs::read_dir(&lib)
            .expect("lib")
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .expect("lib/python3.x");
        lib.join(python.file_name()).join("site-packages")
    };
    std::fs::write(
        site(&prefix).join("nbhub-test-venv.pth"),
        format!(
            "import site; site.addsitedir({:?})\n",
            site(venv).display().to_string()
        ),
    )
    .expect("pth");
    // The server extensions the test venv enables (JupyterLab, Notebook 7,
    // jupyter-server-proxy) are enabled in the prefix too, and its data files are the venv's:
    // a site's prefix has them installed.
    let etc = prefix.join("etc");
    std::fs::create_dir_all(&etc).expect("etc");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(venv.join("etc/jupyter"))
        .arg(etc.join("jupyter"))
        .status()
        .expect("cp");
    assert!(copied.success());
    std::fs::create_dir_all(prefix.join("share")).expect("share");
    std::os::unix::fs::symlink(venv.join("share/jupyter"), prefix.join("share/jupyter"))
        .expect("share/jupyter");
    // The app the `hello` interface opens: Python's file server, started by
    // jupyter-server-proxy on a port of its choosing, behind the server's sign-in.
    let hello = json!({"ServerProxy": {"servers": {"hello": {
        "command": [prefix.join("bin/python").display().to_string(),
                    "-m", "http.server", "--bind", "127.0.0.1", "{port}"],
        "timeout": 30,
    }}}});
    // Jupyter Server reads the `.d` folders for which extensions are enabled only: settings go
    // in the prefix's own config file.
    std::fs::write(
        etc.join("jupyter/jupyter_server_config.json"),
        hello.to_string(),
    )
    .expect("hello");
    let server = prefix.join("bin/jupyterhub-singleuser");
    std::fs::write(
        &server,
        format!(
            "#!{}/bin/python\nimport sys\nfrom jupyterhub.singleuser import main\nsys.exit(main())\n",
            prefix.display()
        ),
    )
    .expect("server");
    let modes = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir)
        .status()
        .expect("chmod");
    assert!(modes.success());
    let modes = Command::new("chmod")
        .arg("0755")
        .arg(&server)
        .status()
        .expect("chmod");
    assert!(modes.success());
    prefix
}

/// `install` as root: a folder or file with an owner and a mode.
fn install(args: &[&str]) {
    let out = Command::new("install")
        .args(args)
        .output()
        .expect("install");
    assert!(
        out.status.success(),
        "install {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How a start ended when it failed: the 500's body when it failed within the call, else the
/// events of its progress stream (which ends with the failure).
async fn failed_start(hub: &HubProc, user: &str, options: Value) -> String {
    let (s, body) = start(hub, user, "", options).await;
    if s == 500 {
        return body;
    }
    assert_eq!(s, 202, "the start is accepted or fails: {body}");
    let (s, events) = admin(
        hub,
        Method::GET,
        &format!("/users/{user}/server/progress"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{events}");
    events
}

/// Acceptance 2, 4 (Notebook 7 at `/tree`; an app of jupyter-server-proxy), 5 and 9 for these fields: bad
/// values and an interface another environment does not offer are a 400 naming the field, no
/// job; a start with the `venv` prefix, the `tree` interface and the `work` directory runs
/// the prefix's server (the kernel's `sys.prefix`) in that directory (the contents API lists
/// its file, the kernel's working directory is there) and `/user/x/` leads to `/tree`; the
/// `locked` directory, which the user cannot enter, ends the start with a message naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_interface_and_directory_shape_the_server() {
    let Some(p) = parts() else { return };
    let _shared = CLUSTER.read().await;
    let prefixes = nbhub_testkit::temp_dir_world_readable();
    let prefix = venv_on_top_of(&p.venv, prefixes.path());
    let mut hub = session_hub(&p, &prefix);
    hub.start().await;
    let alice = SlurmUser::new(&p, &hub, "sv").await;
    let user = alice.name.as_str();
    let home = alice.home.display().to_string();
    let work = format!("{home}/work");
    let locked = format!("{home}/locked");
    install(&["-d", "-o", user, "-m", "0700", &work]);
    install(&[
        "-o",
        user,
        "-m",
        "0644",
        "/dev/null",
        &format!("{work}/only-in-work.txt"),
    ]);
    install(&["-d", "-o", "root", "-m", "0700", &locked]);

    let base = json!({"partition": "devel", "nodes": 1, "runtime": "00:10"});
    let with = |extra: Value| {
        let mut o = base.clone();
        o.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        o
    };
    for (extra, field, words) in [
        (
            json!({"environment": "nosuch"}),
            "environment",
            "not one of",
        ),
        (
            json!({"environment": "x; rm -rf ~"}),
            "environment",
            "not one of",
        ),
        (
            json!({"environment": "venv\nmodule load x"}),
            "environment",
            "not one of",
        ),
        (json!({"interface": "vscode"}), "interface", "not one of"),
        (
            json!({"environment": "other", "interface": "tree"}),
            "interface",
            "'tree' is not available with environment 'other' (only with venv)",
        ),
        (json!({"directory": "../../etc"}), "directory", "not one of"),
    ] {
        let options = with(extra);
        let (s, body) = start(&hub, user, "", options.clone()).await;
        assert_eq!(s, 400, "{options}: {body}");
        assert!(
            body.contains(field) && body.contains(words),
            "{options}: the answer should name {field} and say {words:?}: {body}"
        );
    }
    assert!(
        jobs_of(&p.slurm_conf, user).is_empty(),
        "no job for bad input: {:?}",
        jobs_of(&p.slurm_conf, user)
    );

    // The form offers the three fields; its own post with an interface the environment does
    // not have is marked at that field, and the page keeps the user's other values.
    let b = common::pagekit::signed_in(&hub, user).await;
    let url = hub.public_url(&format!("/hub/spawn/{user}"));
    let page = fetch(&b, &url).await.text().await.expect("html");
    for field in ["environment", "interface", "directory"] {
        assert!(
            page.contains(&format!("id=\"opt-{field}\"")),
            "{field}: {page}"
        );
    }
    assert!(page.contains(">A venv of its own</option>"), "{page}");
    let xsrf = common::pagekit::xsrf_at(&b, &url).await;
    let resp = common::post_form(
        &b,
        &url,
        &[
            ("_xsrf", xsrf.as_str()),
            ("partition", "devel"),
            ("runtime", "00:10"),
            ("environment", "other"),
            ("interface", "tree"),
            ("directory", "work"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let page = resp.text().await.expect("html");
    let error = page
        .split("id=\"opt-interface-error\">")
        .nth(1)
        .and_then(|rest| rest.split("</div>").next())
        .unwrap_or_default();
    assert!(
        error.contains("tree") && error.contains("is not available with environment"),
        "the error at the interface: {page}"
    );
    for kept in [
        "<option value=\"other\" selected>",
        "<option value=\"work\" selected>",
    ] {
        assert!(page.contains(kept), "the form keeps {kept}: {page}");
    }
    assert!(jobs_of(&p.slurm_conf, user).is_empty());

    let chosen = with(json!({"environment": "venv", "interface": "tree", "directory": "work"}));
    let (s, body) = start(&hub, user, "", chosen).await;
    assert!(s == 201 || s == 202, "start: {s} {body}");
    let model = wait_ready(&hub, user, "", 120).await;
    for (key, value) in [
        ("environment", "venv"),
        ("interface", "tree"),
        ("directory", "work"),
    ] {
        assert_eq!(model["user_options"][key], value, "{model}");
    }
    let token = user_token(&hub, user).await;
    let client = common::client();
    let contents = get_as(
        &client,
        hub.public_url(&format!("/user/{user}/api/contents")),
        &token,
    )
    .await;
    assert_eq!(contents.status(), 200);
    let listing: Value = contents.json().await.expect("json");
    let names: Vec<&str> = listing["content"]
        .as_array()
        .expect("a folder's content")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(names, ["only-in-work.txt"], "the root is {work}: {listing}");
    let redirect = get_as(&client, hub.public_url(&format!("/user/{user}/")), &token).await;
    let location = redirect
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_string();
    // The server keeps the query (empty here): `/user/x/tree?`.
    let path = location.split('?').next().unwrap_or_default();
    assert!(
        redirect.status().is_redirection() && path.ends_with(&format!("/user/{user}/tree")),
        "/user/{user}/ leads to the interface's URL: {} {location}",
        redirect.status()
    );
    let tree = get_as(
        &client,
        hub.public_url(&format!("/user/{user}/tree")),
        &token,
    )
    .await;
    assert_eq!(tree.status(), 200);
    let tree = tree.text().await.expect("html");
    assert!(
        tree.contains("\"notebookPage\": \"tree\""),
        "Notebook 7's file browser opens at /tree: {tree}"
    );
    let printed = run_in_new_kernel(
        &hub,
        user,
        "import os, sys; print(sys.prefix); print(os.getcwd())",
    )
    .await;
    assert_eq!(
        printed.trim(),
        format!("{}\n{work}", prefix.display()),
        "{}",
        hub.log()
    );
    stop_default_server(&hub, &p.slurm_conf, user).await;

    let failure = failed_start(&hub, user, with(json!({"directory": "locked"}))).await;
    assert!(
        failure.contains(&format!(
            "cannot enter directory {locked} as {user}. The job failed"
        )),
        "the start's failure names the directory: {failure}"
    );
    assert!(server_model(&hub, user, "").await.is_none());

    // Acceptance 4: an app of jupyter-server-proxy as the interface opens through the proxy
    // for the user, signed in through the hub; another user is refused.
    let chosen = with(json!({"environment": "venv", "interface": "hello", "directory": "work"}));
    let (s, body) = start(&hub, user, "", chosen).await;
    assert!(s == 201 || s == 202, "start: {s} {body}");
    wait_ready(&hub, user, "", 120).await;
    let b = common::pagekit::browser_following();
    login(&hub, &b, user).await;
    let opened = fetch(&b, hub.public_url(&format!("/user/{user}/"))).await;
    let at = opened.url().path().to_owned();
    let status = opened.status();
    let page = opened.text().await.expect("html");
    assert!(
        status == 200 && at.ends_with(&format!("/user/{user}/hello/")),
        "the app opens: {status} at {at}: {page}"
    );
    assert!(
        page.contains("Directory listing") && page.contains("only-in-work.txt"),
        "the app serves the work directory: {page}"
    );
    let other = common::pagekit::browser_following();
    login(&hub, &other, "svother").await;
    let refused = fetch(&other, hub.public_url(&format!("/user/{user}/hello/"))).await;
    let status = refused.status();
    let page = refused.text().await.expect("html");
    assert_eq!(status, 403, "another user is refused: {page}");
    assert!(!page.contains("only-in-work.txt"), "{page}");
    stop_default_server(&hub, &p.slurm_conf, user).await;
}

/// Whether Lmod's shell setup is on this machine (Debian's `lmod`; scripts/test-env.sh
/// installs it as root).
fn lmod_present() -> bool {
    ["/etc/profile.d/lmod.sh", "/usr/share/lmod/lmod/init/bash"]
        .iter()
        .any(|f| Path::new(f).exists())
}

/// Acceptance 1: an environment of two Lmod modules (module files the test writes in a folder
/// on the jobs' `MODULEPATH`) plus one the user adds from the system's list → the kernel sees
/// the variables all three set; an added module the system does not list, `"x; rm -rf ~"`
/// and a name with a newline are a 400 naming `modules`, no job; an environment whose module
/// the system does not have ends the start with a message naming the modules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modules_environment_is_loaded_before_the_server() {
    let Some(p) = parts() else { return };
    if !lmod_present() {
        nbhub_testkit::missing_part(
            "Lmod (/etc/profile.d/lmod.sh)",
            "apt-get install lmod (scripts/test-env.sh does, as root)",
        );
        return;
    }
    let _shared = CLUSTER.read().await;
    let modules = nbhub_testkit::temp_dir_world_readable();
    for (file, lua) in [
        ("nbhub-alpha/1.0.lua", "setenv(\"NBHUB_ALPHA\", \"one\")\n"),
        ("nbhub-beta/2.0.lua", "setenv(\"NBHUB_BETA\", \"two\")\n"),
        (
            "nbhub-gamma/1.0.lua",
            "setenv(\"NBHUB_GAMMA\", \"three\")\n",
        ),
    ] {
        let path = modules.path().join(file);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("module folder");
        std::fs::write(&path, lua).expect("module file");
    }
    // The jobs read them as the user, whatever root's umask.
    let modes = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(modules.path())
        .status()
        .expect("chmod");
    assert!(modes.success());
    let envs = "[[slurm.environments]]\nname = \"stack\"\nmodules = [\"nbhub-alpha/1.0\", \"nbhub-beta\"]\nadd_modules = true\n\
                [[slurm.environments]]\nname = \"missing\"\nmodules = [\"nbhub-alpha\", \"nbhub-missing/9\"]\n";
    let mut hub = HubProc::new(
        p.venv.clone(),
        &p.proxy,
        Options {
            spawner_env: vec![("MODULEPATH".into(), modules.path().display().to_string())],
            ..slurm_options(&p, envs, "")
        },
    );
    hub.start().await;
    let alice = SlurmUser::new(&p, &hub, "sm").await;
    let user = alice.name.as_str();

    let base = json!({"partition": "devel", "runtime": "00:10", "environment": "stack"});
    for (modules, words) in [
        (
            json!("nbhub-nosuch"),
            "'nbhub-nosuch' is not a module of this system",
        ),
        (
            json!(["x; rm -rf ~"]),
            "'x;' is not a module of this system",
        ),
        (json!("nbhub-gamma\nnbhub-beta"), "one line"),
    ] {
        let mut options = base.clone();
        options["modules"] = modules.clone();
        let (s, body) = start(&hub, user, "", options).await;
        assert_eq!(s, 400, "{modules}: {body}");
        assert!(
            body.contains("modules") && body.contains(words),
            "{modules}: the answer names the field: {body}"
        );
    }
    assert!(
        jobs_of(&p.slurm_conf, user).is_empty(),
        "no job for bad modules"
    );
    let mut options = base.clone();
    options["modules"] = json!(["nbhub-gamma/1.0"]);
    let (s, body) = start(&hub, user, "", options).await;
    assert!(s == 201 || s == 202, "start: {s} {body}");
    wait_ready(&hub, user, "", 120).await;
    let printed = run_in_new_kernel(
        &hub,
        user,
        "import os; print(*(os.environ.get(f'NBHUB_{m}') for m in ['ALPHA', 'BETA', 'GAMMA']))",
    )
    .await;
    assert_eq!(printed.trim(), "one two three", "{}", hub.log());
    stop_default_server(&hub, &p.slurm_conf, user).await;

    let failure = failed_start(
        &hub,
        user,
        json!({"partition": "devel", "runtime": "00:10", "environment": "missing"}),
    )
    .await;
    assert!(
        failure.contains(
            "could not load the modules of environment missing: nbhub-alpha nbhub-missing/9. The job failed"
        ),
        "the start's failure names the modules: {failure}"
    );
    assert!(server_model(&hub, user, "").await.is_none());
}

/// Where Charliecloud's `ch-run` is, if installed (Debian's `charliecloud-runtime`;
/// scripts/test-env.sh installs it as root).
fn ch_run() -> Option<PathBuf> {
    ["/usr/bin/ch-run", "/usr/local/bin/ch-run"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A Charliecloud image assembled here, without any registry: a root file system made of
/// hard links to this machine's `/usr` and the test venv (so the image costs no space), a
/// copy of `/etc` (taken after the user exists, so the user is in its `passwd`), the empty
/// folders the runtime mounts onto (the user's home among them: Charliecloud binds only onto
/// folders the image has) and a marker file only the image has.
fn charliecloud_image(dir: &Path, venv: &Path, home: &Path) -> PathBuf {
    let image = dir.join("image");
    let inside = |p: &Path| image.join(p.strip_prefix("/").expect("an absolute path"));
    std::fs::create_dir_all(inside(venv).parent().expect("the venv's folder")).expect("folder");
    for (from, to) in [
        (Path::new("/usr"), inside(Path::new("/usr"))),
        (venv, inside(venv)),
    ] {
        let linked = Command::new("cp")
            .arg("-al")
            .arg(from)
            .arg(&to)
            .output()
            .expect("cp");
        assert!(
            linked.status.success(),
            "the image is made of hard links to {} (the temp folder must be on its file system): {}",
            from.display(),
            String::from_utf8_lossy(&linked.stderr)
        );
    }
    let etc = Command::new("cp")
        .arg("-a")
        .arg("/etc")
        .arg(image.join("etc"))
        .status()
        .expect("cp /etc");
    assert!(etc.success());
    for merged in ["bin", "sbin", "lib", "lib64"] {
        std::os::unix::fs::symlink(format!("usr/{merged}"), image.join(merged)).expect("symlink");
    }
    for empty in ["dev", "proc", "sys", "run", "var/tmp"] {
        std::fs::create_dir_all(image.join(empty)).expect("folder");
    }
    std::fs::create_dir_all(inside(home)).expect("the home's mount point");
    install(&["-d", "-m", "1777", &image.join("tmp").display().to_string()]);
    std::fs::write(image.join("nbhub-image-marker"), "only in the image\n").expect("marker");
    let modes = Command::new("chmod")
        .args(["a+rX"])
        .arg(dir)
        .arg(&image)
        .arg(image.join("nbhub-image-marker"))
        .status()
        .expect("chmod");
    assert!(modes.success());
    image
}

/// Acceptance 3: a container environment with Debian's Charliecloud and an image the test
/// assembles → the server and its kernel run inside the image (they read a marker file only
/// the image has), with the user's home directory there (a file the user has in it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_environment_runs_the_server_in_the_image() {
    let Some(p) = parts() else { return };
    if ch_run().is_none() {
        nbhub_testkit::missing_part(
            "Charliecloud's ch-run",
            "apt-get install charliecloud-runtime (scripts/test-env.sh does, as root)",
        );
        return;
    }
    let _shared = CLUSTER.read().await;
    let images = nbhub_testkit::temp_dir_world_readable();
    let image = images.path().join("image");
    let envs = format!(
        "[[slurm.environments]]\nname = \"image\"\ntitle = \"A container\"\n\
         container = {{ image = \"{}\", runtime = \"charliecloud\" }}\n",
        image.display()
    );
    let mut hub = slurm_hub(&p, &envs);
    hub.start().await;
    let alice = SlurmUser::new(&p, &hub, "sk").await;
    let user = alice.name.as_str();
    install(&[
        "-o",
        user,
        "-m",
        "0644",
        "/dev/null",
        &format!("{}/in-my-home.txt", alice.home.display()),
    ]);
    charliecloud_image(images.path(), &p.venv, &alice.home);

    let options = json!({"partition": "devel", "runtime": "00:10", "environment": "image"});
    let (s, body) = start(&hub, user, "", options).await;
    assert!(s == 201 || s == 202, "start: {s} {body}");
    wait_ready(&hub, user, "", 120).await;
    let printed = run_in_new_kernel(
        &hub,
        user,
        "import os; print(open('/nbhub-image-marker').read().strip()); \
         print(os.path.expanduser('~')); print('in-my-home.txt' in os.listdir(os.path.expanduser('~')))",
    )
    .await;
    assert_eq!(
        printed.trim(),
        format!("only in the image\n{}\nTrue", alice.home.display()),
        "{}",
        hub.log()
    );
    stop_default_server(&hub, &p.slurm_conf, user).await;
}
