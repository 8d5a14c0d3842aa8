//! edgeproof-reports: turns `outcome.json` files into one self-contained HTML report (a run, a
//! comparison of several runs, or a sweep of many seeds of one scenario).
//!
//! It owns reading outcomes (with errors that name the file and the field), the derived views
//! (percentile spectrum, fault spans, downsampled series), the static SVG charts and the page.
//! It must never make a report that needs the network: every byte the page uses (uPlot, styles,
//! data) is inline, and a Content-Security-Policy forbids fetching anything. It must never depend
//! on `sim` or `loadgen`: it reads the outcome model of `edgeproof-scenarios` only.

pub mod html;
pub mod load;
pub mod svg;
pub mod view;

use std::io::Write as _;
use std::path::Path;

pub use load::{LoadError, LoadedOutcome, load_inputs, load_outcome};
pub use view::ReportKind;

/// Largest report this crate writes. Series are downsampled and lists capped so that a one-hour
/// run stays far below it; a report above it is a bug in that bounding, not a big input.
pub const REPORT_BYTES_LIMIT: usize = 4 * 1024 * 1024;

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// An input could not be read or parsed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The inputs do not fit the requested kind of report.
    #[error("{0}")]
    Inputs(String),
    /// The report file could not be written (nothing is left behind at the target path).
    #[error("{path}: cannot write the report: {source}")]
    Write {
        /// The report path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Which page to build from the inputs: one run, a comparison (optionally against a baseline
/// that comes first) or a sweep. `Auto` picks a run for one input, a sweep for several outcomes
/// of one scenario and engine with distinct seeds, and a comparison otherwise.
pub fn choose_kind(
    outcomes: &[LoadedOutcome],
    requested: Option<ReportKind>,
) -> Result<ReportKind, ReportError> {
    if outcomes.is_empty() {
        return Err(ReportError::Inputs("no outcomes to report on".to_string()));
    }
    let kind = match requested {
        Some(kind) => kind,
        None if outcomes.len() == 1 => ReportKind::Run,
        None => {
            let first = &outcomes[0].outcome;
            let same_scenario = outcomes.iter().all(|loaded| {
                loaded.outcome.scenario_hash == first.scenario_hash && loaded.outcome.engine == first.engine
            });
            let mut seeds: Vec<u64> = outcomes.iter().map(|loaded| loaded.outcome.seed).collect();
            seeds.sort_unstable();
            seeds.dedup();
            if same_scenario && seeds.len() == outcomes.len() {
                ReportKind::Sweep
            } else {
                ReportKind::Compare
            }
        }
    };
    if kind == ReportKind::Run && outcomes.len() != 1 {
        return Err(ReportError::Inputs(format!("a run report takes one outcome, got {}", outcomes.len())));
    }
    if kind == ReportKind::Compare && outcomes.len() < 2 {
        return Err(ReportError::Inputs("a comparison needs at least two outcomes".to_string()));
    }
    Ok(kind)
}

/// Renders the page for `outcomes` (the baseline, if any, first).
pub fn render(outcomes: &[LoadedOutcome], kind: ReportKind) -> Result<String, ReportError> {
    let page = match kind {
        ReportKind::Run => html::run_page(&outcomes[0]),
        ReportKind::Compare => html::compare_page(outcomes),
        ReportKind::Sweep => html::sweep_page(outcomes),
    }
    .map_err(ReportError::Load)?;
    assert!(page.starts_with("<!doctype html>"));
    assert!(page.len() <= REPORT_BYTES_LIMIT, "report of {} bytes escaped the size bounds", page.len());
    Ok(page)
}

/// Writes `contents` to `path` atomically: into a temporary file beside it, then renamed over
/// it, so a failure never leaves a half-written report behind.
pub fn write_atomically(path: &Path, contents: &str) -> Result<(), ReportError> {
    let error = |source| ReportError::Write { path: path.display().to_string(), source };
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut temporary =
        tempfile::Builder::new().prefix(".report-").suffix(".tmp").tempfile_in(directory).map_err(error)?;
    temporary.write_all(contents.as_bytes()).map_err(error)?;
    temporary.as_file().sync_all().map_err(error)?;
    temporary.persist(path).map_err(|persist| error(persist.error))?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use edgeproof_scenarios::ledger::Ledger;
    use edgeproof_scenarios::outcome::{ConnectionSeries, Outcome, RunInfo};
    use edgeproof_scenarios::stamp::Stamp;
    use edgeproof_system::Time;
    use edgeproof_system::mqtt::QoS;
    use std::path::PathBuf;

    /// A real outcome of the oracle: the broker-crash scenario's expectations over a ledger where
    /// `lost` of 20 acknowledged messages never arrived.
    pub(crate) fn outcome(seed: u64, lost: u64) -> Outcome {
        let scenario = edgeproof_scenarios::catalog::get("broker-crash").expect("catalogue entry");
        let mut ledger = Ledger::new();
        let observer = ledger.register_observer("historian", QoS::AtLeastOnce);
        ledger.subscription_active(observer, &["#"], Time::ZERO);
        ledger.register_publisher(0, "dev-0");
        for seq in 0..20 {
            let topic = "plant/cell1/dev-0/telemetry";
            let planned = Time::from_secs(seq);
            ledger.publish_invoked(0, seq, topic, QoS::AtLeastOnce, planned, planned);
            ledger.publish_acked(0, seq, planned);
            if seq >= 20 - lost {
                continue;
            }
            let stamp = Stamp { flags: 0, publisher_id: 0, seq, planned_send: planned, actual_send: planned };
            let latency = std::time::Duration::from_millis(2 + seq);
            ledger.delivered(observer, &stamp, topic, planned + latency, false);
        }
        let run = RunInfo {
            seed,
            engine: "fast".to_string(),
            trace_hash: "0123456789abcdef".to_string(),
            sim_seconds: 20.0,
            wall_seconds: 0.5,
            events: 100,
            commit: Some("abc1234".to_string()),
        };
        Outcome::from_ledger(&scenario, &ledger, run)
    }

    pub(crate) fn loaded(outcome: &Outcome, label: &str) -> LoadedOutcome {
        load::parse_outcome(&PathBuf::from(format!("{label}/outcome.json")), &outcome.to_json())
            .expect("parses")
    }

    #[test]
    fn the_kind_of_report_follows_the_inputs() {
        let one = [loaded(&outcome(1, 0), "a")];
        assert_eq!(choose_kind(&one, None).expect("kind"), ReportKind::Run);
        let seeds = [loaded(&outcome(1, 0), "a"), loaded(&outcome(2, 3), "b"), loaded(&outcome(3, 0), "c")];
        assert_eq!(choose_kind(&seeds, None).expect("kind"), ReportKind::Sweep);
        // The same seed twice (an A/B of two builds) is a comparison, not a sweep.
        let same_seed = [loaded(&outcome(1, 0), "before"), loaded(&outcome(1, 2), "after")];
        assert_eq!(choose_kind(&same_seed, None).expect("kind"), ReportKind::Compare);
        assert!(choose_kind(&one, Some(ReportKind::Compare)).is_err());
        assert!(choose_kind(&seeds, Some(ReportKind::Run)).is_err());
        assert!(choose_kind(&[], None).is_err());
    }

    #[test]
    fn checks_render_every_field_the_oracle_writes_witnesses_included() {
        let failing = outcome(1, 2);
        let mut value: serde_json::Value = serde_json::from_str(&failing.to_json()).expect("JSON");
        // Fields this build's model does not know (a newer oracle's failure kind and witnesses)
        // still show, and a long witness list is capped.
        let witnesses: Vec<String> = (0..30).map(|seq| format!("0#{seq}")).collect();
        value["checks"][0]["kind"] = serde_json::json!("lost-acknowledged");
        value["checks"][0]["witnesses"] = serde_json::json!(witnesses);
        let parsed = load::parse_outcome(Path::new("x/outcome.json"), &value.to_string()).expect("parses");
        let page = render(&[parsed], ReportKind::Run).expect("renders");
        assert!(page.contains("<span class=\"key\">kind</span> lost-acknowledged"));
        assert!(page.contains("<li>0#19</li>") && !page.contains("<li>0#20</li>"));
        assert!(page.contains("and 10 more (in outcome.json)"));
        assert!(page.contains("<span class=\"word\">FAIL</span>"));
        // The failed check comes first, before the passing ones.
        let total_queue = page.find(">total-queue<").expect("total-queue row");
        let order = page.find(">order<").expect("order row");
        assert!(total_queue < order);
        assert!(page.contains("cargo run --release -- run broker-crash --seed 1 --engine fast"));
    }

    #[test]
    fn a_passing_run_shows_pass_and_no_replay_command() {
        let page = render(&[loaded(&outcome(7, 0), "ok")], ReportKind::Run).expect("renders");
        assert!(page.contains("<span class=\"word\">PASS</span>"));
        assert!(!page.contains("Replay this failure"));
        assert!(page.contains("This engine did not record connections over time."));
    }

    #[test]
    fn connections_are_charted_when_the_outcome_has_them() {
        let mut with_connections = outcome(1, 0);
        with_connections.connections = Some(ConnectionSeries {
            interval_secs: 1.0,
            connected: vec![0, 50, 100, 100, 40, 100],
            connects: vec![0, 50, 50, 0, 0, 60],
            reconnects: vec![0, 0, 0, 0, 0, 60],
            failed: Vec::new(),
        });
        let chart = view::connections_over_time(&with_connections).expect("a chart");
        // Padded to the run's end (20 s) with the last count; counts of events are zero there.
        assert_eq!(chart.x.len(), 20);
        assert_eq!(chart.lines[0].values[19], Some(100.0));
        assert_eq!(chart.lines[1].values[19], Some(0.0));
        // On the series' intervals when those are coarser: 2 s buckets, sums and last counts.
        with_connections.series.interval_secs = 2.0;
        let coarse = view::connections_over_time(&with_connections).expect("a chart");
        assert_eq!(coarse.x[..3], [0.0, 2.0, 4.0]);
        assert_eq!(coarse.lines[0].values[..3], [Some(50.0), Some(100.0), Some(100.0)]);
        assert_eq!(coarse.lines[1].values[..3], [Some(50.0), Some(50.0), Some(60.0)]);
        with_connections.series.interval_secs = 1.0;
        let page = render(&[loaded(&with_connections, "c")], ReportKind::Run).expect("renders");
        assert!(page.contains("data-chart=\"connections-over-time\""));
        assert!(page.contains("\"label\":\"reconnects\""));
        assert!(!page.contains("\"label\":\"failed\""), "an empty series is left out");
    }

    /// A one-hour run at one-second resolution (and a series far longer than any engine writes)
    /// stays under a megabyte: series are downsampled to the chart's point limit.
    #[test]
    fn a_long_run_makes_a_report_under_a_megabyte() {
        let mut long = outcome(1, 0);
        let intervals = 100_000;
        long.series.interval_secs = 1.0;
        long.series.published = vec![1_000; intervals];
        long.series.acked = vec![1_000; intervals];
        long.series.delivered = vec![1_000; intervals];
        long.series.latency_p50_ms = (0..intervals).map(|index| 3.0 + (index % 7) as f64).collect();
        long.series.latency_p99_ms = (0..intervals).map(|index| 9.0 + (index % 11) as f64).collect();
        long.series.latency_max_ms =
            (0..intervals).map(|index| if index == 54_321 { 900.0 } else { 20.0 }).collect();
        long.sim_seconds = intervals as f64;
        let page = render(&[loaded(&long, "long")], ReportKind::Run).expect("renders");
        assert!(page.len() < 1_000_000, "{} bytes", page.len());
        // The one spike survives downsampling.
        assert!(page.contains("900"), "the spike is kept");
    }

    #[test]
    fn a_bad_histogram_names_its_field() {
        let mut broken = outcome(1, 0);
        broken.histograms.latency_raw_us = "not base64!".to_string();
        let error = render(&[loaded(&broken, "h")], ReportKind::Run).expect_err("undecodable histogram");
        let message = error.to_string();
        assert!(
            message.contains("h/outcome.json") && message.contains("histograms.latency_raw_us"),
            "{message}"
        );
    }

    #[test]
    fn reports_are_written_whole_or_not_at_all() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("report.html");
        write_atomically(&path, "<!doctype html>first").expect("written");
        write_atomically(&path, "<!doctype html>second").expect("overwritten");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "<!doctype html>second");
        let missing = dir.path().join("no-such-dir").join("report.html");
        let error = write_atomically(&missing, "x").expect_err("no directory");
        assert!(error.to_string().contains("no-such-dir"), "{error}");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["report.html"], "no temporary file left behind");
    }
}
