//! MQTT 5 properties (spec 2.2.2): which packet may carry which property, and their encoding,
//! decoding and value rules (once-only, ranges, booleans).
//!
//! This module owns the property table of spec 2.2.2.2 and applies it in both directions, so a
//! property the spec does not allow in a packet type can neither be decoded nor encoded. It must
//! never look at anything outside the property block it is handed.

use bytes::{BufMut, Bytes, BytesMut};

use super::primitives::{
    Reader, VARIABLE_BYTE_INTEGER_MAX, binary_len, put_binary, put_string, put_variable_byte_integer,
    string_len, variable_byte_integer_len,
};
use super::{DecodeError, EncodeError};
use crate::mqtt::packet::{Properties, QoS};
use crate::mqtt::topic;

pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
pub const CONTENT_TYPE: u8 = 0x03;
pub const RESPONSE_TOPIC: u8 = 0x08;
pub const CORRELATION_DATA: u8 = 0x09;
pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
pub const SERVER_KEEP_ALIVE: u8 = 0x13;
pub const AUTHENTICATION_METHOD: u8 = 0x15;
pub const AUTHENTICATION_DATA: u8 = 0x16;
pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
pub const WILL_DELAY_INTERVAL: u8 = 0x18;
pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
pub const RESPONSE_INFORMATION: u8 = 0x1A;
pub const SERVER_REFERENCE: u8 = 0x1C;
pub const REASON_STRING: u8 = 0x1F;
pub const RECEIVE_MAXIMUM: u8 = 0x21;
pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
pub const TOPIC_ALIAS: u8 = 0x23;
pub const MAXIMUM_QOS: u8 = 0x24;
pub const RETAIN_AVAILABLE: u8 = 0x25;
pub const USER_PROPERTY: u8 = 0x26;
pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

/// Where a property block sits: a packet type, or the Will properties inside CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropertyContext {
    Connect,
    Will,
    ConnAck,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl PropertyContext {
    const fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// Whether the spec allows property `id` here (spec 2.2.2.2).
    pub const fn allows(self, id: u8) -> bool {
        match allowed_contexts(id) {
            Some(bits) => bits & self.bit() != 0,
            None => false,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            PropertyContext::Connect => "CONNECT",
            PropertyContext::Will => "Will",
            PropertyContext::ConnAck => "CONNACK",
            PropertyContext::Publish => "PUBLISH",
            PropertyContext::PubAck => "PUBACK",
            PropertyContext::PubRec => "PUBREC",
            PropertyContext::PubRel => "PUBREL",
            PropertyContext::PubComp => "PUBCOMP",
            PropertyContext::Subscribe => "SUBSCRIBE",
            PropertyContext::SubAck => "SUBACK",
            PropertyContext::Unsubscribe => "UNSUBSCRIBE",
            PropertyContext::UnsubAck => "UNSUBACK",
            PropertyContext::Disconnect => "DISCONNECT",
            PropertyContext::Auth => "AUTH",
        }
    }
}

const fn mask(contexts: &[PropertyContext]) -> u16 {
    let mut bits = 0;
    let mut index = 0;
    while index < contexts.len() {
        bits |= contexts[index].bit();
        index += 1;
    }
    bits
}

use PropertyContext as C;

const MESSAGE_CONTEXTS: u16 = mask(&[C::Publish, C::Will]);
const REASON_STRING_CONTEXTS: u16 = mask(&[
    C::ConnAck,
    C::PubAck,
    C::PubRec,
    C::PubRel,
    C::PubComp,
    C::SubAck,
    C::UnsubAck,
    C::Disconnect,
    C::Auth,
]);
const USER_PROPERTY_CONTEXTS: u16 = mask(&[
    C::Connect,
    C::Will,
    C::ConnAck,
    C::Publish,
    C::PubAck,
    C::PubRec,
    C::PubRel,
    C::PubComp,
    C::Subscribe,
    C::SubAck,
    C::Unsubscribe,
    C::UnsubAck,
    C::Disconnect,
    C::Auth,
]);

/// The packet types that may carry property `id` (spec 2.2.2.2), `None` for an unknown id.
pub const fn allowed_contexts(id: u8) -> Option<u16> {
    Some(match id {
        PAYLOAD_FORMAT_INDICATOR
        | MESSAGE_EXPIRY_INTERVAL
        | CONTENT_TYPE
        | RESPONSE_TOPIC
        | CORRELATION_DATA => MESSAGE_CONTEXTS,
        SUBSCRIPTION_IDENTIFIER => mask(&[C::Publish, C::Subscribe]),
        SESSION_EXPIRY_INTERVAL => mask(&[C::Connect, C::ConnAck, C::Disconnect]),
        ASSIGNED_CLIENT_IDENTIFIER
        | SERVER_KEEP_ALIVE
        | RESPONSE_INFORMATION
        | MAXIMUM_QOS
        | RETAIN_AVAILABLE
        | WILDCARD_SUBSCRIPTION_AVAILABLE
        | SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | SHARED_SUBSCRIPTION_AVAILABLE => mask(&[C::ConnAck]),
        AUTHENTICATION_METHOD | AUTHENTICATION_DATA => mask(&[C::Connect, C::ConnAck, C::Auth]),
        REQUEST_PROBLEM_INFORMATION | REQUEST_RESPONSE_INFORMATION => mask(&[C::Connect]),
        WILL_DELAY_INTERVAL => mask(&[C::Will]),
        SERVER_REFERENCE => mask(&[C::ConnAck, C::Disconnect]),
        REASON_STRING => REASON_STRING_CONTEXTS,
        RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM | MAXIMUM_PACKET_SIZE => mask(&[C::Connect, C::ConnAck]),
        TOPIC_ALIAS => mask(&[C::Publish]),
        USER_PROPERTY => USER_PROPERTY_CONTEXTS,
        _ => return None,
    })
}

fn set_once<T>(slot: &mut Option<T>, value: T, id: u8) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty { id });
    }
    *slot = Some(value);
    Ok(())
}

fn boolean(id: u8, byte: u8) -> Result<bool, DecodeError> {
    match byte {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::InvalidPropertyValue { id, reason: "boolean byte is neither 0 nor 1" }),
    }
}

fn non_zero_u16(id: u8, value: u16) -> Result<u16, DecodeError> {
    if value == 0 {
        return Err(DecodeError::InvalidPropertyValue { id, reason: "must not be zero" });
    }
    Ok(value)
}

/// Decodes a property block (length, then properties) for `context`.
pub fn decode_properties(reader: &mut Reader, context: PropertyContext) -> Result<Properties, DecodeError> {
    let block_len = reader.variable_byte_integer()? as usize;
    if block_len > reader.remaining() {
        return Err(DecodeError::PropertiesOverrun {
            properties_len_bytes: block_len,
            remaining_bytes: reader.remaining(),
        });
    }
    let mut properties = Properties::default();
    if block_len == 0 {
        return Ok(properties);
    }
    let mut block = Reader::new(reader.take(block_len)?);
    while !block.is_empty() {
        let id = block.u8()?;
        let Some(contexts) = allowed_contexts(id) else {
            return Err(DecodeError::UnknownProperty { id });
        };
        if contexts & context.bit() == 0 {
            return Err(DecodeError::PropertyNotAllowed { id, packet: context.name() });
        }
        decode_one(&mut block, id, context, &mut properties)?;
    }
    if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
        return Err(DecodeError::InvalidPropertyValue {
            id: AUTHENTICATION_DATA,
            reason: "authentication data without authentication method",
        });
    }
    Ok(properties)
}

fn decode_one(
    block: &mut Reader,
    id: u8,
    context: PropertyContext,
    properties: &mut Properties,
) -> Result<(), DecodeError> {
    let p = properties;
    match id {
        PAYLOAD_FORMAT_INDICATOR => set_once(&mut p.payload_format_indicator, boolean(id, block.u8()?)?, id),
        MESSAGE_EXPIRY_INTERVAL => set_once(&mut p.message_expiry_interval_secs, block.u32()?, id),
        CONTENT_TYPE => set_once(&mut p.content_type, block.string()?, id),
        RESPONSE_TOPIC => {
            let response_topic = block.string()?;
            if topic::validate_topic_name(&response_topic).is_err() {
                return Err(DecodeError::InvalidPropertyValue {
                    id,
                    reason: "response topic is not a topic name",
                });
            }
            set_once(&mut p.response_topic, response_topic, id)
        }
        CORRELATION_DATA => set_once(&mut p.correlation_data, block.binary()?, id),
        SUBSCRIPTION_IDENTIFIER => {
            let value = block.variable_byte_integer()?;
            if value == 0 {
                return Err(DecodeError::InvalidPropertyValue {
                    id,
                    reason: "subscription identifier is zero",
                });
            }
            // A SUBSCRIBE carries at most one; a PUBLISH to a client carries one per matching
            // subscription (spec 3.3.2.3.8).
            if context == PropertyContext::Subscribe && !p.subscription_identifiers.is_empty() {
                return Err(DecodeError::DuplicateProperty { id });
            }
            p.subscription_identifiers.push(value);
            Ok(())
        }
        SESSION_EXPIRY_INTERVAL => set_once(&mut p.session_expiry_interval_secs, block.u32()?, id),
        ASSIGNED_CLIENT_IDENTIFIER => set_once(&mut p.assigned_client_identifier, block.string()?, id),
        SERVER_KEEP_ALIVE => set_once(&mut p.server_keep_alive_secs, block.u16()?, id),
        AUTHENTICATION_METHOD => set_once(&mut p.authentication_method, block.string()?, id),
        AUTHENTICATION_DATA => set_once(&mut p.authentication_data, block.binary()?, id),
        REQUEST_PROBLEM_INFORMATION => {
            set_once(&mut p.request_problem_information, boolean(id, block.u8()?)?, id)
        }
        WILL_DELAY_INTERVAL => set_once(&mut p.will_delay_interval_secs, block.u32()?, id),
        REQUEST_RESPONSE_INFORMATION => {
            set_once(&mut p.request_response_information, boolean(id, block.u8()?)?, id)
        }
        RESPONSE_INFORMATION => set_once(&mut p.response_information, block.string()?, id),
        SERVER_REFERENCE => set_once(&mut p.server_reference, block.string()?, id),
        REASON_STRING => set_once(&mut p.reason_string, block.string()?, id),
        RECEIVE_MAXIMUM => set_once(&mut p.receive_maximum, non_zero_u16(id, block.u16()?)?, id),
        TOPIC_ALIAS_MAXIMUM => set_once(&mut p.topic_alias_maximum, block.u16()?, id),
        TOPIC_ALIAS => set_once(&mut p.topic_alias, non_zero_u16(id, block.u16()?)?, id),
        MAXIMUM_QOS => {
            let qos = match block.u8()? {
                0 => QoS::AtMostOnce,
                1 => QoS::AtLeastOnce,
                _ => {
                    return Err(DecodeError::InvalidPropertyValue {
                        id,
                        reason: "maximum QoS is not 0 or 1",
                    });
                }
            };
            set_once(&mut p.maximum_qos, qos, id)
        }
        RETAIN_AVAILABLE => set_once(&mut p.retain_available, boolean(id, block.u8()?)?, id),
        USER_PROPERTY => {
            let key = block.string()?;
            let value = block.string()?;
            p.user_properties.push((key, value));
            Ok(())
        }
        MAXIMUM_PACKET_SIZE => {
            let value = block.u32()?;
            if value == 0 {
                return Err(DecodeError::InvalidPropertyValue { id, reason: "maximum packet size is zero" });
            }
            set_once(&mut p.maximum_packet_size, value, id)
        }
        WILDCARD_SUBSCRIPTION_AVAILABLE => {
            set_once(&mut p.wildcard_subscription_available, boolean(id, block.u8()?)?, id)
        }
        SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
            set_once(&mut p.subscription_identifiers_available, boolean(id, block.u8()?)?, id)
        }
        SHARED_SUBSCRIPTION_AVAILABLE => {
            set_once(&mut p.shared_subscription_available, boolean(id, block.u8()?)?, id)
        }
        _ => unreachable!("property id {id:#04x} passed the allowed-context table but has no decoder"),
    }
}

/// Checks that every set property may appear in `context` and has a legal value, and returns
/// the size of the property contents (without the leading length integer).
pub fn properties_len(properties: &Properties, context: PropertyContext) -> Result<usize, EncodeError> {
    let p = properties;
    let mut len = 0usize;
    let mut add = |id: u8, value_len: usize| -> Result<(), EncodeError> {
        if !context.allows(id) {
            return Err(EncodeError::PropertyNotAllowed { id, packet: context.name() });
        }
        len += 1 + value_len;
        Ok(())
    };
    if p.payload_format_indicator.is_some() {
        add(PAYLOAD_FORMAT_INDICATOR, 1)?;
    }
    if p.message_expiry_interval_secs.is_some() {
        add(MESSAGE_EXPIRY_INTERVAL, 4)?;
    }
    if let Some(value) = &p.content_type {
        add(CONTENT_TYPE, string_len(value, "content type")?)?;
    }
    if let Some(value) = &p.response_topic {
        if topic::validate_topic_name(value).is_err() {
            return Err(EncodeError::InvalidPropertyValue {
                id: RESPONSE_TOPIC,
                reason: "response topic is not a topic name",
            });
        }
        add(RESPONSE_TOPIC, string_len(value, "response topic")?)?;
    }
    if let Some(value) = &p.correlation_data {
        add(CORRELATION_DATA, binary_len(value, "correlation data")?)?;
    }
    if context == PropertyContext::Subscribe && p.subscription_identifiers.len() > 1 {
        return Err(EncodeError::InvalidPropertyValue {
            id: SUBSCRIPTION_IDENTIFIER,
            reason: "a SUBSCRIBE carries at most one subscription identifier",
        });
    }
    for &value in &p.subscription_identifiers {
        if value == 0 || value > VARIABLE_BYTE_INTEGER_MAX {
            return Err(EncodeError::InvalidPropertyValue {
                id: SUBSCRIPTION_IDENTIFIER,
                reason: "subscription identifier outside 1..=268,435,455",
            });
        }
        add(SUBSCRIPTION_IDENTIFIER, variable_byte_integer_len(value))?;
    }
    if p.session_expiry_interval_secs.is_some() {
        add(SESSION_EXPIRY_INTERVAL, 4)?;
    }
    if let Some(value) = &p.assigned_client_identifier {
        add(ASSIGNED_CLIENT_IDENTIFIER, string_len(value, "assigned client identifier")?)?;
    }
    if p.server_keep_alive_secs.is_some() {
        add(SERVER_KEEP_ALIVE, 2)?;
    }
    if let Some(value) = &p.authentication_method {
        add(AUTHENTICATION_METHOD, string_len(value, "authentication method")?)?;
    }
    if let Some(value) = &p.authentication_data {
        if p.authentication_method.is_none() {
            return Err(EncodeError::InvalidPropertyValue {
                id: AUTHENTICATION_DATA,
                reason: "authentication data without authentication method",
            });
        }
        add(AUTHENTICATION_DATA, binary_len(value, "authentication data")?)?;
    }
    if p.request_problem_information.is_some() {
        add(REQUEST_PROBLEM_INFORMATION, 1)?;
    }
    if p.will_delay_interval_secs.is_some() {
        add(WILL_DELAY_INTERVAL, 4)?;
    }
    if p.request_response_information.is_some() {
        add(REQUEST_RESPONSE_INFORMATION, 1)?;
    }
    if let Some(value) = &p.response_information {
        add(RESPONSE_INFORMATION, string_len(value, "response information")?)?;
    }
    if let Some(value) = &p.server_reference {
        add(SERVER_REFERENCE, string_len(value, "server reference")?)?;
    }
    if let Some(value) = &p.reason_string {
        add(REASON_STRING, string_len(value, "reason string")?)?;
    }
    if let Some(value) = p.receive_maximum {
        if value == 0 {
            return Err(EncodeError::InvalidPropertyValue {
                id: RECEIVE_MAXIMUM,
                reason: "must not be zero",
            });
        }
        add(RECEIVE_MAXIMUM, 2)?;
    }
    if p.topic_alias_maximum.is_some() {
        add(TOPIC_ALIAS_MAXIMUM, 2)?;
    }
    if let Some(value) = p.topic_alias {
        if value == 0 {
            return Err(EncodeError::InvalidPropertyValue { id: TOPIC_ALIAS, reason: "must not be zero" });
        }
        add(TOPIC_ALIAS, 2)?;
    }
    if let Some(value) = p.maximum_qos {
        if value == QoS::ExactlyOnce {
            return Err(EncodeError::InvalidPropertyValue {
                id: MAXIMUM_QOS,
                reason: "maximum QoS is not 0 or 1",
            });
        }
        add(MAXIMUM_QOS, 1)?;
    }
    if p.retain_available.is_some() {
        add(RETAIN_AVAILABLE, 1)?;
    }
    for (key, value) in &p.user_properties {
        add(
            USER_PROPERTY,
            string_len(key, "user property name")? + string_len(value, "user property value")?,
        )?;
    }
    if let Some(value) = p.maximum_packet_size {
        if value == 0 {
            return Err(EncodeError::InvalidPropertyValue {
                id: MAXIMUM_PACKET_SIZE,
                reason: "must not be zero",
            });
        }
        add(MAXIMUM_PACKET_SIZE, 4)?;
    }
    if p.wildcard_subscription_available.is_some() {
        add(WILDCARD_SUBSCRIPTION_AVAILABLE, 1)?;
    }
    if p.subscription_identifiers_available.is_some() {
        add(SUBSCRIPTION_IDENTIFIER_AVAILABLE, 1)?;
    }
    if p.shared_subscription_available.is_some() {
        add(SHARED_SUBSCRIPTION_AVAILABLE, 1)?;
    }
    if len > VARIABLE_BYTE_INTEGER_MAX as usize {
        return Err(EncodeError::PacketTooLarge { remaining_len_bytes: len });
    }
    Ok(len)
}

/// Appends the property block: the length `content_len` (from [`properties_len`], which also
/// validated every value), then the properties in id order.
pub fn put_properties(out: &mut BytesMut, properties: &Properties, content_len: usize) {
    let content_len_u32 = u32::try_from(content_len).expect("property length checked by properties_len");
    put_variable_byte_integer(out, content_len_u32);
    let start_len = out.len();
    let p = properties;
    let put_bool = |out: &mut BytesMut, id: u8, value: Option<bool>| {
        if let Some(value) = value {
            out.put_u8(id);
            out.put_u8(u8::from(value));
        }
    };
    let put_str = |out: &mut BytesMut, id: u8, value: &Option<String>| {
        if let Some(value) = value {
            out.put_u8(id);
            put_string(out, value);
        }
    };
    let put_bin = |out: &mut BytesMut, id: u8, value: &Option<Bytes>| {
        if let Some(value) = value {
            out.put_u8(id);
            put_binary(out, value);
        }
    };
    let put_u32 = |out: &mut BytesMut, id: u8, value: Option<u32>| {
        if let Some(value) = value {
            out.put_u8(id);
            out.put_u32(value);
        }
    };
    let put_u16 = |out: &mut BytesMut, id: u8, value: Option<u16>| {
        if let Some(value) = value {
            out.put_u8(id);
            out.put_u16(value);
        }
    };
    put_bool(out, PAYLOAD_FORMAT_INDICATOR, p.payload_format_indicator);
    put_u32(out, MESSAGE_EXPIRY_INTERVAL, p.message_expiry_interval_secs);
    put_str(out, CONTENT_TYPE, &p.content_type);
    put_str(out, RESPONSE_TOPIC, &p.response_topic);
    put_bin(out, CORRELATION_DATA, &p.correlation_data);
    for &value in &p.subscription_identifiers {
        out.put_u8(SUBSCRIPTION_IDENTIFIER);
        put_variable_byte_integer(out, value);
    }
    put_u32(out, SESSION_EXPIRY_INTERVAL, p.session_expiry_interval_secs);
    put_str(out, ASSIGNED_CLIENT_IDENTIFIER, &p.assigned_client_identifier);
    put_u16(out, SERVER_KEEP_ALIVE, p.server_keep_alive_secs);
    put_str(out, AUTHENTICATION_METHOD, &p.authentication_method);
    put_bin(out, AUTHENTICATION_DATA, &p.authentication_data);
    put_bool(out, REQUEST_PROBLEM_INFORMATION, p.request_problem_information);
    put_u32(out, WILL_DELAY_INTERVAL, p.will_delay_interval_secs);
    put_bool(out, REQUEST_RESPONSE_INFORMATION, p.request_response_information);
    put_str(out, RESPONSE_INFORMATION, &p.response_information);
    put_str(out, SERVER_REFERENCE, &p.server_reference);
    put_str(out, REASON_STRING, &p.reason_string);
    put_u16(out, RECEIVE_MAXIMUM, p.receive_maximum);
    put_u16(out, TOPIC_ALIAS_MAXIMUM, p.topic_alias_maximum);
    put_u16(out, TOPIC_ALIAS, p.topic_alias);
    if let Some(value) = p.maximum_qos {
        out.put_u8(MAXIMUM_QOS);
        out.put_u8(value.as_u8());
    }
    put_bool(out, RETAIN_AVAILABLE, p.retain_available);
    for (key, value) in &p.user_properties {
        out.put_u8(USER_PROPERTY);
        put_string(out, key);
        put_string(out, value);
    }
    put_u32(out, MAXIMUM_PACKET_SIZE, p.maximum_packet_size);
    put_bool(out, WILDCARD_SUBSCRIPTION_AVAILABLE, p.wildcard_subscription_available);
    put_bool(out, SUBSCRIPTION_IDENTIFIER_AVAILABLE, p.subscription_identifiers_available);
    put_bool(out, SHARED_SUBSCRIPTION_AVAILABLE, p.shared_subscription_available);
    assert_eq!(out.len() - start_len, content_len, "property length plan disagrees with the bytes written");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_id_has_a_context_and_unknown_ids_have_none() {
        let known = [
            0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1C,
            0x1F, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A,
        ];
        for id in 0..=u8::MAX {
            assert_eq!(allowed_contexts(id).is_some(), known.contains(&id), "property {id:#04x}");
        }
        assert!(PropertyContext::Publish.allows(TOPIC_ALIAS));
        assert!(!PropertyContext::Will.allows(TOPIC_ALIAS));
        assert!(PropertyContext::Will.allows(WILL_DELAY_INTERVAL));
        assert!(!PropertyContext::Connect.allows(WILL_DELAY_INTERVAL));
    }
}
