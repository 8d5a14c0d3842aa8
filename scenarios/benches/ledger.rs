//! Criterion benchmarks of the oracle's hot paths, to catch regressions in what the fast
//! simulator pays per message: recording a publish (invoke + ack + deliver) into the ledger, and
//! running every checker over a finished ledger.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use edgeproof_scenarios::checkers::run_all;
use edgeproof_scenarios::{Ledger, ObserverId, Stamp, catalog};
use edgeproof_system::Time;
use edgeproof_system::mqtt::QoS;

const DEVICES: u64 = 10_000;
const ROUNDS: u64 = 10;

fn topics() -> Vec<String> {
    (0..DEVICES).map(|device| format!("plant/cell1/dev-{device}/telemetry")).collect()
}

fn registered() -> (Ledger, ObserverId) {
    let mut ledger = Ledger::with_capacity(DEVICES as usize);
    let observer = ledger.register_observer("historian", QoS::AtLeastOnce);
    ledger.subscription_active(observer, &["#"], Time::ZERO);
    for device in 0..DEVICES {
        ledger.register_publisher(device, &format!("dev-{device}"));
    }
    (ledger, observer)
}

fn record(ledger: &mut Ledger, observer: ObserverId, topics: &[String]) {
    for round in 0..ROUNDS {
        for device in 0..DEVICES {
            let planned = Time::from_nanos(round * 1_000_000_000 + device * 100_000);
            let topic = &topics[device as usize];
            ledger.publish_invoked(device, round, topic, QoS::AtLeastOnce, planned, planned);
            ledger.publish_acked(device, round, planned + Duration::from_millis(2));
            let stamp = Stamp {
                flags: 0,
                publisher_id: device,
                seq: round,
                planned_send: planned,
                actual_send: planned,
            };
            ledger.delivered(observer, &stamp, topic, planned + Duration::from_millis(3), false);
        }
    }
}

fn ledger_benches(c: &mut Criterion) {
    let topics = topics();
    let mut group = c.benchmark_group("ledger");
    group.throughput(Throughput::Elements(DEVICES * ROUNDS));
    group.bench_function("invoke_ack_deliver", |b| {
        b.iter_batched(
            registered,
            |(mut ledger, observer)| {
                record(&mut ledger, observer, &topics);
                ledger
            },
            BatchSize::LargeInput,
        );
    });
    let scenario = catalog::get("smoke").expect("catalogue");
    let (mut finished, observer) = registered();
    record(&mut finished, observer, &topics);
    group.bench_function("run_all_checkers", |b| b.iter(|| black_box(run_all(&finished, &scenario))));
    group.finish();
}

criterion_group!(benches, ledger_benches);
criterion_main!(benches);
