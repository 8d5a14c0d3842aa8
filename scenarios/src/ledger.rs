//! The ledger: what every publisher invoked and how each publish completed (Jepsen's invoke ->
//! ok | fail | info), what every observer received and since when it was subscribed, and what
//! the system declared it dropped. The checkers (`crate::checkers`) read it after the run.
//!
//! It must scale to a million publishers: sequence numbers are dense per publisher, so per-message
//! facts live in bitsets that collapse their fully-set prefix ([`SeqSet`]), and nothing is stored
//! per message beyond a few bits (rare outcomes such as failures live in sparse sorted lists).
//! The ledger never reads a clock: every call carries its time. Calls from the world must be in
//! the order the events happened per publisher and per observer; a call that breaks the rules
//! (a seq that skips, an ack for a publish never invoked) is a driver bug and panics.

use std::collections::BTreeMap;

use edgeproof_system::Time;
use edgeproof_system::mqtt::QoS;
use edgeproof_system::mqtt::topic::filter_matches;
use rustc_hash::FxHashMap;

use hdrhistogram::Histogram;

use crate::latency::{LatencyRecorder, new_histogram};
use crate::series::{Series, SeriesEvent};
use crate::stamp::Stamp;

/// A device's bounded pending queue was full; the newest sample was dropped before publishing.
pub const DROP_DEVICE_QUEUE_FULL: &str = "device_queue_full";
/// A broker's per-subscriber queue limit was reached (policy None or DropOldest).
pub const DROP_QUEUE_FULL: &str = "queue_full";
/// The broker's memory bound rejected a publish (PUBACK 0x97 quota exceeded).
pub const DROP_QUOTA_EXCEEDED: &str = "quota_exceeded";
/// A message's expiry interval passed before it could be delivered.
pub const DROP_MESSAGE_EXPIRED: &str = "message_expired";
/// A session expired with messages still queued for it.
pub const DROP_SESSION_EXPIRED: &str = "session_expired";
/// A message was larger than the receiver's maximum packet size.
pub const DROP_PACKET_TOO_LARGE: &str = "packet_too_large";
/// Every drop reason the system may declare; scenario files may only allow these.
pub const KNOWN_DROP_REASONS: &[&str] = &[
    DROP_DEVICE_QUEUE_FULL,
    DROP_QUEUE_FULL,
    DROP_QUOTA_EXCEEDED,
    DROP_MESSAGE_EXPIRED,
    DROP_SESSION_EXPIRED,
    DROP_PACKET_TOO_LARGE,
    DROP_REPUBLISH_QUEUE_FULL,
    DROP_REPUBLISH_REFUSED,
];
/// A republisher's destination queue was full (a QoS 0 source message beyond its window).
pub const DROP_REPUBLISH_QUEUE_FULL: &str = "republish_queue_full";
/// A republisher's destination refused the copy (PUBACK >= 0x80 or too large for it).
pub const DROP_REPUBLISH_REFUSED: &str = "republish_refused";

/// How many example witnesses each anomaly keeps (the counts are always exact).
pub const WITNESS_LIMIT: usize = 5;

/// A set of sequence numbers that is dense in practice: an exact fully-present prefix plus bits
/// above it. An in-order stream costs no heap at all however long it runs; a gap costs one bit per
/// seq between the gap and the highest seq present, and the bits go away once the gap fills.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeqSet {
    /// Every seq below `prefix` is in the set.
    prefix: u64,
    /// Word index of `words[0]`; `base_word * 64 <= prefix` whenever `words` is not empty.
    base_word: u64,
    /// Bit `i` of `words[w]` is seq `(base_word + w) * 64 + i` (bits below `prefix` are ignored).
    words: Vec<u64>,
    /// Number of seqs in the set.
    count: u64,
}

impl SeqSet {
    /// An empty set.
    pub const fn new() -> SeqSet {
        SeqSet { prefix: 0, base_word: 0, words: Vec::new(), count: 0 }
    }

    /// Adds `seq`; true when it was not in the set before.
    pub fn insert(&mut self, seq: u64) -> bool {
        if self.contains(seq) {
            return false;
        }
        self.count += 1;
        if seq == self.prefix && self.words.is_empty() {
            // The common case: the next seq in order.
            self.prefix += 1;
            return true;
        }
        if self.words.is_empty() {
            self.base_word = self.prefix / 64;
        }
        assert!(seq >= self.prefix && seq / 64 >= self.base_word);
        let index = usize::try_from(seq / 64 - self.base_word).expect("seq span fits memory");
        if index >= self.words.len() {
            self.words.resize(index + 1, 0);
        }
        self.words[index] |= 1 << (seq % 64);
        if seq == self.prefix {
            self.advance_prefix();
        }
        assert!(self.contains(seq));
        true
    }

    /// Moves the prefix over the run of present seqs starting at it, then frees words below it.
    fn advance_prefix(&mut self) {
        loop {
            let index = (self.prefix / 64 - self.base_word) as usize;
            let Some(bits) = self.words.get(index) else { break };
            let run = u64::from((!(bits >> (self.prefix % 64))).trailing_zeros());
            self.prefix += run;
            if run == 0 || !self.prefix.is_multiple_of(64) {
                break;
            }
        }
        let below =
            usize::try_from(self.prefix / 64 - self.base_word).unwrap_or(usize::MAX).min(self.words.len());
        self.words.drain(..below);
        self.base_word += below as u64;
        // Nothing left above the prefix: give the memory back.
        if self.words.len() == 1 && self.words[0] >> (self.prefix % 64) == 0 {
            self.words = Vec::new();
        }
        assert!(self.words.is_empty() || self.base_word * 64 <= self.prefix);
    }

    /// Whether `seq` is in the set.
    pub fn contains(&self, seq: u64) -> bool {
        if seq < self.prefix {
            return true;
        }
        let word = seq / 64;
        if word < self.base_word {
            return false;
        }
        usize::try_from(word - self.base_word)
            .ok()
            .and_then(|index| self.words.get(index))
            .is_some_and(|bits| bits & (1 << (seq % 64)) != 0)
    }

    /// Number of seqs in the set.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of heap this set holds (zero for an in-order stream).
    pub fn heap_bytes(&self) -> usize {
        self.words.capacity() * 8
    }
}

/// A sparse sorted set of seqs, for outcomes that are rare (failed, indeterminate, dropped).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SparseSeqs(Vec<u64>);

impl SparseSeqs {
    fn insert(&mut self, seq: u64) -> bool {
        // Seqs mostly arrive in order, so the common case is a push.
        if self.0.last().is_none_or(|last| *last < seq) {
            self.0.push(seq);
            return true;
        }
        match self.0.binary_search(&seq) {
            Ok(_) => false,
            Err(position) => {
                self.0.insert(position, seq);
                true
            }
        }
    }

    pub(crate) fn contains(&self, seq: u64) -> bool {
        self.0.binary_search(&seq).is_ok()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().copied()
    }
}

/// Many short strings in one buffer: 8 bytes of overhead per string instead of a heap allocation.
#[derive(Clone, Debug, Default)]
struct StrArena {
    text: String,
    ends: Vec<u64>,
}

impl StrArena {
    fn push(&mut self, value: &str) -> u32 {
        self.text.push_str(value);
        self.ends.push(self.text.len() as u64);
        u32::try_from(self.ends.len() - 1).expect("at most 4 billion strings")
    }

    fn get(&self, id: u32) -> &str {
        let id = id as usize;
        let start = if id == 0 { 0 } else { self.ends[id - 1] as usize };
        &self.text[start..self.ends[id] as usize]
    }

    fn len(&self) -> usize {
        self.ends.len()
    }
}

/// Interned topic names: each name stored once in an arena, found through a hash table of ids
/// (hashbrown's `HashTable`, so the table holds 4-byte ids and not a second copy of every name).
#[derive(Clone, Default)]
struct TopicTable {
    names: StrArena,
    index: hashbrown::HashTable<TopicId>,
}

impl std::fmt::Debug for TopicTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TopicTable({} topics)", self.names.len())
    }
}

impl TopicTable {
    fn hash(topic: &str) -> u64 {
        use std::hash::BuildHasher as _;
        rustc_hash::FxBuildHasher.hash_one(topic)
    }

    fn find(&self, topic: &str) -> Option<TopicId> {
        self.index.find(Self::hash(topic), |id| self.names.get(*id) == topic).copied()
    }

    fn intern(&mut self, topic: &str) -> TopicId {
        if let Some(id) = self.find(topic) {
            return id;
        }
        let id = self.names.push(topic);
        let names = &self.names;
        self.index.insert_unique(Self::hash(topic), id, |id| Self::hash(names.get(*id)));
        assert_eq!(self.names.get(id), topic);
        id
    }

    fn name(&self, id: TopicId) -> &str {
        self.names.get(id)
    }
}

/// The first seq a publisher invoked at or after each subscription boundary: almost always one or
/// two boundaries, kept inline; more spill to the heap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct BoundarySeqs {
    inline: [u64; 2],
    len: u32,
    // Boxed to keep the common case at 32 bytes: this exists once per publisher.
    #[allow(clippy::box_collection)]
    spill: Option<Box<Vec<u64>>>,
}

impl BoundarySeqs {
    fn len(&self) -> usize {
        self.len as usize
    }

    fn push(&mut self, seq: u64) {
        match self.len {
            0 | 1 => self.inline[self.len as usize] = seq,
            _ => self.spill.get_or_insert_with(Default::default).push(seq),
        }
        self.len += 1;
        assert_eq!(self.len(), self.len().min(2) + self.spill.as_ref().map_or(0, |spill| spill.len()));
    }

    fn get(&self, index: usize) -> Option<u64> {
        if index >= self.len() {
            return None;
        }
        Some(if index < 2 { self.inline[index] } else { self.spill.as_ref()?[index - 2] })
    }
}

/// An observer in the ledger: a subscriber, a dataflow output, a cloud sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObserverId(u32);

impl ObserverId {
    /// Position of the observer in registration order.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Interned topic id.
type TopicId = u32;

/// The topic and QoS of a publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stream {
    topic: TopicId,
    qos: QoS,
}

/// Which stream each seq of a publisher went to. Almost every device publishes one topic at one
/// QoS, which costs nothing per message; mixed publishers pay two bytes per message.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Streams {
    Empty,
    Single(Stream),
    Mixed(Box<MixedStreams>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct MixedStreams {
    distinct: Vec<Stream>,
    per_seq: Vec<u16>,
}

impl Streams {
    fn of(&self, seq: u64) -> Stream {
        match self {
            Streams::Empty => unreachable!("seq {seq} was never invoked"),
            Streams::Single(stream) => *stream,
            Streams::Mixed(mixed) => mixed.distinct[usize::from(mixed.per_seq[seq as usize])],
        }
    }

    /// Records that seq `seq` (the next one) went to `stream`.
    fn push(&mut self, seq: u64, stream: Stream) {
        match self {
            Streams::Empty => {
                assert_eq!(seq, 0);
                *self = Streams::Single(stream);
            }
            Streams::Single(only) if *only == stream => {}
            Streams::Single(only) => {
                let per_seq = vec![0_u16; usize::try_from(seq).expect("seq fits memory")];
                let mut mixed = MixedStreams { distinct: vec![*only], per_seq };
                mixed.push(stream);
                *self = Streams::Mixed(Box::new(mixed));
            }
            Streams::Mixed(mixed) => {
                assert_eq!(mixed.per_seq.len() as u64, seq);
                mixed.push(stream);
            }
        }
    }

    fn distinct(&self) -> Vec<Stream> {
        match self {
            Streams::Empty => Vec::new(),
            Streams::Single(stream) => vec![*stream],
            Streams::Mixed(mixed) => mixed.distinct.clone(),
        }
    }
}

impl MixedStreams {
    fn push(&mut self, stream: Stream) {
        let position = match self.distinct.iter().position(|known| *known == stream) {
            Some(position) => position,
            None => {
                self.distinct.push(stream);
                self.distinct.len() - 1
            }
        };
        self.per_seq.push(u16::try_from(position).expect("at most 65536 topic/QoS pairs per publisher"));
    }
}

/// Everything known about one publisher.
#[derive(Clone, Debug)]
pub(crate) struct PublisherState {
    pub(crate) publisher_id: u64,
    /// Index of its client id in [`Ledger::client_ids`].
    client_id: u32,
    /// Seqs `0 .. invoked` were invoked (dense).
    pub(crate) invoked: u64,
    last_invoked_at: Time,
    streams: Streams,
    pub(crate) acked: SeqSet,
    /// Failed and indeterminate seqs: rare, so boxed away (8 bytes when there are none).
    rare: Option<Box<RareOutcomes>>,
    /// For boundary `i` (see [`Ledger::boundaries`]), the first seq invoked at or after it;
    /// boundaries this publisher has not invoked since are absent (it invoked nothing after them).
    first_seq_at_boundary: BoundarySeqs,
}

#[derive(Clone, Debug, Default)]
struct RareOutcomes {
    failed: SparseSeqs,
    indeterminate: SparseSeqs,
}

static NO_OUTCOMES: RareOutcomes =
    RareOutcomes { failed: SparseSeqs(Vec::new()), indeterminate: SparseSeqs(Vec::new()) };

impl PublisherState {
    fn rare(&self) -> &RareOutcomes {
        self.rare.as_deref().unwrap_or(&NO_OUTCOMES)
    }

    /// Seqs rejected with a failure code, ascending.
    pub(crate) fn failed(&self) -> &SparseSeqs {
        &self.rare().failed
    }

    /// Seqs whose outcome is unknown, ascending.
    pub(crate) fn indeterminate(&self) -> &SparseSeqs {
        &self.rare().indeterminate
    }
}

/// One observer's view of one publisher (72 bytes and no heap for an in-order single-topic
/// stream: this exists per observer and publisher, millions of times over).
#[derive(Clone, Debug)]
pub(crate) struct ObserverPublisher {
    pub(crate) delivered: SeqSet,
    /// Highest seq delivered per topic: the common single topic inline (`NO_TOPIC` = none yet),
    /// others in `rare`.
    last_topic: TopicId,
    last_seq: u64,
    rare: Option<Box<ObserverRare>>,
}

/// What few (observer, publisher) pairs need.
#[derive(Clone, Debug, Default)]
struct ObserverRare {
    other_topics: Vec<(TopicId, u64)>,
    /// Seqs the system declared dropped for this observer, with an index into KNOWN_DROP_REASONS.
    dropped: BTreeMap<u64, u16>,
}

const NO_TOPIC: TopicId = TopicId::MAX;

impl Default for ObserverPublisher {
    fn default() -> Self {
        ObserverPublisher { delivered: SeqSet::new(), last_topic: NO_TOPIC, last_seq: 0, rare: None }
    }
}

impl ObserverPublisher {
    /// The highest seq delivered on `topic` so far, if any.
    fn last_on(&self, topic: TopicId) -> Option<u64> {
        if self.last_topic == topic {
            return Some(self.last_seq);
        }
        self.rare.as_ref()?.other_topics.iter().find(|(known, _)| *known == topic).map(|(_, seq)| *seq)
    }

    fn set_last(&mut self, topic: TopicId, seq: u64) {
        assert_ne!(topic, NO_TOPIC);
        if self.last_topic == NO_TOPIC || self.last_topic == topic {
            self.last_topic = topic;
            self.last_seq = seq;
            return;
        }
        let others = &mut self.rare.get_or_insert_with(Default::default).other_topics;
        match others.iter_mut().find(|(known, _)| *known == topic) {
            Some(entry) => entry.1 = seq,
            None => others.push((topic, seq)),
        }
    }

    /// The drop-reason index declared for `seq`, if the system declared it dropped here.
    pub(crate) fn dropped_reason(&self, seq: u64) -> Option<u16> {
        self.rare.as_ref()?.dropped.get(&seq).copied()
    }
}

/// A delivery that broke per-(publisher, topic) order.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderWitness {
    /// The publisher.
    pub publisher_id: u64,
    /// The topic.
    pub topic: String,
    /// The seq delivered before (higher).
    pub previous_seq: u64,
    /// The seq delivered after it (lower, never seen before, not flagged dup).
    pub seq: u64,
    /// When the late one arrived.
    pub at: Time,
}

/// When one topic filter of an observer was active, as indices into [`Ledger::boundaries`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FilterWindows {
    pub(crate) filter: String,
    pub(crate) windows: Vec<(usize, Option<usize>)>,
}

impl FilterWindows {
    fn is_open(&self) -> bool {
        self.windows.last().is_some_and(|(_, end)| end.is_none())
    }
}

/// Everything known about one observer.
#[derive(Clone, Debug)]
pub(crate) struct ObserverState {
    pub(crate) name: String,
    /// The QoS the observer subscribed with: a delivery is exactly-once only when both the
    /// publish and the subscription are QoS 2.
    pub(crate) qos: QoS,
    /// Each filter with the windows (boundary indices, end exclusive; `None` = still open) in
    /// which it was active.
    pub(crate) filters: Vec<FilterWindows>,
    pub(crate) per_publisher: Vec<ObserverPublisher>,
    pub(crate) deliveries: u64,
    pub(crate) first_deliveries: u64,
    pub(crate) last_delivery_at: Option<Time>,
    pub(crate) unexpected: u64,
    pub(crate) unexpected_examples: Vec<(u64, u64)>,
    pub(crate) duplicated: u64,
    pub(crate) duplicated_exactly_once: u64,
    pub(crate) duplicated_examples: Vec<(u64, u64)>,
    pub(crate) dup_flagged: u64,
    pub(crate) order_violations: u64,
    pub(crate) order_examples: Vec<OrderWitness>,
    pub(crate) dropped_by_reason: BTreeMap<String, u64>,
    pub(crate) latency: LatencyRecorder,
}

/// The record of a run. See the module documentation for the calling rules.
#[derive(Clone, Debug)]
pub struct Ledger {
    /// Publishers by slot. A publisher whose id equals its slot (the dense ids the workload hands
    /// out, registered in order) is found without hashing; others go through `sparse_slots`.
    pub(crate) publishers: Vec<PublisherState>,
    sparse_slots: FxHashMap<u64, u32>,
    client_ids: StrArena,
    topics: TopicTable,
    pub(crate) observers: Vec<ObserverState>,
    /// Times at which subscriptions started or ended, strictly increasing.
    pub(crate) boundaries: Vec<Time>,
    /// Drops the system declared by count only (e.g. a device's pending queue), by reason.
    pub(crate) declared_drops: BTreeMap<String, u64>,
    pub(crate) counters: LedgerCounters,
    /// Publisher lag (actual minus planned send time) in microseconds, over all invocations.
    pub(crate) send_lag: Histogram<u64>,
    /// The latest time any call carried.
    pub(crate) last_event_at: Time,
    /// Counts and latency over time.
    pub(crate) series: Series,
    /// Topic rewrites of the world's republishers: (from prefix, to prefix). A message published
    /// on `from + rest` is also expected, and on-topic, as `to + rest`.
    topic_rewrites: Vec<(String, String)>,
}

/// Running totals over the whole ledger.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedgerCounters {
    /// Publishes invoked.
    pub invoked: u64,
    /// Publishes acknowledged (`ok`).
    pub acked: u64,
    /// Publishes rejected (`fail`).
    pub failed: u64,
    /// Publishes whose outcome is unknown (`info`).
    pub indeterminate: u64,
    /// Deliveries at all observers, duplicates included.
    pub deliveries: u64,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Ledger {
        Ledger::with_capacity(0)
    }

    /// An empty ledger with room for `publishers` publishers (saves the transient doubling of a
    /// growing vector, which at a million publishers is a few hundred megabytes).
    pub fn with_capacity(publishers: usize) -> Ledger {
        Ledger {
            publishers: Vec::with_capacity(publishers),
            sparse_slots: FxHashMap::default(),
            client_ids: StrArena::default(),
            topics: TopicTable::default(),
            observers: Vec::new(),
            boundaries: Vec::new(),
            declared_drops: BTreeMap::new(),
            counters: LedgerCounters::default(),
            send_lag: new_histogram(),
            last_event_at: Time::ZERO,
            series: Series::default(),
            topic_rewrites: Vec::new(),
        }
    }

    fn observe_time(&mut self, at: Time) {
        self.last_event_at = self.last_event_at.max(at);
    }

    /// Publisher lag (actual minus planned send time), microseconds.
    pub fn send_lag(&self) -> &Histogram<u64> {
        &self.send_lag
    }

    /// Counts and latency over time.
    pub fn series(&self) -> &Series {
        &self.series
    }

    /// The latest time any call carried.
    pub fn last_event_at(&self) -> Time {
        self.last_event_at
    }

    /// Declares a publisher before its first publish. Registering an id twice is a driver bug.
    pub fn register_publisher(&mut self, publisher_id: u64, client_id: &str) {
        assert!(self.find_slot(publisher_id).is_none(), "publisher {publisher_id} registered twice");
        let slot = u32::try_from(self.publishers.len()).expect("at most 4 billion publishers");
        if u64::from(slot) != publisher_id {
            self.sparse_slots.insert(publisher_id, slot);
        }
        let client_id = self.client_ids.push(client_id);
        self.publishers.push(PublisherState {
            publisher_id,
            client_id,
            invoked: 0,
            last_invoked_at: Time::ZERO,
            streams: Streams::Empty,
            acked: SeqSet::new(),
            rare: None,
            first_seq_at_boundary: BoundarySeqs::default(),
        });
        assert_eq!(self.find_slot(publisher_id), Some(slot as usize));
    }

    /// Declares an observer (names should be unique; reports show them). `qos` is the QoS it
    /// subscribes with.
    pub fn register_observer(&mut self, name: &str, qos: QoS) -> ObserverId {
        assert!(
            self.observers.iter().all(|observer| observer.name != name),
            "observer {name} registered twice"
        );
        let id = ObserverId(u32::try_from(self.observers.len()).expect("few observers"));
        self.observers.push(ObserverState {
            name: name.to_string(),
            qos,
            filters: Vec::new(),
            per_publisher: Vec::new(),
            deliveries: 0,
            first_deliveries: 0,
            last_delivery_at: None,
            unexpected: 0,
            unexpected_examples: Vec::new(),
            duplicated: 0,
            duplicated_exactly_once: 0,
            duplicated_examples: Vec::new(),
            dup_flagged: 0,
            order_violations: 0,
            order_examples: Vec::new(),
            dropped_by_reason: BTreeMap::new(),
            latency: LatencyRecorder::default(),
        });
        id
    }

    fn find_slot(&self, publisher_id: u64) -> Option<usize> {
        let dense = usize::try_from(publisher_id).ok().filter(|slot| {
            self.publishers.get(*slot).is_some_and(|publisher| publisher.publisher_id == publisher_id)
        });
        dense.or_else(|| self.sparse_slots.get(&publisher_id).map(|slot| *slot as usize))
    }

    fn slot(&self, publisher_id: u64) -> usize {
        match self.find_slot(publisher_id) {
            Some(slot) => slot,
            None => panic!("publisher {publisher_id} was never registered"),
        }
    }

    pub(crate) fn topic_name(&self, topic: TopicId) -> &str {
        self.topics.name(topic)
    }

    /// The publisher invoked publish number `seq` (the next in its dense sequence) on `topic` at
    /// `qos`, planned for `planned_send` and handed to its connection at `at`.
    pub fn publish_invoked(
        &mut self,
        publisher_id: u64,
        seq: u64,
        topic: &str,
        qos: QoS,
        planned_send: Time,
        at: Time,
    ) {
        let slot = self.slot(publisher_id);
        // Fast path: a device re-publishing its one topic needs no hash lookup.
        let topic_id = match &self.publishers[slot].streams {
            Streams::Single(stream) if self.topics.name(stream.topic) == topic => stream.topic,
            _ => self.topics.intern(topic),
        };
        let boundaries = &self.boundaries;
        let publisher = &mut self.publishers[slot];
        assert_eq!(seq, publisher.invoked, "publisher {publisher_id}: seq {seq} is not the next one");
        assert!(at >= publisher.last_invoked_at, "publisher {publisher_id}: invocation times went backwards");
        // This seq is the first one invoked at or after every boundary not yet passed.
        while let Some(boundary) = boundaries.get(publisher.first_seq_at_boundary.len()) {
            if *boundary > at {
                break;
            }
            publisher.first_seq_at_boundary.push(seq);
        }
        publisher.streams.push(seq, Stream { topic: topic_id, qos });
        publisher.invoked += 1;
        publisher.last_invoked_at = at;
        self.counters.invoked += 1;
        // Open-loop lag: how late the publisher was against its plan (loadgen overload shows here).
        let lag_us =
            u64::try_from(at.saturating_duration_since(planned_send).as_micros()).unwrap_or(u64::MAX);
        crate::latency::record(&mut self.send_lag, lag_us);
        self.series.record(at, SeriesEvent::Published);
        self.observe_time(at);
    }

    /// The publish was acknowledged (PUBACK / PUBCOMP with a success reason code; MQTT 5's 0x10
    /// "no matching subscribers" is a success).
    pub fn publish_acked(&mut self, publisher_id: u64, seq: u64, at: Time) {
        let slot = self.slot(publisher_id);
        let publisher = &mut self.publishers[slot];
        assert!(seq < publisher.invoked, "publisher {publisher_id}: ack for seq {seq} never invoked");
        assert_ne!(publisher.streams.of(seq).qos, QoS::AtMostOnce, "QoS 0 publishes are never acknowledged");
        if publisher.acked.insert(seq) {
            self.counters.acked += 1;
            self.series.record(at, SeriesEvent::Acked);
        }
        self.observe_time(at);
    }

    /// The publish was rejected (a failure reason code): it definitely did not happen.
    pub fn publish_failed(&mut self, publisher_id: u64, seq: u64, reason_code: u8, at: Time) {
        let slot = self.slot(publisher_id);
        let publisher = &mut self.publishers[slot];
        assert!(seq < publisher.invoked, "publisher {publisher_id}: failure of seq {seq} never invoked");
        assert!(reason_code >= 0x80, "reason code {reason_code:#04x} is a success, not a failure");
        if publisher.rare.get_or_insert_with(Default::default).failed.insert(seq) {
            self.counters.failed += 1;
        }
        self.observe_time(at);
    }

    /// The publish's outcome is unknown (connection lost before the ack): it may or may not have
    /// happened. A later ack for the same seq (a resend that succeeded) overrides it.
    pub fn publish_indeterminate(&mut self, publisher_id: u64, seq: u64, at: Time) {
        let slot = self.slot(publisher_id);
        let publisher = &mut self.publishers[slot];
        assert!(seq < publisher.invoked, "publisher {publisher_id}: seq {seq} never invoked");
        if publisher.rare.get_or_insert_with(Default::default).indeterminate.insert(seq) {
            self.counters.indeterminate += 1;
        }
        self.observe_time(at);
    }

    /// The observer's subscriptions to `filters` became active at `at` (SUBACK received). Messages
    /// invoked from `at` on, on a topic a filter matches, are expected there until the
    /// subscriptions end; a filter already active keeps its earlier start. A persistent session
    /// that resumes keeps its subscriptions: call this once, not on every reconnect. Subscription
    /// calls must come in time order.
    pub fn subscription_active<S: AsRef<str>>(&mut self, observer: ObserverId, filters: &[S], at: Time) {
        let state = &self.observers[observer.index()];
        let opening: Vec<&str> = filters
            .iter()
            .map(AsRef::as_ref)
            .filter(|filter| !state.filters.iter().any(|known| known.filter == *filter && known.is_open()))
            .collect();
        if opening.is_empty() {
            return;
        }
        let opening: Vec<String> = opening.into_iter().map(str::to_string).collect();
        let boundary = self.boundary(at);
        let state = &mut self.observers[observer.index()];
        for filter in opening {
            match state.filters.iter_mut().find(|known| known.filter == filter) {
                Some(known) => known.windows.push((boundary, None)),
                None => state.filters.push(FilterWindows { filter, windows: vec![(boundary, None)] }),
            }
        }
        assert!(state.filters.iter().any(FilterWindows::is_open));
    }

    /// Every subscription of the observer ended at `at` (its session ended: a clean-start client
    /// disconnected, or the session expired). Messages invoked from `at` on are no longer expected
    /// there until [`Ledger::subscription_active`] is called again.
    pub fn subscriptions_ended(&mut self, observer: ObserverId, at: Time) {
        if !self.observers[observer.index()].filters.iter().any(FilterWindows::is_open) {
            return;
        }
        let boundary = self.boundary(at);
        let state = &mut self.observers[observer.index()];
        for known in state.filters.iter_mut().filter(|known| known.is_open()) {
            let window = known.windows.last_mut().expect("an open filter has a window");
            window.1 = Some(boundary);
        }
        assert!(!state.filters.iter().any(FilterWindows::is_open));
    }

    /// The index of the boundary at `at`: the last one when it has the same time, else a new one.
    /// Each boundary costs 8 bytes per publisher that invokes after it, so they are shared.
    fn boundary(&mut self, at: Time) -> usize {
        let last = self.boundaries.last().copied();
        assert!(last.is_none_or(|last| last <= at), "subscription changes out of order: {at} after {last:?}");
        if last != Some(at) {
            self.boundaries.push(at);
        }
        self.boundaries.len() - 1
    }

    /// The observer received a message whose payload carried `stamp`, on `topic`, at `at`; `dup`
    /// is the MQTT DUP flag of that delivery (a redelivery the broker announced).
    pub fn delivered(&mut self, observer: ObserverId, stamp: &Stamp, topic: &str, at: Time, dup: bool) {
        self.counters.deliveries += 1;
        self.observe_time(at);
        let slot = self.find_slot(stamp.publisher_id);
        let state = &mut self.observers[observer.index()];
        state.deliveries += 1;
        state.last_delivery_at = Some(state.last_delivery_at.map_or(at, |last| last.max(at)));
        if dup {
            state.dup_flagged += 1;
        }
        let witness = (stamp.publisher_id, stamp.seq);
        let Some(slot) = slot.filter(|slot| stamp.seq < self.publishers[*slot].invoked) else {
            // Never invoked: Jepsen's "unexpected".
            state.unexpected += 1;
            push_witness(&mut state.unexpected_examples, witness);
            return;
        };
        let publisher = &self.publishers[slot];
        let stream = publisher.streams.of(stamp.seq);
        // Compare with the one topic it was published on: no hashing on the hot path.
        let published_on = self.topics.name(stream.topic);
        if published_on != topic && !rewrites_to(&self.topic_rewrites, published_on, topic) {
            // Invoked, but delivered on another topic (and no republisher maps it there): as
            // wrong as a message never sent.
            state.unexpected += 1;
            push_witness(&mut state.unexpected_examples, witness);
            return;
        }
        if state.per_publisher.len() <= slot {
            // One allocation for every publisher known so far, not a doubling per new slot.
            state.per_publisher.resize_with(self.publishers.len(), ObserverPublisher::default);
        }
        let view = &mut state.per_publisher[slot];
        if !view.delivered.insert(stamp.seq) {
            state.duplicated += 1;
            if stream.qos == QoS::ExactlyOnce && state.qos == QoS::ExactlyOnce {
                state.duplicated_exactly_once += 1;
            }
            push_witness(&mut state.duplicated_examples, witness);
            return;
        }
        state.first_deliveries += 1;
        if let Some(previous_seq) = view.last_on(stream.topic) {
            if stamp.seq < previous_seq {
                if !dup {
                    state.order_violations += 1;
                    if state.order_examples.len() < WITNESS_LIMIT {
                        state.order_examples.push(OrderWitness {
                            publisher_id: stamp.publisher_id,
                            topic: topic.to_string(),
                            previous_seq,
                            seq: stamp.seq,
                            at,
                        });
                    }
                }
            } else {
                view.set_last(stream.topic, stamp.seq);
            }
        } else {
            view.set_last(stream.topic, stamp.seq);
        }
        state.latency.record(stamp.planned_send, stamp.actual_send, at);
        let latency_us =
            u64::try_from(at.saturating_duration_since(stamp.planned_send).as_micros()).unwrap_or(u64::MAX);
        self.series.record(at, SeriesEvent::Delivered { latency_us });
    }

    /// The system declared it dropped `count` messages for `reason` without saying which (e.g. a
    /// device's full pending queue, whose samples were never invoked).
    pub fn drop_declared(&mut self, reason: &str, count: u64) {
        assert!(
            KNOWN_DROP_REASONS.contains(&reason),
            "unknown drop reason `{reason}`; add it to KNOWN_DROP_REASONS"
        );
        *self.declared_drops.entry(reason.to_string()).or_default() += count;
    }

    /// The system declared it dropped publish `seq` of `publisher_id` for `observer` (e.g. that
    /// subscriber's queue was full). If `reason` is allowed by the scenario the message is not
    /// counted as lost there; otherwise the drop check fails.
    pub fn message_dropped(&mut self, observer: ObserverId, publisher_id: u64, seq: u64, reason: &str) {
        let slot = self.slot(publisher_id);
        assert!(
            seq < self.publishers[slot].invoked,
            "drop of publisher {publisher_id} seq {seq} never invoked"
        );
        let state = &mut self.observers[observer.index()];
        let reason_index = match KNOWN_DROP_REASONS.iter().position(|known| *known == reason) {
            Some(index) => index,
            None => panic!("unknown drop reason `{reason}`; add it to KNOWN_DROP_REASONS"),
        };
        if state.per_publisher.len() <= slot {
            state.per_publisher.resize_with(self.publishers.len(), ObserverPublisher::default);
        }
        let rare = state.per_publisher[slot].rare.get_or_insert_with(Default::default);
        // A message is dropped once per observer: the first declared reason is what happened, and
        // a repeated declaration is not counted again.
        if let std::collections::btree_map::Entry::Vacant(entry) = rare.dropped.entry(seq) {
            entry.insert(reason_index as u16);
            *state.dropped_by_reason.entry(reason.to_string()).or_default() += 1;
        }
    }

    /// Running totals.
    pub fn counters(&self) -> LedgerCounters {
        self.counters
    }

    /// Latency over every observer's first deliveries (the observers' histograms, added).
    pub fn latency(&self) -> LatencyRecorder {
        let mut all = LatencyRecorder::default();
        for observer in &self.observers {
            all.merge(&observer.latency);
        }
        all
    }

    /// Latency of one observer's first deliveries.
    pub fn observer_latency(&self, observer: ObserverId) -> &LatencyRecorder {
        &self.observers[observer.index()].latency
    }

    /// Number of registered publishers.
    pub fn publisher_count(&self) -> usize {
        self.publishers.len()
    }

    /// Registered observers with their ids, in registration order.
    pub fn observers(&self) -> impl Iterator<Item = (ObserverId, &str)> {
        self.observers
            .iter()
            .enumerate()
            .map(|(index, state)| (ObserverId(index as u32), state.name.as_str()))
    }

    /// Looks up an observer by name.
    pub fn observer_by_name(&self, name: &str) -> Option<ObserverId> {
        self.observers().find(|(_, known)| *known == name).map(|(id, _)| id)
    }

    /// Every drop the system declared, by reason: counted ones plus per-observer attributed ones.
    pub fn drops_by_reason(&self) -> BTreeMap<String, u64> {
        let mut all = self.declared_drops.clone();
        for observer in &self.observers {
            for (reason, count) in &observer.dropped_by_reason {
                *all.entry(reason.clone()).or_default() += count;
            }
        }
        all
    }

    /// Declares that the world republishes every message published on `from_prefix + rest` as
    /// `to_prefix + rest` (a republisher pod): observers matching the rewritten topic expect the
    /// message, and its delivery there is on-topic. Call before any delivery is recorded.
    pub fn add_topic_rewrite(&mut self, from_prefix: &str, to_prefix: &str) {
        assert!(!from_prefix.is_empty() && !to_prefix.is_empty(), "a rewrite maps a prefix");
        assert_eq!(self.counters.deliveries, 0, "rewrites are part of the world, declared before it runs");
        self.topic_rewrites.push((from_prefix.to_string(), to_prefix.to_string()));
    }

    /// Every rewritten form of `topic`.
    fn rewritten<'t>(&'t self, topic: &'t str) -> impl Iterator<Item = String> + 't {
        self.topic_rewrites
            .iter()
            .filter_map(move |(from, to)| topic.strip_prefix(from.as_str()).map(|rest| format!("{to}{rest}")))
    }

    /// The seq ranges of `publisher` that `observer` should have received on `topic`: those
    /// invoked while a matching filter was active, merged (filters may overlap), ascending.
    pub(crate) fn expected_ranges(
        &self,
        observer: &ObserverState,
        publisher: &PublisherState,
        topic: TopicId,
    ) -> Vec<std::ops::Range<u64>> {
        let name = self.topic_name(topic);
        let first_at =
            |boundary: usize| publisher.first_seq_at_boundary.get(boundary).unwrap_or(publisher.invoked);
        let mut ranges: Vec<std::ops::Range<u64>> = observer
            .filters
            .iter()
            .filter(|known| {
                filter_matches(&known.filter, name)
                    || self.rewritten(name).any(|rewritten| filter_matches(&known.filter, &rewritten))
            })
            .flat_map(|known| known.windows.iter())
            .map(|(start, end)| first_at(*start)..end.map_or(publisher.invoked, first_at))
            .filter(|range| !range.is_empty())
            .collect();
        ranges.sort_by_key(|range| range.start);
        let mut merged: Vec<std::ops::Range<u64>> = Vec::with_capacity(ranges.len());
        for range in ranges {
            match merged.last_mut() {
                Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
                _ => merged.push(range),
            }
        }
        assert!(merged.iter().all(|range| range.end <= publisher.invoked));
        merged
    }

    /// Walks every invoked message of `publisher` that `observer` should have received and calls
    /// `visit(seq, qos)` for each one once. A message is expected when a matching filter of the
    /// observer was active when it was invoked.
    pub(crate) fn for_each_expected(
        &self,
        observer: &ObserverState,
        publisher: &PublisherState,
        mut visit: impl FnMut(u64, QoS),
    ) {
        for stream in publisher.streams.distinct() {
            for range in self.expected_ranges(observer, publisher, stream.topic) {
                match &publisher.streams {
                    Streams::Single(_) => range.for_each(|seq| visit(seq, stream.qos)),
                    _ => range
                        .filter(|seq| publisher.streams.of(*seq) == stream)
                        .for_each(|seq| visit(seq, stream.qos)),
                }
            }
        }
    }

    /// The client id a publisher registered with.
    pub fn client_id(&self, publisher_id: u64) -> Option<&str> {
        let slot = self.find_slot(publisher_id)?;
        Some(self.client_ids.get(self.publishers[slot].client_id))
    }
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger::new()
    }
}

fn push_witness<T>(examples: &mut Vec<T>, witness: T) {
    if examples.len() < WITNESS_LIMIT {
        examples.push(witness);
    }
}

/// Whether a rewrite maps `published` to `delivered` (no allocation: the delivery hot path).
fn rewrites_to(rewrites: &[(String, String)], published: &str, delivered: &str) -> bool {
    rewrites.iter().any(|(from, to)| {
        published.strip_prefix(from.as_str()).is_some_and(|rest| {
            delivered.len() == to.len() + rest.len()
                && delivered.starts_with(to.as_str())
                && delivered.ends_with(rest)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seq_set_collapses_its_full_prefix() {
        let mut set = SeqSet::new();
        for seq in 0..10_000 {
            assert!(set.insert(seq));
        }
        assert!(!set.insert(17));
        assert_eq!(set.len(), 10_000);
        assert_eq!(set.heap_bytes(), 0, "an in-order stream needs no heap");
        assert!(set.contains(9_999) && !set.contains(10_000));
    }

    #[test]
    fn seq_set_gives_its_memory_back_once_a_gap_fills() {
        let mut set = SeqSet::new();
        assert!(set.insert(0));
        for seq in 2..1_000 {
            assert!(set.insert(seq));
        }
        assert!(!set.contains(1));
        assert!(set.heap_bytes() >= 1_000 / 8, "the gap at 1 keeps bits for everything above it");
        assert!(set.insert(1));
        assert_eq!(set.heap_bytes(), 0);
        assert_eq!(set.len(), 1_000);
        assert!(set.insert(1_000) && set.contains(1_000) && !set.contains(1_001));
    }

    #[test]
    fn per_publisher_state_stays_small() {
        // The scale target is a million publishers: these sizes are the budget (brief section 7).
        assert!(size_of::<PublisherState>() <= 136, "{}", size_of::<PublisherState>());
        assert!(size_of::<ObserverPublisher>() <= 72, "{}", size_of::<ObserverPublisher>());
    }

    #[test]
    fn sparse_publisher_ids_are_found_too() {
        let mut ledger = Ledger::new();
        for (publisher_id, client_id) in [(5, "five"), (0, "zero"), (u64::MAX, "max"), (1, "one")] {
            ledger.register_publisher(publisher_id, client_id);
        }
        assert_eq!(ledger.client_id(5), Some("five"));
        assert_eq!(ledger.client_id(0), Some("zero"));
        assert_eq!(ledger.client_id(u64::MAX), Some("max"));
        assert_eq!(ledger.client_id(1), Some("one"));
        assert_eq!(ledger.client_id(2), None);
        ledger.publish_invoked(u64::MAX, 0, "t", QoS::AtLeastOnce, Time::ZERO, Time::ZERO);
        assert_eq!(ledger.counters().invoked, 1);
    }

    #[test]
    #[should_panic(expected = "registered twice")]
    fn registering_a_publisher_twice_is_a_driver_bug() {
        let mut ledger = Ledger::new();
        ledger.register_publisher(3, "a");
        ledger.register_publisher(3, "b");
    }

    proptest! {
        #[test]
        fn seq_set_agrees_with_a_btree_set(seqs in proptest::collection::vec(0_u64..2_000, 0..500)) {
            let mut set = SeqSet::new();
            let mut model = std::collections::BTreeSet::new();
            for seq in &seqs {
                prop_assert_eq!(set.insert(*seq), model.insert(*seq));
            }
            prop_assert_eq!(set.len(), model.len() as u64);
            for seq in 0..2_100 {
                prop_assert_eq!(set.contains(seq), model.contains(&seq));
            }
        }
    }

    #[test]
    fn a_publisher_with_two_topics_keeps_them_apart() {
        let mut ledger = Ledger::new();
        ledger.register_publisher(1, "dev-1");
        for seq in 0..4 {
            let topic = if seq % 2 == 0 { "a" } else { "b" };
            ledger.publish_invoked(1, seq, topic, QoS::AtLeastOnce, Time::ZERO, Time::ZERO);
        }
        let publisher = &ledger.publishers[0];
        assert_eq!(ledger.topic_name(publisher.streams.of(2).topic), "a");
        assert_eq!(ledger.topic_name(publisher.streams.of(3).topic), "b");
        assert_eq!(publisher.streams.distinct().len(), 2);
    }

    #[test]
    #[should_panic(expected = "is not the next one")]
    fn a_skipped_seq_is_a_driver_bug() {
        let mut ledger = Ledger::new();
        ledger.register_publisher(1, "dev-1");
        ledger.publish_invoked(1, 1, "t", QoS::AtLeastOnce, Time::ZERO, Time::ZERO);
    }
}
