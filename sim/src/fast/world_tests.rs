//! Tests of the world's service wiring that need its internals: disk requests executed against
//! the host's disk with replies delivered as events after its latency, a restart that keeps or
//! loses that disk, and outbound connects by endpoint name (resolved, unresolved, refused).
//!
//! This module owns only test code; it must never be compiled into the library.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use edgeproof_scenarios::catalog;
use edgeproof_system::fs::{DiskOp, FsError};
use edgeproof_system::service::{
    ConnectFailure, ConnectToken, ConnectionId, DiskRequestId, MonotonicNow, Output, Port,
};

use super::*;

type Replies = Rc<RefCell<Vec<(Time, DiskReply)>>>;

/// On start: reads its log, then appends one byte and syncs. Records every reply it receives.
/// It declares the broker's port so it can stand in for a broker pod across restarts.
struct DiskProbe {
    replies: Replies,
    /// Connect outcomes: `Some(failure)` or `None` for a success.
    connects: Rc<RefCell<Vec<Option<ConnectFailure>>>>,
    connect_to: Option<&'static str>,
    declared: bool,
    started: bool,
    next_request: u64,
    outputs: VecDeque<Output>,
    now: MonotonicNow,
}

impl DiskProbe {
    fn request(&mut self, op: DiskOp) {
        self.outputs.push_back(Output::Disk { request: DiskRequestId(self.next_request), op });
        self.next_request += 1;
    }
}

impl Service for DiskProbe {
    fn kind(&self) -> &'static str {
        "disk-probe"
    }
    fn handle_accepted(&mut self, _now: Time, _port: &'static str, connection: ConnectionId) {
        self.outputs.push_back(Output::Close { connection });
    }
    fn handle_connected(&mut self, _now: Time, _token: ConnectToken, connection: ConnectionId) {
        self.connects.borrow_mut().push(None);
        self.outputs.push_back(Output::Close { connection });
    }
    fn handle_connect_failed(&mut self, _now: Time, _token: ConnectToken, failure: ConnectFailure) {
        self.connects.borrow_mut().push(Some(failure));
    }
    fn handle_bytes(&mut self, _now: Time, _connection: ConnectionId, _bytes: &[u8]) {}
    fn handle_closed(&mut self, _now: Time, _connection: ConnectionId) {}
    fn handle_timeout(&mut self, now: Time) {
        self.now.advance(now);
        if !self.started {
            self.started = true;
            self.request(DiskOp::Read { path: "probe/log".into(), offset: 0, len_max: 64 });
            if let Some(endpoint) = self.connect_to {
                let endpoint = endpoint.parse().expect("a valid endpoint name");
                self.outputs.push_back(Output::Connect { token: ConnectToken(1), endpoint });
            }
        }
    }
    fn handle_disk(&mut self, now: Time, request: DiskRequestId, reply: DiskReply) {
        self.now.advance(now);
        self.replies.borrow_mut().push((now, reply));
        if request.0 == 0 {
            self.request(DiskOp::Append { path: "probe/log".into(), data: Bytes::from_static(b"x") });
            self.request(DiskOp::Sync { path: "probe/log".into() });
        }
    }
    fn poll_output(&mut self) -> Option<Output> {
        if !self.declared {
            self.declared = true;
            return Some(Output::Listen { port: Port { name: "mqtt", number: 1883 } });
        }
        self.outputs.pop_front()
    }
    fn poll_event(&mut self) -> Option<ServiceEvent> {
        None
    }
    fn poll_timeout(&self) -> Option<Time> {
        (!self.started).then_some(Time::ZERO)
    }
}

/// A one-device smoke with a second pod on the broker's host whose service is a [`DiskProbe`].
fn world_with_probe() -> (FastWorld, Replies) {
    let (world, replies, _) = world_with_connecting_probe(None);
    (world, replies)
}

type Connects = Rc<RefCell<Vec<Option<ConnectFailure>>>>;

fn world_with_connecting_probe(connect_to: Option<&'static str>) -> (FastWorld, Replies, Connects) {
    let mut scenario = catalog::get("smoke").expect("smoke");
    scenario.fleets[0].count = 1;
    scenario.duration_secs = 5;
    let mut probe = scenario.pods[0].clone();
    probe.name = "probe".to_string();
    scenario.pods.push(probe);
    let mut world = FastWorld::new(&scenario, 1, FastOptions::default()).expect("builds");
    let replies: Replies = Rc::default();
    let shared = replies.clone();
    let connects: Connects = Rc::default();
    let shared_connects = connects.clone();
    world.crash_pod(Time::ZERO, 1);
    world.pods[1].recipe = PodRecipe::Custom(Box::new(move || {
        Box::new(DiskProbe {
            replies: shared.clone(),
            connects: shared_connects.clone(),
            connect_to,
            declared: false,
            started: false,
            next_request: 0,
            outputs: VecDeque::new(),
            now: MonotonicNow::default(),
        })
    }));
    (world, replies, connects)
}

fn replies_only(replies: &Replies) -> Vec<DiskReply> {
    replies.borrow().iter().map(|(_, reply)| reply.clone()).collect()
}

#[test]
fn disk_requests_reach_the_hosts_disk_and_a_restart_keeps_or_loses_it() {
    let (mut world, replies) = world_with_probe();
    let restart_and_run = |world: &mut FastWorld, at_millis: u64, disk: DiskFate| {
        let now = Time::from_millis(at_millis);
        world.run_until(now);
        world.crash_pod(now, 1);
        world.restart_pod(now, 1, disk);
        world.run_until(Time::from_millis(at_millis + 100));
    };
    restart_and_run(&mut world, 10, DiskFate::Kept);
    let not_found = DiskReply::Failed(FsError::NotFound { path: "probe/log".into() });
    assert_eq!(
        replies_only(&replies),
        vec![not_found.clone(), DiskReply::Appended { len: 1 }, DiskReply::Synced]
    );
    // A restart that keeps the disk finds what the previous incarnation wrote.
    replies.borrow_mut().clear();
    restart_and_run(&mut world, 200, DiskFate::Kept);
    let kept = replies_only(&replies);
    assert_eq!(kept[0], DiskReply::Read { data: Bytes::from_static(b"x") });
    assert_eq!(kept[1], DiskReply::Appended { len: 2 });
    // A restart that loses the disk starts empty.
    replies.borrow_mut().clear();
    restart_and_run(&mut world, 400, DiskFate::Lost);
    let lost = replies_only(&replies);
    assert_eq!(lost[0], not_found);
    assert_eq!(lost[1], DiskReply::Appended { len: 1 });
    assert_eq!(world.stats().disk_requests, 9);
}

#[test]
fn a_crash_discards_the_replies_still_in_flight() {
    let (mut world, replies) = world_with_probe();
    let now = Time::from_millis(10);
    world.run_until(now);
    world.restart_pod(now, 1, DiskFate::Kept);
    // The probe's first wake issues its read; the reply is queued for delivery: crash first.
    world.on_pod_wake(now, 1);
    assert_eq!(world.pods[1].disk_replies.len(), 1, "the read's reply waits for its event");
    world.crash_pod(now, 1);
    world.run_until(Time::from_millis(50));
    assert!(
        replies.borrow().is_empty(),
        "a crashed service heard of its old request: {:?}",
        replies.borrow()
    );
}

#[test]
fn replies_come_after_the_disks_latency_one_operation_at_a_time() {
    let (mut world, replies) = world_with_probe();
    let now = Time::from_millis(10);
    world.run_until(now);
    world.restart_pod(now, 1, DiskFate::Kept);
    world.run_until(Time::from_millis(50));
    let times: Vec<Time> = replies.borrow().iter().map(|(at, _)| *at).collect();
    let latency = DiskLatency::default();
    // The read starts at the probe's first wake (now) and takes the base cost.
    assert_eq!(times[0], now + latency.op_base);
    // Append and sync were asked together: the sync waits for the append, then flushes.
    assert!(times[1] > times[0] && times[2] > times[1], "{times:?}");
    assert!(times[2].saturating_duration_since(times[1]) >= latency.sync_base, "{times:?}");
}

#[test]
fn a_pod_connects_to_another_pod_by_name_and_an_unknown_name_fails_as_unresolved() {
    for (endpoint, expected) in [
        ("broker:mqtt", None),
        ("nowhere:mqtt", Some(ConnectFailure::Unresolved)),
        ("broker:amqp", Some(ConnectFailure::Unresolved)),
    ] {
        let (mut world, _, connects) = world_with_connecting_probe(Some(endpoint));
        let now = Time::from_millis(10);
        world.run_until(now);
        world.restart_pod(now, 1, DiskFate::Kept);
        world.run_until(Time::from_millis(100));
        assert_eq!(*connects.borrow(), vec![expected], "{endpoint}");
        assert_eq!(world.stats().connects_unresolved, u64::from(expected.is_some()), "{endpoint}");
    }
}

#[test]
fn a_connect_to_a_crashed_pod_is_refused() {
    let (mut world, _, connects) = world_with_connecting_probe(Some("broker:mqtt"));
    let now = Time::from_millis(10);
    world.run_until(now);
    world.crash_pod(now, 0);
    world.restart_pod(now, 1, DiskFate::Kept);
    world.run_until(Time::from_millis(100));
    assert_eq!(*connects.borrow(), vec![Some(ConnectFailure::Refused)]);
}
