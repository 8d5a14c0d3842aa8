//! The command line: `edgeproof broker --config` turns a bad config file into a clear error
//! naming the file and line, with exit code 2; bad flags are clap errors; `edgeproof roundtrip`
//! runs its loopback round trip and reports it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Writes `contents` to a fresh file named after the test and returns its path.
fn config_file(test_name: &str, contents: &str) -> PathBuf {
    let directory = std::env::temp_dir().join(format!("edgeproof-cli-config-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("create temp dir");
    let path = directory.join(format!("{test_name}.toml"));
    std::fs::write(&path, contents).expect("write config");
    path
}

fn edgeproof(args: &[&str]) -> Output {
    // The command exits on its own for every case here (a config error stops it before it
    // binds), so no timeout is needed: a hang would be the bug this test catches by never
    // finishing, and the harness reports it.
    Command::new(env!("CARGO_BIN_EXE_edgeproof")).args(args).output().expect("run edgeproof")
}

fn assert_config_error(output: &Output, path: &Path, line: usize, mentions: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "exit code 2 for a bad config; stderr:\n{stderr}");
    let location = format!("{}:{line}:", path.display());
    assert!(stderr.contains(&location), "the error names file and line ({location}):\n{stderr}");
    assert!(stderr.contains(&format!("line {line}")), "the error says `line {line}`:\n{stderr}");
    assert!(stderr.contains(mentions), "the error mentions {mentions:?}:\n{stderr}");
}

#[test]
fn unknown_config_key_exits_2_naming_the_line() {
    let path = config_file("unknown_key", "# broker settings\n\nno_such_setting = 42\n");
    let output = edgeproof(&["broker", "--listen", "127.0.0.1:0", "--config", path.to_str().unwrap()]);
    assert_config_error(&output, &path, 3, "no_such_setting");
}

#[test]
fn wrong_value_type_exits_2_naming_the_line() {
    let path = config_file("wrong_type", "keep_alive_max_secs = 60\nconnections_limit = \"many\"\n");
    let output = edgeproof(&["broker", "--listen", "127.0.0.1:0", "--config", path.to_str().unwrap()]);
    assert_config_error(&output, &path, 2, "invalid type");
}

#[test]
fn contradictory_value_exits_2_naming_the_setting() {
    let path = config_file("contradictory", "receive_maximum = 0\n");
    let output = edgeproof(&["broker", "--listen", "127.0.0.1:0", "--config", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()) && stderr.contains("receive_maximum"), "{stderr}");
    assert!(!stderr.contains("panicked"), "a config error is not a crash:\n{stderr}");
}

#[test]
fn valid_config_is_accepted() {
    // A valid file gets past config loading: the broker then fails to bind a port that cannot be
    // bound, which exits 1 (not 2) and names the address.
    let path = config_file("valid", "connections_limit = 10\n");
    let output = edgeproof(&["broker", "--listen", "192.0.2.1:1", "--config", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("192.0.2.1:1"), "{stderr}");
}

#[test]
fn malformed_toml_exits_2_naming_the_line() {
    let path = config_file("malformed", "\n[unclosed\n");
    let output = edgeproof(&["broker", "--listen", "127.0.0.1:0", "--config", path.to_str().unwrap()]);
    assert_config_error(&output, &path, 2, "expected");
}

#[test]
fn missing_config_file_exits_2() {
    let output = edgeproof(&["broker", "--config", "/nonexistent/edgeproof/broker.toml"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/edgeproof/broker.toml"), "{stderr}");
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let output = edgeproof(&["broker", "--no-such-flag"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "clap's usage error code; stderr:\n{stderr}");
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}

#[test]
fn every_subcommand_has_help() {
    for subcommand in ["broker", "demo", "report", "roundtrip", "run"] {
        let output = edgeproof(&[subcommand, "--help"]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{subcommand} --help");
        assert!(stdout.contains("Usage: edgeproof"), "{subcommand} --help:\n{stdout}");
    }
}

#[test]
fn roundtrip_delivers_every_message_once_and_in_order_at_every_qos() {
    for qos in ["0", "1", "2"] {
        let output = edgeproof(&["roundtrip", "--messages", "300", "--qos", qos]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "roundtrip at QoS {qos} failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains(&format!("QoS {qos}")), "{stdout}");
        assert!(stdout.contains("300 published, 300 delivered once and in order"), "{stdout}");
        assert!(stdout.contains("end-to-end latency") && stdout.contains("msg/s"), "{stdout}");
        // QoS 0 has no acknowledgement to time.
        assert_eq!(stdout.contains("publish -> ack latency"), qos != "0", "{stdout}");
    }
}
