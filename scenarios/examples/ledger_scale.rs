//! Measures the ledger at the scale the fast simulator targets: N devices (default 1,000,000)
//! publishing every 10 s for M rounds (default 6, one simulated minute), one subscriber on `#`,
//! every publish acknowledged and delivered once, then every checker run over the result.
//!
//! Run: `cargo run --release -p edgeproof-scenarios --example ledger_scale [devices] [rounds]`.
//! It prints wall time per phase and the process's peak resident memory (Linux `VmHWM`). This is
//! a measurement tool, not part of the library: it alone reads the wall clock and `/proc`.

use std::time::Duration;

use edgeproof_scenarios::spec::Scenario;
use edgeproof_scenarios::{Ledger, Outcome, RunInfo, Stamp};
use edgeproof_system::Time;
use edgeproof_system::mqtt::QoS;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

#[allow(clippy::disallowed_methods)] // A benchmark measures wall time by definition.
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let devices: u64 = args.next().and_then(|arg| arg.parse().ok()).unwrap_or(1_000_000);
    let rounds: u64 = args.next().and_then(|arg| arg.parse().ok()).unwrap_or(6);
    let scenario = edgeproof_scenarios::catalog::get("smoke").expect("catalogue");
    let baseline = peak_rss_mib();

    let start = now();
    let mut ledger = Ledger::with_capacity(devices as usize);
    let observer = ledger.register_observer("historian", QoS::AtLeastOnce);
    ledger.subscription_active(observer, &["#"], Time::ZERO);
    let topics: Vec<String> =
        (0..devices).map(|device| format!("plant/cell1/dev-{device}/telemetry")).collect();
    for device in 0..devices {
        ledger.register_publisher(device, &format!("dev-{device}"));
    }
    let registered = start.elapsed();

    let start = now();
    for round in 0..rounds {
        for device in 0..devices {
            // Spread devices over the 10 s interval, as the workload's phases do.
            let planned = Time::from_nanos(round * 10_000_000_000 + device * 10_000_000_000 / devices);
            let sent = planned + Duration::from_micros(50);
            let topic = &topics[device as usize];
            ledger.publish_invoked(device, round, topic, QoS::AtLeastOnce, planned, sent);
            ledger.publish_acked(device, round, sent + Duration::from_millis(2));
            let stamp = Stamp {
                flags: 0,
                publisher_id: device,
                seq: round,
                planned_send: planned,
                actual_send: sent,
            };
            ledger.delivered(observer, &stamp, topic, sent + Duration::from_millis(3), false);
        }
    }
    let recorded = start.elapsed();
    let messages = devices * rounds;

    let start = now();
    let outcome = Outcome::from_ledger(
        &scenario_with_rounds(&scenario, rounds),
        &ledger,
        RunInfo {
            seed: 0,
            engine: "ledger-scale".to_string(),
            trace_hash: String::new(),
            sim_seconds: rounds as f64 * 10.0,
            wall_seconds: recorded.as_secs_f64(),
            events: messages * 3,
            commit: None,
        },
    );
    let checked = start.elapsed();
    assert_eq!(outcome.counters.lost, 0);
    assert_eq!(outcome.counters.delivered, messages);
    println!("{}", outcome.verdict_table());
    println!(
        "{devices} devices x {rounds} rounds = {messages} messages: register {:.2} s, record {:.2} s \
         ({:.0} ns per message: invoke + ack + deliver), check {:.2} s; peak RSS {:.0} MiB \
         ({:.0} B per device incl. topic strings)",
        registered.as_secs_f64(),
        recorded.as_secs_f64(),
        recorded.as_nanos() as f64 / messages as f64,
        checked.as_secs_f64(),
        peak_rss_mib(),
        (peak_rss_mib() - baseline) * 1024.0 * 1024.0 / devices as f64,
    );
}

/// The smoke scenario stretched to the measured run's length (its checkers do not depend on it
/// beyond the drain bound).
fn scenario_with_rounds(scenario: &Scenario, rounds: u64) -> Scenario {
    let mut stretched = scenario.clone();
    stretched.duration_secs = rounds * 10;
    stretched.expect.drain_complete_within_secs = None;
    stretched
}
