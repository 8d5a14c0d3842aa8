//! Delivery latency in HDR histograms: from the PLANNED send time to delivery (open loop, free of
//! coordinated omission) and, for comparison, from the ACTUAL send time (the gap between the two
//! is publisher lag or back-pressure).
//!
//! This module owns recording, percentile summaries and the V2+DEFLATE base64 form that lets
//! reports merge histograms exactly. Values are microseconds with 3 significant digits. It must
//! never average percentiles: merge histograms instead.

use base64::Engine as _;
use edgeproof_system::Time;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Significant decimal digits every latency histogram keeps.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// A new, empty, auto-resizing latency histogram in microseconds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new(SIGNIFICANT_DIGITS).expect("3 significant digits is a valid precision")
}

/// The two latency views of one set of deliveries.
#[derive(Clone, Debug)]
pub struct LatencyRecorder {
    /// Planned send -> delivery, microseconds.
    pub planned: Histogram<u64>,
    /// Actual send -> delivery, microseconds.
    pub actual: Histogram<u64>,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        LatencyRecorder { planned: new_histogram(), actual: new_histogram() }
    }
}

impl LatencyRecorder {
    /// Records one delivery at `delivered` of a message planned at `planned_send` and sent at
    /// `actual_send`. A delivery before its send time (clock skew between machines in the real
    /// world) counts as zero rather than being lost from the histogram.
    pub fn record(&mut self, planned_send: Time, actual_send: Time, delivered: Time) {
        let planned_us = micros(delivered.saturating_duration_since(planned_send));
        let actual_us = micros(delivered.saturating_duration_since(actual_send));
        record(&mut self.planned, planned_us);
        record(&mut self.actual, actual_us);
        assert_eq!(self.planned.len(), self.actual.len());
    }

    /// Adds another recorder's samples (exact: histograms add bucket by bucket).
    pub fn merge(&mut self, other: &LatencyRecorder) {
        self.planned.add(&other.planned).expect("auto-resizing histograms always add");
        self.actual.add(&other.actual).expect("auto-resizing histograms always add");
    }

    /// Summary of the planned-send (open-loop) view.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary::of(&self.planned)
    }

    /// Summary of the actual-send view.
    pub fn raw_summary(&self) -> LatencySummary {
        LatencySummary::of(&self.actual)
    }
}

/// Records into an auto-resizing histogram; should resizing ever fail (a value near u64::MAX),
/// the sample is clamped to the largest trackable value rather than lost.
pub fn record(histogram: &mut Histogram<u64>, value: u64) {
    if histogram.record(value).is_err() {
        histogram.saturating_record(value);
    }
}

fn micros(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Percentiles of a latency histogram in milliseconds (all zero when it is empty).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
}

impl LatencySummary {
    /// The summary of a histogram of microseconds.
    pub fn of(histogram: &Histogram<u64>) -> LatencySummary {
        if histogram.is_empty() {
            return LatencySummary::default();
        }
        let ms = |micros: u64| micros as f64 / 1e3;
        let summary = LatencySummary {
            count: histogram.len(),
            p50: ms(histogram.value_at_quantile(0.50)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
        };
        assert!(summary.p50 <= summary.p99 && summary.p99 <= summary.p999 && summary.p999 <= summary.max);
        summary
    }
}

/// Why a serialized histogram could not be read back.
#[derive(Debug, Error)]
pub enum HistogramDecodeError {
    /// The text is not base64.
    #[error("histogram is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The bytes are not a V2 (optionally deflated) HdrHistogram.
    #[error("histogram bytes are not an HdrHistogram V2 encoding: {0:?}")]
    Hdr(hdrhistogram::serialization::DeserializeError),
}

/// The histogram as HdrHistogram V2+DEFLATE bytes, base64 (standard alphabet, padded): the
/// interchange form of every HdrHistogram implementation.
pub fn histogram_to_base64(histogram: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new().serialize(histogram, &mut bytes).expect("serializing into a Vec cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Reads back [`histogram_to_base64`] output.
pub fn histogram_from_base64(text: &str) -> Result<Histogram<u64>, HistogramDecodeError> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text)?;
    Deserializer::new().deserialize(&mut bytes.as_slice()).map_err(HistogramDecodeError::Hdr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_measured_from_the_planned_send_time() {
        let mut recorder = LatencyRecorder::default();
        for k in 0..100_u64 {
            // Planned at k seconds, sent 40 ms late, delivered 10 ms after sending.
            let planned = Time::from_secs(k);
            let actual = Time::from_millis(k * 1_000 + 40);
            recorder.record(planned, actual, Time::from_millis(k * 1_000 + 50));
        }
        let summary = recorder.summary();
        let raw = recorder.raw_summary();
        assert_eq!(summary.count, 100);
        assert!((summary.p50 - 50.0).abs() < 0.1, "{summary:?}");
        assert!((raw.p50 - 10.0).abs() < 0.1, "{raw:?}");
        assert_eq!(LatencySummary::of(&new_histogram()), LatencySummary::default());
    }

    #[test]
    fn histograms_roundtrip_through_base64_and_merge_exactly() {
        let mut first = LatencyRecorder::default();
        let mut second = LatencyRecorder::default();
        first.record(Time::ZERO, Time::ZERO, Time::from_millis(5));
        second.record(Time::ZERO, Time::ZERO, Time::from_millis(500));
        let text = histogram_to_base64(&second.planned);
        let decoded = histogram_from_base64(&text).expect("roundtrip");
        assert_eq!(decoded, second.planned);
        first.merge(&second);
        assert_eq!(first.planned.len(), 2);
        assert!((first.summary().max - 500.0).abs() < 1.0);
        assert!(histogram_from_base64("not base64!").is_err());
        assert!(histogram_from_base64("AAAA").is_err());
    }

    #[test]
    fn a_delivery_before_its_send_time_counts_as_zero() {
        let mut recorder = LatencyRecorder::default();
        recorder.record(Time::from_secs(2), Time::from_secs(2), Time::from_secs(1));
        assert_eq!(recorder.planned.len(), 1);
        assert_eq!(recorder.planned.max(), 0);
    }
}
