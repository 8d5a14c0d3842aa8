//! The generic service shell's own bounds and failure paths, on turmoil: its TCP connection
//! limit (one over it is closed at once and counted), its observer queue (a full queue drops and
//! counts, never blocks the service), and connects to endpoints the world cannot resolve (the
//! service is told `Unresolved`, retries, and every failure is counted). Each runs a few
//! simulated seconds: well under a second of wall time.

use std::net::SocketAddr;
use std::time::Duration;

use edgeproof_sim::TurmoilNet;
use edgeproof_system::broker::BrokerConfig;
use edgeproof_system::net::TokioClock;
use edgeproof_system::republisher::{Republisher, RepublisherConfig};
use edgeproof_system::service::{BrokerService, EndpointName, MQTT_PORT};
use edgeproof_system::shell::{ServiceHost, ServiceShellConfig, ServiceShellStats, run_service};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

fn nowhere() -> edgeproof_system::shell::service::Resolver {
    Box::new(|_: &EndpointName| None)
}

#[test]
fn over_the_connection_limit_a_connection_is_closed_and_a_full_observer_queue_drops_and_counts() {
    let mut sim = turmoil::Builder::new().simulation_duration(Duration::from_secs(10)).build();
    let stats = ServiceShellStats::default();
    let host_stats = stats.clone();
    // An observer queue of one event that nobody reads.
    let (events, unread) = mpsc::channel(1);
    sim.host("broker", move || {
        let host = ServiceHost {
            resolve: nowhere(),
            disk: None,
            stats: host_stats.clone(),
            events: Some(events.clone()),
        };
        let config = ServiceShellConfig { tcp_connections_limit: 1, ..ServiceShellConfig::default() };
        async move {
            let service = Box::new(BrokerService::new(BrokerConfig::default()));
            run_service(TurmoilNet, TokioClock::start(), service, config, host).await?;
            Ok(())
        }
    });
    sim.client("peer", async move {
        let addr = SocketAddr::new(turmoil::lookup("broker"), MQTT_PORT.number);
        let first = turmoil::net::TcpStream::connect(addr).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Over the limit: accepted by the kernel, closed by the shell before any byte.
        let mut second = turmoil::net::TcpStream::connect(addr).await?;
        let mut buffer = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(1), second.read(&mut buffer)).await?;
        assert!(matches!(read, Ok(0) | Err(_)), "the second connection must be closed: {read:?}");
        // Two connections lost without a CONNECT: two broker events, one fits the queue.
        drop(first);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let third = turmoil::net::TcpStream::connect(addr).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(third);
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(())
    });
    sim.run().expect("the simulation runs");
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.connections_refused_over_limit, 1, "{snapshot:?}");
    assert_eq!(snapshot.connections_accepted, 2, "{snapshot:?}");
    assert_eq!(snapshot.events_dropped, 1, "{snapshot:?}");
    drop(unread);
}

#[test]
fn a_connect_to_an_unresolvable_endpoint_fails_is_counted_and_retried() {
    let mut sim = turmoil::Builder::new().simulation_duration(Duration::from_secs(3)).build();
    let stats = ServiceShellStats::default();
    let host_stats = stats.clone();
    sim.host("bridge", move || {
        let host = ServiceHost { resolve: nowhere(), disk: None, stats: host_stats.clone(), events: None };
        async move {
            let config = RepublisherConfig {
                source: "broker:mqtt".parse().unwrap(),
                destination: "broker:mqtt".parse().unwrap(),
                filters: vec!["plant/#".to_string()],
                from_prefix: "plant/".to_string(),
                to_prefix: "cloud/".to_string(),
                inflight_messages_limit: 10,
                client_id: "bridge".to_string(),
                keep_alive_secs: 30,
                session_expiry_secs: 60,
            };
            let service = Box::new(Republisher::new(config, 1));
            run_service(TurmoilNet, TokioClock::start(), service, ServiceShellConfig::default(), host)
                .await?;
            Ok(())
        }
    });
    sim.client("observer", async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok(())
    });
    sim.run().expect("the simulation runs");
    // Both clients (source, destination) fail, back off and try again: several times in 2 s.
    let failed = stats.snapshot().connects_failed;
    assert!(failed >= 4, "connects failed only {failed} times");
}
