//! The fast world: a scenario's hosts, pods, device fleets and subscribers on the fast engine,
//! driven from one seed to an [`Outcome`].
//!
//! This module owns the run loop and the glue between the engine ([`EventQueue`], [`Network`],
//! [`Trace`]) and the real cores: pods host broker cores, devices and subscribers are real client
//! cores, everything talks through virtual connections. It records every publish invocation,
//! acknowledgement and delivery in the oracle's [`Ledger`]. It must never read a real clock
//! (except [`run_fast`]'s one wall-clock measurement, which never influences the run), never scan
//! all devices per event, and never let an output of one core reach another except through the
//! network model.
//!
//! # Timers as data
//! Every client and pod has exactly one "next wake" in the event queue at a time (lazy
//! rescheduling): `scheduled_wake` remembers the earliest pending wake; a new deadline is pushed
//! only when it is earlier, and a wake that fires at another time than `scheduled_wake` is stale
//! and skipped. A device's wake is the earlier of its client core's timer and its next planned
//! publish. So a million devices cost a million entries in the queue's timer wheel, not one per
//! timer kind, and nothing ever scans the fleet.
//!
//! # Phases
//! Subscribers connect at time zero; each device connects 100 ms before its first planned publish
//! (at zero if that is sooner), so a fleet comes online spread over its first interval. Publishing
//! runs for `duration_secs` (the plan ends there). At the end of publishing every
//! partition heals and every crashed pod restarts (the drain phase is quiet by definition), then
//! the drain runs for `drain_secs`. Publishes still unacknowledged at the end are recorded as
//! indeterminate.

use std::sync::Arc;
use std::time::Duration;

use std::collections::VecDeque;

use bytes::BytesMut;
use edgeproof_scenarios::ledger::DROP_DEVICE_QUEUE_FULL;
use edgeproof_scenarios::spec::{DiskFate, FaultAction, LatencyRange, PodKind};
use edgeproof_scenarios::{Ledger, Outcome, RunInfo, Scenario, Workload};
use edgeproof_system::broker::{BrokerConfig, BrokerEvent};
use edgeproof_system::client::{Client, ClientEvent};
use edgeproof_system::fs::{DiskReply, apply};
use edgeproof_system::republisher::{Republisher, RepublisherConfig, RepublisherEvent};
use edgeproof_system::service::{
    BrokerService, ConnectFailure as ServiceConnectFailure, ConnectToken, ConnectionId, DiskRequestId,
    MQTT_PORT, Output as ServiceOutput, Service, ServiceEvent,
};
use edgeproof_system::time::Time;

use edgeproof_scenarios::agents::{
    DeviceAgent, DeviceRecord, DropTally, SubscriberAgent, SubscriberRecord, broker_drop_reason,
    declare_drops, device_client, fleet_client_config, republish_drop_reason, subscriber_config,
};

use crate::disk::{DiskLatency, SimDisk};

use super::connections::{ConnectionEvent, ConnectionRecorder};
use super::net::{
    CloseCause, ConnId, ConnectFailure, Endpoint, HostId, LinkConfig, ListenerId, NetConfig, NetEvent,
    NetOutput, Network, Side,
};
use super::queue::EventQueue;
use super::rng::{Stream, member_seed};
use super::trace::{Trace, TraceKind};

/// How long before its first planned publish a device connects.
const DEVICE_CONNECT_LEAD: Duration = Duration::from_millis(100);

/// Knobs of a fast run that are not part of the scenario.
#[derive(Clone, Debug)]
pub struct FastOptions {
    /// TCP-like timeouts and bounds; the scenario's network overrides the default link.
    pub net: NetConfig,
    /// Keep this many last events as text for failure output (0 = none).
    pub trace_lines: usize,
    /// Upper bound on pending events; exceeding it is a model bug.
    pub pending_events_limit: usize,
    /// How long operations take on every host's simulated disk.
    pub disk_latency: DiskLatency,
}

impl Default for FastOptions {
    fn default() -> Self {
        FastOptions {
            net: NetConfig::default(),
            trace_lines: 0,
            pending_events_limit: 1 << 26,
            disk_latency: DiskLatency::default(),
        }
    }
}

/// Why a scenario cannot run on the fast engine.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FastError {
    /// A pod's `config` table does not deserialize into the pod's config type.
    #[error("pod {pod}: invalid config: {message}")]
    PodConfig {
        /// The pod's name.
        pod: String,
        /// What the deserializer said.
        message: String,
    },
    /// The scenario names a host, pod or fleet that does not exist (validation should prevent it).
    #[error("unknown {kind} {name}")]
    Unknown {
        /// "host" or "pod".
        kind: &'static str,
        /// The name.
        name: String,
    },
}

/// Events of the world; the network's own events are wrapped.
#[derive(Clone, Copy, Debug)]
enum WorldEvent {
    Net(NetEvent),
    ClientWake(u32),
    PodWake(u32),
    Fault(u32),
    PublishEnd,
    ClientStart(u32),
    /// Deliver a pod's queued disk replies (if the pod is still in this incarnation).
    PodDisk {
        pod: u32,
        incarnation: u32,
    },
    /// A pod's connect named an endpoint the world does not have.
    PodConnectUnresolved {
        pod: u32,
        incarnation: u32,
        token: u64,
    },
}

impl From<NetEvent> for WorldEvent {
    fn from(event: NetEvent) -> WorldEvent {
        WorldEvent::Net(event)
    }
}

/// One host's disk and when it finishes the operations queued on it.
struct HostDisk {
    disk: SimDisk,
    busy_until: Time,
}

/// How to build a pod's service again after a crash: its kind and validated config.
enum PodRecipe {
    Broker(BrokerConfig),
    Republisher(RepublisherConfig),
    /// A test's own service, to exercise the world's wiring (disks, restarts) directly.
    #[cfg(test)]
    Custom(Box<dyn Fn() -> Box<dyn Service>>),
}

/// A pod: one service of the stack on a host. Pods are few, so each holds its service boxed
/// behind the [`Service`] seam; devices and subscribers stay plain data.
struct Pod {
    name: String,
    host: HostId,
    recipe: PodRecipe,
    /// `None` while crashed: the in-memory state is gone.
    service: Option<Box<dyn Service>>,
    /// The ports this pod declared, with their listeners. A restarted service declares the same
    /// ports again and gets the same listeners back.
    ports: Vec<(&'static str, ListenerId)>,
    /// Outbound connects in progress (the network's connection -> the service's token).
    connecting: Vec<(ConnId, ConnectToken)>,
    /// Outbound connections open, reset when the pod crashes.
    outbound: Vec<ConnId>,
    /// Disk replies waiting for their delivery event, in request order.
    disk_replies: VecDeque<(DiskRequestId, DiskReply)>,
    scheduled_wake: Time,
    crash_count: u32,
    /// Starts so far (1 after the initial start); names the disk reply events of this run of the
    /// service, so a restarted service never receives the replies of its previous life.
    incarnation: u32,
}

/// A client's ledger bookkeeping: the engine-agnostic rules of [`edgeproof_scenarios::agents`], shared with
/// the turmoil engine so both record the same scenario the same way. A device's agent is boxed
/// so the (rare) subscribers do not make every device's slot larger.
enum Role {
    Device(Box<DeviceAgent>),
    Subscriber(SubscriberAgent),
}

struct SimClient {
    core: Client,
    host: HostId,
    listener: ListenerId,
    conn: Option<ConnId>,
    scheduled_wake: Time,
    role: Role,
}

/// Counters of the world itself (the network and cores keep their own).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorldStats {
    /// Publishes the devices attempted (invoked plus refused by a full queue).
    pub publish_attempts: u64,
    /// Publishes refused because the device's pending queue was full (declared drops).
    pub dropped_device_queue_full: u64,
    /// Publishes refused for any other reason (a bug in the scenario or the client).
    pub publish_rejected: u64,
    /// Deliveries to subscribers whose payload carried no valid stamp.
    pub unstamped_deliveries: u64,
    /// Client wakes whose timer was still due after `handle_timeout` (a core that does not
    /// advance its own deadline); each is pushed one nanosecond on so the run makes progress.
    pub timers_not_advanced: u64,
    /// Faults applied (scenario faults and the end-of-publishing recovery).
    pub faults_applied: u64,
    /// Disk requests the services made (each answered after the disk's latency).
    pub disk_requests: u64,
    /// Connects of services to endpoints that name no declared port.
    pub connects_unresolved: u64,
}

/// A scenario instantiated on the fast engine.
pub struct FastWorld {
    scenario: Scenario,
    seed: u64,
    queue: EventQueue<WorldEvent>,
    net: Network,
    trace: Trace,
    ledger: Ledger,
    pods: Vec<Pod>,
    /// Who owns each listener: (pod index, port name), indexed by `ListenerId`.
    listener_owners: Vec<(u32, &'static str)>,
    /// One disk per host (`None` without a disk model), indexed by `HostId`.
    disks: Vec<HostDisk>,
    clients: Vec<SimClient>,
    host_names: Vec<String>,
    stats: WorldStats,
    /// Message copies the brokers dropped and publishes the device clients refused, by the
    /// oracle's drop reason name.
    declared_drops: DropTally,
    finished: bool,
    /// A reusable buffer for encoding stamped payloads (no allocation per publish beyond the
    /// payload itself).
    payload_buffer: BytesMut,
    /// Connections over time, for the report (the oracle does not read it).
    connections: super::connections::ConnectionRecorder,
}

impl FastWorld {
    /// Builds hosts, pods, fleets and subscribers of `scenario` for `seed`.
    pub fn new(scenario: &Scenario, seed: u64, options: FastOptions) -> Result<FastWorld, FastError> {
        let host_names: Vec<String> = scenario.hosts.iter().map(|host| host.name.clone()).collect();
        let mut net_config = options.net.clone();
        net_config.default_link = link_from(&scenario.network.latency_ms, scenario.network.loss);
        let mut net = Network::new(net_config, host_names.len().max(1), seed);
        let mut queue = EventQueue::new(options.pending_events_limit);
        let host_of = |name: &str| -> Result<HostId, FastError> {
            host_names
                .iter()
                .position(|host| host == name)
                .map(|index| HostId(index as u32))
                .ok_or(FastError::Unknown { kind: "host", name: name.to_string() })
        };

        let mut ledger = Ledger::new();
        let mut pods = Vec::with_capacity(scenario.pods.len());
        for spec in &scenario.pods {
            let host = host_of(&spec.host)?;
            let invalid = |message: String| FastError::PodConfig { pod: spec.name.clone(), message };
            let recipe = match spec.kind {
                PodKind::Broker => PodRecipe::Broker(
                    spec.config
                        .clone()
                        .try_into()
                        .map_err(|error: toml::de::Error| invalid(error.to_string()))?,
                ),
                PodKind::Republisher => {
                    let config: RepublisherConfig = spec
                        .config
                        .clone()
                        .try_into()
                        .map_err(|error: toml::de::Error| invalid(error.to_string()))?;
                    config.validate().map_err(|error| invalid(error.to_string()))?;
                    // The oracle expects the republished copies where the rewrite puts them.
                    ledger.add_topic_rewrite(&config.from_prefix, &config.to_prefix);
                    PodRecipe::Republisher(config)
                }
            };
            pods.push(Pod {
                name: spec.name.clone(),
                host,
                recipe,
                service: None,
                ports: Vec::new(),
                connecting: Vec::new(),
                outbound: Vec::new(),
                disk_replies: VecDeque::new(),
                scheduled_wake: Time::MAX,
                crash_count: 0,
                incarnation: 0,
            });
        }
        let disks: Vec<HostDisk> = (0..host_names.len().max(1))
            .map(|_| HostDisk { disk: SimDisk::new(options.disk_latency.clone()), busy_until: Time::ZERO })
            .collect();
        // Every service declares its ports when built, so clients can be pointed at them.
        let mut listener_owners = Vec::new();
        for (index, pod) in pods.iter_mut().enumerate() {
            start_service(pod, index, seed, &mut net, &mut listener_owners);
        }
        let pod_of = |name: &str| -> Result<ListenerId, FastError> {
            let pod = pods
                .iter()
                .find(|pod| pod.name == name)
                .ok_or(FastError::Unknown { kind: "pod", name: name.to_string() })?;
            pod.ports
                .iter()
                .find(|(port, _)| *port == MQTT_PORT.name)
                .map(|(_, listener)| *listener)
                .ok_or(FastError::Unknown { kind: "MQTT port of pod", name: name.to_string() })
        };
        let mut clients = Vec::with_capacity(scenario.device_count() as usize + scenario.subscribers.len());
        // Subscribers first, so their connects start before the devices' at time zero.
        for (index, spec) in scenario.subscribers.iter().enumerate() {
            let agent = SubscriberAgent::new(spec, &mut ledger);
            let config = subscriber_config(spec);
            let core = Client::new(config, member_seed(seed, Stream::SubscriberClients, index as u64));
            clients.push(SimClient {
                core,
                host: host_of(&spec.host)?,
                listener: pod_of(&spec.broker)?,
                conn: None,
                scheduled_wake: Time::MAX,
                role: Role::Subscriber(agent),
            });
        }
        let workload = Workload::new(scenario, seed);
        for (fleet_index, fleet) in scenario.fleets.iter().enumerate() {
            let host = host_of(&fleet.host)?;
            let listener = pod_of(&fleet.broker)?;
            // One config per fleet, shared by all its devices; each core carries only its own id.
            let fleet_config = Arc::new(fleet_client_config(fleet));
            for device_index in 0..fleet.count {
                let plan = workload.device(fleet_index, device_index);
                let agent = DeviceAgent::new(&plan, fleet, &mut ledger);
                let rng_seed = member_seed(seed, Stream::DeviceClients, plan.publisher_id);
                let core = device_client(&fleet_config, plan.client_id, rng_seed);
                clients.push(SimClient {
                    core,
                    host,
                    listener,
                    conn: None,
                    scheduled_wake: Time::MAX,
                    role: Role::Device(Box::new(agent)),
                });
            }
        }
        assert!(clients.len() < u32::MAX as usize, "client index must fit the token");

        for (index, _) in scenario.faults.iter().enumerate() {
            let at = scenario.faults[index].at();
            queue.schedule(at, WorldEvent::Fault(index as u32));
        }
        queue.schedule(scenario.publish_end(), WorldEvent::PublishEnd);

        let client_count = clients.len();
        let mut world = FastWorld {
            scenario: scenario.clone(),
            seed,
            queue,
            net,
            trace: Trace::new(options.trace_lines),
            ledger,
            pods,
            listener_owners,
            disks,
            clients,
            host_names,
            stats: WorldStats::default(),
            declared_drops: DropTally::new(),
            finished: false,
            payload_buffer: BytesMut::new(),
            connections: ConnectionRecorder::new(client_count),
        };
        for index in 0..world.pods.len() {
            world.after_pod(Time::ZERO, index);
        }
        for index in 0..world.clients.len() {
            // Subscribers come up at once; a device comes online `DEVICE_CONNECT_LEAD` before its
            // first planned publish, so a fleet connects spread like its publish phases rather
            // than as one thundering herd at time zero.
            let start_at = match &world.clients[index].role {
                Role::Subscriber(_) => Time::ZERO,
                Role::Device(device) => device.next_publish_at().map_or(Time::ZERO, |first| {
                    Time::from_nanos(first.as_nanos().saturating_sub(DEVICE_CONNECT_LEAD.as_nanos() as u64))
                }),
            };
            if start_at == Time::ZERO {
                world.start_client(Time::ZERO, index);
            } else {
                world.queue.schedule(start_at, WorldEvent::ClientStart(index as u32));
            }
        }
        Ok(world)
    }

    /// Runs to the scenario's end (publishing, then drain) and records indeterminate publishes.
    pub fn run(&mut self) {
        assert!(!self.finished, "a world runs once");
        let end = self.scenario.end();
        self.run_until(end);
        self.finish(end);
        assert!(self.finished);
    }

    /// Processes every event due at or before `deadline`.
    pub fn run_until(&mut self, deadline: Time) {
        while let Some((now, event)) = self.queue.pop_until(deadline) {
            match event {
                WorldEvent::Net(net_event) => {
                    self.net.handle(now, net_event, &mut self.queue);
                    self.drain_network(now);
                }
                WorldEvent::ClientWake(index) => self.on_client_wake(now, index as usize),
                WorldEvent::PodWake(index) => self.on_pod_wake(now, index as usize),
                WorldEvent::Fault(index) => self.apply_fault(now, index as usize),
                WorldEvent::PublishEnd => self.recover_all(now),
                WorldEvent::ClientStart(index) => self.start_client(now, index as usize),
                WorldEvent::PodDisk { pod, incarnation } => self.on_pod_disk(now, pod as usize, incarnation),
                WorldEvent::PodConnectUnresolved { pod, incarnation, token } => {
                    self.on_pod_connect_unresolved(now, pod as usize, incarnation, token)
                }
            }
        }
        if self.queue.now() < deadline {
            self.queue.advance_to(deadline);
        }
        assert!(self.queue.now() >= deadline);
    }

    /// The simulated time reached.
    pub fn now(&self) -> Time {
        self.queue.now()
    }

    /// The running trace hash.
    pub fn trace_hash(&self) -> u64 {
        self.trace.hash()
    }

    /// The last events as text (when `trace_lines` > 0).
    pub fn recent_trace_lines(&self) -> Vec<String> {
        self.trace.recent_lines().map(str::to_string).collect()
    }

    /// Events processed so far.
    pub fn events_processed(&self) -> u64 {
        self.queue.popped_count()
    }

    /// The ledger recorded so far.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The world's own counters.
    pub fn stats(&self) -> &WorldStats {
        &self.stats
    }

    /// The network model's counters.
    pub fn net_stats(&self) -> &super::net::NetStats {
        self.net.stats()
    }

    /// Number of devices plus subscribers.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Runs the checkers and builds the outcome; `wall_seconds` is measured by the caller.
    pub fn outcome(&self, wall_seconds: f64) -> Outcome {
        assert!(self.finished, "outcome before the run finished");
        let run = RunInfo {
            seed: self.seed,
            engine: "fast".to_string(),
            trace_hash: format!("{:016x}", self.trace.hash()),
            sim_seconds: self.queue.now().as_secs_f64(),
            wall_seconds,
            events: self.queue.popped_count(),
            commit: None,
        };
        let mut outcome = Outcome::from_ledger(&self.scenario, &self.ledger, run);
        outcome.connections = Some(self.connections.to_series());
        outcome
    }

    fn finish(&mut self, end: Time) {
        for client in &mut self.clients {
            if let Role::Device(device) = &mut client.role {
                device.finish(end, &mut self.ledger);
            }
        }
        assert_eq!(
            self.declared_drops.get(DROP_DEVICE_QUEUE_FULL).copied().unwrap_or(0),
            self.stats.dropped_device_queue_full,
            "every queue-full refusal is tallied once"
        );
        declare_drops(&mut self.ledger, &self.declared_drops);
        self.finished = true;
    }

    // ---- network outputs -------------------------------------------------------------------

    fn drain_network(&mut self, now: Time) {
        while let Some(output) = self.net.poll_output() {
            match output {
                NetOutput::Accepted { conn, listener } => {
                    self.trace.record(now, TraceKind::Accepted, conn.as_u64(), u64::from(listener.0), 0);
                    let (pod_index, port) = self.listener_owners[listener.0 as usize];
                    let pod_index = pod_index as usize;
                    let service = self.pods[pod_index].service.as_mut().expect("a down listener accepted");
                    service.handle_accepted(now, port, inbound_id(conn));
                    self.after_pod(now, pod_index);
                }
                NetOutput::Connected { conn, token } => {
                    self.trace.record(now, TraceKind::Connected, conn.as_u64(), token, 0);
                    if let Some(pod_index) = pod_of_token(token) {
                        self.pod_connected(now, pod_index, conn);
                        continue;
                    }
                    let index = token as usize;
                    if self.clients[index].conn == Some(conn) {
                        self.clients[index].core.handle_transport_connected(now);
                        self.after_client(now, index, false);
                    } else {
                        // The client gave up on this attempt meanwhile.
                        self.net.close(now, conn, Side::Client, &mut self.queue);
                    }
                }
                NetOutput::ConnectFailed { conn, token, cause } => {
                    self.trace.record(now, TraceKind::ConnectFailed, conn.as_u64(), token, cause as u64);
                    if let Some(pod_index) = pod_of_token(token) {
                        let failure = match cause {
                            ConnectFailure::Refused => ServiceConnectFailure::Refused,
                            ConnectFailure::TimedOut => ServiceConnectFailure::TimedOut,
                        };
                        self.pod_connect_failed(now, pod_index, conn, failure);
                        continue;
                    }
                    self.client_transport_lost(now, token as usize, conn);
                }
                NetOutput::Data { conn, to, bytes } => {
                    let (pod_index, connection) = match to {
                        Endpoint::Client { token } => {
                            self.trace.record(
                                now,
                                TraceKind::SegmentDelivered,
                                conn.as_u64(),
                                token,
                                bytes.len() as u64,
                            );
                            match pod_of_token(token) {
                                Some(pod_index) => (pod_index, outbound_id(conn)),
                                None => {
                                    let index = token as usize;
                                    if self.clients[index].conn == Some(conn) {
                                        self.clients[index].core.handle_bytes(now, &bytes);
                                        self.after_client(now, index, false);
                                    }
                                    continue;
                                }
                            }
                        }
                        Endpoint::Server { listener } => {
                            self.trace.record(
                                now,
                                TraceKind::SegmentDelivered,
                                conn.as_u64(),
                                u64::from(listener.0) | 1 << 40,
                                bytes.len() as u64,
                            );
                            (self.listener_owners[listener.0 as usize].0 as usize, inbound_id(conn))
                        }
                    };
                    if let Some(service) = self.pods[pod_index].service.as_mut() {
                        service.handle_bytes(now, connection, &bytes);
                        self.after_pod(now, pod_index);
                    }
                }
                NetOutput::Closed { conn, end, cause } => match end {
                    Endpoint::Client { token } => {
                        self.trace.record(
                            now,
                            TraceKind::ConnectionClosed,
                            conn.as_u64(),
                            token,
                            close_code(cause),
                        );
                        match pod_of_token(token) {
                            Some(pod_index) => {
                                let pod = &mut self.pods[pod_index];
                                let before = pod.outbound.len();
                                pod.outbound.retain(|open| *open != conn);
                                if pod.outbound.len() < before
                                    && let Some(service) = pod.service.as_mut()
                                {
                                    service.handle_closed(now, outbound_id(conn));
                                    self.after_pod(now, pod_index);
                                }
                            }
                            None => self.client_transport_lost(now, token as usize, conn),
                        }
                    }
                    Endpoint::Server { listener } => {
                        self.trace.record(
                            now,
                            TraceKind::ConnectionClosed,
                            conn.as_u64(),
                            u64::from(listener.0) | 1 << 40,
                            close_code(cause),
                        );
                        let pod_index = self.listener_owners[listener.0 as usize].0 as usize;
                        if let Some(service) = self.pods[pod_index].service.as_mut() {
                            service.handle_closed(now, inbound_id(conn));
                            self.after_pod(now, pod_index);
                        }
                    }
                },
            }
        }
    }

    fn client_transport_lost(&mut self, now: Time, index: usize, conn: ConnId) {
        let client = &mut self.clients[index];
        if client.conn != Some(conn) {
            return; // A report about a connection this client already abandoned.
        }
        client.conn = None;
        client.core.handle_transport_lost(now);
        self.after_client(now, index, false);
        assert!(self.clients[index].conn != Some(conn));
    }

    // ---- pods --------------------------------------------------------------------------------

    fn pod_connected(&mut self, now: Time, index: usize, conn: ConnId) {
        let pod = &mut self.pods[index];
        let Some(position) = pod.connecting.iter().position(|(pending, _)| *pending == conn) else {
            // A connect of a previous incarnation (the pod crashed meanwhile): its process is gone.
            self.net.reset_client_end(now, conn, &mut self.queue);
            return;
        };
        let (_, token) = pod.connecting.swap_remove(position);
        pod.outbound.push(conn);
        let service = pod.service.as_mut().expect("a crash clears the connects in progress");
        service.handle_connected(now, token, outbound_id(conn));
        self.after_pod(now, index);
    }

    fn pod_connect_failed(&mut self, now: Time, index: usize, conn: ConnId, failure: ServiceConnectFailure) {
        let pod = &mut self.pods[index];
        let Some(position) = pod.connecting.iter().position(|(pending, _)| *pending == conn) else { return };
        let (_, token) = pod.connecting.swap_remove(position);
        let service = pod.service.as_mut().expect("a crash clears the connects in progress");
        service.handle_connect_failed(now, token, failure);
        self.after_pod(now, index);
    }

    fn on_pod_wake(&mut self, now: Time, index: usize) {
        let pod = &mut self.pods[index];
        if pod.scheduled_wake != now {
            return; // Stale: an earlier wake replaced it, or the pod crashed.
        }
        pod.scheduled_wake = Time::MAX;
        self.trace.record(now, TraceKind::PodWake, index as u64, 0, 0);
        let Some(service) = pod.service.as_mut() else { return };
        service.handle_timeout(now);
        self.after_pod(now, index);
    }

    fn on_pod_disk(&mut self, now: Time, index: usize, incarnation: u32) {
        let pod = &mut self.pods[index];
        if pod.incarnation != incarnation || pod.service.is_none() {
            return; // Replies to a service that crashed: it never hears of them.
        }
        let Some((request, reply)) = pod.disk_replies.pop_front() else {
            unreachable!("one delivery event per queued reply")
        };
        self.trace.record(
            now,
            TraceKind::DiskReply,
            index as u64,
            request.0,
            u64::from(matches!(reply, DiskReply::Failed(_))),
        );
        pod.service.as_mut().expect("checked").handle_disk(now, request, reply);
        self.after_pod(now, index);
    }

    fn on_pod_connect_unresolved(&mut self, now: Time, index: usize, incarnation: u32, token: u64) {
        let pod = &mut self.pods[index];
        if pod.incarnation != incarnation {
            return;
        }
        let Some(service) = pod.service.as_mut() else { return };
        service.handle_connect_failed(now, ConnectToken(token), ServiceConnectFailure::Unresolved);
        self.after_pod(now, index);
    }

    /// Executes a pod's outputs (sends, closes, connects, disk requests), tallies its events and
    /// reschedules its wake. Results of connects and disk requests come back as later events, so
    /// the service is never re-entered while its outputs drain.
    fn after_pod(&mut self, now: Time, index: usize) {
        loop {
            let Some(service) = self.pods[index].service.as_mut() else { return };
            let Some(output) = service.poll_output() else { break };
            self.execute_pod_output(now, index, output);
        }
        let pod = &mut self.pods[index];
        let service = pod.service.as_mut().expect("outputs never crash a pod");
        while let Some(event) = service.poll_event() {
            match event {
                // Drops are declared to the oracle (by reason: the event does not say which
                // message); the other events are observability only.
                ServiceEvent::Broker(BrokerEvent::MessageDropped { reason, .. }) => {
                    *self.declared_drops.entry(broker_drop_reason(reason)).or_default() += 1;
                    self.trace.record(now, TraceKind::BrokerEvent, index as u64, reason as u64, 0);
                }
                ServiceEvent::Republisher(RepublisherEvent::MessageDropped { reason, .. }) => {
                    *self.declared_drops.entry(republish_drop_reason(reason)).or_default() += 1;
                    self.trace.record(now, TraceKind::ServiceEvent, index as u64, 1 << 32 | reason as u64, 0);
                }
                ServiceEvent::Republisher(RepublisherEvent::Connected { destination, session_present }) => {
                    let code = 2 << 32 | u64::from(destination) << 1 | u64::from(session_present);
                    self.trace.record(now, TraceKind::ServiceEvent, index as u64, code, 0);
                }
                ServiceEvent::Broker(_) => {}
            }
        }
        let wake = service.poll_timeout().map(|at| at.max(now));
        if let Some(wake) = wake
            && wake < pod.scheduled_wake
        {
            pod.scheduled_wake = wake;
            self.queue.schedule(wake, WorldEvent::PodWake(index as u32));
        }
    }

    fn execute_pod_output(&mut self, now: Time, index: usize, output: ServiceOutput) {
        match output {
            ServiceOutput::Send { connection, bytes } => {
                let (conn, side) = net_end(connection);
                self.trace.record(
                    now,
                    TraceKind::SegmentSent,
                    conn.as_u64(),
                    index as u64,
                    bytes.len() as u64,
                );
                // A send on a connection the network already closed is dropped; the service
                // learns of the loss from the network's own report.
                let _ = self.net.send(now, conn, side, bytes, &mut self.queue);
            }
            ServiceOutput::Close { connection } => {
                let (conn, side) = net_end(connection);
                if side == Side::Client {
                    self.pods[index].outbound.retain(|open| *open != conn);
                }
                self.net.close(now, conn, side, &mut self.queue);
            }
            ServiceOutput::Connect { token, endpoint } => {
                let target = self.pod_names_index(&endpoint.pod).and_then(|target| {
                    let ports = &self.pods[target].ports;
                    ports.iter().find(|(port, _)| *port == endpoint.port).map(|(_, listener)| *listener)
                });
                let pod = &mut self.pods[index];
                match target {
                    Some(listener) => {
                        let token_bits = POD_TOKEN_BIT | index as u64;
                        let conn = self.net.connect(now, pod.host, token_bits, listener, &mut self.queue);
                        self.trace.record(now, TraceKind::ConnectStarted, conn.as_u64(), token_bits, 0);
                        pod.connecting.push((conn, token));
                    }
                    None => {
                        self.stats.connects_unresolved += 1;
                        let event = WorldEvent::PodConnectUnresolved {
                            pod: index as u32,
                            incarnation: pod.incarnation,
                            token: token.0,
                        };
                        self.queue.schedule(now, event);
                    }
                }
            }
            ServiceOutput::Disk { request, op } => {
                let pod = &mut self.pods[index];
                self.stats.disk_requests += 1;
                // The disk serves one operation at a time: this one starts when the previous one
                // of the host is done, and its effect is visible (to reads) from now on.
                let host_disk = &mut self.disks[pod.host.0 as usize];
                let latency = host_disk.disk.op_latency(&op);
                let done_at = host_disk.busy_until.max(now) + latency;
                host_disk.busy_until = done_at;
                let reply = apply(&mut host_disk.disk, &op);
                pod.disk_replies.push_back((request, reply));
                let event = WorldEvent::PodDisk { pod: index as u32, incarnation: pod.incarnation };
                self.queue.schedule(done_at, event);
            }
            ServiceOutput::Listen { port } => {
                unreachable!(
                    "pod {}: ports are declared when the service is built, not {port:?}",
                    self.pods[index].name
                )
            }
        }
    }

    fn pod_names_index(&self, name: &str) -> Option<usize> {
        self.pods.iter().position(|pod| pod.name == name)
    }

    // ---- clients -----------------------------------------------------------------------------

    fn start_client(&mut self, now: Time, index: usize) {
        let client = &mut self.clients[index];
        if let Role::Subscriber(subscriber) = &mut client.role {
            client.core.subscribe(now, subscriber.subscriptions()).expect("validated filters subscribe");
            subscriber.subscribe_sent();
        }
        client.core.connect(now);
        self.after_client(now, index, false);
    }

    fn on_client_wake(&mut self, now: Time, index: usize) {
        let client = &mut self.clients[index];
        if client.scheduled_wake != now {
            return; // Stale.
        }
        client.scheduled_wake = Time::MAX;
        self.trace.record(now, TraceKind::DeviceWake, index as u64, 0, 0);
        if matches!(client.role, Role::Device(_)) {
            self.publish_due(now, index);
        }
        let client = &mut self.clients[index];
        let timer_due = client.core.poll_timeout().is_some_and(|at| at <= now);
        if timer_due {
            client.core.handle_timeout(now);
        }
        self.after_client(now, index, timer_due);
    }

    /// Publishes every planned message of a device that is due (open loop: never waits for acks).
    fn publish_due(&mut self, now: Time, index: usize) {
        let client = &mut self.clients[index];
        let Role::Device(device) = &mut client.role else { unreachable!("only devices publish") };
        let publisher_id = device.publisher_id();
        while let Some(mut due) = device.take_due(now, &mut self.payload_buffer) {
            self.stats.publish_attempts += 1;
            let record = match client.core.publish(now, due.take_message()) {
                Ok(token) => device.publish_accepted(&due, token, now, &mut self.ledger),
                Err(error) => device.publish_refused(&due, &error, &mut self.declared_drops),
            };
            match record {
                DeviceRecord::Invoked { seq } => {
                    self.trace.record(now, TraceKind::Publish, publisher_id, seq, 1);
                }
                DeviceRecord::Refused { drop_reason } if drop_reason == DROP_DEVICE_QUEUE_FULL => {
                    self.stats.dropped_device_queue_full += 1;
                    self.trace.record(now, TraceKind::Publish, publisher_id, due.seq, 0);
                }
                DeviceRecord::Refused { .. } => {
                    // The broker's Maximum Packet Size forbids this payload, or (for a validated
                    // scenario, never) the core rejects it: declared, so the drop check sees it.
                    self.stats.publish_rejected += 1;
                    self.trace.record(now, TraceKind::Publish, publisher_id, due.seq, 2);
                }
                other => unreachable!("a publish attempt is invoked or refused: {other:?}"),
            }
        }
        assert!(device.next_publish_at().is_none_or(|next| next > now), "every due publish was taken");
    }

    /// Drains a client's transmits and events, then reschedules its wake.
    fn after_client(&mut self, now: Time, index: usize, timeout_handled: bool) {
        loop {
            let client = &mut self.clients[index];
            let mut progressed = false;
            while let Some(bytes) = client.core.poll_transmit() {
                progressed = true;
                if let Some(conn) = client.conn {
                    self.trace.record(
                        now,
                        TraceKind::SegmentSent,
                        conn.as_u64(),
                        index as u64,
                        bytes.len() as u64,
                    );
                    if self.net.send(now, conn, Side::Client, bytes, &mut self.queue).is_err() {
                        // The network closed this end; its report (already queued) tells the core.
                    }
                }
            }
            let client = &mut self.clients[index];
            if let Some(event) = client.core.poll_event() {
                progressed = true;
                self.on_client_event(now, index, event);
            }
            if !progressed {
                break;
            }
        }
        let client = &mut self.clients[index];
        let mut wake = client.core.poll_timeout().map_or(Time::MAX, |at| at.max(now));
        if timeout_handled && wake == now {
            // `handle_timeout(now)` left a deadline at `now`: push it on so the run progresses.
            self.stats.timers_not_advanced += 1;
            wake = now + Duration::from_nanos(1);
        }
        if let Role::Device(device) = &client.role
            && let Some(planned_at) = device.next_publish_at()
        {
            wake = wake.min(planned_at.max(now));
        }
        if wake < client.scheduled_wake {
            client.scheduled_wake = wake;
            self.queue.schedule(wake, WorldEvent::ClientWake(index as u32));
        }
    }

    fn on_client_event(&mut self, now: Time, index: usize, event: ClientEvent) {
        let client = &mut self.clients[index];
        // Transport and connection events are the engine's business; what an event means for
        // the ledger is the agents' (the same rules as the turmoil engine).
        match &event {
            ClientEvent::OpenTransport => {
                if let Some(old) = client.conn.take() {
                    self.net.close(now, old, Side::Client, &mut self.queue);
                }
                let conn = self.net.connect(now, client.host, index as u64, client.listener, &mut self.queue);
                client.conn = Some(conn);
                self.trace.record(now, TraceKind::ConnectStarted, conn.as_u64(), index as u64, 0);
                return;
            }
            ClientEvent::CloseTransport => {
                if let Some(conn) = client.conn.take() {
                    self.net.close(now, conn, Side::Client, &mut self.queue);
                }
                self.trace.record(now, TraceKind::ClientEvent, index as u64, 1, 0);
                return;
            }
            ClientEvent::Connected { session_present } => {
                self.trace.record(now, TraceKind::ClientEvent, index as u64, 2, u64::from(*session_present));
                self.connections.record(now, index, ConnectionEvent::Connected);
            }
            ClientEvent::ConnectRefused { reason } => {
                self.trace.record(now, TraceKind::ClientEvent, index as u64, 3, u64::from(reason.0));
                self.connections.record(now, index, ConnectionEvent::Refused);
            }
            ClientEvent::Disconnected { .. } => {
                self.trace.record(now, TraceKind::ClientEvent, index as u64, 4, 0);
                self.connections.record(now, index, ConnectionEvent::Disconnected);
            }
            _ => {}
        }
        match &mut client.role {
            Role::Device(device) => match device.on_event(now, &event, &mut self.ledger) {
                DeviceRecord::Acked { seq } => {
                    self.trace.record(now, TraceKind::ClientEvent, device.publisher_id(), 5, seq);
                }
                DeviceRecord::Failed { seq, .. } => {
                    self.trace.record(now, TraceKind::ClientEvent, device.publisher_id(), 6, seq);
                }
                DeviceRecord::Nothing => {}
                other => unreachable!("a client event never invokes or refuses: {other:?}"),
            },
            Role::Subscriber(subscriber) => match subscriber.on_event(now, &event, &mut self.ledger) {
                SubscriberRecord::Resubscribe => {
                    // A fresh session lost the subscriptions: subscribe again.
                    client
                        .core
                        .subscribe(now, subscriber.subscriptions())
                        .expect("validated filters subscribe");
                    subscriber.subscribe_sent();
                }
                SubscriberRecord::Subscribed { granted } => {
                    self.trace.record(now, TraceKind::ClientEvent, index as u64, 7, granted as u64);
                }
                SubscriberRecord::Delivered { publisher_id, seq, .. } => {
                    self.trace.record(now, TraceKind::ClientEvent, publisher_id, 8, seq);
                }
                SubscriberRecord::Unstamped => self.stats.unstamped_deliveries += 1,
                SubscriberRecord::Nothing => {}
            },
        }
    }

    // ---- faults ------------------------------------------------------------------------------

    fn host(&self, name: &str) -> HostId {
        let index = self.host_names.iter().position(|host| host == name).expect("validated host name");
        HostId(index as u32)
    }

    fn pod_index(&self, name: &str) -> usize {
        self.pods.iter().position(|pod| pod.name == name).expect("validated pod name")
    }

    fn apply_fault(&mut self, now: Time, index: usize) {
        self.stats.faults_applied += 1;
        self.trace.record(now, TraceKind::Fault, index as u64, 0, 0);
        let action = self.scenario.faults[index].action.clone();
        match action {
            FaultAction::Crash { pod } => self.crash_pod(now, self.pod_index(&pod)),
            FaultAction::Restart { pod, disk } => self.restart_pod(now, self.pod_index(&pod), disk),
            FaultAction::Partition { hosts } => {
                let group: Vec<HostId> = hosts.iter().map(|name| self.host(name)).collect();
                for inside in &group {
                    for outside in self.all_hosts().filter(|host| !group.contains(host)) {
                        self.net.partition(now, *inside, outside, &mut self.queue);
                    }
                }
            }
            FaultAction::Heal { hosts } => {
                if hosts.is_empty() {
                    self.net.heal_all(now, &mut self.queue);
                } else {
                    let group: Vec<HostId> = hosts.iter().map(|name| self.host(name)).collect();
                    for inside in &group {
                        for outside in self.all_hosts().filter(|host| !group.contains(host)) {
                            self.net.heal(now, *inside, outside, &mut self.queue);
                        }
                    }
                }
            }
            FaultAction::PartitionOneway { from, to } => {
                let (from, to) = (self.host(&from), self.host(&to));
                self.net.block_one_way(now, from, to, &mut self.queue);
            }
            FaultAction::Link { hosts, latency_ms, loss } => {
                let (a, b) = (self.host(&hosts[0]), self.host(&hosts[1]));
                let current = self.net.link(a, b);
                let latency = latency_ms.map_or((current.latency_min, current.latency_max), |range| {
                    (range.min_duration(), range.max_duration())
                });
                let link = LinkConfig {
                    latency_min: latency.0,
                    latency_max: latency.1,
                    loss_probability: loss.unwrap_or(current.loss_probability).min(0.999),
                };
                self.net.set_link(a, b, link);
            }
        }
        self.drain_network(now);
    }

    fn all_hosts(&self) -> impl Iterator<Item = HostId> + use<> {
        (0..self.host_names.len() as u32).map(HostId)
    }

    fn crash_pod(&mut self, now: Time, index: usize) {
        let pod = &mut self.pods[index];
        if pod.service.is_none() {
            return;
        }
        // Dropping the service drops every in-memory session, queue and retained message, and
        // every disk request in flight (the disk keeps what it already applied).
        pod.service = None;
        pod.crash_count += 1;
        pod.scheduled_wake = Time::MAX;
        pod.disk_replies.clear();
        // A process crash on a live kernel: the page cache keeps what the process wrote.
        self.disks[pod.host.0 as usize].disk.process_crash();
        // The kernel resets the process's connections: accepted ones through the listeners,
        // outbound ones one by one; connects in progress are abandoned.
        let listeners: Vec<ListenerId> = pod.ports.iter().map(|(_, listener)| *listener).collect();
        let outbound: Vec<ConnId> =
            pod.outbound.drain(..).chain(pod.connecting.drain(..).map(|(conn, _)| conn)).collect();
        for listener in listeners {
            self.net.reset_listener(now, listener, &mut self.queue);
        }
        for conn in outbound {
            self.net.reset_client_end(now, conn, &mut self.queue);
        }
        let pod = &self.pods[index];
        assert!(pod.service.is_none() && pod.outbound.is_empty() && pod.connecting.is_empty());
    }

    fn restart_pod(&mut self, now: Time, index: usize, disk: DiskFate) {
        let pod = &mut self.pods[index];
        if pod.service.is_some() {
            return;
        }
        if disk == DiskFate::Lost {
            // A replaced machine or wiped volume: the host's disk starts empty.
            self.disks[pod.host.0 as usize].disk.wipe();
        }
        start_service(pod, index, self.seed, &mut self.net, &mut self.listener_owners);
        self.after_pod(now, index);
        assert!(self.pods[index].service.is_some());
    }

    /// End of publishing: heal every partition and restart every crashed pod, so the drain
    /// phase measures recovery rather than a fault that outlasts the run.
    fn recover_all(&mut self, now: Time) {
        self.trace.record(now, TraceKind::Fault, u64::MAX, 0, 0);
        self.stats.faults_applied += 1;
        self.net.heal_all(now, &mut self.queue);
        for index in 0..self.pods.len() {
            self.restart_pod(now, index, DiskFate::Kept);
        }
        self.drain_network(now);
    }
}

/// Runs `scenario` with `seed` on the fast engine and returns its outcome.
///
/// The simulator never reads a real clock, so the outcome's `wall_seconds` is 0: a caller that
/// reports engine speed measures around this call and sets it with
/// [`Outcome::set_wall_seconds`] (the CLI does).
pub fn run_fast(scenario: &Scenario, seed: u64, options: FastOptions) -> Result<Outcome, FastError> {
    let mut world = FastWorld::new(scenario, seed, options)?;
    world.run();
    Ok(world.outcome(0.0))
}

/// Marks the network token of a pod's outbound connection (client tokens are client indices,
/// below 2^32).
const POD_TOKEN_BIT: u64 = 1 << 63;

/// Marks a service's id for an outbound connection (the connecting end); ids without it are
/// accepted connections. A `ConnId`'s generation would need 2^31 reuses of one slot to reach it.
const OUTBOUND_ID_BIT: u64 = 1 << 63;

fn pod_of_token(token: u64) -> Option<usize> {
    (token & POD_TOKEN_BIT != 0).then_some((token & !POD_TOKEN_BIT) as usize)
}

fn inbound_id(conn: ConnId) -> ConnectionId {
    assert_eq!(conn.as_u64() & OUTBOUND_ID_BIT, 0, "connection generation overflowed into the marker bit");
    ConnectionId(conn.as_u64())
}

fn outbound_id(conn: ConnId) -> ConnectionId {
    assert_eq!(conn.as_u64() & OUTBOUND_ID_BIT, 0, "connection generation overflowed into the marker bit");
    ConnectionId(conn.as_u64() | OUTBOUND_ID_BIT)
}

/// The network connection and end a service's connection id stands for.
fn net_end(connection: ConnectionId) -> (ConnId, Side) {
    let side = if connection.0 & OUTBOUND_ID_BIT != 0 { Side::Client } else { Side::Server };
    (ConnId::from_u64(connection.0 & !OUTBOUND_ID_BIT), side)
}

/// Builds a pod's service (a fresh incarnation) and binds the ports it declares: new listeners
/// the first time, the same ones (brought up again) after a restart.
fn start_service(
    pod: &mut Pod,
    index: usize,
    seed: u64,
    net: &mut Network,
    listener_owners: &mut Vec<(u32, &'static str)>,
) {
    assert!(pod.service.is_none(), "a pod runs one service at a time");
    pod.incarnation += 1;
    let mut service: Box<dyn Service> = match &pod.recipe {
        PodRecipe::Broker(config) => Box::new(BrokerService::new(config.clone())),
        PodRecipe::Republisher(config) => {
            // Each incarnation draws its own reconnect jitter, reproducibly from the run seed.
            let member = (index as u64) << 32 | u64::from(pod.incarnation);
            Box::new(Republisher::new(config.clone(), member_seed(seed, Stream::Pods, member)))
        }
        #[cfg(test)]
        PodRecipe::Custom(build) => build(),
    };
    let first_start = pod.incarnation == 1;
    let mut declared = 0;
    // A freshly built service's only outputs are its port declarations (the trait's contract).
    while let Some(output) = service.poll_output() {
        let ServiceOutput::Listen { port } = output else {
            unreachable!("pod {}: a new service asked for {output:?} before any input", pod.name)
        };
        declared += 1;
        if first_start {
            assert!(
                pod.ports.iter().all(|(known, _)| *known != port.name),
                "port {} declared twice",
                port.name
            );
            let listener = net.add_listener(pod.host);
            assert_eq!(listener.0 as usize, listener_owners.len(), "listener ids are dense");
            listener_owners.push((index as u32, port.name));
            pod.ports.push((port.name, listener));
        } else {
            let (_, listener) = *pod
                .ports
                .iter()
                .find(|(known, _)| *known == port.name)
                .expect("a restarted service declares the ports it had");
            net.set_listener_up(listener, true);
        }
    }
    assert_eq!(declared, pod.ports.len(), "a restarted service declares the same ports");
    pod.service = Some(service);
}

fn link_from(latency: &LatencyRange, loss: f64) -> LinkConfig {
    LinkConfig {
        latency_min: latency.min_duration(),
        latency_max: latency.max_duration(),
        // The model needs loss < 1 (TCP would never deliver); clamp a scenario's 1.0.
        loss_probability: loss.min(0.999),
    }
}

fn close_code(cause: CloseCause) -> u64 {
    match cause {
        CloseCause::Fin => 1,
        CloseCause::Reset => 2,
        CloseCause::TimedOut => 3,
        CloseCause::BufferOverflow => 4,
    }
}

#[cfg(test)]
#[path = "world_tests.rs"]
mod tests;
