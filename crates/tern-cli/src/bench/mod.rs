//! `tern bench`: load a broker over raw tern-codec connections and report throughput,
//! loss, latency and connect rate.
//!
//! Each connection is a tokio task with one read buffer and one write buffer, reused: many
//! packets are encoded into the write buffer and written with one `write_all`, and what one
//! read brought is decoded with tern-codec's [`Decoder`](tern_codec::Decoder) at once, its
//! acknowledgements batched the same way. The last stdout line is `tern-bench {json}`.

mod conn;
mod pubsub;
mod wire;

use std::io::IsTerminal;
use std::time::Duration;

use clap::{ArgAction, Args, Subcommand};
use hdrhistogram::Histogram;
use tern_client::ProtocolVersion;

use crate::Failure;
use crate::connection::parse_version;

/// `tern bench` modes.
#[derive(Subcommand, Debug)]
pub(crate) enum BenchCommand {
    /// Publishers and subscribers: throughput, loss and end-to-end latency.
    Pubsub(pubsub::PubsubArgs),
    /// Many connections: connect rate, then held open with keep alive.
    Conn(conn::ConnBenchArgs),
}

/// Flags of every bench mode.
#[derive(Args, Debug, Clone)]
pub(crate) struct Common {
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
    /// The broker's host.
    #[arg(short = 'h', long, default_value = "127.0.0.1")]
    pub(crate) host: String,
    /// The broker's port.
    #[arg(short = 'p', long, default_value_t = 1883)]
    pub(crate) port: u16,
    /// The protocol version: 311 (default) or 5.
    #[arg(short = 'V', long = "protocol-version", default_value = "311", value_parser = parse_version)]
    pub(crate) version: ProtocolVersion,
    /// Keep alive of every connection, in seconds (pings are sent at half of it).
    #[arg(long = "keep-alive", default_value_t = 60)]
    pub(crate) keep_alive: u16,
    /// No progress bar and no human summary: only the `tern-bench {json}` line.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// Seconds the TCP connect plus CONNECT/CONNACK of one connection may take.
    #[arg(long = "connect-timeout", default_value_t = 30)]
    pub(crate) connect_timeout: u64,
}

impl Common {
    /// Whether a progress bar is shown.
    pub(crate) fn progress(&self) -> bool {
        !self.quiet && std::io::stdout().is_terminal()
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout.max(1))
    }
}

/// Runs a bench.
pub(crate) async fn run(command: BenchCommand) -> Result<(), Failure> {
    match command {
        BenchCommand::Pubsub(args) => pubsub::run(args).await,
        BenchCommand::Conn(args) => conn::run(args).await,
    }
}

/// A latency histogram in microseconds, 1 µs to 1 h, 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// The latency percentiles of `h` as JSON fields, and the human line.
pub(crate) fn percentiles(h: &Histogram<u64>) -> ([(&'static str, u64); 6], String) {
    let q = |p: f64| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(p)
        }
    };
    let fields = [
        ("p50_us", q(0.5)),
        ("p90_us", q(0.9)),
        ("p99_us", q(0.99)),
        ("p999_us", q(0.999)),
        ("max_us", if h.is_empty() { 0 } else { h.max() }),
        ("mean_us", if h.is_empty() { 0 } else { h.mean() as u64 }),
    ];
    let human = format!(
        "p50 {} µs, p90 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
        fields[0].1, fields[1].1, fields[2].1, fields[3].1, fields[4].1
    );
    (fields, human)
}

/// Prints the summary line `tern-bench {json}` on stdout.
pub(crate) fn print_json(value: &serde_json::Value) {
    println!("tern-bench {value}");
}
