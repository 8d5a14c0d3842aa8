//! `edgeproof run`: one scenario, one seed, one engine, one `outcome.json`.
//!
//! This module owns loading the scenario (a file or a catalogue name), choosing the engine,
//! writing the outcome and the exit code contract: 0 when every check passes, 1 when one fails
//! (printing the seed and the exact replay command), 2 on bad input. It must never judge a run
//! itself: verdicts come from the oracle in `edgeproof-scenarios`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use edgeproof_scenarios::catalog;
use edgeproof_scenarios::outcome::Outcome;
use edgeproof_scenarios::spec::Scenario;
use edgeproof_sim::fast::world::{FastOptions, run_fast};
use edgeproof_sim::{TurmoilOptions, run_turmoil};

/// Exit code of a run whose checks all passed.
pub const EXIT_PASS: u8 = 0;
/// Exit code of a run with at least one failed check.
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Exit code for bad input: an unreadable or invalid scenario, an unusable output directory.
pub const EXIT_BAD_INPUT: u8 = 2;

/// Which deterministic world runs the scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// Our discrete-event engine: the cores through virtual connections (fast, scales to 1M devices).
    Fast,
    /// turmoil: the real tokio shells of pods and devices over simulated TCP (small topologies).
    Turmoil,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Fast => "fast",
            Engine::Turmoil => "turmoil",
        }
    }
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// A scenario file (TOML), or the name of a catalogue scenario (smoke, subscriber-offline,
    /// device-partition, broker-crash).
    scenario: String,
    /// The seed: everything random in the run derives from it.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The simulated world to run in.
    #[arg(long, value_enum, default_value_t = Engine::Fast)]
    engine: Engine,
    /// Where to write `outcome.json` (default: `outcomes/<scenario>-<engine>-seed<seed>`).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// A scenario ready to run, with how to name it in a replay command.
pub struct LoadedScenario {
    pub scenario: Scenario,
    /// The argument that loads it again (a path or a catalogue name).
    pub argument: String,
}

/// Loads a scenario from a path, or from the catalogue when no such file exists and the name is
/// a catalogue entry. Errors are printed as `file:line:col: what was expected`.
pub fn load_scenario(argument: &str) -> Result<LoadedScenario, String> {
    let path = Path::new(argument);
    if path.exists() {
        let text =
            std::fs::read_to_string(path).map_err(|error| format!("{argument}: cannot read: {error}"))?;
        let scenario = Scenario::from_toml_str(&text, argument).map_err(|error| error.to_string())?;
        return Ok(LoadedScenario { scenario, argument: argument.to_string() });
    }
    match catalog::get(argument) {
        Some(scenario) => Ok(LoadedScenario { scenario, argument: argument.to_string() }),
        None => Err(format!(
            "{argument}: no such file, and not a catalogue scenario (catalogue: {})",
            catalog::names().collect::<Vec<_>>().join(", ")
        )),
    }
}

pub fn run(args: RunArgs) -> ExitCode {
    let loaded = match load_scenario(&args.scenario) {
        Ok(loaded) => loaded,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let out_dir = args.out.unwrap_or_else(|| default_out_dir(&loaded.scenario.name, args.engine, args.seed));
    execute(&loaded, args.seed, args.engine, &out_dir)
}

/// The default output directory of a run.
pub fn default_out_dir(scenario_name: &str, engine: Engine, seed: u64) -> PathBuf {
    PathBuf::from("outcomes").join(format!("{scenario_name}-{}-seed{seed}", engine.name()))
}

/// Runs a loaded scenario, writes `outcome.json`, prints the verdict table and returns the exit
/// code of the contract above.
pub fn execute(loaded: &LoadedScenario, seed: u64, engine: Engine, out_dir: &Path) -> ExitCode {
    execute_reporting(loaded, seed, engine, out_dir, false)
}

/// [`execute`], and with `write_report` also the HTML report of the run beside `outcome.json`.
pub fn execute_reporting(
    loaded: &LoadedScenario,
    seed: u64,
    engine: Engine,
    out_dir: &Path,
    write_report: bool,
) -> ExitCode {
    // The run's date, for the report header (read here: simulators never see a real clock).
    let started_unix_secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|since| since.as_secs()).ok();
    println!("edgeproof run: scenario {} seed {seed} engine {}", loaded.scenario.name, engine.name());
    // The simulators never read a real clock: engine speed is measured here, around the run.
    let started = std::time::Instant::now();
    let result = match engine {
        Engine::Fast => {
            run_fast(&loaded.scenario, seed, FastOptions::default()).map_err(|error| error.to_string())
        }
        Engine::Turmoil => run_turmoil(&loaded.scenario, seed, &TurmoilOptions::default())
            .map(|run| run.outcome)
            .map_err(|error| error.to_string()),
    };
    let mut outcome = match result {
        Ok(outcome) => outcome,
        Err(message) => {
            eprintln!("error: scenario {} cannot run: {message}", loaded.argument);
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    outcome.set_wall_seconds(started.elapsed().as_secs_f64());
    outcome.commit = option_env!("EDGEPROOF_COMMIT").map(str::to_string);
    outcome.started_unix_secs = started_unix_secs;
    outcome.target = Some(format!("edgeproof broker (simulated, {} engine)", engine.name()));
    outcome.machine = Some(machine_description());
    outcome.replay_command = Some(replay_command(&loaded.argument, seed, engine));
    let outcome_path = match write_outcome(&outcome, out_dir) {
        Ok(path) => path,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    // The table's last line states the engine speed (simulated s per wall s, events per wall s).
    print!("{}", outcome.verdict_table());
    println!("outcome: {}", outcome_path.display());
    if write_report {
        match crate::report::report_beside(&outcome_path) {
            Ok(report_path) => println!("report: {}", report_path.display()),
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::from(EXIT_BAD_INPUT);
            }
        }
    }
    if outcome.passed() {
        ExitCode::from(EXIT_PASS)
    } else {
        println!("FAILED with seed {seed}; replay it bit for bit with:");
        println!("  {}", replay_command(&loaded.argument, seed, engine));
        ExitCode::from(EXIT_CHECK_FAILED)
    }
}

/// OS, architecture and cores of this machine, for the report header.
fn machine_description() -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    format!("{} {}, {cores} cores", std::env::consts::OS, std::env::consts::ARCH)
}

/// The one command that replays a run exactly.
pub fn replay_command(scenario_argument: &str, seed: u64, engine: Engine) -> String {
    format!("cargo run --release -- run {scenario_argument} --seed {seed} --engine {}", engine.name())
}

fn write_outcome(outcome: &Outcome, out_dir: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(out_dir)
        .map_err(|error| format!("{}: cannot create: {error}", out_dir.display()))?;
    let path = out_dir.join("outcome.json");
    std::fs::write(&path, outcome.to_json())
        .map_err(|error| format!("{}: cannot write: {error}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_command_names_scenario_seed_and_engine() {
        assert_eq!(
            replay_command("scenarios/catalog/smoke.toml", 42, Engine::Fast),
            "cargo run --release -- run scenarios/catalog/smoke.toml --seed 42 --engine fast"
        );
    }

    #[test]
    fn unknown_scenarios_are_bad_input_with_the_catalogue_listed() {
        let Err(message) = load_scenario("no-such-scenario") else { panic!("loaded a missing scenario") };
        assert!(message.contains("smoke"), "{message}");
        assert!(load_scenario("smoke").is_ok());
    }
}
