//! The `edgeproof` command line: one binary for the demo, the real broker and the simulators.
//!
//! It owns argument parsing, logging setup and exit codes only; every subcommand delegates to a
//! library crate through its own module here.

mod broker;
mod demo;
mod report;
mod roundtrip;
mod run;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc's malloc: the simulated worlds allocate and free per message (the
/// cores release idle buffers on purpose so a million devices stay small), and glibc spent 12-15%
/// of a fast-engine profile there. The fast-engine benchmark uses the same allocator, so its
/// figures are what `edgeproof run` delivers. The library crates stay allocator-neutral.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "edgeproof", version, about)]
enum Command {
    /// Run the MQTT 3.1.1/5 broker on real TCP sockets until Ctrl-C.
    Broker(broker::BrokerArgs),
    /// Run the built-in `smoke` scenario in the fast simulated world and print its verdict table.
    ///
    /// One broker, 1,000 devices publishing QoS 1 every second, one subscriber on `#`, 60
    /// simulated seconds. Writes `outcome.json` and `report.html` beside it; exit 0 when every check passes, 1 when one fails.
    Demo(demo::DemoArgs),
    /// Run a scenario from a seed in a deterministic world and write `outcome.json`.
    ///
    /// Exit 0 when every check passes, 1 when one fails (the seed and the replay command are
    /// printed), 2 on bad input.
    Run(run::RunArgs),
    /// Run a publish/subscribe round trip through the real broker on loopback and print what it
    /// measured.
    ///
    /// Starts the broker on an ephemeral port of 127.0.0.1, subscribes to `demo/#` and publishes
    /// numbered, timestamped messages with the client core, checks every message arrived once and
    /// in order (exit 1 if not), and prints publish->ack and end-to-end latency percentiles and
    /// throughput.
    Roundtrip(roundtrip::RoundtripArgs),
    /// Write one self-contained HTML report from `outcome.json` files or directories of them.
    ///
    /// One outcome makes a run report, several seeds of one scenario a sweep summary, anything
    /// else (or `--baseline`) a comparison. The file works offline (everything inline, no network
    /// requests). Exit 0 when written, 2 on an unreadable or malformed outcome (the error names
    /// the file and the field) or an unwritable output.
    Report(report::ReportArgs),
}

fn main() -> ExitCode {
    match Command::parse() {
        Command::Broker(args) => {
            init_logging("info");
            broker::run(args)
        }
        Command::Demo(args) => {
            init_logging("warn");
            demo::run(args)
        }
        Command::Run(args) => {
            init_logging("warn");
            run::run(args)
        }
        Command::Report(args) => {
            init_logging("warn");
            report::run(args)
        }
        Command::Roundtrip(args) => {
            init_logging("warn");
            roundtrip::run(args)
        }
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (`target=level` pairs, for example
/// `edgeproof_system=debug`) or else by `default_filter`.
fn init_logging(default_filter: &str) {
    let filter_text = std::env::var("RUST_LOG").unwrap_or_else(|_| default_filter.to_string());
    let filter: tracing_subscriber::filter::Targets = match filter_text.parse() {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!("warning: ignoring RUST_LOG={filter_text:?} ({error}); using {default_filter:?}");
            default_filter.parse().expect("the default filter parses")
        }
    };
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false))
        .with(filter)
        .init();
}
