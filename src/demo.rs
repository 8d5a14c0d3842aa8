//! `edgeproof demo`: the main job on embedded defaults. It runs the catalogue's `smoke` scenario
//! (one broker, a thousand devices publishing QoS 1, a subscriber on `#`) in the fast simulated
//! world, prints the verdict table and says where `outcome.json` and its HTML report (`report.html`
//! beside it) went.
//!
//! It owns only the choice of defaults; running and judging are `run`'s and the oracle's.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::run::{Engine, LoadedScenario, default_out_dir, execute_reporting};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// The seed of the simulated run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where to write `outcome.json` and `report.html` (default: `outcomes/smoke-fast-seed<seed>`).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: DemoArgs) -> ExitCode {
    let scenario = edgeproof_scenarios::catalog::get("smoke").expect("the catalogue embeds smoke");
    let loaded = LoadedScenario { scenario, argument: "smoke".to_string() };
    let out_dir = args.out.unwrap_or_else(|| default_out_dir("smoke", Engine::Fast, args.seed));
    execute_reporting(&loaded, args.seed, Engine::Fast, &out_dir, true)
}
