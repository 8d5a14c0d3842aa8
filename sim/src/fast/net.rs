//! The network model of the fast engine: hosts, links, partitions and TCP-like virtual
//! connections between a client endpoint and a listener (a pod's port).
//!
//! This module owns every byte in flight and every connection's lifecycle. It schedules its own
//! events into the world's [`EventQueue`] and reports what endpoints observe through
//! [`Network::poll_output`]. It must never know what the bytes mean (no MQTT here), never read a
//! clock, and never draw randomness except from the two seeded streams it is given.
//!
//! # The model (what a connection end observes, and when)
//! - **Links.** Every ordered host pair has a path with a [`LinkConfig`]: latency drawn uniformly
//!   from `latency_min..=latency_max`, and a loss probability. Paths between two different hosts
//!   default to `NetConfig::default_link`, a host to itself uses `NetConfig::loopback_link`. Both
//!   can be changed at run time; a change affects segments sent afterwards.
//! - **Order and exactly-once.** A connection has two flows (client to server, server to client).
//!   A segment sent at `now` is due at `max(now + latency + loss delay, due time of the previous
//!   segment of the flow)`, so a later segment never overtakes an earlier one and each is
//!   delivered once.
//! - **Writes due together are read together.** A write whose due time is clamped to the
//!   previous queued segment's joins that segment (up to 64 KiB), so the receiver gets one read.
//! - **Loss is delay, not missing bytes.** TCP retransmits: a lost segment arrives after an extra
//!   retransmission timeout (`rto_min`, doubling up to `rto_max` while the retransmission is also
//!   lost).
//! - **Partitions hold segments.** A partition blocks a direction `from -> to` (a symmetric one
//!   blocks both). When a segment is due and its direction is blocked, the whole flow is *held*
//!   (TCP keeps retransmitting; later segments cannot be delivered to the application past the
//!   missing one). On heal, held segments are retransmitted: re-timed from the heal instant, in
//!   order. The other direction still works during a one-way partition, but its ACKs cannot come
//!   back: a flow whose delivered data cannot be acknowledged is *unacknowledged*.
//! - **Connection timeout.** A flow that is held or unacknowledged for `connection_timeout`
//!   (counted from the send time of the oldest such segment) aborts at its *sender*: the sender
//!   end is told [`CloseCause::TimedOut`] and its unsent data is dropped. No RST is sent on a
//!   timeout (as Linux does); the other end learns only when it sends something (its segment
//!   reaches a dead end and draws an RST back, or its own flow times out) or when its own
//!   keep-alive (the MQTT core's business) gives up. A heal before the timeout clears the stall.
//! - **Crash and close.** A crashed pod ([`Network::reset_listener`]) resets its connections:
//!   segments already sent still arrive, then an RST, so the peer learns after one latency if the
//!   path is up (or later, when it heals). A graceful close sends a FIN after the data. A segment
//!   that reaches an end which is gone is never acknowledged and draws an RST back (one at a
//!   time; a retransmission after a heal draws another if the first was lost with its flow), so
//!   its sender learns by the RST or, failing that, by its own connection timeout.
//! - **Connect.** The SYN takes one latency to the listener's host. If that direction is blocked,
//!   or the listener is down and the way back is blocked, or the way back is blocked at all (the
//!   SYN-ACK cannot return, so the server does not accept), the connect fails with
//!   [`ConnectFailure::TimedOut`] at `connect_timeout` after it started. If the listener is down
//!   and the way back is open, an RST refuses it one latency later. Otherwise the server side is
//!   accepted when the SYN arrives and the client is connected one latency later.
//! - **Bounds.** A flow holds at most `flow_bytes_limit` unsent bytes; a send beyond it aborts the
//!   connection at the sender ([`CloseCause::BufferOverflow`], counted), because an unbounded
//!   buffer would hide a peer that stopped reading.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use edgeproof_system::time::Time;

use super::queue::EventQueue;
use super::rng::{Stream, stream_rng};

/// A simulated host (a machine or a plant cell); network faults hit hosts as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostId(pub u32);

/// A listening port on a host (one per pod).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenerId(pub u32);

/// A virtual connection: slot index in the low 32 bits, slot generation in the high 32 bits, so
/// an id is never reused within a run and stale events are recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(u64);

impl ConnId {
    fn new(index: u32, generation: u32) -> ConnId {
        ConnId((u64::from(generation) << 32) | u64::from(index))
    }

    fn index(self) -> usize {
        (self.0 & 0xFFFF_FFFF) as usize
    }

    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The id as one number (unique for the run; the broker's `ConnectionId`).
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The id back from [`ConnId::as_u64`]. Any number is accepted: an id that names no live
    /// connection is simply stale, and the network ignores it.
    pub fn from_u64(value: u64) -> ConnId {
        ConnId(value)
    }
}

/// Which end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The end that connected (a device or subscriber).
    Client,
    /// The end that accepted (a pod's listener).
    Server,
}

impl Side {
    /// The flow this side sends on.
    fn flow(self) -> usize {
        match self {
            Side::Client => 0,
            Side::Server => 1,
        }
    }

    /// The flow this side sends on, as a number (0: client to server, 1: server to client).
    pub fn flow_index(self) -> u8 {
        self.flow() as u8
    }

    fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// Latency and loss of one direction between two hosts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkConfig {
    pub latency_min: Duration,
    pub latency_max: Duration,
    /// Probability that a segment (or each of its retransmissions) is lost, in `0.0..1.0`.
    pub loss_probability: f64,
}

impl LinkConfig {
    /// A fixed-latency lossless link.
    pub fn fixed(latency: Duration) -> LinkConfig {
        LinkConfig { latency_min: latency, latency_max: latency, loss_probability: 0.0 }
    }

    fn validate(&self) {
        assert!(self.latency_min <= self.latency_max, "link latency_min > latency_max");
        assert!((0.0..1.0).contains(&self.loss_probability), "loss probability must be in 0.0..1.0");
    }
}

/// Configuration of the network model.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Path between two different hosts unless set otherwise.
    pub default_link: LinkConfig,
    /// Path from a host to itself.
    pub loopback_link: LinkConfig,
    /// How long a flow may stay held or unacknowledged before its sender aborts the connection.
    pub connection_timeout: Duration,
    /// How long a connect may take before it fails.
    pub connect_timeout: Duration,
    /// First retransmission delay of a lost segment.
    pub rto_min: Duration,
    /// Cap of the doubling retransmission delay.
    pub rto_max: Duration,
    /// Unsent bytes one flow may hold; beyond it the connection aborts.
    pub flow_bytes_limit: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            default_link: LinkConfig {
                latency_min: Duration::from_micros(500),
                latency_max: Duration::from_millis(2),
                loss_probability: 0.0,
            },
            loopback_link: LinkConfig::fixed(Duration::from_micros(20)),
            connection_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(60),
            flow_bytes_limit: 16 * 1024 * 1024,
        }
    }
}

/// Events the network schedules for itself; the world hands them back to [`Network::handle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetEvent {
    /// The SYN reaches the listener's host.
    SynArrive { conn: ConnId },
    /// The SYN-ACK (`accepted`) or the refusing RST reaches the client.
    ConnectReply { conn: ConnId, accepted: bool },
    /// The connect attempt gives up.
    ConnectTimeout { conn: ConnId },
    /// The front segment of a flow is due.
    Deliver { conn: ConnId, flow: u8, epoch: u32 },
    /// A held or unacknowledged flow may have timed out.
    StallTimeout { conn: ConnId, flow: u8, stall_generation: u32 },
}

/// Who receives an output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// The connecting end, identified by the token the world passed to [`Network::connect`].
    Client { token: u64 },
    /// The accepting end: a listener.
    Server { listener: ListenerId },
}

/// Why a connect failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectFailure {
    /// An RST came back: nothing listens (the pod is down).
    Refused,
    /// No answer within the connect timeout (partition).
    TimedOut,
}

/// Why an established connection ended for an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseCause {
    /// The peer closed gracefully.
    Fin,
    /// The peer reset it (crash, or it had already given up on the connection).
    Reset,
    /// This end's data went unacknowledged for the connection timeout.
    TimedOut,
    /// This end exceeded the flow's byte limit.
    BufferOverflow,
}

/// What endpoints observe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetOutput {
    /// A listener accepted a connection (the server end is open).
    Accepted { conn: ConnId, listener: ListenerId },
    /// A client's connect succeeded.
    Connected { conn: ConnId, token: u64 },
    /// A client's connect failed; the connection id is dead.
    ConnectFailed { conn: ConnId, token: u64, cause: ConnectFailure },
    /// Bytes arrived, in order.
    Data { conn: ConnId, to: Endpoint, bytes: Bytes },
    /// The connection ended for this endpoint; it must not send on it any more.
    Closed { conn: ConnId, end: Endpoint, cause: CloseCause },
}

/// Why [`Network::send`] refused bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The connection (or this end of it) is already gone; the bytes are dropped.
    #[error("connection is closed at this end")]
    Closed,
    /// The flow's byte limit was exceeded; the connection was aborted at this end.
    #[error("flow byte limit exceeded; connection aborted")]
    BufferOverflow,
}

/// Counters of the network model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    pub connects_started: u64,
    pub connects_accepted: u64,
    pub connects_refused: u64,
    pub connects_timed_out: u64,
    pub segments_sent: u64,
    pub bytes_sent: u64,
    pub segments_delivered: u64,
    pub bytes_delivered: u64,
    pub retransmissions: u64,
    /// Writes that joined a queued segment due at the same instant.
    pub segments_coalesced: u64,
    pub flows_held: u64,
    pub connections_timed_out: u64,
    pub resets_sent: u64,
    pub overflow_aborts: u64,
    pub sends_on_closed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EndState {
    /// Client: connect in progress. Server: SYN not arrived yet.
    Pending,
    Open,
    Gone,
}

enum SegmentKind {
    Data(Bytes),
    /// Several writes due at the same instant, coalesced (see [`COALESCED_BYTES_LIMIT`]).
    Chunks(Vec<Bytes>),
    Fin,
    Rst,
}

/// Writes on one flow that fall due at the same instant (a later write clamped to the previous
/// one's due time, which keeps order) join the queued segment instead of becoming a segment and
/// an event of their own, up to this many bytes: the receiver reads them in one go, as a TCP
/// receiver would read what arrived together. A busy subscriber then gets one read, and answers
/// with one write of acknowledgements, per arrival instant instead of per message.
const COALESCED_BYTES_LIMIT: usize = 64 * 1024;

struct Segment {
    sent_at: Time,
    due_at: Time,
    kind: SegmentKind,
}

impl Segment {
    fn byte_count(&self) -> usize {
        match &self.kind {
            SegmentKind::Data(bytes) => bytes.len(),
            SegmentKind::Chunks(chunks) => chunks.iter().map(Bytes::len).sum(),
            SegmentKind::Fin | SegmentKind::Rst => 0,
        }
    }

    /// Appends `bytes` to a data segment; false (and nothing changed) when this is not a data
    /// segment or the result would exceed [`COALESCED_BYTES_LIMIT`].
    fn try_coalesce(&mut self, bytes: &Bytes) -> bool {
        let fits = self.byte_count() + bytes.len() <= COALESCED_BYTES_LIMIT;
        match &mut self.kind {
            SegmentKind::Data(first) if fits => {
                let first = std::mem::take(first);
                self.kind = SegmentKind::Chunks(vec![first, bytes.clone()]);
                true
            }
            SegmentKind::Chunks(chunks) if fits => {
                chunks.push(bytes.clone());
                true
            }
            _ => false,
        }
    }
}

/// "No segment" in the arena's linked lists.
const NIL: u32 = u32::MAX;

struct SegmentSlot {
    segment: Option<Segment>,
    next: u32,
}

/// Every segment in flight lives in one arena; a flow is a singly linked list through it. A flow
/// with nothing in flight then costs no heap memory at all (a `VecDeque` per flow would keep its
/// capacity: about 450 bytes per connection, 450 MB at a million devices).
struct SegmentArena {
    slots: Vec<SegmentSlot>,
    free_head: u32,
    live_count: usize,
}

impl SegmentArena {
    fn new() -> SegmentArena {
        SegmentArena { slots: Vec::new(), free_head: NIL, live_count: 0 }
    }

    fn alloc(&mut self, segment: Segment) -> u32 {
        self.live_count += 1;
        if self.free_head != NIL {
            let index = self.free_head;
            let slot = &mut self.slots[index as usize];
            assert!(slot.segment.is_none(), "free slot holds a segment");
            self.free_head = slot.next;
            slot.segment = Some(segment);
            slot.next = NIL;
            return index;
        }
        let index = u32::try_from(self.slots.len()).expect("fewer than 4 billion segments in flight");
        assert!(index != NIL);
        self.slots.push(SegmentSlot { segment: Some(segment), next: NIL });
        index
    }

    fn release(&mut self, index: u32) -> Segment {
        let slot = &mut self.slots[index as usize];
        let segment = slot.segment.take().expect("released a free slot");
        slot.next = self.free_head;
        self.free_head = index;
        assert!(self.live_count > 0);
        self.live_count -= 1;
        segment
    }

    fn get(&self, index: u32) -> &Segment {
        self.slots[index as usize].segment.as_ref().expect("a linked slot holds a segment")
    }

    fn get_mut(&mut self, index: u32) -> &mut Segment {
        self.slots[index as usize].segment.as_mut().expect("a linked slot holds a segment")
    }
}

struct Flow {
    /// First and last segment in the arena, `NIL` when empty.
    head: u32,
    tail: u32,
    segment_count: u32,
    /// An RST is queued on this flow (not yet delivered, not dropped with the flow).
    rst_queued: bool,
    queued_bytes: usize,
    last_due_at: Time,
    epoch: u32,
    held: bool,
    unacked_since: Option<Time>,
    stall_generation: u32,
}

impl Default for Flow {
    fn default() -> Flow {
        Flow {
            head: NIL,
            tail: NIL,
            segment_count: 0,
            rst_queued: false,
            queued_bytes: 0,
            last_due_at: Time::ZERO,
            epoch: 0,
            held: false,
            unacked_since: None,
            stall_generation: 0,
        }
    }
}

impl Flow {
    fn push_back(&mut self, arena: &mut SegmentArena, segment: Segment) {
        if matches!(segment.kind, SegmentKind::Rst) {
            assert!(!self.rst_queued, "one RST at a time per flow");
            self.rst_queued = true;
        }
        self.queued_bytes += segment.byte_count();
        let index = arena.alloc(segment);
        if self.tail == NIL {
            assert!(self.head == NIL && self.segment_count == 0);
            self.head = index;
        } else {
            arena.slots[self.tail as usize].next = index;
        }
        self.tail = index;
        self.segment_count += 1;
    }

    fn front<'arena>(&self, arena: &'arena SegmentArena) -> Option<&'arena Segment> {
        (self.head != NIL).then(|| arena.get(self.head))
    }

    fn pop_front(&mut self, arena: &mut SegmentArena) -> Option<Segment> {
        if self.head == NIL {
            return None;
        }
        let index = self.head;
        self.head = arena.slots[index as usize].next;
        if self.head == NIL {
            self.tail = NIL;
        }
        self.segment_count -= 1;
        let segment = arena.release(index);
        if matches!(segment.kind, SegmentKind::Rst) {
            self.rst_queued = false;
        }
        self.queued_bytes -= segment.byte_count();
        assert_eq!(self.head == NIL, self.segment_count == 0);
        Some(segment)
    }

    fn reset(&mut self, arena: &mut SegmentArena) {
        while self.pop_front(arena).is_some() {}
        assert_eq!(self.queued_bytes, 0);
        assert!(!self.rst_queued, "popping every segment clears the RST mark");
        self.queued_bytes = 0;
        self.last_due_at = Time::ZERO;
        self.epoch = self.epoch.wrapping_add(1);
        self.held = false;
        self.unacked_since = None;
        self.stall_generation = self.stall_generation.wrapping_add(1);
    }

    fn is_stalled(&self) -> bool {
        self.held || self.unacked_since.is_some()
    }
}

struct Connection {
    generation: u32,
    in_use: bool,
    client_host: HostId,
    server_host: HostId,
    listener: ListenerId,
    token: u64,
    started_at: Time,
    ends: [EndState; 2],
    flows: [Flow; 2],
}

impl Connection {
    fn end(&self, side: Side) -> EndState {
        self.ends[side.flow()]
    }

    fn set_end(&mut self, side: Side, state: EndState) {
        self.ends[side.flow()] = state;
    }

    fn endpoint(&self, side: Side) -> Endpoint {
        match side {
            Side::Client => Endpoint::Client { token: self.token },
            Side::Server => Endpoint::Server { listener: self.listener },
        }
    }

    /// Source and destination host of a flow.
    fn flow_hosts(&self, flow: usize) -> (HostId, HostId) {
        if flow == 0 { (self.client_host, self.server_host) } else { (self.server_host, self.client_host) }
    }
}

fn flow_sender(flow: usize) -> Side {
    if flow == 0 { Side::Client } else { Side::Server }
}

#[derive(Clone, Copy)]
struct Path {
    link: LinkConfig,
    blocked: bool,
}

struct Listener {
    host: HostId,
    up: bool,
}

/// The whole simulated network of a run.
pub struct Network {
    config: NetConfig,
    host_count: usize,
    /// Dense `host_count x host_count` matrix of directed paths, indexed `from * host_count + to`.
    paths: Vec<Path>,
    listeners: Vec<Listener>,
    connections: Vec<Connection>,
    free_slots: Vec<u32>,
    /// Flows that are held or unacknowledged, as `(connection, flow)`; ordered for determinism.
    stalled: BTreeSet<(ConnId, u8)>,
    segments: SegmentArena,
    outputs: VecDeque<NetOutput>,
    latency_rng: ChaCha8Rng,
    loss_rng: ChaCha8Rng,
    stats: NetStats,
    open_connection_count: usize,
}

impl Network {
    /// A network of `host_count` hosts, every path at its default, drawing from `run_seed`'s
    /// latency and loss streams.
    pub fn new(config: NetConfig, host_count: usize, run_seed: u64) -> Network {
        assert!(host_count > 0 && host_count <= 4096, "host count out of range: {host_count}");
        config.default_link.validate();
        config.loopback_link.validate();
        assert!(config.rto_min <= config.rto_max && !config.rto_min.is_zero());
        assert!(config.flow_bytes_limit > 0);
        let mut paths = Vec::with_capacity(host_count * host_count);
        for from in 0..host_count {
            for to in 0..host_count {
                let link = if from == to { config.loopback_link } else { config.default_link };
                paths.push(Path { link, blocked: false });
            }
        }
        Network {
            config,
            host_count,
            paths,
            listeners: Vec::new(),
            connections: Vec::new(),
            free_slots: Vec::new(),
            stalled: BTreeSet::new(),
            segments: SegmentArena::new(),
            outputs: VecDeque::new(),
            latency_rng: stream_rng(run_seed, Stream::NetworkLatency),
            loss_rng: stream_rng(run_seed, Stream::NetworkLoss),
            stats: NetStats::default(),
            open_connection_count: 0,
        }
    }

    /// The model's configuration.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// Counters so far.
    pub fn stats(&self) -> &NetStats {
        &self.stats
    }

    /// Connections whose slot is in use (at least one end not gone, or a connect in progress).
    pub fn connection_count(&self) -> usize {
        self.open_connection_count
    }

    /// Segments queued or in flight over all flows (bounded by the flows' byte limits).
    pub fn segments_in_flight(&self) -> usize {
        self.segments.live_count
    }

    /// The next output for an endpoint, if any.
    pub fn poll_output(&mut self) -> Option<NetOutput> {
        self.outputs.pop_front()
    }

    /// Adds a listener (a pod's port) on `host`, initially up.
    pub fn add_listener(&mut self, host: HostId) -> ListenerId {
        assert!((host.0 as usize) < self.host_count, "unknown host {host:?}");
        let id = ListenerId(u32::try_from(self.listeners.len()).expect("too many listeners"));
        self.listeners.push(Listener { host, up: true });
        id
    }

    /// The host a listener lives on.
    pub fn listener_host(&self, listener: ListenerId) -> HostId {
        self.listeners[listener.0 as usize].host
    }

    /// Marks a listener up (a pod restarted) or down without touching its connections.
    pub fn set_listener_up(&mut self, listener: ListenerId, up: bool) {
        self.listeners[listener.0 as usize].up = up;
    }

    fn path_index(&self, from: HostId, to: HostId) -> usize {
        let (from, to) = (from.0 as usize, to.0 as usize);
        assert!(from < self.host_count && to < self.host_count, "unknown host");
        from * self.host_count + to
    }

    fn blocked(&self, from: HostId, to: HostId) -> bool {
        self.paths[self.path_index(from, to)].blocked
    }

    /// Whether `from -> to` is currently blocked by a partition.
    pub fn is_blocked(&self, from: HostId, to: HostId) -> bool {
        self.blocked(from, to)
    }

    /// The link from `a` to `b`.
    pub fn link(&self, a: HostId, b: HostId) -> LinkConfig {
        self.paths[self.path_index(a, b)].link
    }

    /// Sets the link between `a` and `b` (both directions).
    pub fn set_link(&mut self, a: HostId, b: HostId, link: LinkConfig) {
        link.validate();
        let forward = self.path_index(a, b);
        let backward = self.path_index(b, a);
        self.paths[forward].link = link;
        self.paths[backward].link = link;
    }

    /// Blocks `from -> to` only (a one-way partition); `to -> from` keeps working.
    pub fn block_one_way<E: From<NetEvent>>(
        &mut self,
        now: Time,
        from: HostId,
        to: HostId,
        queue: &mut EventQueue<E>,
    ) {
        assert!(from != to, "a host cannot be partitioned from itself");
        let index = self.path_index(from, to);
        self.paths[index].blocked = true;
        self.paths_changed(now, queue);
    }

    /// Blocks both directions between `a` and `b`.
    pub fn partition<E: From<NetEvent>>(
        &mut self,
        now: Time,
        a: HostId,
        b: HostId,
        queue: &mut EventQueue<E>,
    ) {
        self.block_one_way(now, a, b, queue);
        self.block_one_way(now, b, a, queue);
    }

    /// Unblocks both directions between `a` and `b`; held flows retransmit.
    pub fn heal<E: From<NetEvent>>(&mut self, now: Time, a: HostId, b: HostId, queue: &mut EventQueue<E>) {
        let forward = self.path_index(a, b);
        let backward = self.path_index(b, a);
        self.paths[forward].blocked = false;
        self.paths[backward].blocked = false;
        self.paths_changed(now, queue);
    }

    /// Unblocks every path.
    pub fn heal_all<E: From<NetEvent>>(&mut self, now: Time, queue: &mut EventQueue<E>) {
        for path in &mut self.paths {
            path.blocked = false;
        }
        self.paths_changed(now, queue);
        assert!(self.paths.iter().all(|path| !path.blocked));
    }

    /// Starts a connect from `client_host` (an endpoint identified by `token`) to `listener`.
    pub fn connect<E: From<NetEvent>>(
        &mut self,
        now: Time,
        client_host: HostId,
        token: u64,
        listener: ListenerId,
        queue: &mut EventQueue<E>,
    ) -> ConnId {
        let server_host = self.listeners[listener.0 as usize].host;
        let index = match self.free_slots.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(self.connections.len()).expect("too many connections");
                self.connections.push(Connection {
                    generation: 0,
                    in_use: false,
                    client_host,
                    server_host,
                    listener,
                    token,
                    started_at: now,
                    ends: [EndState::Gone; 2],
                    flows: [Flow::default(), Flow::default()],
                });
                index
            }
        };
        let connection = &mut self.connections[index as usize];
        assert!(!connection.in_use, "free slot in use");
        connection.in_use = true;
        connection.client_host = client_host;
        connection.server_host = server_host;
        connection.listener = listener;
        connection.token = token;
        connection.started_at = now;
        connection.ends = [EndState::Pending, EndState::Pending];
        connection.flows[0].reset(&mut self.segments);
        connection.flows[1].reset(&mut self.segments);
        let conn = ConnId::new(index, connection.generation);
        self.open_connection_count += 1;
        self.stats.connects_started += 1;
        let syn_at = now + self.draw_delay(client_host, server_host);
        queue.schedule(syn_at, NetEvent::SynArrive { conn }.into());
        conn
    }

    /// Sends bytes from `side` of `conn`.
    pub fn send<E: From<NetEvent>>(
        &mut self,
        now: Time,
        conn: ConnId,
        side: Side,
        bytes: Bytes,
        queue: &mut EventQueue<E>,
    ) -> Result<(), SendError> {
        assert!(!bytes.is_empty(), "empty sends are a driver bug");
        let Some(connection) = self.live(conn) else {
            self.stats.sends_on_closed += 1;
            return Err(SendError::Closed);
        };
        if connection.end(side) != EndState::Open {
            self.stats.sends_on_closed += 1;
            return Err(SendError::Closed);
        }
        let flow = &connection.flows[side.flow()];
        if flow.queued_bytes + bytes.len() > self.config.flow_bytes_limit {
            self.stats.overflow_aborts += 1;
            self.abort_end(now, conn, side, CloseCause::BufferOverflow, queue);
            return Err(SendError::BufferOverflow);
        }
        self.stats.segments_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        self.push_segment(now, conn, side.flow(), SegmentKind::Data(bytes), queue);
        Ok(())
    }

    /// Closes `side` of `conn` gracefully: a FIN follows the data already sent. Closing an end
    /// that is already gone does nothing (the world may learn of a loss and close in one step).
    pub fn close<E: From<NetEvent>>(
        &mut self,
        now: Time,
        conn: ConnId,
        side: Side,
        queue: &mut EventQueue<E>,
    ) {
        let Some(connection) = self.live_mut(conn) else { return };
        let state = connection.end(side);
        connection.set_end(side, EndState::Gone);
        let peer_state = connection.end(side.other());
        if state == EndState::Open && peer_state != EndState::Gone {
            self.push_segment(now, conn, side.flow(), SegmentKind::Fin, queue);
        }
        self.maybe_free(conn);
    }

    /// The pod behind `listener` crashed: the listener goes down and every connection it accepted
    /// is reset (data already sent still arrives, then an RST).
    pub fn reset_listener<E: From<NetEvent>>(
        &mut self,
        now: Time,
        listener: ListenerId,
        queue: &mut EventQueue<E>,
    ) {
        self.listeners[listener.0 as usize].up = false;
        // A crash is a rare fault event, so one pass over the slots is acceptable and keeps no
        // per-listener index to maintain on every connect.
        for index in 0..self.connections.len() {
            let connection = &self.connections[index];
            if !connection.in_use || connection.listener != listener {
                continue;
            }
            let conn = ConnId::new(index as u32, connection.generation);
            if connection.end(Side::Server) == EndState::Open {
                self.abort_end_with_rst(now, conn, Side::Server, queue);
            }
            self.maybe_free(conn);
        }
        assert!(!self.listeners[listener.0 as usize].up);
    }

    /// The process behind the connecting end of `conn` died (a crashed pod's outbound
    /// connection): data already sent still arrives, then an RST, as for [`Network::reset_listener`].
    /// A connect still in progress is abandoned like a [`Network::close`] of it.
    pub fn reset_client_end<E: From<NetEvent>>(
        &mut self,
        now: Time,
        conn: ConnId,
        queue: &mut EventQueue<E>,
    ) {
        let Some(connection) = self.live(conn) else { return };
        if connection.end(Side::Client) == EndState::Open {
            self.abort_end_with_rst(now, conn, Side::Client, queue);
            self.maybe_free(conn);
        } else {
            self.close(now, conn, Side::Client, queue);
        }
        assert!(self.live(conn).is_none_or(|connection| connection.end(Side::Client) == EndState::Gone));
    }

    /// Processes one of the network's own events.
    pub fn handle<E: From<NetEvent>>(&mut self, now: Time, event: NetEvent, queue: &mut EventQueue<E>) {
        match event {
            NetEvent::SynArrive { conn } => self.on_syn_arrive(now, conn, queue),
            NetEvent::ConnectReply { conn, accepted } => self.on_connect_reply(now, conn, accepted, queue),
            NetEvent::ConnectTimeout { conn } => self.on_connect_timeout(conn),
            NetEvent::Deliver { conn, flow, epoch } => {
                self.on_deliver(now, conn, usize::from(flow), epoch, queue)
            }
            NetEvent::StallTimeout { conn, flow, stall_generation } => {
                self.on_stall_timeout(now, conn, usize::from(flow), stall_generation)
            }
        }
    }

    fn live(&self, conn: ConnId) -> Option<&Connection> {
        let connection = self.connections.get(conn.index())?;
        (connection.in_use && connection.generation == conn.generation()).then_some(connection)
    }

    fn live_mut(&mut self, conn: ConnId) -> Option<&mut Connection> {
        let connection = self.connections.get_mut(conn.index())?;
        (connection.in_use && connection.generation == conn.generation()).then_some(connection)
    }

    /// Latency plus retransmission delays for one segment from `from` to `to`.
    fn draw_delay(&mut self, from: HostId, to: HostId) -> Duration {
        let link = self.paths[self.path_index(from, to)].link;
        let latency = if link.latency_min == link.latency_max {
            link.latency_min
        } else {
            let nanos = self
                .latency_rng
                .random_range(link.latency_min.as_nanos() as u64..=link.latency_max.as_nanos() as u64);
            Duration::from_nanos(nanos)
        };
        let mut extra = Duration::ZERO;
        if link.loss_probability > 0.0 {
            let mut rto = self.config.rto_min;
            // Bounded: a retransmission is lost with probability < 1, and we cap the attempts so
            // a pathological probability cannot spin; the cap's delay is then simply the sum.
            for _ in 0..16 {
                if !self.loss_rng.random_bool(link.loss_probability) {
                    break;
                }
                self.stats.retransmissions += 1;
                extra += rto;
                rto = (rto * 2).min(self.config.rto_max);
            }
        }
        latency + extra
    }

    fn push_segment<E: From<NetEvent>>(
        &mut self,
        now: Time,
        conn: ConnId,
        flow_index: usize,
        kind: SegmentKind,
        queue: &mut EventQueue<E>,
    ) {
        let connection = self.live(conn).expect("push on a dead connection");
        let (from, to) = connection.flow_hosts(flow_index);
        let held = connection.flows[flow_index].held;
        let delay = if held { Duration::ZERO } else { self.draw_delay(from, to) };
        let connection = &mut self.connections[conn.index()];
        let flow = &mut connection.flows[flow_index];
        if !flow.held
            && flow.tail != NIL
            && (now + delay) <= flow.last_due_at
            && let SegmentKind::Data(bytes) = &kind
        {
            let tail = self.segments.get_mut(flow.tail);
            assert_eq!(tail.due_at, flow.last_due_at, "the tail of a live flow is its last due segment");
            if tail.try_coalesce(bytes) {
                flow.queued_bytes += bytes.len();
                self.stats.segments_coalesced += 1;
                assert!(flow.queued_bytes <= self.config.flow_bytes_limit);
                return;
            }
        }
        let mut segment = Segment { sent_at: now, due_at: Time::MAX, kind };
        if !flow.held {
            // A later segment never overtakes an earlier one.
            segment.due_at = (now + delay).max(flow.last_due_at);
            flow.last_due_at = segment.due_at;
            queue.schedule(
                segment.due_at,
                NetEvent::Deliver { conn, flow: flow_index as u8, epoch: flow.epoch }.into(),
            );
        }
        flow.push_back(&mut self.segments, segment);
        assert!(flow.queued_bytes <= self.config.flow_bytes_limit);
    }

    fn on_syn_arrive<E: From<NetEvent>>(&mut self, now: Time, conn: ConnId, queue: &mut EventQueue<E>) {
        let Some(connection) = self.live(conn) else { return };
        assert_eq!(connection.end(Side::Server), EndState::Pending);
        let (client_host, server_host, listener) =
            (connection.client_host, connection.server_host, connection.listener);
        let timeout_at = (connection.started_at + self.config.connect_timeout).max(now);
        if connection.end(Side::Client) == EndState::Gone {
            // The client abandoned the attempt; nothing is accepted.
            self.live_mut(conn).expect("live").set_end(Side::Server, EndState::Gone);
            self.maybe_free(conn);
            return;
        }
        let listener_up = self.listeners[listener.0 as usize].up;
        if self.blocked(client_host, server_host) || self.blocked(server_host, client_host) {
            queue.schedule(timeout_at, NetEvent::ConnectTimeout { conn }.into());
        } else if !listener_up {
            let reply_at = now + self.draw_delay(server_host, client_host);
            queue.schedule(reply_at, NetEvent::ConnectReply { conn, accepted: false }.into());
        } else {
            let reply_at = now + self.draw_delay(server_host, client_host);
            let connection = self.live_mut(conn).expect("live");
            connection.set_end(Side::Server, EndState::Open);
            // Server data may not overtake the SYN-ACK.
            connection.flows[1].last_due_at = reply_at;
            connection.flows[0].last_due_at = now;
            self.stats.connects_accepted += 1;
            self.outputs.push_back(NetOutput::Accepted { conn, listener });
            queue.schedule(reply_at, NetEvent::ConnectReply { conn, accepted: true }.into());
        }
    }

    fn on_connect_reply<E: From<NetEvent>>(
        &mut self,
        now: Time,
        conn: ConnId,
        accepted: bool,
        queue: &mut EventQueue<E>,
    ) {
        let Some(connection) = self.live_mut(conn) else { return };
        let client_state = connection.end(Side::Client);
        let token = connection.token;
        match (client_state, accepted) {
            (EndState::Pending, true) => {
                connection.set_end(Side::Client, EndState::Open);
                self.outputs.push_back(NetOutput::Connected { conn, token });
            }
            (EndState::Pending, false) => {
                connection.set_end(Side::Client, EndState::Gone);
                connection.set_end(Side::Server, EndState::Gone);
                self.stats.connects_refused += 1;
                self.outputs.push_back(NetOutput::ConnectFailed {
                    conn,
                    token,
                    cause: ConnectFailure::Refused,
                });
            }
            (EndState::Gone, true) => {
                // The client gave up before the SYN-ACK came: its kernel answers with an RST.
                if connection.end(Side::Server) == EndState::Open
                    && !connection.flows[Side::Client.flow()].rst_queued
                {
                    self.stats.resets_sent += 1;
                    self.push_segment(now, conn, Side::Client.flow(), SegmentKind::Rst, queue);
                }
            }
            (EndState::Gone, false) => {
                connection.set_end(Side::Server, EndState::Gone);
            }
            (EndState::Open, _) => unreachable!("a connection is established only once"),
        }
        self.maybe_free(conn);
    }

    fn on_connect_timeout(&mut self, conn: ConnId) {
        let Some(connection) = self.live_mut(conn) else { return };
        assert_ne!(connection.end(Side::Server), EndState::Open, "timed out an accepted connect");
        let token = connection.token;
        let was_pending = connection.end(Side::Client) == EndState::Pending;
        connection.set_end(Side::Client, EndState::Gone);
        connection.set_end(Side::Server, EndState::Gone);
        if was_pending {
            self.stats.connects_timed_out += 1;
            self.outputs.push_back(NetOutput::ConnectFailed { conn, token, cause: ConnectFailure::TimedOut });
        }
        self.maybe_free(conn);
    }

    fn on_deliver<E: From<NetEvent>>(
        &mut self,
        now: Time,
        conn: ConnId,
        flow_index: usize,
        epoch: u32,
        queue: &mut EventQueue<E>,
    ) {
        let connection_timeout = self.config.connection_timeout;
        let Some(connection) = self.live(conn) else { return };
        if connection.flows[flow_index].epoch != epoch {
            return; // Re-timed or reset since this event was scheduled.
        }
        let (from, to) = connection.flow_hosts(flow_index);
        let forward_blocked = self.blocked(from, to);
        let backward_blocked = self.blocked(to, from);
        // Field access (not `live_mut`) so `self.stalled` and `self.outputs` stay borrowable.
        let connection = &mut self.connections[conn.index()];
        let receiver_alive = connection.end(flow_sender(flow_index).other()) == EndState::Open;
        let flow = &mut connection.flows[flow_index];
        let front = flow.front(&self.segments).expect("a deliver event without a segment");
        assert!(front.due_at == now, "segment delivered off schedule");
        assert!(!flow.held, "a held flow has no live deliver events");
        if forward_blocked {
            // Hold the whole flow: TCP delivers nothing past the missing segment.
            flow.held = true;
            flow.epoch = flow.epoch.wrapping_add(1);
            if flow.unacked_since.is_none() {
                flow.unacked_since = Some(front.sent_at);
                flow.stall_generation = flow.stall_generation.wrapping_add(1);
                let timeout_at = (front.sent_at + connection_timeout).max(now);
                let stall_generation = flow.stall_generation;
                queue.schedule(
                    timeout_at,
                    NetEvent::StallTimeout { conn, flow: flow_index as u8, stall_generation }.into(),
                );
            }
            self.stats.flows_held += 1;
            self.stalled.insert((conn, flow_index as u8));
            return;
        }
        let segment = flow.pop_front(&mut self.segments).expect("front exists");
        // A dead end never acknowledges (its kernel answers with an RST instead), and no ACK
        // crosses a blocked way back: either way the sender's data stays unacknowledged.
        if backward_blocked || !receiver_alive {
            if flow.unacked_since.is_none() {
                flow.unacked_since = Some(segment.sent_at);
                flow.stall_generation = flow.stall_generation.wrapping_add(1);
                let timeout_at = (segment.sent_at + connection_timeout).max(now);
                let stall_generation = flow.stall_generation;
                queue.schedule(
                    timeout_at,
                    NetEvent::StallTimeout { conn, flow: flow_index as u8, stall_generation }.into(),
                );
                self.stalled.insert((conn, flow_index as u8));
            }
        } else if flow.unacked_since.is_some() {
            // The cumulative ACK for this segment gets through: everything before is acknowledged.
            flow.unacked_since = None;
            flow.stall_generation = flow.stall_generation.wrapping_add(1);
            self.stalled.remove(&(conn, flow_index as u8));
        }
        let receiver = flow_sender(flow_index).other();
        let receiver_state = connection.end(receiver);
        let sender_state = connection.end(receiver.other());
        let endpoint = connection.endpoint(receiver);
        match receiver_state {
            EndState::Open => match segment.kind {
                SegmentKind::Data(bytes) => {
                    self.stats.segments_delivered += 1;
                    self.stats.bytes_delivered += bytes.len() as u64;
                    self.outputs.push_back(NetOutput::Data { conn, to: endpoint, bytes });
                }
                SegmentKind::Chunks(chunks) => {
                    let total: usize = chunks.iter().map(Bytes::len).sum();
                    let mut joined = BytesMut::with_capacity(total);
                    for chunk in &chunks {
                        joined.extend_from_slice(chunk);
                    }
                    assert_eq!(joined.len(), total);
                    self.stats.segments_delivered += 1;
                    self.stats.bytes_delivered += total as u64;
                    self.outputs.push_back(NetOutput::Data { conn, to: endpoint, bytes: joined.freeze() });
                }
                SegmentKind::Fin | SegmentKind::Rst => {
                    let cause = if matches!(segment.kind, SegmentKind::Fin) {
                        CloseCause::Fin
                    } else {
                        CloseCause::Reset
                    };
                    connection.set_end(receiver, EndState::Gone);
                    self.outputs.push_back(NetOutput::Closed { conn, end: endpoint, cause });
                    // A FIN is answered by closing too in MQTT's usage, so the peer learns nothing
                    // more; an RST needs no answer.
                }
            },
            EndState::Gone | EndState::Pending => {
                assert!(
                    receiver_state != EndState::Pending || receiver == Side::Server,
                    "data before connect"
                );
                let answers_with_rst = matches!(segment.kind, SegmentKind::Data(_) | SegmentKind::Chunks(_));
                // One RST at a time: a data segment reaching a dead end is answered unless an RST
                // is already on its way (one lost with a timed-out flow does not count).
                if answers_with_rst
                    && !connection.flows[receiver.flow()].rst_queued
                    && sender_state == EndState::Open
                {
                    self.stats.resets_sent += 1;
                    self.push_segment(now, conn, receiver.flow(), SegmentKind::Rst, queue);
                }
            }
        }
        self.maybe_free(conn);
    }

    fn on_stall_timeout(&mut self, now: Time, conn: ConnId, flow_index: usize, stall_generation: u32) {
        let connection_timeout = self.config.connection_timeout;
        if self.live(conn).is_none() {
            return;
        }
        let connection = &mut self.connections[conn.index()];
        let flow = &mut connection.flows[flow_index];
        if flow.stall_generation != stall_generation {
            return;
        }
        let since = flow.unacked_since.expect("a live stall timeout has a stall");
        assert!(now >= since + connection_timeout, "stall timeout fired early");
        // The sender gives up: its unsent data is dropped and it is told; no RST goes out.
        flow.reset(&mut self.segments);
        self.stalled.remove(&(conn, flow_index as u8));
        self.stats.connections_timed_out += 1;
        let sender = flow_sender(flow_index);
        if connection.end(sender) == EndState::Open {
            connection.set_end(sender, EndState::Gone);
            let end = connection.endpoint(sender);
            self.outputs.push_back(NetOutput::Closed { conn, end, cause: CloseCause::TimedOut });
        }
        self.maybe_free(conn);
    }

    /// Aborts one end (buffer overflow): it is told at once, its flow is dropped and an RST goes
    /// to the peer.
    fn abort_end<E: From<NetEvent>>(
        &mut self,
        now: Time,
        conn: ConnId,
        side: Side,
        cause: CloseCause,
        queue: &mut EventQueue<E>,
    ) {
        assert!(self.live(conn).is_some(), "abort on a dead connection");
        let connection = &mut self.connections[conn.index()];
        assert_eq!(connection.end(side), EndState::Open);
        let end = connection.endpoint(side);
        connection.flows[side.flow()].reset(&mut self.segments);
        self.stalled.remove(&(conn, side.flow() as u8));
        self.outputs.push_back(NetOutput::Closed { conn, end, cause });
        self.abort_end_with_rst(now, conn, side, queue);
        self.maybe_free(conn);
    }

    /// Marks `side` gone and queues an RST behind its data already sent, if the peer is alive.
    fn abort_end_with_rst<E: From<NetEvent>>(
        &mut self,
        now: Time,
        conn: ConnId,
        side: Side,
        queue: &mut EventQueue<E>,
    ) {
        let connection = self.live_mut(conn).expect("live");
        connection.set_end(side, EndState::Gone);
        if connection.end(side.other()) != EndState::Gone && !connection.flows[side.flow()].rst_queued {
            self.stats.resets_sent += 1;
            self.push_segment(now, conn, side.flow(), SegmentKind::Rst, queue);
        }
    }

    /// Frees the slot once both ends are gone; pending events for it become stale.
    fn maybe_free(&mut self, conn: ConnId) {
        if self.live(conn).is_none() {
            return;
        }
        let connection = &mut self.connections[conn.index()];
        if connection.ends != [EndState::Gone, EndState::Gone] {
            return;
        }
        connection.in_use = false;
        connection.generation = connection.generation.wrapping_add(1);
        connection.flows[0].reset(&mut self.segments);
        connection.flows[1].reset(&mut self.segments);
        self.stalled.remove(&(conn, 0));
        self.stalled.remove(&(conn, 1));
        self.free_slots.push(conn.index() as u32);
        assert!(self.open_connection_count > 0);
        self.open_connection_count -= 1;
    }

    /// After partitions change: retransmit held flows whose direction opened, and clear
    /// unacknowledged stalls whose way back opened.
    fn paths_changed<E: From<NetEvent>>(&mut self, now: Time, queue: &mut EventQueue<E>) {
        let stalled: Vec<(ConnId, u8)> = self.stalled.iter().copied().collect();
        for (conn, flow_index) in stalled {
            let flow_index = usize::from(flow_index);
            let connection = self.live(conn).expect("stalled flows belong to live connections");
            let (from, to) = connection.flow_hosts(flow_index);
            let flow = &connection.flows[flow_index];
            assert!(flow.is_stalled());
            if flow.held && !self.blocked(from, to) {
                let segment_count = flow.segment_count as usize;
                let mut previous_due_at = now;
                let mut due_times = Vec::with_capacity(segment_count);
                for _ in 0..segment_count {
                    let due_at = (now + self.draw_delay(from, to)).max(previous_due_at);
                    due_times.push(due_at);
                    previous_due_at = due_at;
                }
                let connection = &mut self.connections[conn.index()];
                let flow = &mut connection.flows[flow_index];
                flow.held = false;
                flow.epoch = flow.epoch.wrapping_add(1);
                let mut index = flow.head;
                for due_at in due_times {
                    assert!(index != NIL, "fewer segments than counted");
                    self.segments.get_mut(index).due_at = due_at;
                    index = self.segments.slots[index as usize].next;
                    queue.schedule(
                        due_at,
                        NetEvent::Deliver { conn, flow: flow_index as u8, epoch: flow.epoch }.into(),
                    );
                }
                flow.last_due_at = previous_due_at;
            } else if !flow.held && !self.blocked(to, from) {
                let receiver = flow_sender(flow_index).other();
                let connection = self.live_mut(conn).expect("live");
                if connection.end(receiver) == EndState::Open {
                    let flow = &mut connection.flows[flow_index];
                    flow.unacked_since = None;
                    flow.stall_generation = flow.stall_generation.wrapping_add(1);
                } else if connection.end(receiver.other()) == EndState::Open
                    && !connection.flows[receiver.flow()].rst_queued
                {
                    // The retransmission reaches a dead end, whose kernel answers with an RST.
                    self.stats.resets_sent += 1;
                    self.push_segment(now, conn, receiver.flow(), SegmentKind::Rst, queue);
                }
            }
            let still_stalled = self.live(conn).expect("live").flows[flow_index].is_stalled();
            if !still_stalled {
                self.stalled.remove(&(conn, flow_index as u8));
            }
        }
    }
}
