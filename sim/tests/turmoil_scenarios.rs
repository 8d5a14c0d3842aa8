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
    let scenario = scaled("smoke", 200);
    let TurmoilRun { outcome, stats } = run(&scenario, 1);
    let table = describe(&outcome);
    assert_eq!(outcome.engine, "turmoil");
    assert_eq!(outcome.verdict, Verdict::Pass, "{table}");
    // 200 devices x 60 publishes, all acknowledged and delivered to the one subscriber.
    assert_eq!(outcome.counters.published, 12_000, "{table}");
    assert_eq!(outcome.counters.acked, 12_000, "{table}");
    assert_eq!(outcome.counters.lost, 0, "{table}");
    assert_eq!(outcome.counters.out_of_order, 0, "{table}");
    assert_eq!(outcome.counters.delivered, 12_000, "{table}");
    assert_eq!(outcome.latency_ms.count, outcome.counters.delivered, "{table}");
    assert!(outcome.latency_ms.p99 > 0.0 && outcome.latency_ms.p99 <= 50.0, "{table}");
    assert!((outcome.sim_seconds - 70.0).abs() < 1e-9, "{}", outcome.sim_seconds);
    assert_eq!(stats.steps, 70_000, "one millisecond tick over 70 s");
    assert_eq!(stats.unstamped_deliveries, 0);
}

#[test]
fn the_same_seed_gives_the_same_trace_and_another_seed_another() {
    let mut scenario = scaled("smoke", 20);
    scenario.duration_secs = 10;
    scenario.drain_secs = 5;
    let first = run(&scenario, 7).outcome;
    let again = run(&scenario, 7).outcome;
    let other = run(&scenario, 8).outcome;
    assert_eq!(first.verdict, Verdict::Pass, "{}", describe(&first));
    assert_eq!(first.trace_hash, again.trace_hash, "seed 7 replays differently");
    assert_eq!(first.counters, again.counters);
    assert_ne!(first.trace_hash, other.trace_hash, "seeds 7 and 8 gave the same trace");
}

/// Set in the child processes of [`a_crash_and_restart_replays_bit_for_bit_in_a_fresh_process`].
const REPLAY_CHILD_ENV: &str = "EDGEPROOF_TURMOIL_REPLAY_CHILD";

#[test]
fn a_crash_and_restart_replays_bit_for_bit_in_a_fresh_process() {
    // Crash and bounce drop and rebuild a host's runtime and sockets mid-run. The order in which
    // tokio shuts a dropped runtime's tasks down depends on process-wide task ids (see the
    // `turmoil_world` module docs), so a replay is compared the way a failing seed is replayed:
    // in a fresh process. The test runs itself twice as a child and compares what they print.
    let scenario = scaled("broker-crash", 20);
    if std::env::var_os(REPLAY_CHILD_ENV).is_some() {
        let outcome = run(&scenario, 21).outcome;
        assert!(outcome.counters.lost > 0, "{}", describe(&outcome));
        println!("REPLAY trace_hash={} counters={:?}", outcome.trace_hash, outcome.counters);
        return;
    }
    let replay = || {
        let output = std::process::Command::new(std::env::current_exe().expect("the test binary"))
            .args(["--exact", "a_crash_and_restart_replays_bit_for_bit_in_a_fresh_process", "--nocapture"])
            .env(REPLAY_CHILD_ENV, "1")
            .output()
            .expect("the test binary runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
            .lines()
            .find(|line| line.starts_with("REPLAY "))
            .expect("the child reports its run")
            .to_string()
    };
    let first = replay();
    let again = replay();
    assert!(first.contains("trace_hash="), "{first}");
    assert_eq!(first, again, "broker-crash seed 21 replays differently in a fresh process");
}

#[test]
fn broker_crash_on_turmoil_loses_acknowledged_messages() {
    let scenario = scaled("broker-crash", 200);
    let TurmoilRun { outcome, stats } = run(&scenario, 3);
    let table = describe(&outcome);
    println!("{table}");
    assert_eq!(stats.faults_applied, 3, "crash, restart and the end-of-publishing recovery");
    assert!(outcome.counters.lost > 0, "{table}");
    assert_eq!(outcome.verdict, Verdict::Fail, "{table}");
    assert!(!outcome.checks.iter().find(|check| check.name == "total-queue").expect("checked").passed);
    // After the restart the devices reconnect and publish again: later messages arrive.
    assert!(outcome.counters.delivered > outcome.counters.lost, "{table}");
    assert_eq!(outcome.counters.unexpected, 0, "{table}");
}

#[test]
fn subscriber_offline_on_turmoil_delivers_the_backlog_after_the_heal() {
    let scenario = scaled("subscriber-offline", 100);
    let outcome = run(&scenario, 5).outcome;
    let table = describe(&outcome);
    println!("{table}");
    assert_eq!(outcome.verdict, Verdict::Pass, "{table}");
    assert_eq!(outcome.counters.lost, 0, "{table}");
    // Messages published during the 30 s partition waited at least until the heal.
    assert!(outcome.latency_ms.max >= 20_000.0, "{table}");
}

#[test]
fn device_partition_on_turmoil_publishes_the_backlog_after_the_heal() {
    let scenario = scaled("device-partition", 50);
    let outcome = run(&scenario, 9).outcome;
    let table = describe(&outcome);
    println!("{table}");
    assert_eq!(outcome.verdict, Verdict::Pass, "{table}");
    assert_eq!(outcome.counters.lost, 0, "{table}");
    assert!(outcome.latency_ms.max >= 60_000.0, "latency from the planned time shows the outage: {table}");
}

/// A scenario the catalogue does not have: a slow link to the subscriber, then a one-way
/// partition that swallows everything the devices send while they still hear the broker.
const LINK_AND_ONE_WAY: &str = r#"
name = "link-and-one-way"
description = "Slow subscriber link from 5 s; devices -> broker cut one way from 15 s to 25 s."
duration_secs = 40
drain_secs = 30

[network]
latency_ms = { min = 1, max = 2 }

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
keep_alive_secs = 5

[[subscribers]]
name = "historian"
host = "ops"
broker = "broker"
client_id = "historian"
filters = ["plant/#"]
qos = 1
clean_start = false
session_expiry_secs = 3600
keep_alive_secs = 5

[[faults]]
at_secs = 5
action = "link"
hosts = ["edge", "ops"]
latency_ms = { min = 40, max = 60 }

[[faults]]
at_secs = 15
action = "partition_oneway"
from = "cell1"
to = "edge"

[[faults]]
at_secs = 25
action = "heal"

[expect]
lost_max = 0
unexpected_max = 0
ordered = true
drain_complete_within_secs = 30
"#;

#[test]
fn a_slow_link_and_a_one_way_partition_on_turmoil_lose_nothing() {
    let scenario =
        Scenario::from_toml_str(LINK_AND_ONE_WAY, "link-and-one-way.toml").expect("valid scenario");
    let TurmoilRun { outcome, stats } = run(&scenario, 11);
    let table = describe(&outcome);
    println!("{table}\n{stats:?}");
    assert_eq!(outcome.verdict, Verdict::Pass, "{table}");
    assert_eq!(outcome.counters.published, 20 * 40, "{table}");
    assert_eq!(outcome.counters.lost, 0, "{table}");
    // Every delivery after the link fault crosses the 40..60 ms link.
    assert!(outcome.latency_ms.p50 >= 40.0, "{table}");
    // The devices' keep-alive noticed the one-way cut: they reconnected after the heal.
    assert!(stats.clients_connected > 21, "{stats:?}");
    // What the devices sent into the cut waited for the heal.
    assert!(outcome.latency_ms.max >= 5_000.0, "{table}");
}

#[test]
fn exactly_once_on_turmoil_delivers_each_message_once() {
    let mut scenario = scaled("smoke", 50);
    scenario.duration_secs = 20;
    for fleet in &mut scenario.fleets {
        fleet.qos = edgeproof_system::mqtt::QoS::ExactlyOnce;
    }
    scenario.subscribers[0].qos = edgeproof_system::mqtt::QoS::ExactlyOnce;
    let outcome = run(&scenario, 13).outcome;
    let table = describe(&outcome);
    assert_eq!(outcome.verdict, Verdict::Pass, "{table}");
    assert_eq!(outcome.counters.published, 50 * 20, "{table}");
    assert_eq!(outcome.counters.acked, 50 * 20, "PUBCOMP for every publish: {table}");
    assert_eq!(outcome.counters.deliveries, 50 * 20, "{table}");
    assert_eq!(outcome.counters.duplicated, 0, "{table}");
}

#[test]
fn republish_on_turmoil_passes_and_replays_with_the_same_trace() {
    // A broker and a republisher pod, each in the generic service shell, over turmoil's TCP.
    let mut scenario = scaled("republish", 50);
    scenario.duration_secs = 10;
    let first = run(&scenario, 9).outcome;
    let again = run(&scenario, 9).outcome;
    let table = describe(&first);
    assert_eq!(first.verdict, Verdict::Pass, "{table}");
    assert_eq!(first.counters.published, 500, "{table}");
    assert_eq!(first.counters.delivered, 500, "{table}");
    assert_eq!(first.trace_hash, again.trace_hash, "same seed, different trace");
    assert_eq!(first.counters, again.counters);
}
