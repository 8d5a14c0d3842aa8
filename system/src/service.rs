//! The service seam: the one contract every sans-IO service of the stack (a broker, a
//! republisher; later cluster frontends, dataflows, connectors) offers to whatever drives it.
//!
//! This module owns the [`Service`] trait, the inputs and outputs it exchanges with a driver
//! ([`Output`], [`ServiceEvent`], [`ConnectFailure`]), the endpoint naming model
//! ([`EndpointName`], [`Port`]) and [`BrokerService`], the broker core behind the seam. It must
//! never do I/O, read a clock or spawn: a driver (the fast engine's world, the tokio service shell)
//! hands in `now` and every input, and moves the outputs over its own network and disks.
//!
//! # The contract (modelled on quinn-proto's `handle_*` / `poll_*`)
//! - Inputs are `handle_*(now, ...)` calls; outputs are polled. After any input the driver drains,
//!   in this order: [`Service::poll_output`] until `None` (executing each output in order),
//!   [`Service::poll_event`] until `None`, then reads [`Service::poll_timeout`] and calls
//!   [`Service::handle_timeout`] at (or after) that time unless another input comes first.
//!   Executing an output never calls back into the service: results (a connect's outcome, a disk
//!   reply) come later as inputs.
//! - `now` never decreases across calls; every implementation asserts it ([`MonotonicNow`]).
//! - Connection ids are the driver's: it names an accepted connection in
//!   [`Service::handle_accepted`] and an outbound one in [`Service::handle_connected`]. An id is
//!   unique for the service's lifetime. After [`Service::handle_closed`] or an [`Output::Close`] the
//!   id is dead: the driver drops sends for it, and never reports it again.
//! - A service asks for a connection with [`Output::Connect`] and a token of its choosing; exactly
//!   one of `handle_connected` / `handle_connect_failed` answers each token.
//! - Disk requests ([`Output::Disk`]) are answered by exactly one [`Service::handle_disk`] with the
//!   same request id, in request order per service. A service that is dropped (a crash) never
//!   hears of its outstanding requests again; whether their effects survive is the disk model's
//!   business (`crate::fs`'s durability contract).
//! - [`Output::Listen`] declares a port. A service declares its ports before any other output,
//!   so a driver may construct a service and drain its listens to learn its ports.
//!
//! # Endpoint names
//! An endpoint is `"pod:port"`: the pod's name in the scenario and the port's name as the service
//! declared it (`"broker:mqtt"`). A port also carries the TCP port number real and turmoil
//! networks use; the fast engine routes by name only.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use crate::broker::{Broker, BrokerConfig, BrokerEvent, Transmit};
use crate::fs::{DiskOp, DiskReply};
use crate::time::Time;

pub use crate::broker::ConnectionId;

/// The name of the broker's MQTT port, and its TCP port number.
pub const MQTT_PORT: Port = Port { name: "mqtt", number: 1883 };

/// Longest pod or port name in an endpoint, in bytes.
pub const ENDPOINT_PART_BYTES_MAX: usize = 63;

/// A named listening port of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    /// The name other pods connect to (`"pod:name"`).
    pub name: &'static str,
    /// The TCP port real and turmoil networks bind.
    pub number: u16,
}

/// Names an outbound connect request; chosen by the service, echoed by the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectToken(pub u64);

/// Names one disk request; chosen by the service, echoed in its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DiskRequestId(pub u64);

/// `"pod:port"`: where a service connects.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EndpointName {
    pub pod: String,
    pub port: String,
}

/// Why a string is not an endpoint name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "endpoint {text:?} invalid, expected \"pod:port\" (letters, digits, '-', '_', at most 63 bytes each)"
)]
pub struct EndpointNameError {
    pub text: String,
}

impl FromStr for EndpointName {
    type Err = EndpointNameError;

    fn from_str(text: &str) -> Result<EndpointName, EndpointNameError> {
        let error = || EndpointNameError { text: text.to_string() };
        let (pod, port) = text.split_once(':').ok_or_else(error)?;
        let valid = |part: &str| {
            !part.is_empty()
                && part.len() <= ENDPOINT_PART_BYTES_MAX
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !valid(pod) || !valid(port) {
            return Err(error());
        }
        Ok(EndpointName { pod: pod.to_string(), port: port.to_string() })
    }
}

impl TryFrom<String> for EndpointName {
    type Error = EndpointNameError;

    fn try_from(text: String) -> Result<EndpointName, EndpointNameError> {
        text.parse()
    }
}

impl From<EndpointName> for String {
    fn from(name: EndpointName) -> String {
        name.to_string()
    }
}

impl fmt::Display for EndpointName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.pod, self.port)
    }
}

/// What the driver must do for a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Accept connections on this port from now on (declared once, before any other output).
    Listen { port: Port },
    /// Open a connection to `endpoint`; answered by `handle_connected` or `handle_connect_failed`.
    Connect { token: ConnectToken, endpoint: EndpointName },
    /// Write these bytes to the connection, in order.
    Send { connection: ConnectionId, bytes: Bytes },
    /// Flush what was sent before, then close the connection. The id is dead from now on.
    Close { connection: ConnectionId },
    /// Execute `op` against this host's disk; answered by `handle_disk` with `request`.
    Disk { request: DiskRequestId, op: DiskOp },
}

/// Why an outbound connect failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectFailure {
    /// The endpoint names no pod or port of the world.
    #[error("no such endpoint")]
    Unresolved,
    /// Nobody listens there (an RST answered the SYN).
    #[error("connection refused")]
    Refused,
    /// No answer within the connect timeout.
    #[error("connect timed out")]
    TimedOut,
}

/// What a service reports for the ledger and the trace. One variant per service kind keeps the
/// payloads typed (a world tallies a broker's drops by the broker's own reasons).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceEvent {
    Broker(BrokerEvent),
    Republisher(crate::republisher::RepublisherEvent),
}

/// A sans-IO service; see the module doc for the calling contract.
pub trait Service {
    /// A short name of what this is (`"broker"`, `"republisher"`), for traces and errors.
    fn kind(&self) -> &'static str;
    /// A peer connected to `port` (one this service declared); the driver chose `connection`.
    fn handle_accepted(&mut self, now: Time, port: &'static str, connection: ConnectionId);
    /// The connect requested with `token` succeeded; it is `connection` from now on.
    fn handle_connected(&mut self, now: Time, token: ConnectToken, connection: ConnectionId);
    /// The connect requested with `token` failed.
    fn handle_connect_failed(&mut self, now: Time, token: ConnectToken, failure: ConnectFailure);
    /// Bytes arrived on an open connection, in order.
    fn handle_bytes(&mut self, now: Time, connection: ConnectionId, bytes: &[u8]);
    /// The connection is gone (peer's FIN or RST, timeout, local transport failure).
    fn handle_closed(&mut self, now: Time, connection: ConnectionId);
    /// `now` reached the deadline of [`Service::poll_timeout`] (or later).
    fn handle_timeout(&mut self, now: Time);
    /// The disk answered request `request`.
    fn handle_disk(&mut self, now: Time, request: DiskRequestId, reply: DiskReply);
    /// The next thing the driver must do, in order.
    fn poll_output(&mut self) -> Option<Output>;
    /// The next event for the ledger and the trace.
    fn poll_event(&mut self) -> Option<ServiceEvent>;
    /// When `handle_timeout` is next due.
    fn poll_timeout(&self) -> Option<Time>;
}

/// The "now never decreases" invariant, kept by every service.
#[derive(Clone, Copy, Debug, Default)]
pub struct MonotonicNow {
    latest: Time,
}

impl MonotonicNow {
    /// Records `now`; panics if it is earlier than a `now` seen before (a driver bug).
    pub fn advance(&mut self, now: Time) -> Time {
        assert!(now >= self.latest, "now went backwards: {now} after {}", self.latest);
        self.latest = now;
        now
    }
}

/// The broker core behind the [`Service`] seam: one MQTT port, no outbound connections, no disk.
/// A thin adapter: every input goes straight to [`Broker`], every transmit straight out.
pub struct BrokerService {
    broker: Broker,
    now: MonotonicNow,
    listen_declared: bool,
}

impl BrokerService {
    pub fn new(config: BrokerConfig) -> BrokerService {
        BrokerService { broker: Broker::new(config), now: MonotonicNow::default(), listen_declared: false }
    }

    /// The core, for its stats and queries.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }
}

impl Service for BrokerService {
    fn kind(&self) -> &'static str {
        "broker"
    }

    fn handle_accepted(&mut self, now: Time, port: &'static str, connection: ConnectionId) {
        assert_eq!(port, MQTT_PORT.name, "the broker declared only its MQTT port");
        self.broker.handle_connection_opened(self.now.advance(now), connection);
    }

    fn handle_connected(&mut self, _now: Time, token: ConnectToken, _connection: ConnectionId) {
        unreachable!("the broker never connects out (token {token:?})");
    }

    fn handle_connect_failed(&mut self, _now: Time, token: ConnectToken, _failure: ConnectFailure) {
        unreachable!("the broker never connects out (token {token:?})");
    }

    fn handle_bytes(&mut self, now: Time, connection: ConnectionId, bytes: &[u8]) {
        self.broker.handle_bytes(self.now.advance(now), connection, bytes);
    }

    fn handle_closed(&mut self, now: Time, connection: ConnectionId) {
        self.broker.handle_connection_lost(self.now.advance(now), connection);
    }

    fn handle_timeout(&mut self, now: Time) {
        self.broker.handle_timeout(self.now.advance(now));
    }

    fn handle_disk(&mut self, _now: Time, request: DiskRequestId, _reply: DiskReply) {
        unreachable!("the in-memory broker never asks the disk (request {request:?})");
    }

    fn poll_output(&mut self) -> Option<Output> {
        if !self.listen_declared {
            self.listen_declared = true;
            return Some(Output::Listen { port: MQTT_PORT });
        }
        self.broker.poll_transmit().map(|transmit| match transmit {
            Transmit::Send { connection, bytes } => Output::Send { connection, bytes },
            Transmit::Close { connection } => Output::Close { connection },
        })
    }

    fn poll_event(&mut self) -> Option<ServiceEvent> {
        self.broker.poll_event().map(ServiceEvent::Broker)
    }

    fn poll_timeout(&self) -> Option<Time> {
        self.broker.poll_timeout()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Client, ClientConfig, ClientEvent};

    #[test]
    fn endpoint_names_parse_and_print() {
        let name: EndpointName = "broker-1:mqtt".parse().unwrap();
        assert_eq!((name.pod.as_str(), name.port.as_str()), ("broker-1", "mqtt"));
        assert_eq!(name.to_string(), "broker-1:mqtt");
        let long = format!("{}:mqtt", "p".repeat(ENDPOINT_PART_BYTES_MAX + 1));
        for bad in ["", "broker", ":mqtt", "broker:", "a:b:c", "bro ker:mqtt", long.as_str()] {
            assert!(bad.parse::<EndpointName>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_broker_declares_its_port_first_then_serves_a_client() {
        let mut service = BrokerService::new(BrokerConfig::default());
        assert_eq!(service.poll_output(), Some(Output::Listen { port: MQTT_PORT }));
        assert_eq!(service.poll_output(), None);
        let mut client = Client::new(ClientConfig { client_id: "c".into(), ..ClientConfig::default() }, 1);
        let now = Time::from_millis(5);
        client.connect(now);
        assert_eq!(client.poll_event(), Some(ClientEvent::OpenTransport));
        client.handle_transport_connected(now);
        let connection = ConnectionId(7);
        service.handle_accepted(now, "mqtt", connection);
        while let Some(bytes) = client.poll_transmit() {
            service.handle_bytes(now, connection, &bytes);
        }
        let mut replies = 0;
        while let Some(output) = service.poll_output() {
            let Output::Send { connection: to, bytes } = output else { panic!("unexpected {output:?}") };
            assert_eq!(to, connection);
            client.handle_bytes(now, &bytes);
            replies += 1;
        }
        assert!(replies > 0);
        assert!(client.is_connected());
        assert!(matches!(service.poll_event(), Some(ServiceEvent::Broker(BrokerEvent::Connected { .. }))));
    }

    #[test]
    fn a_driver_that_turns_time_back_is_caught() {
        let mut service = BrokerService::new(BrokerConfig::default());
        service.handle_timeout(Time::from_secs(2));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            service.handle_timeout(Time::from_secs(1));
        }));
        assert!(result.is_err(), "now going backwards must be refused");
    }
}
