//! The fault vocabulary: what can go wrong in a world, and when.
//!
//! This module owns the fault types that scenario files name (`[[faults]]` entries) and that both
//! simulated engines (and later the real executors) apply. It must never apply a fault itself or
//! parse a file: `scenarios::spec` parses and validates them with line-numbered errors, the engines
//! give them meaning.

use std::time::Duration;

use edgeproof_system::Time;
use serde::{Deserialize, Serialize};

/// Inclusive bounds of a uniformly drawn latency, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyRange {
    /// Smallest latency.
    pub min: f64,
    /// Largest latency; `min <= max`.
    pub max: f64,
}

impl LatencyRange {
    /// The default network's latency: 1 to 2 ms, a LAN.
    pub fn default_network() -> LatencyRange {
        LatencyRange { min: 1.0, max: 2.0 }
    }

    /// The lower bound as a duration.
    pub fn min_duration(&self) -> Duration {
        Duration::from_secs_f64(self.min / 1e3)
    }

    /// The upper bound as a duration.
    pub fn max_duration(&self) -> Duration {
        Duration::from_secs_f64(self.max / 1e3)
    }
}

/// A fault at a point in simulated time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fault {
    /// When it happens, seconds from the start of the run.
    pub at_secs: f64,
    /// What happens.
    pub action: FaultAction,
}

impl Fault {
    /// When it happens, on the world's clock.
    pub fn at(&self) -> Time {
        assert!(self.at_secs.is_finite() && self.at_secs >= 0.0, "fault time out of range: {}", self.at_secs);
        Time::from_nanos((self.at_secs * 1e9).round() as u64)
    }
}

/// What a restart finds on its host's disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskFate {
    /// Everything the disk made durable before the crash.
    #[default]
    Kept,
    /// Nothing: the disk starts empty.
    Lost,
}

impl DiskFate {
    fn is_kept(&self) -> bool {
        *self == DiskFate::Kept
    }
}

/// The fault vocabulary of scenario files v0.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FaultAction {
    /// The pod's process dies; in-memory state is gone.
    Crash {
        /// The pod.
        pod: String,
    },
    /// A crashed pod starts again.
    Restart {
        /// The pod.
        pod: String,
        /// Whether the host's disk survived (`kept`, the default: a process restart) or not
        /// (`lost`: a replaced machine or wiped volume starts with an empty disk).
        #[serde(default, skip_serializing_if = "DiskFate::is_kept")]
        disk: DiskFate,
    },
    /// Every host in the group is cut off from every host outside it, both ways.
    Partition {
        /// The isolated group.
        hosts: Vec<String>,
    },
    /// Undoes partitions: those isolating exactly `hosts`, or all of them when `hosts` is empty.
    Heal {
        /// The group whose partition ends; empty = heal everything.
        hosts: Vec<String>,
    },
    /// Traffic from `from` to `to` is dropped; the other direction still flows.
    PartitionOneway {
        /// Sending side.
        from: String,
        /// Receiving side.
        to: String,
    },
    /// Changes the link between two hosts (both directions).
    Link {
        /// Exactly two hosts.
        hosts: Vec<String>,
        /// New latency bounds, or unchanged.
        latency_ms: Option<LatencyRange>,
        /// New loss probability, or unchanged.
        loss: Option<f64>,
    },
}

impl FaultAction {
    /// The action's name as scenario files spell it (`action = "crash"`).
    pub fn name(&self) -> &'static str {
        match self {
            FaultAction::Crash { .. } => "crash",
            FaultAction::Restart { .. } => "restart",
            FaultAction::Partition { .. } => "partition",
            FaultAction::Heal { .. } => "heal",
            FaultAction::PartitionOneway { .. } => "partition_oneway",
            FaultAction::Link { .. } => "link",
        }
    }
}
