//! [`OsFs`]: the [`Fs`] seam on the real filesystem, below one root directory.
//!
//! This module owns the mapping from seam paths to files under the root (paths are validated
//! first, so nothing outside the root is ever touched), the durability syscalls (`sync` is
//! `File::sync_all` on the file plus an fsync of its parent directory, and of every directory
//! this instance created on the way, so a new file's name survives a power loss), and the mapping
//! of `std::io` errors to [`FsError`] (ENOSPC/EDQUOT -> `DiskFull`, ENOENT -> `NotFound`,
//! ENOTDIR/EISDIR -> `InvalidPath`, everything else, EIO first, -> `Io`). It must never follow a
//! path outside the root, never read a clock and never spawn; it is blocking, so a tokio shell
//! runs it on a blocking thread or accepts the stall, as the log's throughput bench measures.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{Fs, FsError, validate_path};

/// The real filesystem below `root`. Directories are created on demand by `append` and
/// `rename` (the seam has no `mkdir`): a seam path `log/00001.seg` is the file
/// `<root>/log/00001.seg`.
#[derive(Debug)]
pub struct OsFs {
    root: PathBuf,
    /// Directories this instance created whose own entry in their parent is not yet fsynced.
    directories_unsynced: BTreeSet<PathBuf>,
}

impl OsFs {
    /// An `OsFs` below `root`, creating the directory if needed.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<OsFs> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        assert!(root.is_dir(), "{} was created but is not a directory", root.display());
        Ok(OsFs { root, directories_unsynced: BTreeSet::new() })
    }

    /// The directory every path is below.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file a validated seam path names.
    fn resolve(&self, path: &str) -> Result<PathBuf, FsError> {
        validate_path(path)?;
        let full = self.root.join(path);
        debug_assert!(full.starts_with(&self.root));
        Ok(full)
    }

    /// Creates the missing parent directories of `full`, remembering them for the next sync.
    fn create_parents(&mut self, path: &str, full: &Path) -> Result<(), FsError> {
        let parent = full.parent().expect("a resolved path is below the root");
        let mut missing = Vec::new();
        let mut ancestor = parent;
        while ancestor != self.root && !ancestor.exists() {
            missing.push(ancestor.to_path_buf());
            ancestor = ancestor.parent().expect("the walk stops at the root");
        }
        if missing.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(parent).map_err(|error| map_error(&error, path))?;
        self.directories_unsynced.extend(missing);
        Ok(())
    }
}

/// Maps an I/O error on `path` to the seam's error.
fn map_error(error: &io::Error, path: &str) -> FsError {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    if matches!(error.raw_os_error(), Some(ENOSPC | EDQUOT)) {
        return FsError::DiskFull;
    }
    match error.kind() {
        ErrorKind::NotFound => FsError::NotFound { path: path.to_string() },
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => FsError::DiskFull,
        ErrorKind::NotADirectory | ErrorKind::IsADirectory | ErrorKind::InvalidFilename => {
            FsError::InvalidPath { path: path.to_string() }
        }
        _ => FsError::Io { path: path.to_string() },
    }
}

/// fsyncs a directory, making the entries in it durable.
fn sync_directory(directory: &Path, path: &str) -> Result<(), FsError> {
    File::open(directory).and_then(|handle| handle.sync_all()).map_err(|error| map_error(&error, path))
}

/// Fails with `InvalidPath` when `full` is a directory (the seam's paths name files).
fn require_file(full: &Path, path: &str) -> Result<(), FsError> {
    if full.is_dir() { Err(FsError::InvalidPath { path: path.to_string() }) } else { Ok(()) }
}

impl Fs for OsFs {
    fn append(&mut self, path: &str, data: &[u8]) -> Result<u64, FsError> {
        let full = self.resolve(path)?;
        require_file(&full, path)?;
        self.create_parents(path, &full)?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&full)
            .map_err(|error| map_error(&error, path))?;
        file.write_all(data).map_err(|error| map_error(&error, path))?;
        let len = file.metadata().map_err(|error| map_error(&error, path))?.len();
        assert!(len >= data.len() as u64, "{path}: length {len} after appending {} bytes", data.len());
        Ok(len)
    }

    fn sync(&mut self, path: &str) -> Result<(), FsError> {
        let full = self.resolve(path)?;
        require_file(&full, path)?;
        File::open(&full).and_then(|handle| handle.sync_all()).map_err(|error| map_error(&error, path))?;
        let parent = full.parent().expect("a resolved path is below the root").to_path_buf();
        sync_directory(&parent, path)?;
        // A directory created on the way is itself only an entry in its parent: fsync those too,
        // deepest first, so the whole chain from the root to the file survives.
        let created: Vec<PathBuf> = self
            .directories_unsynced
            .iter()
            .filter(|directory| parent.starts_with(directory))
            .cloned()
            .collect();
        for directory in created.iter().rev() {
            let grandparent = directory.parent().expect("a created directory is below the root");
            sync_directory(grandparent, path)?;
            let removed = self.directories_unsynced.remove(directory);
            assert!(removed);
        }
        Ok(())
    }

    fn read(&mut self, path: &str, offset: u64, len_max: usize) -> Result<Vec<u8>, FsError> {
        let full = self.resolve(path)?;
        require_file(&full, path)?;
        let mut file = File::open(&full).map_err(|error| map_error(&error, path))?;
        file.seek(SeekFrom::Start(offset)).map_err(|error| map_error(&error, path))?;
        let mut data = Vec::with_capacity(len_max.min(1 << 20));
        file.take(len_max as u64).read_to_end(&mut data).map_err(|error| map_error(&error, path))?;
        assert!(data.len() <= len_max);
        Ok(data)
    }

    fn len(&mut self, path: &str) -> Result<u64, FsError> {
        let full = self.resolve(path)?;
        require_file(&full, path)?;
        Ok(std::fs::metadata(&full).map_err(|error| map_error(&error, path))?.len())
    }

    fn truncate(&mut self, path: &str, len: u64) -> Result<(), FsError> {
        let full = self.resolve(path)?;
        require_file(&full, path)?;
        let file = OpenOptions::new().write(true).open(&full).map_err(|error| map_error(&error, path))?;
        let file_len = file.metadata().map_err(|error| map_error(&error, path))?.len();
        if len > file_len {
            return Err(FsError::InvalidLength { path: path.to_string(), len, file_len });
        }
        file.set_len(len).map_err(|error| map_error(&error, path))?;
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), FsError> {
        let full_from = self.resolve(from)?;
        let full_to = self.resolve(to)?;
        require_file(&full_from, from)?;
        require_file(&full_to, to)?;
        if !full_from.exists() {
            return Err(FsError::NotFound { path: from.to_string() });
        }
        self.create_parents(to, &full_to)?;
        std::fs::rename(&full_from, &full_to).map_err(|error| map_error(&error, from))
    }

    fn remove(&mut self, path: &str) -> Result<(), FsError> {
        let full = self.resolve(path)?;
        require_file(&full, path)?;
        std::fs::remove_file(&full).map_err(|error| map_error(&error, path))
    }

    fn list(&mut self, dir: &str) -> Result<Vec<String>, FsError> {
        let full = if dir.is_empty() { self.root.clone() } else { self.resolve(dir)? };
        let entries = std::fs::read_dir(&full).map_err(|error| map_error(&error, dir))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| map_error(&error, dir))?;
            // A name that is not UTF-8 was not written through the seam; it is not ours to list.
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_fs() -> (tempfile::TempDir, OsFs) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let fs = OsFs::new(dir.path().join("root")).expect("root is created");
        (dir, fs)
    }

    #[test]
    fn append_read_len_truncate_round_trip() {
        let (_dir, mut fs) = temp_fs();
        assert_eq!(fs.append("log/a.seg", b"hello "), Ok(6));
        assert_eq!(fs.append("log/a.seg", b"world"), Ok(11));
        fs.sync("log/a.seg").expect("sync");
        assert_eq!(fs.read("log/a.seg", 0, 100).as_deref(), Ok(&b"hello world"[..]));
        assert_eq!(fs.read("log/a.seg", 6, 3).as_deref(), Ok(&b"wor"[..]));
        assert_eq!(fs.read("log/a.seg", 50, 3).as_deref(), Ok(&b""[..]));
        assert_eq!(fs.len("log/a.seg"), Ok(11));
        fs.truncate("log/a.seg", 5).expect("truncate");
        assert_eq!(fs.len("log/a.seg"), Ok(5));
        assert_eq!(
            fs.truncate("log/a.seg", 6),
            Err(FsError::InvalidLength { path: "log/a.seg".into(), len: 6, file_len: 5 })
        );
        assert!(fs.directories_unsynced.is_empty(), "sync fsyncs the directories it created");
    }

    #[test]
    fn rename_remove_list_and_errors_map_to_the_seam() {
        let (_dir, mut fs) = temp_fs();
        fs.append("d/x", b"1").expect("append");
        fs.append("d/y", b"2").expect("append");
        fs.rename("d/x", "d/z").expect("rename replaces nothing");
        fs.rename("d/y", "d/z").expect("rename replaces z");
        assert_eq!(fs.list("d"), Ok(vec!["z".to_string()]));
        assert_eq!(fs.list(""), Ok(vec!["d".to_string()]));
        assert_eq!(fs.read("d/z", 0, 10).as_deref(), Ok(&b"2"[..]));
        fs.remove("d/z").expect("remove");
        assert_eq!(fs.list("d"), Ok(vec![]));
        assert_eq!(fs.read("d/z", 0, 1), Err(FsError::NotFound { path: "d/z".into() }));
        assert_eq!(fs.remove("d/z"), Err(FsError::NotFound { path: "d/z".into() }));
        assert_eq!(fs.rename("d/z", "d/w"), Err(FsError::NotFound { path: "d/z".into() }));
        assert_eq!(fs.list("nope"), Err(FsError::NotFound { path: "nope".into() }));
        assert_eq!(fs.sync("d/z"), Err(FsError::NotFound { path: "d/z".into() }));
        assert!(matches!(fs.append("../escape", b"x"), Err(FsError::InvalidPath { .. })));
        assert!(matches!(fs.append("/etc/passwd", b"x"), Err(FsError::InvalidPath { .. })));
        // "d" is a directory: reading it as a file, or creating a file below a file, is refused.
        assert_eq!(fs.read("d", 0, 1), Err(FsError::InvalidPath { path: "d".into() }));
        fs.append("f", b"file").expect("append");
        assert_eq!(fs.append("f/below", b"x"), Err(FsError::InvalidPath { path: "f/below".into() }));
    }

    #[test]
    fn os_errors_map_to_typed_seam_errors() {
        assert_eq!(map_error(&io::Error::from_raw_os_error(28), "p"), FsError::DiskFull);
        assert_eq!(map_error(&io::Error::from_raw_os_error(122), "p"), FsError::DiskFull);
        assert_eq!(map_error(&io::Error::from_raw_os_error(5), "p"), FsError::Io { path: "p".into() });
        assert_eq!(map_error(&io::Error::from_raw_os_error(2), "p"), FsError::NotFound { path: "p".into() });
        assert_eq!(
            map_error(&io::Error::from_raw_os_error(20), "p"),
            FsError::InvalidPath { path: "p".into() }
        );
    }
}
