//! The oracle pipeline over the real catalogue: scenario -> workload -> ledger -> checkers ->
//! outcome, driven by a tiny ideal world written here (every publish acked after 2 ms and
//! delivered 3 ms after its send to every subscriber whose filters match, deliveries to a
//! partitioned subscriber held until the heal).
//!
//! This is not a model of the system under test - the simulators are - but a check that the
//! catalogue's expectations are achievable by a correct system (ideal world passes) and that the
//! oracle catches the failure each negative scenario is about.

use std::time::Duration;

use edgeproof_scenarios::spec::{FaultAction, Scenario};
use edgeproof_scenarios::{Ledger, Outcome, RunInfo, Stamp, Workload, catalog};
use edgeproof_system::Time;
use edgeproof_system::mqtt::topic::filter_matches;

/// What the ideal world does to one message: deliver it at a time, or lose it.
enum Fate {
    Deliver(Time),
    AckedButLost,
    Indeterminate,
}

fn run(scenario: &Scenario, seed: u64, fate: impl Fn(&str, Time) -> Fate) -> Outcome {
    run_with_sends(scenario, seed, |planned| planned, fate)
}

/// As [`run`], with `send(planned)` deciding when each publish is actually sent (a device that
/// is cut off sends its backlog after it reconnects).
fn run_with_sends(
    scenario: &Scenario,
    seed: u64,
    send: impl Fn(Time) -> Time,
    fate: impl Fn(&str, Time) -> Fate,
) -> Outcome {
    let workload = Workload::new(scenario, seed);
    let mut ledger = Ledger::with_capacity(workload.publisher_count() as usize);
    let observers: Vec<_> = scenario
        .subscribers
        .iter()
        .map(|subscriber| {
            let id = ledger.register_observer(&subscriber.name, subscriber.qos);
            ledger.subscription_active(id, &subscriber.filters, Time::ZERO);
            (id, subscriber)
        })
        .collect();
    for fleet in workload.fleets() {
        for index in 0..fleet.count {
            let device = workload.device(fleet.fleet_index, index);
            ledger.register_publisher(device.publisher_id, &device.client_id);
            for planned in device.publishes() {
                let sent = send(planned.at);
                ledger.publish_invoked(
                    device.publisher_id,
                    planned.seq,
                    &device.topic,
                    fleet.qos,
                    planned.at,
                    sent,
                );
                let stamp = Stamp {
                    flags: 0,
                    publisher_id: device.publisher_id,
                    seq: planned.seq,
                    planned_send: planned.at,
                    actual_send: sent,
                };
                for (observer, subscriber) in &observers {
                    if !subscriber.filters.iter().any(|filter| filter_matches(filter, &device.topic)) {
                        continue;
                    }
                    match fate(&subscriber.host, sent) {
                        Fate::Deliver(at) => ledger.delivered(*observer, &stamp, &device.topic, at, false),
                        Fate::AckedButLost | Fate::Indeterminate => {}
                    }
                }
                match fate("", sent) {
                    Fate::Indeterminate => {
                        ledger.publish_indeterminate(device.publisher_id, planned.seq, sent)
                    }
                    _ => ledger.publish_acked(
                        device.publisher_id,
                        planned.seq,
                        sent + Duration::from_millis(2),
                    ),
                }
            }
        }
    }
    let run = RunInfo {
        seed,
        engine: "ideal-test-world".to_string(),
        trace_hash: "0".to_string(),
        sim_seconds: scenario.end().as_secs_f64(),
        wall_seconds: 0.0,
        events: ledger.counters().invoked,
        commit: None,
    };
    Outcome::from_ledger(scenario, &ledger, run)
}

fn partition_window(scenario: &Scenario) -> (String, Time, Time) {
    let cut = scenario.faults.iter().find(|fault| matches!(fault.action, FaultAction::Partition { .. }));
    let heal = scenario.faults.iter().find(|fault| matches!(fault.action, FaultAction::Heal { .. }));
    let (cut, heal) = (cut.expect("a partition"), heal.expect("a heal"));
    let FaultAction::Partition { hosts } = &cut.action else { unreachable!() };
    (hosts[0].clone(), cut.at(), heal.at())
}

#[test]
fn smoke_passes_in_an_ideal_world() {
    let scenario = catalog::get("smoke").expect("catalogue");
    let outcome = run(&scenario, 1, |_, sent| Fate::Deliver(sent + Duration::from_millis(3)));
    assert!(outcome.passed(), "{}", outcome.verdict_table());
    assert_eq!(outcome.counters.published, 60_000);
    assert_eq!(outcome.counters.delivered, 60_000);
    assert!((outcome.latency_ms.p99 - 3.0).abs() < 0.01, "{:?}", outcome.latency_ms);
}

#[test]
fn subscriber_offline_passes_when_the_backlog_arrives_after_the_heal() {
    let scenario = catalog::get("subscriber-offline").expect("catalogue");
    let (host, cut, heal) = partition_window(&scenario);
    let outcome = run(&scenario, 2, |receiver, sent| {
        let arrival = sent + Duration::from_millis(3);
        if receiver == host && arrival >= cut && arrival < heal {
            Fate::Deliver(heal + Duration::from_millis(500))
        } else {
            Fate::Deliver(arrival)
        }
    });
    assert!(outcome.passed(), "{}", outcome.verdict_table());
    // The held messages waited up to the whole 30 s outage, measured from their planned time.
    assert!(outcome.latency_ms.max > 29_000.0, "{:?}", outcome.latency_ms);
}

#[test]
fn subscriber_offline_fails_when_the_backlog_is_dropped() {
    let scenario = catalog::get("subscriber-offline").expect("catalogue");
    let (host, cut, heal) = partition_window(&scenario);
    let outcome = run(&scenario, 3, |receiver, sent| {
        let arrival = sent + Duration::from_millis(3);
        if receiver == host && arrival >= cut && arrival < heal {
            Fate::AckedButLost
        } else {
            Fate::Deliver(arrival)
        }
    });
    assert!(!outcome.passed());
    // 500 devices x 30 s of outage at one message per second.
    assert!((14_900..=15_100).contains(&outcome.counters.lost), "{}", outcome.counters.lost);
}

#[test]
fn broker_crash_is_reported_as_loss() {
    let scenario = catalog::get("broker-crash").expect("catalogue");
    let crash = scenario.faults[0].at();
    let restart = scenario.faults[1].at();
    // Messages acked in the last 200 ms before the crash were still queued in memory: lost.
    // Publishes while the broker is down never get an answer: indeterminate, never delivered.
    let outcome = run(&scenario, 4, |_, sent| {
        if sent >= crash && sent < restart {
            Fate::Indeterminate
        } else if sent + Duration::from_millis(200) >= crash && sent < crash {
            Fate::AckedButLost
        } else {
            Fate::Deliver(sent + Duration::from_millis(3))
        }
    });
    assert!(!outcome.passed());
    assert!(outcome.counters.lost > 0);
    assert_eq!(outcome.counters.indeterminate, 500 * 5);
    assert_eq!(outcome.counters.recovered, 0);
    let failed: Vec<&str> =
        outcome.checks.iter().filter(|check| !check.passed).map(|check| check.name.as_str()).collect();
    assert_eq!(failed, ["total-queue"]);
}

#[test]
fn device_partition_passes_when_the_backlog_is_sent_after_the_heal() {
    let scenario = catalog::get("device-partition").expect("catalogue");
    let (_, cut, heal) = partition_window(&scenario);
    let reconnected = heal + Duration::from_secs(5);
    // Samples planned during the outage wait in the device's pending queue (120 at most, the
    // limit is 300) and go out in order right after the reconnect, 1 ms apart; samples planned in
    // the first second after it queue behind them.
    let send = |planned: Time| {
        if planned >= cut && planned < reconnected + Duration::from_secs(1) {
            reconnected + Duration::from_millis((planned - cut).as_secs() + 1)
        } else {
            planned
        }
    };
    let outcome =
        run_with_sends(&scenario, 5, send, |_, sent| Fate::Deliver(sent + Duration::from_millis(3)));
    assert!(outcome.passed(), "{}", outcome.verdict_table());
    // Latency from the planned time shows the outage; from the actual send it does not.
    assert!(outcome.latency_ms.max > 120_000.0, "{:?}", outcome.latency_ms);
    assert!(outcome.latency_raw_ms.max < 10.0, "{:?}", outcome.latency_raw_ms);
    assert!(outcome.send_lag_ms.max > 120_000.0, "{:?}", outcome.send_lag_ms);
}
