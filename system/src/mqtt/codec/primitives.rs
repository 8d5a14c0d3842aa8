//! The MQTT data representations of spec section 1.5: two- and four-byte integers, Variable Byte
//! Integers, UTF-8 Encoded Strings and Binary Data, read from a bounded cursor and written to a
//! `BytesMut`.
//!
//! This module owns the byte-level rules (length prefixes, the four-byte varint limit, UTF-8 and
//! U+0000 checks). It must never know about packet types, and a read must never go past the
//! bytes it was handed nor panic: every shortfall is a typed `DecodeError`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{DecodeError, EncodeError};
use crate::mqtt::packet::PacketId;

/// The largest value a Variable Byte Integer can carry (spec 1.5.5), which bounds the Remaining
/// Length and the Subscription Identifier.
pub const VARIABLE_BYTE_INTEGER_MAX: u32 = 268_435_455;

/// The largest UTF-8 Encoded String or Binary Data body: the two-byte length prefix's range.
pub const LENGTH_PREFIXED_MAX_BYTES: usize = u16::MAX as usize;

/// Parses a Variable Byte Integer at the front of `bytes` without consuming anything.
/// `Ok(None)` means the bytes end before the integer does; `Ok(Some((value, encoded_len)))`
/// otherwise. More than four bytes is malformed (spec 1.5.5); non-minimal encodings are accepted.
pub fn peek_variable_byte_integer(bytes: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for (index, byte) in bytes.iter().take(4).enumerate() {
        value |= u32::from(byte & 0x7F) << (7 * index);
        if byte & 0x80 == 0 {
            debug_assert!(value <= VARIABLE_BYTE_INTEGER_MAX);
            return Ok(Some((value, index + 1)));
        }
    }
    if bytes.len() >= 4 {
        // Four continuation bits in a row: a fifth byte would be needed, which the spec forbids.
        return Err(DecodeError::MalformedVariableByteInteger);
    }
    Ok(None)
}

/// The number of bytes the Variable Byte Integer encoding of `value` takes (1..=4).
pub const fn variable_byte_integer_len(value: u32) -> usize {
    assert!(value <= VARIABLE_BYTE_INTEGER_MAX);
    if value < 128 {
        1
    } else if value < 16_384 {
        2
    } else if value < 2_097_152 {
        3
    } else {
        4
    }
}

/// Appends the minimal Variable Byte Integer encoding of `value`.
pub fn put_variable_byte_integer(out: &mut BytesMut, value: u32) {
    assert!(value <= VARIABLE_BYTE_INTEGER_MAX, "variable byte integer {value} out of range");
    let start_len = out.len();
    let mut rest = value;
    loop {
        let mut byte = (rest % 128) as u8;
        rest /= 128;
        if rest > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if rest == 0 {
            break;
        }
    }
    debug_assert_eq!(out.len() - start_len, variable_byte_integer_len(value));
}

/// The encoded size of a UTF-8 Encoded String, checking that it can be encoded: at most 65,535
/// bytes and no U+0000 (MQTT-1.5.4-2).
pub fn string_len(value: &str, field: &'static str) -> Result<usize, EncodeError> {
    if value.len() > LENGTH_PREFIXED_MAX_BYTES {
        return Err(EncodeError::StringTooLong { field, len_bytes: value.len() });
    }
    if value.as_bytes().contains(&0) {
        return Err(EncodeError::NullCharacter { field });
    }
    Ok(2 + value.len())
}

/// The encoded size of a Binary Data field, checking its length fits the two-byte prefix.
pub fn binary_len(value: &[u8], field: &'static str) -> Result<usize, EncodeError> {
    if value.len() > LENGTH_PREFIXED_MAX_BYTES {
        return Err(EncodeError::BinaryTooLong { field, len_bytes: value.len() });
    }
    Ok(2 + value.len())
}

/// Appends a UTF-8 Encoded String; the caller has checked it with [`string_len`].
pub fn put_string(out: &mut BytesMut, value: &str) {
    put_binary(out, value.as_bytes());
}

/// Appends Binary Data; the caller has checked it with [`binary_len`].
pub fn put_binary(out: &mut BytesMut, value: &[u8]) {
    let len = u16::try_from(value.len()).expect("length-prefixed field checked before writing");
    out.put_u16(len);
    out.put_slice(value);
}

/// A cursor over the bytes of one packet (or one property block). Every read checks the bytes
/// are there; a shortfall is [`DecodeError::UnexpectedEnd`].
#[derive(Debug)]
pub struct Reader {
    buf: Bytes,
}

impl Reader {
    pub fn new(buf: Bytes) -> Reader {
        Reader { buf }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn need(&self, len: usize) -> Result<(), DecodeError> {
        if self.buf.len() < len { Err(DecodeError::UnexpectedEnd) } else { Ok(()) }
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    /// A Variable Byte Integer; one that the packet ends in the middle of is `UnexpectedEnd`.
    pub fn variable_byte_integer(&mut self) -> Result<u32, DecodeError> {
        match peek_variable_byte_integer(&self.buf)? {
            Some((value, len)) => {
                self.buf.advance(len);
                Ok(value)
            }
            None => Err(DecodeError::UnexpectedEnd),
        }
    }

    /// A non-zero Packet Identifier (MQTT-2.2.1-3).
    pub fn packet_id(&mut self) -> Result<PacketId, DecodeError> {
        PacketId::new(self.u16()?).ok_or(DecodeError::ZeroPacketId)
    }

    /// The next `len` bytes as a zero-copy slice of the packet.
    pub fn take(&mut self, len: usize) -> Result<Bytes, DecodeError> {
        self.need(len)?;
        Ok(self.buf.split_to(len))
    }

    /// Binary Data: a two-byte length, then that many bytes (zero-copy).
    pub fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16()?);
        self.take(len)
    }

    /// A UTF-8 Encoded String: valid UTF-8 without U+0000 (spec 1.5.4). Surrogates cannot appear
    /// because Rust's UTF-8 validation rejects their encodings.
    pub fn string(&mut self) -> Result<String, DecodeError> {
        let len = usize::from(self.u16()?);
        self.need(len)?;
        let raw = &self.buf[..len];
        let text = std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8)?;
        if raw.contains(&0) {
            return Err(DecodeError::NullCharacter);
        }
        let owned = text.to_owned();
        self.buf.advance(len);
        Ok(owned)
    }

    /// Everything not yet read (zero-copy), leaving the reader empty.
    pub fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Succeeds only when every byte was read: leftover bytes mean the Remaining Length does not
    /// match the content, which is malformed.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes { extra_bytes: self.buf.len() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_byte_integer_boundaries_roundtrip() {
        for value in [0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, VARIABLE_BYTE_INTEGER_MAX] {
            let mut out = BytesMut::new();
            put_variable_byte_integer(&mut out, value);
            assert_eq!(out.len(), variable_byte_integer_len(value));
            assert_eq!(peek_variable_byte_integer(&out), Ok(Some((value, out.len()))));
            // Every strict prefix is incomplete, not an error.
            for cut in 0..out.len() {
                assert_eq!(peek_variable_byte_integer(&out[..cut]), Ok(None));
            }
        }
    }

    #[test]
    fn five_byte_variable_byte_integer_is_malformed() {
        assert_eq!(
            peek_variable_byte_integer(&[0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(DecodeError::MalformedVariableByteInteger)
        );
        assert_eq!(
            peek_variable_byte_integer(&[0xFF, 0xFF, 0xFF, 0xFF]),
            Err(DecodeError::MalformedVariableByteInteger)
        );
        // Non-minimal but four bytes or fewer is accepted.
        assert_eq!(peek_variable_byte_integer(&[0x80, 0x00]), Ok(Some((0, 2))));
    }

    #[test]
    fn strings_reject_null_and_bad_utf8() {
        let mut reader = Reader::new(Bytes::from_static(&[0, 3, b'a', 0, b'b']));
        assert_eq!(reader.string(), Err(DecodeError::NullCharacter));
        let mut reader = Reader::new(Bytes::from_static(&[0, 2, 0xC3, 0x28]));
        assert_eq!(reader.string(), Err(DecodeError::InvalidUtf8));
        let mut reader = Reader::new(Bytes::from_static(&[0, 5, b'a']));
        assert_eq!(reader.string(), Err(DecodeError::UnexpectedEnd));
        assert!(string_len(&"x".repeat(65_536), "test").is_err());
        assert_eq!(string_len("abc", "test"), Ok(5));
    }
}
