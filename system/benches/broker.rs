//! Criterion benchmark of the sans-IO broker core on the paths the fast simulator drives hardest:
//! a QoS 1 PUBLISH routed to one subscriber among many sessions and acknowledged (the device
//! telemetry/command path), a QoS 0 fan-out to 1,000 subscribers, and connecting persistent
//! sessions (the cost of a million devices coming online).

use std::hint::black_box;
use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use edgeproof_system::Time;
use edgeproof_system::broker::{Broker, BrokerConfig, ConnectionId, Transmit};
use edgeproof_system::mqtt::codec::encode;
use edgeproof_system::mqtt::{
    Connect, Packet, Properties, ProtocolVersion, PubReply, Publish, QoS, Subscribe, Subscription,
    SubscriptionOptions,
};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn bytes_of(packet: &Packet) -> Bytes {
    let mut out = BytesMut::new();
    encode(packet, V5, &mut out).expect("bench packets encode");
    out.freeze()
}

fn connect_bytes(client_id: &str) -> Bytes {
    bytes_of(&Packet::Connect(Box::new(Connect {
        protocol: V5,
        clean_start: false,
        keep_alive_secs: 60,
        client_id: client_id.to_owned(),
        will: None,
        username: None,
        password: None,
        properties: Properties { session_expiry_interval_secs: Some(3_600), ..Properties::default() },
    })))
}

fn subscribe_bytes(filter: &str, qos: QoS) -> Bytes {
    bytes_of(&Packet::Subscribe(Subscribe {
        packet_id: NonZeroU16::new(1).unwrap(),
        subscriptions: vec![Subscription {
            topic_filter: filter.to_owned(),
            options: SubscriptionOptions::with_qos(qos),
        }],
        properties: Properties::default(),
    }))
}

fn publish_bytes(topic: &str, qos: QoS, packet_id: u16) -> Bytes {
    bytes_of(&Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.to_owned(),
        packet_id: (qos != QoS::AtMostOnce).then(|| NonZeroU16::new(packet_id).unwrap()),
        properties: Properties::default(),
        payload: Bytes::from(vec![0x5A; 64]),
    }))
}

fn drain(broker: &mut Broker) -> usize {
    let mut transmits = 0;
    while let Some(transmit) = broker.poll_transmit() {
        if let Transmit::Send { bytes, .. } = transmit {
            black_box(bytes);
        }
        transmits += 1;
    }
    while broker.poll_event().is_some() {}
    transmits
}

/// A broker with `devices` connected persistent sessions, device `i` subscribed to `cmd/{i}`
/// (QoS 1) and, when `broadcast`, to `broadcast` (QoS 0); plus one publisher connection.
fn broker_with_devices(devices: u64, broadcast: bool) -> (Broker, ConnectionId) {
    let mut broker = Broker::new(BrokerConfig::default());
    let now = Time::from_secs(1);
    for device in 0..devices {
        let connection = ConnectionId(device);
        broker.handle_connection_opened(now, connection);
        broker.handle_bytes(now, connection, &connect_bytes(&format!("device-{device}")));
        broker.handle_bytes(now, connection, &subscribe_bytes(&format!("cmd/{device}"), QoS::AtLeastOnce));
        if broadcast {
            broker.handle_bytes(now, connection, &subscribe_bytes("broadcast", QoS::AtMostOnce));
        }
    }
    let publisher = ConnectionId(devices);
    broker.handle_connection_opened(now, publisher);
    broker.handle_bytes(now, publisher, &connect_bytes("publisher"));
    drain(&mut broker);
    (broker, publisher)
}

fn routing(c: &mut Criterion) {
    let devices = 10_000u64;
    let (mut broker, publisher) = broker_with_devices(devices, false);
    let now = Time::from_secs(2);
    // Pre-encoded inputs: a QoS 1 command per device and the device's PUBACK (its first
    // outbound packet id is 1, then 2, ... so ids are tracked per device).
    let publishes: Vec<Bytes> =
        (0..devices).map(|device| publish_bytes(&format!("cmd/{device}"), QoS::AtLeastOnce, 1)).collect();
    let pubacks: Vec<Bytes> = (1..=u16::MAX)
        .map(|packet_id| bytes_of(&Packet::PubAck(PubReply::success(NonZeroU16::new(packet_id).unwrap()))))
        .collect();
    let mut next_device = 0u64;
    let mut device_packet_ids = vec![1u16; devices as usize];
    let mut group = c.benchmark_group("broker");
    group.throughput(Throughput::Elements(1));
    group.bench_function("qos1_publish_route_deliver_ack_among_10k_sessions", |b| {
        b.iter(|| {
            let device = next_device % devices;
            next_device += 1;
            // The publisher's PUBACK comes at once, so its packet id 1 is free again every time.
            broker.handle_bytes(now, publisher, &publishes[device as usize]);
            drain(&mut broker);
            let packet_id = &mut device_packet_ids[device as usize];
            broker.handle_bytes(now, ConnectionId(device), &pubacks[usize::from(*packet_id) - 1]);
            *packet_id = *packet_id % u16::MAX + 1;
        })
    });
    assert_eq!(broker.stats().dropped_total(), 0);

    let (mut fan_out, fan_publisher) = broker_with_devices(1_000, true);
    let broadcast = publish_bytes("broadcast", QoS::AtMostOnce, 0);
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("qos0_fan_out_to_1000_subscribers", |b| {
        b.iter(|| {
            fan_out.handle_bytes(now, fan_publisher, &broadcast);
            assert_eq!(drain(&mut fan_out), 1_000);
        })
    });

    group.throughput(Throughput::Elements(1_000));
    group.sample_size(10);
    group.bench_function("connect_and_subscribe_1000_persistent_sessions", |b| {
        b.iter_batched(|| (), |()| black_box(broker_with_devices(1_000, false)), BatchSize::PerIteration)
    });
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
