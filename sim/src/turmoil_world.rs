//! The shell world: a scenario's pods run as the real tokio broker shell on turmoil hosts, its
//! fleets and subscribers as real client shells on turmoil clients, all over turmoil's simulated
//! TCP, driven from one seed to the same [`Outcome`] the fast engine produces.
//!
//! This module owns the mapping from a [`Scenario`] to a turmoil simulation (one host per pod, one
//! per fleet, one per subscriber), the drivers that feed the devices' planned publishes into their
//! client shells and the shells' events into the ledger (through [`edgeproof_scenarios::agents`], the rules both
//! engines share), and the fault schedule, applied between simulation steps. It must never read a
//! real clock (except [`run_turmoil`]'s one wall-clock measurement, which never influences the
//! run), never draw unseeded randomness, and never let a client reach a broker except through
//! turmoil's network.
//!
//! # Model differences from the fast engine (stated, not hidden)
//! - turmoil's TCP never retransmits: a lost segment hangs its connection until keep-alive
//!   notices. Link loss is therefore not modelled here; a scenario with `loss > 0` is refused with
//!   [`TurmoilError::LossUnsupported`] rather than run with a different meaning.
//! - Latency is turmoil's: at least `min`, at most `max`, exponentially distributed in between (the
//!   fast engine draws uniformly), and time advances in ticks ([`TurmoilOptions::tick`]), so every
//!   recorded time is a multiple of the tick.
//! - A crash is `Sim::crash` of the pod's host: its runtime, sockets and in-memory broker are
//!   dropped; a restart is `Sim::bounce`, which starts the broker shell afresh.
//!
//! # Determinism, and its one process-wide input
//! A seed replays bit for bit in a fresh process (how a failing seed is replayed). Within one
//! process, a run with a crash may differ from an earlier run of the same seed: dropping a
//! crashed host's tokio runtime shuts its spawned tasks down shard by shard, and tokio picks a
//! task's shard from its id, a process-wide counter. The shell's connection tasks therefore
//! close their sockets in an order that depends on how many tasks the process spawned before.
//! Runs without crashes do not depend on it.
//!
//! # Phases
//! As on the fast engine: publishing runs for `duration_secs`; at its end every partition heals
//! and every crashed pod restarts; the drain runs for `drain_secs`; publishes still awaiting their
//! outcome at the end are indeterminate.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use edgeproof_scenarios::spec::{DiskFate, FaultAction, PodKind};
use edgeproof_scenarios::{Ledger, Outcome, RunInfo, Scenario, Workload};
use edgeproof_system::broker::{BrokerConfig, BrokerEvent};
use edgeproof_system::client::{ClientEvent, PublishToken};
use edgeproof_system::fs::{Fs, FsError};
use edgeproof_system::net::TokioClock;
use edgeproof_system::republisher::{Republisher, RepublisherConfig, RepublisherEvent};
use edgeproof_system::service::{BrokerService, EndpointName, MQTT_PORT, Output, Service, ServiceEvent};
use edgeproof_system::shell::{
    ClientHandle, ClientShellConfig, ClientShellError, ServiceHost, ServiceShellConfig, ServiceShellStats,
    run_service,
};
use edgeproof_system::time::{Clock, Time};
use tokio::sync::mpsc;

use crate::TurmoilNet;
use crate::disk::SimDisk;
use edgeproof_scenarios::agents::{
    DeviceAgent, DeviceRecord, DropTally, DuePublish, SubscriberAgent, SubscriberRecord, broker_drop_reason,
    declare_drops, republish_drop_reason,
};
use edgeproof_scenarios::agents::{device_config, subscriber_config};

/// turmoil's cost grows with the cube of its hosts (brief, section 3); past this the shell world
/// is the wrong tool and the fast engine is the right one.
pub const TURMOIL_HOSTS_LIMIT: usize = 30;

/// Knobs of a turmoil run that are not part of the scenario.
#[derive(Clone, Debug)]
pub struct TurmoilOptions {
    /// Simulated time per step; every recorded time is a multiple of it.
    pub tick: Duration,
    /// Bounds of every device's and subscriber's client shell.
    pub client_shell: ClientShellConfig,
    /// Bounds of every pod's service shell.
    pub pod_shell: ServiceShellConfig,
}

impl Default for TurmoilOptions {
    fn default() -> Self {
        TurmoilOptions {
            tick: Duration::from_millis(1),
            client_shell: ClientShellConfig {
                // Devices read PUBACKs and a few control packets; a small buffer keeps ten
                // thousand of them cheap. Subscribers read in several reads when they must.
                read_buffer_bytes: 4 * 1024,
                ..ClientShellConfig::default()
            },
            pod_shell: ServiceShellConfig::default(),
        }
    }
}

/// Why a scenario cannot run on turmoil.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TurmoilError {
    /// A pod's `config` table does not deserialize into the pod's config type.
    #[error("pod {pod}: invalid config: {message}")]
    PodConfig {
        /// The pod's name.
        pod: String,
        /// What the deserializer said.
        message: String,
    },
    /// turmoil's TCP does not retransmit, so link loss would hang connections instead of
    /// slowing them; such scenarios belong to the fast engine.
    #[error("{place}: loss {loss} is not supported on turmoil (its TCP does not retransmit)")]
    LossUnsupported {
        /// `[network]` or the fault that sets the loss.
        place: String,
        /// The loss probability asked for.
        loss: f64,
    },
    /// The scenario needs more turmoil hosts (pods + fleets + subscribers) than the limit.
    #[error("{hosts} turmoil hosts needed (pods + fleets + subscribers), the limit is {limit}")]
    TooManyHosts {
        /// Hosts the scenario needs.
        hosts: usize,
        /// [`TURMOIL_HOSTS_LIMIT`].
        limit: usize,
    },
    /// The simulation itself failed: a host's software returned an error or panicked.
    #[error("turmoil simulation failed at {at}: {message}")]
    Simulation {
        /// Simulated time of the failure.
        at: Time,
        /// turmoil's error.
        message: String,
    },
}

/// The simulation's global clock, for clients: the same reading on every host, so ledger times
/// from devices and subscribers compare. (Broker pods use [`TokioClock`], which restarts at zero
/// when the pod restarts, as a restarted process's monotonic clock would.)
#[derive(Clone, Copy, Debug, Default)]
pub struct SimClock;

impl Clock for SimClock {
    fn now(&self) -> Time {
        let elapsed = turmoil::sim_elapsed().expect("SimClock is read only inside a turmoil host");
        Time::from_nanos(u64::try_from(elapsed.as_nanos()).expect("a run lasts less than 584 years"))
    }
}

/// Counters of a turmoil run (the shells keep their own).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TurmoilStats {
    /// Simulation steps taken (each one tick).
    pub steps: u64,
    /// Records hashed into the trace (ledger records, client connection events, faults).
    pub trace_records: u64,
    /// Publishes the devices attempted (invoked plus refused by a full queue).
    pub publish_attempts: u64,
    /// Deliveries to subscribers whose payload carried no valid stamp.
    pub unstamped_deliveries: u64,
    /// Faults applied (scenario faults and the end-of-publishing recovery).
    pub faults_applied: u64,
    /// CONNACKs the clients (devices and subscribers) received.
    pub clients_connected: u64,
    /// Sessions that ended under a client (transport lost, broker DISCONNECT).
    pub clients_disconnected: u64,
    /// Connects the broker refused.
    pub connects_refused: u64,
    /// Transports the client cores asked for (first connects and every reconnect attempt);
    /// more than `clients_connected` means attempts that failed before a CONNACK.
    pub transports_opened: u64,
    /// Broker events the broker shells' observer queues could not take; each may have been a
    /// drop, so they are declared as [`DROP_BROKER_EVENTS_UNOBSERVED`] (the drop check fails).
    pub broker_events_unobserved: u64,
}

/// The drop-reason name under which broker events the observer queue lost are declared: the
/// oracle cannot tell whether they were drops, so the run fails visibly instead of guessing.
pub const DROP_BROKER_EVENTS_UNOBSERVED: &str = "broker_events_unobserved";

/// Capacity of a broker shell's event queue to the books. The drain runs whenever the broker
/// task yields, so the queue holds at most one tick's events (a fleet connecting at once).
const BROKER_EVENTS_QUEUE_LIMIT: usize = 1 << 16;

/// A run's outcome with the engine's own counters.
#[derive(Clone, Debug)]
pub struct TurmoilRun {
    /// What the checkers found, with `engine = "turmoil"`.
    pub outcome: Outcome,
    /// The engine's own counters.
    pub stats: TurmoilStats,
}

/// Word-wise FNV-1a 64: the trace hash. Fixed constants, so equal traces hash equal on every
/// platform and every build.
#[derive(Clone, Copy, Debug)]
struct TraceHash(u64);

impl TraceHash {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> TraceHash {
        TraceHash(Self::OFFSET)
    }

    fn word(&mut self, word: u64) {
        for byte in word.to_le_bytes() {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }
}

/// Trace record kinds (the first word of every record).
mod kind {
    pub const INVOKED: u64 = 1;
    pub const REFUSED: u64 = 2;
    pub const ACKED: u64 = 3;
    pub const FAILED: u64 = 4;
    pub const SUBSCRIBED: u64 = 5;
    pub const DELIVERED: u64 = 6;
    pub const UNSTAMPED: u64 = 7;
    pub const FAULT: u64 = 8;
    pub const CONNECTED: u64 = 9;
    pub const DISCONNECTED: u64 = 10;
    pub const CONNECT_REFUSED: u64 = 11;
    pub const OPEN_TRANSPORT: u64 = 12;
}

/// Everything the drivers on every host record into, shared by the hosts (turmoil runs them all
/// on one thread, one at a time; no borrow is ever held across an `await`).
struct Books {
    ledger: Ledger,
    trace: TraceHash,
    devices: Vec<DeviceAgent>,
    subscribers: Vec<SubscriberAgent>,
    stats: TurmoilStats,
    payload_buffer: BytesMut,
    /// Publishes the device cores refused and message copies the brokers dropped, by drop
    /// reason (declared at the end).
    drops: DropTally,
    /// The counters of every broker shell started (a restart starts a new one), to find broker
    /// events the observer queue could not take.
    pod_shells: Vec<ServiceShellStats>,
}

type Shared = Rc<RefCell<Books>>;

impl Books {
    fn record(&mut self, now: Time, kind: u64, a: u64, b: u64) {
        self.trace.word(now.as_nanos());
        self.trace.word(kind);
        self.trace.word(a);
        self.trace.word(b);
        self.stats.trace_records += 1;
    }

    /// Client connection events, hashed for both roles (`who` tells devices from subscribers).
    fn record_connection(&mut self, now: Time, who: u64, event: &ClientEvent) {
        match event {
            ClientEvent::Connected { session_present } => {
                self.stats.clients_connected += 1;
                self.record(now, kind::CONNECTED, who, u64::from(*session_present))
            }
            ClientEvent::Disconnected { reason } => {
                self.stats.clients_disconnected += 1;
                self.record(now, kind::DISCONNECTED, who, reason.map_or(u64::MAX, |code| u64::from(code.0)))
            }
            ClientEvent::ConnectRefused { reason } => {
                self.stats.connects_refused += 1;
                self.record(now, kind::CONNECT_REFUSED, who, u64::from(reason.0))
            }
            ClientEvent::OpenTransport => {
                self.stats.transports_opened += 1;
                self.record(now, kind::OPEN_TRANSPORT, who, 0)
            }
            _ => {}
        }
    }

    fn device_event(&mut self, device: usize, now: Time, event: &ClientEvent) {
        let publisher_id = self.devices[device].publisher_id();
        self.record_connection(now, publisher_id, event);
        match self.devices[device].on_event(now, event, &mut self.ledger) {
            DeviceRecord::Acked { seq } => self.record(now, kind::ACKED, publisher_id, seq),
            DeviceRecord::Failed { seq, reason } => {
                self.record(now, kind::FAILED, publisher_id, seq << 8 | u64::from(reason))
            }
            DeviceRecord::Nothing => {}
            other => unreachable!("a client event never invokes or refuses: {other:?}"),
        }
    }

    fn take_due(&mut self, device: usize, now: Time) -> Option<DuePublish> {
        let due = self.devices[device].take_due(now, &mut self.payload_buffer)?;
        self.stats.publish_attempts += 1;
        Some(due)
    }

    fn publish_result(
        &mut self,
        device: usize,
        due: &DuePublish,
        result: Result<PublishToken, ClientShellError>,
        now: Time,
    ) {
        let agent = &mut self.devices[device];
        let publisher_id = agent.publisher_id();
        let record = match result {
            Ok(token) => agent.publish_accepted(due, token, now, &mut self.ledger),
            Err(ClientShellError::Publish(error)) => agent.publish_refused(due, &error, &mut self.drops),
            Err(other) => panic!("device {publisher_id}: its client shell failed: {other}"),
        };
        match record {
            DeviceRecord::Invoked { seq } => self.record(now, kind::INVOKED, publisher_id, seq),
            DeviceRecord::Refused { .. } => self.record(now, kind::REFUSED, publisher_id, due.seq),
            other => unreachable!("a publish attempt is invoked or refused: {other:?}"),
        }
    }

    /// Returns whether the subscriber must subscribe again.
    fn subscriber_event(&mut self, subscriber: usize, now: Time, event: &ClientEvent) -> bool {
        let who = 1 << 63 | subscriber as u64;
        self.record_connection(now, who, event);
        match self.subscribers[subscriber].on_event(now, event, &mut self.ledger) {
            SubscriberRecord::Resubscribe => return true,
            SubscriberRecord::Subscribed { granted } => {
                self.record(now, kind::SUBSCRIBED, who, granted as u64)
            }
            SubscriberRecord::Delivered { publisher_id, seq, dup } => {
                self.record(now, kind::DELIVERED, publisher_id, seq << 1 | u64::from(dup))
            }
            SubscriberRecord::Unstamped => {
                self.stats.unstamped_deliveries += 1;
                self.record(now, kind::UNSTAMPED, who, 0);
            }
            SubscriberRecord::Nothing => {}
        }
        false
    }
}

/// A seed per client shell, mixed from the run's seed and the client's index (splitmix64), so no
/// two clients share a random stream.
fn member_seed(seed: u64, stream: u64, index: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ index.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const DEVICE_STREAM: u64 = 1;
const SUBSCRIBER_STREAM: u64 = 2;
const POD_STREAM: u64 = 3;

fn broker_addr(pod: &str) -> SocketAddr {
    SocketAddr::new(turmoil::lookup(pod), MQTT_PORT.number)
}

/// A host's simulated disk, shared by the pods on that host and kept across their restarts (the
/// service shell takes a `Send` disk; turmoil runs everything on this thread, so the lock is never
/// contended). Replies are immediate here: the shell applies each request as it drains (the fast
/// engine delays them by `SimDisk::op_latency`).
#[derive(Clone, Default)]
struct SharedDisk(Arc<Mutex<SimDisk>>);

impl SharedDisk {
    fn with<T>(&self, action: impl FnOnce(&mut SimDisk) -> T) -> T {
        action(&mut self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

impl Fs for SharedDisk {
    fn append(&mut self, path: &str, data: &[u8]) -> Result<u64, FsError> {
        self.with(|disk| disk.append(path, data))
    }
    fn sync(&mut self, path: &str) -> Result<(), FsError> {
        self.with(|disk| disk.sync(path))
    }
    fn read(&mut self, path: &str, offset: u64, len_max: usize) -> Result<Vec<u8>, FsError> {
        self.with(|disk| disk.read(path, offset, len_max))
    }
    fn len(&mut self, path: &str) -> Result<u64, FsError> {
        self.with(|disk| disk.len(path))
    }
    fn truncate(&mut self, path: &str, len: u64) -> Result<(), FsError> {
        self.with(|disk| disk.truncate(path, len))
    }
    fn rename(&mut self, from: &str, to: &str) -> Result<(), FsError> {
        self.with(|disk| disk.rename(from, to))
    }
    fn remove(&mut self, path: &str) -> Result<(), FsError> {
        self.with(|disk| disk.remove(path))
    }
    fn list(&mut self, dir: &str) -> Result<Vec<String>, FsError> {
        self.with(|disk| disk.list(dir))
    }
}

/// How to build a pod's service (again, after a restart).
#[derive(Clone)]
enum PodRecipe {
    Broker(BrokerConfig),
    Republisher(RepublisherConfig),
}

impl PodRecipe {
    fn build(&self, seed: u64) -> Box<dyn Service + Send> {
        match self {
            PodRecipe::Broker(config) => Box::new(BrokerService::new(config.clone())),
            PodRecipe::Republisher(config) => Box::new(Republisher::new(config.clone(), seed)),
        }
    }
}

/// The TCP port number of every declared (pod, port name): what a service's connect to
/// `"pod:port"` resolves to (with turmoil's address of the pod's host).
type PortTable = Rc<Vec<(String, &'static str, u16)>>;

/// The software of a pod's host: its service in the generic service shell on turmoil's TCP,
/// its drops tallied into the books by the same names as on the fast engine. `incarnation`
/// counts starts, so a restarted service draws fresh (reproducible) jitter.
async fn service_pod(
    books: Shared,
    service: Box<dyn Service + Send>,
    ports: PortTable,
    shell: ServiceShellConfig,
    disk: SharedDisk,
) -> turmoil::Result {
    let (events_sender, mut events) = mpsc::channel(BROKER_EVENTS_QUEUE_LIMIT);
    let stats = ServiceShellStats::default();
    books.borrow_mut().pod_shells.push(stats.clone());
    let table: Vec<(String, &'static str, u16)> = ports.as_ref().clone();
    let resolve = move |endpoint: &EndpointName| {
        let (pod, _, number) =
            table.iter().find(|(pod, port, _)| *pod == endpoint.pod && *port == endpoint.port)?;
        Some(SocketAddr::new(turmoil::lookup(pod.as_str()), *number))
    };
    let host = ServiceHost {
        resolve: Box::new(resolve),
        disk: Some(Box::new(disk)),
        stats,
        events: Some(events_sender),
    };
    let running = run_service(TurmoilNet, TokioClock::start(), service, shell, host);
    // Drained on this host's task (the books are not `Send`); it ends when the service does.
    let tally = async {
        while let Some(event) = events.recv().await {
            let reason = match event {
                ServiceEvent::Broker(BrokerEvent::MessageDropped { reason, .. }) => {
                    broker_drop_reason(reason)
                }
                ServiceEvent::Republisher(RepublisherEvent::MessageDropped { reason, .. }) => {
                    republish_drop_reason(reason)
                }
                _ => continue,
            };
            *books.borrow_mut().drops.entry(reason).or_default() += 1;
        }
    };
    let (result, ()) = tokio::join!(running, tally);
    result?;
    Ok(())
}

/// Feeds one device's planned publishes into its client shell and the shell's events into the
/// books, until the simulation stops.
async fn drive_device(
    books: Shared,
    device: usize,
    handle: ClientHandle,
    mut events: mpsc::Receiver<ClientEvent>,
) {
    let clock = SimClock;
    loop {
        let next = books.borrow().devices[device].next_publish_at();
        let wait = next.map(|at| at.saturating_duration_since(clock.now()));
        tokio::select! {
            // Events first: acks free the inflight window the next publish may need.
            biased;
            event = events.recv() => {
                let event = event.expect("the client shell runs as long as its handle");
                books.borrow_mut().device_event(device, clock.now(), &event);
            }
            () = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {
                let now = clock.now();
                loop {
                    let Some(due) = books.borrow_mut().take_due(device, now) else { break };
                    // The shell's core reads the same tick's time: turmoil does not advance time
                    // while a host runs.
                    let result = handle.publish(due.message.clone()).await;
                    assert_eq!(clock.now(), now, "time stands still within a tick");
                    books.borrow_mut().publish_result(device, &due, result, now);
                }
            }
        }
    }
}

/// A fleet's software: one client shell per device (each its own turmoil TCP connection to the
/// fleet's broker pod), started at the device's planned connect time.
async fn run_fleet(
    books: Shared,
    devices: Vec<(usize, Time, edgeproof_system::client::ClientConfig)>,
    broker_pod: String,
    seed: u64,
    shell: ClientShellConfig,
) -> turmoil::Result {
    let broker = broker_addr(&broker_pod);
    for (device, connect_at, config) in devices {
        let books = books.clone();
        let shell = shell.clone();
        let client_seed = member_seed(seed, DEVICE_STREAM, device as u64);
        tokio::task::spawn_local(async move {
            let wait = connect_at.saturating_duration_since(SimClock.now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let (handle, events) =
                ClientHandle::spawn(TurmoilNet, SimClock, config, shell, broker, client_seed);
            drive_device(books, device, handle, events).await;
        });
    }
    // The run's end is decided outside, between steps; the fleet never finishes on its own.
    std::future::pending::<()>().await;
    Ok(())
}

/// A subscriber's software: one client shell, subscribed at once and again whenever a fresh
/// session lost the subscriptions.
async fn run_subscriber(
    books: Shared,
    subscriber: usize,
    config: edgeproof_system::client::ClientConfig,
    broker_pod: String,
    seed: u64,
    shell: ClientShellConfig,
) -> turmoil::Result {
    let clock = SimClock;
    let client_seed = member_seed(seed, SUBSCRIBER_STREAM, subscriber as u64);
    let (handle, mut events) =
        ClientHandle::spawn(TurmoilNet, clock, config, shell, broker_addr(&broker_pod), client_seed);
    let subscriptions = books.borrow().subscribers[subscriber].subscriptions();
    handle.subscribe(subscriptions).await?;
    books.borrow_mut().subscribers[subscriber].subscribe_sent();
    while let Some(event) = events.recv().await {
        let resubscribe = books.borrow_mut().subscriber_event(subscriber, clock.now(), &event);
        if resubscribe {
            let subscriptions = books.borrow().subscribers[subscriber].subscriptions();
            handle.subscribe(subscriptions).await?;
            books.borrow_mut().subscribers[subscriber].subscribe_sent();
        }
    }
    Err("the subscriber's client shell stopped".into())
}

/// Where every turmoil host of the scenario lives: (turmoil host name, scenario host name).
fn turmoil_hosts(scenario: &Scenario) -> Vec<(String, String)> {
    let pods = scenario.pods.iter().map(|pod| (pod.name.clone(), pod.host.clone()));
    let subscribers = scenario.subscribers.iter().map(|spec| (spec.name.clone(), spec.host.clone()));
    let fleets = scenario.fleets.iter().map(|fleet| (fleet.name.clone(), fleet.host.clone()));
    pods.chain(subscribers).chain(fleets).collect()
}

/// Segments a socket may buffer, and SYNs a listener may queue: every client of the scenario at
/// once, with room to spare.
fn tcp_capacity(scenario: &Scenario) -> usize {
    let clients = scenario.device_count() as usize + scenario.subscribers.len();
    clients + 1_024
}

/// The broker shell's bounds for this scenario: its TCP connection limit (a real bound of the
/// shell, 10,000 by default) is raised to twice the scenario's clients, because a client that
/// reconnects may hold its old connection (until the broker's keep-alive drops it) and its new
/// one at once. Without this, the 10,001st device of a large fleet is refused forever.
fn pod_shell_for(scenario: &Scenario, base: &ServiceShellConfig) -> ServiceShellConfig {
    let clients = scenario.device_count() as usize + scenario.subscribers.len();
    let config = ServiceShellConfig {
        tcp_connections_limit: base.tcp_connections_limit.max(2 * clients),
        ..base.clone()
    };
    assert!(config.tcp_connections_limit >= clients);
    config
}

/// Refuses what turmoil cannot model, before anything is built.
fn check_supported(scenario: &Scenario) -> Result<(), TurmoilError> {
    if scenario.network.loss > 0.0 {
        return Err(TurmoilError::LossUnsupported { place: "[network]".into(), loss: scenario.network.loss });
    }
    for fault in &scenario.faults {
        if let FaultAction::Link { loss: Some(loss), .. } = &fault.action
            && *loss > 0.0
        {
            return Err(TurmoilError::LossUnsupported {
                place: format!("link fault at {} s", fault.at_secs),
                loss: *loss,
            });
        }
    }
    let hosts = turmoil_hosts(scenario).len();
    if hosts > TURMOIL_HOSTS_LIMIT {
        return Err(TurmoilError::TooManyHosts { hosts, limit: TURMOIL_HOSTS_LIMIT });
    }
    Ok(())
}

/// One entry of the fault schedule.
#[derive(Clone, Debug)]
enum Step {
    Fault(usize),
    /// End of publishing: heal everything, restart every crashed pod.
    RecoverAll,
}

/// The world outside the hosts: the simulation, the fault schedule and what it did.
struct Driver<'a> {
    scenario: &'a Scenario,
    sim: turmoil::Sim<'a>,
    books: Shared,
    /// Turmoil hosts with the scenario host each lives on.
    hosts: Vec<(String, String)>,
    crashed: Vec<bool>,
    /// Each pod's host disk (shared by pods on one scenario host), outliving restarts.
    pod_disks: Vec<SharedDisk>,
}

impl Driver<'_> {
    /// The turmoil hosts on the given scenario hosts, and those elsewhere.
    fn split(&self, scenario_hosts: &[String]) -> (Vec<IpAddr>, Vec<IpAddr>) {
        let (inside, outside): (Vec<_>, Vec<_>) =
            self.hosts.iter().partition(|(_, host)| scenario_hosts.contains(host));
        let ips = |hosts: Vec<&(String, String)>| {
            hosts.iter().map(|(name, _)| self.sim.lookup(name.as_str())).collect()
        };
        (ips(inside), ips(outside))
    }

    fn pod_index(&self, pod: &str) -> usize {
        self.scenario.pods.iter().position(|spec| spec.name == pod).expect("validated pod name")
    }

    fn apply(&mut self, now: Time, step: &Step) {
        self.books.borrow_mut().stats.faults_applied += 1;
        match step {
            Step::Fault(index) => {
                self.books.borrow_mut().record(now, kind::FAULT, *index as u64, 0);
                let action = self.scenario.faults[*index].action.clone();
                self.apply_action(&action);
            }
            Step::RecoverAll => {
                self.books.borrow_mut().record(now, kind::FAULT, u64::MAX, 0);
                self.heal_all();
                for index in 0..self.crashed.len() {
                    if self.crashed[index] {
                        self.crashed[index] = false;
                        self.sim.bounce(self.scenario.pods[index].name.as_str());
                    }
                }
            }
        }
    }

    fn heal_all(&mut self) {
        let ips: Vec<IpAddr> = self.hosts.iter().map(|(name, _)| self.sim.lookup(name.as_str())).collect();
        for (position, a) in ips.iter().enumerate() {
            for b in &ips[position + 1..] {
                self.sim.repair(*a, *b);
            }
        }
    }

    fn apply_action(&mut self, action: &FaultAction) {
        match action {
            FaultAction::Crash { pod } => {
                let index = self.pod_index(pod);
                assert!(!self.crashed[index], "validated: a crashed pod is not crashed again");
                self.crashed[index] = true;
                self.sim.crash(pod.as_str());
                self.pod_disks[index].with(SimDisk::process_crash);
            }
            FaultAction::Restart { pod, disk } => {
                let index = self.pod_index(pod);
                assert!(self.crashed[index], "validated: only a crashed pod restarts");
                self.crashed[index] = false;
                if *disk == DiskFate::Lost {
                    self.pod_disks[index].with(SimDisk::wipe);
                }
                self.sim.bounce(pod.as_str());
            }
            FaultAction::Partition { hosts } => {
                let (inside, outside) = self.split(hosts);
                for a in &inside {
                    for b in &outside {
                        self.sim.partition(*a, *b);
                    }
                }
            }
            FaultAction::Heal { hosts } if hosts.is_empty() => self.heal_all(),
            FaultAction::Heal { hosts } => {
                let (inside, outside) = self.split(hosts);
                for a in &inside {
                    for b in &outside {
                        self.sim.repair(*a, *b);
                    }
                }
            }
            FaultAction::PartitionOneway { from, to } => {
                let (from, _) = self.split(std::slice::from_ref(from));
                let (to, _) = self.split(std::slice::from_ref(to));
                for a in &from {
                    for b in &to {
                        self.sim.partition_oneway(*a, *b);
                    }
                }
            }
            FaultAction::Link { hosts, latency_ms, loss } => {
                assert!(loss.is_none_or(|loss| loss == 0.0), "checked before the run");
                if let Some(range) = latency_ms {
                    let (a, _) = self.split(std::slice::from_ref(&hosts[0]));
                    let (b, _) = self.split(std::slice::from_ref(&hosts[1]));
                    for x in &a {
                        for y in &b {
                            self.sim.set_link_latency(*x, *y, range.min_duration());
                            self.sim.set_link_max_message_latency(*x, *y, range.max_duration());
                        }
                    }
                }
            }
        }
    }
}

/// Runs `scenario` with `seed` on turmoil, with the real broker and client shells, and returns
/// its outcome with the engine's counters.
///
/// The simulator never reads a real clock, so the outcome's `wall_seconds` is 0: a caller that
/// reports engine speed measures around this call and sets it with `Outcome::set_wall_seconds`.
/// (In a binary that links mad-turmoil, libc's clock reads zero outside a simulated runtime;
/// `sim/examples/turmoil_speed.rs` measures from /proc/uptime instead.)
pub fn run_turmoil(
    scenario: &Scenario,
    seed: u64,
    options: &TurmoilOptions,
) -> Result<TurmoilRun, TurmoilError> {
    check_supported(scenario)?;
    assert!(!options.tick.is_zero(), "a tick moves time");

    let mut ledger = Ledger::with_capacity(scenario.device_count() as usize);
    let mut recipes = Vec::with_capacity(scenario.pods.len());
    for pod in &scenario.pods {
        let invalid = |message: String| TurmoilError::PodConfig { pod: pod.name.clone(), message };
        let recipe = match pod.kind {
            PodKind::Broker => PodRecipe::Broker(
                pod.config.clone().try_into().map_err(|error: toml::de::Error| invalid(error.to_string()))?,
            ),
            PodKind::Republisher => {
                let config: RepublisherConfig = pod
                    .config
                    .clone()
                    .try_into()
                    .map_err(|error: toml::de::Error| invalid(error.to_string()))?;
                config.validate().map_err(|error| invalid(error.to_string()))?;
                ledger.add_topic_rewrite(&config.from_prefix, &config.to_prefix);
                PodRecipe::Republisher(config)
            }
        };
        recipes.push(recipe);
    }
    // Every service declares its ports when built (the trait's contract): learn them once.
    let mut port_table = Vec::new();
    for (pod, recipe) in scenario.pods.iter().zip(&recipes) {
        let mut service = recipe.build(0);
        while let Some(output) = service.poll_output() {
            let Output::Listen { port } = output else { unreachable!("a new service only declares ports") };
            port_table.push((pod.name.clone(), port.name, port.number));
        }
    }
    let port_table: PortTable = Rc::new(port_table);

    // Subscribers first, then devices in fleet order: the same registration order as the fast
    // engine, so observer ids and publisher ids agree.
    let subscribers: Vec<SubscriberAgent> =
        scenario.subscribers.iter().map(|spec| SubscriberAgent::new(spec, &mut ledger)).collect();
    let workload = Workload::new(scenario, seed);
    let mut devices = Vec::with_capacity(scenario.device_count() as usize);
    let mut fleet_devices = Vec::with_capacity(scenario.fleets.len());
    for (fleet_index, fleet) in scenario.fleets.iter().enumerate() {
        let mut members = Vec::with_capacity(fleet.count as usize);
        for device_index in 0..fleet.count {
            let plan = workload.device(fleet_index, device_index);
            members.push((devices.len(), plan.connect_at, device_config(fleet, &plan.client_id)));
            devices.push(DeviceAgent::new(&plan, fleet, &mut ledger));
        }
        fleet_devices.push(members);
    }
    let books: Shared = Rc::new(RefCell::new(Books {
        ledger,
        trace: TraceHash::new(),
        devices,
        subscribers,
        stats: TurmoilStats::default(),
        payload_buffer: BytesMut::new(),
        drops: DropTally::new(),
        pod_shells: Vec::new(),
    }));

    let end = scenario.end();
    let sim = turmoil::Builder::new()
        .rng_seed(seed)
        .tick_duration(options.tick)
        // One tick of slack: the driver stops stepping at `end`, turmoil must not stop first.
        .simulation_duration(Duration::from_nanos(end.as_nanos()) + 2 * options.tick)
        .min_message_latency(scenario.network.latency_ms.min_duration())
        .max_message_latency(scenario.network.latency_ms.max_duration())
        // turmoil panics when a listener's SYN backlog overflows this, and every client may
        // connect in the same tick (at the start, after a broker restart): room for all of them.
        // It also bounds each socket's receive buffer in segments.
        .tcp_capacity(tcp_capacity(scenario))
        .build();
    let mut driver = Driver {
        scenario,
        sim,
        books: books.clone(),
        hosts: turmoil_hosts(scenario),
        crashed: vec![false; scenario.pods.len()],
        pod_disks: Vec::new(),
    };
    let mut host_disks: BTreeMap<&str, SharedDisk> = BTreeMap::new();
    for pod in &scenario.pods {
        let disk = host_disks.entry(pod.host.as_str()).or_default().clone();
        driver.pod_disks.push(disk);
    }
    let pod_shell = pod_shell_for(scenario, &options.pod_shell);
    for (index, (pod, recipe)) in scenario.pods.iter().zip(recipes).enumerate() {
        let shell = pod_shell.clone();
        let disk = driver.pod_disks[index].clone();
        let books = books.clone();
        let ports = port_table.clone();
        let incarnation = std::cell::Cell::new(0_u64);
        driver.sim.host(pod.name.as_str(), move || {
            incarnation.set(incarnation.get() + 1);
            let service_seed = member_seed(seed, POD_STREAM, (index as u64) << 32 | incarnation.get());
            service_pod(books.clone(), recipe.build(service_seed), ports.clone(), shell.clone(), disk.clone())
        });
    }
    for (index, spec) in scenario.subscribers.iter().enumerate() {
        let future = run_subscriber(
            books.clone(),
            index,
            subscriber_config(spec),
            spec.broker.clone(),
            seed,
            options.client_shell.clone(),
        );
        driver.sim.client(spec.name.as_str(), future);
    }
    for (fleet, members) in scenario.fleets.iter().zip(fleet_devices) {
        let future =
            run_fleet(books.clone(), members, fleet.broker.clone(), seed, options.client_shell.clone());
        driver.sim.client(fleet.name.as_str(), future);
    }

    let mut schedule: Vec<(Time, Step)> =
        scenario.faults.iter().enumerate().map(|(index, fault)| (fault.at(), Step::Fault(index))).collect();
    schedule.push((scenario.publish_end(), Step::RecoverAll));
    // Stable: faults at the same time keep their file order, and recovery comes after them.
    schedule.sort_by_key(|(at, _)| *at);
    let mut next_step = 0;
    loop {
        let now = Time::from_nanos(u64::try_from(driver.sim.elapsed().as_nanos()).expect("fits"));
        while let Some((at, step)) = schedule.get(next_step)
            && *at <= now
        {
            driver.apply(now, step);
            next_step += 1;
        }
        if now >= end {
            break;
        }
        driver
            .sim
            .step()
            .map_err(|error| TurmoilError::Simulation { at: now, message: error.to_string() })?;
        books.borrow_mut().stats.steps += 1;
    }
    assert_eq!(next_step, schedule.len(), "every fault applied before the end");
    let sim_seconds = driver.sim.elapsed().as_secs_f64();
    // Stop every host (dropping their runtimes) before the books are finished.
    drop(driver);

    let mut guard = books.borrow_mut();
    let books = &mut *guard;
    for device in &mut books.devices {
        device.finish(end, &mut books.ledger);
    }
    let unobserved: u64 = books.pod_shells.iter().map(|shell| shell.snapshot().events_dropped).sum();
    books.stats.broker_events_unobserved = unobserved;
    if unobserved > 0 {
        books.drops.insert(DROP_BROKER_EVENTS_UNOBSERVED, unobserved);
    }
    declare_drops(&mut books.ledger, &books.drops);
    let run = RunInfo {
        seed,
        engine: "turmoil".to_string(),
        trace_hash: format!("{:016x}", books.trace.0),
        sim_seconds,
        wall_seconds: 0.0,
        events: books.stats.trace_records,
        commit: None,
    };
    let outcome = Outcome::from_ledger(scenario, &books.ledger, run);
    assert_eq!(outcome.engine, "turmoil");
    Ok(TurmoilRun { outcome, stats: books.stats.clone() })
}

#[cfg(test)]
mod tests {
    use edgeproof_scenarios::catalog;
    use edgeproof_scenarios::spec::{Fault, FleetSpec};

    use super::*;

    #[test]
    fn link_loss_is_refused_rather_than_run_with_another_meaning() {
        let mut scenario = catalog::get("smoke").expect("smoke is in the catalogue");
        scenario.network.loss = 0.01;
        let error = run_turmoil(&scenario, 1, &TurmoilOptions::default()).expect_err("loss is refused");
        assert_eq!(error, TurmoilError::LossUnsupported { place: "[network]".into(), loss: 0.01 });

        let mut scenario = catalog::get("smoke").expect("smoke is in the catalogue");
        scenario.faults.push(Fault {
            at_secs: 5.0,
            action: FaultAction::Link {
                hosts: vec!["edge".into(), "cell1".into()],
                latency_ms: None,
                loss: Some(0.5),
            },
        });
        let error = run_turmoil(&scenario, 1, &TurmoilOptions::default()).expect_err("loss is refused");
        assert!(matches!(error, TurmoilError::LossUnsupported { loss, .. } if loss == 0.5), "{error}");
    }

    #[test]
    fn more_hosts_than_turmoil_can_afford_are_refused() {
        let mut scenario = catalog::get("smoke").expect("smoke is in the catalogue");
        let fleet: FleetSpec = scenario.fleets[0].clone();
        for index in 0..TURMOIL_HOSTS_LIMIT {
            scenario.fleets.push(FleetSpec { name: format!("extra-{index}"), ..fleet.clone() });
        }
        let hosts = turmoil_hosts(&scenario).len();
        assert!(hosts > TURMOIL_HOSTS_LIMIT);
        let error = run_turmoil(&scenario, 1, &TurmoilOptions::default()).expect_err("too many hosts");
        assert_eq!(error, TurmoilError::TooManyHosts { hosts, limit: TURMOIL_HOSTS_LIMIT });
    }

    #[test]
    fn the_broker_shell_admits_every_client_of_the_scenario_twice() {
        let mut scenario = catalog::get("smoke").expect("smoke is in the catalogue");
        let base = ServiceShellConfig::default();
        assert_eq!(pod_shell_for(&scenario, &base).tcp_connections_limit, base.tcp_connections_limit);
        scenario.fleets[0].count = 20_000;
        assert_eq!(pod_shell_for(&scenario, &base).tcp_connections_limit, 2 * 20_001);
        assert!(tcp_capacity(&scenario) > 20_001, "every client's SYN fits the backlog");
    }

    #[test]
    fn the_trace_hash_is_fnv1a_over_little_endian_words() {
        let mut hash = TraceHash::new();
        assert_eq!(hash.0, 0xcbf2_9ce4_8422_2325);
        hash.word(0);
        // FNV-1a 64 of eight zero bytes, computed byte by byte.
        let mut expected: u64 = 0xcbf2_9ce4_8422_2325;
        for _ in 0..8 {
            expected = expected.wrapping_mul(0x0000_0100_0000_01b3);
        }
        assert_eq!(hash.0, expected);
        let mut one = TraceHash::new();
        one.word(1);
        let mut other = TraceHash::new();
        other.word(1 << 8);
        assert_ne!(one.0, other.0, "byte order matters");
        assert_ne!(hash.0, one.0);
    }

    #[test]
    fn member_seeds_differ_per_stream_and_index() {
        let seeds = [
            member_seed(1, DEVICE_STREAM, 0),
            member_seed(1, DEVICE_STREAM, 1),
            member_seed(1, SUBSCRIBER_STREAM, 0),
            member_seed(2, DEVICE_STREAM, 0),
        ];
        for (position, seed) in seeds.iter().enumerate() {
            assert!(!seeds[position + 1..].contains(seed), "{seeds:x?}");
        }
        assert_eq!(member_seed(1, DEVICE_STREAM, 1), seeds[1], "pure function");
    }
}
