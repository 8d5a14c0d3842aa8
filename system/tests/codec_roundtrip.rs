//! Property tests of the MQTT codec on valid packets of both versions: decode(encode(p)) == p,
//! `encoded_len` is exact, any split of the bytes decodes to the same packet, and no input makes
//! `decode` panic (random bytes and mutated valid encodings).

mod common;

use bytes::BytesMut;
use edgeproof_system::mqtt::codec::{decode, encode, encode_to_bytes, encoded_len};
use edgeproof_system::mqtt::{Packet, ProtocolVersion};
use proptest::collection::vec;
use proptest::prelude::*;

const NO_LIMIT: u32 = u32::MAX;

/// Feeds `bytes` to the decoder in chunks of the given sizes and returns every decoded packet;
/// asserts nothing is consumed while a packet is incomplete.
fn decode_in_chunks(bytes: &[u8], chunk_sizes: &[usize], version: ProtocolVersion) -> Vec<Packet> {
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    let mut offset = 0;
    let mut sizes = chunk_sizes.iter().copied().cycle();
    while offset < bytes.len() {
        let size = sizes.next().unwrap_or(1).clamp(1, bytes.len() - offset);
        buf.extend_from_slice(&bytes[offset..offset + size]);
        offset += size;
        loop {
            let len_before = buf.len();
            match decode(&mut buf, version, NO_LIMIT).expect("valid bytes decode") {
                Some(packet) => packets.push(packet),
                None => {
                    assert_eq!(buf.len(), len_before, "an incomplete packet must not be consumed");
                    break;
                }
            }
        }
    }
    assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
    packets
}

proptest! {
    // Failures are reported with their minimal input; no regression files are written into
    // the source tree.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn decode_of_encode_is_identity((version, packet) in common::versioned_packet()) {
        let bytes = encode_to_bytes(&packet, version).expect("valid packets encode");
        prop_assert_eq!(bytes.len(), encoded_len(&packet, version).unwrap());
        let mut buf = bytes.clone();
        let decoded = decode(&mut buf, version, NO_LIMIT).expect("decodes");
        prop_assert_eq!(decoded.as_ref(), Some(&packet));
        prop_assert!(buf.is_empty());
        // Exactly the packet size is the limit that still passes; one byte less is rejected.
        let exact_limit = u32::try_from(bytes.len()).unwrap();
        prop_assert_eq!(decode(&mut bytes.clone(), version, exact_limit).unwrap(), Some(packet.clone()));
        let too_small = decode(&mut bytes.clone(), version, exact_limit - 1).unwrap_err();
        prop_assert_eq!(too_small.reason_code().0, 0x95);
    }

    #[test]
    fn encode_appends_after_existing_bytes((version, packet) in common::versioned_packet(), prefix in vec(any::<u8>(), 0..8)) {
        let mut out = BytesMut::from(&prefix[..]);
        encode(&packet, version, &mut out).unwrap();
        prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
        prop_assert_eq!(out.len() - prefix.len(), encoded_len(&packet, version).unwrap());
    }

    #[test]
    fn any_split_decodes_the_same_packets(
        (version, packet) in common::versioned_packet(),
        chunk_sizes in vec(1usize..40, 1..8),
    ) {
        let one = encode_to_bytes(&packet, version).unwrap();
        // Three copies back to back: packet boundaries fall inside chunks too.
        let mut stream = one.to_vec();
        stream.extend_from_slice(&one);
        stream.extend_from_slice(&one);
        let by_chunks = decode_in_chunks(&stream, &chunk_sizes, version);
        prop_assert_eq!(by_chunks, vec![packet.clone(), packet.clone(), packet.clone()]);
        let byte_by_byte = decode_in_chunks(&one, &[1], version);
        prop_assert_eq!(byte_by_byte, vec![packet]);
    }

    #[test]
    fn random_bytes_never_panic(version in common::version(), bytes in vec(any::<u8>(), 0..256), limit in prop_oneof![Just(u32::MAX), 0u32..300]) {
        let mut buf = BytesMut::from(&bytes[..]);
        // Decode until the decoder stops; every accepted packet must re-encode and decode again.
        while let Ok(Some(packet)) = decode(&mut buf, version, limit) {
            check_accepted_packet_reencodes(&packet, version);
        }
    }

    #[test]
    fn mutated_valid_encodings_never_panic(
        (version, packet) in common::versioned_packet(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encode_to_bytes(&packet, version).unwrap().to_vec();
        for (index, value) in flips {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(decoded)) = decode(&mut buf, version, NO_LIMIT) {
            check_accepted_packet_reencodes(&decoded, version);
        }
    }
}

/// Whatever the decoder accepts, the encoder can encode, and that encoding decodes to the same
/// packet: the two directions enforce the same rules.
fn check_accepted_packet_reencodes(packet: &Packet, version: ProtocolVersion) {
    let version = match packet {
        Packet::Connect(connect) => connect.protocol,
        _ => version,
    };
    let bytes = encode_to_bytes(packet, version)
        .unwrap_or_else(|error| panic!("{packet:?} decoded but does not encode: {error}"));
    let mut buf = bytes.clone();
    assert_eq!(decode(&mut buf, version, NO_LIMIT).unwrap().as_ref(), Some(packet));
}
