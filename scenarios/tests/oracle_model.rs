//! Differential test of the oracle: random histories are fed both to the compact [`Ledger`] and
//! to a naive model that keeps every message in ordered maps and applies the total-queue
//! definitions literally; the two must agree on every count, for every observer.
//!
//! The naive model is deliberately the simplest code that states the semantics (reference-oracle
//! A4/A16); the ledger's bitsets, boundaries and witness bookkeeping are what is under test.

use std::collections::{BTreeMap, BTreeSet};

use edgeproof_scenarios::checkers::delivery_counts;
use edgeproof_scenarios::ledger::{DROP_DEVICE_QUEUE_FULL, DROP_QUEUE_FULL, KNOWN_DROP_REASONS, Ledger};
use edgeproof_scenarios::spec::Expectations;
use edgeproof_scenarios::{ObserverId, Stamp};
use edgeproof_system::Time;
use edgeproof_system::mqtt::QoS;
use edgeproof_system::mqtt::topic::filter_matches;
use proptest::prelude::*;

const PUBLISHERS: u64 = 3;
const OBSERVERS: usize = 2;
const TOPICS: [&str; 3] = ["a/x", "a/y", "b/x"];
const FILTER_SETS: [&[&str]; 4] = [&["#"], &["a/+"], &["a/x", "#"], &["b/#"]];

/// One step of a random history.
#[derive(Clone, Debug)]
enum Op {
    Invoke { publisher: u64, topic: usize, qos: u8 },
    Ack { publisher: u64, pick: u64 },
    Fail { publisher: u64, pick: u64 },
    Indeterminate { publisher: u64, pick: u64 },
    Deliver { observer: usize, publisher: u64, pick: u64, beyond: bool, wrong_topic: bool, dup: bool },
    Activate { observer: usize, filters: usize },
    End { observer: usize },
    Drop { observer: usize, publisher: u64, pick: u64, allowed: bool },
}

fn op() -> impl Strategy<Value = Op> {
    let publisher = 0..PUBLISHERS;
    prop_oneof![
        6 => (publisher.clone(), 0..TOPICS.len(), 0_u8..3)
            .prop_map(|(publisher, topic, qos)| Op::Invoke { publisher, topic, qos }),
        4 => (publisher.clone(), any::<u64>()).prop_map(|(publisher, pick)| Op::Ack { publisher, pick }),
        1 => (publisher.clone(), any::<u64>()).prop_map(|(publisher, pick)| Op::Fail { publisher, pick }),
        1 => (publisher.clone(), any::<u64>()).prop_map(|(publisher, pick)| Op::Indeterminate { publisher, pick }),
        8 => (0..OBSERVERS, publisher.clone(), any::<u64>(), prop::bool::weighted(0.05), prop::bool::weighted(0.05), prop::bool::weighted(0.2))
            .prop_map(|(observer, publisher, pick, beyond, wrong_topic, dup)| Op::Deliver {
                observer, publisher, pick, beyond, wrong_topic, dup
            }),
        1 => (0..OBSERVERS, 0..FILTER_SETS.len()).prop_map(|(observer, filters)| Op::Activate { observer, filters }),
        1 => (0..OBSERVERS).prop_map(|observer| Op::End { observer }),
        1 => (0..OBSERVERS, publisher, any::<u64>(), any::<bool>())
            .prop_map(|(observer, publisher, pick, allowed)| Op::Drop { observer, publisher, pick, allowed }),
    ]
}

/// Time windows `[start, end)` in which a filter was active; `None` = still open.
type Windows = Vec<(u64, Option<u64>)>;

#[derive(Default)]
struct Model {
    /// Per publisher, per seq: (topic, qos, invoke time).
    invoked: BTreeMap<u64, Vec<(usize, QoS, u64)>>,
    acked: BTreeSet<(u64, u64)>,
    failed: BTreeSet<(u64, u64)>,
    indeterminate: BTreeSet<(u64, u64)>,
    /// Per observer: filter -> windows [start, end) in time.
    windows: Vec<BTreeMap<&'static str, Windows>>,
    /// Per observer: every delivery (publisher, seq, topic, dup) in order.
    deliveries: Vec<Vec<(u64, u64, String, bool)>>,
    /// Per observer: dropped (publisher, seq) -> allowed.
    dropped: Vec<BTreeMap<(u64, u64), bool>>,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    expected: u64,
    expected_acked: u64,
    delivered: u64,
    lost: u64,
    unexpected: u64,
    duplicated: u64,
    duplicated_exactly_once: u64,
    recovered: u64,
    failed_delivered: u64,
    dropped_excused: u64,
    qos0_expected: u64,
    qos0_missing: u64,
    order_violations: u64,
}

impl Model {
    fn counts(&self, observer: usize, observer_qos: QoS) -> Counts {
        let mut counts = Counts::default();
        let mut first_seen: BTreeSet<(u64, u64)> = BTreeSet::new();
        let mut highest: BTreeMap<(u64, String), u64> = BTreeMap::new();
        for (publisher, seq, topic, dup) in &self.deliveries[observer] {
            let record = self.invoked.get(publisher).and_then(|seqs| seqs.get(*seq as usize));
            let Some((topic_index, qos, _)) = record.filter(|(index, _, _)| TOPICS[*index] == topic) else {
                counts.unexpected += 1;
                continue;
            };
            if !first_seen.insert((*publisher, *seq)) {
                counts.duplicated += 1;
                if *qos == QoS::ExactlyOnce && observer_qos == QoS::ExactlyOnce {
                    counts.duplicated_exactly_once += 1;
                }
                continue;
            }
            counts.delivered += 1;
            let key = (*publisher, TOPICS[*topic_index].to_string());
            match highest.get(&key) {
                Some(high) if seq < high => {
                    if !dup {
                        counts.order_violations += 1;
                    }
                }
                _ => {
                    highest.insert(key, *seq);
                }
            }
        }
        for (publisher, seqs) in &self.invoked {
            for (seq, (topic, qos, at)) in seqs.iter().enumerate() {
                let id = (*publisher, seq as u64);
                let expected = self.windows[observer].iter().any(|(filter, windows)| {
                    filter_matches(filter, TOPICS[*topic])
                        && windows.iter().any(|(start, end)| start <= at && end.is_none_or(|end| *at < end))
                });
                let delivered = first_seen.contains(&id);
                let acked = self.acked.contains(&id);
                if self.indeterminate.contains(&id) && !acked && !self.failed.contains(&id) && delivered {
                    counts.recovered += 1;
                }
                if self.failed.contains(&id) && !acked && delivered {
                    counts.failed_delivered += 1;
                }
                if !expected {
                    continue;
                }
                counts.expected += 1;
                if *qos == QoS::AtMostOnce {
                    counts.qos0_expected += 1;
                    counts.qos0_missing += u64::from(!delivered);
                    continue;
                }
                if !acked {
                    continue;
                }
                counts.expected_acked += 1;
                if delivered {
                    continue;
                }
                if self.dropped[observer].get(&id) == Some(&true) {
                    counts.dropped_excused += 1;
                } else {
                    counts.lost += 1;
                }
            }
        }
        counts
    }
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut ledger = Ledger::new();
    let mut model = Model {
        windows: vec![BTreeMap::new(); OBSERVERS],
        deliveries: vec![Vec::new(); OBSERVERS],
        dropped: vec![BTreeMap::new(); OBSERVERS],
        ..Model::default()
    };
    let observer_qos = [QoS::AtLeastOnce, QoS::ExactlyOnce];
    let observers: Vec<ObserverId> = (0..OBSERVERS)
        .map(|index| ledger.register_observer(&format!("obs-{index}"), observer_qos[index]))
        .collect();
    for publisher in 0..PUBLISHERS {
        ledger.register_publisher(publisher, &format!("dev-{publisher}"));
        model.invoked.insert(publisher, Vec::new());
    }
    // Strictly increasing time per step keeps "invoked before or after a subscription change"
    // unambiguous.
    for (step, op) in ops.iter().enumerate() {
        let now = step as u64 * 1_000;
        let at = Time::from_nanos(now);
        let invoked = |model: &Model, publisher: u64| model.invoked[&publisher].len() as u64;
        match op.clone() {
            Op::Invoke { publisher, topic, qos } => {
                let qos = QoS::from_u8(qos).expect("0..3");
                let seq = invoked(&model, publisher);
                ledger.publish_invoked(publisher, seq, TOPICS[topic], qos, at, at);
                model.invoked.get_mut(&publisher).expect("registered").push((topic, qos, now));
            }
            Op::Ack { publisher, pick }
            | Op::Fail { publisher, pick }
            | Op::Indeterminate { publisher, pick } => {
                let count = invoked(&model, publisher);
                if count == 0 {
                    continue;
                }
                let seq = pick % count;
                let qos = model.invoked[&publisher][seq as usize].1;
                match op {
                    Op::Ack { .. } if qos != QoS::AtMostOnce => {
                        ledger.publish_acked(publisher, seq, at);
                        model.acked.insert((publisher, seq));
                    }
                    Op::Fail { .. } => {
                        ledger.publish_failed(publisher, seq, 0x80, at);
                        model.failed.insert((publisher, seq));
                    }
                    Op::Indeterminate { .. } => {
                        ledger.publish_indeterminate(publisher, seq, at);
                        model.indeterminate.insert((publisher, seq));
                    }
                    _ => {}
                }
            }
            Op::Deliver { observer, publisher, pick, beyond, wrong_topic, dup } => {
                let count = invoked(&model, publisher);
                let seq = if beyond || count == 0 { count + pick % 3 } else { pick % count };
                let topic = match model.invoked[&publisher].get(seq as usize) {
                    Some((topic, _, _)) if !wrong_topic => TOPICS[*topic].to_string(),
                    _ => "elsewhere".to_string(),
                };
                let stamp =
                    Stamp { flags: 0, publisher_id: publisher, seq, planned_send: at, actual_send: at };
                ledger.delivered(observers[observer], &stamp, &topic, at, dup);
                model.deliveries[observer].push((publisher, seq, topic, dup));
            }
            Op::Activate { observer, filters } => {
                ledger.subscription_active(observers[observer], FILTER_SETS[filters], at);
                for filter in FILTER_SETS[filters] {
                    let windows = model.windows[observer].entry(filter).or_default();
                    if windows.last().is_none_or(|(_, end)| end.is_some()) {
                        windows.push((now, None));
                    }
                }
            }
            Op::End { observer } => {
                ledger.subscriptions_ended(observers[observer], at);
                for windows in model.windows[observer].values_mut() {
                    if let Some(last) = windows.last_mut().filter(|(_, end)| end.is_none()) {
                        last.1 = Some(now);
                    }
                }
            }
            Op::Drop { observer, publisher, pick, allowed } => {
                let count = invoked(&model, publisher);
                if count == 0 {
                    continue;
                }
                let seq = pick % count;
                let reason = if allowed { DROP_QUEUE_FULL } else { DROP_DEVICE_QUEUE_FULL };
                ledger.message_dropped(observers[observer], publisher, seq, reason);
                model.dropped[observer].entry((publisher, seq)).or_insert(allowed);
            }
        }
    }
    let expect = Expectations { allowed_drops: vec![DROP_QUEUE_FULL.to_string()], ..Expectations::default() };
    assert!(KNOWN_DROP_REASONS.contains(&DROP_QUEUE_FULL));
    let counts = delivery_counts(&ledger, &expect);
    for (index, actual) in counts.observers.iter().enumerate() {
        let wanted = model.counts(index, observer_qos[index]);
        let got = Counts {
            expected: actual.expected,
            expected_acked: actual.expected_acked,
            delivered: actual.delivered,
            lost: actual.lost,
            unexpected: actual.unexpected,
            duplicated: actual.duplicated,
            duplicated_exactly_once: actual.duplicated_exactly_once,
            recovered: actual.recovered,
            failed_delivered: actual.failed_delivered,
            dropped_excused: actual.dropped_excused,
            qos0_expected: actual.qos0_expected,
            qos0_missing: actual.qos0_missing,
            order_violations: actual.order_violations,
        };
        prop_assert_eq!(got, wanted, "observer {}", index);
    }
    Ok(())
}

proptest! {
    // No failure persistence file: integration tests have no lib.rs beside them; a failure prints
    // its minimal history, which is the regression test to add.
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_ledger_agrees_with_the_naive_model(ops in prop::collection::vec(op(), 0..160)) {
        run(&ops)?;
    }
}
