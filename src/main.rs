//! The `edgeproof` command line: one binary for the demo, the real broker and the simulators.
//!
//! It owns argument parsing and exit codes only; every subcommand delegates to a library crate.

use clap::Parser;

#[derive(Parser)]
#[command(name = "edgeproof", version, about)]
enum Command {}

fn main() {
    let _ = Command::parse();
}
