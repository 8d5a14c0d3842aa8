//! The [`Net`] seam on turmoil's simulated TCP, so the unchanged tokio shells of
//! `edgeproof-system` run as hosts of a turmoil simulation.
//!
//! This module owns only the mapping from the seam to `turmoil::net`. It must never add behaviour
//! of its own (buffering, retries, delays): whatever the simulated network does - latency,
//! partitions, holds - the shells must see exactly that.

use std::io;
use std::net::SocketAddr;

use edgeproof_system::net::Net;

/// turmoil's simulated TCP. Every method must be called from inside a turmoil host or client.
#[derive(Clone, Copy, Debug, Default)]
pub struct TurmoilNet;

impl Net for TurmoilNet {
    type Listener = turmoil::net::TcpListener;
    type Stream = turmoil::net::TcpStream;

    async fn bind(&self, addr: SocketAddr) -> io::Result<Self::Listener> {
        turmoil::net::TcpListener::bind(addr).await
    }

    async fn accept(&self, listener: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        listener.accept().await
    }

    fn local_addr(&self, listener: &Self::Listener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<Self::Stream> {
        turmoil::net::TcpStream::connect(addr).await
    }
}
