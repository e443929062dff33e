//! "Real parts" with no silent skips: a test that needs the venv or PostgreSQL either gets it,
//! or says loudly that it skipped (and fails outright under CI).

use std::path::{Path, PathBuf};

/// The workspace root: the nearest ancestor of the crate under test (`CARGO_MANIFEST_DIR`)
/// whose Cargo.toml declares `[workspace]`.
pub fn workspace_root() -> PathBuf {
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    start
        .ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .map(|toml| toml.lines().any(|l| l.trim() == "[workspace]"))
                .unwrap_or(false)
        })
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("no Cargo.toml with [workspace] above {}", start.display()))
}

/// `program` on `PATH`, as the shell would find it.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .ok()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// The Python venv with the real `jupyterhub-singleuser` (scripts/requirements-test.txt):
/// `$NBHUB_VENV`, else `<workspace root>/.venv`. `None` (after a loud message) when it is
/// missing; a panic instead when `CI=true`.
pub fn require_venv() -> Option<PathBuf> {
    let venv = std::env::var_os("NBHUB_VENV")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv"));
    let exe = venv.join("bin").join("jupyterhub-singleuser");
    if exe.is_file() {
        Some(venv)
    } else {
        missing_part(
            &format!(
                "the Python venv with jupyterhub-singleuser ({} does not exist; \
                 set NBHUB_VENV or create <repo>/.venv)",
                exe.display()
            ),
            "scripts/test-env.sh",
        );
        None
    }
}

/// The URL of the test PostgreSQL database, from `NBHUB_TEST_DATABASE_URL`. `None` (after a
/// loud message) when it is unset; a panic instead when `CI=true`.
pub fn require_postgres() -> Option<String> {
    match std::env::var("NBHUB_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            missing_part(
                "PostgreSQL (NBHUB_TEST_DATABASE_URL is not set)",
                "scripts/test-env.sh (or scripts/postgres.sh start), then `. .nbhub-test/env`",
            );
            None
        }
    }
}

/// Reports a missing real part: panics when `CI=true` (CI must run every test), otherwise
/// prints a banner to stderr so the skip is seen (run tests with `--nocapture` to see it, or
/// notice it in the output of a failing run).
pub fn missing_part(what: &str, installed_by: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned();
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("test {test} needs {what}, which is missing (CI=true, so this is a failure); install it with {installed_by}");
    }
    eprintln!(
        "\n\
         ************************************************************************\n\
         * SKIPPED: {test}\n\
         *   missing: {what}\n\
         *   run {installed_by}\n\
         ************************************************************************\n"
    );
}

/// Unwraps a `require_*()` result, or returns from the calling test (which must return `()`)
/// when the part is missing.
///
/// ```no_run
/// fn a_test() {
///     let venv = nbhub_testkit::require!(nbhub_testkit::require_venv());
///     let _exe = venv.join("bin/jupyterhub-singleuser");
/// }
/// ```
#[macro_export]
macro_rules! require {
    ($part:expr) => {
        match $part {
            ::std::option::Option::Some(part) => part,
            ::std::option::Option::None => return,
        }
    };
}
