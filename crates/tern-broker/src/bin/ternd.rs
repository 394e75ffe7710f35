//! `ternd`: the Tern MQTT broker.
//!
//! Without a configuration it listens on 127.0.0.1:1883 only; `-c FILE` reads a TOML
//! configuration (see `tern_broker::config`), `-p`/`--listen` add or replace listeners. It
//! keeps retained messages and persistent sessions in `tern-data/` (the `persistence` keys;
//! `--data-dir DIR` elsewhere, `--memory` for none). It serves until SIGINT or SIGTERM, then
//! shuts down gracefully; SIGHUP reloads the password and ACL files. `ternd passwd` manages a
//! password file like mosquitto_passwd.

#[path = "ternd/passwd.rs"]
mod passwd;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tern_broker::config::{ListenerConfig, TlsVersion};
use tern_broker::{Broker, Config};
use tracing_subscriber::EnvFilter;

/// The Tern MQTT broker (MQTT 3.1, 3.1.1 and 5.0).
#[derive(Debug, Parser)]
#[command(name = "ternd", version, about)]
struct Cli {
    /// TOML configuration file.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen on this port on 127.0.0.1 (repeatable; replaces the configured listeners).
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    ports: Vec<u16>,
    /// Listen on this address, e.g. 0.0.0.0:1883 (repeatable; replaces the configured
    /// listeners).
    #[arg(long = "listen", value_name = "ADDR")]
    listen: Vec<SocketAddr>,
    /// More log output: -v debug, -vv trace (RUST_LOG overrides). The default, info, logs
    /// every connection's lifecycle: connected (client id, version, peer, listener),
    /// disconnected (reason), refused (reason).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    verbose: u8,
    /// Check the configuration (certificate, password and ACL files included) and exit.
    #[arg(long = "check-config")]
    check_config: bool,
    /// Keep everything in memory: nothing survives a restart (`persistence = false`).
    #[arg(long = "memory", conflicts_with = "data_dir")]
    memory: bool,
    /// Keep the durable state in this directory (`persistence_location`).
    #[arg(long = "data-dir", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage a password file: `ternd passwd [-c] [-D] [-b] [-U] passwordfile [username]
    /// [password]`, as mosquitto_passwd.
    Passwd(passwd::PasswdArgs),
}

/// Exit status of a configuration error.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Passwd(args)) = &cli.command {
        return match passwd::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("ternd passwd: {message}");
                ExitCode::FAILURE
            }
        };
    }
    let level = match cli.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for a terminal only: a log file or a collector gets plain `key=value`.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let config = match load_config(&cli) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("ternd: {message}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.check_config {
        if let Err(e) = config.check_files() {
            eprintln!("ternd: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        println!("ternd: configuration OK");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ternd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config))
}

fn load_config(cli: &Cli) -> Result<Config, String> {
    let mut config = match &cli.config {
        Some(path) => Config::from_file(path).map_err(|e| format!("{}: {e}", path.display()))?,
        None => Config::default(),
    };
    let mut listeners: Vec<SocketAddr> = cli
        .ports
        .iter()
        .map(|&port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
        .collect();
    listeners.extend(&cli.listen);
    if !listeners.is_empty() {
        config.listeners = listeners.into_iter().map(ListenerConfig::new).collect();
    }
    if cli.memory {
        config.persistence = false;
    }
    if let Some(dir) = &cli.data_dir {
        config.persistence = true;
        config.persistence_location = dir.clone();
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

async fn serve(config: Config) -> ExitCode {
    // The handlers go in before anything can connect: a SIGTERM that arrived between the
    // startup line and their installation would take the default action and kill the process
    // without a graceful shutdown.
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("ternd: cannot watch SIGINT/SIGTERM/SIGHUP: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listeners = config.listener_configs();
    let store = config.persistence.then(|| {
        config
            .persistence_location
            .join(tern_broker::storage::DATABASE_FILE)
    });
    // A store that cannot be opened (corrupt, another version, permissions, in use) stops
    // the start: it is never replaced.
    let broker = match Broker::from_config(config) {
        Ok(broker) => broker.start().await,
        Err(e) => Err(e),
    };
    let broker = match broker {
        Ok(broker) => broker,
        Err(e) => {
            eprintln!("ternd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addrs: Vec<String> = broker
        .local_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut banner = format!(
        "ternd {} listening on {}\n",
        env!("CARGO_PKG_VERSION"),
        addrs.join(", ")
    );
    // Then one line per listener: its address and transport, and one for the store.
    for (addr, listener) in broker.local_addrs().iter().zip(&listeners) {
        banner.push_str(&format!("  {addr}  {}\n", describe(listener)));
    }
    match store {
        Some(path) => banner.push_str(&format!("  store  {}\n", path.display())),
        None => banner.push_str("  store  none (in memory)\n"),
    }
    announce(&banner);
    let mut signals = signals;
    while signals.wait().await == Signal::Reload {
        // A bad file is logged and the files in use stay (see `BrokerHandle::reload_auth`).
        match broker.reload_auth() {
            Ok(true) => tracing::info!("SIGHUP: password and ACL files reloaded"),
            Ok(false) => tracing::info!("SIGHUP: no password or ACL file to reload"),
            Err(e) => tracing::error!("SIGHUP: reload failed, keeping the files in use: {e}"),
        }
    }
    tracing::info!("shutting down");
    if !broker.shutdown().await {
        tracing::warn!("some connections did not close in time");
    }
    ExitCode::SUCCESS
}

/// Writes the startup lines to stdout in one write. A closed or broken stdout (a supervisor
/// that read the first line and went away) is not a reason to stop serving: `println!` would
/// panic on EPIPE and take the broker down without a graceful shutdown.
fn announce(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        tracing::debug!("startup lines not written to stdout: {e}");
    }
}

/// A listener's transport for the startup lines, e.g. `mqtt+tls (client certificates
/// required, identity as username)`.
fn describe(listener: &ListenerConfig) -> String {
    let mut text = listener.describe();
    if let Some(tls) = &listener.tls {
        let mut notes = vec![match tls.tls_version {
            TlsVersion::Tls13 => "TLS 1.3",
            _ => "TLS 1.2+",
        }];
        if tls.require_certificate {
            notes.push("client certificates required");
        } else if tls.cafile.is_some() {
            notes.push("client certificates verified if presented");
        }
        if tls.use_identity_as_username {
            notes.push("identity as username");
        }
        text.push_str(&format!(" ({})", notes.join(", ")));
    }
    text
}

/// What a signal asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    /// SIGINT or SIGTERM: shut down.
    Stop,
    /// SIGHUP: reload the password and ACL files.
    Reload,
}

/// SIGINT, SIGTERM and SIGHUP, watched from before the broker starts until it stops.
#[cfg(unix)]
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    async fn wait(&mut self) -> Signal {
        tokio::select! {
            _ = self.interrupt.recv() => Signal::Stop,
            _ = self.terminate.recv() => Signal::Stop,
            _ = self.hangup.recv() => Signal::Reload,
        }
    }
}

/// Ctrl-C, where there are no Unix signals.
#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Signals)
    }

    async fn wait(&mut self) -> Signal {
        let _ = tokio::signal::ctrl_c().await;
        Signal::Stop
    }
}
