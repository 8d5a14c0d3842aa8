//! The client shell: runs one sans-IO [`Client`] core on a [`Net`] with tokio tasks, and gives
//! tests, the demo and tools an async API to it.
//!
//! This module owns opening and closing the transport when the core asks, the reader and writer
//! tasks of the current transport, the core's timer, and the command and event queues between
//! the core and its user. It must never make an MQTT decision: when to connect, reconnect, retry
//! or give up is the core's alone, and bytes pass through untouched.
//!
//! Every transport gets a generation number; input from an older transport (a late read, a
//! connect attempt the core abandoned) is recognised by its stale generation and dropped.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle};
use tracing::debug;

use crate::client::{
    Client, ClientConfig, ClientError, ClientEvent, OutgoingPublish, PublishError, PublishToken, RequestToken,
};
use crate::mqtt::Subscription;
use crate::net::Net;
use crate::time::Clock;

/// The shell's own bounds (the core's bounds live in [`ClientConfig`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientShellConfig {
    /// Commands (publish, subscribe, ...) queued for the core; callers wait when it is full.
    pub command_queue_limit: usize,
    /// Events queued for the user. When it is full the shell waits for the user to take one:
    /// events are never dropped, so the user must keep draining them (while it waits, the core
    /// handles no input, timers included).
    pub event_queue_limit: usize,
    /// Byte chunks queued for the transport's writer. A full queue means the connection cannot
    /// keep up: the transport is closed and reported lost to the core, and it is counted in
    /// [`ClientShellStatsSnapshot::writer_queue_overflows`].
    pub writer_queue_chunks_limit: usize,
    /// The most bytes one socket read takes.
    pub read_buffer_bytes: usize,
    /// Inputs from the transport tasks (connected, bytes, lost) queued for the core. When it is
    /// full the reader waits: back-pressure reaches the broker through TCP flow control.
    pub input_queue_limit: usize,
    /// How long a closed transport may still drain the peer's bytes after our FIN, so that the
    /// broker reads our DISCONNECT before the socket is dropped.
    pub close_linger: Duration,
}

impl Default for ClientShellConfig {
    fn default() -> Self {
        ClientShellConfig {
            command_queue_limit: 1_024,
            event_queue_limit: 4_096,
            writer_queue_chunks_limit: 4_096,
            read_buffer_bytes: 16 * 1024,
            input_queue_limit: 1_024,
            close_linger: Duration::from_secs(1),
        }
    }
}

/// Counters of one client shell.
#[derive(Clone, Debug, Default)]
pub struct ClientShellStats {
    counters: Arc<ClientShellCounters>,
}

#[derive(Debug, Default)]
struct ClientShellCounters {
    connect_attempts: AtomicU64,
    connect_failures: AtomicU64,
    transports_lost: AtomicU64,
    writer_queue_overflows: AtomicU64,
    transmits_without_transport: AtomicU64,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
}

/// A point-in-time copy of [`ClientShellStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientShellStatsSnapshot {
    /// Transports the core asked for.
    pub connect_attempts: u64,
    /// Of those, connects that failed at the socket level.
    pub connect_failures: u64,
    /// Established transports that broke (EOF, error, writer overflow) under the core.
    pub transports_lost: u64,
    /// Transports closed because their writer queue was full.
    pub writer_queue_overflows: u64,
    /// Bytes the core emitted while no transport was up; they are discarded.
    pub transmits_without_transport: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
}

impl ClientShellStats {
    pub fn snapshot(&self) -> ClientShellStatsSnapshot {
        let counters = &self.counters;
        ClientShellStatsSnapshot {
            connect_attempts: counters.connect_attempts.load(Ordering::Relaxed),
            connect_failures: counters.connect_failures.load(Ordering::Relaxed),
            transports_lost: counters.transports_lost.load(Ordering::Relaxed),
            writer_queue_overflows: counters.writer_queue_overflows.load(Ordering::Relaxed),
            transmits_without_transport: counters.transmits_without_transport.load(Ordering::Relaxed),
            bytes_received: counters.bytes_received.load(Ordering::Relaxed),
            bytes_sent: counters.bytes_sent.load(Ordering::Relaxed),
        }
    }

    fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }
}

/// Why a request through a [`ClientHandle`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientShellError {
    /// The core refused the publish (for example its pending queue is full).
    #[error("publish refused: {0}")]
    Publish(#[from] PublishError),
    /// The core refused the subscribe or unsubscribe.
    #[error("request refused: {0}")]
    Request(#[from] ClientError),
    /// The shell's task has stopped; nothing more can be sent.
    #[error("the client shell has stopped")]
    Stopped,
}

enum Command {
    /// Boxed: an `OutgoingPublish` with its properties is far larger than the other commands.
    Publish {
        publish: Box<OutgoingPublish>,
        reply: oneshot::Sender<Result<PublishToken, PublishError>>,
    },
    Subscribe {
        subscriptions: Vec<Subscription>,
        reply: oneshot::Sender<Result<RequestToken, ClientError>>,
    },
    Unsubscribe {
        topic_filters: Vec<String>,
        reply: oneshot::Sender<Result<RequestToken, ClientError>>,
    },
    Disconnect {
        reply: oneshot::Sender<()>,
    },
    IsConnected {
        reply: oneshot::Sender<bool>,
    },
}

/// The async API to a running client shell. Clones share the shell; the shell stops when every
/// handle is dropped or [`ClientHandle::shutdown`] is called.
#[derive(Clone)]
pub struct ClientHandle {
    commands: mpsc::Sender<Command>,
    stats: ClientShellStats,
    task: Arc<TaskGuard>,
}

impl ClientHandle {
    /// Spawns a client shell on the current runtime and starts connecting to `server_addr`.
    /// The returned receiver carries every [`ClientEvent`] of the core, in order; keep draining
    /// it (see [`ClientShellConfig::event_queue_limit`]).
    pub fn spawn<N: Net, C: Clock>(
        net: N,
        clock: C,
        config: ClientConfig,
        shell_config: ClientShellConfig,
        server_addr: SocketAddr,
        rng_seed: u64,
    ) -> (ClientHandle, mpsc::Receiver<ClientEvent>) {
        assert!(shell_config.command_queue_limit > 0 && shell_config.event_queue_limit > 0);
        assert!(shell_config.writer_queue_chunks_limit > 0 && shell_config.read_buffer_bytes > 0);
        assert!(shell_config.input_queue_limit > 0);
        let (command_sender, command_receiver) = mpsc::channel(shell_config.command_queue_limit);
        let (event_sender, event_receiver) = mpsc::channel(shell_config.event_queue_limit);
        let (transport_sender, transport_receiver) = mpsc::channel(shell_config.input_queue_limit);
        let stats = ClientShellStats::default();
        let actor = ClientActor {
            client: Client::new(config, rng_seed),
            net,
            clock,
            server_addr,
            shell_config,
            transport: Transport::None,
            generation: 0,
            transport_sender,
            events: event_sender,
            stats: stats.clone(),
        };
        let task = tokio::spawn(actor.run(command_receiver, transport_receiver));
        let guard = TaskGuard::new(vec![task.abort_handle()]);
        let handle = ClientHandle { commands: command_sender, stats, task: Arc::new(guard) };
        (handle, event_receiver)
    }

    /// Hands a message to the core. `Ok` means the core accepted it (queued or sent); its fate is
    /// reported later as `PublishSent`, `PublishAcked` or `PublishFailed` with the same token.
    pub async fn publish(&self, publish: OutgoingPublish) -> Result<PublishToken, ClientShellError> {
        let (reply, answer) = oneshot::channel();
        self.request(Command::Publish { publish: Box::new(publish), reply }, answer)
            .await?
            .map_err(ClientShellError::from)
    }

    /// Subscribes; the outcome is reported as `Subscribed` with the same token.
    pub async fn subscribe(
        &self,
        subscriptions: Vec<Subscription>,
    ) -> Result<RequestToken, ClientShellError> {
        let (reply, answer) = oneshot::channel();
        self.request(Command::Subscribe { subscriptions, reply }, answer)
            .await?
            .map_err(ClientShellError::from)
    }

    /// Unsubscribes; the outcome is reported as `Unsubscribed` with the same token.
    pub async fn unsubscribe(&self, topic_filters: Vec<String>) -> Result<RequestToken, ClientShellError> {
        let (reply, answer) = oneshot::channel();
        self.request(Command::Unsubscribe { topic_filters, reply }, answer)
            .await?
            .map_err(ClientShellError::from)
    }

    /// Asks the core to disconnect normally (DISCONNECT, then close); it does not reconnect.
    pub async fn disconnect(&self) -> Result<(), ClientShellError> {
        let (reply, answer) = oneshot::channel();
        self.request(Command::Disconnect { reply }, answer).await
    }

    /// Whether the core has a session up (CONNACK received, transport not lost since).
    pub async fn is_connected(&self) -> Result<bool, ClientShellError> {
        let (reply, answer) = oneshot::channel();
        self.request(Command::IsConnected { reply }, answer).await
    }

    pub fn stats(&self) -> ClientShellStatsSnapshot {
        self.stats.snapshot()
    }

    /// Stops the shell at once, dropping the transport without DISCONNECT (an abrupt loss as
    /// the broker sees it). Use [`ClientHandle::disconnect`] first for a clean goodbye.
    pub fn shutdown(&self) {
        self.task.abort();
    }

    async fn request<T>(
        &self,
        command: Command,
        answer: oneshot::Receiver<T>,
    ) -> Result<T, ClientShellError> {
        self.commands.send(command).await.map_err(|_| ClientShellError::Stopped)?;
        answer.await.map_err(|_| ClientShellError::Stopped)
    }
}

/// What the current transport's tasks tell the actor, tagged with the transport's generation.
enum TransportInput<S> {
    Connected { generation: u64, stream: S },
    ConnectFailed { generation: u64, error: io::Error },
    Bytes { generation: u64, bytes: Bytes },
    Lost { generation: u64 },
}

enum WriterCommand {
    Send(Bytes),
    Close,
}

enum Transport {
    None,
    /// Dropping the guard aborts the connect attempt.
    Connecting {
        generation: u64,
        _task: TaskGuard,
    },
    /// Dropping the guard aborts the reader and the writer.
    Up {
        generation: u64,
        writer: mpsc::Sender<WriterCommand>,
        tasks: TaskGuard,
    },
}

struct ClientActor<N: Net, C: Clock> {
    client: Client,
    net: N,
    clock: C,
    server_addr: SocketAddr,
    shell_config: ClientShellConfig,
    transport: Transport,
    /// The generation of the newest transport; older inputs are stale.
    generation: u64,
    transport_sender: mpsc::Sender<TransportInput<N::Stream>>,
    events: mpsc::Sender<ClientEvent>,
    stats: ClientShellStats,
}

impl<N: Net, C: Clock> ClientActor<N, C> {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut transport_inputs: mpsc::Receiver<TransportInput<N::Stream>>,
    ) {
        self.client.connect(self.clock.now());
        if !self.drain_outputs().await {
            return;
        }
        loop {
            let timer_wait = self
                .client
                .poll_timeout()
                .map(|deadline| deadline.saturating_duration_since(self.clock.now()));
            tokio::select! {
                // Due timers first so that a busy transport cannot starve keep-alive.
                biased;
                () = tokio::time::sleep(timer_wait.unwrap_or_default()), if timer_wait.is_some() => {
                    self.client.handle_timeout(self.clock.now());
                }
                input = transport_inputs.recv() => {
                    let input = input.expect("the actor holds a transport sender itself");
                    self.handle_transport_input(input);
                }
                command = commands.recv() => {
                    let Some(command) = command else {
                        // Every handle is gone: nobody can use this client any more.
                        return;
                    };
                    self.handle_command(command);
                }
            }
            if !self.drain_outputs().await {
                return;
            }
        }
    }

    fn handle_command(&mut self, command: Command) {
        let now = self.clock.now();
        // A caller that stopped waiting for the answer is no reason to stop: ignore send errors.
        match command {
            Command::Publish { publish, reply } => {
                let _ = reply.send(self.client.publish(now, *publish));
            }
            Command::Subscribe { subscriptions, reply } => {
                let _ = reply.send(self.client.subscribe(now, subscriptions));
            }
            Command::Unsubscribe { topic_filters, reply } => {
                let _ = reply.send(self.client.unsubscribe(now, topic_filters));
            }
            Command::Disconnect { reply } => {
                self.client.disconnect(now);
                let _ = reply.send(());
            }
            Command::IsConnected { reply } => {
                let _ = reply.send(self.client.is_connected());
            }
        }
    }

    fn handle_transport_input(&mut self, input: TransportInput<N::Stream>) {
        let now = self.clock.now();
        match input {
            TransportInput::Connected { generation, stream } => {
                if !matches!(self.transport, Transport::Connecting { generation: current, .. } if current == generation)
                {
                    // The core gave up on this attempt (connect timeout, disconnect) meanwhile.
                    return;
                }
                self.start_transport(generation, stream);
                self.client.handle_transport_connected(now);
            }
            TransportInput::ConnectFailed { generation, error } => {
                if !matches!(self.transport, Transport::Connecting { generation: current, .. } if current == generation)
                {
                    return;
                }
                debug!(server = %self.server_addr, %error, "connect failed");
                ClientShellStats::add(&self.stats.counters.connect_failures, 1);
                self.transport = Transport::None;
                self.client.handle_transport_lost(now);
            }
            TransportInput::Bytes { generation, bytes } => {
                assert!(!bytes.is_empty(), "readers forward only non-empty reads");
                if matches!(self.transport, Transport::Up { generation: current, .. } if current == generation)
                {
                    self.client.handle_bytes(now, &bytes);
                }
            }
            TransportInput::Lost { generation } => {
                if matches!(self.transport, Transport::Up { generation: current, .. } if current == generation)
                {
                    self.lose_transport();
                }
            }
        }
    }

    /// Drops the current transport and tells the core it is gone.
    fn lose_transport(&mut self) {
        assert!(matches!(self.transport, Transport::Up { .. }), "only an established transport is lost");
        ClientShellStats::add(&self.stats.counters.transports_lost, 1);
        self.transport = Transport::None;
        self.client.handle_transport_lost(self.clock.now());
    }

    fn open_transport(&mut self) {
        // The core asks for a new transport only when it has none; if one is still here the core
        // has forgotten it, so it goes.
        self.transport = Transport::None;
        self.generation += 1;
        let generation = self.generation;
        ClientShellStats::add(&self.stats.counters.connect_attempts, 1);
        let net = self.net.clone();
        let server_addr = self.server_addr;
        let inputs = self.transport_sender.clone();
        let task = tokio::spawn(async move {
            let input = match net.connect(server_addr).await {
                Ok(stream) => TransportInput::Connected { generation, stream },
                Err(error) => TransportInput::ConnectFailed { generation, error },
            };
            let _ = inputs.send(input).await;
        });
        self.transport =
            Transport::Connecting { generation, _task: TaskGuard::new(vec![task.abort_handle()]) };
    }

    fn start_transport(&mut self, generation: u64, stream: N::Stream) {
        assert_eq!(generation, self.generation, "only the newest transport starts");
        let (read_half, write_half) = tokio::io::split(stream);
        let (writer_sender, writer_receiver) = mpsc::channel(self.shell_config.writer_queue_chunks_limit);
        let reader = tokio::spawn(read_loop(
            generation,
            read_half,
            self.transport_sender.clone(),
            self.shell_config.read_buffer_bytes,
            self.stats.clone(),
        ));
        let reader_abort = reader.abort_handle();
        let writer_task = tokio::spawn(write_loop(
            generation,
            write_half,
            writer_receiver,
            reader,
            self.shell_config.close_linger,
            self.transport_sender.clone(),
            self.stats.clone(),
        ));
        let tasks = TaskGuard::new(vec![reader_abort, writer_task.abort_handle()]);
        self.transport = Transport::Up { generation, writer: writer_sender, tasks };
    }

    fn close_transport(&mut self) {
        match std::mem::replace(&mut self.transport, Transport::None) {
            Transport::None => {}
            // Dropping the connect attempt aborts it.
            Transport::Connecting { .. } => {}
            Transport::Up { writer, mut tasks, .. } => {
                // The writer flushes what the core sent last (a DISCONNECT, say), closes, and
                // lets the reader drain, all bounded by the close linger; so neither task may be
                // aborted when the guard drops. If the queue is full the peer is not reading and
                // a graceful close could not finish: the guard aborts both.
                if writer.try_send(WriterCommand::Close).is_ok() {
                    tasks.disarm();
                }
            }
        }
        assert!(matches!(self.transport, Transport::None));
    }

    /// Hands every pending transmit to the writer and every event to the user. Returns false
    /// when the user dropped the event receiver (the shell then stops).
    async fn drain_outputs(&mut self) -> bool {
        loop {
            while let Some(bytes) = self.client.poll_transmit() {
                self.send(bytes);
            }
            let Some(event) = self.client.poll_event() else { return true };
            match &event {
                ClientEvent::OpenTransport => self.open_transport(),
                ClientEvent::CloseTransport => self.close_transport(),
                _ => {}
            }
            if self.events.send(event).await.is_err() {
                return false;
            }
        }
    }

    fn send(&mut self, bytes: Bytes) {
        let Transport::Up { writer, .. } = &self.transport else {
            ClientShellStats::add(&self.stats.counters.transmits_without_transport, 1);
            debug!(len = bytes.len(), "transmit without a transport, discarded");
            return;
        };
        match writer.try_send(WriterCommand::Send(bytes)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                ClientShellStats::add(&self.stats.counters.writer_queue_overflows, 1);
                self.lose_transport();
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.lose_transport(),
        }
    }
}

/// Aborts tasks when dropped, unless disarmed, so no task outlives what it serves.
struct TaskGuard {
    tasks: Vec<AbortHandle>,
    armed: bool,
}

impl TaskGuard {
    fn new(tasks: Vec<AbortHandle>) -> TaskGuard {
        assert!(!tasks.is_empty());
        TaskGuard { tasks, armed: true }
    }

    fn abort(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }

    /// Lets the tasks run to their own (bounded) end.
    fn disarm(&mut self) {
        assert!(self.armed, "disarmed once");
        self.armed = false;
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.armed {
            self.abort();
        }
    }
}

async fn read_loop<S: AsyncRead, T>(
    generation: u64,
    mut read_half: ReadHalf<S>,
    inputs: mpsc::Sender<TransportInput<T>>,
    read_buffer_bytes: usize,
    stats: ClientShellStats,
) {
    let mut buffer = vec![0u8; read_buffer_bytes];
    loop {
        let read_bytes = match read_half.read(&mut buffer).await {
            Ok(0) => break,
            Ok(read_bytes) => read_bytes,
            Err(error) => {
                debug!(%error, "read failed");
                break;
            }
        };
        assert!(read_bytes <= buffer.len());
        ClientShellStats::add(&stats.counters.bytes_received, read_bytes as u64);
        let bytes = Bytes::copy_from_slice(&buffer[..read_bytes]);
        if inputs.send(TransportInput::Bytes { generation, bytes }).await.is_err() {
            return;
        }
    }
    let _ = inputs.send(TransportInput::Lost { generation }).await;
}

async fn write_loop<S: AsyncWrite, T>(
    generation: u64,
    mut write_half: WriteHalf<S>,
    mut commands: mpsc::Receiver<WriterCommand>,
    mut reader: JoinHandle<()>,
    close_linger: Duration,
    inputs: mpsc::Sender<TransportInput<T>>,
    stats: ClientShellStats,
) {
    let result: io::Result<()> = async {
        while let Some(command) = commands.recv().await {
            match command {
                WriterCommand::Send(bytes) => {
                    write_half.write_all(&bytes).await?;
                    ClientShellStats::add(&stats.counters.bytes_sent, bytes.len() as u64);
                    if commands.is_empty() {
                        write_half.flush().await?;
                    }
                }
                WriterCommand::Close => {
                    write_half.flush().await?;
                    write_half.shutdown().await?;
                    // Wait (bounded) for the peer to close its side, so our last bytes are read
                    // before the socket goes.
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
        debug!(%error, "write failed");
        let _ = inputs.send(TransportInput::Lost { generation }).await;
    }
}
