//! The scenario language v0: a TOML file that describes a world (hosts, broker pods, device fleets,
//! subscribers, the default network), a timed fault list and the expectations the oracle checks.
//!
//! This module owns parsing (serde + `toml`, unknown fields rejected), semantic validation with
//! line:column positions for every error, and the scenario's stable content hash. It must never
//! read files or do any other I/O: callers hand it the text and a name to quote in errors.

use std::fmt;
use std::time::Duration;

use edgeproof_system::Time;
use edgeproof_system::mqtt::topic::{filter_matches, validate_topic_filter, validate_topic_name};
use edgeproof_system::mqtt::{ProtocolVersion, QoS};
use edgeproof_system::republisher::RepublisherConfig;
use edgeproof_system::service::MQTT_PORT;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use edgeproof_chaos::{DiskFate, Fault, FaultAction, LatencyRange};

use crate::stamp::STAMP_LEN;

/// Upper bound on devices per fleet; beyond it a file is almost certainly a typo, and the ledger's
/// memory budget (about 100 B per device) would no longer fit the machines we run on.
pub const FLEET_COUNT_LIMIT: u32 = 50_000_000;
/// Upper bound on a payload: the MQTT maximum packet size is 256 MiB, far beyond a telemetry sample.
pub const PAYLOAD_BYTES_LIMIT: u32 = 16 * 1024 * 1024;
/// Upper bound on the publishing phase plus the drain: one simulated year.
pub const SCENARIO_SECS_LIMIT: u64 = 365 * 24 * 3600;
/// Upper bound on a device's pending queue while it cannot reach its broker.
pub const PENDING_MESSAGES_LIMIT_MAX: u32 = 10_000_000;

/// A parsed and validated scenario. Every name it references exists, every number is in range.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scenario {
    /// Short identifier (`smoke`), used in reports and file names.
    pub name: String,
    /// What the scenario shows, in a sentence or two.
    pub description: String,
    /// Length of the publishing phase.
    pub duration_secs: u64,
    /// Length of the drain phase after publishing stops: no new publishes, faults healed,
    /// everything acknowledged should arrive by its end.
    pub drain_secs: u64,
    /// The default network between any two hosts.
    pub network: NetworkSpec,
    /// Simulated machines (a plant cell, an edge node); faults hit a host as a whole.
    pub hosts: Vec<HostSpec>,
    /// Pods of the stack under test, each placed on a host.
    pub pods: Vec<PodSpec>,
    /// Device fleets; their devices get dense global publisher ids in file order.
    pub fleets: Vec<FleetSpec>,
    /// Subscribers whose deliveries the oracle checks.
    pub subscribers: Vec<SubscriberSpec>,
    /// The fault schedule, sorted by time (stable: same-time faults keep file order).
    pub faults: Vec<Fault>,
    /// What the oracle requires of the run.
    pub expect: Expectations,
}

/// The default network: every message between two hosts takes a latency drawn uniformly from
/// `latency_ms` and is lost with probability `loss` (a lossy link looks like TCP retransmission
/// delay to the engines that model TCP).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// One-way latency bounds.
    #[serde(default = "LatencyRange::default_network")]
    pub latency_ms: LatencyRange,
    /// Probability in 0..=1 that a segment is lost.
    #[serde(default)]
    pub loss: f64,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec { latency_ms: LatencyRange::default_network(), loss: 0.0 }
    }
}

/// A simulated machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// Unique host name.
    pub name: String,
}

/// What a pod runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PodKind {
    /// A single in-memory MQTT broker (v0; clusters come later).
    Broker,
    /// A bridge: subscribes on one broker, republishes under a rewritten topic to another
    /// (`edgeproof_system::republisher::RepublisherConfig` is its `config`).
    Republisher,
}

/// A pod of the stack under test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodSpec {
    /// Unique pod name.
    pub name: String,
    /// The host it runs on.
    pub host: String,
    /// What it runs.
    pub kind: PodKind,
    /// Settings handed to the pod's own config type (the broker deserializes it); kept as a raw
    /// table here so this crate does not depend on every component's config.
    #[serde(default)]
    pub config: toml::Table,
}

/// The MQTT protocol version a client speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// MQTT 5.0.
    #[default]
    #[serde(rename = "5")]
    V5,
    /// MQTT 3.1.1.
    #[serde(rename = "3.1.1")]
    V311,
}

impl Protocol {
    /// The protocol version in the system's packet model.
    pub const fn version(self) -> ProtocolVersion {
        match self {
            Protocol::V5 => ProtocolVersion::V5,
            Protocol::V311 => ProtocolVersion::V311,
        }
    }
}

/// How a device's publish times are drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrival {
    /// `phase + k * interval`, the phase drawn per device within one interval.
    #[default]
    Periodic,
    /// A Poisson process with the same mean interval.
    Poisson,
}

/// A fleet of identical devices, each a publisher with its own client id and topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    /// Unique fleet name.
    pub name: String,
    /// The host all its devices sit on (a plant cell): network faults hit them together.
    pub host: String,
    /// The broker pod the devices connect to.
    pub broker: String,
    /// Number of devices, at least one.
    pub count: u32,
    /// Client id pattern; `{index}` is the device index in the fleet, `{fleet}` the fleet name.
    pub client_id: String,
    /// Topic pattern; `{client_id}`, `{index}` and `{fleet}` are substituted.
    pub topic: String,
    /// QoS of every publish.
    #[serde(with = "qos_as_integer")]
    pub qos: QoS,
    /// Mean time between two publishes of one device (exactly one of this and `rate_per_sec`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_interval_ms: Option<f64>,
    /// Publishes per second of one device (exactly one of this and `publish_interval_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_sec: Option<f64>,
    /// Periodic (default) or Poisson arrivals.
    #[serde(default)]
    pub arrival: Arrival,
    /// Payload size including the 40-byte stamp.
    pub payload_bytes: u32,
    /// MQTT clean start (clean session in 3.1.1).
    #[serde(default = "default_true")]
    pub clean_start: bool,
    /// Session expiry interval asked for in CONNECT.
    #[serde(default)]
    pub session_expiry_secs: u32,
    /// Keep-alive asked for in CONNECT.
    #[serde(default = "default_keep_alive_secs")]
    pub keep_alive_secs: u16,
    /// Protocol version, "5" (default) or "3.1.1".
    #[serde(default)]
    pub protocol: Protocol,
    /// Samples a device keeps while it cannot publish (disconnected, inflight window full). When
    /// the queue is full the NEWEST sample is dropped and declared as drop reason
    /// [`crate::ledger::DROP_DEVICE_QUEUE_FULL`]; it is never invoked, so it is never lost.
    #[serde(default = "default_pending_messages_limit")]
    pub pending_messages_limit: u32,
    /// Connection ramp: devices connect in index order at this many per second (device `i` at
    /// `i / rate`). Unset: every device connects at time zero (a connect storm). Publishing
    /// follows the plan regardless: samples planned before a device is connected wait in its
    /// pending queue, and their latency shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_rate_per_sec: Option<f64>,
}

impl FleetSpec {
    /// The mean interval between two publishes of one device.
    pub fn publish_interval(&self) -> Duration {
        match (self.publish_interval_ms, self.rate_per_sec) {
            (Some(interval_ms), None) => Duration::from_secs_f64(interval_ms / 1e3),
            (None, Some(rate)) => Duration::from_secs_f64(1.0 / rate),
            _ => unreachable!("validation guarantees exactly one of publish_interval_ms and rate_per_sec"),
        }
    }
}

/// A subscriber whose deliveries the oracle checks (one observer in the ledger).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriberSpec {
    /// Unique subscriber name; also its observer name in the ledger.
    pub name: String,
    /// The host it sits on.
    pub host: String,
    /// The broker pod it connects to.
    pub broker: String,
    /// Its MQTT client id.
    pub client_id: String,
    /// Topic filters it subscribes to.
    pub filters: Vec<String>,
    /// Maximum QoS asked for in SUBSCRIBE.
    #[serde(with = "qos_as_integer")]
    pub qos: QoS,
    /// MQTT clean start (clean session in 3.1.1).
    #[serde(default = "default_true")]
    pub clean_start: bool,
    /// Session expiry interval asked for in CONNECT.
    #[serde(default)]
    pub session_expiry_secs: u32,
    /// Keep-alive asked for in CONNECT.
    #[serde(default = "default_keep_alive_secs")]
    pub keep_alive_secs: u16,
    /// Protocol version, "5" (default) or "3.1.1".
    #[serde(default)]
    pub protocol: Protocol,
}

/// What the oracle requires of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    /// Acknowledged messages that may go missing at an observer (Jepsen `lost`).
    #[serde(default)]
    pub lost_max: u64,
    /// Deliveries of messages never sent that are tolerated (Jepsen `unexpected`).
    #[serde(default)]
    pub unexpected_max: u64,
    /// Duplicate deliveries tolerated at QoS 1; `None` = any number (at-least-once). Duplicates of
    /// QoS 2 messages are always an error.
    #[serde(default)]
    pub duplicated_max: Option<u64>,
    /// Whether order per (publisher, topic) is checked at every observer.
    #[serde(default = "default_true")]
    pub ordered: bool,
    /// Bound on the 99th percentile latency from planned send to delivery.
    #[serde(default)]
    pub latency_p99_ms_max: Option<f64>,
    /// Bound on the last delivery after the last heal (or the end of publishing if none).
    #[serde(default)]
    pub drain_complete_within_secs: Option<f64>,
    /// Drop reasons a declared bound allows (e.g. `queue_full`); any other drop fails the run.
    #[serde(default)]
    pub allowed_drops: Vec<String>,
}

impl Default for Expectations {
    fn default() -> Self {
        Expectations {
            lost_max: 0,
            unexpected_max: 0,
            duplicated_max: None,
            ordered: true,
            latency_p99_ms_max: None,
            drain_complete_within_secs: None,
            allowed_drops: Vec::new(),
        }
    }
}

/// Why a scenario file was rejected. Each error quotes the source name and the 1-based line and
/// column of the offending value (or of the start of the file when it has no position).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ScenarioError {
    /// The text is not valid TOML, or does not have the shape of a scenario (unknown field,
    /// wrong type, missing field).
    #[error("{source_name}:{line}:{column}: {message}")]
    Syntax {
        /// File name as handed in by the caller.
        source_name: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What was expected.
        message: String,
    },
    /// The file parses but says something impossible (unknown host, count = 0, ...).
    #[error("{source_name}:{line}:{column}: {message}")]
    Invalid {
        /// File name as handed in by the caller.
        source_name: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What is wrong and what was expected.
        message: String,
    },
}

impl ScenarioError {
    /// The 1-based (line, column) the error points at.
    pub fn position(&self) -> (usize, usize) {
        match self {
            ScenarioError::Syntax { line, column, .. } | ScenarioError::Invalid { line, column, .. } => {
                (*line, *column)
            }
        }
    }
}

/// The document shape as serde sees it; `Scenario` is built from it after validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: String,
    #[serde(default)]
    description: String,
    duration_secs: u64,
    #[serde(default)]
    drain_secs: u64,
    #[serde(default)]
    network: NetworkSpec,
    #[serde(default)]
    hosts: Vec<HostSpec>,
    #[serde(default)]
    pods: Vec<PodSpec>,
    #[serde(default)]
    fleets: Vec<FleetSpec>,
    #[serde(default)]
    subscribers: Vec<SubscriberSpec>,
    #[serde(default)]
    faults: Vec<FaultFile>,
    #[serde(default)]
    expect: Expectations,
}

/// A fault as written: one flat table whose required keys depend on `action`, so that a missing
/// key gets a message naming the action rather than serde's untagged-enum guesswork.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultFile {
    at_secs: f64,
    action: FaultKind,
    pod: Option<String>,
    hosts: Option<Vec<String>>,
    from: Option<String>,
    to: Option<String>,
    latency_ms: Option<LatencyRange>,
    loss: Option<f64>,
    disk: Option<DiskFate>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FaultKind {
    Crash,
    Restart,
    Partition,
    Heal,
    PartitionOneway,
    Link,
}

fn default_true() -> bool {
    true
}

fn default_keep_alive_secs() -> u16 {
    60
}

fn default_pending_messages_limit() -> u32 {
    1_000
}

/// Converts seconds (validated finite and non-negative) to the world's clock.
pub fn secs_to_time(secs: f64) -> Time {
    assert!(secs.is_finite() && secs >= 0.0, "seconds out of range: {secs}");
    Time::from_nanos((secs * 1e9).round() as u64)
}

/// QoS written as the integer 0, 1 or 2, as MQTT users do.
mod qos_as_integer {
    use edgeproof_system::mqtt::QoS;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(qos: &QoS, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(qos.as_u8())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<QoS, D::Error> {
        let value = i64::deserialize(deserializer)?;
        u8::try_from(value)
            .ok()
            .and_then(QoS::from_u8)
            .ok_or_else(|| D::Error::custom(format!("invalid QoS {value}, expected 0, 1 or 2")))
    }
}

/// One step of a path into the document, used to find the position of a value for an error.
#[derive(Clone, Debug)]
enum PathStep<'k> {
    Key(&'k str),
    Index(usize),
}

use PathStep::{Index, Key};

/// Maps byte offsets in the source to 1-based line:column and finds the span of a value by path.
struct SourceMap<'a> {
    source_name: &'a str,
    text: &'a str,
    document: Option<toml::Spanned<toml::de::DeTable<'a>>>,
}

impl<'a> SourceMap<'a> {
    fn new(source_name: &'a str, text: &'a str) -> SourceMap<'a> {
        SourceMap { source_name, text, document: toml::de::DeTable::parse(text).ok() }
    }

    /// 1-based line and column (counted in characters) of a byte offset.
    fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..self.text.floor_char_boundary(offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        let column = before[line_start..].chars().count() + 1;
        assert!(line >= 1 && column >= 1);
        (line, column)
    }

    /// The byte offset where the value at `path` starts; the deepest existing prefix of the path
    /// when the value itself is absent (a missing key points at its table).
    fn offset_of(&self, path: &[PathStep]) -> usize {
        let Some(document) = &self.document else { return 0 };
        let mut offset = document.span().start;
        let mut table: Option<&toml::de::DeTable<'_>> = Some(document.get_ref());
        let mut array: Option<&toml::de::DeArray<'_>> = None;
        for step in path {
            let next = match (step, table, array) {
                (Key(key), Some(current), _) => current.get(*key),
                (Index(index), _, Some(current)) => current.get(*index),
                _ => None,
            };
            let Some(value) = next else { break };
            offset = value.span().start;
            table = None;
            array = None;
            match value.get_ref() {
                toml::de::DeValue::Table(inner) => table = Some(inner),
                toml::de::DeValue::Array(inner) => array = Some(inner),
                _ => {}
            }
        }
        offset
    }

    fn invalid(&self, path: &[PathStep], message: String) -> ScenarioError {
        let (line, column) = self.line_column(self.offset_of(path));
        ScenarioError::Invalid { source_name: self.source_name.to_string(), line, column, message }
    }

    fn syntax(&self, error: &toml::de::Error) -> ScenarioError {
        let offset = error.span().map_or(0, |span| span.start);
        let (line, column) = self.line_column(offset);
        ScenarioError::Syntax {
            source_name: self.source_name.to_string(),
            line,
            column,
            message: error.message().trim_end().to_string(),
        }
    }
}

impl Scenario {
    /// Parses and validates a scenario file. `source_name` (a file name) is only quoted in errors.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Scenario, ScenarioError> {
        let map = SourceMap::new(source_name, text);
        let file: ScenarioFile = toml::from_str(text).map_err(|error| map.syntax(&error))?;
        let scenario = validate(file, &map)?;
        assert!(scenario.duration_secs > 0);
        assert!(scenario.faults.windows(2).all(|pair| pair[0].at_secs <= pair[1].at_secs));
        Ok(scenario)
    }

    /// The end of the publishing phase.
    pub fn publish_end(&self) -> Time {
        Time::from_secs(self.duration_secs)
    }

    /// The end of the drain phase: the whole run.
    pub fn end(&self) -> Time {
        Time::from_secs(self.duration_secs + self.drain_secs)
    }

    /// Total number of devices over all fleets (= number of publisher ids).
    pub fn device_count(&self) -> u64 {
        self.fleets.iter().map(|fleet| u64::from(fleet.count)).sum()
    }

    /// The time after which the run should be quiet: the last heal, restart or link change, or
    /// the end of publishing when that is later.
    pub fn last_recovery(&self) -> Time {
        let last_fault = self
            .faults
            .iter()
            .filter(|fault| {
                matches!(
                    fault.action,
                    FaultAction::Heal { .. } | FaultAction::Restart { .. } | FaultAction::Link { .. }
                )
            })
            .map(Fault::at)
            .max()
            .unwrap_or(Time::ZERO);
        last_fault.max(self.publish_end())
    }

    /// A stable 64-bit content hash of the validated scenario (FNV-1a over its canonical JSON),
    /// as 16 hex digits. Equal files give equal hashes on every platform and every run; any change
    /// to a value changes it.
    pub fn scenario_hash(&self) -> String {
        let canonical = serde_json::to_vec(self).expect("a scenario always serializes");
        format!("{:016x}", fnv1a_64(&canonical))
    }
}

/// FNV-1a, 64 bit: tiny, stable across platforms and versions, good enough to tell files apart
/// (this is an identity for reports, not a security boundary).
pub(crate) fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(PRIME))
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} devices in {} fleets, {} subscribers, {} faults, {} s + {} s drain)",
            self.name,
            self.device_count(),
            self.fleets.len(),
            self.subscribers.len(),
            self.faults.len(),
            self.duration_secs,
            self.drain_secs
        )
    }
}

fn check_probability(map: &SourceMap<'_>, path: &[PathStep], value: f64) -> Result<(), ScenarioError> {
    if !(0.0..=1.0).contains(&value) {
        return Err(map.invalid(path, format!("probability {value} out of range, expected 0 <= p <= 1")));
    }
    Ok(())
}

fn check_latency(map: &SourceMap<'_>, path: &[PathStep], range: &LatencyRange) -> Result<(), ScenarioError> {
    let valid = range.min.is_finite() && range.max.is_finite() && range.min >= 0.0 && range.min <= range.max;
    if !valid || range.max > 3_600_000.0 {
        return Err(map.invalid(
            path,
            format!(
                "latency range {{ min = {}, max = {} }} invalid, expected 0 <= min <= max <= 3600000 ms",
                range.min, range.max
            ),
        ));
    }
    Ok(())
}

fn check_unique<'n>(
    map: &SourceMap<'_>,
    section: &'static str,
    names: impl Iterator<Item = &'n str>,
    taken: &mut Vec<String>,
) -> Result<(), ScenarioError> {
    for (index, name) in names.enumerate() {
        if name.is_empty() {
            return Err(map.invalid(&[Key(section), Index(index), Key("name")], "empty name".to_string()));
        }
        if taken.iter().any(|other| other == name) {
            return Err(map.invalid(
                &[Key(section), Index(index), Key("name")],
                format!("duplicate name `{name}`, expected names unique across hosts, pods, fleets and subscribers"),
            ));
        }
        taken.push(name.to_string());
    }
    Ok(())
}

fn check_reference(
    map: &SourceMap<'_>,
    path: &[PathStep],
    what: &str,
    name: &str,
    known: &[&str],
) -> Result<(), ScenarioError> {
    if !known.contains(&name) {
        return Err(
            map.invalid(path, format!("unknown {what} `{name}`, expected one of: {}", known.join(", ")))
        );
    }
    Ok(())
}

/// The connection settings fleets and subscribers share.
struct ClientSettings {
    keep_alive_secs: u16,
    clean_start: bool,
    session_expiry_secs: u32,
    protocol: Protocol,
}

fn check_client(
    map: &SourceMap<'_>,
    section: &'static str,
    index: usize,
    client: ClientSettings,
) -> Result<(), ScenarioError> {
    let at = |key: &'static str| [Key(section), Index(index), Key(key)];
    if client.keep_alive_secs == 0 {
        // Without keep-alive a half-open connection through a partition is never detected, and
        // turmoil does not retransmit: every path needs its own liveness.
        return Err(map.invalid(
            &at("keep_alive_secs"),
            "keep_alive_secs = 0 disables liveness, expected at least 1".to_string(),
        ));
    }
    match client.protocol {
        Protocol::V5 if !client.clean_start && client.session_expiry_secs == 0 => {
            // MQTT 5: clean start 0 with expiry 0 keeps the session only while connected, which
            // contradicts asking for a persistent session.
            Err(map.invalid(
                &at("session_expiry_secs"),
                "clean_start = false needs session_expiry_secs > 0 to keep the session across disconnects"
                    .to_string(),
            ))
        }
        Protocol::V311 if client.session_expiry_secs != 0 => {
            // MQTT 3.1.1 has no expiry: clean session 0 keeps the session until a clean connect.
            Err(map.invalid(
                &at("session_expiry_secs"),
                "session_expiry_secs does not exist in MQTT 3.1.1, expected 0 (clean_start = false \
                 keeps the session until the next clean connect)"
                    .to_string(),
            ))
        }
        _ => Ok(()),
    }
}

fn validate(file: ScenarioFile, map: &SourceMap<'_>) -> Result<Scenario, ScenarioError> {
    if file.name.is_empty() || !file.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(map.invalid(
            &[Key("name")],
            format!("name `{}` invalid, expected letters, digits, `-` and `_` only", file.name),
        ));
    }
    if file.duration_secs == 0 {
        return Err(
            map.invalid(&[Key("duration_secs")], "duration_secs = 0, expected at least 1".to_string())
        );
    }
    if file.duration_secs.saturating_add(file.drain_secs) > SCENARIO_SECS_LIMIT {
        return Err(map.invalid(
            &[Key("duration_secs")],
            format!("duration_secs + drain_secs exceeds {SCENARIO_SECS_LIMIT} s (one year)"),
        ));
    }
    check_latency(map, &[Key("network"), Key("latency_ms")], &file.network.latency_ms)?;
    check_probability(map, &[Key("network"), Key("loss")], file.network.loss)?;

    let mut taken = Vec::new();
    check_unique(map, "hosts", file.hosts.iter().map(|host| host.name.as_str()), &mut taken)?;
    check_unique(map, "pods", file.pods.iter().map(|pod| pod.name.as_str()), &mut taken)?;
    check_unique(map, "fleets", file.fleets.iter().map(|fleet| fleet.name.as_str()), &mut taken)?;
    check_unique(map, "subscribers", file.subscribers.iter().map(|sub| sub.name.as_str()), &mut taken)?;
    let hosts: Vec<&str> = file.hosts.iter().map(|host| host.name.as_str()).collect();
    let brokers: Vec<&str> =
        file.pods.iter().filter(|pod| pod.kind == PodKind::Broker).map(|pod| pod.name.as_str()).collect();
    let pods: Vec<&str> = file.pods.iter().map(|pod| pod.name.as_str()).collect();

    for (index, pod) in file.pods.iter().enumerate() {
        check_reference(map, &[Key("pods"), Index(index), Key("host")], "host", &pod.host, &hosts)?;
        if pod.kind == PodKind::Republisher {
            validate_republisher(map, index, pod, &brokers)?;
        }
    }
    if file.fleets.is_empty() {
        return Err(map.invalid(&[], "no [[fleets]], expected at least one device fleet".to_string()));
    }
    for (index, fleet) in file.fleets.iter().enumerate() {
        validate_fleet(map, index, fleet, &hosts, &brokers)?;
    }
    let mut client_ids: Vec<&str> = Vec::new();
    for (index, subscriber) in file.subscribers.iter().enumerate() {
        validate_subscriber(map, index, subscriber, &hosts, &brokers)?;
        if client_ids.contains(&subscriber.client_id.as_str()) {
            return Err(map.invalid(
                &[Key("subscribers"), Index(index), Key("client_id")],
                format!("duplicate subscriber client_id `{}`", subscriber.client_id),
            ));
        }
        client_ids.push(&subscriber.client_id);
    }

    let end_secs = (file.duration_secs + file.drain_secs) as f64;
    let mut faults = Vec::with_capacity(file.faults.len());
    for (index, fault) in file.faults.into_iter().enumerate() {
        faults.push(validate_fault(map, index, fault, end_secs, &hosts, &pods)?);
    }
    faults.sort_by(|a, b| a.at_secs.total_cmp(&b.at_secs));
    check_fault_sequence(map, &faults)?;
    validate_expectations(map, &file.expect)?;

    Ok(Scenario {
        name: file.name,
        description: file.description,
        duration_secs: file.duration_secs,
        drain_secs: file.drain_secs,
        network: file.network,
        hosts: file.hosts,
        pods: file.pods,
        fleets: file.fleets,
        subscribers: file.subscribers,
        faults,
        expect: file.expect,
    })
}

/// A republisher pod's `config`: every key known, every value valid, both endpoints naming a
/// broker pod's MQTT port; errors point at the key at fault.
fn validate_republisher(
    map: &SourceMap<'_>,
    index: usize,
    pod: &PodSpec,
    brokers: &[&str],
) -> Result<(), ScenarioError> {
    let config_path = [Key("pods"), Index(index), Key("config")];
    let config: RepublisherConfig = pod.config.clone().try_into().map_err(|error: toml::de::Error| {
        let message = error.message().trim().to_string();
        // serde names the key in its message ("unknown field `x`", "missing field `x`"): point
        // at that key when it is in the file, else at the table.
        let key = message.split('`').nth(1).filter(|key| pod.config.contains_key(*key));
        match key {
            Some(key) => map.invalid(
                &[Key("pods"), Index(index), Key("config"), Key(key)],
                format!("republisher config: {message}"),
            ),
            None => map.invalid(&config_path, format!("republisher config: {message}")),
        }
    })?;
    let at = |key: &'static str| [Key("pods"), Index(index), Key("config"), Key(key)];
    config
        .validate()
        .map_err(|error| map.invalid(&at(error.key()), format!("republisher config: {error}")))?;
    for (key, endpoint) in [("source", &config.source), ("destination", &config.destination)] {
        check_reference(map, &at(key), "broker pod", &endpoint.pod, brokers)?;
        if endpoint.port != MQTT_PORT.name {
            return Err(map.invalid(
                &at(key),
                format!("endpoint `{endpoint}`: a broker's port is `{}`", MQTT_PORT.name),
            ));
        }
    }
    Ok(())
}

fn validate_fleet(
    map: &SourceMap<'_>,
    index: usize,
    fleet: &FleetSpec,
    hosts: &[&str],
    brokers: &[&str],
) -> Result<(), ScenarioError> {
    let at = |key: &'static str| [Key("fleets"), Index(index), Key(key)];
    check_reference(map, &at("host"), "host", &fleet.host, hosts)?;
    check_reference(map, &at("broker"), "broker pod", &fleet.broker, brokers)?;
    if fleet.count == 0 || fleet.count > FLEET_COUNT_LIMIT {
        return Err(
            map.invalid(&at("count"), format!("count = {}, expected 1 ..= {FLEET_COUNT_LIMIT}", fleet.count))
        );
    }
    if !fleet.client_id.contains("{index}") && fleet.count > 1 {
        return Err(map.invalid(
            &at("client_id"),
            format!(
                "client_id pattern `{}` has no {{index}}, so its devices would share one id",
                fleet.client_id
            ),
        ));
    }
    check_pattern(map, &at("client_id"), &fleet.client_id, &["index", "fleet"])?;
    check_pattern(map, &at("topic"), &fleet.topic, &["index", "fleet", "client_id"])?;
    let sample_topic = crate::workload::expand_topic(&fleet.topic, &fleet.name, 0, "c");
    if let Err(error) = validate_topic_name(&sample_topic) {
        return Err(map.invalid(&at("topic"), format!("topic pattern `{}` invalid: {error}", fleet.topic)));
    }
    match (fleet.publish_interval_ms, fleet.rate_per_sec) {
        (Some(interval_ms), None) => {
            if !(0.001..=86_400_000.0).contains(&interval_ms) {
                return Err(map.invalid(
                    &at("publish_interval_ms"),
                    format!("publish_interval_ms = {interval_ms}, expected 0.001 ..= 86400000"),
                ));
            }
        }
        (None, Some(rate)) => {
            if !(rate.is_finite() && rate > 0.0 && rate <= 1_000_000.0) {
                return Err(map.invalid(
                    &at("rate_per_sec"),
                    format!("rate_per_sec = {rate}, expected 0 < rate <= 1000000"),
                ));
            }
        }
        (Some(_), Some(_)) => {
            return Err(map.invalid(
                &at("rate_per_sec"),
                "both publish_interval_ms and rate_per_sec given, expected exactly one".to_string(),
            ));
        }
        (None, None) => {
            return Err(map.invalid(
                &[Key("fleets"), Index(index)],
                "neither publish_interval_ms nor rate_per_sec given, expected exactly one".to_string(),
            ));
        }
    }
    if (fleet.payload_bytes as usize) < STAMP_LEN || fleet.payload_bytes > PAYLOAD_BYTES_LIMIT {
        return Err(map.invalid(
            &at("payload_bytes"),
            format!(
                "payload_bytes = {}, expected {STAMP_LEN} (the stamp) ..= {PAYLOAD_BYTES_LIMIT}",
                fleet.payload_bytes
            ),
        ));
    }
    if let Some(rate) = fleet.connect_rate_per_sec
        && !(rate.is_finite() && rate > 0.0 && rate <= 10_000_000.0)
    {
        return Err(map.invalid(
            &at("connect_rate_per_sec"),
            format!("connect_rate_per_sec = {rate}, expected 0 < rate <= 10000000"),
        ));
    }
    if fleet.pending_messages_limit == 0 || fleet.pending_messages_limit > PENDING_MESSAGES_LIMIT_MAX {
        return Err(map.invalid(
            &at("pending_messages_limit"),
            format!(
                "pending_messages_limit = {}, expected 1 ..= {PENDING_MESSAGES_LIMIT_MAX}",
                fleet.pending_messages_limit
            ),
        ));
    }
    let client = ClientSettings {
        keep_alive_secs: fleet.keep_alive_secs,
        clean_start: fleet.clean_start,
        session_expiry_secs: fleet.session_expiry_secs,
        protocol: fleet.protocol,
    };
    check_client(map, "fleets", index, client)
}

/// Patterns may only use the named placeholders, with balanced braces.
fn check_pattern(
    map: &SourceMap<'_>,
    path: &[PathStep],
    pattern: &str,
    allowed: &[&str],
) -> Result<(), ScenarioError> {
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return Err(map.invalid(path, format!("pattern `{pattern}` has an unclosed `{{`")));
        };
        let placeholder = &rest[open + 1..open + close];
        if !allowed.contains(&placeholder) {
            return Err(map.invalid(
                path,
                format!(
                    "pattern `{pattern}` uses unknown placeholder {{{placeholder}}}, expected one of: {}",
                    allowed.iter().map(|name| format!("{{{name}}}")).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return Err(map.invalid(path, format!("pattern `{pattern}` has a stray `}}`")));
    }
    Ok(())
}

fn validate_subscriber(
    map: &SourceMap<'_>,
    index: usize,
    subscriber: &SubscriberSpec,
    hosts: &[&str],
    brokers: &[&str],
) -> Result<(), ScenarioError> {
    let at = |key: &'static str| [Key("subscribers"), Index(index), Key(key)];
    check_reference(map, &at("host"), "host", &subscriber.host, hosts)?;
    check_reference(map, &at("broker"), "broker pod", &subscriber.broker, brokers)?;
    if subscriber.client_id.is_empty() {
        return Err(map.invalid(&at("client_id"), "empty client_id".to_string()));
    }
    if subscriber.filters.is_empty() {
        return Err(map.invalid(&at("filters"), "no filters, expected at least one topic filter".to_string()));
    }
    for (filter_index, filter) in subscriber.filters.iter().enumerate() {
        let path = [Key("subscribers"), Index(index), Key("filters"), Index(filter_index)];
        if let Err(error) = validate_topic_filter(filter) {
            return Err(map.invalid(&path, format!("topic filter `{filter}` invalid: {error}")));
        }
        if filter.starts_with("$share/") {
            // A shared subscription receives only a share of the messages, so total-queue per
            // observer does not apply; v0 has no group-level checker yet.
            return Err(
                map.invalid(&path, "shared subscriptions are not supported in scenario v0".to_string())
            );
        }
    }
    let client = ClientSettings {
        keep_alive_secs: subscriber.keep_alive_secs,
        clean_start: subscriber.clean_start,
        session_expiry_secs: subscriber.session_expiry_secs,
        protocol: subscriber.protocol,
    };
    check_client(map, "subscribers", index, client)
}

fn validate_fault(
    map: &SourceMap<'_>,
    index: usize,
    fault: FaultFile,
    end_secs: f64,
    hosts: &[&str],
    pods: &[&str],
) -> Result<Fault, ScenarioError> {
    let at = |key: &'static str| [Key("faults"), Index(index), Key(key)];
    if !(fault.at_secs.is_finite() && fault.at_secs >= 0.0 && fault.at_secs <= end_secs) {
        return Err(map.invalid(
            &at("at_secs"),
            format!(
                "at_secs = {} outside the run, expected 0 ..= {end_secs} (duration + drain)",
                fault.at_secs
            ),
        ));
    }
    let action_name = match fault.action {
        FaultKind::Crash => "crash",
        FaultKind::Restart => "restart",
        FaultKind::Partition => "partition",
        FaultKind::Heal => "heal",
        FaultKind::PartitionOneway => "partition_oneway",
        FaultKind::Link => "link",
    };
    let allowed: &[&str] = match fault.action {
        FaultKind::Crash => &["pod"],
        FaultKind::Restart => &["pod", "disk"],
        FaultKind::Partition | FaultKind::Heal => &["hosts"],
        FaultKind::PartitionOneway => &["from", "to"],
        FaultKind::Link => &["hosts", "latency_ms", "loss"],
    };
    let present = [
        ("pod", fault.pod.is_some()),
        ("hosts", fault.hosts.is_some()),
        ("from", fault.from.is_some()),
        ("to", fault.to.is_some()),
        ("latency_ms", fault.latency_ms.is_some()),
        ("loss", fault.loss.is_some()),
        ("disk", fault.disk.is_some()),
    ];
    for (key, is_present) in present {
        if is_present && !allowed.contains(&key) {
            return Err(map.invalid(
                &at(key),
                format!(
                    "`{key}` does not apply to action = \"{action_name}\", expected only: {}",
                    allowed.join(", ")
                ),
            ));
        }
    }
    let need = |key: &'static str| {
        map.invalid(&[Key("faults"), Index(index)], format!("action = \"{action_name}\" needs `{key}`"))
    };
    let check_distinct = |names: &[String], path: &[PathStep]| -> Result<(), ScenarioError> {
        match names.iter().enumerate().find(|(position, name)| names[..*position].contains(name)) {
            Some((_, name)) => Err(map.invalid(path, format!("host `{name}` listed twice"))),
            None => Ok(()),
        }
    };
    let check_hosts = |names: &[String]| -> Result<(), ScenarioError> {
        for (host_index, name) in names.iter().enumerate() {
            check_reference(
                map,
                &[Key("faults"), Index(index), Key("hosts"), Index(host_index)],
                "host",
                name,
                hosts,
            )?;
        }
        Ok(())
    };
    let action = match fault.action {
        FaultKind::Crash | FaultKind::Restart => {
            let pod = fault.pod.ok_or_else(|| need("pod"))?;
            check_reference(map, &at("pod"), "pod", &pod, pods)?;
            if fault.action == FaultKind::Crash {
                FaultAction::Crash { pod }
            } else {
                FaultAction::Restart { pod, disk: fault.disk.unwrap_or_default() }
            }
        }
        FaultKind::Partition => {
            let group = fault.hosts.ok_or_else(|| need("hosts"))?;
            check_hosts(&group)?;
            check_distinct(&group, &at("hosts"))?;
            if group.is_empty() || group.len() >= hosts.len() {
                return Err(map.invalid(
                    &at("hosts"),
                    format!(
                        "partition of {} hosts cuts nothing off, expected 1 ..= {} hosts",
                        group.len(),
                        hosts.len().saturating_sub(1)
                    ),
                ));
            }
            FaultAction::Partition { hosts: group }
        }
        FaultKind::Heal => {
            let group = fault.hosts.unwrap_or_default();
            check_hosts(&group)?;
            check_distinct(&group, &at("hosts"))?;
            FaultAction::Heal { hosts: group }
        }
        FaultKind::PartitionOneway => {
            let from = fault.from.ok_or_else(|| need("from"))?;
            let to = fault.to.ok_or_else(|| need("to"))?;
            check_reference(map, &at("from"), "host", &from, hosts)?;
            check_reference(map, &at("to"), "host", &to, hosts)?;
            if from == to {
                return Err(
                    map.invalid(&at("to"), format!("from = to = `{from}`, expected two different hosts"))
                );
            }
            FaultAction::PartitionOneway { from, to }
        }
        FaultKind::Link => {
            let pair = fault.hosts.ok_or_else(|| need("hosts"))?;
            check_hosts(&pair)?;
            if pair.len() != 2 || pair[0] == pair[1] {
                return Err(map.invalid(&at("hosts"), "link needs exactly two different hosts".to_string()));
            }
            if fault.latency_ms.is_none() && fault.loss.is_none() {
                return Err(need("latency_ms` or `loss"));
            }
            if let Some(range) = &fault.latency_ms {
                check_latency(map, &at("latency_ms"), range)?;
            }
            if let Some(loss) = fault.loss {
                check_probability(map, &at("loss"), loss)?;
            }
            FaultAction::Link { hosts: pair, latency_ms: fault.latency_ms, loss: fault.loss }
        }
    };
    Ok(Fault { at_secs: fault.at_secs, action })
}

/// Walks the sorted schedule and rejects impossible sequences: a heal with nothing partitioned,
/// crashing a crashed pod, restarting a running one. Errors point at the offending fault by its
/// index in the file, which sorting may have changed, so positions are found by time instead.
fn check_fault_sequence(map: &SourceMap<'_>, faults: &[Fault]) -> Result<(), ScenarioError> {
    let mut crashed: Vec<&str> = Vec::new();
    let mut partitions: Vec<Vec<&str>> = Vec::new();
    let mut oneways = 0_usize;
    for fault in faults {
        let path = fault_path(map, fault);
        match &fault.action {
            FaultAction::Crash { pod } => {
                if crashed.contains(&pod.as_str()) {
                    return Err(map.invalid(&path, format!("crash of `{pod}` which is already crashed")));
                }
                crashed.push(pod);
            }
            FaultAction::Restart { pod, .. } => {
                let Some(position) = crashed.iter().position(|name| name == pod) else {
                    return Err(map.invalid(
                        &path,
                        format!("restart of `{pod}` which is not crashed, expected a crash before"),
                    ));
                };
                crashed.remove(position);
            }
            FaultAction::Partition { hosts } => {
                partitions.push(hosts.iter().map(String::as_str).collect());
            }
            FaultAction::PartitionOneway { .. } => oneways += 1,
            FaultAction::Heal { hosts } => {
                if hosts.is_empty() {
                    if partitions.is_empty() && oneways == 0 {
                        return Err(map.invalid(&path, "heal without a partition before it".to_string()));
                    }
                    partitions.clear();
                    oneways = 0;
                } else {
                    let mut wanted: Vec<&str> = hosts.iter().map(String::as_str).collect();
                    wanted.sort_unstable();
                    let found = partitions.iter().position(|group| {
                        let mut group = group.clone();
                        group.sort_unstable();
                        group == wanted
                    });
                    let Some(found) = found else {
                        return Err(map.invalid(
                            &path,
                            format!(
                                "heal of [{}] without a partition of exactly these hosts before it",
                                hosts.join(", ")
                            ),
                        ));
                    };
                    partitions.remove(found);
                }
            }
            FaultAction::Link { .. } => {}
        }
    }
    Ok(())
}

/// The path of a (sorted) fault in the original file: the first `[[faults]]` entry whose
/// `at_secs` and `action` match.
fn fault_path(map: &SourceMap<'_>, fault: &Fault) -> Vec<PathStep<'static>> {
    let Some(document) = &map.document else { return vec![Key("faults")] };
    let Some(list) = document.get_ref().get("faults") else { return vec![Key("faults")] };
    let toml::de::DeValue::Array(list) = list.get_ref() else { return vec![Key("faults")] };
    let wanted_action = fault.action.name();
    for (index, entry) in list.iter().enumerate() {
        let toml::de::DeValue::Table(table) = entry.get_ref() else { continue };
        let action_matches = table.get("action").is_some_and(
            |value| matches!(value.get_ref(), toml::de::DeValue::String(text) if text == wanted_action),
        );
        let at_matches = table.get("at_secs").is_some_and(|value| match value.get_ref() {
            toml::de::DeValue::Integer(integer) => {
                integer.as_str().parse::<f64>().ok() == Some(fault.at_secs)
            }
            toml::de::DeValue::Float(float) => float.as_str().parse::<f64>().ok() == Some(fault.at_secs),
            _ => false,
        });
        if action_matches && at_matches {
            return vec![Key("faults"), Index(index), Key("action")];
        }
    }
    vec![Key("faults")]
}

fn validate_expectations(map: &SourceMap<'_>, expect: &Expectations) -> Result<(), ScenarioError> {
    if let Some(bound) = expect.latency_p99_ms_max
        && !(bound.is_finite() && bound > 0.0)
    {
        return Err(map.invalid(
            &[Key("expect"), Key("latency_p99_ms_max")],
            format!("latency_p99_ms_max = {bound}, expected a positive number of milliseconds"),
        ));
    }
    if let Some(bound) = expect.drain_complete_within_secs
        && !(bound.is_finite() && bound >= 0.0)
    {
        return Err(map.invalid(
            &[Key("expect"), Key("drain_complete_within_secs")],
            format!("drain_complete_within_secs = {bound}, expected a non-negative number of seconds"),
        ));
    }
    for (index, reason) in expect.allowed_drops.iter().enumerate() {
        if !crate::ledger::KNOWN_DROP_REASONS.contains(&reason.as_str()) {
            return Err(map.invalid(
                &[Key("expect"), Key("allowed_drops"), Index(index)],
                format!(
                    "unknown drop reason `{reason}`, expected one of: {}",
                    crate::ledger::KNOWN_DROP_REASONS.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Whether any of `filters` matches `topic` (shared-subscription prefixes are rejected earlier).
pub fn any_filter_matches<S: AsRef<str>>(filters: &[S], topic: &str) -> bool {
    filters.iter().any(|filter| filter_matches(filter.as_ref(), topic))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
name = "unit"
description = "a test world"
duration_secs = 30
drain_secs = 10

[network]
latency_ms = { min = 1, max = 5 }
loss = 0.01

[[hosts]]
name = "edge"

[[hosts]]
name = "cell"

[[pods]]
name = "broker"
host = "edge"
kind = "broker"

[pods.config]
subscriber_queue_messages_limit = 1000

[[fleets]]
name = "sensors"
host = "cell"
broker = "broker"
count = 10
client_id = "dev-{index}"
topic = "plant/{fleet}/{client_id}/telemetry"
qos = 1
rate_per_sec = 2.0
payload_bytes = 40
protocol = "3.1.1"
connect_rate_per_sec = 4

[[subscribers]]
name = "sink"
host = "edge"
broker = "broker"
client_id = "sink"
filters = ["plant/#"]
qos = 2
clean_start = false
session_expiry_secs = 60

[[faults]]
at_secs = 12.5
action = "heal"
hosts = ["cell"]

[[faults]]
at_secs = 10
action = "partition"
hosts = ["cell"]

[[faults]]
at_secs = 20
action = "link"
hosts = ["edge", "cell"]
latency_ms = { min = 50, max = 80 }

[expect]
duplicated_max = 5
latency_p99_ms_max = 250
allowed_drops = ["queue_full"]
"#;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::from_toml_str(text, "unit.toml")
    }

    /// The valid file with `from` replaced by `to` (exactly once).
    fn variant(from: &str, to: &str) -> String {
        assert_eq!(VALID.matches(from).count(), 1, "`{from}` must occur once");
        VALID.replace(from, to)
    }

    /// Parses a broken variant and returns (line, column, message).
    fn error_of(text: &str) -> (usize, usize, String) {
        let error = parse(text).expect_err("the variant must be rejected");
        let (line, column) = error.position();
        (line, column, error.to_string())
    }

    fn line_of(text: &str, needle: &str) -> usize {
        text.lines().position(|line| line.contains(needle)).expect("needle present") + 1
    }

    const REPUBLISH: &str = include_str!("../catalog/republish.toml");

    fn republish_variant(from: &str, to: &str) -> String {
        assert_eq!(REPUBLISH.matches(from).count(), 1, "`{from}` must occur once");
        REPUBLISH.replace(from, to)
    }

    #[test]
    fn a_republisher_pod_parses_with_its_config() {
        let scenario = parse(REPUBLISH).expect("the catalogue's republish is valid");
        let pod = scenario.pods.iter().find(|pod| pod.kind == PodKind::Republisher).expect("a republisher");
        let config: RepublisherConfig = pod.config.clone().try_into().expect("typed");
        assert_eq!(config.source.to_string(), "broker:mqtt");
        assert_eq!(
            config.map_topic("plant/cell1/dev-1/telemetry").as_deref(),
            Some("cloud/cell1/dev-1/telemetry")
        );
    }

    #[test]
    fn republisher_config_errors_point_at_the_key_at_fault() {
        // An unknown key: rejected, at its line.
        let text =
            republish_variant("keep_alive_secs = 30\nsession", "keep_alive_secs = 30\nretries = 3\nsession");
        let (line, _, message) = error_of(&text);
        assert_eq!(line, line_of(&text, "retries = 3"), "{message}");
        assert!(message.contains("unknown field `retries`"), "{message}");
        // A value serde refuses (a string for a number): at the config table at least.
        let text = republish_variant("inflight_messages_limit = 100", "inflight_messages_limit = \"many\"");
        let (line, _, message) = error_of(&text);
        assert!(
            line >= line_of(&text, "[pods.config]") && line <= line_of(&text, "inflight_messages_limit"),
            "{message}"
        );
        // A rule of the republisher: a filter outside the prefix it rewrites.
        let text = republish_variant(r##"filters = ["plant/#"]"##, r##"filters = ["#"]"##);
        let (line, _, message) = error_of(&text);
        assert_eq!(line, line_of(&text, r##"filters = ["#"]"##), "{message}");
        assert!(message.contains("does not lie under from_prefix"), "{message}");
        // Prefixes that would republish the republisher's own output.
        let text = republish_variant(r#"to_prefix = "cloud/""#, r#"to_prefix = "plant/cloud/""#);
        let (line, _, message) = error_of(&text);
        assert_eq!(line, line_of(&text, "to_prefix"), "{message}");
        // An endpoint naming no broker pod, and one naming a port the broker does not have.
        let text = republish_variant(r#"source = "broker:mqtt""#, r#"source = "uplink:mqtt""#);
        let (line, _, message) = error_of(&text);
        assert_eq!(line, line_of(&text, "source = "), "{message}");
        assert!(message.contains("unknown broker pod `uplink`"), "{message}");
        let text = republish_variant(r#"destination = "broker:mqtt""#, r#"destination = "broker:amqp""#);
        let (line, _, message) = error_of(&text);
        assert_eq!(line, line_of(&text, "destination = "), "{message}");
        // Not an endpoint at all.
        let text = republish_variant(r#"source = "broker:mqtt""#, r#"source = "broker""#);
        let (_, _, message) = error_of(&text);
        assert!(message.contains("expected \"pod:port\""), "{message}");
    }

    #[test]
    fn restart_says_whether_the_disk_survived() {
        // The catalogue file has no faults; append a crash (with `crash_extra`) and a restart
        // (with `restart_extra`).
        let with_faults = |crash_extra: &str, restart_extra: &str| {
            format!(
                "{REPUBLISH}\n[[faults]]\nat_secs = 5\naction = \"crash\"\npod = \"broker\"\n{crash_extra}\n\
                 [[faults]]\nat_secs = 6\naction = \"restart\"\npod = \"broker\"\n{restart_extra}"
            )
        };
        let with = |restart_extra: &str| with_faults("", restart_extra);
        let restart_disk = |text: &str| {
            let scenario = parse(text).expect("valid");
            let restart = scenario.faults.iter().find_map(|fault| match &fault.action {
                FaultAction::Restart { disk, .. } => Some(*disk),
                _ => None,
            });
            restart.expect("a restart")
        };
        assert_eq!(restart_disk(&with("")), DiskFate::Kept);
        assert_eq!(restart_disk(&with("disk = \"lost\"\n")), DiskFate::Lost);
        let (_, _, message) = error_of(&with("disk = \"gone\"\n"));
        assert!(message.contains("kept") && message.contains("lost"), "{message}");
        // `disk` belongs to restart only.
        let crash_with_disk = with_faults("disk = \"lost\"\n", "");
        let (_, _, message) = error_of(&crash_with_disk);
        assert!(message.contains("`disk` does not apply to action = \"crash\""), "{message}");
    }

    #[test]
    fn a_valid_file_parses_into_typed_values() {
        let scenario = parse(VALID).expect("valid");
        assert_eq!(scenario.name, "unit");
        assert_eq!(scenario.end(), Time::from_secs(40));
        assert_eq!(scenario.network.loss, 0.01);
        let fleet = &scenario.fleets[0];
        assert_eq!(fleet.qos, QoS::AtLeastOnce);
        assert_eq!(fleet.publish_interval(), Duration::from_millis(500));
        assert_eq!(fleet.protocol.version(), ProtocolVersion::V311);
        assert!(fleet.clean_start, "clean_start defaults to true");
        assert_eq!(fleet.keep_alive_secs, 60);
        assert_eq!(fleet.connect_rate_per_sec, Some(4.0));
        assert_eq!(scenario.subscribers[0].qos, QoS::ExactlyOnce);
        assert_eq!(
            scenario.pods[0].config.get("subscriber_queue_messages_limit").and_then(|v| v.as_integer()),
            Some(1000)
        );
        // Faults come out sorted by time.
        let times: Vec<f64> = scenario.faults.iter().map(|fault| fault.at_secs).collect();
        assert_eq!(times, vec![10.0, 12.5, 20.0]);
        assert!(matches!(scenario.faults[0].action, FaultAction::Partition { .. }));
        assert_eq!(scenario.faults[1].at(), Time::from_millis(12_500));
        assert_eq!(scenario.last_recovery(), Time::from_secs(30));
        assert_eq!(scenario.expect.duplicated_max, Some(5));
        assert!(scenario.expect.ordered);
        assert_eq!(scenario.device_count(), 10);
    }

    #[test]
    fn syntax_errors_point_at_the_line_and_say_what_was_expected() {
        let text = variant("payload_bytes = 40", "payload_bytes = 40\ncolour = \"red\"");
        let (line, column, message) = error_of(&text);
        assert_eq!(line, line_of(&text, "colour"));
        assert_eq!(column, 1);
        assert!(message.starts_with(&format!("unit.toml:{line}:1: ")), "{message}");
        assert!(message.contains("unknown field `colour`"), "{message}");

        let text = variant("count = 10", "count = \"ten\"");
        let (line, column, message) = error_of(&text);
        assert_eq!((line, column), (line_of(&text, "count = \"ten\""), 9), "{message}");
        assert!(message.contains("invalid type"), "{message}");

        let text = variant("qos = 1", "qos = 3");
        let (line, _, message) = error_of(&text);
        assert_eq!(line, line_of(&text, "qos = 3"));
        assert!(message.contains("invalid QoS 3, expected 0, 1 or 2"), "{message}");

        let text = variant("action = \"link\"", "action = \"melt\"");
        let (line, _, message) = error_of(&text);
        assert_eq!(line, line_of(&text, "melt"));
        assert!(message.contains("unknown variant `melt`"), "{message}");

        let (line, _, message) = error_of("name = \"x\"\nduration_secs = [1,\n");
        assert_eq!(line, 2, "{message}");
    }

    #[test]
    fn unknown_names_are_reported_at_the_reference() {
        let text = variant("broker = \"broker\"\ncount", "broker = \"brokr\"\ncount");
        let (line, column, message) = error_of(&text);
        assert_eq!((line, column), (line_of(&text, "\"brokr\""), 10));
        assert!(message.contains("unknown broker pod `brokr`, expected one of: broker"), "{message}");

        let text = variant("host = \"cell\"\nbroker", "host = \"shed\"\nbroker");
        let (line, _, message) = error_of(&text);
        assert_eq!(line, line_of(&text, "\"shed\""));
        assert!(message.contains("unknown host `shed`"), "{message}");

        let text = variant("hosts = [\"edge\", \"cell\"]", "hosts = [\"edge\", \"attic\"]");
        let (line, column, message) = error_of(&text);
        assert_eq!((line, column), (line_of(&text, "attic"), 18), "{message}");
    }

    #[test]
    fn impossible_values_are_rejected_with_their_position() {
        let cases: &[(&str, &str, &str)] = &[
            ("count = 10", "count = 0", "count = 0, expected 1"),
            ("payload_bytes = 40", "payload_bytes = 39", "expected 40 (the stamp)"),
            ("rate_per_sec = 2.0", "rate_per_sec = 2.0\npublish_interval_ms = 5", "exactly one"),
            ("rate_per_sec = 2.0", "rate_per_sec = 0.0", "rate_per_sec = 0"),
            ("connect_rate_per_sec = 4", "connect_rate_per_sec = -4", "connect_rate_per_sec = -4"),
            ("at_secs = 20", "at_secs = 41", "outside the run"),
            ("duration_secs = 30", "duration_secs = 0", "duration_secs = 0"),
            ("loss = 0.01", "loss = 1.5", "probability 1.5 out of range"),
            ("latency_ms = { min = 1, max = 5 }", "latency_ms = { min = 9, max = 5 }", "min <= max"),
            ("filters = [\"plant/#\"]", "filters = [\"plant/#/x\"]", "topic filter `plant/#/x` invalid"),
            ("filters = [\"plant/#\"]", "filters = []", "no filters"),
            (
                "topic = \"plant/{fleet}/{client_id}/telemetry\"",
                "topic = \"plant/{site}\"",
                "unknown placeholder {site}",
            ),
            (
                "topic = \"plant/{fleet}/{client_id}/telemetry\"",
                "topic = \"plant/+/x\"",
                "topic pattern `plant/+/x` invalid",
            ),
            ("client_id = \"dev-{index}\"", "client_id = \"dev\"", "has no {index}"),
            (
                "session_expiry_secs = 60",
                "session_expiry_secs = 0",
                "clean_start = false needs session_expiry_secs",
            ),
            (
                "allowed_drops = [\"queue_full\"]",
                "allowed_drops = [\"whatever\"]",
                "unknown drop reason `whatever`",
            ),
            ("latency_p99_ms_max = 250", "latency_p99_ms_max = -1", "latency_p99_ms_max = -1"),
            ("name = \"cell\"", "name = \"edge\"", "duplicate name `edge`"),
            ("name = \"unit\"", "name = \"unit test\"", "name `unit test` invalid"),
        ];
        for (from, to, expected) in cases {
            let text = variant(from, to);
            let (line, column, message) = error_of(&text);
            assert!(message.contains(expected), "{to}: got {message}");
            assert!(line > 1 && column >= 1, "{to}: position {line}:{column} ({message})");
            let first_line_of_change = to.lines().next().expect("non-empty");
            let lines: Vec<&str> = text.lines().collect();
            let changed =
                lines.iter().rposition(|line| line.contains(first_line_of_change)).expect("changed") + 1;
            assert!(line + 12 >= changed && line <= changed + 1, "{to}: line {line}, changed {changed}");
        }
    }

    #[test]
    fn the_fault_schedule_must_make_sense() {
        // Heal without a partition before it (the partition moved after the heal).
        let text = variant("at_secs = 10\naction = \"partition\"", "at_secs = 13\naction = \"partition\"");
        let (line, _, message) = error_of(&text);
        assert!(message.contains("heal of [cell] without a partition"), "{message}");
        assert_eq!(line, line_of(&text, "action = \"heal\""));

        let crash_twice = format!(
            "{VALID}\n[[faults]]\nat_secs = 1\naction = \"crash\"\npod = \"broker\"\n\n[[faults]]\nat_secs = 2\naction = \"crash\"\npod = \"broker\"\n"
        );
        assert!(error_of(&crash_twice).2.contains("already crashed"));
        let restart_running =
            format!("{VALID}\n[[faults]]\nat_secs = 1\naction = \"restart\"\npod = \"broker\"\n");
        assert!(error_of(&restart_running).2.contains("which is not crashed"));
        let missing_pod = format!("{VALID}\n[[faults]]\nat_secs = 1\naction = \"crash\"\n");
        assert!(error_of(&missing_pod).2.contains("action = \"crash\" needs `pod`"));
        let wrong_key = format!(
            "{VALID}\n[[faults]]\nat_secs = 1\naction = \"crash\"\npod = \"broker\"\nfrom = \"edge\"\n"
        );
        let (line, _, message) = error_of(&wrong_key);
        assert!(message.contains("`from` does not apply to action = \"crash\""), "{message}");
        assert_eq!(line, wrong_key.lines().count());
        let oneway_self = format!(
            "{VALID}\n[[faults]]\nat_secs = 1\naction = \"partition_oneway\"\nfrom = \"edge\"\nto = \"edge\"\n"
        );
        assert!(error_of(&oneway_self).2.contains("two different hosts"));
        let heal_all = format!(
            "{VALID}\n[[faults]]\nat_secs = 1\naction = \"partition_oneway\"\nfrom = \"edge\"\nto = \"cell\"\n\n[[faults]]\nat_secs = 2\naction = \"heal\"\n"
        );
        let scenario = parse(&heal_all).expect("a bare heal heals one-way partitions too");
        assert!(matches!(&scenario.faults[1].action, FaultAction::Heal { hosts } if hosts.is_empty()));
    }

    #[test]
    fn the_content_hash_is_stable_and_sensitive() {
        let first = parse(VALID).expect("valid").scenario_hash();
        assert_eq!(first, parse(VALID).expect("valid").scenario_hash());
        assert_eq!(first.len(), 16);
        // Comments and layout do not change the content.
        let reformatted = format!("# a comment\n{}", VALID.replace("count = 10", "count    = 10 # devices"));
        assert_eq!(first, parse(&reformatted).expect("valid").scenario_hash());
        let changed = parse(&variant("count = 10", "count = 11")).expect("valid").scenario_hash();
        assert_ne!(first, changed);
        // FNV-1a test vectors pin the algorithm across platforms.
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    proptest::proptest! {
        #[test]
        fn mutated_files_never_panic_and_errors_point_inside_the_file(
            edits in proptest::collection::vec((0_usize..4_000, proptest::char::any(), 0_u8..3), 1..6),
        ) {
            let mut text: Vec<char> = crate::catalog::entry("device-partition").expect("entry").text.chars().collect();
            for (position, replacement, kind) in edits {
                let position = position % (text.len() + 1);
                match kind {
                    0 => text.insert(position, replacement),
                    1 if position < text.len() => { text.remove(position); }
                    _ if position < text.len() => text[position] = replacement,
                    _ => {}
                }
            }
            let text: String = text.into_iter().collect();
            if let Err(error) = Scenario::from_toml_str(&text, "mutated.toml") {
                let (line, column) = error.position();
                proptest::prop_assert!(line >= 1 && line <= text.lines().count() + 1, "{error}");
                proptest::prop_assert!(column >= 1);
                proptest::prop_assert!(error.to_string().starts_with("mutated.toml:"));
            }
        }
    }

    #[test]
    fn line_and_column_count_characters() {
        let map = SourceMap::new("x", "ab\nçd\n");
        assert_eq!(map.line_column(0), (1, 1));
        assert_eq!(map.line_column(3), (2, 1));
        assert_eq!(map.line_column(5), (2, 2));
        assert_eq!(map.line_column(999), (3, 1));
    }
}
