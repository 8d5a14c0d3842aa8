//! `edgeproof run` and `edgeproof demo`: the exit-code contract (0 pass, 1 a failed check with the
//! seed and replay command printed, 2 bad input), `outcome.json` with the promised field names,
//! and bit-for-bit replay from the seed.

use std::path::PathBuf;
use std::process::{Command, Output};

fn edgeproof(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgeproof")).args(args).output().expect("run edgeproof")
}

/// A fresh directory for one test's outputs.
fn out_dir(test_name: &str) -> PathBuf {
    let directory =
        std::env::temp_dir().join(format!("edgeproof-cli-run-{}-{test_name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    directory
}

fn read_outcome(directory: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(directory.join("outcome.json")).expect("outcome.json was written");
    serde_json::from_str(&text).expect("outcome.json is JSON")
}

#[test]
fn a_passing_run_exits_0_and_writes_the_outcome_contract() {
    let directory = out_dir("pass");
    let output = edgeproof(&["run", "device-partition", "--seed", "7", "--out", directory.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("PASS"), "{stdout}");
    let outcome = read_outcome(&directory);
    for field in [
        "scenario",
        "seed",
        "engine",
        "verdict",
        "trace_hash",
        "checks",
        "counters",
        "latency_ms",
        "sim_seconds",
        "wall_seconds",
    ] {
        assert!(outcome.get(field).is_some(), "outcome.json lacks {field}");
    }
    for counter in ["published", "acked", "delivered", "lost", "duplicated", "unexpected"] {
        assert!(outcome["counters"].get(counter).is_some(), "counters lack {counter}");
    }
    for percentile in ["p50", "p99", "p999", "max"] {
        assert!(outcome["latency_ms"].get(percentile).is_some(), "latency_ms lacks {percentile}");
    }
    assert_eq!(outcome["verdict"], "pass");
    assert_eq!(outcome["seed"], 7);
    assert_eq!(outcome["engine"], "fast");
    assert_eq!(outcome["counters"]["lost"], 0);
    assert!(outcome["counters"]["acked"].as_u64().unwrap() > 0);
}

#[test]
fn the_same_seed_replays_bit_for_bit_and_another_seed_differs() {
    let hash_of = |seed: &str, name: &str| {
        let directory = out_dir(name);
        let output = edgeproof(&["run", "smoke", "--seed", seed, "--out", directory.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(0));
        read_outcome(&directory)["trace_hash"].as_str().expect("trace_hash is a string").to_string()
    };
    let first = hash_of("11", "replay-a");
    assert_eq!(first, hash_of("11", "replay-b"), "same seed, same trace hash");
    assert_ne!(first, hash_of("12", "replay-c"), "another seed, another trace hash");
}

#[test]
fn a_failed_check_exits_1_and_prints_the_seed_and_replay_command() {
    let directory = out_dir("fail");
    let output = edgeproof(&["run", "broker-crash", "--seed", "5", "--out", directory.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED with seed 5"), "{stdout}");
    assert!(stdout.contains("cargo run --release -- run broker-crash --seed 5 --engine fast"), "{stdout}");
    let outcome = read_outcome(&directory);
    assert_eq!(outcome["verdict"], "fail");
    assert!(
        outcome["counters"]["lost"].as_u64().unwrap() > 0,
        "the in-memory broker's crash loses acked messages"
    );
}

#[test]
fn a_bad_scenario_file_exits_2_naming_the_line() {
    let directory = out_dir("bad");
    std::fs::create_dir_all(&directory).unwrap();
    let path = directory.join("bad.toml");
    std::fs::write(&path, "name = \"bad\"\nduration_secs = 10\ndrain_secs = \"ten\"\n").unwrap();
    let output = edgeproof(&["run", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{}:3:", path.display())), "the error names file and line 3:\n{stderr}");

    let missing = edgeproof(&["run", "no-such-scenario"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("smoke"), "lists the catalogue");
}

#[test]
fn demo_runs_smoke_and_says_where_the_outcome_went() {
    let directory = out_dir("demo");
    let output = edgeproof(&["demo", "--out", directory.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("PASS") && stdout.contains("smoke"), "{stdout}");
    assert!(stdout.contains(&format!("outcome: {}", directory.join("outcome.json").display())), "{stdout}");
    assert_eq!(read_outcome(&directory)["counters"]["lost"], 0);
    // The report lands beside the outcome, and the demo says where.
    let report = directory.join("report.html");
    assert!(stdout.contains(&format!("report: {}", report.display())), "{stdout}");
    let html = std::fs::read_to_string(&report).expect("report.html written");
    assert!(html.starts_with("<!doctype html>") && html.contains("<span class=\"word\">PASS</span>"));
}
