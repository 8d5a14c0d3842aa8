//! The device workload model: which devices exist (global publisher ids, client ids, topics) and
//! when each one plans to publish, open loop, from (scenario, seed) alone.
//!
//! Plans never depend on how the system under test behaves: a device that cannot publish still
//! has its planned send times, so latency is measured from them and a stall shows up as latency
//! instead of vanishing (no coordinated omission). Randomness is a stateless hash of (seed, fleet,
//! device, draw), so any device's plan can be computed on its own in O(1) memory and in any order;
//! this module must never hold a global rng or per-device heap state.

use std::time::Duration;

use edgeproof_system::Time;
use edgeproof_system::mqtt::QoS;

use crate::spec::{Arrival, FleetSpec, Scenario};

/// Substitutes `{fleet}` and `{index}` in a client id pattern.
pub fn expand_client_id(pattern: &str, fleet: &str, index: u32) -> String {
    expand(pattern, fleet, index, "")
}

/// Substitutes `{fleet}`, `{index}` and `{client_id}` in a topic pattern.
pub fn expand_topic(pattern: &str, fleet: &str, index: u32, client_id: &str) -> String {
    expand(pattern, fleet, index, client_id)
}

fn expand(pattern: &str, fleet: &str, index: u32, client_id: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else { break };
        match &rest[open + 1..open + close] {
            "fleet" => out.push_str(fleet),
            "index" => out.push_str(&index.to_string()),
            "client_id" => out.push_str(client_id),
            // Validation rejects unknown placeholders; keep them verbatim if one slips through.
            other => {
                out.push('{');
                out.push_str(other);
                out.push('}');
            }
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// SplitMix64's finalizer: a bijective mixer with full avalanche, the standard way to turn a
/// counter into independent-looking 64-bit values.
const fn mix64(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// A deterministic 64-bit draw for (seed, fleet, device, stream, draw).
fn draw(seed: u64, fleet_index: usize, device_index: u32, stream: u64, counter: u64) -> u64 {
    let mut state = mix64(seed ^ 0x6570_7072_6f6f_6621);
    for word in [fleet_index as u64, u64::from(device_index), stream, counter] {
        state = mix64(state.wrapping_add(0x9e37_79b9_7f4a_7c15) ^ word);
    }
    state
}

/// A draw mapped to a uniform float in [0, 1).
fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1_u64 << 53) as f64)
}

const STREAM_PHASE: u64 = 1;
const STREAM_POISSON: u64 = 2;

/// The devices of a scenario with their global publisher ids, ready to hand out plans.
#[derive(Clone, Debug)]
pub struct Workload {
    seed: u64,
    publish_end: Time,
    fleets: Vec<FleetWorkload>,
}

/// One fleet's shared settings, as every one of its devices sees them.
#[derive(Clone, Debug)]
pub struct FleetWorkload {
    /// Position of the fleet in the scenario.
    pub fleet_index: usize,
    /// Fleet name.
    pub name: String,
    /// Publisher id of device 0; the fleet owns `first_publisher_id .. first_publisher_id + count`.
    pub first_publisher_id: u64,
    /// Number of devices.
    pub count: u32,
    /// Mean publish interval.
    pub interval: Duration,
    /// Periodic or Poisson.
    pub arrival: Arrival,
    /// QoS of every publish.
    pub qos: QoS,
    /// Payload size in bytes (stamp included).
    pub payload_bytes: usize,
    /// Devices connecting per second, in index order; `None` = all at time zero.
    pub connect_rate_per_sec: Option<f64>,
    client_id_pattern: String,
    topic_pattern: String,
}

impl Workload {
    /// The workload of `scenario` under `seed`. Publisher ids are dense from 0, fleets in file
    /// order, devices in index order.
    pub fn new(scenario: &Scenario, seed: u64) -> Workload {
        let mut next_id = 0_u64;
        let fleets: Vec<FleetWorkload> = scenario
            .fleets
            .iter()
            .enumerate()
            .map(|(fleet_index, fleet)| {
                let workload = FleetWorkload::new(fleet_index, fleet, next_id);
                next_id += u64::from(fleet.count);
                workload
            })
            .collect();
        assert_eq!(next_id, scenario.device_count());
        Workload { seed, publish_end: scenario.publish_end(), fleets }
    }

    /// The seed the plans derive from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The fleets in scenario order.
    pub fn fleets(&self) -> &[FleetWorkload] {
        &self.fleets
    }

    /// Number of devices (publisher ids are `0 .. publisher_count()`).
    pub fn publisher_count(&self) -> u64 {
        self.fleets.last().map_or(0, |fleet| fleet.first_publisher_id + u64::from(fleet.count))
    }

    /// The (fleet index, device index) of a publisher id, `None` when out of range.
    pub fn locate(&self, publisher_id: u64) -> Option<(usize, u32)> {
        let position = self.fleets.partition_point(|fleet| fleet.first_publisher_id <= publisher_id);
        let fleet = self.fleets.get(position.checked_sub(1)?)?;
        let offset = publisher_id - fleet.first_publisher_id;
        (offset < u64::from(fleet.count)).then_some((fleet.fleet_index, offset as u32))
    }

    /// The plan of one device. Panics when the device does not exist (a caller bug).
    pub fn device(&self, fleet_index: usize, device_index: u32) -> DevicePlan {
        let fleet = &self.fleets[fleet_index];
        let client_id = fleet.client_id(device_index);
        let topic = expand_topic(&fleet.topic_pattern, &fleet.name, device_index, &client_id);
        let plan = DevicePlan {
            publisher_id: fleet.publisher_id(device_index),
            fleet_index,
            device_index,
            client_id,
            topic,
            connect_at: fleet.connect_at(device_index),
            schedule: self.schedule(fleet_index, device_index),
        };
        assert_eq!(plan.topic, fleet.topic(device_index));
        plan
    }

    /// The publish schedule of one device alone (no strings built): what a simulator keeps per
    /// device. Panics when the device does not exist.
    pub fn schedule(&self, fleet_index: usize, device_index: u32) -> PublishSchedule {
        let fleet = &self.fleets[fleet_index];
        assert!(device_index < fleet.count, "device {device_index} of fleet {} out of range", fleet.name);
        let interval_ns = fleet.interval_ns();
        let phase_ns = draw(self.seed, fleet_index, device_index, STREAM_PHASE, 0) % interval_ns;
        assert!(phase_ns < interval_ns);
        PublishSchedule {
            seed: self.seed,
            fleet_index,
            device_index,
            arrival: fleet.arrival,
            interval_ns,
            phase_ns,
            end: self.publish_end,
            next_seq: 0,
            next_at_ns: 0,
        }
        .started()
    }

    /// The plan of the device with this publisher id; `None` when out of range.
    pub fn device_by_publisher_id(&self, publisher_id: u64) -> Option<DevicePlan> {
        let (fleet_index, device_index) = self.locate(publisher_id)?;
        Some(self.device(fleet_index, device_index))
    }
}

impl FleetWorkload {
    fn new(fleet_index: usize, fleet: &FleetSpec, first_publisher_id: u64) -> FleetWorkload {
        let interval = fleet.publish_interval();
        assert!(!interval.is_zero(), "validation guarantees a positive interval");
        FleetWorkload {
            fleet_index,
            name: fleet.name.clone(),
            first_publisher_id,
            count: fleet.count,
            interval,
            arrival: fleet.arrival,
            qos: fleet.qos,
            payload_bytes: fleet.payload_bytes as usize,
            connect_rate_per_sec: fleet.connect_rate_per_sec,
            client_id_pattern: fleet.client_id.clone(),
            topic_pattern: fleet.topic.clone(),
        }
    }

    /// The publisher id of device `index`.
    pub fn publisher_id(&self, index: u32) -> u64 {
        assert!(index < self.count, "device {index} of fleet {} out of range", self.name);
        self.first_publisher_id + u64::from(index)
    }

    /// The client id of device `index` (built on demand; a simulator need not keep it).
    pub fn client_id(&self, index: u32) -> String {
        assert!(index < self.count, "device {index} of fleet {} out of range", self.name);
        expand_client_id(&self.client_id_pattern, &self.name, index)
    }

    /// The topic of device `index` (built on demand).
    pub fn topic(&self, index: u32) -> String {
        expand_topic(&self.topic_pattern, &self.name, index, &self.client_id(index))
    }

    /// When device `index` opens its first connection (the connect ramp).
    pub fn connect_at(&self, index: u32) -> Time {
        assert!(index < self.count, "device {index} of fleet {} out of range", self.name);
        match self.connect_rate_per_sec {
            Some(rate) => Time::from_nanos((f64::from(index) / rate * 1e9).round() as u64),
            None => Time::ZERO,
        }
    }

    fn interval_ns(&self) -> u64 {
        u64::try_from(self.interval.as_nanos()).expect("interval fits u64 nanoseconds").max(1)
    }
}

/// One device: its identity and its planned publish times.
#[derive(Clone, Debug, PartialEq)]
pub struct DevicePlan {
    /// Global id across fleets, carried in the stamp.
    pub publisher_id: u64,
    /// Its fleet's position in the scenario.
    pub fleet_index: usize,
    /// Its index within the fleet.
    pub device_index: u32,
    /// MQTT client id.
    pub client_id: String,
    /// The topic it publishes to.
    pub topic: String,
    /// When it opens its first connection (the fleet's connect ramp; zero without one).
    pub connect_at: Time,
    /// Its planned publish times, from the first; copy it to iterate.
    pub schedule: PublishSchedule,
}

/// One planned publish: sequence number and the time it should be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedPublish {
    /// Dense per-publisher sequence number from 0.
    pub seq: u64,
    /// Planned send time (latency is measured from here).
    pub at: Time,
}

/// The remaining planned publishes of one device: a small `Copy` value (about 64 bytes) a
/// simulator can keep per device instead of a materialized list. Iterating yields planned
/// publishes in seq order with non-decreasing times, all before the end of the publishing phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishSchedule {
    seed: u64,
    fleet_index: usize,
    device_index: u32,
    arrival: Arrival,
    interval_ns: u64,
    phase_ns: u64,
    end: Time,
    next_seq: u64,
    next_at_ns: u64,
}

impl PublishSchedule {
    /// The next planned publish without consuming it.
    pub fn peek(&self) -> Option<PlannedPublish> {
        let at = Time::from_nanos(self.next_at_ns);
        (at < self.end).then_some(PlannedPublish { seq: self.next_seq, at })
    }

    /// The device's random phase within one interval (the first periodic publish time).
    pub fn phase(&self) -> Duration {
        Duration::from_nanos(self.phase_ns)
    }

    /// For periodic arrivals, the planned time of `seq` in O(1); `None` for Poisson arrivals or
    /// when `seq` falls after the publishing phase.
    pub fn planned_time(&self, seq: u64) -> Option<Time> {
        if self.arrival != Arrival::Periodic {
            return None;
        }
        let at = seq.checked_mul(self.interval_ns)?.checked_add(self.phase_ns)?;
        let at = Time::from_nanos(at);
        (at < self.end).then_some(at)
    }

    /// Number of publishes the full plan holds (O(1) for periodic, walks Poisson plans).
    pub fn total_count(&self) -> u64 {
        let mut from_start = *self;
        from_start.next_seq = 0;
        let from_start = from_start.started();
        match self.arrival {
            Arrival::Periodic => {
                let end = self.end.as_nanos();
                if self.phase_ns >= end { 0 } else { (end - self.phase_ns).div_ceil(self.interval_ns) }
            }
            Arrival::Poisson => from_start.count() as u64,
        }
    }

    fn first_at_ns(&self) -> u64 {
        match self.arrival {
            Arrival::Periodic => self.phase_ns,
            Arrival::Poisson => self.exponential_gap_ns(0),
        }
    }

    /// An exponentially distributed gap with mean `interval`, drawn for arrival number `counter`.
    fn exponential_gap_ns(&self, counter: u64) -> u64 {
        let uniform = unit(draw(self.seed, self.fleet_index, self.device_index, STREAM_POISSON, counter));
        let gap = -(1.0 - uniform).ln() * self.interval_ns as f64;
        assert!(gap >= 0.0 && gap.is_finite());
        // At least one nanosecond so that seq order and time order agree strictly.
        (gap as u64).max(1)
    }

    /// Starts a Poisson schedule at its first arrival (periodic ones start at their phase).
    fn started(mut self) -> PublishSchedule {
        self.next_at_ns = self.first_at_ns();
        self
    }
}

impl Iterator for PublishSchedule {
    type Item = PlannedPublish;

    fn next(&mut self) -> Option<PlannedPublish> {
        let planned = self.peek()?;
        self.next_seq += 1;
        self.next_at_ns = match self.arrival {
            Arrival::Periodic => self.phase_ns.saturating_add(self.next_seq.saturating_mul(self.interval_ns)),
            Arrival::Poisson => self.next_at_ns.saturating_add(self.exponential_gap_ns(self.next_seq)),
        };
        assert!(self.next_at_ns >= planned.at.as_nanos());
        Some(planned)
    }
}

impl DevicePlan {
    /// A fresh copy of the device's schedule, from seq 0.
    pub fn publishes(&self) -> PublishSchedule {
        self.schedule
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(arrival: &str) -> Scenario {
        let text = format!(
            r#"
name = "workload"
duration_secs = 60
[[hosts]]
name = "h"
[[pods]]
name = "b"
host = "h"
kind = "broker"
[[fleets]]
name = "north"
host = "h"
broker = "b"
count = 100
client_id = "n-{{index}}"
topic = "plant/{{fleet}}/{{client_id}}"
qos = 1
publish_interval_ms = 1000
payload_bytes = 64
arrival = "{arrival}"
[[fleets]]
name = "south"
host = "h"
broker = "b"
count = 50
client_id = "s-{{index}}"
topic = "plant/{{fleet}}/{{index}}/x"
qos = 0
rate_per_sec = 4
payload_bytes = 40
connect_rate_per_sec = 10
"#
        );
        Scenario::from_toml_str(&text, "workload.toml").expect("valid")
    }

    #[test]
    fn patterns_expand_every_placeholder() {
        assert_eq!(expand_client_id("dev-{index}", "f", 7), "dev-7");
        assert_eq!(expand_client_id("{fleet}-{index}-{index}", "cell", 3), "cell-3-3");
        assert_eq!(expand_topic("plant/{fleet}/{client_id}/t", "cell", 3, "dev-3"), "plant/cell/dev-3/t");
        assert_eq!(expand_topic("no/placeholders", "cell", 3, "dev-3"), "no/placeholders");
    }

    #[test]
    fn publisher_ids_are_dense_across_fleets_and_locate_inverts_them() {
        let workload = Workload::new(&scenario("periodic"), 1);
        assert_eq!(workload.publisher_count(), 150);
        let south = workload.device(1, 0);
        assert_eq!(south.publisher_id, 100);
        assert_eq!(south.client_id, "s-0");
        assert_eq!(south.topic, "plant/south/0/x");
        let north = workload.device(0, 42);
        assert_eq!((north.publisher_id, north.client_id.as_str()), (42, "n-42"));
        assert_eq!(north.topic, "plant/north/n-42");
        assert_eq!(workload.schedule(0, 42), north.schedule);
        assert_eq!(workload.fleets()[1].client_id(7), "s-7");
        assert_eq!(workload.fleets()[1].publisher_id(7), 107);
        for publisher_id in 0..150 {
            let (fleet, index) = workload.locate(publisher_id).expect("in range");
            assert_eq!(workload.device(fleet, index).publisher_id, publisher_id);
        }
        assert_eq!(workload.locate(150), None);
        assert_eq!(workload.device_by_publisher_id(149).map(|plan| plan.client_id), Some("s-49".to_string()));
        // North connects all at once; south ramps at 10 devices per second.
        assert_eq!(north.connect_at, Time::ZERO);
        assert_eq!(workload.device(1, 25).connect_at, Time::from_millis(2_500));
    }

    #[test]
    fn periodic_plans_are_phase_plus_k_intervals_with_seeded_phases() {
        let scenario = scenario("periodic");
        let workload = Workload::new(&scenario, 7);
        let mut phases = Vec::new();
        for index in 0..100 {
            let plan = workload.device(0, index);
            let phase = plan.schedule.phase();
            assert!(phase < Duration::from_secs(1));
            phases.push(phase);
            let publishes: Vec<PlannedPublish> = plan.publishes().collect();
            assert_eq!(publishes.len(), 60, "one per second for 60 s");
            assert_eq!(plan.publishes().total_count(), 60);
            for (k, publish) in publishes.iter().enumerate() {
                assert_eq!(publish.seq, k as u64);
                assert_eq!(
                    publish.at,
                    Time::from_nanos(phase.as_nanos() as u64) + Duration::from_secs(k as u64)
                );
                assert_eq!(plan.schedule.planned_time(k as u64), Some(publish.at));
            }
            assert_eq!(plan.schedule.planned_time(60), None);
        }
        phases.sort_unstable();
        phases.dedup();
        assert!(phases.len() > 95, "devices do not publish in lock-step");
        // Same (scenario, seed): same plans; another seed: other phases.
        let again = Workload::new(&scenario, 7);
        assert_eq!(again.device(0, 5), workload.device(0, 5));
        let other = Workload::new(&scenario, 8);
        assert_ne!(other.device(0, 5).schedule.phase(), workload.device(0, 5).schedule.phase());
        // Rate-based fleets: 4 per second for 60 s.
        assert_eq!(workload.device(1, 3).publishes().count(), 240);
    }

    #[test]
    fn poisson_plans_are_deterministic_with_the_right_mean() {
        let scenario = scenario("poisson");
        let workload = Workload::new(&scenario, 3);
        let mut total = 0_u64;
        for index in 0..100 {
            let plan = workload.device(0, index);
            let publishes: Vec<PlannedPublish> = plan.publishes().collect();
            assert!(
                publishes.windows(2).all(|pair| pair[0].at < pair[1].at && pair[0].seq + 1 == pair[1].seq)
            );
            assert!(publishes.iter().all(|publish| publish.at < scenario.publish_end()));
            assert_eq!(plan.schedule.planned_time(0), None, "no O(1) lookup for Poisson");
            assert_eq!(
                publishes,
                Workload::new(&scenario, 3).device(0, index).publishes().collect::<Vec<_>>()
            );
            total += publishes.len() as u64;
        }
        // 100 devices x 60 s at a mean of 1/s: 6,000 expected, standard deviation about 77.
        assert!((5_700..=6_300).contains(&total), "{total}");
    }

    #[test]
    fn a_schedule_is_small_enough_to_keep_per_device() {
        assert!(std::mem::size_of::<PublishSchedule>() <= 72, "{}", std::mem::size_of::<PublishSchedule>());
        let workload = Workload::new(&scenario("periodic"), 1);
        let mut schedule = workload.device(0, 0).publishes();
        let first = schedule.peek().expect("one publish at least");
        assert_eq!(schedule.next(), Some(first));
        assert_eq!(schedule.peek().map(|publish| publish.seq), Some(1));
    }
}
