//! Derived views of outcomes that the charts draw: the percentile spectrum of a latency
//! histogram, fault markers paired into shaded spans, and series downsampled to what a screen
//! shows.
//!
//! It owns the [`Chart`] description that both the static SVG and the interactive uPlot chart are
//! drawn from, so the two always show the same data. It must never emit markup.

use edgeproof_scenarios::outcome::{FaultMarker, Outcome};
use hdrhistogram::Histogram;
use serde::Serialize;

/// Which page a report is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportKind {
    /// One outcome.
    Run,
    /// Several outcomes side by side (the first is the baseline).
    Compare,
    /// Many seeds of one scenario.
    Sweep,
}

/// Most points a chart's x axis holds: about one per pixel of a wide screen.
pub const CHART_POINTS_LIMIT: usize = 1_200;
/// Most series one chart draws (a comparison of more outcomes shows the first ones).
pub const CHART_SERIES_LIMIT: usize = 12;
/// Deepest percentile the spectrum goes to (99.9999 %), as 1 / (1 - q).
const SPECTRUM_DEPTH: f64 = 1e6;
/// Spectrum points per decade of 1 / (1 - q).
const SPECTRUM_POINTS_PER_DECADE: u32 = 12;
/// Smallest latency a log axis shows (1 us): zero latencies are drawn there.
pub const LOG_FLOOR_MS: f64 = 0.001;

/// How an axis maps values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Axis {
    /// Linear values.
    Linear,
    /// Log 10 values.
    Log,
    /// Percentiles, given as 1 / (1 - q) on a log axis and labelled `99.9%`.
    Percentile,
}

/// One line of a chart.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Line {
    /// Legend label.
    pub label: String,
    /// Colour (CSS).
    pub color: String,
    /// One value per x; `None` where the line has no point.
    pub values: Vec<Option<f64>>,
    /// Dashed (the second view of the same data, like actual vs planned).
    pub dashed: bool,
}

/// A shaded time span (a partition until its heal, a crash until its restart), or a vertical line
/// when `from == to`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Span {
    /// Start, seconds.
    pub from: f64,
    /// End, seconds.
    pub to: f64,
    /// What it was (`partition ops`).
    pub label: String,
}

/// A chart, drawn both as static SVG and by uPlot from the same numbers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Chart {
    /// Element id.
    pub id: String,
    /// Title above it.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// X axis mapping.
    pub x_axis: Axis,
    /// Y axis mapping.
    pub y_axis: Axis,
    /// Points only, no connecting lines (per-seed distributions).
    pub points: bool,
    /// Shared x values, ascending.
    pub x: Vec<f64>,
    /// The lines.
    pub lines: Vec<Line>,
    /// Fault spans to shade.
    pub spans: Vec<Span>,
}

impl Chart {
    /// Whether any line has a point to draw.
    pub fn has_data(&self) -> bool {
        self.lines.iter().any(|line| line.values.iter().any(|value| value.is_some_and(f64::is_finite)))
    }

    /// Asserts the shape every renderer relies on.
    pub fn assert_valid(&self) {
        assert!(self.x.len() <= CHART_POINTS_LIMIT, "{}: {} points", self.id, self.x.len());
        assert!(self.lines.len() <= CHART_SERIES_LIMIT, "{}: {} lines", self.id, self.lines.len());
        assert!(self.x.windows(2).all(|pair| pair[0] <= pair[1]), "{}: x not ascending", self.id);
        for line in &self.lines {
            assert_eq!(line.values.len(), self.x.len(), "{}: {} misaligned", self.id, line.label);
        }
        for span in &self.spans {
            assert!(span.from <= span.to, "{}: span {} ends before it starts", self.id, span.label);
        }
    }
}

/// The colours of successive outcomes or series (colour-blind safe, Okabe-Ito).
pub const PALETTE: [&str; 8] =
    ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442"];

/// The palette colour of series `index`.
pub fn color(index: usize) -> String {
    PALETTE[index % PALETTE.len()].to_string()
}

/// The x values (1 / (1 - q)) of the spectrum: 1 (the median's left, q = 0) to 10^6.
pub fn spectrum_x() -> Vec<f64> {
    let decades = SPECTRUM_DEPTH.log10() as u32;
    let points = decades * SPECTRUM_POINTS_PER_DECADE;
    (0..=points).map(|step| 10f64.powf(f64::from(step) / f64::from(SPECTRUM_POINTS_PER_DECADE))).collect()
}

/// A histogram's latency (ms) at each spectrum x; `None` beyond the depth its sample count
/// supports (a percentile deeper than 1 / count is the maximum repeated, not information), except
/// that the last supported point is the maximum itself.
pub fn spectrum_values(histogram: &Histogram<u64>, x: &[f64]) -> Vec<Option<f64>> {
    if histogram.is_empty() {
        return vec![None; x.len()];
    }
    let count = histogram.len() as f64;
    let mut values: Vec<Option<f64>> = x
        .iter()
        .map(|&inverse| {
            let quantile = 1.0 - 1.0 / inverse;
            (inverse <= count).then(|| (histogram.value_at_quantile(quantile) as f64 / 1e3).max(LOG_FLOOR_MS))
        })
        .collect();
    // Where the samples run out, draw the maximum once so the tail ends where the data ends.
    if let Some(first_missing) = values.iter().position(Option::is_none) {
        values[first_missing] = Some((histogram.max() as f64 / 1e3).max(LOG_FLOOR_MS));
    }
    assert_eq!(values.len(), x.len());
    values
}

/// Latency at quantile `q` in ms (0 for an empty histogram).
pub fn quantile_ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    if histogram.is_empty() { 0.0 } else { histogram.value_at_quantile(quantile) as f64 / 1e3 }
}

/// Pairs fault markers into spans: a crash lasts until the restart of the same pod, a partition
/// (or one-way partition, or link fault) until the next heal of the same hosts or of all; what is
/// never closed lasts until `end_secs`; a heal or restart that closes nothing is a line.
pub fn fault_spans(faults: &[FaultMarker], end_secs: f64) -> Vec<Span> {
    struct Open {
        index: usize,
        closer: &'static str,
    }
    let mut spans: Vec<Span> = Vec::new();
    let mut open: Vec<Open> = Vec::new();
    let mut ordered: Vec<&FaultMarker> = faults.iter().collect();
    ordered.sort_by(|left, right| left.at_secs.total_cmp(&right.at_secs));
    for fault in ordered {
        let label = format!("{} {}", fault.action, fault.target);
        match fault.action.as_str() {
            "crash" | "partition" | "partition_oneway" | "link" => {
                let closer = if fault.action == "crash" { "restart" } else { "heal" };
                open.push(Open { index: spans.len(), closer });
                spans.push(Span { from: fault.at_secs, to: f64::INFINITY, label });
            }
            closing => {
                let before = open.len();
                open.retain(|candidate| {
                    let span = &mut spans[candidate.index];
                    let target = span.label.split_once(' ').map_or("", |(_, target)| target);
                    let closes =
                        candidate.closer == closing && (fault.target == "all" || fault.target == target);
                    if closes {
                        span.to = fault.at_secs;
                        span.label = format!("{} .. {label}", span.label);
                    }
                    !closes
                });
                if open.len() == before {
                    spans.push(Span { from: fault.at_secs, to: fault.at_secs, label });
                }
            }
        }
    }
    for span in &mut spans {
        if span.to.is_infinite() {
            span.to = end_secs.max(span.from);
        }
        assert!(span.from <= span.to);
    }
    spans
}

/// How a downsampled bucket combines its points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    /// The largest (latency: a spike stays visible).
    Max,
    /// The mean (rates: the area stays right).
    Mean,
}

/// Shrinks `x` and every line to at most `limit` points by combining runs of neighbours.
pub fn downsample(
    x: &[f64],
    lines: &[(Vec<Option<f64>>, Combine)],
    limit: usize,
) -> (Vec<f64>, Vec<Vec<Option<f64>>>) {
    assert!(limit > 0);
    let factor = x.len().div_ceil(limit).max(1);
    let new_x: Vec<f64> = x.chunks(factor).map(|chunk| chunk[0]).collect();
    let new_lines = lines
        .iter()
        .map(|(values, combine)| {
            assert_eq!(values.len(), x.len());
            values
                .chunks(factor)
                .map(|chunk| {
                    let present: Vec<f64> = chunk.iter().flatten().copied().collect();
                    if present.is_empty() {
                        return None;
                    }
                    Some(match combine {
                        Combine::Max => present.iter().copied().fold(f64::MIN, f64::max),
                        Combine::Mean => present.iter().sum::<f64>() / present.len() as f64,
                    })
                })
                .collect()
        })
        .collect();
    assert!(new_x.len() <= limit);
    (new_x, new_lines)
}

/// The end of an outcome's time axis, seconds.
pub fn end_secs(outcome: &Outcome) -> f64 {
    let series_end = outcome.series.interval_secs * outcome.series.published.len() as f64;
    series_end.max(outcome.sim_seconds)
}

fn series_chart(
    id: &str,
    title: &str,
    y_label: &str,
    interval_secs: f64,
    lines: Vec<(String, Vec<Option<f64>>, Combine)>,
    spans: Vec<Span>,
) -> Chart {
    let length = lines.iter().map(|(_, values, _)| values.len()).max().unwrap_or(0);
    let x: Vec<f64> = (0..length).map(|index| index as f64 * interval_secs).collect();
    let padded: Vec<(Vec<Option<f64>>, Combine)> = lines
        .iter()
        .map(|(_, values, combine)| {
            let mut values = values.clone();
            values.resize(length, None);
            (values, *combine)
        })
        .collect();
    let (x, values) = downsample(&x, &padded, CHART_POINTS_LIMIT);
    let lines = lines
        .iter()
        .zip(values)
        .enumerate()
        .map(|(index, ((label, _, _), values))| Line {
            label: label.clone(),
            color: color(index),
            values,
            dashed: false,
        })
        .collect();
    let chart = Chart {
        id: id.to_string(),
        title: title.to_string(),
        x_label: "time (s)".to_string(),
        y_label: y_label.to_string(),
        x_axis: Axis::Linear,
        y_axis: Axis::Linear,
        points: false,
        x,
        lines,
        spans,
    };
    chart.assert_valid();
    chart
}

/// Latency p50 / p99 / max per interval, with the fault spans.
pub fn latency_over_time(outcome: &Outcome) -> Chart {
    let series = &outcome.series;
    let delivered = &series.delivered;
    // An interval without deliveries has no latency, not a latency of zero.
    let pick = |values: &[f64]| -> Vec<Option<f64>> {
        values
            .iter()
            .enumerate()
            .map(|(index, &value)| (delivered.get(index).copied().unwrap_or(1) > 0).then_some(value))
            .collect()
    };
    series_chart(
        "latency-over-time",
        "Latency over time (planned send -> delivery)",
        "latency (ms)",
        series.interval_secs,
        vec![
            ("p50".to_string(), pick(&series.latency_p50_ms), Combine::Max),
            ("p99".to_string(), pick(&series.latency_p99_ms), Combine::Max),
            ("max".to_string(), pick(&series.latency_max_ms), Combine::Max),
        ],
        fault_spans(&outcome.faults, end_secs(outcome)),
    )
}

/// Published / acked / delivered messages per second, with the fault spans.
pub fn throughput_over_time(outcome: &Outcome) -> Chart {
    let series = &outcome.series;
    let interval = series.interval_secs.max(f64::MIN_POSITIVE);
    let rate = |values: &[u64]| -> Vec<Option<f64>> {
        values.iter().map(|&count| Some(count as f64 / interval)).collect()
    };
    series_chart(
        "throughput-over-time",
        "Throughput over time",
        "messages / s",
        series.interval_secs,
        vec![
            ("published".to_string(), rate(&series.published), Combine::Mean),
            ("acked".to_string(), rate(&series.acked), Combine::Mean),
            ("delivered".to_string(), rate(&series.delivered), Combine::Mean),
        ],
        fault_spans(&outcome.faults, end_secs(outcome)),
    )
}

/// Connected clients, connects and reconnects per interval, when the outcome has them.
pub fn connections_over_time(outcome: &Outcome) -> Option<Chart> {
    let connections = outcome.connections.as_ref()?;
    // On the throughput chart's intervals when those are coarser (both double from one second),
    // so the time charts line up and a long run does not pad one-second points to its end.
    let factor =
        if connections.interval_secs > 0.0 && outcome.series.interval_secs > connections.interval_secs {
            (outcome.series.interval_secs / connections.interval_secs).round().max(1.0) as usize
        } else {
            1
        };
    let interval_secs = connections.interval_secs * factor as f64;
    let last_of =
        |values: &[u64]| -> Vec<u64> { values.chunks(factor).map(|chunk| chunk[chunk.len() - 1]).collect() };
    let sum_of =
        |values: &[u64]| -> Vec<u64> { values.chunks(factor).map(|chunk| chunk.iter().sum()).collect() };
    // The recorder stops at the last connection event; the clients stay connected after it, so
    // the count carries on to the end of the run (a fleet that connected in its first second
    // would otherwise be a single point).
    let run_intervals = if interval_secs > 0.0 {
        ((end_secs(outcome) / interval_secs).ceil() as usize).min(CHART_POINTS_LIMIT * 64)
    } else {
        0
    };
    let mut connected = last_of(&connections.connected);
    let last = connected.last().copied().unwrap_or(0);
    if connected.len() < run_intervals {
        connected.resize(run_intervals, last);
    }
    // Counts of events are zero after the last event.
    let counts = |values: &[u64]| -> Vec<Option<f64>> {
        let mut counts: Vec<Option<f64>> = values.iter().map(|&count| Some(count as f64)).collect();
        counts.resize(counts.len().max(run_intervals), Some(0.0));
        counts
    };
    let mut lines = vec![
        ("connected".to_string(), counts(&connected), Combine::Mean),
        ("connects".to_string(), counts(&sum_of(&connections.connects)), Combine::Max),
    ];
    if !connections.reconnects.is_empty() {
        lines.push(("reconnects".to_string(), counts(&sum_of(&connections.reconnects)), Combine::Max));
    }
    if !connections.failed.is_empty() {
        lines.push(("failed".to_string(), counts(&sum_of(&connections.failed)), Combine::Max));
    }
    Some(series_chart(
        "connections-over-time",
        "Connections over time",
        "clients",
        interval_secs,
        lines,
        fault_spans(&outcome.faults, end_secs(outcome)),
    ))
}

/// The percentile spectrum of several (label, histogram, dashed) views.
pub fn spectrum_chart(id: &str, title: &str, views: &[(String, &Histogram<u64>, bool)]) -> Chart {
    let x = spectrum_x();
    let mut color_index = 0;
    let lines = views
        .iter()
        .take(CHART_SERIES_LIMIT)
        .map(|(label, histogram, dashed)| {
            let line = Line {
                label: label.clone(),
                color: color(color_index),
                values: spectrum_values(histogram, &x),
                dashed: *dashed,
            };
            // A dashed view shares the colour of the solid one before it (actual vs planned).
            if !dashed || views.len() <= 2 {
                color_index += 1;
            }
            line
        })
        .collect();
    let chart = Chart {
        id: id.to_string(),
        title: title.to_string(),
        x_label: "percentile".to_string(),
        y_label: "latency (ms)".to_string(),
        x_axis: Axis::Percentile,
        y_axis: Axis::Log,
        points: false,
        x,
        lines,
        spans: Vec::new(),
    };
    chart.assert_valid();
    chart
}

/// One value per seed as points (a sweep's distribution), x being the seed.
pub fn per_seed_chart(id: &str, title: &str, y_label: &str, seeds_and_values: &[(u64, f64)]) -> Chart {
    let mut sorted = seeds_and_values.to_vec();
    sorted.sort_by_key(|(seed, _)| *seed);
    let x: Vec<f64> = sorted.iter().map(|(seed, _)| *seed as f64).collect();
    let values: Vec<Option<f64>> = sorted.iter().map(|(_, value)| Some(*value)).collect();
    let (x, mut lines) = downsample(&x, &[(values, Combine::Max)], CHART_POINTS_LIMIT);
    let chart = Chart {
        id: id.to_string(),
        title: title.to_string(),
        x_label: "seed".to_string(),
        y_label: y_label.to_string(),
        x_axis: Axis::Linear,
        y_axis: Axis::Linear,
        points: true,
        x,
        lines: vec![Line {
            label: y_label.to_string(),
            color: color(0),
            values: lines.remove(0),
            dashed: false,
        }],
        spans: Vec::new(),
    };
    chart.assert_valid();
    chart
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(at_secs: f64, action: &str, target: &str) -> FaultMarker {
        FaultMarker { at_secs, action: action.to_string(), target: target.to_string() }
    }

    #[test]
    fn a_partition_is_shaded_until_its_heal_and_a_crash_until_its_restart() {
        let faults = [
            marker(10.0, "partition", "ops"),
            marker(20.0, "crash", "broker"),
            marker(25.0, "restart", "broker"),
            marker(30.0, "heal", "ops"),
            marker(40.0, "partition", "edge"),
        ];
        let spans = fault_spans(&faults, 60.0);
        let ranges: Vec<(f64, f64)> = spans.iter().map(|span| (span.from, span.to)).collect();
        assert_eq!(ranges, [(10.0, 30.0), (20.0, 25.0), (40.0, 60.0)]);
        assert_eq!(spans[0].label, "partition ops .. heal ops");
    }

    #[test]
    fn a_heal_of_all_closes_every_partition_and_a_stray_heal_is_a_line() {
        let faults = [
            marker(5.0, "heal", "ops"),
            marker(10.0, "partition", "a"),
            marker(11.0, "link", "b <-> c"),
            marker(20.0, "heal", "all"),
        ];
        let spans = fault_spans(&faults, 60.0);
        let ranges: Vec<(f64, f64)> = spans.iter().map(|span| (span.from, span.to)).collect();
        assert_eq!(ranges, [(5.0, 5.0), (10.0, 20.0), (11.0, 20.0)]);
    }

    #[test]
    fn the_spectrum_stops_where_the_samples_run_out_and_ends_at_the_maximum() {
        let mut histogram = edgeproof_scenarios::latency::new_histogram();
        for micros in 1..=1_000u64 {
            histogram.record(micros * 10).expect("in range");
        }
        let x = spectrum_x();
        let values = spectrum_values(&histogram, &x);
        assert_eq!(x[0], 1.0);
        assert!((x[x.len() - 1] - 1e6).abs() < 1e-3);
        // 1,000 samples support 1 / (1 - q) up to 1,000 (the 99.9th percentile).
        let supported = x.iter().filter(|&&inverse| inverse <= 1_000.0).count();
        assert_eq!(values.iter().filter(|value| value.is_some()).count(), supported + 1);
        assert_eq!(values[supported], Some(histogram.max() as f64 / 1e3));
        let present: Vec<f64> = values.iter().flatten().copied().collect();
        assert!(present.windows(2).all(|pair| pair[0] <= pair[1]), "a spectrum never falls");
        assert!((present[0] - 0.01).abs() < 0.001);
    }

    #[test]
    fn downsampling_keeps_spikes_and_bounds_points() {
        let x: Vec<f64> = (0..10_000).map(f64::from).collect();
        let mut spiky = vec![Some(1.0); 10_000];
        spiky[4_321] = Some(500.0);
        let (new_x, lines) = downsample(&x, &[(spiky.clone(), Combine::Max), (spiky, Combine::Mean)], 1_000);
        assert_eq!(new_x.len(), 1_000);
        assert_eq!(lines[0].iter().flatten().copied().fold(0.0, f64::max), 500.0);
        assert!(lines[1].iter().flatten().copied().fold(0.0, f64::max) < 500.0);
        // Untouched below the limit.
        let (same_x, _) = downsample(&x[..10], &[], 1_000);
        assert_eq!(same_x, x[..10]);
    }
}
