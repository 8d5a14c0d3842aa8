//! `edgeproof broker`: the real MQTT broker on tokio sockets.
//!
//! This module owns reading the broker's TOML config file (with errors that name the file, line
//! and column), building the runtime and stopping on Ctrl-C. It must never hold broker logic: the
//! core and its shell live in `edgeproof-system`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use edgeproof_system::broker::BrokerConfig;
use edgeproof_system::net::{TokioClock, TokioNet};
use edgeproof_system::shell::{BrokerHandle, BrokerShellConfig};

/// Exit code for a config file that cannot be read or does not describe a valid broker.
const EXIT_BAD_CONFIG: u8 = 2;

#[derive(clap::Args)]
pub struct BrokerArgs {
    /// Address and port to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:1883")]
    listen: SocketAddr,
    /// A TOML file with broker settings; unknown keys are errors. Without it, defaults apply.
    #[arg(long)]
    config: Option<PathBuf>,
    /// TCP connections served at once; one more is accepted and closed at once. (MQTT-level
    /// limits, `connections_limit` among them, live in the config file.)
    #[arg(long, default_value_t = BrokerShellConfig::default().tcp_connections_limit)]
    tcp_connections_limit: usize,
}

pub fn run(args: BrokerArgs) -> ExitCode {
    let broker_config = match &args.config {
        None => BrokerConfig::default(),
        Some(path) => match load_config(path) {
            Ok(config) => config,
            Err(message) => {
                eprintln!("{message}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        },
    };
    if args.tcp_connections_limit == 0 {
        eprintln!("error: --connections-limit must be at least 1");
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    let shell_config = BrokerShellConfig {
        tcp_connections_limit: args.tcp_connections_limit,
        ..BrokerShellConfig::default()
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let mut handle =
            BrokerHandle::spawn(TokioNet, TokioClock::start(), broker_config, shell_config, args.listen)
                .await?;
        println!("edgeproof broker listening on {} (Ctrl-C stops it)", handle.local_addr());
        tokio::select! {
            signal = tokio::signal::ctrl_c() => signal?,
            // Only a bug stops the broker by itself; say so instead of waiting for Ctrl-C.
            stopped = handle.stopped() => return stopped,
        }
        println!("stopping: {:?}", handle.stats());
        // The shutdown tells v5 clients why (DISCONNECT 0x8B) and waits, bounded, for the flush.
        let stats = handle.shared_stats();
        handle.shutdown().await?;
        println!(
            "stopped: {} writers cut off at the close linger",
            stats.snapshot().shutdown_writers_aborted
        );
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: broker on {} failed: {error}", args.listen);
            ExitCode::FAILURE
        }
    }
}

/// Reads and parses a broker config file. The error message names the file and, for a parse or
/// schema error, the line and column and what was expected there.
fn load_config(path: &Path) -> Result<BrokerConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("error: cannot read config file {}: {error}", path.display()))?;
    parse_config(&text).map_err(|error| format!("error: invalid config file {}{error}", path.display()))
}

/// Parses config text; the error starts with `:line:column: ` when the position is known.
fn parse_config(text: &str) -> Result<BrokerConfig, String> {
    let config = toml::from_str::<BrokerConfig>(text).map_err(|error| {
        let position = error.span().map(|span| line_and_column(text, span.start));
        let message = error.message().trim_end();
        match position {
            Some((line, column)) => format!(":{line}:{column}: {message}\n{error}"),
            None => format!(": {message}"),
        }
    })?;
    // Values that parse but contradict the spec or each other have no position of their own.
    config.validate().map_err(|error| format!(": invalid value: {error}"))?;
    Ok(config)
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    assert!(line >= 1 && column >= 1);
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        assert_eq!(line_and_column("abc", 0), (1, 1));
        assert_eq!(line_and_column("abc\ndef", 5), (2, 2));
        assert_eq!(line_and_column("a\n\nb", 3), (3, 1));
        assert_eq!(line_and_column("ab", 99), (1, 3));
    }

    #[test]
    fn unknown_key_names_its_line() {
        let error = parse_config("\n\nno_such_setting = 1\n").unwrap_err();
        assert!(error.starts_with(":3:1: "), "{error}");
        assert!(error.contains("no_such_setting"), "{error}");
    }

    #[test]
    fn empty_file_is_the_default_config() {
        assert!(parse_config("").is_ok());
    }

    #[test]
    fn contradictory_values_are_an_error_not_a_panic() {
        let error = parse_config("receive_maximum = 0\n").unwrap_err();
        assert!(error.contains("receive_maximum"), "{error}");
        assert!(parse_config("receive_maximum = 10\n").is_ok());
    }
}
