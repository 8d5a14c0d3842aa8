//! Differential test of our MQTT codec against `rmqtt-codec` 0.3, an independent implementation,
//! on generated valid packets of every type (AUTH for v5) under both MQTT 3.1.1 and 5.0:
//!
//! - bytes from OUR encoder decode in rmqtt-codec to the packet we meant (converted to its model);
//! - bytes from RMQTT's encoder decode in ours to the same packet, up to the properties rmqtt
//!   leaves out when they hold their spec default (e.g. Retain Available = true).
//!
//! rmqtt-codec's model cannot express a few legal values (a zero Message Expiry Interval, a
//! CONNECT with an empty client id and no clean start); [`representable`] removes them first.

mod common;

use std::num::{NonZeroU16, NonZeroU32};

use bytes::BytesMut;
use edgeproof_system::mqtt::codec::{decode, encode_to_bytes};
use edgeproof_system::mqtt::{
    ConnAck, Connect, Packet, Properties, ProtocolVersion, PubReply, QoS, ReasonCode, RetainHandling, Will,
};
use proptest::prelude::*;
use rmqtt_codec::{types, v3, v5};
use tokio_util::codec::{Decoder, Encoder};

fn rm_qos(qos: QoS) -> types::QoS {
    types::QoS::try_from(qos.as_u8()).expect("QoS 0..=2")
}

fn rm_user_properties(properties: &Properties) -> v5::UserProperties {
    properties
        .user_properties
        .iter()
        .map(|(key, value)| (key.as_str().into(), value.as_str().into()))
        .collect()
}

/// An optional string in rmqtt-codec's string type (inferred from the field it fills).
fn rm_string<T: for<'a> From<&'a str>>(value: &Option<String>) -> Option<T> {
    value.as_deref().map(T::from)
}

/// Removes what rmqtt-codec's model cannot carry, keeping the packet valid.
fn representable(packet: Packet) -> Packet {
    match packet {
        Packet::Connect(mut connect) => {
            if connect.client_id.is_empty() {
                // rmqtt rejects an empty client id without clean start (MQTT-3.1.3-8 in 3.1.1).
                connect.clean_start = true;
            }
            if let Some(will) = connect.will.as_mut() {
                will.properties.message_expiry_interval_secs =
                    will.properties.message_expiry_interval_secs.filter(|secs| *secs != 0);
            }
            Packet::Connect(connect)
        }
        Packet::Publish(mut publish) => {
            publish.properties.message_expiry_interval_secs =
                publish.properties.message_expiry_interval_secs.filter(|secs| *secs != 0);
            Packet::Publish(publish)
        }
        other => other,
    }
}

/// Drops properties whose value is the spec default, which rmqtt-codec does not encode.
fn without_defaults(packet: Packet) -> Packet {
    fn drop_if<T: PartialEq>(slot: &mut Option<T>, default: T) {
        if slot.as_ref() == Some(&default) {
            *slot = None;
        }
    }
    match packet {
        Packet::Connect(mut connect) => {
            let p = &mut connect.properties;
            drop_if(&mut p.session_expiry_interval_secs, 0);
            drop_if(&mut p.request_problem_information, true);
            drop_if(&mut p.request_response_information, false);
            drop_if(&mut p.topic_alias_maximum, 0);
            Packet::Connect(connect)
        }
        Packet::ConnAck(mut connack) => {
            let p = &mut connack.properties;
            drop_if(&mut p.receive_maximum, u16::MAX);
            drop_if(&mut p.topic_alias_maximum, 0);
            drop_if(&mut p.retain_available, true);
            drop_if(&mut p.wildcard_subscription_available, true);
            drop_if(&mut p.subscription_identifiers_available, true);
            drop_if(&mut p.shared_subscription_available, true);
            Packet::ConnAck(connack)
        }
        Packet::Publish(mut publish) => {
            drop_if(&mut publish.properties.payload_format_indicator, false);
            Packet::Publish(publish)
        }
        other => other,
    }
}

fn rm_will_v5(will: &Will) -> v5::LastWill {
    let p = &will.properties;
    v5::LastWill {
        qos: rm_qos(will.qos),
        retain: will.retain,
        topic: will.topic.as_str().into(),
        message: will.payload.clone(),
        will_delay_interval_sec: p.will_delay_interval_secs,
        correlation_data: p.correlation_data.clone(),
        message_expiry_interval: p.message_expiry_interval_secs.and_then(NonZeroU32::new),
        content_type: rm_string(&p.content_type),
        user_properties: rm_user_properties(p),
        is_utf8_payload: p.payload_format_indicator,
        response_topic: rm_string(&p.response_topic),
    }
}

fn rm_connect_v5(connect: &Connect) -> v5::Connect {
    let p = &connect.properties;
    v5::Connect {
        clean_start: connect.clean_start,
        keep_alive: connect.keep_alive_secs,
        session_expiry_interval_secs: p.session_expiry_interval_secs.unwrap_or(0),
        auth_method: rm_string(&p.authentication_method),
        auth_data: p.authentication_data.clone(),
        request_problem_info: p.request_problem_information.unwrap_or(true),
        request_response_info: p.request_response_information.unwrap_or(false),
        receive_max: p.receive_maximum.and_then(NonZeroU16::new),
        topic_alias_max: p.topic_alias_maximum.unwrap_or(0),
        user_properties: rm_user_properties(p),
        max_packet_size: p.maximum_packet_size.and_then(NonZeroU32::new),
        last_will: connect.will.as_ref().map(rm_will_v5),
        client_id: connect.client_id.as_str().into(),
        username: rm_string(&connect.username),
        password: connect.password.clone(),
        cert: None,
    }
}

fn rm_connack_v5(connack: &ConnAck) -> v5::ConnectAck {
    let p = &connack.properties;
    v5::ConnectAck {
        session_present: connack.session_present,
        reason_code: v5::ConnectAckReason::try_from(connack.reason_code.0).expect("valid CONNACK code"),
        session_expiry_interval_secs: p.session_expiry_interval_secs,
        receive_max: NonZeroU16::new(p.receive_maximum.unwrap_or(u16::MAX)).expect("non-zero"),
        max_qos: p.maximum_qos.map_or(types::QoS::ExactlyOnce, rm_qos),
        max_packet_size: p.maximum_packet_size,
        assigned_client_id: rm_string(&p.assigned_client_identifier),
        topic_alias_max: p.topic_alias_maximum.unwrap_or(0),
        retain_available: p.retain_available.unwrap_or(true),
        wildcard_subscription_available: p.wildcard_subscription_available.unwrap_or(true),
        subscription_identifiers_available: p.subscription_identifiers_available.unwrap_or(true),
        shared_subscription_available: p.shared_subscription_available.unwrap_or(true),
        server_keepalive_sec: p.server_keep_alive_secs,
        response_info: rm_string(&p.response_information),
        server_reference: rm_string(&p.server_reference),
        auth_method: rm_string(&p.authentication_method),
        auth_data: p.authentication_data.clone(),
        reason_string: rm_string(&p.reason_string),
        user_properties: rm_user_properties(p),
    }
}

fn rm_publish_ack(reply: &PubReply) -> v5::PublishAck {
    v5::PublishAck {
        packet_id: reply.packet_id,
        reason_code: v5::PublishAckReason::try_from(reply.reason_code.0).expect("valid PUBACK code"),
        properties: rm_user_properties(&reply.properties),
        reason_string: rm_string(&reply.properties.reason_string),
    }
}

fn rm_publish_ack2(reply: &PubReply) -> v5::PublishAck2 {
    v5::PublishAck2 {
        packet_id: reply.packet_id,
        reason_code: v5::PublishAck2Reason::try_from(reply.reason_code.0).expect("valid PUBREL code"),
        properties: rm_user_properties(&reply.properties),
        reason_string: rm_string(&reply.properties.reason_string),
    }
}

/// Our packet in rmqtt-codec's v5 model.
fn to_rmqtt_v5(packet: &Packet) -> v5::Packet {
    match packet {
        Packet::Connect(connect) => v5::Packet::Connect(Box::new(rm_connect_v5(connect))),
        Packet::ConnAck(connack) => v5::Packet::ConnectAck(Box::new(rm_connack_v5(connack))),
        Packet::Publish(publish) => {
            let p = &publish.properties;
            v5::Packet::Publish(Box::new(types::Publish {
                dup: publish.dup,
                retain: publish.retain,
                qos: rm_qos(publish.qos),
                topic: publish.topic.as_str().into(),
                packet_id: publish.packet_id,
                payload: publish.payload.clone(),
                properties: Some(v5::PublishProperties {
                    topic_alias: p.topic_alias.and_then(NonZeroU16::new),
                    correlation_data: p.correlation_data.clone(),
                    message_expiry_interval: p.message_expiry_interval_secs.and_then(NonZeroU32::new),
                    content_type: rm_string(&p.content_type),
                    user_properties: rm_user_properties(p),
                    is_utf8_payload: p.payload_format_indicator.unwrap_or(false),
                    response_topic: rm_string(&p.response_topic),
                    subscription_ids: p
                        .subscription_identifiers
                        .iter()
                        .filter_map(|id| NonZeroU32::new(*id))
                        .collect(),
                }),
            }))
        }
        Packet::PubAck(reply) => v5::Packet::PublishAck(rm_publish_ack(reply)),
        Packet::PubRec(reply) => v5::Packet::PublishReceived(rm_publish_ack(reply)),
        Packet::PubRel(reply) => v5::Packet::PublishRelease(rm_publish_ack2(reply)),
        Packet::PubComp(reply) => v5::Packet::PublishComplete(rm_publish_ack2(reply)),
        Packet::Subscribe(subscribe) => v5::Packet::Subscribe(v5::Subscribe {
            packet_id: subscribe.packet_id,
            id: subscribe.properties.subscription_identifiers.first().and_then(|id| NonZeroU32::new(*id)),
            user_properties: rm_user_properties(&subscribe.properties),
            topic_filters: subscribe
                .subscriptions
                .iter()
                .map(|subscription| {
                    let options = subscription.options;
                    let retain_handling = match options.retain_handling {
                        RetainHandling::SendAtSubscribe => v5::RetainHandling::AtSubscribe,
                        RetainHandling::SendAtSubscribeIfNew => v5::RetainHandling::AtSubscribeNew,
                        RetainHandling::DoNotSend => v5::RetainHandling::NoAtSubscribe,
                    };
                    (
                        subscription.topic_filter.as_str().into(),
                        v5::SubscriptionOptions {
                            qos: rm_qos(options.maximum_qos),
                            no_local: options.no_local,
                            retain_as_published: options.retain_as_published,
                            retain_handling,
                        },
                    )
                })
                .collect(),
        }),
        Packet::SubAck(suback) => v5::Packet::SubscribeAck(v5::SubscribeAck {
            packet_id: suback.packet_id,
            properties: rm_user_properties(&suback.properties),
            reason_string: rm_string(&suback.properties.reason_string),
            status: suback
                .reason_codes
                .iter()
                .map(|code| v5::SubscribeAckReason::try_from(code.0).expect("valid SUBACK code"))
                .collect(),
        }),
        Packet::Unsubscribe(unsubscribe) => v5::Packet::Unsubscribe(v5::Unsubscribe {
            packet_id: unsubscribe.packet_id,
            user_properties: rm_user_properties(&unsubscribe.properties),
            topic_filters: unsubscribe.topic_filters.iter().map(|filter| filter.as_str().into()).collect(),
        }),
        Packet::UnsubAck(unsuback) => v5::Packet::UnsubscribeAck(v5::UnsubscribeAck {
            packet_id: unsuback.packet_id,
            properties: rm_user_properties(&unsuback.properties),
            reason_string: rm_string(&unsuback.properties.reason_string),
            status: unsuback
                .reason_codes
                .iter()
                .map(|code| v5::UnsubscribeAckReason::try_from(code.0).expect("valid UNSUBACK code"))
                .collect(),
        }),
        Packet::PingReq => v5::Packet::PingRequest,
        Packet::PingResp => v5::Packet::PingResponse,
        Packet::Disconnect(disconnect) => v5::Packet::Disconnect(v5::Disconnect {
            reason_code: v5::DisconnectReasonCode::try_from(disconnect.reason_code.0).expect("valid code"),
            session_expiry_interval_secs: disconnect.properties.session_expiry_interval_secs,
            server_reference: rm_string(&disconnect.properties.server_reference),
            reason_string: rm_string(&disconnect.properties.reason_string),
            user_properties: rm_user_properties(&disconnect.properties),
        }),
        Packet::Auth(auth) => v5::Packet::Auth(v5::Auth {
            reason_code: v5::AuthReasonCode::try_from(auth.reason_code.0).expect("valid AUTH code"),
            auth_method: rm_string(&auth.properties.authentication_method),
            auth_data: auth.properties.authentication_data.clone(),
            reason_string: rm_string(&auth.properties.reason_string),
            user_properties: rm_user_properties(&auth.properties),
        }),
    }
}

/// Our packet in rmqtt-codec's v3.1.1 model.
fn to_rmqtt_v3(packet: &Packet) -> v3::Packet {
    match packet {
        Packet::Connect(connect) => v3::Packet::Connect(Box::new(v3::Connect {
            protocol: types::Protocol(4),
            clean_session: connect.clean_start,
            keep_alive: connect.keep_alive_secs,
            last_will: connect.will.as_ref().map(|will| v3::LastWill {
                qos: rm_qos(will.qos),
                retain: will.retain,
                topic: will.topic.as_str().into(),
                message: will.payload.clone(),
            }),
            client_id: connect.client_id.as_str().into(),
            username: rm_string(&connect.username),
            password: connect.password.clone(),
            cert: None,
        })),
        Packet::ConnAck(connack) => v3::Packet::ConnectAck(v3::ConnectAck {
            return_code: v3::ConnectAckReason::try_from(connack.reason_code.to_v311_connack_return_code())
                .expect("return code 0..=5"),
            session_present: connack.session_present,
        }),
        Packet::Publish(publish) => v3::Packet::Publish(Box::new(types::Publish {
            dup: publish.dup,
            retain: publish.retain,
            qos: rm_qos(publish.qos),
            topic: publish.topic.as_str().into(),
            packet_id: publish.packet_id,
            payload: publish.payload.clone(),
            properties: None,
        })),
        Packet::PubAck(reply) => v3::Packet::PublishAck { packet_id: reply.packet_id },
        Packet::PubRec(reply) => v3::Packet::PublishReceived { packet_id: reply.packet_id },
        Packet::PubRel(reply) => v3::Packet::PublishRelease { packet_id: reply.packet_id },
        Packet::PubComp(reply) => v3::Packet::PublishComplete { packet_id: reply.packet_id },
        Packet::Subscribe(subscribe) => v3::Packet::Subscribe {
            packet_id: subscribe.packet_id,
            topic_filters: subscribe
                .subscriptions
                .iter()
                .map(|subscription| {
                    (subscription.topic_filter.as_str().into(), rm_qos(subscription.options.maximum_qos))
                })
                .collect(),
        },
        Packet::SubAck(suback) => v3::Packet::SubscribeAck {
            packet_id: suback.packet_id,
            status: suback
                .reason_codes
                .iter()
                .map(|code| match QoS::from_u8(code.0) {
                    Some(qos) => v3::SubscribeReturnCode::Success(rm_qos(qos)),
                    None => v3::SubscribeReturnCode::Failure,
                })
                .collect(),
        },
        Packet::Unsubscribe(unsubscribe) => v3::Packet::Unsubscribe {
            packet_id: unsubscribe.packet_id,
            topic_filters: unsubscribe.topic_filters.iter().map(|filter| filter.as_str().into()).collect(),
        },
        Packet::UnsubAck(unsuback) => v3::Packet::UnsubscribeAck { packet_id: unsuback.packet_id },
        Packet::PingReq => v3::Packet::PingRequest,
        Packet::PingResp => v3::Packet::PingResponse,
        Packet::Disconnect(_) => v3::Packet::Disconnect,
        Packet::Auth(_) => unreachable!("AUTH does not exist in MQTT 3.1.1"),
    }
}

fn rmqtt_decode_v3(bytes: &[u8]) -> v3::Packet {
    let mut codec = v3::Codec::new(0);
    let mut buf = BytesMut::from(bytes);
    let (packet, _) = codec.decode(&mut buf).expect("rmqtt decodes our bytes").expect("a whole packet");
    assert!(buf.is_empty(), "rmqtt left {} bytes", buf.len());
    packet
}

fn rmqtt_decode_v5(bytes: &[u8]) -> v5::Packet {
    let mut codec = v5::Codec::new(0, 0);
    let mut buf = BytesMut::from(bytes);
    let (packet, _) = codec.decode(&mut buf).expect("rmqtt decodes our bytes").expect("a whole packet");
    assert!(buf.is_empty(), "rmqtt left {} bytes", buf.len());
    packet
}

fn rmqtt_encode(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut out = BytesMut::new();
    match version {
        ProtocolVersion::V311 => v3::Codec::new(0).encode(to_rmqtt_v3(packet), &mut out),
        ProtocolVersion::V5 => v5::Codec::new(0, 0).encode(to_rmqtt_v5(packet), &mut out),
    }
    .expect("rmqtt encodes a valid packet");
    out
}

fn differential_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    common::versioned_packet().prop_map(|(version, packet)| (version, representable(packet)))
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn rmqtt_decodes_our_encoding((version, packet) in differential_packet()) {
        let bytes = encode_to_bytes(&packet, version).unwrap();
        match version {
            ProtocolVersion::V311 => prop_assert_eq!(rmqtt_decode_v3(&bytes), to_rmqtt_v3(&packet)),
            ProtocolVersion::V5 => prop_assert_eq!(rmqtt_decode_v5(&bytes), to_rmqtt_v5(&packet)),
        }
    }

    #[test]
    fn we_decode_rmqtt_encoding((version, packet) in differential_packet()) {
        let mut bytes = rmqtt_encode(&packet, version);
        let expected = match version {
            ProtocolVersion::V5 => without_defaults(packet),
            ProtocolVersion::V311 => packet,
        };
        prop_assert_eq!(decode(&mut bytes, version, u32::MAX).unwrap(), Some(expected));
        prop_assert!(bytes.is_empty());
    }
}

/// A fixed sample per packet type, so a regression in any one type shows up by name even if the
/// generator's distribution changes.
#[test]
fn every_packet_type_is_compared_in_both_directions() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    for version in common::ALL_VERSIONS {
        let mut seen_types = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            let packet = representable(common::packet(version).new_tree(&mut runner).unwrap().current());
            seen_types.insert(packet.packet_type());
            let ours = encode_to_bytes(&packet, version).unwrap();
            let theirs = rmqtt_encode(&packet, version);
            match version {
                ProtocolVersion::V311 => assert_eq!(rmqtt_decode_v3(&ours), to_rmqtt_v3(&packet)),
                ProtocolVersion::V5 => assert_eq!(rmqtt_decode_v5(&ours), to_rmqtt_v5(&packet)),
            }
            let expected = match version {
                ProtocolVersion::V5 => without_defaults(packet.clone()),
                ProtocolVersion::V311 => packet.clone(),
            };
            assert_eq!(decode(&mut theirs.clone(), version, u32::MAX).unwrap(), Some(expected));
        }
        let expected_types = match version {
            ProtocolVersion::V311 => 14,
            ProtocolVersion::V5 => 15,
        };
        assert_eq!(seen_types.len(), expected_types, "{version:?}: types seen {seen_types:?}");
    }
    // Spot check: the v3.1.1 CONNACK return codes map through ReasonCode both ways.
    assert_eq!(ReasonCode::from_v311_connack_return_code(3), Some(ReasonCode::SERVER_UNAVAILABLE));
}
