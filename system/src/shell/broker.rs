//! The broker shell: runs one sans-IO [`Broker`] core on a [`Net`] with tokio tasks.
//!
//! This module owns the task wiring around the core: an accept loop, a reader and a writer task
//! per connection, and one actor task that owns the core and is the only thing that touches it.
//! It owns the shell's bounds and what happens at each (see [`BrokerShellConfig`]) and counts
//! every time a bound is hit in [`BrokerShellStats`]. It must never make an MQTT decision: bytes go in
//! and out of the core untouched, and the core alone decides what to send, when and what to close.
//!
//! Tasks and messages:
//!
//! ```text
//!   accept loop --Opened--> +-------+ --Send/Close--> writer task (one per connection) --> socket
//!   reader task --Bytes---> | actor | (bounded queue per connection: full = slow consumer)
//!               --Lost----> +-------+ <-- sleep until the core's poll_timeout, shutdown signal
//! ```
//!
//! Shutdown is graceful: the accept loop stops, the core's [`Broker::shutdown`] publishes the
//! wills and closes every connection (v5 clients get DISCONNECT 0x8B Server shutting down), and
//! the actor waits, at most [`BrokerShellConfig::close_linger`], for the writers to flush those
//! last packets and close; writers still busy then are aborted and counted.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rustc_hash::FxHashMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle};
use tracing::{debug, info, warn};

use crate::broker::{Broker, BrokerConfig, BrokerEvent, ConnectionId, Transmit};
use crate::net::Net;
use crate::time::Clock;

/// The shell's own bounds (the core's bounds live in [`BrokerConfig`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerShellConfig {
    /// TCP connections served at once. A connection over the bound is accepted and closed at
    /// once, before any byte is read, and counted in
    /// [`BrokerShellStatsSnapshot::connections_refused_over_limit`]. This bounds sockets, memory
    /// and tasks whatever the peers send; the core's own `BrokerConfig::connections_limit` bounds
    /// MQTT sessions' connections and answers over it with a CONNACK reason code.
    pub tcp_connections_limit: usize,
    /// Transmits queued for one connection's writer. A connection whose queue is full is a slow
    /// consumer: it is closed, the core is told the connection was lost, and it is counted in
    /// [`BrokerShellStatsSnapshot::slow_consumers_closed`].
    pub writer_queue_transmits_limit: usize,
    /// The most bytes one socket read takes (and hands to the core in one call).
    pub read_buffer_bytes: usize,
    /// Inputs (opened, bytes, lost) queued for the actor. When it is full, readers wait: the
    /// back-pressure reaches the peers through TCP flow control instead of growing memory.
    pub input_queue_limit: usize,
    /// How long a connection the core closed may still drain the peer's bytes after our FIN
    /// before the socket is dropped. Dropping a socket with unread bytes sends a reset, which
    /// may destroy the final packet (a CONNACK or DISCONNECT with a reason) before the peer
    /// reads it. Also the longest a shutdown waits for the writers to flush their last packets;
    /// writers still running then are aborted and counted in
    /// [`BrokerShellStatsSnapshot::shutdown_writers_aborted`].
    pub close_linger: Duration,
}

impl Default for BrokerShellConfig {
    fn default() -> Self {
        BrokerShellConfig {
            tcp_connections_limit: 10_000,
            writer_queue_transmits_limit: 4_096,
            read_buffer_bytes: 16 * 1024,
            input_queue_limit: 4_096,
            close_linger: Duration::from_secs(2),
        }
    }
}

impl BrokerShellConfig {
    fn assert_valid(&self) {
        assert!(self.tcp_connections_limit > 0, "tcp_connections_limit must be positive");
        assert!(self.writer_queue_transmits_limit > 0, "writer_queue_transmits_limit must be positive");
        assert!(self.read_buffer_bytes > 0, "read_buffer_bytes must be positive");
        assert!(self.input_queue_limit > 0, "input_queue_limit must be positive");
        // tokio's semaphore holds at most `Semaphore::MAX_PERMITS` permits.
        assert!(self.tcp_connections_limit <= Semaphore::MAX_PERMITS, "tcp_connections_limit too large");
    }
}

/// Counters of one broker shell, shared between its tasks and whoever watches it.
#[derive(Clone, Debug, Default)]
pub struct BrokerShellStats {
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    connections_accepted: AtomicU64,
    connections_refused_over_limit: AtomicU64,
    connections_open: AtomicU64,
    slow_consumers_closed: AtomicU64,
    accept_errors: AtomicU64,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
    transmits_for_gone_connections: AtomicU64,
    events_dropped: AtomicU64,
    shutdown_writers_aborted: AtomicU64,
}

/// A point-in-time copy of [`BrokerShellStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BrokerShellStatsSnapshot {
    /// Connections accepted and handed to the core.
    pub connections_accepted: u64,
    /// Connections accepted and closed at once because `tcp_connections_limit` were open.
    pub connections_refused_over_limit: u64,
    /// Connections whose tasks are still running.
    pub connections_open: u64,
    /// Connections closed because their writer queue was full.
    pub slow_consumers_closed: u64,
    /// `accept` calls that failed (for example out of file descriptors).
    pub accept_errors: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// Transmits the core emitted for a connection the shell had already dropped (a slow
    /// consumer closed in the same drain, say); they are discarded.
    pub transmits_for_gone_connections: u64,
    /// Core events not handed to the observer because its queue was full (see
    /// [`BrokerObserver::events`]).
    pub events_dropped: u64,
    /// Writers still flushing or lingering when a shutdown's wait (`close_linger`) ended; they
    /// were aborted, so their peers may have missed the last packets.
    pub shutdown_writers_aborted: u64,
}

impl BrokerShellStats {
    pub fn snapshot(&self) -> BrokerShellStatsSnapshot {
        let counters = &self.counters;
        BrokerShellStatsSnapshot {
            connections_accepted: counters.connections_accepted.load(Ordering::Relaxed),
            connections_refused_over_limit: counters.connections_refused_over_limit.load(Ordering::Relaxed),
            connections_open: counters.connections_open.load(Ordering::Relaxed),
            slow_consumers_closed: counters.slow_consumers_closed.load(Ordering::Relaxed),
            accept_errors: counters.accept_errors.load(Ordering::Relaxed),
            bytes_received: counters.bytes_received.load(Ordering::Relaxed),
            bytes_sent: counters.bytes_sent.load(Ordering::Relaxed),
            transmits_for_gone_connections: counters.transmits_for_gone_connections.load(Ordering::Relaxed),
            events_dropped: counters.events_dropped.load(Ordering::Relaxed),
            shutdown_writers_aborted: counters.shutdown_writers_aborted.load(Ordering::Relaxed),
        }
    }

    fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }
}

/// What a broker shell reports to whoever watches it: counters always, and the core's events
/// when a queue is given.
#[derive(Clone, Debug, Default)]
pub struct BrokerObserver {
    pub stats: BrokerShellStats,
    /// Receives a copy of every [`BrokerEvent`]. The shell never waits for it: when the queue is
    /// full the event is dropped and counted in [`BrokerShellStatsSnapshot::events_dropped`], so a
    /// slow observer cannot stall the broker.
    pub events: Option<mpsc::Sender<BrokerEvent>>,
}

/// A broker shell running in a spawned task.
pub struct BrokerHandle {
    local_addr: SocketAddr,
    stats: BrokerShellStats,
    shutdown: Option<oneshot::Sender<()>>,
    /// `None` once the task's result has been taken.
    task: Option<JoinHandle<io::Result<()>>>,
}

impl BrokerHandle {
    /// Binds `listen_addr` on `net` and spawns [`run_broker`] on the current runtime.
    pub async fn spawn<N: Net, C: Clock>(
        net: N,
        clock: C,
        broker_config: BrokerConfig,
        shell_config: BrokerShellConfig,
        listen_addr: SocketAddr,
    ) -> io::Result<BrokerHandle> {
        Self::spawn_with_events(net, clock, broker_config, shell_config, listen_addr, None).await
    }

    /// Like [`BrokerHandle::spawn`], also copying the core's events to `events` (see
    /// [`BrokerObserver::events`]).
    pub async fn spawn_with_events<N: Net, C: Clock>(
        net: N,
        clock: C,
        broker_config: BrokerConfig,
        shell_config: BrokerShellConfig,
        listen_addr: SocketAddr,
        events: Option<mpsc::Sender<BrokerEvent>>,
    ) -> io::Result<BrokerHandle> {
        let listener = net.bind(listen_addr).await?;
        let local_addr = net.local_addr(&listener)?;
        let stats = BrokerShellStats::default();
        let observer = BrokerObserver { stats: stats.clone(), events };
        let (shutdown_sender, shutdown_receiver) = oneshot::channel::<()>();
        let shutdown = async move {
            // A dropped sender is a shutdown too: nobody can stop the broker any more.
            let _ = shutdown_receiver.await;
        };
        let task =
            tokio::spawn(run_broker(net, clock, broker_config, shell_config, listener, observer, shutdown));
        Ok(BrokerHandle { local_addr, stats, shutdown: Some(shutdown_sender), task: Some(task) })
    }

    /// The address the broker listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> BrokerShellStatsSnapshot {
        self.stats.snapshot()
    }

    /// The shell's shared counters, readable after [`BrokerHandle::shutdown`] has taken the
    /// handle (what the shutdown itself counted, say).
    pub fn shared_stats(&self) -> BrokerShellStats {
        self.stats.clone()
    }

    /// Waits until the broker stops by itself, which only a bug does (a panic in the core, say):
    /// a long-running caller selects on this next to its own shutdown signal.
    /// Cancel-safe; once it has returned, [`BrokerHandle::shutdown`] has nothing left to stop.
    pub async fn stopped(&mut self) -> io::Result<()> {
        let task = self.task.as_mut().expect("stopped is not awaited again after it returned");
        let result = task.await;
        self.task = None;
        match result {
            Ok(Ok(())) => Err(io::Error::other("the broker stopped without being asked to")),
            Ok(Err(error)) => Err(error),
            Err(join_error) => Err(io::Error::other(join_error)),
        }
    }

    /// Stops the broker gracefully: the listener closes, the core publishes the wills and closes
    /// every connection (DISCONNECT 0x8B to v5 clients), and the shell waits at most
    /// [`BrokerShellConfig::close_linger`] for those last packets to be flushed.
    pub async fn shutdown(mut self) -> io::Result<()> {
        let sender = self.shutdown.take().expect("shutdown is called once, by value");
        let _ = sender.send(());
        let Some(task) = self.task.take() else { return Ok(()) };
        match task.await {
            Ok(result) => result,
            Err(join_error) => Err(io::Error::other(join_error)),
        }
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        // A handle dropped without `shutdown` (a failed test, say) must not leave a broker behind.
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Runs a broker on `listener` until `shutdown` completes, then shuts it down gracefully (see the
/// module doc).
///
/// The listener is taken already bound so that callers learn the local address first (port 0)
/// and so that a turmoil host can bind inside its own simulation.
pub async fn run_broker<N: Net, C: Clock>(
    net: N,
    clock: C,
    broker_config: BrokerConfig,
    shell_config: BrokerShellConfig,
    listener: N::Listener,
    observer: BrokerObserver,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    shell_config.assert_valid();
    let local_addr = net.local_addr(&listener)?;
    info!(%local_addr, "broker listening");

    let BrokerObserver { stats, events } = observer;
    let (input_sender, input_receiver) = mpsc::channel(shell_config.input_queue_limit);
    let close_linger = shell_config.close_linger;
    let accept_task =
        AbortOnDrop(tokio::spawn(accept_loop(net, listener, shell_config, input_sender, stats.clone())));
    let mut actor = BrokerActor {
        broker: Broker::new(broker_config),
        clock,
        connections: FxHashMap::default(),
        closing_writers: Vec::new(),
        stats,
        events,
    };
    let mut input_receiver = input_receiver;
    actor.run(&mut input_receiver, shutdown).await;
    // Dropping the accept task's guard closes the listener, so no connection arrives during the
    // shutdown; those it already handed over are refused by the core.
    drop(accept_task);
    actor.shut_down(&mut input_receiver, close_linger).await;
    // Dropping the actor aborts whatever is left. Both drops also happen when this future is
    // dropped unfinished (the task was aborted).
    drop(actor);
    info!(%local_addr, "broker stopped");
    Ok(())
}

/// What the connection tasks and the accept loop tell the actor.
enum ConnectionInput {
    Opened { connection: ConnectionId, writer: mpsc::Sender<WriterCommand>, tasks: ConnectionTasks },
    Bytes { connection: ConnectionId, bytes: Bytes },
    Lost { connection: ConnectionId },
}

/// What the actor tells one connection's writer.
#[derive(Debug)]
enum WriterCommand {
    Send(Bytes),
    /// Flush, send FIN, let the peer's last bytes drain, then drop the socket.
    Close,
}

struct ConnectionTasks {
    reader: AbortHandle,
    /// Kept (not just an abort handle) so that a shutdown can wait for the writer to finish.
    writer: JoinHandle<()>,
}

impl ConnectionTasks {
    fn abort(&self) {
        self.reader.abort();
        self.writer.abort();
    }
}

struct ConnectionEntry {
    writer: mpsc::Sender<WriterCommand>,
    tasks: ConnectionTasks,
}

/// How many queued inputs the actor takes before it drains the core's outputs: enough to batch
/// a burst, small enough that transmits leave promptly.
const INPUT_BATCH_LIMIT: usize = 64;

struct BrokerActor<C: Clock> {
    broker: Broker,
    clock: C,
    /// Connections the core considers open. A connection leaves this map exactly when the core
    /// learns it is gone (Lost handed in) or decides so itself (Close polled out).
    connections: FxHashMap<ConnectionId, ConnectionEntry>,
    /// Writers closing their connection during a shutdown, awaited (bounded) before the shell
    /// stops. Empty until then: outside a shutdown a closing writer runs on by itself.
    closing_writers: Vec<JoinHandle<()>>,
    stats: BrokerShellStats,
    events: Option<mpsc::Sender<BrokerEvent>>,
}

impl<C: Clock> BrokerActor<C> {
    async fn run(
        &mut self,
        inputs: &mut mpsc::Receiver<ConnectionInput>,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let timer_wait = self
                .broker
                .poll_timeout()
                .map(|deadline| deadline.saturating_duration_since(self.clock.now()));
            tokio::select! {
                // Shutdown first, then due timers (so a flood of input cannot starve keep-alive),
                // then input.
                biased;
                () = &mut shutdown => return,
                () = tokio::time::sleep(timer_wait.unwrap_or_default()), if timer_wait.is_some() => {
                    self.broker.handle_timeout(self.clock.now());
                }
                input = inputs.recv() => {
                    let Some(input) = input else {
                        // Every sender is gone: the accept loop ended, which only happens when
                        // this actor is being torn down.
                        return;
                    };
                    self.handle_input(input);
                    for _ in 1..INPUT_BATCH_LIMIT {
                        let Ok(input) = inputs.try_recv() else { break };
                        self.handle_input(input);
                    }
                }
            }
            self.drain_outputs();
        }
    }

    /// Shuts the core down, hands its last transmits to the writers and waits until every
    /// closing writer has finished or `close_linger` has passed, whichever is first. Inputs keep
    /// being taken meanwhile: a reader blocked on a full input queue would hold its writer's
    /// linger open.
    async fn shut_down(&mut self, inputs: &mut mpsc::Receiver<ConnectionInput>, close_linger: Duration) {
        let open_before = self.connections.len();
        self.broker.shutdown(self.clock.now());
        self.drain_outputs();
        assert!(self.connections.is_empty(), "the core closed every connection");
        assert!(self.closing_writers.len() <= open_before);
        let deadline = tokio::time::sleep(close_linger);
        let mut deadline = std::pin::pin!(deadline);
        let mut check = tokio::time::interval(Duration::from_millis(10));
        let mut inputs_open = true;
        loop {
            tokio::select! {
                biased;
                () = &mut deadline => break,
                _ = check.tick() => {
                    if self.closing_writers.iter().all(JoinHandle::is_finished) {
                        break;
                    }
                }
                input = inputs.recv(), if inputs_open => match input {
                    Some(input) => {
                        self.handle_input(input);
                        self.drain_outputs();
                    }
                    None => inputs_open = false,
                },
            }
        }
        let unfinished: Vec<JoinHandle<()>> =
            self.closing_writers.drain(..).filter(|writer| !writer.is_finished()).collect();
        BrokerShellStats::add(&self.stats.counters.shutdown_writers_aborted, unfinished.len() as u64);
        for writer in &unfinished {
            writer.abort();
        }
        info!(connections = open_before, writers_aborted = unfinished.len(), "broker shut down");
        assert!(self.closing_writers.is_empty());
    }

    fn handle_input(&mut self, input: ConnectionInput) {
        let now = self.clock.now();
        match input {
            ConnectionInput::Opened { connection, writer, tasks } => {
                let previous = self.connections.insert(connection, ConnectionEntry { writer, tasks });
                assert!(previous.is_none(), "connection ids are unique: {connection:?} reused");
                self.broker.handle_connection_opened(now, connection);
            }
            ConnectionInput::Bytes { connection, bytes } => {
                assert!(!bytes.is_empty(), "readers forward only non-empty reads");
                // Bytes from a connection the core already closed are the peer's last words
                // arriving during the close linger: the core no longer wants them.
                if self.connections.contains_key(&connection) {
                    self.broker.handle_bytes(now, connection, &bytes);
                }
            }
            ConnectionInput::Lost { connection } => {
                // A reader and a writer may both report the same loss, and a connection the core
                // closed is not lost to it: only the first report for an open connection counts.
                if let Some(entry) = self.connections.remove(&connection) {
                    entry.tasks.abort();
                    self.broker.handle_connection_lost(now, connection);
                }
            }
        }
    }

    fn drain_outputs(&mut self) {
        while let Some(transmit) = self.broker.poll_transmit() {
            match transmit {
                Transmit::Send { connection, bytes } => self.send(connection, bytes),
                Transmit::Close { connection } => self.close(connection),
            }
        }
        while let Some(event) = self.broker.poll_event() {
            debug!(?event, "broker event");
            if let Some(events) = &self.events
                && events.try_send(event).is_err()
            {
                BrokerShellStats::add(&self.stats.counters.events_dropped, 1);
            }
        }
    }

    fn send(&mut self, connection: ConnectionId, bytes: Bytes) {
        let Some(entry) = self.connections.get(&connection) else {
            BrokerShellStats::add(&self.stats.counters.transmits_for_gone_connections, 1);
            debug!(?connection, "transmit for a connection that is gone, discarded");
            return;
        };
        match entry.writer.try_send(WriterCommand::Send(bytes)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                // The peer does not read as fast as the core produces for it. Waiting would stall
                // every other connection behind this one, and queueing more would grow without
                // bound: close it, and let the core treat it as any other lost transport (its
                // session keeps what it must, and its will fires).
                BrokerShellStats::add(&self.stats.counters.slow_consumers_closed, 1);
                warn!(?connection, "slow consumer: writer queue full, closing the connection");
                self.lose(connection);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // The writer stopped on a write error; its Lost report may still be queued.
                self.lose(connection);
            }
        }
    }

    /// Drops a connection the core still considers open and tells the core it was lost.
    fn lose(&mut self, connection: ConnectionId) {
        let entry = self.connections.remove(&connection).expect("only open connections are lost");
        entry.tasks.abort();
        self.broker.handle_connection_lost(self.clock.now(), connection);
        assert!(!self.connections.contains_key(&connection));
    }

    fn close(&mut self, connection: ConnectionId) {
        let Some(entry) = self.connections.remove(&connection) else {
            BrokerShellStats::add(&self.stats.counters.transmits_for_gone_connections, 1);
            return;
        };
        if entry.writer.try_send(WriterCommand::Close).is_err() {
            // Either the queue is full (the peer is not reading, so a graceful close would
            // never finish) or the writer already stopped: drop the socket now.
            entry.tasks.abort();
        } else if self.broker.is_shut_down() {
            self.closing_writers.push(entry.tasks.writer);
        }
    }
}

impl<C: Clock> Drop for BrokerActor<C> {
    fn drop(&mut self) {
        for (_, entry) in self.connections.drain() {
            entry.tasks.abort();
        }
        for writer in self.closing_writers.drain(..) {
            writer.abort();
        }
        assert!(self.connections.is_empty());
    }
}

/// Aborts a task when dropped, so no task outlives the shell that spawned it.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn accept_loop<N: Net>(
    net: N,
    listener: N::Listener,
    shell_config: BrokerShellConfig,
    inputs: mpsc::Sender<ConnectionInput>,
    stats: BrokerShellStats,
) {
    let permits = Arc::new(Semaphore::new(shell_config.tcp_connections_limit));
    let mut next_connection_id: u64 = 0;
    loop {
        let (stream, peer_addr) = match net.accept(&listener).await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Accept errors are usually transient (out of file descriptors, a connection
                // reset before accept). Pause briefly instead of spinning on them.
                BrokerShellStats::add(&stats.counters.accept_errors, 1);
                warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            BrokerShellStats::add(&stats.counters.connections_refused_over_limit, 1);
            warn!(%peer_addr, limit = shell_config.tcp_connections_limit, "connection limit reached, closing");
            drop(stream);
            continue;
        };
        let connection = ConnectionId(next_connection_id);
        next_connection_id += 1;
        BrokerShellStats::add(&stats.counters.connections_accepted, 1);
        BrokerShellStats::add(&stats.counters.connections_open, 1);
        debug!(?connection, %peer_addr, "connection accepted");

        let (read_half, write_half) = tokio::io::split(stream);
        let (writer_sender, writer_receiver) = mpsc::channel(shell_config.writer_queue_transmits_limit);
        // The reader waits for this gate so that its first Bytes cannot overtake the Opened
        // below in the actor's queue.
        let (start_sender, start_receiver) = oneshot::channel::<()>();
        let reader = tokio::spawn(read_loop(
            connection,
            read_half,
            start_receiver,
            inputs.clone(),
            shell_config.read_buffer_bytes,
            stats.clone(),
        ));
        let reader_abort = reader.abort_handle();
        let writer = tokio::spawn(write_loop(
            connection,
            write_half,
            writer_receiver,
            reader,
            shell_config.close_linger,
            inputs.clone(),
            ConnectionGuard { _permit: permit, stats: stats.clone() },
        ));
        let tasks = ConnectionTasks { reader: reader_abort, writer };
        let opened = ConnectionInput::Opened { connection, writer: writer_sender, tasks };
        if inputs.send(opened).await.is_err() {
            return;
        }
        let _ = start_sender.send(());
    }
}

/// Held by a connection's writer task for the connection's whole life: dropping it (the writer
/// ended or was aborted) frees the connection's slot.
struct ConnectionGuard {
    _permit: OwnedSemaphorePermit,
    stats: BrokerShellStats,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let previous = self.stats.counters.connections_open.fetch_sub(1, Ordering::Relaxed);
        assert!(previous > 0, "connections_open underflow");
    }
}

async fn read_loop<S: AsyncRead>(
    connection: ConnectionId,
    mut read_half: ReadHalf<S>,
    start: oneshot::Receiver<()>,
    inputs: mpsc::Sender<ConnectionInput>,
    read_buffer_bytes: usize,
    stats: BrokerShellStats,
) {
    if start.await.is_err() {
        return;
    }
    let mut buffer = vec![0u8; read_buffer_bytes];
    loop {
        let read_bytes = match read_half.read(&mut buffer).await {
            Ok(0) => {
                debug!(?connection, "peer closed the connection");
                break;
            }
            Ok(read_bytes) => read_bytes,
            Err(error) => {
                debug!(?connection, %error, "read failed");
                break;
            }
        };
        assert!(read_bytes <= buffer.len());
        BrokerShellStats::add(&stats.counters.bytes_received, read_bytes as u64);
        let bytes = Bytes::copy_from_slice(&buffer[..read_bytes]);
        if inputs.send(ConnectionInput::Bytes { connection, bytes }).await.is_err() {
            return;
        }
    }
    let _ = inputs.send(ConnectionInput::Lost { connection }).await;
}

async fn write_loop<S: AsyncWrite>(
    connection: ConnectionId,
    mut write_half: WriteHalf<S>,
    mut commands: mpsc::Receiver<WriterCommand>,
    mut reader: JoinHandle<()>,
    close_linger: Duration,
    inputs: mpsc::Sender<ConnectionInput>,
    guard: ConnectionGuard,
) {
    let result: io::Result<()> = async {
        while let Some(command) = commands.recv().await {
            match command {
                WriterCommand::Send(bytes) => {
                    write_half.write_all(&bytes).await?;
                    BrokerShellStats::add(&guard.stats.counters.bytes_sent, bytes.len() as u64);
                    // The core already batches a connection's packets into one transmit per
                    // drain; flushing only when the queue is empty keeps a stream that buffers
                    // (TLS, say) from flushing per transmit in a burst.
                    if commands.is_empty() {
                        write_half.flush().await?;
                    }
                }
                WriterCommand::Close => {
                    write_half.flush().await?;
                    write_half.shutdown().await?;
                    debug!(?connection, "closed by the broker");
                    // Let the peer read our last packet and close its side; the reader reports
                    // EOF then (the actor ignores it: the connection is already closed).
                    let _ = tokio::time::timeout(close_linger, &mut reader).await;
                    break;
                }
            }
        }
        Ok(())
    }
    .await;
    reader.abort();
    if let Err(error) = result {
        debug!(?connection, %error, "write failed");
        let _ = inputs.send(ConnectionInput::Lost { connection }).await;
    }
    drop(guard);
}
