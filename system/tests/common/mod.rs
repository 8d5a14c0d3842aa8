//! Proptest generators of VALID MQTT packets for both protocol versions, shared by the codec
//! integration tests. Every generated packet respects the spec (allowed properties per packet
//! type, value ranges, packet identifier rules), so the codec must encode and decode it exactly.

#![allow(dead_code)]

use std::num::NonZeroU16;

use bytes::Bytes;
use edgeproof_system::mqtt::codec::properties::{self as ids, PropertyContext};
use edgeproof_system::mqtt::{
    Auth, ConnAck, Connect, Disconnect, Packet, PacketId, Properties, ProtocolVersion, PubReply, Publish,
    QoS, ReasonCode, RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions, UnsubAck,
    Unsubscribe, Will,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

pub const ALL_VERSIONS: [ProtocolVersion; 2] = [ProtocolVersion::V311, ProtocolVersion::V5];

pub fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![Just(ProtocolVersion::V311), Just(ProtocolVersion::V5)]
}

pub fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)]
}

pub fn packet_id() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(|value| NonZeroU16::new(value).expect("range starts at 1"))
}

/// Printable text (no control characters, so no U+0000), including multi-byte characters.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[a-zA-Z0-9 _.-]{0,12}", 1 => "\\PC{0,6}"]
}

pub fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn topic_level() -> impl Strategy<Value = String> {
    prop_oneof![6 => "[a-z0-9]{1,6}", 1 => Just(String::new()), 1 => "[é€😀$]{1,2}"]
}

/// A non-empty topic name without wildcards.
pub fn topic_name() -> impl Strategy<Value = String> {
    vec(topic_level(), 1..5).prop_map(|levels| {
        let joined = levels.join("/");
        if joined.is_empty() { "t".to_owned() } else { joined }
    })
}

/// A valid topic filter: levels, `+` levels, an optional trailing `#`, optionally shared.
pub fn topic_filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![4 => topic_level(), 1 => Just("+".to_owned())];
    (vec(level, 1..4), any::<bool>(), prop_oneof![4 => Just(None), 1 => "[a-z]{1,4}".prop_map(Some)])
        .prop_map(|(levels, multi_level, share_group)| {
            let mut filter = levels.join("/");
            if multi_level {
                filter.push_str("/#");
            }
            if filter.is_empty() {
                filter.push('#');
            }
            match share_group {
                Some(group) => format!("$share/{group}/{filter}"),
                None => filter,
            }
        })
}

fn small_u32() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), Just(u32::MAX), any::<u32>(), 1..1000u32]
}

fn user_properties() -> impl Strategy<Value = Vec<(String, String)>> {
    vec((text(), text()), 0..3)
}

/// A Properties value with every field possibly set to a legal value, before restriction to a
/// packet type.
fn any_properties() -> impl Strategy<Value = Properties> {
    let message = (
        option::of(any::<bool>()),
        option::of(small_u32()),
        option::of(text()),
        option::of(topic_name()),
        option::of(binary()),
        vec(prop_oneof![1..=127u32, 128..=268_435_455u32], 0..3),
    );
    let session = (
        option::of(small_u32()),
        option::of(text()),
        option::of(any::<u16>()),
        option::of(text()),
        option::of(binary()),
        option::of(any::<bool>()),
        option::of(small_u32()),
        option::of(any::<bool>()),
    );
    let server = (
        option::of(text()),
        option::of(text()),
        option::of(text()),
        option::of(1..=u16::MAX),
        option::of(any::<u16>()),
        option::of(1..=u16::MAX),
        option::of(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
        option::of(any::<bool>()),
    );
    let rest = (
        user_properties(),
        option::of(prop_oneof![1..=u32::MAX, Just(u32::MAX)]),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
    );
    (message, session, server, rest).prop_map(|(message, session, server, rest)| Properties {
        payload_format_indicator: message.0,
        message_expiry_interval_secs: message.1,
        content_type: message.2,
        response_topic: message.3,
        correlation_data: message.4,
        subscription_identifiers: message.5,
        session_expiry_interval_secs: session.0,
        assigned_client_identifier: session.1,
        server_keep_alive_secs: session.2,
        authentication_method: session.3,
        authentication_data: session.4,
        request_problem_information: session.5,
        will_delay_interval_secs: session.6,
        request_response_information: session.7,
        response_information: server.0,
        server_reference: server.1,
        reason_string: server.2,
        receive_maximum: server.3,
        topic_alias_maximum: server.4,
        topic_alias: server.5,
        maximum_qos: server.6,
        retain_available: server.7,
        user_properties: rest.0,
        maximum_packet_size: rest.1,
        wildcard_subscription_available: rest.2,
        subscription_identifiers_available: rest.3,
        shared_subscription_available: rest.4,
    })
}

fn keep<T>(slot: &mut Option<T>, context: PropertyContext, id: u8) {
    if !context.allows(id) {
        *slot = None;
    }
}

/// Clears every property the spec does not allow in `context`, and fixes the cross-property
/// rules (authentication data needs a method, a SUBSCRIBE has at most one identifier).
pub fn restrict(mut p: Properties, context: PropertyContext) -> Properties {
    keep(&mut p.payload_format_indicator, context, ids::PAYLOAD_FORMAT_INDICATOR);
    keep(&mut p.message_expiry_interval_secs, context, ids::MESSAGE_EXPIRY_INTERVAL);
    keep(&mut p.content_type, context, ids::CONTENT_TYPE);
    keep(&mut p.response_topic, context, ids::RESPONSE_TOPIC);
    keep(&mut p.correlation_data, context, ids::CORRELATION_DATA);
    if !context.allows(ids::SUBSCRIPTION_IDENTIFIER) {
        p.subscription_identifiers.clear();
    }
    if context == PropertyContext::Subscribe {
        p.subscription_identifiers.truncate(1);
    }
    keep(&mut p.session_expiry_interval_secs, context, ids::SESSION_EXPIRY_INTERVAL);
    keep(&mut p.assigned_client_identifier, context, ids::ASSIGNED_CLIENT_IDENTIFIER);
    keep(&mut p.server_keep_alive_secs, context, ids::SERVER_KEEP_ALIVE);
    keep(&mut p.authentication_method, context, ids::AUTHENTICATION_METHOD);
    keep(&mut p.authentication_data, context, ids::AUTHENTICATION_DATA);
    if p.authentication_method.is_none() {
        p.authentication_data = None;
    }
    keep(&mut p.request_problem_information, context, ids::REQUEST_PROBLEM_INFORMATION);
    keep(&mut p.will_delay_interval_secs, context, ids::WILL_DELAY_INTERVAL);
    keep(&mut p.request_response_information, context, ids::REQUEST_RESPONSE_INFORMATION);
    keep(&mut p.response_information, context, ids::RESPONSE_INFORMATION);
    keep(&mut p.server_reference, context, ids::SERVER_REFERENCE);
    keep(&mut p.reason_string, context, ids::REASON_STRING);
    keep(&mut p.receive_maximum, context, ids::RECEIVE_MAXIMUM);
    keep(&mut p.topic_alias_maximum, context, ids::TOPIC_ALIAS_MAXIMUM);
    keep(&mut p.topic_alias, context, ids::TOPIC_ALIAS);
    keep(&mut p.maximum_qos, context, ids::MAXIMUM_QOS);
    keep(&mut p.retain_available, context, ids::RETAIN_AVAILABLE);
    if !context.allows(ids::USER_PROPERTY) {
        p.user_properties.clear();
    }
    keep(&mut p.maximum_packet_size, context, ids::MAXIMUM_PACKET_SIZE);
    keep(&mut p.wildcard_subscription_available, context, ids::WILDCARD_SUBSCRIPTION_AVAILABLE);
    keep(&mut p.subscription_identifiers_available, context, ids::SUBSCRIPTION_IDENTIFIER_AVAILABLE);
    keep(&mut p.shared_subscription_available, context, ids::SHARED_SUBSCRIPTION_AVAILABLE);
    p
}

/// Properties legal in `context` for `version` (always empty for MQTT 3.1.1). Half of the v5
/// cases are empty too, to exercise the omission rules.
pub fn properties(version: ProtocolVersion, context: PropertyContext) -> BoxedStrategy<Properties> {
    match version {
        ProtocolVersion::V311 => Just(Properties::default()).boxed(),
        ProtocolVersion::V5 => prop_oneof![
            1 => Just(Properties::default()),
            1 => any_properties().prop_map(move |p| restrict(p, context)),
        ]
        .boxed(),
    }
}

fn codes(values: &'static [u8]) -> impl Strategy<Value = ReasonCode> + Clone {
    proptest::sample::select(values).prop_map(ReasonCode)
}

pub const V5_CONNACK_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99,
    0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
/// The codes `ReasonCode::from_v311_connack_return_code` produces.
pub const V311_CONNACK_CODES: &[u8] = &[0x00, 0x84, 0x85, 0x88, 0x86, 0x87];
pub const PUBACK_CODES: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
pub const PUBREL_CODES: &[u8] = &[0x00, 0x92];
pub const V5_SUBACK_CODES: &[u8] = &[0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2];
pub const V311_SUBACK_CODES: &[u8] = &[0x00, 0x01, 0x02, 0x80];
pub const UNSUBACK_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
pub const DISCONNECT_CODES: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96,
    0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
pub const AUTH_CODES: &[u8] = &[0x00, 0x18, 0x19];

pub fn will(version: ProtocolVersion) -> impl Strategy<Value = Will> {
    (topic_name(), binary(), qos(), any::<bool>(), properties(version, PropertyContext::Will)).prop_map(
        |(topic, payload, qos, retain, properties)| Will { topic, payload, qos, retain, properties },
    )
}

pub fn connect(version: ProtocolVersion) -> impl Strategy<Value = Connect> {
    (
        any::<bool>(),
        any::<u16>(),
        text(),
        option::of(will(version)),
        option::of(text()),
        option::of(binary()),
        properties(version, PropertyContext::Connect),
    )
        .prop_map(
            move |(clean_start, keep_alive_secs, client_id, will, username, password, properties)| {
                // MQTT 3.1.1 forbids a password without a user name (MQTT-3.1.2-22).
                let password =
                    if version == ProtocolVersion::V311 && username.is_none() { None } else { password };
                Connect {
                    protocol: version,
                    clean_start,
                    keep_alive_secs,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                }
            },
        )
}

pub fn connack(version: ProtocolVersion) -> impl Strategy<Value = ConnAck> {
    let reason = match version {
        ProtocolVersion::V311 => codes(V311_CONNACK_CODES).boxed(),
        ProtocolVersion::V5 => codes(V5_CONNACK_CODES).boxed(),
    };
    (any::<bool>(), reason, properties(version, PropertyContext::ConnAck)).prop_map(
        |(session_present, reason_code, properties)| ConnAck {
            session_present: session_present && !reason_code.is_error(),
            reason_code,
            properties,
        },
    )
}

pub fn payload() -> impl Strategy<Value = Bytes> {
    prop_oneof![4 => vec(any::<u8>(), 0..64), 1 => vec(any::<u8>(), 100..400)].prop_map(Bytes::from)
}

pub fn publish(version: ProtocolVersion) -> impl Strategy<Value = Publish> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        packet_id(),
        properties(version, PropertyContext::Publish),
        payload(),
        any::<bool>(),
    )
        .prop_map(move |(qos, dup, retain, topic, id, mut properties, payload, use_alias_only)| {
            // v5: an empty topic name stands for a Topic Alias.
            let topic = if version == ProtocolVersion::V5 && use_alias_only {
                properties.topic_alias.get_or_insert(1);
                String::new()
            } else {
                topic
            };
            Publish {
                dup: dup && qos != QoS::AtMostOnce,
                qos,
                retain,
                topic,
                packet_id: (qos != QoS::AtMostOnce).then_some(id),
                properties,
                payload,
            }
        })
}

/// Which of the four PUBACK-shaped packets to generate.
#[derive(Clone, Copy, Debug)]
pub enum ReplyKind {
    Ack,
    Rec,
    Rel,
    Comp,
}

pub fn pub_reply(version: ProtocolVersion, kind: ReplyKind) -> impl Strategy<Value = Packet> {
    let (context, valid_codes) = match kind {
        ReplyKind::Ack => (PropertyContext::PubAck, PUBACK_CODES),
        ReplyKind::Rec => (PropertyContext::PubRec, PUBACK_CODES),
        ReplyKind::Rel => (PropertyContext::PubRel, PUBREL_CODES),
        ReplyKind::Comp => (PropertyContext::PubComp, PUBREL_CODES),
    };
    let reason = match version {
        ProtocolVersion::V311 => Just(ReasonCode::SUCCESS).boxed(),
        ProtocolVersion::V5 => codes(valid_codes).boxed(),
    };
    (packet_id(), reason, properties(version, context)).prop_map(
        move |(packet_id, reason_code, properties)| {
            let reply = PubReply { packet_id, reason_code, properties };
            match kind {
                ReplyKind::Ack => Packet::PubAck(reply),
                ReplyKind::Rec => Packet::PubRec(reply),
                ReplyKind::Rel => Packet::PubRel(reply),
                ReplyKind::Comp => Packet::PubComp(reply),
            }
        },
    )
}

pub fn subscription_options(version: ProtocolVersion) -> impl Strategy<Value = SubscriptionOptions> {
    let retain_handling = prop_oneof![
        Just(RetainHandling::SendAtSubscribe),
        Just(RetainHandling::SendAtSubscribeIfNew),
        Just(RetainHandling::DoNotSend),
    ];
    (qos(), any::<bool>(), any::<bool>(), retain_handling).prop_map(
        move |(maximum_qos, no_local, retain_as_published, retain_handling)| match version {
            ProtocolVersion::V311 => SubscriptionOptions::with_qos(maximum_qos),
            ProtocolVersion::V5 => {
                SubscriptionOptions { maximum_qos, no_local, retain_as_published, retain_handling }
            }
        },
    )
}

pub fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Subscribe> {
    (
        packet_id(),
        vec((topic_filter(), subscription_options(version)), 1..4),
        properties(version, PropertyContext::Subscribe),
    )
        .prop_map(|(packet_id, subscriptions, properties)| Subscribe {
            packet_id,
            subscriptions: subscriptions
                .into_iter()
                .map(|(topic_filter, mut options)| {
                    // No Local on a shared subscription is a Protocol Error (MQTT-3.8.3-4).
                    if topic_filter.starts_with("$share/") {
                        options.no_local = false;
                    }
                    Subscription { topic_filter, options }
                })
                .collect(),
            properties,
        })
}

pub fn suback(version: ProtocolVersion) -> impl Strategy<Value = SubAck> {
    let valid_codes = match version {
        ProtocolVersion::V311 => V311_SUBACK_CODES,
        ProtocolVersion::V5 => V5_SUBACK_CODES,
    };
    (packet_id(), vec(codes(valid_codes), 1..5), properties(version, PropertyContext::SubAck))
        .prop_map(|(packet_id, reason_codes, properties)| SubAck { packet_id, reason_codes, properties })
}

pub fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Unsubscribe> {
    (packet_id(), vec(topic_filter(), 1..4), properties(version, PropertyContext::Unsubscribe)).prop_map(
        |(packet_id, topic_filters, properties)| Unsubscribe { packet_id, topic_filters, properties },
    )
}

pub fn unsuback(version: ProtocolVersion) -> impl Strategy<Value = UnsubAck> {
    let reason_codes = match version {
        ProtocolVersion::V311 => Just(Vec::new()).boxed(),
        ProtocolVersion::V5 => vec(codes(UNSUBACK_CODES), 1..5).boxed(),
    };
    (packet_id(), reason_codes, properties(version, PropertyContext::UnsubAck))
        .prop_map(|(packet_id, reason_codes, properties)| UnsubAck { packet_id, reason_codes, properties })
}

pub fn disconnect(version: ProtocolVersion) -> impl Strategy<Value = Disconnect> {
    match version {
        ProtocolVersion::V311 => Just(Disconnect::normal()).boxed(),
        ProtocolVersion::V5 => (codes(DISCONNECT_CODES), properties(version, PropertyContext::Disconnect))
            .prop_map(|(reason_code, properties)| Disconnect { reason_code, properties })
            .boxed(),
    }
}

pub fn auth() -> impl Strategy<Value = Auth> {
    (codes(AUTH_CODES), properties(ProtocolVersion::V5, PropertyContext::Auth))
        .prop_map(|(reason_code, properties)| Auth { reason_code, properties })
}

/// Any valid packet for `version` (AUTH only for v5).
pub fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let mut arms: Vec<(u32, BoxedStrategy<Packet>)> = vec![
        (1, connect(version).prop_map(|connect| Packet::Connect(Box::new(connect))).boxed()),
        (1, connack(version).prop_map(Packet::ConnAck).boxed()),
        (3, publish(version).prop_map(Packet::Publish).boxed()),
        (1, pub_reply(version, ReplyKind::Ack).boxed()),
        (1, pub_reply(version, ReplyKind::Rec).boxed()),
        (1, pub_reply(version, ReplyKind::Rel).boxed()),
        (1, pub_reply(version, ReplyKind::Comp).boxed()),
        (1, subscribe(version).prop_map(Packet::Subscribe).boxed()),
        (1, suback(version).prop_map(Packet::SubAck).boxed()),
        (1, unsubscribe(version).prop_map(Packet::Unsubscribe).boxed()),
        (1, unsuback(version).prop_map(Packet::UnsubAck).boxed()),
        (1, Just(Packet::PingReq).boxed()),
        (1, Just(Packet::PingResp).boxed()),
        (1, disconnect(version).prop_map(Packet::Disconnect).boxed()),
    ];
    if version == ProtocolVersion::V5 {
        arms.push((1, auth().prop_map(Packet::Auth).boxed()));
    }
    proptest::strategy::Union::new_weighted(arms).boxed()
}

/// A version together with a valid packet for it.
pub fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|version| packet(version).prop_map(move |packet| (version, packet)))
}
