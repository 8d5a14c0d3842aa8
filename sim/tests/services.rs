//! Services other than a broker on the fast engine: the catalogue's `republish` (a broker and a
//! republisher pod talking over the simulated network) passes, replays bit for bit, survives a
//! crash of the republisher without loss (store-and-forward), and a republisher cut off from its
//! broker is caught by the oracle as loss. Each run is a few hundred devices-seconds: ~1 s in
//! a debug build.

use edgeproof_scenarios::outcome::Verdict;
use edgeproof_scenarios::spec::{DiskFate, Fault, FaultAction};
use edgeproof_scenarios::{Outcome, Scenario, catalog};
use edgeproof_sim::fast::world::{FastOptions, run_fast};

fn small_republish(device_count: u32, duration_secs: u64) -> Scenario {
    let mut scenario = catalog::get("republish").expect("republish is in the catalogue");
    scenario.fleets[0].count = device_count;
    scenario.duration_secs = duration_secs;
    scenario
}

fn run(scenario: &Scenario, seed: u64) -> Outcome {
    run_fast(scenario, seed, FastOptions::default()).expect("scenario runs")
}

#[test]
fn republish_passes_and_replays_with_the_same_trace_hash() {
    let scenario = small_republish(50, 10);
    let first = run(&scenario, 3);
    let again = run(&scenario, 3);
    let other = run(&scenario, 4);
    assert_eq!(first.verdict, Verdict::Pass, "{}", first.verdict_table());
    assert_eq!(first.counters.published, 500);
    // Every message reached the historian through the republisher, on `cloud/...` (a device
    // whose first publish precedes the subscriptions, a few ms in, is not expected anywhere).
    assert!(first.counters.delivered >= 495, "{}", first.verdict_table());
    assert_eq!(first.counters.lost, 0);
    assert_eq!(first.trace_hash, again.trace_hash, "same seed, different trace");
    assert_eq!(first.counters, again.counters);
    assert_ne!(first.trace_hash, other.trace_hash, "different seeds, same trace");
}

#[test]
fn the_full_catalogue_republish_passes() {
    let scenario = catalog::get("republish").expect("republish is in the catalogue");
    let outcome = run(&scenario, 1);
    assert_eq!(outcome.verdict, Verdict::Pass, "{}", outcome.verdict_table());
    assert_eq!(outcome.counters.delivered, 200 * 30);
}

#[test]
fn a_crashed_republisher_loses_nothing_because_it_acks_the_source_only_after_the_destination() {
    let mut scenario = small_republish(50, 20);
    let uplink = "uplink".to_string();
    scenario.faults = vec![
        Fault { at_secs: 5.0, action: FaultAction::Crash { pod: uplink.clone() } },
        Fault { at_secs: 8.0, action: FaultAction::Restart { pod: uplink, disk: DiskFate::Lost } },
    ];
    let outcome = run(&scenario, 5);
    assert_eq!(outcome.counters.lost, 0, "{}", outcome.verdict_table());
    assert_eq!(outcome.counters.published, 1_000);
    assert!(outcome.counters.delivered >= 995, "{}", outcome.verdict_table());
    // The three seconds offline show in the latency (the messages waited in the broker's
    // session for the republisher), not as loss.
    let passed = |name: &str| outcome.checks.iter().any(|check| check.name == name && check.passed);
    assert!(passed("total-queue") && passed("order") && passed("drops"), "{}", outcome.verdict_table());
    assert!(outcome.latency_ms.max >= 2_500.0, "{}", outcome.verdict_table());
}

#[test]
fn a_republisher_cut_off_from_its_broker_is_caught_as_loss() {
    // The bridge host is partitioned away for the rest of publishing and there is no drain:
    // the devices' publishes are all acknowledged by the broker, but the historian misses the
    // copies. The oracle must see them as lost (it knows the rewrite from the pod's config).
    let mut scenario = small_republish(20, 10);
    scenario.drain_secs = 0;
    scenario.faults =
        vec![Fault { at_secs: 4.0, action: FaultAction::Partition { hosts: vec!["bridge".to_string()] } }];
    let outcome = run(&scenario, 6);
    assert_eq!(outcome.counters.acked, outcome.counters.published);
    assert!(outcome.counters.lost > 0, "{}", outcome.verdict_table());
    assert_eq!(outcome.verdict, Verdict::Fail);
}

#[test]
fn after_a_broker_crash_the_republisher_subscribes_again_and_forwarding_resumes() {
    // The in-memory broker loses every session (so messages are lost: the oracle must say so),
    // but once it is back the republisher's fresh source session subscribes again and the
    // messages published after the restart reach the historian.
    let mut scenario = small_republish(20, 20);
    let broker = "broker".to_string();
    scenario.faults = vec![
        Fault { at_secs: 5.0, action: FaultAction::Crash { pod: broker.clone() } },
        Fault { at_secs: 7.0, action: FaultAction::Restart { pod: broker, disk: DiskFate::Kept } },
    ];
    let outcome = run(&scenario, 8);
    assert_eq!(outcome.counters.published, 400);
    assert!(outcome.counters.lost > 0, "{}", outcome.verdict_table());
    assert_eq!(outcome.verdict, Verdict::Fail);
    // 13 of the 20 seconds come after the restart: at least their messages arrive.
    assert!(outcome.counters.delivered >= 20 * 12, "{}", outcome.verdict_table());
}
