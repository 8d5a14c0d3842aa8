//! `edgeproof demo`: a publish/subscribe round trip through the real broker on loopback.
//!
//! Placeholder until the client core lands.

#[derive(clap::Args)]
pub struct DemoArgs {}

pub fn run(_args: DemoArgs) -> std::process::ExitCode {
    std::process::ExitCode::FAILURE
}
