//! The republisher (a bridge): subscribes to topic filters on a source broker and republishes
//! each message to a destination broker under a rewritten topic, store-and-forward.
//!
//! This module owns [`Republisher`], a [`Service`] built from two sans-IO client cores (source and
//! destination), its config ([`RepublisherConfig`], validated with typed errors) and its counters.
//! It must never do I/O or read a clock, and never acknowledge a source message before the
//! destination acknowledged its copy: that is what makes it lose nothing across its own or a
//! broker's reconnects.
//!
//! # Semantics
//! - The source session is persistent with manual acks, and its Receive Maximum is
//!   `inflight_messages_limit`: the source broker never hands over more unacknowledged QoS 1
//!   messages than the republisher may hold; the rest wait in the broker's session queue.
//! - Each message is republished with QoS 1 and the same payload (so a stamp still identifies it)
//!   to `to_prefix + (topic without from_prefix)`. When the destination's PUBACK succeeds the
//!   source message is acknowledged; a destination refusal (PUBACK >= 0x80) is a counted drop,
//!   and the source is acknowledged so the message is not redelivered forever.
//! - A redelivered source message (DUP, same packet id) whose copy is still in flight is not
//!   republished again.
//! - QoS 0 source messages hold no window; when the destination's queue is full they are dropped
//!   and counted, like every other drop ([`RepublisherStats`], [`RepublisherEvent`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::client::{Client, ClientConfig, ClientEvent, OutgoingPublish, PublishError, PublishToken};
use crate::fs::DiskReply;
use crate::mqtt::packet::{PacketId, QoS, Subscription, SubscriptionOptions};
use crate::mqtt::topic;
use crate::service::{
    ConnectFailure, ConnectToken, ConnectionId, DiskRequestId, EndpointName, MonotonicNow, Output, Service,
    ServiceEvent,
};
use crate::time::Time;

/// Messages held between source and destination, at most (the source's Receive Maximum).
pub const INFLIGHT_MESSAGES_LIMIT_MAX: u16 = 10_000;

/// How a republisher connects and what it forwards.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepublisherConfig {
    /// Where to subscribe, `"pod:port"`.
    pub source: EndpointName,
    /// Where to republish, `"pod:port"` (may be the source).
    pub destination: EndpointName,
    /// Filters subscribed on the source; each must lie under `from_prefix`.
    pub filters: Vec<String>,
    /// The topic prefix removed from each message, e.g. `"plant/"`.
    pub from_prefix: String,
    /// The topic prefix put in its place, e.g. `"cloud/"`.
    pub to_prefix: String,
    /// Messages taken from the source and not yet acknowledged by the destination, at most.
    #[serde(default = "default_inflight_messages_limit")]
    pub inflight_messages_limit: u16,
    /// Client id prefix: the source session is `<id>-source`, the destination `<id>-destination`.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    #[serde(default = "default_keep_alive_secs")]
    pub keep_alive_secs: u16,
    /// How long both brokers keep the republisher's sessions while it is away.
    #[serde(default = "default_session_expiry_secs")]
    pub session_expiry_secs: u32,
}

fn default_inflight_messages_limit() -> u16 {
    100
}

fn default_client_id() -> String {
    "republisher".to_string()
}

fn default_keep_alive_secs() -> u16 {
    30
}

fn default_session_expiry_secs() -> u32 {
    3_600
}

/// Why a [`RepublisherConfig`] cannot run; each names the key at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RepublisherConfigError {
    #[error("filters: empty, expected at least one topic filter")]
    NoFilters,
    #[error("filters: {filter:?} is not a valid topic filter ({reason})")]
    InvalidFilter { filter: String, reason: String },
    #[error("filters: {filter:?} does not lie under from_prefix {from_prefix:?}")]
    FilterOutsidePrefix { filter: String, from_prefix: String },
    #[error("{key}: {prefix:?} invalid, expected a non-empty topic prefix ending in '/' without wildcards")]
    InvalidPrefix { key: &'static str, prefix: String },
    #[error(
        "to_prefix: {to_prefix:?} overlaps from_prefix {from_prefix:?}, which would republish its own output"
    )]
    OverlappingPrefixes { from_prefix: String, to_prefix: String },
    #[error("inflight_messages_limit: {value}, expected 1..={INFLIGHT_MESSAGES_LIMIT_MAX}")]
    InflightLimit { value: u16 },
    #[error("keep_alive_secs: 0 disables liveness, expected at least 1")]
    KeepAlive,
    #[error("session_expiry_secs: 0 loses the session on every reconnect, expected at least 1")]
    SessionExpiry,
    #[error("client_id: {0}")]
    ClientId(String),
}

impl RepublisherConfigError {
    /// The config key the error is about (for line-numbered messages).
    pub fn key(&self) -> &'static str {
        match self {
            RepublisherConfigError::NoFilters
            | RepublisherConfigError::InvalidFilter { .. }
            | RepublisherConfigError::FilterOutsidePrefix { .. } => "filters",
            RepublisherConfigError::InvalidPrefix { key, .. } => key,
            RepublisherConfigError::OverlappingPrefixes { .. } => "to_prefix",
            RepublisherConfigError::InflightLimit { .. } => "inflight_messages_limit",
            RepublisherConfigError::KeepAlive => "keep_alive_secs",
            RepublisherConfigError::SessionExpiry => "session_expiry_secs",
            RepublisherConfigError::ClientId(_) => "client_id",
        }
    }
}

impl RepublisherConfig {
    /// Checks every rule a running republisher relies on.
    pub fn validate(&self) -> Result<(), RepublisherConfigError> {
        for (key, prefix) in [("from_prefix", &self.from_prefix), ("to_prefix", &self.to_prefix)] {
            let valid = prefix.ends_with('/')
                && prefix.len() > 1
                && !prefix.contains(['#', '+'])
                && topic::validate_topic_name(prefix).is_ok();
            if !valid {
                return Err(RepublisherConfigError::InvalidPrefix { key, prefix: prefix.clone() });
            }
        }
        if self.from_prefix.starts_with(&self.to_prefix) || self.to_prefix.starts_with(&self.from_prefix) {
            return Err(RepublisherConfigError::OverlappingPrefixes {
                from_prefix: self.from_prefix.clone(),
                to_prefix: self.to_prefix.clone(),
            });
        }
        if self.filters.is_empty() {
            return Err(RepublisherConfigError::NoFilters);
        }
        for filter in &self.filters {
            topic::validate_topic_filter(filter).map_err(|error| RepublisherConfigError::InvalidFilter {
                filter: filter.clone(),
                reason: error.to_string(),
            })?;
            // Under the prefix literally (no wildcard before its end), so every match is mappable.
            if !filter.starts_with(&self.from_prefix) {
                return Err(RepublisherConfigError::FilterOutsidePrefix {
                    filter: filter.clone(),
                    from_prefix: self.from_prefix.clone(),
                });
            }
        }
        if self.inflight_messages_limit == 0 || self.inflight_messages_limit > INFLIGHT_MESSAGES_LIMIT_MAX {
            return Err(RepublisherConfigError::InflightLimit { value: self.inflight_messages_limit });
        }
        if self.keep_alive_secs == 0 {
            return Err(RepublisherConfigError::KeepAlive);
        }
        if self.session_expiry_secs == 0 {
            return Err(RepublisherConfigError::SessionExpiry);
        }
        for side in ["source", "destination"] {
            let config = self.client_config(side);
            config.validate().map_err(|error| RepublisherConfigError::ClientId(error.to_string()))?;
        }
        Ok(())
    }

    /// The topic a source message is republished to; `None` if it is not under `from_prefix`.
    pub fn map_topic(&self, topic: &str) -> Option<String> {
        topic.strip_prefix(self.from_prefix.as_str()).map(|rest| format!("{}{rest}", self.to_prefix))
    }

    fn client_config(&self, side: &str) -> ClientConfig {
        let limit = self.inflight_messages_limit;
        ClientConfig {
            client_id: format!("{}-{side}", self.client_id),
            clean_start: false,
            session_expiry_interval_secs: self.session_expiry_secs,
            keep_alive_secs: self.keep_alive_secs,
            // Source: the broker hands over at most `limit` unacknowledged messages.
            receive_maximum: limit,
            manual_acks: side == "source",
            // Destination: at most `limit` in flight, and room for every held message pending
            // (plus QoS 0 arrivals, which are dropped and counted beyond it).
            inflight_limit: limit,
            pending_publishes_limit: usize::from(limit),
            reconnect_backoff_min: Duration::from_millis(100),
            reconnect_backoff_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            ..ClientConfig::default()
        }
    }
}

/// Why the republisher dropped a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RepublishDropReason {
    /// The destination client's pending queue was full (QoS 0 arrivals beyond the window).
    QueueFull,
    /// The destination refused the copy (PUBACK >= 0x80, or a packet too large for it).
    Refused,
}

/// What a republisher reports for the ledger and the trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepublisherEvent {
    /// A message was not forwarded; `topic` and `payload` identify it.
    MessageDropped { reason: RepublishDropReason, topic: Arc<str>, payload: Bytes },
    /// A source or destination session (re)connected.
    Connected { destination: bool, session_present: bool },
}

/// Counters of one republisher.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepublisherStats {
    /// Messages received from the source (redeliveries included).
    pub received: u64,
    /// Copies handed to the destination client.
    pub forwarded: u64,
    /// Source messages acknowledged after their copy was acknowledged.
    pub source_acked: u64,
    /// Redelivered source messages whose copy was already in flight (not forwarded again).
    pub redeliveries_skipped: u64,
    pub dropped_queue_full: u64,
    pub dropped_refused: u64,
}

/// A connect in progress or an open connection of one of the two clients.
#[derive(Debug, Default)]
struct Link {
    pending: Option<ConnectToken>,
    connection: Option<ConnectionId>,
}

const SOURCE: usize = 0;
const DESTINATION: usize = 1;

/// A republisher; see the module doc.
pub struct Republisher {
    config: RepublisherConfig,
    clients: [Client; 2],
    links: [Link; 2],
    /// Copies in flight at the destination: their token -> the source packet id to ack
    /// (`None` for a QoS 0 source message) and the copy's topic and payload (for a drop event).
    inflight: BTreeMap<PublishToken, (Option<PacketId>, Arc<str>, Bytes)>,
    /// Source packet ids whose copy is in flight (to skip redeliveries).
    inflight_source_ids: BTreeMap<PacketId, PublishToken>,
    outputs: std::collections::VecDeque<Output>,
    events: std::collections::VecDeque<ServiceEvent>,
    started: bool,
    /// The source's SUBACK arrived (a fresh session afterwards needs a new SUBSCRIBE).
    subscription_acked: bool,
    next_token: u64,
    now: MonotonicNow,
    stats: RepublisherStats,
}

impl Republisher {
    /// Panics on a config that fails [`RepublisherConfig::validate`] (scenario validation
    /// reports it with a line number first). `rng_seed` seeds both clients' reconnect jitter.
    pub fn new(config: RepublisherConfig, rng_seed: u64) -> Republisher {
        if let Err(error) = config.validate() {
            panic!("invalid republisher config: {error}");
        }
        let source = Client::new(config.client_config("source"), rng_seed);
        let destination = Client::new(config.client_config("destination"), rng_seed ^ 0x5bd1_e995);
        Republisher {
            config,
            clients: [source, destination],
            links: [Link::default(), Link::default()],
            inflight: BTreeMap::new(),
            inflight_source_ids: BTreeMap::new(),
            outputs: Default::default(),
            events: Default::default(),
            started: false,
            subscription_acked: false,
            next_token: 0,
            now: MonotonicNow::default(),
            stats: RepublisherStats::default(),
        }
    }

    pub fn stats(&self) -> &RepublisherStats {
        &self.stats
    }

    /// Copies taken from the source and not yet acknowledged by the destination.
    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    fn endpoint(&self, side: usize) -> &EndpointName {
        if side == SOURCE { &self.config.source } else { &self.config.destination }
    }

    fn subscriptions(&self) -> Vec<Subscription> {
        self.config
            .filters
            .iter()
            .map(|filter| Subscription {
                topic_filter: filter.clone(),
                options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            })
            .collect()
    }

    fn side_of(&self, connection: ConnectionId) -> Option<usize> {
        (0..2).find(|side| self.links[*side].connection == Some(connection))
    }

    /// Moves both clients' transmits and events until neither has anything left.
    fn pump(&mut self, now: Time) {
        loop {
            let mut progressed = false;
            for side in [SOURCE, DESTINATION] {
                while let Some(bytes) = self.clients[side].poll_transmit() {
                    progressed = true;
                    // Without a connection the core learns of the loss through its own events.
                    if let Some(connection) = self.links[side].connection {
                        self.outputs.push_back(Output::Send { connection, bytes });
                    }
                }
                while let Some(event) = self.clients[side].poll_event() {
                    progressed = true;
                    self.on_client_event(now, side, event);
                }
            }
            if !progressed {
                break;
            }
        }
        assert!(self.inflight.len() <= usize::from(self.config.inflight_messages_limit) * 2);
        assert!(self.inflight_source_ids.len() <= self.inflight.len());
    }

    fn on_client_event(&mut self, now: Time, side: usize, event: ClientEvent) {
        match event {
            ClientEvent::OpenTransport => {
                if let Some(connection) = self.links[side].connection.take() {
                    self.outputs.push_back(Output::Close { connection });
                }
                let token = ConnectToken(self.next_token << 1 | side as u64);
                self.next_token += 1;
                self.links[side].pending = Some(token);
                self.outputs.push_back(Output::Connect { token, endpoint: self.endpoint(side).clone() });
            }
            ClientEvent::CloseTransport => {
                self.links[side].pending = None;
                if let Some(connection) = self.links[side].connection.take() {
                    self.outputs.push_back(Output::Close { connection });
                }
            }
            ClientEvent::Connected { session_present } => {
                self.events.push_back(ServiceEvent::Republisher(RepublisherEvent::Connected {
                    destination: side == DESTINATION,
                    session_present,
                }));
                if side == SOURCE && !session_present {
                    // A fresh source session: the broker forgot the messages whose copies are in
                    // flight (nothing to ack any more), and its packet ids start over, so an old
                    // id must not make a new message look like a redelivery.
                    for (source_id, _, _) in self.inflight.values_mut() {
                        *source_id = None;
                    }
                    self.inflight_source_ids.clear();
                }
                if side == SOURCE && !session_present && self.subscription_acked {
                    // A fresh session lost the acknowledged subscriptions: subscribe again. (One
                    // not yet acknowledged is re-sent by the core itself.)
                    self.subscription_acked = false;
                    self.clients[SOURCE].subscribe(now, self.subscriptions()).expect("validated filters");
                }
            }
            ClientEvent::Message(publish) if side == SOURCE => self.forward(now, publish),
            ClientEvent::Subscribed { .. } if side == SOURCE => self.subscription_acked = true,
            ClientEvent::PublishAcked { token, .. } if side == DESTINATION => {
                let (source_id, _, _) = self.inflight.remove(&token).expect("an acked copy was in flight");
                self.ack_source(now, source_id);
            }
            ClientEvent::PublishFailed { token, .. } if side == DESTINATION => {
                let (source_id, topic, payload) =
                    self.inflight.remove(&token).expect("a refused copy was in flight");
                self.drop_message(RepublishDropReason::Refused, topic, payload);
                self.ack_source(now, source_id);
            }
            // Subscribe results, QoS 0 sends and disconnects need nothing: the cores reconnect
            // and retransmit by themselves.
            _ => {}
        }
    }

    fn forward(&mut self, now: Time, publish: crate::mqtt::packet::Publish) {
        self.stats.received += 1;
        if let Some(packet_id) = publish.packet_id
            && self.inflight_source_ids.contains_key(&packet_id)
        {
            self.stats.redeliveries_skipped += 1;
            return;
        }
        let Some(topic) = self.config.map_topic(&publish.topic) else {
            unreachable!("validated filters lie under from_prefix: {}", publish.topic);
        };
        let source_id = publish.packet_id;
        let message = OutgoingPublish::new(topic.clone(), publish.payload.clone(), QoS::AtLeastOnce);
        match self.clients[DESTINATION].publish(now, message) {
            Ok(token) => {
                self.stats.forwarded += 1;
                self.inflight.insert(token, (source_id, Arc::from(topic), publish.payload));
                if let Some(packet_id) = source_id {
                    self.inflight_source_ids.insert(packet_id, token);
                }
            }
            Err(error) => {
                let reason = match error {
                    PublishError::QueueFull { .. } => RepublishDropReason::QueueFull,
                    _ => RepublishDropReason::Refused,
                };
                self.drop_message(reason, Arc::from(topic), publish.payload);
                self.ack_source(now, source_id);
            }
        }
    }

    fn ack_source(&mut self, now: Time, source_id: Option<PacketId>) {
        let Some(packet_id) = source_id else { return };
        self.inflight_source_ids.remove(&packet_id);
        // Void when the source lost the session meanwhile (the broker has no message to keep).
        if self.clients[SOURCE].ack(now, packet_id).is_ok() {
            self.stats.source_acked += 1;
        }
    }

    fn drop_message(&mut self, reason: RepublishDropReason, topic: Arc<str>, payload: Bytes) {
        match reason {
            RepublishDropReason::QueueFull => self.stats.dropped_queue_full += 1,
            RepublishDropReason::Refused => self.stats.dropped_refused += 1,
        }
        self.events.push_back(ServiceEvent::Republisher(RepublisherEvent::MessageDropped {
            reason,
            topic,
            payload,
        }));
    }
}

impl Service for Republisher {
    fn kind(&self) -> &'static str {
        "republisher"
    }

    fn handle_accepted(&mut self, _now: Time, port: &'static str, connection: ConnectionId) {
        unreachable!("the republisher declares no port ({port}, {connection:?})");
    }

    fn handle_connected(&mut self, now: Time, token: ConnectToken, connection: ConnectionId) {
        let now = self.now.advance(now);
        let side = (token.0 & 1) as usize;
        if self.links[side].pending != Some(token) {
            // The client gave up on this attempt meanwhile.
            self.outputs.push_back(Output::Close { connection });
            return;
        }
        self.links[side] = Link { pending: None, connection: Some(connection) };
        self.clients[side].handle_transport_connected(now);
        self.pump(now);
    }

    fn handle_connect_failed(&mut self, now: Time, token: ConnectToken, _failure: ConnectFailure) {
        let now = self.now.advance(now);
        let side = (token.0 & 1) as usize;
        if self.links[side].pending == Some(token) {
            self.links[side].pending = None;
            self.clients[side].handle_transport_lost(now);
            self.pump(now);
        }
    }

    fn handle_bytes(&mut self, now: Time, connection: ConnectionId, bytes: &[u8]) {
        let now = self.now.advance(now);
        if let Some(side) = self.side_of(connection) {
            self.clients[side].handle_bytes(now, bytes);
            self.pump(now);
        }
    }

    fn handle_closed(&mut self, now: Time, connection: ConnectionId) {
        let now = self.now.advance(now);
        if let Some(side) = self.side_of(connection) {
            self.links[side].connection = None;
            self.clients[side].handle_transport_lost(now);
            self.pump(now);
        }
    }

    fn handle_timeout(&mut self, now: Time) {
        let now = self.now.advance(now);
        if !self.started {
            self.started = true;
            self.clients[SOURCE].subscribe(now, self.subscriptions()).expect("validated filters");
            self.clients[SOURCE].connect(now);
            self.clients[DESTINATION].connect(now);
        }
        for client in &mut self.clients {
            if client.poll_timeout().is_some_and(|at| at <= now) {
                client.handle_timeout(now);
            }
        }
        self.pump(now);
    }

    fn handle_disk(&mut self, _now: Time, request: DiskRequestId, _reply: DiskReply) {
        unreachable!("the republisher keeps no disk state (request {request:?})");
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    fn poll_event(&mut self) -> Option<ServiceEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Time> {
        if !self.started {
            return Some(Time::ZERO);
        }
        self.clients.iter().filter_map(Client::poll_timeout).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::BrokerConfig;
    use crate::service::BrokerService;

    fn config() -> RepublisherConfig {
        RepublisherConfig {
            source: "broker:mqtt".parse().unwrap(),
            destination: "broker:mqtt".parse().unwrap(),
            filters: vec!["plant/#".to_string()],
            from_prefix: "plant/".to_string(),
            to_prefix: "cloud/".to_string(),
            inflight_messages_limit: 10,
            client_id: "bridge".to_string(),
            keep_alive_secs: 30,
            session_expiry_secs: 60,
        }
    }

    #[test]
    fn config_rules_name_the_key_at_fault() {
        assert_eq!(config().validate(), Ok(()));
        let cases: Vec<(RepublisherConfig, &str)> = vec![
            (RepublisherConfig { filters: vec![], ..config() }, "filters"),
            (RepublisherConfig { filters: vec!["plant/#/x".into()], ..config() }, "filters"),
            (RepublisherConfig { filters: vec!["+/a".into()], ..config() }, "filters"),
            (RepublisherConfig { from_prefix: "plant".into(), ..config() }, "from_prefix"),
            (RepublisherConfig { to_prefix: "cloud/#/".into(), ..config() }, "to_prefix"),
            (RepublisherConfig { to_prefix: "plant/x/".into(), ..config() }, "to_prefix"),
            (RepublisherConfig { inflight_messages_limit: 0, ..config() }, "inflight_messages_limit"),
            (RepublisherConfig { keep_alive_secs: 0, ..config() }, "keep_alive_secs"),
            (RepublisherConfig { session_expiry_secs: 0, ..config() }, "session_expiry_secs"),
        ];
        for (bad, key) in cases {
            let error = bad.validate().expect_err("must be refused");
            assert_eq!(error.key(), key, "{error}");
        }
        assert_eq!(config().map_topic("plant/a/b").as_deref(), Some("cloud/a/b"));
        assert_eq!(config().map_topic("other/a"), None);
    }

    /// A broker, a republisher and one publishing client, wired by hand. `hold_destination`
    /// keeps the broker's bytes to the republisher's destination connection undelivered (a
    /// destination that does not answer yet).
    struct Bench {
        now: Time,
        broker: BrokerService,
        republisher: Republisher,
        publisher: Client,
        next_connection: u64,
        destination_connection: Option<ConnectionId>,
        held: Vec<Bytes>,
    }

    const PUBLISHER: ConnectionId = ConnectionId(1_000);

    impl Bench {
        fn new() -> Bench {
            let mut broker = BrokerService::new(BrokerConfig::default());
            assert!(matches!(broker.poll_output(), Some(Output::Listen { .. })));
            let publisher =
                Client::new(ClientConfig { client_id: "dev".into(), ..ClientConfig::default() }, 7);
            Bench {
                now: Time::from_millis(1),
                broker,
                republisher: Republisher::new(config(), 3),
                publisher,
                next_connection: 1,
                destination_connection: None,
                held: Vec::new(),
            }
        }

        fn pump(&mut self, hold_destination: bool) {
            let now = self.now;
            if self.republisher.poll_timeout().is_some_and(|at| at <= now) {
                self.republisher.handle_timeout(now);
            }
            loop {
                let mut progressed = false;
                while let Some(output) = self.republisher.poll_output() {
                    progressed = true;
                    match output {
                        Output::Connect { token, .. } => {
                            let connection = ConnectionId(self.next_connection);
                            self.next_connection += 1;
                            if token.0 & 1 == DESTINATION as u64 {
                                self.destination_connection = Some(connection);
                            }
                            self.broker.handle_accepted(now, "mqtt", connection);
                            self.republisher.handle_connected(now, token, connection);
                        }
                        Output::Send { connection, bytes } => {
                            self.broker.handle_bytes(now, connection, &bytes)
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
                while let Some(event) = self.publisher.poll_event() {
                    progressed = true;
                    if event == ClientEvent::OpenTransport {
                        self.broker.handle_accepted(now, "mqtt", PUBLISHER);
                        self.publisher.handle_transport_connected(now);
                    }
                }
                while let Some(bytes) = self.publisher.poll_transmit() {
                    progressed = true;
                    self.broker.handle_bytes(now, PUBLISHER, &bytes);
                }
                while let Some(output) = self.broker.poll_output() {
                    progressed = true;
                    let Output::Send { connection, bytes } = output else { panic!("unexpected {output:?}") };
                    if connection == PUBLISHER {
                        self.publisher.handle_bytes(now, &bytes);
                    } else if hold_destination && Some(connection) == self.destination_connection {
                        self.held.push(bytes);
                    } else {
                        self.republisher.handle_bytes(now, connection, &bytes);
                    }
                }
                if !progressed {
                    break;
                }
            }
        }

        fn release_destination(&mut self) {
            let connection = self.destination_connection.expect("connected");
            for bytes in std::mem::take(&mut self.held) {
                self.republisher.handle_bytes(self.now, connection, &bytes);
            }
            self.pump(false);
        }

        fn source_unacked(&self) -> usize {
            self.broker.broker().session_backlog("bridge-source").expect("source session").0
        }
    }

    #[test]
    fn the_source_is_acknowledged_only_after_the_destination_acknowledged_the_copy() {
        let mut bench = Bench::new();
        bench.publisher.connect(bench.now);
        bench.pump(false);
        assert!(bench.publisher.is_connected());
        assert_eq!(bench.republisher.stats().received, 0);
        bench.now = Time::from_millis(2);
        let message = OutgoingPublish::new("plant/cell/dev", Bytes::from_static(b"stamp"), QoS::AtLeastOnce);
        bench.publisher.publish(bench.now, message).expect("accepted");
        // The destination's PUBACK is held back: the copy is in flight, the source unacked.
        bench.pump(true);
        assert_eq!(bench.republisher.stats().forwarded, 1);
        assert_eq!(bench.republisher.inflight_len(), 1);
        assert_eq!(bench.republisher.stats().source_acked, 0);
        assert_eq!(bench.source_unacked(), 1, "the source broker still holds the message");
        bench.now = Time::from_millis(3);
        bench.release_destination();
        assert_eq!(bench.republisher.stats().source_acked, 1);
        assert_eq!(bench.republisher.inflight_len(), 0);
        assert_eq!(bench.source_unacked(), 0);
        assert_eq!(
            bench.republisher.stats().dropped_queue_full + bench.republisher.stats().dropped_refused,
            0
        );
    }
}
