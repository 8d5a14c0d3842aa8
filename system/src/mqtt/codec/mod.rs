//! The MQTT codec: bytes <-> [`Packet`] for MQTT 3.1.1 and 5.0, incremental and strict.
//!
//! This module owns the wire format and the spec's well-formedness rules. It must never hold
//! connection state beyond what one call needs, and never panic on any input.
//!
//! Layout: [`primitives`] reads and writes the data representations of spec 1.5, [`properties`]
//! holds the v5 property table, `decode` and `encode` hold one function per packet type, and
//! [`reason_codes`] lists which reason codes each packet type may carry. Decoding is zero-copy
//! for payloads and binary fields: they are `Bytes` slices of the input buffer.

mod decode;
mod encode;
pub mod primitives;
pub mod properties;
pub mod reason_codes;

use bytes::BytesMut;
use thiserror::Error;

use super::packet::{Packet, ProtocolVersion};
use super::reason::ReasonCode;
use super::topic::TopicError;

pub use decode::{RESERVE_AHEAD_LIMIT_BYTES, decode};
pub use encode::{encode, encoded_len};

/// Why bytes could not be decoded into a packet. Each variant names the spec rule it enforces;
/// [`DecodeError::reason_code`] gives the v5 reason code to report it with.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// A Variable Byte Integer (the Remaining Length, a property length or a Subscription
    /// Identifier) continues past its fourth byte (spec 1.5.5). 0x81.
    #[error("variable byte integer longer than four bytes")]
    MalformedVariableByteInteger,
    /// The fixed header announces a packet larger than the receiver's Maximum Packet Size; it is
    /// rejected before its bytes arrive (spec 3.1.2.11.4). 0x95.
    #[error("packet of {packet_len_bytes} bytes exceeds the maximum packet size {max_packet_size_bytes}")]
    PacketTooLarge { packet_len_bytes: u64, max_packet_size_bytes: u32 },
    /// Control packet type 0 (reserved), or AUTH (15) on an MQTT 3.1.1 connection, where type
    /// 15 is reserved (spec 2.1.2). 0x81.
    #[error("invalid control packet type {packet_type} for {version:?}")]
    InvalidPacketType { packet_type: u8, version: ProtocolVersion },
    /// The fixed header flags of a non-PUBLISH packet differ from the values spec 2.1.3 fixes
    /// (0b0010 for PUBREL, SUBSCRIBE and UNSUBSCRIBE, 0 otherwise). 0x81.
    #[error("invalid fixed header flags {flags:#06b} for packet type {packet_type}")]
    InvalidFixedHeaderFlags { packet_type: u8, flags: u8 },
    /// A PUBLISH with both QoS bits set (MQTT-3.3.1-4). 0x81.
    #[error("PUBLISH with QoS 3")]
    InvalidPublishQoS,
    /// A QoS 0 PUBLISH with the DUP flag set (MQTT-3.3.1-2). 0x81.
    #[error("PUBLISH with DUP set and QoS 0")]
    DupWithQoS0,
    /// A field runs past the end of the packet: the Remaining Length is too short for the
    /// content (spec 1.5, 2.1.4). 0x81.
    #[error("a field runs past the end of the packet")]
    UnexpectedEnd,
    /// Bytes are left after the last field: the Remaining Length is longer than the content.
    /// 0x81.
    #[error("{extra_bytes} bytes left after the last field")]
    TrailingBytes { extra_bytes: usize },
    /// A UTF-8 Encoded String is not well-formed UTF-8, which includes encoded surrogates
    /// U+D800..U+DFFF (MQTT-1.5.4-1). 0x81.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A UTF-8 Encoded String contains U+0000 (MQTT-1.5.4-2). 0x81.
    #[error("string contains U+0000")]
    NullCharacter,
    /// A CONNECT whose protocol name is not "MQTT" or whose level is not 4 (3.1.1) or 5 (5.0),
    /// such as MQTT 3.1's "MQIsdp" level 3. The broker answers CONNACK 0x84 (in v3.1.1, return
    /// code 1) and closes (spec 3.1.2.1, 3.1.2.2). `level` is the byte the client sent (0 when
    /// the packet ended before it).
    #[error("unsupported protocol (level {level})")]
    UnsupportedProtocol { level: u8 },
    /// The CONNECT flags' reserved bit 0 is set (MQTT-3.1.2-3). 0x81.
    #[error("CONNECT reserved flag is set")]
    ConnectReservedFlag,
    /// Will QoS or Will Retain is set while the Will Flag is not (MQTT-3.1.2-11, -13, -15). 0x81.
    #[error("will QoS or will retain set without the will flag")]
    WillFlagsWithoutWill,
    /// Will QoS is 3 (MQTT-3.1.2-14). 0x81.
    #[error("will QoS 3")]
    InvalidWillQoS,
    /// MQTT 3.1.1 only: the Password Flag is set without the User Name Flag (MQTT-3.1.2-22).
    /// MQTT 5 allows a password alone. 0x81.
    #[error("password flag without user name flag")]
    PasswordWithoutUsername,
    /// A Packet Identifier is zero (MQTT-2.2.1-3). The encoding is well formed but the value
    /// breaks a protocol rule, so this is a Protocol Error, 0x82.
    #[error("packet identifier is zero")]
    ZeroPacketId,
    /// A PUBLISH or Will topic name is empty (v3.1.1) or contains a wildcard or U+0000
    /// (MQTT-3.3.2-2, MQTT-4.7.3-1). 0x90 Topic Name invalid.
    #[error("invalid topic name: {0}")]
    TopicNameInvalid(TopicError),
    /// MQTT 5: a PUBLISH with an empty topic name and no Topic Alias (spec 3.3.2.1). 0x82.
    #[error("empty topic name without a topic alias")]
    EmptyTopicWithoutAlias,
    /// A SUBSCRIBE or UNSUBSCRIBE filter breaks the wildcard or shared-subscription rules
    /// (spec 4.7.1, 4.8.2). The spec names no code for a syntactically bad filter; 0x8F Topic
    /// Filter invalid is used because it is the most specific code and points at the field.
    #[error("invalid topic filter: {0}")]
    TopicFilterInvalid(TopicError),
    /// A SUBSCRIBE or UNSUBSCRIBE without any topic filter (MQTT-3.8.3-2, MQTT-3.10.3-2). 0x82.
    #[error("no topic filter")]
    NoTopicFilters,
    /// No Local set on a `$share/` subscription (MQTT-3.8.3-4). 0x82.
    #[error("no local set on a shared subscription")]
    NoLocalOnSharedSubscription,
    /// A SUBACK (or v5 UNSUBACK) without any reason code: it must answer at least one filter.
    /// 0x82.
    #[error("acknowledgement without reason codes")]
    NoReasonCodes,
    /// Subscription options with reserved bits set: bits 6-7 in v5, bits 2-7 in v3.1.1
    /// (MQTT-3.8.3-5, v3.1.1 MQTT-3-8.3-4). 0x81.
    #[error("subscription options {options:#010b} have reserved bits set")]
    SubscriptionOptionsReservedBits { options: u8 },
    /// A subscription's maximum QoS is 3 (spec 3.8.3.1: a Protocol Error in v5). 0x82.
    #[error("subscription QoS 3")]
    InvalidSubscriptionQoS,
    /// Retain Handling is 3 (spec 3.8.3.1: a Protocol Error). 0x82.
    #[error("retain handling 3")]
    InvalidRetainHandling,
    /// A property identifier the spec does not define (spec 2.2.2.2: Malformed). 0x81.
    #[error("unknown property {id:#04x}")]
    UnknownProperty { id: u8 },
    /// A known property in a packet type that may not carry it (spec 2.2.2.2: Malformed). 0x81.
    #[error("property {id:#04x} not allowed in {packet}")]
    PropertyNotAllowed { id: u8, packet: &'static str },
    /// A property that may appear at most once appears again (Protocol Error throughout spec
    /// 3.x.2.2). 0x82.
    #[error("property {id:#04x} appears more than once")]
    DuplicateProperty { id: u8 },
    /// A property value outside its range: zero Receive Maximum, Maximum Packet Size, Topic
    /// Alias or Subscription Identifier, a boolean byte other than 0/1, Maximum QoS other than
    /// 0/1, a Response Topic with wildcards, Authentication Data without Method. 0x82.
    #[error("property {id:#04x} has an invalid value: {reason}")]
    InvalidPropertyValue { id: u8, reason: &'static str },
    /// The Property Length runs past the end of the packet. 0x81.
    #[error("property length {properties_len_bytes} exceeds the {remaining_bytes} bytes left")]
    PropertiesOverrun { properties_len_bytes: usize, remaining_bytes: usize },
    /// A reason code (or v3.1.1 return code) that the packet type does not define (the tables
    /// of spec 3.x.2.1 / 3.x.3). The byte is well formed but meaningless here: 0x82.
    #[error("reason code {code:#04x} is not valid in {packet}")]
    InvalidReasonCode { packet: &'static str, code: u8 },
    /// CONNACK Acknowledge Flags with reserved bits 1-7 set (MQTT-3.2.2-1). 0x81.
    #[error("CONNACK flags {flags:#010b} have reserved bits set")]
    ConnAckReservedFlags { flags: u8 },
    /// A CONNACK with an error code and Session Present set (MQTT-3.2.2-6, v3.1.1
    /// MQTT-3.2.2-4). 0x82.
    #[error("CONNACK with an error code has session present set")]
    SessionPresentWithError,
}

impl DecodeError {
    /// The v5 reason code the spec names for this error (for CONNACK or DISCONNECT).
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::UnsupportedProtocol { .. } => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            DecodeError::TopicNameInvalid(_) => ReasonCode::TOPIC_NAME_INVALID,
            DecodeError::TopicFilterInvalid(_) => ReasonCode::TOPIC_FILTER_INVALID,
            DecodeError::ZeroPacketId
            | DecodeError::EmptyTopicWithoutAlias
            | DecodeError::NoTopicFilters
            | DecodeError::NoLocalOnSharedSubscription
            | DecodeError::NoReasonCodes
            | DecodeError::InvalidSubscriptionQoS
            | DecodeError::InvalidRetainHandling
            | DecodeError::DuplicateProperty { .. }
            | DecodeError::InvalidPropertyValue { .. }
            | DecodeError::InvalidReasonCode { .. }
            | DecodeError::SessionPresentWithError => ReasonCode::PROTOCOL_ERROR,
            DecodeError::MalformedVariableByteInteger
            | DecodeError::InvalidPacketType { .. }
            | DecodeError::InvalidFixedHeaderFlags { .. }
            | DecodeError::InvalidPublishQoS
            | DecodeError::DupWithQoS0
            | DecodeError::UnexpectedEnd
            | DecodeError::TrailingBytes { .. }
            | DecodeError::InvalidUtf8
            | DecodeError::NullCharacter
            | DecodeError::ConnectReservedFlag
            | DecodeError::WillFlagsWithoutWill
            | DecodeError::InvalidWillQoS
            | DecodeError::PasswordWithoutUsername
            | DecodeError::SubscriptionOptionsReservedBits { .. }
            | DecodeError::UnknownProperty { .. }
            | DecodeError::PropertyNotAllowed { .. }
            | DecodeError::PropertiesOverrun { .. }
            | DecodeError::ConnAckReservedFlags { .. } => ReasonCode::MALFORMED_PACKET,
        }
    }
}

/// Why a packet could not be encoded: it breaks a spec rule, does not fit the wire format, or
/// uses something the target protocol version cannot express.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// A UTF-8 Encoded String longer than 65,535 bytes (spec 1.5.4).
    #[error("{field} is {len_bytes} bytes, more than 65,535")]
    StringTooLong { field: &'static str, len_bytes: usize },
    /// A Binary Data field (password, will payload, correlation or authentication data) longer
    /// than 65,535 bytes (spec 1.5.6).
    #[error("{field} is {len_bytes} bytes, more than 65,535")]
    BinaryTooLong { field: &'static str, len_bytes: usize },
    /// A string containing U+0000 (MQTT-1.5.4-2).
    #[error("{field} contains U+0000")]
    NullCharacter { field: &'static str },
    /// The Remaining Length would exceed 268,435,455 bytes (spec 2.1.4).
    #[error("remaining length {remaining_len_bytes} exceeds 268,435,455")]
    PacketTooLarge { remaining_len_bytes: usize },
    /// A property the spec does not allow in this packet type (spec 2.2.2.2).
    #[error("property {id:#04x} not allowed in {packet}")]
    PropertyNotAllowed { id: u8, packet: &'static str },
    /// A property value outside its legal range (zero where forbidden, Maximum QoS 2, two
    /// Subscription Identifiers in a SUBSCRIBE, Authentication Data without Method, ...).
    #[error("property {id:#04x} has an invalid value: {reason}")]
    InvalidPropertyValue { id: u8, reason: &'static str },
    /// MQTT 3.1.1 cannot carry this packet or field: AUTH, properties, a non-success ack
    /// reason code, a DISCONNECT reason, v5 subscription options, UNSUBACK reason codes.
    #[error("{packet} cannot carry {field} in MQTT 3.1.1")]
    NotInV311 { packet: &'static str, field: &'static str },
    /// A CONNECT whose `protocol` differs from the version it is encoded for.
    #[error("CONNECT for {connect:?} encoded as {requested:?}")]
    ProtocolMismatch { connect: ProtocolVersion, requested: ProtocolVersion },
    /// A PUBLISH whose packet identifier presence does not match its QoS (MQTT-2.2.1-2,
    /// MQTT-2.2.1-3).
    #[error("PUBLISH with QoS {qos} and packet identifier present = {has_packet_id}")]
    PacketIdMismatch { qos: u8, has_packet_id: bool },
    /// A QoS 0 PUBLISH with DUP set (MQTT-3.3.1-2).
    #[error("PUBLISH with DUP set and QoS 0")]
    DupWithQoS0,
    /// A topic name that is empty (outside the v5 alias case) or has wildcards or U+0000.
    #[error("invalid topic name: {0}")]
    TopicNameInvalid(TopicError),
    /// MQTT 5: an empty topic name without a Topic Alias (spec 3.3.2.1).
    #[error("empty topic name without a topic alias")]
    EmptyTopicWithoutAlias,
    /// A topic filter that breaks the wildcard or shared-subscription rules.
    #[error("invalid topic filter: {0}")]
    TopicFilterInvalid(TopicError),
    /// A SUBSCRIBE or UNSUBSCRIBE without filters (MQTT-3.8.3-2, MQTT-3.10.3-2).
    #[error("no topic filter")]
    NoTopicFilters,
    /// No Local set on a `$share/` subscription (MQTT-3.8.3-4).
    #[error("no local set on a shared subscription")]
    NoLocalOnSharedSubscription,
    /// A SUBACK (or v5 UNSUBACK) without reason codes.
    #[error("acknowledgement without reason codes")]
    NoReasonCodes,
    /// A reason code that the packet type does not define.
    #[error("reason code {code:#04x} is not valid in {packet}")]
    InvalidReasonCode { packet: &'static str, code: u8 },
    /// MQTT 3.1.1: a password without a user name (MQTT-3.1.2-22).
    #[error("password without user name")]
    PasswordWithoutUsername,
    /// A CONNACK with an error code and Session Present set (MQTT-3.2.2-6).
    #[error("CONNACK with an error code has session present set")]
    SessionPresentWithError,
}

/// Shortcut used by tests and benches: encode into a fresh buffer.
pub fn encode_to_bytes(packet: &Packet, version: ProtocolVersion) -> Result<BytesMut, EncodeError> {
    let mut out = BytesMut::with_capacity(encoded_len(packet, version)?);
    encode(packet, version, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::mqtt::packet::*;

    fn id(value: u16) -> PacketId {
        PacketId::new(value).unwrap()
    }

    fn roundtrip(packet: Packet, version: ProtocolVersion) -> BytesMut {
        let bytes = encode_to_bytes(&packet, version).unwrap();
        assert_eq!(bytes.len(), encoded_len(&packet, version).unwrap());
        let mut buf = bytes.clone();
        assert_eq!(decode(&mut buf, version, u32::MAX), Ok(Some(packet)));
        assert!(buf.is_empty());
        bytes
    }

    #[test]
    fn known_encodings_match_the_spec() {
        let v3 = ProtocolVersion::V311;
        let v5 = ProtocolVersion::V5;
        assert_eq!(&roundtrip(Packet::PingReq, v3)[..], &[0xC0, 0x00]);
        assert_eq!(&roundtrip(Packet::PubAck(PubReply::success(id(7))), v5)[..], &[0x40, 0x02, 0x00, 0x07]);
        assert_eq!(&roundtrip(Packet::Disconnect(Disconnect::normal()), v5)[..], &[0xE0, 0x00]);
        assert_eq!(
            &roundtrip(Packet::Disconnect(Disconnect::with_reason(ReasonCode::SERVER_SHUTTING_DOWN)), v5)[..],
            &[0xE0, 0x02, 0x8B, 0x00],
            "a reason code travels with an explicit empty property length, which rumqttc needs"
        );
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: "a/b".into(),
            packet_id: Some(id(1)),
            properties: Properties::default(),
            payload: Bytes::from_static(b"hi"),
        };
        assert_eq!(
            &roundtrip(Packet::Publish(publish), v3)[..],
            &[0x33, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x01, b'h', b'i']
        );
        let connect = Connect {
            protocol: v5,
            clean_start: true,
            keep_alive_secs: 30,
            client_id: "c".into(),
            will: Some(Will {
                topic: "w".into(),
                payload: Bytes::from_static(b"bye"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: Properties { will_delay_interval_secs: Some(5), ..Properties::default() },
            }),
            username: None,
            password: Some(Bytes::from_static(b"pw")),
            properties: Properties { receive_maximum: Some(10), ..Properties::default() },
        };
        roundtrip(Packet::Connect(Box::new(connect)), v5);
        let auth = Auth {
            reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: Properties { authentication_method: Some("x".into()), ..Properties::default() },
        };
        roundtrip(Packet::Auth(auth), v5);
    }

    #[test]
    fn partial_input_consumes_nothing() {
        let bytes =
            encode_to_bytes(&Packet::PubAck(PubReply::success(id(300))), ProtocolVersion::V311).unwrap();
        for cut in 0..bytes.len() {
            let mut partial = BytesMut::from(&bytes[..cut]);
            assert_eq!(decode(&mut partial, ProtocolVersion::V311, u32::MAX), Ok(None));
            assert_eq!(partial.len(), cut);
        }
    }

    #[test]
    fn v5_acks_accept_every_allowed_short_form() {
        let v5 = ProtocolVersion::V5;
        // Remaining length 2, 3 (reason code only) and 4 (reason code and empty properties).
        for (bytes, reason) in
            [(&[0x40, 0x02, 0x00, 0x09][..], 0x00), (&[0x40, 0x03, 0x00, 0x09, 0x10][..], 0x10)]
        {
            let mut buf = BytesMut::from(bytes);
            let expected = PubReply {
                packet_id: id(9),
                reason_code: ReasonCode(reason),
                properties: Properties::default(),
            };
            assert_eq!(decode(&mut buf, v5, u32::MAX), Ok(Some(Packet::PubAck(expected))));
        }
        let mut buf = BytesMut::from(&[0x70, 0x04, 0x00, 0x09, 0x92, 0x00][..]);
        let expected =
            PubReply { packet_id: id(9), reason_code: ReasonCode(0x92), properties: Properties::default() };
        assert_eq!(decode(&mut buf, v5, u32::MAX), Ok(Some(Packet::PubComp(expected.clone()))));
        // Our encoder picks the shortest form.
        assert_eq!(
            &encode_to_bytes(&Packet::PubComp(expected), v5).unwrap()[..],
            &[0x70, 0x03, 0x00, 0x09, 0x92]
        );
        // DISCONNECT: remaining length 0, 1 and 2.
        for (bytes, reason) in [
            (&[0xE0, 0x00][..], 0x00),
            (&[0xE0, 0x01, 0x04][..], 0x04),
            (&[0xE0, 0x02, 0x8B, 0x00][..], 0x8B),
        ] {
            let mut buf = BytesMut::from(bytes);
            assert_eq!(
                decode(&mut buf, v5, u32::MAX),
                Ok(Some(Packet::Disconnect(Disconnect::with_reason(ReasonCode(reason)))))
            );
        }
    }

    #[test]
    fn connect_is_decoded_with_its_own_level_and_mqisdp_is_unsupported() {
        let connect = Connect {
            protocol: ProtocolVersion::V5,
            clean_start: false,
            keep_alive_secs: 0,
            client_id: "id".into(),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        };
        let mut buf =
            encode_to_bytes(&Packet::Connect(Box::new(connect.clone())), ProtocolVersion::V5).unwrap();
        assert_eq!(
            decode(&mut buf, ProtocolVersion::V311, u32::MAX),
            Ok(Some(Packet::Connect(Box::new(connect))))
        );
        let mqtt31 =
            [0x10, 0x0E, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, 0x02, 0x00, 0x3C, 0x00, 0x00];
        let error = decode(&mut BytesMut::from(&mqtt31[..]), ProtocolVersion::V5, u32::MAX).unwrap_err();
        assert_eq!(error, DecodeError::UnsupportedProtocol { level: 3 });
        assert_eq!(error.reason_code().to_v311_connack_return_code(), 1);
    }

    #[test]
    fn a_huge_announced_length_does_not_reserve_huge_memory() {
        // A PUBLISH announcing 268,435,455 bytes with no limit set.
        let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..]);
        assert_eq!(decode(&mut buf, ProtocolVersion::V5, u32::MAX), Ok(None));
        assert_eq!(buf.len(), 5);
        assert!(buf.capacity() <= 5 + RESERVE_AHEAD_LIMIT_BYTES, "capacity {}", buf.capacity());
    }

    #[test]
    fn oversized_packet_is_rejected_from_its_fixed_header_alone() {
        // A PUBLISH announcing 200 bytes, of which none has arrived yet.
        let mut buf = BytesMut::from(&[0x30, 0xC8, 0x01][..]);
        let error = decode(&mut buf, ProtocolVersion::V311, 100).unwrap_err();
        assert_eq!(error, DecodeError::PacketTooLarge { packet_len_bytes: 203, max_packet_size_bytes: 100 });
        assert_eq!(error.reason_code(), ReasonCode::PACKET_TOO_LARGE);
        // Within the limit, the same header just waits for the body.
        assert_eq!(decode(&mut buf, ProtocolVersion::V311, 203), Ok(None));
        assert_eq!(buf.len(), 3);
    }

    #[test]
    fn encode_refuses_what_the_version_cannot_carry() {
        let v3 = ProtocolVersion::V311;
        let auth = Packet::Auth(Auth { reason_code: ReasonCode::SUCCESS, properties: Properties::default() });
        assert!(matches!(encode_to_bytes(&auth, v3), Err(EncodeError::NotInV311 { packet: "AUTH", .. })));
        let with_reason =
            Packet::PubAck(PubReply { reason_code: ReasonCode(0x10), ..PubReply::success(id(1)) });
        assert!(matches!(encode_to_bytes(&with_reason, v3), Err(EncodeError::NotInV311 { .. })));
        let properties = Properties { reason_string: Some("r".into()), ..Properties::default() };
        let with_properties = Packet::PubAck(PubReply { properties, ..PubReply::success(id(1)) });
        assert!(matches!(
            encode_to_bytes(&with_properties, v3),
            Err(EncodeError::NotInV311 { field: "properties", .. })
        ));
        let alias_in_puback = Packet::PubAck(PubReply {
            properties: Properties { topic_alias: Some(3), ..Properties::default() },
            ..PubReply::success(id(1))
        });
        assert_eq!(
            encode_to_bytes(&alias_in_puback, ProtocolVersion::V5).unwrap_err(),
            EncodeError::PropertyNotAllowed { id: 0x23, packet: "PUBACK" }
        );
        let qos1_without_id = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "t".into(),
            packet_id: None,
            properties: Properties::default(),
            payload: Bytes::new(),
        });
        assert_eq!(
            encode_to_bytes(&qos1_without_id, v3).unwrap_err(),
            EncodeError::PacketIdMismatch { qos: 1, has_packet_id: false }
        );
        let long_topic = Packet::Unsubscribe(Unsubscribe {
            packet_id: id(1),
            topic_filters: vec!["a".repeat(70_000)],
            properties: Properties::default(),
        });
        assert!(matches!(encode_to_bytes(&long_topic, v3), Err(EncodeError::StringTooLong { .. })));
        // A failed encode appends nothing.
        let mut out = BytesMut::from(&b"xy"[..]);
        assert!(encode(&long_topic, v3, &mut out).is_err());
        assert_eq!(&out[..], b"xy");
    }

    #[test]
    fn payload_is_a_zero_copy_slice_of_the_input() {
        let publish = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "t".into(),
            packet_id: None,
            properties: Properties::default(),
            payload: Bytes::from(vec![7u8; 512]),
        };
        let mut buf = encode_to_bytes(&Packet::Publish(publish), ProtocolVersion::V311).unwrap();
        let input_range = buf.as_ptr_range();
        let Ok(Some(Packet::Publish(decoded))) = decode(&mut buf, ProtocolVersion::V311, u32::MAX) else {
            panic!("expected a PUBLISH");
        };
        assert!(input_range.contains(&decoded.payload.as_ptr()), "payload was copied");
    }
}
