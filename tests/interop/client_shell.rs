//! The client shell on real sockets: when the broker shuts down the shell reports its DISCONNECT
//! 0x8B, and when it comes back on the same address the core's backoff reconnects;
//! a transport that stops draining overflows the writer queue and is dropped, counted.

use std::time::Duration;

use edgeproof_system::client::{ClientConfig, ClientEvent, OutgoingPublish};
use edgeproof_system::mqtt::{QoS, ReasonCode};
use edgeproof_system::net::{TokioClock, TokioNet};
use edgeproof_system::shell::{BrokerShellConfig, ClientHandle, ClientShellConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::support::{start_broker, within};

async fn next_session_event(events: &mut mpsc::Receiver<ClientEvent>, what: &str) -> ClientEvent {
    loop {
        let event = within(what, events.recv()).await.expect("the client shell runs");
        if !matches!(event, ClientEvent::OpenTransport | ClientEvent::CloseTransport) {
            return event;
        }
    }
}

#[tokio::test]
async fn client_shell_reports_the_brokers_shutdown_and_reconnects_when_it_returns() {
    let broker = start_broker().await;
    let broker_addr = broker.local_addr();
    let config = ClientConfig {
        client_id: "client-shell-reconnect".to_string(),
        reconnect_backoff_min: Duration::from_millis(20),
        reconnect_backoff_max: Duration::from_millis(200),
        ..ClientConfig::default()
    };
    let (client, mut events) = ClientHandle::spawn(
        TokioNet,
        TokioClock::start(),
        config,
        ClientShellConfig::default(),
        broker_addr,
        7,
    );
    assert_eq!(
        next_session_event(&mut events, "first CONNACK").await,
        ClientEvent::Connected { session_present: false }
    );
    assert!(client.is_connected().await.expect("running"));

    // A graceful shutdown tells a v5 client why before the connection closes.
    broker.shutdown().await.expect("clean shutdown");
    assert_eq!(
        next_session_event(&mut events, "the broker's DISCONNECT").await,
        ClientEvent::Disconnected { reason: Some(ReasonCode::SERVER_SHUTTING_DOWN) }
    );
    assert!(!client.is_connected().await.expect("running"));

    // A new broker on the same address: the core retries with backoff until it answers.
    let broker = edgeproof_system::shell::BrokerHandle::spawn(
        TokioNet,
        TokioClock::start(),
        Default::default(),
        BrokerShellConfig::default(),
        broker_addr,
    )
    .await
    .expect("rebind the same port");
    assert!(matches!(next_session_event(&mut events, "the reconnect").await, ClientEvent::Connected { .. }));
    let stats = client.stats();
    assert!(stats.connect_attempts >= 2, "{stats:?}");

    client.disconnect().await.expect("running");
    assert_eq!(
        next_session_event(&mut events, "our own disconnect").await,
        ClientEvent::Disconnected { reason: None }
    );
    broker.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn client_shell_drops_a_transport_whose_writer_queue_fills() {
    // A "broker" that accepts, answers CONNECT with a v5 CONNACK, then never reads again.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server_addr = listener.local_addr().expect("local addr");
    let stalled_server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut connect = [0u8; 2];
        stream.read_exact(&mut connect).await.expect("CONNECT header");
        assert_eq!(connect[0], 0x10, "the first packet is CONNECT");
        let mut rest = vec![0u8; usize::from(connect[1])];
        stream.read_exact(&mut rest).await.expect("CONNECT body (short: no remaining-length continuation)");
        stream.write_all(&[0x20, 3, 0, 0, 0]).await.expect("CONNACK");
        // Hold the connection open without reading until the test ends.
        std::future::pending::<()>().await;
    });

    let config = ClientConfig { client_id: "stalled-writer".to_string(), ..ClientConfig::default() };
    let shell_config = ClientShellConfig { writer_queue_chunks_limit: 4, ..ClientShellConfig::default() };
    let (client, mut events) =
        ClientHandle::spawn(TokioNet, TokioClock::start(), config, shell_config, server_addr, 11);
    assert_eq!(
        next_session_event(&mut events, "CONNACK").await,
        ClientEvent::Connected { session_present: false }
    );

    // QoS 0 publishes go straight to the transport; once the socket buffers are full the writer
    // blocks and its queue of 4 chunks fills behind it.
    let payload = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
    let mut published = 0;
    while client.stats().writer_queue_overflows == 0 {
        assert!(published < 2_000, "no overflow after {published} publishes: {:?}", client.stats());
        let message = OutgoingPublish::new("stall/flood", payload.clone(), QoS::AtMostOnce);
        client.publish(message).await.expect("accepted");
        published += 1;
    }
    loop {
        match next_session_event(&mut events, "the dropped transport").await {
            ClientEvent::Disconnected { reason: None } => break,
            ClientEvent::PublishSent { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let stats = client.stats();
    assert_eq!(stats.writer_queue_overflows, 1, "{stats:?}");
    assert!(stats.transports_lost >= 1, "{stats:?}");
    client.shutdown();
    stalled_server.abort();
}
