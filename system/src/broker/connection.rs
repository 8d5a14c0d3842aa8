//! Per-connection protocol state: the phase (waiting for CONNECT, connected to a session), the
//! read buffer, the coalescing output buffer, keep-alive bookkeeping and inbound topic aliases.
//!
//! This module owns what lives exactly as long as one transport connection. It must never hold
//! session state (that outlives connections, see `session`) and never decide protocol outcomes:
//! the broker (`super`) does, and uses [`write_packet`] to put packets on the wire.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rustc_hash::FxHashMap;

use super::ConnectionId;
use super::session::SessionKey;
use super::stats::BrokerStats;
use crate::mqtt::codec::{self, EncodeError};
use crate::mqtt::{Packet, ProtocolVersion};
use crate::time::Time;

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Opened; the first packet must be CONNECT.
    AwaitingConnect,
    /// CONNACK 0x00 sent; bound to a session.
    Connected(SessionKey),
}

#[derive(Debug)]
pub(super) struct Connection {
    pub id: ConnectionId,
    pub phase: Phase,
    /// Negotiated protocol; v5 until CONNECT says otherwise (the codec reads CONNECT's own level).
    pub protocol: ProtocolVersion,
    pub read_buffer: BytesMut,
    /// Encoded packets not yet handed to the driver; coalesced into one `Bytes` per poll.
    pub output: BytesMut,
    /// True while this connection is listed in the broker's pending-output list.
    pub output_listed: bool,
    /// 1.5 x the negotiated keep-alive; `None` when keep-alive is off.
    pub keep_alive_timeout: Option<Duration>,
    pub last_received_at: Time,
    /// Inbound topic aliases (v5): index `alias - 1`, grown on demand up to the advertised maximum.
    pub topic_aliases: Vec<Option<Arc<str>>>,
    /// Outbound topic aliases (v5), when the client announced a Topic Alias Maximum.
    pub outbound_aliases: Option<Box<OutboundAliases>>,
    /// Whether the CONNECT asked for a Session Expiry Interval of zero (a DISCONNECT must not
    /// raise it then, MQTT-3.14.2-2).
    pub connect_expiry_was_zero: bool,
}

/// The topic aliases the broker assigned on one connection (broker to client).
#[derive(Debug)]
pub(super) struct OutboundAliases {
    /// The client's Topic Alias Maximum.
    pub maximum: u16,
    pub by_topic: FxHashMap<Arc<str>, u16>,
}

impl Connection {
    pub fn new(id: ConnectionId, now: Time) -> Connection {
        Connection {
            id,
            phase: Phase::AwaitingConnect,
            protocol: ProtocolVersion::V5,
            read_buffer: BytesMut::new(),
            output: BytesMut::new(),
            output_listed: false,
            keep_alive_timeout: None,
            last_received_at: now,
            topic_aliases: Vec::new(),
            outbound_aliases: None,
            connect_expiry_was_zero: true,
        }
    }

    pub fn session(&self) -> Option<SessionKey> {
        match self.phase {
            Phase::AwaitingConnect => None,
            Phase::Connected(key) => Some(key),
        }
    }
}

/// Encodes `packet` for the connection's protocol onto its output and lists the connection for
/// [`super::Broker::poll_transmit`]. Returns the encoded length. Packets larger than
/// `size_limit_bytes` are taken back off the output and reported as `Ok(None)`.
pub(super) fn write_packet(
    connection: &mut Connection,
    packet: &Packet,
    size_limit_bytes: u32,
    pending_output: &mut VecDeque<ConnectionId>,
    stats: &mut BrokerStats,
) -> Result<Option<usize>, EncodeError> {
    let before = connection.output.len();
    codec::encode(packet, connection.protocol, &mut connection.output)?;
    let encoded_len = connection.output.len() - before;
    assert!(encoded_len >= 2, "every MQTT packet has a fixed header");
    if encoded_len as u64 > u64::from(size_limit_bytes) {
        connection.output.truncate(before);
        return Ok(None);
    }
    stats.packets_sent += 1;
    if !connection.output_listed {
        connection.output_listed = true;
        pending_output.push_back(connection.id);
    }
    Ok(Some(encoded_len))
}
