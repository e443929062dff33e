//! Embeds the web pages' static files into the binary: our own (`static/css`, `js`, `images`)
//! and the npm packages pinned in `static/package-lock.json` (Bootstrap, Bootstrap Icons),
//! each with a content hash for cache-busting URLs. Without `static/node_modules` (npm has not
//! run yet) the build still succeeds; the hub then says at start and in place of those files
//! how to install them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Files taken from node_modules, served under `components/<same path>`.
const VENDOR: &[&str] = &[
    "bootstrap/dist/css/bootstrap.min.css",
    "bootstrap/dist/js/bootstrap.bundle.min.js",
    "bootstrap-icons/font/bootstrap-icons.min.css",
    "bootstrap-icons/font/fonts/bootstrap-icons.woff2",
    "bootstrap-icons/font/fonts/bootstrap-icons.woff",
];

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let static_dir = root.join("static");
    watch(&static_dir.join("package-lock.json"));
    // npm writes node_modules/.package-lock.json at each install. Before npm has run, the
    // static folder itself is watched (cheap while node_modules is absent): its appearance
    // reruns this script. A watched path that does not exist would rerun it, and relink the
    // hub, at every build.
    let npm_lock = static_dir.join("node_modules/.package-lock.json");
    if npm_lock.is_file() {
        watch(&npm_lock);
    } else {
        watch(&static_dir);
    }
    let mut assets: Vec<(String, PathBuf)> = Vec::new();
    for sub in ["css", "js", "images"] {
        let dir = static_dir.join(sub);
        watch(&dir);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for path in files.into_iter().filter(|p| p.is_file()) {
            println!("cargo:rerun-if-changed={}", path.display());
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            assets.push((format!("{sub}/{name}"), path));
        }
    }
    let mut missing = Vec::new();
    for rel in VENDOR {
        let path = static_dir.join("node_modules").join(rel);
        if path.is_file() {
            assets.push((format!("components/{rel}"), path));
        } else {
            missing.push(format!("components/{rel}"));
        }
    }
    let mut out = String::from("pub static ASSETS: &[Asset] = &[\n");
    for (url, path) in &assets {
        let bytes = std::fs::read(path).expect("read static file");
        let _ = writeln!(
            out,
            "    Asset {{ path: {url:?}, hash: \"{:016x}\", content_type: {:?}, bytes: include_bytes!({:?}) }},",
            fnv1a(&bytes),
            content_type(path),
            path.display().to_string()
        );
    }
    out.push_str("];\n\npub static MISSING_VENDOR: &[&str] = &[\n");
    for m in &missing {
        let _ = writeln!(out, "    {m:?},");
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("cargo sets it")).join("assets.rs");
    std::fs::write(dest, out).expect("write assets.rs");
}

/// Reruns this script when `path` changes; only for paths that exist (cargo reruns a script
/// that watches a missing path at every build).
fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// FNV-1a, 64 bits: enough to tell versions of a file apart in a URL.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}
