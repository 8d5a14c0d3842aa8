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
    /// Subscribe/unsubscribe requests refused because `REQUESTS_IN_FLIGHT_LIMIT` awaited acks.
    pub requests_dropped_limit: u64,
    /// Application messages delivered as `ClientEvent::Message`.
    pub messages_received: u64,
    /// Retransmitted inbound QoS 2 publishes recognised and not delivered again.
    pub duplicates_suppressed: u64,
    /// Acks for packet ids we had nothing inflight for (ignored).
    pub unknown_acks: u64,
}

impl ClientStats {
    /// Adds `other` to these counters: a fleet (loadgen, the simulator) reports one total.
    pub fn accumulate(&mut self, other: &ClientStats) {
        // Destructuring without `..` makes a new counter a compile error here until it is summed.
        let ClientStats {
            connect_attempts,
            connects,
            reconnects,
            connects_refused,
            connect_timeouts,
            transport_losses,
            keepalive_timeouts,
            pings_sent,
            protocol_errors,
            server_disconnects,
            publishes_accepted,
            publishes_sent,
            publishes_retransmitted,
            publishes_requeued,
            publishes_acked,
            publishes_failed,
            publishes_dropped_queue_full,
            publishes_rejected,
            requests_dropped_limit,
            messages_received,
            duplicates_suppressed,
            unknown_acks,
        } = *other;
        self.connect_attempts += connect_attempts;
        self.connects += connects;
        self.reconnects += reconnects;
        self.connects_refused += connects_refused;
        self.connect_timeouts += connect_timeouts;
        self.transport_losses += transport_losses;
        self.keepalive_timeouts += keepalive_timeouts;
        self.pings_sent += pings_sent;
        self.protocol_errors += protocol_errors;
        self.server_disconnects += server_disconnects;
        self.publishes_accepted += publishes_accepted;
        self.publishes_sent += publishes_sent;
        self.publishes_retransmitted += publishes_retransmitted;
        self.publishes_requeued += publishes_requeued;
        self.publishes_acked += publishes_acked;
        self.publishes_failed += publishes_failed;
        self.publishes_dropped_queue_full += publishes_dropped_queue_full;
        self.publishes_rejected += publishes_rejected;
        self.requests_dropped_limit += requests_dropped_limit;
        self.messages_received += messages_received;
        self.duplicates_suppressed += duplicates_suppressed;
        self.unknown_acks += unknown_acks;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulate_sums_every_counter() {
        let one = ClientStats {
            connect_attempts: 1,
            connects: 2,
            reconnects: 3,
            connects_refused: 4,
            connect_timeouts: 5,
            transport_losses: 6,
            keepalive_timeouts: 7,
            pings_sent: 8,
            protocol_errors: 9,
            server_disconnects: 10,
            publishes_accepted: 11,
            publishes_sent: 12,
            publishes_retransmitted: 13,
            publishes_requeued: 14,
            publishes_acked: 15,
            publishes_failed: 16,
            publishes_dropped_queue_full: 17,
            publishes_rejected: 18,
            requests_dropped_limit: 19,
            messages_received: 20,
            duplicates_suppressed: 21,
            unknown_acks: 22,
        };
        let mut total = ClientStats::default();
        total.accumulate(&one);
        total.accumulate(&one);
        assert_eq!(
            total,
            ClientStats {
                connect_attempts: 2,
                connects: 4,
                reconnects: 6,
                connects_refused: 8,
                connect_timeouts: 10,
                transport_losses: 12,
                keepalive_timeouts: 14,
                pings_sent: 16,
                protocol_errors: 18,
                server_disconnects: 20,
                publishes_accepted: 22,
                publishes_sent: 24,
                publishes_retransmitted: 26,
                publishes_requeued: 28,
                publishes_acked: 30,
                publishes_failed: 32,
                publishes_dropped_queue_full: 34,
                publishes_rejected: 36,
                requests_dropped_limit: 38,
                messages_received: 40,
                duplicates_suppressed: 42,
                unknown_acks: 44
            }
        );
    }
}
