//! Every catalogue scenario, unchanged, on the fast engine under several seeds: the loss-free
//! scenarios pass (nothing lost, order kept, latency recorded) and `broker-crash` shows the loss
//! the oracle must see (the negative test that proves the oracle is not blind).
//!
//! The scenarios run at their catalogue sizes so that a failure replays exactly with the command
//! every assertion prints. One test per scenario lets the harness run them in parallel.

use edgeproof_scenarios::outcome::Verdict;
use edgeproof_scenarios::{Outcome, catalog};
use edgeproof_sim::fast::world::{FastOptions, run_fast};

/// Seeds every scenario runs under.
const SEEDS: [u64; 3] = [1, 2, 3];

/// What the oracle must say about a catalogue scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expectation {
    /// Verdict pass, nothing lost, order kept, latency recorded.
    LossFree,
    /// Acknowledged messages are lost and the verdict is fail.
    LosesAcknowledged,
}

/// Every catalogue scenario must be listed here; a new one fails
/// [`every_catalogue_scenario_has_an_expectation`] until it is.
fn expectation(name: &str) -> Option<Expectation> {
    match name {
        "smoke" | "subscriber-offline" | "device-partition" | "republish" => Some(Expectation::LossFree),
        "broker-crash" => Some(Expectation::LosesAcknowledged),
        _ => None,
    }
}

fn replay_command(name: &str, seed: u64) -> String {
    format!("cargo run --release -- run {name} --seed {seed} --engine fast")
}

/// Runs catalogue scenario `name` under every seed; each outcome comes with the text a failing
/// assertion prints (seed, replay command, verdict table and counters).
fn run_all_seeds(name: &str) -> Vec<(Outcome, String)> {
    let scenario = catalog::get(name).unwrap_or_else(|| panic!("{name} is in the catalogue"));
    let runs: Vec<(Outcome, String)> = SEEDS
        .iter()
        .map(|&seed| {
            let outcome = run_fast(&scenario, seed, FastOptions::default())
                .unwrap_or_else(|error| panic!("{name} seed {seed}: {error}"));
            let context = format!(
                "{name} seed {seed}; replay with `{}`\n{}\n{:?}",
                replay_command(name, seed),
                outcome.verdict_table(),
                outcome.counters
            );
            assert_eq!(outcome.seed, seed, "{context}");
            assert_eq!(outcome.engine, "fast", "{context}");
            (outcome, context)
        })
        .collect();
    // Different seeds draw different latencies and phases: the traces differ.
    for (index, (outcome, context)) in runs.iter().enumerate() {
        for (other, _) in &runs[index + 1..] {
            assert_ne!(outcome.trace_hash, other.trace_hash, "two seeds, one trace: {context}");
        }
    }
    runs
}

fn check_passed(outcome: &Outcome, check: &str, context: &str) -> bool {
    outcome
        .checks
        .iter()
        .find(|candidate| candidate.name == check)
        .unwrap_or_else(|| panic!("no {check} check: {context}"))
        .passed
}

fn assert_loss_free(name: &str) {
    assert_eq!(expectation(name), Some(Expectation::LossFree));
    for (outcome, context) in run_all_seeds(name) {
        let counters = &outcome.counters;
        assert_eq!(outcome.verdict, Verdict::Pass, "{context}");
        assert!(counters.published > 0, "{context}");
        assert_eq!(counters.lost, 0, "{context}");
        assert_eq!(counters.out_of_order, 0, "{context}");
        assert!(check_passed(&outcome, "order", &context), "{context}");
        assert_eq!(counters.unexpected, 0, "{context}");
        assert!(counters.delivered > 0, "{context}");
        assert!(outcome.latency_ms.count > 0, "no latency recorded: {context}");
        assert!(outcome.latency_ms.p99 > 0.0, "{context}");
    }
}

#[test]
fn every_catalogue_scenario_has_an_expectation() {
    let scenarios = catalog::all();
    assert!(scenarios.len() >= 4, "the catalogue shrank");
    for scenario in scenarios {
        assert!(
            expectation(&scenario.name).is_some(),
            "catalogue scenario {} has no expectation in catalogue_fast.rs (and no test)",
            scenario.name
        );
    }
}

#[test]
fn smoke_passes_under_every_seed() {
    assert_loss_free("smoke");
}

#[test]
fn republish_passes_under_every_seed() {
    assert_loss_free("republish");
}

#[test]
fn subscriber_offline_passes_under_every_seed() {
    assert_loss_free("subscriber-offline");
}

#[test]
fn device_partition_passes_under_every_seed() {
    assert_loss_free("device-partition");
}

#[test]
fn broker_crash_loses_acknowledged_messages_and_fails_under_every_seed() {
    assert_eq!(expectation("broker-crash"), Some(Expectation::LosesAcknowledged));
    for (outcome, context) in run_all_seeds("broker-crash") {
        assert!(outcome.counters.lost > 0, "the oracle saw no loss: {context}");
        assert_eq!(outcome.verdict, Verdict::Fail, "{context}");
        assert!(!check_passed(&outcome, "total-queue", &context), "{context}");
        // After the restart the devices publish again and their later messages arrive.
        assert!(outcome.counters.delivered > outcome.counters.lost, "{context}");
    }
}
