//! Encoding: a validating planning pass that computes every length (and refuses what the spec or
//! the target version forbids), then a writing pass that cannot fail.
//!
//! This module owns the order of fields on the wire and the omissions the spec allows (v5 acks
//! and DISCONNECT without reason code and properties). It must never write a byte before the
//! whole packet has been validated, so a failed `encode` leaves `out` untouched.

use bytes::{BufMut, BytesMut};

use super::EncodeError;
use super::primitives::{
    VARIABLE_BYTE_INTEGER_MAX, binary_len, put_binary, put_string, put_variable_byte_integer, string_len,
    variable_byte_integer_len,
};
use super::properties::{PropertyContext, properties_len, put_properties};
use super::reason_codes;
use crate::mqtt::packet::{
    Auth, ConnAck, Connect, Disconnect, Packet, Properties, ProtocolVersion, PubReply, Publish, QoS,
    RetainHandling, SubAck, Subscribe, UnsubAck, Unsubscribe,
};
use crate::mqtt::reason::ReasonCode;
use crate::mqtt::topic::{self, TopicError};

/// The lengths the planning pass computed; the writing pass follows them.
#[derive(Clone, Copy, Debug, Default)]
struct Plan {
    /// The Remaining Length of the fixed header.
    remaining_len: usize,
    /// Content length of the packet's property block (v5), without its length integer.
    properties_len: usize,
    /// Content length of the Will property block (v5 CONNECT with a Will).
    will_properties_len: usize,
}

impl Plan {
    fn packet_len(&self) -> usize {
        1 + variable_byte_integer_len(self.remaining_len as u32) + self.remaining_len
    }
}

/// Appends the encoding of `packet` for `version` to `out`. On error nothing is appended.
pub fn encode(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
    let plan = plan(packet, version)?;
    let packet_len = plan.packet_len();
    out.reserve(packet_len);
    let start_len = out.len();
    out.put_u8(first_byte(packet));
    put_variable_byte_integer(out, plan.remaining_len as u32);
    write_body(packet, version, &plan, out);
    assert_eq!(out.len() - start_len, packet_len, "{} plan disagrees with the bytes written", packet.name());
    Ok(())
}

/// The number of bytes [`encode`] would append (to honour a peer's Maximum Packet Size).
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    let plan = plan(packet, version)?;
    Ok(plan.packet_len())
}

fn first_byte(packet: &Packet) -> u8 {
    let flags = match packet {
        Packet::Publish(publish) => {
            (u8::from(publish.dup) << 3) | (publish.qos.as_u8() << 1) | u8::from(publish.retain)
        }
        Packet::PubRel(_) | Packet::Subscribe(_) | Packet::Unsubscribe(_) => 0b0010,
        _ => 0,
    };
    (packet.packet_type() << 4) | flags
}

/// The content length of a property block; MQTT 3.1.1 packets must not carry any property.
fn plan_properties(
    properties: &Properties,
    version: ProtocolVersion,
    context: PropertyContext,
) -> Result<usize, EncodeError> {
    match version {
        ProtocolVersion::V5 => properties_len(properties, context),
        ProtocolVersion::V311 if has_no_properties(properties) => Ok(0),
        ProtocolVersion::V311 => Err(EncodeError::NotInV311 { packet: context.name(), field: "properties" }),
    }
}

/// Same as [`Properties::is_empty`] without building a default value to compare with: this is
/// on the path of every MQTT 3.1.1 packet. The exhaustive destructuring makes a new field a
/// compile error here.
fn has_no_properties(properties: &Properties) -> bool {
    let Properties {
        payload_format_indicator,
        message_expiry_interval_secs,
        content_type,
        response_topic,
        correlation_data,
        subscription_identifiers,
        session_expiry_interval_secs,
        assigned_client_identifier,
        server_keep_alive_secs,
        authentication_method,
        authentication_data,
        request_problem_information,
        will_delay_interval_secs,
        request_response_information,
        response_information,
        server_reference,
        reason_string,
        receive_maximum,
        topic_alias_maximum,
        topic_alias,
        maximum_qos,
        retain_available,
        user_properties,
        maximum_packet_size,
        wildcard_subscription_available,
        subscription_identifiers_available,
        shared_subscription_available,
    } = properties;
    let empty = payload_format_indicator.is_none()
        && message_expiry_interval_secs.is_none()
        && content_type.is_none()
        && response_topic.is_none()
        && correlation_data.is_none()
        && subscription_identifiers.is_empty()
        && session_expiry_interval_secs.is_none()
        && assigned_client_identifier.is_none()
        && server_keep_alive_secs.is_none()
        && authentication_method.is_none()
        && authentication_data.is_none()
        && request_problem_information.is_none()
        && will_delay_interval_secs.is_none()
        && request_response_information.is_none()
        && response_information.is_none()
        && server_reference.is_none()
        && reason_string.is_none()
        && receive_maximum.is_none()
        && topic_alias_maximum.is_none()
        && topic_alias.is_none()
        && maximum_qos.is_none()
        && retain_available.is_none()
        && user_properties.is_empty()
        && maximum_packet_size.is_none()
        && wildcard_subscription_available.is_none()
        && subscription_identifiers_available.is_none()
        && shared_subscription_available.is_none();
    debug_assert_eq!(empty, properties.is_empty());
    empty
}

/// The bytes a property block takes on the wire: its length integer plus its content (v5), or
/// nothing (v3.1.1).
fn block_len(content_len: usize, version: ProtocolVersion) -> usize {
    match version {
        ProtocolVersion::V5 => variable_byte_integer_len(content_len as u32) + content_len,
        ProtocolVersion::V311 => 0,
    }
}

fn checked_remaining(remaining_len: usize) -> Result<usize, EncodeError> {
    if remaining_len > VARIABLE_BYTE_INTEGER_MAX as usize {
        return Err(EncodeError::PacketTooLarge { remaining_len_bytes: remaining_len });
    }
    Ok(remaining_len)
}

fn plan(packet: &Packet, version: ProtocolVersion) -> Result<Plan, EncodeError> {
    let mut plan = Plan::default();
    let remaining_len = match packet {
        Packet::Connect(connect) => plan_connect(connect, version, &mut plan)?,
        Packet::ConnAck(connack) => plan_connack(connack, version, &mut plan)?,
        Packet::Publish(publish) => plan_publish(publish, version, &mut plan)?,
        Packet::PubAck(reply) => plan_pub_reply(reply, version, PropertyContext::PubAck, &mut plan)?,
        Packet::PubRec(reply) => plan_pub_reply(reply, version, PropertyContext::PubRec, &mut plan)?,
        Packet::PubRel(reply) => plan_pub_reply(reply, version, PropertyContext::PubRel, &mut plan)?,
        Packet::PubComp(reply) => plan_pub_reply(reply, version, PropertyContext::PubComp, &mut plan)?,
        Packet::Subscribe(subscribe) => plan_subscribe(subscribe, version, &mut plan)?,
        Packet::SubAck(suback) => plan_suback(suback, version, &mut plan)?,
        Packet::Unsubscribe(unsubscribe) => plan_unsubscribe(unsubscribe, version, &mut plan)?,
        Packet::UnsubAck(unsuback) => plan_unsuback(unsuback, version, &mut plan)?,
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(disconnect) => plan_disconnect(disconnect, version, &mut plan)?,
        Packet::Auth(auth) => plan_auth(auth, version, &mut plan)?,
    };
    plan.remaining_len = checked_remaining(remaining_len)?;
    assert!(plan.properties_len <= plan.remaining_len, "properties are part of the remaining length");
    assert!(plan.will_properties_len <= plan.remaining_len);
    Ok(plan)
}

fn check_topic_name(topic: &str) -> Result<(), EncodeError> {
    topic::validate_topic_name(topic).map_err(EncodeError::TopicNameInvalid)
}

fn check_topic_filter(filter: &str) -> Result<(), EncodeError> {
    topic::validate_topic_filter(filter).map_err(EncodeError::TopicFilterInvalid)
}

fn plan_connect(connect: &Connect, version: ProtocolVersion, plan: &mut Plan) -> Result<usize, EncodeError> {
    if connect.protocol != version {
        return Err(EncodeError::ProtocolMismatch { connect: connect.protocol, requested: version });
    }
    if version == ProtocolVersion::V311 && connect.password.is_some() && connect.username.is_none() {
        return Err(EncodeError::PasswordWithoutUsername);
    }
    // Protocol name "MQTT" (6), level (1), connect flags (1), keep alive (2).
    let mut len = 10;
    plan.properties_len = plan_properties(&connect.properties, version, PropertyContext::Connect)?;
    len += block_len(plan.properties_len, version);
    len += string_len(&connect.client_id, "client identifier")?;
    if let Some(will) = &connect.will {
        plan.will_properties_len = plan_properties(&will.properties, version, PropertyContext::Will)?;
        len += block_len(plan.will_properties_len, version);
        check_topic_name(&will.topic)?;
        len += string_len(&will.topic, "will topic")?;
        len += binary_len(&will.payload, "will payload")?;
    }
    if let Some(username) = &connect.username {
        len += string_len(username, "user name")?;
    }
    if let Some(password) = &connect.password {
        len += binary_len(password, "password")?;
    }
    Ok(len)
}

fn plan_connack(connack: &ConnAck, version: ProtocolVersion, plan: &mut Plan) -> Result<usize, EncodeError> {
    let code = connack.reason_code.0;
    if !reason_codes::is_valid_connack(code) {
        return Err(EncodeError::InvalidReasonCode { packet: "CONNACK", code });
    }
    if connack.session_present && connack.reason_code.is_error() {
        return Err(EncodeError::SessionPresentWithError);
    }
    plan.properties_len = plan_properties(&connack.properties, version, PropertyContext::ConnAck)?;
    Ok(2 + block_len(plan.properties_len, version))
}

fn plan_publish(publish: &Publish, version: ProtocolVersion, plan: &mut Plan) -> Result<usize, EncodeError> {
    let has_packet_id = publish.packet_id.is_some();
    if (publish.qos == QoS::AtMostOnce) == has_packet_id {
        return Err(EncodeError::PacketIdMismatch { qos: publish.qos.as_u8(), has_packet_id });
    }
    if publish.dup && publish.qos == QoS::AtMostOnce {
        return Err(EncodeError::DupWithQoS0);
    }
    if publish.topic.is_empty() {
        match version {
            ProtocolVersion::V5 if publish.properties.topic_alias.is_some() => {}
            ProtocolVersion::V5 => return Err(EncodeError::EmptyTopicWithoutAlias),
            ProtocolVersion::V311 => return Err(EncodeError::TopicNameInvalid(TopicError::Empty)),
        }
    } else {
        check_topic_name(&publish.topic)?;
    }
    plan.properties_len = plan_properties(&publish.properties, version, PropertyContext::Publish)?;
    let mut len = string_len(&publish.topic, "topic name")?;
    if has_packet_id {
        len += 2;
    }
    len += block_len(plan.properties_len, version);
    len = len
        .checked_add(publish.payload.len())
        .ok_or(EncodeError::PacketTooLarge { remaining_len_bytes: usize::MAX })?;
    Ok(len)
}

fn plan_pub_reply(
    reply: &PubReply,
    version: ProtocolVersion,
    context: PropertyContext,
    plan: &mut Plan,
) -> Result<usize, EncodeError> {
    let code = reply.reason_code.0;
    let valid = match context {
        PropertyContext::PubAck | PropertyContext::PubRec => reason_codes::is_valid_puback_or_pubrec(code),
        _ => reason_codes::is_valid_pubrel_or_pubcomp(code),
    };
    if !valid {
        return Err(EncodeError::InvalidReasonCode { packet: context.name(), code });
    }
    if version == ProtocolVersion::V311 && reply.reason_code != ReasonCode::SUCCESS {
        return Err(EncodeError::NotInV311 { packet: context.name(), field: "reason code" });
    }
    plan.properties_len = plan_properties(&reply.properties, version, context)?;
    Ok(pub_reply_len(reply.reason_code, plan.properties_len, version))
}

/// Spec 3.4.2.1: the reason code is omitted when Success without properties, the property
/// length when there are no properties.
fn pub_reply_len(reason_code: ReasonCode, properties_len: usize, version: ProtocolVersion) -> usize {
    match version {
        ProtocolVersion::V311 => 2,
        ProtocolVersion::V5 if properties_len == 0 && reason_code == ReasonCode::SUCCESS => 2,
        ProtocolVersion::V5 if properties_len == 0 => 3,
        ProtocolVersion::V5 => 3 + block_len(properties_len, version),
    }
}

fn plan_subscribe(
    subscribe: &Subscribe,
    version: ProtocolVersion,
    plan: &mut Plan,
) -> Result<usize, EncodeError> {
    if subscribe.subscriptions.is_empty() {
        return Err(EncodeError::NoTopicFilters);
    }
    plan.properties_len = plan_properties(&subscribe.properties, version, PropertyContext::Subscribe)?;
    let mut len = 2 + block_len(plan.properties_len, version);
    for subscription in &subscribe.subscriptions {
        check_topic_filter(&subscription.topic_filter)?;
        let options = subscription.options;
        if version == ProtocolVersion::V311
            && (options.no_local
                || options.retain_as_published
                || options.retain_handling != RetainHandling::SendAtSubscribe)
        {
            return Err(EncodeError::NotInV311 { packet: "SUBSCRIBE", field: "v5 subscription options" });
        }
        if options.no_local && subscription.topic_filter.starts_with("$share/") {
            return Err(EncodeError::NoLocalOnSharedSubscription);
        }
        len += string_len(&subscription.topic_filter, "topic filter")? + 1;
    }
    Ok(len)
}

fn plan_suback(suback: &SubAck, version: ProtocolVersion, plan: &mut Plan) -> Result<usize, EncodeError> {
    if suback.reason_codes.is_empty() {
        return Err(EncodeError::NoReasonCodes);
    }
    if let Some(code) =
        suback.reason_codes.iter().find(|code| !reason_codes::is_valid_suback(code.0, version))
    {
        return Err(EncodeError::InvalidReasonCode { packet: "SUBACK", code: code.0 });
    }
    plan.properties_len = plan_properties(&suback.properties, version, PropertyContext::SubAck)?;
    Ok(2 + block_len(plan.properties_len, version) + suback.reason_codes.len())
}

fn plan_unsubscribe(
    unsubscribe: &Unsubscribe,
    version: ProtocolVersion,
    plan: &mut Plan,
) -> Result<usize, EncodeError> {
    if unsubscribe.topic_filters.is_empty() {
        return Err(EncodeError::NoTopicFilters);
    }
    plan.properties_len = plan_properties(&unsubscribe.properties, version, PropertyContext::Unsubscribe)?;
    let mut len = 2 + block_len(plan.properties_len, version);
    for filter in &unsubscribe.topic_filters {
        check_topic_filter(filter)?;
        len += string_len(filter, "topic filter")?;
    }
    Ok(len)
}

fn plan_unsuback(
    unsuback: &UnsubAck,
    version: ProtocolVersion,
    plan: &mut Plan,
) -> Result<usize, EncodeError> {
    plan.properties_len = plan_properties(&unsuback.properties, version, PropertyContext::UnsubAck)?;
    match version {
        ProtocolVersion::V311 if unsuback.reason_codes.is_empty() => Ok(2),
        ProtocolVersion::V311 => Err(EncodeError::NotInV311 { packet: "UNSUBACK", field: "reason codes" }),
        ProtocolVersion::V5 => {
            if unsuback.reason_codes.is_empty() {
                return Err(EncodeError::NoReasonCodes);
            }
            if let Some(code) =
                unsuback.reason_codes.iter().find(|code| !reason_codes::is_valid_unsuback(code.0))
            {
                return Err(EncodeError::InvalidReasonCode { packet: "UNSUBACK", code: code.0 });
            }
            Ok(2 + block_len(plan.properties_len, version) + unsuback.reason_codes.len())
        }
    }
}

fn plan_disconnect(
    disconnect: &Disconnect,
    version: ProtocolVersion,
    plan: &mut Plan,
) -> Result<usize, EncodeError> {
    let code = disconnect.reason_code.0;
    if !reason_codes::is_valid_disconnect(code) {
        return Err(EncodeError::InvalidReasonCode { packet: "DISCONNECT", code });
    }
    if version == ProtocolVersion::V311 && disconnect.reason_code != ReasonCode::NORMAL_DISCONNECTION {
        return Err(EncodeError::NotInV311 { packet: "DISCONNECT", field: "reason code" });
    }
    plan.properties_len = plan_properties(&disconnect.properties, version, PropertyContext::Disconnect)?;
    Ok(disconnect_len(disconnect.reason_code, plan.properties_len, version))
}

/// Spec 3.14.2.1: Remaining Length 0 for Normal disconnection without properties. Any other
/// reason code is followed by the property length even when it is 0: the spec lets it be left
/// out (3.14.2.2.1), but rumqttc 0.25 then waits for it and never reports the reason.
fn disconnect_len(reason_code: ReasonCode, properties_len: usize, version: ProtocolVersion) -> usize {
    match version {
        ProtocolVersion::V311 => 0,
        ProtocolVersion::V5 if properties_len == 0 && reason_code == ReasonCode::NORMAL_DISCONNECTION => 0,
        ProtocolVersion::V5 => 1 + block_len(properties_len, version),
    }
}

fn plan_auth(auth: &Auth, version: ProtocolVersion, plan: &mut Plan) -> Result<usize, EncodeError> {
    if version == ProtocolVersion::V311 {
        return Err(EncodeError::NotInV311 { packet: "AUTH", field: "the packet itself" });
    }
    let code = auth.reason_code.0;
    if !reason_codes::is_valid_auth(code) {
        return Err(EncodeError::InvalidReasonCode { packet: "AUTH", code });
    }
    plan.properties_len = properties_len(&auth.properties, PropertyContext::Auth)?;
    Ok(auth_len(auth.reason_code, plan.properties_len))
}

/// Spec 3.15.2.1: Remaining Length 0 for Success without properties; otherwise the reason code
/// and the property block (whose length is always written, as the spec only allows omitting all).
fn auth_len(reason_code: ReasonCode, properties_len: usize) -> usize {
    if properties_len == 0 && reason_code == ReasonCode::SUCCESS {
        0
    } else {
        1 + block_len(properties_len, ProtocolVersion::V5)
    }
}

fn write_properties_if_v5(
    out: &mut BytesMut,
    properties: &Properties,
    properties_len: usize,
    version: ProtocolVersion,
) {
    if version == ProtocolVersion::V5 {
        put_properties(out, properties, properties_len);
    }
}

fn write_body(packet: &Packet, version: ProtocolVersion, plan: &Plan, out: &mut BytesMut) {
    match packet {
        Packet::Connect(connect) => write_connect(connect, version, plan, out),
        Packet::ConnAck(connack) => {
            out.put_u8(u8::from(connack.session_present));
            out.put_u8(match version {
                ProtocolVersion::V311 => connack.reason_code.to_v311_connack_return_code(),
                ProtocolVersion::V5 => connack.reason_code.0,
            });
            write_properties_if_v5(out, &connack.properties, plan.properties_len, version);
        }
        Packet::Publish(publish) => {
            put_string(out, &publish.topic);
            if let Some(packet_id) = publish.packet_id {
                out.put_u16(packet_id.get());
            }
            write_properties_if_v5(out, &publish.properties, plan.properties_len, version);
            out.put_slice(&publish.payload);
        }
        Packet::PubAck(reply) | Packet::PubRec(reply) | Packet::PubRel(reply) | Packet::PubComp(reply) => {
            out.put_u16(reply.packet_id.get());
            let len = pub_reply_len(reply.reason_code, plan.properties_len, version);
            if len >= 3 {
                out.put_u8(reply.reason_code.0);
            }
            if len > 3 {
                put_properties(out, &reply.properties, plan.properties_len);
            }
        }
        Packet::Subscribe(subscribe) => {
            out.put_u16(subscribe.packet_id.get());
            write_properties_if_v5(out, &subscribe.properties, plan.properties_len, version);
            for subscription in &subscribe.subscriptions {
                put_string(out, &subscription.topic_filter);
                let options = subscription.options;
                let retain_handling = match options.retain_handling {
                    RetainHandling::SendAtSubscribe => 0,
                    RetainHandling::SendAtSubscribeIfNew => 1,
                    RetainHandling::DoNotSend => 2,
                };
                out.put_u8(
                    options.maximum_qos.as_u8()
                        | (u8::from(options.no_local) << 2)
                        | (u8::from(options.retain_as_published) << 3)
                        | (retain_handling << 4),
                );
            }
        }
        Packet::SubAck(suback) => {
            out.put_u16(suback.packet_id.get());
            write_properties_if_v5(out, &suback.properties, plan.properties_len, version);
            out.extend(suback.reason_codes.iter().map(|code| code.0));
        }
        Packet::Unsubscribe(unsubscribe) => {
            out.put_u16(unsubscribe.packet_id.get());
            write_properties_if_v5(out, &unsubscribe.properties, plan.properties_len, version);
            for filter in &unsubscribe.topic_filters {
                put_string(out, filter);
            }
        }
        Packet::UnsubAck(unsuback) => {
            out.put_u16(unsuback.packet_id.get());
            write_properties_if_v5(out, &unsuback.properties, plan.properties_len, version);
            out.extend(unsuback.reason_codes.iter().map(|code| code.0));
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(disconnect) => {
            let len = disconnect_len(disconnect.reason_code, plan.properties_len, version);
            if len >= 1 {
                out.put_u8(disconnect.reason_code.0);
            }
            if len > 1 {
                put_properties(out, &disconnect.properties, plan.properties_len);
            }
        }
        Packet::Auth(auth) => {
            if auth_len(auth.reason_code, plan.properties_len) > 0 {
                out.put_u8(auth.reason_code.0);
                put_properties(out, &auth.properties, plan.properties_len);
            }
        }
    }
}

fn write_connect(connect: &Connect, version: ProtocolVersion, plan: &Plan, out: &mut BytesMut) {
    put_string(out, "MQTT");
    out.put_u8(version.level());
    let mut flags = 0u8;
    if connect.clean_start {
        flags |= 0x02;
    }
    if let Some(will) = &connect.will {
        flags |= 0x04 | (will.qos.as_u8() << 3);
        if will.retain {
            flags |= 0x20;
        }
    }
    if connect.password.is_some() {
        flags |= 0x40;
    }
    if connect.username.is_some() {
        flags |= 0x80;
    }
    out.put_u8(flags);
    out.put_u16(connect.keep_alive_secs);
    write_properties_if_v5(out, &connect.properties, plan.properties_len, version);
    put_string(out, &connect.client_id);
    if let Some(will) = &connect.will {
        write_properties_if_v5(out, &will.properties, plan.will_properties_len, version);
        put_string(out, &will.topic);
        put_binary(out, &will.payload);
    }
    if let Some(username) = &connect.username {
        put_string(out, username);
    }
    if let Some(password) = &connect.password {
        put_binary(out, password);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_length_is_bounded_by_the_variable_byte_integer() {
        // Building a real 256 MiB packet would make the test slow; the bound is this one check.
        let max = VARIABLE_BYTE_INTEGER_MAX as usize;
        assert_eq!(checked_remaining(max), Ok(max));
        assert_eq!(
            checked_remaining(max + 1),
            Err(EncodeError::PacketTooLarge { remaining_len_bytes: max + 1 })
        );
        let plan = Plan { remaining_len: max, ..Plan::default() };
        assert_eq!(plan.packet_len(), 1 + 4 + max);
    }
}
