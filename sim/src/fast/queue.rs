//! The event queue of the fast engine: a min-heap keyed by `(time, insertion sequence)`.
//!
//! This module owns the total order of events. Two events at the same instant run in the order
//! they were scheduled, so a run is a pure function of its seed. It must never reorder events by
//! anything but that key, and never let time go backwards.
//!
//! Why a binary heap rather than a hierarchical timer wheel: the world keeps at most one pending
//! wake-up per device (lazy rescheduling, see `runner.rs`), plus one entry per in-flight segment,
//! so the heap holds `O(devices + segments in flight)` entries of 32 bytes each (about 64 MB at
//! one million devices). Push and pop are `O(log n)` (about 20 comparisons at 1M entries) with no
//! allocation once the heap has grown, ties need no extra bucket sorting, and the order is
//! trivially total. A timer wheel would save the `log n` only for timers that fall into the
//! current slot and would need a second sort by sequence inside every slot to stay deterministic.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use edgeproof_system::time::Time;

/// One scheduled event. Ordered so that the *earliest* `(at, sequence)` is the heap's maximum.
struct Scheduled<E> {
    at: Time,
    sequence: u64,
    event: E,
}

impl<E> PartialEq for Scheduled<E> {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.sequence == other.sequence
    }
}

impl<E> Eq for Scheduled<E> {}

impl<E> PartialOrd for Scheduled<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Scheduled<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest event on top.
        other.at.cmp(&self.at).then_with(|| other.sequence.cmp(&self.sequence))
    }
}

/// A deterministic priority queue of events with a monotonic clock.
///
/// `now` is the time of the last popped event; scheduling into the past is a bug in the model and
/// panics. The number of pending events is bounded by `pending_limit`: every entity in the world
/// keeps a bounded number of pending events, so exceeding the limit means a model bug (a leak of
/// events), which panics rather than silently eating memory.
pub struct EventQueue<E> {
    heap: BinaryHeap<Scheduled<E>>,
    now: Time,
    sequence_next: u64,
    pending_limit: usize,
    popped_count: u64,
}

impl<E> EventQueue<E> {
    /// An empty queue at time zero that holds at most `pending_limit` events.
    pub fn new(pending_limit: usize) -> EventQueue<E> {
        assert!(pending_limit > 0, "an event queue must hold at least one event");
        EventQueue {
            heap: BinaryHeap::new(),
            now: Time::ZERO,
            sequence_next: 0,
            pending_limit,
            popped_count: 0,
        }
    }

    /// The time of the last popped event (the world's current time).
    pub fn now(&self) -> Time {
        self.now
    }

    /// How many events have been popped so far.
    pub fn popped_count(&self) -> u64 {
        self.popped_count
    }

    /// How many events are pending.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no event is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Schedules `event` at `at`, which must not be in the past.
    pub fn schedule(&mut self, at: Time, event: E) {
        assert!(at >= self.now, "event scheduled in the past: {at} < now {}", self.now);
        assert!(at != Time::MAX, "an event at Time::MAX would never run; do not schedule it");
        assert!(self.heap.len() < self.pending_limit, "event queue limit {} exceeded", self.pending_limit);
        let sequence = self.sequence_next;
        self.sequence_next += 1;
        self.heap.push(Scheduled { at, sequence, event });
    }

    /// The time of the earliest pending event.
    pub fn peek_time(&self) -> Option<Time> {
        self.heap.peek().map(|scheduled| scheduled.at)
    }

    /// Removes the earliest pending event and advances `now` to its time.
    pub fn pop(&mut self) -> Option<(Time, E)> {
        let scheduled = self.heap.pop()?;
        assert!(scheduled.at >= self.now, "time went backwards in the event queue");
        self.now = scheduled.at;
        self.popped_count += 1;
        Some((scheduled.at, scheduled.event))
    }

    /// Removes the earliest pending event only if it is due at or before `deadline`.
    pub fn pop_until(&mut self, deadline: Time) -> Option<(Time, E)> {
        match self.peek_time() {
            Some(at) if at <= deadline => self.pop(),
            _ => None,
        }
    }

    /// Advances the clock to `at` without an event (the run's end, for example).
    pub fn advance_to(&mut self, at: Time) {
        assert!(at >= self.now, "cannot advance the clock backwards");
        assert!(self.peek_time().is_none_or(|next| next >= at), "advancing past a pending event");
        self.now = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_time_then_insertion_order() {
        let mut queue = EventQueue::new(16);
        queue.schedule(Time::from_millis(5), "c");
        queue.schedule(Time::from_millis(1), "a");
        queue.schedule(Time::from_millis(5), "d");
        queue.schedule(Time::from_millis(1), "b");
        let order: Vec<_> = std::iter::from_fn(|| queue.pop()).map(|(_, event)| event).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
        assert_eq!(queue.now(), Time::from_millis(5));
        assert_eq!(queue.popped_count(), 4);
    }

    #[test]
    fn pop_until_respects_the_deadline() {
        let mut queue = EventQueue::new(16);
        queue.schedule(Time::from_millis(10), 1);
        assert!(queue.pop_until(Time::from_millis(9)).is_none());
        assert_eq!(queue.pop_until(Time::from_millis(10)), Some((Time::from_millis(10), 1)));
        assert!(queue.is_empty());
    }

    #[test]
    fn scheduling_into_the_past_panics() {
        let result = std::panic::catch_unwind(|| {
            let mut queue = EventQueue::new(16);
            queue.schedule(Time::from_millis(10), ());
            queue.pop();
            queue.schedule(Time::from_millis(9), ());
        });
        assert!(result.is_err());
    }
}
