//! Tidy checks that run as a test (rust-analyzer's `tidy`, TigerBeetle's `tidy.zig`): house rules
//! that a grep can verify, so they hold without anyone remembering them.

use std::fs;
use std::path::{Path, PathBuf};

/// The workspace root (this test lives in the root package).
fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file below `dir`, skipping build output.
fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

/// Every module under a crate's `src/` opens with a `//!` doc saying what it owns and what it must
/// never do (style habit 9). Tests, benches and examples are exempt: their names say it.
#[test]
fn every_source_module_opens_with_a_module_doc() {
    let root = workspace_root();
    let mut files = Vec::new();
    for crate_dir in
        ["src", "system/src", "scenarios/src", "chaos/src", "sim/src", "loadgen/src", "reports/src"]
    {
        rust_files(&root.join(crate_dir), &mut files);
    }
    assert!(files.len() > 20, "tidy found only {} source files: is the walk broken?", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|path| {
            let text = fs::read_to_string(path).expect("source file is readable");
            !text.lines().take(3).any(|line| line.starts_with("//!"))
        })
        .map(|path| path.strip_prefix(&root).unwrap_or(path).display().to_string())
        .collect();
    assert!(missing.is_empty(), "modules without an opening //! doc: {missing:#?}");
}

/// The deterministic crates keep clippy's bans on real clocks, unseeded randomness, OS threads and
/// default-hashed maps (brief section 3). Deleting or emptying one of these files would silently
/// re-allow them, so the test pins the essential entries.
#[test]
fn deterministic_crates_ban_clocks_threads_and_default_hashers() {
    let root = workspace_root();
    for crate_dir in ["system", "sim", "scenarios"] {
        let path = root.join(crate_dir).join("clippy.toml");
        let text = fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} is missing", path.display()));
        for banned in [
            "std::time::Instant::now",
            "std::time::SystemTime::now",
            "std::thread::spawn",
            "std::collections::HashMap",
            "std::collections::HashSet",
            "rand::rng",
        ] {
            assert!(text.contains(&format!("\"{banned}\"")), "{} does not ban {banned}", path.display());
        }
    }
}

/// README.md opens with the two commands that matter on a fresh machine.
#[test]
fn readme_opens_with_the_demo_and_test_commands() {
    let readme = fs::read_to_string(workspace_root().join("README.md")).expect("README.md exists");
    let opening: String = readme.lines().take(8).collect::<Vec<_>>().join("\n");
    assert!(opening.contains("cargo run --release -- demo"), "README must open with the demo command");
    assert!(opening.contains("scripts/test"), "README must open with the test command");
    let script = fs::read_to_string(workspace_root().join("scripts/test")).expect("scripts/test exists");
    assert!(script.contains("cargo test --workspace"), "scripts/test runs the workspace's tests");
    let ci = fs::read_to_string(workspace_root().join(".ci/run")).expect(".ci/run exists");
    assert!(ci.contains("scripts/test"), ".ci/run calls the README's test command");
}
