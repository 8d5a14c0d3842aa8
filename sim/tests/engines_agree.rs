//! The same scenario and seed on both engines reach the same judgement.
//!
//! The engines model the network differently (the fast engine's virtual connections draw their
//! own latencies; turmoil moves segments on a 1 ms tick), so exact latencies, event counts and
//! trace hashes differ by design and are not compared. What must agree is what the oracle
//! concludes from the ledger both fill through `agents.rs`:
//! - for the loss-free scenarios (smoke, subscriber-offline, device-partition): the verdict, the
//!   pass/fail of every check by name, and the published, acknowledged, lost and delivered counts
//!   (the workload plan is the same, so the same publishes are invoked; nothing may be lost);
//! - for broker-crash: both engines report acknowledged messages lost and fail the run;
//! - for a broker queue too small for an outage: both declare the dropped copies under the
//!   oracle's `queue_full` name (how many differs: when the broker notices a subscriber is gone
//!   depends on the network model).
//!
//! Fleets are scaled down (a test-only override of `count`) so turmoil stays quick in a debug
//! build; timing, faults and expectations are the catalogue's. mad-turmoil's clock and randomness
//! overrides are process-wide, so runs in this binary take turns (see [`exclusive`]); it also
//! makes the fast engine's wall-time measurement read 0, which nothing here looks at.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, Once};

use edgeproof_scenarios::outcome::Verdict;
use edgeproof_scenarios::{Outcome, Scenario, catalog};
use edgeproof_sim::fast::world::{FastOptions, run_fast};
use edgeproof_sim::{TurmoilOptions, run_turmoil};
use rand::SeedableRng;

static RUNS: Mutex<()> = Mutex::new(());
static LIBC_RNG: Once = Once::new();

/// Devices per fleet in these runs.
const DEVICES_PER_FLEET: u32 = 20;

/// Seeds every scenario runs under on both engines.
const SEEDS: [u64; 3] = [1, 2, 3];

/// Serializes simulation runs in this binary: mad-turmoil's clock switch and rng are global.
fn exclusive() -> MutexGuard<'static, ()> {
    LIBC_RNG.call_once(|| mad_turmoil::rand::set_rng(rand::rngs::StdRng::seed_from_u64(0x5EED)));
    RUNS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn scaled(name: &str) -> Scenario {
    let mut scenario = catalog::get(name).unwrap_or_else(|| panic!("{name} is in the catalogue"));
    for fleet in &mut scenario.fleets {
        fleet.count = fleet.count.min(DEVICES_PER_FLEET);
    }
    scenario
}

/// Runs `scenario` with `seed` on the fast engine, then on turmoil.
fn run_both(scenario: &Scenario, seed: u64) -> (Outcome, Outcome) {
    let _turn = exclusive();
    let fast = run_fast(scenario, seed, FastOptions::default())
        .unwrap_or_else(|error| panic!("{} seed {seed} on fast: {error}", scenario.name));
    let turmoil = {
        let _sim_clocks = mad_turmoil::time::SimClocksGuard::init();
        run_turmoil(scenario, seed, &TurmoilOptions::default())
            .unwrap_or_else(|error| panic!("{} seed {seed} on turmoil: {error}", scenario.name))
            .outcome
    };
    assert_eq!((fast.engine.as_str(), turmoil.engine.as_str()), ("fast", "turmoil"));
    assert_eq!(fast.scenario_hash, turmoil.scenario_hash, "both ran the same scenario");
    (fast, turmoil)
}

fn verdicts_by_check(outcome: &Outcome) -> BTreeMap<&str, bool> {
    outcome.checks.iter().map(|check| (check.name.as_str(), check.passed)).collect()
}

fn describe(name: &str, seed: u64, fast: &Outcome, turmoil: &Outcome) -> String {
    format!(
        "{name} seed {seed} (scaled to {DEVICES_PER_FLEET} devices per fleet)\n-- fast:\n{}\n{:?}\n-- turmoil:\n{}\n{:?}",
        fast.verdict_table(),
        fast.counters,
        turmoil.verdict_table(),
        turmoil.counters
    )
}

fn assert_engines_agree_loss_free(name: &str) {
    for seed in SEEDS {
        assert_engines_agree_loss_free_with(name, seed);
    }
}

fn assert_engines_agree_loss_free_with(name: &str, seed: u64) {
    let scenario = scaled(name);
    let (fast, turmoil) = run_both(&scenario, seed);
    let context = describe(name, seed, &fast, &turmoil);
    assert_eq!(fast.verdict, Verdict::Pass, "{context}");
    assert_eq!(turmoil.verdict, Verdict::Pass, "{context}");
    assert_eq!(verdicts_by_check(&fast), verdicts_by_check(&turmoil), "{context}");
    let (f, t) = (&fast.counters, &turmoil.counters);
    assert!(f.published > 0, "{context}");
    assert_eq!(f.published, t.published, "published: {context}");
    assert_eq!(f.acked, t.acked, "acked: {context}");
    assert_eq!((f.lost, t.lost), (0, 0), "lost: {context}");
    assert_eq!(f.delivered, t.delivered, "delivered: {context}");
}

#[test]
fn smoke_agrees_on_both_engines() {
    assert_engines_agree_loss_free("smoke");
}

#[test]
fn subscriber_offline_agrees_on_both_engines() {
    assert_engines_agree_loss_free("subscriber-offline");
}

#[test]
fn republish_agrees_on_both_engines() {
    // Two services talking (a broker and a republisher pod) on both engines.
    assert_engines_agree_loss_free("republish");
}

#[test]
fn device_partition_agrees_on_both_engines() {
    assert_engines_agree_loss_free("device-partition");
}

#[test]
fn broker_crash_loses_acknowledged_messages_on_both_engines() {
    let scenario = scaled("broker-crash");
    for seed in SEEDS {
        let (fast, turmoil) = run_both(&scenario, seed);
        let context = describe("broker-crash", seed, &fast, &turmoil);
        for outcome in [&fast, &turmoil] {
            assert!(outcome.counters.lost > 0, "{} saw no loss: {context}", outcome.engine);
            assert_eq!(outcome.verdict, Verdict::Fail, "{context}");
            assert_eq!(verdicts_by_check(outcome).get("total-queue"), Some(&false), "{context}");
        }
        // Both invoke the same plan: the outage is too short to fill a pending queue.
        assert_eq!(fast.counters.published, turmoil.counters.published, "{context}");
    }
}

#[test]
fn broker_queue_drops_are_declared_by_both_engines() {
    // 20 devices x 1 msg/s x 30 s offline = 600 messages for a 200-message queue: it must drop,
    // and both engines must declare the drops under the oracle's name (not leave them as loss).
    let mut scenario = scaled("subscriber-offline");
    scenario.pods[0].config.insert("subscriber_queue_messages_limit".into(), toml::Value::Integer(200));
    let seed = 5;
    let (fast, turmoil) = run_both(&scenario, seed);
    let context = describe("subscriber-offline (queue of 200)", seed, &fast, &turmoil);
    for outcome in [&fast, &turmoil] {
        let dropped = outcome.counters.dropped.get("queue_full").copied().unwrap_or(0);
        assert!(dropped > 0, "{} declared no queue drop: {context}", outcome.engine);
        // The one subscriber missed exactly the copies its queue dropped. How many differs by
        // engine (when the broker notices the subscriber is gone depends on the network model).
        assert_eq!(outcome.counters.lost, dropped, "{context}");
        assert_eq!(outcome.verdict, Verdict::Fail, "undeclared-bound drops fail the run: {context}");
        assert_eq!(verdicts_by_check(outcome).get("drops"), Some(&false), "{context}");
    }
    assert_eq!(verdicts_by_check(&fast), verdicts_by_check(&turmoil), "{context}");
    assert_eq!(fast.counters.published, turmoil.counters.published, "{context}");
}
