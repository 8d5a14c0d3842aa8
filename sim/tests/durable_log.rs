//! Property tests of the durable segment log (`system::store::Log`) on `SimDisk`: every record the
//! log reported durable survives a power loss at any point, in order and uncorrupted; records never
//! reported durable may be lost, never corrupted; a torn tail is truncated and counted.
//!
//! The driver is the smallest one possible: one request at a time applied to the disk through
//! `fs::apply`, replies handed straight back. The negative test plants the loss the check exists to
//! catch (bit rot inside a durable record of a segment that is not the last) and shows recovery
//! refusing to go on instead of silently dropping durable records. Well under a second.

use bytes::Bytes;
use edgeproof_sim::disk::SimDisk;
use edgeproof_system::fs::{Fs, apply};
use edgeproof_system::store::{Log, LogConfig, LogEvent, LogFailure, RecordId};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 96,
        record_bytes_max: 32,
        records_pending_max: 16,
        bytes_buffered_max: 512,
        append_bytes_max: 80,
        read_chunk_bytes: 24,
        events_max: 8,
        ..LogConfig::new("log")
    }
}

/// Runs at most `steps` requests of `log` against `disk`; returns the events seen.
fn drive(log: &mut Log, disk: &mut dyn Fs, steps: usize, events: &mut Vec<LogEvent>) {
    for _ in 0..steps {
        events.extend(std::iter::from_fn(|| log.poll_event()));
        let Some(op) = log.poll_request() else { break };
        log.handle_reply(apply(disk, &op));
    }
    events.extend(std::iter::from_fn(|| log.poll_event()));
}

/// Drives `log` until it asks for nothing more.
fn drive_to_idle(log: &mut Log, disk: &mut dyn Fs, events: &mut Vec<LogEvent>) {
    drive(log, disk, 100_000, events);
    assert!(log.poll_request().is_none(), "a log with nothing to do asks for nothing");
}

/// The highest record id reported durable, if any; also asserts the reports come in order.
fn durable_last(events: &[LogEvent]) -> Option<RecordId> {
    let mut last: Option<RecordId> = None;
    for event in events {
        if let LogEvent::Durable { record_id_first, record_id_last } = event {
            assert_eq!(*record_id_first, last.map_or(0, |id| id + 1), "durability reported in order");
            assert!(record_id_first <= record_id_last);
            last = Some(*record_id_last);
        }
    }
    last
}

/// The check this file exists for: what recovery found after a power loss, against what was
/// appended and what was reported durable before it.
fn check_recovery(
    appended: &[Bytes],
    durable: Option<RecordId>,
    recovered: &[(RecordId, Bytes)],
) -> Result<(), String> {
    for (position, (record_id, payload)) in recovered.iter().enumerate() {
        if *record_id != position as u64 {
            return Err(format!("recovered record {record_id} at position {position}: a gap or a reorder"));
        }
        match appended.get(position) {
            Some(original) if original == payload => {}
            Some(_) => return Err(format!("record {record_id} recovered with other bytes than appended")),
            None => return Err(format!("record {record_id} recovered but never appended")),
        }
    }
    if let Some(durable) = durable
        && (recovered.len() as u64) < durable + 1
    {
        return Err(format!(
            "records up to {durable} were reported durable, only {} recovered",
            recovered.len()
        ));
    }
    Ok(())
}

fn recovered_of(events: &[LogEvent]) -> Vec<(RecordId, Bytes)> {
    events
        .iter()
        .filter_map(|event| match event {
            LogEvent::Recovered { record_id, payload } => Some((*record_id, payload.clone())),
            _ => None,
        })
        .collect()
}

#[derive(Clone, Debug)]
enum Step {
    Append { len: usize, fill: u8 },
    Sync,
    Drive { requests: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1usize..=32, any::<u8>()).prop_map(|(len, fill)| Step::Append { len, fill }),
        1 => Just(Step::Sync),
        2 => (1usize..6).prop_map(|requests| Step::Drive { requests }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn durable_records_survive_a_power_loss_at_any_point(
        steps in prop::collection::vec(step(), 1..60),
        power_seed in any::<u64>(),
        second_loss in any::<bool>(),
    ) {
        let mut disk = SimDisk::default();
        let mut log = Log::open(config()).expect("config");
        let mut events = Vec::new();
        drive_to_idle(&mut log, &mut disk, &mut events);
        let mut appended: Vec<Bytes> = Vec::new();
        for step in &steps {
            match step {
                Step::Append { len, fill } => {
                    let payload = Bytes::from(vec![*fill; *len]);
                    // Back-pressure is a legal answer; the record then does not exist.
                    if let Ok(record_id) = log.append(payload.clone()) {
                        prop_assert_eq!(record_id, appended.len() as u64, "ids are dense");
                        appended.push(payload);
                    }
                }
                Step::Sync => log.sync(),
                Step::Drive { requests } => drive(&mut log, &mut disk, *requests, &mut events),
            }
        }
        let durable = durable_last(&events);
        let mut rng = ChaCha8Rng::seed_from_u64(power_seed);
        disk.power_loss(&mut rng);

        let mut reopened = Log::open(config()).expect("config");
        let mut recovery = Vec::new();
        drive_to_idle(&mut reopened, &mut disk, &mut recovery);
        prop_assert!(reopened.is_ready(), "recovery finished: {:?}", recovery.last());
        let recovered = recovered_of(&recovery);
        if let Err(message) = check_recovery(&appended, durable, &recovered) {
            return Err(TestCaseError::fail(message));
        }

        // Recovery's own truncate and sync are durable: a second power loss right after it keeps
        // exactly what the first recovery found.
        if second_loss {
            disk.power_loss(&mut rng);
            let mut again = Log::open(config()).expect("config");
            let mut second = Vec::new();
            drive_to_idle(&mut again, &mut disk, &mut second);
            prop_assert_eq!(recovered_of(&second), recovered);
        }
    }
}

/// A log that syncs after every append, with records rotating over several segments.
fn synced_log(disk: &mut SimDisk, count: u8) -> Vec<Bytes> {
    let mut log = Log::open(config()).expect("config");
    let mut events = Vec::new();
    drive_to_idle(&mut log, disk, &mut events);
    let mut appended = Vec::new();
    for index in 0..count {
        let payload = Bytes::from(vec![index; 24]);
        log.append(payload.clone()).expect("room");
        log.sync();
        drive_to_idle(&mut log, disk, &mut events);
        appended.push(payload);
    }
    assert_eq!(durable_last(&events), Some(u64::from(count) - 1));
    appended
}

#[test]
fn a_torn_tail_is_truncated_and_counted() {
    let mut disk = SimDisk::default();
    let appended = synced_log(&mut disk, 3);
    let mut log = Log::open(config()).expect("config");
    let mut events = Vec::new();
    drive_to_idle(&mut log, &mut disk, &mut events);
    // Half a record's bytes reach the last segment and the power goes: a torn tail.
    let last_segment = disk.list("log").expect("segments").last().cloned().expect("one segment");
    disk.append(&format!("log/{last_segment}"), &[7; 13]).expect("append");
    disk.sync(&format!("log/{last_segment}")).expect("sync");
    let mut reopened = Log::open(config()).expect("config");
    let mut recovery = Vec::new();
    drive_to_idle(&mut reopened, &mut disk, &mut recovery);
    assert_eq!(check_recovery(&appended, Some(2), &recovered_of(&recovery)), Ok(()));
    assert_eq!(
        reopened.stats().torn_tails_truncated + reopened.stats().corrupt_tails_truncated,
        1,
        "{:?}",
        reopened.stats()
    );
    assert_eq!(reopened.stats().tail_bytes_truncated, 13);
}

/// The planted bug: the medium flips a bit inside a durable record of an early segment. Recovery
/// must not truncate there (that would silently drop every durable record after it): it fails
/// with `CorruptSegment`, and the check above would have reported the loss had it gone on.
#[test]
fn bit_rot_in_a_durable_segment_is_refused_not_truncated() {
    let mut disk = SimDisk::default();
    let appended = synced_log(&mut disk, 8);
    let segments = disk.list("log").expect("segments");
    assert!(segments.len() >= 3, "records rotate over segments: {segments:?}");
    disk.corrupt_byte(&format!("log/{}", segments[0]), 10, 3).expect("corrupt");
    let mut reopened = Log::open(config()).expect("config");
    let mut recovery = Vec::new();
    drive_to_idle(&mut reopened, &mut disk, &mut recovery);
    assert!(
        matches!(recovery.last(), Some(LogEvent::Failed(LogFailure::CorruptSegment { .. }))),
        "{:?}",
        recovery.last()
    );
    let recovered = recovered_of(&recovery);
    assert!(check_recovery(&appended, Some(7), &recovered).is_err(), "the check reports the loss");
}
