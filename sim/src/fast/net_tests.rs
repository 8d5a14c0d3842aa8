//! Tests of the network model driven directly with bytes: ordering, partitions, timeouts,
//! crashes, bounds and determinism.
//!
//! This module owns only test code; it must never be compiled into the library.

use std::time::Duration;

use bytes::Bytes;
use edgeproof_system::time::Time;

use super::net::*;
use super::queue::EventQueue;
use super::trace::{Trace, TraceKind};

const CLIENT_HOST: HostId = HostId(0);
const SERVER_HOST: HostId = HostId(1);

struct Harness {
    net: Network,
    queue: EventQueue<NetEvent>,
    trace: Trace,
    outputs: Vec<(Time, NetOutput)>,
    listener: ListenerId,
}

impl Harness {
    fn new(seed: u64, config: NetConfig) -> Harness {
        let mut net = Network::new(config, 2, seed);
        let listener = net.add_listener(SERVER_HOST);
        Harness { net, queue: EventQueue::new(1 << 20), trace: Trace::new(0), outputs: Vec::new(), listener }
    }

    fn now(&self) -> Time {
        self.queue.now()
    }

    fn run_until(&mut self, deadline: Time) {
        while let Some((at, event)) = self.queue.pop_until(deadline) {
            self.net.handle(at, event, &mut self.queue);
            while let Some(output) = self.net.poll_output() {
                let (kind, id, bytes) = match &output {
                    NetOutput::Accepted { conn, .. } => (TraceKind::Accepted, conn.as_u64(), 0),
                    NetOutput::Connected { conn, .. } => (TraceKind::Connected, conn.as_u64(), 0),
                    NetOutput::ConnectFailed { conn, .. } => (TraceKind::ConnectFailed, conn.as_u64(), 0),
                    NetOutput::Data { conn, bytes, .. } => {
                        (TraceKind::SegmentDelivered, conn.as_u64(), bytes.len() as u64)
                    }
                    NetOutput::Closed { conn, .. } => (TraceKind::ConnectionClosed, conn.as_u64(), 0),
                };
                self.trace.record(at, kind, id, 0, bytes);
                self.outputs.push((at, output));
            }
        }
        self.queue.advance_to(deadline);
    }

    fn run_for(&mut self, duration: Duration) {
        let deadline = self.now() + duration;
        self.run_until(deadline);
    }

    /// Connects and runs until established; returns the connection.
    fn establish(&mut self) -> ConnId {
        let now = self.now();
        let conn = self.net.connect(now, CLIENT_HOST, 7, self.listener, &mut self.queue);
        self.run_for(Duration::from_secs(1));
        assert!(
            self.outputs.iter().any(|(_, o)| *o == NetOutput::Accepted { conn, listener: self.listener })
        );
        assert!(self.outputs.iter().any(|(_, o)| *o == NetOutput::Connected { conn, token: 7 }));
        self.outputs.clear();
        conn
    }

    fn send(&mut self, conn: ConnId, side: Side, payload: &[u8]) -> Result<(), SendError> {
        let now = self.now();
        self.net.send(now, conn, side, Bytes::copy_from_slice(payload), &mut self.queue)
    }

    fn received(&self, to: Endpoint) -> Vec<u8> {
        let mut all = Vec::new();
        for (_, output) in &self.outputs {
            if let NetOutput::Data { to: receiver, bytes, .. } = output
                && *receiver == to
            {
                all.extend_from_slice(bytes);
            }
        }
        all
    }

    fn closes(&self) -> Vec<(Time, Endpoint, CloseCause)> {
        self.outputs
            .iter()
            .filter_map(|(at, output)| match output {
                NetOutput::Closed { end, cause, .. } => Some((*at, *end, *cause)),
                _ => None,
            })
            .collect()
    }
}

fn client() -> Endpoint {
    Endpoint::Client { token: 7 }
}

fn server() -> Endpoint {
    Endpoint::Server { listener: ListenerId(0) }
}

fn jittery_lossy_config() -> NetConfig {
    NetConfig {
        default_link: LinkConfig {
            latency_min: Duration::from_millis(1),
            latency_max: Duration::from_millis(50),
            loss_probability: 0.2,
        },
        ..NetConfig::default()
    }
}

#[test]
fn bytes_arrive_in_order_exactly_once_under_random_latency_and_loss() {
    let mut harness = Harness::new(11, jittery_lossy_config());
    let conn = harness.establish();
    let mut expected = Vec::new();
    for index in 0..500u16 {
        let payload = index.to_be_bytes();
        expected.extend_from_slice(&payload);
        harness.send(conn, Side::Client, &payload).unwrap();
        harness.run_for(Duration::from_micros(700));
    }
    harness.run_for(Duration::from_secs(120));
    assert_eq!(harness.received(server()), expected);
    assert!(harness.net.stats().retransmissions > 0, "the loss model never fired");
    assert!(harness.closes().is_empty());
    // Delivery times are non-decreasing per direction by construction; check them too.
    let times: Vec<Time> = harness.outputs.iter().map(|(at, _)| *at).collect();
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]));
}

#[test]
fn one_way_partition_blocks_only_its_direction_and_heal_delivers_held_bytes() {
    let mut harness = Harness::new(3, NetConfig::default());
    let conn = harness.establish();
    let now = harness.now();
    harness.net.block_one_way(now, CLIENT_HOST, SERVER_HOST, &mut harness.queue);
    harness.send(conn, Side::Client, b"up").unwrap();
    harness.send(conn, Side::Server, b"down").unwrap();
    harness.run_for(Duration::from_secs(5));
    assert_eq!(harness.received(client()), b"down");
    assert!(harness.received(server()).is_empty(), "a blocked direction delivered bytes");
    harness.send(conn, Side::Client, b"-more").unwrap();
    let now = harness.now();
    harness.net.heal(now, CLIENT_HOST, SERVER_HOST, &mut harness.queue);
    harness.run_for(Duration::from_secs(5));
    assert_eq!(harness.received(server()), b"up-more");
    assert!(harness.closes().is_empty(), "a short partition must not fail the connection");
}

#[test]
fn symmetric_partition_shorter_than_the_timeout_holds_and_then_delivers_both_ways() {
    let mut harness = Harness::new(5, jittery_lossy_config());
    let conn = harness.establish();
    let now = harness.now();
    harness.net.partition(now, CLIENT_HOST, SERVER_HOST, &mut harness.queue);
    for round in 0..10u8 {
        harness.send(conn, Side::Client, &[round]).unwrap();
        harness.send(conn, Side::Server, &[100 + round]).unwrap();
        harness.run_for(Duration::from_secs(1));
    }
    assert!(harness.received(server()).is_empty() && harness.received(client()).is_empty());
    let now = harness.now();
    harness.net.heal(now, CLIENT_HOST, SERVER_HOST, &mut harness.queue);
    harness.run_for(Duration::from_secs(60));
    assert_eq!(harness.received(server()), (0..10).collect::<Vec<u8>>());
    assert_eq!(harness.received(client()), (100..110).collect::<Vec<u8>>());
    assert!(harness.closes().is_empty());
}

#[test]
fn long_partition_fails_the_sender_at_its_timeout_and_the_peer_only_when_it_sends() {
    let mut harness = Harness::new(9, NetConfig::default());
    let conn = harness.establish();
    let partition_at = harness.now();
    harness.net.partition(partition_at, CLIENT_HOST, SERVER_HOST, &mut harness.queue);
    harness.send(conn, Side::Client, b"lost-cause").unwrap();
    harness.run_for(Duration::from_secs(29));
    assert!(harness.closes().is_empty(), "failed before the connection timeout");
    harness.run_for(Duration::from_secs(2));
    let closes = harness.closes();
    assert_eq!(closes.len(), 1);
    assert_eq!((closes[0].1, closes[0].2), (client(), CloseCause::TimedOut));
    assert_eq!(closes[0].0, partition_at + Duration::from_secs(30));
    assert_eq!(harness.send(conn, Side::Client, b"x"), Err(SendError::Closed));
    // The server has not noticed; after the heal its next send draws an RST.
    let now = harness.now();
    harness.net.heal(now, CLIENT_HOST, SERVER_HOST, &mut harness.queue);
    harness.run_for(Duration::from_secs(10));
    assert_eq!(harness.closes().len(), 1, "the server learned without sending");
    assert!(harness.received(server()).is_empty(), "the timed-out data was delivered");
    harness.send(conn, Side::Server, b"hello?").unwrap();
    harness.run_for(Duration::from_secs(1));
    let closes = harness.closes();
    assert_eq!((closes[1].1, closes[1].2), (server(), CloseCause::Reset));
    assert_eq!(harness.net.connection_count(), 0, "a dead connection kept its slot");
    assert_eq!(harness.net.segments_in_flight(), 0, "a dead connection kept segments");
}

#[test]
fn unacknowledged_data_times_out_under_a_one_way_partition_of_the_ack_path() {
    let mut harness = Harness::new(13, NetConfig::default());
    let conn = harness.establish();
    let now = harness.now();
    harness.net.block_one_way(now, SERVER_HOST, CLIENT_HOST, &mut harness.queue);
    harness.send(conn, Side::Client, b"seen-but-not-acked").unwrap();
    harness.run_for(Duration::from_secs(40));
    assert_eq!(harness.received(server()), b"seen-but-not-acked");
    let closes = harness.closes();
    assert_eq!(closes.len(), 1);
    assert_eq!((closes[0].1, closes[0].2), (client(), CloseCause::TimedOut));
}

#[test]
fn heal_before_the_timeout_clears_an_unacknowledged_stall() {
    let mut harness = Harness::new(13, NetConfig::default());
    let conn = harness.establish();
    let now = harness.now();
    harness.net.block_one_way(now, SERVER_HOST, CLIENT_HOST, &mut harness.queue);
    harness.send(conn, Side::Client, b"acked-later").unwrap();
    harness.run_for(Duration::from_secs(10));
    let now = harness.now();
    harness.net.heal(now, SERVER_HOST, CLIENT_HOST, &mut harness.queue);
    harness.run_for(Duration::from_secs(60));
    assert!(harness.closes().is_empty());
    assert_eq!(harness.received(server()), b"acked-later");
}

#[test]
fn crash_resets_connections_refuses_new_ones_and_restart_accepts_again() {
    let mut harness = Harness::new(21, NetConfig::default());
    let conn = harness.establish();
    harness.send(conn, Side::Server, b"last-words").unwrap();
    let crash_at = harness.now();
    let listener = harness.listener;
    harness.net.reset_listener(crash_at, listener, &mut harness.queue);
    harness.run_for(Duration::from_secs(1));
    assert_eq!(harness.received(client()), b"last-words", "data sent before the crash is on the wire");
    let closes = harness.closes();
    assert_eq!(closes.len(), 1);
    assert_eq!((closes[0].1, closes[0].2), (client(), CloseCause::Reset));
    assert!(closes[0].0 > crash_at && closes[0].0 <= crash_at + Duration::from_millis(2));
    harness.outputs.clear();
    let now = harness.now();
    let refused = harness.net.connect(now, CLIENT_HOST, 7, listener, &mut harness.queue);
    harness.run_for(Duration::from_secs(1));
    assert_eq!(
        harness.outputs,
        vec![(
            harness.outputs[0].0,
            NetOutput::ConnectFailed { conn: refused, token: 7, cause: ConnectFailure::Refused }
        )]
    );
    assert!(harness.outputs[0].0 <= now + Duration::from_millis(4));
    harness.outputs.clear();
    harness.net.set_listener_up(listener, true);
    let fresh = harness.establish();
    assert_ne!(fresh, conn, "connection ids are never reused");
}

#[test]
fn connect_across_a_partition_times_out() {
    let mut harness = Harness::new(4, NetConfig::default());
    let now = harness.now();
    harness.net.partition(now, CLIENT_HOST, SERVER_HOST, &mut harness.queue);
    let listener = harness.listener;
    let conn = harness.net.connect(now, CLIENT_HOST, 7, listener, &mut harness.queue);
    harness.run_for(Duration::from_secs(20));
    assert_eq!(
        harness.outputs,
        vec![(
            now + Duration::from_secs(10),
            NetOutput::ConnectFailed { conn, token: 7, cause: ConnectFailure::TimedOut }
        )]
    );
    assert_eq!(harness.net.stats().connects_timed_out, 1);
}

#[test]
fn graceful_close_delivers_data_then_fin() {
    let mut harness = Harness::new(6, jittery_lossy_config());
    let conn = harness.establish();
    harness.send(conn, Side::Client, b"bye").unwrap();
    let now = harness.now();
    harness.net.close(now, conn, Side::Client, &mut harness.queue);
    harness.run_for(Duration::from_secs(30));
    assert_eq!(harness.received(server()), b"bye");
    assert_eq!(
        harness.closes().iter().map(|c| (c.1, c.2)).collect::<Vec<_>>(),
        vec![(server(), CloseCause::Fin)]
    );
    assert_eq!(harness.net.connection_count(), 0);
    assert_eq!(harness.net.segments_in_flight(), 0);
}

#[test]
fn exceeding_the_flow_limit_aborts_the_connection_and_is_counted() {
    let config = NetConfig { flow_bytes_limit: 10, ..NetConfig::default() };
    let mut harness = Harness::new(8, config);
    let conn = harness.establish();
    harness.send(conn, Side::Client, b"0123456789").unwrap();
    assert_eq!(harness.send(conn, Side::Client, b"!"), Err(SendError::BufferOverflow));
    harness.run_for(Duration::from_secs(1));
    assert_eq!(harness.net.stats().overflow_aborts, 1);
    let closes: Vec<_> = harness.closes().iter().map(|c| (c.1, c.2)).collect();
    assert_eq!(closes, vec![(client(), CloseCause::BufferOverflow), (server(), CloseCause::Reset)]);
}

fn random_workload_trace_hash(seed: u64) -> u64 {
    let mut harness = Harness::new(seed, jittery_lossy_config());
    let first = harness.establish();
    let listener = harness.listener;
    let now = harness.now();
    let second = harness.net.connect(now, CLIENT_HOST, 8, listener, &mut harness.queue);
    harness.run_for(Duration::from_secs(1));
    for step in 0..200u32 {
        harness.send(first, Side::Client, &step.to_le_bytes()).unwrap();
        let _ = harness.send(second, Side::Server, &[step as u8; 3]);
        if step == 50 {
            let now = harness.now();
            harness.net.partition(now, CLIENT_HOST, SERVER_HOST, &mut harness.queue);
        }
        if step == 80 {
            let now = harness.now();
            harness.net.heal_all(now, &mut harness.queue);
        }
        harness.run_for(Duration::from_millis(40));
    }
    harness.run_for(Duration::from_secs(60));
    assert_eq!(harness.received(server()).len(), 800);
    harness.trace.hash()
}

#[test]
fn same_seed_gives_the_same_trace_hash_and_another_seed_a_different_one() {
    let first = random_workload_trace_hash(42);
    assert_eq!(first, random_workload_trace_hash(42));
    assert_ne!(first, random_workload_trace_hash(43));
}

#[test]
fn writes_due_at_the_same_instant_are_read_together_in_order() {
    let config =
        NetConfig { default_link: LinkConfig::fixed(Duration::from_millis(5)), ..NetConfig::default() };
    let mut harness = Harness::new(2, config);
    let conn = harness.establish();
    harness.send(conn, Side::Server, b"one,").unwrap();
    harness.send(conn, Side::Server, b"two,").unwrap();
    harness.send(conn, Side::Server, b"three").unwrap();
    harness.run_for(Duration::from_millis(1));
    harness.send(conn, Side::Server, b"-later").unwrap();
    harness.run_for(Duration::from_secs(1));
    let reads: Vec<&[u8]> = harness
        .outputs
        .iter()
        .filter_map(|(_, output)| match output {
            NetOutput::Data { bytes, .. } => Some(bytes.as_ref()),
            _ => None,
        })
        .collect();
    assert_eq!(reads, vec![&b"one,two,three"[..], &b"-later"[..]]);
    assert_eq!(harness.net.stats().segments_coalesced, 2);
    assert_eq!(harness.net.stats().segments_delivered, 2);
}

/// Randomized model check: many connections, random writes both ways, random partitions (both
/// kinds), heals, link changes and crashes. Whatever happens, what a receiver reads on a
/// connection is a prefix of what the other end wrote (in order, no duplicates, nothing
/// invented); after everything heals, a connection that nobody reported closed delivered all of
/// it; and every slot and segment is eventually freed.
#[test]
fn random_faults_never_reorder_duplicate_or_invent_bytes() {
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    for seed in 0..64u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut harness = Harness::new(seed, jittery_lossy_config());
        let listener = harness.listener;
        // Written bytes per (connection, sending side); read bytes per (connection, receiving side).
        let mut written: std::collections::BTreeMap<(ConnId, u8), Vec<u8>> = Default::default();
        let mut conns = Vec::new();
        // Connections a crash hit: what their server end had written but not yet delivered may be
        // lost without anyone being told (the writer is dead; the reader learns when it writes).
        let mut crashed: std::collections::BTreeSet<ConnId> = Default::default();
        let mut next_byte = 0u8;
        for step in 0..400 {
            let now = harness.now();
            match rng.random_range(0..20) {
                0..=2 => {
                    conns.push(harness.net.connect(now, CLIENT_HOST, step, listener, &mut harness.queue))
                }
                3 => harness.net.block_one_way(now, CLIENT_HOST, SERVER_HOST, &mut harness.queue),
                4 => harness.net.block_one_way(now, SERVER_HOST, CLIENT_HOST, &mut harness.queue),
                5 | 6 => harness.net.heal_all(now, &mut harness.queue),
                7 if rng.random_bool(0.2) => {
                    crashed.extend(conns.iter().copied());
                    harness.net.reset_listener(now, listener, &mut harness.queue);
                    harness.net.set_listener_up(listener, true);
                }
                8 => {
                    let latency = Duration::from_millis(rng.random_range(1..200));
                    harness.net.set_link(CLIENT_HOST, SERVER_HOST, LinkConfig::fixed(latency));
                }
                _ if !conns.is_empty() => {
                    let conn = conns[rng.random_range(0..conns.len())];
                    let side = if rng.random_bool(0.5) { Side::Client } else { Side::Server };
                    let payload: Vec<u8> = (0..rng.random_range(1..6))
                        .map(|_| {
                            next_byte = next_byte.wrapping_add(1);
                            next_byte
                        })
                        .collect();
                    if harness.send(conn, side, &payload).is_ok() {
                        written.entry((conn, side.flow_index())).or_default().extend_from_slice(&payload);
                    }
                }
                _ => {}
            }
            harness.run_for(Duration::from_millis(rng.random_range(0..3_000)));
        }
        let now = harness.now();
        harness.net.heal_all(now, &mut harness.queue);
        harness.run_for(Duration::from_secs(600));

        let mut read: std::collections::BTreeMap<(ConnId, u8), Vec<u8>> = Default::default();
        let mut closed = std::collections::BTreeSet::new();
        for (_, output) in &harness.outputs {
            match output {
                NetOutput::Data { conn, to, bytes } => {
                    let sender = if matches!(to, Endpoint::Server { .. }) { 0 } else { 1 };
                    read.entry((*conn, sender)).or_default().extend_from_slice(bytes);
                }
                NetOutput::Closed { conn, .. } | NetOutput::ConnectFailed { conn, .. } => {
                    closed.insert(*conn);
                }
                _ => {}
            }
        }
        for (key, bytes) in &read {
            let sent = written.get(key).map_or(&[][..], Vec::as_slice);
            assert!(
                sent.starts_with(bytes),
                "seed {seed}: {key:?} read bytes that are not a prefix of the writes"
            );
        }
        for (key, sent) in &written {
            let excused = key.1 == Side::Server.flow_index() && crashed.contains(&key.0);
            if !closed.contains(&key.0) && !excused {
                assert_eq!(
                    read.get(key).map(Vec::as_slice),
                    Some(sent.as_slice()),
                    "seed {seed}: {key:?} lost bytes"
                );
            }
        }
        for conn in conns {
            harness.net.close(harness.now(), conn, Side::Client, &mut harness.queue);
            harness.net.close(harness.now(), conn, Side::Server, &mut harness.queue);
        }
        harness.run_for(Duration::from_secs(600));
        assert_eq!(harness.net.connection_count(), 0, "seed {seed}: slots leaked");
        assert_eq!(harness.net.segments_in_flight(), 0, "seed {seed}: segments leaked");
    }
}
