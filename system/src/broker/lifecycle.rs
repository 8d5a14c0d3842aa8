//! Connection and session lifecycle: CONNECT validation and CONNACK, session creation, resume,
//! takeover and clean start, DISCONNECT, every way a connection closes, will messages (with the v5
//! Will Delay Interval, and all of them at once on shutdown) and session expiry.
//!
//! This module owns the rules of spec sections 3.1, 3.2, 3.14 and 4.1 as they apply to a server.
//! It must never route messages itself (it hands wills to `routing`) or touch the codec directly.

use std::sync::Arc;
use std::time::Duration;

use super::connection::{self, OutboundAliases, Phase};
use super::session::{PendingWill, Session, SessionKey};
use super::stats::DropReason;
use super::timers::Timer;
use super::{Broker, BrokerEvent, ConnectionId, Transmit};
use crate::mqtt::topic::validate_topic_name;
use crate::mqtt::{ConnAck, Connect, Disconnect, Packet, Properties, ProtocolVersion, ReasonCode, Will};
use crate::time::Time;
use rustc_hash::FxHashMap;

/// Why a connection closes; decides the DISCONNECT sent, the will and the session's fate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CloseCause {
    /// The client sent DISCONNECT; `publish_will` for v5 reason 0x04.
    ClientDisconnect { reason: ReasonCode, publish_will: bool },
    /// The driver reported the transport gone.
    TransportLost,
    /// The broker closes: protocol error, keep-alive timeout, quota, rejected CONNECT.
    Broker { reason: ReasonCode },
    /// A new connection took the session over; `clean_start` is the new CONNECT's flag.
    TakenOver { clean_start: bool },
}

/// Why a session ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SessionEnd {
    /// Its expiry interval passed while disconnected.
    Expired,
    /// A CONNECT with Clean Start 1 replaced it, or it had an expiry of zero.
    Discarded,
}

impl Broker {
    pub(super) fn handle_connect(&mut self, now: Time, connection: ConnectionId, connect: Connect) {
        let version = connect.protocol;
        self.connections.get_mut(&connection).expect("caller checked").protocol = version;
        if let Err(reason) = self.validate_connect(&connect) {
            self.stats.count_connect_rejected(reason);
            self.send_connack_rejection(connection, version, reason);
            self.close_connection(now, connection, super::lifecycle::CloseCause::Broker { reason });
            return;
        }

        let mut client_id = connect.client_id.clone();
        let mut assigned_client_identifier = None;
        if client_id.is_empty() {
            // v5 gets the id back in CONNACK; v3.1.1 (only with a clean session, checked above)
            // never learns it and does not need to.
            // Skip ids a client chose for itself, so an assigned id never takes a session over.
            loop {
                client_id = format!("edgeproof-assigned-{}", self.next_assigned_client_id);
                self.next_assigned_client_id += 1;
                if !self.session_by_client_id.contains_key(client_id.as_str()) {
                    break;
                }
            }
            if version == ProtocolVersion::V5 {
                assigned_client_identifier = Some(client_id.clone());
            }
        }
        let client_id: Arc<str> = Arc::from(client_id);
        let existing = self.session_by_client_id.get(&client_id).copied();
        let existing_connection = existing.and_then(|key| self.sessions[&key].connection);
        if existing_connection.is_none() && self.connected_count >= self.config.connections_limit {
            self.reject_connect(now, connection, version, ReasonCode::QUOTA_EXCEEDED);
            return;
        }
        // A Clean Start 1 replaces an existing session, so only a new client id adds one.
        if existing.is_none() && self.sessions.len() >= self.config.sessions_limit {
            self.reject_connect(now, connection, version, ReasonCode::QUOTA_EXCEEDED);
            return;
        }

        if let Some(old_connection) = existing_connection {
            assert_ne!(old_connection, connection, "a connection sends one CONNECT");
            self.stats.sessions_taken_over += 1;
            self.emit(BrokerEvent::SessionTakenOver {
                client_id: client_id.clone(),
                old_connection,
                new_connection: connection,
            });
            self.close_connection(
                now,
                old_connection,
                CloseCause::TakenOver { clean_start: connect.clean_start },
            );
        }
        if let Some(key) = existing
            && connect.clean_start
        {
            self.end_session(now, key, SessionEnd::Discarded);
        }

        // Session Expiry Interval: v5 says it in CONNECT (absent means 0); v3.1.1 clean session 0
        // means "keep the session", which we bound by the configured maximum.
        let requested_expiry_secs = match version {
            ProtocolVersion::V5 => connect.properties.session_expiry_interval_secs.unwrap_or(0),
            ProtocolVersion::V311 if connect.clean_start => 0,
            ProtocolVersion::V311 => self.config.session_expiry_max_secs,
        };
        let expiry_secs = requested_expiry_secs.min(self.config.session_expiry_max_secs);

        let (key, session_present) = match self.session_by_client_id.get(&client_id).copied() {
            Some(key) => {
                let session = self.sessions.get_mut(&key).expect("index and sessions agree");
                assert!(session.connection.is_none(), "the old connection was closed above");
                session.expires_at = None;
                if session.pending_will.take().is_some() {
                    // Reconnecting within the Will Delay Interval cancels the will (spec 3.1.3.2.2).
                    self.stats.wills_discarded += 1;
                }
                self.stats.sessions_resumed += 1;
                (key, true)
            }
            None => {
                let key = self.new_session_key();
                self.sessions.insert(key, Box::new(Session::new(client_id.clone(), version)));
                self.session_by_client_id.insert(client_id.clone(), key);
                self.stats.sessions_created += 1;
                self.stats.sessions_current += 1;
                (key, false)
            }
        };

        let send_window = match version {
            ProtocolVersion::V5 => connect.properties.receive_maximum.unwrap_or(u16::MAX),
            ProtocolVersion::V311 => self.config.inflight_v311_limit,
        };
        let client_max_packet_size = connect.properties.maximum_packet_size.unwrap_or(u32::MAX);
        let session = self.sessions.get_mut(&key).expect("just ensured");
        session.connection = Some(connection);
        session.protocol = version;
        session.expiry_interval_secs = expiry_secs;
        session.send_window = send_window.max(1);
        session.client_max_packet_size = client_max_packet_size.max(1);
        session.will = connect.will.map(Box::new);

        // Keep-alive: v5 clients asking for more than the maximum (or for none) are told the
        // maximum as Server Keep Alive; v3.1.1 clients cannot be told, so theirs stands.
        let max_keep_alive = self.config.keep_alive_max_secs;
        let (keep_alive_secs, server_keep_alive) = match version {
            ProtocolVersion::V5
                if max_keep_alive > 0
                    && (connect.keep_alive_secs == 0 || connect.keep_alive_secs > max_keep_alive) =>
            {
                (max_keep_alive, Some(max_keep_alive))
            }
            _ => (connect.keep_alive_secs, None),
        };
        let keep_alive_timeout =
            (keep_alive_secs > 0).then(|| Duration::from_millis(u64::from(keep_alive_secs) * 1_500));
        let state = self.connections.get_mut(&connection).expect("open");
        state.phase = Phase::Connected(key);
        state.keep_alive_timeout = keep_alive_timeout;
        state.connect_expiry_was_zero = requested_expiry_secs == 0;
        state.outbound_aliases = match (version, connect.properties.topic_alias_maximum) {
            (ProtocolVersion::V5, Some(maximum)) if maximum > 0 => {
                Some(Box::new(OutboundAliases { maximum, by_topic: FxHashMap::default() }))
            }
            _ => None,
        };
        self.connected_count += 1;
        if let Some(timeout) = keep_alive_timeout {
            self.timers.arm(now.saturating_add(timeout), Timer::KeepAlive(connection));
        }

        let mut properties = Properties::default();
        if version == ProtocolVersion::V5 {
            properties.receive_maximum = Some(self.config.receive_maximum);
            properties.retain_available = Some(true);
            properties.maximum_packet_size = Some(self.config.max_packet_size_bytes);
            properties.topic_alias_maximum =
                (self.config.topic_alias_maximum > 0).then_some(self.config.topic_alias_maximum);
            properties.wildcard_subscription_available = Some(true);
            properties.subscription_identifiers_available = Some(true);
            properties.shared_subscription_available = Some(true);
            properties.server_keep_alive_secs = server_keep_alive;
            properties.assigned_client_identifier = assigned_client_identifier;
            // Maximum QoS is left out: absent means 2, and the spec forbids sending the value 2.
            if expiry_secs != requested_expiry_secs {
                properties.session_expiry_interval_secs = Some(expiry_secs);
            }
        }
        let connack = ConnAck { session_present, reason_code: ReasonCode::SUCCESS, properties };
        self.send(connection, &Packet::ConnAck(connack));
        self.stats.connects_accepted += 1;
        self.emit(BrokerEvent::Connected { connection, client_id, session_present });
        if session_present {
            self.retransmit_inflight(now, key);
        }
        self.pump(now, key);
        assert_eq!(self.sessions[&key].connection, Some(connection));
    }

    /// Checks what a CONNECT asks for against the spec and the config; `Err` is the CONNACK code.
    fn validate_connect(&self, connect: &Connect) -> Result<(), ReasonCode> {
        if connect.client_id.is_empty() && !connect.clean_start && connect.protocol == ProtocolVersion::V311 {
            // MQTT-3.1.3-8: return code 2, identifier rejected.
            return Err(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        }
        if connect.client_id.len() > self.config.client_id_length_limit {
            return Err(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        }
        if self.config.client_id_strict_charset
            && !connect
                .client_id
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        {
            return Err(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        }
        if connect.properties.authentication_method.is_some() {
            // No enhanced authentication is offered (spec 4.12).
            return Err(ReasonCode::BAD_AUTHENTICATION_METHOD);
        }
        if let Some(will) = &connect.will
            && validate_topic_name(&will.topic).is_err()
        {
            return Err(ReasonCode::TOPIC_NAME_INVALID);
        }
        Ok(())
    }

    fn reject_connect(
        &mut self,
        now: Time,
        connection: ConnectionId,
        version: ProtocolVersion,
        reason: ReasonCode,
    ) {
        self.stats.count_connect_rejected(reason);
        self.send_connack_rejection(connection, version, reason);
        self.close_connection(now, connection, CloseCause::Broker { reason });
    }

    /// CONNACK with an error code (mapped to a return code for v3.1.1 by the codec).
    pub(super) fn send_connack_rejection(
        &mut self,
        connection: ConnectionId,
        version: ProtocolVersion,
        reason: ReasonCode,
    ) {
        assert!(reason.is_error());
        let Some(state) = self.connections.get_mut(&connection) else {
            return;
        };
        assert_eq!(state.phase, Phase::AwaitingConnect, "CONNACK is sent once");
        state.protocol = version;
        let connack =
            ConnAck { session_present: false, reason_code: reason, properties: Properties::default() };
        self.send(connection, &Packet::ConnAck(connack));
    }

    pub(super) fn handle_disconnect(
        &mut self,
        now: Time,
        connection: ConnectionId,
        key: SessionKey,
        disconnect: Disconnect,
    ) {
        self.stats.disconnects_received += 1;
        if let Some(expiry_secs) = disconnect.properties.session_expiry_interval_secs {
            let was_zero = self.connections[&connection].connect_expiry_was_zero;
            if was_zero && expiry_secs != 0 {
                // MQTT-3.14.2-2: a session that asked for no expiry cannot ask for one on the way out.
                self.fail(now, connection, ReasonCode::PROTOCOL_ERROR);
                return;
            }
            let session = self.sessions.get_mut(&key).expect("connected sessions exist");
            session.expiry_interval_secs = expiry_secs.min(self.config.session_expiry_max_secs);
        }
        let publish_will = disconnect.reason_code == ReasonCode::DISCONNECT_WITH_WILL_MESSAGE;
        self.close_connection(
            now,
            connection,
            CloseCause::ClientDisconnect { reason: disconnect.reason_code, publish_will },
        );
    }

    /// Closes a connection for `cause`: the DISCONNECT a v5 client is owed, the transmit, the
    /// event, then what happens to the will and the session.
    pub(super) fn close_connection(&mut self, now: Time, connection: ConnectionId, cause: CloseCause) {
        let Some(mut state) = self.connections.remove(&connection) else {
            return;
        };
        self.stats.connections_current -= 1;
        let session = state.session();
        let disconnect_reason = match cause {
            CloseCause::Broker { reason } => Some(reason),
            CloseCause::TakenOver { .. } => Some(ReasonCode::SESSION_TAKEN_OVER),
            CloseCause::ClientDisconnect { .. } | CloseCause::TransportLost => None,
        };
        // The server sends DISCONNECT only to v5 clients and only after CONNACK (spec 4.13.2).
        if let Some(reason) = disconnect_reason
            && session.is_some()
            && state.protocol == ProtocolVersion::V5
        {
            let packet = Packet::Disconnect(Disconnect::with_reason(reason));
            let mut ignored_pending = std::collections::VecDeque::new();
            connection::write_packet(&mut state, &packet, u32::MAX, &mut ignored_pending, &mut self.stats)
                .expect("a DISCONNECT always encodes");
        }
        if cause == CloseCause::TransportLost {
            self.emit(BrokerEvent::ConnectionLost { connection });
        } else {
            if !state.output.is_empty() {
                let bytes = std::mem::take(&mut state.output).freeze();
                self.output_ready.push_back(Transmit::Send { connection, bytes });
            }
            self.output_ready.push_back(Transmit::Close { connection });
            let reason = match cause {
                CloseCause::ClientDisconnect { reason, .. } => reason,
                _ => disconnect_reason.expect("set for broker closes"),
            };
            self.emit(BrokerEvent::ConnectionClosed { connection, reason });
        }
        if let Some(key) = session {
            assert!(self.connected_count > 0);
            self.connected_count -= 1;
            self.detach_session(now, key, cause);
        }
        assert!(!self.connections.contains_key(&connection));
    }

    /// The session lost its connection: decide the will and start the expiry clock.
    fn detach_session(&mut self, now: Time, key: SessionKey, cause: CloseCause) {
        let session = self.sessions.get_mut(&key).expect("connected sessions exist");
        assert!(session.connection.is_some());
        session.connection = None;
        let expiry_secs = session.expiry_interval_secs;
        let will = session.will.take();
        let client_id = session.client_id.clone();
        if let Some(will) = will {
            let delay_secs = will.properties.will_delay_interval_secs.unwrap_or(0);
            match cause {
                CloseCause::ClientDisconnect { publish_will: false, .. } => self.stats.wills_discarded += 1,
                // On takeover the will is sent unless the session continues (Clean Start 0) and
                // the will has a delay, which the reconnect then cancels (spec 3.1.4).
                CloseCause::TakenOver { clean_start: false } if delay_secs > 0 => {
                    self.stats.wills_discarded += 1;
                }
                CloseCause::TakenOver { .. } => self.publish_will(now, key, &client_id, *will),
                _ if delay_secs == 0 || expiry_secs == 0 => self.publish_will(now, key, &client_id, *will),
                _ => {
                    // Published when the delay passes or the session ends, whichever is first.
                    let due_at =
                        now.saturating_add(Duration::from_secs(u64::from(delay_secs.min(expiry_secs))));
                    let session = self.sessions.get_mut(&key).expect("still there");
                    session.pending_will = Some(PendingWill { will, due_at });
                    self.timers.arm(due_at, Timer::Will(key));
                }
            }
        }
        if matches!(cause, CloseCause::TakenOver { .. }) {
            return;
        }
        if expiry_secs == 0 {
            self.end_session(now, key, SessionEnd::Discarded);
        } else {
            let expires_at = now.saturating_add(Duration::from_secs(u64::from(expiry_secs)));
            let session = self.sessions.get_mut(&key).expect("still there");
            session.expires_at = Some(expires_at);
            self.timers.arm(expires_at, Timer::SessionExpiry(key));
        }
    }

    /// Removes a disconnected session: its subscriptions, its queued messages (counted), and
    /// publishes a will still waiting for its delay.
    pub(super) fn end_session(&mut self, now: Time, key: SessionKey, end: SessionEnd) {
        let session = self.sessions.remove(&key).expect("ending an existing session");
        assert!(session.connection.is_none(), "sessions end only without a connection");
        let removed = self.session_by_client_id.remove(&session.client_id);
        assert_eq!(removed, Some(key));
        for subscription in &session.subscriptions {
            let (group, filter) = split_shared(subscription);
            let existed = self.trie.unsubscribe(filter, group, key);
            assert!(existed, "session and trie agree on {subscription}");
        }
        let mut released_bytes = 0;
        for delivery in &session.queue {
            released_bytes += delivery.message.quota_bytes();
        }
        for entry in &session.inflight {
            if let Some(delivery) = &entry.delivery {
                released_bytes += delivery.message.quota_bytes();
            }
        }
        // Every message the session still held is dropped with it, each one accounted.
        let inflight_messages = session.inflight.iter().filter_map(|entry| entry.delivery.as_ref());
        for delivery in inflight_messages.chain(session.queue.iter()) {
            self.stats.count_drop(DropReason::SessionEnded, 1);
            self.emit(BrokerEvent::MessageDropped {
                client_id: session.client_id.clone(),
                reason: DropReason::SessionEnded,
                topic: delivery.message.topic.clone(),
                payload: delivery.message.payload.clone(),
            });
        }
        self.stats.queued_messages_current -= session.queue.len() as u64;
        self.stats.queued_bytes_current -= released_bytes;
        self.stats.sessions_current -= 1;
        match end {
            SessionEnd::Expired => {
                self.stats.sessions_expired += 1;
                self.emit(BrokerEvent::SessionExpired { client_id: session.client_id.clone() });
            }
            SessionEnd::Discarded => self.stats.sessions_discarded += 1,
        }
        if let Some(pending) = session.pending_will {
            self.publish_will(now, key, &session.client_id, *pending.will);
        }
        assert!(!self.sessions.contains_key(&key));
    }

    pub(super) fn fire_will_timer(&mut self, now: Time, key: SessionKey, at: Time) {
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        if session.pending_will.as_ref().is_none_or(|pending| pending.due_at != at) {
            return; // Stale: cancelled by a reconnect or already published.
        }
        assert!(session.connection.is_none());
        let pending = session.pending_will.take().expect("checked");
        let client_id = session.client_id.clone();
        self.publish_will(now, key, &client_id, *pending.will);
    }

    pub(super) fn fire_session_expiry(&mut self, now: Time, key: SessionKey, at: Time) {
        let Some(session) = self.sessions.get(&key) else {
            return;
        };
        if session.connection.is_some() || session.expires_at != Some(at) {
            return; // Stale: the session reconnected (and maybe disconnected again since).
        }
        assert!(at <= now);
        self.end_session(now, key, SessionEnd::Expired);
    }

    /// Publishes every will before a shutdown closes the connections: those of connected
    /// sessions (a server close is not a client DISCONNECT, spec 3.1.2.5) and those waiting for
    /// their Will Delay Interval (the session ends with the broker, spec 3.1.3.2.2), in session
    /// order so that the same inputs give the same output.
    pub(super) fn publish_wills_for_shutdown(&mut self, now: Time) {
        assert!(!self.shut_down, "wills are published once, before the closes");
        let mut keys: Vec<SessionKey> = self
            .sessions
            .iter()
            .filter(|(_, session)| session.will.is_some() || session.pending_will.is_some())
            .map(|(key, _)| *key)
            .collect();
        keys.sort_unstable();
        for key in keys {
            let session = self.sessions.get_mut(&key).expect("collected above");
            let will = match (session.will.take(), session.pending_will.take()) {
                (Some(will), None) => will,
                (None, Some(pending)) => pending.will,
                (Some(_), Some(_)) => panic!("a session has a will or a pending will, never both"),
                (None, None) => unreachable!("filtered above"),
            };
            let client_id = session.client_id.clone();
            self.publish_will(now, key, &client_id, *will);
        }
        assert!(
            self.sessions.values().all(|session| session.will.is_none() && session.pending_will.is_none())
        );
    }

    fn publish_will(&mut self, now: Time, key: SessionKey, client_id: &Arc<str>, will: Will) {
        let Will { topic, payload, qos, retain, properties } = will;
        let message = self.new_message(now, key, topic, payload, qos, retain, properties);
        self.stats.wills_published += 1;
        self.emit(BrokerEvent::WillPublished { client_id: client_id.clone(), topic: message.topic.clone() });
        if retain {
            self.store_retained(&message, client_id);
        }
        self.route(now, message);
    }
}

/// `(Some(group), filter)` for `$share/{group}/{filter}`, `(None, filter)` otherwise. Only for
/// filters that passed validation.
pub(super) fn split_shared(filter: &str) -> (Option<&str>, &str) {
    match crate::mqtt::topic::parse_shared_subscription(filter) {
        Ok(Some((group, inner))) => (Some(group), inner),
        Ok(None) => (None, filter),
        Err(error) => panic!("stored filter {filter:?} is invalid: {error}"),
    }
}
