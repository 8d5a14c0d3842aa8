//! Connections over time for the report's "connections" chart: per interval, the clients
//! connected at its end, the successful connects (and of those the reconnects) and the refused
//! connection attempts.
//!
//! This module owns that bookkeeping and its bound: it starts at one-second intervals and, when a
//! run outgrows [`CONNECTION_BUCKETS_LIMIT`] buckets, doubles the interval and merges neighbours
//! (as the ledger's series do), so memory stays bounded whatever the run length. It must never
//! judge anything: the oracle does not read it.

use edgeproof_scenarios::outcome::ConnectionSeries;
use edgeproof_system::Time;

/// Most buckets kept; reaching it doubles the interval.
pub const CONNECTION_BUCKETS_LIMIT: usize = 512;
const FIRST_INTERVAL_NS: u64 = 1_000_000_000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Bucket {
    connects: u64,
    reconnects: u64,
    failed: u64,
    /// Clients connected after the bucket's last event; `None` when nothing happened in it.
    connected_at_end: Option<u64>,
}

impl Bucket {
    fn absorb(&mut self, later: Bucket) {
        self.connects += later.connects;
        self.reconnects += later.reconnects;
        self.failed += later.failed;
        if later.connected_at_end.is_some() {
            self.connected_at_end = later.connected_at_end;
        }
    }
}

/// Per-client connection state and the per-interval counts, bounded in memory.
#[derive(Clone, Debug)]
pub struct ConnectionRecorder {
    interval_ns: u64,
    buckets: Vec<Bucket>,
    /// Per client: bit 0 connected now, bit 1 connected at least once.
    states: Vec<u8>,
    connected: u64,
}

const CONNECTED: u8 = 1;
const EVER_CONNECTED: u8 = 2;

/// A connection event of one client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// The broker accepted the session (CONNACK success).
    Connected,
    /// The broker refused it.
    Refused,
    /// The session ended (either side, or the transport broke).
    Disconnected,
}

impl ConnectionRecorder {
    /// A recorder for `clients` clients, none connected.
    pub fn new(clients: usize) -> ConnectionRecorder {
        ConnectionRecorder {
            interval_ns: FIRST_INTERVAL_NS,
            buckets: Vec::new(),
            states: vec![0; clients],
            connected: 0,
        }
    }

    /// Records `event` of client `client` at `now`.
    pub fn record(&mut self, now: Time, client: usize, event: ConnectionEvent) {
        let state = self.states[client];
        let bucket_index = self.bucket_index(now);
        let bucket = &mut self.buckets[bucket_index];
        match event {
            ConnectionEvent::Connected => {
                bucket.connects += 1;
                if state & EVER_CONNECTED != 0 {
                    bucket.reconnects += 1;
                }
                // A CONNACK on a session the engine still counted as up (a takeover) is not a
                // second connected client.
                if state & CONNECTED == 0 {
                    self.connected += 1;
                }
                self.states[client] = CONNECTED | EVER_CONNECTED;
            }
            ConnectionEvent::Refused => bucket.failed += 1,
            ConnectionEvent::Disconnected => {
                if state & CONNECTED != 0 {
                    self.connected -= 1;
                }
                self.states[client] = state & !CONNECTED;
            }
        }
        bucket.connected_at_end = Some(self.connected);
        assert!(self.connected <= self.states.len() as u64);
        assert!(self.buckets.len() <= CONNECTION_BUCKETS_LIMIT);
    }

    fn bucket_index(&mut self, now: Time) -> usize {
        let nanos = now.as_nanos();
        while nanos / self.interval_ns >= CONNECTION_BUCKETS_LIMIT as u64 {
            self.coarsen();
        }
        let index = (nanos / self.interval_ns) as usize;
        if self.buckets.len() <= index {
            self.buckets.resize(index + 1, Bucket::default());
        }
        index
    }

    fn coarsen(&mut self) {
        let merged: Vec<Bucket> = self
            .buckets
            .chunks(2)
            .map(|pair| {
                let mut bucket = pair[0];
                if let Some(second) = pair.get(1) {
                    bucket.absorb(*second);
                }
                bucket
            })
            .collect();
        self.buckets = merged;
        self.interval_ns *= 2;
    }

    /// Clients connected now.
    pub fn connected(&self) -> u64 {
        self.connected
    }

    /// The series for `outcome.json`; an interval without events keeps the count before it.
    pub fn to_series(&self) -> ConnectionSeries {
        let mut connected_now = 0;
        let connected = self
            .buckets
            .iter()
            .map(|bucket| {
                connected_now = bucket.connected_at_end.unwrap_or(connected_now);
                connected_now
            })
            .collect();
        ConnectionSeries {
            interval_secs: self.interval_ns as f64 / 1e9,
            connected,
            connects: self.buckets.iter().map(|bucket| bucket.connects).collect(),
            reconnects: self.buckets.iter().map(|bucket| bucket.reconnects).collect(),
            failed: self.buckets.iter().map(|bucket| bucket.failed).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connects_reconnects_and_the_connected_count_per_interval() {
        let mut recorder = ConnectionRecorder::new(3);
        recorder.record(Time::from_millis(100), 0, ConnectionEvent::Connected);
        recorder.record(Time::from_millis(200), 1, ConnectionEvent::Connected);
        recorder.record(Time::from_millis(300), 2, ConnectionEvent::Refused);
        recorder.record(Time::from_millis(2_500), 0, ConnectionEvent::Disconnected);
        // A second disconnect of the same client does not count twice.
        recorder.record(Time::from_millis(2_600), 0, ConnectionEvent::Disconnected);
        recorder.record(Time::from_millis(4_100), 0, ConnectionEvent::Connected);
        let series = recorder.to_series();
        assert_eq!(series.interval_secs, 1.0);
        assert_eq!(series.connected, [2, 2, 1, 1, 2]);
        assert_eq!(series.connects, [2, 0, 0, 0, 1]);
        assert_eq!(series.reconnects, [0, 0, 0, 0, 1]);
        assert_eq!(series.failed, [1, 0, 0, 0, 0]);
        assert_eq!(recorder.connected(), 2);
    }

    #[test]
    fn a_long_run_coarsens_instead_of_growing() {
        let mut recorder = ConnectionRecorder::new(1);
        for second in 0..2_000u64 {
            let event =
                if second % 2 == 0 { ConnectionEvent::Connected } else { ConnectionEvent::Disconnected };
            recorder.record(Time::from_secs(second), 0, event);
        }
        let series = recorder.to_series();
        assert!(series.connects.len() <= CONNECTION_BUCKETS_LIMIT);
        assert_eq!(series.interval_secs, 4.0);
        assert_eq!(series.connects.iter().sum::<u64>(), 1_000);
        assert_eq!(series.reconnects.iter().sum::<u64>(), 999);
    }
}
