//! `edgeproof roundtrip`: a publish/subscribe round trip through the real broker on loopback.
//!
//! This module owns the round trip's script and its checks: it starts the broker shell on an
//! ephemeral port of 127.0.0.1, connects a subscriber on `demo/#` and a publisher through the
//! client shell, publishes numbered, timestamped messages, checks that every message arrived
//! exactly once and in order, and prints latency percentiles and throughput. It must never hold
//! MQTT logic (that is the cores') nor grow into a scenario runner (that is `scenarios`/`sim`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use edgeproof_system::broker::BrokerConfig;
use edgeproof_system::client::{ClientConfig, ClientEvent, OutgoingPublish, PublishError, PublishToken};
use edgeproof_system::mqtt::{Publish, QoS, ReasonCode, Subscription, SubscriptionOptions};
use edgeproof_system::net::{TokioClock, TokioNet};
use edgeproof_system::shell::{
    BrokerHandle, BrokerShellConfig, ClientHandle, ClientShellConfig, ClientShellError,
};
use edgeproof_system::{Clock, Time};
use rustc_hash::FxHashMap;
use tokio::sync::mpsc;

/// The topic the publisher writes to; the subscriber listens on `demo/#`.
const DEMO_TOPIC: &str = "demo/readings";
/// Payload layout: sequence number then send time in nanoseconds, both big-endian u64.
const PAYLOAD_BYTES: usize = 16;
/// How long the subscriber keeps listening for duplicates after the last expected message.
const DUPLICATE_GRACE: Duration = Duration::from_millis(100);
/// Every wait of the round trip is bounded by this; the whole run stays well under it.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args)]
pub struct RoundtripArgs {
    /// How many messages the publisher sends.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    messages: u64,
    /// QoS of the publishes and the subscription (0, 1 or 2).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
}

pub fn run(args: RoundtripArgs) -> ExitCode {
    let qos = QoS::from_u8(args.qos).expect("clap bounds qos to 0..=2");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(round_trip(args.messages, qos)) {
        Ok(report) => {
            report.print();
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("roundtrip FAILED: {failure}");
            ExitCode::FAILURE
        }
    }
}

/// What the round trip measured.
struct DemoReport {
    messages: u64,
    qos: QoS,
    broker_addr: SocketAddr,
    /// Publish call to PUBACK/PUBCOMP (QoS 1/2 only), nanoseconds.
    ack_latencies_nanos: Vec<u64>,
    /// Publish call to delivery at the subscriber, nanoseconds.
    delivery_latencies_nanos: Vec<u64>,
    elapsed: Duration,
}

impl DemoReport {
    fn print(&self) {
        println!("edgeproof roundtrip: broker on {}, QoS {}", self.broker_addr, self.qos.as_u8());
        println!(
            "  messages: {} published, {} delivered once and in order",
            self.messages,
            self.delivery_latencies_nanos.len()
        );
        if !self.ack_latencies_nanos.is_empty() {
            println!("  publish -> ack latency:  {}", percentiles(&self.ack_latencies_nanos));
        }
        println!("  end-to-end latency:      {}", percentiles(&self.delivery_latencies_nanos));
        let seconds = self.elapsed.as_secs_f64();
        println!(
            "  throughput: {:.0} msg/s, elapsed {:.3} s",
            self.messages as f64 / seconds.max(f64::MIN_POSITIVE),
            seconds
        );
    }
}

/// "p50 x ms, p99 y ms, max z ms" of nanosecond samples.
fn percentiles(samples_nanos: &[u64]) -> String {
    assert!(!samples_nanos.is_empty());
    let mut sorted = samples_nanos.to_vec();
    sorted.sort_unstable();
    let at = |quantile: f64| {
        // Nearest-rank percentile: the smallest sample with at least `quantile` of samples at or below it.
        let rank = (quantile * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    };
    let millis = |nanos: u64| nanos as f64 / 1e6;
    format!(
        "p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        millis(at(0.50)),
        millis(at(0.99)),
        millis(*sorted.last().expect("not empty"))
    )
}

fn encode_payload(sequence: u64, sent_at: Time) -> Bytes {
    let mut payload = BytesMut::with_capacity(PAYLOAD_BYTES);
    payload.put_u64(sequence);
    payload.put_u64(sent_at.as_nanos());
    assert_eq!(payload.len(), PAYLOAD_BYTES);
    payload.freeze()
}

fn decode_payload(payload: &[u8]) -> Result<(u64, Time), String> {
    let bytes: [u8; PAYLOAD_BYTES] = payload
        .try_into()
        .map_err(|_| format!("payload of {} bytes, expected {PAYLOAD_BYTES}", payload.len()))?;
    let sequence = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
    let sent_at = u64::from_be_bytes(bytes[8..].try_into().expect("8 bytes"));
    Ok((sequence, Time::from_nanos(sent_at)))
}

fn client_config(client_id: &str) -> ClientConfig {
    ClientConfig {
        client_id: client_id.to_string(),
        keep_alive_secs: 30,
        connect_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    }
}

/// Waits (bounded) for the first event `pick` accepts; other events are discarded.
async fn wait_for<T>(
    events: &mut mpsc::Receiver<ClientEvent>,
    what: &str,
    mut pick: impl FnMut(ClientEvent) -> Option<Result<T, String>>,
) -> Result<T, String> {
    let wait = async {
        while let Some(event) = events.recv().await {
            if let Some(result) = pick(event) {
                return result;
            }
        }
        Err(format!("client stopped while waiting for {what}"))
    };
    tokio::time::timeout(STEP_TIMEOUT, wait).await.map_err(|_| format!("timed out waiting for {what}"))?
}

async fn wait_connected(events: &mut mpsc::Receiver<ClientEvent>, who: &str) -> Result<(), String> {
    wait_for(events, &format!("{who} to connect"), |event| match event {
        ClientEvent::Connected { .. } => Some(Ok(())),
        ClientEvent::ConnectRefused { reason } => Some(Err(format!("{who} refused: {reason:?}"))),
        _ => None,
    })
    .await
}

async fn round_trip(messages: u64, qos: QoS) -> Result<DemoReport, String> {
    let clock = TokioClock::start();
    let listen_addr: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
    let broker = BrokerHandle::spawn(
        TokioNet,
        clock,
        BrokerConfig::default(),
        BrokerShellConfig::default(),
        listen_addr,
    )
    .await
    .map_err(|error| format!("cannot start the broker: {error}"))?;
    let broker_addr = broker.local_addr();

    let (subscriber, mut subscriber_events) = ClientHandle::spawn(
        TokioNet,
        clock,
        client_config("edgeproof-demo-subscriber"),
        ClientShellConfig::default(),
        broker_addr,
        1,
    );
    wait_connected(&mut subscriber_events, "subscriber").await?;
    let subscription =
        Subscription { topic_filter: "demo/#".to_string(), options: SubscriptionOptions::with_qos(qos) };
    let subscribe_token =
        subscriber.subscribe(vec![subscription]).await.map_err(|error| error.to_string())?;
    wait_for(&mut subscriber_events, "SUBACK", |event| match event {
        ClientEvent::Subscribed { token, reason_codes } if token == subscribe_token => {
            Some(match reason_codes.as_slice() {
                [code] if *code == ReasonCode(qos.as_u8()) => Ok(()),
                codes => Err(format!("subscription not granted at QoS {}: {codes:?}", qos.as_u8())),
            })
        }
        _ => None,
    })
    .await?;

    let (publisher, mut publisher_events) = ClientHandle::spawn(
        TokioNet,
        clock,
        client_config("edgeproof-demo-publisher"),
        ClientShellConfig::default(),
        broker_addr,
        2,
    );
    wait_connected(&mut publisher_events, "publisher").await?;

    // The subscriber's side runs in its own task so deliveries are timestamped as they arrive.
    let collector = tokio::spawn(collect_deliveries(subscriber_events, clock, messages));

    let started_at = clock.now();
    let ack_latencies_nanos = publish_all(&publisher, &mut publisher_events, clock, messages, qos).await?;
    let settled_at = clock.now();
    let (delivery_latencies_nanos, last_delivery_at) = tokio::time::timeout(STEP_TIMEOUT, collector)
        .await
        .map_err(|_| "timed out waiting for deliveries".to_string())?
        .map_err(|error| format!("collector task failed: {error}"))??;
    // From the first publish to the last ack or delivery, whichever came later (the collector's
    // wait for late duplicates is not part of the run).
    let elapsed = settled_at.max(last_delivery_at) - started_at;

    let _ = publisher.disconnect().await;
    let _ = subscriber.disconnect().await;
    broker.shutdown().await.map_err(|error| format!("broker failed: {error}"))?;
    Ok(DemoReport { messages, qos, broker_addr, ack_latencies_nanos, delivery_latencies_nanos, elapsed })
}

/// The publisher's view of its publishes: when each was handed to the client, and which settled.
struct PublishTracker {
    clock: TokioClock,
    sent_at_by_token: FxHashMap<PublishToken, Time>,
    ack_latencies_nanos: Vec<u64>,
    settled: u64,
}

impl PublishTracker {
    fn on_event(&mut self, event: ClientEvent) -> Result<(), String> {
        match event {
            ClientEvent::PublishAcked { token, .. } => {
                let sent_at = self.sent_at_by_token.remove(&token).ok_or("ack for an unknown token")?;
                self.ack_latencies_nanos.push((self.clock.now() - sent_at).as_nanos() as u64);
                self.settled += 1;
            }
            ClientEvent::PublishSent { token } => {
                self.sent_at_by_token.remove(&token).ok_or("hand-off of an unknown token")?;
                self.settled += 1;
            }
            ClientEvent::PublishFailed { token, reason } => {
                return Err(format!("publish {token:?} failed: {reason:?}"));
            }
            ClientEvent::Disconnected { reason } => {
                return Err(format!("publisher disconnected mid-run: {reason:?}"));
            }
            _ => {}
        }
        Ok(())
    }
}

async fn next_publisher_event(events: &mut mpsc::Receiver<ClientEvent>) -> Result<ClientEvent, String> {
    tokio::time::timeout(STEP_TIMEOUT, events.recv())
        .await
        .map_err(|_| "timed out waiting for the publisher's acks".to_string())?
        .ok_or_else(|| "publisher stopped".to_string())
}

/// Publishes `messages` numbered messages and waits for every ack (QoS 1/2) or hand-off (QoS 0).
/// Returns the publish-to-ack latencies (empty for QoS 0).
async fn publish_all(
    publisher: &ClientHandle,
    events: &mut mpsc::Receiver<ClientEvent>,
    clock: TokioClock,
    messages: u64,
    qos: QoS,
) -> Result<Vec<u64>, String> {
    let mut tracker = PublishTracker {
        clock,
        sent_at_by_token: FxHashMap::default(),
        ack_latencies_nanos: Vec::with_capacity(usize::try_from(messages).unwrap_or(0)),
        settled: 0,
    };
    for sequence in 0..messages {
        loop {
            let sent_at = clock.now();
            let message = OutgoingPublish::new(DEMO_TOPIC, encode_payload(sequence, sent_at), qos);
            match publisher.publish(message).await {
                Ok(token) => {
                    tracker.sent_at_by_token.insert(token, sent_at);
                    break;
                }
                Err(ClientShellError::Publish(PublishError::QueueFull { .. })) => {
                    // The core's pending queue is full: wait for an ack to free room.
                    tracker.on_event(next_publisher_event(events).await?)?;
                }
                Err(error) => return Err(format!("publish {sequence} refused: {error}")),
            }
        }
        while let Ok(event) = events.try_recv() {
            tracker.on_event(event)?;
        }
    }
    while tracker.settled < messages {
        tracker.on_event(next_publisher_event(events).await?)?;
    }
    assert_eq!(tracker.settled, messages);
    assert!(tracker.sent_at_by_token.is_empty());
    Ok(tracker.ack_latencies_nanos)
}

/// Receives deliveries until `messages` arrived, checking each arrives once and in order.
/// Returns the end-to-end latencies and when the last message arrived.
async fn collect_deliveries(
    mut events: mpsc::Receiver<ClientEvent>,
    clock: TokioClock,
    messages: u64,
) -> Result<(Vec<u64>, Time), String> {
    let mut latencies_nanos = Vec::with_capacity(usize::try_from(messages).unwrap_or(0));
    let mut next_sequence: u64 = 0;
    let mut last_delivery_at = Time::ZERO;
    while next_sequence < messages {
        let Some(event) = events.recv().await else {
            return Err(format!("subscriber stopped after {next_sequence} of {messages} messages"));
        };
        match event {
            ClientEvent::Message(Publish { topic, payload, .. }) => {
                if topic != DEMO_TOPIC {
                    return Err(format!("message on unexpected topic {topic:?}"));
                }
                let (sequence, sent_at) = decode_payload(&payload)?;
                if sequence != next_sequence {
                    let kind = if sequence < next_sequence { "duplicate or reordered" } else { "missing" };
                    return Err(format!("{kind}: expected message {next_sequence}, got {sequence}"));
                }
                last_delivery_at = clock.now();
                latencies_nanos.push((last_delivery_at - sent_at).as_nanos() as u64);
                next_sequence += 1;
            }
            ClientEvent::Disconnected { reason } => {
                return Err(format!("subscriber disconnected mid-run: {reason:?}"));
            }
            _ => {}
        }
    }
    // A duplicate of a message already seen could still be on its way: listen a little longer.
    while let Ok(Some(event)) = tokio::time::timeout(DUPLICATE_GRACE, events.recv()).await {
        if let ClientEvent::Message(Publish { payload, .. }) = event {
            let (sequence, _) = decode_payload(&payload)?;
            return Err(format!("duplicate: message {sequence} arrived again after all {messages}"));
        }
    }
    assert_eq!(latencies_nanos.len() as u64, messages);
    Ok((latencies_nanos, last_delivery_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips() {
        let payload = encode_payload(42, Time::from_nanos(7_000_123));
        assert_eq!(decode_payload(&payload), Ok((42, Time::from_nanos(7_000_123))));
        assert!(decode_payload(&payload[..15]).is_err());
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<u64> = (1..=100).map(|millis| millis * 1_000_000).collect();
        assert_eq!(percentiles(&samples), "p50 50.000 ms, p99 99.000 ms, max 100.000 ms");
        assert_eq!(percentiles(&[3_000_000]), "p50 3.000 ms, p99 3.000 ms, max 3.000 ms");
    }
}
