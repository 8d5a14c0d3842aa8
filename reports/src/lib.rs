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
pub fn choose_kind(outcomes: &[LoadedOutcome], requested: Option<ReportKind>) -> Result<ReportKind, ReportError> {
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
            if same_scenario && seeds.len() == outcomes.len() { ReportKind::Sweep } else { ReportKind::Compare }
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
    let mut temporary = tempfile::Builder::new().prefix(".report-").suffix(".tmp").tempfile_in(directory).map_err(error)?;
    temporary.write_all(contents.as_bytes()).map_err(error)?;
    temporary.as_file().sync_all().map_err(error)?;
    temporary.persist(path).map_err(|persist| error(persist.error))?;
    Ok(())
}
