//! Shared helpers of the interop tests: starting a broker, bounded waits.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use edgeproof_system::broker::BrokerConfig;
use edgeproof_system::net::{TokioClock, TokioNet};
use edgeproof_system::shell::{BrokerHandle, BrokerShellConfig};

/// The longest any single step of a test may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// A broker with default settings on an ephemeral loopback port.
pub async fn start_broker() -> BrokerHandle {
    start_broker_with(BrokerShellConfig::default()).await
}

pub async fn start_broker_with(shell_config: BrokerShellConfig) -> BrokerHandle {
    let listen_addr: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
    BrokerHandle::spawn(TokioNet, TokioClock::start(), BrokerConfig::default(), shell_config, listen_addr)
        .await
        .expect("the broker binds an ephemeral loopback port")
}

/// Awaits `future`, failing the test with `what` if it takes longer than [`STEP_TIMEOUT`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP_TIMEOUT, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {STEP_TIMEOUT:?} waiting for {what}"),
    }
}

/// Polls `condition` every 10 ms until it holds, failing the test after [`STEP_TIMEOUT`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
