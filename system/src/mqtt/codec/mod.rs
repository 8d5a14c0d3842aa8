//! The MQTT codec: bytes <-> [`Packet`] for MQTT 3.1.1 and 5.0, incremental and strict.
//!
//! This module owns the wire format and the spec's well-formedness rules. It must never hold
//! connection state beyond what one call needs, and never panic on any input.
//!
//! SKELETON: the public signatures below are the contract other modules code against; the codec
//! helper replaces the bodies.

use bytes::BytesMut;
use thiserror::Error;

use super::packet::{Packet, ProtocolVersion};
use super::reason::ReasonCode;

/// Why bytes could not be decoded into a packet.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
}

impl DecodeError {
    /// The v5 reason code the spec names for this error (for CONNACK or DISCONNECT).
    pub fn reason_code(&self) -> ReasonCode {
        ReasonCode::MALFORMED_PACKET
    }
}

/// Why a packet could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("packet cannot be encoded: {0}")]
    Invalid(&'static str),
}

/// Decodes one packet from the front of `buf`. `Ok(None)` when `buf` does not yet hold a whole
/// packet (nothing is consumed); on success the packet's bytes are consumed. `version` is the
/// negotiated protocol (a CONNECT carries its own). Packets larger than `max_packet_size_bytes`
/// are rejected as soon as their fixed header is read.
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size_bytes: u32,
) -> Result<Option<Packet>, DecodeError> {
    let _ = (buf, version, max_packet_size_bytes);
    todo!("codec helper")
}

/// Appends the encoding of `packet` for `version` to `out`.
pub fn encode(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
    let _ = (packet, version, out);
    todo!("codec helper")
}

/// The number of bytes [`encode`] would append (to honour a peer's Maximum Packet Size).
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    let _ = (packet, version);
    todo!("codec helper")
}
