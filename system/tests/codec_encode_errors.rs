//! Table-driven test of the encoder's refusals: each row is a packet that cannot be encoded for
//! a version, with the exact `EncodeError` expected. A refused packet leaves the output untouched.

use bytes::{Bytes, BytesMut};
use edgeproof_system::mqtt::codec::{EncodeError, encode, encoded_len};
use edgeproof_system::mqtt::topic::TopicError;
use edgeproof_system::mqtt::{
    Auth, ConnAck, Connect, Disconnect, Packet, PacketId, Properties, ProtocolVersion, PubReply, Publish,
    QoS, ReasonCode, SubAck, Subscribe, Subscription, SubscriptionOptions, UnsubAck, Unsubscribe,
};

use EncodeError as E;
use ProtocolVersion::{V5, V311};

fn id(value: u16) -> PacketId {
    PacketId::new(value).unwrap()
}

fn connect(version: ProtocolVersion) -> Connect {
    Connect {
        protocol: version,
        clean_start: true,
        keep_alive_secs: 10,
        client_id: "c".into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

fn publish(qos: QoS, packet_id: Option<PacketId>) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: "t".into(),
        packet_id,
        properties: Properties::default(),
        payload: Bytes::from_static(b"p"),
    }
}

fn subscribe(filter: &str, options: SubscriptionOptions) -> Subscribe {
    Subscribe {
        packet_id: id(1),
        subscriptions: vec![Subscription { topic_filter: filter.into(), options }],
        properties: Properties::default(),
    }
}

fn rows() -> Vec<(&'static str, Packet, ProtocolVersion, EncodeError)> {
    let qos1 = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    vec![
        (
            "client id longer than 65,535 bytes",
            Packet::Connect(Box::new(Connect { client_id: "x".repeat(65_536), ..connect(V311) })),
            V311,
            E::StringTooLong { field: "client identifier", len_bytes: 65_536 },
        ),
        (
            "password longer than 65,535 bytes",
            Packet::Connect(Box::new(Connect {
                username: Some("u".into()),
                password: Some(Bytes::from(vec![0; 70_000])),
                ..connect(V311)
            })),
            V311,
            E::BinaryTooLong { field: "password", len_bytes: 70_000 },
        ),
        (
            "client id with U+0000",
            Packet::Connect(Box::new(Connect { client_id: "a\0".into(), ..connect(V5) })),
            V5,
            E::NullCharacter { field: "client identifier" },
        ),
        (
            "CONNECT for v5 encoded as 3.1.1",
            Packet::Connect(Box::new(connect(V5))),
            V311,
            E::ProtocolMismatch { connect: V5, requested: V311 },
        ),
        (
            "3.1.1 password without user name",
            Packet::Connect(Box::new(Connect { password: Some(Bytes::from_static(b"pw")), ..connect(V311) })),
            V311,
            E::PasswordWithoutUsername,
        ),
        (
            "receive maximum 0",
            Packet::Connect(Box::new(Connect {
                properties: Properties { receive_maximum: Some(0), ..Properties::default() },
                ..connect(V5)
            })),
            V5,
            E::InvalidPropertyValue { id: 0x21, reason: "must not be zero" },
        ),
        (
            "will delay in CONNECT properties",
            Packet::Connect(Box::new(Connect {
                properties: Properties { will_delay_interval_secs: Some(1), ..Properties::default() },
                ..connect(V5)
            })),
            V5,
            E::PropertyNotAllowed { id: 0x18, packet: "CONNECT" },
        ),
        (
            "CONNACK with session present and an error",
            Packet::ConnAck(ConnAck {
                session_present: true,
                reason_code: ReasonCode::NOT_AUTHORIZED,
                properties: Properties::default(),
            }),
            V5,
            E::SessionPresentWithError,
        ),
        (
            "CONNACK with a DISCONNECT-only code",
            Packet::ConnAck(ConnAck {
                session_present: false,
                reason_code: ReasonCode::SERVER_SHUTTING_DOWN,
                properties: Properties::default(),
            }),
            V5,
            E::InvalidReasonCode { packet: "CONNACK", code: 0x8B },
        ),
        (
            "maximum QoS 2 in CONNACK",
            Packet::ConnAck(ConnAck {
                session_present: false,
                reason_code: ReasonCode::SUCCESS,
                properties: Properties { maximum_qos: Some(QoS::ExactlyOnce), ..Properties::default() },
            }),
            V5,
            E::InvalidPropertyValue { id: 0x24, reason: "maximum QoS is not 0 or 1" },
        ),
        (
            "QoS 1 PUBLISH without packet id",
            Packet::Publish(publish(QoS::AtLeastOnce, None)),
            V311,
            E::PacketIdMismatch { qos: 1, has_packet_id: false },
        ),
        (
            "QoS 0 PUBLISH with packet id",
            Packet::Publish(publish(QoS::AtMostOnce, Some(id(1)))),
            V5,
            E::PacketIdMismatch { qos: 0, has_packet_id: true },
        ),
        (
            "QoS 0 PUBLISH with DUP",
            Packet::Publish(Publish { dup: true, ..publish(QoS::AtMostOnce, None) }),
            V311,
            E::DupWithQoS0,
        ),
        (
            "PUBLISH topic with +",
            Packet::Publish(Publish { topic: "a/+".into(), ..publish(QoS::AtMostOnce, None) }),
            V5,
            E::TopicNameInvalid(TopicError::WildcardInName),
        ),
        (
            "3.1.1 PUBLISH with an empty topic",
            Packet::Publish(Publish { topic: String::new(), ..publish(QoS::AtMostOnce, None) }),
            V311,
            E::TopicNameInvalid(TopicError::Empty),
        ),
        (
            "v5 PUBLISH with an empty topic and no alias",
            Packet::Publish(Publish { topic: String::new(), ..publish(QoS::AtMostOnce, None) }),
            V5,
            E::EmptyTopicWithoutAlias,
        ),
        (
            "PUBLISH properties under 3.1.1",
            Packet::Publish(Publish {
                properties: Properties { content_type: Some("x".into()), ..Properties::default() },
                ..publish(QoS::AtMostOnce, None)
            }),
            V311,
            E::NotInV311 { packet: "PUBLISH", field: "properties" },
        ),
        (
            "subscription identifier above the maximum",
            Packet::Publish(Publish {
                properties: Properties {
                    subscription_identifiers: vec![268_435_456],
                    ..Properties::default()
                },
                ..publish(QoS::AtMostOnce, None)
            }),
            V5,
            E::InvalidPropertyValue { id: 0x0B, reason: "subscription identifier outside 1..=268,435,455" },
        ),
        (
            "PUBACK with a SUBACK-only code",
            Packet::PubAck(PubReply {
                reason_code: ReasonCode::TOPIC_FILTER_INVALID,
                ..PubReply::success(id(1))
            }),
            V5,
            E::InvalidReasonCode { packet: "PUBACK", code: 0x8F },
        ),
        (
            "3.1.1 PUBREC with a reason code",
            Packet::PubRec(PubReply { reason_code: ReasonCode(0x10), ..PubReply::success(id(1)) }),
            V311,
            E::NotInV311 { packet: "PUBREC", field: "reason code" },
        ),
        (
            "SUBSCRIBE without filters",
            Packet::Subscribe(Subscribe {
                packet_id: id(1),
                subscriptions: vec![],
                properties: Properties::default(),
            }),
            V311,
            E::NoTopicFilters,
        ),
        (
            "SUBSCRIBE filter with # not last",
            Packet::Subscribe(subscribe("a/#/b", qos1)),
            V311,
            E::TopicFilterInvalid(TopicError::MultiLevelWildcardNotLast),
        ),
        (
            "3.1.1 SUBSCRIBE with no local",
            Packet::Subscribe(subscribe("a", SubscriptionOptions { no_local: true, ..qos1 })),
            V311,
            E::NotInV311 { packet: "SUBSCRIBE", field: "v5 subscription options" },
        ),
        (
            "no local on a shared subscription",
            Packet::Subscribe(subscribe("$share/g/a", SubscriptionOptions { no_local: true, ..qos1 })),
            V5,
            E::NoLocalOnSharedSubscription,
        ),
        (
            "two subscription identifiers in SUBSCRIBE",
            Packet::Subscribe(Subscribe {
                properties: Properties { subscription_identifiers: vec![1, 2], ..Properties::default() },
                ..subscribe("a", qos1)
            }),
            V5,
            E::InvalidPropertyValue {
                id: 0x0B,
                reason: "a SUBSCRIBE carries at most one subscription identifier",
            },
        ),
        (
            "SUBACK without codes",
            Packet::SubAck(SubAck {
                packet_id: id(1),
                reason_codes: vec![],
                properties: Properties::default(),
            }),
            V5,
            E::NoReasonCodes,
        ),
        (
            "3.1.1 SUBACK with a v5-only code",
            Packet::SubAck(SubAck {
                packet_id: id(1),
                reason_codes: vec![ReasonCode::NOT_AUTHORIZED],
                properties: Properties::default(),
            }),
            V311,
            E::InvalidReasonCode { packet: "SUBACK", code: 0x87 },
        ),
        (
            "UNSUBSCRIBE filter a+",
            Packet::Unsubscribe(Unsubscribe {
                packet_id: id(1),
                topic_filters: vec!["a+".into()],
                properties: Properties::default(),
            }),
            V5,
            E::TopicFilterInvalid(TopicError::SingleLevelWildcardNotAlone),
        ),
        (
            "3.1.1 UNSUBACK with reason codes",
            Packet::UnsubAck(UnsubAck {
                packet_id: id(1),
                reason_codes: vec![ReasonCode::SUCCESS],
                properties: Properties::default(),
            }),
            V311,
            E::NotInV311 { packet: "UNSUBACK", field: "reason codes" },
        ),
        (
            "3.1.1 DISCONNECT with a reason",
            Packet::Disconnect(Disconnect::with_reason(ReasonCode::SERVER_SHUTTING_DOWN)),
            V311,
            E::NotInV311 { packet: "DISCONNECT", field: "reason code" },
        ),
        (
            "DISCONNECT with a CONNACK-only code",
            Packet::Disconnect(Disconnect::with_reason(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION)),
            V5,
            E::InvalidReasonCode { packet: "DISCONNECT", code: 0x84 },
        ),
        (
            "AUTH under 3.1.1",
            Packet::Auth(Auth { reason_code: ReasonCode::SUCCESS, properties: Properties::default() }),
            V311,
            E::NotInV311 { packet: "AUTH", field: "the packet itself" },
        ),
        (
            "authentication data without method",
            Packet::Auth(Auth {
                reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
                properties: Properties {
                    authentication_data: Some(Bytes::from_static(b"d")),
                    ..Properties::default()
                },
            }),
            V5,
            E::InvalidPropertyValue { id: 0x16, reason: "authentication data without authentication method" },
        ),
    ]
}

#[test]
fn invalid_packets_are_refused_with_the_expected_error() {
    for (name, packet, version, expected) in rows() {
        assert_eq!(encoded_len(&packet, version), Err(expected.clone()), "row {name:?}");
        let mut out = BytesMut::from(&b"prefix"[..]);
        assert_eq!(encode(&packet, version, &mut out), Err(expected), "row {name:?}");
        assert_eq!(&out[..], b"prefix", "row {name:?}: a refused packet must not write");
    }
}
