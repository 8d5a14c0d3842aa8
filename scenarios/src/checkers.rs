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
    /// Deliveries that carried the MQTT DUP flag (announced redeliveries), counted apart.
    pub dup_flagged: u64,
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
    /// When the observer received its last message (nanoseconds on the world's clock).
    pub last_delivery_at: Option<Time>,
    /// A few order violations.
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
            dup_flagged: observer.dup_flagged,
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
                view.and_then(|view| view.dropped_reason(seq))
                    .is_some_and(|reason| allowed.contains(&usize::from(reason)))
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
            for seq in publisher.indeterminate().iter() {
                if !publisher.acked.contains(seq) && !publisher.failed().contains(seq) && delivered(seq) {
                    counts.recovered += 1;
                }
            }
            for seq in publisher.failed().iter() {
                if !publisher.acked.contains(seq) && delivered(seq) {
                    counts.failed_delivered += 1;
                    if counts.failed_delivered_examples.len() < crate::ledger::WITNESS_LIMIT {
                        counts.failed_delivered_examples.push((publisher.publisher_id, seq));
                    }
                }
            }
        }
        assert!(counts.lost + counts.dropped_excused <= counts.expected_acked);
        assert_eq!(counts.delivered + counts.duplicated + counts.unexpected, observer.deliveries);
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
        total.dup_flagged += counts.dup_flagged;
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
        "duplicated {} ({bound}), of which {} exactly-once (QoS 2, must be 0); {} deliveries flagged DUP",
        total.duplicated, total.duplicated_exactly_once, total.dup_flagged
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{DROP_DEVICE_QUEUE_FULL, DROP_QUEUE_FULL, ObserverId};
    use crate::stamp::Stamp;

    /// A minimal scenario whose `[expect]` table is `expect`.
    fn scenario(expect: &str) -> Scenario {
        let text = format!(
            r#"
name = "hand-made"
duration_secs = 10
drain_secs = 5
[[hosts]]
name = "h"
[[pods]]
name = "b"
host = "h"
kind = "broker"
[[fleets]]
name = "f"
host = "h"
broker = "b"
count = 3
client_id = "dev-{{index}}"
topic = "t/{{client_id}}"
qos = 1
publish_interval_ms = 1000
payload_bytes = 40
[expect]
{expect}
"#
        );
        Scenario::from_toml_str(&text, "hand-made.toml").expect("valid")
    }

    fn topic(publisher_id: u64) -> String {
        format!("t/dev-{publisher_id}")
    }

    fn stamp(publisher_id: u64, seq: u64) -> Stamp {
        Stamp {
            flags: 0,
            publisher_id,
            seq,
            planned_send: Time::from_secs(seq),
            actual_send: Time::from_secs(seq) + std::time::Duration::from_millis(1),
        }
    }

    /// A ledger with one observer on `#` (active from t = 0) and `publishers` publishers that each
    /// invoked `messages` publishes at `qos`, acknowledged unless QoS 0. Nothing delivered yet.
    fn invoked(publishers: u64, messages: u64, qos: QoS) -> (Ledger, ObserverId) {
        let mut ledger = Ledger::new();
        let observer = ledger.register_observer("sub", qos);
        ledger.subscription_active(observer, &["#"], Time::ZERO);
        for publisher in 0..publishers {
            ledger.register_publisher(publisher, &format!("dev-{publisher}"));
        }
        for seq in 0..messages {
            for publisher in 0..publishers {
                let at = Time::from_secs(seq) + std::time::Duration::from_millis(1);
                ledger.publish_invoked(publisher, seq, &topic(publisher), qos, Time::from_secs(seq), at);
                if qos != QoS::AtMostOnce {
                    ledger.publish_acked(publisher, seq, at + std::time::Duration::from_millis(2));
                }
            }
        }
        (ledger, observer)
    }

    fn deliver(ledger: &mut Ledger, observer: ObserverId, publisher: u64, seq: u64, dup: bool) {
        let at = Time::from_secs(seq) + std::time::Duration::from_millis(5);
        ledger.delivered(observer, &stamp(publisher, seq), &topic(publisher), at, dup);
    }

    fn deliver_all(ledger: &mut Ledger, observer: ObserverId, publishers: u64, messages: u64) {
        for seq in 0..messages {
            for publisher in 0..publishers {
                deliver(ledger, observer, publisher, seq, false);
            }
        }
    }

    fn check<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks.iter().find(|check| check.name == name).unwrap_or_else(|| panic!("no check {name}"))
    }

    #[test]
    fn a_clean_run_passes_every_check() {
        let (mut ledger, observer) = invoked(3, 10, QoS::AtLeastOnce);
        deliver_all(&mut ledger, observer, 3, 10);
        let scenario = scenario("latency_p99_ms_max = 50\ndrain_complete_within_secs = 5");
        let (checks, counts) = run_all(&ledger, &scenario);
        assert!(checks.iter().all(|check| check.passed), "{checks:#?}");
        assert_eq!(counts.total.expected_acked, 30);
        assert_eq!(counts.total.delivered, 30);
        assert_eq!((counts.total.lost, counts.total.unexpected, counts.total.duplicated), (0, 0, 0));
        let names: Vec<&str> = checks.iter().map(|check| check.name.as_str()).collect();
        assert_eq!(names, ["total-queue", "duplicates", "order", "drops", "latency", "drain"]);
        assert!(check(&checks, "latency").detail.contains("30 samples, p50 5.00"), "{checks:#?}");
    }

    #[test]
    fn one_acked_message_never_delivered_is_lost_and_fails() {
        let (mut ledger, observer) = invoked(3, 10, QoS::AtLeastOnce);
        for seq in 0..10 {
            for publisher in 0..3 {
                if (publisher, seq) != (2, 5) {
                    deliver(&mut ledger, observer, publisher, seq, false);
                }
            }
        }
        let (checks, counts) = run_all(&ledger, &scenario(""));
        assert_eq!(counts.total.lost, 1);
        assert_eq!(counts.total.lost_examples, vec![(2, 5)]);
        let total_queue = check(&checks, "total-queue");
        assert!(!total_queue.passed);
        assert!(total_queue.detail.contains("lost 1 (max 0)"), "{}", total_queue.detail);
        assert!(total_queue.detail.contains("lost at sub e.g. 2#5"), "{}", total_queue.detail);
        // A declared bound on loss turns the same ledger into a pass.
        let (checks, _) = run_all(&ledger, &scenario("lost_max = 1"));
        assert!(check(&checks, "total-queue").passed);
    }

    #[test]
    fn a_delivery_never_sent_is_unexpected() {
        let (mut ledger, observer) = invoked(2, 3, QoS::AtLeastOnce);
        deliver_all(&mut ledger, observer, 2, 3);
        // Seq 3 was never invoked, publisher 7 never existed, and seq 0 of publisher 0 on a
        // foreign topic was never published there.
        deliver(&mut ledger, observer, 1, 3, false);
        ledger.delivered(observer, &stamp(7, 0), "t/dev-7", Time::from_secs(1), false);
        ledger.delivered(observer, &stamp(0, 0), "t/elsewhere", Time::from_secs(1), false);
        let (checks, counts) = run_all(&ledger, &scenario(""));
        assert_eq!(counts.total.unexpected, 3);
        assert_eq!(counts.total.unexpected_examples, vec![(1, 3), (7, 0), (0, 0)]);
        assert_eq!(counts.total.lost, 0);
        assert!(!check(&checks, "total-queue").passed);
        let (checks, _) = run_all(&ledger, &scenario("unexpected_max = 3"));
        assert!(check(&checks, "total-queue").passed);
    }

    #[test]
    fn a_topic_rewrite_makes_republished_copies_expected_and_on_topic() {
        // Publishers on `t/dev-N`, a republisher mapping `t/` to `cloud/`, an observer on
        // `cloud/#` only: it expects every message, on the rewritten topic.
        let mut ledger = Ledger::new();
        ledger.add_topic_rewrite("t/", "cloud/");
        let observer = ledger.register_observer("cloud", QoS::AtLeastOnce);
        ledger.subscription_active(observer, &["cloud/#"], Time::ZERO);
        for publisher in 0..2 {
            ledger.register_publisher(publisher, &format!("dev-{publisher}"));
        }
        for seq in 0..3 {
            for publisher in 0..2 {
                let at = Time::from_secs(seq);
                ledger.publish_invoked(publisher, seq, &topic(publisher), QoS::AtLeastOnce, at, at);
                ledger.publish_acked(publisher, seq, at + std::time::Duration::from_millis(2));
            }
        }
        let copy = |publisher: u64| format!("cloud/dev-{publisher}");
        for seq in 0..3 {
            let at = Time::from_secs(seq) + std::time::Duration::from_millis(5);
            ledger.delivered(observer, &stamp(0, seq), &copy(0), at, false);
            // Publisher 1's seq 2 never arrives: the oracle must call it lost.
            if seq < 2 {
                ledger.delivered(observer, &stamp(1, seq), &copy(1), at, false);
            }
        }
        // A copy on a topic the rewrite does not produce is as wrong as a message never sent.
        ledger.delivered(observer, &stamp(0, 0), "cloud/dev-1", Time::from_secs(4), false);
        ledger.delivered(observer, &stamp(0, 1), "elsewhere/dev-0", Time::from_secs(4), false);
        let (checks, counts) = run_all(&ledger, &scenario(""));
        assert_eq!(counts.total.delivered, 5);
        assert_eq!(counts.total.lost, 1, "{checks:#?}");
        assert_eq!(counts.total.lost_examples, vec![(1, 2)]);
        assert_eq!(counts.total.unexpected, 2);
        assert!(!check(&checks, "total-queue").passed);
    }

    #[test]
    fn without_the_rewrite_an_observer_of_the_copies_expects_nothing() {
        // The same run with no republisher declared: nothing published matches `cloud/#`, so the
        // copies are unexpected (the rewrite, not a lenient topic check, is what accepts them).
        let mut ledger = Ledger::new();
        let observer = ledger.register_observer("cloud", QoS::AtLeastOnce);
        ledger.subscription_active(observer, &["cloud/#"], Time::ZERO);
        ledger.register_publisher(0, "dev-0");
        ledger.publish_invoked(0, 0, &topic(0), QoS::AtLeastOnce, Time::ZERO, Time::ZERO);
        ledger.publish_acked(0, 0, Time::from_millis(2));
        ledger.delivered(observer, &stamp(0, 0), "cloud/dev-0", Time::from_millis(5), false);
        let (_, counts) = run_all(&ledger, &scenario(""));
        assert_eq!((counts.total.unexpected, counts.total.lost, counts.total.delivered), (1, 0, 0));
    }

    #[test]
    fn a_duplicate_at_qos1_is_counted_and_allowed_but_fails_at_qos2() {
        let (mut ledger, observer) = invoked(1, 4, QoS::AtLeastOnce);
        deliver_all(&mut ledger, observer, 1, 4);
        deliver(&mut ledger, observer, 0, 2, true);
        let (checks, counts) = run_all(&ledger, &scenario(""));
        assert_eq!(counts.total.duplicated, 1);
        assert_eq!(counts.total.duplicated_exactly_once, 0);
        assert!(checks.iter().all(|check| check.passed), "{checks:#?}");
        assert!(check(&checks, "duplicates").detail.contains("duplicated 1 (unbounded)"));
        assert!(check(&checks, "duplicates").detail.contains("1 deliveries flagged DUP"));
        assert_eq!(counts.total.dup_flagged, 1);
        let (checks, _) = run_all(&ledger, &scenario("duplicated_max = 0"));
        assert!(!check(&checks, "duplicates").passed);

        let (mut ledger, observer) = invoked(1, 4, QoS::ExactlyOnce);
        deliver_all(&mut ledger, observer, 1, 4);
        deliver(&mut ledger, observer, 0, 2, true);
        let (checks, counts) = run_all(&ledger, &scenario(""));
        assert_eq!(counts.total.duplicated_exactly_once, 1);
        let duplicates = check(&checks, "duplicates");
        assert!(!duplicates.passed);
        assert!(duplicates.detail.contains("duplicated at sub e.g. 0#2"), "{}", duplicates.detail);
        assert!(check(&checks, "total-queue").passed, "a duplicate is not a loss");
    }

    #[test]
    fn out_of_order_delivery_is_detected_unless_flagged_dup_or_not_required() {
        let (mut ledger, observer) = invoked(1, 4, QoS::AtLeastOnce);
        for seq in [0, 2, 1, 3] {
            deliver(&mut ledger, observer, 0, seq, false);
        }
        let (checks, counts) = run_all(&ledger, &scenario(""));
        assert_eq!(counts.total.order_violations, 1);
        let order = check(&checks, "order");
        assert!(!order.passed);
        assert!(order.detail.contains("publisher 0 on `t/dev-0`: seq 1 after 2"), "{}", order.detail);
        assert!(check(&checks, "total-queue").passed);
        let (checks, _) = run_all(&ledger, &scenario("ordered = false"));
        assert!(check(&checks, "order").passed);

        // The same pattern where the late one is an announced redelivery is no violation, and a
        // duplicate of an old message is a duplicate, not a reordering.
        let (mut ledger, observer) = invoked(1, 4, QoS::AtLeastOnce);
        deliver(&mut ledger, observer, 0, 0, false);
        deliver(&mut ledger, observer, 0, 2, false);
        deliver(&mut ledger, observer, 0, 1, true);
        deliver(&mut ledger, observer, 0, 3, false);
        deliver(&mut ledger, observer, 0, 0, false);
        let (checks, counts) = run_all(&ledger, &scenario(""));
        assert_eq!(counts.total.order_violations, 0);
        assert_eq!(counts.total.duplicated, 1);
        assert!(checks.iter().all(|check| check.passed), "{checks:#?}");
    }

    #[test]
    fn an_indeterminate_publish_delivered_is_recovered_and_one_not_delivered_is_not_lost() {
        let mut ledger = Ledger::new();
        let observer = ledger.register_observer("sub", QoS::AtLeastOnce);
        ledger.subscription_active(observer, &["t/#"], Time::ZERO);
        ledger.register_publisher(0, "dev-0");
        for seq in 0..4 {
            ledger.publish_invoked(
                0,
                seq,
                &topic(0),
                QoS::AtLeastOnce,
                Time::from_secs(seq),
                Time::from_secs(seq),
            );
        }
        ledger.publish_acked(0, 0, Time::from_secs(1));
        ledger.publish_indeterminate(0, 1, Time::from_secs(2));
        ledger.publish_indeterminate(0, 2, Time::from_secs(3));
        // Seq 3: indeterminate, then acked after a resend: the ack wins.
        ledger.publish_indeterminate(0, 3, Time::from_secs(3));
        ledger.publish_acked(0, 3, Time::from_secs(4));
        deliver(&mut ledger, observer, 0, 0, false);
        deliver(&mut ledger, observer, 0, 1, false);
        let (checks, counts) = run_all(&ledger, &scenario(""));
        assert_eq!(counts.total.recovered, 1, "seq 1 was indeterminate and turned up");
        assert_eq!(
            counts.total.lost, 1,
            "only seq 3 (acked after its resend) is lost; seq 2 may never have happened"
        );
        assert_eq!(counts.total.lost_examples, vec![(0, 3)]);
        assert!(check(&checks, "total-queue").detail.contains("recovered 1 of 3 indeterminate"));
    }

    #[test]
    fn a_message_published_before_the_subscription_was_active_is_not_expected() {
        let mut ledger = Ledger::new();
        let early = ledger.register_observer("early", QoS::AtLeastOnce);
        let late = ledger.register_observer("late", QoS::AtLeastOnce);
        let other = ledger.register_observer("other-topics", QoS::AtLeastOnce);
        ledger.register_publisher(0, "dev-0");
        ledger.subscription_active(early, &["t/+"], Time::ZERO);
        ledger.subscription_active(other, &["u/#"], Time::ZERO);
        for seq in 0..6 {
            if seq == 3 {
                ledger.subscription_active(late, &["#"], Time::from_millis(2_500));
            }
            ledger.publish_invoked(
                0,
                seq,
                &topic(0),
                QoS::AtLeastOnce,
                Time::from_secs(seq),
                Time::from_secs(seq),
            );
            ledger.publish_acked(0, seq, Time::from_secs(seq));
        }
        for seq in 0..6 {
            deliver(&mut ledger, early, 0, seq, false);
        }
        for seq in 3..6 {
            deliver(&mut ledger, late, 0, seq, false);
        }
        // A message before the subscription that turns up anyway is neither lost nor unexpected.
        deliver(&mut ledger, late, 0, 1, false);
        let (checks, counts) = run_all(&ledger, &scenario("ordered = false"));
        assert_eq!(counts.observers[0].expected_acked, 6);
        assert_eq!(counts.observers[1].expected_acked, 3);
        assert_eq!(counts.observers[2].expected_acked, 0);
        assert_eq!((counts.total.lost, counts.total.unexpected), (0, 0));
        assert!(checks.iter().all(|check| check.passed), "{checks:#?}");
    }

    #[test]
    fn messages_invoked_while_a_clean_session_was_gone_are_not_expected() {
        let mut ledger = Ledger::new();
        let observer = ledger.register_observer("clean", QoS::AtLeastOnce);
        ledger.register_publisher(0, "dev-0");
        // Two overlapping filters: a message is expected once, not twice.
        ledger.subscription_active(observer, &["#", "t/+"], Time::ZERO);
        for seq in 0..10 {
            if seq == 3 {
                ledger.subscriptions_ended(observer, Time::from_millis(2_500));
            }
            if seq == 6 {
                ledger.subscription_active(observer, &["t/+"], Time::from_millis(5_500));
            }
            ledger.publish_invoked(
                0,
                seq,
                &topic(0),
                QoS::AtLeastOnce,
                Time::from_secs(seq),
                Time::from_secs(seq),
            );
            ledger.publish_acked(0, seq, Time::from_secs(seq));
        }
        for seq in [0, 1, 2, 6, 7, 8] {
            deliver(&mut ledger, observer, 0, seq, false);
        }
        let (checks, counts) = run_all(&ledger, &scenario(""));
        assert_eq!(counts.total.expected_acked, 7, "seqs 0-2 and 6-9; 3-5 fell in the gap");
        assert_eq!(counts.total.lost_examples, vec![(0, 9)]);
        assert!(!check(&checks, "total-queue").passed);
        // Ending twice or re-activating an active filter changes nothing.
        ledger.subscription_active(observer, &["t/+"], Time::from_secs(20));
        assert_eq!(delivery_counts(&ledger, &scenario("").expect).total.expected_acked, 7);
        ledger.subscriptions_ended(observer, Time::from_secs(21));
        ledger.subscriptions_ended(observer, Time::from_secs(22));
        assert_eq!(delivery_counts(&ledger, &scenario("").expect).total.expected_acked, 7);
    }

    #[test]
    fn qos0_loss_is_reported_but_never_fails() {
        let (mut ledger, observer) = invoked(2, 10, QoS::AtMostOnce);
        for seq in 0..7 {
            deliver(&mut ledger, observer, 0, seq, false);
            deliver(&mut ledger, observer, 1, seq, false);
        }
        let (checks, counts) = run_all(&ledger, &scenario(""));
        assert_eq!((counts.total.qos0_expected, counts.total.qos0_missing), (20, 6));
        assert_eq!(counts.total.lost, 0);
        assert!(checks.iter().all(|check| check.passed), "{checks:#?}");
        assert!(
            check(&checks, "qos0-loss").detail.contains("6 of 20 expected QoS 0 messages missing (30.0000%)")
        );
    }

    #[test]
    fn drops_are_allowed_only_by_a_declared_bound_and_excuse_loss_only_then() {
        let (mut ledger, observer) = invoked(1, 5, QoS::AtLeastOnce);
        for seq in [0, 1, 3, 4] {
            deliver(&mut ledger, observer, 0, seq, false);
        }
        ledger.message_dropped(observer, 0, 2, DROP_QUEUE_FULL);
        ledger.drop_declared(DROP_DEVICE_QUEUE_FULL, 7);
        let allowed = scenario("allowed_drops = [\"queue_full\", \"device_queue_full\"]");
        let (checks, counts) = run_all(&ledger, &allowed);
        assert!(checks.iter().all(|check| check.passed), "{checks:#?}");
        assert_eq!((counts.total.lost, counts.total.dropped_excused), (0, 1));
        assert!(check(&checks, "drops").detail.contains("device_queue_full 7, queue_full 1"));

        let (checks, counts) = run_all(&ledger, &scenario("allowed_drops = [\"device_queue_full\"]"));
        assert_eq!(counts.total.lost, 1, "a drop without an allowing bound does not excuse the loss");
        let drops = check(&checks, "drops");
        assert!(!drops.passed);
        assert!(drops.detail.contains("drops without an allowing bound: queue_full 1"), "{}", drops.detail);
        assert_eq!(ledger.drops_by_reason().get(DROP_DEVICE_QUEUE_FULL), Some(&7));
    }

    #[test]
    fn a_rejected_publish_that_is_delivered_anyway_fails() {
        let (mut ledger, observer) = invoked(1, 0, QoS::AtLeastOnce);
        ledger.publish_invoked(0, 0, &topic(0), QoS::AtLeastOnce, Time::ZERO, Time::ZERO);
        ledger.publish_failed(0, 0, 0x97, Time::from_millis(3));
        deliver(&mut ledger, observer, 0, 0, false);
        let (checks, counts) = run_all(&ledger, &scenario(""));
        assert_eq!(counts.total.failed_delivered, 1);
        assert!(!check(&checks, "total-queue").passed);
    }

    #[test]
    fn latency_and_drain_bounds_fail_when_exceeded() {
        let (mut ledger, observer) = invoked(1, 3, QoS::AtLeastOnce);
        for seq in 0..3 {
            // 200 ms after the planned send; the last one arrives 9 s after the end of publishing.
            let at = if seq == 2 {
                Time::from_secs(19)
            } else {
                Time::from_secs(seq) + std::time::Duration::from_millis(200)
            };
            ledger.delivered(observer, &stamp(0, seq), &topic(0), at, false);
        }
        let (checks, _) =
            run_all(&ledger, &scenario("latency_p99_ms_max = 100\ndrain_complete_within_secs = 5"));
        assert!(!check(&checks, "latency").passed);
        let drain = check(&checks, "drain");
        assert!(!drain.passed);
        assert!(drain.detail.contains("late: sub at 19.000000000s"), "{}", drain.detail);
        assert!(check(&checks, "total-queue").passed);

        let empty = Ledger::new();
        let (checks, _) = run_all(&empty, &scenario("latency_p99_ms_max = 100"));
        assert!(!check(&checks, "latency").passed, "a latency bound with nothing measured cannot pass");
    }

    #[test]
    fn per_observer_counts_stay_apart() {
        let (mut ledger, first) = invoked(2, 3, QoS::AtLeastOnce);
        let second = ledger.register_observer("second", QoS::AtLeastOnce);
        // Registered late: its subscription became active after every publish, so nothing is
        // expected there and its one delivery of an old message is harmless.
        ledger.subscription_active(second, &["#"], Time::from_secs(100));
        deliver_all(&mut ledger, first, 2, 3);
        deliver(&mut ledger, second, 1, 1, false);
        let counts = delivery_counts(&ledger, &scenario("").expect);
        assert_eq!(counts.observers.len(), 2);
        assert_eq!(counts.observers[0].delivered, 6);
        assert_eq!(counts.observers[1].delivered, 1);
        assert_eq!(counts.observers[1].expected, 0);
        assert_eq!(counts.total.delivered, 7);
    }
}
