//! The unchanged tokio shells as turmoil hosts: a broker, a device and an operator on three
//! hosts, and a network partition between the device and the broker.
//!
//! turmoil's TCP does not retransmit, so a partition silently eats whatever crosses it; only
//! MQTT keep-alive notices. The test shows that it does, and that after the partition heals the
//! device's client core reconnects, resumes its persistent session and receives what was
//! published for it meanwhile. mad-turmoil routes libc's clocks and randomness through the
//! simulation, so nothing in this binary reads the host's time or entropy while the sim runs.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use edgeproof_sim::TurmoilNet;
use edgeproof_system::Clock;
use edgeproof_system::broker::{BrokerConfig, BrokerEvent};
use edgeproof_system::client::{ClientConfig, ClientEvent, OutgoingPublish};
use edgeproof_system::mqtt::{QoS, ReasonCode, Subscription, SubscriptionOptions};
use edgeproof_system::net::{Net, TokioClock};
use edgeproof_system::shell::{
    BrokerObserver, BrokerShellConfig, BrokerShellStats, ClientHandle, ClientShellConfig, run_broker,
};
use rand::SeedableRng;
use rustc_hash::FxHashMap;
use tokio::sync::mpsc;

const SEED: u64 = 0x5EED_0007;
const BROKER_PORT: u16 = 1883;
const KEEP_ALIVE_SECS: u16 = 5;
const ALERTS_DURING_PARTITION: u64 = 3;

/// Phases the device and the operator hand each other through (hosts share one thread).
const PHASE_SUBSCRIBED: u8 = 1;
const PHASE_PARTITION_DETECTED: u8 = 2;
const PHASE_ALERTS_ACKED: u8 = 3;

type Trace = Arc<Mutex<Vec<String>>>;

fn record(trace: &Trace, clock: &TokioClock, line: String) {
    trace.lock().expect("trace lock").push(format!("{} {line}", clock.now()));
}

fn broker_addr() -> SocketAddr {
    SocketAddr::new(turmoil::lookup("broker"), BROKER_PORT)
}

fn client_config(client_id: &str) -> ClientConfig {
    ClientConfig {
        client_id: client_id.to_string(),
        clean_start: false,
        session_expiry_interval_secs: 3_600,
        keep_alive_secs: KEEP_ALIVE_SECS,
        connect_timeout: Duration::from_secs(3),
        reconnect_backoff_min: Duration::from_millis(200),
        reconnect_backoff_max: Duration::from_secs(2),
        ..ClientConfig::default()
    }
}

/// The next event other than the transport instructions, bounded in simulated time.
async fn next_event(events: &mut mpsc::Receiver<ClientEvent>, what: &str) -> Result<ClientEvent, String> {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .map_err(|_| format!("no event within 60 s while waiting for {what}"))?
            .ok_or_else(|| format!("client stopped while waiting for {what}"))?;
        if !matches!(event, ClientEvent::OpenTransport | ClientEvent::CloseTransport) {
            return Ok(event);
        }
    }
}

async fn wait_phase(phase: &AtomicU8, at_least: u8) {
    // Polling in simulated time costs nothing real and needs no cross-host waker.
    while phase.load(Ordering::SeqCst) < at_least {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The broker shell as a turmoil host, with a task that writes the core's connection events to
/// the trace.
async fn broker(trace: Trace) -> turmoil::Result {
    let net = TurmoilNet;
    let clock = TokioClock::start();
    let listener = net.bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, BROKER_PORT))).await?;
    let (event_sender, mut events) = mpsc::channel(1_024);
    tokio::spawn(async move {
        let mut client_by_connection = FxHashMap::default();
        while let Some(event) = events.recv().await {
            match event {
                BrokerEvent::Connected { connection, client_id, session_present } => {
                    record(
                        &trace,
                        &clock,
                        format!("broker: {client_id} connected, session present {session_present}"),
                    );
                    client_by_connection.insert(connection, client_id);
                }
                BrokerEvent::ConnectionClosed { connection, reason } => {
                    let client_id =
                        client_by_connection.get(&connection).cloned().unwrap_or_else(|| "?".into());
                    let why = if reason == ReasonCode::KEEP_ALIVE_TIMEOUT {
                        "keep-alive timeout".to_string()
                    } else {
                        format!("{reason:?}")
                    };
                    record(&trace, &clock, format!("broker closed {client_id}'s connection: {why}"));
                }
                _ => {}
            }
        }
    });
    let observer = BrokerObserver { stats: BrokerShellStats::default(), events: Some(event_sender) };
    let broker_config = BrokerConfig::default();
    run_broker(
        net,
        clock,
        broker_config,
        BrokerShellConfig::default(),
        listener,
        observer,
        std::future::pending(),
    )
    .await?;
    Ok(())
}

async fn device(phase: Arc<AtomicU8>, trace: Trace) -> Result<(), String> {
    let clock = TokioClock::start();
    let (device, mut events) = ClientHandle::spawn(
        TurmoilNet,
        clock,
        client_config("device-1"),
        ClientShellConfig::default(),
        broker_addr(),
        SEED,
    );
    match next_event(&mut events, "first CONNACK").await? {
        ClientEvent::Connected { session_present: false } => {
            record(&trace, &clock, "device connected".into())
        }
        other => return Err(format!("expected a fresh session, got {other:?}")),
    }
    let subscription = Subscription {
        topic_filter: "alerts/#".to_string(),
        options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
    };
    device.subscribe(vec![subscription]).await.map_err(|error| error.to_string())?;
    match next_event(&mut events, "SUBACK").await? {
        ClientEvent::Subscribed { reason_codes, .. } if reason_codes.len() == 1 && reason_codes[0].0 == 1 => {
        }
        other => return Err(format!("expected SUBACK granting QoS 1, got {other:?}")),
    }
    let telemetry =
        OutgoingPublish::new("telemetry/device-1", Bytes::from_static(b"21.5C"), QoS::AtLeastOnce);
    device.publish(telemetry).await.map_err(|error| error.to_string())?;
    match next_event(&mut events, "PUBACK").await? {
        ClientEvent::PublishAcked { .. } => record(&trace, &clock, "device telemetry acked".into()),
        other => return Err(format!("expected PUBACK, got {other:?}")),
    }
    phase.store(PHASE_SUBSCRIBED, Ordering::SeqCst);

    // Cut the link. Nothing crosses it any more, and nothing tells either side.
    let partitioned_at = clock.now();
    turmoil::partition("device", "broker");
    record(&trace, &clock, "partition device <-> broker".into());
    match next_event(&mut events, "keep-alive to notice the partition").await? {
        ClientEvent::Disconnected { reason: None } => {}
        other => return Err(format!("expected the session's connection to end, got {other:?}")),
    }
    let detected_after = clock.now() - partitioned_at;
    record(&trace, &clock, format!("device noticed the partition after {detected_after:?}"));
    // Keep-alive sends PINGREQ after one idle interval and gives up when no answer comes in a
    // further bounded wait: the loss must be noticed, and within a few keep-alive intervals.
    let keep_alive = Duration::from_secs(u64::from(KEEP_ALIVE_SECS));
    if detected_after < keep_alive || detected_after > 3 * keep_alive {
        return Err(format!("partition noticed after {detected_after:?}, keep-alive is {keep_alive:?}"));
    }
    phase.store(PHASE_PARTITION_DETECTED, Ordering::SeqCst);

    // The operator publishes while we are cut off; reconnect attempts meanwhile fail by connect
    // timeout (the SYN is lost) and back off.
    wait_phase(&phase, PHASE_ALERTS_ACKED).await;
    // Stay cut off past the broker's own keep-alive deadline (1.5 x keep-alive), so that the
    // broker too has dropped the old connection and holds the session offline.
    tokio::time::sleep(2 * keep_alive).await;
    turmoil::repair("device", "broker");
    record(&trace, &clock, "repair device <-> broker".into());

    let repaired_at = clock.now();
    loop {
        match next_event(&mut events, "reconnect after repair").await? {
            ClientEvent::Connected { session_present: true } => break,
            ClientEvent::Connected { session_present: false } => {
                return Err("the broker lost the persistent session".to_string());
            }
            ClientEvent::Disconnected { .. } => {}
            other => return Err(format!("expected a reconnect, got {other:?}")),
        }
    }
    record(
        &trace,
        &clock,
        format!("device resumed its session {:?} after repair", clock.now() - repaired_at),
    );

    let mut received: Vec<u64> = Vec::new();
    while received.len() < ALERTS_DURING_PARTITION as usize {
        match next_event(&mut events, "alerts published during the partition").await? {
            ClientEvent::Message(message) => {
                assert_eq!(message.topic, "alerts/fire");
                let sequence: u64 = std::str::from_utf8(&message.payload)
                    .ok()
                    .and_then(|text| text.parse().ok())
                    .ok_or_else(|| format!("bad alert payload {:?}", message.payload))?;
                // QoS 1 may deliver a message twice (a resend with DUP after the resume); it must
                // not lose one or deliver out of order.
                if received.last() != Some(&sequence) {
                    received.push(sequence);
                }
            }
            other => return Err(format!("expected the queued alerts, got {other:?}")),
        }
    }
    record(&trace, &clock, format!("device received alerts {received:?}"));
    if received != (0..ALERTS_DURING_PARTITION).collect::<Vec<_>>() {
        return Err(format!("alerts arrived as {received:?}"));
    }
    device.disconnect().await.map_err(|error| error.to_string())?;
    let stats = device.stats();
    record(&trace, &clock, format!("device shell stats {stats:?}"));
    if stats.connect_attempts < 2 {
        return Err(format!("expected a reconnect in the shell's counts: {stats:?}"));
    }
    Ok(())
}

async fn operator(phase: Arc<AtomicU8>, trace: Trace) -> Result<(), String> {
    let clock = TokioClock::start();
    let mut config = client_config("operator");
    config.clean_start = true;
    config.session_expiry_interval_secs = 0;
    let (operator, mut events) =
        ClientHandle::spawn(TurmoilNet, clock, config, ClientShellConfig::default(), broker_addr(), SEED + 1);
    match next_event(&mut events, "operator CONNACK").await? {
        ClientEvent::Connected { .. } => {}
        other => return Err(format!("operator: expected CONNACK, got {other:?}")),
    }
    wait_phase(&phase, PHASE_PARTITION_DETECTED).await;
    for sequence in 0..ALERTS_DURING_PARTITION {
        let alert = OutgoingPublish::new("alerts/fire", Bytes::from(sequence.to_string()), QoS::AtLeastOnce);
        operator.publish(alert).await.map_err(|error| error.to_string())?;
    }
    let mut acked = 0;
    while acked < ALERTS_DURING_PARTITION {
        match next_event(&mut events, "operator PUBACKs").await? {
            ClientEvent::PublishAcked { .. } => acked += 1,
            other => return Err(format!("operator: expected PUBACK, got {other:?}")),
        }
    }
    record(&trace, &clock, format!("operator: {acked} alerts acked during the partition"));
    phase.store(PHASE_ALERTS_ACKED, Ordering::SeqCst);
    operator.disconnect().await.map_err(|error| error.to_string())?;
    Ok(())
}

/// Runs the whole scenario once and returns its trace.
fn run_scenario() -> String {
    let mut sim = turmoil::Builder::new()
        .rng_seed(SEED)
        .tick_duration(Duration::from_millis(1))
        .simulation_duration(Duration::from_secs(180))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(5))
        .build();

    let trace: Trace = Arc::new(Mutex::new(Vec::new()));
    let broker_trace = trace.clone();
    sim.host("broker", move || broker(broker_trace.clone()));

    let phase = Arc::new(AtomicU8::new(0));
    let (device_phase, device_trace) = (phase.clone(), trace.clone());
    sim.client("device", async move { device(device_phase, device_trace).await.map_err(Into::into) });
    let (operator_phase, operator_trace) = (phase.clone(), trace.clone());
    sim.client("operator", async move { operator(operator_phase, operator_trace).await.map_err(Into::into) });

    let result = sim.run();
    let trace = trace.lock().expect("trace lock").join("\n");
    if let Err(error) = result {
        panic!("simulation failed (seed {SEED:#x}): {error}\ntrace:\n{trace}");
    }
    trace
}

#[test]
fn keep_alive_detects_a_partition_and_the_session_resumes_after_repair() {
    // From here on libc time and randomness follow the simulation (mad-turmoil's overrides).
    let _sim_clocks = mad_turmoil::time::SimClocksGuard::init();
    mad_turmoil::rand::set_rng(rand::rngs::StdRng::seed_from_u64(SEED));

    let trace = run_scenario();
    println!("{trace}");
    assert!(trace.contains("broker closed device-1's connection: keep-alive timeout"), "{trace}");
    assert!(trace.contains("device resumed its session"), "{trace}");
    assert!(trace.contains("device received alerts [0, 1, 2]"), "{trace}");

    // Same seed, same world: the second run must match the first event for event, to the
    // nanosecond.
    let replay = run_scenario();
    assert_eq!(trace, replay, "the simulation is not deterministic for seed {SEED:#x}");
}
