//! A test harness that drives a [`Broker`] like a network would: fake clients encode packets with
//! the real codec, the broker's transmits are decoded back into packets per connection.
//!
//! This module owns the harness only. It must never reach into broker internals: everything goes
//! through the public sans-IO API, exactly as the shells and simulators use it.

use std::num::NonZeroU16;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rustc_hash::FxHashMap;

use crate::broker::{Broker, BrokerConfig, BrokerEvent, ConnectionId, Transmit};
use crate::mqtt::codec;
use crate::mqtt::{
    ConnAck, Connect, Packet, PacketId, Properties, ProtocolVersion, PubReply, Publish, QoS, Subscribe,
    Subscription, SubscriptionOptions, Will,
};
use crate::time::Time;

/// What one fake client has seen of its connection.
#[derive(Default)]
pub struct Pipe {
    pub version: Option<ProtocolVersion>,
    received: BytesMut,
    pub packets: Vec<Packet>,
    pub closed: bool,
    /// Bytes the client could not decode (a broker bug if non-empty at the end).
    pub undecodable: bool,
}

pub struct Harness {
    pub broker: Broker,
    pub now: Time,
    next_connection: u64,
    pub pipes: FxHashMap<ConnectionId, Pipe>,
    pub events: Vec<BrokerEvent>,
}

pub fn pid(value: u16) -> PacketId {
    NonZeroU16::new(value).expect("test packet ids are non-zero")
}

pub fn connect_packet(client_id: &str, version: ProtocolVersion, clean_start: bool) -> Connect {
    Connect {
        protocol: version,
        clean_start,
        keep_alive_secs: 60,
        client_id: client_id.to_string(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

pub fn will(topic: &str, payload: &'static [u8], delay_secs: Option<u32>) -> Will {
    Will {
        topic: topic.to_string(),
        payload: Bytes::from_static(payload),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties { will_delay_interval_secs: delay_secs, ..Properties::default() },
    }
}

pub fn publish(topic: &str, qos: QoS, packet_id: Option<u16>, payload: &'static [u8]) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.to_string(),
        packet_id: packet_id.map(pid),
        properties: Properties::default(),
        payload: Bytes::from_static(payload),
    })
}

pub fn subscribe(packet_id: u16, filter: &str, qos: QoS) -> Packet {
    subscribe_with(packet_id, filter, SubscriptionOptions::with_qos(qos), None)
}

pub fn subscribe_with(
    packet_id: u16,
    filter: &str,
    options: SubscriptionOptions,
    identifier: Option<u32>,
) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(packet_id),
        subscriptions: vec![Subscription { topic_filter: filter.to_string(), options }],
        properties: Properties {
            subscription_identifiers: identifier.into_iter().collect(),
            ..Properties::default()
        },
    })
}

pub fn puback(packet_id: PacketId) -> Packet {
    Packet::PubAck(PubReply::success(packet_id))
}

/// The PUBLISH packets among `packets`.
pub fn publishes(packets: &[Packet]) -> Vec<&Publish> {
    packets
        .iter()
        .filter_map(|packet| match packet {
            Packet::Publish(publish) => Some(publish),
            _ => None,
        })
        .collect()
}

impl Harness {
    pub fn new(config: BrokerConfig) -> Harness {
        Harness {
            broker: Broker::new(config),
            now: Time::from_secs(1_000),
            next_connection: 1,
            pipes: FxHashMap::default(),
            events: Vec::new(),
        }
    }

    pub fn open(&mut self) -> ConnectionId {
        let connection = ConnectionId(self.next_connection);
        self.next_connection += 1;
        self.broker.handle_connection_opened(self.now, connection);
        self.pipes.insert(connection, Pipe::default());
        connection
    }

    /// Opens a connection, sends CONNECT and returns the connection with the CONNACK.
    pub fn connect_with(&mut self, connect: Connect) -> (ConnectionId, ConnAck) {
        let connection = self.open();
        self.pipes.get_mut(&connection).expect("opened").version = Some(connect.protocol);
        self.send(connection, &Packet::Connect(Box::new(connect)));
        // What follows the CONNACK (retransmissions, queued messages) stays for the caller.
        let pipe = self.pipes.get_mut(&connection).expect("opened");
        match pipe.packets.first() {
            Some(Packet::ConnAck(connack)) => {
                let connack = connack.clone();
                pipe.packets.remove(0);
                (connection, connack)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub fn connect(&mut self, client_id: &str, version: ProtocolVersion, clean_start: bool) -> ConnectionId {
        let mut connect = connect_packet(client_id, version, clean_start);
        if version == ProtocolVersion::V5 && !clean_start {
            connect.properties.session_expiry_interval_secs = Some(3_600);
        }
        let (connection, connack) = self.connect_with(connect);
        assert_eq!(connack.reason_code.0, 0, "CONNACK for {client_id}: {connack:?}");
        connection
    }

    /// A v5 client with a clean session whose keep-alive (the broker's maximum) outlasts any test.
    pub fn connect_idle(&mut self, client_id: &str) -> ConnectionId {
        let mut connect = connect_packet(client_id, ProtocolVersion::V5, true);
        connect.keep_alive_secs = 0;
        let (connection, connack) = self.connect_with(connect);
        assert_eq!(connack.reason_code.0, 0);
        connection
    }

    pub fn version(&self, connection: ConnectionId) -> ProtocolVersion {
        self.pipes[&connection].version.unwrap_or(ProtocolVersion::V5)
    }

    /// Encodes `packet` as the client would and hands it to the broker.
    pub fn send(&mut self, connection: ConnectionId, packet: &Packet) {
        let mut bytes = BytesMut::new();
        codec::encode(packet, self.version(connection), &mut bytes).expect("test packets encode");
        self.send_raw(connection, &bytes);
    }

    pub fn send_raw(&mut self, connection: ConnectionId, bytes: &[u8]) {
        self.broker.handle_bytes(self.now, connection, bytes);
        self.flush();
    }

    /// Drains the broker's transmits and events into the pipes.
    pub fn flush(&mut self) {
        while let Some(transmit) = self.broker.poll_transmit() {
            match transmit {
                Transmit::Send { connection, bytes } => {
                    let pipe = self.pipes.get_mut(&connection).expect("transmit for a known connection");
                    assert!(!pipe.closed, "bytes after close on {connection:?}");
                    pipe.received.extend_from_slice(&bytes);
                    let version = pipe.version.unwrap_or(ProtocolVersion::V5);
                    loop {
                        match codec::decode(&mut pipe.received, version, 268_435_460) {
                            Ok(Some(packet)) => pipe.packets.push(packet),
                            Ok(None) => break,
                            Err(error) => {
                                pipe.undecodable = true;
                                panic!("client cannot decode broker output on {connection:?}: {error}");
                            }
                        }
                    }
                }
                Transmit::Close { connection } => {
                    let pipe = self.pipes.get_mut(&connection).expect("close for a known connection");
                    assert!(!pipe.closed, "closed twice: {connection:?}");
                    pipe.closed = true;
                }
            }
        }
        while let Some(event) = self.broker.poll_event() {
            self.events.push(event);
        }
    }

    /// Takes every packet the client has received so far.
    pub fn take(&mut self, connection: ConnectionId) -> Vec<Packet> {
        std::mem::take(&mut self.pipes.get_mut(&connection).expect("known connection").packets)
    }

    pub fn is_closed(&self, connection: ConnectionId) -> bool {
        self.pipes[&connection].closed
    }

    /// The transport of `connection` dies without a DISCONNECT.
    pub fn lose(&mut self, connection: ConnectionId) {
        self.broker.handle_connection_lost(self.now, connection);
        self.pipes.get_mut(&connection).expect("known").closed = true;
        self.flush();
    }

    /// Lets time pass, firing every timer on the way in order.
    pub fn advance(&mut self, duration: Duration) {
        let target = self.now + duration;
        while let Some(deadline) = self.broker.poll_timeout() {
            if deadline > target {
                break;
            }
            self.now = self.now.max(deadline);
            self.broker.handle_timeout(self.now);
            self.flush();
        }
        self.now = target;
        self.broker.handle_timeout(self.now);
        self.flush();
    }

    /// Acknowledges every QoS 1 PUBLISH among `packets` (PUBACK) and answers QoS 2 with PUBREC.
    pub fn ack_all(&mut self, connection: ConnectionId, packets: &[Packet]) {
        for publish in publishes(packets) {
            match publish.qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => self.send(connection, &puback(publish.packet_id.expect("QoS 1"))),
                QoS::ExactlyOnce => self
                    .send(connection, &Packet::PubRec(PubReply::success(publish.packet_id.expect("QoS 2")))),
            }
        }
    }

    /// A full QoS 1 round trip on a fresh pair of clients: subscribe, publish, PUBACK to the
    /// publisher, delivery to the subscriber. Proves the broker still serves well-behaved clients.
    pub fn assert_qos1_round_trip(&mut self, tag: &str) {
        let subscriber = self.connect(&format!("rt-sub-{tag}"), ProtocolVersion::V5, true);
        self.send(subscriber, &subscribe(1, &format!("rt/{tag}"), QoS::AtLeastOnce));
        assert!(matches!(self.take(subscriber).as_slice(), [Packet::SubAck(_)]), "SUBACK for {tag}");
        let publisher = self.connect(&format!("rt-pub-{tag}"), ProtocolVersion::V311, true);
        self.send(publisher, &publish(&format!("rt/{tag}"), QoS::AtLeastOnce, Some(9), b"ping"));
        assert_eq!(self.take(publisher), vec![puback(pid(9))], "PUBACK for {tag}");
        let delivered = self.take(subscriber);
        let delivered = publishes(&delivered);
        assert_eq!(delivered.len(), 1, "delivery for {tag}");
        assert_eq!(&delivered[0].payload[..], b"ping");
        self.send(subscriber, &puback(delivered[0].packet_id.expect("QoS 1")));
        self.send(subscriber, &Packet::Disconnect(crate::mqtt::Disconnect::normal()));
        self.send(publisher, &Packet::Disconnect(crate::mqtt::Disconnect::normal()));
        assert!(self.is_closed(subscriber) && self.is_closed(publisher));
    }
}
