//! The network seam of the tokio shells: how a shell listens and connects, and how it reads the
//! clock.
//!
//! This module owns the [`Net`] trait with its production implementation on tokio sockets
//! ([`TokioNet`]), and [`TokioClock`], the one place in the stack that reads tokio's clock. It must
//! never contain protocol logic; turmoil's `Net` implementation lives in `edgeproof-sim`, so the
//! same shells run unchanged on real sockets and inside a turmoil simulation.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::time::{Clock, Time};

/// How a shell reaches the network: bind and accept as a server, connect as a client.
///
/// Futures are `Send` so that shells can `tokio::spawn` the tasks that await them on a
/// multi-threaded runtime; turmoil's single-threaded hosts accept them just the same.
pub trait Net: Clone + Send + Sync + 'static {
    /// A bound listening socket.
    type Listener: Send + Sync + 'static;
    /// One established, bidirectional byte stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Binds a listener on `addr` (port 0 picks an ephemeral port; see [`Net::local_addr`]).
    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send;

    /// Waits for the next incoming connection; returns it with the peer's address.
    fn accept(
        &self,
        listener: &Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;

    /// The address the listener is actually bound to (with the ephemeral port filled in).
    fn local_addr(&self, listener: &Self::Listener) -> io::Result<SocketAddr>;

    /// Opens a connection to `addr`.
    fn connect(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// The production network: `tokio::net` TCP sockets.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioNet;

impl Net for TokioNet {
    type Listener = tokio::net::TcpListener;
    type Stream = tokio::net::TcpStream;

    async fn bind(&self, addr: SocketAddr) -> io::Result<Self::Listener> {
        tokio::net::TcpListener::bind(addr).await
    }

    async fn accept(&self, listener: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, peer_addr) = listener.accept().await?;
        set_nodelay(&stream);
        Ok((stream, peer_addr))
    }

    fn local_addr(&self, listener: &Self::Listener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<Self::Stream> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        set_nodelay(&stream);
        Ok(stream)
    }
}

/// MQTT packets are small and latency matters more than segment count: Nagle's algorithm would
/// hold back a PUBACK until the peer's delayed ACK fires (up to 40 ms on Linux). Best effort: a
/// socket that refuses the option (a peer that already reset, say) still works, and its next
/// read or write reports whatever is wrong with it.
fn set_nodelay(stream: &tokio::net::TcpStream) {
    let _ = stream.set_nodelay(true);
}

/// The shells' clock: time elapsed on tokio's clock since the clock was created.
///
/// Under turmoil, tokio's clock is the simulated one, so the same shell sees simulated time
/// without knowing it. Create one clock per world (per turmoil host) and clone it; clones share
/// the start instant.
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose [`Time::ZERO`] is now. Must be called inside a tokio runtime when time is
    /// paused or simulated, so that the start instant is on the same clock as later readings.
    pub fn start() -> TokioClock {
        TokioClock { start: read_tokio_clock() }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock::start()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Time {
        let elapsed = read_tokio_clock().saturating_duration_since(self.start);
        let nanos = u64::try_from(elapsed.as_nanos()).expect("a run lasts less than 584 years");
        Time::from_nanos(nanos)
    }
}

/// The single place in the stack that reads tokio's clock. The determinism lint bans
/// `tokio::time::Instant::now` everywhere else so that cores only ever see time handed to them;
/// the shells need a real (or turmoil-simulated) reading to hand in, and this is it.
#[allow(clippy::disallowed_methods)]
fn read_tokio_clock() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn tokio_clock_counts_from_its_start() {
        let clock = TokioClock::start();
        let before = clock.now();
        assert!(before < Time::from_secs(1), "a fresh clock starts near zero, got {before}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let after = clock.now();
        assert!(after.saturating_duration_since(before) >= Duration::from_millis(20));
        let clone = clock;
        assert!(clone.now() >= after, "clones share the start instant");
    }

    #[tokio::test]
    async fn tokio_net_connects_and_carries_bytes_both_ways() {
        let net = TokioNet;
        let listener = net.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = net.local_addr(&listener).unwrap();
        assert_ne!(addr.port(), 0, "an ephemeral port is filled in");

        let client = tokio::spawn(async move {
            let mut stream = TokioNet.connect(addr).await.unwrap();
            stream.write_all(b"ping").await.unwrap();
            let mut reply = [0u8; 4];
            stream.read_exact(&mut reply).await.unwrap();
            reply
        });
        let (mut server_stream, peer_addr) = net.accept(&listener).await.unwrap();
        assert!(peer_addr.ip().is_loopback());
        let mut request = [0u8; 4];
        server_stream.read_exact(&mut request).await.unwrap();
        assert_eq!(&request, b"ping");
        server_stream.write_all(b"pong").await.unwrap();
        assert_eq!(&client.await.unwrap(), b"pong");
    }
}
