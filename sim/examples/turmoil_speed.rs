//! Speed of the turmoil engine on a catalogue scenario (`smoke` unless named) at a chosen fleet
//! size, for BENCHMARKS.md: simulated seconds per wall second, messages per wall second and peak
//! RSS.
//!
//! `cargo run --release -p edgeproof-sim --example turmoil_speed -- 1000 [scenario]`
//!
//! Measured on the shared 2-core machine (release, seed 1, `smoke`: 60 s publishing + 10 s drain,
//! QoS 1 once a second per device, 1 ms tick): 1,000 devices 70 sim s in 1.6 wall s (45 sim s per
//! wall s, 77,000 messages per wall s, 82 MiB peak RSS); 10,000 devices 70 sim s in 16.4 wall s
//! (4.3 sim s per wall s, 73,000 messages per wall s, 762 MiB peak RSS).
//!
//! mad-turmoil is linked as in the tests (libc randomness follows a seeded rng), and its libc
//! clock override makes `std::time::Instant` useless for wall time in this binary (it reads zero
//! outside a simulated runtime), so wall time is read from `/proc/uptime` (10 ms resolution).

use edgeproof_scenarios::catalog;
use edgeproof_sim::{TurmoilOptions, run_turmoil};
use rand::SeedableRng;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Seconds since boot, from the kernel (not through libc's clock, which mad-turmoil replaces).
fn uptime_seconds() -> f64 {
    let text = std::fs::read_to_string("/proc/uptime").expect("/proc/uptime is readable on Linux");
    text.split_whitespace().next().and_then(|value| value.parse().ok()).expect("uptime in seconds")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let devices: u32 = args.next().map_or(1_000, |text| text.parse().expect("devices: a count"));
    let name = args.next().unwrap_or_else(|| "smoke".to_string());
    let mut scenario = catalog::get(&name).unwrap_or_else(|| panic!("no catalogue scenario {name}"));
    for fleet in &mut scenario.fleets {
        fleet.count = devices;
    }
    mad_turmoil::rand::set_rng(rand::rngs::StdRng::seed_from_u64(1));

    let started = uptime_seconds();
    let run = run_turmoil(&scenario, 1, &TurmoilOptions::default()).unwrap_or_else(|error| panic!("{error}"));
    let wall_seconds = uptime_seconds() - started;
    let outcome = &run.outcome;
    print!("{}", outcome.verdict_table());
    let messages = outcome.counters.published + outcome.counters.deliveries;
    println!("{:?}", run.stats);
    println!(
        "turmoil {name}, {devices} devices, {} s + {} s drain: {:.1} sim s in {:.2} wall s = {:.3} sim s per wall s; \
         {} messages (published + delivered) = {:.0} per wall s; {} steps; peak RSS {:.1} MiB",
        scenario.duration_secs,
        scenario.drain_secs,
        outcome.sim_seconds,
        wall_seconds,
        outcome.sim_seconds / wall_seconds,
        messages,
        messages as f64 / wall_seconds,
        run.stats.steps,
        peak_rss_mib(),
    );
}
