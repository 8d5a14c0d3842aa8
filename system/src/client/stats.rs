//! Counters of one client: connections, publishes, acks, drops and failures.
//!
//! This module owns the counter set only. It must never hold protocol state or influence
//! behaviour: a counter records what the core did, so that every bound hit and every failure
//! shows up in a run's outcome.

use serde::Serialize;

/// What one client did since it was created. Every counter only grows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClientStats {
    /// `OpenTransport` events emitted (first connect and every retry).
    pub connect_attempts: u64,
    /// Successful CONNACKs.
    pub connects: u64,
    /// Successful CONNACKs after the first one.
    pub reconnects: u64,
    /// CONNACKs with an error reason code.
    pub connects_refused: u64,
    /// Attempts that saw no CONNACK within the connect timeout.
    pub connect_timeouts: u64,
    /// Transports the driver reported lost.
    pub transport_losses: u64,
    /// Connections declared dead because no packet answered a PINGREQ in time.
    pub keepalive_timeouts: u64,
    pub pings_sent: u64,
    /// Connections closed because the server broke the protocol (malformed bytes included).
    pub protocol_errors: u64,
    /// DISCONNECT packets received from the server.
    pub server_disconnects: u64,
    /// Publishes accepted by `publish`.
    pub publishes_accepted: u64,
    /// First transmissions of accepted publishes.
    pub publishes_sent: u64,
    /// PUBLISH (DUP=1) and PUBREL packets re-sent after reconnecting to a present session.
    pub publishes_retransmitted: u64,
    /// Inflight publishes sent again as new publishes because the server lost the session.
    pub publishes_requeued: u64,
    /// QoS 1/2 publishes the server acknowledged with success.
    pub publishes_acked: u64,
    /// Publishes that failed after acceptance (error reason code, or the server's limits).
    pub publishes_failed: u64,
    /// Publishes refused by `publish` because the pending queue was full.
    pub publishes_dropped_queue_full: u64,
    /// Publishes refused by `publish` as invalid or too large.
    pub publishes_rejected: u64,
    /// Application messages delivered as `ClientEvent::Message`.
    pub messages_received: u64,
    /// Retransmitted inbound QoS 2 publishes recognised and not delivered again.
    pub duplicates_suppressed: u64,
    /// Acks for packet ids we had nothing inflight for (ignored).
    pub unknown_acks: u64,
}
