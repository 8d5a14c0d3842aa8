//! Message flows: inbound PUBLISH (topic aliases, QoS 1/2 acknowledgements, quota, retained),
//! routing to matching sessions (overlaps merged, No Local, Retain As Published, subscription
//! identifiers, shared groups), subscriber queues with their bound and policy, the outbound
//! inflight window and its acknowledgements, SUBSCRIBE and UNSUBSCRIBE.
//!
//! This module owns spec sections 3.3-3.11 and 4.3-4.8 as they apply to a server. It must never
//! decide a connection's or session's lifetime (that is `lifecycle`), and never do work
//! proportional to all sessions for one message: only the matching ones are touched.

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

use super::config::QueueFullPolicy;
use super::connection;
use super::lifecycle::{CloseCause, split_shared};
use super::retained::RetainOutcome;
use super::session::{Delivery, InflightEntry, InflightState, Message, SessionKey};
use super::stats::DropReason;
use super::trie::TrieEntry;
use super::{Broker, BrokerEvent, ConnectionId};
use crate::mqtt::codec::EncodeError;
use crate::mqtt::topic::{parse_shared_subscription, validate_topic_filter, validate_topic_name};
use crate::mqtt::{
    Packet, Properties, ProtocolVersion, PubReply, Publish, QoS, ReasonCode, RetainHandling, SubAck,
    Subscribe, UnsubAck, Unsubscribe,
};
use crate::time::Time;

/// The v5 properties of an inbound PUBLISH or Will that travel with the message (spec 3.3.2.3):
/// everything except what is per hop (topic alias, subscription identifiers, expiry, will delay).
pub(super) fn forwarded_properties(properties: Properties) -> Properties {
    Properties {
        payload_format_indicator: properties.payload_format_indicator,
        content_type: properties.content_type,
        response_topic: properties.response_topic,
        correlation_data: properties.correlation_data,
        user_properties: properties.user_properties,
        ..Properties::default()
    }
}

impl Broker {
    /// When a message with this Message Expiry Interval expires, after the config's cap.
    pub(super) fn message_expiry(&self, now: Time, interval_secs: Option<u32>) -> Option<Time> {
        let capped = match (interval_secs, self.config.message_expiry_max_secs) {
            (Some(interval), Some(cap)) => Some(interval.min(cap)),
            (interval, cap) => interval.or(cap),
        };
        capped.map(|secs| now.saturating_add(Duration::from_secs(u64::from(secs))))
    }

    /// The routed form of an application message published by session `key` (a PUBLISH or its
    /// Will): expiry fixed at `now` and capped by config, per-delivery properties stripped.
    #[allow(clippy::too_many_arguments, reason = "the fields of one application message")]
    pub(super) fn new_message(
        &self,
        now: Time,
        key: SessionKey,
        topic: String,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        properties: Properties,
    ) -> Arc<Message> {
        let expires_at = self.message_expiry(now, properties.message_expiry_interval_secs);
        assert!(expires_at.is_none_or(|at| at >= now), "a message cannot expire before it is published");
        Arc::new(Message {
            topic: Arc::from(topic),
            payload,
            qos,
            retain,
            properties: forwarded_properties(properties),
            expires_at,
            publisher: Some(key),
        })
    }

    /// Stores a retained message; false when the store is full (counted).
    pub(super) fn store_retained(&mut self, message: &Arc<Message>, client_id: &Arc<str>) -> bool {
        let outcome = self.retained.set(message);
        self.stats.retained_messages_current = self.retained.len() as u64;
        if outcome == RetainOutcome::Rejected {
            self.stats.count_drop(DropReason::RetainedStoreFull, 1);
            self.emit(BrokerEvent::MessageDropped {
                client_id: client_id.clone(),
                reason: DropReason::RetainedStoreFull,
                topic: message.topic.clone(),
                payload: message.payload.clone(),
            });
            return false;
        }
        true
    }

    pub(super) fn handle_publish(
        &mut self,
        now: Time,
        connection: ConnectionId,
        key: SessionKey,
        publish: Publish,
    ) {
        let Publish { qos, retain, mut topic, packet_id, mut properties, payload, dup: _ } = publish;
        self.stats.publishes_received[usize::from(qos.as_u8())] += 1;
        let version = self.connections[&connection].protocol;

        // Topic aliases (v5, spec 3.3.2.3.4): 1..=advertised maximum; an empty topic needs a
        // mapping set earlier on this connection.
        if let Some(alias) = properties.topic_alias.take() {
            if alias == 0 || alias > self.config.topic_alias_maximum {
                self.fail(now, connection, ReasonCode::TOPIC_ALIAS_INVALID);
                return;
            }
            let slot = usize::from(alias - 1);
            let state = self.connections.get_mut(&connection).expect("open");
            if topic.is_empty() {
                match state.topic_aliases.get(slot) {
                    Some(Some(mapped)) => topic = String::from(&**mapped),
                    _ => {
                        self.fail(now, connection, ReasonCode::PROTOCOL_ERROR);
                        return;
                    }
                }
            } else if validate_topic_name(&topic).is_ok() {
                if state.topic_aliases.len() <= slot {
                    state.topic_aliases.resize(slot + 1, None);
                }
                state.topic_aliases[slot] = Some(Arc::from(topic.as_str()));
            }
        }
        if topic.is_empty() {
            self.fail(now, connection, ReasonCode::PROTOCOL_ERROR);
            return;
        }
        if validate_topic_name(&topic).is_err() {
            self.fail(now, connection, ReasonCode::TOPIC_NAME_INVALID);
            return;
        }
        if !properties.subscription_identifiers.is_empty() {
            // MQTT-3.3.4-6: only the server puts subscription identifiers into PUBLISH.
            self.fail(now, connection, ReasonCode::PROTOCOL_ERROR);
            return;
        }
        let packet_id = match (qos, packet_id) {
            (QoS::AtMostOnce, None) => None,
            (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(packet_id)) => Some(packet_id),
            _ => {
                self.fail(now, connection, ReasonCode::PROTOCOL_ERROR);
                return;
            }
        };

        let session = self.sessions.get_mut(&key).expect("connected sessions exist");
        if let Some(packet_id) = packet_id {
            if qos == QoS::ExactlyOnce && session.inbound_qos2.contains(&packet_id) {
                // A retransmission of a QoS 2 PUBLISH we already own: acknowledge, never re-route.
                self.stats.publishes_duplicate_qos2 += 1;
                self.send(connection, &Packet::PubRec(PubReply::success(packet_id)));
                return;
            }
            // QoS 1 is acknowledged at once, so what counts against our Receive Maximum are the
            // QoS 2 messages waiting for PUBREL (spec 3.3.4, MQTT-3.3.4-9). v3.1.1 has no Receive
            // Maximum, but the same bound keeps its QoS 2 state bounded: beyond it the connection
            // is closed (the client keeps its unacknowledged messages).
            if session.inbound_qos2.len() >= usize::from(self.config.receive_maximum) {
                self.fail(now, connection, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
                return;
            }
            if self.stats.queued_bytes_current >= self.config.queued_bytes_limit {
                self.stats.publishes_rejected_quota += 1;
                self.stats.count_drop(DropReason::QuotaExceeded, 1);
                let client_id = session.client_id.clone();
                self.emit(BrokerEvent::MessageDropped {
                    client_id,
                    reason: DropReason::QuotaExceeded,
                    topic: Arc::from(topic.as_str()),
                    payload: payload.clone(),
                });
                match version {
                    ProtocolVersion::V5 => {
                        self.send_publish_reply(connection, qos, packet_id, ReasonCode::QUOTA_EXCEEDED)
                    }
                    // v3.1.1 has no way to refuse a PUBLISH: close without acknowledging, so the
                    // client keeps the message and sends it again after reconnecting.
                    ProtocolVersion::V311 => self.close_connection(
                        now,
                        connection,
                        CloseCause::Broker { reason: ReasonCode::QUOTA_EXCEEDED },
                    ),
                }
                return;
            }
        }

        let client_id = session.client_id.clone();
        let message = self.new_message(now, key, topic, payload, qos, retain, properties);
        // At the retained store's bound a v5 QoS 1/2 PUBLISH is refused as a whole (0x97), so the
        // publisher learns its retained state did not change; otherwise it is routed unretained.
        if retain
            && !self.store_retained(&message, &client_id)
            && version == ProtocolVersion::V5
            && let Some(packet_id) = packet_id
        {
            self.send_publish_reply(connection, qos, packet_id, ReasonCode::QUOTA_EXCEEDED);
            return;
        }
        let matched = self.route(now, message);
        if matched == 0 {
            self.stats.publishes_without_subscribers += 1;
        }
        if let Some(packet_id) = packet_id {
            let reason = if matched == 0 && version == ProtocolVersion::V5 {
                ReasonCode::NO_MATCHING_SUBSCRIBERS
            } else {
                ReasonCode::SUCCESS
            };
            if qos == QoS::ExactlyOnce {
                let session = self.sessions.get_mut(&key).expect("connected sessions exist");
                session.inbound_qos2.push(packet_id);
            }
            self.send_publish_reply(connection, qos, packet_id, reason);
        }
    }

    fn send_publish_reply(
        &mut self,
        connection: ConnectionId,
        qos: QoS,
        packet_id: crate::mqtt::PacketId,
        reason: ReasonCode,
    ) {
        let reply = PubReply { packet_id, reason_code: reason, properties: Properties::default() };
        let packet = match qos {
            QoS::AtLeastOnce => Packet::PubAck(reply),
            QoS::ExactlyOnce => Packet::PubRec(reply),
            QoS::AtMostOnce => unreachable!("QoS 0 has no acknowledgement"),
        };
        self.send(connection, &packet);
    }

    /// Delivers `message` to every matching session; returns how many sessions matched.
    pub(super) fn route(&mut self, now: Time, message: Arc<Message>) -> usize {
        let mut entries = std::mem::take(&mut self.match_entries);
        let mut stack = std::mem::take(&mut self.match_stack);
        entries.clear();
        let sessions = &self.sessions;
        let is_online =
            |key: SessionKey| sessions.get(&key).is_some_and(|session| session.connection.is_some());
        self.trie.matches(&message.topic, is_online, &mut stack, &mut entries);
        entries.retain(|entry| !(entry.options.no_local && Some(entry.session) == message.publisher));
        // Overlapping subscriptions of one session give one delivery (spec 3.3.4): sort by
        // session and merge each run. The unstable sort does not allocate and is deterministic.
        entries.sort_unstable_by_key(|entry| entry.session);
        let mut matched = 0;
        let mut start = 0;
        while start < entries.len() {
            let key = entries[start].session;
            let end = start + entries[start..].iter().take_while(|entry| entry.session == key).count();
            let run = &entries[start..end];
            let qos =
                run.iter().map(|entry| message.qos.min(entry.options.maximum_qos)).max().expect("non-empty");
            let retain = message.retain && run.iter().any(|entry| entry.options.retain_as_published);
            let subscription_identifiers: Vec<u32> =
                run.iter().filter_map(|entry| entry.identifier).collect();
            let delivery = Delivery { message: message.clone(), qos, retain, subscription_identifiers };
            self.deliver(now, key, delivery);
            matched += 1;
            start = end;
        }
        entries.clear();
        self.match_entries = entries;
        self.match_stack = stack;
        matched
    }

    /// Sends a delivery now if the session is online with room, otherwise queues it (bounded).
    fn deliver(&mut self, now: Time, key: SessionKey, delivery: Delivery) {
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        let online = session.connection.is_some();
        if !online && delivery.qos == QoS::AtMostOnce {
            self.count_drop(key, DropReason::Qos0Offline, &delivery.message);
            return;
        }
        let sendable = delivery.qos == QoS::AtMostOnce || session.window_open();
        if online && session.queue.is_empty() && sendable {
            self.transmit_delivery(now, key, delivery);
            return;
        }
        if self.stats.queued_bytes_current >= self.config.queued_bytes_limit {
            self.count_drop(key, DropReason::QuotaExceeded, &delivery.message);
            return;
        }
        let session = self.sessions.get_mut(&key).expect("checked");
        if session.queue.len() >= self.config.subscriber_queue_messages_limit {
            match self.config.subscriber_queue_policy {
                QueueFullPolicy::RejectNew => {
                    self.count_drop(key, DropReason::QueueFullRejectNew, &delivery.message);
                    return;
                }
                QueueFullPolicy::DropOldest => {
                    let oldest = session.queue.pop_front().expect("queue is full");
                    self.stats.queued_messages_current -= 1;
                    self.stats.queued_bytes_current -= oldest.message.quota_bytes();
                    self.count_drop(key, DropReason::QueueFullDropOldest, &oldest.message);
                }
            }
        }
        let session = self.sessions.get_mut(&key).expect("checked");
        self.stats.queued_messages_current += 1;
        self.stats.queued_bytes_current += delivery.message.quota_bytes();
        session.queue.push_back(delivery);
        assert!(session.queue.len() <= self.config.subscriber_queue_messages_limit);
    }

    pub(super) fn count_drop(&mut self, key: SessionKey, reason: DropReason, message: &Message) {
        self.stats.count_drop(reason, 1);
        let client_id = self.sessions[&key].client_id.clone();
        let topic = message.topic.clone();
        self.emit(BrokerEvent::MessageDropped { client_id, reason, topic, payload: message.payload.clone() });
    }

    /// Moves queued messages into the inflight window while it has room.
    pub(super) fn pump(&mut self, now: Time, key: SessionKey) {
        loop {
            let Some(session) = self.sessions.get_mut(&key) else {
                return;
            };
            if session.connection.is_none() {
                return;
            }
            let Some(front) = session.queue.front() else {
                return;
            };
            if front.qos != QoS::AtMostOnce && !session.window_open() {
                return;
            }
            let delivery = session.queue.pop_front().expect("peeked");
            self.stats.queued_messages_current -= 1;
            self.stats.queued_bytes_current -= delivery.message.quota_bytes();
            self.transmit_delivery(now, key, delivery);
        }
    }

    /// Encodes a delivery to the session's connection: expiry checked (passively, here), packet id
    /// allocated, inflight recorded; too large for the client means dropped.
    fn transmit_delivery(&mut self, now: Time, key: SessionKey, delivery: Delivery) {
        if delivery.message.is_expired(now) {
            self.count_drop(key, DropReason::Expired, &delivery.message);
            return;
        }
        let session = self.sessions.get_mut(&key).expect("caller checked");
        let connection_id = session.connection.expect("only online sessions transmit");
        let packet_id = (delivery.qos != QoS::AtMostOnce).then(|| session.allocate_packet_id());
        // The topic goes into a reused buffer: no allocation per delivery in the steady state.
        let mut topic = std::mem::take(&mut self.delivery_topic_buffer);
        topic.clear();
        topic.push_str(&delivery.message.topic);
        let mut publish = publish_packet(&delivery, session.protocol, packet_id, false, now, topic);
        let state = self.connections.get_mut(&connection_id).expect("sessions point at open connections");
        // Outbound topic alias (v5, spec 3.3.2.3.4): a topic seen before on this connection goes
        // as its alias with an empty topic name; a new one takes the next free alias while any
        // is left (first come, never replaced, so the client's mapping is never stale).
        let mut new_alias = None;
        if let Some(aliases) = &state.outbound_aliases {
            match aliases.by_topic.get(&delivery.message.topic) {
                Some(&alias) => {
                    publish.topic.clear();
                    publish.properties.topic_alias = Some(alias);
                }
                None if aliases.by_topic.len() < usize::from(aliases.maximum) => {
                    let alias = u16::try_from(aliases.by_topic.len() + 1).expect("below a u16 maximum");
                    publish.properties.topic_alias = Some(alias);
                    new_alias = Some(alias);
                }
                None => {}
            }
        }
        let packet = Packet::Publish(publish);
        let written = connection::write_packet(
            state,
            &packet,
            session.client_max_packet_size,
            &mut self.output_pending,
            &mut self.stats,
        );
        if let Packet::Publish(publish) = packet {
            self.delivery_topic_buffer = publish.topic;
        }
        match written {
            Ok(Some(_)) => {
                self.stats.messages_delivered += 1;
                if let Some(alias) = new_alias {
                    // Recorded only once the PUBLISH carrying the mapping is really sent.
                    let aliases = state.outbound_aliases.as_mut().expect("planned above");
                    aliases.by_topic.insert(delivery.message.topic.clone(), alias);
                    assert!(aliases.by_topic.len() <= usize::from(aliases.maximum));
                }
                if let Some(packet_id) = packet_id {
                    self.stats.queued_bytes_current += delivery.message.quota_bytes();
                    session.push_inflight(InflightEntry {
                        packet_id,
                        state: InflightState::AwaitingAck,
                        delivery: Some(delivery),
                    });
                    assert!(session.inflight.len() <= usize::from(session.send_window));
                }
            }
            Ok(None) | Err(EncodeError::PacketTooLarge { .. }) => {
                self.count_drop(key, DropReason::TooLargeForClient, &delivery.message)
            }
            Err(error) => {
                // Everything in the PUBLISH passed the decoder, so this is a codec asymmetry: loud
                // in debug builds, a counted drop (never a crash of every connection) in release.
                debug_assert!(false, "cannot encode a PUBLISH built by the broker: {error}");
                self.count_drop(key, DropReason::EncodeFailed, &delivery.message);
            }
        }
    }

    /// On session resume: resend every unacknowledged PUBLISH (DUP=1) and PUBREL, in their
    /// original order (spec 4.4; never on a timer).
    pub(super) fn retransmit_inflight(&mut self, now: Time, key: SessionKey) {
        let session = self.sessions.get_mut(&key).expect("resumed session exists");
        let connection_id = session.connection.expect("resumed sessions are online");
        let state = self.connections.get_mut(&connection_id).expect("open");
        let mut too_large = Vec::new();
        for (index, entry) in session.inflight.iter().enumerate() {
            let packet = match entry.state {
                InflightState::AwaitingAck => {
                    let delivery = entry.delivery.as_ref().expect("kept until acknowledged");
                    Packet::Publish(publish_packet(
                        delivery,
                        session.protocol,
                        Some(entry.packet_id),
                        true,
                        now,
                        String::from(&*delivery.message.topic),
                    ))
                }
                InflightState::AwaitingComp => Packet::PubRel(PubReply::success(entry.packet_id)),
            };
            match connection::write_packet(
                state,
                &packet,
                session.client_max_packet_size,
                &mut self.output_pending,
                &mut self.stats,
            ) {
                Ok(Some(_)) => self.stats.messages_retransmitted += 1,
                Ok(None) | Err(EncodeError::PacketTooLarge { .. }) => too_large.push(index),
                Err(error) => {
                    debug_assert!(false, "cannot encode a retransmission: {error}");
                    too_large.push(index);
                }
            }
        }
        // The new connection may announce a smaller Maximum Packet Size than the old one.
        let mut dropped = Vec::with_capacity(too_large.len());
        for index in too_large.into_iter().rev() {
            let entry = session.inflight.remove(index).expect("index from the loop");
            let delivery = entry.delivery.expect("only PUBLISH retransmissions can be too large");
            self.stats.queued_bytes_current -= delivery.message.quota_bytes();
            dropped.push(delivery.message);
        }
        for message in dropped.into_iter().rev() {
            self.count_drop(key, DropReason::TooLargeForClient, &message);
        }
    }

    pub(super) fn handle_puback(&mut self, now: Time, key: SessionKey, reply: PubReply) {
        let session = self.sessions.get_mut(&key).expect("connected sessions exist");
        // An acknowledgement for an unknown id is ignored: it may answer a retransmission that was
        // already acknowledged, and the spec gives PUBACK no error path.
        let Some(position) = session.inflight_position(reply.packet_id) else {
            return;
        };
        let entry = &session.inflight[position];
        if entry.state != InflightState::AwaitingAck
            || entry.delivery.as_ref().is_none_or(|delivery| delivery.qos != QoS::AtLeastOnce)
        {
            return;
        }
        let entry = session.inflight.remove(position).expect("found");
        let delivery = entry.delivery.expect("checked");
        self.stats.queued_bytes_current -= delivery.message.quota_bytes();
        self.stats.messages_acknowledged += 1;
        self.pump(now, key);
    }

    pub(super) fn handle_pubrec(
        &mut self,
        now: Time,
        connection: ConnectionId,
        key: SessionKey,
        reply: PubReply,
    ) {
        let session = self.sessions.get_mut(&key).expect("connected sessions exist");
        let Some(position) = session.inflight_position(reply.packet_id) else {
            let reason = match session.protocol {
                ProtocolVersion::V5 => ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                ProtocolVersion::V311 => ReasonCode::SUCCESS,
            };
            let pubrel = PubReply {
                packet_id: reply.packet_id,
                reason_code: reason,
                properties: Properties::default(),
            };
            self.send(connection, &Packet::PubRel(pubrel));
            return;
        };
        let entry = &mut session.inflight[position];
        if entry.delivery.as_ref().is_some_and(|delivery| delivery.qos != QoS::ExactlyOnce) {
            return; // A PUBREC for a QoS 1 message: ignored like an unknown acknowledgement.
        }
        let delivery = entry.delivery.take();
        if let Some(delivery) = &delivery {
            self.stats.queued_bytes_current -= delivery.message.quota_bytes();
        }
        if reply.reason_code.is_error() {
            // The subscriber refused the message (spec 4.3.3): it is done, the id is free.
            session.inflight.remove(position);
            if let Some(delivery) = delivery {
                self.count_drop(key, DropReason::RejectedBySubscriber, &delivery.message);
            }
            self.pump(now, key);
            return;
        }
        entry.state = InflightState::AwaitingComp;
        self.send(connection, &Packet::PubRel(PubReply::success(reply.packet_id)));
    }

    pub(super) fn handle_pubcomp(&mut self, now: Time, key: SessionKey, reply: PubReply) {
        let session = self.sessions.get_mut(&key).expect("connected sessions exist");
        let Some(position) = session.inflight_position(reply.packet_id) else {
            return;
        };
        if session.inflight[position].state != InflightState::AwaitingComp {
            return;
        }
        session.inflight.remove(position);
        self.stats.messages_acknowledged += 1;
        self.pump(now, key);
    }

    pub(super) fn handle_pubrel(&mut self, connection: ConnectionId, key: SessionKey, reply: PubReply) {
        let session = self.sessions.get_mut(&key).expect("connected sessions exist");
        let reason = match session.inbound_qos2.iter().position(|&id| id == reply.packet_id) {
            Some(position) => {
                session.inbound_qos2.swap_remove(position);
                ReasonCode::SUCCESS
            }
            None if session.protocol == ProtocolVersion::V5 => ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
            // v3.1.1 has no code: completing an unknown id is harmless (a resent PUBREL).
            None => ReasonCode::SUCCESS,
        };
        let pubcomp =
            PubReply { packet_id: reply.packet_id, reason_code: reason, properties: Properties::default() };
        self.send(connection, &Packet::PubComp(pubcomp));
    }

    pub(super) fn handle_subscribe(
        &mut self,
        now: Time,
        connection: ConnectionId,
        key: SessionKey,
        subscribe: Subscribe,
    ) {
        let version = self.connections[&connection].protocol;
        let identifier = subscribe.properties.subscription_identifiers.first().copied();
        if subscribe.subscriptions.is_empty()
            || subscribe.properties.subscription_identifiers.len() > 1
            || identifier == Some(0)
        {
            self.fail(now, connection, ReasonCode::PROTOCOL_ERROR);
            return;
        }
        // v3.1.1 knows only 0x80 for a refused filter.
        let refuse = |reason: ReasonCode| match version {
            ProtocolVersion::V5 => reason,
            ProtocolVersion::V311 => ReasonCode::UNSPECIFIED_ERROR,
        };
        let mut reason_codes = Vec::with_capacity(subscribe.subscriptions.len());
        let mut retained_wanted = Vec::new();
        for subscription in &subscribe.subscriptions {
            let filter = subscription.topic_filter.as_str();
            let options = subscription.options;
            if validate_topic_filter(filter).is_err() {
                reason_codes.push(refuse(ReasonCode::TOPIC_FILTER_INVALID));
                continue;
            }
            let shared = matches!(parse_shared_subscription(filter), Ok(Some(_)));
            if shared && options.no_local {
                // MQTT-3.8.3-4: No Local on a shared subscription is a protocol error.
                self.fail(now, connection, ReasonCode::PROTOCOL_ERROR);
                return;
            }
            let session = self.sessions.get_mut(&key).expect("connected sessions exist");
            let existing = session.subscription_position(filter);
            if existing.is_none()
                && session.subscriptions.len() >= self.config.subscriptions_per_session_limit
            {
                reason_codes.push(refuse(ReasonCode::QUOTA_EXCEEDED));
                continue;
            }
            if existing.is_none() {
                // Exact growth while small: most sessions hold one or two filters.
                if session.subscriptions.len() < 4 {
                    session.subscriptions.reserve_exact(1);
                }
                session.subscriptions.push(filter.into());
            }
            let (group, inner) = split_shared(filter);
            let is_new = self.trie.subscribe(inner, group, TrieEntry { session: key, options, identifier });
            assert_eq!(is_new, existing.is_none(), "session and trie agree on {filter}");
            reason_codes.push(ReasonCode(options.maximum_qos.as_u8()));
            // Retained messages are not sent for shared subscriptions (spec 4.8.2).
            let wants_retained = match options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendAtSubscribeIfNew => is_new,
                RetainHandling::DoNotSend => false,
            };
            if wants_retained && !shared {
                let mut messages = Vec::new();
                self.retained.matching(filter, now, &mut messages);
                retained_wanted.extend(messages.into_iter().map(|message| (message, options.maximum_qos)));
            }
        }
        self.stats.retained_messages_current = self.retained.len() as u64;
        let suback =
            SubAck { packet_id: subscribe.packet_id, reason_codes, properties: Properties::default() };
        self.send(connection, &Packet::SubAck(suback));
        for (message, maximum_qos) in retained_wanted {
            // Retained messages sent because of a new subscription keep RETAIN=1 (spec 3.3.1.3).
            let delivery = Delivery {
                qos: message.qos.min(maximum_qos),
                retain: true,
                subscription_identifiers: identifier.into_iter().collect(),
                message,
            };
            self.deliver(now, key, delivery);
        }
    }

    pub(super) fn handle_unsubscribe(
        &mut self,
        connection: ConnectionId,
        key: SessionKey,
        unsubscribe: Unsubscribe,
    ) {
        let version = self.connections[&connection].protocol;
        let session = self.sessions.get_mut(&key).expect("connected sessions exist");
        let mut reason_codes = Vec::with_capacity(unsubscribe.topic_filters.len());
        for filter in &unsubscribe.topic_filters {
            let reason = match session.subscription_position(filter) {
                Some(position) => {
                    let removed = session.subscriptions.swap_remove(position);
                    let (group, inner) = split_shared(&removed);
                    let existed = self.trie.unsubscribe(inner, group, key);
                    assert!(existed, "session and trie agree on {filter}");
                    ReasonCode::SUCCESS
                }
                None if validate_topic_filter(filter).is_err() => ReasonCode::TOPIC_FILTER_INVALID,
                None => ReasonCode::NO_SUBSCRIPTION_EXISTED,
            };
            reason_codes.push(reason);
        }
        if version == ProtocolVersion::V311 {
            reason_codes.clear(); // UNSUBACK has no payload in v3.1.1.
        }
        let unsuback =
            UnsubAck { packet_id: unsubscribe.packet_id, reason_codes, properties: Properties::default() };
        self.send(connection, &Packet::UnsubAck(unsuback));
    }
}

/// The PUBLISH a subscriber receives for a delivery: QoS and RETAIN per subscription, the
/// remaining expiry (the original interval minus the time spent in the broker), identifiers.
/// `topic` holds the message's topic (the caller may bring a reused buffer).
fn publish_packet(
    delivery: &Delivery,
    protocol: ProtocolVersion,
    packet_id: Option<crate::mqtt::PacketId>,
    dup: bool,
    now: Time,
    topic: String,
) -> Publish {
    let message = &delivery.message;
    assert_eq!(topic.as_str(), &*message.topic, "the PUBLISH carries the message's topic");
    let properties = match protocol {
        ProtocolVersion::V311 => Properties::default(),
        ProtocolVersion::V5 => {
            let mut properties = message.properties.clone();
            properties.subscription_identifiers = delivery.subscription_identifiers.clone();
            properties.message_expiry_interval_secs = message.expires_at.map(|expires_at| {
                let remaining = expires_at.saturating_duration_since(now);
                // Rounded up so a message never reads as expired (0) before it is.
                u32::try_from(remaining.as_nanos().div_ceil(1_000_000_000)).unwrap_or(u32::MAX).max(1)
            });
            properties
        }
    };
    assert_eq!(packet_id.is_some(), delivery.qos != QoS::AtMostOnce);
    Publish {
        dup,
        qos: delivery.qos,
        retain: delivery.retain,
        topic,
        packet_id,
        properties,
        payload: message.payload.clone(),
    }
}
