//! Criterion benchmark of the client core on its hot paths: a QoS 1 publish through to its
//! PUBACK, a QoS 0 publish, an inbound QoS 1 message (decode, deliver, PUBACK), and creating a
//! client from a shared config (what a million simulated devices pay each).

use std::hint::black_box;
use std::sync::Arc;

use bytes::BytesMut;
use criterion::{Criterion, criterion_group, criterion_main};
use edgeproof_system::Time;
use edgeproof_system::client::{Client, ClientConfig, ClientEvent, OutgoingPublish};
use edgeproof_system::mqtt::codec::encode;
use edgeproof_system::mqtt::{ConnAck, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode};

const TOPIC: &str = "site/7/line/3/sensor/temperature";

/// A client connected to a (scripted) server, with every output drained.
fn connected_client(protocol: ProtocolVersion) -> Client {
    let config = ClientConfig { client_id: "bench-device".into(), protocol, ..ClientConfig::default() };
    let mut client = Client::new(config, 1);
    client.connect(Time::ZERO);
    client.handle_transport_connected(Time::ZERO);
    let connack = Packet::ConnAck(ConnAck {
        session_present: false,
        reason_code: ReasonCode::SUCCESS,
        properties: Properties::default(),
    });
    let mut bytes = BytesMut::new();
    encode(&connack, protocol, &mut bytes).expect("CONNACK encodes");
    client.handle_bytes(Time::ZERO, &bytes);
    while client.poll_transmit().is_some() {}
    while client.poll_event().is_some() {}
    assert!(client.is_connected());
    client
}

fn bench_client(criterion: &mut Criterion) {
    let payload = bytes::Bytes::from(vec![0xA5u8; 64]);
    for protocol in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let name = match protocol {
            ProtocolVersion::V311 => "v311",
            ProtocolVersion::V5 => "v5",
        };
        let mut client = connected_client(protocol);
        let mut packet_id: u16 = 0;
        criterion.bench_function(&format!("client/{name}/qos1_publish_to_puback_64B"), |bencher| {
            bencher.iter(|| {
                let message = OutgoingPublish::new(TOPIC, payload.clone(), QoS::AtLeastOnce);
                client.publish(Time::ZERO, message).expect("accepted");
                black_box(client.poll_transmit().expect("PUBLISH written"));
                // Ids are handed out in order and freed by the ack, so the next one is known.
                packet_id = packet_id.checked_add(1).unwrap_or(1);
                let [high, low] = packet_id.to_be_bytes();
                client.handle_bytes(Time::ZERO, &[0x40, 0x02, high, low]);
                let event = client.poll_event().expect("acked");
                assert!(matches!(event, ClientEvent::PublishAcked { .. }), "{event:?}");
            });
        });
        criterion.bench_function(&format!("client/{name}/qos0_publish_64B"), |bencher| {
            bencher.iter(|| {
                let message = OutgoingPublish::new(TOPIC, payload.clone(), QoS::AtMostOnce);
                client.publish(Time::ZERO, message).expect("accepted");
                black_box(client.poll_transmit().expect("PUBLISH written"));
                black_box(client.poll_event().expect("sent"));
            });
        });
        let mut inbound = BytesMut::new();
        let message = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: TOPIC.into(),
            packet_id: std::num::NonZeroU16::new(7),
            properties: Properties::default(),
            payload: payload.clone(),
        });
        encode(&message, protocol, &mut inbound).expect("PUBLISH encodes");
        criterion.bench_function(&format!("client/{name}/inbound_qos1_64B"), |bencher| {
            bencher.iter(|| {
                client.handle_bytes(Time::ZERO, &inbound);
                black_box(client.poll_event().expect("delivered"));
                black_box(client.poll_transmit().expect("PUBACK written"));
            });
        });
    }
    let shared = Arc::new(ClientConfig { client_id: "bench-device".into(), ..ClientConfig::default() });
    criterion.bench_function("client/create_from_shared_config", |bencher| {
        let mut seed = 0u64;
        bencher.iter(|| {
            seed += 1;
            black_box(Client::with_shared_config(Arc::clone(&shared), seed))
        });
    });
}

criterion_group!(benches, bench_client);
criterion_main!(benches);
