//! Build script of the `edgeproof` binary: records the git commit it was built from, so every
//! `outcome.json` names the exact code that produced it (seed + commit reproduce a run).
//! It must never fail the build: outside a git checkout the commit is simply absent.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let output = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output();
    if let Ok(output) = output
        && output.status.success()
    {
        // Only the commit, not a "dirty" mark: the script reruns when HEAD moves, not on every
        // edit, so a dirty flag would go stale and lie.
        let commit = String::from_utf8_lossy(&output.stdout).trim().to_string();
        println!("cargo:rustc-env=EDGEPROOF_COMMIT={commit}");
    }
}
