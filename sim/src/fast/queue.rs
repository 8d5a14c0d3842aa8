//! The event queue of the fast engine: a timer wheel with a small heap for the current slot and a
//! heap for the far future, totally ordered by `(time, insertion sequence)`.
//!
//! This module owns the total order of events. Two events at the same instant run in the order
//! they were scheduled, so a run is a pure function of its seed. It must never reorder events by
//! anything but that key, and never let time go backwards.
//!
//! # Why a wheel, and this one
//! A million devices each keep one pending wake-up (lazy rescheduling, see `world.rs`) and every
//! segment in flight has a delivery event, so a plain binary heap holds millions of 40-byte
//! entries; every push and pop then walks about 20 levels of cold memory, and profiles showed the
//! heap's `pop` as the single largest cost of a 100k-device run. Here:
//! - time is cut into slots of 2^20 ns (about 1 ms); the wheel holds the next `WHEEL_SLOTS`
//!   slots (about 67 s) as plain vectors: scheduling into them is a `Vec::push`;
//! - when the clock reaches a slot, its vector becomes the *current* heap (heapified in O(n));
//!   only events of that one millisecond are ever ordered by comparison, and they fit in cache;
//! - events beyond the wheel's horizon wait in an overflow heap and move into the wheel as the
//!   horizon passes them (rare: keep-alives and publish intervals are shorter than a minute).
//!
//! Order argument: every event in the current heap is earlier than every event in the wheel
//! (slots are disjoint, increasing time ranges, and an event scheduled into a slot at or before
//! the current one goes into the current heap), and every wheel event is earlier than every
//! overflow event (the overflow holds only slots beyond the horizon). So popping the current
//! heap's minimum, refilling it from the next non-empty slot when empty, yields the exact
//! `(time, sequence)` order of a single global heap; a differential test checks this.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use edgeproof_system::time::Time;

/// log2 of a slot's width in nanoseconds (2^20 ns = 1.048576 ms).
const SLOT_SHIFT: u32 = 20;
/// Slots in the wheel (a power of two): 65,536 slots of ~1 ms cover about 68.7 s.
const WHEEL_SLOTS: u64 = 1 << 16;
const _: () = assert!(WHEEL_SLOTS.is_power_of_two() && SLOT_SHIFT >= 10);

/// One scheduled event. Ordered so that the *earliest* `(at, sequence)` is a max-heap's top.
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

fn slot_of(at: Time) -> u64 {
    at.as_nanos() >> SLOT_SHIFT
}

/// A deterministic priority queue of events with a monotonic clock.
///
/// `now` is the time of the last popped event; scheduling into the past is a bug in the model and
/// panics. The number of pending events is bounded by `pending_limit`: every entity in the world
/// keeps a bounded number of pending events, so exceeding the limit means a model bug (a leak of
/// events), which panics rather than silently eating memory.
pub struct EventQueue<E> {
    /// Events of slots up to and including `current_slot`, ordered.
    current: BinaryHeap<Scheduled<E>>,
    /// The absolute slot number the current heap stands for.
    current_slot: u64,
    /// Events of slots `current_slot + 1 .. current_slot + WHEEL_SLOTS`, unordered per slot,
    /// indexed by `slot % WHEEL_SLOTS`.
    wheel: Vec<Vec<Scheduled<E>>>,
    /// Events in `wheel`.
    wheel_len: usize,
    /// Events at or beyond slot `current_slot + WHEEL_SLOTS`.
    overflow: BinaryHeap<Scheduled<E>>,
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
            current: BinaryHeap::new(),
            current_slot: 0,
            wheel: (0..WHEEL_SLOTS).map(|_| Vec::new()).collect(),
            wheel_len: 0,
            overflow: BinaryHeap::new(),
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
        self.current.len() + self.wheel_len + self.overflow.len()
    }

    /// Whether no event is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Schedules `event` at `at`, which must not be in the past.
    pub fn schedule(&mut self, at: Time, event: E) {
        assert!(at >= self.now, "event scheduled in the past: {at} < now {}", self.now);
        assert!(at != Time::MAX, "an event at Time::MAX would never run; do not schedule it");
        assert!(self.len() < self.pending_limit, "event queue limit {} exceeded", self.pending_limit);
        let sequence = self.sequence_next;
        self.sequence_next += 1;
        self.place(Scheduled { at, sequence, event });
    }

    fn place(&mut self, scheduled: Scheduled<E>) {
        let slot = slot_of(scheduled.at);
        if slot <= self.current_slot {
            self.current.push(scheduled);
        } else if slot < self.current_slot + WHEEL_SLOTS {
            self.wheel[(slot % WHEEL_SLOTS) as usize].push(scheduled);
            self.wheel_len += 1;
        } else {
            self.overflow.push(scheduled);
        }
    }

    /// Makes the current heap hold the earliest pending event, if any is pending.
    fn settle(&mut self) {
        if !self.current.is_empty() {
            return;
        }
        let next_slot = if self.wheel_len > 0 {
            // Scanning empty slots is a cheap linear walk over the wheel, bounded by its size.
            (self.current_slot + 1..self.current_slot + WHEEL_SLOTS)
                .find(|slot| !self.wheel[(slot % WHEEL_SLOTS) as usize].is_empty())
                .expect("a non-empty wheel has a non-empty slot")
        } else if let Some(first) = self.overflow.peek() {
            slot_of(first.at)
        } else {
            return;
        };
        assert!(next_slot > self.current_slot);
        self.current_slot = next_slot;
        // Take the slot's vector whole and heapify it. The vacated slot starts empty without an
        // allocation: recycling capacity into slots would let all 65,536 of them keep a busy
        // millisecond's worth of memory (gigabytes at a million devices).
        let index = (next_slot % WHEEL_SLOTS) as usize;
        let slot_events = std::mem::take(&mut self.wheel[index]);
        self.wheel_len -= slot_events.len();
        self.current = BinaryHeap::from(slot_events);
        // The horizon moved: bring overflow events into the wheel (or the current heap).
        while let Some(first) = self.overflow.peek() {
            if slot_of(first.at) >= self.current_slot + WHEEL_SLOTS {
                break;
            }
            let scheduled = self.overflow.pop().expect("peeked");
            self.place(scheduled);
        }
        assert!(!self.current.is_empty(), "the next slot holds the earliest event");
    }

    /// The time of the earliest pending event.
    pub fn peek_time(&mut self) -> Option<Time> {
        self.settle();
        self.current.peek().map(|scheduled| scheduled.at)
    }

    /// Removes the earliest pending event and advances `now` to its time.
    pub fn pop(&mut self) -> Option<(Time, E)> {
        self.settle();
        let scheduled = self.current.pop()?;
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
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

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
        // Peeking advanced the wheel past the deadline; an event scheduled before it still comes first.
        queue.schedule(Time::from_millis(9), 0);
        assert_eq!(queue.pop_until(Time::from_millis(10)), Some((Time::from_millis(9), 0)));
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

    #[test]
    fn exceeding_the_pending_limit_panics() {
        let result = std::panic::catch_unwind(|| {
            let mut queue = EventQueue::new(2);
            for millis in 0..3 {
                queue.schedule(Time::from_millis(millis), ());
            }
        });
        assert!(result.is_err());
    }

    /// Differential test: random interleavings of schedules (near, same-slot, far beyond the
    /// horizon, at `now`) and pops give exactly the order of one global binary heap.
    #[test]
    fn matches_a_plain_heap_under_random_schedules() {
        for seed in 0..20 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut queue = EventQueue::new(1 << 20);
            let mut reference: BinaryHeap<Scheduled<u64>> = BinaryHeap::new();
            let mut reference_sequence = 0;
            let mut now = Time::ZERO;
            for id in 0..20_000u64 {
                if rng.random_bool(0.55) {
                    let delay_nanos = match rng.random_range(0..4) {
                        0 => 0,
                        1 => rng.random_range(0..2_000_000),
                        2 => rng.random_range(0..20_000_000_000),
                        _ => rng.random_range(0..400_000_000_000),
                    };
                    let at = Time::from_nanos(now.as_nanos() + delay_nanos);
                    queue.schedule(at, id);
                    reference.push(Scheduled { at, sequence: reference_sequence, event: id });
                    reference_sequence += 1;
                } else {
                    let expected = reference.pop().map(|scheduled| (scheduled.at, scheduled.event));
                    assert_eq!(queue.pop(), expected, "seed {seed} step {id}");
                    if let Some((at, _)) = expected {
                        now = at;
                    }
                }
                assert_eq!(queue.len(), reference.len());
            }
            while let Some(scheduled) = reference.pop() {
                assert_eq!(queue.pop(), Some((scheduled.at, scheduled.event)));
            }
            assert!(queue.pop().is_none());
        }
    }
}
