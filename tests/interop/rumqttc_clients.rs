//! rumqttc (a widely used third-party Rust MQTT client) against our broker: MQTT 3.1.1 and 5,
//! QoS 0/1/2 publish and subscribe, persistent session resume, wills on abrupt and on normal
//! disconnects, and a broker shutdown as each version sees it.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::support::{start_broker, within};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    V311,
    V5,
}

/// What a test sees from a rumqttc event loop, the same for both protocol versions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    ConnAck {
        session_present: bool,
        success: bool,
    },
    SubAck,
    Publish {
        topic: String,
        payload: Bytes,
        qos: u8,
    },
    PubAck,
    PubComp,
    OutgoingDisconnect,
    /// A DISCONNECT from the server (v5 only), with its reason code.
    ServerDisconnect {
        reason: u8,
    },
    Error(String),
}

enum Handle {
    V311(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// One rumqttc client whose event loop runs in a task; dropping it aborts that task, which
/// drops the TCP connection without a DISCONNECT.
pub(crate) struct TestClient {
    handle: Handle,
    seen: mpsc::Receiver<Seen>,
    event_loop: JoinHandle<()>,
    session_present: bool,
}

impl Drop for TestClient {
    fn drop(&mut self) {
        self.event_loop.abort();
    }
}

pub(crate) struct Options<'a> {
    clean: bool,
    will: Option<(&'a str, &'a str)>,
}

pub(crate) const CLEAN: Options<'static> = Options { clean: true, will: None };
const PERSISTENT: Options<'static> = Options { clean: false, will: None };

fn qos_v311(qos: u8) -> rumqttc::QoS {
    match qos {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    }
}

fn qos_v5(qos: u8) -> rumqttc::v5::mqttbytes::QoS {
    match qos {
        0 => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        1 => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        _ => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}

pub(crate) async fn connect(
    version: Version,
    port: u16,
    client_id: &str,
    options: Options<'_>,
) -> TestClient {
    let (sender, seen) = mpsc::channel(1_024);
    let (handle, event_loop) = match version {
        Version::V311 => {
            use rumqttc::{Event, Packet};
            let mut mqtt_options = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
            mqtt_options.set_keep_alive(Duration::from_secs(30));
            mqtt_options.set_clean_session(options.clean);
            mqtt_options.set_max_packet_size(1024 * 1024, 1024 * 1024);
            if let Some((topic, payload)) = options.will {
                mqtt_options.set_last_will(rumqttc::LastWill::new(topic, payload, qos_v311(1), false));
            }
            let (client, mut event_loop) = rumqttc::AsyncClient::new(mqtt_options, 1_024);
            let task = tokio::spawn(async move {
                loop {
                    let seen = match event_loop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(connack))) => Seen::ConnAck {
                            session_present: connack.session_present,
                            success: connack.code == rumqttc::ConnectReturnCode::Success,
                        },
                        Ok(Event::Incoming(Packet::SubAck(_))) => Seen::SubAck,
                        Ok(Event::Incoming(Packet::Publish(publish))) => Seen::Publish {
                            topic: publish.topic.clone(),
                            payload: publish.payload.clone(),
                            qos: publish.qos as u8,
                        },
                        Ok(Event::Incoming(Packet::PubAck(_))) => Seen::PubAck,
                        Ok(Event::Incoming(Packet::PubComp(_))) => Seen::PubComp,
                        Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => Seen::OutgoingDisconnect,
                        Ok(_) => continue,
                        Err(error) => Seen::Error(error.to_string()),
                    };
                    let stop = matches!(seen, Seen::Error(_));
                    if sender.send(seen).await.is_err() || stop {
                        return;
                    }
                }
            });
            (Handle::V311(client), task)
        }
        Version::V5 => {
            use rumqttc::v5::Event;
            use rumqttc::v5::mqttbytes::v5::Packet;
            let mut mqtt_options = rumqttc::v5::MqttOptions::new(client_id, "127.0.0.1", port);
            mqtt_options.set_keep_alive(Duration::from_secs(30));
            mqtt_options.set_clean_start(options.clean);
            mqtt_options.set_max_packet_size(Some(1024 * 1024));
            if !options.clean {
                mqtt_options.set_session_expiry_interval(Some(3_600));
            }
            if let Some((topic, payload)) = options.will {
                let will = rumqttc::v5::mqttbytes::v5::LastWill::new(topic, payload, qos_v5(1), false, None);
                mqtt_options.set_last_will(will);
            }
            let (client, mut event_loop) = rumqttc::v5::AsyncClient::new(mqtt_options, 1_024);
            let task = tokio::spawn(async move {
                loop {
                    let seen = match event_loop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(connack))) => Seen::ConnAck {
                            session_present: connack.session_present,
                            success: connack.code == rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success,
                        },
                        Ok(Event::Incoming(Packet::SubAck(_))) => Seen::SubAck,
                        Ok(Event::Incoming(Packet::Publish(publish))) => Seen::Publish {
                            topic: String::from_utf8_lossy(&publish.topic).into_owned(),
                            payload: publish.payload.clone(),
                            qos: publish.qos as u8,
                        },
                        Ok(Event::Incoming(Packet::PubAck(_))) => Seen::PubAck,
                        Ok(Event::Incoming(Packet::PubComp(_))) => Seen::PubComp,
                        Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => Seen::OutgoingDisconnect,
                        Ok(_) => continue,
                        // rumqttc reports a server's DISCONNECT as the error that ends the loop.
                        Err(rumqttc::v5::ConnectionError::MqttState(
                            rumqttc::v5::StateError::ServerDisconnect { reason_code, .. },
                        )) => Seen::ServerDisconnect { reason: reason_code as u8 },
                        Err(error) => Seen::Error(error.to_string()),
                    };
                    let stop = matches!(seen, Seen::Error(_) | Seen::ServerDisconnect { .. });
                    if sender.send(seen).await.is_err() || stop {
                        return;
                    }
                }
            });
            (Handle::V5(client), task)
        }
    };
    let mut client = TestClient { handle, seen, event_loop, session_present: false };
    match client.next(&format!("CONNACK for {client_id}")).await {
        Seen::ConnAck { session_present, success: true } => client.session_present = session_present,
        other => panic!("{client_id}: expected a successful CONNACK, got {other:?}"),
    }
    client
}

impl TestClient {
    async fn next(&mut self, what: &str) -> Seen {
        within(what, self.seen.recv()).await.unwrap_or_else(|| panic!("event loop ended waiting for {what}"))
    }

    /// The next event that is not a PUBACK/PUBCOMP (acks of our own publishes).
    pub(crate) async fn next_delivery(&mut self, what: &str) -> Seen {
        loop {
            match self.next(what).await {
                Seen::PubAck | Seen::PubComp => {}
                other => return other,
            }
        }
    }

    pub(crate) async fn subscribe(&mut self, filter: &str, qos: u8) {
        match &self.handle {
            Handle::V311(client) => client.subscribe(filter, qos_v311(qos)).await.expect("subscribe queued"),
            Handle::V5(client) => client.subscribe(filter, qos_v5(qos)).await.expect("subscribe queued"),
        }
        assert_eq!(self.next(&format!("SUBACK for {filter}")).await, Seen::SubAck);
    }

    /// Publishes and, for QoS 1/2, waits for the PUBACK/PUBCOMP.
    pub(crate) async fn publish(&mut self, topic: &str, payload: &str, qos: u8) {
        let payload = payload.as_bytes().to_vec();
        match &self.handle {
            Handle::V311(client) => {
                client.publish(topic, qos_v311(qos), false, payload).await.expect("queued")
            }
            Handle::V5(client) => client.publish(topic, qos_v5(qos), false, payload).await.expect("queued"),
        }
        let expected = match qos {
            0 => return,
            1 => Seen::PubAck,
            _ => Seen::PubComp,
        };
        assert_eq!(self.next(&format!("ack of QoS {qos} publish on {topic}")).await, expected);
    }

    /// Sends DISCONNECT and waits until it has gone out.
    pub(crate) async fn disconnect(mut self) {
        match &self.handle {
            Handle::V311(client) => client.disconnect().await.expect("disconnect queued"),
            Handle::V5(client) => client.disconnect().await.expect("disconnect queued"),
        }
        loop {
            match self.next("DISCONNECT to go out").await {
                Seen::OutgoingDisconnect | Seen::Error(_) => break,
                _ => {}
            }
        }
    }
}

async fn publish_and_receive_at_every_qos(version: Version) {
    let broker = start_broker().await;
    let port = broker.local_addr().port();
    let mut subscriber = connect(version, port, "rumqttc-subscriber", CLEAN).await;
    subscriber.subscribe("interop/qos/#", 2).await;
    let mut publisher = connect(version, port, "rumqttc-publisher", CLEAN).await;
    for qos in 0..=2u8 {
        publisher.publish(&format!("interop/qos/{qos}"), &format!("payload at qos {qos}"), qos).await;
        let expected = Seen::Publish {
            topic: format!("interop/qos/{qos}"),
            payload: Bytes::from(format!("payload at qos {qos}")),
            qos,
        };
        assert_eq!(subscriber.next_delivery(&format!("QoS {qos} delivery")).await, expected);
    }
    // A subscription at QoS 0 downgrades a QoS 2 publish (the minimum of both).
    let mut low = connect(version, port, "rumqttc-low", CLEAN).await;
    low.subscribe("interop/low", 0).await;
    publisher.publish("interop/low", "downgraded", 2).await;
    let expected = Seen::Publish { topic: "interop/low".into(), payload: Bytes::from("downgraded"), qos: 0 };
    assert_eq!(low.next_delivery("downgraded delivery").await, expected);
    publisher.disconnect().await;
    subscriber.disconnect().await;
    broker.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn rumqttc_v311_publishes_and_receives_at_qos_0_1_2() {
    publish_and_receive_at_every_qos(Version::V311).await;
}

#[tokio::test]
async fn rumqttc_v5_publishes_and_receives_at_qos_0_1_2() {
    publish_and_receive_at_every_qos(Version::V5).await;
}

async fn persistent_session_resumes(version: Version) {
    let broker = start_broker().await;
    let port = broker.local_addr().port();
    let mut subscriber = connect(version, port, "rumqttc-persistent", PERSISTENT).await;
    assert!(!subscriber.session_present, "a first connect finds no session");
    subscriber.subscribe("interop/persist", 1).await;
    subscriber.disconnect().await;

    let mut publisher = connect(version, port, "rumqttc-persist-publisher", CLEAN).await;
    for sequence in 0..3 {
        publisher.publish("interop/persist", &format!("while away {sequence}"), 1).await;
    }

    let mut subscriber = connect(version, port, "rumqttc-persistent", PERSISTENT).await;
    assert!(subscriber.session_present, "the session survived the disconnect");
    for sequence in 0..3 {
        let expected = Seen::Publish {
            topic: "interop/persist".into(),
            payload: Bytes::from(format!("while away {sequence}")),
            qos: 1,
        };
        assert_eq!(subscriber.next_delivery("queued delivery").await, expected);
    }
    subscriber.disconnect().await;
    publisher.disconnect().await;
    broker.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn rumqttc_v311_persistent_session_resumes_with_queued_messages() {
    persistent_session_resumes(Version::V311).await;
}

#[tokio::test]
async fn rumqttc_v5_persistent_session_resumes_with_queued_messages() {
    persistent_session_resumes(Version::V5).await;
}

async fn will_depends_on_how_the_client_left(version: Version) {
    let broker = start_broker().await;
    let port = broker.local_addr().port();
    let mut watcher = connect(version, port, "rumqttc-watcher", CLEAN).await;
    watcher.subscribe("interop/will/#", 1).await;

    // Abrupt: the TCP connection drops without DISCONNECT, so the will is published.
    let abrupt = connect(
        version,
        port,
        "rumqttc-abrupt",
        Options { clean: true, will: Some(("interop/will/abrupt", "abrupt is gone")) },
    )
    .await;
    drop(abrupt);
    let expected =
        Seen::Publish { topic: "interop/will/abrupt".into(), payload: Bytes::from("abrupt is gone"), qos: 1 };
    assert_eq!(watcher.next_delivery("the will of the abrupt client").await, expected);

    // Normal: DISCONNECT first, so the will is discarded. A sentinel published afterwards must
    // be the next thing the watcher sees.
    let polite = connect(
        version,
        port,
        "rumqttc-polite",
        Options { clean: true, will: Some(("interop/will/polite", "polite is gone")) },
    )
    .await;
    polite.disconnect().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut sentinel = connect(version, port, "rumqttc-sentinel", CLEAN).await;
    sentinel.publish("interop/will/sentinel", "after the polite disconnect", 1).await;
    let expected = Seen::Publish {
        topic: "interop/will/sentinel".into(),
        payload: Bytes::from("after the polite disconnect"),
        qos: 1,
    };
    assert_eq!(watcher.next_delivery("the sentinel, and no will before it").await, expected);
    broker.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn rumqttc_v311_will_is_sent_on_abrupt_loss_and_not_after_disconnect() {
    will_depends_on_how_the_client_left(Version::V311).await;
}

#[tokio::test]
async fn rumqttc_v5_will_is_sent_on_abrupt_loss_and_not_after_disconnect() {
    will_depends_on_how_the_client_left(Version::V5).await;
}

#[tokio::test]
async fn rumqttc_v5_is_told_the_server_is_shutting_down_and_v311_is_closed() {
    // The wills a shutdown publishes are checked in the core's tests: rumqttc drops a PUBLISH
    // read in the same batch as the DISCONNECT that ends its event loop, so it cannot show them.
    let broker = start_broker().await;
    let port = broker.local_addr().port();
    let mut modern = connect(Version::V5, port, "rumqttc-shutdown-v5", CLEAN).await;
    let mut classic = connect(Version::V311, port, "rumqttc-shutdown-v311", CLEAN).await;

    let started = tokio::time::Instant::now();
    within("the graceful shutdown", broker.shutdown()).await.expect("clean shutdown");
    // The peers close as soon as they are told, so the shutdown never waits out the 2 s linger.
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1_500), "shutdown took {took:?}");

    assert_eq!(modern.next("DISCONNECT 0x8B").await, Seen::ServerDisconnect { reason: 0x8B });
    // MQTT 3.1.1 has no server DISCONNECT: the connection just closes.
    assert!(matches!(classic.next("the close").await, Seen::Error(_)));
}
