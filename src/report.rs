//! `edgeproof report`: one self-contained HTML file from one or more `outcome.json` files (or
//! directories of them): a run, a comparison, or a sweep of seeds.
//!
//! It owns the arguments and the exit codes only (0 written, 2 bad input or unwritable output);
//! reading and rendering are `edgeproof-reports`'. It must never leave a half-written report: the
//! file is written beside its target and renamed over it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use edgeproof_reports::{ReportKind, load_inputs, load_outcome};

use crate::run::EXIT_BAD_INPUT;

/// The page to build (default: chosen from the inputs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// One outcome.
    Run,
    /// Several outcomes side by side, the first (or `--baseline`) the baseline.
    Compare,
    /// Many seeds of one scenario.
    Sweep,
}

#[derive(clap::Args)]
pub struct ReportArgs {
    /// `outcome.json` files, or directories searched for them.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Where to write the report.
    #[arg(short = 'o', long = "out", default_value = "report.html")]
    out: PathBuf,
    /// An outcome to compare the inputs against (makes a comparison with it first).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// The page to build; by default one input is a run, several seeds of one scenario a sweep,
    /// anything else a comparison.
    #[arg(long, value_enum)]
    kind: Option<Kind>,
}

pub fn run(args: ReportArgs) -> ExitCode {
    let started = std::time::Instant::now();
    match write_report(&args) {
        Ok((kind, count, bytes)) => {
            println!(
                "report: {} ({kind:?} of {count} outcome{}, {bytes} bytes, {:.3} s)",
                args.out.display(),
                if count == 1 { "" } else { "s" },
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

fn write_report(args: &ReportArgs) -> Result<(ReportKind, usize, usize), String> {
    let mut outcomes = Vec::new();
    if let Some(baseline) = &args.baseline {
        outcomes.push(load_outcome(baseline).map_err(|error| error.to_string())?);
    }
    outcomes.extend(load_inputs(&args.inputs).map_err(|error| error.to_string())?);
    let requested = match (args.kind, &args.baseline) {
        (Some(Kind::Run), _) => Some(ReportKind::Run),
        (Some(Kind::Sweep), _) => Some(ReportKind::Sweep),
        (Some(Kind::Compare), _) | (None, Some(_)) => Some(ReportKind::Compare),
        (None, None) => None,
    };
    let kind = edgeproof_reports::choose_kind(&outcomes, requested).map_err(|error| error.to_string())?;
    let page = edgeproof_reports::render(&outcomes, kind).map_err(|error| error.to_string())?;
    edgeproof_reports::write_atomically(&args.out, &page).map_err(|error| error.to_string())?;
    Ok((kind, outcomes.len(), page.len()))
}

/// Writes the run report of one `outcome.json` beside it (`report.html`) and returns its path.
pub fn report_beside(outcome_path: &Path) -> Result<PathBuf, String> {
    let loaded = load_outcome(outcome_path).map_err(|error| error.to_string())?;
    let page = edgeproof_reports::render(std::slice::from_ref(&loaded), ReportKind::Run)
        .map_err(|error| error.to_string())?;
    let path = outcome_path.with_file_name("report.html");
    edgeproof_reports::write_atomically(&path, &page).map_err(|error| error.to_string())?;
    Ok(path)
}
