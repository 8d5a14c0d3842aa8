//! The broker's timers: one min-heap of deadlines with lazy deletion.
//!
//! This module owns the ordering of deadlines (connect timeout, keep-alive, will delay, session
//! expiry). It must never decide whether a timer is still wanted: entries are not removed when
//! the state they guard changes; the broker checks the state when an entry fires and ignores or
//! re-arms stale ones. So arming is O(log n) and nothing is ever O(sessions).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::ConnectionId;
use super::session::SessionKey;
use crate::time::Time;

/// What a deadline is for. The order matters when two fire at the same instant: a will delay
/// that ends with the session is published before the session expiry removes the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    ConnectTimeout(ConnectionId),
    KeepAlive(ConnectionId),
    Will(SessionKey),
    SessionExpiry(SessionKey),
}

#[derive(Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<(Time, Timer)>>,
}

impl Timers {
    pub fn arm(&mut self, at: Time, timer: Timer) {
        self.heap.push(Reverse((at, timer)));
        assert!(self.heap.peek().is_some_and(|Reverse((earliest, _))| *earliest <= at));
    }

    /// The earliest armed deadline (maybe stale: firing it early is harmless).
    pub fn next_deadline(&self) -> Option<Time> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns the earliest entry due at or before `now`.
    pub fn pop_due(&mut self, now: Time) -> Option<(Time, Timer)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => {
                let Reverse((at, timer)) = self.heap.pop().expect("peeked");
                assert!(at <= now);
                Some((at, timer))
            }
            _ => None,
        }
    }
}
