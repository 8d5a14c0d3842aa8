//! The MQTT packet model: every control packet of MQTT 3.1.1 and 5.0 as plain data.
//!
//! This module owns the in-memory shape of packets, shared by the codec, the broker and client
//! cores, the simulators and loadgen. One model serves both protocol versions: fields that exist
//! only in v5 (properties, reason codes on acks) are simply empty/`SUCCESS` for v3.1.1, and the
//! codec decides what goes on the wire for the negotiated version. It must never do I/O or
//! validation against the spec: that is the codec's job (`super::codec`), which rejects what the
//! spec forbids with a typed error.

use std::num::NonZeroU16;

use bytes::Bytes;

use super::reason::ReasonCode;

/// A packet identifier; the spec forbids zero (MQTT-2.2.1-3), so the type does too.
pub type PacketId = NonZeroU16;

/// The protocol level negotiated in CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// MQTT 3.1.1, protocol level 4.
    V311,
    /// MQTT 5.0, protocol level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte carried in CONNECT.
    pub const fn level(self) -> u8 {
        match self {
            ProtocolVersion::V311 => 4,
            ProtocolVersion::V5 => 5,
        }
    }
}

/// Quality of service of a PUBLISH or the maximum granted for a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum QoS {
    #[serde(rename = "0")]
    AtMostOnce = 0,
    #[serde(rename = "1")]
    AtLeastOnce = 1,
    #[serde(rename = "2")]
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a wire value, `None` for 3 (malformed).
    pub const fn from_u8(value: u8) -> Option<QoS> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }

    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

/// Properties of MQTT 5 packets (spec 2.2.2.2). One struct serves every packet type; which
/// properties a packet type may carry is checked by the codec, in both directions. For MQTT 3.1.1
/// every field stays empty. Interval fields are in seconds, as on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Properties {
    /// 0x01, PUBLISH and Will: `false` = unspecified bytes, `true` = UTF-8.
    pub payload_format_indicator: Option<bool>,
    /// 0x02, PUBLISH and Will.
    pub message_expiry_interval_secs: Option<u32>,
    /// 0x03, PUBLISH and Will.
    pub content_type: Option<String>,
    /// 0x08, PUBLISH and Will; must be a topic name (no wildcards).
    pub response_topic: Option<String>,
    /// 0x09, PUBLISH and Will.
    pub correlation_data: Option<Bytes>,
    /// 0x0B, PUBLISH (several, from broker to client) and SUBSCRIBE (at most one); 1..=268,435,455.
    pub subscription_identifiers: Vec<u32>,
    /// 0x11, CONNECT, CONNACK, DISCONNECT.
    pub session_expiry_interval_secs: Option<u32>,
    /// 0x12, CONNACK.
    pub assigned_client_identifier: Option<String>,
    /// 0x13, CONNACK.
    pub server_keep_alive_secs: Option<u16>,
    /// 0x15, CONNECT, CONNACK, AUTH.
    pub authentication_method: Option<String>,
    /// 0x16, CONNECT, CONNACK, AUTH.
    pub authentication_data: Option<Bytes>,
    /// 0x17, CONNECT.
    pub request_problem_information: Option<bool>,
    /// 0x18, Will properties.
    pub will_delay_interval_secs: Option<u32>,
    /// 0x19, CONNECT.
    pub request_response_information: Option<bool>,
    /// 0x1A, CONNACK.
    pub response_information: Option<String>,
    /// 0x1C, CONNACK, DISCONNECT.
    pub server_reference: Option<String>,
    /// 0x1F, CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, DISCONNECT, AUTH.
    pub reason_string: Option<String>,
    /// 0x21, CONNECT, CONNACK; never zero.
    pub receive_maximum: Option<u16>,
    /// 0x22, CONNECT, CONNACK.
    pub topic_alias_maximum: Option<u16>,
    /// 0x23, PUBLISH; never zero.
    pub topic_alias: Option<u16>,
    /// 0x24, CONNACK; only QoS 0 or 1 may be sent.
    pub maximum_qos: Option<QoS>,
    /// 0x25, CONNACK.
    pub retain_available: Option<bool>,
    /// 0x26, every packet that has properties; order and duplicates are kept (spec 3.3.2.3.7).
    pub user_properties: Vec<(String, String)>,
    /// 0x27, CONNECT, CONNACK; never zero.
    pub maximum_packet_size: Option<u32>,
    /// 0x28, CONNACK.
    pub wildcard_subscription_available: Option<bool>,
    /// 0x29, CONNACK.
    pub subscription_identifiers_available: Option<bool>,
    /// 0x2A, CONNACK.
    pub shared_subscription_available: Option<bool>,
}

impl Properties {
    /// True when no property is set (what every MQTT 3.1.1 packet carries).
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }
}

/// The Will message of a CONNECT (spec 3.1.3.2-3.1.3.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Will properties (v5): delay interval, expiry, content type, user properties, ...
    pub properties: Properties,
}

/// CONNECT (spec 3.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    pub protocol: ProtocolVersion,
    /// Clean Start (v5) / Clean Session (v3.1.1).
    pub clean_start: bool,
    pub keep_alive_secs: u16,
    /// May be empty: the server assigns one (v5) or accepts it only with a clean session (v3.1.1).
    pub client_id: String,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    pub properties: Properties,
}

/// CONNACK (spec 3.2). For v3.1.1 the codec maps `reason_code` to and from the return codes
/// 0-5 (see [`ReasonCode::to_v311_connack_return_code`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    pub reason_code: ReasonCode,
    pub properties: Properties,
}

/// PUBLISH (spec 3.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// May be empty in v5 when a topic alias stands for it.
    pub topic: String,
    /// Present exactly when `qos > 0`.
    pub packet_id: Option<PacketId>,
    pub properties: Properties,
    pub payload: Bytes,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape (spec 3.4-3.7). In v3.1.1 the reason code is
/// always `SUCCESS` and properties are empty; in v5 the codec omits both when they are
/// `SUCCESS`/empty (spec 3.4.2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PubReply {
    pub packet_id: PacketId,
    pub reason_code: ReasonCode,
    pub properties: Properties,
}

impl PubReply {
    /// A successful reply with no properties.
    pub fn success(packet_id: PacketId) -> PubReply {
        PubReply { packet_id, reason_code: ReasonCode::SUCCESS, properties: Properties::default() }
    }
}

/// Retain Handling subscription option (v5, spec 3.8.3.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe,
    /// 1: send retained messages only if the subscription did not exist.
    SendAtSubscribeIfNew,
    /// 2: do not send retained messages.
    DoNotSend,
}

/// Subscription options byte (spec 3.8.3.1); v3.1.1 carries only `maximum_qos`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubscriptionOptions {
    pub maximum_qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// Options with only a maximum QoS (all v5 flags off), as v3.1.1 expresses them.
    pub fn with_qos(maximum_qos: QoS) -> SubscriptionOptions {
        SubscriptionOptions {
            maximum_qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::SendAtSubscribe,
        }
    }
}

/// One topic filter of a SUBSCRIBE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub topic_filter: String,
    pub options: SubscriptionOptions,
}

/// SUBSCRIBE (spec 3.8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: PacketId,
    /// Never empty (MQTT-3.8.3-3).
    pub subscriptions: Vec<Subscription>,
    pub properties: Properties,
}

/// SUBACK (spec 3.9): one code per requested filter, in order. v3.1.1 return codes 0x00, 0x01,
/// 0x02 and 0x80 have the same values as the v5 codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: PacketId,
    pub reason_codes: Vec<ReasonCode>,
    pub properties: Properties,
}

/// UNSUBSCRIBE (spec 3.10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: PacketId,
    /// Never empty (MQTT-3.10.3-2).
    pub topic_filters: Vec<String>,
    pub properties: Properties,
}

/// UNSUBACK (spec 3.11): v3.1.1 has no payload, so `reason_codes` is empty there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsubAck {
    pub packet_id: PacketId,
    pub reason_codes: Vec<ReasonCode>,
    pub properties: Properties,
}

/// DISCONNECT (spec 3.14); v3.1.1 carries neither reason code nor properties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disconnect {
    pub reason_code: ReasonCode,
    pub properties: Properties,
}

impl Disconnect {
    pub fn normal() -> Disconnect {
        Disconnect { reason_code: ReasonCode::NORMAL_DISCONNECTION, properties: Properties::default() }
    }

    pub fn with_reason(reason_code: ReasonCode) -> Disconnect {
        Disconnect { reason_code, properties: Properties::default() }
    }
}

/// AUTH (spec 3.15, v5 only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth {
    pub reason_code: ReasonCode,
    pub properties: Properties,
}

/// Any MQTT control packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(PubReply),
    PubRec(PubReply),
    PubRel(PubReply),
    PubComp(PubReply),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}

impl Packet {
    /// The control packet type number of the fixed header (1..=15).
    pub const fn packet_type(&self) -> u8 {
        match self {
            Packet::Connect(_) => 1,
            Packet::ConnAck(_) => 2,
            Packet::Publish(_) => 3,
            Packet::PubAck(_) => 4,
            Packet::PubRec(_) => 5,
            Packet::PubRel(_) => 6,
            Packet::PubComp(_) => 7,
            Packet::Subscribe(_) => 8,
            Packet::SubAck(_) => 9,
            Packet::Unsubscribe(_) => 10,
            Packet::UnsubAck(_) => 11,
            Packet::PingReq => 12,
            Packet::PingResp => 13,
            Packet::Disconnect(_) => 14,
            Packet::Auth(_) => 15,
        }
    }

    /// The packet type's name as the spec writes it.
    pub const fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }
}
