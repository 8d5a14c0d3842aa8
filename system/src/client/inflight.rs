//! The outbound inflight window: QoS 1/2 publishes sent and not yet completed, in send order,
//! found by packet id in O(1).
//!
//! This module owns the ordered container only (it is generic over the entry). It must never
//! decide protocol steps: the client core says what an entry holds and when it completes.
//! Retransmission after a reconnect must follow the original send order (spec 4.4), and acks
//! arrive by packet id, so entries live in a deque of slots in send order with a packet-id index;
//! a completed entry leaves a hole that is popped from the front or compacted away once holes
//! outnumber entries, which keeps every operation O(1) amortised and memory within twice the
//! live entries.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::mqtt::packet::PacketId;

/// Slack below which holes are never compacted (compaction would run too often on tiny windows).
const COMPACTION_SLACK_SLOTS: usize = 16;

/// Entries in send order, indexed by packet id.
#[derive(Debug)]
pub struct InflightQueue<T> {
    /// `slots[i]` has sequence number `front_sequence + i`; `None` is a completed entry's hole.
    slots: VecDeque<Option<(PacketId, T)>>,
    front_sequence: u64,
    sequence_by_packet_id: FxHashMap<PacketId, u64>,
}

impl<T> Default for InflightQueue<T> {
    fn default() -> Self {
        InflightQueue {
            slots: VecDeque::new(),
            front_sequence: 0,
            sequence_by_packet_id: FxHashMap::default(),
        }
    }
}

impl<T> InflightQueue<T> {
    /// Live entries.
    pub fn len(&self) -> usize {
        self.sequence_by_packet_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sequence_by_packet_id.is_empty()
    }

    pub fn contains(&self, packet_id: PacketId) -> bool {
        self.sequence_by_packet_id.contains_key(&packet_id)
    }

    /// Appends an entry at the back (most recently sent). The packet id must be free.
    pub fn push(&mut self, packet_id: PacketId, entry: T) {
        assert!(!self.contains(packet_id), "packet id {packet_id} already inflight");
        let sequence = self.front_sequence + self.slots.len() as u64;
        self.slots.push_back(Some((packet_id, entry)));
        self.sequence_by_packet_id.insert(packet_id, sequence);
        assert!(self.len() <= self.slots.len());
    }

    pub fn get_mut(&mut self, packet_id: PacketId) -> Option<&mut T> {
        let sequence = *self.sequence_by_packet_id.get(&packet_id)?;
        let index = usize::try_from(sequence - self.front_sequence).expect("index fits");
        let (slot_packet_id, entry) = self.slots[index].as_mut().expect("indexed slot is live");
        assert_eq!(*slot_packet_id, packet_id);
        Some(entry)
    }

    /// Removes and returns the entry with `packet_id`.
    pub fn remove(&mut self, packet_id: PacketId) -> Option<T> {
        let sequence = self.sequence_by_packet_id.remove(&packet_id)?;
        let index = usize::try_from(sequence - self.front_sequence).expect("index fits");
        let (slot_packet_id, entry) = self.slots[index].take().expect("indexed slot is live");
        assert_eq!(slot_packet_id, packet_id);
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.front_sequence += 1;
        }
        if self.slots.len() > 2 * self.len() + COMPACTION_SLACK_SLOTS {
            self.compact();
        }
        if self.is_empty() {
            // An idle client holds no memory: a million of them are simulated at once.
            assert!(self.slots.is_empty());
            self.slots = VecDeque::new();
            self.sequence_by_packet_id = FxHashMap::default();
        }
        Some(entry)
    }

    /// Removes every entry, returning them in send order.
    pub fn drain_in_order(&mut self) -> Vec<(PacketId, T)> {
        let entries: Vec<(PacketId, T)> = std::mem::take(&mut self.slots).into_iter().flatten().collect();
        assert_eq!(entries.len(), self.len());
        self.front_sequence = 0;
        self.sequence_by_packet_id = FxHashMap::default();
        entries
    }

    /// Live entries in send order.
    pub fn iter(&self) -> impl Iterator<Item = (PacketId, &T)> {
        self.slots.iter().flatten().map(|(packet_id, entry)| (*packet_id, entry))
    }

    /// Drops the holes and renumbers: O(slots), run only when holes outnumber entries, so O(1)
    /// amortised per removal.
    fn compact(&mut self) {
        self.slots.retain(Option::is_some);
        self.front_sequence = 0;
        for (index, slot) in self.slots.iter().enumerate() {
            let (packet_id, _) = slot.as_ref().expect("retained slots are live");
            *self.sequence_by_packet_id.get_mut(packet_id).expect("live entry is indexed") = index as u64;
        }
        assert_eq!(self.slots.len(), self.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(value: u16) -> PacketId {
        PacketId::new(value).expect("non-zero")
    }

    #[test]
    fn keeps_send_order_across_out_of_order_removals() {
        let mut queue = InflightQueue::default();
        for value in 1..=100u16 {
            queue.push(id(value), value);
        }
        // Ack everything except every tenth entry, newest first, to force holes and compaction.
        for value in (1..=100u16).rev().filter(|value| value % 10 != 0) {
            assert_eq!(queue.remove(id(value)), Some(value));
        }
        assert_eq!(queue.len(), 10);
        assert!(queue.slots.len() <= 2 * queue.len() + COMPACTION_SLACK_SLOTS);
        let order: Vec<u16> = queue.iter().map(|(_, value)| *value).collect();
        assert_eq!(order, vec![10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
        *queue.get_mut(id(50)).expect("live") = 5000;
        assert_eq!(queue.remove(id(7)), None);
        queue.push(id(7), 7);
        let drained: Vec<u16> = queue.drain_in_order().into_iter().map(|(_, value)| value).collect();
        assert_eq!(drained, vec![10, 20, 30, 40, 5000, 60, 70, 80, 90, 100, 7]);
        assert!(queue.is_empty());
    }

    #[test]
    fn empty_queue_releases_its_memory() {
        let mut queue = InflightQueue::default();
        queue.push(id(1), ());
        queue.push(id(2), ());
        queue.remove(id(2));
        queue.remove(id(1));
        assert_eq!(queue.slots.capacity(), 0);
        assert_eq!(queue.sequence_by_packet_id.capacity(), 0);
    }
}
