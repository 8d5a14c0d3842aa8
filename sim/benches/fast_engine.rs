//! Fast-engine throughput: runs the catalogue's `smoke` scaled to 1k, 10k, 100k and 1M devices and
//! prints simulated seconds per wall second, device messages per wall second, events per wall
//! second and peak RSS (VmHWM from /proc/self/status).
//!
//! Usage: `cargo bench -p edgeproof-sim --bench fast_engine [-- SPEC...]` where a SPEC is
//! `devices[:interval_ms[:duration_secs]]`, e.g. `1000000:10000:30`. Without SPECs the standard
//! ladder runs. Peak RSS is the process high-water mark, so run sizes in increasing order (the
//! ladder does) or one size per invocation for exact figures.

use std::time::Duration;

use edgeproof_scenarios::catalog;
use edgeproof_sim::fast::world::{FastOptions, FastWorld};

struct Spec {
    devices: u32,
    interval_ms: f64,
    duration_secs: u64,
}

fn parse(arg: &str) -> Option<Spec> {
    let mut parts = arg.split(':');
    let devices = parts.next()?.parse().ok()?;
    let interval_ms = parts.next().map_or(Some(1000.0), |part| part.parse().ok())?;
    let duration_secs = parts.next().map_or(Some(60), |part| part.parse().ok())?;
    Some(Spec { devices, interval_ms, duration_secs })
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

#[allow(clippy::disallowed_methods, reason = "a benchmark measures wall time; it never feeds the simulation")]
fn wall_now() -> std::time::Instant {
    std::time::Instant::now()
}

fn main() {
    let specs: Vec<Spec> =
        std::env::args().skip(1).filter(|arg| !arg.starts_with("--")).filter_map(|arg| parse(&arg)).collect();
    let specs = if specs.is_empty() {
        vec![
            Spec { devices: 1_000, interval_ms: 1000.0, duration_secs: 60 },
            Spec { devices: 10_000, interval_ms: 1000.0, duration_secs: 60 },
            Spec { devices: 100_000, interval_ms: 1000.0, duration_secs: 20 },
            Spec { devices: 1_000_000, interval_ms: 10_000.0, duration_secs: 30 },
        ]
    } else {
        specs
    };
    println!(
        "{:>9} {:>8} {:>6} {:>8} {:>8} {:>9} {:>11} {:>11} {:>12} {:>12} {:>9} {:>5}",
        "devices",
        "intvl_ms",
        "sim_s",
        "build_s",
        "run_s",
        "sim/wall",
        "published",
        "delivered",
        "msgs/wall_s",
        "events/wall_s",
        "peak_MiB",
        "pass"
    );
    for spec in specs {
        let mut scenario = catalog::get("smoke").expect("smoke is in the catalogue");
        scenario.fleets[0].count = spec.devices;
        scenario.fleets[0].publish_interval_ms = Some(spec.interval_ms);
        scenario.fleets[0].rate_per_sec = None;
        scenario.duration_secs = spec.duration_secs;
        // Keep-alive above the interval, as a real fleet would be configured.
        scenario.fleets[0].keep_alive_secs =
            scenario.fleets[0].keep_alive_secs.max((spec.interval_ms / 1000.0 * 3.0) as u16);
        let build_started = wall_now();
        let mut world = FastWorld::new(&scenario, 1, FastOptions::default()).expect("world builds");
        let build_secs = build_started.elapsed().as_secs_f64();
        let run_started = wall_now();
        world.run();
        let run_secs = run_started.elapsed().as_secs_f64().max(Duration::from_micros(1).as_secs_f64());
        let outcome = world.outcome(run_secs);
        let sim_secs = world.now().as_secs_f64();
        println!(
            "{:>9} {:>8} {:>6.0} {:>8.2} {:>8.2} {:>9.2} {:>11} {:>11} {:>12.0} {:>12.0} {:>9.0} {:>5}",
            spec.devices,
            spec.interval_ms,
            sim_secs,
            build_secs,
            run_secs,
            sim_secs / run_secs,
            outcome.counters.published,
            outcome.counters.delivered,
            outcome.counters.published as f64 / run_secs,
            world.events_processed() as f64 / run_secs,
            status_kib("VmHWM:") as f64 / 1024.0,
            outcome.passed(),
        );
        if !outcome.passed() {
            println!("{}", outcome.verdict_table());
        }
    }
}
