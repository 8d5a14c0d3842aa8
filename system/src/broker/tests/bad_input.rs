//! The bad-input table: malformed packets and protocol violations, as raw bytes, for MQTT 3.1.1
//! and 5.0, each with the outcome the spec asks for. After every row a well-behaved pair of
//! clients must still complete a QoS 1 round trip on the same broker.
//!
//! This module owns the table only; it must never relax a row to make it pass.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::harness::*;
use crate::broker::BrokerConfig;
use crate::mqtt::{Packet, ProtocolVersion, ReasonCode};

/// What the client must see after sending the row's bytes.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// CONNACK with this v5 reason code, then close.
    ConnackV5(u8),
    /// A v3.1.1 CONNACK with this return code, then close.
    ConnackV311(u8),
    /// (after CONNECT, v5) DISCONNECT with this reason code, then close.
    Disconnect(u8),
    /// Close without any packet.
    Close,
    /// The connection stays open and the client receives a packet with this type number and
    /// reason code.
    Reply { packet_type: u8, reason: u8 },
}

/// Where the row's bytes go.
#[derive(Clone, Copy, Debug)]
enum Stage {
    /// As the first bytes of a fresh connection.
    Fresh,
    /// After a successful CONNECT of this version.
    After(ProtocolVersion),
}

struct Row {
    name: &'static str,
    stage: Stage,
    bytes: Vec<u8>,
    expect: Expect,
}

fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace().map(|byte| u8::from_str_radix(byte, 16).expect("hex byte")).collect()
}

/// A v5 CONNECT whose property block is `properties` (client id "c").
fn v5_connect_with_properties(properties: &str) -> Vec<u8> {
    let properties = hex(properties);
    let mut body = hex("00 04 4d 51 54 54 05 02 00 3c");
    body.push(u8::try_from(properties.len()).unwrap());
    body.extend(properties);
    body.extend(hex("00 01 63"));
    let mut packet = vec![0x10, u8::try_from(body.len()).unwrap()];
    packet.extend(body);
    packet
}

/// 101 QoS 2 PUBLISHes without PUBREL: one more than the advertised Receive Maximum of 100.
fn receive_maximum_flood() -> Vec<u8> {
    let mut bytes = Vec::new();
    for packet_id in 1..=101u16 {
        let [high, low] = packet_id.to_be_bytes();
        bytes.extend([0x34, 0x06, 0x00, 0x01, 0x61, high, low, 0x00]);
    }
    bytes
}

fn rows() -> Vec<Row> {
    use Expect::*;
    use ProtocolVersion::{V5, V311};
    use Stage::*;
    let row = |name, stage, bytes: Vec<u8>, expect| Row { name, stage, bytes, expect };
    vec![
        // Before CONNECT.
        row("first packet is PUBLISH", Fresh, hex("30 07 00 01 61 00 68 69 21"), Close),
        row("first packet is PINGREQ", Fresh, hex("c0 00"), Close),
        row(
            "v5 CONNECT with protocol name MQTX",
            Fresh,
            hex("10 0e 00 04 4d 51 54 58 05 02 00 3c 00 00 01 63"),
            ConnackV5(0x84),
        ),
        row(
            "CONNECT protocol level 3 (MQIsdp)",
            Fresh,
            hex("10 0f 00 06 4d 51 49 73 64 70 03 02 00 3c 00 01 63"),
            ConnackV311(1),
        ),
        row(
            "CONNECT protocol level 6",
            Fresh,
            hex("10 0e 00 04 4d 51 54 54 06 02 00 3c 00 00 01 63"),
            ConnackV5(0x84),
        ),
        row(
            "v3.1.1 CONNECT reserved flag bit set",
            Fresh,
            hex("10 0d 00 04 4d 51 54 54 04 03 00 3c 00 01 63"),
            Close,
        ),
        row(
            "v5 CONNECT reserved flag bit set",
            Fresh,
            hex("10 0e 00 04 4d 51 54 54 05 03 00 3c 00 00 01 63"),
            ConnackV5(0x81),
        ),
        row(
            "v5 CONNECT fixed header flags not zero",
            Fresh,
            hex("11 0e 00 04 4d 51 54 54 05 02 00 3c 00 00 01 63"),
            ConnackV5(0x81),
        ),
        row("remaining length of 5 bytes", Fresh, hex("10 ff ff ff ff 01"), Close),
        row(
            "v5 CONNECT truncated client id",
            Fresh,
            hex("10 0e 00 04 4d 51 54 54 05 02 00 3c 00 00 05 63"),
            ConnackV5(0x81),
        ),
        row(
            "v5 CONNECT client id invalid UTF-8",
            Fresh,
            hex("10 0e 00 04 4d 51 54 54 05 02 00 3c 00 00 01 ff"),
            ConnackV5(0x81),
        ),
        row("v5 CONNECT unknown property 0x7f", Fresh, v5_connect_with_properties("7f 00"), ConnackV5(0x81)),
        row(
            "v5 CONNECT duplicate session expiry",
            Fresh,
            v5_connect_with_properties("11 00 00 00 0a 11 00 00 00 0a"),
            ConnackV5(0x82),
        ),
        row("v5 CONNECT receive maximum 0", Fresh, v5_connect_with_properties("21 00 00"), ConnackV5(0x82)),
        row(
            "v5 CONNECT authentication method",
            Fresh,
            v5_connect_with_properties("15 00 01 78"),
            ConnackV5(0x8c),
        ),
        row(
            "v3.1.1 empty client id without clean session",
            Fresh,
            hex("10 0c 00 04 4d 51 54 54 04 00 00 3c 00 00"),
            ConnackV311(2),
        ),
        row(
            "v3.1.1 CONNECT will QoS 3",
            Fresh,
            hex("10 13 00 04 4d 51 54 54 04 1e 00 3c 00 01 63 00 01 74 00 01 70"),
            Close,
        ),
        row(
            "v5 CONNECT will topic with wildcard",
            Fresh,
            hex("10 14 00 04 4d 51 54 54 05 06 00 3c 00 00 01 63 00 00 01 23 00 00"),
            ConnackV5(0x90),
        ),
        // After CONNECT.
        row(
            "v5 second CONNECT",
            After(V5),
            hex("10 0e 00 04 4d 51 54 54 05 02 00 3c 00 00 01 63"),
            Disconnect(0x82),
        ),
        row("v3.1.1 second CONNECT", After(V311), hex("10 0d 00 04 4d 51 54 54 04 02 00 3c 00 01 63"), Close),
        row("v5 PUBLISH QoS 3", After(V5), hex("36 06 00 01 61 00 01 00"), Disconnect(0x81)),
        row("v3.1.1 PUBLISH QoS 3", After(V311), hex("36 05 00 01 61 00 01"), Close),
        row("v5 PUBLISH wildcard in topic", After(V5), hex("30 06 00 03 61 2f 23 00"), Disconnect(0x90)),
        row("v3.1.1 PUBLISH null character in topic", After(V311), hex("30 05 00 03 61 00 62"), Close),
        row("v5 PUBLISH topic invalid UTF-8", After(V5), hex("30 05 00 02 c3 28 00"), Disconnect(0x81)),
        row("v5 PUBLISH QoS 1 packet id 0", After(V5), hex("32 06 00 01 61 00 00 00"), Disconnect(0x82)),
        row("v3.1.1 PUBLISH QoS 1 packet id 0", After(V311), hex("32 05 00 01 61 00 00"), Close),
        row(
            "v5 PUBLISH property length beyond packet",
            After(V5),
            hex("30 05 00 01 61 05 01"),
            Disconnect(0x81),
        ),
        row("v5 PUBLISH topic alias 0", After(V5), hex("30 07 00 01 61 03 23 00 00"), Disconnect(0x94)),
        row(
            "v5 PUBLISH topic alias above maximum",
            After(V5),
            hex("30 07 00 01 61 03 23 00 11"),
            Disconnect(0x94),
        ),
        row(
            "v5 PUBLISH unknown topic alias, empty topic",
            After(V5),
            hex("30 06 00 00 03 23 00 01"),
            Disconnect(0x82),
        ),
        row(
            "v5 PUBLISH with subscription identifier",
            After(V5),
            hex("30 06 00 01 61 02 0b 01"),
            Disconnect(0x82),
        ),
        row(
            "v5 PUBLISH duplicate payload format",
            After(V5),
            hex("30 08 00 01 61 04 01 00 01 00"),
            Disconnect(0x82),
        ),
        row("v5 receive maximum exceeded", After(V5), receive_maximum_flood(), Disconnect(0x93)),
        row("v5 packet too large", After(V5), hex("30 80 80 80 01"), Disconnect(0x95)),
        row("v5 SUBSCRIBE without filters", After(V5), hex("82 03 00 01 00"), Disconnect(0x82)),
        row("v3.1.1 SUBSCRIBE fixed header flags 0", After(V311), hex("80 06 00 01 00 01 61 00"), Close),
        row(
            "v5 SUBSCRIBE reserved option bits",
            After(V5),
            hex("82 07 00 01 00 00 01 61 c0"),
            Disconnect(0x81),
        ),
        row("v5 SUBSCRIBE retain handling 3", After(V5), hex("82 07 00 01 00 00 01 61 30"), Disconnect(0x82)),
        row(
            "v5 SUBSCRIBE no local on shared",
            After(V5),
            hex("82 10 00 01 00 00 0a 24 73 68 61 72 65 2f 67 2f 61 04"),
            Disconnect(0x82),
        ),
        row(
            "v5 SUBSCRIBE subscription identifier 0",
            After(V5),
            hex("82 09 00 01 02 0b 00 00 01 61 00"),
            Disconnect(0x82),
        ),
        row("v5 UNSUBSCRIBE without filters", After(V5), hex("a2 03 00 01 00"), Disconnect(0x82)),
        row(
            "v5 PUBREL for unknown packet id",
            After(V5),
            hex("62 02 00 07"),
            Reply { packet_type: 7, reason: 0x92 },
        ),
        row(
            "v5 PUBREC for unknown packet id",
            After(V5),
            hex("50 02 00 08"),
            Reply { packet_type: 6, reason: 0x92 },
        ),
        row("v3.1.1 AUTH", After(V311), hex("f0 00"), Close),
        row("v5 AUTH without authentication method", After(V5), hex("f0 00"), Disconnect(0x82)),
        row("v5 CONNACK from a client", After(V5), hex("20 03 00 00 00"), Disconnect(0x82)),
        row("v5 PINGREQ with flags", After(V5), hex("c1 00"), Disconnect(0x81)),
        row("v5 reserved packet type 0", After(V5), hex("00 00"), Disconnect(0x81)),
        row(
            "v5 DISCONNECT raising a zero session expiry",
            After(V5),
            hex("e0 07 00 05 11 00 00 00 0a"),
            Disconnect(0x82),
        ),
    ]
}

fn run_row(h: &mut Harness, index: usize, row: &Row) {
    let connection = match row.stage {
        Stage::Fresh => {
            let connection = h.open();
            let version = match row.expect {
                Expect::ConnackV311(_) => ProtocolVersion::V311,
                _ => ProtocolVersion::V5,
            };
            h.pipes.get_mut(&connection).expect("opened").version = Some(version);
            connection
        }
        Stage::After(version) => h.connect(&format!("bad-{index}"), version, true),
    };
    h.send_raw(connection, &row.bytes);
    let packets = h.take(connection);
    let closed = h.is_closed(connection);
    match row.expect {
        Expect::ConnackV5(code) | Expect::ConnackV311(code) => {
            let expected = match row.expect {
                Expect::ConnackV311(code) => ReasonCode::from_v311_connack_return_code(code).expect("valid"),
                _ => ReasonCode(code),
            };
            assert!(
                matches!(&packets[..], [Packet::ConnAck(ack)] if ack.reason_code == expected),
                "row {:?}: expected CONNACK {expected:?}, got {packets:?}",
                row.name
            );
            assert!(closed, "row {:?}: not closed", row.name);
        }
        Expect::Disconnect(code) => {
            assert!(
                matches!(packets.last(), Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode(code)),
                "row {:?}: expected DISCONNECT 0x{code:02X}, got {packets:?}",
                row.name
            );
            assert!(closed, "row {:?}: not closed", row.name);
        }
        Expect::Close => {
            assert!(packets.is_empty(), "row {:?}: expected a plain close, got {packets:?}", row.name);
            assert!(closed, "row {:?}: not closed", row.name);
        }
        Expect::Reply { packet_type, reason } => {
            let reply = packets.last().unwrap_or_else(|| panic!("row {:?}: no reply", row.name));
            let code = match reply {
                Packet::PubRel(reply) | Packet::PubComp(reply) => reply.reason_code,
                other => panic!("row {:?}: unexpected {other:?}", row.name),
            };
            assert_eq!((reply.packet_type(), code), (packet_type, ReasonCode(reason)), "row {:?}", row.name);
            assert!(!closed, "row {:?}: closed", row.name);
        }
    }
}

#[test]
fn bad_input_table_gets_the_spec_outcome_and_the_broker_keeps_serving() {
    let table = rows();
    assert!(table.len() >= 30, "the issue asks for at least 30 rows");
    let mut h = Harness::new(BrokerConfig::default());
    let mut failures = Vec::new();
    for (index, row) in table.iter().enumerate() {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            run_row(&mut h, index, row);
            h.assert_qos1_round_trip(&format!("row{index}"));
        }));
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
                .unwrap_or_default();
            failures.push(format!("{}: {message}", row.name));
            // A panic may leave the broker half-updated; continue on a fresh one.
            h = Harness::new(BrokerConfig::default());
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
    assert!(h.broker.stats().protocol_errors.values().sum::<u64>() >= 40);
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    /// Random bytes, with a bias towards plausible fixed headers so that the decoder gets past
    /// the first byte often.
    fn garbage() -> impl Strategy<Value = Vec<u8>> {
        let header = (1u8..=15, 0u8..16, 0u8..64)
            .prop_map(|(packet_type, flags, len)| vec![packet_type << 4 | flags, len]);
        (header, proptest::collection::vec(any::<u8>(), 0..80)).prop_map(|(mut head, tail)| {
            head.extend(tail);
            head
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic_the_broker_and_it_keeps_serving(
            stage in 0u8..3,
            chunks in proptest::collection::vec(garbage(), 1..4),
        ) {
            let mut h = Harness::new(BrokerConfig::default());
            let connection = match stage {
                0 => h.open(),
                1 => h.connect("fuzz", ProtocolVersion::V311, false),
                _ => h.connect("fuzz", ProtocolVersion::V5, false),
            };
            for chunk in &chunks {
                h.send_raw(connection, chunk);
            }
            h.assert_qos1_round_trip("after-fuzz");
            h.lose(connection);
            h.advance(std::time::Duration::from_secs(100));
        }
    }
}
