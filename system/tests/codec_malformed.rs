//! Table-driven test of malformed and protocol-violating inputs: each row is the hex bytes of
//! one packet, the negotiated version, the exact `DecodeError` expected and its reason code.
//! Every strict prefix of a row must decode to "incomplete" or to that same error, never to
//! something else.

use bytes::BytesMut;
use edgeproof_system::mqtt::codec::{DecodeError, decode};
use edgeproof_system::mqtt::topic::TopicError;
use edgeproof_system::mqtt::{ProtocolVersion, ReasonCode};

use DecodeError as E;
use ProtocolVersion::{V5, V311};

const NO_LIMIT: u32 = u32::MAX;

struct Row {
    name: &'static str,
    hex: &'static str,
    version: ProtocolVersion,
    limit: u32,
    expected: DecodeError,
    reason: u8,
}

const fn row(
    name: &'static str,
    hex: &'static str,
    version: ProtocolVersion,
    expected: DecodeError,
    reason: u8,
) -> Row {
    Row { name, hex, version, limit: NO_LIMIT, expected, reason }
}

fn parse_hex(hex: &str) -> Vec<u8> {
    hex.split_whitespace()
        .map(|byte| u8::from_str_radix(byte, 16).unwrap_or_else(|_| panic!("bad hex byte {byte:?}")))
        .collect()
}

fn rows() -> Vec<Row> {
    let not_zero = "must not be zero";
    let boolean = "boolean byte is neither 0 nor 1";
    vec![
        // Fixed header.
        row("packet type 0", "00 00", V311, E::InvalidPacketType { packet_type: 0, version: V311 }, 0x81),
        row("AUTH under 3.1.1", "F0 00", V311, E::InvalidPacketType { packet_type: 15, version: V311 }, 0x81),
        row("remaining length of 5 bytes", "30 FF FF FF FF 7F", V311, E::MalformedVariableByteInteger, 0x81),
        row(
            "PUBREL flags 0",
            "60 02 00 01",
            V311,
            E::InvalidFixedHeaderFlags { packet_type: 6, flags: 0 },
            0x81,
        ),
        row(
            "SUBSCRIBE flags 0",
            "80 06 00 01 00 01 61 00",
            V311,
            E::InvalidFixedHeaderFlags { packet_type: 8, flags: 0 },
            0x81,
        ),
        row(
            "UNSUBSCRIBE flags 3",
            "A3 05 00 01 00 01 61",
            V311,
            E::InvalidFixedHeaderFlags { packet_type: 10, flags: 3 },
            0x81,
        ),
        row(
            "PUBACK flags 1",
            "41 02 00 01",
            V5,
            E::InvalidFixedHeaderFlags { packet_type: 4, flags: 1 },
            0x81,
        ),
        row("PINGREQ flags 1", "C1 00", V5, E::InvalidFixedHeaderFlags { packet_type: 12, flags: 1 }, 0x81),
        row("PUBLISH QoS 3", "36 05 00 01 61 00 01", V311, E::InvalidPublishQoS, 0x81),
        row("PUBLISH DUP with QoS 0", "38 03 00 01 61", V311, E::DupWithQoS0, 0x81),
        Row {
            name: "packet larger than the maximum packet size",
            hex: "30 FF FF FF 7F",
            version: V5,
            limit: 1000,
            expected: E::PacketTooLarge { packet_len_bytes: 268_435_460, max_packet_size_bytes: 1000 },
            reason: 0x95,
        },
        // Remaining length inconsistent with the content.
        row("PUBACK remaining length 1", "40 01 00", V311, E::UnexpectedEnd, 0x81),
        row(
            "3.1.1 PUBACK with a trailing byte",
            "40 03 00 01 00",
            V311,
            E::TrailingBytes { extra_bytes: 1 },
            0x81,
        ),
        row("PINGREQ with a body", "C0 01 00", V311, E::TrailingBytes { extra_bytes: 1 }, 0x81),
        row("CONNECT cut after the protocol name length", "10 02 00 04", V311, E::UnexpectedEnd, 0x81),
        row("PUBLISH topic length past the packet", "30 03 00 05 61", V311, E::UnexpectedEnd, 0x81),
        // Packet identifiers.
        row("PUBACK packet id 0", "40 02 00 00", V311, E::ZeroPacketId, 0x82),
        row("QoS 1 PUBLISH packet id 0", "32 05 00 01 61 00 00", V311, E::ZeroPacketId, 0x82),
        // Strings and topic names.
        row("topic is invalid UTF-8", "30 04 00 02 C3 28", V311, E::InvalidUtf8, 0x81),
        row("topic is an encoded surrogate", "30 05 00 03 ED A0 80", V311, E::InvalidUtf8, 0x81),
        row("topic contains U+0000", "30 04 00 02 61 00", V311, E::NullCharacter, 0x81),
        row(
            "PUBLISH topic with +",
            "30 05 00 03 61 2F 2B",
            V311,
            E::TopicNameInvalid(TopicError::WildcardInName),
            0x90,
        ),
        row(
            "v5 PUBLISH topic #",
            "30 04 00 01 23 00",
            V5,
            E::TopicNameInvalid(TopicError::WildcardInName),
            0x90,
        ),
        row("3.1.1 PUBLISH empty topic", "30 02 00 00", V311, E::TopicNameInvalid(TopicError::Empty), 0x90),
        row("v5 PUBLISH empty topic without alias", "30 03 00 00 00", V5, E::EmptyTopicWithoutAlias, 0x82),
        // CONNECT.
        row(
            "MQTT 3.1 MQIsdp level 3",
            "10 0E 00 06 4D 51 49 73 64 70 03 02 00 3C 00 00",
            V311,
            E::UnsupportedProtocol { level: 3 },
            0x84,
        ),
        row(
            "MQTT level 6",
            "10 0C 00 04 4D 51 54 54 06 02 00 3C 00 00",
            V5,
            E::UnsupportedProtocol { level: 6 },
            0x84,
        ),
        row(
            "CONNECT reserved flag",
            "10 0C 00 04 4D 51 54 54 04 03 00 3C 00 00",
            V311,
            E::ConnectReservedFlag,
            0x81,
        ),
        row(
            "will QoS without will flag",
            "10 0C 00 04 4D 51 54 54 04 0A 00 3C 00 00",
            V311,
            E::WillFlagsWithoutWill,
            0x81,
        ),
        row(
            "will retain without will flag",
            "10 0C 00 04 4D 51 54 54 04 22 00 3C 00 00",
            V311,
            E::WillFlagsWithoutWill,
            0x81,
        ),
        row(
            "will QoS 3",
            "10 11 00 04 4D 51 54 54 04 1E 00 3C 00 00 00 01 61 00 00",
            V311,
            E::InvalidWillQoS,
            0x81,
        ),
        row(
            "3.1.1 password without user name",
            "10 0E 00 04 4D 51 54 54 04 42 00 3C 00 00 00 00",
            V311,
            E::PasswordWithoutUsername,
            0x81,
        ),
        row(
            "will topic with #",
            "10 11 00 04 4D 51 54 54 04 06 00 3C 00 00 00 01 23 00 00",
            V311,
            E::TopicNameInvalid(TopicError::WildcardInName),
            0x90,
        ),
        // v5 properties.
        row(
            "topic alias in CONNECT",
            "10 10 00 04 4D 51 54 54 05 02 00 3C 03 23 00 01 00 00",
            V5,
            E::PropertyNotAllowed { id: 0x23, packet: "CONNECT" },
            0x81,
        ),
        row(
            "session expiry in Will properties",
            "10 18 00 04 4D 51 54 54 05 06 00 3C 00 00 00 05 11 00 00 00 01 00 01 61 00 00",
            V5,
            E::PropertyNotAllowed { id: 0x11, packet: "Will" },
            0x81,
        ),
        row(
            "receive maximum 0",
            "10 10 00 04 4D 51 54 54 05 02 00 3C 03 21 00 00 00 00",
            V5,
            E::InvalidPropertyValue { id: 0x21, reason: not_zero },
            0x82,
        ),
        row(
            "session expiry twice",
            "10 17 00 04 4D 51 54 54 05 02 00 3C 0A 11 00 00 00 01 11 00 00 00 02 00 00",
            V5,
            E::DuplicateProperty { id: 0x11 },
            0x82,
        ),
        row(
            "maximum packet size 0",
            "10 12 00 04 4D 51 54 54 05 02 00 3C 05 27 00 00 00 00 00 00",
            V5,
            E::InvalidPropertyValue { id: 0x27, reason: "maximum packet size is zero" },
            0x82,
        ),
        row(
            "request problem information 2",
            "10 0F 00 04 4D 51 54 54 05 02 00 3C 02 17 02 00 00",
            V5,
            E::InvalidPropertyValue { id: 0x17, reason: boolean },
            0x82,
        ),
        row(
            "unknown property 0x05",
            "10 0F 00 04 4D 51 54 54 05 02 00 3C 02 05 00 00 00",
            V5,
            E::UnknownProperty { id: 0x05 },
            0x81,
        ),
        row(
            "property length past the packet",
            "40 04 00 01 00 05",
            V5,
            E::PropertiesOverrun { properties_len_bytes: 5, remaining_bytes: 0 },
            0x81,
        ),
        row("user property runs past its block", "40 07 00 01 00 03 26 00 05", V5, E::UnexpectedEnd, 0x81),
        row(
            "maximum QoS 2 in CONNACK",
            "20 05 00 00 02 24 02",
            V5,
            E::InvalidPropertyValue { id: 0x24, reason: "maximum QoS is not 0 or 1" },
            0x82,
        ),
        row(
            "topic alias 0",
            "30 07 00 01 61 03 23 00 00",
            V5,
            E::InvalidPropertyValue { id: 0x23, reason: not_zero },
            0x82,
        ),
        row(
            "payload format indicator 2",
            "30 06 00 01 61 02 01 02",
            V5,
            E::InvalidPropertyValue { id: 0x01, reason: boolean },
            0x82,
        ),
        row(
            "response topic with a wildcard",
            "30 09 00 01 61 05 08 00 02 61 2B",
            V5,
            E::InvalidPropertyValue { id: 0x08, reason: "response topic is not a topic name" },
            0x82,
        ),
        row(
            "authentication data without method",
            "F0 06 18 04 16 00 01 41",
            V5,
            E::InvalidPropertyValue { id: 0x16, reason: "authentication data without authentication method" },
            0x82,
        ),
        row(
            "reason string twice in PUBACK",
            "40 0A 00 01 00 06 1F 00 00 1F 00 00",
            V5,
            E::DuplicateProperty { id: 0x1F },
            0x82,
        ),
        row(
            "topic alias in DISCONNECT",
            "E0 05 00 03 23 00 01",
            V5,
            E::PropertyNotAllowed { id: 0x23, packet: "DISCONNECT" },
            0x81,
        ),
        row(
            "two subscription identifiers in SUBSCRIBE",
            "82 0B 00 01 04 0B 01 0B 02 00 01 61 00",
            V5,
            E::DuplicateProperty { id: 0x0B },
            0x82,
        ),
        row(
            "subscription identifier 0",
            "82 09 00 01 02 0B 00 00 01 61 00",
            V5,
            E::InvalidPropertyValue { id: 0x0B, reason: "subscription identifier is zero" },
            0x82,
        ),
        // Reason codes.
        row(
            "PUBACK reason 0x8F",
            "40 03 00 01 8F",
            V5,
            E::InvalidReasonCode { packet: "PUBACK", code: 0x8F },
            0x82,
        ),
        row(
            "PUBREL reason 0x10",
            "62 03 00 01 10",
            V5,
            E::InvalidReasonCode { packet: "PUBREL", code: 0x10 },
            0x82,
        ),
        row(
            "DISCONNECT reason 0x84",
            "E0 01 84",
            V5,
            E::InvalidReasonCode { packet: "DISCONNECT", code: 0x84 },
            0x82,
        ),
        row("AUTH reason 0x80", "F0 01 80", V5, E::InvalidReasonCode { packet: "AUTH", code: 0x80 }, 0x82),
        row(
            "3.1.1 CONNACK return code 6",
            "20 02 00 06",
            V311,
            E::InvalidReasonCode { packet: "CONNACK", code: 6 },
            0x82,
        ),
        row(
            "3.1.1 SUBACK code 0x8F",
            "90 03 00 01 8F",
            V311,
            E::InvalidReasonCode { packet: "SUBACK", code: 0x8F },
            0x82,
        ),
        row("CONNACK reserved flags", "20 02 02 00", V311, E::ConnAckReservedFlags { flags: 2 }, 0x81),
        row("CONNACK session present with an error", "20 02 01 05", V311, E::SessionPresentWithError, 0x82),
        // SUBSCRIBE, UNSUBSCRIBE and their acks.
        row("SUBSCRIBE without filters", "82 02 00 01", V311, E::NoTopicFilters, 0x82),
        row(
            "3.1.1 requested QoS byte with upper bits",
            "82 06 00 01 00 01 61 04",
            V311,
            E::SubscriptionOptionsReservedBits { options: 0x04 },
            0x81,
        ),
        row(
            "v5 subscription options bit 6",
            "82 07 00 01 00 00 01 61 40",
            V5,
            E::SubscriptionOptionsReservedBits { options: 0x40 },
            0x81,
        ),
        row("retain handling 3", "82 07 00 01 00 00 01 61 30", V5, E::InvalidRetainHandling, 0x82),
        row("subscription QoS 3", "82 06 00 01 00 01 61 03", V311, E::InvalidSubscriptionQoS, 0x82),
        row(
            "filter with # not last",
            "82 07 00 01 00 02 61 23 00",
            V311,
            E::TopicFilterInvalid(TopicError::MultiLevelWildcardNotLast),
            0x8F,
        ),
        row(
            "shared subscription without filter",
            "82 0D 00 01 00 00 08 24 73 68 61 72 65 2F 67 00",
            V5,
            E::TopicFilterInvalid(TopicError::BadSharedSubscription),
            0x8F,
        ),
        row(
            "no local on a shared subscription",
            "82 10 00 01 00 00 0A 24 73 68 61 72 65 2F 67 2F 61 04",
            V5,
            E::NoLocalOnSharedSubscription,
            0x82,
        ),
        row("v5 UNSUBSCRIBE without filters", "A2 03 00 01 00", V5, E::NoTopicFilters, 0x82),
        row(
            "UNSUBSCRIBE filter a+",
            "A2 06 00 01 00 02 61 2B",
            V311,
            E::TopicFilterInvalid(TopicError::SingleLevelWildcardNotAlone),
            0x8F,
        ),
        row("SUBACK without codes", "90 02 00 01", V311, E::NoReasonCodes, 0x82),
        row("v5 UNSUBACK without codes", "B0 03 00 01 00", V5, E::NoReasonCodes, 0x82),
        row(
            "v5 UNSUBACK code 0x10",
            "B0 04 00 01 00 10",
            V5,
            E::InvalidReasonCode { packet: "UNSUBACK", code: 0x10 },
            0x82,
        ),
    ]
}

#[test]
fn malformed_inputs_give_the_expected_error_and_reason_code() {
    let rows = rows();
    assert!(rows.len() >= 40, "the table must keep at least 40 rows");
    for row in &rows {
        let bytes = parse_hex(row.hex);
        let mut buf = BytesMut::from(&bytes[..]);
        let result = decode(&mut buf, row.version, row.limit);
        assert_eq!(result, Err(row.expected.clone()), "row {:?} ({})", row.name, row.hex);
        assert_eq!(row.expected.reason_code(), ReasonCode(row.reason), "row {:?} reason code", row.name);
        // A prefix is either incomplete or already shows the same error.
        for cut in 0..bytes.len() {
            let mut partial = BytesMut::from(&bytes[..cut]);
            match decode(&mut partial, row.version, row.limit) {
                Ok(None) => assert_eq!(partial.len(), cut, "row {:?}: incomplete input consumed", row.name),
                Err(error) => assert_eq!(error, row.expected, "row {:?} prefix {cut}", row.name),
                Ok(Some(packet)) => panic!("row {:?} prefix {cut} decoded to {packet:?}", row.name),
            }
        }
    }
}

#[test]
fn row_names_are_unique() {
    let rows = rows();
    let mut names: Vec<&str> = rows.iter().map(|row| row.name).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(names.len(), before);
}

/// Maps every variant to a number. The match is exhaustive, so a new variant does not compile
/// until it is listed here, and the coverage test below then asks for a table row for it.
fn variant_index(error: &DecodeError) -> usize {
    match error {
        E::MalformedVariableByteInteger => 0,
        E::PacketTooLarge { .. } => 1,
        E::InvalidPacketType { .. } => 2,
        E::InvalidFixedHeaderFlags { .. } => 3,
        E::InvalidPublishQoS => 4,
        E::DupWithQoS0 => 5,
        E::UnexpectedEnd => 6,
        E::TrailingBytes { .. } => 7,
        E::InvalidUtf8 => 8,
        E::NullCharacter => 9,
        E::UnsupportedProtocol { .. } => 10,
        E::ConnectReservedFlag => 11,
        E::WillFlagsWithoutWill => 12,
        E::InvalidWillQoS => 13,
        E::PasswordWithoutUsername => 14,
        E::ZeroPacketId => 15,
        E::TopicNameInvalid(_) => 16,
        E::EmptyTopicWithoutAlias => 17,
        E::TopicFilterInvalid(_) => 18,
        E::NoTopicFilters => 19,
        E::NoLocalOnSharedSubscription => 20,
        E::NoReasonCodes => 21,
        E::SubscriptionOptionsReservedBits { .. } => 22,
        E::InvalidSubscriptionQoS => 23,
        E::InvalidRetainHandling => 24,
        E::UnknownProperty { .. } => 25,
        E::PropertyNotAllowed { .. } => 26,
        E::DuplicateProperty { .. } => 27,
        E::InvalidPropertyValue { .. } => 28,
        E::PropertiesOverrun { .. } => 29,
        E::InvalidReasonCode { .. } => 30,
        E::ConnAckReservedFlags { .. } => 31,
        E::SessionPresentWithError => 32,
    }
}

const DECODE_ERROR_VARIANTS: usize = 33;

#[test]
fn every_decode_error_variant_has_a_row() {
    let covered: std::collections::BTreeSet<usize> =
        rows().iter().map(|row| variant_index(&row.expected)).collect();
    let missing: Vec<usize> = (0..DECODE_ERROR_VARIANTS).filter(|index| !covered.contains(index)).collect();
    assert!(missing.is_empty(), "variants without a malformed-input row: {missing:?}");
}
