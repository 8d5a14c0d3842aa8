//! The service shell: runs any sans-IO [`Service`] on a [`Net`] with tokio tasks.
//!
//! This module owns the task wiring around one service: an accept loop per declared port, a
//! connect task per outbound connect, a reader and a writer task per connection, and one actor
//! task that owns the service, executes its disk requests against the host's [`Fs`] and is the only
//! thing that touches either. Its bounds and what happens at each are [`ServiceShellConfig`]'s,
//! counted in [`ServiceShellStats`]. It must never make a protocol decision: bytes go in and out
//! of the service untouched, and the service alone decides what to send, connect and close.
//!
//! ```text
//!   accept loops --Opened------> +-------+ --Send/Close--> writer task (one per connection)
//!   connect tasks --Connected--> | actor | (bounded queue per connection: full = slow consumer)
//!   reader tasks --Bytes/Lost--> +-------+ <-- sleep until poll_timeout; disk replies (queued)
//! ```
//!
//! The broker's own shell (`shell::broker`) stays for `edgeproof broker`: it adds a graceful
//! shutdown (`Broker::shutdown`: wills, DISCONNECT 0x8B, bounded linger) that the generic
//! [`Service`] contract does not have. Simulated pods use this shell for every kind.

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rustc_hash::FxHashMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle};
use tracing::{debug, warn};

use crate::fs::{DiskReply, Fs, FsError, apply};
use crate::net::Net;
use crate::service::{
    ConnectFailure, ConnectToken, ConnectionId, DiskRequestId, EndpointName, Output, Port, Service,
    ServiceEvent,
};
use crate::time::Clock;

/// The shell's own bounds (the service's bounds live in its config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceShellConfig {
    /// Accepted TCP connections served at once, over all ports; one over the bound is closed at
    /// once and counted in `connections_refused_over_limit`.
    pub tcp_connections_limit: usize,
    /// Transmits queued for one connection's writer; a full queue is a slow consumer: closed,
    /// reported to the service as closed, counted in `slow_consumers_closed`.
    pub writer_queue_transmits_limit: usize,
    /// The most bytes one socket read takes.
    pub read_buffer_bytes: usize,
    /// Inputs queued for the actor; readers wait when it is full (TCP back-pressure).
    pub input_queue_limit: usize,
    /// How long a connection the service closed may still drain the peer's bytes after our FIN.
    pub close_linger: Duration,
}

impl Default for ServiceShellConfig {
    fn default() -> Self {
        ServiceShellConfig {
            tcp_connections_limit: 10_000,
            writer_queue_transmits_limit: 4_096,
            read_buffer_bytes: 16 * 1024,
            input_queue_limit: 4_096,
            close_linger: Duration::from_secs(2),
        }
    }
}

/// Counters of one service shell, shared between its tasks and whoever watches it.
#[derive(Clone, Debug, Default)]
pub struct ServiceShellStats {
    counters: Arc<ServiceCounters>,
}

#[derive(Debug, Default)]
struct ServiceCounters {
    connections_accepted: AtomicU64,
    connections_refused_over_limit: AtomicU64,
    connects_failed: AtomicU64,
    slow_consumers_closed: AtomicU64,
    events_dropped: AtomicU64,
    disk_requests: AtomicU64,
}

/// A point-in-time copy of [`ServiceShellStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceShellStatsSnapshot {
    pub connections_accepted: u64,
    pub connections_refused_over_limit: u64,
    /// Outbound connects that failed (unresolved, refused, timed out).
    pub connects_failed: u64,
    pub slow_consumers_closed: u64,
    /// Service events not handed to the observer because its queue was full.
    pub events_dropped: u64,
    pub disk_requests: u64,
}

impl ServiceShellStats {
    pub fn snapshot(&self) -> ServiceShellStatsSnapshot {
        let counters = &self.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ServiceShellStatsSnapshot {
            connections_accepted: load(&counters.connections_accepted),
            connections_refused_over_limit: load(&counters.connections_refused_over_limit),
            connects_failed: load(&counters.connects_failed),
            slow_consumers_closed: load(&counters.slow_consumers_closed),
            events_dropped: load(&counters.events_dropped),
            disk_requests: load(&counters.disk_requests),
        }
    }

    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where `"pod:port"` lives in this world.
pub type Resolver = Box<dyn Fn(&EndpointName) -> Option<SocketAddr> + Send>;

/// What the service shell needs from its world besides the network: names and a disk.
pub struct ServiceHost {
    /// Where `"pod:port"` lives; `None` is [`ConnectFailure::Unresolved`].
    pub resolve: Resolver,
    /// The host's disk; `None` answers every disk request with an I/O error.
    pub disk: Option<Box<dyn Fs + Send>>,
    pub stats: ServiceShellStats,
    /// Receives every [`ServiceEvent`]; never waited for (a full queue drops and counts).
    pub events: Option<mpsc::Sender<ServiceEvent>>,
}

enum Input {
    Opened { connection: ConnectionId, port: &'static str, entry: ConnectionEntry },
    Connected { token: ConnectToken, connection: ConnectionId, entry: ConnectionEntry },
    ConnectFailed { token: ConnectToken, failure: ConnectFailure },
    Bytes { connection: ConnectionId, bytes: Bytes },
    Lost { connection: ConnectionId },
}

enum WriterCommand {
    Send(Bytes),
    Close,
}

struct ConnectionEntry {
    writer: mpsc::Sender<WriterCommand>,
    reader: AbortHandle,
    writer_task: AbortHandle,
}

impl ConnectionEntry {
    fn abort(&self) {
        self.reader.abort();
        self.writer_task.abort();
    }
}

/// Runs `service` until it fails to bind a port (returned as the error) or the task is dropped
/// (a crashed host). Ports are bound on all addresses at their declared numbers.
pub async fn run_service<N: Net, C: Clock>(
    net: N,
    clock: C,
    mut service: Box<dyn Service + Send>,
    shell_config: ServiceShellConfig,
    host: ServiceHost,
) -> io::Result<()> {
    assert!(shell_config.tcp_connections_limit > 0 && shell_config.writer_queue_transmits_limit > 0);
    let (inputs, mut input_receiver) = mpsc::channel(shell_config.input_queue_limit);
    let ids = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    // A new service's only outputs are its ports (the trait's contract).
    while let Some(output) = service.poll_output() {
        let Output::Listen { port } = output else {
            unreachable!("a new service asked for {output:?} before any input")
        };
        let listener = net.bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port.number))).await?;
        let accept = accept_loop(
            net.clone(),
            listener,
            port,
            shell_config.clone(),
            inputs.clone(),
            ids.clone(),
            host.stats.clone(),
        );
        tasks.push(AbortOnDrop(tokio::spawn(accept)));
    }
    let mut actor = Actor {
        service,
        clock,
        net,
        config: shell_config,
        host,
        inputs,
        ids,
        connections: FxHashMap::default(),
        disk_replies: VecDeque::new(),
        connect_tasks: Vec::new(),
    };
    actor.drain();
    loop {
        let timer_wait = actor
            .service
            .poll_timeout()
            .map(|deadline| deadline.saturating_duration_since(actor.clock.now()));
        tokio::select! {
            biased;
            () = tokio::time::sleep(timer_wait.unwrap_or_default()), if timer_wait.is_some() => {
                actor.service.handle_timeout(actor.clock.now());
            }
            input = input_receiver.recv() => {
                let input = input.expect("the actor holds a sender");
                actor.handle(input);
            }
        }
        actor.drain();
    }
}

struct Actor<N: Net, C: Clock> {
    service: Box<dyn Service + Send>,
    clock: C,
    net: N,
    config: ServiceShellConfig,
    host: ServiceHost,
    inputs: mpsc::Sender<Input>,
    ids: Arc<AtomicU64>,
    /// Connections the service considers open.
    connections: FxHashMap<ConnectionId, ConnectionEntry>,
    disk_replies: VecDeque<(DiskRequestId, DiskReply)>,
    connect_tasks: Vec<AbortOnDrop<()>>,
}

impl<N: Net, C: Clock> Actor<N, C> {
    fn handle(&mut self, input: Input) {
        let now = self.clock.now();
        match input {
            Input::Opened { connection, port, entry } => {
                assert!(self.connections.insert(connection, entry).is_none(), "ids are unique");
                self.service.handle_accepted(now, port, connection);
            }
            Input::Connected { token, connection, entry } => {
                assert!(self.connections.insert(connection, entry).is_none(), "ids are unique");
                self.service.handle_connected(now, token, connection);
            }
            Input::ConnectFailed { token, failure } => {
                ServiceShellStats::add(&self.host.stats.counters.connects_failed);
                self.service.handle_connect_failed(now, token, failure);
            }
            Input::Bytes { connection, bytes } => {
                if self.connections.contains_key(&connection) {
                    self.service.handle_bytes(now, connection, &bytes);
                }
            }
            Input::Lost { connection } => {
                if let Some(entry) = self.connections.remove(&connection) {
                    entry.abort();
                    self.service.handle_closed(now, connection);
                }
            }
        }
    }

    /// Executes outputs and delivers queued disk replies until the service is quiet.
    fn drain(&mut self) {
        loop {
            while let Some(output) = self.service.poll_output() {
                self.execute(output);
            }
            while let Some(event) = self.service.poll_event() {
                if let Some(events) = &self.host.events
                    && events.try_send(event).is_err()
                {
                    ServiceShellStats::add(&self.host.stats.counters.events_dropped);
                }
            }
            let Some((request, reply)) = self.disk_replies.pop_front() else { break };
            self.service.handle_disk(self.clock.now(), request, reply);
        }
        self.connect_tasks.retain(|task| !task.0.is_finished());
    }

    fn execute(&mut self, output: Output) {
        match output {
            Output::Send { connection, bytes } => {
                let Some(entry) = self.connections.get(&connection) else { return };
                if entry.writer.try_send(WriterCommand::Send(bytes)).is_err() {
                    // Full (a slow consumer) or the writer stopped: the connection is lost.
                    ServiceShellStats::add(&self.host.stats.counters.slow_consumers_closed);
                    warn!(?connection, "writer queue full or closed, closing the connection");
                    let entry = self.connections.remove(&connection).expect("present");
                    entry.abort();
                    self.service.handle_closed(self.clock.now(), connection);
                }
            }
            Output::Close { connection } => {
                if let Some(entry) = self.connections.remove(&connection)
                    && entry.writer.try_send(WriterCommand::Close).is_err()
                {
                    entry.abort();
                }
            }
            Output::Connect { token, endpoint } => {
                let inputs = self.inputs.clone();
                let Some(addr) = (self.host.resolve)(&endpoint) else {
                    let failure = ConnectFailure::Unresolved;
                    // Through the queue, so the service is never re-entered while it drains.
                    let task = tokio::spawn(async move {
                        let _ = inputs.send(Input::ConnectFailed { token, failure }).await;
                    });
                    self.connect_tasks.push(AbortOnDrop(task));
                    return;
                };
                let net = self.net.clone();
                let config = self.config.clone();
                let connection = ConnectionId(self.ids.fetch_add(1, Ordering::Relaxed));
                let task = tokio::spawn(async move {
                    let input = match net.connect(addr).await {
                        Ok(stream) => {
                            let (start, gate) = oneshot::channel::<()>();
                            let entry =
                                spawn_connection(connection, stream, &config, inputs.clone(), gate, None);
                            if inputs.send(Input::Connected { token, connection, entry }).await.is_ok() {
                                let _ = start.send(());
                            }
                            return;
                        }
                        Err(error) => {
                            let failure = match error.kind() {
                                io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
                                _ => ConnectFailure::TimedOut,
                            };
                            Input::ConnectFailed { token, failure }
                        }
                    };
                    let _ = inputs.send(input).await;
                });
                self.connect_tasks.push(AbortOnDrop(task));
            }
            Output::Disk { request, op } => {
                ServiceShellStats::add(&self.host.stats.counters.disk_requests);
                let reply = match self.host.disk.as_deref_mut() {
                    Some(disk) => apply(disk, &op),
                    None => DiskReply::Failed(FsError::Io { path: String::new() }),
                };
                self.disk_replies.push_back((request, reply));
            }
            Output::Listen { port } => {
                unreachable!("ports are declared when the service starts, not {port:?}")
            }
        }
    }
}

impl<N: Net, C: Clock> Drop for Actor<N, C> {
    fn drop(&mut self) {
        for (_, entry) in self.connections.drain() {
            entry.abort();
        }
    }
}

/// Aborts a task when dropped, so no task outlives the shell that spawned it.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn spawn_connection<S: AsyncRead + AsyncWrite + Send + 'static>(
    connection: ConnectionId,
    stream: S,
    config: &ServiceShellConfig,
    inputs: mpsc::Sender<Input>,
    gate: oneshot::Receiver<()>,
    permit: Option<OwnedSemaphorePermit>,
) -> ConnectionEntry {
    let (read_half, write_half) = tokio::io::split(stream);
    let (writer, commands) = mpsc::channel(config.writer_queue_transmits_limit);
    let reader =
        tokio::spawn(read_loop(connection, read_half, gate, inputs.clone(), config.read_buffer_bytes));
    let reader_abort = reader.abort_handle();
    let writer_task = tokio::spawn(write_loop(
        connection,
        write_half,
        commands,
        reader,
        config.close_linger,
        inputs,
        permit,
    ));
    ConnectionEntry { writer, reader: reader_abort, writer_task: writer_task.abort_handle() }
}

async fn accept_loop<N: Net>(
    net: N,
    listener: N::Listener,
    port: Port,
    config: ServiceShellConfig,
    inputs: mpsc::Sender<Input>,
    ids: Arc<AtomicU64>,
    stats: ServiceShellStats,
) {
    let permits = Arc::new(Semaphore::new(config.tcp_connections_limit));
    loop {
        let (stream, peer_addr) = match net.accept(&listener).await {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, port = port.name, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            ServiceShellStats::add(&stats.counters.connections_refused_over_limit);
            drop(stream);
            continue;
        };
        ServiceShellStats::add(&stats.counters.connections_accepted);
        let connection = ConnectionId(ids.fetch_add(1, Ordering::Relaxed));
        debug!(?connection, %peer_addr, port = port.name, "accepted");
        // The reader waits for this gate so its first Bytes cannot overtake the Opened.
        let (start, gate) = oneshot::channel::<()>();
        let entry = spawn_connection(connection, stream, &config, inputs.clone(), gate, Some(permit));
        if inputs.send(Input::Opened { connection, port: port.name, entry }).await.is_err() {
            return;
        }
        let _ = start.send(());
    }
}

async fn read_loop<S: AsyncRead>(
    connection: ConnectionId,
    mut read_half: ReadHalf<S>,
    gate: oneshot::Receiver<()>,
    inputs: mpsc::Sender<Input>,
    read_buffer_bytes: usize,
) {
    if gate.await.is_err() {
        return;
    }
    let mut buffer = vec![0u8; read_buffer_bytes];
    loop {
        let read_bytes = match read_half.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read_bytes) => read_bytes,
        };
        let bytes = Bytes::copy_from_slice(&buffer[..read_bytes]);
        if inputs.send(Input::Bytes { connection, bytes }).await.is_err() {
            return;
        }
    }
    debug!(?connection, "connection ended");
    let _ = inputs.send(Input::Lost { connection }).await;
}

async fn write_loop<S: AsyncWrite>(
    connection: ConnectionId,
    mut write_half: WriteHalf<S>,
    mut commands: mpsc::Receiver<WriterCommand>,
    mut reader: JoinHandle<()>,
    close_linger: Duration,
    inputs: mpsc::Sender<Input>,
    permit: Option<OwnedSemaphorePermit>,
) {
    let result: io::Result<()> = async {
        while let Some(command) = commands.recv().await {
            match command {
                WriterCommand::Send(bytes) => {
                    write_half.write_all(&bytes).await?;
                    if commands.is_empty() {
                        write_half.flush().await?;
                    }
                }
                WriterCommand::Close => {
                    write_half.flush().await?;
                    write_half.shutdown().await?;
                    // Let the peer read our last packet before the socket is dropped.
                    let _ = tokio::time::timeout(close_linger, &mut reader).await;
                    break;
                }
            }
        }
        Ok(())
    }
    .await;
    reader.abort();
    if result.is_err() {
        let _ = inputs.send(Input::Lost { connection }).await;
    }
    drop(permit);
}
