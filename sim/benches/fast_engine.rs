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

/// The cores free idle buffers and events eagerly (so a million devices stay small), which makes
/// the run allocation-heavy: glibc's malloc and free took 12-15% of a profile. The allocator
/// changes no result, only speed; the library crates keep the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// CPU seconds (user + system) this process has used, from /proc/self/stat. On a shared machine
/// the wall clock also counts other processes' turns; CPU time does not.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 overall.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|value| value.parse::<u64>().ok()).unwrap_or(0);
    // Linux reports these in USER_HZ, 100 on every mainstream configuration.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

const HEADER: [&str; 14] = [
    "devices",
    "intvl_ms",
    "sim_s",
    "build_s",
    "run_s",
    "cpu_s",
    "sim/wall",
    "published",
    "delivered",
    "msgs/wall_s",
    "msgs/cpu_s",
    "events/wall_s",
    "peak_MiB",
    "pass",
];

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
    println!("{}", HEADER.map(|name| format!("{name:>14}")).join(""));
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
        let cpu_started = cpu_seconds();
        world.run();
        let run_secs = run_started.elapsed().as_secs_f64().max(Duration::from_micros(1).as_secs_f64());
        let run_cpu_secs = (cpu_seconds() - cpu_started).max(0.01);
        let outcome = world.outcome(run_secs);
        let sim_secs = world.now().as_secs_f64();
        let published = outcome.counters.published as f64;
        let row = [
            spec.devices.to_string(),
            format!("{}", spec.interval_ms),
            format!("{sim_secs:.0}"),
            format!("{build_secs:.2}"),
            format!("{run_secs:.2}"),
            format!("{run_cpu_secs:.2}"),
            format!("{:.2}", sim_secs / run_secs),
            outcome.counters.published.to_string(),
            outcome.counters.delivered.to_string(),
            format!("{:.0}", published / run_secs),
            format!("{:.0}", published / run_cpu_secs),
            format!("{:.0}", world.events_processed() as f64 / run_secs),
            format!("{:.0}", status_kib("VmHWM:") as f64 / 1024.0),
            outcome.passed().to_string(),
        ];
        println!("{}", row.map(|cell| format!("{cell:>14}")).join(""));
        if !outcome.passed() {
            println!("{}", outcome.verdict_table());
        }
    }
}
