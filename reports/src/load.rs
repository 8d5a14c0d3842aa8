//! Reading `outcome.json` files and directories of them for a report.
//!
//! It owns the error contract: a missing, malformed or truncated file is a [`LoadError`] that
//! names the file, the line and column, and the JSON path of the field (`counters.lost`), never a
//! panic. It must never write anything.

use std::path::{Path, PathBuf};

use edgeproof_scenarios::outcome::Outcome;
use hdrhistogram::Histogram;

/// Most outcomes one report reads (a sweep of this many seeds is still one page).
pub const OUTCOMES_LIMIT: usize = 10_000;
/// Deepest directory level searched for `outcome.json` below a DIR argument.
pub const DIRECTORY_DEPTH_LIMIT: usize = 4;

/// Why an input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file or directory could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The input.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not a valid outcome: a syntax error, a truncated file, a missing field or a
    /// value of the wrong type.
    #[error("{path}:{line}:{column}: field `{field}`: {message}")]
    Field {
        /// The input.
        path: String,
        /// The JSON path of the offending field (`.` for the document itself).
        field: String,
        /// Line of the error in the file (1-based).
        line: usize,
        /// Column of the error (1-based).
        column: usize,
        /// What serde expected.
        message: String,
    },
    /// A serialized histogram does not decode.
    #[error("{path}: field `histograms.{field}`: {message}")]
    Histogram {
        /// The input.
        path: String,
        /// The histogram's field name.
        field: String,
        /// Why it does not decode.
        message: String,
    },
    /// A directory holds no `outcome.json` (within [`DIRECTORY_DEPTH_LIMIT`] levels).
    #[error("{path}: no outcome.json in this directory or below it")]
    EmptyDirectory {
        /// The directory.
        path: String,
    },
    /// More than [`OUTCOMES_LIMIT`] outcomes.
    #[error("{count} outcomes exceed the limit of {OUTCOMES_LIMIT} per report")]
    TooMany {
        /// How many were found.
        count: usize,
    },
}

/// One outcome read for a report, with the parts the report shows generically.
#[derive(Clone, Debug)]
pub struct LoadedOutcome {
    /// Where it came from.
    pub path: PathBuf,
    /// A short name for tables and legends (the outcome's directory name).
    pub label: String,
    /// The typed model.
    pub outcome: Outcome,
    /// The `checks` array as written: the report renders every field of a check (witnesses,
    /// failure kinds) even when this build's model does not know it yet.
    pub checks_raw: Vec<serde_json::Value>,
}

/// The decoded latency histograms of an outcome (microseconds).
#[derive(Clone, Debug)]
pub struct DecodedHistograms {
    /// Planned send -> delivery.
    pub latency_us: Histogram<u64>,
    /// Actual send -> delivery.
    pub latency_raw_us: Histogram<u64>,
}

impl LoadedOutcome {
    /// Decodes the outcome's histograms; an empty string is an empty histogram.
    pub fn histograms(&self) -> Result<DecodedHistograms, LoadError> {
        let decode = |field: &str, text: &str| {
            if text.is_empty() {
                return Ok(edgeproof_scenarios::latency::new_histogram());
            }
            edgeproof_scenarios::latency::histogram_from_base64(text).map_err(|error| LoadError::Histogram {
                path: self.path.display().to_string(),
                field: field.to_string(),
                message: error.to_string(),
            })
        };
        let histograms = &self.outcome.histograms;
        Ok(DecodedHistograms {
            latency_us: decode("latency_us", &histograms.latency_us)?,
            latency_raw_us: decode("latency_raw_us", &histograms.latency_raw_us)?,
        })
    }
}

/// Parses outcome text; `path` names it in errors.
pub fn parse_outcome(path: &Path, text: &str) -> Result<LoadedOutcome, LoadError> {
    let shown = path.display().to_string();
    let deserializer = &mut serde_json::Deserializer::from_str(text);
    let outcome: Outcome = serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let inner = error.inner();
        LoadError::Field {
            path: shown.clone(),
            field: error.path().to_string(),
            line: inner.line(),
            column: inner.column(),
            message: strip_position(&inner.to_string()),
        }
    })?;
    // The typed parse succeeded, so the text is a JSON object with a `checks` array.
    let value: serde_json::Value = serde_json::from_str(text).expect("text that parsed as an outcome is JSON");
    let checks_raw = value["checks"].as_array().cloned().unwrap_or_default();
    assert_eq!(checks_raw.len(), outcome.checks.len());
    let label = label_of(path);
    Ok(LoadedOutcome { path: path.to_path_buf(), label, outcome, checks_raw })
}

/// serde_json appends " at line L column C"; the error names the position itself.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message.to_string(),
    }
}

fn label_of(path: &Path) -> String {
    let named = if path.file_name().is_some_and(|name| name == "outcome.json") { path.parent() } else { Some(path) };
    named
        .and_then(|named| named.file_stem())
        .map(|stem| stem.to_string_lossy().into_owned())
        .filter(|stem| !stem.is_empty())
        .unwrap_or_else(|| path.display().to_string())
}

/// Reads one `outcome.json`.
pub fn load_outcome(path: &Path) -> Result<LoadedOutcome, LoadError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| LoadError::Read { path: path.display().to_string(), source })?;
    parse_outcome(path, &text)
}

/// Reads every input: a file is one outcome, a directory every `outcome.json` below it (sorted by
/// path, so the order is stable).
pub fn load_inputs(inputs: &[PathBuf]) -> Result<Vec<LoadedOutcome>, LoadError> {
    let mut files = Vec::new();
    for input in inputs {
        let metadata = std::fs::metadata(input)
            .map_err(|source| LoadError::Read { path: input.display().to_string(), source })?;
        if metadata.is_dir() {
            let before = files.len();
            find_outcomes(input, 0, &mut files)?;
            if files.len() == before {
                return Err(LoadError::EmptyDirectory { path: input.display().to_string() });
            }
            files[before..].sort();
        } else {
            files.push(input.clone());
        }
        if files.len() > OUTCOMES_LIMIT {
            return Err(LoadError::TooMany { count: files.len() });
        }
    }
    files.iter().map(|file| load_outcome(file)).collect()
}

fn find_outcomes(directory: &Path, depth: usize, found: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let read_error = |source| LoadError::Read { path: directory.display().to_string(), source };
    let candidate = directory.join("outcome.json");
    if candidate.is_file() {
        found.push(candidate);
    }
    if depth == DIRECTORY_DEPTH_LIMIT {
        return Ok(());
    }
    let mut subdirectories = Vec::new();
    for entry in std::fs::read_dir(directory).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        if entry.file_type().map_err(read_error)?.is_dir() {
            subdirectories.push(entry.path());
        }
    }
    subdirectories.sort();
    for subdirectory in subdirectories {
        find_outcomes(&subdirectory, depth + 1, found)?;
        if found.len() > OUTCOMES_LIMIT {
            return Err(LoadError::TooMany { count: found.len() });
        }
    }
    Ok(())
}
