//! `tern`: the Tern command-line tool.
//!
//! - `tern pub` publishes messages and `tern sub` prints them, with the flags of mosquitto_pub
//!   and mosquitto_sub where they exist, on tern-client (TCP, TLS, WebSocket).
//! - `tern bench pubsub` and `tern bench conn` load a broker over raw tern-codec connections
//!   and print a `tern-bench {json}` summary line.
//!
//! Exit status as mosquitto's clients: 0 on success, the CONNACK return code (3.1.1) or reason
//! code (5.0) when the broker refuses the connection, 27 when `tern sub -W` times out, 1 on
//! any other error.

mod bench;
mod connection;
mod format;
mod publish;
mod subscribe;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The Tern MQTT command-line tool.
#[derive(Parser, Debug)]
#[command(name = "tern", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Publish messages (mosquitto_pub's flags).
    Pub(publish::PubArgs),
    /// Subscribe and print messages (mosquitto_sub's flags).
    Sub(subscribe::SubArgs),
    /// Benchmark a broker.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// How the program ends: the exit status and what to say on stderr.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The exit status.
    pub(crate) code: u8,
    /// The message, printed as `Error: …` (nothing when empty).
    pub(crate) message: String,
}

impl Failure {
    /// An error with exit status 1.
    pub(crate) fn other(message: impl std::fmt::Display) -> Self {
        Failure {
            code: 1,
            message: message.to_string(),
        }
    }
}

fn main() -> ExitCode {
    // Usage errors exit with 1 like mosquitto's clients (2 would read as a CONNACK code).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::from(e.use_stderr()));
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("Error: cannot start the tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Pub(args) => publish::run(args).await,
            Command::Sub(args) => subscribe::run(args).await,
            Command::Bench(command) => bench::run(command).await,
        }
    });
    // Background tasks (a client's driver) must not hold the process.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !failure.message.is_empty() {
                eprintln!("Error: {}", failure.message);
            }
            ExitCode::from(failure.code)
        }
    }
}
