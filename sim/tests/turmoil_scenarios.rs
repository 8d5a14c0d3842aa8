//! The scenario catalogue on the turmoil engine: the real broker and client shells over turmoil's
//! simulated TCP, judged by the same oracle as the fast engine.
//!
//! Fleets are scaled down from the catalogue's sizes (a test-only override of `count`) so that
//! each run stays a few seconds in a debug build; the scenarios' timing, faults and expectations
//! are unchanged. mad-turmoil routes libc's clocks and randomness through the simulation; its
//! state is process-wide, so runs in this binary take turns (see [`exclusive`]).

use std::sync::{Mutex, MutexGuard, Once};

use edgeproof_scenarios::outcome::Verdict;
use edgeproof_scenarios::{Outcome, Scenario, catalog};
use edgeproof_sim::{TurmoilOptions, TurmoilRun, run_turmoil};
use rand::SeedableRng;

static RUNS: Mutex<()> = Mutex::new(());
static LIBC_RNG: Once = Once::new();

/// Serializes simulation runs in this binary: mad-turmoil's clock switch and rng are global.
fn exclusive() -> MutexGuard<'static, ()> {
    LIBC_RNG.call_once(|| mad_turmoil::rand::set_rng(rand::rngs::StdRng::seed_from_u64(0x5EED)));
    RUNS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn scaled(name: &str, devices_per_fleet: u32) -> Scenario {
    let mut scenario = catalog::get(name).unwrap_or_else(|| panic!("{name} is in the catalogue"));
    for fleet in &mut scenario.fleets {
        fleet.count = fleet.count.min(devices_per_fleet);
    }
    scenario
}

fn run(scenario: &Scenario, seed: u64) -> TurmoilRun {
    let _turn = exclusive();
    let _sim_clocks = mad_turmoil::time::SimClocksGuard::init();
    run_turmoil(scenario, seed, &TurmoilOptions::default())
        .unwrap_or_else(|error| panic!("{} seed {seed:#x}: {error}", scenario.name))
}

fn describe(outcome: &Outcome) -> String {
    format!("{}\n{:?}", outcome.verdict_table(), outcome.counters)
}

#[test]
fn smoke_passes_on_turmoil_with_nothing_lost_and_order_kept() {
    let scenario = scaled("smoke", 100);
    let TurmoilRun { outcome, stats } = run(&scenario, 1);
    let table = describe(&outcome);
    assert_eq!(outcome.engine, "turmoil");
    assert_eq!(outcome.verdict, Verdict::Pass, "{table}");
    // 100 devices x 60 publishes, all acknowledged and delivered once to the one subscriber.
    assert_eq!(outcome.counters.published, 6_000, "{table}");
    assert_eq!(outcome.counters.acked, 6_000, "{table}");
    assert_eq!(outcome.counters.lost, 0, "{table}");
    assert_eq!(outcome.counters.out_of_order, 0, "{table}");
    assert!(outcome.counters.delivered >= 6_000, "{table}");
    assert_eq!(outcome.latency_ms.count, outcome.counters.delivered, "{table}");
    assert!(outcome.latency_ms.p99 > 0.0 && outcome.latency_ms.p99 <= 50.0, "{table}");
    assert!((outcome.sim_seconds - 70.0).abs() < 1e-9, "{}", outcome.sim_seconds);
    assert_eq!(stats.steps, 70_000, "one millisecond tick over 70 s");
    assert_eq!(stats.unstamped_deliveries, 0);
}
