//! [`Log`]: a durable, segmented, append-only record log over the `Fs` seam, sans-IO.
//!
//! This module owns the on-disk format, the write path (batching, rotation, group sync, one
//! durability event per synced batch) and recovery (list the segments, scan every record, truncate
//! a torn or corrupt tail of the last segment, sync, report). It must never call an `Fs` itself,
//! read a clock or spawn: it emits one [`DiskOp`] at a time through [`Log::poll_request`] and
//! advances on the matching [`DiskReply`] handed to [`Log::handle_reply`].
//!
//! Usage contract (quinn-proto style):
//! - [`Log::open`] starts recovery. Drive it: `poll_request` -> execute -> `handle_reply`, and
//!   drain `poll_event` as you go. Recovery emits one [`LogEvent::Recovered`] per record, in id
//!   order, then [`LogEvent::Ready`]. Recovery pauses (no request) while `events_max` events wait.
//! - Once ready, [`Log::append`] assigns the next [`RecordId`] (dense, from 0) or refuses with a
//!   typed [`LogError`] (back-pressure at `records_pending_max` / `bytes_buffered_max`, a record
//!   over `record_bytes_max`). [`Log::sync`] asks for everything appended so far to become
//!   durable; [`LogEvent::Durable`] names each range of ids as it becomes durable, in order.
//! - At most one request is in flight: the driver needs no ordering rules of its own, and the
//!   log batches every record that arrives meanwhile into the next append (group commit).
//! - Any disk error is fatal ([`LogEvent::Failed`]): after a failed write or fsync the page cache
//!   state is unknown (PostgreSQL's "fsyncgate"), so the log stops and the owner reopens it, which
//!   recovers from what the disk really holds. Records not yet reported durable may then be lost.
//!
//! On-disk format: segment files `<dir>/<first record id, 20 digits>.seg`, each a sequence of
//! records `[payload length: u32 LE][crc32: u32 LE][payload]`, the CRC (crc32fast, IEEE) taken over
//! the record id (u64 LE) and the payload, so a zeroed, torn or misplaced record never checks out.
//! A segment holds at most `segment_bytes_max` bytes; the record that would cross it opens the
//! next segment, and the previous one is synced before the first byte reaches the new one, so after
//! any crash only the last segment can have a torn tail (an earlier damaged segment is corruption
//! and fails recovery instead of silently dropping durable records behind it).

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::fs::{DiskOp, DiskReply, FsError};

/// A record's position in the log: dense, from 0, never reused while the record survives.
pub type RecordId = u64;

/// Bytes before each payload: length and CRC.
pub const RECORD_HEADER_BYTES: usize = 8;

/// Limits and layout of one log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Directory holding the segments (a seam path).
    pub dir: String,
    /// A segment is rotated before it would exceed this many bytes.
    pub segment_bytes_max: u64,
    /// Largest payload accepted.
    pub record_bytes_max: u32,
    /// Records appended but not yet durable; `append` refuses beyond.
    pub records_pending_max: usize,
    /// Encoded bytes waiting to be handed to the disk; `append` refuses beyond.
    pub bytes_buffered_max: usize,
    /// Largest single append request (a batch of records).
    pub append_bytes_max: usize,
    /// Bytes asked for per read during recovery.
    pub read_chunk_bytes: usize,
    /// Events waiting for the caller at which recovery pauses.
    pub events_max: usize,
}

impl LogConfig {
    /// Production defaults below `dir`: 8 MiB segments, 1 MiB records, 4096 pending records,
    /// appends of up to 2 MiB (a batch must hold the largest record with its header).
    pub fn new(dir: impl Into<String>) -> LogConfig {
        LogConfig {
            dir: dir.into(),
            segment_bytes_max: 8 << 20,
            record_bytes_max: 1 << 20,
            records_pending_max: 4096,
            bytes_buffered_max: 4 << 20,
            append_bytes_max: 2 << 20,
            read_chunk_bytes: 64 << 10,
            events_max: 1024,
        }
    }

    fn validate(&self) -> Result<(), LogConfigError> {
        crate::fs::validate_path(&self.dir)
            .map_err(|_| LogConfigError::InvalidDir { dir: self.dir.clone() })?;
        let record_max = RECORD_HEADER_BYTES as u64 + u64::from(self.record_bytes_max);
        if self.segment_bytes_max < record_max {
            return Err(LogConfigError::SegmentTooSmall {
                segment_bytes_max: self.segment_bytes_max,
                record_max,
            });
        }
        if (self.bytes_buffered_max as u64) < record_max || (self.append_bytes_max as u64) < record_max {
            return Err(LogConfigError::BufferTooSmall { record_max });
        }
        for (name, value) in [
            ("records_pending_max", self.records_pending_max),
            ("read_chunk_bytes", self.read_chunk_bytes),
            ("events_max", self.events_max),
        ] {
            if value == 0 {
                return Err(LogConfigError::Zero { name });
            }
        }
        Ok(())
    }
}

/// A [`LogConfig`] that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LogConfigError {
    #[error("log directory {dir:?} is not a valid seam path")]
    InvalidDir { dir: String },
    #[error("segment_bytes_max {segment_bytes_max} cannot hold the largest record ({record_max} bytes)")]
    SegmentTooSmall { segment_bytes_max: u64, record_max: u64 },
    #[error("bytes_buffered_max and append_bytes_max must hold the largest record ({record_max} bytes)")]
    BufferTooSmall { record_max: u64 },
    #[error("{name} must be at least 1")]
    Zero { name: &'static str },
}

/// Why [`Log::append`] refused a record. Nothing was assigned or written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("the log is still recovering")]
    NotReady,
    #[error("the log failed and must be reopened")]
    Failed,
    #[error("record of {len} bytes exceeds the {max} byte limit")]
    RecordTooLarge { len: usize, max: u32 },
    /// Too much is waiting: sync and wait for `Durable` events, then retry.
    #[error("back-pressure: {records_pending} records pending, {bytes_buffered} bytes buffered")]
    Backpressure { records_pending: usize, bytes_buffered: usize },
}

/// Why the log stopped ([`LogEvent::Failed`]). Reopening recovers from what the disk holds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LogFailure {
    #[error("disk error: {0}")]
    Disk(FsError),
    /// A segment other than the last is damaged: durable records would be lost behind it.
    #[error("{path}: corrupt record at byte {offset} in a segment that is not the last")]
    CorruptSegment { path: String, offset: u64 },
    /// A segment does not start where the previous one ended.
    #[error("{path}: expected first record {expected}, the name says {found}")]
    SegmentGap { path: String, expected: RecordId, found: RecordId },
    /// The file's length after an append is not what the log wrote (someone else writes to it).
    #[error("{path}: length {found} after an append, expected {expected}")]
    UnexpectedLength { path: String, expected: u64, found: u64 },
}

/// What the log tells its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogEvent {
    /// A record found by recovery, in id order.
    Recovered { record_id: RecordId, payload: Bytes },
    /// Recovery is done: every recovered record is durable, `append` works.
    Ready { record_id_next: RecordId, records_recovered: u64, tail_bytes_truncated: u64 },
    /// Records `record_id_first..=record_id_last` are durable (and so is every earlier one).
    Durable { record_id_first: RecordId, record_id_last: RecordId },
    /// The log stopped; no more requests. Reopen to recover.
    Failed(LogFailure),
}

/// Counters of everything the log did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LogStats {
    pub records_appended: u64,
    pub payload_bytes_appended: u64,
    pub append_requests: u64,
    pub sync_requests: u64,
    pub records_durable: u64,
    pub segments_created: u64,
    pub segments_recovered: u64,
    pub records_recovered: u64,
    /// Last segments that ended in an incomplete record (a torn write), truncated.
    pub torn_tails_truncated: u64,
    /// Last segments that ended in a record failing its length or CRC check, truncated.
    pub corrupt_tails_truncated: u64,
    pub tail_bytes_truncated: u64,
    pub backpressure_rejections: u64,
    pub oversize_rejections: u64,
    /// Names in the directory that are not segments (left alone).
    pub foreign_names_ignored: u64,
}

/// A record encoded and waiting for the disk.
#[derive(Debug)]
struct Pending {
    record_id: RecordId,
    segment_first: RecordId,
    encoded: Bytes,
}

/// The request in flight and what its reply means.
#[derive(Debug)]
enum InFlight {
    List,
    Read,
    TailLen,
    TailTruncate { tail_bytes: u64 },
    RecoverySync,
    Append { segment_first: RecordId, record_id_last: RecordId, len_expected: u64, path: String },
    Sync { record_id_durable_next: RecordId },
}

/// Recovery's position in the segments.
#[derive(Debug)]
struct Scan {
    /// First record ids of the segments found, ascending.
    segments: Vec<RecordId>,
    index: usize,
    /// Next byte to read from the current segment.
    read_offset: u64,
    /// End of the last valid record in the current segment.
    valid_len: u64,
    /// Bytes read but not yet parsed into a whole record (less than one record).
    buffer: BytesMut,
}

/// What is left of recovery once every segment is scanned: make the last one clean and durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FinishStep {
    /// Ask the damaged segment's length (to count the bytes cut).
    Len,
    Truncate {
        tail_bytes: u64,
    },
    Sync,
}

#[derive(Debug)]
enum Phase {
    Listing,
    Scanning(Scan),
    Finishing { segment_first: RecordId, valid_len: u64, step: FinishStep },
    Ready,
    Failed,
}

/// The durable segment log. See the module doc for the contract.
#[derive(Debug)]
pub struct Log {
    config: LogConfig,
    phase: Phase,
    in_flight: Option<InFlight>,
    events: VecDeque<LogEvent>,
    stats: LogStats,
    record_id_next: RecordId,
    /// Every id below it is written to the disk (its append replied).
    record_id_written_next: RecordId,
    /// Every id below it is durable.
    record_id_durable_next: RecordId,
    /// Durability was asked for every id below it.
    sync_target: RecordId,
    pending: VecDeque<Pending>,
    bytes_buffered: usize,
    /// The segment new records go to: its first id and the bytes assigned to it (written plus
    /// pending).
    active_segment: Option<(RecordId, u64)>,
    /// The segment the last bytes were written to, and its length on disk.
    written_segment: Option<(RecordId, u64)>,
    /// Whether `written_segment` holds records not yet synced.
    written_unsynced: bool,
}

/// The CRC of a record: over its id and payload.
fn record_crc(record_id: RecordId, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&record_id.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// A record's bytes on disk.
pub fn encode_record(record_id: RecordId, payload: &[u8]) -> Bytes {
    let len = u32::try_from(payload.len()).expect("payload length checked against record_bytes_max");
    let mut encoded = BytesMut::with_capacity(RECORD_HEADER_BYTES + payload.len());
    encoded.extend_from_slice(&len.to_le_bytes());
    encoded.extend_from_slice(&record_crc(record_id, payload).to_le_bytes());
    encoded.extend_from_slice(payload);
    assert_eq!(encoded.len(), RECORD_HEADER_BYTES + payload.len());
    encoded.freeze()
}

/// The file name of the segment whose first record is `first`.
pub fn segment_name(first: RecordId) -> String {
    format!("{first:020}.seg")
}

/// The first record id a segment file name stands for, if it is one.
fn parse_segment_name(name: &str) -> Option<RecordId> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What the front of a scan buffer holds.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// A valid record of `encoded_len` bytes.
    Record { encoded_len: usize, payload: Bytes },
    /// An incomplete record: more bytes needed (or, at the end of the file, a torn write).
    NeedMore,
    /// A length over the limit or a CRC mismatch.
    Corrupt,
}

/// Parses the record `record_id` at the front of `buffer`.
fn parse_record(buffer: &[u8], record_id: RecordId, record_bytes_max: u32) -> Parsed {
    let Some(header) = buffer.get(..RECORD_HEADER_BYTES) else { return Parsed::NeedMore };
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if len > record_bytes_max {
        return Parsed::Corrupt;
    }
    let encoded_len = RECORD_HEADER_BYTES + len as usize;
    let Some(payload) = buffer.get(RECORD_HEADER_BYTES..encoded_len) else { return Parsed::NeedMore };
    if record_crc(record_id, payload) != crc {
        return Parsed::Corrupt;
    }
    Parsed::Record { encoded_len, payload: Bytes::copy_from_slice(payload) }
}

impl Log {
    /// A log over `config.dir`, starting recovery.
    pub fn open(config: LogConfig) -> Result<Log, LogConfigError> {
        config.validate()?;
        Ok(Log {
            config,
            phase: Phase::Listing,
            in_flight: None,
            events: VecDeque::new(),
            stats: LogStats::default(),
            record_id_next: 0,
            record_id_written_next: 0,
            record_id_durable_next: 0,
            sync_target: 0,
            pending: VecDeque::new(),
            bytes_buffered: 0,
            active_segment: None,
            written_segment: None,
            written_unsynced: false,
        })
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn stats(&self) -> &LogStats {
        &self.stats
    }

    /// Whether recovery is done and `append` works.
    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    pub fn is_failed(&self) -> bool {
        matches!(self.phase, Phase::Failed)
    }

    /// The id the next appended record gets.
    pub fn record_id_next(&self) -> RecordId {
        self.record_id_next
    }

    /// Every record below this id is on the disk (in its page cache at least).
    pub fn record_id_written_next(&self) -> RecordId {
        self.record_id_written_next
    }

    /// Every record below this id is durable.
    pub fn record_id_durable_next(&self) -> RecordId {
        self.record_id_durable_next
    }

    /// Records appended and not yet durable.
    pub fn records_pending(&self) -> usize {
        usize::try_from(self.record_id_next - self.record_id_durable_next)
            .expect("bounded by records_pending_max")
    }

    /// Encoded bytes waiting to be handed to the disk.
    pub fn bytes_buffered(&self) -> usize {
        self.bytes_buffered
    }

    /// Whether a request waits for its reply.
    pub fn has_request_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Appends a record; it becomes durable after a later [`Log::sync`] completes.
    pub fn append(&mut self, payload: Bytes) -> Result<RecordId, LogError> {
        match self.phase {
            Phase::Ready => {}
            Phase::Failed => return Err(LogError::Failed),
            Phase::Listing | Phase::Scanning(_) | Phase::Finishing { .. } => return Err(LogError::NotReady),
        }
        if payload.len() > self.config.record_bytes_max as usize {
            self.stats.oversize_rejections += 1;
            return Err(LogError::RecordTooLarge { len: payload.len(), max: self.config.record_bytes_max });
        }
        let encoded_len = RECORD_HEADER_BYTES + payload.len();
        if self.records_pending() >= self.config.records_pending_max
            || self.bytes_buffered + encoded_len > self.config.bytes_buffered_max
        {
            self.stats.backpressure_rejections += 1;
            return Err(LogError::Backpressure {
                records_pending: self.records_pending(),
                bytes_buffered: self.bytes_buffered,
            });
        }
        let record_id = self.record_id_next;
        let segment_first = match self.active_segment {
            Some((first, assigned))
                if assigned == 0 || assigned + encoded_len as u64 <= self.config.segment_bytes_max =>
            {
                first
            }
            _ => {
                self.stats.segments_created += 1;
                self.active_segment = Some((record_id, 0));
                record_id
            }
        };
        let (_, assigned) = self.active_segment.as_mut().expect("an active segment was just ensured");
        *assigned += encoded_len as u64;
        assert!(*assigned <= self.config.segment_bytes_max, "a segment never exceeds its bound");
        self.pending.push_back(Pending {
            record_id,
            segment_first,
            encoded: encode_record(record_id, &payload),
        });
        self.bytes_buffered += encoded_len;
        self.record_id_next += 1;
        self.stats.records_appended += 1;
        self.stats.payload_bytes_appended += payload.len() as u64;
        assert!(self.bytes_buffered <= self.config.bytes_buffered_max);
        assert!(self.records_pending() <= self.config.records_pending_max);
        Ok(record_id)
    }

    /// Asks for every record appended so far to become durable ([`LogEvent::Durable`] follows).
    /// Nothing to do before the log is ready: recovery makes what it finds durable itself.
    pub fn sync(&mut self) {
        if self.is_ready() {
            self.sync_target = self.sync_target.max(self.record_id_next);
        }
    }

    /// The next event for the owner, if any.
    pub fn poll_event(&mut self) -> Option<LogEvent> {
        self.events.pop_front()
    }

    /// The seam path of the segment whose first record is `first`.
    pub fn segment_path(&self, first: RecordId) -> String {
        format!("{}/{}", self.config.dir, segment_name(first))
    }

    /// The next disk request, if one is due and none is in flight.
    pub fn poll_request(&mut self) -> Option<DiskOp> {
        if self.in_flight.is_some() {
            return None;
        }
        let (op, in_flight) = match &self.phase {
            Phase::Failed => return None,
            Phase::Listing => (DiskOp::List { dir: self.config.dir.clone() }, InFlight::List),
            Phase::Scanning(scan) => {
                // Recovery waits for the owner to take what it found: memory stays bounded.
                if self.events.len() >= self.config.events_max {
                    return None;
                }
                let path = self.segment_path(scan.segments[scan.index]);
                (
                    DiskOp::Read { path, offset: scan.read_offset, len_max: self.config.read_chunk_bytes },
                    InFlight::Read,
                )
            }
            Phase::Finishing { segment_first, valid_len, step } => {
                let path = self.segment_path(*segment_first);
                match *step {
                    FinishStep::Len => (DiskOp::Len { path }, InFlight::TailLen),
                    FinishStep::Truncate { tail_bytes } => {
                        (DiskOp::Truncate { path, len: *valid_len }, InFlight::TailTruncate { tail_bytes })
                    }
                    FinishStep::Sync => (DiskOp::Sync { path }, InFlight::RecoverySync),
                }
            }
            Phase::Ready => self.next_write_request()?,
        };
        self.in_flight = Some(in_flight);
        Some(op)
    }

    /// The write path's next request: a sync (before a rotation, or asked for and due), else a
    /// batch of pending records of one segment.
    fn next_write_request(&mut self) -> Option<(DiskOp, InFlight)> {
        if let Some((segment_first, _)) = self.written_segment
            && self.written_unsynced
        {
            // The previous segment is synced before the first byte reaches the next one, so only
            // the last segment can ever have a torn tail.
            let rotating = self.pending.front().is_some_and(|next| next.segment_first != segment_first);
            // Sync as soon as what was asked for is written; later records wait for the next sync,
            // so a steady stream of appends never starves a requested sync.
            let sync_due = self.sync_target > self.record_id_durable_next
                && self.record_id_written_next >= self.sync_target;
            if rotating || sync_due {
                self.stats.sync_requests += 1;
                let op = DiskOp::Sync { path: self.segment_path(segment_first) };
                return Some((op, InFlight::Sync { record_id_durable_next: self.record_id_written_next }));
            }
        }
        let first = self.pending.front()?;
        let segment_first = first.segment_first;
        let mut record_id_last = first.record_id;
        let mut data = BytesMut::new();
        while let Some(next) = self.pending.front() {
            let fits = data.is_empty() || data.len() + next.encoded.len() <= self.config.append_bytes_max;
            if next.segment_first != segment_first || !fits {
                break;
            }
            let next = self.pending.pop_front().expect("the front exists");
            record_id_last = next.record_id;
            data.extend_from_slice(&next.encoded);
        }
        assert!(!data.is_empty());
        assert!(data.len() <= self.bytes_buffered);
        self.bytes_buffered -= data.len();
        let len_on_disk = match self.written_segment {
            Some((written_first, len)) if written_first == segment_first => len,
            _ => 0,
        };
        let len_expected = len_on_disk + data.len() as u64;
        self.stats.append_requests += 1;
        let path = self.segment_path(segment_first);
        let op = DiskOp::Append { path: path.clone(), data: data.freeze() };
        Some((op, InFlight::Append { segment_first, record_id_last, len_expected, path }))
    }

    /// Feeds the reply to the request last returned by `poll_request`.
    ///
    /// # Panics
    /// If no request is in flight or the reply answers another kind of request: a driver bug.
    pub fn handle_reply(&mut self, reply: DiskReply) {
        let in_flight = self.in_flight.take().expect("handle_reply without a request in flight");
        match (in_flight, reply) {
            (InFlight::List, DiskReply::Listed { names }) => self.on_listed(names),
            // A log that never wrote has no directory yet.
            (InFlight::List, DiskReply::Failed(FsError::NotFound { .. })) => self.on_listed(Vec::new()),
            (InFlight::Read, DiskReply::Read { data }) => self.on_read(&data),
            (InFlight::TailLen, DiskReply::Len { len }) => {
                let Phase::Finishing { valid_len, step, .. } = &mut self.phase else {
                    unreachable!("finishing")
                };
                assert!(len >= *valid_len, "a segment is at least as long as its valid records");
                *step = FinishStep::Truncate { tail_bytes: len - *valid_len };
            }
            (InFlight::TailTruncate { tail_bytes }, DiskReply::Truncated) => {
                self.stats.tail_bytes_truncated += tail_bytes;
                let Phase::Finishing { step, .. } = &mut self.phase else { unreachable!("finishing") };
                *step = FinishStep::Sync;
            }
            (InFlight::RecoverySync, DiskReply::Synced) => self.become_ready(),
            (
                InFlight::Append { segment_first, record_id_last, len_expected, path },
                DiskReply::Appended { len },
            ) => {
                if len != len_expected {
                    self.fail(LogFailure::UnexpectedLength { path, expected: len_expected, found: len });
                    return;
                }
                assert!(record_id_last >= self.record_id_written_next, "appends complete in id order");
                assert!(record_id_last < self.record_id_next, "only assigned ids are written");
                self.record_id_written_next = record_id_last + 1;
                self.written_segment = Some((segment_first, len));
                self.written_unsynced = true;
            }
            (InFlight::Sync { record_id_durable_next }, DiskReply::Synced) => {
                assert!(
                    record_id_durable_next > self.record_id_durable_next,
                    "a sync makes something durable"
                );
                assert!(
                    record_id_durable_next <= self.record_id_written_next,
                    "only written records become durable"
                );
                let record_id_first = self.record_id_durable_next;
                self.record_id_durable_next = record_id_durable_next;
                self.stats.records_durable += record_id_durable_next - record_id_first;
                // One request in flight: nothing was written while the sync ran.
                assert_eq!(self.record_id_written_next, record_id_durable_next);
                self.written_unsynced = false;
                self.push_durable(record_id_first, record_id_durable_next - 1);
            }
            (_, DiskReply::Failed(error)) => self.fail(LogFailure::Disk(error)),
            (in_flight, reply) => panic!("reply {reply:?} does not answer {in_flight:?}: a driver bug"),
        }
    }

    fn on_listed(&mut self, names: Vec<String>) {
        let mut segments = Vec::new();
        for name in &names {
            match parse_segment_name(name) {
                Some(first) => segments.push(first),
                None => self.stats.foreign_names_ignored += 1,
            }
        }
        segments.sort_unstable();
        segments.dedup();
        let Some(first) = segments.first().copied() else {
            self.become_ready();
            return;
        };
        self.record_id_next = first;
        self.phase = Phase::Scanning(Scan {
            segments,
            index: 0,
            read_offset: 0,
            valid_len: 0,
            buffer: BytesMut::new(),
        });
    }

    fn on_read(&mut self, data: &[u8]) {
        let Phase::Scanning(scan) = &mut self.phase else { unreachable!("reads are issued while scanning") };
        let segment_first = scan.segments[scan.index];
        let is_last = scan.index + 1 == scan.segments.len();
        if scan.read_offset == 0 && segment_first != self.record_id_next {
            let path = self.segment_path(segment_first);
            let expected = self.record_id_next;
            self.fail(LogFailure::SegmentGap { path, expected, found: segment_first });
            return;
        }
        let end_of_file = data.is_empty();
        scan.read_offset += data.len() as u64;
        scan.buffer.extend_from_slice(data);
        let mut damage = None;
        loop {
            match parse_record(&scan.buffer, self.record_id_next, self.config.record_bytes_max) {
                Parsed::Record { encoded_len, payload } => {
                    let _ = scan.buffer.split_to(encoded_len);
                    scan.valid_len += encoded_len as u64;
                    self.events.push_back(LogEvent::Recovered { record_id: self.record_id_next, payload });
                    self.record_id_next += 1;
                    self.stats.records_recovered += 1;
                }
                Parsed::NeedMore if end_of_file && !scan.buffer.is_empty() => {
                    damage = Some(false);
                    break;
                }
                Parsed::NeedMore => break,
                Parsed::Corrupt => {
                    damage = Some(true);
                    break;
                }
            }
        }
        assert!(scan.valid_len + scan.buffer.len() as u64 == scan.read_offset || damage.is_some());
        if damage.is_none() && !end_of_file {
            return;
        }
        self.stats.segments_recovered += 1;
        let valid_len = scan.valid_len;
        if let Some(corrupt) = damage {
            if !is_last {
                let path = self.segment_path(segment_first);
                self.fail(LogFailure::CorruptSegment { path, offset: valid_len });
                return;
            }
            if corrupt {
                self.stats.corrupt_tails_truncated += 1;
            } else {
                self.stats.torn_tails_truncated += 1;
            }
            self.phase = Phase::Finishing { segment_first, valid_len, step: FinishStep::Len };
        } else if is_last {
            self.phase = Phase::Finishing { segment_first, valid_len, step: FinishStep::Sync };
        } else {
            scan.index += 1;
            scan.read_offset = 0;
            scan.valid_len = 0;
            assert!(scan.buffer.is_empty());
        }
    }

    /// Recovery is over: what was found is durable; appends go on in the last segment.
    fn become_ready(&mut self) {
        if let Phase::Finishing { segment_first, valid_len, .. } = self.phase {
            self.active_segment = Some((segment_first, valid_len));
            self.written_segment = Some((segment_first, valid_len));
        }
        self.record_id_written_next = self.record_id_next;
        self.record_id_durable_next = self.record_id_next;
        self.sync_target = self.record_id_next;
        self.written_unsynced = false;
        self.phase = Phase::Ready;
        self.events.push_back(LogEvent::Ready {
            record_id_next: self.record_id_next,
            records_recovered: self.stats.records_recovered,
            tail_bytes_truncated: self.stats.tail_bytes_truncated,
        });
    }

    /// Queues a durability event, merged into a waiting one it continues (the queue stays bounded).
    fn push_durable(&mut self, record_id_first: RecordId, record_id_last: RecordId) {
        assert!(record_id_first <= record_id_last);
        if let Some(LogEvent::Durable { record_id_last: last, .. }) = self.events.back_mut()
            && *last + 1 == record_id_first
        {
            *last = record_id_last;
            return;
        }
        self.events.push_back(LogEvent::Durable { record_id_first, record_id_last });
    }

    /// Stops the log: nothing more is written; the owner reopens it.
    fn fail(&mut self, failure: LogFailure) {
        self.phase = Phase::Failed;
        self.pending.clear();
        self.bytes_buffered = 0;
        self.events.push_back(LogEvent::Failed(failure));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{Fs, OsFs, apply};

    /// Runs the log's requests against `fs` until it has none, collecting its events.
    fn drive(log: &mut Log, fs: &mut dyn Fs, events: &mut Vec<LogEvent>) {
        loop {
            events.extend(std::iter::from_fn(|| log.poll_event()));
            let Some(op) = log.poll_request() else { break };
            log.handle_reply(apply(fs, &op));
        }
        events.extend(std::iter::from_fn(|| log.poll_event()));
    }

    fn small_config() -> LogConfig {
        LogConfig {
            segment_bytes_max: 64,
            record_bytes_max: 40,
            records_pending_max: 8,
            bytes_buffered_max: 256,
            append_bytes_max: 64,
            read_chunk_bytes: 16,
            events_max: 4,
            ..LogConfig::new("log")
        }
    }

    #[test]
    fn records_survive_a_restart_on_the_real_filesystem() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut fs = OsFs::new(dir.path()).expect("root");
        let mut log = Log::open(small_config()).expect("config");
        let mut events = Vec::new();
        drive(&mut log, &mut fs, &mut events);
        assert_eq!(
            events,
            vec![LogEvent::Ready { record_id_next: 0, records_recovered: 0, tail_bytes_truncated: 0 }]
        );
        for index in 0..6u8 {
            assert_eq!(log.append(Bytes::from(vec![index; 20])), Ok(u64::from(index)));
        }
        log.sync();
        events.clear();
        drive(&mut log, &mut fs, &mut events);
        // One durability event per synced batch (a rotation syncs the old segment first), in order,
        // together covering exactly the six records.
        let durable: Vec<(RecordId, RecordId)> = events
            .iter()
            .filter_map(|event| match event {
                LogEvent::Durable { record_id_first, record_id_last } => {
                    Some((*record_id_first, *record_id_last))
                }
                _ => None,
            })
            .collect();
        assert_eq!(durable.first().map(|range| range.0), Some(0), "{durable:?}");
        assert_eq!(durable.last().map(|range| range.1), Some(5), "{durable:?}");
        assert!(durable.windows(2).all(|pair| pair[0].1 + 1 == pair[1].0), "contiguous: {durable:?}");
        assert!(
            log.stats().segments_created >= 3,
            "28-byte records rotate 64-byte segments: {:?}",
            log.stats()
        );
        let mut reopened = Log::open(small_config()).expect("config");
        events.clear();
        drive(&mut reopened, &mut fs, &mut events);
        let recovered: Vec<Bytes> = events
            .iter()
            .filter_map(|event| match event {
                LogEvent::Recovered { payload, .. } => Some(payload.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(recovered, (0..6u8).map(|index| Bytes::from(vec![index; 20])).collect::<Vec<_>>());
        assert!(reopened.is_ready());
        assert_eq!(reopened.append(Bytes::from_static(b"more")), Ok(6));
    }

    #[test]
    fn append_refuses_oversize_records_and_pushes_back_at_the_bound() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut fs = OsFs::new(dir.path()).expect("root");
        let mut log = Log::open(small_config()).expect("config");
        assert_eq!(log.append(Bytes::from_static(b"x")), Err(LogError::NotReady));
        drive(&mut log, &mut fs, &mut Vec::new());
        assert_eq!(log.append(Bytes::from(vec![0; 41])), Err(LogError::RecordTooLarge { len: 41, max: 40 }));
        for _ in 0..8 {
            log.append(Bytes::from_static(b"x")).expect("below the bound");
        }
        assert_eq!(
            log.append(Bytes::from_static(b"x")),
            Err(LogError::Backpressure { records_pending: 8, bytes_buffered: 72 })
        );
        assert_eq!(log.stats().backpressure_rejections, 1);
        log.sync();
        drive(&mut log, &mut fs, &mut Vec::new());
        assert_eq!(log.records_pending(), 0);
        log.append(Bytes::from_static(b"x")).expect("room again after the sync");
    }

    #[test]
    fn configs_that_cannot_hold_a_record_are_refused() {
        assert_eq!(LogConfig::new("log").validate(), Ok(()), "the defaults are valid");
        let config = LogConfig { segment_bytes_max: 10, ..small_config() };
        assert_eq!(
            Log::open(config).err(),
            Some(LogConfigError::SegmentTooSmall { segment_bytes_max: 10, record_max: 48 })
        );
        let config = LogConfig { dir: "/abs".into(), ..small_config() };
        assert!(matches!(Log::open(config), Err(LogConfigError::InvalidDir { .. })));
        let config = LogConfig { events_max: 0, ..small_config() };
        assert_eq!(Log::open(config).err(), Some(LogConfigError::Zero { name: "events_max" }));
    }

    #[test]
    fn the_record_format_rejects_torn_zeroed_and_misplaced_records() {
        let encoded = encode_record(7, b"payload");
        assert_eq!(
            parse_record(&encoded, 7, 40),
            Parsed::Record { encoded_len: encoded.len(), payload: Bytes::from_static(b"payload") }
        );
        assert_eq!(parse_record(&encoded[..encoded.len() - 1], 7, 40), Parsed::NeedMore);
        assert_eq!(parse_record(&encoded, 8, 40), Parsed::Corrupt, "the id is in the CRC");
        assert_eq!(parse_record(&[0; 16], 7, 40), Parsed::Corrupt, "a zeroed tail fails its CRC");
        assert_eq!(parse_record(&encoded, 7, 3), Parsed::Corrupt, "a length past the limit");
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("42.seg"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.seg"), None);
    }
}
