//! Counters of one broker instance: what it received, delivered, dropped and rejected, and why.
//!
//! This module owns the counter types and nothing else. Counters only ever increase (gauges are
//! named `_current`); it must never decide anything from a counter's value.

use std::collections::BTreeMap;

use crate::mqtt::ReasonCode;

/// Why a message copy was not delivered to a subscriber (or not accepted from a publisher).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// The subscriber queue was full under the `reject_new` policy: the new message was dropped.
    QueueFullRejectNew,
    /// The subscriber queue was full under the `drop_oldest` policy: the oldest message was dropped.
    QueueFullDropOldest,
    /// A QoS 0 message for a session without a connection (not queued, as Azure IoT Operations).
    Qos0Offline,
    /// The Message Expiry Interval passed while the message waited (discarded when dequeued).
    Expired,
    /// The encoded PUBLISH exceeds the Maximum Packet Size the client announced (spec 3.1.2.11.4).
    TooLargeForClient,
    /// The broker-wide queued bytes bound was reached (QoS 0 copies, or a rejected QoS 1/2 PUBLISH).
    QuotaExceeded,
    /// The retained store was at its count or bytes bound: the retained copy was not stored.
    RetainedStoreFull,
    /// The session ended (clean start, expiry) with the message still queued or inflight.
    SessionEnded,
    /// The client answered PUBREC with an error code, so the QoS 2 message is discarded.
    RejectedBySubscriber,
    /// The PUBLISH could not be encoded for the subscriber's protocol (a codec asymmetry; never
    /// expected, counted rather than crashing the broker).
    EncodeFailed,
}

/// Every counter of a broker instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Transport connections opened (handed in by the driver).
    pub connections_opened: u64,
    /// Transport connections that are open right now (gauge).
    pub connections_current: u64,
    /// CONNECTs accepted with CONNACK 0x00.
    pub connects_accepted: u64,
    /// CONNECTs refused with a CONNACK error code or a close, by reason.
    pub connects_rejected: BTreeMap<ReasonCode, u64>,
    /// Connections that sent no CONNECT in time.
    pub connect_timeouts: u64,
    /// Connections closed for a keep-alive timeout.
    pub keep_alive_timeouts: u64,
    /// Connections whose transport was lost without a DISCONNECT.
    pub connections_lost: u64,
    /// DISCONNECTs received from clients.
    pub disconnects_received: u64,
    /// Control packets decoded from clients.
    pub packets_received: u64,
    /// Control packets encoded to clients.
    pub packets_sent: u64,
    /// Bytes handed in by the driver.
    pub bytes_received: u64,
    /// Bytes handed to the driver.
    pub bytes_sent: u64,
    /// Inbound PUBLISH packets by QoS (index 0, 1, 2), DUP retransmissions included.
    pub publishes_received: [u64; 3],
    /// Inbound QoS 2 PUBLISH retransmissions recognised by packet id and not routed again.
    pub publishes_duplicate_qos2: u64,
    /// Inbound QoS 1/2 PUBLISH refused with 0x97 (v5) or a close (v3.1.1) at the queued-bytes bound.
    pub publishes_rejected_quota: u64,
    /// Inbound PUBLISH that matched no subscription.
    pub publishes_without_subscribers: u64,
    /// Outbound PUBLISH packets sent to subscribers for the first time.
    pub messages_delivered: u64,
    /// Outbound PUBLISH (DUP=1) and PUBREL packets resent on session resume.
    pub messages_retransmitted: u64,
    /// Outbound messages acknowledged by subscribers (PUBACK, or PUBCOMP for QoS 2).
    pub messages_acknowledged: u64,
    /// Message copies dropped, by reason.
    pub messages_dropped: BTreeMap<DropReason, u64>,
    /// Will messages published.
    pub wills_published: u64,
    /// Will messages discarded (normal DISCONNECT, or the session reconnected within the delay).
    pub wills_discarded: u64,
    /// Sessions created.
    pub sessions_created: u64,
    /// Sessions resumed by a CONNECT with Clean Start 0 (session present).
    pub sessions_resumed: u64,
    /// Connections closed because a new connection used their client id.
    pub sessions_taken_over: u64,
    /// Sessions that ended when their expiry interval passed.
    pub sessions_expired: u64,
    /// Sessions discarded by a CONNECT with Clean Start 1 or a session expiry of 0.
    pub sessions_discarded: u64,
    /// Sessions that exist right now (gauge).
    pub sessions_current: u64,
    /// Messages waiting in subscriber queues right now (gauge).
    pub queued_messages_current: u64,
    /// Bytes of queued and inflight outbound copies right now (gauge, the quota's measure).
    pub queued_bytes_current: u64,
    /// Retained messages stored right now (gauge).
    pub retained_messages_current: u64,
    /// Malformed packets and protocol violations, by the reason code the spec names.
    pub protocol_errors: BTreeMap<ReasonCode, u64>,
    /// Connections closed by [`super::Broker::shutdown`].
    pub shutdown_closes: u64,
    /// Connections opened after shutdown, closed at once without reading a byte.
    pub connections_refused_after_shutdown: u64,
    /// Bytes and lost-transport reports handed in after shutdown, ignored.
    pub inputs_ignored_after_shutdown: u64,
    /// Events not buffered because the event queue was full.
    pub events_dropped: u64,
}

impl BrokerStats {
    /// Message copies dropped for `reason` so far.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.messages_dropped.get(&reason).copied().unwrap_or(0)
    }

    /// Protocol errors with `reason` so far.
    pub fn protocol_errors_with(&self, reason: ReasonCode) -> u64 {
        self.protocol_errors.get(&reason).copied().unwrap_or(0)
    }

    /// Message copies dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.messages_dropped.values().sum()
    }

    pub(super) fn count_drop(&mut self, reason: DropReason, copies: u64) {
        *self.messages_dropped.entry(reason).or_insert(0) += copies;
    }

    pub(super) fn count_protocol_error(&mut self, reason: ReasonCode) {
        debug_assert!(reason.is_error(), "a protocol error needs an error code: {reason:?}");
        *self.protocol_errors.entry(reason).or_insert(0) += 1;
    }

    pub(super) fn count_connect_rejected(&mut self, reason: ReasonCode) {
        debug_assert!(reason.is_error(), "a rejected CONNECT needs an error code: {reason:?}");
        *self.connects_rejected.entry(reason).or_insert(0) += 1;
    }
}
