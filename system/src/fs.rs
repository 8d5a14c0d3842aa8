//! The `Fs` seam: the one way any service of the stack touches a disk.
//!
//! This module owns the [`Fs`] trait (what a disk can do, with typed errors), the request and
//! reply types a sans-IO service exchanges with whoever drives it ([`DiskOp`], [`DiskReply`]),
//! and [`apply`], which executes one request against an `Fs`. Implementations live where their
//! world lives: the OS filesystem for real runs, a fault-injecting model per simulated host in
//! `sim`. It must never read a clock or spawn: a disk operation's latency is the driver's business,
//! not the seam's.
//!
//! Durability contract (every implementation keeps it, the simulated model enforces it):
//! - `append` and `rename`/`remove` change what `read` and `list` see at once (the page cache),
//!   but none of it survives a crash until `sync` of that path returns `Ok`.
//! - `sync(path)` makes the file's data *and* its directory entry (its creation, or the rename
//!   that gave it this name) durable, as `fsync(file)` plus `fsync(dir)` would.
//! - After a crash a file holds exactly what its last successful `sync` made durable. After a power
//!   loss the same holds, except that the last unsynced append may be torn (a prefix of it kept).

use bytes::Bytes;

/// Longest path the seam accepts, in bytes; a longer one is [`FsError::InvalidPath`].
pub const PATH_BYTES_MAX: usize = 255;

/// Why a disk operation failed. Every variant is a condition a service must handle.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum FsError {
    /// The path does not exist.
    #[error("{path}: no such file")]
    NotFound { path: String },
    /// The path is empty, absolute, contains `..` or an empty component, or is too long.
    #[error("{path}: invalid path (relative, '/'-separated, no '..', at most 255 bytes)")]
    InvalidPath { path: String },
    /// No space left: the write was not applied at all.
    #[error("disk full")]
    DiskFull,
    /// The medium failed to return or keep data (EIO).
    #[error("{path}: I/O error")]
    Io { path: String },
}

/// One disk request from a service, executed by the driver against its [`Fs`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskOp {
    Append { path: String, data: Bytes },
    Sync { path: String },
    Read { path: String, offset: u64, len_max: usize },
    Len { path: String },
    Rename { from: String, to: String },
    Remove { path: String },
    List { dir: String },
}

/// The result of one [`DiskOp`], handed back to the service that asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskReply {
    /// The file's length after the append.
    Appended {
        len: u64,
    },
    Synced,
    Read {
        data: Bytes,
    },
    Len {
        len: u64,
    },
    Renamed,
    Removed,
    /// Names directly under the directory, sorted.
    Listed {
        names: Vec<String>,
    },
    Failed(FsError),
}

/// What a disk can do. Paths are relative, `/`-separated and checked by [`validate_path`].
pub trait Fs {
    /// Appends `data` to `path`, creating the file if needed; returns the new length.
    fn append(&mut self, path: &str, data: &[u8]) -> Result<u64, FsError>;
    /// Makes `path`'s data and directory entry durable.
    fn sync(&mut self, path: &str) -> Result<(), FsError>;
    /// Up to `len_max` bytes from `offset` (fewer at the end of the file; none past it).
    fn read(&mut self, path: &str, offset: u64, len_max: usize) -> Result<Vec<u8>, FsError>;
    /// The file's current length.
    fn len(&mut self, path: &str) -> Result<u64, FsError>;
    /// Atomically gives `from` the name `to`, replacing any file already called `to`.
    fn rename(&mut self, from: &str, to: &str) -> Result<(), FsError>;
    /// Deletes `path`.
    fn remove(&mut self, path: &str) -> Result<(), FsError>;
    /// Names directly under `dir` (`""` is the root), sorted.
    fn list(&mut self, dir: &str) -> Result<Vec<String>, FsError>;
}

/// Checks the path rules every implementation shares.
pub fn validate_path(path: &str) -> Result<(), FsError> {
    let invalid = || FsError::InvalidPath { path: path.to_string() };
    if path.is_empty() || path.len() > PATH_BYTES_MAX || path.starts_with('/') || path.contains('\0') {
        return Err(invalid());
    }
    if path.split('/').any(|component| component.is_empty() || component == "." || component == "..") {
        return Err(invalid());
    }
    Ok(())
}

/// Executes one request against `fs` and wraps the result as the reply the service receives.
pub fn apply(fs: &mut dyn Fs, op: &DiskOp) -> DiskReply {
    let reply = match op {
        DiskOp::Append { path, data } => fs.append(path, data).map(|len| DiskReply::Appended { len }),
        DiskOp::Sync { path } => fs.sync(path).map(|()| DiskReply::Synced),
        DiskOp::Read { path, offset, len_max } => {
            fs.read(path, *offset, *len_max).map(|data| DiskReply::Read { data: Bytes::from(data) })
        }
        DiskOp::Len { path } => fs.len(path).map(|len| DiskReply::Len { len }),
        DiskOp::Rename { from, to } => fs.rename(from, to).map(|()| DiskReply::Renamed),
        DiskOp::Remove { path } => fs.remove(path).map(|()| DiskReply::Removed),
        DiskOp::List { dir } => fs.list(dir).map(|names| DiskReply::Listed { names }),
    };
    reply.unwrap_or_else(DiskReply::Failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_rules() {
        for good in ["a", "log/segment-0001", "a.b/c_d"] {
            assert_eq!(validate_path(good), Ok(()), "{good}");
        }
        let long = "x".repeat(PATH_BYTES_MAX + 1);
        for bad in ["", "/abs", "a//b", "a/../b", "./a", "a/", long.as_str(), "a\0b"] {
            assert!(matches!(validate_path(bad), Err(FsError::InvalidPath { .. })), "{bad:?}");
        }
    }
}
