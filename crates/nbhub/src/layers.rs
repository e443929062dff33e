//! The one direction of imports inside the hub, held by a test that reads the sources.
//!
//! The core (configuration, database, authentication and authorization, the supervisor, the
//! proxy client, managed services, names, secrets, errors, the metrics registry) never
//! imports the HTTP layer (`web`, `api`, `pages`, `oauth`, the templates), the composition's
//! `state` (`AppState`) or the web framework (axum). Only the HTTP layer and the composition
//! (`lib.rs`, `state.rs`) see `AppState`. A module that is neither is core: a new module is
//! held to the rule until it is named as HTTP here.

/// Top-level modules of the HTTP layer and the composition; every other module is core.
pub const HTTP_AND_COMPOSITION: &[&str] = &["web", "api", "pages", "oauth", "state", "lib", "main"];

/// What a core file may not name: the HTTP modules, `AppState`, and the web framework.
pub const FORBIDDEN_IN_CORE: &[&str] = &[
    "crate::web",
    "crate::api",
    "crate::pages",
    "crate::oauth",
    "crate::state",
    "AppState",
    "axum",
    "super::web",
    "super::api",
    "super::pages",
    "super::oauth",
    "super::state",
];

/// The lines of a core file's source that break the rule, as `(line number, line)`. Comments
/// are skipped (doc text may name the HTTP layer to explain the rule).
pub fn violations(source: &str) -> Vec<(usize, String)> {
    source
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .filter(|(_, line)| {
            let code = line.split("//").next().unwrap_or(line);
            FORBIDDEN_IN_CORE.iter().any(|f| names(code, f))
        })
        .map(|(i, line)| (i + 1, line.trim().to_string()))
        .collect()
}

/// Whether `code` names `what` as a whole path segment (`axum::…`, not `my_axum`).
fn names(code: &str, what: &str) -> bool {
    code.match_indices(what).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + what.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn the_core_never_imports_the_http_layer() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        files.sort();
        let mut broken = Vec::new();
        let mut core_files = 0;
        for file in &files {
            let rel = file.strip_prefix(&src).expect("under src");
            let top = rel
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .map(|s| s.trim_end_matches(".rs"))
                .unwrap_or_default();
            if HTTP_AND_COMPOSITION.contains(&top) || top == "layers" {
                continue;
            }
            core_files += 1;
            let text = std::fs::read_to_string(file).expect("read source");
            for (line, code) in violations(&text) {
                broken.push(format!("src/{}:{line}: {code}", rel.display()));
            }
        }
        assert!(
            core_files > 20,
            "only {core_files} core files found under {}",
            src.display()
        );
        assert!(
            broken.is_empty(),
            "core modules import the HTTP layer, AppState or axum (docs/ARCHITECTURE.md, \
             \"One direction\"):\n  {}",
            broken.join("\n  ")
        );
    }

    #[test]
    fn a_violation_is_found_and_named() {
        let source = "//! uses crate::api in a comment\nuse crate::api::ApiIdentity;\nlet x = 1; // axum\nfn f(s: &AppState) {}\nuse axum::http::HeaderMap;\nuse my_axum_like::X;\nuse http::HeaderMap;\n";
        let found: Vec<usize> = violations(source).into_iter().map(|(l, _)| l).collect();
        assert_eq!(found, vec![2, 4, 5]);
    }
}
