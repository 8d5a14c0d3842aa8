//! The sans-IO MQTT broker core: connections, sessions, subscriptions, routing, QoS 0/1/2 flows,
//! keep-alive, takeover and wills.
//!
//! This module owns all broker state of one broker instance. Inputs are connection lifecycle
//! notifications, bytes and `now`; outputs are bytes (or a close) per connection, one next
//! deadline and events. It must never do I/O, read a clock, spawn, or iterate a default-hashed map.
//!
//! SKELETON: the public signatures below are the contract the shells and simulators code
//! against; the broker helper replaces the bodies.

use bytes::Bytes;

use crate::mqtt::ReasonCode;
use crate::time::Time;

/// Identifies one transport connection; chosen by the driver, unique for the broker's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u64);

/// Limits and behaviour of a broker instance. Every bound is explicit.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {}
    }
}

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
    /// A connection closed by the broker, with why.
    ConnectionClosed { connection: ConnectionId, reason: ReasonCode },
}

/// One broker instance.
pub struct Broker {}

impl Broker {
    pub fn new(config: BrokerConfig) -> Broker {
        let _ = config;
        todo!("broker helper")
    }

    /// A transport connection was accepted.
    pub fn handle_connection_opened(&mut self, now: Time, connection: ConnectionId) {
        let _ = (now, connection);
        todo!("broker helper")
    }

    /// Bytes arrived on a connection (any split: partial packets are buffered).
    pub fn handle_bytes(&mut self, now: Time, connection: ConnectionId, bytes: &[u8]) {
        let _ = (now, connection, bytes);
        todo!("broker helper")
    }

    /// The transport of a connection is gone (peer closed, reset or timed out). Unless a DISCONNECT
    /// preceded it, this is an abnormal loss: the will is published.
    pub fn handle_connection_lost(&mut self, now: Time, connection: ConnectionId) {
        let _ = (now, connection);
        todo!("broker helper")
    }

    /// Fires every timer due at or before `now` (keep-alive, will delay, session expiry).
    pub fn handle_timeout(&mut self, now: Time) {
        let _ = now;
        todo!("broker helper")
    }

    /// The next output for the driver, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        todo!("broker helper")
    }

    /// The earliest instant at which [`Broker::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Time> {
        todo!("broker helper")
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<BrokerEvent> {
        todo!("broker helper")
    }
}
