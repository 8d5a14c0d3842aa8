//! Scenario runs on the fast engine: determinism of the trace hash, the catalogue's `smoke`
//! passing with nothing lost, and `broker-crash` showing the loss the oracle must see.

use edgeproof_scenarios::{Outcome, Scenario, catalog};
use edgeproof_sim::fast::world::{FastOptions, FastWorld, run_fast};

/// A scaled-down copy of `smoke`: fewer devices and seconds so debug builds stay quick.
fn small_smoke(device_count: u32, duration_secs: u64) -> Scenario {
    let mut scenario = catalog::get("smoke").expect("smoke is in the catalogue");
    scenario.fleets[0].count = device_count;
    scenario.duration_secs = duration_secs;
    scenario
}

fn run(scenario: &Scenario, seed: u64) -> Outcome {
    run_fast(scenario, seed, FastOptions::default()).expect("scenario runs")
}

#[test]
fn same_seed_gives_the_same_trace_hash_and_another_seed_a_different_one() {
    let scenario = small_smoke(20, 10);
    let first = run(&scenario, 1);
    let again = run(&scenario, 1);
    let other = run(&scenario, 2);
    assert_eq!(first.trace_hash, again.trace_hash, "same seed, different trace");
    assert_eq!(first.counters, again.counters);
    assert_ne!(first.trace_hash, other.trace_hash, "different seeds, same trace");
    assert!(first.events > 1000, "suspiciously few events: {}", first.events);
}

#[test]
fn smoke_passes_with_nothing_lost() {
    // The catalogue's smoke unchanged: 1,000 devices, 60 s, one subscriber on `#`.
    let scenario = catalog::get("smoke").expect("smoke is in the catalogue");
    let outcome = run(&scenario, 7);
    let counters = &outcome.counters;
    assert!(counters.published >= 1000 * 59, "published only {}", counters.published);
    assert_eq!(counters.acked, counters.published, "every publish is acknowledged: {counters:?}");
    assert_eq!(counters.lost, 0, "{}", outcome.verdict_table());
    assert_eq!(counters.unexpected, 0);
    assert_eq!(counters.out_of_order, 0);
    assert!(counters.dropped.is_empty());
    assert!(counters.delivered > 0 && counters.delivered <= counters.published);
    assert!(outcome.passed(), "{}", outcome.verdict_table());
}

#[test]
fn broker_crash_reports_lost_messages() {
    let mut scenario = catalog::get("broker-crash").expect("broker-crash is in the catalogue");
    scenario.fleets[0].count = 100;
    let outcome = run(&scenario, 3);
    assert!(outcome.counters.lost > 0, "the crash lost nothing?\n{}", outcome.verdict_table());
    assert!(!outcome.passed(), "broker-crash must fail its lost_max = 0 expectation");
}

#[test]
fn world_counts_and_trace_lines_are_available_after_a_run() {
    let scenario = small_smoke(5, 3);
    let options = FastOptions { trace_lines: 8, ..FastOptions::default() };
    let mut world = FastWorld::new(&scenario, 11, options).expect("world builds");
    assert_eq!(world.client_count(), 6);
    world.run();
    assert_eq!(world.recent_trace_lines().len(), 8);
    assert!(world.net_stats().connects_accepted >= 6);
    assert_eq!(world.stats().dropped_device_queue_full, 0);
    let outcome = world.outcome(0.0);
    assert_eq!(outcome.engine, "fast");
    assert_eq!(outcome.trace_hash, format!("{:016x}", world.trace_hash()));
}

#[test]
fn broker_queue_drops_are_declared_and_a_large_enough_queue_loses_nothing() {
    let mut scenario = catalog::get("subscriber-offline").expect("subscriber-offline is in the catalogue");
    scenario.fleets[0].count = 50;
    // 50 devices x 1 msg/s x 30 s offline = 1,500 queued messages: a 200-message queue must drop.
    scenario.pods[0].config.insert("subscriber_queue_messages_limit".into(), toml::Value::Integer(200));
    let small_queue = run(&scenario, 5);
    let dropped = small_queue.counters.dropped.get("queue_full").copied().unwrap_or(0);
    assert!(dropped > 0, "a full queue dropped nothing?\n{}", small_queue.verdict_table());
    assert!(!small_queue.passed(), "undeclared-bound drops must fail the run");

    scenario.pods[0].config.insert("subscriber_queue_messages_limit".into(), toml::Value::Integer(20_000));
    let large_queue = run(&scenario, 5);
    assert!(large_queue.counters.dropped.is_empty(), "{:?}", large_queue.counters.dropped);
    assert_eq!(large_queue.counters.lost, 0, "{}", large_queue.verdict_table());
    assert!(large_queue.passed(), "{}", large_queue.verdict_table());
}

#[test]
fn device_partition_recovers_with_nothing_lost() {
    let mut scenario = catalog::get("device-partition").expect("device-partition is in the catalogue");
    scenario.fleets[0].count = 30;
    let outcome = run(&scenario, 9);
    assert_eq!(outcome.counters.lost, 0, "{}", outcome.verdict_table());
    assert_eq!(outcome.counters.acked, outcome.counters.published);
    assert!(outcome.passed(), "{}", outcome.verdict_table());
    // The outage shows as latency from the planned send time (no coordinated omission).
    assert!(outcome.latency_ms.max > 60_000.0, "latency max {} ms", outcome.latency_ms.max);
}

/// A one-way partition from the devices' host to the broker's: device bytes are held (their
/// connections time out and reconnects fail) while the broker's bytes still reach them; after
/// the heal everything acknowledged arrives.
#[test]
fn one_way_partition_holds_device_traffic_and_heal_delivers_it() {
    let text = r#"
name = "one-way"
description = "Devices cannot reach the broker for 45 s; the broker can still reach them."
duration_secs = 90
drain_secs = 60

[network]
latency_ms = { min = 1, max = 3 }

[[hosts]]
name = "edge"

[[hosts]]
name = "cell1"

[[hosts]]
name = "ops"

[[pods]]
name = "broker"
host = "edge"
kind = "broker"

[[fleets]]
name = "sensors"
host = "cell1"
broker = "broker"
count = 20
client_id = "dev-{index}"
topic = "plant/cell1/{client_id}/telemetry"
qos = 1
publish_interval_ms = 1000
payload_bytes = 64
clean_start = false
session_expiry_secs = 3600
keep_alive_secs = 10

[[subscribers]]
name = "historian"
host = "ops"
broker = "broker"
client_id = "historian"
filters = ["plant/#"]
qos = 1
clean_start = false
session_expiry_secs = 3600

[[faults]]
at_secs = 20
action = "partition_oneway"
from = "cell1"
to = "edge"

[[faults]]
at_secs = 65
action = "heal"
hosts = []

[expect]
lost_max = 0
"#;
    let scenario = Scenario::from_toml_str(text, "one-way.toml").expect("the scenario parses");
    let mut world = FastWorld::new(&scenario, 4, FastOptions::default()).expect("world builds");
    world.run();
    let net = world.net_stats().clone();
    let outcome = world.outcome(0.0);
    assert!(net.connects_timed_out > 0, "reconnects across the one-way partition should time out: {net:?}");
    assert!(net.flows_held > 0, "device bytes should have been held: {net:?}");
    assert_eq!(outcome.counters.lost, 0, "{}", outcome.verdict_table());
    assert_eq!(outcome.counters.acked, outcome.counters.published);
    assert!(outcome.passed(), "{}", outcome.verdict_table());
}

/// Publishes still unacknowledged when the run ends are indeterminate, never acked or lost: the
/// fleet is cut off for the last 40 s of publishing and the 1 s drain is too short for devices in
/// reconnect backoff to resend them.
#[test]
fn publishes_unacknowledged_at_the_end_are_indeterminate() {
    let mut scenario = catalog::get("device-partition").expect("device-partition is in the catalogue");
    scenario.fleets[0].count = 10;
    scenario.duration_secs = 60;
    scenario.drain_secs = 1;
    scenario.faults[0].at_secs = 20.0;
    scenario.faults.truncate(1);
    let outcome = run(&scenario, 12);
    let counters = &outcome.counters;
    assert!(counters.indeterminate > 0, "{counters:?}");
    assert_eq!(counters.acked + counters.indeterminate + counters.failed, counters.published, "{counters:?}");
    assert_eq!(counters.lost, 0, "an unacknowledged publish is never lost: {}", outcome.verdict_table());
}

/// Payloads above the broker's Maximum Packet Size are refused by the device clients and show
/// up in the outcome (failed or declared dropped), never as a crash of the world.
#[test]
fn oversized_publishes_are_accounted_not_fatal() {
    let mut scenario = small_smoke(5, 5);
    scenario.fleets[0].payload_bytes = 2_000;
    scenario.pods[0].config.insert("max_packet_size_bytes".into(), toml::Value::Integer(1_000));
    let outcome = run(&scenario, 21);
    let counters = &outcome.counters;
    let dropped = counters.dropped.get("packet_too_large").copied().unwrap_or(0);
    assert!(counters.failed + dropped > 0, "{counters:?}");
    assert_eq!(counters.delivered, 0, "{counters:?}");
    assert_eq!(counters.lost, 0, "a refused publish is never lost: {counters:?}");
}
