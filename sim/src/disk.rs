//! [`SimDisk`]: one simulated host's disk, implementing the `Fs` seam with its durability
//! contract, crash kinds, faults and a latency model.
//!
//! This module owns the model of a disk as a kernel shows it: a *page cache* (what `read` and
//! `list` see) over a *platter* (what survives power loss), per file (an inode: its cached bytes
//! and how much of them is durable) and per name (the cached namespace and the durable one). It
//! implements exactly the contract in `edgeproof_system::fs`: `sync(path)` makes the file's data
//! and its parent directory's entries durable; [`SimDisk::process_crash`] loses nothing (the
//! kernel and its page cache live on); [`SimDisk::power_loss`] reverts every file and name to the
//! platter, except that write-back may have kept a seeded-random prefix of each file's unsynced
//! appends (whole appends, then one torn); [`SimDisk::wipe`] loses everything. Faults ([`DiskFault`]):
//! `Full` (a capacity; an append that does not fit fails with `DiskFull` and applies nothing),
//! `Slow` (every latency multiplied), `ReadError` (reads of chosen paths, or all, fail with `Io`).
//! Everything is counted in [`DiskStats`].
//!
//! It must never read a clock, draw randomness other than from the rng handed to `power_loss`,
//! or iterate a default-hashed map (all maps are `BTreeMap`): the same calls give the same disk.
//! It is engine-agnostic: the driver (fast engine or turmoil harness) applies a service's
//! `DiskOp`s with `edgeproof_system::fs::apply` and delivers each reply after
//! [`SimDisk::op_latency`]; the disk never schedules anything itself.
//!
//! **Why this model on turmoil too, not turmoil's `unstable-fs`.** turmoil 0.7.2's simulated
//! filesystem is a `std::fs` look-alike for code that calls the filesystem directly; our services
//! are sans-IO and speak `DiskOp`, so its shim buys nothing. It has one crash kind (`sim.crash()`
//! drops pending writes and unsynced files), so it cannot express a process crash that keeps the
//! page cache beside a power loss that does not; it tears writes at block granularity only on its
//! own random schedule, its random background syncs and worker-thread paths draw from
//! `rand::rngs::ThreadRng` (outside our seed), and it has no slow or per-path read-error fault.
//! Using `SimDisk` behind the `Fs` seam in both engines gives one model, one set of property
//! tests and the same verdict for the same scenario; turmoil only supplies the clock the driver
//! delays replies with.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::time::Duration;

use edgeproof_system::fs::{DiskOp, Fs, FsError, validate_path};
use rand::RngExt;

/// How long operations take on the simulated disk (before a `Slow` fault multiplies them).
///
/// The default is an industrial edge box's SATA SSD: 50 µs per operation, 200 MB/s, 2 ms per
/// fsync (a cache flush on a consumer SSD without power-loss protection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskLatency {
    /// Fixed cost of every operation (syscall, queueing, seek).
    pub op_base: Duration,
    /// Transfer rate for the bytes an append or read moves, and a sync writes back.
    pub bytes_per_second: u64,
    /// Extra fixed cost of a sync (the device's cache flush).
    pub sync_base: Duration,
}

impl Default for DiskLatency {
    fn default() -> Self {
        DiskLatency {
            op_base: Duration::from_micros(50),
            bytes_per_second: 200_000_000,
            sync_base: Duration::from_millis(2),
        }
    }
}

/// Which reads a `ReadError` fault fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadErrorScope {
    /// Every read of every file.
    All,
    /// Reads of these paths, and of every file below one of them (a directory).
    Paths(BTreeSet<String>),
}

impl ReadErrorScope {
    fn covers(&self, path: &str) -> bool {
        match self {
            ReadErrorScope::All => true,
            ReadErrorScope::Paths(paths) => paths.iter().any(|prefix| {
                path == prefix || (path.starts_with(prefix.as_str()) && path[prefix.len()..].starts_with('/'))
            }),
        }
    }
}

/// A disk fault, as a scenario's `disk` fault injects it. Injecting one replaces any active fault
/// of the same kind; [`SimDisk::heal`] ends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskFault {
    /// The disk holds at most `capacity_bytes` (cached bytes plus platter copies kept apart by a
    /// truncate); an append that does not fit fails with `DiskFull` and applies nothing.
    Full { capacity_bytes: u64 },
    /// Every operation takes `factor` times its normal latency (a worn SD card, a busy device).
    Slow { factor: u32 },
    /// Reads in scope fail with `Io` (the medium cannot return the data).
    ReadError { scope: ReadErrorScope },
}

/// The kinds of [`DiskFault`], for healing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFaultKind {
    Full,
    Slow,
    ReadError,
}

impl DiskFault {
    pub fn kind(&self) -> DiskFaultKind {
        match self {
            DiskFault::Full { .. } => DiskFaultKind::Full,
            DiskFault::Slow { .. } => DiskFaultKind::Slow,
            DiskFault::ReadError { .. } => DiskFaultKind::ReadError,
        }
    }
}

/// Everything the disk did and lost, for the outcome's counters and the tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiskStats {
    pub appends: u64,
    pub append_bytes: u64,
    pub syncs: u64,
    /// Bytes a sync moved from the page cache to the platter.
    pub sync_bytes: u64,
    pub reads: u64,
    pub read_bytes: u64,
    pub lens: u64,
    pub truncates: u64,
    pub renames: u64,
    pub removes: u64,
    pub lists: u64,
    /// Operations that returned an error (including injected ones).
    pub ops_failed: u64,
    pub process_crashes: u64,
    pub power_losses: u64,
    pub wipes: u64,
    /// Unsynced bytes a power loss dropped.
    pub unsynced_bytes_lost: u64,
    /// Unsynced bytes a power loss kept because write-back had reached the platter first.
    pub unsynced_bytes_kept: u64,
    /// Appends a power loss cut inside (a prefix kept, the rest lost).
    pub torn_appends: u64,
    /// Names in the page cache that a power loss removed (never made durable).
    pub names_lost: u64,
    pub disk_full_rejections: u64,
    pub read_errors_injected: u64,
    /// Operations whose latency a `Slow` fault multiplied.
    pub slow_ops: u64,
}

/// What of an inode's cached bytes is on the platter.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Platter {
    /// The platter holds the first `len` cached bytes (the common, append-only case).
    Prefix { len: u64 },
    /// A truncate cut below the durable length: the platter keeps its own copy until a sync.
    Detached { data: Vec<u8> },
}

/// One file's contents, independent of its names (as an inode is).
#[derive(Clone, Debug)]
struct Inode {
    cached: Vec<u8>,
    platter: Platter,
    /// Cached lengths at the end of each append since the last sync (the tear points a power loss
    /// may fall between), ascending.
    unsynced_append_ends: Vec<u64>,
}

impl Inode {
    fn new() -> Inode {
        Inode { cached: Vec::new(), platter: Platter::Prefix { len: 0 }, unsynced_append_ends: Vec::new() }
    }

    /// Bytes this inode occupies: its cached bytes plus a detached platter copy.
    fn footprint_bytes(&self) -> u64 {
        let detached = match &self.platter {
            Platter::Prefix { .. } => 0,
            Platter::Detached { data } => data.len() as u64,
        };
        self.cached.len() as u64 + detached
    }

    /// Bytes a sync of this inode would write to the platter.
    fn dirty_bytes(&self) -> u64 {
        match &self.platter {
            Platter::Prefix { len } => self.cached.len() as u64 - len,
            Platter::Detached { .. } => self.cached.len() as u64,
        }
    }
}

type InodeId = u64;

/// One simulated host's disk. See the module doc for the model.
#[derive(Clone, Debug)]
pub struct SimDisk {
    inodes: BTreeMap<InodeId, Inode>,
    /// Names as the page cache sees them.
    names_cached: BTreeMap<String, InodeId>,
    /// Names as the platter holds them.
    names_durable: BTreeMap<String, InodeId>,
    inode_next: InodeId,
    capacity_bytes: Option<u64>,
    slow_factor: Option<u32>,
    read_error_scope: Option<ReadErrorScope>,
    latency: DiskLatency,
    stats: DiskStats,
}

impl Default for SimDisk {
    fn default() -> Self {
        SimDisk::new(DiskLatency::default())
    }
}

/// The directory a path is in (`""` for the root).
fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(parent, _)| parent)
}

/// Whether `name` is directly in directory `dir`.
fn is_directly_in(name: &str, dir: &str) -> bool {
    parent_of(name) == dir
}

impl SimDisk {
    /// An empty, healthy disk.
    pub fn new(latency: DiskLatency) -> SimDisk {
        assert!(latency.bytes_per_second > 0, "a disk moves bytes at some rate");
        SimDisk {
            inodes: BTreeMap::new(),
            names_cached: BTreeMap::new(),
            names_durable: BTreeMap::new(),
            inode_next: 0,
            capacity_bytes: None,
            slow_factor: None,
            read_error_scope: None,
            latency,
            stats: DiskStats::default(),
        }
    }

    pub fn stats(&self) -> &DiskStats {
        &self.stats
    }

    pub fn latency(&self) -> &DiskLatency {
        &self.latency
    }

    /// Bytes the disk holds now (what a `Full` fault's capacity is compared with).
    pub fn used_bytes(&self) -> u64 {
        self.inodes.values().map(Inode::footprint_bytes).sum()
    }

    /// Starts a fault (replacing an active one of the same kind).
    pub fn inject(&mut self, fault: &DiskFault) {
        match fault {
            DiskFault::Full { capacity_bytes } => self.capacity_bytes = Some(*capacity_bytes),
            DiskFault::Slow { factor } => {
                assert!(*factor >= 1, "a slow fault multiplies latency by at least 1");
                self.slow_factor = Some(*factor);
            }
            DiskFault::ReadError { scope } => self.read_error_scope = Some(scope.clone()),
        }
    }

    /// Ends the active fault of this kind (nothing if none is active).
    pub fn heal(&mut self, kind: DiskFaultKind) {
        match kind {
            DiskFaultKind::Full => self.capacity_bytes = None,
            DiskFaultKind::Slow => self.slow_factor = None,
            DiskFaultKind::ReadError => self.read_error_scope = None,
        }
    }

    /// The faults active now, in kind order.
    pub fn faults_active(&self) -> Vec<DiskFault> {
        let mut faults = Vec::new();
        if let Some(capacity_bytes) = self.capacity_bytes {
            faults.push(DiskFault::Full { capacity_bytes });
        }
        if let Some(factor) = self.slow_factor {
            faults.push(DiskFault::Slow { factor });
        }
        if let Some(scope) = &self.read_error_scope {
            faults.push(DiskFault::ReadError { scope: scope.clone() });
        }
        faults
    }

    /// How long `op` takes on this disk in its current state: the driver delivers the reply this
    /// long after it starts the operation (a disk serves its queue one operation at a time, so a
    /// driver that models queueing starts the next one when this one completes).
    pub fn op_latency(&self, op: &DiskOp) -> Duration {
        let bytes_moved = match op {
            DiskOp::Append { data, .. } => data.len() as u64,
            DiskOp::Read { path, offset, len_max } => self.names_cached.get(path).map_or(0, |id| {
                (self.inodes[id].cached.len() as u64).saturating_sub(*offset).min(*len_max as u64)
            }),
            DiskOp::Sync { path } => {
                self.names_cached.get(path).map_or(0, |id| self.inodes[id].dirty_bytes())
            }
            DiskOp::Len { .. }
            | DiskOp::Truncate { .. }
            | DiskOp::Rename { .. }
            | DiskOp::Remove { .. }
            | DiskOp::List { .. } => 0,
        };
        let transfer_nanos =
            u128::from(bytes_moved) * 1_000_000_000 / u128::from(self.latency.bytes_per_second);
        let mut nanos = self.latency.op_base.as_nanos() + transfer_nanos;
        if matches!(op, DiskOp::Sync { .. }) {
            nanos += self.latency.sync_base.as_nanos();
        }
        if let Some(factor) = self.slow_factor {
            nanos *= u128::from(factor);
        }
        Duration::from_nanos(u64::try_from(nanos).expect("a disk latency fits in u64 nanoseconds"))
    }

    /// The process on this host crashed; the kernel lives. Nothing on the disk changes: the page
    /// cache keeps every append, rename and removal the process made (requests still queued in
    /// the driver are the driver's to drop). Counted.
    pub fn process_crash(&mut self) {
        self.stats.process_crashes += 1;
        self.check_invariants();
    }

    /// The host lost power: the page cache is gone, every file and name is what the platter held.
    /// Write-back may have reached the platter first: for each file whose cache extends its
    /// durable bytes by appends, `rng` decides (half the time nothing) how many of those bytes
    /// survive, a prefix cut anywhere, so whole appends survive and the last one reached is torn.
    pub fn power_loss(&mut self, rng: &mut impl rand::Rng) {
        self.stats.power_losses += 1;
        let names_lost =
            self.names_cached.keys().filter(|name| !self.names_durable.contains_key(*name)).count();
        self.stats.names_lost += names_lost as u64;
        self.names_cached = self.names_durable.clone();
        self.collect_garbage();
        for inode in self.inodes.values_mut() {
            match std::mem::replace(&mut inode.platter, Platter::Prefix { len: 0 }) {
                Platter::Prefix { len } => {
                    let unsynced_bytes = inode.cached.len() as u64 - len;
                    let kept_bytes = if unsynced_bytes == 0 || rng.random_bool(0.5) {
                        0
                    } else {
                        rng.random_range(1..=unsynced_bytes)
                    };
                    let cut = len + kept_bytes;
                    // The cut is inside an append unless it falls on an append's end (or keeps nothing).
                    if kept_bytes > 0 && !inode.unsynced_append_ends.contains(&cut) {
                        self.stats.torn_appends += 1;
                    }
                    inode.cached.truncate(usize::try_from(cut).expect("a file fits in memory"));
                    self.stats.unsynced_bytes_kept += kept_bytes;
                    self.stats.unsynced_bytes_lost += unsynced_bytes - kept_bytes;
                }
                Platter::Detached { data } => {
                    // The cache was cut below the platter and maybe regrown: none of it is
                    // durable, the platter copy is what survives.
                    self.stats.unsynced_bytes_lost += inode.cached.len() as u64;
                    inode.cached = data;
                }
            }
            inode.platter = Platter::Prefix { len: inode.cached.len() as u64 };
            inode.unsynced_append_ends.clear();
        }
        self.check_invariants();
    }

    /// The disk was lost or replaced: no file, no name, no fault survives (a new disk is healthy).
    pub fn wipe(&mut self) {
        self.stats.wipes += 1;
        self.inodes.clear();
        self.names_cached.clear();
        self.names_durable.clear();
        self.capacity_bytes = None;
        self.slow_factor = None;
        self.read_error_scope = None;
        self.check_invariants();
    }

    /// Flips bit `bit` (0..8) of byte `offset` of `path`, in the cache and on the platter: bit rot
    /// the medium does not report, which only a checksum catches. For tests of checksums.
    pub fn corrupt_byte(&mut self, path: &str, offset: u64, bit: u8) -> Result<(), FsError> {
        assert!(bit < 8);
        let id = *self.names_cached.get(path).ok_or_else(|| FsError::NotFound { path: path.to_string() })?;
        let inode = self.inodes.get_mut(&id).expect("a named inode exists");
        let index = usize::try_from(offset).expect("an offset fits in memory");
        if index >= inode.cached.len() {
            return Err(FsError::InvalidLength {
                path: path.to_string(),
                len: offset,
                file_len: inode.cached.len() as u64,
            });
        }
        inode.cached[index] ^= 1 << bit;
        if let Platter::Detached { data } = &mut inode.platter
            && let Some(byte) = data.get_mut(index)
        {
            *byte ^= 1 << bit;
        }
        Ok(())
    }

    /// Counts an operation executed under a slow fault.
    fn note_op(&mut self) {
        if self.slow_factor.is_some() {
            self.stats.slow_ops += 1;
        }
    }

    /// Counts a failed operation and hands the error back.
    fn fail<T>(&mut self, error: FsError) -> Result<T, FsError> {
        self.stats.ops_failed += 1;
        Err(error)
    }

    /// Whether some cached name lies below `path` (so `path` is a directory).
    fn is_directory(&self, path: &str) -> bool {
        let prefix = format!("{path}/");
        self.names_cached.range(prefix.clone()..).next().is_some_and(|(name, _)| name.starts_with(&prefix))
    }

    /// Checks that `path` may name a file: valid, not a directory, no ancestor a file.
    fn check_file_path(&self, path: &str) -> Result<(), FsError> {
        validate_path(path)?;
        let invalid = || FsError::InvalidPath { path: path.to_string() };
        if self.is_directory(path) {
            return Err(invalid());
        }
        let mut ancestor = parent_of(path);
        while !ancestor.is_empty() {
            if self.names_cached.contains_key(ancestor) {
                return Err(invalid());
            }
            ancestor = parent_of(ancestor);
        }
        Ok(())
    }

    /// The inode `path` names, or `NotFound`.
    fn inode_of(&self, path: &str) -> Result<InodeId, FsError> {
        self.names_cached.get(path).copied().ok_or_else(|| FsError::NotFound { path: path.to_string() })
    }

    /// Drops inodes neither namespace names any more.
    fn collect_garbage(&mut self) {
        let named: BTreeSet<InodeId> =
            self.names_cached.values().chain(self.names_durable.values()).copied().collect();
        self.inodes.retain(|id, _| named.contains(id));
    }

    /// Invariants every public operation leaves behind; cheap enough (tens of files per host) to
    /// check always.
    fn check_invariants(&self) {
        for (name, id) in self.names_cached.iter().chain(self.names_durable.iter()) {
            assert!(self.inodes.contains_key(id), "{name} names a dropped inode {id}");
        }
        for inode in self.inodes.values() {
            if let Platter::Prefix { len } = inode.platter {
                assert!(len <= inode.cached.len() as u64, "platter prefix {len} past the cache");
            }
            assert!(inode.unsynced_append_ends.windows(2).all(|pair| pair[0] < pair[1]));
            assert!(inode.unsynced_append_ends.last().is_none_or(|end| *end <= inode.cached.len() as u64));
        }
    }

    /// Passes a result through, counting it when it is an error.
    fn counted<T>(&mut self, result: Result<T, FsError>) -> Result<T, FsError> {
        match result {
            Ok(value) => Ok(value),
            Err(error) => self.fail(error),
        }
    }
}

impl Fs for SimDisk {
    fn append(&mut self, path: &str, data: &[u8]) -> Result<u64, FsError> {
        self.note_op();
        let checked = self.check_file_path(path);
        self.counted(checked)?;
        if let Some(capacity_bytes) = self.capacity_bytes
            && self.used_bytes() + data.len() as u64 > capacity_bytes
        {
            self.stats.disk_full_rejections += 1;
            return self.fail(FsError::DiskFull);
        }
        let id = match self.names_cached.get(path) {
            Some(id) => *id,
            None => {
                let id = self.inode_next;
                self.inode_next += 1;
                let previous = self.inodes.insert(id, Inode::new());
                assert!(previous.is_none(), "inode ids are never reused");
                self.names_cached.insert(path.to_string(), id);
                id
            }
        };
        let inode = self.inodes.get_mut(&id).expect("a named inode exists");
        let len_before = inode.cached.len();
        inode.cached.extend_from_slice(data);
        let len = inode.cached.len() as u64;
        if !data.is_empty() {
            inode.unsynced_append_ends.push(len);
        }
        assert_eq!(len, (len_before + data.len()) as u64);
        self.stats.appends += 1;
        self.stats.append_bytes += data.len() as u64;
        Ok(len)
    }

    fn sync(&mut self, path: &str) -> Result<(), FsError> {
        self.note_op();
        let checked = self.check_file_path(path).and_then(|()| self.inode_of(path));
        let id = self.counted(checked)?;
        let inode = self.inodes.get_mut(&id).expect("a named inode exists");
        self.stats.sync_bytes += inode.dirty_bytes();
        inode.platter = Platter::Prefix { len: inode.cached.len() as u64 };
        inode.unsynced_append_ends.clear();
        // fsync(dir): the parent directory's entries on the platter become the cached ones.
        let dir = parent_of(path);
        self.names_durable.retain(|name, _| !is_directly_in(name, dir));
        for (name, id) in &self.names_cached {
            if is_directly_in(name, dir) {
                self.names_durable.insert(name.clone(), *id);
            }
        }
        self.collect_garbage();
        self.stats.syncs += 1;
        assert_eq!(self.names_durable.get(path), Some(&id), "a synced file's name is durable");
        self.check_invariants();
        Ok(())
    }

    fn read(&mut self, path: &str, offset: u64, len_max: usize) -> Result<Vec<u8>, FsError> {
        self.note_op();
        let checked = self.check_file_path(path).and_then(|()| self.inode_of(path));
        let id = self.counted(checked)?;
        if self.read_error_scope.as_ref().is_some_and(|scope| scope.covers(path)) {
            self.stats.read_errors_injected += 1;
            return self.fail(FsError::Io { path: path.to_string() });
        }
        let cached = &self.inodes[&id].cached;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(cached.len());
        let end = start.saturating_add(len_max).min(cached.len());
        let data = cached[start..end].to_vec();
        assert!(data.len() <= len_max);
        self.stats.reads += 1;
        self.stats.read_bytes += data.len() as u64;
        Ok(data)
    }

    fn len(&mut self, path: &str) -> Result<u64, FsError> {
        self.note_op();
        let checked = self.check_file_path(path).and_then(|()| self.inode_of(path));
        let id = self.counted(checked)?;
        self.stats.lens += 1;
        Ok(self.inodes[&id].cached.len() as u64)
    }

    fn truncate(&mut self, path: &str, len: u64) -> Result<(), FsError> {
        self.note_op();
        let checked = self.check_file_path(path).and_then(|()| self.inode_of(path));
        let id = self.counted(checked)?;
        let file_len = self.inodes[&id].cached.len() as u64;
        if len > file_len {
            return self.fail(FsError::InvalidLength { path: path.to_string(), len, file_len });
        }
        let inode = self.inodes.get_mut(&id).expect("a named inode exists");
        if let Platter::Prefix { len: durable_len } = inode.platter
            && len < durable_len
        {
            let durable = inode.cached[..usize::try_from(durable_len).expect("fits")].to_vec();
            inode.platter = Platter::Detached { data: durable };
        }
        inode.cached.truncate(usize::try_from(len).expect("a file fits in memory"));
        inode.unsynced_append_ends.retain(|end| *end <= len);
        self.stats.truncates += 1;
        self.check_invariants();
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), FsError> {
        self.note_op();
        let checked = self
            .check_file_path(from)
            .and_then(|()| self.check_file_path(to))
            .and_then(|()| self.inode_of(from));
        let id = self.counted(checked)?;
        if from != to {
            self.names_cached.remove(from);
            self.names_cached.insert(to.to_string(), id);
            self.collect_garbage();
        }
        self.stats.renames += 1;
        self.check_invariants();
        Ok(())
    }

    fn remove(&mut self, path: &str) -> Result<(), FsError> {
        self.note_op();
        let checked = self.check_file_path(path).and_then(|()| self.inode_of(path));
        self.counted(checked)?;
        self.names_cached.remove(path);
        self.collect_garbage();
        self.stats.removes += 1;
        self.check_invariants();
        Ok(())
    }

    fn list(&mut self, dir: &str) -> Result<Vec<String>, FsError> {
        self.note_op();
        if !dir.is_empty() {
            let checked = validate_path(dir).and_then(|()| {
                if self.names_cached.contains_key(dir) {
                    Err(FsError::InvalidPath { path: dir.to_string() })
                } else if !self.is_directory(dir) {
                    Err(FsError::NotFound { path: dir.to_string() })
                } else {
                    Ok(())
                }
            });
            self.counted(checked)?;
        }
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        let mut names = BTreeSet::new();
        for name in self.names_cached.keys().filter(|name| name.starts_with(&prefix)) {
            let below = &name[prefix.len()..];
            names.insert(below.split('/').next().expect("split yields one item").to_string());
        }
        self.stats.lists += 1;
        Ok(names.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn unsynced_appends_survive_a_process_crash_but_not_a_power_loss_that_keeps_nothing() {
        let mut disk = SimDisk::default();
        disk.append("d/f", b"durable").expect("append");
        disk.sync("d/f").expect("sync");
        disk.append("d/f", b"-cached").expect("append");
        disk.process_crash();
        assert_eq!(disk.read("d/f", 0, 100).expect("read"), b"durable-cached");
        // Find a seed whose power loss keeps nothing and one that keeps a torn prefix.
        let mut kept_nothing = false;
        let mut torn = false;
        for seed in 0..64 {
            let mut copy = disk.clone();
            copy.power_loss(&mut ChaCha8Rng::seed_from_u64(seed));
            let data = copy.read("d/f", 0, 100).expect("read");
            assert!(data.starts_with(b"durable"), "seed {seed}: durable bytes lost: {data:?}");
            assert!(b"durable-cached".starts_with(&data[..]), "seed {seed}: not a prefix: {data:?}");
            kept_nothing |= data == b"durable";
            torn |= data.len() > 7 && data.len() < 14;
        }
        assert!(kept_nothing && torn, "power loss both drops and tears unsynced appends");
    }

    #[test]
    fn a_name_is_durable_only_once_its_directory_is_synced() {
        let mut disk = SimDisk::default();
        disk.append("d/tmp", b"v2").expect("append");
        disk.sync("d/tmp").expect("sync");
        disk.rename("d/tmp", "d/live").expect("rename");
        disk.append("e/other", b"x").expect("append");
        disk.sync("e/other").expect("a sync in another directory does not persist d's rename");
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut lost = disk.clone();
        lost.power_loss(&mut rng);
        assert_eq!(lost.list("d"), Ok(vec!["tmp".to_string()]));
        disk.sync("d/live").expect("sync");
        disk.power_loss(&mut rng);
        assert_eq!(disk.list("d"), Ok(vec!["live".to_string()]));
        assert_eq!(disk.read("d/live", 0, 10).expect("read"), b"v2");
        assert_eq!(disk.stats().power_losses, 1);
    }

    #[test]
    fn a_full_disk_applies_nothing_and_counts_the_rejection() {
        let mut disk = SimDisk::default();
        disk.inject(&DiskFault::Full { capacity_bytes: 10 });
        assert_eq!(disk.append("f", b"123456"), Ok(6));
        assert_eq!(disk.append("f", b"12345"), Err(FsError::DiskFull));
        assert_eq!(disk.append("g", b"12345"), Err(FsError::DiskFull));
        assert_eq!(disk.len("f"), Ok(6));
        assert_eq!(disk.list(""), Ok(vec!["f".to_string()]), "the failed append created no file");
        assert_eq!(disk.stats().disk_full_rejections, 2);
        disk.heal(DiskFaultKind::Full);
        assert_eq!(disk.append("f", b"12345"), Ok(11));
    }

    #[test]
    fn read_errors_hit_their_scope_only() {
        let mut disk = SimDisk::default();
        disk.append("log/a", b"a").expect("append");
        disk.append("other", b"b").expect("append");
        disk.inject(&DiskFault::ReadError { scope: ReadErrorScope::Paths(["log".to_string()].into()) });
        assert_eq!(disk.read("log/a", 0, 1), Err(FsError::Io { path: "log/a".into() }));
        assert_eq!(disk.read("other", 0, 1).as_deref(), Ok(&b"b"[..]));
        disk.inject(&DiskFault::ReadError { scope: ReadErrorScope::All });
        assert_eq!(disk.read("other", 0, 1), Err(FsError::Io { path: "other".into() }));
        assert_eq!(disk.stats().read_errors_injected, 2);
        disk.heal(DiskFaultKind::ReadError);
        assert_eq!(disk.read("log/a", 0, 1).as_deref(), Ok(&b"a"[..]));
    }

    #[test]
    fn latency_grows_with_bytes_syncs_and_a_slow_fault() {
        let mut disk = SimDisk::new(DiskLatency {
            op_base: Duration::from_micros(10),
            bytes_per_second: 1_000_000,
            sync_base: Duration::from_millis(1),
        });
        let append = DiskOp::Append { path: "f".into(), data: bytes::Bytes::from_static(&[0; 1000]) };
        assert_eq!(disk.op_latency(&append), Duration::from_micros(1010));
        disk.append("f", &[0; 1000]).expect("append");
        let sync = DiskOp::Sync { path: "f".into() };
        assert_eq!(disk.op_latency(&sync), Duration::from_micros(2010), "base + 1000 dirty bytes + flush");
        disk.inject(&DiskFault::Slow { factor: 10 });
        assert_eq!(disk.op_latency(&sync), Duration::from_micros(20100));
        disk.sync("f").expect("sync");
        assert_eq!(disk.stats().slow_ops, 1);
        disk.heal(DiskFaultKind::Slow);
        assert_eq!(disk.op_latency(&sync), Duration::from_micros(1010), "nothing dirty after the sync");
    }

    #[test]
    fn truncate_below_the_durable_length_is_undone_by_a_power_loss() {
        let mut disk = SimDisk::default();
        disk.append("f", b"0123456789").expect("append");
        disk.sync("f").expect("sync");
        disk.truncate("f", 4).expect("truncate");
        disk.append("f", b"xy").expect("append");
        assert_eq!(disk.read("f", 0, 100).expect("read"), b"0123xy");
        assert_eq!(
            disk.truncate("f", 7),
            Err(FsError::InvalidLength { path: "f".into(), len: 7, file_len: 6 })
        );
        let mut lost = disk.clone();
        lost.power_loss(&mut ChaCha8Rng::seed_from_u64(3));
        assert_eq!(lost.read("f", 0, 100).expect("read"), b"0123456789");
        disk.sync("f").expect("sync");
        disk.power_loss(&mut ChaCha8Rng::seed_from_u64(3));
        assert_eq!(disk.read("f", 0, 100).expect("read"), b"0123xy");
    }

    #[test]
    fn wipe_loses_everything_and_heals_faults() {
        let mut disk = SimDisk::default();
        disk.append("f", b"x").expect("append");
        disk.sync("f").expect("sync");
        disk.inject(&DiskFault::Slow { factor: 3 });
        disk.wipe();
        assert_eq!(disk.list(""), Ok(vec![]));
        assert_eq!(disk.used_bytes(), 0);
        assert!(disk.faults_active().is_empty());
        assert_eq!(disk.stats().wipes, 1);
    }

    #[test]
    fn paths_that_cross_files_or_name_directories_are_refused() {
        let mut disk = SimDisk::default();
        disk.append("a/b", b"x").expect("append");
        assert_eq!(disk.append("a", b"x"), Err(FsError::InvalidPath { path: "a".into() }));
        assert_eq!(disk.append("a/b/c", b"x"), Err(FsError::InvalidPath { path: "a/b/c".into() }));
        assert_eq!(disk.list("a/b"), Err(FsError::InvalidPath { path: "a/b".into() }));
        assert_eq!(disk.list("zz"), Err(FsError::NotFound { path: "zz".into() }));
        assert!(matches!(disk.append("../x", b"x"), Err(FsError::InvalidPath { .. })));
        assert_eq!(disk.stats().ops_failed, 5);
    }
}
