//! The sans-IO MQTT broker core: connections, sessions, subscriptions, routing, QoS 0/1/2 flows,
//! keep-alive, takeover and wills, for MQTT 3.1.1 and 5.0 clients.
//!
//! This module owns all broker state of one broker instance. Inputs are connection lifecycle
//! notifications, bytes and `now`; outputs are bytes (or a close) per connection, one next
//! deadline and events. It must never do I/O, read a clock, spawn, or iterate a default-hashed map.
//!
//! Layout: `connection` (per-transport state and output), `session` (per-client state),
//! `lifecycle` (CONNECT, DISCONNECT, close, takeover, wills, expiry), `routing` (PUBLISH flows,
//! SUBSCRIBE, delivery and queues), `trie` (subscriptions), `retained`, `timers`, `config`, `stats`.
//!
//! Choices where the spec leaves room (each counted in [`BrokerStats`]):
//! - Inbound QoS 1 is acknowledged as soon as it is routed; inbound QoS 2 is routed on PUBLISH
//!   (the spec's method B) and its packet id kept until PUBREL, so a DUP retransmission is
//!   acknowledged but never routed twice.
//! - QoS 0 for a session without a connection is dropped, as in Azure IoT Operations.
//! - At the broker-wide queued-bytes bound a v5 QoS 1/2 PUBLISH gets 0x97; a v3.1.1 client,
//!   which cannot be told, is disconnected without an acknowledgement so it keeps the message.
//! - Shared subscriptions pick members round-robin, skipping members without a connection while
//!   any member has one; retained messages are not sent for shared subscriptions.
//! - Overlapping subscriptions of one session (shared ones included) give one delivery with the
//!   highest granted QoS and every subscription identifier.
//! - A takeover continues the session unless the new CONNECT has Clean Start 1, whatever the old
//!   session's expiry; the old will follows spec 3.1.4.
//! - Outbound topic aliases are assigned first come up to the client's maximum and never replaced.
//! - [`Broker::shutdown`] publishes every will first (the server closes the connections, which is
//!   not a client DISCONNECT, spec 3.1.2.5; delayed wills too, since the session ends with this
//!   in-memory broker, spec 3.1.3.2.2; Mosquitto does the same), so subscribers still connected
//!   receive them, then sends DISCONNECT 0x8B to v5 clients and closes every connection. Sessions
//!   are not persisted: they and their queued messages are lost with the broker instance.

mod config;
mod connection;
mod lifecycle;
mod retained;
mod routing;
mod session;
mod stats;
mod timers;
mod trie;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use rustc_hash::FxHashMap;

pub use config::{BrokerConfig, BrokerConfigError, QueueFullPolicy};
pub use stats::{BrokerStats, DropReason};

use self::connection::{Connection, Phase};
use self::lifecycle::CloseCause;
use self::retained::RetainedStore;
use self::session::{Session, SessionKey};
use self::timers::{Timer, Timers};
use self::trie::{SubscriptionTrie, TrieEntry};
use crate::mqtt::codec::{self, DecodeError};
use crate::mqtt::{Packet, ProtocolVersion, ReasonCode};
use crate::time::Time;

/// The property identifier of Topic Alias (spec 3.3.2.3.4).
const TOPIC_ALIAS_PROPERTY_ID: u8 = 0x23;

/// Identifies one transport connection; chosen by the driver, unique for the broker's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u64);

/// What the driver must do for a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transmit {
    /// Write these bytes to the connection, in order.
    Send { connection: ConnectionId, bytes: Bytes },
    /// Flush what was sent before, then close the connection.
    Close { connection: ConnectionId },
}

/// Observable things the broker did (for metrics, traces and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerEvent {
    /// A connection closed by the broker, with why (for a client's DISCONNECT: its reason code).
    ConnectionClosed { connection: ConnectionId, reason: ReasonCode },
    /// The driver reported the transport of a connection gone ([`Broker::handle_connection_lost`]).
    ConnectionLost { connection: ConnectionId },
    /// CONNACK 0x00 was sent.
    Connected { connection: ConnectionId, client_id: Arc<str>, session_present: bool },
    /// A connection was closed because a new one connected with its client id.
    SessionTakenOver { client_id: Arc<str>, old_connection: ConnectionId, new_connection: ConnectionId },
    /// A disconnected session reached its expiry and was removed.
    SessionExpired { client_id: Arc<str> },
    /// A will message was published.
    WillPublished { client_id: Arc<str>, topic: Arc<str> },
    /// [`Broker::shutdown`] ran: every open connection was closed (each also reported as
    /// [`BrokerEvent::ConnectionClosed`]) after `wills_published` wills were published.
    ShutDown { connections_closed: u64, wills_published: u64 },
    /// A message copy for (or from) this client was dropped. `topic` and `payload` identify the
    /// message (so an oracle can account for each drop); the payload is shared, not copied.
    MessageDropped { client_id: Arc<str>, reason: DropReason, topic: Arc<str>, payload: Bytes },
}

/// One broker instance.
pub struct Broker {
    config: BrokerConfig,
    /// Boxed so that the maps hold 16-byte entries: at a million sessions a map's power-of-two
    /// growth would otherwise reserve hundreds of megabytes of empty slots.
    connections: FxHashMap<ConnectionId, Box<Connection>>,
    sessions: FxHashMap<SessionKey, Box<Session>>,
    session_by_client_id: FxHashMap<Arc<str>, SessionKey>,
    next_session_key: u64,
    next_assigned_client_id: u64,
    /// Connections bound to a session (checked against `connections_limit`).
    connected_count: usize,
    trie: SubscriptionTrie,
    retained: RetainedStore,
    timers: Timers,
    /// Sends and closes of connections that are already gone, in order.
    output_ready: VecDeque<Transmit>,
    /// Open connections with encoded output waiting, each listed once.
    output_pending: VecDeque<ConnectionId>,
    events: VecDeque<BrokerEvent>,
    stats: BrokerStats,
    /// Reused by routing so that matching a topic allocates nothing in the steady state.
    match_stack: Vec<(u32, usize)>,
    match_entries: Vec<TrieEntry>,
    /// Set by [`Broker::shutdown`]; from then on inputs are only counted.
    shut_down: bool,
    /// Reused for the topic of every outbound PUBLISH, so a delivery allocates no topic string.
    /// Bounded by the longest topic routed (65,535 bytes at most).
    delivery_topic_buffer: String,
}

impl Broker {
    pub fn new(config: BrokerConfig) -> Broker {
        config.assert_valid();
        let retained = RetainedStore::new(config.retained_messages_limit, config.retained_bytes_limit);
        Broker {
            config,
            connections: FxHashMap::default(),
            sessions: FxHashMap::default(),
            session_by_client_id: FxHashMap::default(),
            next_session_key: 1,
            next_assigned_client_id: 1,
            connected_count: 0,
            trie: SubscriptionTrie::new(),
            retained,
            timers: Timers::default(),
            output_ready: VecDeque::new(),
            output_pending: VecDeque::new(),
            events: VecDeque::new(),
            stats: BrokerStats::default(),
            match_stack: Vec::new(),
            match_entries: Vec::new(),
            shut_down: false,
            delivery_topic_buffer: String::new(),
        }
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// Every counter of this broker.
    pub fn stats(&self) -> &BrokerStats {
        &self.stats
    }

    /// Transport connections open (with or without a CONNECT yet).
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Connections bound to a session (CONNACK 0x00 sent).
    pub fn connected_count(&self) -> usize {
        self.connected_count
    }

    /// Sessions that exist (connected or not).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Subscriptions stored across all sessions.
    pub fn subscription_count(&self) -> usize {
        self.trie.len()
    }

    /// Outbound QoS 1/2 messages awaiting acknowledgement for a client, and its queue length;
    /// `None` when no session exists for it. For tests and invariant checks.
    pub fn session_backlog(&self, client_id: &str) -> Option<(usize, usize)> {
        let key = self.session_by_client_id.get(client_id)?;
        let session = &self.sessions[key];
        Some((session.inflight.len(), session.queue.len()))
    }

    /// Whether [`Broker::shutdown`] has run.
    pub fn is_shut_down(&self) -> bool {
        self.shut_down
    }

    /// Shuts the broker down gracefully. Every will is published first (see the module doc for
    /// why), so subscribers that are still connected receive them; then every open connection is
    /// closed: v5 clients that completed CONNECT get DISCONNECT 0x8B Server shutting down (spec
    /// 3.14.2.1) before their `Transmit::Close`, v3.1.1 clients and connections that never sent
    /// CONNECT just a close. Afterwards the broker accepts nothing: a new connection is closed at
    /// once, other inputs are ignored, each counted, and no timer fires. A second call does
    /// nothing.
    pub fn shutdown(&mut self, now: Time) {
        if self.shut_down {
            return;
        }
        let wills_before = self.stats.wills_published;
        self.publish_wills_for_shutdown(now);
        let mut open: Vec<ConnectionId> = self.connections.keys().copied().collect();
        // Sorted so that the same inputs give the same transmit order.
        open.sort_unstable();
        for &connection in &open {
            self.close_connection(
                now,
                connection,
                CloseCause::Broker { reason: ReasonCode::SERVER_SHUTTING_DOWN },
            );
        }
        self.shut_down = true;
        self.timers = Timers::default();
        let connections_closed = open.len() as u64;
        self.stats.shutdown_closes += connections_closed;
        let wills_published = self.stats.wills_published - wills_before;
        self.emit(BrokerEvent::ShutDown { connections_closed, wills_published });
        assert!(self.connections.is_empty(), "shutdown closes every connection");
        assert_eq!(self.connected_count, 0);
        assert!(self.poll_timeout().is_none(), "no timer fires after shutdown");
    }

    /// A transport connection was accepted. After [`Broker::shutdown`] it is closed at once.
    pub fn handle_connection_opened(&mut self, now: Time, connection: ConnectionId) {
        assert!(
            !self.connections.contains_key(&connection),
            "connection ids are never reused: {connection:?}"
        );
        if self.shut_down {
            self.stats.connections_refused_after_shutdown += 1;
            self.output_ready.push_back(Transmit::Close { connection });
            return;
        }
        self.connections.insert(connection, Box::new(Connection::new(connection, now)));
        self.stats.connections_opened += 1;
        self.stats.connections_current += 1;
        let deadline = now.saturating_add(self.config.connect_timeout());
        self.timers.arm(deadline, Timer::ConnectTimeout(connection));
        assert_eq!(self.stats.connections_current as usize, self.connections.len());
    }

    /// Bytes arrived on a connection (any split: partial packets are buffered). Bytes for a
    /// connection the broker already closed are ignored.
    pub fn handle_bytes(&mut self, now: Time, connection: ConnectionId, bytes: &[u8]) {
        if self.shut_down {
            assert!(self.connections.is_empty());
            self.stats.inputs_ignored_after_shutdown += 1;
            return;
        }
        let Some(state) = self.connections.get_mut(&connection) else {
            return;
        };
        self.stats.bytes_received += bytes.len() as u64;
        state.read_buffer.extend_from_slice(bytes);
        loop {
            let Some(state) = self.connections.get_mut(&connection) else {
                return;
            };
            if state.read_buffer.is_empty() {
                // Idle connections keep no read buffer: a million of them would hold ~100 MB.
                state.read_buffer = bytes::BytesMut::new();
                return;
            }
            let awaiting_connect = state.phase == Phase::AwaitingConnect;
            let connect_level = if awaiting_connect { peek_connect_level(&state.read_buffer) } else { None };
            let first_packet_type = state.read_buffer[0] >> 4;
            let decoded =
                codec::decode(&mut state.read_buffer, state.protocol, self.config.max_packet_size_bytes);
            match decoded {
                Ok(None) => return,
                Ok(Some(packet)) => {
                    state.last_received_at = now;
                    self.stats.packets_received += 1;
                    self.handle_packet(now, connection, packet);
                }
                Err(error) => {
                    self.handle_decode_error(
                        now,
                        connection,
                        &error,
                        awaiting_connect,
                        first_packet_type,
                        connect_level,
                    );
                    assert!(!self.connections.contains_key(&connection), "a decode error always closes");
                    return;
                }
            }
        }
    }

    /// The transport of a connection is gone (peer closed, reset or timed out). Unless a DISCONNECT
    /// preceded it, this is an abnormal loss: the will is published. Unknown (already closed)
    /// connections are ignored.
    pub fn handle_connection_lost(&mut self, now: Time, connection: ConnectionId) {
        if self.shut_down {
            assert!(self.connections.is_empty());
            self.stats.inputs_ignored_after_shutdown += 1;
            return;
        }
        if self.connections.contains_key(&connection) {
            self.stats.connections_lost += 1;
            self.close_connection(now, connection, CloseCause::TransportLost);
        }
        assert!(!self.connections.contains_key(&connection));
    }

    /// Fires every timer due at or before `now` (connect timeout, keep-alive, will delay, session
    /// expiry). Nothing fires after [`Broker::shutdown`].
    pub fn handle_timeout(&mut self, now: Time) {
        if self.shut_down {
            assert!(self.timers.next_deadline().is_none());
            return;
        }
        while let Some((at, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::ConnectTimeout(connection) => {
                    if self
                        .connections
                        .get(&connection)
                        .is_some_and(|state| state.phase == Phase::AwaitingConnect)
                    {
                        self.stats.connect_timeouts += 1;
                        self.close_connection(
                            now,
                            connection,
                            CloseCause::Broker { reason: ReasonCode::MAXIMUM_CONNECT_TIME },
                        );
                    }
                }
                Timer::KeepAlive(connection) => self.check_keep_alive(now, connection),
                Timer::Will(key) => self.fire_will_timer(now, key, at),
                Timer::SessionExpiry(key) => self.fire_session_expiry(now, key, at),
            }
        }
        assert!(self.timers.next_deadline().is_none_or(|next| next > now));
    }

    /// The next output for the driver, if any. Consecutive packets of one connection come out
    /// coalesced into one `Bytes`.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(transmit) = self.output_ready.pop_front() {
            if let Transmit::Send { bytes, .. } = &transmit {
                self.stats.bytes_sent += bytes.len() as u64;
            }
            return Some(transmit);
        }
        while let Some(connection) = self.output_pending.pop_front() {
            let Some(state) = self.connections.get_mut(&connection) else {
                continue;
            };
            assert!(state.output_listed);
            state.output_listed = false;
            if state.output.is_empty() {
                continue;
            }
            // Taking the buffer (rather than splitting it) leaves idle connections without any
            // allocation, which matters at a million connections.
            let bytes = std::mem::take(&mut state.output).freeze();
            self.stats.bytes_sent += bytes.len() as u64;
            return Some(Transmit::Send { connection, bytes });
        }
        None
    }

    /// The earliest instant at which [`Broker::handle_timeout`] has work (possibly earlier: a
    /// stale deadline fires as a no-op).
    pub fn poll_timeout(&self) -> Option<Time> {
        self.timers.next_deadline()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<BrokerEvent> {
        self.events.pop_front()
    }

    fn emit(&mut self, event: BrokerEvent) {
        if self.events.len() >= self.config.event_queue_limit {
            self.stats.events_dropped += 1;
            return;
        }
        self.events.push_back(event);
    }

    fn handle_packet(&mut self, now: Time, connection: ConnectionId, packet: Packet) {
        let state = self.connections.get(&connection).expect("caller checked");
        let Some(key) = state.session() else {
            match packet {
                Packet::Connect(connect) => self.handle_connect(now, connection, *connect),
                // The first packet must be CONNECT (MQTT-3.1.0-1): close without a CONNACK.
                _ => {
                    self.stats.count_protocol_error(ReasonCode::PROTOCOL_ERROR);
                    self.stats.count_connect_rejected(ReasonCode::PROTOCOL_ERROR);
                    self.close_connection(
                        now,
                        connection,
                        CloseCause::Broker { reason: ReasonCode::PROTOCOL_ERROR },
                    );
                }
            }
            return;
        };
        match packet {
            Packet::Publish(publish) => self.handle_publish(now, connection, key, publish),
            Packet::PubAck(reply) => self.handle_puback(now, key, reply),
            Packet::PubRec(reply) => self.handle_pubrec(now, connection, key, reply),
            Packet::PubRel(reply) => self.handle_pubrel(connection, key, reply),
            Packet::PubComp(reply) => self.handle_pubcomp(now, key, reply),
            Packet::Subscribe(subscribe) => self.handle_subscribe(now, connection, key, subscribe),
            Packet::Unsubscribe(unsubscribe) => self.handle_unsubscribe(connection, key, unsubscribe),
            Packet::PingReq => self.send(connection, &Packet::PingResp),
            Packet::Disconnect(disconnect) => self.handle_disconnect(now, connection, key, disconnect),
            // A second CONNECT (MQTT-3.1.0-2), packets only a server sends, and AUTH without an
            // authentication method negotiated in CONNECT are protocol errors.
            Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp
            | Packet::Auth(_) => self.fail(now, connection, ReasonCode::PROTOCOL_ERROR),
        }
    }

    fn handle_decode_error(
        &mut self,
        now: Time,
        connection: ConnectionId,
        error: &DecodeError,
        awaiting_connect: bool,
        first_packet_type: u8,
        connect_level: Option<u8>,
    ) {
        let reason = match error {
            // A Topic Alias of 0 is as invalid as one above the maximum (MQTT-3.3.2-8): the spec's
            // specific code says which field is wrong.
            DecodeError::InvalidPropertyValue { id: TOPIC_ALIAS_PROPERTY_ID, .. } if !awaiting_connect => {
                ReasonCode::TOPIC_ALIAS_INVALID
            }
            _ => error.reason_code(),
        };
        let reason = if reason.is_error() { reason } else { ReasonCode::MALFORMED_PACKET };
        self.stats.count_protocol_error(reason);
        if !awaiting_connect {
            self.close_connection(now, connection, CloseCause::Broker { reason });
            return;
        }
        self.stats.count_connect_rejected(reason);
        // Before CONNACK the only way to tell the client why is a CONNACK, and only a client that
        // sent a CONNECT can read one: v5 clients get the code; for an unsupported protocol level
        // the CONNACK uses the 3.1.1 shape (return code 1) for older levels, as 3.1.1 requires,
        // and the v5 shape for newer ones. A malformed v3.1.1 CONNECT is just closed.
        let connack_version = match (first_packet_type, connect_level) {
            (1, Some(5)) => Some(ProtocolVersion::V5),
            (1, Some(level)) if reason == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => {
                Some(if level > 5 { ProtocolVersion::V5 } else { ProtocolVersion::V311 })
            }
            _ => None,
        };
        if let Some(version) = connack_version {
            self.send_connack_rejection(connection, version, reason);
        }
        self.close_connection(now, connection, CloseCause::Broker { reason });
    }

    fn check_keep_alive(&mut self, now: Time, connection: ConnectionId) {
        let Some(state) = self.connections.get(&connection) else {
            return;
        };
        let Some(timeout) = state.keep_alive_timeout else {
            return;
        };
        let due = state.last_received_at.saturating_add(timeout);
        if due > now {
            // A packet arrived since this entry was armed: one entry per connection stays armed.
            self.timers.arm(due, Timer::KeepAlive(connection));
            return;
        }
        self.stats.keep_alive_timeouts += 1;
        self.close_connection(now, connection, CloseCause::Broker { reason: ReasonCode::KEEP_ALIVE_TIMEOUT });
    }

    /// Encodes a control packet (never a subscriber PUBLISH, see `routing`) to a connection.
    fn send(&mut self, connection: ConnectionId, packet: &Packet) {
        let Some(state) = self.connections.get_mut(&connection) else {
            return;
        };
        let written =
            connection::write_packet(state, packet, u32::MAX, &mut self.output_pending, &mut self.stats);
        if let Err(error) = written {
            // Control packets are built by the broker itself; failing to encode one is a bug.
            panic!("cannot encode {} for {connection:?}: {error}", packet.name());
        }
    }

    /// A protocol violation by the client: counted, then DISCONNECT with `reason` (v5) and close.
    fn fail(&mut self, now: Time, connection: ConnectionId, reason: ReasonCode) {
        assert!(reason.is_error());
        self.stats.count_protocol_error(reason);
        self.close_connection(now, connection, CloseCause::Broker { reason });
    }

    fn new_session_key(&mut self) -> SessionKey {
        let key = SessionKey(self.next_session_key);
        self.next_session_key += 1;
        key
    }
}

/// The protocol level byte of a CONNECT at the front of `buffer`, if enough of it is there (read
/// before decoding, so a CONNECT the codec rejects can still be answered in the client's version).
fn peek_connect_level(buffer: &[u8]) -> Option<u8> {
    if buffer.first()? >> 4 != 1 {
        return None;
    }
    let mut position = 1;
    loop {
        let byte = *buffer.get(position)?;
        position += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if position > 4 {
            return None;
        }
    }
    let name_len = usize::from(u16::from_be_bytes([*buffer.get(position)?, *buffer.get(position + 1)?]));
    buffer.get(position + 2 + name_len).copied()
}
