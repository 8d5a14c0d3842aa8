//! Which reason codes each packet type may carry (the tables of MQTT 5 sections 3.2.2.2, 3.4.2.1,
//! 3.5.2.1, 3.6.2.1, 3.7.2.1, 3.9.3, 3.11.3, 3.14.2.1, 3.15.2.1, and MQTT 3.1.1 section 3.9.3).
//!
//! This module owns only these lists; it must never interpret a code (that is the broker's and
//! client's job) and holds no state.

use crate::mqtt::packet::ProtocolVersion;

/// Reason codes of a v5 CONNACK.
pub const fn is_valid_connack(code: u8) -> bool {
    matches!(
        code,
        0x00 | 0x80
            | 0x81
            | 0x82
            | 0x83
            | 0x84
            | 0x85
            | 0x86
            | 0x87
            | 0x88
            | 0x89
            | 0x8A
            | 0x8C
            | 0x90
            | 0x95
            | 0x97
            | 0x99
            | 0x9A
            | 0x9B
            | 0x9C
            | 0x9D
            | 0x9F
    )
}

/// Reason codes of a v5 PUBACK or PUBREC.
pub const fn is_valid_puback_or_pubrec(code: u8) -> bool {
    matches!(code, 0x00 | 0x10 | 0x80 | 0x83 | 0x87 | 0x90 | 0x91 | 0x97 | 0x99)
}

/// Reason codes of a v5 PUBREL or PUBCOMP.
pub const fn is_valid_pubrel_or_pubcomp(code: u8) -> bool {
    matches!(code, 0x00 | 0x92)
}

/// Reason codes of a SUBACK; v3.1.1 allows only the granted QoS values and 0x80 Failure.
pub const fn is_valid_suback(code: u8, version: ProtocolVersion) -> bool {
    match version {
        ProtocolVersion::V311 => matches!(code, 0x00 | 0x01 | 0x02 | 0x80),
        ProtocolVersion::V5 => {
            matches!(code, 0x00 | 0x01 | 0x02 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91 | 0x97 | 0x9E | 0xA1 | 0xA2)
        }
    }
}

/// Reason codes of a v5 UNSUBACK.
pub const fn is_valid_unsuback(code: u8) -> bool {
    matches!(code, 0x00 | 0x11 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91)
}

/// Reason codes of a v5 DISCONNECT.
pub const fn is_valid_disconnect(code: u8) -> bool {
    matches!(
        code,
        0x00 | 0x04
            | 0x80
            | 0x81
            | 0x82
            | 0x83
            | 0x87
            | 0x89
            | 0x8B
            | 0x8D
            | 0x8E
            | 0x8F
            | 0x90
            | 0x93
            | 0x94
            | 0x95
            | 0x96
            | 0x97
            | 0x98
            | 0x99
            | 0x9A
            | 0x9B
            | 0x9C
            | 0x9D
            | 0x9E
            | 0x9F
            | 0xA0
            | 0xA1
            | 0xA2
    )
}

/// Reason codes of an AUTH.
pub const fn is_valid_auth(code: u8) -> bool {
    matches!(code, 0x00 | 0x18 | 0x19)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_agree_on_shared_codes_and_reject_gaps() {
        assert!(is_valid_connack(0x00) && is_valid_connack(0x84) && !is_valid_connack(0x8B));
        assert!(is_valid_puback_or_pubrec(0x10) && !is_valid_puback_or_pubrec(0x8F));
        assert!(is_valid_pubrel_or_pubcomp(0x92) && !is_valid_pubrel_or_pubcomp(0x10));
        assert!(is_valid_suback(0xA2, ProtocolVersion::V5) && !is_valid_suback(0xA2, ProtocolVersion::V311));
        assert!(is_valid_unsuback(0x11) && !is_valid_unsuback(0x10));
        assert!(is_valid_disconnect(0x04) && !is_valid_disconnect(0x84));
        assert!(is_valid_auth(0x18) && !is_valid_auth(0x80));
    }
}
