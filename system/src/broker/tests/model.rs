//! Property test: random sequences of well-formed client actions (connect, publish at every QoS,
//! acknowledge, disconnect, lose the transport, let time pass) across a few persistent clients,
//! checking the broker's promises after every step and at the end.
//!
//! This module owns the property and its small reference model; it must never look inside the
//! broker beyond its public API.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::harness::*;
use crate::broker::{BrokerConfig, ConnectionId, DropReason};
use crate::mqtt::{Disconnect, Packet, Properties, ProtocolVersion, PubReply, Publish, QoS, ReasonCode};

const CLIENTS: usize = 3;
const CLIENT_RECEIVE_MAXIMUM: u16 = 3;
const QUEUE_LIMIT: usize = 500;

#[derive(Clone, Debug)]
enum Action {
    Connect(usize),
    /// A second connection with the same client id while the first may still be up.
    Takeover(usize),
    Publish(usize, u8),
    Ack(usize),
    Disconnect(usize),
    Lose(usize),
    Advance(u16),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        2 => (0..CLIENTS).prop_map(Action::Connect),
        1 => (0..CLIENTS).prop_map(Action::Takeover),
        5 => (0..CLIENTS, 0..3u8).prop_map(|(client, qos)| Action::Publish(client, qos)),
        3 => (0..CLIENTS).prop_map(Action::Ack),
        1 => (0..CLIENTS).prop_map(Action::Disconnect),
        1 => (0..CLIENTS).prop_map(Action::Lose),
        1 => (1..120u16).prop_map(Action::Advance),
    ]
}

struct Client {
    name: String,
    version: ProtocolVersion,
    connection: Option<ConnectionId>,
    subscribed: bool,
    /// Deliveries not yet acknowledged by this client (packet ids of QoS 1 PUBLISH).
    unacked: Vec<Packet>,
    received: BTreeSet<u64>,
    /// Messages acknowledged to some publisher after this client's subscription existed.
    owed: BTreeSet<u64>,
    next_packet_id: u16,
}

struct World {
    h: Harness,
    clients: Vec<Client>,
    next_message: u64,
}

impl World {
    fn new() -> World {
        let config = BrokerConfig { subscriber_queue_messages_limit: QUEUE_LIMIT, ..BrokerConfig::default() };
        let clients = (0..CLIENTS)
            .map(|index| Client {
                name: format!("c{index}"),
                version: if index == 0 { ProtocolVersion::V311 } else { ProtocolVersion::V5 },
                connection: None,
                subscribed: false,
                unacked: Vec::new(),
                received: BTreeSet::new(),
                owed: BTreeSet::new(),
                next_packet_id: 1,
            })
            .collect();
        World { h: Harness::new(config), clients, next_message: 1 }
    }

    /// Notices connections the broker closed (keep-alive timeout) and collects deliveries.
    fn sync(&mut self, index: usize) {
        let Some(connection) = self.clients[index].connection else {
            return;
        };
        let packets = self.h.take(connection);
        let client = &mut self.clients[index];
        for packet in packets {
            match &packet {
                Packet::Publish(publish) => {
                    let id = u64::from_be_bytes(publish.payload[..8].try_into().expect("8-byte payloads"));
                    client.received.insert(id);
                    if publish.qos != QoS::AtMostOnce {
                        client.unacked.push(packet);
                    }
                }
                Packet::PubRel(_) => client.unacked.push(packet),
                _ => {}
            }
        }
        if self.h.is_closed(connection) {
            client.connection = None;
            client.unacked.clear();
        }
    }

    fn connect(&mut self, index: usize, takeover: bool) {
        self.sync(index);
        let old_connection = self.clients[index].connection;
        if old_connection.is_some() && !takeover {
            return;
        }
        let client = &self.clients[index];
        let mut connect = connect_packet(&client.name, client.version, false);
        if client.version == ProtocolVersion::V5 {
            connect.properties.session_expiry_interval_secs = Some(100_000);
            connect.properties.receive_maximum = Some(CLIENT_RECEIVE_MAXIMUM);
            // One outbound alias: some topics go aliased, the others in full.
            connect.properties.topic_alias_maximum = Some(1);
        }
        let (connection, connack) = self.h.connect_with(connect);
        assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
        if let Some(old_connection) = old_connection {
            assert!(self.h.is_closed(old_connection), "a takeover closes the old connection");
            self.clients[index].unacked.clear();
        }
        assert_eq!(connack.session_present, self.clients[index].subscribed, "session survives");
        self.clients[index].connection = Some(connection);
        if !self.clients[index].subscribed {
            // Client 2 exercises the outbound QoS 2 flow, the others QoS 1.
            let qos = if index == 2 { QoS::ExactlyOnce } else { QoS::AtLeastOnce };
            self.h.send(connection, &subscribe(1, "t/#", qos));
            let reply = self.h.take(connection);
            assert!(matches!(&reply[..], [Packet::SubAck(_)]), "{reply:?}");
            self.clients[index].subscribed = true;
        }
        self.sync(index);
    }

    fn publish(&mut self, index: usize, qos: u8) {
        self.sync(index);
        let Some(connection) = self.clients[index].connection else {
            return;
        };
        let id = self.next_message;
        self.next_message += 1;
        let qos = QoS::from_u8(qos).expect("0..3");
        let client = &mut self.clients[index];
        let packet_id = (qos != QoS::AtMostOnce).then(|| {
            let packet_id = client.next_packet_id;
            client.next_packet_id = client.next_packet_id % 60_000 + 1;
            pid(packet_id)
        });
        let publish = Publish {
            dup: false,
            qos,
            retain: false,
            topic: format!("t/{index}"),
            packet_id,
            properties: Properties::default(),
            payload: Bytes::copy_from_slice(&id.to_be_bytes()),
        };
        // Who is owed the message is decided by the subscriptions at publish time.
        let owed_to: Vec<usize> = (0..CLIENTS).filter(|&other| self.clients[other].subscribed).collect();
        self.h.send(connection, &Packet::Publish(publish));
        // Replies (PUBACK/PUBREC) come back on the publisher's own connection, with deliveries.
        let packets = self.h.take(connection);
        let mut acknowledged = qos == QoS::AtMostOnce;
        let mut rest = Vec::new();
        for packet in packets {
            match &packet {
                Packet::PubAck(ack) | Packet::PubRec(ack) if Some(ack.packet_id) == packet_id => {
                    assert!(!ack.reason_code.is_error(), "{ack:?}");
                    acknowledged = true;
                    if matches!(packet, Packet::PubRec(_)) {
                        self.h.send(connection, &Packet::PubRel(PubReply::success(ack.packet_id)));
                    }
                }
                _ => rest.push(packet),
            }
        }
        assert!(acknowledged, "a QoS {qos:?} PUBLISH of a connected client is acknowledged");
        if qos != QoS::AtMostOnce {
            for other in owed_to {
                self.clients[other].owed.insert(id);
            }
        }
        // Put the other packets back through sync's bookkeeping.
        for packet in rest {
            if let Packet::Publish(publish) = &packet {
                let id = u64::from_be_bytes(publish.payload[..8].try_into().expect("8 bytes"));
                self.clients[index].received.insert(id);
                if publish.qos != QoS::AtMostOnce {
                    self.clients[index].unacked.push(packet);
                }
            }
        }
        self.sync(index);
    }

    fn ack(&mut self, index: usize) {
        self.sync(index);
        let Some(connection) = self.clients[index].connection else {
            return;
        };
        let unacked = std::mem::take(&mut self.clients[index].unacked);
        self.h.ack_all(connection, &unacked);
        for packet in &unacked {
            if let Packet::PubRel(pubrel) = packet {
                self.h.send(connection, &Packet::PubComp(PubReply::success(pubrel.packet_id)));
            }
        }
        self.sync(index);
    }

    fn disconnect(&mut self, index: usize, lose: bool) {
        self.sync(index);
        let Some(connection) = self.clients[index].connection.take() else {
            return;
        };
        if lose {
            self.h.lose(connection);
        } else {
            self.h.send(connection, &Packet::Disconnect(Disconnect::normal()));
        }
        self.clients[index].unacked.clear();
    }

    fn check_invariants(&self) {
        for client in &self.clients {
            if let Some((inflight, queued)) = self.h.broker.session_backlog(&client.name) {
                let window = match client.version {
                    ProtocolVersion::V5 => usize::from(CLIENT_RECEIVE_MAXIMUM),
                    ProtocolVersion::V311 => usize::from(BrokerConfig::default().inflight_v311_limit),
                };
                assert!(inflight <= window, "{}: inflight {inflight} > {window}", client.name);
                assert!(queued <= QUEUE_LIMIT, "{}: queue {queued}", client.name);
            }
        }
        // QoS 0 to an offline session is dropped by design; nothing else may be.
        let stats = self.h.broker.stats();
        let unexpected = stats.dropped_total() - stats.dropped(DropReason::Qos0Offline);
        assert_eq!(unexpected, 0, "drops: {:?}", stats.messages_dropped);
    }

    /// Reconnects everyone and acknowledges until the broker has nothing left to send.
    fn drain(&mut self) {
        for index in 0..CLIENTS {
            if self.clients[index].subscribed {
                self.connect(index, false);
            }
        }
        for _ in 0..1_000 {
            let mut progress = false;
            for index in 0..CLIENTS {
                self.sync(index);
                if !self.clients[index].unacked.is_empty() {
                    progress = true;
                    self.ack(index);
                }
            }
            if !progress {
                return;
            }
        }
        panic!("the broker kept sending after 1,000 rounds");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn acknowledged_qos1_and_qos2_messages_reach_every_persistent_subscriber(
        actions in proptest::collection::vec(action(), 1..80)
    ) {
        let mut world = World::new();
        for action in actions {
            match action {
                Action::Connect(index) => world.connect(index, false),
                Action::Takeover(index) => world.connect(index, true),
                Action::Publish(index, qos) => world.publish(index, qos),
                Action::Ack(index) => world.ack(index),
                Action::Disconnect(index) => world.disconnect(index, false),
                Action::Lose(index) => world.disconnect(index, true),
                Action::Advance(secs) => {
                    world.h.advance(Duration::from_secs(u64::from(secs)));
                    for index in 0..CLIENTS {
                        world.sync(index);
                    }
                }
            }
            world.check_invariants();
        }
        world.drain();
        world.check_invariants();
        for client in &world.clients {
            let missing: Vec<_> = client.owed.difference(&client.received).collect();
            prop_assert!(missing.is_empty(), "{} never received {:?}", client.name, missing);
        }
    }
}
