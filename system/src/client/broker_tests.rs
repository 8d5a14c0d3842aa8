//! End-to-end tests of real client cores against the real sans-IO broker core, wired by a tiny
//! deterministic in-memory network that can cut connections.
//!
//! This module owns that wiring and the end-to-end properties: what a publisher saw acknowledged
//! reaches the subscriber (QoS 1 at least once, QoS 2 exactly once), across connection cuts,
//! reconnects with present sessions and retransmissions. It must never reach into either core:
//! both are driven only through their public sans-IO APIs, as the shells and simulators do.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::broker::{Broker, BrokerConfig, ConnectionId, Transmit};
use crate::mqtt::packet::SubscriptionOptions;

const PUBLISHER: usize = 0;
const SUBSCRIBER: usize = 1;

/// Bytes on their way over one client's connection, in both directions. A cut loses them.
#[derive(Default)]
struct Link {
    to_broker: VecDeque<Bytes>,
    to_client: VecDeque<Bytes>,
}

/// Clients, the broker and the links between them. Bytes wait on their link until delivered, so
/// a cut can land in the middle of any exchange; only `advance` moves time.
struct World {
    now: Time,
    broker: Broker,
    clients: Vec<Client>,
    connection_of: Vec<Option<ConnectionId>>,
    client_of: BTreeMap<ConnectionId, usize>,
    links: Vec<Link>,
    next_connection: u64,
    /// Application events per client (transport events are handled by the world).
    app_events: Vec<Vec<ClientEvent>>,
    /// QoS 1/2 deliveries the subscriber's application has acknowledged (manual acks).
    subscriber_acked: usize,
}

impl World {
    fn new(protocol: ProtocolVersion, seed: u64) -> World {
        World::with_manual_acks(protocol, seed, false)
    }

    /// `manual_acks` applies to the subscriber, which then acknowledges only through `ack_next`.
    fn with_manual_acks(protocol: ProtocolVersion, seed: u64, manual_acks: bool) -> World {
        let config = |client_id: &str| ClientConfig {
            client_id: client_id.into(),
            protocol,
            clean_start: false,
            session_expiry_interval_secs: 3_600,
            keep_alive_secs: 10,
            inflight_limit: 4,
            pending_publishes_limit: 1_000,
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(3),
            ..ClientConfig::default()
        };
        let subscriber = ClientConfig { manual_acks, ..config("subscriber") };
        let clients = vec![Client::new(config("publisher"), seed), Client::new(subscriber, seed + 1)];
        let mut world = World {
            now: Time::from_secs(1),
            broker: Broker::new(BrokerConfig::default()),
            connection_of: vec![None; clients.len()],
            links: (0..clients.len()).map(|_| Link::default()).collect(),
            app_events: vec![Vec::new(); clients.len()],
            clients,
            client_of: BTreeMap::new(),
            next_connection: 1,
            subscriber_acked: 0,
        };
        for client in &mut world.clients {
            client.connect(world.now);
        }
        world.settle();
        world
    }

    /// Collects what the cores want to send onto the links and acts on transport events,
    /// delivering nothing.
    fn collect(&mut self) {
        loop {
            let mut progressed = false;
            for index in 0..self.clients.len() {
                // Transmits first, then events: a DISCONNECT precedes its CloseTransport.
                while let Some(bytes) = self.clients[index].poll_transmit() {
                    progressed = true;
                    if self.connection_of[index].is_some() {
                        self.links[index].to_broker.push_back(bytes);
                    }
                }
                while let Some(event) = self.clients[index].poll_event() {
                    progressed = true;
                    match event {
                        ClientEvent::OpenTransport => {
                            let connection = ConnectionId(self.next_connection);
                            self.next_connection += 1;
                            self.connection_of[index] = Some(connection);
                            self.client_of.insert(connection, index);
                            self.links[index] = Link::default();
                            self.broker.handle_connection_opened(self.now, connection);
                            self.clients[index].handle_transport_connected(self.now);
                        }
                        ClientEvent::CloseTransport => {
                            // A graceful close: what was written arrives, then the transport ends.
                            if let Some(connection) = self.connection_of[index].take() {
                                self.client_of.remove(&connection);
                                for bytes in std::mem::take(&mut self.links[index].to_broker) {
                                    self.broker.handle_bytes(self.now, connection, &bytes);
                                }
                                self.links[index] = Link::default();
                                self.broker.handle_connection_lost(self.now, connection);
                            }
                        }
                        other => self.app_events[index].push(other),
                    }
                }
            }
            while let Some(transmit) = self.broker.poll_transmit() {
                progressed = true;
                match transmit {
                    Transmit::Send { connection, bytes } => {
                        if let Some(&index) = self.client_of.get(&connection) {
                            self.links[index].to_client.push_back(bytes);
                        }
                    }
                    Transmit::Close { connection } => {
                        // The broker flushes before closing: queued bytes still arrive.
                        if let Some(index) = self.client_of.remove(&connection) {
                            self.connection_of[index] = None;
                            for bytes in std::mem::take(&mut self.links[index].to_client) {
                                self.clients[index].handle_bytes(self.now, &bytes);
                            }
                            self.links[index] = Link::default();
                            self.clients[index].handle_transport_lost(self.now);
                        }
                    }
                }
            }
            while self.broker.poll_event().is_some() {}
            if !progressed {
                return;
            }
        }
    }

    /// Delivers up to `chunks` writes in one direction of a client's link.
    fn deliver(&mut self, index: usize, to_broker: bool, chunks: usize) {
        for _ in 0..chunks {
            let Some(connection) = self.connection_of[index] else {
                return;
            };
            let link = &mut self.links[index];
            let next = if to_broker { link.to_broker.pop_front() } else { link.to_client.pop_front() };
            let Some(bytes) = next else {
                return;
            };
            if to_broker {
                self.broker.handle_bytes(self.now, connection, &bytes);
            } else {
                self.clients[index].handle_bytes(self.now, &bytes);
            }
            self.collect();
        }
    }

    /// Delivers everything, including what deliveries cause, until the network is quiet.
    fn settle(&mut self) {
        self.collect();
        loop {
            let busy: Vec<usize> = (0..self.links.len())
                .filter(|&index| {
                    !self.links[index].to_broker.is_empty() || !self.links[index].to_client.is_empty()
                })
                .collect();
            if busy.is_empty() {
                return;
            }
            for index in busy {
                self.deliver(index, true, usize::MAX);
                self.deliver(index, false, usize::MAX);
            }
        }
    }

    /// The network drops a client's connection: bytes on the link are lost, both ends notice.
    fn cut(&mut self, index: usize) {
        if let Some(connection) = self.connection_of[index].take() {
            self.client_of.remove(&connection);
            self.links[index] = Link::default();
            self.broker.handle_connection_lost(self.now, connection);
            self.clients[index].handle_transport_lost(self.now);
            self.collect();
        }
    }

    fn next_deadline(&self) -> Option<Time> {
        self.clients.iter().filter_map(Client::poll_timeout).chain(self.broker.poll_timeout()).min()
    }

    /// Lets time pass; the network is fast compared to timers, so it settles at every tick.
    fn advance(&mut self, duration: Duration) {
        let target = self.now + duration;
        self.settle();
        while let Some(deadline) = self.next_deadline() {
            if deadline > target {
                break;
            }
            self.now = self.now.max(deadline);
            self.broker.handle_timeout(self.now);
            for client in &mut self.clients {
                client.handle_timeout(self.now);
            }
            self.settle();
        }
        self.now = target;
    }

    fn publish(&mut self, sequence: u64, qos: QoS) -> PublishToken {
        let payload = Bytes::copy_from_slice(&sequence.to_be_bytes());
        let token = self.clients[PUBLISHER]
            .publish(self.now, OutgoingPublish::new("plant/line/1", payload, qos))
            .expect("the queue is large enough");
        self.collect();
        token
    }

    fn subscribe(&mut self) {
        let subscription = Subscription {
            topic_filter: "plant/#".into(),
            options: SubscriptionOptions::with_qos(QoS::ExactlyOnce),
        };
        self.clients[SUBSCRIBER].subscribe(self.now, vec![subscription]).expect("request accepted");
        self.settle();
        let subscribed = self.app_events[SUBSCRIBER]
            .iter()
            .any(|event| matches!(event, ClientEvent::Subscribed { reason_codes, .. } if reason_codes == &[ReasonCode::GRANTED_QOS_2]));
        assert!(subscribed, "{:?}", self.app_events[SUBSCRIBER]);
    }

    /// Sequence numbers the subscriber received, with how often.
    fn deliveries(&self) -> BTreeMap<u64, usize> {
        let mut deliveries = BTreeMap::new();
        for event in &self.app_events[SUBSCRIBER] {
            if let ClientEvent::Message(publish) = event {
                let sequence = u64::from_be_bytes(publish.payload[..].try_into().expect("8-byte payload"));
                *deliveries.entry(sequence).or_insert(0) += 1;
            }
        }
        deliveries
    }

    /// The subscriber's application acknowledges up to `count` delivered messages, oldest first
    /// (manual acks); acks the client refuses (the session lost the message) are dropped.
    fn ack_next(&mut self, count: usize) {
        let delivered: Vec<PacketId> = self.app_events[SUBSCRIBER]
            .iter()
            .filter_map(|event| match event {
                ClientEvent::Message(publish) => publish.packet_id,
                _ => None,
            })
            .collect();
        let start = self.subscriber_acked.min(delivered.len());
        for packet_id in delivered[start..].iter().take(count) {
            let _ = self.clients[SUBSCRIBER].ack(self.now, *packet_id);
            self.subscriber_acked += 1;
        }
        self.collect();
    }

    fn acked_tokens(&self) -> Vec<PublishToken> {
        self.app_events[PUBLISHER]
            .iter()
            .filter_map(|event| match event {
                ClientEvent::PublishAcked { token, .. } => Some(*token),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn qos1_and_qos2_flow_from_publisher_to_subscriber_through_the_broker() {
    for protocol in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let mut world = World::new(protocol, 3);
        assert!(world.clients.iter().all(Client::is_connected));
        world.subscribe();
        let tokens: Vec<PublishToken> = (0..10)
            .map(|sequence| {
                world.publish(sequence, if sequence % 2 == 0 { QoS::AtLeastOnce } else { QoS::ExactlyOnce })
            })
            .collect();
        world.settle();
        // QoS 2 completes one round trip after QoS 1, so only the set of acks is fixed.
        let mut acked = world.acked_tokens();
        acked.sort();
        assert_eq!(acked, tokens, "{protocol:?}");
        let expected: BTreeMap<u64, usize> = (0..10).map(|sequence| (sequence, 1)).collect();
        assert_eq!(world.deliveries(), expected, "{protocol:?}");
        // Keep-alive keeps both connections up through a long idle period.
        world.advance(Duration::from_secs(120));
        assert!(world.clients.iter().all(Client::is_connected), "{protocol:?}");
        assert_eq!(world.clients[PUBLISHER].stats().keepalive_timeouts, 0);
        assert!(world.clients[PUBLISHER].stats().pings_sent >= 10);
    }
}

#[test]
fn a_cut_mid_flight_is_repaired_by_retransmission_without_duplicating_qos2() {
    let mut world = World::new(ProtocolVersion::V5, 5);
    world.subscribe();
    // Publish while the publisher's link is down: the messages wait, then flow on reconnect.
    world.cut(PUBLISHER);
    let tokens: Vec<PublishToken> =
        (0..6).map(|sequence| world.publish(sequence, QoS::ExactlyOnce)).collect();
    assert_eq!(world.clients[PUBLISHER].pending_len(), 6);
    world.advance(Duration::from_secs(3));
    assert!(world.clients[PUBLISHER].is_connected());
    // The publisher's messages reach the broker; half of the broker's deliveries get through,
    // then the subscriber's link drops mid-flight.
    world.deliver(PUBLISHER, true, usize::MAX);
    world.deliver(SUBSCRIBER, false, 3);
    world.deliver(SUBSCRIBER, true, 1);
    world.cut(SUBSCRIBER);
    world.advance(Duration::from_secs(10));
    assert_eq!(world.acked_tokens(), tokens);
    let expected: BTreeMap<u64, usize> = (0..6).map(|sequence| (sequence, 1)).collect();
    assert_eq!(world.deliveries(), expected);
    assert!(world.clients[SUBSCRIBER].stats().reconnects >= 1);
}

/// One step of a random end-to-end run.
#[derive(Clone, Debug)]
enum Step {
    Publish {
        qos: QoS,
    },
    Cut {
        client: usize,
    },
    /// Deliver a few writes in one direction of a client's link.
    Deliver {
        client: usize,
        to_broker: bool,
        chunks: usize,
    },
    Advance {
        millis: u64,
    },
    /// The subscriber's application acknowledges its oldest deliveries (manual acks only).
    SubscriberAcks {
        count: usize,
    },
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)]
            .prop_map(|qos| Step::Publish { qos }),
        2 => (0usize..2).prop_map(|client| Step::Cut { client }),
        8 => (0usize..2, any::<bool>(), 1usize..4)
            .prop_map(|(client, to_broker, chunks)| Step::Deliver { client, to_broker, chunks }),
        3 => (1usize..4).prop_map(|count| Step::SubscriberAcks { count }),
        3 => (0u64..5_000).prop_map(|millis| Step::Advance { millis }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Jepsen-style queue check of one publisher and one subscriber through the broker with
    /// random connection cuts: nothing acknowledged is lost, QoS 2 is never duplicated, nothing
    /// is delivered that was not sent, and every QoS 1/2 publish is eventually acknowledged.
    #[test]
    fn acknowledged_messages_survive_random_cuts(
        steps in proptest::collection::vec(step_strategy(), 1..60),
        protocol in prop_oneof![Just(ProtocolVersion::V311), Just(ProtocolVersion::V5)],
        seed in any::<u64>(),
        manual_acks in any::<bool>(),
    ) {
        let mut world = World::with_manual_acks(protocol, seed, manual_acks);
        world.subscribe();
        let mut sent: BTreeMap<u64, (PublishToken, QoS)> = BTreeMap::new();
        for step in steps {
            match step {
                Step::Publish { qos } => {
                    let sequence = sent.len() as u64;
                    let token = world.publish(sequence, qos);
                    sent.insert(sequence, (token, qos));
                }
                Step::Cut { client } => world.cut(client),
                Step::Deliver { client, to_broker, chunks } => world.deliver(client, to_broker, chunks),
                Step::SubscriberAcks { count } => {
                    if manual_acks {
                        world.ack_next(count);
                    }
                }
                Step::Advance { millis } => world.advance(Duration::from_millis(millis)),
            }
        }
        // Heal: no more cuts; let reconnects, retransmissions and queues drain (the subscriber's
        // application acknowledging whatever arrives).
        for _ in 0..30 {
            world.ack_next(usize::MAX);
            world.advance(Duration::from_secs(2));
        }
        let publisher = &world.clients[PUBLISHER];
        prop_assert_eq!(publisher.pending_len() + publisher.inflight_len(), 0);
        let acked = world.acked_tokens();
        let deliveries = world.deliveries();
        for (sequence, (token, qos)) in &sent {
            let delivered = deliveries.get(sequence).copied().unwrap_or(0);
            match qos {
                QoS::AtMostOnce => prop_assert!(delivered <= 1),
                QoS::AtLeastOnce => {
                    prop_assert!(acked.contains(token), "QoS 1 #{} never acked", sequence);
                    prop_assert!(delivered >= 1, "QoS 1 #{} acked but lost", sequence);
                }
                QoS::ExactlyOnce => {
                    prop_assert!(acked.contains(token), "QoS 2 #{} never acked", sequence);
                    prop_assert_eq!(delivered, 1, "QoS 2 #{} delivered {} times", sequence, delivered);
                }
            }
        }
        prop_assert!(deliveries.keys().all(|sequence| sent.contains_key(sequence)), "unexpected delivery");
    }
}

#[test]
fn a_subscriber_cut_before_its_pubrec_arrives_suppresses_the_broker_retransmission() {
    let mut world = World::new(ProtocolVersion::V5, 9);
    world.subscribe();
    world.publish(0, QoS::ExactlyOnce);
    // The publisher's side completes; the broker's PUBLISH reaches the subscriber, whose PUBREC
    // is lost with the connection.
    world.deliver(PUBLISHER, true, usize::MAX);
    world.deliver(SUBSCRIBER, false, 1);
    assert_eq!(world.deliveries().get(&0), Some(&1));
    world.cut(SUBSCRIBER);
    world.advance(Duration::from_secs(5));
    assert_eq!(world.clients[SUBSCRIBER].stats().duplicates_suppressed, 1);
    assert_eq!(world.deliveries().get(&0), Some(&1));
}
