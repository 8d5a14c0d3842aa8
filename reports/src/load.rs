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
    let value: serde_json::Value =
        serde_json::from_str(text).expect("text that parsed as an outcome is JSON");
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
    let named =
        if path.file_name().is_some_and(|name| name == "outcome.json") { path.parent() } else { Some(path) };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::outcome;

    #[test]
    fn a_truncated_file_names_the_file_and_position() {
        let text = outcome(1, 0).to_json();
        let error =
            parse_outcome(Path::new("runs/a/outcome.json"), &text[..text.len() / 3]).expect_err("truncated");
        let message = error.to_string();
        assert!(message.starts_with("runs/a/outcome.json:"), "{message}");
        assert!(message.contains("EOF"), "{message}");
        let LoadError::Field { line, field, .. } = error else { panic!("not a field error: {error:?}") };
        assert!(line > 1);
        assert!(!field.is_empty());
    }

    #[test]
    fn a_wrong_or_missing_field_is_named_by_its_path() {
        let text = outcome(1, 0).to_json();
        let wrong = text.replacen("\"lost\": 0", "\"lost\": -1", 1);
        assert_ne!(wrong, text);
        let message = parse_outcome(Path::new("o.json"), &wrong).expect_err("negative count").to_string();
        assert!(message.contains("field `counters.lost`"), "{message}");
        let mut value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        value["series"].as_object_mut().expect("series").remove("acked");
        let message =
            parse_outcome(Path::new("o.json"), &value.to_string()).expect_err("missing field").to_string();
        assert!(message.contains("field `series`") && message.contains("missing field `acked`"), "{message}");
        let message = parse_outcome(Path::new("o.json"), "[1, 2]").expect_err("not an object").to_string();
        assert!(message.starts_with("o.json:1:"), "{message}");
    }

    #[test]
    fn an_older_outcome_without_the_newer_fields_still_reads() {
        let mut value: serde_json::Value = serde_json::from_str(&outcome(1, 0).to_json()).expect("JSON");
        for newer in
            ["allowed_drops", "started_unix_secs", "target", "machine", "replay_command", "connections"]
        {
            value.as_object_mut().expect("object").remove(newer);
        }
        let loaded = parse_outcome(Path::new("old.json"), &value.to_string()).expect("reads");
        assert!(loaded.outcome.connections.is_none() && loaded.outcome.allowed_drops.is_empty());
    }

    #[test]
    fn directories_are_searched_in_path_order_and_an_empty_one_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, seed) in [("seed10", 10), ("seed2", 2), ("nested/seed3", 3)] {
            let directory = dir.path().join(name);
            std::fs::create_dir_all(&directory).expect("dir");
            std::fs::write(directory.join("outcome.json"), outcome(seed, 0).to_json()).expect("write");
        }
        let loaded = load_inputs(&[dir.path().to_path_buf()]).expect("loads");
        let labels: Vec<&str> = loaded.iter().map(|loaded| loaded.label.as_str()).collect();
        assert_eq!(labels, ["seed3", "seed10", "seed2"]);
        let empty = tempfile::tempdir().expect("temp dir");
        let error = load_inputs(&[empty.path().to_path_buf()]).expect_err("no outcomes");
        assert!(matches!(error, LoadError::EmptyDirectory { .. }), "{error}");
        let error = load_inputs(&[dir.path().join("missing.json")]).expect_err("missing");
        assert!(error.to_string().contains("missing.json: cannot read"), "{error}");
    }
}
