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

use bytes::BytesMut;
use edgeproof_scenarios::ledger::DROP_DEVICE_QUEUE_FULL;
use edgeproof_scenarios::spec::{FaultAction, LatencyRange};
use edgeproof_scenarios::{Ledger, Outcome, RunInfo, Scenario, Workload};
use edgeproof_system::broker::{Broker, BrokerConfig, BrokerEvent, ConnectionId, Transmit};
use edgeproof_system::client::{Client, ClientEvent};
use edgeproof_system::time::Time;

use edgeproof_scenarios::agents::{
    DeviceAgent, DeviceRecord, DropTally, SubscriberAgent, SubscriberRecord, broker_drop_reason,
    declare_drops, device_client, fleet_client_config, subscriber_config,
};

use super::connections::{ConnectionEvent, ConnectionRecorder};
use super::net::{
    CloseCause, ConnId, Endpoint, HostId, LinkConfig, ListenerId, NetConfig, NetEvent, NetOutput, Network,
    Side,
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
}

impl Default for FastOptions {
    fn default() -> Self {
        FastOptions { net: NetConfig::default(), trace_lines: 0, pending_events_limit: 1 << 26 }
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
}

impl From<NetEvent> for WorldEvent {
    fn from(event: NetEvent) -> WorldEvent {
        WorldEvent::Net(event)
    }
}

/// What a pod runs. New kinds (frontends, chain replicas) add a variant here and a case in the
/// few `match`es that route connections and timers.
enum PodCore {
    Broker(Box<Broker>),
}

impl PodCore {
    fn poll_timeout(&self) -> Option<Time> {
        match self {
            PodCore::Broker(broker) => broker.poll_timeout(),
        }
    }
}

/// How to build a pod's core again after a crash.
enum PodRecipe {
    Broker(BrokerConfig),
}

struct Pod {
    name: String,
    listener: ListenerId,
    recipe: PodRecipe,
    /// `None` while crashed: the in-memory state is gone.
    core: Option<PodCore>,
    scheduled_wake: Time,
    crash_count: u32,
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

        let mut pods = Vec::with_capacity(scenario.pods.len());
        for (index, spec) in scenario.pods.iter().enumerate() {
            let host = host_of(&spec.host)?;
            let config: BrokerConfig = spec.config.clone().try_into().map_err(|error: toml::de::Error| {
                FastError::PodConfig { pod: spec.name.clone(), message: error.to_string() }
            })?;
            let listener = net.add_listener(host);
            assert_eq!(listener.0 as usize, index, "listener ids follow pod order");
            let recipe = PodRecipe::Broker(config);
            let core = Some(build_core(&recipe));
            pods.push(Pod {
                name: spec.name.clone(),
                listener,
                recipe,
                core,
                scheduled_wake: Time::MAX,
                crash_count: 0,
            });
        }
        let pod_of = |name: &str| -> Result<ListenerId, FastError> {
            pods.iter()
                .find(|pod| pod.name == name)
                .map(|pod| pod.listener)
                .ok_or(FastError::Unknown { kind: "pod", name: name.to_string() })
        };

        let mut ledger = Ledger::new();
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
                    let pod_index = listener.0 as usize;
                    match self.pods[pod_index].core.as_mut() {
                        Some(PodCore::Broker(broker)) => {
                            broker.handle_connection_opened(now, ConnectionId(conn.as_u64()))
                        }
                        None => unreachable!("a down listener accepted a connection"),
                    }
                    self.after_pod(now, pod_index);
                }
                NetOutput::Connected { conn, token } => {
                    self.trace.record(now, TraceKind::Connected, conn.as_u64(), token, 0);
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
                    self.client_transport_lost(now, token as usize, conn);
                }
                NetOutput::Data { conn, to, bytes } => match to {
                    Endpoint::Client { token } => {
                        self.trace.record(
                            now,
                            TraceKind::SegmentDelivered,
                            conn.as_u64(),
                            token,
                            bytes.len() as u64,
                        );
                        let index = token as usize;
                        if self.clients[index].conn == Some(conn) {
                            self.clients[index].core.handle_bytes(now, &bytes);
                            self.after_client(now, index, false);
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
                        let pod_index = listener.0 as usize;
                        if let Some(PodCore::Broker(broker)) = self.pods[pod_index].core.as_mut() {
                            broker.handle_bytes(now, ConnectionId(conn.as_u64()), &bytes);
                            self.after_pod(now, pod_index);
                        }
                    }
                },
                NetOutput::Closed { conn, end, cause } => match end {
                    Endpoint::Client { token } => {
                        self.trace.record(
                            now,
                            TraceKind::ConnectionClosed,
                            conn.as_u64(),
                            token,
                            close_code(cause),
                        );
                        self.client_transport_lost(now, token as usize, conn);
                    }
                    Endpoint::Server { listener } => {
                        self.trace.record(
                            now,
                            TraceKind::ConnectionClosed,
                            conn.as_u64(),
                            u64::from(listener.0) | 1 << 40,
                            close_code(cause),
                        );
                        let pod_index = listener.0 as usize;
                        if let Some(PodCore::Broker(broker)) = self.pods[pod_index].core.as_mut() {
                            broker.handle_connection_lost(now, ConnectionId(conn.as_u64()));
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

    fn on_pod_wake(&mut self, now: Time, index: usize) {
        let pod = &mut self.pods[index];
        if pod.scheduled_wake != now {
            return; // Stale: an earlier wake replaced it, or the pod crashed.
        }
        pod.scheduled_wake = Time::MAX;
        self.trace.record(now, TraceKind::PodWake, index as u64, 0, 0);
        match pod.core.as_mut() {
            Some(PodCore::Broker(broker)) => broker.handle_timeout(now),
            None => return,
        }
        self.after_pod(now, index);
    }

    /// Drains a pod's outputs into the network and reschedules its wake.
    fn after_pod(&mut self, now: Time, index: usize) {
        let pod = &mut self.pods[index];
        let Some(core) = pod.core.as_mut() else { return };
        match core {
            PodCore::Broker(broker) => {
                while let Some(transmit) = broker.poll_transmit() {
                    match transmit {
                        Transmit::Send { connection, bytes } => {
                            let conn = ConnId::from_u64(connection.0);
                            self.trace.record(
                                now,
                                TraceKind::SegmentSent,
                                connection.0,
                                index as u64,
                                bytes.len() as u64,
                            );
                            // A send on a connection the network already closed is dropped; the
                            // broker learns of the loss from the network's own report.
                            let _ = self.net.send(now, conn, Side::Server, bytes, &mut self.queue);
                        }
                        Transmit::Close { connection } => {
                            self.net.close(
                                now,
                                ConnId::from_u64(connection.0),
                                Side::Server,
                                &mut self.queue,
                            );
                        }
                    }
                }
                while let Some(event) = broker.poll_event() {
                    // Drops are declared to the oracle (by reason: the event does not say which
                    // message); the other events are observability only.
                    if let BrokerEvent::MessageDropped { reason, .. } = event {
                        *self.declared_drops.entry(broker_drop_reason(reason)).or_default() += 1;
                        self.trace.record(now, TraceKind::BrokerEvent, index as u64, reason as u64, 0);
                    }
                }
            }
        }
        let wake = core.poll_timeout().map(|at| at.max(now));
        if let Some(wake) = wake
            && wake < pod.scheduled_wake
        {
            pod.scheduled_wake = wake;
            self.queue.schedule(wake, WorldEvent::PodWake(index as u32));
        }
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
            FaultAction::Restart { pod } => self.restart_pod(now, self.pod_index(&pod)),
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
        if pod.core.is_none() {
            return;
        }
        // Dropping the core drops every in-memory session, queue and retained message.
        pod.core = None;
        pod.crash_count += 1;
        pod.scheduled_wake = Time::MAX;
        let listener = pod.listener;
        self.net.reset_listener(now, listener, &mut self.queue);
        assert!(self.pods[index].core.is_none());
    }

    fn restart_pod(&mut self, now: Time, index: usize) {
        let pod = &mut self.pods[index];
        if pod.core.is_some() {
            return;
        }
        pod.core = Some(build_core(&pod.recipe));
        let listener = pod.listener;
        self.net.set_listener_up(listener, true);
        self.after_pod(now, index);
        assert!(self.pods[index].core.is_some());
    }

    /// End of publishing: heal every partition and restart every crashed pod, so the drain
    /// phase measures recovery rather than a fault that outlasts the run.
    fn recover_all(&mut self, now: Time) {
        self.trace.record(now, TraceKind::Fault, u64::MAX, 0, 0);
        self.stats.faults_applied += 1;
        self.net.heal_all(now, &mut self.queue);
        for index in 0..self.pods.len() {
            self.restart_pod(now, index);
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

fn build_core(recipe: &PodRecipe) -> PodCore {
    match recipe {
        PodRecipe::Broker(config) => PodCore::Broker(Box::new(Broker::new(config.clone()))),
    }
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
