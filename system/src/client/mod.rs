//! The sans-IO MQTT client core used by every client in the stack: simulated devices, dataflow
//! sources and sinks, the connector's publisher, loadgen.
//!
//! This module owns one client's protocol state: connect, subscribe, publish QoS 0/1/2 with an
//! inflight window and retransmission on reconnect, keep-alive and reconnect backoff with seeded
//! jitter. It must never do I/O, read a clock or draw unseeded randomness.
//!
//! # Driving a client (quinn-proto style)
//! Inputs come in through `handle_*` and the API calls, each with `now`; outputs are polled:
//! [`Client::poll_transmit`] (bytes for the current transport), [`Client::poll_event`] and
//! [`Client::poll_timeout`] (call [`Client::handle_timeout`] when it passes). After every input
//! the driver drains transmits first, then events: when the events include
//! [`ClientEvent::CloseTransport`], the bytes polled just before it (a DISCONNECT) belong to the
//! transport being closed. Bytes left unpolled when a new transport connects are discarded.
//! `handle_transport_connected`, `handle_bytes` and `handle_transport_lost` must concern the
//! transport opened for the latest `OpenTransport`: a driver drops reports from older ones.
//! The client does not bound its output queues: they grow only with the inputs since the last
//! poll (one event per inbound message or completed publish), so a driver that polls after every
//! input keeps them at a few entries.
//!
//! ```
//! use edgeproof_system::Time;
//! use edgeproof_system::client::{Client, ClientConfig, ClientEvent, OutgoingPublish};
//! use edgeproof_system::mqtt::QoS;
//!
//! let mut client = Client::new(ClientConfig { client_id: "device-1".into(), ..ClientConfig::default() }, 42);
//! let token = client.publish(Time::ZERO, OutgoingPublish::new("site/1/temp", "21.5", QoS::AtLeastOnce))?;
//! client.connect(Time::ZERO);
//! assert_eq!(client.poll_event(), Some(ClientEvent::OpenTransport));
//! // ... the driver opens a connection, then:
//! client.handle_transport_connected(Time::from_millis(3));
//! let connect_bytes = client.poll_transmit().expect("CONNECT"); // write these to the socket
//! assert_eq!(connect_bytes[0] >> 4, 1);
//! // Bytes read from the socket go to `handle_bytes`; the CONNACK brings `Connected`, then the
//! // queued publish goes out and `PublishAcked { token, .. }` follows its PUBACK.
//! client.handle_bytes(Time::from_millis(5), &[0x20, 0x03, 0x00, 0x00, 0x00]); // v5 CONNACK
//! assert_eq!(client.poll_event(), Some(ClientEvent::Connected { session_present: false }));
//! assert!(client.poll_transmit().is_some()); // the PUBLISH
//! client.handle_bytes(Time::from_millis(7), &[0x40, 0x02, 0x00, 0x01]); // PUBACK for id 1
//! assert!(matches!(client.poll_event(), Some(ClientEvent::PublishAcked { token: acked, .. }) if acked == token));
//! // Timers: call `handle_timeout` when `poll_timeout` says (keep-alive, backoff, timeouts).
//! assert!(client.poll_timeout().is_some());
//! # Ok::<(), edgeproof_system::client::PublishError>(())
//! ```
//!
//! # Delivery guarantees
//! - Publishes are accepted into a bounded pending queue (`pending_publishes_limit`) in every
//!   state and sent in order. QoS 1/2 publishes then wait in the inflight window
//!   (`min(inflight_limit, server Receive Maximum)`) until PUBACK/PUBCOMP.
//! - On a reconnect that finds the session present, inflight publishes are retransmitted first,
//!   in their original order, with DUP=1, and pending PUBRELs re-sent (spec 4.4).
//! - On a reconnect that finds NO session, inflight QoS 1/2 publishes the server had not yet
//!   taken ownership of are re-sent as new publishes (new packet ids, DUP=0) ahead of the pending
//!   queue: at-least-once is kept, at the price of a possible duplicate. A QoS 2 publish that had
//!   reached PUBREC is reported acked instead: PUBREC success means the server owns the message,
//!   and re-sending it would duplicate a QoS 2 message. Re-queued publishes may exceed
//!   `pending_publishes_limit` by at most `inflight_limit`.
//! - Retransmissions ignore the window: a server that lowered its Receive Maximum across a
//!   reconnect still gets every unacknowledged message again; new sends wait for the window.
//! - Every accepted publish ends in exactly one of `PublishSent` (QoS 0), `PublishAcked` or
//!   `PublishFailed`, or is still pending or inflight.
//! - Inbound QoS 2 messages are delivered on their first PUBLISH and never again for the same
//!   packet id until the server releases it with PUBREL.
//! - With `ClientConfig::manual_acks`, inbound QoS 1/2 messages are acknowledged only when the
//!   application calls [`Client::ack`] (a dataflow acks a source message once its destination
//!   accepted it), so the server keeps them meanwhile; retransmissions of a message the
//!   application still holds are not delivered again, and unacknowledged QoS 1 messages count
//!   against the advertised Receive Maximum.
//!
//! # Memory
//! Up to a million clients live at once in the simulator, so a `Client` is small (480 bytes on
//! x86-64; the size test bounds it at 512) and idle clients hold no heap memory besides the
//! shared config ([`Client::with_shared_config`], with [`Client::with_client_id`] per device):
//! queues and buffers are released when they drain, and rarely used state (subscribe requests,
//! topic aliases, unreleased inbound QoS 2 ids) lives behind one optional box. The reconnect
//! rng is rebuilt per draw from the seed and a counter instead of being stored.

mod backoff;
#[cfg(test)]
mod broker_tests;
mod config;
mod inflight;
mod stats;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rustc_hash::{FxHashMap, FxHashSet};
use thiserror::Error;

pub use self::backoff::reconnect_delay;
pub use self::config::{ClientConfig, ConfigError, MQTT_PACKET_SIZE_LIMIT_BYTES};
pub use self::stats::ClientStats;

use self::inflight::InflightQueue;
use crate::mqtt::codec::{self, EncodeError};
use crate::mqtt::packet::{
    ConnAck, Disconnect, PacketId, Properties, ProtocolVersion, PubReply, Publish, QoS, Subscribe,
    Subscription, Unsubscribe,
};
use crate::mqtt::topic::{self, TopicError};
use crate::mqtt::{Packet, ReasonCode};
use crate::time::Time;

/// Subscribe and unsubscribe requests awaiting their ack, at most. Requests are rare (a device
/// subscribes once), so a small bound keeps the linear scans cheap and the id space free.
pub const REQUESTS_IN_FLIGHT_LIMIT: usize = 32;

/// Identifies one accepted publish in later events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublishToken(pub u64);

/// Identifies one subscribe or unsubscribe request in later events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestToken(pub u64);

/// An application message to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingPublish {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// v5 PUBLISH properties (message expiry, content type, user properties, ...). Topic aliases
    /// are not supported outbound.
    pub properties: Properties,
}

impl OutgoingPublish {
    /// A non-retained message without properties.
    pub fn new(topic: impl Into<String>, payload: impl Into<Bytes>, qos: QoS) -> OutgoingPublish {
        OutgoingPublish {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain: false,
            properties: Properties::default(),
        }
    }
}

/// What the client tells its driver and application.
// `Message` carries a whole PUBLISH inline (the shared contract other parts code against); events
// are transient and the client releases its event queue whenever it drains, so the size costs
// nothing at rest.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// Driver: open a connection now (first connect or after backoff).
    OpenTransport,
    /// Driver: close the connection (timeout, protocol error, disconnect) after writing the bytes
    /// already polled.
    CloseTransport,
    Connected {
        session_present: bool,
    },
    /// CONNACK with an error code; a reconnect follows with backoff.
    ConnectRefused {
        reason: ReasonCode,
    },
    /// QoS 0: handed to the transport.
    PublishSent {
        token: PublishToken,
    },
    /// QoS 1 PUBACK / QoS 2 PUBCOMP with success (`reason` is the PUBACK's success code; a
    /// PUBCOMP always reports `SUCCESS`, including "Packet Identifier not found" for an exchange
    /// the server completed before a reconnect).
    PublishAcked {
        token: PublishToken,
        reason: ReasonCode,
    },
    /// PUBACK/PUBREC/PUBCOMP with an error code (>= 0x80), or the server's limits (Maximum QoS,
    /// Retain Available, Maximum Packet Size) forbid sending it.
    PublishFailed {
        token: PublishToken,
        reason: ReasonCode,
    },
    Subscribed {
        token: RequestToken,
        reason_codes: Vec<ReasonCode>,
    },
    Unsubscribed {
        token: RequestToken,
        reason_codes: Vec<ReasonCode>,
    },
    /// An inbound application message, after QoS handling (and topic alias resolution).
    Message(Publish),
    /// The session's connection ended: server DISCONNECT (`Some`) or transport loss, timeout,
    /// protocol error or our own disconnect (`None`).
    Disconnected {
        reason: Option<ReasonCode>,
    },
}

/// Why `publish` refused a message.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PublishError {
    /// The pending queue holds `pending_publishes_limit` messages; counted in
    /// `publishes_dropped_queue_full`.
    #[error("pending publish queue is full ({limit} messages)")]
    QueueFull { limit: usize },
    /// The topic is not a valid topic name.
    #[error("invalid topic name: {0}")]
    InvalidTopic(TopicError),
    /// The encoded PUBLISH exceeds the server's Maximum Packet Size (or MQTT's own limit).
    #[error("publish of {size_bytes} bytes exceeds the maximum packet size of {limit_bytes} bytes")]
    PacketTooLarge { size_bytes: usize, limit_bytes: u32 },
    /// The caller set a Topic Alias; this client does not manage outbound aliases.
    #[error("outbound topic aliases are not supported")]
    TopicAliasUnsupported,
    /// The codec refuses the packet (a property not allowed on PUBLISH, for example).
    #[error("publish cannot be encoded: {0}")]
    Invalid(EncodeError),
}

/// Why `subscribe` or `unsubscribe` refused a request.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ClientError {
    /// [`REQUESTS_IN_FLIGHT_LIMIT`] requests already await their acks.
    #[error("too many subscribe/unsubscribe requests in flight (limit {limit})")]
    TooManyRequests { limit: usize },
    /// SUBSCRIBE and UNSUBSCRIBE must carry at least one filter (MQTT-3.8.3-3, MQTT-3.10.3-2).
    #[error("no topic filters given")]
    NoTopicFilters,
    /// A filter is not a valid topic filter.
    #[error("invalid topic filter {filter:?}: {error}")]
    InvalidTopicFilter { filter: String, error: TopicError },
    /// The encoded request exceeds the server's Maximum Packet Size.
    #[error("request of {size_bytes} bytes exceeds the maximum packet size of {limit_bytes} bytes")]
    PacketTooLarge { size_bytes: usize, limit_bytes: u32 },
    /// The codec refuses the packet.
    #[error("request cannot be encoded: {0}")]
    Invalid(EncodeError),
}

/// Why `ack` refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum AckError {
    /// `ClientConfig::manual_acks` is off: messages are acknowledged on delivery.
    #[error("manual acks are off")]
    ManualAcksOff,
    /// No delivered message with this packet id awaits an ack: already acked, or the server lost
    /// the session (and with it the message) since.
    #[error("no delivered message with packet id {packet_id} awaits an ack")]
    NotAwaitingAck { packet_id: PacketId },
}

/// Where the client is in its connection life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Connection {
    /// Created, or stopped by `disconnect`: nothing happens until `connect`.
    Idle,
    /// `OpenTransport` emitted; waiting for `handle_transport_connected` until `deadline`.
    Opening { deadline: Time },
    /// CONNECT queued; waiting for CONNACK until `deadline`.
    AwaitingConnAck { deadline: Time },
    /// CONNACK received. `ping_sent_at` is when the outstanding PINGREQ went out, if one is.
    Connected { ping_sent_at: Option<Time> },
    /// Waiting to open the next transport.
    Backoff { until: Time },
}

/// What the server granted in its CONNACK (defaults for v3.1.1 and absent properties).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Negotiated {
    keep_alive_secs: u16,
    server_receive_maximum: u16,
    server_maximum_packet_size_bytes: u32,
    maximum_qos: QoS,
    retain_available: bool,
}

/// A PUBLISH packet boxed once at `publish` and encoded in place from then on. The box holds a
/// `Packet` (always `Packet::Publish`) so that encoding needs no move and no re-allocation.
#[derive(Debug)]
struct BoxedPublish {
    packet: Box<Packet>,
    /// The encoded size, measured once at `publish`: neither the packet id's value (always two
    /// bytes when present) nor the DUP flag changes it, so sending never measures it again.
    encoded_len_bytes: usize,
}

impl BoxedPublish {
    /// Boxes `publish` (with a packet id when QoS > 0, so that the size counts it) and measures it.
    fn new(publish: Publish, protocol: ProtocolVersion) -> Result<BoxedPublish, EncodeError> {
        assert_eq!(publish.packet_id.is_some(), publish.qos != QoS::AtMostOnce);
        let packet = Box::new(Packet::Publish(publish));
        let encoded_len_bytes = codec::encoded_len(&packet, protocol)?;
        assert!(encoded_len_bytes >= 2, "every MQTT packet has a fixed header");
        Ok(BoxedPublish { packet, encoded_len_bytes })
    }

    fn get(&self) -> &Publish {
        match &*self.packet {
            Packet::Publish(publish) => publish,
            other => unreachable!("BoxedPublish holds a {}", other.name()),
        }
    }

    fn get_mut(&mut self) -> &mut Publish {
        match &mut *self.packet {
            Packet::Publish(publish) => publish,
            other => unreachable!("BoxedPublish holds a {}", other.name()),
        }
    }

    fn packet(&self) -> &Packet {
        &self.packet
    }
}

/// An accepted publish not yet sent.
#[derive(Debug)]
struct PendingPublish {
    token: PublishToken,
    /// `packet_id` is `None` and `dup` false until it is sent.
    publish: BoxedPublish,
}

/// Where an inflight QoS 1/2 publish stands.
#[derive(Debug)]
enum OutboundPhase {
    /// QoS 1 sent; the message is kept for retransmission (DUP=1 already set).
    Qos1Sent(BoxedPublish),
    /// QoS 2 sent; the message is kept for retransmission (DUP=1 already set).
    Qos2Sent(BoxedPublish),
    /// QoS 2 PUBREC received and PUBREL sent: the server owns the message, only the id remains.
    Qos2Released,
}

#[derive(Debug)]
struct InflightPublish {
    token: PublishToken,
    phase: OutboundPhase,
}

/// A SUBSCRIBE or UNSUBSCRIBE awaiting its ack; re-sent on every reconnect until acked.
#[derive(Debug)]
struct Request {
    token: RequestToken,
    packet_id: PacketId,
    packet: Box<Packet>,
}

/// State few clients need at any moment, boxed so that the common client pays one pointer for
/// it: requests exist between a subscribe and its ack, aliases only where the server uses them,
/// unreleased ids between an inbound QoS 2 PUBLISH and its PUBREL.
#[derive(Debug, Default)]
struct Occasional {
    requests: VecDeque<Request>,
    /// Inbound topic aliases of this connection, index `alias - 1`; allocated on first use.
    inbound_topic_aliases: Vec<String>,
    /// Inbound QoS 2 packet ids delivered and awaiting PUBREL (duplicate suppression).
    inbound_unreleased: FxHashSet<PacketId>,
    /// Manual acks: delivered QoS 1/2 messages the application has not acknowledged yet.
    inbound_unacked: FxHashMap<PacketId, UnackedInbound>,
    /// How many of `inbound_unacked` are QoS 1 (QoS 2 ones are in `inbound_unreleased` too).
    inbound_unacked_qos1: usize,
}

impl Occasional {
    fn is_empty(&self) -> bool {
        self.requests.is_empty()
            && self.inbound_topic_aliases.is_empty()
            && self.inbound_unreleased.is_empty()
            && self.inbound_unacked.is_empty()
    }

    /// Inbound QoS 1/2 messages the server counts against our Receive Maximum: QoS 1 not yet
    /// PUBACKed (manual acks) and QoS 2 not yet released.
    fn inbound_window_used(&self) -> usize {
        self.inbound_unreleased.len() + self.inbound_unacked_qos1
    }
}

/// An inbound QoS 1/2 message delivered and awaiting the application's `ack` (manual acks).
#[derive(Clone, Copy, Debug)]
struct UnackedInbound {
    qos: QoS,
    /// `ack` was called while disconnected: the reply goes out on the next connection.
    ack_requested: bool,
}

/// One MQTT client's protocol state. See the module documentation for how to drive it.
#[derive(Debug)]
pub struct Client {
    config: Arc<ClientConfig>,
    connection: Connection,
    negotiated: Negotiated,
    /// True once any CONNACK succeeded: later CONNECTs resume the session (v5 with expiry).
    connected_before: bool,
    /// Consecutive failed attempts since the last successful CONNACK.
    backoff_attempt: u32,
    rng_seed: u64,
    rng_draws: u32,
    next_packet_id: u16,
    next_token: u64,
    last_sent_at: Time,
    last_received_at: Time,
    read_buffer: BytesMut,
    write_buffer: BytesMut,
    events: VecDeque<ClientEvent>,
    pending: VecDeque<PendingPublish>,
    inflight: InflightQueue<InflightPublish>,
    /// This client's own identifier when it is not the config's: a fleet shares one config
    /// while every device has its own id, and a v5 server may assign one.
    client_id: Option<Box<str>>,
    /// Requests, topic aliases and unreleased inbound ids; `None` whenever all are empty.
    occasional: Option<Box<Occasional>>,
    stats: ClientStats,
}

impl Client {
    /// A client owning its configuration; `rng_seed` seeds the reconnect jitter.
    pub fn new(config: ClientConfig, rng_seed: u64) -> Client {
        Client::with_shared_config(Arc::new(config), rng_seed)
    }

    /// A client sharing its configuration with others (a simulated fleet holds one copy).
    /// Panics when the configuration does not pass [`ClientConfig::validate`].
    pub fn with_shared_config(config: Arc<ClientConfig>, rng_seed: u64) -> Client {
        if let Err(error) = config.validate() {
            panic!("invalid client config: {error}");
        }
        let negotiated = Negotiated {
            keep_alive_secs: config.keep_alive_secs,
            server_receive_maximum: u16::MAX,
            server_maximum_packet_size_bytes: MQTT_PACKET_SIZE_LIMIT_BYTES,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
        };
        Client {
            config,
            connection: Connection::Idle,
            negotiated,
            connected_before: false,
            backoff_attempt: 0,
            rng_seed,
            rng_draws: 0,
            next_packet_id: 1,
            next_token: 0,
            last_sent_at: Time::ZERO,
            last_received_at: Time::ZERO,
            read_buffer: BytesMut::new(),
            write_buffer: BytesMut::new(),
            events: VecDeque::new(),
            pending: VecDeque::new(),
            inflight: InflightQueue::default(),
            client_id: None,
            occasional: None,
            stats: ClientStats::default(),
        }
    }

    /// Gives this client its own identifier instead of the config's (a simulated fleet shares
    /// one config). Panics when the id makes the CONNECT invalid (see
    /// [`ClientConfig::validate_client_id`]); call before `connect`.
    pub fn with_client_id(mut self, client_id: impl Into<Box<str>>) -> Client {
        let client_id = client_id.into();
        if let Err(error) = self.config.validate_client_id(&client_id) {
            panic!("invalid client id {client_id:?}: {error}");
        }
        assert_eq!(self.connection, Connection::Idle, "set the client id before connecting");
        self.client_id = Some(client_id);
        self
    }

    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// Starts connecting: emits `OpenTransport`. Does nothing unless the client is idle (new or
    /// after `disconnect`).
    pub fn connect(&mut self, now: Time) {
        if self.connection != Connection::Idle {
            return;
        }
        self.open_transport(now);
        assert!(matches!(self.connection, Connection::Opening { .. }));
    }

    /// The driver's transport is up: queues CONNECT. Ignored unless a transport was requested
    /// (a late report about an abandoned attempt).
    pub fn handle_transport_connected(&mut self, now: Time) {
        if !matches!(self.connection, Connection::Opening { .. }) {
            return;
        }
        // Whatever is left unpolled was meant for an earlier transport.
        self.write_buffer = BytesMut::new();
        self.read_buffer = BytesMut::new();
        // Topic aliases live for one connection (spec 3.3.2.3.4).
        if let Some(occasional) = &mut self.occasional {
            occasional.inbound_topic_aliases = Vec::new();
        }
        self.release_occasional_if_empty();
        self.connection =
            Connection::AwaitingConnAck { deadline: now.saturating_add(self.config.connect_timeout) };
        let connect = self.connect_packet();
        self.send(now, &connect).expect("CONNECT of a validated config encodes");
        assert!(!self.write_buffer.is_empty());
    }

    /// Bytes read from the current transport.
    pub fn handle_bytes(&mut self, now: Time, bytes: &[u8]) {
        if !self.transport_in_use() {
            // Bytes from a transport we already gave up on.
            return;
        }
        self.read_buffer.extend_from_slice(bytes);
        while self.transport_in_use() {
            match codec::decode(
                &mut self.read_buffer,
                self.config.protocol,
                self.config.max_packet_size_bytes,
            ) {
                Ok(Some(packet)) => self.handle_packet(now, packet),
                Ok(None) => break,
                Err(error) => {
                    self.protocol_error(now, error.reason_code());
                    break;
                }
            }
        }
        // Acks freed window slots: refill the window once per read rather than per ack.
        self.flush_pending(now);
        if self.read_buffer.is_empty() || !self.transport_in_use() {
            // Release the buffer: an idle client holds no memory.
            self.read_buffer = BytesMut::new();
        }
        // A partial packet is bounded by our Maximum Packet Size, which the codec enforces as
        // soon as the fixed header is in.
        assert!(self.read_buffer.len() <= self.config.max_packet_size_bytes as usize + 5);
    }

    /// The transport failed or closed under us: schedules a reconnect with backoff.
    pub fn handle_transport_lost(&mut self, now: Time) {
        if !matches!(self.connection, Connection::Opening { .. }) && !self.transport_in_use() {
            return;
        }
        self.stats.transport_losses += 1;
        self.write_buffer = BytesMut::new();
        if self.is_connected() {
            self.events.push_back(ClientEvent::Disconnected { reason: None });
        }
        self.schedule_reconnect(now);
        assert!(matches!(self.connection, Connection::Backoff { .. }));
    }

    /// Acts on every deadline that has passed by `now`: connect timeout, reconnect, keep-alive.
    pub fn handle_timeout(&mut self, now: Time) {
        match self.connection {
            Connection::Idle => {}
            Connection::Opening { deadline } | Connection::AwaitingConnAck { deadline } => {
                if now >= deadline {
                    self.stats.connect_timeouts += 1;
                    self.close_transport(now, None);
                }
            }
            Connection::Backoff { until } => {
                if now >= until {
                    self.open_transport(now);
                }
            }
            Connection::Connected { ping_sent_at } => self.handle_keep_alive(now, ping_sent_at),
        }
        // Whatever `now` was, no deadline is left behind: the next one lies in the future.
        assert!(self.poll_timeout().is_none_or(|deadline| deadline > now), "stale deadline after {now}");
    }

    /// Accepts a message for sending. It goes out at once when connected and the window allows,
    /// else it waits in the pending queue.
    pub fn publish(&mut self, now: Time, message: OutgoingPublish) -> Result<PublishToken, PublishError> {
        let publish = match self.accept_publish(message) {
            Ok(publish) => publish,
            Err(error) => {
                match error {
                    PublishError::QueueFull { .. } => self.stats.publishes_dropped_queue_full += 1,
                    _ => self.stats.publishes_rejected += 1,
                }
                return Err(error);
            }
        };
        self.stats.publishes_accepted += 1;
        let token = PublishToken(self.next_token);
        self.next_token += 1;
        let qos = publish.get().qos;
        let window_open = qos == QoS::AtMostOnce || self.inflight.len() < self.inflight_window();
        if self.is_connected() && self.pending.is_empty() && window_open {
            // The common case skips the queue (and its allocation): nothing waits ahead of it.
            self.transmit_publish(now, token, publish);
        } else {
            self.pending.push_back(PendingPublish { token, publish });
            self.flush_pending(now);
        }
        // Publishes re-queued after a lost session can push the queue past its limit, but never
        // by more than the most that can be inflight.
        let pending_bound = self.config.pending_publishes_limit + usize::from(self.config.inflight_limit);
        assert!(self.pending.len() <= pending_bound);
        Ok(token)
    }

    /// Requests subscriptions; the result arrives as `Subscribed`. Sent now when connected, else
    /// on connect; re-sent after a reconnect until acked.
    pub fn subscribe(
        &mut self,
        now: Time,
        subscriptions: Vec<Subscription>,
    ) -> Result<RequestToken, ClientError> {
        if subscriptions.is_empty() {
            return Err(ClientError::NoTopicFilters);
        }
        for subscription in &subscriptions {
            topic::validate_topic_filter(&subscription.topic_filter).map_err(|error| {
                ClientError::InvalidTopicFilter { filter: subscription.topic_filter.clone(), error }
            })?;
        }
        self.add_request(now, |packet_id| {
            Packet::Subscribe(Subscribe { packet_id, subscriptions, properties: Properties::default() })
        })
    }

    /// Requests removal of subscriptions; the result arrives as `Unsubscribed`.
    pub fn unsubscribe(
        &mut self,
        now: Time,
        topic_filters: Vec<String>,
    ) -> Result<RequestToken, ClientError> {
        if topic_filters.is_empty() {
            return Err(ClientError::NoTopicFilters);
        }
        for filter in &topic_filters {
            topic::validate_topic_filter(filter)
                .map_err(|error| ClientError::InvalidTopicFilter { filter: filter.clone(), error })?;
        }
        self.add_request(now, |packet_id| {
            Packet::Unsubscribe(Unsubscribe { packet_id, topic_filters, properties: Properties::default() })
        })
    }

    /// Ends the session's connection for good: DISCONNECT, then `CloseTransport`; no reconnect
    /// until `connect` is called again. Pending and inflight publishes are kept for that.
    pub fn disconnect(&mut self, now: Time) {
        match self.connection {
            Connection::Idle => return,
            Connection::Backoff { .. } => {}
            Connection::Opening { .. } | Connection::AwaitingConnAck { .. } => {
                self.events.push_back(ClientEvent::CloseTransport);
            }
            Connection::Connected { .. } => {
                let disconnect = Packet::Disconnect(Disconnect::normal());
                self.send(now, &disconnect).expect("DISCONNECT encodes");
                self.events.push_back(ClientEvent::CloseTransport);
                self.events.push_back(ClientEvent::Disconnected { reason: None });
            }
        }
        self.connection = Connection::Idle;
        self.read_buffer = BytesMut::new();
        assert!(!self.is_connected());
    }

    /// Acknowledges a delivered QoS 1/2 message (`ClientConfig::manual_acks`): PUBACK for QoS 1,
    /// PUBREC for QoS 2 (whose PUBREL/PUBCOMP then follow automatically). While disconnected the
    /// ack waits for the next connection; if that finds no session, the server has lost the
    /// message and the ack is void.
    pub fn ack(&mut self, now: Time, packet_id: PacketId) -> Result<(), AckError> {
        if !self.config.manual_acks {
            return Err(AckError::ManualAcksOff);
        }
        let entry = self
            .occasional
            .as_mut()
            .and_then(|occasional| occasional.inbound_unacked.get_mut(&packet_id))
            .ok_or(AckError::NotAwaitingAck { packet_id })?;
        if entry.ack_requested {
            return Err(AckError::NotAwaitingAck { packet_id });
        }
        entry.ack_requested = true;
        if self.is_connected() {
            self.send_inbound_ack(now, packet_id);
        }
        Ok(())
    }

    /// The bytes to write on the current transport, all at once.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.write_buffer.is_empty() {
            return None;
        }
        // Hand the whole buffer over: the client keeps no allocation between writes.
        let bytes = std::mem::take(&mut self.write_buffer).freeze();
        assert!(self.write_buffer.capacity() == 0);
        Some(bytes)
    }

    /// When `handle_timeout` must next be called; `None` when no timer runs.
    pub fn poll_timeout(&self) -> Option<Time> {
        match self.connection {
            Connection::Idle => None,
            Connection::Opening { deadline } | Connection::AwaitingConnAck { deadline } => Some(deadline),
            Connection::Backoff { until } => Some(until),
            Connection::Connected { ping_sent_at } => {
                let keep_alive = self.keep_alive()?;
                Some(match ping_sent_at {
                    Some(sent_at) => sent_at.saturating_add(ping_response_timeout(keep_alive)),
                    None => self.last_sent_at.min(self.last_received_at).saturating_add(keep_alive),
                })
            }
        }
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        let event = self.events.pop_front();
        if self.events.is_empty() && self.events.capacity() > 0 {
            // Events can be large (a `Message` holds a whole PUBLISH): never keep their buffer.
            self.events = VecDeque::new();
        }
        assert!(event.is_some() || self.events.capacity() == 0);
        event
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.connection, Connection::Connected { .. })
    }

    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// Publishes accepted and not yet sent.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// QoS 1/2 publishes sent and not yet completed.
    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// The outbound window: `min(inflight_limit, server Receive Maximum)`, leaving packet ids
    /// for subscribe requests.
    pub fn inflight_window(&self) -> usize {
        let id_space = usize::from(u16::MAX) - REQUESTS_IN_FLIGHT_LIMIT;
        usize::from(self.config.inflight_limit.min(self.negotiated.server_receive_maximum)).min(id_space)
    }

    /// The client identifier the next CONNECT carries: this client's own, the server-assigned
    /// one, or the config's.
    pub fn client_id(&self) -> &str {
        self.client_id.as_deref().unwrap_or(&self.config.client_id)
    }

    /// The keep-alive in force: the server's (v5 Server Keep Alive) or ours; `None` when off.
    fn keep_alive(&self) -> Option<Duration> {
        match self.negotiated.keep_alive_secs {
            0 => None,
            secs => Some(Duration::from_secs(u64::from(secs))),
        }
    }

    /// Subscribe and unsubscribe requests awaiting their acks, oldest first.
    fn requests(&self) -> impl Iterator<Item = &Request> {
        self.occasional.iter().flat_map(|occasional| occasional.requests.iter())
    }

    fn release_occasional_if_empty(&mut self) {
        if self.occasional.as_ref().is_some_and(|occasional| occasional.is_empty()) {
            self.occasional = None;
        }
    }

    /// True while a transport carries (or is about to carry) MQTT traffic.
    fn transport_in_use(&self) -> bool {
        matches!(self.connection, Connection::AwaitingConnAck { .. } | Connection::Connected { .. })
    }

    fn open_transport(&mut self, now: Time) {
        assert!(matches!(self.connection, Connection::Idle | Connection::Backoff { .. }));
        self.connection = Connection::Opening { deadline: now.saturating_add(self.config.connect_timeout) };
        self.stats.connect_attempts += 1;
        self.events.push_back(ClientEvent::OpenTransport);
    }

    /// Closes the transport from our side: an optional v5 DISCONNECT with `disconnect_reason`,
    /// `CloseTransport`, `Disconnected` if a session was up, then a reconnect with backoff.
    fn close_transport(&mut self, now: Time, disconnect_reason: Option<ReasonCode>) {
        assert!(self.transport_in_use() || matches!(self.connection, Connection::Opening { .. }));
        if let Some(reason_code) = disconnect_reason
            && self.config.protocol == ProtocolVersion::V5
            && self.transport_in_use()
        {
            let disconnect = Packet::Disconnect(Disconnect::with_reason(reason_code));
            self.send(now, &disconnect).expect("DISCONNECT encodes");
        }
        self.events.push_back(ClientEvent::CloseTransport);
        if self.is_connected() {
            self.events.push_back(ClientEvent::Disconnected { reason: None });
        }
        self.schedule_reconnect(now);
    }

    fn protocol_error(&mut self, now: Time, reason_code: ReasonCode) {
        assert!(reason_code.is_error());
        self.stats.protocol_errors += 1;
        self.close_transport(now, Some(reason_code));
    }

    fn schedule_reconnect(&mut self, now: Time) {
        let delay = reconnect_delay(
            self.config.reconnect_backoff_min,
            self.config.reconnect_backoff_max,
            self.backoff_attempt,
            self.rng_seed,
            u64::from(self.rng_draws),
        );
        self.rng_draws = self.rng_draws.wrapping_add(1);
        self.backoff_attempt = self.backoff_attempt.saturating_add(1);
        self.connection = Connection::Backoff { until: now.saturating_add(delay) };
        self.read_buffer = BytesMut::new();
        assert!(delay >= self.config.reconnect_backoff_min);
    }

    /// Clean Start of the next CONNECT. The first session starts as configured; later connects
    /// resume it when it can outlive the connection (v5 with a session expiry), so that inflight
    /// state survives the reconnect.
    fn next_clean_start(&self) -> bool {
        let config = &*self.config;
        let resumable = config.protocol == ProtocolVersion::V5 && config.session_expiry_interval_secs > 0;
        if self.connected_before && resumable { false } else { config.clean_start }
    }

    fn connect_packet(&self) -> Packet {
        self.config.connect_packet(self.next_clean_start(), self.client_id())
    }

    /// Encodes `packet` onto the current transport.
    fn send(&mut self, now: Time, packet: &Packet) -> Result<(), EncodeError> {
        let length_before = self.write_buffer.len();
        codec::encode(packet, self.config.protocol, &mut self.write_buffer)?;
        assert!(self.write_buffer.len() > length_before, "{} encoded to nothing", packet.name());
        self.last_sent_at = now;
        Ok(())
    }

    /// Sends a reply packet the codec always accepts (acks, PINGREQ).
    fn send_reply(&mut self, now: Time, packet: &Packet) {
        self.send(now, packet).unwrap_or_else(|error| panic!("{} must encode: {error}", packet.name()));
    }

    /// Checks a message and builds its PUBLISH (without packet id) for the queue or the wire.
    fn accept_publish(&self, message: OutgoingPublish) -> Result<BoxedPublish, PublishError> {
        topic::validate_topic_name(&message.topic).map_err(PublishError::InvalidTopic)?;
        if message.properties.topic_alias.is_some() {
            return Err(PublishError::TopicAliasUnsupported);
        }
        let limit = self.config.pending_publishes_limit;
        if self.pending.len() >= limit {
            return Err(PublishError::QueueFull { limit });
        }
        let publish = Publish {
            dup: false,
            qos: message.qos,
            retain: message.retain,
            topic: message.topic,
            // A placeholder id measures the encoded size; the real one is given at send time.
            packet_id: (message.qos != QoS::AtMostOnce).then_some(PacketId::MAX),
            properties: message.properties,
            payload: message.payload,
        };
        let mut publish = BoxedPublish::new(publish, self.config.protocol).map_err(PublishError::Invalid)?;
        let size_bytes = publish.encoded_len_bytes;
        let limit_bytes = self.negotiated.server_maximum_packet_size_bytes;
        if size_bytes > limit_bytes as usize {
            return Err(PublishError::PacketTooLarge { size_bytes, limit_bytes });
        }
        publish.get_mut().packet_id = None;
        assert!(!publish.get().dup);
        Ok(publish)
    }

    /// Sends pending publishes in order while connected and the window allows. A QoS 0 message
    /// behind a blocked QoS 1/2 message waits too: order is kept across QoS levels.
    fn flush_pending(&mut self, now: Time) {
        if !self.is_connected() {
            return;
        }
        let window = self.inflight_window();
        while let Some(front) = self.pending.front() {
            let qos = front.publish.get().qos;
            if qos != QoS::AtMostOnce && self.inflight.len() >= window {
                break;
            }
            let PendingPublish { token, publish } = self.pending.pop_front().expect("front exists");
            self.transmit_publish(now, token, publish);
        }
        if self.pending.is_empty() && self.pending.capacity() > 0 {
            self.pending = VecDeque::new();
        }
        if let Some(front) = self.pending.front() {
            // Only a full window stops the flush.
            assert!(front.publish.get().qos != QoS::AtMostOnce && self.inflight.len() >= window);
        }
    }

    /// Sends one publish (connected, window checked by the caller): assigns its packet id,
    /// applies the server's limits, writes it and tracks QoS 1/2 in the inflight window.
    fn transmit_publish(&mut self, now: Time, token: PublishToken, mut publish: BoxedPublish) {
        assert!(self.is_connected());
        let qos = publish.get().qos;
        assert!(qos == QoS::AtMostOnce || self.inflight.len() < self.inflight_window());
        // The id comes first so the size check measures the real packet; a refused publish
        // leaves its id unused, which costs nothing.
        let packet_id = (qos != QoS::AtMostOnce).then(|| self.allocate_packet_id());
        publish.get_mut().packet_id = packet_id;
        if let Some(reason) = self.refusal_reason(&publish) {
            self.stats.publishes_failed += 1;
            self.events.push_back(ClientEvent::PublishFailed { token, reason });
            return;
        }
        if let Err(error) = self.send(now, publish.packet()) {
            // Accepted publishes were measured with the same codec; this is a codec/client
            // disagreement, reported instead of crashing a fleet.
            debug_assert!(false, "accepted publish failed to encode: {error}");
            self.stats.publishes_failed += 1;
            self.events.push_back(ClientEvent::PublishFailed {
                token,
                reason: ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR,
            });
            return;
        }
        self.stats.publishes_sent += 1;
        match packet_id {
            None => self.events.push_back(ClientEvent::PublishSent { token }),
            Some(packet_id) => {
                // Any later transmission of this PUBLISH is a retransmission (spec 4.4).
                publish.get_mut().dup = true;
                let phase = if qos == QoS::AtLeastOnce {
                    OutboundPhase::Qos1Sent(publish)
                } else {
                    OutboundPhase::Qos2Sent(publish)
                };
                self.inflight.push(packet_id, InflightPublish { token, phase });
            }
        }
    }

    /// Why the server's CONNACK limits forbid sending this publish, if they do.
    fn refusal_reason(&self, publish: &BoxedPublish) -> Option<ReasonCode> {
        let message = publish.get();
        if message.qos > self.negotiated.maximum_qos {
            return Some(ReasonCode::QOS_NOT_SUPPORTED);
        }
        if message.retain && !self.negotiated.retain_available {
            return Some(ReasonCode::RETAIN_NOT_SUPPORTED);
        }
        assert_eq!(message.packet_id.is_some(), message.qos != QoS::AtMostOnce);
        let limit_bytes = self.negotiated.server_maximum_packet_size_bytes;
        if limit_bytes >= MQTT_PACKET_SIZE_LIMIT_BYTES {
            // `publish` refused anything above MQTT's own limit: nothing to measure.
            return None;
        }
        // Measured when the publish was accepted; the real packet id has the placeholder's size.
        let size_bytes = publish.encoded_len_bytes;
        debug_assert_eq!(codec::encoded_len(publish.packet(), self.config.protocol).ok(), Some(size_bytes));
        (size_bytes > limit_bytes as usize).then_some(ReasonCode::PACKET_TOO_LARGE)
    }

    /// The next free packet identifier. Ids in use are at most the window plus the requests,
    /// both bounded below 65,535, so the search ends.
    fn allocate_packet_id(&mut self) -> PacketId {
        for _ in 0..=u16::MAX {
            let candidate = PacketId::new(self.next_packet_id).expect("packet ids skip zero");
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            let in_use = self.inflight.contains(candidate)
                || self.requests().any(|request| request.packet_id == candidate);
            if !in_use {
                return candidate;
            }
        }
        unreachable!("all 65,535 packet ids in use despite the window bound");
    }

    fn add_request(
        &mut self,
        now: Time,
        build: impl FnOnce(PacketId) -> Packet,
    ) -> Result<RequestToken, ClientError> {
        if self.requests().count() >= REQUESTS_IN_FLIGHT_LIMIT {
            self.stats.requests_dropped_limit += 1;
            return Err(ClientError::TooManyRequests { limit: REQUESTS_IN_FLIGHT_LIMIT });
        }
        let packet_id = self.allocate_packet_id();
        let packet = Box::new(build(packet_id));
        let size_bytes = codec::encoded_len(&packet, self.config.protocol).map_err(ClientError::Invalid)?;
        let limit_bytes = self.negotiated.server_maximum_packet_size_bytes;
        if size_bytes > limit_bytes as usize {
            return Err(ClientError::PacketTooLarge { size_bytes, limit_bytes });
        }
        let token = RequestToken(self.next_token);
        self.next_token += 1;
        if self.is_connected() {
            self.send(now, &packet).expect("measured request encodes");
        }
        let requests = &mut self.occasional.get_or_insert_default().requests;
        requests.push_back(Request { token, packet_id, packet });
        assert!(requests.len() <= REQUESTS_IN_FLIGHT_LIMIT);
        Ok(token)
    }

    fn handle_packet(&mut self, now: Time, packet: Packet) {
        assert!(self.transport_in_use());
        self.last_received_at = now;
        if let Connection::Connected { ping_sent_at } = &mut self.connection {
            // Any packet from the server proves the connection alive, not only PINGRESP.
            *ping_sent_at = None;
        }
        if let Connection::AwaitingConnAck { .. } = self.connection {
            match packet {
                Packet::ConnAck(connack) => self.handle_connack(now, connack),
                // The server must send CONNACK first (MQTT-3.2.0-1); AUTH is not supported.
                _ => self.protocol_error(now, ReasonCode::PROTOCOL_ERROR),
            }
            return;
        }
        match packet {
            Packet::Publish(publish) => self.handle_publish(now, publish),
            Packet::PubAck(reply) => self.handle_puback(reply),
            Packet::PubRec(reply) => self.handle_pubrec(now, reply),
            Packet::PubRel(reply) => self.handle_pubrel(now, reply),
            Packet::PubComp(reply) => self.handle_pubcomp(reply),
            Packet::SubAck(suback) => {
                self.complete_request(now, suback.packet_id, true, suback.reason_codes);
            }
            Packet::UnsubAck(unsuback) => {
                self.complete_request(now, unsuback.packet_id, false, unsuback.reason_codes);
            }
            Packet::PingResp => {}
            Packet::Disconnect(disconnect) => self.handle_server_disconnect(now, disconnect),
            Packet::ConnAck(_)
            | Packet::Connect(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::PingReq
            | Packet::Auth(_) => self.protocol_error(now, ReasonCode::PROTOCOL_ERROR),
        }
    }

    fn handle_connack(&mut self, now: Time, connack: ConnAck) {
        assert!(matches!(self.connection, Connection::AwaitingConnAck { .. }));
        if connack.reason_code.is_error() {
            self.stats.connects_refused += 1;
            self.events.push_back(ClientEvent::ConnectRefused { reason: connack.reason_code });
            self.close_transport(now, None);
            return;
        }
        let properties = connack.properties;
        let zero_limit = properties.receive_maximum == Some(0) || properties.maximum_packet_size == Some(0);
        // A session cannot be present when we asked for a clean one (MQTT-3.2.2-2, MQTT-3.2.2-4),
        // and neither limit may be zero (spec 3.2.2.3.3, 3.2.2.3.6).
        if zero_limit || (connack.session_present && self.next_clean_start()) {
            self.protocol_error(now, ReasonCode::PROTOCOL_ERROR);
            return;
        }
        self.negotiated = Negotiated {
            keep_alive_secs: properties.server_keep_alive_secs.unwrap_or(self.config.keep_alive_secs),
            server_receive_maximum: properties.receive_maximum.unwrap_or(u16::MAX),
            server_maximum_packet_size_bytes: properties
                .maximum_packet_size
                .unwrap_or(MQTT_PACKET_SIZE_LIMIT_BYTES)
                .min(MQTT_PACKET_SIZE_LIMIT_BYTES),
            maximum_qos: properties.maximum_qos.unwrap_or(QoS::ExactlyOnce),
            retain_available: properties.retain_available.unwrap_or(true),
        };
        // A server assigns an id only to a client that sent none (spec 3.2.2.3.7); every later
        // CONNECT must carry it to find the session again.
        if let Some(assigned) = properties.assigned_client_identifier
            && self.client_id().is_empty()
        {
            self.client_id = Some(assigned.into_boxed_str());
        }
        self.connection = Connection::Connected { ping_sent_at: None };
        self.backoff_attempt = 0;
        self.stats.connects += 1;
        if self.connected_before {
            self.stats.reconnects += 1;
        }
        self.connected_before = true;
        self.events.push_back(ClientEvent::Connected { session_present: connack.session_present });
        if connack.session_present {
            self.retransmit_inflight(now);
        } else {
            self.requeue_inflight();
            // The server's half of the exchanges went with its session.
            if let Some(occasional) = &mut self.occasional {
                occasional.inbound_unreleased = FxHashSet::default();
                occasional.inbound_unacked = FxHashMap::default();
                occasional.inbound_unacked_qos1 = 0;
            }
            self.release_occasional_if_empty();
        }
        // Acks the application gave while we were disconnected go out now.
        let acked_offline: Vec<PacketId> = self
            .occasional
            .iter()
            .flat_map(|occasional| occasional.inbound_unacked.iter())
            .filter(|(_, entry)| entry.ack_requested)
            .map(|(packet_id, _)| *packet_id)
            .collect();
        for packet_id in acked_offline {
            self.send_inbound_ack(now, packet_id);
        }
        // Requests are idempotent: re-send any the previous connection left unacked.
        for request in self.occasional.iter().flat_map(|occasional| occasional.requests.iter()) {
            codec::encode(&request.packet, self.config.protocol, &mut self.write_buffer)
                .expect("measured request encodes");
            self.last_sent_at = now;
        }
        self.flush_pending(now);
        assert!(self.is_connected());
    }

    /// Session present: re-send every inflight publish (DUP=1) and PUBREL in original order.
    fn retransmit_inflight(&mut self, now: Time) {
        let mut retransmitted = 0u64;
        for (packet_id, entry) in self.inflight.iter() {
            match &entry.phase {
                OutboundPhase::Qos1Sent(publish) | OutboundPhase::Qos2Sent(publish) => {
                    assert!(publish.get().dup && publish.get().packet_id == Some(packet_id));
                    codec::encode(publish.packet(), self.config.protocol, &mut self.write_buffer)
                        .expect("sent publish encodes again");
                }
                OutboundPhase::Qos2Released => {
                    let pubrel = Packet::PubRel(PubReply::success(packet_id));
                    codec::encode(&pubrel, self.config.protocol, &mut self.write_buffer)
                        .expect("PUBREL encodes");
                }
            }
            retransmitted += 1;
        }
        if retransmitted > 0 {
            self.last_sent_at = now;
        }
        self.stats.publishes_retransmitted += retransmitted;
    }

    /// Session lost: publishes the server never took ownership of go back to the front of the
    /// pending queue (at-least-once; new ids, DUP=0); QoS 2 publishes past PUBREC are acked.
    fn requeue_inflight(&mut self) {
        let entries = self.inflight.drain_in_order();
        let mut requeued = Vec::new();
        for (_, InflightPublish { token, phase }) in entries {
            match phase {
                OutboundPhase::Qos1Sent(mut publish) | OutboundPhase::Qos2Sent(mut publish) => {
                    publish.get_mut().dup = false;
                    publish.get_mut().packet_id = None;
                    requeued.push(PendingPublish { token, publish });
                }
                OutboundPhase::Qos2Released => {
                    self.stats.publishes_acked += 1;
                    self.events.push_back(ClientEvent::PublishAcked { token, reason: ReasonCode::SUCCESS });
                }
            }
        }
        self.stats.publishes_requeued += requeued.len() as u64;
        for pending in requeued.into_iter().rev() {
            self.pending.push_front(pending);
        }
        assert!(self.inflight.is_empty());
    }

    fn handle_publish(&mut self, now: Time, mut publish: Publish) {
        if let Err(reason_code) = self.resolve_topic_alias(&mut publish) {
            self.protocol_error(now, reason_code);
            return;
        }
        match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) => self.deliver(publish),
            (QoS::AtLeastOnce, Some(packet_id)) if !self.config.manual_acks => {
                self.deliver(publish);
                self.send_reply(now, &Packet::PubAck(PubReply::success(packet_id)));
            }
            (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(packet_id)) => {
                let receive_maximum = usize::from(self.config.receive_maximum);
                let manual_acks = self.config.manual_acks;
                let occasional = self.occasional.get_or_insert_default();
                if let Some(entry) = occasional.inbound_unacked.get(&packet_id).copied() {
                    // The server cannot reuse an id we have not acknowledged: a retransmission of
                    // a message the application still holds. Deliver never twice; reply only if
                    // the application acked it while we were disconnected.
                    self.stats.duplicates_suppressed += 1;
                    if entry.ack_requested {
                        self.send_inbound_ack(now, packet_id);
                    }
                    return;
                }
                if occasional.inbound_unreleased.contains(&packet_id) {
                    // A QoS 2 retransmission before PUBREL: acknowledge again, deliver never twice.
                    self.stats.duplicates_suppressed += 1;
                    self.send_reply(now, &Packet::PubRec(PubReply::success(packet_id)));
                    return;
                }
                if occasional.inbound_window_used() >= receive_maximum {
                    // The server exceeded the Receive Maximum we advertised (spec 3.3.4).
                    self.release_occasional_if_empty();
                    self.protocol_error(now, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
                    return;
                }
                let qos = publish.qos;
                if qos == QoS::ExactlyOnce {
                    occasional.inbound_unreleased.insert(packet_id);
                }
                if manual_acks {
                    occasional
                        .inbound_unacked
                        .insert(packet_id, UnackedInbound { qos, ack_requested: false });
                    if qos == QoS::AtLeastOnce {
                        occasional.inbound_unacked_qos1 += 1;
                    }
                }
                self.deliver(publish);
                if !manual_acks {
                    assert_eq!(qos, QoS::ExactlyOnce);
                    self.send_reply(now, &Packet::PubRec(PubReply::success(packet_id)));
                }
            }
            // The codec guarantees an id for QoS > 0; treat a violation as the server's error.
            (_, None) => self.protocol_error(now, ReasonCode::MALFORMED_PACKET),
        }
    }

    /// Replaces an inbound topic alias by its topic (spec 3.3.2.3.4).
    fn resolve_topic_alias(&mut self, publish: &mut Publish) -> Result<(), ReasonCode> {
        let Some(alias) = publish.properties.topic_alias else {
            return if publish.topic.is_empty() { Err(ReasonCode::PROTOCOL_ERROR) } else { Ok(()) };
        };
        if alias == 0 || alias > self.config.topic_alias_maximum {
            return Err(ReasonCode::TOPIC_ALIAS_INVALID);
        }
        let index = usize::from(alias - 1);
        let alias_count = usize::from(self.config.topic_alias_maximum);
        let aliases = &mut self.occasional.get_or_insert_default().inbound_topic_aliases;
        if aliases.is_empty() {
            *aliases = vec![String::new(); alias_count];
        }
        if publish.topic.is_empty() {
            let topic = &aliases[index];
            if topic.is_empty() {
                return Err(ReasonCode::PROTOCOL_ERROR);
            }
            publish.topic.clone_from(topic);
        } else {
            aliases[index].clone_from(&publish.topic);
        }
        publish.properties.topic_alias = None;
        assert!(!publish.topic.is_empty());
        Ok(())
    }

    /// Sends the application's ack for `packet_id` and forgets the entry (connected only).
    fn send_inbound_ack(&mut self, now: Time, packet_id: PacketId) {
        assert!(self.is_connected());
        let occasional = self.occasional.as_mut().expect("an unacked message exists");
        let entry = occasional.inbound_unacked.remove(&packet_id).expect("the message awaits an ack");
        assert!(entry.ack_requested);
        if entry.qos == QoS::AtLeastOnce {
            occasional.inbound_unacked_qos1 -= 1;
        }
        if occasional.inbound_unacked.is_empty() {
            assert_eq!(occasional.inbound_unacked_qos1, 0);
            occasional.inbound_unacked = FxHashMap::default();
        }
        let reply = PubReply::success(packet_id);
        let packet =
            if entry.qos == QoS::AtLeastOnce { Packet::PubAck(reply) } else { Packet::PubRec(reply) };
        self.send_reply(now, &packet);
        self.release_occasional_if_empty();
    }

    fn deliver(&mut self, publish: Publish) {
        self.stats.messages_received += 1;
        self.events.push_back(ClientEvent::Message(publish));
    }

    fn handle_puback(&mut self, reply: PubReply) {
        let is_awaiting_puback = matches!(
            self.inflight.get_mut(reply.packet_id),
            Some(InflightPublish { phase: OutboundPhase::Qos1Sent(_), .. })
        );
        if !is_awaiting_puback {
            // A stale ack (for example from before a reconnect that lost the session).
            self.stats.unknown_acks += 1;
            return;
        }
        let entry = self.inflight.remove(reply.packet_id).expect("entry checked above");
        self.complete_publish(entry.token, reply.reason_code);
    }

    fn handle_pubrec(&mut self, now: Time, reply: PubReply) {
        let packet_id = reply.packet_id;
        let phase = self.inflight.get_mut(packet_id).map(|entry| &mut entry.phase);
        match phase {
            Some(phase @ OutboundPhase::Qos2Sent(_)) => {
                if reply.reason_code.is_error() {
                    let entry = self.inflight.remove(packet_id).expect("entry exists");
                    self.complete_publish(entry.token, reply.reason_code);
                    return;
                }
                // The server owns the message now: drop our copy, keep the id until PUBCOMP.
                *phase = OutboundPhase::Qos2Released;
                self.send_reply(now, &Packet::PubRel(PubReply::success(packet_id)));
            }
            Some(OutboundPhase::Qos2Released) => {
                // A repeated PUBREC: our PUBREL may have been lost, send it again.
                self.send_reply(now, &Packet::PubRel(PubReply::success(packet_id)));
            }
            Some(OutboundPhase::Qos1Sent(_)) | None => {
                self.stats.unknown_acks += 1;
                if self.config.protocol == ProtocolVersion::V5 && !reply.reason_code.is_error() {
                    // Spec 4.3.3: release the unknown id so the server can forget it.
                    let pubrel = PubReply {
                        packet_id,
                        reason_code: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                        properties: Properties::default(),
                    };
                    self.send_reply(now, &Packet::PubRel(pubrel));
                }
            }
        }
    }

    fn handle_pubcomp(&mut self, reply: PubReply) {
        let is_awaiting_pubcomp = matches!(
            self.inflight.get_mut(reply.packet_id),
            Some(InflightPublish { phase: OutboundPhase::Qos2Released, .. })
        );
        if !is_awaiting_pubcomp {
            self.stats.unknown_acks += 1;
            return;
        }
        let entry = self.inflight.remove(reply.packet_id).expect("entry checked above");
        // PUBCOMP can only say Success or Packet Identifier not found (spec 3.7.2.1), and the
        // latter "is not an error during recovery": our PUBREL was re-sent after a reconnect for
        // an exchange the server had already completed. Either way the server took ownership
        // with its PUBREC, so the publish is acknowledged.
        self.complete_publish(entry.token, ReasonCode::SUCCESS);
    }

    /// Reports the outcome of a QoS 1/2 publish and refills the window.
    fn complete_publish(&mut self, token: PublishToken, reason: ReasonCode) {
        if reason.is_error() {
            self.stats.publishes_failed += 1;
            self.events.push_back(ClientEvent::PublishFailed { token, reason });
        } else {
            self.stats.publishes_acked += 1;
            self.events.push_back(ClientEvent::PublishAcked { token, reason });
        }
        // The freed window slot is refilled by `handle_bytes` once the whole read is processed.
    }

    fn handle_pubrel(&mut self, now: Time, reply: PubReply) {
        let packet_id = reply.packet_id;
        let released = self.occasional.as_mut().is_some_and(|occasional| {
            let removed = occasional.inbound_unreleased.remove(&packet_id);
            if occasional.inbound_unreleased.is_empty() {
                occasional.inbound_unreleased = FxHashSet::default();
            }
            removed
        });
        self.release_occasional_if_empty();
        let reason_code = if released {
            ReasonCode::SUCCESS
        } else if self.config.protocol == ProtocolVersion::V5 {
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        } else {
            ReasonCode::SUCCESS
        };
        let pubcomp = PubReply { packet_id, reason_code, properties: Properties::default() };
        self.send_reply(now, &Packet::PubComp(pubcomp));
        let still_unreleased =
            self.occasional.as_ref().is_some_and(|o| o.inbound_unreleased.contains(&packet_id));
        assert!(!still_unreleased);
    }

    fn complete_request(
        &mut self,
        now: Time,
        packet_id: PacketId,
        is_subscribe: bool,
        codes: Vec<ReasonCode>,
    ) {
        let Some(position) = self.requests().position(|request| request.packet_id == packet_id) else {
            self.stats.unknown_acks += 1;
            return;
        };
        let protocol = self.config.protocol;
        let requests = &mut self.occasional.as_mut().expect("a request exists").requests;
        // One reason code per filter, in order (MQTT-3.9.3-1, MQTT-3.11.3-1); a v3.1.1 UNSUBACK
        // has none.
        let expected = match &*requests[position].packet {
            Packet::Subscribe(subscribe) => is_subscribe.then_some(subscribe.subscriptions.len()),
            Packet::Unsubscribe(_) if protocol == ProtocolVersion::V311 => (!is_subscribe).then_some(0),
            Packet::Unsubscribe(unsubscribe) => (!is_subscribe).then_some(unsubscribe.topic_filters.len()),
            other => unreachable!("request holds a {}", other.name()),
        };
        if expected != Some(codes.len()) {
            self.protocol_error(now, ReasonCode::PROTOCOL_ERROR);
            return;
        }
        let request = requests.remove(position).expect("position is valid");
        if requests.is_empty() {
            *requests = VecDeque::new();
        }
        self.release_occasional_if_empty();
        let token = request.token;
        self.events.push_back(if is_subscribe {
            ClientEvent::Subscribed { token, reason_codes: codes }
        } else {
            ClientEvent::Unsubscribed { token, reason_codes: codes }
        });
    }

    fn handle_server_disconnect(&mut self, now: Time, disconnect: Disconnect) {
        assert!(self.is_connected());
        self.stats.server_disconnects += 1;
        // The same order as every other end of a session: the driver's action, then the news.
        self.events.push_back(ClientEvent::CloseTransport);
        self.events.push_back(ClientEvent::Disconnected { reason: Some(disconnect.reason_code) });
        self.schedule_reconnect(now);
        assert!(!self.is_connected());
    }

    fn handle_keep_alive(&mut self, now: Time, ping_sent_at: Option<Time>) {
        assert!(self.is_connected());
        let Some(keep_alive) = self.keep_alive() else {
            return;
        };
        match ping_sent_at {
            Some(sent_at) => {
                if now >= sent_at.saturating_add(ping_response_timeout(keep_alive)) {
                    self.stats.keepalive_timeouts += 1;
                    self.close_transport(now, None);
                }
            }
            None => {
                let idle_since = self.last_sent_at.min(self.last_received_at);
                if now >= idle_since.saturating_add(keep_alive) {
                    self.send_reply(now, &Packet::PingReq);
                    self.stats.pings_sent += 1;
                    self.connection = Connection::Connected { ping_sent_at: Some(now) };
                }
            }
        }
    }
}

/// How long a PINGREQ may go unanswered before the connection counts as dead: half the
/// keep-alive, so a dead peer is noticed within 1.5 keep-alive periods of silence, the same
/// bound the server applies to us (spec 3.1.2.10).
fn ping_response_timeout(keep_alive: Duration) -> Duration {
    keep_alive / 2
}
