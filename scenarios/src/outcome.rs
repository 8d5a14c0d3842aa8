//! The outcome of a run: the serde model of `outcome.json` that the CLI writes and other tools
//! (reports, sweeps, CI) read, built from a finished ledger by running every checker, and the
//! short plain-text verdict table the CLI prints.
//!
//! Field names are a file format: renaming one breaks readers, and a test pins them. This module
//! must never read clocks or files; wall time and the trace hash come in through [`RunInfo`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::checkers::{self, Check, ObserverCounts};
use crate::latency::{LatencySummary, histogram_to_base64};
use crate::ledger::Ledger;
use crate::series::SeriesOutcome;
use crate::spec::{FaultAction, Scenario};

/// Pass or fail, as `"pass"` / `"fail"` in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every check passed.
    Pass,
    /// At least one check failed.
    Fail,
}

/// What the engine knows about the run that the ledger does not.
#[derive(Clone, Debug, PartialEq)]
pub struct RunInfo {
    /// The run's seed.
    pub seed: u64,
    /// Which world ran it (`fast`, `turmoil`, `loadgen`).
    pub engine: String,
    /// Hash of the event trace (determinism check), hex.
    pub trace_hash: String,
    /// Simulated (or, for loadgen, real) seconds the run covered.
    pub sim_seconds: f64,
    /// Wall-clock seconds the run took, measured by the caller.
    pub wall_seconds: f64,
    /// Events the engine processed.
    pub events: u64,
    /// Source revision of the build, when the caller knows it.
    pub commit: Option<String>,
}

/// Totals of the run (see the field docs for exact meanings).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Publishes invoked.
    pub published: u64,
    /// Publishes acknowledged.
    pub acked: u64,
    /// Publishes rejected with a failure reason code.
    pub failed: u64,
    /// Publishes with an unknown outcome.
    pub indeterminate: u64,
    /// Distinct messages delivered, summed over observers.
    pub delivered: u64,
    /// Every delivery, duplicates included.
    pub deliveries: u64,
    /// Acknowledged messages an observer should have received and never did, summed.
    pub lost: u64,
    /// Deliveries beyond a message's first, summed.
    pub duplicated: u64,
    /// Deliveries of messages never invoked, summed.
    pub unexpected: u64,
    /// Indeterminate publishes that were delivered, summed.
    pub recovered: u64,
    /// Order violations, summed.
    pub out_of_order: u64,
    /// Declared drops by reason.
    pub dropped: BTreeMap<String, u64>,
}

/// Serialized HDR histograms (V2+DEFLATE, base64) so reports can merge runs exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histograms {
    /// Planned send -> delivery, microseconds.
    pub latency_us: String,
    /// Actual send -> delivery, microseconds.
    pub latency_raw_us: String,
    /// Actual minus planned send time at the publisher, microseconds.
    pub send_lag_us: String,
}

/// The content of `outcome.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Version of the edgeproof build that produced it.
    pub edgeproof_version: String,
    /// Source revision, when known.
    pub commit: Option<String>,
    /// Scenario name.
    pub scenario: String,
    /// [`Scenario::scenario_hash`].
    pub scenario_hash: String,
    /// The run's seed.
    pub seed: u64,
    /// The world that ran it.
    pub engine: String,
    /// Pass when every check passed.
    pub verdict: Verdict,
    /// Hash of the event trace, hex.
    pub trace_hash: String,
    /// Every checker's verdict.
    pub checks: Vec<Check>,
    /// Totals.
    pub counters: Counters,
    /// Planned send -> delivery latency, simulated milliseconds.
    pub latency_ms: LatencySummary,
    /// Actual send -> delivery latency, milliseconds.
    pub latency_raw_ms: LatencySummary,
    /// Publisher lag against its plan, milliseconds.
    pub send_lag_ms: LatencySummary,
    /// Per-observer total-queue counts.
    pub observers: Vec<ObserverCounts>,
    /// Simulated seconds covered.
    pub sim_seconds: f64,
    /// Wall-clock seconds taken.
    pub wall_seconds: f64,
    /// Events processed.
    pub events: u64,
    /// Engine speed.
    pub events_per_wall_second: f64,
    /// Time compression.
    pub sim_seconds_per_wall_second: f64,
    /// Mergeable histograms.
    pub histograms: Histograms,
    /// Counts and latency per interval, for the "over time" plots.
    pub series: SeriesOutcome,
    /// The scenario's fault schedule, for markers on those plots.
    pub faults: Vec<FaultMarker>,
    // The fields below were added after the first readers existed: each is optional, read with a
    // default and left out when empty, so older outcome files and older readers keep working.
    /// Drop reasons the scenario allows (any other declared drop fails the `drops` check).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_drops: Vec<String>,
    /// When the run started, seconds since the Unix epoch (set by the CLI; simulators never read
    /// a real clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_unix_secs: Option<u64>,
    /// The system under test (`edgeproof broker (simulated)`, a broker's address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The machine that ran it (OS, architecture, cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// The one command that replays this run exactly (simulated runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_command: Option<String>,
    /// Connected clients per interval, when the engine records connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<ConnectionSeries>,
}

/// Connections per interval: element `i` covers `[i, i + 1) * interval_secs`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionSeries {
    /// Interval length.
    pub interval_secs: f64,
    /// Clients connected at the end of the interval.
    pub connected: Vec<u64>,
    /// Successful connects (first connects and reconnects) in the interval.
    pub connects: Vec<u64>,
    /// Of those, reconnects of a client that had been connected before.
    #[serde(default)]
    pub reconnects: Vec<u64>,
    /// Connection attempts that failed in the interval.
    #[serde(default)]
    pub failed: Vec<u64>,
}

/// One fault of the schedule as a plot marker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultMarker {
    /// When it happened.
    pub at_secs: f64,
    /// The action (`partition`, `heal`, `crash`, ...).
    pub action: String,
    /// What it hit (`ops`, `broker`, `edge -> cell1`, ...).
    pub target: String,
}

impl FaultMarker {
    fn of(fault: &crate::spec::Fault) -> FaultMarker {
        let (action, target) = match &fault.action {
            FaultAction::Crash { pod } => ("crash", pod.clone()),
            FaultAction::Restart { pod, .. } => ("restart", pod.clone()),
            FaultAction::Partition { hosts } => ("partition", hosts.join(", ")),
            FaultAction::Heal { hosts } if hosts.is_empty() => ("heal", "all".to_string()),
            FaultAction::Heal { hosts } => ("heal", hosts.join(", ")),
            FaultAction::PartitionOneway { from, to } => ("partition_oneway", format!("{from} -> {to}")),
            FaultAction::Link { hosts, .. } => ("link", hosts.join(" <-> ")),
        };
        FaultMarker { at_secs: fault.at_secs, action: action.to_string(), target }
    }
}

fn per_second(amount: f64, wall_seconds: f64) -> f64 {
    if wall_seconds > 0.0 { amount / wall_seconds } else { 0.0 }
}

impl Outcome {
    /// Runs every checker over the ledger against the scenario's expectations and assembles the
    /// outcome.
    pub fn from_ledger(scenario: &Scenario, ledger: &Ledger, run: RunInfo) -> Outcome {
        let (checks, counts) = checkers::run_all(ledger, scenario);
        let verdict = if checks.iter().all(|check| check.passed) { Verdict::Pass } else { Verdict::Fail };
        let ledger_counters = ledger.counters();
        let total = &counts.total;
        let counters = Counters {
            published: ledger_counters.invoked,
            acked: ledger_counters.acked,
            failed: ledger_counters.failed,
            indeterminate: ledger_counters.indeterminate,
            delivered: total.delivered,
            deliveries: ledger_counters.deliveries,
            lost: total.lost,
            duplicated: total.duplicated,
            unexpected: total.unexpected,
            recovered: total.recovered,
            out_of_order: total.order_violations,
            dropped: ledger.drops_by_reason(),
        };
        // Every delivery is exactly one of: a first delivery, a duplicate, or unexpected.
        assert_eq!(counters.delivered + counters.duplicated + counters.unexpected, counters.deliveries);
        let latency = ledger.latency();
        let outcome = Outcome {
            edgeproof_version: env!("CARGO_PKG_VERSION").to_string(),
            commit: run.commit,
            scenario: scenario.name.clone(),
            scenario_hash: scenario.scenario_hash(),
            seed: run.seed,
            engine: run.engine,
            verdict,
            trace_hash: run.trace_hash,
            checks,
            counters,
            latency_ms: latency.summary(),
            latency_raw_ms: latency.raw_summary(),
            send_lag_ms: LatencySummary::of(ledger.send_lag()),
            observers: counts.observers,
            sim_seconds: run.sim_seconds,
            wall_seconds: run.wall_seconds,
            events: run.events,
            events_per_wall_second: per_second(run.events as f64, run.wall_seconds),
            sim_seconds_per_wall_second: per_second(run.sim_seconds, run.wall_seconds),
            histograms: Histograms {
                latency_us: histogram_to_base64(&latency.planned),
                latency_raw_us: histogram_to_base64(&latency.actual),
                send_lag_us: histogram_to_base64(ledger.send_lag()),
            },
            series: ledger.series().to_outcome(),
            faults: scenario.faults.iter().map(FaultMarker::of).collect(),
            allowed_drops: scenario.expect.allowed_drops.clone(),
            started_unix_secs: None,
            target: None,
            machine: None,
            replay_command: None,
            connections: None,
        };
        assert_eq!(outcome.verdict == Verdict::Pass, outcome.checks.iter().all(|check| check.passed));
        outcome
    }

    /// Records the wall-clock time the run took and the speeds derived from it. Simulators never
    /// read a real clock, so whoever runs them measures around the run and calls this.
    pub fn set_wall_seconds(&mut self, wall_seconds: f64) {
        assert!(
            wall_seconds.is_finite() && wall_seconds >= 0.0,
            "wall time {wall_seconds} is not a duration"
        );
        self.wall_seconds = wall_seconds;
        self.events_per_wall_second = per_second(self.events as f64, wall_seconds);
        self.sim_seconds_per_wall_second = per_second(self.sim_seconds, wall_seconds);
        assert!(self.events_per_wall_second >= 0.0 && self.sim_seconds_per_wall_second >= 0.0);
    }

    /// Whether the run passed.
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Pass
    }

    /// The outcome as pretty JSON (the `outcome.json` format).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("an outcome always serializes")
    }

    /// Reads `outcome.json` text back.
    pub fn from_json(text: &str) -> Result<Outcome, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// A short plain-text table for the terminal: the verdict, one line per check, totals and
    /// latency. Long details are cut at 100 characters; `outcome.json` has them whole.
    pub fn verdict_table(&self) -> String {
        const DETAIL_WIDTH: usize = 100;
        let mut out = String::new();
        let verdict = match self.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
        };
        let _ = writeln!(
            out,
            "{verdict}  {} (scenario {}) seed {} on {}, trace {}",
            self.scenario, self.scenario_hash, self.seed, self.engine, self.trace_hash
        );
        let name_width = self.checks.iter().map(|check| check.name.len()).max().unwrap_or(5).max(5);
        for check in &self.checks {
            let mark = if check.passed { "ok  " } else { "FAIL" };
            let mut detail: String = check.detail.chars().take(DETAIL_WIDTH).collect();
            if check.detail.chars().count() > DETAIL_WIDTH {
                detail.push_str("...");
            }
            let _ = writeln!(out, "  {mark}  {:<name_width$}  {detail}", check.name);
        }
        let counters = &self.counters;
        let _ = writeln!(
            out,
            "  published {}  acked {}  delivered {}  lost {}  duplicated {}  unexpected {}  recovered {}  \
             failed {}  indeterminate {}",
            counters.published,
            counters.acked,
            counters.delivered,
            counters.lost,
            counters.duplicated,
            counters.unexpected,
            counters.recovered,
            counters.failed,
            counters.indeterminate
        );
        if !counters.dropped.is_empty() {
            let drops: Vec<String> =
                counters.dropped.iter().map(|(reason, count)| format!("{reason} {count}")).collect();
            let _ = writeln!(out, "  dropped {}", drops.join(", "));
        }
        let latency = &self.latency_ms;
        let _ = writeln!(
            out,
            "  latency ms  p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  ({} samples)",
            latency.p50, latency.p99, latency.p999, latency.max, latency.count
        );
        let _ = writeln!(
            out,
            "  {:.1} sim s in {:.3} wall s ({:.1}x), {} events ({:.0}/s)",
            self.sim_seconds,
            self.wall_seconds,
            self.sim_seconds_per_wall_second,
            self.events,
            self.events_per_wall_second
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::DROP_QUEUE_FULL;
    use crate::stamp::Stamp;
    use edgeproof_system::Time;
    use edgeproof_system::mqtt::QoS;

    fn run_info() -> RunInfo {
        RunInfo {
            seed: 42,
            engine: "fast".to_string(),
            trace_hash: "00ff00ff00ff00ff".to_string(),
            sim_seconds: 70.0,
            wall_seconds: 2.0,
            events: 1_000,
            commit: Some("abc1234".to_string()),
        }
    }

    /// The broker-crash catalogue scenario with a ledger where the crash lost two acknowledged
    /// messages (one of them queued and dropped with a declared reason that is not allowed).
    fn crashed() -> (Scenario, Ledger) {
        let scenario = crate::catalog::get("broker-crash").expect("catalogue entry");
        let mut ledger = Ledger::new();
        let observer = ledger.register_observer("historian", QoS::AtLeastOnce);
        ledger.subscription_active(observer, &["#"], Time::ZERO);
        for publisher in 0..2 {
            ledger.register_publisher(publisher, &format!("dev-{publisher}"));
        }
        for seq in 0..5 {
            for publisher in 0..2 {
                let topic = format!("plant/cell1/dev-{publisher}/telemetry");
                let planned = Time::from_secs(seq);
                ledger.publish_invoked(publisher, seq, &topic, QoS::AtLeastOnce, planned, planned);
                ledger.publish_acked(publisher, seq, planned);
                if (publisher, seq) == (1, 3) || (publisher, seq) == (0, 4) {
                    continue;
                }
                let stamp = Stamp {
                    flags: 0,
                    publisher_id: publisher,
                    seq,
                    planned_send: planned,
                    actual_send: planned,
                };
                ledger.delivered(
                    observer,
                    &stamp,
                    &topic,
                    planned + std::time::Duration::from_millis(3),
                    false,
                );
            }
        }
        ledger.message_dropped(observer, 0, 4, DROP_QUEUE_FULL);
        (scenario, ledger)
    }

    #[test]
    fn lost_acknowledged_messages_make_the_verdict_fail() {
        let (scenario, ledger) = crashed();
        let outcome = Outcome::from_ledger(&scenario, &ledger, run_info());
        assert_eq!(outcome.verdict, Verdict::Fail);
        assert!(!outcome.passed());
        assert_eq!(outcome.counters.lost, 2);
        assert_eq!(outcome.counters.published, 10);
        assert_eq!(outcome.counters.acked, 10);
        assert_eq!(outcome.counters.delivered, 8);
        assert_eq!(outcome.counters.dropped.get(DROP_QUEUE_FULL), Some(&1));
        assert_eq!(outcome.sim_seconds_per_wall_second, 35.0);
        assert_eq!(outcome.events_per_wall_second, 500.0);
        assert_eq!(outcome.scenario_hash, scenario.scenario_hash());
        let failed: Vec<&str> =
            outcome.checks.iter().filter(|check| !check.passed).map(|check| check.name.as_str()).collect();
        assert_eq!(failed, ["total-queue", "drops"]);
    }

    #[test]
    fn outcome_json_field_names_are_pinned() {
        let (scenario, ledger) = crashed();
        let outcome = Outcome::from_ledger(&scenario, &ledger, run_info());
        let value: serde_json::Value = serde_json::from_str(&outcome.to_json()).expect("valid JSON");
        // Sorted, whatever order serde_json's map keeps.
        let keys = |value: &serde_json::Value| -> Vec<String> {
            let mut keys: Vec<String> = value.as_object().expect("an object").keys().cloned().collect();
            keys.sort();
            keys
        };
        let top = keys(&value);
        assert_eq!(
            top,
            [
                "checks",
                "commit",
                "counters",
                "edgeproof_version",
                "engine",
                "events",
                "events_per_wall_second",
                "faults",
                "histograms",
                "latency_ms",
                "latency_raw_ms",
                "observers",
                "scenario",
                "scenario_hash",
                "seed",
                "send_lag_ms",
                "series",
                "sim_seconds",
                "sim_seconds_per_wall_second",
                "trace_hash",
                "verdict",
                "wall_seconds",
            ]
        );
        let counters = keys(&value["counters"]);
        assert_eq!(
            counters,
            [
                "acked",
                "delivered",
                "deliveries",
                "dropped",
                "duplicated",
                "failed",
                "indeterminate",
                "lost",
                "out_of_order",
                "published",
                "recovered",
                "unexpected"
            ]
        );
        assert_eq!(keys(&value["latency_ms"]), ["count", "max", "p50", "p99", "p999"]);
        assert_eq!(keys(&value["checks"][0]), ["detail", "name", "passed"]);
        assert_eq!(keys(&value["histograms"]), ["latency_raw_us", "latency_us", "send_lag_us"]);
        assert_eq!(
            keys(&value["series"]),
            [
                "acked",
                "delivered",
                "interval_secs",
                "latency_max_ms",
                "latency_p50_ms",
                "latency_p99_ms",
                "published"
            ]
        );
        assert_eq!(
            value["faults"][0],
            serde_json::json!({"at_secs": 30.0, "action": "crash", "target": "broker"})
        );
        assert_eq!(value["series"]["published"], serde_json::json!([2, 2, 2, 2, 2]));
        assert_eq!(value["verdict"], "fail");
        assert_eq!(value["scenario"], "broker-crash");
        assert_eq!(value["counters"]["dropped"]["queue_full"], 1);
        assert_eq!(value["observers"][0]["lost_examples"], serde_json::json!([[0, 4], [1, 3]]));
        // The JSON reads back into the same outcome, histograms included.
        let back = Outcome::from_json(&outcome.to_json()).expect("roundtrip");
        assert_eq!(back, outcome);
        let histogram = crate::latency::histogram_from_base64(&back.histograms.latency_us).expect("decodes");
        assert_eq!(histogram.len(), 8);
    }

    #[test]
    fn the_verdict_table_is_short_and_names_the_failures() {
        let (scenario, ledger) = crashed();
        let table = Outcome::from_ledger(&scenario, &ledger, run_info()).verdict_table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines.len() <= 12, "{table}");
        assert!(lines[0].starts_with("FAIL  broker-crash"), "{table}");
        assert!(table.contains("FAIL  total-queue  lost 2 (max 0)"), "{table}");
        assert!(table.contains("  ok    order"), "{table}");
        assert!(table.contains("published 10  acked 10  delivered 8  lost 2"), "{table}");
        assert!(table.contains("dropped queue_full 1"), "{table}");
        assert!(lines.iter().all(|line| line.chars().count() <= 140), "{table}");
    }
}
