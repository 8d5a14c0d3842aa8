//! The `Fs` seam: the one way any service of the stack touches a disk.
//!
//! This module owns the [`Fs`] trait (what a disk can do, with typed errors), the request and
//! reply types a sans-IO service exchanges with whoever drives it ([`DiskOp`], [`DiskReply`]),
//! and [`apply`], which executes one request against an `Fs`. Implementations live where their
//! world lives: [`os::OsFs`] (the OS filesystem under a root directory) for real runs, and
//! `sim::disk::SimDisk` (a fault-injecting model per simulated host) in the simulators. It must
//! never read a clock or spawn: a disk operation's latency is the driver's business, not the
//! seam's.
//!
//! Durability contract (every implementation keeps it, `SimDisk` enforces it and its property
//! tests check it). There are two layers, as on a real kernel: the *page cache* (what `read` and
//! `list` see) and the *platter* (what survives the machine losing power).
//! - `append`, `truncate`, `rename` and `remove` change the page cache at once: every later
//!   `read`, `len` and `list` sees them. None of it is on the platter until a `sync`.
//! - `sync(path)` puts the file's data on the platter *and* every directory entry of its parent
//!   directory (its creation, a rename into that name, a removal of a sibling), as
//!   `fsync(file)` plus `fsync(dir)` would. Other directories are untouched.
//! - **Process crash** (the process dies, the kernel lives): nothing is lost. Everything the
//!   process handed to the kernel stays in the page cache and is read back after the restart;
//!   only requests the process had not yet handed over (still queued in the driver) are gone.
//! - **Power loss** (the host dies, the page cache with it): every file and name is exactly what
//!   the platter held: a file holds what its last successful `sync` made durable, under the names
//!   its directories' last syncs recorded. One exception: when a file's cache had grown past its
//!   platter content by appends, write-back may have put a prefix of those unsynced bytes on the
//!   platter first, so the file may hold its durable content plus any prefix of the bytes appended
//!   since (whole appends, then the last one written torn at an arbitrary byte). Readers must
//!   therefore treat an unsynced tail as possibly torn (a checksum per record, as the log does).
//! - **Disk lost** (replaced, wiped): nothing survives.
//! - A failed `append` (`DiskFull`) applies nothing on the simulated disk; on a real disk a
//!   failed write may have written a prefix, so callers recover as after a torn tail.

pub mod os;

use bytes::Bytes;

pub use os::OsFs;

/// Longest path the seam accepts, in bytes; a longer one is [`FsError::InvalidPath`].
pub const PATH_BYTES_MAX: usize = 255;

/// Why a disk operation failed. Every variant is a condition a service must handle.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum FsError {
    /// The path does not exist.
    #[error("{path}: no such file")]
    NotFound { path: String },
    /// The path is empty, absolute, contains `..` or an empty component, or is too long; or it
    /// names a directory where a file is needed (or crosses a file where a directory is needed).
    #[error("{path}: invalid path (relative, '/'-separated, no '..', at most 255 bytes)")]
    InvalidPath { path: String },
    /// A truncate past the end of the file (the seam never grows a file with zeros).
    #[error("{path}: length {len} is past the end of the file ({file_len} bytes)")]
    InvalidLength { path: String, len: u64, file_len: u64 },
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
    Append {
        path: String,
        data: Bytes,
    },
    Sync {
        path: String,
    },
    Read {
        path: String,
        offset: u64,
        len_max: usize,
    },
    Len {
        path: String,
    },
    /// Cuts the file to `len` bytes (never grows it); recovery uses it to drop a torn tail.
    Truncate {
        path: String,
        len: u64,
    },
    Rename {
        from: String,
        to: String,
    },
    Remove {
        path: String,
    },
    List {
        dir: String,
    },
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
    Truncated,
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
    /// Cuts `path` to `len` bytes; a `len` past the end is [`FsError::InvalidLength`].
    fn truncate(&mut self, path: &str, len: u64) -> Result<(), FsError>;
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
        DiskOp::Truncate { path, len } => fs.truncate(path, *len).map(|()| DiskReply::Truncated),
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
