//! The broker shell's own bounds, hit on purpose: the connections limit (one connection over it
//! is accepted and closed, counted) and the per-connection writer queue (a subscriber that stops
//! reading is closed as a slow consumer, counted, while a reading subscriber carries on), and the
//! core's timers firing through the shell, and the bounded wait of a graceful shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use edgeproof_system::shell::BrokerShellConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::rumqttc_clients::{CLEAN, Seen, Version, connect};
use crate::support::{eventually, start_broker_with, within};

/// Reads until the peer closes (EOF or reset); returns how many bytes came before that.
async fn read_until_closed(stream: &mut TcpStream, what: &str) -> usize {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total = 0;
    within(what, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read_bytes) => total += read_bytes,
            }
        }
    })
    .await;
    total
}

#[tokio::test]
async fn a_connection_over_the_limit_is_accepted_then_closed_and_counted() {
    let shell_config = BrokerShellConfig { tcp_connections_limit: 2, ..BrokerShellConfig::default() };
    let broker = start_broker_with(shell_config).await;
    let port = broker.local_addr().port();
    let first = connect(Version::V311, port, "bounds-first", CLEAN).await;
    let _second = connect(Version::V311, port, "bounds-second", CLEAN).await;
    assert_eq!(broker.stats().connections_open, 2);

    // The third connection is accepted by the kernel and by the shell, then closed before a byte
    // is read: the peer sees the close right away.
    let mut third = TcpStream::connect(broker.local_addr()).await.expect("TCP connect");
    let read_bytes = read_until_closed(&mut third, "the over-limit connection to be closed").await;
    assert_eq!(read_bytes, 0, "nothing is sent to a refused connection");
    let stats = broker.stats();
    assert_eq!(stats.connections_refused_over_limit, 1, "{stats:?}");
    assert_eq!(stats.connections_accepted, 2, "{stats:?}");

    // A slot frees when a connection ends, and the next connection is served.
    first.disconnect().await;
    eventually("the first connection's slot to free", || broker.stats().connections_open == 1).await;
    let _fourth = connect(Version::V311, port, "bounds-fourth", CLEAN).await;
    let stats = broker.stats();
    assert_eq!(stats.connections_refused_over_limit, 1, "{stats:?}");
    assert_eq!(stats.connections_accepted, 3, "{stats:?}");
    broker.shutdown().await.expect("clean shutdown");
}

/// MQTT 3.1.1 CONNECT (clean session, keep-alive 60 s, client id "slow") and SUBSCRIBE (packet
/// id 1, "bounds/flood" at QoS 0), written by hand so the slow consumer is nothing but a socket
/// that stops reading.
const SLOW_CONNECT_AND_SUBSCRIBE: &[u8] = &[
    0x10, 16, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 4, b's', b'l', b'o', b'w', // CONNECT
    0x82, 17, 0, 1, 0, 12, b'b', b'o', b'u', b'n', b'd', b's', b'/', b'f', b'l', b'o', b'o', b'd',
    0, // SUBSCRIBE
];

async fn slow_subscriber(broker_addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    // A small receive buffer makes the kernel hold back little before the broker's writer blocks.
    socket.set_recv_buffer_size(4 * 1024).expect("SO_RCVBUF");
    let mut stream = socket.connect(broker_addr).await.expect("TCP connect");
    stream.write_all(SLOW_CONNECT_AND_SUBSCRIBE).await.expect("write CONNECT and SUBSCRIBE");
    let mut acks = [0u8; 9];
    within("CONNACK and SUBACK for the slow subscriber", stream.read_exact(&mut acks)).await.expect("read");
    assert_eq!(&acks[..4], &[0x20, 2, 0, 0], "CONNACK, accepted");
    assert_eq!(&acks[4..], &[0x90, 3, 0, 1, 0], "SUBACK granting QoS 0");
    stream
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_closed_as_a_slow_consumer() {
    let shell_config =
        BrokerShellConfig { writer_queue_transmits_limit: 256, ..BrokerShellConfig::default() };
    let broker = start_broker_with(shell_config).await;
    let port = broker.local_addr().port();

    let mut slow = slow_subscriber(broker.local_addr()).await;
    let mut healthy = connect(Version::V311, port, "bounds-healthy", CLEAN).await;
    healthy.subscribe("bounds/#", 0).await;
    // The healthy subscriber reads everything as it comes, in its own task, until the marker
    // published after the flood.
    let healthy_reader = tokio::spawn(async move {
        let mut flood_messages: u64 = 0;
        loop {
            match healthy.next_delivery("flood and marker deliveries").await {
                Seen::Publish { topic, .. } if topic == "bounds/flood" => flood_messages += 1,
                Seen::Publish { topic, payload, .. } if topic == "bounds/marker" => {
                    assert_eq!(payload, Bytes::from("after the flood"));
                    return flood_messages;
                }
                other => panic!("healthy subscriber: unexpected {other:?}"),
            }
        }
    });

    // Flood the topic until the shell gives up on the subscriber that does not read: its socket
    // buffers fill, its writer blocks, and its queue of 256 transmits fills behind it.
    let mut publisher = connect(Version::V311, port, "bounds-publisher", CLEAN).await;
    let payload = "x".repeat(16 * 1024);
    let mut published: u64 = 0;
    while broker.stats().slow_consumers_closed == 0 {
        assert!(
            published < 20_000,
            "no slow consumer detected after {published} messages: {:?}",
            broker.stats()
        );
        for _ in 0..50 {
            publisher.publish("bounds/flood", &payload, 0).await;
            published += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let stats = broker.stats();
    assert_eq!(stats.slow_consumers_closed, 1, "only the subscriber that stopped reading: {stats:?}");

    // The slow subscriber finds its connection closed after whatever was already buffered.
    let buffered_bytes = read_until_closed(&mut slow, "the slow subscriber's connection to close").await;
    assert!(buffered_bytes > 0, "it had received part of the flood before stopping");

    // The reading subscriber was not affected: it gets the marker published after the flood.
    publisher.publish("bounds/marker", "after the flood", 1).await;
    let flood_messages =
        within("the healthy subscriber to see the marker", healthy_reader).await.expect("reader");
    assert!(flood_messages > 0 && flood_messages <= published, "{flood_messages} of {published}");
    assert_eq!(broker.stats().slow_consumers_closed, 1);
    broker.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_cores_keep_alive_timer_fires_through_the_shell() {
    // MQTT 3.1.1 CONNECT with a keep-alive of 1 s, then silence: the core's timer (the shell's
    // sleep to `poll_timeout`) must close the connection after 1.5 keep-alive intervals.
    const IDLE_CONNECT: &[u8] =
        &[0x10, 16, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 1, 0, 4, b'i', b'd', b'l', b'e'];
    let broker = start_broker_with(BrokerShellConfig::default()).await;
    let mut stream = TcpStream::connect(broker.local_addr()).await.expect("TCP connect");
    stream.write_all(IDLE_CONNECT).await.expect("write CONNECT");
    let mut connack = [0u8; 4];
    within("CONNACK", stream.read_exact(&mut connack)).await.expect("read");
    assert_eq!(connack, [0x20, 2, 0, 0]);
    let connected_at = tokio::time::Instant::now();
    let read_bytes = read_until_closed(&mut stream, "the keep-alive close").await;
    let idle = connected_at.elapsed();
    assert_eq!(read_bytes, 0, "a 3.1.1 keep-alive timeout closes without a packet");
    assert!(idle >= Duration::from_millis(1_400) && idle < Duration::from_secs(5), "closed after {idle:?}");
    broker.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_flushes_disconnect_0x8b_and_waits_at_most_the_close_linger() {
    // MQTT 5 CONNECT, clean start, keep-alive 60 s, client id "ling".
    const CONNECT_V5: &[u8] =
        &[0x10, 17, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0, 0, 4, b'l', b'i', b'n', b'g'];
    let close_linger = Duration::from_millis(300);
    let broker = start_broker_with(BrokerShellConfig { close_linger, ..BrokerShellConfig::default() }).await;
    let stats = broker.shared_stats();
    let mut stream = TcpStream::connect(broker.local_addr()).await.expect("TCP connect");
    stream.write_all(CONNECT_V5).await.expect("write CONNECT");
    let mut connack_header = [0u8; 2];
    within("CONNACK", stream.read_exact(&mut connack_header)).await.expect("read");
    assert_eq!(connack_header[0], 0x20);
    let mut connack_rest = vec![0u8; usize::from(connack_header[1])];
    within("CONNACK body", stream.read_exact(&mut connack_rest)).await.expect("read");
    assert_eq!(connack_rest[1], 0x00, "CONNACK success");

    // This peer reads but never closes its side, so the shell waits out the whole linger.
    let started = tokio::time::Instant::now();
    within("the graceful shutdown", broker.shutdown()).await.expect("clean shutdown");
    let took = started.elapsed();
    assert!(took >= close_linger && took < close_linger + Duration::from_secs(2), "took {took:?}");
    assert_eq!(stats.snapshot().shutdown_writers_aborted, 1, "the lingering writer was aborted");

    let mut disconnect = Vec::new();
    within("DISCONNECT then EOF", stream.read_to_end(&mut disconnect)).await.expect("read to EOF");
    assert_eq!(disconnect.first(), Some(&0xE0), "a DISCONNECT: {disconnect:?}");
    assert_eq!(disconnect.get(2), Some(&0x8B), "reason Server shutting down: {disconnect:?}");
}
