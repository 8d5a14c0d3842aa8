//! The client's configuration: identity, protocol, windows, bounds, timers and credentials.
//!
//! This module owns [`ClientConfig`], its defaults, its validation and its serde form. It must
//! never hold runtime state: one configuration is shared (behind an `Arc`) by up to a million
//! simulated clients, so it is immutable once a client holds it.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::mqtt::codec::{self, EncodeError};
use crate::mqtt::packet::{Connect, Packet, Properties, ProtocolVersion, QoS, Will};
use crate::mqtt::topic::{self, TopicError};

/// The largest packet MQTT can carry: a 4-byte remaining length of 268,435,455 plus the fixed
/// header (spec 1.5.5 and 3.1.2.11.4).
pub const MQTT_PACKET_SIZE_LIMIT_BYTES: u32 = 268_435_455 + 5;

/// How one client connects and behaves. Cheap to share: see `Client::with_shared_config`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// The client identifier sent in CONNECT. Empty asks a v5 server to assign one, which the
    /// client then remembers for its reconnects.
    pub client_id: String,
    #[serde(with = "protocol_version_serde")]
    pub protocol: ProtocolVersion,
    /// Clean Start (v5) / Clean Session (v3.1.1) of the first CONNECT. In v5 with a non-zero
    /// session expiry, reconnects always resume the session (Clean Start = 0): the session is
    /// what makes retransmission after a connection loss meaningful.
    pub clean_start: bool,
    /// v5 only; v3.1.1 uses `clean_start` alone.
    pub session_expiry_interval_secs: u32,
    /// 0 turns keep-alive off. A Server Keep Alive in CONNACK (v5) replaces it.
    pub keep_alive_secs: u16,
    /// The inbound window we advertise (v5): QoS 2 messages received but not yet released. A
    /// server exceeding it is a protocol error; in v3.1.1, which cannot advertise it, it still
    /// bounds the unreleased messages we remember.
    pub receive_maximum: u16,
    /// Our outbound QoS>0 window; the effective window is the minimum of this and the server's
    /// Receive Maximum from CONNACK.
    pub inflight_limit: u16,
    /// Bound on publishes accepted but not yet sent; beyond it `publish` returns `QueueFull`.
    pub pending_publishes_limit: usize,
    /// The first reconnect waits between `reconnect_backoff_min` and twice that.
    pub reconnect_backoff_min: Duration,
    /// Exponential backoff with seeded jitter never waits longer than this.
    pub reconnect_backoff_max: Duration,
    /// Bounds each phase of a connection attempt: from `OpenTransport` to the transport being up,
    /// and from there to CONNACK. When it passes, the client closes the transport and retries
    /// with backoff.
    pub connect_timeout: Duration,
    /// The largest packet we accept (advertised as Maximum Packet Size in v5).
    pub max_packet_size_bytes: u32,
    /// Topic aliases we accept from the server (v5 Topic Alias Maximum); 0 refuses them all.
    pub topic_alias_maximum: u16,
    /// When true, inbound QoS 1/2 messages are acknowledged (PUBACK / PUBREC) only when the
    /// application calls `Client::ack`, e.g. once a dataflow's destination accepted the message,
    /// so the server keeps it until then. When false they are acknowledged on delivery.
    pub manual_acks: bool,
    #[serde(with = "will_serde")]
    pub will: Option<Will>,
    pub username: Option<String>,
    #[serde(with = "password_serde")]
    pub password: Option<Bytes>,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            client_id: String::new(),
            protocol: ProtocolVersion::V5,
            clean_start: true,
            session_expiry_interval_secs: 0,
            keep_alive_secs: 60,
            receive_maximum: 65_535,
            inflight_limit: 100,
            pending_publishes_limit: 1_000,
            reconnect_backoff_min: Duration::from_millis(100),
            reconnect_backoff_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_packet_size_bytes: 1024 * 1024,
            topic_alias_maximum: 0,
            manual_acks: false,
            will: None,
            username: None,
            password: None,
        }
    }
}

/// Why a configuration cannot drive a client.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// Receive Maximum 0 is a protocol error (spec 3.1.2.11.3).
    #[error("receive_maximum must be at least 1")]
    ReceiveMaximumZero,
    /// An outbound window of 0 could never send a QoS>0 message.
    #[error("inflight_limit must be at least 1")]
    InflightLimitZero,
    /// A pending queue of 0 could never accept a publish.
    #[error("pending_publishes_limit must be at least 1")]
    PendingPublishesLimitZero,
    /// The backoff range must be non-empty and start above zero, or reconnects would spin.
    #[error("reconnect backoff must satisfy 0 < min <= max")]
    BackoffRange,
    /// A zero connect timeout would fail every connection attempt at once.
    #[error("connect_timeout must be positive")]
    ConnectTimeoutZero,
    /// Maximum Packet Size must be at least the smallest packet and at most MQTT's limit.
    #[error("max_packet_size_bytes must be within 2..={MQTT_PACKET_SIZE_LIMIT_BYTES}")]
    MaxPacketSize,
    /// The client id must be non-empty for MQTT 3.1.1 without a clean session (MQTT-3.1.3-7).
    #[error("an empty client_id needs clean_start with MQTT 3.1.1")]
    EmptyClientIdWithoutCleanSession,
    /// The Will topic must be a valid topic name.
    #[error("invalid will topic: {0}")]
    WillTopic(TopicError),
    /// The CONNECT this config describes cannot be encoded (a password without a user name in
    /// MQTT 3.1.1, a property not allowed in a Will, ...).
    #[error("the CONNECT cannot be encoded: {0}")]
    Connect(EncodeError),
}

impl ClientConfig {
    /// Checks what the client relies on; `Client::new` asserts that this holds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.receive_maximum == 0 {
            return Err(ConfigError::ReceiveMaximumZero);
        }
        if self.inflight_limit == 0 {
            return Err(ConfigError::InflightLimitZero);
        }
        if self.pending_publishes_limit == 0 {
            return Err(ConfigError::PendingPublishesLimitZero);
        }
        if self.reconnect_backoff_min.is_zero() || self.reconnect_backoff_min > self.reconnect_backoff_max {
            return Err(ConfigError::BackoffRange);
        }
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::ConnectTimeoutZero);
        }
        if !(2..=MQTT_PACKET_SIZE_LIMIT_BYTES).contains(&self.max_packet_size_bytes) {
            return Err(ConfigError::MaxPacketSize);
        }
        if let Some(will) = &self.will {
            topic::validate_topic_name(&will.topic).map_err(ConfigError::WillTopic)?;
        }
        self.validate_client_id(&self.client_id)
    }

    /// Checks that a client of this config may connect as `client_id` (each client of a
    /// fleet sharing the config may carry its own id).
    pub fn validate_client_id(&self, client_id: &str) -> Result<(), ConfigError> {
        if self.protocol == ProtocolVersion::V311 && client_id.is_empty() && !self.clean_start {
            return Err(ConfigError::EmptyClientIdWithoutCleanSession);
        }
        // Every later CONNECT differs only in Clean Start and possibly a server-assigned id.
        let connect = self.connect_packet(self.clean_start, client_id);
        codec::encoded_len(&connect, self.protocol).map_err(ConfigError::Connect)?;
        Ok(())
    }

    /// The CONNECT this config describes, with the given Clean Start and client id.
    pub fn connect_packet(&self, clean_start: bool, client_id: &str) -> Packet {
        let mut properties = Properties::default();
        if self.protocol == ProtocolVersion::V5 {
            if self.session_expiry_interval_secs > 0 {
                properties.session_expiry_interval_secs = Some(self.session_expiry_interval_secs);
            }
            if self.receive_maximum != u16::MAX {
                properties.receive_maximum = Some(self.receive_maximum);
            }
            if self.max_packet_size_bytes < MQTT_PACKET_SIZE_LIMIT_BYTES {
                properties.maximum_packet_size = Some(self.max_packet_size_bytes);
            }
            if self.topic_alias_maximum > 0 {
                properties.topic_alias_maximum = Some(self.topic_alias_maximum);
            }
        }
        Packet::Connect(Box::new(Connect {
            protocol: self.protocol,
            clean_start,
            keep_alive_secs: self.keep_alive_secs,
            client_id: client_id.to_owned(),
            will: self.will.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            properties,
        }))
    }
}

/// `ProtocolVersion` lives in the shared packet model without serde; configs spell it "3.1.1" or
/// "5".
mod protocol_version_serde {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::mqtt::packet::ProtocolVersion;

    pub fn serialize<S: Serializer>(version: &ProtocolVersion, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(match version {
            ProtocolVersion::V311 => "3.1.1",
            ProtocolVersion::V5 => "5",
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ProtocolVersion, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "3.1.1" | "4" => Ok(ProtocolVersion::V311),
            "5" | "5.0" => Ok(ProtocolVersion::V5),
            other => Err(D::Error::custom(format!("unknown MQTT protocol version {other:?}"))),
        }
    }
}

/// The password is opaque bytes; configs carry it as a list of bytes.
mod password_serde {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(password: &Option<Bytes>, serializer: S) -> Result<S::Ok, S::Error> {
        password.as_deref().serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Bytes>, D::Error> {
        Ok(Option::<Vec<u8>>::deserialize(deserializer)?.map(Bytes::from))
    }
}

/// The Will in a config file. The shared packet model has no serde, so this mirrors the fields a
/// config sets; other Will properties (content type, correlation data, ...) are not configurable
/// from a file and stay empty.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WillForm {
    topic: String,
    payload: Vec<u8>,
    qos: QoS,
    #[serde(default)]
    retain: bool,
    #[serde(default)]
    will_delay_interval_secs: Option<u32>,
    #[serde(default)]
    message_expiry_interval_secs: Option<u32>,
    #[serde(default)]
    user_properties: Vec<(String, String)>,
}

mod will_serde {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::WillForm;
    use crate::mqtt::packet::{Properties, Will};

    pub fn serialize<S: Serializer>(will: &Option<Will>, serializer: S) -> Result<S::Ok, S::Error> {
        will.as_ref()
            .map(|will| WillForm {
                topic: will.topic.clone(),
                payload: will.payload.to_vec(),
                qos: will.qos,
                retain: will.retain,
                will_delay_interval_secs: will.properties.will_delay_interval_secs,
                message_expiry_interval_secs: will.properties.message_expiry_interval_secs,
                user_properties: will.properties.user_properties.clone(),
            })
            .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Will>, D::Error> {
        Ok(Option::<WillForm>::deserialize(deserializer)?.map(|form| Will {
            topic: form.topic,
            payload: form.payload.into(),
            qos: form.qos,
            retain: form.retain,
            properties: Properties {
                will_delay_interval_secs: form.will_delay_interval_secs,
                message_expiry_interval_secs: form.message_expiry_interval_secs,
                user_properties: form.user_properties,
                ..Properties::default()
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        assert_eq!(ClientConfig::default().validate(), Ok(()));
    }

    #[test]
    fn validation_rejects_each_bad_field() {
        let base = ClientConfig::default();
        let cases: Vec<(ClientConfig, ConfigError)> = vec![
            (ClientConfig { receive_maximum: 0, ..base.clone() }, ConfigError::ReceiveMaximumZero),
            (ClientConfig { inflight_limit: 0, ..base.clone() }, ConfigError::InflightLimitZero),
            (
                ClientConfig { pending_publishes_limit: 0, ..base.clone() },
                ConfigError::PendingPublishesLimitZero,
            ),
            (
                ClientConfig { reconnect_backoff_min: Duration::ZERO, ..base.clone() },
                ConfigError::BackoffRange,
            ),
            (
                ClientConfig { reconnect_backoff_max: Duration::from_millis(1), ..base.clone() },
                ConfigError::BackoffRange,
            ),
            (
                ClientConfig { connect_timeout: Duration::ZERO, ..base.clone() },
                ConfigError::ConnectTimeoutZero,
            ),
            (ClientConfig { max_packet_size_bytes: 1, ..base.clone() }, ConfigError::MaxPacketSize),
            (
                ClientConfig { protocol: ProtocolVersion::V311, clean_start: false, ..base.clone() },
                ConfigError::EmptyClientIdWithoutCleanSession,
            ),
            (
                ClientConfig {
                    will: Some(Will {
                        topic: "a/+".into(),
                        payload: Bytes::new(),
                        qos: QoS::AtMostOnce,
                        retain: false,
                        properties: Properties::default(),
                    }),
                    ..base.clone()
                },
                ConfigError::WillTopic(TopicError::WildcardInName),
            ),
        ];
        let password_only = ClientConfig {
            protocol: ProtocolVersion::V311,
            client_id: "c".into(),
            password: Some(Bytes::from_static(b"pw")),
            ..base.clone()
        };
        assert!(matches!(password_only.validate(), Err(ConfigError::Connect(_))));
        for (config, expected) in cases {
            assert_eq!(config.validate(), Err(expected));
        }
    }

    #[test]
    fn serde_roundtrip_through_toml_keeps_every_field() {
        let config = ClientConfig {
            client_id: "device-7".into(),
            protocol: ProtocolVersion::V311,
            clean_start: false,
            keep_alive_secs: 5,
            password: Some(Bytes::from_static(b"secret")),
            username: Some("user".into()),
            will: Some(Will {
                topic: "devices/7/status".into(),
                payload: Bytes::from_static(b"offline"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: Properties { will_delay_interval_secs: Some(3), ..Properties::default() },
            }),
            ..ClientConfig::default()
        };
        let text = toml::to_string(&config).expect("serializes");
        let parsed: ClientConfig = toml::from_str(&text).expect("parses");
        assert_eq!(parsed, config);
        let partial: ClientConfig = toml::from_str("client_id = \"x\"\nprotocol = \"5\"\n").expect("parses");
        assert_eq!(partial.client_id, "x");
        assert_eq!(partial.inflight_limit, ClientConfig::default().inflight_limit);
    }
}
