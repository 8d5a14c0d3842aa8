//! The broker's configuration: every limit and policy of one broker instance, with defaults.
//!
//! This module owns the shape of `BrokerConfig` (serde, `deny_unknown_fields`) and its checks.
//! It must never hold runtime state: the broker reads the config, it never writes it.

use std::time::Duration;

/// What a subscriber queue does when a message arrives and the queue is at its bound. Either way
/// the message that does not make it is counted in [`super::BrokerStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueFullPolicy {
    /// Keep the queue as it is and drop the new message (Azure IoT Operations `None`).
    #[default]
    RejectNew,
    /// Drop the oldest queued message to make room for the new one (`DropOldest`).
    DropOldest,
}

/// Limits and behaviour of a broker instance. Every bound is explicit.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// A connection that sends no CONNECT within this time is closed.
    pub connect_timeout_secs: u32,
    /// Connected clients at most; a CONNECT beyond it gets CONNACK 0x97 Quota exceeded (the spec's
    /// code for "an implementation or administratively imposed limit").
    pub connections_limit: usize,
    /// Sessions (connected or not) at most; a CONNECT that would create one more gets 0x97.
    pub sessions_limit: usize,
    /// Longest accepted client identifier, in bytes (the spec requires at least 23).
    pub client_id_length_limit: usize,
    /// When true, client identifiers may only use `0-9a-zA-Z`, `-` and `_` (the spec's required
    /// set plus two common separators); otherwise any UTF-8 the codec accepted.
    pub client_id_strict_charset: bool,
    /// Receive Maximum advertised to v5 clients: inbound QoS 1/2 PUBLISH not yet acknowledged.
    pub receive_maximum: u16,
    /// Outbound QoS 1/2 window for v3.1.1 clients, which cannot announce a Receive Maximum.
    pub inflight_v311_limit: u16,
    /// Largest packet accepted from clients (advertised to v5 clients), in bytes.
    pub max_packet_size_bytes: u32,
    /// Topic Alias Maximum advertised to v5 clients (inbound aliases); 0 disables aliases.
    pub topic_alias_maximum: u16,
    /// Longest keep-alive allowed; a v5 client asking for more (or for none) gets this value as
    /// Server Keep Alive. v3.1.1 clients cannot be told, so their value is used as it is.
    pub keep_alive_max_secs: u16,
    /// Cap on the Session Expiry Interval; also the expiry of v3.1.1 clean-session-0 sessions.
    pub session_expiry_max_secs: u32,
    /// Cap on the Message Expiry Interval of every message (including retained ones); `None`
    /// leaves messages without an expiry to live as long as their session.
    pub message_expiry_max_secs: Option<u32>,
    /// Messages waiting in one session's outgoing queue (beyond the inflight window) at most.
    pub subscriber_queue_messages_limit: usize,
    /// What happens when a subscriber queue is full.
    pub subscriber_queue_policy: QueueFullPolicy,
    /// Payload and topic bytes of all queued and inflight outbound messages of the broker, counted
    /// per subscriber copy. At the bound inbound QoS 1/2 PUBLISH is rejected (v5: 0x97 Quota
    /// exceeded; v3.1.1: the connection is closed without an acknowledgement so the client keeps
    /// the message and retries) and QoS 0 copies to queues are dropped.
    pub queued_bytes_limit: u64,
    /// Retained messages at most; a new retained topic beyond it is rejected (v5 QoS > 0: 0x97) or
    /// not stored (QoS 0, v3.1.1), counted either way.
    pub retained_messages_limit: usize,
    /// Payload and topic bytes of all retained messages at most, same policy as the count.
    pub retained_bytes_limit: u64,
    /// Topic filters one session may hold; more get SUBACK 0x97 (v5) / 0x80 (v3.1.1).
    pub subscriptions_per_session_limit: usize,
    /// Broker events buffered for [`super::Broker::poll_event`]; beyond it events are counted and
    /// dropped, so a driver that never polls events cannot grow memory.
    pub event_queue_limit: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            connect_timeout_secs: 10,
            connections_limit: 1_000_000,
            sessions_limit: 2_000_000,
            client_id_length_limit: 256,
            client_id_strict_charset: false,
            receive_maximum: 100,
            inflight_v311_limit: 100,
            max_packet_size_bytes: 1024 * 1024,
            topic_alias_maximum: 16,
            keep_alive_max_secs: 3_600,
            session_expiry_max_secs: 24 * 3_600,
            message_expiry_max_secs: None,
            subscriber_queue_messages_limit: 10_000,
            subscriber_queue_policy: QueueFullPolicy::RejectNew,
            queued_bytes_limit: 1024 * 1024 * 1024,
            retained_messages_limit: 100_000,
            retained_bytes_limit: 256 * 1024 * 1024,
            subscriptions_per_session_limit: 100,
            event_queue_limit: 65_536,
        }
    }
}

/// A configuration value that contradicts the spec or another value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BrokerConfigError {
    /// `receive_maximum` is 0; the spec forbids it (3.2.2.3.3).
    #[error("receive_maximum must be at least 1 (MQTT 5 spec 3.2.2.3.3)")]
    ZeroReceiveMaximum,
    /// `inflight_v311_limit` is 0: no QoS 1/2 message could ever be sent to a v3.1.1 client.
    #[error("inflight_v311_limit must be at least 1")]
    ZeroInflightV311Limit,
    /// `max_packet_size_bytes` is below 64 (not even a CONNECT fits) or above the MQTT maximum.
    #[error("max_packet_size_bytes must be within 64..=268435460, not {0}")]
    MaxPacketSizeOutOfRange(u32),
    /// `client_id_length_limit` is below the 23 bytes the spec requires servers to accept.
    #[error("client_id_length_limit must be at least 23 (MQTT spec 3.1.3.1), not {0}")]
    ClientIdLengthLimitTooSmall(usize),
    /// A limit that must be positive is zero.
    #[error("{0} must be positive")]
    ZeroLimit(&'static str),
}

impl BrokerConfig {
    /// Checks the values that parse but contradict the spec or each other.
    pub fn validate(&self) -> Result<(), BrokerConfigError> {
        if self.receive_maximum == 0 {
            return Err(BrokerConfigError::ZeroReceiveMaximum);
        }
        if self.inflight_v311_limit == 0 {
            return Err(BrokerConfigError::ZeroInflightV311Limit);
        }
        if !(64..=268_435_460).contains(&self.max_packet_size_bytes) {
            return Err(BrokerConfigError::MaxPacketSizeOutOfRange(self.max_packet_size_bytes));
        }
        if self.client_id_length_limit < 23 {
            return Err(BrokerConfigError::ClientIdLengthLimitTooSmall(self.client_id_length_limit));
        }
        let positive = [
            ("connect_timeout_secs", self.connect_timeout_secs as usize),
            ("subscriber_queue_messages_limit", self.subscriber_queue_messages_limit),
            ("subscriptions_per_session_limit", self.subscriptions_per_session_limit),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(BrokerConfigError::ZeroLimit(name));
        }
        Ok(())
    }

    /// Panics when the config is self-contradictory: for code that builds a config that is a bug
    /// (files should go through [`BrokerConfig::validate`] first).
    pub(super) fn assert_valid(&self) {
        if let Err(error) = self.validate() {
            panic!("invalid broker config: {error}");
        }
    }

    pub(super) fn connect_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.connect_timeout_secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_roundtrips_through_toml_and_rejects_unknown_fields() {
        let config = BrokerConfig::default();
        config.assert_valid();
        let text = toml::to_string(&config).expect("serialize");
        let back: BrokerConfig = toml::from_str(&text).expect("deserialize");
        assert_eq!(back, config);
        let partial: BrokerConfig =
            toml::from_str("receive_maximum = 7\nsubscriber_queue_policy = \"drop_oldest\"\n").unwrap();
        assert_eq!(partial.receive_maximum, 7);
        assert_eq!(partial.subscriber_queue_policy, QueueFullPolicy::DropOldest);
        assert!(toml::from_str::<BrokerConfig>("no_such_field = 1").is_err());
        let zero_window = BrokerConfig { receive_maximum: 0, ..BrokerConfig::default() };
        assert_eq!(zero_window.validate(), Err(BrokerConfigError::ZeroReceiveMaximum));
        let no_queue = BrokerConfig { subscriber_queue_messages_limit: 0, ..BrokerConfig::default() };
        assert_eq!(no_queue.validate(), Err(BrokerConfigError::ZeroLimit("subscriber_queue_messages_limit")));
    }
}
