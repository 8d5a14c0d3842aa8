//! Append+sync throughput of the durable segment log (`system::store::Log`) on `SimDisk` and on
//! `OsFs` (a directory under the system temp dir), driven by the smallest loop: one request at a
//! time through `fs::apply`. Prints records/s and MB/s of wall time, and for `SimDisk` also the
//! simulated disk time its latency model charges. Run:
//! `cargo run --release -p edgeproof-sim --example log_throughput -- [records] [payload_bytes] [batch]`

use std::time::{Duration, Instant};

use bytes::Bytes;
use edgeproof_sim::disk::SimDisk;
use edgeproof_system::fs::{Fs, OsFs, apply};
use edgeproof_system::store::{Log, LogConfig, LogEvent};

/// Appends `records` payloads, syncing every `batch`, until all are durable. Returns the wall time
/// and the simulated time charged by `latency` for each request.
fn run(
    fs: &mut dyn Fs,
    records: u64,
    payload_bytes: usize,
    batch: u64,
    latency: &dyn Fn(&dyn Fs, &edgeproof_system::fs::DiskOp) -> Duration,
) -> (Duration, Duration) {
    let mut log = Log::open(LogConfig::new("log")).expect("config");
    while let Some(op) = log.poll_request() {
        log.handle_reply(apply(fs, &op));
    }
    assert!(log.is_ready(), "an empty directory recovers at once");
    let mut simulated = Duration::ZERO;
    // The wall time of a benchmark, printed, never fed into a simulation.
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    let payload = Bytes::from(vec![0xA5; payload_bytes]);
    let mut appended = 0;
    let mut durable = 0;
    while durable < records {
        while appended < records && appended - durable < batch {
            log.append(payload.clone()).expect("room below the batch");
            appended += 1;
        }
        log.sync();
        while let Some(op) = log.poll_request() {
            simulated += latency(fs, &op);
            log.handle_reply(apply(fs, &op));
        }
        while let Some(event) = log.poll_event() {
            match event {
                LogEvent::Durable { record_id_last, .. } => durable = record_id_last + 1,
                LogEvent::Failed(failure) => panic!("log failed: {failure}"),
                _ => {}
            }
        }
    }
    (start.elapsed(), simulated)
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).map(|arg| arg.parse().expect("numbers")).collect();
    let records = args.first().copied().unwrap_or(100_000);
    let payload_bytes = args.get(1).copied().unwrap_or(256) as usize;
    let batch = args.get(2).copied().unwrap_or(64);
    let mb = (records * payload_bytes as u64) as f64 / 1e6;

    let mut disk = SimDisk::default();
    let model = disk.clone();
    let latency = move |_: &dyn Fs, op: &edgeproof_system::fs::DiskOp| model.op_latency(op);
    let (wall, simulated) = run(&mut disk, records, payload_bytes, batch, &latency);
    println!(
        "SimDisk: {records} records x {payload_bytes} B, sync every {batch}: wall {:.3} s ({:.0} records/s, {:.1} MB/s); simulated disk time {:.3} s ({:.0} records/s)",
        wall.as_secs_f64(),
        records as f64 / wall.as_secs_f64(),
        mb / wall.as_secs_f64(),
        simulated.as_secs_f64(),
        records as f64 / simulated.as_secs_f64()
    );

    let root = std::env::temp_dir().join(format!("edgeproof-log-throughput-{}", std::process::id()));
    let mut os = OsFs::new(&root).expect("temp dir");
    let (wall, _) = run(&mut os, records, payload_bytes, batch, &|_, _| Duration::ZERO);
    println!(
        "OsFs ({}): wall {:.3} s ({:.0} records/s, {:.1} MB/s)",
        root.display(),
        wall.as_secs_f64(),
        records as f64 / wall.as_secs_f64(),
        mb / wall.as_secs_f64()
    );
    std::fs::remove_dir_all(&root).expect("clean up");
}
