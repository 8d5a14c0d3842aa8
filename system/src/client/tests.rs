//! Tests of the client core against a scripted fake server that speaks real bytes through the
//! codec: every packet the client writes is decoded as a server would, and every server packet is
//! encoded and fed to `handle_bytes`.
//!
//! This module owns the fake server and the scenario tests. It must never reach into the client
//! to fake progress: scenarios drive it only through its public inputs (private fields are read
//! only to check memory invariants).

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::mqtt::packet::{Connect, SubAck, SubscriptionOptions, UnsubAck};

const SECOND: Duration = Duration::from_secs(1);

fn id(value: u16) -> PacketId {
    PacketId::new(value).expect("non-zero packet id")
}

fn config(protocol: ProtocolVersion) -> ClientConfig {
    ClientConfig {
        client_id: "device-1".into(),
        protocol,
        keep_alive_secs: 10,
        // Sessions outlive connections (v5), so reconnects resume them.
        session_expiry_interval_secs: 600,
        reconnect_backoff_min: Duration::from_millis(100),
        reconnect_backoff_max: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(3),
        ..ClientConfig::default()
    }
}

fn connack(session_present: bool) -> Packet {
    Packet::ConnAck(ConnAck {
        session_present,
        reason_code: ReasonCode::SUCCESS,
        properties: Properties::default(),
    })
}

fn connack_with(properties: Properties) -> Packet {
    Packet::ConnAck(ConnAck { session_present: false, reason_code: ReasonCode::SUCCESS, properties })
}

fn inbound_publish(qos: QoS, packet_id: Option<u16>, topic: &str, payload: &'static [u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id: packet_id.map(id),
        properties: Properties::default(),
        payload: Bytes::from_static(payload),
    }
}

/// The client plus the server's end of the transport and a clock.
struct Harness {
    client: Client,
    now: Time,
    protocol: ProtocolVersion,
    server_read_buffer: BytesMut,
    /// Events that followed `Connected` in the last `establish`.
    connect_events: Vec<ClientEvent>,
}

impl Harness {
    fn new(config: ClientConfig) -> Harness {
        Harness::with_seed(config, 7)
    }

    fn with_seed(config: ClientConfig, seed: u64) -> Harness {
        let protocol = config.protocol;
        Harness {
            client: Client::new(config, seed),
            now: Time::from_secs(1),
            protocol,
            server_read_buffer: BytesMut::new(),
            connect_events: Vec::new(),
        }
    }

    /// Everything the client wrote since the last call, decoded as the server decodes it.
    fn sent(&mut self) -> Vec<Packet> {
        while let Some(bytes) = self.client.poll_transmit() {
            self.server_read_buffer.extend_from_slice(&bytes);
        }
        let mut packets = Vec::new();
        while let Some(packet) =
            codec::decode(&mut self.server_read_buffer, self.protocol, MQTT_PACKET_SIZE_LIMIT_BYTES)
                .expect("the client writes well-formed packets")
        {
            packets.push(packet);
        }
        assert!(self.server_read_buffer.is_empty(), "client wrote a partial packet");
        packets
    }

    fn events(&mut self) -> Vec<ClientEvent> {
        std::iter::from_fn(|| self.client.poll_event()).collect()
    }

    /// The server sends `packet` on the current transport.
    fn receive(&mut self, packet: Packet) {
        let mut bytes = BytesMut::new();
        codec::encode(&packet, self.protocol, &mut bytes).expect("server packet encodes");
        self.client.handle_bytes(self.now, &bytes);
    }

    /// Moves the clock to `now + duration`, firing every timer on the way at its deadline.
    fn advance(&mut self, duration: Duration) {
        let target = self.now + duration;
        while let Some(deadline) = self.client.poll_timeout() {
            if deadline > target {
                break;
            }
            self.now = self.now.max(deadline);
            self.client.handle_timeout(self.now);
        }
        self.now = target;
    }

    /// Runs timers until the client asks for a transport, then connects it and returns the
    /// CONNECT it writes.
    fn open_transport(&mut self) -> Connect {
        if !self.events().contains(&ClientEvent::OpenTransport) {
            let deadline = self.client.poll_timeout().expect("a reconnect is scheduled");
            self.advance(deadline - self.now);
            assert_eq!(self.events(), vec![ClientEvent::OpenTransport]);
        }
        self.server_read_buffer.clear();
        self.client.handle_transport_connected(self.now);
        match self.sent().as_slice() {
            [Packet::Connect(connect)] => (**connect).clone(),
            other => panic!("expected CONNECT, got {other:?}"),
        }
    }

    /// First connect (or reconnect) through to CONNACK; returns the packets sent after CONNACK.
    /// Events other than `Connected` stay in `connect_events`.
    fn establish(&mut self, session_present: bool) -> Vec<Packet> {
        if !self.client.connected_before && self.client.connection == Connection::Idle {
            self.client.connect(self.now);
        }
        self.open_transport();
        self.receive(connack(session_present));
        let mut events = self.events();
        assert_eq!(events.first(), Some(&ClientEvent::Connected { session_present }), "{events:?}");
        events.remove(0);
        self.connect_events = events;
        assert!(self.client.is_connected());
        self.sent()
    }
}

fn publish_ids(packets: &[Packet]) -> Vec<(u16, bool)> {
    packets
        .iter()
        .map(|packet| match packet {
            Packet::Publish(publish) => (publish.packet_id.expect("QoS > 0").get(), publish.dup),
            other => panic!("expected PUBLISH, got {other:?}"),
        })
        .collect()
}

#[test]
fn connect_v311_sends_configured_connect_and_reports_connected() {
    let mut harness = Harness::new(ClientConfig {
        username: Some("user".into()),
        password: Some(Bytes::from_static(b"pw")),
        ..config(ProtocolVersion::V311)
    });
    harness.client.connect(harness.now);
    let connect = harness.open_transport();
    assert_eq!(connect.protocol, ProtocolVersion::V311);
    assert_eq!(connect.client_id, "device-1");
    assert!(connect.clean_start);
    assert_eq!(connect.keep_alive_secs, 10);
    assert_eq!(connect.username.as_deref(), Some("user"));
    assert!(connect.properties.is_empty());
    assert!(!harness.client.is_connected());
    harness.receive(connack(false));
    assert_eq!(harness.events(), vec![ClientEvent::Connected { session_present: false }]);
    assert!(harness.client.is_connected());
    assert_eq!(harness.client.stats().connects, 1);
    assert_eq!(harness.client.stats().reconnects, 0);
}

#[test]
fn connect_v5_advertises_limits_and_honours_connack_properties() {
    let mut harness = Harness::new(ClientConfig {
        client_id: String::new(),
        session_expiry_interval_secs: 300,
        receive_maximum: 8,
        max_packet_size_bytes: 4096,
        topic_alias_maximum: 4,
        ..config(ProtocolVersion::V5)
    });
    harness.client.connect(harness.now);
    let connect = harness.open_transport();
    assert_eq!(connect.protocol, ProtocolVersion::V5);
    assert!(connect.clean_start);
    assert_eq!(connect.properties.session_expiry_interval_secs, Some(300));
    assert_eq!(connect.properties.receive_maximum, Some(8));
    assert_eq!(connect.properties.maximum_packet_size, Some(4096));
    assert_eq!(connect.properties.topic_alias_maximum, Some(4));
    harness.receive(connack_with(Properties {
        assigned_client_identifier: Some("assigned-42".into()),
        server_keep_alive_secs: Some(4),
        receive_maximum: Some(2),
        maximum_packet_size: Some(64),
        ..Properties::default()
    }));
    assert_eq!(harness.events(), vec![ClientEvent::Connected { session_present: false }]);
    assert_eq!(harness.client.client_id(), "assigned-42");
    assert_eq!(harness.client.inflight_window(), 2);
    // Server Keep Alive 4 s replaces our 10 s: a PINGREQ goes out after 4 idle seconds.
    harness.advance(Duration::from_millis(3_999));
    assert!(harness.sent().is_empty());
    harness.advance(Duration::from_millis(1));
    assert_eq!(harness.sent(), vec![Packet::PingReq]);
    // Maximum Packet Size 64: a large publish is refused and counted.
    let error = harness
        .client
        .publish(harness.now, OutgoingPublish::new("t", vec![0u8; 100], QoS::AtLeastOnce))
        .expect_err("too large");
    assert!(matches!(error, PublishError::PacketTooLarge { limit_bytes: 64, .. }), "{error:?}");
    assert_eq!(harness.client.stats().publishes_rejected, 1);
    // The reconnect resumes the session under the assigned id.
    harness.client.handle_transport_lost(harness.now);
    let connect = harness.open_transport();
    assert_eq!(connect.client_id, "assigned-42");
    assert!(!connect.clean_start, "reconnects resume the session");
}

#[test]
fn refused_connack_backs_off_and_reconnects() {
    let mut harness = Harness::new(config(ProtocolVersion::V5));
    harness.client.connect(harness.now);
    harness.open_transport();
    harness.receive(Packet::ConnAck(ConnAck {
        session_present: false,
        reason_code: ReasonCode::SERVER_BUSY,
        properties: Properties::default(),
    }));
    assert_eq!(
        harness.events(),
        vec![ClientEvent::ConnectRefused { reason: ReasonCode::SERVER_BUSY }, ClientEvent::CloseTransport]
    );
    assert!(!harness.client.is_connected());
    let delay = harness.client.poll_timeout().expect("reconnect scheduled") - harness.now;
    assert!(delay >= Duration::from_millis(100) && delay <= Duration::from_millis(200), "{delay:?}");
    harness.advance(delay - Duration::from_nanos(1));
    assert!(harness.events().is_empty(), "no reconnect before the backoff ends");
    harness.advance(Duration::from_nanos(1));
    assert_eq!(harness.events(), vec![ClientEvent::OpenTransport]);
    harness.client.handle_transport_connected(harness.now);
    assert!(matches!(harness.sent().as_slice(), [Packet::Connect(_)]));
    harness.receive(connack(false));
    assert_eq!(harness.events(), vec![ClientEvent::Connected { session_present: false }]);
    assert_eq!(harness.client.stats().connects_refused, 1);
    assert_eq!(harness.client.stats().connect_attempts, 2);
}

#[test]
fn connect_timeout_closes_and_retries() {
    let mut harness = Harness::new(config(ProtocolVersion::V311));
    harness.client.connect(harness.now);
    harness.open_transport();
    harness.advance(Duration::from_secs(3));
    assert_eq!(harness.events(), vec![ClientEvent::CloseTransport]);
    assert_eq!(harness.client.stats().connect_timeouts, 1);
    // A transport that never opens times out as well.
    let reconnect_at = harness.client.poll_timeout().unwrap();
    harness.advance(reconnect_at - harness.now);
    assert_eq!(harness.events(), vec![ClientEvent::OpenTransport]);
    assert_eq!(harness.client.poll_timeout(), Some(harness.now + Duration::from_secs(3)));
    harness.advance(Duration::from_secs(3));
    assert_eq!(harness.events(), vec![ClientEvent::CloseTransport]);
    assert_eq!(harness.client.stats().connect_timeouts, 2);
    // A late report from the abandoned attempt is ignored.
    harness.client.handle_transport_connected(harness.now);
    assert!(harness.sent().is_empty());
}

#[test]
fn keep_alive_pings_when_idle_and_survives_on_pingresp() {
    let mut harness = Harness::new(config(ProtocolVersion::V311));
    harness.establish(false);
    harness.advance(Duration::from_secs(9));
    assert!(harness.sent().is_empty());
    harness.advance(SECOND);
    assert_eq!(harness.sent(), vec![Packet::PingReq]);
    harness.advance(Duration::from_secs(2));
    harness.receive(Packet::PingResp);
    harness.advance(Duration::from_secs(7));
    assert!(harness.sent().is_empty(), "the next ping waits a full keep-alive after the response");
    harness.advance(Duration::from_secs(20));
    assert!(harness.events().is_empty() || harness.client.stats().keepalive_timeouts == 1);
    assert_eq!(harness.client.stats().pings_sent, 2);
}

#[test]
fn keep_alive_detects_a_dead_peer_and_reconnects() {
    let mut harness = Harness::new(config(ProtocolVersion::V5));
    harness.establish(false);
    harness.advance(Duration::from_secs(10));
    assert_eq!(harness.sent(), vec![Packet::PingReq]);
    harness.advance(Duration::from_millis(4_999));
    assert!(harness.events().is_empty());
    harness.advance(Duration::from_millis(1));
    assert_eq!(
        harness.events(),
        vec![ClientEvent::CloseTransport, ClientEvent::Disconnected { reason: None }]
    );
    assert_eq!(harness.client.stats().keepalive_timeouts, 1);
    assert!(!harness.client.is_connected());
    // A reconnect follows after the backoff.
    harness.open_transport();
    harness.receive(connack(true));
    assert!(harness.client.is_connected());
}

#[test]
fn handle_timeout_at_any_time_is_safe() {
    let mut harness = Harness::new(config(ProtocolVersion::V5));
    // Before connecting, early and late calls do nothing.
    harness.client.handle_timeout(Time::ZERO);
    harness.client.handle_timeout(Time::from_secs(1_000));
    assert!(harness.events().is_empty());
    harness.establish(false);
    // Early calls do nothing; a very late call sends the overdue ping, never panics.
    harness.client.handle_timeout(harness.now);
    assert!(harness.sent().is_empty());
    harness.now += Duration::from_secs(3_600);
    harness.client.handle_timeout(harness.now);
    assert_eq!(harness.sent(), vec![Packet::PingReq]);
    harness.client.handle_timeout(harness.now);
    assert!(harness.sent().is_empty());
}

#[test]
fn qos1_publish_is_acked() {
    let mut harness = Harness::new(config(ProtocolVersion::V5));
    harness.establish(false);
    let token = harness
        .client
        .publish(harness.now, OutgoingPublish::new("devices/1/temp", &b"21.5"[..], QoS::AtLeastOnce))
        .expect("accepted");
    let sent = harness.sent();
    let [Packet::Publish(publish)] = sent.as_slice() else { panic!("expected one PUBLISH: {sent:?}") };
    assert_eq!(publish.topic, "devices/1/temp");
    assert_eq!(publish.payload, Bytes::from_static(b"21.5"));
    assert!(!publish.dup);
    let packet_id = publish.packet_id.expect("QoS 1 has an id");
    assert_eq!(harness.client.inflight_len(), 1);
    harness.receive(Packet::PubAck(PubReply::success(packet_id)));
    assert_eq!(harness.events(), vec![ClientEvent::PublishAcked { token, reason: ReasonCode::SUCCESS }]);
    assert_eq!(harness.client.inflight_len(), 0);
    // A second PUBACK for the same id is stale and ignored.
    harness.receive(Packet::PubAck(PubReply::success(packet_id)));
    assert!(harness.events().is_empty());
    assert_eq!(harness.client.stats().unknown_acks, 1);
    assert_eq!(harness.client.stats().publishes_acked, 1);
}

#[test]
fn qos0_publish_is_sent_and_failed_acks_are_reported() {
    let mut harness = Harness::new(config(ProtocolVersion::V5));
    harness.establish(false);
    let token =
        harness.client.publish(harness.now, OutgoingPublish::new("a", &b"x"[..], QoS::AtMostOnce)).unwrap();
    assert!(matches!(harness.sent().as_slice(), [Packet::Publish(p)] if p.packet_id.is_none()));
    assert_eq!(harness.events(), vec![ClientEvent::PublishSent { token }]);
    let token =
        harness.client.publish(harness.now, OutgoingPublish::new("a", &b"x"[..], QoS::AtLeastOnce)).unwrap();
    let ids = publish_ids(&harness.sent());
    harness.receive(Packet::PubAck(PubReply {
        packet_id: id(ids[0].0),
        reason_code: ReasonCode::QUOTA_EXCEEDED,
        properties: Properties::default(),
    }));
    assert_eq!(
        harness.events(),
        vec![ClientEvent::PublishFailed { token, reason: ReasonCode::QUOTA_EXCEEDED }]
    );
    assert_eq!(harness.client.stats().publishes_failed, 1);
}

#[test]
fn inflight_window_is_never_exceeded() {
    let mut harness = Harness::new(ClientConfig { inflight_limit: 3, ..config(ProtocolVersion::V5) });
    harness.client.connect(harness.now);
    harness.open_transport();
    harness.receive(connack_with(Properties { receive_maximum: Some(2), ..Properties::default() }));
    harness.events();
    assert_eq!(harness.client.inflight_window(), 2);
    let tokens: Vec<PublishToken> = (0..5)
        .map(|n| {
            harness.client.publish(harness.now, OutgoingPublish::new("t", vec![n], QoS::AtLeastOnce)).unwrap()
        })
        .collect();
    let first = publish_ids(&harness.sent());
    assert_eq!(first.len(), 2, "only the server's Receive Maximum of 2 goes out");
    assert_eq!(harness.client.pending_len(), 3);
    harness.receive(Packet::PubAck(PubReply::success(id(first[1].0))));
    let second = publish_ids(&harness.sent());
    assert_eq!(second.len(), 1, "one ack frees one slot");
    assert_eq!(harness.client.inflight_len(), 2);
    assert_eq!(
        harness.events(),
        vec![ClientEvent::PublishAcked { token: tokens[1], reason: ReasonCode::SUCCESS }]
    );
}

#[test]
fn pending_queue_bound_rejects_and_counts() {
    let mut harness =
        Harness::new(ClientConfig { pending_publishes_limit: 3, ..config(ProtocolVersion::V311) });
    for _ in 0..3 {
        harness.client.publish(harness.now, OutgoingPublish::new("t", &b"x"[..], QoS::AtLeastOnce)).unwrap();
    }
    let error = harness.client.publish(harness.now, OutgoingPublish::new("t", &b"x"[..], QoS::AtMostOnce));
    assert_eq!(error, Err(PublishError::QueueFull { limit: 3 }));
    assert_eq!(harness.client.stats().publishes_dropped_queue_full, 1);
    assert_eq!(harness.client.stats().publishes_accepted, 3);
    // Invalid topics are refused and counted apart.
    let error = harness.client.publish(harness.now, OutgoingPublish::new("a/#", &b"x"[..], QoS::AtMostOnce));
    assert_eq!(error, Err(PublishError::InvalidTopic(TopicError::WildcardInName)));
    assert_eq!(harness.client.stats().publishes_rejected, 1);
    // Once connected the queue drains in order and accepts again.
    let sent = harness.establish(false);
    assert_eq!(publish_ids(&sent), vec![(1, false), (2, false), (3, false)]);
    assert!(
        harness.client.publish(harness.now, OutgoingPublish::new("t", &b"x"[..], QoS::AtMostOnce)).is_ok()
    );
}

#[test]
fn reconnect_with_session_present_retransmits_in_order_with_dup() {
    let mut harness =
        Harness::new(ClientConfig { session_expiry_interval_secs: 600, ..config(ProtocolVersion::V5) });
    harness.establish(false);
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        harness.client.publish(harness.now, OutgoingPublish::new("t", &b"x"[..], qos)).unwrap();
    }
    assert_eq!(publish_ids(&harness.sent()), vec![(1, false), (2, false), (3, false), (4, false)]);
    // The server acknowledges 3 and advances QoS 2 message 2 to PUBREC; 1 and 4 stay open.
    harness.receive(Packet::PubAck(PubReply::success(id(3))));
    harness.receive(Packet::PubRec(PubReply::success(id(2))));
    assert_eq!(harness.sent(), vec![Packet::PubRel(PubReply::success(id(2)))]);
    harness.client.handle_transport_lost(harness.now);
    assert!(harness.events().contains(&ClientEvent::Disconnected { reason: None }));
    // Queued while disconnected: goes out after the retransmissions.
    harness.client.publish(harness.now, OutgoingPublish::new("t", &b"y"[..], QoS::AtLeastOnce)).unwrap();
    let connect = harness.open_transport();
    assert!(!connect.clean_start);
    harness.receive(connack(true));
    let sent = harness.sent();
    let summary: Vec<(&str, u16, bool)> = sent
        .iter()
        .map(|packet| match packet {
            Packet::Publish(publish) => ("PUBLISH", publish.packet_id.unwrap().get(), publish.dup),
            Packet::PubRel(reply) => ("PUBREL", reply.packet_id.get(), false),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        summary,
        vec![("PUBLISH", 1, true), ("PUBREL", 2, false), ("PUBLISH", 4, true), ("PUBLISH", 5, false)]
    );
    assert_eq!(harness.client.stats().publishes_retransmitted, 3);
    assert_eq!(harness.client.stats().reconnects, 1);
}

#[test]
fn reconnect_without_session_resends_inflight_as_new_publishes() {
    let mut harness = Harness::new(config(ProtocolVersion::V311));
    harness.establish(false);
    let first =
        harness.client.publish(harness.now, OutgoingPublish::new("t", &b"1"[..], QoS::AtLeastOnce)).unwrap();
    let second =
        harness.client.publish(harness.now, OutgoingPublish::new("t", &b"2"[..], QoS::ExactlyOnce)).unwrap();
    let third =
        harness.client.publish(harness.now, OutgoingPublish::new("t", &b"3"[..], QoS::ExactlyOnce)).unwrap();
    harness.sent();
    harness.receive(Packet::PubRec(PubReply::success(id(2))));
    harness.sent();
    harness.client.handle_transport_lost(harness.now);
    harness.events();
    let sent = harness.establish(false);
    let payloads: Vec<(Bytes, bool)> = sent
        .iter()
        .map(|packet| match packet {
            Packet::Publish(publish) => (publish.payload.clone(), publish.dup),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(payloads, vec![(Bytes::from_static(b"1"), false), (Bytes::from_static(b"3"), false)]);
    // The QoS 2 message past PUBREC is owned by the server: reported acked, not re-sent.
    assert_eq!(
        harness.connect_events,
        vec![ClientEvent::PublishAcked { token: second, reason: ReasonCode::SUCCESS }]
    );
    assert_eq!(harness.client.stats().publishes_requeued, 2);
    let ids = publish_ids(&sent);
    harness.receive(Packet::PubAck(PubReply::success(id(ids[0].0))));
    assert_eq!(
        harness.events(),
        vec![ClientEvent::PublishAcked { token: first, reason: ReasonCode::SUCCESS }]
    );
    harness.receive(Packet::PubRec(PubReply::success(id(ids[1].0))));
    harness.receive(Packet::PubComp(PubReply::success(id(ids[1].0))));
    assert_eq!(
        harness.events(),
        vec![ClientEvent::PublishAcked { token: third, reason: ReasonCode::SUCCESS }]
    );
}

#[test]
fn qos2_outbound_completes_once_and_repeats_pubrel() {
    let mut harness = Harness::new(config(ProtocolVersion::V5));
    harness.establish(false);
    let token =
        harness.client.publish(harness.now, OutgoingPublish::new("t", &b"x"[..], QoS::ExactlyOnce)).unwrap();
    let packet_id = id(publish_ids(&harness.sent())[0].0);
    harness.receive(Packet::PubRec(PubReply::success(packet_id)));
    assert_eq!(harness.sent(), vec![Packet::PubRel(PubReply::success(packet_id))]);
    assert!(harness.events().is_empty(), "QoS 2 completes on PUBCOMP, not PUBREC");
    harness.receive(Packet::PubRec(PubReply::success(packet_id)));
    assert_eq!(harness.sent(), vec![Packet::PubRel(PubReply::success(packet_id))]);
    harness.receive(Packet::PubComp(PubReply::success(packet_id)));
    harness.receive(Packet::PubComp(PubReply::success(packet_id)));
    assert_eq!(harness.events(), vec![ClientEvent::PublishAcked { token, reason: ReasonCode::SUCCESS }]);
    assert_eq!(harness.client.stats().unknown_acks, 1);
    // PUBREC with an error ends the exchange as failed.
    let token =
        harness.client.publish(harness.now, OutgoingPublish::new("t", &b"x"[..], QoS::ExactlyOnce)).unwrap();
    let packet_id = id(publish_ids(&harness.sent())[0].0);
    harness.receive(Packet::PubRec(PubReply {
        packet_id,
        reason_code: ReasonCode::NOT_AUTHORIZED,
        properties: Properties::default(),
    }));
    assert_eq!(
        harness.events(),
        vec![ClientEvent::PublishFailed { token, reason: ReasonCode::NOT_AUTHORIZED }]
    );
    assert!(harness.sent().is_empty());
}

#[test]
fn qos2_inbound_is_delivered_once_per_release() {
    let mut harness = Harness::new(config(ProtocolVersion::V5));
    harness.establish(false);
    let message = inbound_publish(QoS::ExactlyOnce, Some(5), "cmd", b"go");
    harness.receive(Packet::Publish(message.clone()));
    assert_eq!(harness.sent(), vec![Packet::PubRec(PubReply::success(id(5)))]);
    assert_eq!(harness.events(), vec![ClientEvent::Message(message.clone())]);
    // The server retransmits (DUP=1) before releasing: acknowledged again, not delivered again.
    harness.receive(Packet::Publish(Publish { dup: true, ..message.clone() }));
    assert_eq!(harness.sent(), vec![Packet::PubRec(PubReply::success(id(5)))]);
    assert!(harness.events().is_empty());
    assert_eq!(harness.client.stats().duplicates_suppressed, 1);
    // Even across a reconnect that keeps the session.
    harness.client.handle_transport_lost(harness.now);
    harness.events();
    harness.establish(true);
    harness.receive(Packet::Publish(Publish { dup: true, ..message.clone() }));
    assert!(harness.events().is_empty());
    harness.sent();
    harness.receive(Packet::PubRel(PubReply::success(id(5))));
    assert_eq!(harness.sent(), vec![Packet::PubComp(PubReply::success(id(5)))]);
    // After the release the id is free: a new message with it is delivered.
    harness.receive(Packet::Publish(message.clone()));
    assert_eq!(harness.events(), vec![ClientEvent::Message(message)]);
    assert_eq!(harness.client.stats().messages_received, 2);
    // A PUBREL for an unknown id is answered "not found" (v5).
    harness.sent();
    harness.receive(Packet::PubRel(PubReply::success(id(9))));
    assert!(matches!(
        harness.sent().as_slice(),
        [Packet::PubComp(PubReply { reason_code: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND, .. })]
    ));
}

#[test]
fn qos0_and_qos1_inbound_are_delivered_and_acked() {
    let mut harness = Harness::new(config(ProtocolVersion::V311));
    harness.establish(false);
    let qos0 = inbound_publish(QoS::AtMostOnce, None, "a", b"0");
    let qos1 = inbound_publish(QoS::AtLeastOnce, Some(3), "b", b"1");
    // Both packets in one read, split at an awkward boundary.
    let mut bytes = BytesMut::new();
    codec::encode(&Packet::Publish(qos0.clone()), ProtocolVersion::V311, &mut bytes).unwrap();
    codec::encode(&Packet::Publish(qos1.clone()), ProtocolVersion::V311, &mut bytes).unwrap();
    let (head, tail) = bytes.split_at(bytes.len() - 3);
    harness.client.handle_bytes(harness.now, head);
    harness.client.handle_bytes(harness.now, tail);
    assert_eq!(harness.events(), vec![ClientEvent::Message(qos0), ClientEvent::Message(qos1)]);
    assert_eq!(harness.sent(), vec![Packet::PubAck(PubReply::success(id(3)))]);
}

#[test]
fn inbound_receive_maximum_exceeded_is_a_protocol_error() {
    let mut harness = Harness::new(ClientConfig { receive_maximum: 2, ..config(ProtocolVersion::V5) });
    harness.establish(false);
    for packet_id in [1, 2] {
        harness.receive(Packet::Publish(inbound_publish(QoS::ExactlyOnce, Some(packet_id), "t", b"x")));
    }
    harness.sent();
    harness.events();
    harness.receive(Packet::Publish(inbound_publish(QoS::ExactlyOnce, Some(3), "t", b"x")));
    assert_eq!(
        harness.sent(),
        vec![Packet::Disconnect(Disconnect::with_reason(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED))]
    );
    assert_eq!(
        harness.events(),
        vec![ClientEvent::CloseTransport, ClientEvent::Disconnected { reason: None }]
    );
    assert_eq!(harness.client.stats().protocol_errors, 1);
}

#[test]
fn inbound_topic_aliases_are_resolved_and_checked() {
    let mut harness = Harness::new(ClientConfig { topic_alias_maximum: 2, ..config(ProtocolVersion::V5) });
    harness.establish(false);
    let mut first = inbound_publish(QoS::AtMostOnce, None, "plant/line/1", b"a");
    first.properties.topic_alias = Some(2);
    harness.receive(Packet::Publish(first));
    let mut second = inbound_publish(QoS::AtMostOnce, None, "", b"b");
    second.properties.topic_alias = Some(2);
    harness.receive(Packet::Publish(second));
    let topics: Vec<String> = harness
        .events()
        .into_iter()
        .map(|event| match event {
            ClientEvent::Message(publish) => {
                assert_eq!(publish.properties.topic_alias, None);
                publish.topic
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(topics, vec!["plant/line/1", "plant/line/1"]);
    let mut beyond = inbound_publish(QoS::AtMostOnce, None, "x", b"c");
    beyond.properties.topic_alias = Some(3);
    harness.receive(Packet::Publish(beyond));
    assert_eq!(
        harness.sent(),
        vec![Packet::Disconnect(Disconnect::with_reason(ReasonCode::TOPIC_ALIAS_INVALID))]
    );
    assert!(!harness.client.is_connected());
}

#[test]
fn backoff_grows_is_jittered_deterministic_and_resets_after_success() {
    fn refusal_delays(seed: u64, refusals: usize) -> (Harness, Vec<Duration>) {
        let mut harness = Harness::with_seed(
            ClientConfig {
                reconnect_backoff_min: Duration::from_millis(100),
                reconnect_backoff_max: Duration::from_secs(60),
                ..config(ProtocolVersion::V5)
            },
            seed,
        );
        harness.client.connect(harness.now);
        let mut delays = Vec::new();
        for _ in 0..refusals {
            harness.open_transport();
            harness.receive(Packet::ConnAck(ConnAck {
                session_present: false,
                reason_code: ReasonCode::SERVER_UNAVAILABLE,
                properties: Properties::default(),
            }));
            harness.events();
            delays.push(harness.client.poll_timeout().unwrap() - harness.now);
        }
        (harness, delays)
    }
    let (mut harness, delays) = refusal_delays(11, 8);
    for (attempt, delay) in delays.iter().enumerate() {
        let ceiling = Duration::from_millis(100) * 2u32.pow(attempt as u32 + 1);
        assert!(*delay >= Duration::from_millis(100) && *delay <= ceiling, "attempt {attempt}: {delay:?}");
    }
    // Grows: the late attempts wait longer than the early ones on average.
    let early: Duration = delays[..3].iter().sum();
    let late: Duration = delays[5..].iter().sum();
    assert!(late > early * 4, "{delays:?}");
    assert_eq!(refusal_delays(11, 8).1, delays, "same seed, same delays");
    assert_ne!(refusal_delays(12, 8).1, delays, "other seed, other delays");
    // A successful CONNACK resets the backoff to its first step.
    harness.open_transport();
    harness.receive(connack(false));
    harness.client.handle_transport_lost(harness.now);
    let delay = harness.client.poll_timeout().unwrap() - harness.now;
    assert!(delay <= Duration::from_millis(200), "{delay:?}");
}

#[test]
fn server_disconnect_is_reported_and_followed_by_a_reconnect() {
    let mut harness = Harness::new(config(ProtocolVersion::V5));
    harness.establish(false);
    harness.receive(Packet::Disconnect(Disconnect::with_reason(ReasonCode::SERVER_SHUTTING_DOWN)));
    assert_eq!(
        harness.events(),
        vec![
            ClientEvent::CloseTransport,
            ClientEvent::Disconnected { reason: Some(ReasonCode::SERVER_SHUTTING_DOWN) }
        ]
    );
    assert!(harness.sent().is_empty(), "no DISCONNECT answers a DISCONNECT");
    assert_eq!(harness.client.stats().server_disconnects, 1);
    // Bytes from the closed transport are ignored.
    harness.receive(Packet::PingResp);
    harness.open_transport();
    harness.receive(connack(false));
    assert!(harness.client.is_connected());
}

#[test]
fn malformed_input_closes_without_panic() {
    let mut harness = Harness::new(config(ProtocolVersion::V5));
    harness.establish(false);
    // Packet type 0 is reserved.
    harness.client.handle_bytes(harness.now, &[0x00, 0x00]);
    assert_eq!(
        harness.sent(),
        vec![Packet::Disconnect(Disconnect::with_reason(ReasonCode::MALFORMED_PACKET))]
    );
    assert_eq!(
        harness.events(),
        vec![ClientEvent::CloseTransport, ClientEvent::Disconnected { reason: None }]
    );
    assert_eq!(harness.client.stats().protocol_errors, 1);
    // A packet other than CONNACK first is a protocol error too.
    harness.open_transport();
    harness.receive(Packet::PingResp);
    assert_eq!(harness.sent(), vec![Packet::Disconnect(Disconnect::with_reason(ReasonCode::PROTOCOL_ERROR))]);
    assert_eq!(harness.events(), vec![ClientEvent::CloseTransport]);
    // A server-only packet from the server is a protocol error.
    harness.establish(false);
    harness.receive(Packet::PingReq);
    assert!(!harness.client.is_connected());
    assert_eq!(harness.client.stats().protocol_errors, 3);
}

#[test]
fn session_present_after_a_clean_start_is_a_protocol_error() {
    let mut harness =
        Harness::new(ClientConfig { session_expiry_interval_secs: 0, ..config(ProtocolVersion::V311) });
    harness.client.connect(harness.now);
    let connect = harness.open_transport();
    assert!(connect.clean_start);
    harness.receive(connack(true));
    assert_eq!(harness.events(), vec![ClientEvent::CloseTransport]);
    assert!(harness.sent().is_empty(), "MQTT 3.1.1 has no DISCONNECT reason to send");
    assert_eq!(harness.client.stats().protocol_errors, 1);
    assert_eq!(harness.client.stats().connects, 0);
}

#[test]
fn shared_config_clients_are_independent() {
    let shared = Arc::new(config(ProtocolVersion::V5));
    let mut first = Client::with_shared_config(Arc::clone(&shared), 1);
    let second = Client::with_shared_config(Arc::clone(&shared), 2);
    assert_eq!(Arc::strong_count(&shared), 3);
    first.connect(Time::ZERO);
    assert_eq!(first.poll_event(), Some(ClientEvent::OpenTransport));
    assert!(!second.is_connected());
    assert_eq!(second.poll_timeout(), None);
    assert!(Arc::ptr_eq(first.config(), second.config()));
    // Each device of a fleet connects under its own id while sharing the config.
    let mut device = Harness::new(config(ProtocolVersion::V311));
    device.client = Client::with_shared_config(Arc::clone(&shared), 3).with_client_id("device-77");
    device.protocol = ProtocolVersion::V5;
    assert_eq!(device.client.client_id(), "device-77");
    device.client.connect(device.now);
    assert_eq!(device.open_transport().client_id, "device-77");
    // A v5 server's assigned id is ignored for a client that sent its own.
    device.receive(connack_with(Properties {
        assigned_client_identifier: Some("other".into()),
        ..Properties::default()
    }));
    assert_eq!(device.client.client_id(), "device-77");
    assert!(matches!(
        shared.validate_client_id("nul\0char"),
        Err(ConfigError::Connect(EncodeError::NullCharacter { .. }))
    ));
}

#[test]
fn subscribe_and_unsubscribe_are_acked_and_resent_until_acked() {
    let mut harness = Harness::new(config(ProtocolVersion::V5));
    // Requested before connecting: sent right after CONNACK.
    let subscribe_token = harness
        .client
        .subscribe(
            harness.now,
            vec![Subscription {
                topic_filter: "cmd/#".into(),
                options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            }],
        )
        .unwrap();
    let sent = harness.establish(false);
    let [Packet::Subscribe(subscribe)] = sent.as_slice() else { panic!("expected SUBSCRIBE: {sent:?}") };
    assert_eq!(subscribe.subscriptions[0].topic_filter, "cmd/#");
    // Lost before the ack: re-sent on reconnect.
    harness.client.handle_transport_lost(harness.now);
    harness.events();
    let sent = harness.establish(true);
    assert!(matches!(sent.as_slice(), [Packet::Subscribe(again)] if again.packet_id == subscribe.packet_id));
    harness.receive(Packet::SubAck(SubAck {
        packet_id: subscribe.packet_id,
        reason_codes: vec![ReasonCode::GRANTED_QOS_1],
        properties: Properties::default(),
    }));
    assert_eq!(
        harness.events(),
        vec![ClientEvent::Subscribed {
            token: subscribe_token,
            reason_codes: vec![ReasonCode::GRANTED_QOS_1]
        }]
    );
    let unsubscribe_token = harness.client.unsubscribe(harness.now, vec!["cmd/#".into()]).unwrap();
    let sent = harness.sent();
    let [Packet::Unsubscribe(unsubscribe)] = sent.as_slice() else {
        panic!("expected UNSUBSCRIBE: {sent:?}")
    };
    harness.receive(Packet::UnsubAck(UnsubAck {
        packet_id: unsubscribe.packet_id,
        reason_codes: vec![ReasonCode::SUCCESS],
        properties: Properties::default(),
    }));
    assert_eq!(
        harness.events(),
        vec![ClientEvent::Unsubscribed { token: unsubscribe_token, reason_codes: vec![ReasonCode::SUCCESS] }]
    );
    // An ack of the wrong kind or with the wrong number of codes is a protocol error.
    let token = harness.client.unsubscribe(harness.now, vec!["a".into(), "b".into()]).unwrap();
    let sent = harness.sent();
    let [Packet::Unsubscribe(unsubscribe)] = sent.as_slice() else {
        panic!("expected UNSUBSCRIBE: {sent:?}")
    };
    harness.receive(Packet::UnsubAck(UnsubAck {
        packet_id: unsubscribe.packet_id,
        reason_codes: vec![ReasonCode::SUCCESS],
        properties: Properties::default(),
    }));
    assert!(!harness.client.is_connected());
    assert_eq!(harness.client.stats().protocol_errors, 1);
    harness.events();
    // The request survives and is answered on the next connection.
    let sent = harness.establish(true);
    assert!(
        matches!(sent.as_slice(), [Packet::Unsubscribe(again)] if again.packet_id == unsubscribe.packet_id)
    );
    harness.receive(Packet::SubAck(SubAck {
        packet_id: unsubscribe.packet_id,
        reason_codes: vec![ReasonCode::SUCCESS; 2],
        properties: Properties::default(),
    }));
    assert!(!harness.client.is_connected());
    harness.events();
    harness.establish(true);
    harness.receive(Packet::UnsubAck(UnsubAck {
        packet_id: unsubscribe.packet_id,
        reason_codes: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
        properties: Properties::default(),
    }));
    assert_eq!(
        harness.events(),
        vec![ClientEvent::Unsubscribed {
            token,
            reason_codes: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
        }]
    );
    // Invalid requests are refused up front.
    assert_eq!(harness.client.subscribe(harness.now, Vec::new()), Err(ClientError::NoTopicFilters));
    assert!(matches!(
        harness.client.unsubscribe(harness.now, vec!["a/#/b".into()]),
        Err(ClientError::InvalidTopicFilter { .. })
    ));
}

#[test]
fn request_limit_is_enforced() {
    let mut harness = Harness::new(config(ProtocolVersion::V311));
    for _ in 0..REQUESTS_IN_FLIGHT_LIMIT {
        harness.client.unsubscribe(harness.now, vec!["a".into()]).unwrap();
    }
    assert_eq!(
        harness.client.unsubscribe(harness.now, vec!["a".into()]),
        Err(ClientError::TooManyRequests { limit: REQUESTS_IN_FLIGHT_LIMIT })
    );
    assert_eq!(harness.client.stats().requests_dropped_limit, 1);
    // Requests made before connecting all go out, in order, once connected.
    let sent = harness.establish(false);
    assert_eq!(sent.len(), REQUESTS_IN_FLIGHT_LIMIT);
    assert!(sent.iter().all(|packet| matches!(packet, Packet::Unsubscribe(_))));
}

#[test]
fn disconnect_sends_disconnect_then_close_and_never_reconnects() {
    let mut harness = Harness::new(config(ProtocolVersion::V5));
    harness.establish(false);
    harness.client.disconnect(harness.now);
    assert_eq!(harness.sent(), vec![Packet::Disconnect(Disconnect::normal())]);
    assert_eq!(
        harness.events(),
        vec![ClientEvent::CloseTransport, ClientEvent::Disconnected { reason: None }]
    );
    assert_eq!(harness.client.poll_timeout(), None);
    harness.client.handle_transport_lost(harness.now);
    harness.advance(Duration::from_secs(3_600));
    assert!(harness.events().is_empty());
    // `connect` starts again.
    harness.client.connect(harness.now);
    assert_eq!(harness.events(), vec![ClientEvent::OpenTransport]);
}

#[test]
fn server_limits_fail_publishes_that_exceed_them() {
    let mut harness = Harness::new(config(ProtocolVersion::V5));
    let qos2 =
        harness.client.publish(harness.now, OutgoingPublish::new("t", &b"x"[..], QoS::ExactlyOnce)).unwrap();
    let retained = harness
        .client
        .publish(
            harness.now,
            OutgoingPublish { retain: true, ..OutgoingPublish::new("t", &b"x"[..], QoS::AtMostOnce) },
        )
        .unwrap();
    let big = harness
        .client
        .publish(harness.now, OutgoingPublish::new("t", vec![7u8; 500], QoS::AtMostOnce))
        .unwrap();
    harness.client.connect(harness.now);
    harness.open_transport();
    harness.receive(connack_with(Properties {
        maximum_qos: Some(QoS::AtLeastOnce),
        retain_available: Some(false),
        maximum_packet_size: Some(100),
        ..Properties::default()
    }));
    assert!(harness.sent().is_empty());
    assert_eq!(
        harness.events(),
        vec![
            ClientEvent::Connected { session_present: false },
            ClientEvent::PublishFailed { token: qos2, reason: ReasonCode::QOS_NOT_SUPPORTED },
            ClientEvent::PublishFailed { token: retained, reason: ReasonCode::RETAIN_NOT_SUPPORTED },
            ClientEvent::PublishFailed { token: big, reason: ReasonCode::PACKET_TOO_LARGE },
        ]
    );
    assert_eq!(harness.client.stats().publishes_failed, 3);
}

/// The bound the simulator's memory budget relies on (see the module docs).
const CLIENT_SIZE_BYTES_LIMIT: usize = 512;

#[test]
fn client_stays_small_and_idle_clients_hold_no_buffers() {
    let size = std::mem::size_of::<Client>();
    assert!(size <= CLIENT_SIZE_BYTES_LIMIT, "Client is {size} bytes");
    let mut harness =
        Harness::new(ClientConfig { session_expiry_interval_secs: 60, ..config(ProtocolVersion::V5) });
    harness.establish(false);
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        harness.client.publish(harness.now, OutgoingPublish::new("t", &b"x"[..], qos)).unwrap();
    }
    for packet in harness.sent() {
        if let Packet::Publish(Publish { qos: QoS::AtLeastOnce, packet_id: Some(packet_id), .. }) = packet {
            harness.receive(Packet::PubAck(PubReply::success(packet_id)));
        }
        if let Packet::Publish(Publish { qos: QoS::ExactlyOnce, packet_id: Some(packet_id), .. }) = packet {
            harness.receive(Packet::PubRec(PubReply::success(packet_id)));
            harness.receive(Packet::PubComp(PubReply::success(packet_id)));
        }
    }
    harness.receive(Packet::Publish(inbound_publish(QoS::ExactlyOnce, Some(1), "t", b"x")));
    harness.receive(Packet::PubRel(PubReply::success(id(1))));
    harness.sent();
    harness.events();
    let client = &harness.client;
    assert_eq!(client.read_buffer.capacity(), 0);
    assert_eq!(client.write_buffer.capacity(), 0);
    assert_eq!(client.events.capacity(), 0);
    assert_eq!(client.pending.capacity(), 0);
    assert!(client.inflight.is_empty());
    assert!(client.occasional.is_none());
}

/// One step of a random run in the property test below.
#[derive(Clone, Debug)]
enum Step {
    Publish {
        qos: QoS,
    },
    /// The server acks (or advances) the inflight message at this index, if any.
    ServerAck {
        index: usize,
    },
    /// The server sends a QoS 2 message under this packet id: a new one when the id is free, a
    /// retransmission (DUP=1) of the same message while it is unreleased.
    ServerSendsQos2 {
        packet_id: u16,
    },
    /// The server releases the inbound QoS 2 message with this id, if it is unreleased.
    ServerReleases {
        packet_id: u16,
    },
    TransportLost,
    /// The server ends the connection with a DISCONNECT.
    ServerDisconnects,
    /// The server refuses the next CONNECT (a reconnect with backoff follows).
    ServerRefusesNextConnect,
    /// The server stops answering PINGREQ until the next connection (dead-peer detection).
    ServerGoesSilent,
    /// The server forgets the session at the next connect.
    ServerForgetsSession,
    Advance {
        millis: u64,
    },
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)]
            .prop_map(|qos| Step::Publish { qos }),
        4 => (0usize..8).prop_map(|index| Step::ServerAck { index }),
        2 => (1u16..4).prop_map(|packet_id| Step::ServerSendsQos2 { packet_id }),
        1 => (1u16..4).prop_map(|packet_id| Step::ServerReleases { packet_id }),
        1 => Just(Step::TransportLost),
        1 => Just(Step::ServerDisconnects),
        1 => Just(Step::ServerRefusesNextConnect),
        1 => Just(Step::ServerGoesSilent),
        1 => Just(Step::ServerForgetsSession),
        2 => (0u64..20_000).prop_map(|millis| Step::Advance { millis }),
    ]
}

/// A scripted server for the property test: it connects whatever the client opens, records the
/// QoS 1/2 publishes it has not completed, and keeps or loses the session as told.
struct FakeServer {
    harness: Harness,
    session_present_next: bool,
    refuse_next_connect: bool,
    silent: bool,
    /// Packet ids the server received and has not completed, in arrival order, with their QoS.
    open_publishes: Vec<(PacketId, QoS)>,
    accepted: BTreeSet<PublishToken>,
    completed: BTreeSet<PublishToken>,
    /// Inbound QoS 2 messages the server sent and has not released: packet id -> payload number.
    unreleased: Vec<(PacketId, u64)>,
    /// Payload numbers of inbound QoS 2 messages the server sent, and those the client delivered.
    inbound_sent: BTreeSet<u64>,
    inbound_delivered: BTreeSet<u64>,
}

impl FakeServer {
    /// Lets the client and the server exchange everything outstanding.
    fn settle(&mut self) {
        loop {
            let events = self.harness.events();
            let mut progressed = !events.is_empty();
            for event in events {
                self.observe(event);
            }
            if self.harness.client.is_connected() {
                for packet in self.harness.sent() {
                    progressed = true;
                    if packet == Packet::PingReq && !self.silent {
                        self.harness.receive(Packet::PingResp);
                    }
                    if let Packet::Publish(Publish { qos, packet_id: Some(packet_id), .. }) = packet
                        && !self.open_publishes.iter().any(|(open, _)| *open == packet_id)
                    {
                        self.open_publishes.push((packet_id, qos));
                    }
                }
            }
            if !progressed {
                return;
            }
        }
    }

    /// Moves time forward one timer at a time, letting the server answer in between.
    fn advance(&mut self, duration: Duration) {
        let target = self.harness.now + duration;
        while let Some(deadline) = self.harness.client.poll_timeout() {
            if deadline > target {
                break;
            }
            self.harness.now = self.harness.now.max(deadline);
            self.harness.client.handle_timeout(self.harness.now);
            self.settle();
        }
        self.harness.now = target;
    }

    fn observe(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::OpenTransport => {
                self.harness.server_read_buffer.clear();
                self.harness.client.handle_transport_connected(self.harness.now);
                self.harness.sent();
                self.silent = false;
                if self.refuse_next_connect {
                    self.refuse_next_connect = false;
                    self.harness.receive(Packet::ConnAck(ConnAck {
                        session_present: false,
                        reason_code: ReasonCode::SERVER_BUSY,
                        properties: Properties::default(),
                    }));
                    return;
                }
                if !self.session_present_next {
                    self.open_publishes.clear();
                    self.unreleased.clear();
                }
                self.harness.receive(connack(self.session_present_next));
                self.session_present_next = true;
            }
            ClientEvent::PublishSent { token }
            | ClientEvent::PublishAcked { token, .. }
            | ClientEvent::PublishFailed { token, .. } => {
                assert!(self.accepted.contains(&token), "event for unknown token {token:?}");
                assert!(self.completed.insert(token), "token {token:?} completed twice");
            }
            ClientEvent::Message(publish) if publish.qos == QoS::ExactlyOnce => {
                let number = u64::from_be_bytes(publish.payload[..].try_into().expect("8-byte payload"));
                assert!(self.inbound_sent.contains(&number), "delivered a message never sent");
                assert!(self.inbound_delivered.insert(number), "QoS 2 message {number} delivered twice");
            }
            _ => {}
        }
    }

    fn check_invariants(&self) {
        let client = &self.harness.client;
        let pending: BTreeSet<PublishToken> = client.pending.iter().map(|pending| pending.token).collect();
        let inflight: BTreeSet<PublishToken> = client.inflight.iter().map(|(_, entry)| entry.token).collect();
        assert_eq!(pending.len(), client.pending.len(), "a token is pending twice");
        assert!(pending.is_disjoint(&inflight));
        assert!(pending.is_disjoint(&self.completed));
        assert!(inflight.is_disjoint(&self.completed));
        // Never silently forgotten: every accepted publish is completed, pending or inflight.
        let mut accounted = self.completed.clone();
        accounted.extend(pending);
        accounted.extend(inflight);
        assert_eq!(accounted, self.accepted);
        assert!(client.inflight_len() <= client.inflight_window());
        let pending_bound = client.config.pending_publishes_limit + usize::from(client.config.inflight_limit);
        assert!(client.pending_len() <= pending_bound);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn random_runs_never_lose_or_double_report_a_publish(
        steps in proptest::collection::vec(step_strategy(), 1..80),
        protocol in prop_oneof![Just(ProtocolVersion::V311), Just(ProtocolVersion::V5)],
        seed in any::<u64>(),
    ) {
        let harness = Harness::with_seed(
            ClientConfig {
                inflight_limit: 3,
                pending_publishes_limit: 5,
                session_expiry_interval_secs: 600,
                clean_start: false,
                ..config(protocol)
            },
            seed,
        );
        let mut server = FakeServer {
            harness,
            session_present_next: false,
            refuse_next_connect: false,
            silent: false,
            open_publishes: Vec::new(),
            accepted: BTreeSet::new(),
            completed: BTreeSet::new(),
            unreleased: Vec::new(),
            inbound_sent: BTreeSet::new(),
            inbound_delivered: BTreeSet::new(),
        };
        server.harness.client.connect(server.harness.now);
        server.settle();
        for step in steps {
            let now = server.harness.now;
            match step {
                Step::Publish { qos } => {
                    match server.harness.client.publish(now, OutgoingPublish::new("t", &b"x"[..], qos)) {
                        Ok(token) => assert!(server.accepted.insert(token)),
                        Err(PublishError::QueueFull { .. }) => {}
                        Err(other) => panic!("unexpected {other:?}"),
                    }
                }
                Step::ServerAck { index } => {
                    if server.harness.client.is_connected() && index < server.open_publishes.len() {
                        let (packet_id, qos) = server.open_publishes.remove(index);
                        if qos == QoS::AtLeastOnce {
                            server.harness.receive(Packet::PubAck(PubReply::success(packet_id)));
                        } else {
                            server.harness.receive(Packet::PubRec(PubReply::success(packet_id)));
                            server.harness.receive(Packet::PubComp(PubReply::success(packet_id)));
                        }
                    }
                }
                Step::ServerSendsQos2 { packet_id } => {
                    if server.harness.client.is_connected() {
                        let packet_id = id(packet_id);
                        let open = server.unreleased.iter().find(|(open, _)| *open == packet_id).copied();
                        let (dup, number) = match open {
                            Some((_, number)) => (true, number),
                            None => {
                                let number = server.inbound_sent.len() as u64;
                                server.inbound_sent.insert(number);
                                server.unreleased.push((packet_id, number));
                                (false, number)
                            }
                        };
                        server.harness.receive(Packet::Publish(Publish {
                            dup,
                            packet_id: Some(packet_id),
                            payload: Bytes::copy_from_slice(&number.to_be_bytes()),
                            ..inbound_publish(QoS::ExactlyOnce, None, "in", b"")
                        }));
                    }
                }
                Step::ServerReleases { packet_id } => {
                    let position = server.unreleased.iter().position(|(open, _)| open.get() == packet_id);
                    if server.harness.client.is_connected() && let Some(position) = position {
                        server.unreleased.remove(position);
                        server.harness.receive(Packet::PubRel(PubReply::success(id(packet_id))));
                    }
                }
                Step::TransportLost => server.harness.client.handle_transport_lost(now),
                Step::ServerDisconnects => {
                    if server.harness.client.is_connected() {
                        let disconnect = Disconnect::with_reason(ReasonCode::SERVER_SHUTTING_DOWN);
                        if protocol == ProtocolVersion::V5 {
                            server.harness.receive(Packet::Disconnect(disconnect));
                        } else {
                            // MQTT 3.1.1 servers just close the connection.
                            server.harness.client.handle_transport_lost(now);
                        }
                    }
                }
                Step::ServerRefusesNextConnect => server.refuse_next_connect = true,
                Step::ServerGoesSilent => server.silent = true,
                Step::ServerForgetsSession => server.session_present_next = false,
                Step::Advance { millis } => server.advance(Duration::from_millis(millis)),
            }
            server.settle();
            server.check_invariants();
        }
        // Drain: stay connected and ack everything until nothing is left.
        for _ in 0..200 {
            if server.completed.len() == server.accepted.len() {
                break;
            }
            if !server.harness.client.is_connected() {
                server.advance(Duration::from_secs(1));
            } else if let Some((packet_id, qos)) = server.open_publishes.first().copied() {
                server.open_publishes.remove(0);
                if qos == QoS::AtLeastOnce {
                    server.harness.receive(Packet::PubAck(PubReply::success(packet_id)));
                } else {
                    server.harness.receive(Packet::PubRec(PubReply::success(packet_id)));
                    server.harness.receive(Packet::PubComp(PubReply::success(packet_id)));
                }
            }
            server.settle();
            server.check_invariants();
        }
        prop_assert_eq!(&server.completed, &server.accepted);
        server.settle();
        prop_assert_eq!(&server.inbound_delivered, &server.inbound_sent);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
        protocol in prop_oneof![Just(ProtocolVersion::V311), Just(ProtocolVersion::V5)],
    ) {
        let mut harness = Harness::new(config(protocol));
        harness.establish(false);
        for chunk in chunks {
            harness.client.handle_bytes(harness.now, &chunk);
            harness.events();
            while harness.client.poll_transmit().is_some() {}
            if !harness.client.is_connected() {
                break;
            }
        }
    }
}

#[test]
fn a_shrinking_server_window_retransmits_everything_and_then_waits() {
    let mut harness = Harness::new(ClientConfig {
        inflight_limit: 4,
        pending_publishes_limit: 2,
        ..config(ProtocolVersion::V5)
    });
    harness.establish(false);
    for _ in 0..6 {
        harness.client.publish(harness.now, OutgoingPublish::new("t", &b"x"[..], QoS::AtLeastOnce)).unwrap();
    }
    assert_eq!(publish_ids(&harness.sent()).len(), 4);
    assert_eq!(harness.client.pending_len(), 2);
    // The server comes back with the session and a Receive Maximum of 1.
    harness.client.handle_transport_lost(harness.now);
    harness.open_transport();
    harness.receive(Packet::ConnAck(ConnAck {
        session_present: true,
        reason_code: ReasonCode::SUCCESS,
        properties: Properties { receive_maximum: Some(1), ..Properties::default() },
    }));
    assert_eq!(publish_ids(&harness.sent()), vec![(1, true), (2, true), (3, true), (4, true)]);
    assert_eq!(harness.client.inflight_window(), 1);
    // Then it loses the session: all four go back to the queue, beyond its limit of 2.
    harness.client.handle_transport_lost(harness.now);
    harness.open_transport();
    harness.receive(Packet::ConnAck(ConnAck {
        session_present: false,
        reason_code: ReasonCode::SUCCESS,
        properties: Properties { receive_maximum: Some(1), ..Properties::default() },
    }));
    assert_eq!(publish_ids(&harness.sent()).len(), 1, "new sends respect the window of 1");
    assert_eq!(harness.client.pending_len(), 5);
    assert_eq!(
        harness.client.publish(harness.now, OutgoingPublish::new("t", &b"x"[..], QoS::AtLeastOnce)),
        Err(PublishError::QueueFull { limit: 2 })
    );
}

#[test]
fn inbound_packet_above_our_maximum_is_refused_with_packet_too_large() {
    let mut harness = Harness::new(ClientConfig { max_packet_size_bytes: 64, ..config(ProtocolVersion::V5) });
    harness.establish(false);
    let big = inbound_publish(QoS::AtMostOnce, None, "t", &[0u8; 100]);
    let mut bytes = BytesMut::new();
    codec::encode(&Packet::Publish(big), ProtocolVersion::V5, &mut bytes).unwrap();
    // Only the fixed header arrives: the size is known and refused before the body is buffered.
    harness.client.handle_bytes(harness.now, &bytes[..2]);
    assert_eq!(
        harness.sent(),
        vec![Packet::Disconnect(Disconnect::with_reason(ReasonCode::PACKET_TOO_LARGE))]
    );
    assert_eq!(
        harness.events(),
        vec![ClientEvent::CloseTransport, ClientEvent::Disconnected { reason: None }]
    );
    assert_eq!(harness.client.read_buffer.capacity(), 0);
}

/// One step of a misbehaving server: any packet a server could put on the wire, with ids and
/// reason codes from small pools so that they collide with the client's state.
#[derive(Clone, Debug)]
enum Chaos {
    Publish {
        qos: QoS,
    },
    Subscribe,
    TransportLost,
    Advance {
        millis: u64,
    },
    Server(Box<Packet>),
    /// The application acks an inbound message (manual acks; refusals are fine).
    Ack {
        packet_id: u16,
    },
}

fn chaos_packet() -> impl Strategy<Value = Packet> {
    let packet_id = (1u16..6).prop_map(id);
    let reason = prop_oneof![
        5 => Just(ReasonCode::SUCCESS),
        1 => Just(ReasonCode::GRANTED_QOS_1),
        1 => Just(ReasonCode::NO_MATCHING_SUBSCRIBERS),
        1 => Just(ReasonCode::UNSPECIFIED_ERROR),
        1 => Just(ReasonCode::PACKET_IDENTIFIER_NOT_FOUND),
        1 => Just(ReasonCode::QUOTA_EXCEEDED),
    ];
    let reply = (packet_id.clone(), reason.clone()).prop_map(|(packet_id, reason_code)| PubReply {
        packet_id,
        reason_code,
        properties: Properties::default(),
    });
    let connack_properties = (
        proptest::option::of(0u16..3),
        proptest::option::of(0u32..200),
        proptest::option::of(0u16..3),
        proptest::option::of(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
        proptest::option::of("[a-z]{0,3}"),
    );
    let connack = (
        any::<bool>(),
        prop_oneof![Just(ReasonCode::SUCCESS), Just(ReasonCode::NOT_AUTHORIZED)],
        connack_properties,
    )
        .prop_map(|(session_present, reason_code, properties)| {
            let (receive_maximum, maximum_packet_size, server_keep_alive_secs, maximum_qos, assigned) =
                properties;
            let properties = Properties {
                receive_maximum,
                maximum_packet_size,
                server_keep_alive_secs,
                maximum_qos,
                assigned_client_identifier: assigned,
                ..Properties::default()
            };
            Packet::ConnAck(ConnAck { session_present, reason_code, properties })
        });
    let publish = (
        prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)],
        packet_id.clone(),
        any::<bool>(),
        proptest::option::weighted(0.2, 1u16..4),
        prop_oneof![1 => Just(String::new()), 9 => Just("t".to_owned())],
    )
        .prop_map(|(qos, packet_id, dup, topic_alias, topic)| {
            Packet::Publish(Publish {
                dup: dup && qos != QoS::AtMostOnce,
                qos,
                retain: false,
                topic,
                packet_id: (qos != QoS::AtMostOnce).then_some(packet_id),
                properties: Properties { topic_alias, ..Properties::default() },
                payload: Bytes::from_static(b"p"),
            })
        });
    let suback = (packet_id.clone(), proptest::collection::vec(reason.clone(), 0..3)).prop_map(
        |(packet_id, reason_codes)| {
            Packet::SubAck(SubAck { packet_id, reason_codes, properties: Properties::default() })
        },
    );
    let unsuback =
        (packet_id, proptest::collection::vec(reason, 0..3)).prop_map(|(packet_id, reason_codes)| {
            Packet::UnsubAck(UnsubAck { packet_id, reason_codes, properties: Properties::default() })
        });
    // Weighted towards what keeps a connection alive, so runs reach deep states.
    prop_oneof![
        1 => connack,
        6 => publish,
        6 => reply.clone().prop_map(Packet::PubAck),
        6 => reply.clone().prop_map(Packet::PubRec),
        4 => reply.clone().prop_map(Packet::PubRel),
        6 => reply.prop_map(Packet::PubComp),
        2 => suback,
        1 => unsuback,
        2 => Just(Packet::PingResp),
        1 => Just(Packet::PingReq),
        1 => Just(Packet::Disconnect(Disconnect::with_reason(ReasonCode::SERVER_BUSY))),
    ]
}

fn chaos_strategy() -> impl Strategy<Value = Chaos> {
    prop_oneof![
        3 => prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)]
            .prop_map(|qos| Chaos::Publish { qos }),
        1 => Just(Chaos::Subscribe),
        1 => Just(Chaos::TransportLost),
        2 => (0u64..30_000).prop_map(|millis| Chaos::Advance { millis }),
        8 => chaos_packet().prop_map(|packet| Chaos::Server(Box::new(packet))),
        1 => (1u16..6).prop_map(|packet_id| Chaos::Ack { packet_id }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    /// Whatever a server sends, in whatever state, the client never panics, reports each
    /// publish at most once and never forgets one.
    #[test]
    fn a_misbehaving_server_never_breaks_the_client(
        steps in proptest::collection::vec(chaos_strategy(), 1..60),
        protocol in prop_oneof![Just(ProtocolVersion::V311), Just(ProtocolVersion::V5)],
        topic_alias_maximum in 0u16..3,
        manual_acks in any::<bool>(),
    ) {
        let mut harness = Harness::new(ClientConfig {
            inflight_limit: 3,
            pending_publishes_limit: 4,
            topic_alias_maximum,
            manual_acks,
            ..config(protocol)
        });
        let mut accepted = BTreeSet::new();
        let mut completed = BTreeSet::new();
        harness.client.connect(harness.now);
        for step in steps {
            let now = harness.now;
            match step {
                Chaos::Publish { qos } => {
                    if let Ok(token) = harness.client.publish(now, OutgoingPublish::new("t", &b"x"[..], qos)) {
                        accepted.insert(token);
                    }
                }
                Chaos::Subscribe => {
                    let subscription = Subscription {
                        topic_filter: "t/#".into(),
                        options: SubscriptionOptions::with_qos(QoS::ExactlyOnce),
                    };
                    let _ = harness.client.subscribe(now, vec![subscription]);
                }
                Chaos::TransportLost => harness.client.handle_transport_lost(now),
                Chaos::Ack { packet_id } => {
                    let _ = harness.client.ack(now, id(packet_id));
                }
                Chaos::Advance { millis } => harness.advance(Duration::from_millis(millis)),
                Chaos::Server(packet) => {
                    let mut bytes = BytesMut::new();
                    // Packets this protocol version cannot carry are skipped, not sent.
                    if codec::encode(&packet, protocol, &mut bytes).is_ok() {
                        harness.client.handle_bytes(now, &bytes);
                    }
                }
            }
            // Drain until quiet: answering OpenTransport produces more events.
            loop {
                let events = harness.events();
                if events.is_empty() {
                    break;
                }
                for event in events {
                    match event {
                        ClientEvent::OpenTransport => {
                            // The server accepts most connects; chaos CONNACKs come on top.
                            harness.client.handle_transport_connected(harness.now);
                            harness.sent();
                            let session_present = protocol == ProtocolVersion::V5 && harness.client.connected_before;
                            let mut bytes = BytesMut::new();
                            codec::encode(&connack(session_present), protocol, &mut bytes).unwrap();
                            harness.client.handle_bytes(harness.now, &bytes);
                        }
                        ClientEvent::PublishSent { token }
                        | ClientEvent::PublishAcked { token, .. }
                        | ClientEvent::PublishFailed { token, .. } => {
                            prop_assert!(accepted.contains(&token));
                            prop_assert!(completed.insert(token), "token {:?} reported twice", token);
                        }
                        _ => {}
                    }
                }
            }
            // Whatever the client wrote must be well-formed.
            harness.sent();
            let client = &harness.client;
            let mut accounted = completed.clone();
            accounted.extend(client.pending.iter().map(|pending| pending.token));
            accounted.extend(client.inflight.iter().map(|(_, entry)| entry.token));
            prop_assert_eq!(&accounted, &accepted, "a publish was forgotten");
            prop_assert_eq!(accounted.len(), completed.len() + client.pending_len() + client.inflight_len());
        }
    }
}

#[test]
fn disconnect_in_every_state_stops_cleanly_and_connect_resumes() {
    let mut harness = Harness::new(config(ProtocolVersion::V5));
    // Opening: the attempt is abandoned.
    harness.client.connect(harness.now);
    assert_eq!(harness.events(), vec![ClientEvent::OpenTransport]);
    harness.client.disconnect(harness.now);
    assert_eq!(harness.events(), vec![ClientEvent::CloseTransport]);
    assert_eq!(harness.client.poll_timeout(), None);
    // Awaiting CONNACK: the transport is closed, no DISCONNECT before CONNACK.
    harness.client.connect(harness.now);
    harness.open_transport();
    harness.client.disconnect(harness.now);
    assert_eq!(harness.events(), vec![ClientEvent::CloseTransport]);
    assert!(harness.sent().is_empty());
    // A late CONNACK on the closed transport changes nothing.
    harness.receive(connack(false));
    assert!(!harness.client.is_connected());
    // Backoff: the pending reconnect is cancelled.
    harness.client.connect(harness.now);
    harness.open_transport();
    harness.client.handle_transport_lost(harness.now);
    assert!(harness.client.poll_timeout().is_some());
    harness.client.disconnect(harness.now);
    assert!(harness.events().is_empty());
    assert_eq!(harness.client.poll_timeout(), None);
    // Publishes accepted while stopped go out once `connect` is called again.
    let token =
        harness.client.publish(harness.now, OutgoingPublish::new("t", &b"x"[..], QoS::AtLeastOnce)).unwrap();
    let sent = harness.establish(false);
    assert_eq!(publish_ids(&sent).len(), 1);
    harness.receive(Packet::PubAck(PubReply::success(id(publish_ids(&sent)[0].0))));
    assert_eq!(harness.events(), vec![ClientEvent::PublishAcked { token, reason: ReasonCode::SUCCESS }]);
    assert_eq!(harness.client.stats().connect_attempts, 4);
}

#[test]
fn manual_acks_hold_puback_and_pubrec_until_the_application_acks() {
    let mut harness =
        Harness::new(ClientConfig { manual_acks: true, receive_maximum: 3, ..config(ProtocolVersion::V5) });
    harness.establish(false);
    let qos1 = inbound_publish(QoS::AtLeastOnce, Some(1), "in", b"1");
    let qos2 = inbound_publish(QoS::ExactlyOnce, Some(2), "in", b"2");
    harness.receive(Packet::Publish(qos1.clone()));
    harness.receive(Packet::Publish(qos2.clone()));
    assert_eq!(
        harness.events(),
        vec![ClientEvent::Message(qos1.clone()), ClientEvent::Message(qos2.clone())]
    );
    assert!(harness.sent().is_empty(), "nothing is acknowledged before the application says so");
    // Retransmissions of messages the application holds are neither delivered nor answered.
    harness.receive(Packet::Publish(Publish { dup: true, ..qos1.clone() }));
    harness.receive(Packet::Publish(Publish { dup: true, ..qos2.clone() }));
    assert!(harness.events().is_empty());
    assert!(harness.sent().is_empty());
    assert_eq!(harness.client.stats().duplicates_suppressed, 2);
    // The application acks: PUBACK and PUBREC go out; acking twice is refused.
    harness.client.ack(harness.now, id(1)).unwrap();
    harness.client.ack(harness.now, id(2)).unwrap();
    assert_eq!(
        harness.sent(),
        vec![Packet::PubAck(PubReply::success(id(1))), Packet::PubRec(PubReply::success(id(2)))]
    );
    assert_eq!(harness.client.ack(harness.now, id(1)), Err(AckError::NotAwaitingAck { packet_id: id(1) }));
    harness.receive(Packet::PubRel(PubReply::success(id(2))));
    assert_eq!(harness.sent(), vec![Packet::PubComp(PubReply::success(id(2)))]);
    assert!(harness.client.occasional.is_none(), "nothing left to remember");
    // Unacked QoS 1 messages count against the advertised Receive Maximum of 3.
    for packet_id in [4, 5, 6] {
        harness.receive(Packet::Publish(inbound_publish(QoS::AtLeastOnce, Some(packet_id), "in", b"x")));
    }
    assert!(harness.client.is_connected());
    harness.receive(Packet::Publish(inbound_publish(QoS::AtLeastOnce, Some(7), "in", b"x")));
    assert_eq!(
        harness.sent(),
        vec![Packet::Disconnect(Disconnect::with_reason(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED))]
    );
}

#[test]
fn manual_acks_survive_reconnects_and_die_with_the_session() {
    let mut harness = Harness::new(ClientConfig { manual_acks: true, ..config(ProtocolVersion::V311) });
    assert_eq!(
        Harness::new(config(ProtocolVersion::V5)).client.ack(Time::ZERO, id(1)),
        Err(AckError::ManualAcksOff)
    );
    harness.client = Client::new(
        ClientConfig { manual_acks: true, clean_start: false, ..config(ProtocolVersion::V311) },
        1,
    );
    harness.establish(false);
    let message = inbound_publish(QoS::AtLeastOnce, Some(9), "in", b"9");
    harness.receive(Packet::Publish(message.clone()));
    harness.events();
    // The application acks while the connection is down: the PUBACK goes out after CONNACK.
    harness.client.handle_transport_lost(harness.now);
    harness.client.ack(harness.now, id(9)).unwrap();
    assert!(harness.sent().is_empty());
    assert_eq!(harness.establish(true), vec![Packet::PubAck(PubReply::success(id(9)))]);
    // A message the session lost cannot be acked any more.
    harness.receive(Packet::Publish(inbound_publish(QoS::AtLeastOnce, Some(10), "in", b"10")));
    harness.events();
    harness.client.handle_transport_lost(harness.now);
    harness.events();
    assert!(harness.establish(false).is_empty());
    assert_eq!(harness.client.ack(harness.now, id(10)), Err(AckError::NotAwaitingAck { packet_id: id(10) }));
}
