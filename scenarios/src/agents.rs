//! The engine-agnostic halves of a scenario's devices and subscribers: what a device publishes
//! and when, what a subscriber subscribes to, and how every client event becomes a ledger record.
//!
//! This module owns the rules by which both simulated engines (and any other driver of client
//! cores) fill the oracle's [`Ledger`], so that the same scenario run on two engines is judged by
//! the same bookkeeping. It must never own a client core, a socket, a clock or a task: the engine
//! hands in `now`, the events its core emitted, and the results of the publishes it attempted.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::ledger::{
    DROP_DEVICE_QUEUE_FULL, DROP_MESSAGE_EXPIRED, DROP_PACKET_TOO_LARGE, DROP_QUEUE_FULL,
    DROP_QUOTA_EXCEEDED, DROP_SESSION_EXPIRED,
};
use crate::spec::{FleetSpec, SubscriberSpec};
use crate::{DevicePlan, Ledger, ObserverId, PublishSchedule, Stamp};
use bytes::BytesMut;
use edgeproof_system::broker::DropReason;
use edgeproof_system::client::{
    Client, ClientConfig, ClientEvent, OutgoingPublish, PublishError, PublishToken,
};
use edgeproof_system::mqtt::{QoS, Subscription, SubscriptionOptions};
use edgeproof_system::time::Time;

/// Size of the shared buffers stamped payloads are carved from. A chunk lives as long as any
/// payload in it, so it is kept small enough that retained chunks cost little.
const PAYLOAD_CHUNK_BYTES: usize = 16 * 1024;

/// The drop-reason name under which a publish the client core refused for a reason other than a
/// full queue or the packet size is declared: a validated scenario never causes one, so it is
/// declared under a name no scenario allows and the drop check fails the run visibly.
pub const DROP_PUBLISH_REJECTED: &str = "publish_rejected";

/// Drops an engine declares at the end of a run, by the oracle's drop-reason name. A `BTreeMap`
/// so that declaring them visits the reasons in one order on every run.
pub type DropTally = BTreeMap<&'static str, u64>;

/// The client configuration of one device of `fleet`.
pub fn device_config(fleet: &FleetSpec, client_id: &str) -> ClientConfig {
    assert!(!client_id.is_empty(), "a device needs a client id");
    let config = ClientConfig { client_id: client_id.to_string(), ..fleet_client_config(fleet) };
    assert_eq!(config.client_id, client_id);
    config
}

/// The client configuration every device of `fleet` shares; its `client_id` is empty, each
/// device's core carries its own id (see [`device_client`]).
pub fn fleet_client_config(fleet: &FleetSpec) -> ClientConfig {
    let config = ClientConfig {
        client_id: String::new(),
        protocol: fleet.protocol.version(),
        clean_start: fleet.clean_start,
        session_expiry_interval_secs: fleet.session_expiry_secs,
        keep_alive_secs: fleet.keep_alive_secs,
        pending_publishes_limit: fleet.pending_messages_limit as usize,
        ..ClientConfig::default()
    };
    assert!(config.pending_publishes_limit > 0, "validated scenarios bound the pending queue above 0");
    assert!(config.client_id.is_empty(), "a fleet's devices bring their own ids");
    config
}

/// The client core of one device: the fleet's shared configuration (from
/// [`fleet_client_config`]) plus the device's own id, so a million devices hold one config and a
/// million ids rather than a million configs.
pub fn device_client(
    fleet_config: &Arc<ClientConfig>,
    client_id: impl Into<Box<str>>,
    rng_seed: u64,
) -> Client {
    assert!(fleet_config.client_id.is_empty(), "the shared config names no device");
    let client = Client::with_shared_config(Arc::clone(fleet_config), rng_seed).with_client_id(client_id);
    assert!(!client.client_id().is_empty(), "a device needs a client id");
    client
}

/// The client configuration of a subscriber.
pub fn subscriber_config(spec: &SubscriberSpec) -> ClientConfig {
    assert!(!spec.client_id.is_empty() && !spec.filters.is_empty(), "validated subscriber");
    ClientConfig {
        client_id: spec.client_id.clone(),
        protocol: spec.protocol.version(),
        clean_start: spec.clean_start,
        session_expiry_interval_secs: spec.session_expiry_secs,
        keep_alive_secs: spec.keep_alive_secs,
        ..ClientConfig::default()
    }
}

/// One SUBSCRIBE entry per filter, all at the subscriber's QoS.
pub fn subscriptions_of(filters: &[String], qos: QoS) -> Vec<Subscription> {
    assert!(!filters.is_empty(), "a subscriber subscribes to something");
    filters
        .iter()
        .map(|filter| Subscription {
            topic_filter: filter.clone(),
            options: SubscriptionOptions::with_qos(qos),
        })
        .collect()
}

/// A publish that is due: hand `message` to the device's client core, then report the result
/// with [`DeviceAgent::publish_accepted`] or [`DeviceAgent::publish_refused`].
#[derive(Debug)]
pub struct DuePublish {
    /// The sequence number it gets if the core accepts it.
    pub seq: u64,
    /// The time the workload planned it for (latency is measured from here).
    pub planned: Time,
    /// The stamped message.
    pub message: OutgoingPublish,
}

impl DuePublish {
    /// Moves the stamped message out (for the client core), leaving an empty one behind: the
    /// sequence number and planned time stay for [`DeviceAgent::publish_accepted`] and
    /// [`DeviceAgent::publish_refused`]. Saves cloning the topic and properties per publish.
    pub fn take_message(&mut self) -> OutgoingPublish {
        let placeholder = OutgoingPublish::new(String::new(), bytes::Bytes::new(), self.message.qos);
        let message = std::mem::replace(&mut self.message, placeholder);
        assert!(self.message.topic.is_empty() && self.message.payload.is_empty());
        message
    }
}

/// What a device's publish attempt or client event meant for the ledger; engines hash these
/// into their trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceRecord {
    /// The core accepted publish `seq`; it was recorded as invoked.
    Invoked { seq: u64 },
    /// The core refused the publish; the sample is dropped and declared at the end under
    /// `drop_reason` (the oracle's name, see [`refusal_drop_reason`]).
    Refused { drop_reason: &'static str },
    /// Publish `seq` was acknowledged.
    Acked { seq: u64 },
    /// Publish `seq` failed with a reason code >= 0x80.
    Failed { seq: u64, reason: u8 },
    /// The event changes nothing in the ledger.
    Nothing,
}

/// A device's publishing state and ledger bookkeeping; its client core lives in the engine.
#[derive(Debug)]
pub struct DeviceAgent {
    publisher_id: u64,
    topic: Box<str>,
    qos: QoS,
    payload_bytes: u32,
    schedule: PublishSchedule,
    /// The next sequence number to invoke (dense over invoked publishes; a publish refused by a
    /// full queue consumes no sequence number).
    next_seq: u64,
    /// Accepted publishes (QoS > 0) awaiting their outcome: `(token, seq)` in token order.
    /// Refusals are not counted here but in the engine's [`DropTally`], which keeps a device
    /// (of which there may be a million) one counter smaller.
    outstanding: VecDeque<(PublishToken, u64)>,
}

impl DeviceAgent {
    /// A device of `fleet` following `plan`; registers it as a publisher in `ledger`.
    pub fn new(plan: &DevicePlan, fleet: &FleetSpec, ledger: &mut Ledger) -> DeviceAgent {
        assert!(fleet.payload_bytes as usize >= crate::STAMP_LEN, "validated payload size");
        ledger.register_publisher(plan.publisher_id, &plan.client_id);
        DeviceAgent {
            publisher_id: plan.publisher_id,
            topic: plan.topic.clone().into_boxed_str(),
            qos: fleet.qos,
            payload_bytes: fleet.payload_bytes,
            schedule: plan.schedule,
            next_seq: 0,
            outstanding: VecDeque::new(),
        }
    }

    pub fn publisher_id(&self) -> u64 {
        self.publisher_id
    }

    /// When the next planned publish is due (`None` once the plan is exhausted).
    pub fn next_publish_at(&self) -> Option<Time> {
        self.schedule.peek().map(|planned| planned.at)
    }

    /// Publishes accepted and not yet acknowledged or failed.
    pub fn outstanding_count(&self) -> usize {
        self.outstanding.len()
    }

    /// Takes the next planned publish if it is due at `now` (open loop: never waits for acks),
    /// stamping its payload into `buffer`.
    pub fn take_due(&mut self, now: Time, buffer: &mut BytesMut) -> Option<DuePublish> {
        let planned = self.schedule.peek().filter(|planned| planned.at <= now)?;
        self.schedule.next();
        let seq = self.next_seq;
        let stamp = Stamp {
            flags: 0,
            publisher_id: self.publisher_id,
            seq,
            planned_send: planned.at,
            actual_send: now,
        };
        let payload_bytes = self.payload_bytes as usize;
        if buffer.capacity() < payload_bytes {
            // Carve payloads out of shared chunks: one allocation per chunk, not per publish.
            *buffer = BytesMut::with_capacity(PAYLOAD_CHUNK_BYTES.max(payload_bytes));
        }
        stamp.write_payload(payload_bytes, buffer);
        let payload = buffer.split().freeze();
        assert_eq!(payload.len(), payload_bytes);
        let message = OutgoingPublish::new(self.topic.as_ref(), payload, self.qos);
        Some(DuePublish { seq, planned: planned.at, message })
    }

    /// The core accepted `due` under `token` at `now`: records the invocation.
    pub fn publish_accepted(
        &mut self,
        due: &DuePublish,
        token: PublishToken,
        now: Time,
        ledger: &mut Ledger,
    ) -> DeviceRecord {
        assert_eq!(due.seq, self.next_seq, "publishes are reported in the order they were taken");
        assert!(due.planned <= now, "a publish is never sent before it is planned");
        self.next_seq += 1;
        ledger.publish_invoked(self.publisher_id, due.seq, &self.topic, self.qos, due.planned, now);
        if self.qos != QoS::AtMostOnce {
            self.outstanding.push_back((token, due.seq));
        }
        DeviceRecord::Invoked { seq: due.seq }
    }

    /// The core refused `due`: the sample is dropped without consuming a sequence number and
    /// counted in `drops` under its reason, which the engine declares at the end
    /// ([`declare_drops`]).
    pub fn publish_refused(
        &mut self,
        due: &DuePublish,
        error: &PublishError,
        drops: &mut DropTally,
    ) -> DeviceRecord {
        assert_eq!(due.seq, self.next_seq, "publishes are reported in the order they were taken");
        let drop_reason = refusal_drop_reason(error);
        *drops.entry(drop_reason).or_default() += 1;
        assert!(drops[drop_reason] > 0);
        DeviceRecord::Refused { drop_reason }
    }

    /// Records what a client event means for this device's publishes.
    pub fn on_event(&mut self, now: Time, event: &ClientEvent, ledger: &mut Ledger) -> DeviceRecord {
        match event {
            ClientEvent::PublishAcked { token, .. } => {
                let seq = self.take_outstanding(*token);
                ledger.publish_acked(self.publisher_id, seq, now);
                DeviceRecord::Acked { seq }
            }
            ClientEvent::PublishFailed { token, reason } => {
                let seq = self.take_outstanding(*token);
                assert!(reason.is_error(), "a failed publish carries an error reason");
                ledger.publish_failed(self.publisher_id, seq, reason.0, now);
                DeviceRecord::Failed { seq, reason: reason.0 }
            }
            _ => DeviceRecord::Nothing,
        }
    }

    /// End of the run: every publish still awaiting its outcome is indeterminate. Returns how
    /// many were.
    pub fn finish(&mut self, end: Time, ledger: &mut Ledger) -> u64 {
        let indeterminate = self.outstanding.len() as u64;
        for (_, seq) in self.outstanding.drain(..) {
            ledger.publish_indeterminate(self.publisher_id, seq, end);
        }
        assert!(self.outstanding.is_empty());
        indeterminate
    }

    /// Removes a publish's `(token, seq)` from the outstanding list. Acks mostly come in order,
    /// so the front is checked first.
    fn take_outstanding(&mut self, token: PublishToken) -> u64 {
        let position = self
            .outstanding
            .iter()
            .position(|(known, _)| *known == token)
            .unwrap_or_else(|| panic!("outcome for unknown publish token {token:?}"));
        let (_, seq) = self.outstanding.remove(position).expect("position is in range");
        seq
    }
}

/// The oracle's drop-reason name for a publish the client core refused. A full pending queue is
/// the device's declared bound and an oversized packet the broker's; anything else is a bug in
/// the scenario's validation or in the client core, declared under [`DROP_PUBLISH_REJECTED`].
pub fn refusal_drop_reason(error: &PublishError) -> &'static str {
    match error {
        PublishError::QueueFull { .. } => DROP_DEVICE_QUEUE_FULL,
        PublishError::PacketTooLarge { .. } => DROP_PACKET_TOO_LARGE,
        PublishError::InvalidTopic(_) | PublishError::TopicAliasUnsupported | PublishError::Invalid(_) => {
            DROP_PUBLISH_REJECTED
        }
    }
}

/// The oracle's name for a broker drop reason (a `MessageDropped` event of a broker core). Reasons
/// the oracle does not know keep a name of their own, so a scenario cannot allow them by accident
/// and the drop check reports them.
pub fn broker_drop_reason(reason: DropReason) -> &'static str {
    match reason {
        DropReason::QueueFullRejectNew | DropReason::QueueFullDropOldest => DROP_QUEUE_FULL,
        DropReason::QuotaExceeded => DROP_QUOTA_EXCEEDED,
        DropReason::Expired => DROP_MESSAGE_EXPIRED,
        DropReason::SessionEnded => DROP_SESSION_EXPIRED,
        DropReason::TooLargeForClient => DROP_PACKET_TOO_LARGE,
        DropReason::Qos0Offline => "qos0_offline",
        DropReason::RetainedStoreFull => "retained_store_full",
        DropReason::RejectedBySubscriber => "rejected_by_subscriber",
        DropReason::EncodeFailed => "encode_failed",
    }
}

/// The oracle's name for a republisher's drop reason (both engines tally through it).
pub fn republish_drop_reason(reason: edgeproof_system::republisher::RepublishDropReason) -> &'static str {
    use crate::ledger::{DROP_REPUBLISH_QUEUE_FULL, DROP_REPUBLISH_REFUSED};
    use edgeproof_system::republisher::RepublishDropReason;
    match reason {
        RepublishDropReason::QueueFull => DROP_REPUBLISH_QUEUE_FULL,
        RepublishDropReason::Refused => DROP_REPUBLISH_REFUSED,
    }
}

/// Declares the tallied drops in the ledger (once, at the end of a run), in reason order.
pub fn declare_drops(ledger: &mut Ledger, drops: &DropTally) {
    for (reason, count) in drops {
        assert!(*count > 0, "a tallied reason was counted");
        ledger.drop_declared(reason, *count);
    }
}

/// What a subscriber's client event meant; engines hash these into their trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubscriberRecord {
    /// A fresh session lost the subscriptions: the engine must subscribe again with
    /// [`SubscriberAgent::subscriptions`] and then call [`SubscriberAgent::subscribe_sent`].
    Resubscribe,
    /// SUBACK: these many filters are active from now on.
    Subscribed { granted: usize },
    /// A stamped message was recorded as delivered.
    Delivered { publisher_id: u64, seq: u64, dup: bool },
    /// A message without a valid stamp (counted by the engine; never recorded).
    Unstamped,
    /// The event changes nothing in the ledger.
    Nothing,
}

/// A subscriber's ledger bookkeeping; its client core lives in the engine.
#[derive(Debug)]
pub struct SubscriberAgent {
    observer: ObserverId,
    filters: Vec<String>,
    qos: QoS,
    subscribe_outstanding: bool,
}

impl SubscriberAgent {
    /// A subscriber per `spec`; registers its observer in `ledger`.
    pub fn new(spec: &SubscriberSpec, ledger: &mut Ledger) -> SubscriberAgent {
        let observer = ledger.register_observer(&spec.name, spec.qos);
        SubscriberAgent {
            observer,
            filters: spec.filters.clone(),
            qos: spec.qos,
            subscribe_outstanding: false,
        }
    }

    pub fn observer(&self) -> ObserverId {
        self.observer
    }

    /// The SUBSCRIBE request's entries.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        subscriptions_of(&self.filters, self.qos)
    }

    /// The engine handed [`SubscriberAgent::subscriptions`] to the core (which re-sends it after
    /// reconnects until it is acknowledged).
    pub fn subscribe_sent(&mut self) {
        assert!(!self.subscribe_outstanding, "one SUBSCRIBE at a time");
        self.subscribe_outstanding = true;
    }

    /// Records what a client event means for this subscriber.
    pub fn on_event(&mut self, now: Time, event: &ClientEvent, ledger: &mut Ledger) -> SubscriberRecord {
        match event {
            ClientEvent::Connected { session_present } => {
                if !session_present && !self.subscribe_outstanding {
                    // A fresh session lost the subscriptions (a session that was kept kept them,
                    // and an unacknowledged SUBSCRIBE is re-sent by the core itself).
                    SubscriberRecord::Resubscribe
                } else {
                    SubscriberRecord::Nothing
                }
            }
            ClientEvent::Subscribed { reason_codes, .. } => {
                assert!(self.subscribe_outstanding, "SUBACK without a SUBSCRIBE");
                assert_eq!(reason_codes.len(), self.filters.len(), "one reason code per filter");
                self.subscribe_outstanding = false;
                let granted: Vec<&str> = self
                    .filters
                    .iter()
                    .zip(reason_codes)
                    .filter(|(_, code)| !code.is_error())
                    .map(|(filter, _)| filter.as_str())
                    .collect();
                ledger.subscription_active(self.observer, &granted, now);
                SubscriberRecord::Subscribed { granted: granted.len() }
            }
            ClientEvent::Message(publish) => match Stamp::decode(&publish.payload) {
                Ok(stamp) => {
                    ledger.delivered(self.observer, &stamp, &publish.topic, now, publish.dup);
                    SubscriberRecord::Delivered {
                        publisher_id: stamp.publisher_id,
                        seq: stamp.seq,
                        dup: publish.dup,
                    }
                }
                Err(_) => SubscriberRecord::Unstamped,
            },
            _ => SubscriberRecord::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Workload, catalog};
    use edgeproof_system::mqtt::ReasonCode;

    use super::*;

    #[test]
    fn a_device_invokes_densely_and_records_acks_failures_and_indeterminates() {
        let scenario = catalog::get("smoke").expect("smoke is in the catalogue");
        let workload = Workload::new(&scenario, 7);
        let mut ledger = Ledger::new();
        let plan = workload.device(0, 3);
        let mut agent = DeviceAgent::new(&plan, &scenario.fleets[0], &mut ledger);
        let mut core = Client::new(device_config(&scenario.fleets[0], &plan.client_id), 7);
        let mut buffer = BytesMut::new();
        let first_at = agent.next_publish_at().expect("a plan publishes");
        if let Some(before) = first_at.as_nanos().checked_sub(1) {
            assert!(agent.take_due(Time::from_nanos(before), &mut buffer).is_none(), "not due yet");
        }

        let mut tokens = Vec::new();
        let now = first_at + std::time::Duration::from_secs(3);
        while let Some(due) = agent.take_due(now, &mut buffer) {
            let stamp = Stamp::decode(&due.message.payload).expect("stamped");
            assert_eq!((stamp.publisher_id, stamp.seq), (plan.publisher_id, due.seq));
            let token = core.publish(now, due.message.clone()).expect("the pending queue has room");
            assert_eq!(
                agent.publish_accepted(&due, token, now, &mut ledger),
                DeviceRecord::Invoked { seq: due.seq }
            );
            tokens.push(token);
        }
        assert_eq!(tokens.len(), 4, "planned at +0, +1, +2 and +3 s");
        assert_eq!(agent.outstanding_count(), 4);

        let acked = ClientEvent::PublishAcked { token: tokens[1], reason: ReasonCode::SUCCESS };
        assert_eq!(agent.on_event(now, &acked, &mut ledger), DeviceRecord::Acked { seq: 1 });
        let failed = ClientEvent::PublishFailed { token: tokens[0], reason: ReasonCode::QUOTA_EXCEEDED };
        assert_eq!(
            agent.on_event(now, &failed, &mut ledger),
            DeviceRecord::Failed { seq: 0, reason: ReasonCode::QUOTA_EXCEEDED.0 }
        );
        assert_eq!(agent.finish(now, &mut ledger), 2);
        let counters = ledger.counters();
        assert_eq!((counters.invoked, counters.acked, counters.failed, counters.indeterminate), (4, 1, 1, 2));
    }

    #[test]
    fn a_full_pending_queue_refuses_without_consuming_a_sequence_number() {
        let scenario = catalog::get("smoke").expect("smoke is in the catalogue");
        let mut fleet = scenario.fleets[0].clone();
        fleet.pending_messages_limit = 1;
        let workload = Workload::new(&scenario, 1);
        let mut ledger = Ledger::new();
        let plan = workload.device(0, 0);
        let mut agent = DeviceAgent::new(&plan, &fleet, &mut ledger);
        // Never connected: everything waits in the pending queue of one.
        let fleet_config = Arc::new(fleet_client_config(&fleet));
        let mut core = device_client(&fleet_config, plan.client_id.as_str(), 1);
        assert_eq!(core.client_id(), plan.client_id);
        let mut buffer = BytesMut::new();
        let now = Time::from_secs(5);
        let mut records = Vec::new();
        let mut drops = DropTally::new();
        while let Some(due) = agent.take_due(now, &mut buffer) {
            let record = match core.publish(now, due.message.clone()) {
                Ok(token) => agent.publish_accepted(&due, token, now, &mut ledger),
                Err(error) => agent.publish_refused(&due, &error, &mut drops),
            };
            records.push(record);
        }
        assert_eq!(records[0], DeviceRecord::Invoked { seq: 0 });
        let queue_full = DeviceRecord::Refused { drop_reason: DROP_DEVICE_QUEUE_FULL };
        assert!(records[1..].iter().all(|record| *record == queue_full), "{records:?}");
        let refused = records.len() as u64 - 1;
        assert!(refused >= 4);
        assert_eq!(drops.get(DROP_DEVICE_QUEUE_FULL), Some(&refused));
        assert_eq!(agent.finish(now, &mut ledger), 1, "the one accepted publish never completed");
        declare_drops(&mut ledger, &drops);
        assert_eq!(ledger.drops_by_reason().get(DROP_DEVICE_QUEUE_FULL), Some(&refused));
    }

    #[test]
    fn refusals_are_declared_under_the_oracles_reason_names() {
        let too_large = PublishError::PacketTooLarge { size_bytes: 300, limit_bytes: 200 };
        assert_eq!(refusal_drop_reason(&too_large), DROP_PACKET_TOO_LARGE);
        assert_eq!(refusal_drop_reason(&PublishError::QueueFull { limit: 1 }), DROP_DEVICE_QUEUE_FULL);
        assert_eq!(refusal_drop_reason(&PublishError::TopicAliasUnsupported), DROP_PUBLISH_REJECTED);
        let mut ledger = Ledger::new();
        let mut drops = DropTally::new();
        drops.insert(DROP_PACKET_TOO_LARGE, 2);
        declare_drops(&mut ledger, &drops);
        assert_eq!(ledger.drops_by_reason().get(DROP_PACKET_TOO_LARGE), Some(&2));
        assert_eq!(ledger.drops_by_reason().get(DROP_DEVICE_QUEUE_FULL), None);
        assert_eq!(broker_drop_reason(DropReason::QueueFullDropOldest), DROP_QUEUE_FULL);
        assert_eq!(broker_drop_reason(DropReason::SessionEnded), DROP_SESSION_EXPIRED);
    }

    #[test]
    fn a_subscriber_resubscribes_only_when_a_fresh_session_lost_its_subscriptions() {
        let scenario = catalog::get("smoke").expect("smoke is in the catalogue");
        let mut ledger = Ledger::new();
        let mut agent = SubscriberAgent::new(&scenario.subscribers[0], &mut ledger);
        agent.subscribe_sent();
        let fresh = ClientEvent::Connected { session_present: false };
        assert_eq!(agent.on_event(Time::ZERO, &fresh, &mut ledger), SubscriberRecord::Nothing);
        let suback = ClientEvent::Subscribed {
            token: edgeproof_system::client::RequestToken(1),
            reason_codes: vec![ReasonCode(1)],
        };
        assert_eq!(
            agent.on_event(Time::ZERO, &suback, &mut ledger),
            SubscriberRecord::Subscribed { granted: 1 }
        );
        let resumed = ClientEvent::Connected { session_present: true };
        assert_eq!(agent.on_event(Time::from_secs(1), &resumed, &mut ledger), SubscriberRecord::Nothing);
        assert_eq!(agent.on_event(Time::from_secs(2), &fresh, &mut ledger), SubscriberRecord::Resubscribe);
    }
}
