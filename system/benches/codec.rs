//! Criterion benchmark of the MQTT codec on the packets the data plane moves most: a QoS 1
//! PUBLISH (v3.1.1, and v5 with a few properties; 64 B and 1 KiB payloads), its PUBACK, and a
//! CONNECT. Each case measures encode of one packet into a reused buffer, and decode of a batch
//! of packets from one read buffer (report the batch time divided by the batch size).

use std::hint::black_box;
use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use edgeproof_system::mqtt::codec::{decode, encode, encode_to_bytes};
use edgeproof_system::mqtt::{Connect, Packet, Properties, ProtocolVersion, PubReply, Publish, QoS, Will};

/// Packets decoded per iteration of a decode benchmark.
const DECODE_BATCH_PACKETS: usize = 64;

fn publish(payload_len_bytes: usize, version: ProtocolVersion) -> Packet {
    let properties = match version {
        ProtocolVersion::V311 => Properties::default(),
        ProtocolVersion::V5 => Properties {
            payload_format_indicator: Some(false),
            message_expiry_interval_secs: Some(3600),
            content_type: Some("application/octet-stream".to_owned()),
            user_properties: vec![("trace".to_owned(), "0af7651916cd43dd".to_owned())],
            ..Properties::default()
        },
    };
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "site/7/line/3/sensor/temperature".to_owned(),
        packet_id: NonZeroU16::new(4242),
        properties,
        payload: Bytes::from(vec![0xA5; payload_len_bytes]),
    })
}

fn connect(version: ProtocolVersion) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        keep_alive_secs: 30,
        client_id: "edge-device-000123".to_owned(),
        will: Some(Will {
            topic: "site/7/device/123/status".to_owned(),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::default(),
        }),
        username: Some("device-123".to_owned()),
        password: Some(Bytes::from_static(b"secret-token")),
        properties: match version {
            ProtocolVersion::V311 => Properties::default(),
            ProtocolVersion::V5 => Properties {
                session_expiry_interval_secs: Some(300),
                receive_maximum: Some(100),
                ..Properties::default()
            },
        },
    }))
}

fn bench_packet(c: &mut Criterion, name: &str, packet: &Packet, version: ProtocolVersion) {
    let encoded = encode_to_bytes(packet, version).expect("benchmark packets are valid");
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    let mut out = BytesMut::with_capacity(encoded.len() * 2);
    group.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            encode(black_box(packet), version, &mut out).unwrap();
            black_box(out.len())
        })
    });
    // Decoding consumes its input. As on a connection, a read buffer holds many packets back to
    // back and the decoder takes them one by one; each iteration decodes a batch from a buffer
    // filled outside the timed section, so the time per packet is the iteration time divided by
    // DECODE_BATCH_PACKETS.
    let batch: Vec<u8> = encoded.iter().copied().cycle().take(encoded.len() * DECODE_BATCH_PACKETS).collect();
    group.throughput(Throughput::Elements(DECODE_BATCH_PACKETS as u64));
    group.bench_function("decode_batch", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&batch[..]),
            |input| {
                for _ in 0..DECODE_BATCH_PACKETS {
                    let packet = decode(black_box(input), version, u32::MAX).unwrap().unwrap();
                    black_box(packet);
                }
                assert!(input.is_empty());
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn codec_benchmarks(c: &mut Criterion) {
    let v3 = ProtocolVersion::V311;
    let v5 = ProtocolVersion::V5;
    bench_packet(c, "publish_qos1_v311_64B", &publish(64, v3), v3);
    bench_packet(c, "publish_qos1_v311_1KiB", &publish(1024, v3), v3);
    bench_packet(c, "publish_qos1_v5_props_64B", &publish(64, v5), v5);
    bench_packet(c, "publish_qos1_v5_props_1KiB", &publish(1024, v5), v5);
    bench_packet(c, "connect_v311", &connect(v3), v3);
    bench_packet(c, "connect_v5", &connect(v5), v5);
    let puback = Packet::PubAck(PubReply::success(NonZeroU16::new(4242).unwrap()));
    bench_packet(c, "puback_v311", &puback, v3);
    bench_packet(c, "puback_v5", &puback, v5);
}

criterion_group!(benches, codec_benchmarks);
criterion_main!(benches);
