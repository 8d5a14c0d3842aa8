//! Time series of a run for the report's "over time" plots: per interval, how many publishes were
//! invoked and acknowledged, how many messages were delivered, and the delivery latency
//! percentiles (from the planned send time) of that interval.
//!
//! This module owns the bucketing. It must stay bounded whatever the run length: it starts at
//! one-second intervals and, when a run outgrows [`SERIES_BUCKETS_LIMIT`] buckets, doubles the
//! interval and merges neighbours (counts add, histograms add exactly), so memory never exceeds
//! the limit and no sample is ever dropped.

use edgeproof_system::Time;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::latency::{LatencySummary, new_histogram};

/// Most buckets a series keeps; reaching it doubles the interval.
pub const SERIES_BUCKETS_LIMIT: usize = 512;
/// The initial interval.
pub const SERIES_FIRST_INTERVAL_NS: u64 = 1_000_000_000;

#[derive(Clone, Debug)]
struct Bucket {
    published: u64,
    acked: u64,
    delivered: u64,
    /// Planned send -> delivery, microseconds; allocated on the first delivery of the interval.
    latency: Option<Histogram<u64>>,
}

impl Bucket {
    const EMPTY: Bucket = Bucket { published: 0, acked: 0, delivered: 0, latency: None };

    fn absorb(&mut self, other: Bucket) {
        self.published += other.published;
        self.acked += other.acked;
        self.delivered += other.delivered;
        match (&mut self.latency, other.latency) {
            (Some(mine), Some(theirs)) => mine.add(&theirs).expect("auto-resizing histograms always add"),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }
}

/// Per-interval counters and latency, bounded in memory.
#[derive(Clone, Debug)]
pub struct Series {
    interval_ns: u64,
    buckets: Vec<Bucket>,
}

impl Default for Series {
    fn default() -> Self {
        Series { interval_ns: SERIES_FIRST_INTERVAL_NS, buckets: Vec::new() }
    }
}

/// What kind of event a series counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SeriesEvent {
    Published,
    Acked,
    /// A first delivery, with its latency in microseconds.
    Delivered {
        latency_us: u64,
    },
}

impl Series {
    fn bucket_mut(&mut self, at: Time) -> &mut Bucket {
        let mut index = at.as_nanos() / self.interval_ns;
        while index >= SERIES_BUCKETS_LIMIT as u64 {
            self.coarsen();
            index = at.as_nanos() / self.interval_ns;
        }
        let index = index as usize;
        if index >= self.buckets.len() {
            self.buckets.resize(index + 1, Bucket::EMPTY);
        }
        assert!(self.buckets.len() <= SERIES_BUCKETS_LIMIT);
        &mut self.buckets[index]
    }

    /// Doubles the interval: bucket `i` of the new series is buckets `2i` and `2i + 1` of the old.
    fn coarsen(&mut self) {
        let old = std::mem::take(&mut self.buckets);
        let before: u64 = old.iter().map(|bucket| bucket.published + bucket.delivered).sum();
        self.interval_ns = self.interval_ns.checked_mul(2).expect("interval overflow");
        for (index, bucket) in old.into_iter().enumerate() {
            if index % 2 == 0 {
                self.buckets.push(bucket);
            } else {
                self.buckets.last_mut().expect("an even bucket precedes").absorb(bucket);
            }
        }
        let after: u64 = self.buckets.iter().map(|bucket| bucket.published + bucket.delivered).sum();
        assert_eq!(before, after, "coarsening loses nothing");
    }

    pub(crate) fn record(&mut self, at: Time, event: SeriesEvent) {
        let bucket = self.bucket_mut(at);
        match event {
            SeriesEvent::Published => bucket.published += 1,
            SeriesEvent::Acked => bucket.acked += 1,
            SeriesEvent::Delivered { latency_us } => {
                bucket.delivered += 1;
                crate::latency::record(bucket.latency.get_or_insert_with(new_histogram), latency_us);
            }
        }
    }

    /// The current interval length.
    pub fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    /// The serializable form for `outcome.json`.
    pub fn to_outcome(&self) -> SeriesOutcome {
        let summaries: Vec<LatencySummary> = self
            .buckets
            .iter()
            .map(|bucket| bucket.latency.as_ref().map(LatencySummary::of).unwrap_or_default())
            .collect();
        SeriesOutcome {
            interval_secs: self.interval_ns as f64 / 1e9,
            published: self.buckets.iter().map(|bucket| bucket.published).collect(),
            acked: self.buckets.iter().map(|bucket| bucket.acked).collect(),
            delivered: self.buckets.iter().map(|bucket| bucket.delivered).collect(),
            latency_p50_ms: summaries.iter().map(|summary| summary.p50).collect(),
            latency_p99_ms: summaries.iter().map(|summary| summary.p99).collect(),
            latency_max_ms: summaries.iter().map(|summary| summary.max).collect(),
        }
    }
}

/// Per-interval series in `outcome.json`: element `i` covers `[i, i + 1) * interval_secs`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesOutcome {
    /// Interval length.
    pub interval_secs: f64,
    /// Publishes invoked per interval.
    pub published: Vec<u64>,
    /// Publishes acknowledged per interval.
    pub acked: Vec<u64>,
    /// First deliveries per interval (over all observers).
    pub delivered: Vec<u64>,
    /// Median latency of the interval's deliveries (0 when none).
    pub latency_p50_ms: Vec<f64>,
    /// 99th percentile latency of the interval's deliveries (0 when none).
    pub latency_p99_ms: Vec<f64>,
    /// Largest latency of the interval's deliveries (0 when none).
    pub latency_max_ms: Vec<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_land_in_their_interval() {
        let mut series = Series::default();
        series.record(Time::from_millis(500), SeriesEvent::Published);
        series.record(Time::from_millis(2_100), SeriesEvent::Published);
        series.record(Time::from_millis(2_200), SeriesEvent::Acked);
        series.record(Time::from_millis(2_300), SeriesEvent::Delivered { latency_us: 5_000 });
        let outcome = series.to_outcome();
        assert_eq!(outcome.interval_secs, 1.0);
        assert_eq!(outcome.published, [1, 0, 1]);
        assert_eq!(outcome.acked, [0, 0, 1]);
        assert_eq!(outcome.delivered, [0, 0, 1]);
        assert_eq!(outcome.latency_p50_ms[0], 0.0);
        assert!((outcome.latency_p99_ms[2] - 5.0).abs() < 0.01);
    }

    #[test]
    fn a_long_run_coarsens_instead_of_growing() {
        let mut series = Series::default();
        let hours = 3;
        for second in 0..hours * 3_600 {
            series.record(Time::from_secs(second), SeriesEvent::Published);
            series.record(Time::from_secs(second), SeriesEvent::Delivered { latency_us: second });
        }
        let outcome = series.to_outcome();
        assert!(outcome.published.len() <= SERIES_BUCKETS_LIMIT);
        // 10,800 s over at most 512 buckets: the interval doubled to 32 s.
        assert_eq!(outcome.interval_secs, 32.0);
        assert_eq!(outcome.published.iter().sum::<u64>(), hours * 3_600);
        assert_eq!(outcome.published[0], 32);
        // Latency grows with time in this run, and each bucket's max says so.
        assert!(outcome.latency_max_ms.windows(2).all(|pair| pair[0] <= pair[1]));
    }
}
