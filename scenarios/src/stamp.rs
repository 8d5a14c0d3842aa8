//! The payload stamp: a fixed 40-byte little-endian header at the start of every device payload,
//! so any observer can tell which publisher sent a message, its sequence number and when it was
//! planned and actually sent (reference-loadgen section 3.2).
//!
//! Layout: `magic u32 | version u16 | flags u16 | publisher_id u64 | seq u64 | planned_send_ns u64 |
//! actual_send_ns u64`, then padding up to the fleet's payload size. For MQTT 5 payloads that must
//! stay untouched the same fields travel as one user property instead. This module owns encoding
//! and decoding with typed errors; it must never panic on bytes from the network.

use bytes::{BufMut, Bytes, BytesMut};
use edgeproof_system::Time;
use thiserror::Error;

/// Length of the stamp in bytes; every payload is at least this long.
pub const STAMP_LEN: usize = 40;
/// "EPST" read as a little-endian u32: marks a payload as stamped by edgeproof.
pub const STAMP_MAGIC: u32 = u32::from_le_bytes(*b"EPST");
/// The layout version this module writes and reads.
pub const STAMP_VERSION: u16 = 1;
/// The byte the padding after the stamp is filled with (a constant keeps payloads reproducible).
pub const PADDING_BYTE: u8 = 0x2e;

/// Flag bit: the publisher re-sent this message after a reconnect (it was indeterminate).
pub const FLAG_RESENT: u16 = 0x0001;

/// The identity and timing of one device message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// Free bits for the publisher (see `FLAG_*`); unknown bits are kept, not rejected.
    pub flags: u16,
    /// Global id of the publishing device (dense across fleets).
    pub publisher_id: u64,
    /// Per-publisher sequence number, dense from 0.
    pub seq: u64,
    /// When the open-loop plan wanted the message sent (latency is measured from here).
    pub planned_send: Time,
    /// When the publisher actually handed it to its connection.
    pub actual_send: Time,
}

/// Why a payload does not carry a valid stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum StampError {
    /// The payload is shorter than the 40-byte stamp.
    #[error("payload of {len} bytes is shorter than the {STAMP_LEN}-byte stamp")]
    TooShort {
        /// Actual payload length.
        len: usize,
    },
    /// The first four bytes are not the stamp magic: not an edgeproof payload.
    #[error("bad stamp magic {found:#010x}, expected {STAMP_MAGIC:#010x}")]
    BadMagic {
        /// The magic found.
        found: u32,
    },
    /// A stamp layout this build does not know.
    #[error("unsupported stamp version {found}, expected {STAMP_VERSION}")]
    UnsupportedVersion {
        /// The version found.
        found: u16,
    },
    /// The MQTT 5 user properties carry no `edgeproof-stamp` entry.
    #[error("no `{STAMP_PROPERTY}` user property")]
    MissingProperty,
    /// The `edgeproof-stamp` user property is not six decimal fields.
    #[error(
        "malformed `{STAMP_PROPERTY}` user property, expected \"version flags publisher_id seq planned_ns actual_ns\""
    )]
    MalformedProperty,
}

/// Name of the MQTT 5 user property that carries the stamp when payloads must stay untouched.
pub const STAMP_PROPERTY: &str = "edgeproof-stamp";

impl Stamp {
    /// Writes the 40-byte stamp followed by padding up to `payload_bytes` into `out`.
    ///
    /// Panics when `payload_bytes < STAMP_LEN`: scenario validation rejects such fleets, so a
    /// caller asking for it is a bug.
    pub fn write_payload(&self, payload_bytes: usize, out: &mut BytesMut) {
        assert!(payload_bytes >= STAMP_LEN, "payload of {payload_bytes} bytes cannot hold the stamp");
        let start = out.len();
        out.reserve(payload_bytes);
        out.put_u32_le(STAMP_MAGIC);
        out.put_u16_le(STAMP_VERSION);
        out.put_u16_le(self.flags);
        out.put_u64_le(self.publisher_id);
        out.put_u64_le(self.seq);
        out.put_u64_le(self.planned_send.as_nanos());
        out.put_u64_le(self.actual_send.as_nanos());
        assert_eq!(out.len() - start, STAMP_LEN);
        out.put_bytes(PADDING_BYTE, payload_bytes - STAMP_LEN);
        assert_eq!(out.len() - start, payload_bytes);
    }

    /// A fresh payload of exactly `payload_bytes` bytes carrying this stamp.
    pub fn to_payload(&self, payload_bytes: usize) -> Bytes {
        let mut out = BytesMut::with_capacity(payload_bytes);
        self.write_payload(payload_bytes, &mut out);
        out.freeze()
    }

    /// Reads the stamp at the start of `payload`; bytes after it are ignored.
    pub fn decode(payload: &[u8]) -> Result<Stamp, StampError> {
        let Some(header) = payload.first_chunk::<STAMP_LEN>() else {
            return Err(StampError::TooShort { len: payload.len() });
        };
        let u16_at = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]);
        let u64_at = |at: usize| {
            let mut bytes = [0_u8; 8];
            bytes.copy_from_slice(&header[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        if magic != STAMP_MAGIC {
            return Err(StampError::BadMagic { found: magic });
        }
        let version = u16_at(4);
        if version != STAMP_VERSION {
            return Err(StampError::UnsupportedVersion { found: version });
        }
        Ok(Stamp {
            flags: u16_at(6),
            publisher_id: u64_at(8),
            seq: u64_at(16),
            planned_send: Time::from_nanos(u64_at(24)),
            actual_send: Time::from_nanos(u64_at(32)),
        })
    }
}

impl Stamp {
    /// The stamp as one MQTT 5 user property (for payloads that must stay as the application
    /// wrote them): `edgeproof-stamp = "version flags publisher_id seq planned_ns actual_ns"`.
    pub fn to_user_property(&self) -> (String, String) {
        let value = format!(
            "{STAMP_VERSION} {} {} {} {} {}",
            self.flags,
            self.publisher_id,
            self.seq,
            self.planned_send.as_nanos(),
            self.actual_send.as_nanos()
        );
        (STAMP_PROPERTY.to_string(), value)
    }

    /// Reads the stamp from a PUBLISH's user properties (the first `edgeproof-stamp` entry).
    pub fn from_user_properties(properties: &[(String, String)]) -> Result<Stamp, StampError> {
        let (_, value) =
            properties.iter().find(|(name, _)| name == STAMP_PROPERTY).ok_or(StampError::MissingProperty)?;
        let fields: Vec<u64> = value
            .split(' ')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| StampError::MalformedProperty)?;
        let [version, flags, publisher_id, seq, planned, actual] = fields[..] else {
            return Err(StampError::MalformedProperty);
        };
        if version != u64::from(STAMP_VERSION) {
            return Err(StampError::UnsupportedVersion { found: u16::try_from(version).unwrap_or(u16::MAX) });
        }
        Ok(Stamp {
            flags: u16::try_from(flags).map_err(|_| StampError::MalformedProperty)?,
            publisher_id,
            seq,
            planned_send: Time::from_nanos(planned),
            actual_send: Time::from_nanos(actual),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Stamp {
        Stamp {
            flags: FLAG_RESENT,
            publisher_id: 42,
            seq: 7,
            planned_send: Time::from_millis(1_000),
            actual_send: Time::from_millis(1_003),
        }
    }

    #[test]
    fn layout_is_the_documented_little_endian_header() {
        let payload = sample().to_payload(48);
        assert_eq!(payload.len(), 48);
        assert_eq!(&payload[0..4], b"EPST");
        assert_eq!(&payload[4..6], &[1, 0]);
        assert_eq!(&payload[6..8], &[1, 0]);
        assert_eq!(&payload[8..16], &42_u64.to_le_bytes());
        assert_eq!(&payload[16..24], &7_u64.to_le_bytes());
        assert_eq!(&payload[24..32], &1_000_000_000_u64.to_le_bytes());
        assert_eq!(&payload[32..40], &1_003_000_000_u64.to_le_bytes());
        assert!(payload[40..].iter().all(|byte| *byte == PADDING_BYTE));
    }

    #[test]
    fn decode_rejects_short_foreign_and_future_payloads() {
        let payload = sample().to_payload(STAMP_LEN);
        assert_eq!(Stamp::decode(&payload[..39]), Err(StampError::TooShort { len: 39 }));
        assert_eq!(Stamp::decode(&[]), Err(StampError::TooShort { len: 0 }));
        let mut foreign = payload.to_vec();
        foreign[0] = b'X';
        assert!(matches!(Stamp::decode(&foreign), Err(StampError::BadMagic { .. })));
        let mut future = payload.to_vec();
        future[4] = 2;
        assert_eq!(Stamp::decode(&future), Err(StampError::UnsupportedVersion { found: 2 }));
        assert_eq!(Stamp::decode(&payload), Ok(sample()));
    }

    #[test]
    fn malformed_user_properties_are_typed_errors() {
        let property = |value: &str| vec![(STAMP_PROPERTY.to_string(), value.to_string())];
        assert_eq!(Stamp::from_user_properties(&[]), Err(StampError::MissingProperty));
        assert_eq!(Stamp::from_user_properties(&property("1 0 1 2 3")), Err(StampError::MalformedProperty));
        assert_eq!(Stamp::from_user_properties(&property("1 0 1 2 3 x")), Err(StampError::MalformedProperty));
        assert_eq!(
            Stamp::from_user_properties(&property("1 70000 1 2 3 4")),
            Err(StampError::MalformedProperty)
        );
        assert_eq!(
            Stamp::from_user_properties(&property("2 0 1 2 3 4")),
            Err(StampError::UnsupportedVersion { found: 2 })
        );
        assert_eq!(sample().to_user_property().1, "1 1 42 7 1000000000 1003000000");
    }

    #[test]
    #[should_panic(expected = "cannot hold the stamp")]
    fn a_payload_smaller_than_the_stamp_is_a_caller_bug() {
        let _ = sample().to_payload(STAMP_LEN - 1);
    }

    proptest! {
        #[test]
        fn encode_decode_roundtrips(
            flags: u16,
            publisher_id: u64,
            seq: u64,
            planned: u64,
            actual: u64,
            padding in 0_usize..256,
        ) {
            let stamp = Stamp {
                flags,
                publisher_id,
                seq,
                planned_send: Time::from_nanos(planned),
                actual_send: Time::from_nanos(actual),
            };
            let payload = stamp.to_payload(STAMP_LEN + padding);
            prop_assert_eq!(payload.len(), STAMP_LEN + padding);
            prop_assert_eq!(Stamp::decode(&payload), Ok(stamp));
        }

        #[test]
        fn user_property_roundtrips(flags: u16, publisher_id: u64, seq: u64, planned: u64, actual: u64) {
            let stamp = Stamp {
                flags,
                publisher_id,
                seq,
                planned_send: Time::from_nanos(planned),
                actual_send: Time::from_nanos(actual),
            };
            let properties = vec![("other".to_string(), "x".to_string()), stamp.to_user_property()];
            prop_assert_eq!(Stamp::from_user_properties(&properties), Ok(stamp));
        }

        #[test]
        fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = Stamp::decode(&bytes);
        }
    }
}
