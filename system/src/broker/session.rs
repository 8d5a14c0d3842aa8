//! Session state (spec 4.1): subscriptions, the outgoing queue, outbound inflight QoS 1/2 messages
//! with their packet ids, inbound QoS 2 packet ids awaiting PUBREL, the will and the timers.
//!
//! This module owns the per-session data and the small operations on it (packet id allocation,
//! inflight bookkeeping). It must never encode packets or touch other sessions; the broker
//! (`super`) drives it. Sessions are kept small: nothing is allocated for an empty queue.

use std::collections::VecDeque;
use std::num::NonZeroU16;
use std::sync::Arc;

use bytes::Bytes;

use super::ConnectionId;
use crate::mqtt::{PacketId, Properties, ProtocolVersion, QoS, Will};
use crate::time::Time;

/// Identifies a session for the broker's lifetime; never reused, so a stale timer or trie entry
/// can never point at a different session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct SessionKey(pub u64);

/// An application message as the broker routes it; shared by every subscriber copy.
#[derive(Debug)]
pub(super) struct Message {
    pub topic: Arc<str>,
    pub payload: Bytes,
    /// QoS as published.
    pub qos: QoS,
    /// RETAIN as published.
    pub retain: bool,
    /// v5 properties forwarded unaltered (spec 3.3.2.3): payload format, content type, response
    /// topic, correlation data, user properties. Never the topic alias, subscription identifiers
    /// or expiry interval, which are per delivery.
    pub properties: Properties,
    /// When the Message Expiry Interval runs out, if one was set.
    pub expires_at: Option<Time>,
    /// The session that published it (for No Local); `None` for messages of no session.
    pub publisher: Option<SessionKey>,
}

impl Message {
    /// The bytes this message counts against the broker's queued-bytes quota, per copy.
    pub fn quota_bytes(&self) -> u64 {
        (self.payload.len() + self.topic.len()) as u64
    }

    pub fn is_expired(&self, now: Time) -> bool {
        self.expires_at.is_some_and(|expires_at| now >= expires_at)
    }
}

/// One subscriber's copy of a message: what to send it with.
#[derive(Clone, Debug)]
pub(super) struct Delivery {
    pub message: Arc<Message>,
    /// min(published QoS, granted QoS).
    pub qos: QoS,
    pub retain: bool,
    /// Identifiers of every matching subscription that had one (v5).
    pub subscription_identifiers: Vec<u32>,
}

/// Where an outbound QoS 1/2 message stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum InflightState {
    /// PUBLISH sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    AwaitingAck,
    /// PUBREL sent; waiting for PUBCOMP (QoS 2).
    AwaitingComp,
}

#[derive(Debug)]
pub(super) struct InflightEntry {
    pub packet_id: PacketId,
    pub state: InflightState,
    /// The message while it may still need a retransmission; dropped at PUBREC.
    pub delivery: Option<Delivery>,
}

/// A will waiting for its delay (v5 Will Delay Interval) after an abnormal disconnect.
#[derive(Debug)]
pub(super) struct PendingWill {
    pub will: Box<Will>,
    pub due_at: Time,
}

/// The state of one session.
#[derive(Debug)]
pub(super) struct Session {
    pub client_id: Arc<str>,
    /// The connection bound to the session, if any.
    pub connection: Option<ConnectionId>,
    /// Protocol of the latest connection (decides how queued messages are encoded).
    pub protocol: ProtocolVersion,
    /// Session Expiry Interval in force, already capped by the config.
    pub expiry_interval_secs: u32,
    /// When a disconnected session ends; `None` while connected.
    pub expires_at: Option<Time>,
    /// Filters as the client sent them (`$share/{group}/` prefix included); the options live in
    /// the trie. Kept to answer UNSUBSCRIBE and to clean the trie when the session ends.
    pub subscriptions: Vec<Box<str>>,
    /// Messages waiting for room in the inflight window (or for the client to reconnect).
    pub queue: VecDeque<Delivery>,
    /// Outbound QoS 1/2 messages, in the order their PUBLISH was first sent.
    pub inflight: VecDeque<InflightEntry>,
    /// The window: the client's Receive Maximum (v5) or the config's v3.1.1 limit.
    pub send_window: u16,
    /// The client's Maximum Packet Size (v5), `u32::MAX` when it set none.
    pub client_max_packet_size: u32,
    next_packet_id: u16,
    /// True when the ids of `inflight`, front to back, ascend cyclically without passing the
    /// front's id again, so every id in use lies in the cyclic range `front..=back` and
    /// [`Session::allocate_packet_id`] needs no scan for a candidate outside it. Removals keep
    /// this true (a subsequence ascends too); only [`Session::push_inflight`] can end it, and a
    /// push onto an empty window starts it again. False is always safe (the id search scans).
    inflight_ids_ascending: bool,
    /// Inbound QoS 2 packet ids whose PUBLISH was routed and whose PUBREL has not arrived.
    pub inbound_qos2: Vec<PacketId>,
    /// The will of the current connection (published on abnormal loss).
    pub will: Option<Box<Will>>,
    /// A will whose delay is running after the connection was lost.
    pub pending_will: Option<PendingWill>,
}

impl Session {
    pub fn new(client_id: Arc<str>, protocol: ProtocolVersion) -> Session {
        Session {
            client_id,
            connection: None,
            protocol,
            expiry_interval_secs: 0,
            expires_at: None,
            subscriptions: Vec::new(),
            queue: VecDeque::new(),
            inflight: VecDeque::new(),
            send_window: 1,
            client_max_packet_size: u32::MAX,
            next_packet_id: 1,
            inflight_ids_ascending: true,
            inbound_qos2: Vec::new(),
            will: None,
            pending_will: None,
        }
    }

    /// True when the inflight window has room for one more QoS 1/2 PUBLISH.
    pub fn window_open(&self) -> bool {
        self.inflight.len() < usize::from(self.send_window)
    }

    /// A packet id not used by any inflight message. The caller ensures the window (at most
    /// 65,535 entries) is open, so one is always free.
    pub fn allocate_packet_id(&mut self) -> PacketId {
        assert!(self.inflight.len() < usize::from(u16::MAX), "inflight window holds every id");
        loop {
            let candidate = NonZeroU16::new(self.next_packet_id).expect("packet ids skip zero");
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            // The common case is O(1): ids ascend and the candidate lies past the newest one. Only
            // otherwise the window is scanned (acks arrive mostly in order, so collisions are rare).
            let outside_range = self.candidate_outside_inflight_range(candidate);
            let in_use = !outside_range && self.inflight.iter().any(|entry| entry.packet_id == candidate);
            debug_assert!(
                !outside_range || self.inflight.iter().all(|entry| entry.packet_id != candidate),
                "packet id {candidate} is outside the inflight range but in use"
            );
            if !in_use {
                return candidate;
            }
        }
    }

    /// True when `candidate` is provably not in use: the window is empty, or its ids ascend
    /// cyclically and `candidate` lies outside the cyclic range from the front's id to the back's.
    fn candidate_outside_inflight_range(&self, candidate: PacketId) -> bool {
        let (Some(front), Some(back)) = (self.inflight.front(), self.inflight.back()) else {
            return true;
        };
        self.inflight_ids_ascending
            && packet_id_distance(front.packet_id, candidate)
                > packet_id_distance(front.packet_id, back.packet_id)
    }

    /// Appends an entry to the inflight window (its id from [`Session::allocate_packet_id`]) and
    /// keeps `inflight_ids_ascending` up to date.
    pub fn push_inflight(&mut self, entry: InflightEntry) {
        assert!(self.inflight.len() < usize::from(u16::MAX), "inflight window holds every id");
        self.inflight_ids_ascending = match (self.inflight.front(), self.inflight.back()) {
            (Some(front), Some(back)) => {
                let span = packet_id_distance(front.packet_id, back.packet_id);
                let step = packet_id_distance(back.packet_id, entry.packet_id);
                // Still ascending when the new id follows the back without reaching the front.
                self.inflight_ids_ascending && step > 0 && span + step < u32::from(u16::MAX)
            }
            _ => true,
        };
        self.inflight.push_back(entry);
    }

    pub fn inflight_position(&self, packet_id: PacketId) -> Option<usize> {
        self.inflight.iter().position(|entry| entry.packet_id == packet_id)
    }

    pub fn subscription_position(&self, filter: &str) -> Option<usize> {
        self.subscriptions.iter().position(|subscription| &**subscription == filter)
    }
}

/// How many steps the packet id counter takes from `from` to `to` (ids cycle through 1..=65535).
fn packet_id_distance(from: PacketId, to: PacketId) -> u32 {
    let ids = u32::from(u16::MAX);
    let distance = (u32::from(to.get()) + ids - u32::from(from.get())) % ids;
    assert!(distance < ids);
    distance
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_state_stays_small_and_allocates_nothing_when_idle() {
        // A million sessions live in one simulated broker; every byte here costs a megabyte there.
        assert!(std::mem::size_of::<Session>() <= 200, "Session is {} bytes", std::mem::size_of::<Session>());
        assert!(std::mem::size_of::<Delivery>() <= 40);
        let session = Session::new(Arc::from("c"), ProtocolVersion::V5);
        assert_eq!(session.queue.capacity(), 0);
        assert_eq!(session.inflight.capacity(), 0);
        assert_eq!(session.subscriptions.capacity(), 0);
    }

    #[test]
    fn packet_ids_skip_zero_and_ids_in_flight() {
        let mut session = Session::new(Arc::from("c"), ProtocolVersion::V5);
        session.send_window = u16::MAX;
        session.next_packet_id = u16::MAX;
        let last = session.allocate_packet_id();
        assert_eq!(last.get(), u16::MAX);
        session.push_inflight(InflightEntry {
            packet_id: last,
            state: InflightState::AwaitingComp,
            delivery: None,
        });
        let wrapped = session.allocate_packet_id();
        assert_eq!(wrapped.get(), 1, "zero is skipped on wrap-around");
        session.push_inflight(InflightEntry {
            packet_id: wrapped,
            state: InflightState::AwaitingComp,
            delivery: None,
        });
        session.next_packet_id = u16::MAX;
        let next = session.allocate_packet_id();
        assert_eq!(next.get(), 2, "{} and 1 are still in flight", u16::MAX);
    }

    #[test]
    fn a_stuck_oldest_id_is_never_reallocated_over_many_laps_of_the_counter() {
        let mut session = Session::new(Arc::from("c"), ProtocolVersion::V5);
        session.send_window = u16::MAX;
        let stuck = session.allocate_packet_id();
        session.push_inflight(InflightEntry {
            packet_id: stuck,
            state: InflightState::AwaitingAck,
            delivery: None,
        });
        let mut previous = stuck;
        for round in 0..140_000_u32 {
            let id = session.allocate_packet_id();
            assert_ne!(id, stuck, "round {round}");
            assert_ne!(id, previous, "round {round}");
            session.push_inflight(InflightEntry {
                packet_id: id,
                state: InflightState::AwaitingAck,
                delivery: None,
            });
            // Keep the newest entry of every other round so the window also holds ids of past laps.
            if round % 2 == 0 {
                session.inflight.pop_back();
            } else {
                previous = id;
                if session.inflight.len() > 3 {
                    session.inflight.remove(1);
                }
            }
            assert_eq!(session.inflight.front().map(|entry| entry.packet_id), Some(stuck));
        }
        let mut ids: Vec<u16> = session.inflight.iter().map(|entry| entry.packet_id.get()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), session.inflight.len(), "ids in flight are distinct");
    }
}
