//! The checkers: plain functions over a finished [`Ledger`] and the scenario's expectations, each
//! returning a [`Check`] with a verdict, exact counts and a few example witnesses.
//!
//! Semantics follow Jepsen's total-queue, applied per observer (reference-oracle A4 and A16):
//! lost = acknowledged, expected at the observer (a matching subscription was active when the
//! publish was invoked) and never delivered; unexpected = delivered but never invoked (or on a
//! topic it was not published to); duplicated = delivered more than once (counted and bounded at
//! QoS 1, an error when both sides are QoS 2); recovered = indeterminate but delivered. QoS 0
//! messages are never acknowledged: their loss rate is reported, never failed. This module must
//! never mutate the ledger or look at anything but it and the scenario.

use std::fmt::Write as _;

use edgeproof_system::Time;
use edgeproof_system::mqtt::QoS;
use serde::{Deserialize, Serialize};

use crate::ledger::{KNOWN_DROP_REASONS, Ledger, OrderWitness};
use crate::spec::{Expectations, Scenario, secs_to_time};

/// One checker's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Checker name (`total-queue`, `duplicates`, `order`, `drops`, `latency`, `drain`, `qos0-loss`).
    pub name: String,
    /// Whether the run satisfied it.
    pub passed: bool,
    /// Counts and example witnesses, one line, for humans.
    pub detail: String,
}

impl Check {
    fn new(name: &str, passed: bool, detail: String) -> Check {
        Check { name: name.to_string(), passed, detail }
    }
}

/// A message identity: (publisher id, seq).
pub type MessageId = (u64, u64);

/// Total-queue arithmetic for one observer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObserverCounts {
    /// Observer name.
    pub observer: String,
    /// Invoked messages this observer should have received (any QoS).
    pub expected: u64,
    /// Of those, acknowledged ones (QoS 1 and 2).
    pub expected_acked: u64,
    /// Distinct messages delivered (first deliveries).
    pub delivered: u64,
    /// Acknowledged, expected, never delivered, not excused by an allowed drop.
    pub lost: u64,
    /// Delivered but never invoked.
    pub unexpected: u64,
    /// Deliveries beyond the first of a message.
    pub duplicated: u64,
    /// Duplicates of messages published and subscribed at QoS 2 (always an error).
    pub duplicated_exactly_once: u64,
    /// Indeterminate publishes that were delivered.
    pub recovered: u64,
    /// Publishes rejected with a failure code that were delivered anyway (always an error).
    pub failed_delivered: u64,
    /// Expected messages not delivered because the system declared an allowed drop.
    pub dropped_excused: u64,
    /// Expected QoS 0 messages.
    pub qos0_expected: u64,
    /// Expected QoS 0 messages never delivered (reported, not failed).
    pub qos0_missing: u64,
    /// Deliveries that broke per-(publisher, topic) order.
    pub order_violations: u64,
    /// A few lost messages.
    pub lost_examples: Vec<MessageId>,
    /// A few unexpected deliveries.
    pub unexpected_examples: Vec<MessageId>,
    /// A few duplicated messages.
    pub duplicated_examples: Vec<MessageId>,
    /// A few failed-but-delivered messages.
    pub failed_delivered_examples: Vec<MessageId>,
    /// When the observer received its last message.
    #[serde(skip)]
    pub last_delivery_at: Option<Time>,
    /// A few order violations.
    #[serde(skip)]
    pub order_examples: Vec<OrderWitness>,
}

/// Total-queue arithmetic for every observer, plus their sums.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    /// Per observer, in registration order.
    pub observers: Vec<ObserverCounts>,
    /// Sums over observers (examples are the first observers' examples).
    pub total: ObserverCounts,
}

/// Walks the ledger once and computes every observer's total-queue counts. The cost is one pass
/// over the expected messages of each observer (bit lookups only).
pub fn delivery_counts(ledger: &Ledger, expect: &Expectations) -> DeliveryCounts {
    let allowed: Vec<usize> = KNOWN_DROP_REASONS
        .iter()
        .enumerate()
        .filter(|(_, reason)| expect.allowed_drops.iter().any(|allowed| allowed == *reason))
        .map(|(index, _)| index)
        .collect();
    let mut observers = Vec::with_capacity(ledger.observers.len());
    for observer in &ledger.observers {
        let mut counts = ObserverCounts {
            observer: observer.name.clone(),
            unexpected: observer.unexpected,
            duplicated: observer.duplicated,
            duplicated_exactly_once: observer.duplicated_exactly_once,
            delivered: observer.first_deliveries,
            order_violations: observer.order_violations,
            unexpected_examples: observer.unexpected_examples.clone(),
            duplicated_examples: observer.duplicated_examples.clone(),
            order_examples: observer.order_examples.clone(),
            last_delivery_at: observer.last_delivery_at,
            ..ObserverCounts::default()
        };
        for (slot, publisher) in ledger.publishers.iter().enumerate() {
            let view = observer.per_publisher.get(slot);
            let delivered = |seq: u64| view.is_some_and(|view| view.delivered.contains(seq));
            let excused = |seq: u64| {
                view.and_then(|view| view.dropped.as_ref())
                    .and_then(|dropped| dropped.get(&seq))
                    .is_some_and(|reason| allowed.contains(&usize::from(*reason)))
            };
            ledger.for_each_expected(observer, publisher, |seq, qos| {
                counts.expected += 1;
                if qos == QoS::AtMostOnce {
                    counts.qos0_expected += 1;
                    if !delivered(seq) {
                        counts.qos0_missing += 1;
                    }
                    return;
                }
                if !publisher.acked.contains(seq) {
                    return;
                }
                counts.expected_acked += 1;
                if delivered(seq) {
                    return;
                }
                if excused(seq) {
                    counts.dropped_excused += 1;
                } else {
                    counts.lost += 1;
                    if counts.lost_examples.len() < crate::ledger::WITNESS_LIMIT {
                        counts.lost_examples.push((publisher.publisher_id, seq));
                    }
                }
            });
            for seq in publisher.indeterminate.iter() {
                if !publisher.acked.contains(seq) && !publisher.failed.contains(seq) && delivered(seq) {
                    counts.recovered += 1;
                }
            }
            for seq in publisher.failed.iter() {
                if !publisher.acked.contains(seq) && delivered(seq) {
                    counts.failed_delivered += 1;
                    if counts.failed_delivered_examples.len() < crate::ledger::WITNESS_LIMIT {
                        counts.failed_delivered_examples.push((publisher.publisher_id, seq));
                    }
                }
            }
        }
        assert!(counts.lost + counts.dropped_excused <= counts.expected_acked);
        assert!(counts.qos0_missing <= counts.qos0_expected);
        observers.push(counts);
    }
    let total = sum_counts(&observers);
    DeliveryCounts { observers, total }
}

fn sum_counts(observers: &[ObserverCounts]) -> ObserverCounts {
    let mut total = ObserverCounts { observer: "all".to_string(), ..ObserverCounts::default() };
    let extend = |into: &mut Vec<MessageId>, from: &[MessageId]| {
        let room = crate::ledger::WITNESS_LIMIT.saturating_sub(into.len());
        into.extend(from.iter().take(room).copied());
    };
    for counts in observers {
        total.expected += counts.expected;
        total.expected_acked += counts.expected_acked;
        total.delivered += counts.delivered;
        total.lost += counts.lost;
        total.unexpected += counts.unexpected;
        total.duplicated += counts.duplicated;
        total.duplicated_exactly_once += counts.duplicated_exactly_once;
        total.recovered += counts.recovered;
        total.failed_delivered += counts.failed_delivered;
        total.dropped_excused += counts.dropped_excused;
        total.qos0_expected += counts.qos0_expected;
        total.qos0_missing += counts.qos0_missing;
        total.order_violations += counts.order_violations;
        extend(&mut total.lost_examples, &counts.lost_examples);
        extend(&mut total.unexpected_examples, &counts.unexpected_examples);
        extend(&mut total.duplicated_examples, &counts.duplicated_examples);
        extend(&mut total.failed_delivered_examples, &counts.failed_delivered_examples);
        total.last_delivery_at = total.last_delivery_at.max(counts.last_delivery_at);
        let room = crate::ledger::WITNESS_LIMIT.saturating_sub(total.order_examples.len());
        total.order_examples.extend(counts.order_examples.iter().take(room).cloned());
    }
    total
}

fn examples(label: &str, observer: &str, list: &[MessageId], out: &mut String) {
    if list.is_empty() {
        return;
    }
    let shown: Vec<String> = list.iter().map(|(publisher, seq)| format!("{publisher}#{seq}")).collect();
    let _ = write!(out, "; {label} at {observer} e.g. {}", shown.join(", "));
}

/// Jepsen total-queue: no acknowledged message lost, nothing unexpected, no rejected publish
/// delivered. Recovered (indeterminate but delivered) is reported, never an error.
pub fn total_queue(ledger: &Ledger, counts: &DeliveryCounts, expect: &Expectations) -> Check {
    let total = &counts.total;
    let passed = total.lost <= expect.lost_max
        && total.unexpected <= expect.unexpected_max
        && total.failed_delivered == 0;
    let ledger_counters = ledger.counters();
    let mut detail = format!(
        "lost {} (max {}), unexpected {} (max {}), recovered {} of {} indeterminate, failed-but-delivered {}; \
         {} acked messages expected at {} observer(s), {} delivered",
        total.lost,
        expect.lost_max,
        total.unexpected,
        expect.unexpected_max,
        total.recovered,
        ledger_counters.indeterminate,
        total.failed_delivered,
        total.expected_acked,
        counts.observers.len(),
        total.delivered,
    );
    if total.dropped_excused > 0 {
        let _ = write!(detail, ", {} excused by allowed drops", total.dropped_excused);
    }
    for observer in &counts.observers {
        examples("lost", &observer.observer, &observer.lost_examples, &mut detail);
        examples("unexpected", &observer.observer, &observer.unexpected_examples, &mut detail);
        examples(
            "failed-but-delivered",
            &observer.observer,
            &observer.failed_delivered_examples,
            &mut detail,
        );
    }
    if counts.observers.is_empty() {
        detail.push_str("; no observers, nothing checked");
    }
    Check::new("total-queue", passed, detail)
}

/// Duplicates: allowed at QoS 1 up to `duplicated_max` (any number when unset), never at QoS 2.
pub fn duplicates(counts: &DeliveryCounts, expect: &Expectations) -> Check {
    let total = &counts.total;
    let within_bound = expect.duplicated_max.is_none_or(|max| total.duplicated <= max);
    let passed = within_bound && total.duplicated_exactly_once == 0;
    let bound = expect.duplicated_max.map_or("unbounded".to_string(), |max| format!("max {max}"));
    let mut detail = format!(
        "duplicated {} ({bound}), of which {} exactly-once (QoS 2, must be 0)",
        total.duplicated, total.duplicated_exactly_once
    );
    for observer in &counts.observers {
        examples("duplicated", &observer.observer, &observer.duplicated_examples, &mut detail);
    }
    Check::new("duplicates", passed, detail)
}

/// Order per (publisher, topic) at every observer: a never-seen seq lower than one already
/// delivered, not flagged DUP, is a violation.
pub fn order(counts: &DeliveryCounts, expect: &Expectations) -> Check {
    let violations = counts.total.order_violations;
    let mut detail = format!("{violations} order violation(s)");
    if !expect.ordered {
        detail.push_str(" (not required: ordered = false)");
    }
    for witness in &counts.total.order_examples {
        let _ = write!(
            detail,
            "; publisher {} on `{}`: seq {} after {} at {}",
            witness.publisher_id, witness.topic, witness.seq, witness.previous_seq, witness.at
        );
    }
    Check::new("order", !expect.ordered || violations == 0, detail)
}

/// Drops only where a declared bound allows them, each one accounted by reason.
pub fn drops(ledger: &Ledger, expect: &Expectations) -> Check {
    let by_reason = ledger.drops_by_reason();
    let disallowed: Vec<String> = by_reason
        .iter()
        .filter(|(reason, count)| **count > 0 && !expect.allowed_drops.contains(reason))
        .map(|(reason, count)| format!("{reason} {count}"))
        .collect();
    let all: Vec<String> = by_reason.iter().map(|(reason, count)| format!("{reason} {count}")).collect();
    let detail = if all.is_empty() {
        "no drops declared".to_string()
    } else if disallowed.is_empty() {
        format!("declared drops, all allowed: {}", all.join(", "))
    } else {
        format!(
            "drops without an allowing bound: {} (allowed: [{}])",
            disallowed.join(", "),
            expect.allowed_drops.join(", ")
        )
    };
    Check::new("drops", disallowed.is_empty(), detail)
}

/// Latency from planned send to delivery: p50/p99/p99.9/max, against `latency_p99_ms_max`.
pub fn latency(ledger: &Ledger, expect: &Expectations) -> Check {
    let summary = ledger.latency().summary();
    let raw = ledger.latency().raw_summary();
    let mut detail = format!(
        "{} samples, p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms (planned send -> delivery; \
         actual send -> delivery p99 {:.3} ms)",
        summary.count, summary.p50, summary.p99, summary.p999, summary.max, raw.p99
    );
    let passed = match expect.latency_p99_ms_max {
        None => true,
        Some(_) if summary.count == 0 => {
            detail.push_str("; no deliveries to measure");
            false
        }
        Some(bound) => {
            let _ = write!(detail, "; bound p99 <= {bound} ms");
            summary.p99 <= bound
        }
    };
    Check::new("latency", passed, detail)
}

/// Liveness: every observer's last delivery happened within `drain_complete_within_secs` of the
/// last heal (or of the end of publishing). Loss after the drain is the total-queue check's job.
pub fn drain(counts: &DeliveryCounts, scenario: &Scenario) -> Option<Check> {
    let within_secs = scenario.expect.drain_complete_within_secs?;
    let recovery = scenario.last_recovery();
    let deadline = recovery.saturating_add(secs_to_time(within_secs) - Time::ZERO);
    let late: Vec<String> = counts
        .observers
        .iter()
        .filter(|observer| observer.last_delivery_at.is_some_and(|last| last > deadline))
        .map(|observer| {
            format!("{} at {}", observer.observer, observer.last_delivery_at.unwrap_or(Time::ZERO))
        })
        .collect();
    let last = counts.total.last_delivery_at.map_or("none".to_string(), |last| last.to_string());
    let detail = format!(
        "last delivery {last}, deadline {deadline} (recovery at {recovery} + {within_secs} s){}",
        if late.is_empty() { String::new() } else { format!("; late: {}", late.join(", ")) }
    );
    Some(Check::new("drain", late.is_empty(), detail))
}

/// QoS 0 loss rate: reported, never a failure (at-most-once promises nothing).
pub fn qos0_loss(counts: &DeliveryCounts) -> Option<Check> {
    let total = &counts.total;
    if total.qos0_expected == 0 {
        return None;
    }
    let rate = total.qos0_missing as f64 / total.qos0_expected as f64;
    let detail = format!(
        "{} of {} expected QoS 0 messages missing ({:.4}%), reported only",
        total.qos0_missing,
        total.qos0_expected,
        rate * 100.0
    );
    Some(Check::new("qos0-loss", true, detail))
}

/// Runs every checker; the run passes when every check passed.
pub fn run_all(ledger: &Ledger, scenario: &Scenario) -> (Vec<Check>, DeliveryCounts) {
    let expect = &scenario.expect;
    let counts = delivery_counts(ledger, expect);
    let mut checks = vec![
        total_queue(ledger, &counts, expect),
        duplicates(&counts, expect),
        order(&counts, expect),
        drops(ledger, expect),
        latency(ledger, expect),
    ];
    checks.extend(drain(&counts, scenario));
    checks.extend(qos0_loss(&counts));
    assert!(checks.len() >= 5);
    (checks, counts)
}
