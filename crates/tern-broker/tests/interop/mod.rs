//! What the interop tests share: a broker on an ephemeral loopback port, the presence check of
//! each third-party peer, and child processes that are always bounded by a timeout.
//!
//! A missing peer skips its test with `skipped: <peer> not installed (run cargo xtask peers)`,
//! unless `TERN_INTEROP=1` (as `cargo xtask test` sets it): then it fails. Every wait is for an
//! event (a line of output, an exit), guarded by [`TIMEOUT`]; a child still running when its
//! [`Child`] is dropped is killed.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tern_broker::{Broker, BrokerHandle, Config};

/// How long any child process or wait may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A third-party MQTT peer.
#[derive(Clone, Copy, Debug)]
pub enum Peer {
    /// `mosquitto_pub` and `mosquitto_sub` (mosquitto-clients 2.x).
    Mosquitto,
    /// Python `paho-mqtt` 2.x.
    Paho,
    /// MQTT.js 5 (`npm install mqtt`), found through `NODE_PATH`.
    MqttJs,
    /// `mosquitto_passwd` (the mosquitto package).
    MosquittoPasswd,
}

impl Peer {
    /// The name the skip or failure message gives.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Mosquitto => "mosquitto_pub/mosquitto_sub (mosquitto-clients)",
            Peer::Paho => "Python paho-mqtt 2.x",
            Peer::MqttJs => "MQTT.js (node + the `mqtt` npm package)",
            Peer::MosquittoPasswd => "mosquitto_passwd (mosquitto)",
        }
    }

    /// Whether the peer runs here.
    fn present(self) -> bool {
        // `must_succeed` false: only a failure to start means absent (`--help` exits 1).
        let runs = |mut probe: Command, must_succeed: bool| {
            probe
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success() || !must_succeed)
        };
        match self {
            Peer::Mosquitto => ["mosquitto_pub", "mosquitto_sub"].iter().all(|bin| {
                let mut probe = Command::new(bin);
                probe.arg("--help");
                runs(probe, false)
            }),
            Peer::Paho => {
                let mut probe = Command::new("python3");
                probe.args([
                    "-c",
                    "import sys, paho.mqtt.client; sys.exit(paho.mqtt.__version__[0] != '2')",
                ]);
                runs(probe, true)
            }
            // Without arguments it prints its usage and exits 1.
            Peer::MosquittoPasswd => runs(Command::new("mosquitto_passwd"), false),
            Peer::MqttJs => {
                let mut probe = node();
                probe.args(["-e", "require('mqtt')"]);
                runs(probe, true)
            }
        }
    }
}

/// Whether the test can run with `peer`: true if it is installed. Otherwise, under
/// `TERN_INTEROP=1`, the test fails naming the peer; without it, this prints the skip and
/// returns false.
pub fn require(peer: Peer) -> bool {
    if peer.present() {
        return true;
    }
    if std::env::var("TERN_INTEROP").is_ok_and(|v| v == "1") {
        panic!(
            "TERN_INTEROP=1 but {} is not installed: run `cargo xtask peers`",
            peer.name()
        );
    }
    println!(
        "skipped: {} not installed (run cargo xtask peers)",
        peer.name()
    );
    false
}

/// `node`, with `NODE_PATH` defaulting to where `cargo xtask peers` installs MQTT.js.
pub fn node() -> Command {
    let mut c = Command::new("node");
    if std::env::var_os("NODE_PATH").is_none() {
        c.env(
            "NODE_PATH",
            workspace_root().join("target/interop-node/node_modules"),
        );
    }
    c
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A script under `tests/interop/`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

/// A broker on an ephemeral loopback port, on its own runtime so that the tests themselves
/// can block on child processes. Shut down gracefully when dropped.
pub struct TestBroker {
    runtime: tokio::runtime::Runtime,
    handle: BrokerHandle,
}

impl TestBroker {
    /// The default configuration, without `$SYS` topics (they would be retained messages of
    /// their own in every `#` subscription).
    pub fn start() -> TestBroker {
        let mut config = Config::with_listeners(["127.0.0.1:0".parse().unwrap()]);
        config.sys_interval = 0;
        TestBroker::with_config(config)
    }

    /// A broker with this configuration (its listeners should use port 0). `RUST_LOG` turns on
    /// its log in the test's output.
    pub fn with_config(config: Config) -> TestBroker {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let handle = runtime
            .block_on(Broker::new(config).start())
            .expect("broker starts");
        TestBroker { runtime, handle }
    }

    /// The TCP port it listens on.
    pub fn port(&self) -> u16 {
        self.handle.local_addrs()[0].port()
    }

    /// The running broker.
    pub fn handle(&self) -> &BrokerHandle {
        &self.handle
    }

    /// The port as a command-line argument.
    pub fn port_arg(&self) -> String {
        self.port().to_string()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let _ = self
            .runtime
            .block_on(async { tokio::time::timeout(TIMEOUT, self.handle.shutdown()).await });
    }
}

/// Which output of a child a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// How a child ended.
#[derive(Debug)]
pub struct Exit {
    /// Its exit status.
    pub status: ExitStatus,
    /// Every line it wrote to standard output, in order.
    pub stdout: Vec<String>,
    /// Everything it wrote to standard error.
    pub stderr: String,
}

/// A running child process whose output is read line by line. Killed (SIGKILL) when dropped
/// while still running.
pub struct Child {
    name: String,
    child: std::process::Child,
    lines: mpsc::Receiver<(Stream, String)>,
    readers: Vec<thread::JoinHandle<()>>,
    /// Every line received so far, for the failure messages.
    seen: Vec<(Stream, String)>,
    started: Instant,
}

impl Child {
    /// Starts `command` with piped output; `name` names it in failure messages.
    pub fn spawn(name: &str, command: &mut Command) -> Child {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start {command:?}: {e}"));
        let (tx, lines) = mpsc::channel();
        let readers = vec![
            read_lines(child.stdout.take().unwrap(), Stream::Stdout, tx.clone()),
            read_lines(child.stderr.take().unwrap(), Stream::Stderr, tx),
        ];
        Child {
            name: name.to_owned(),
            child,
            lines,
            readers,
            seen: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Waits for a line of standard output containing `needle` and returns it; fails after
    /// [`TIMEOUT`] or if the child ends first, showing its output.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((stream, line)) => {
                    self.seen.push((stream, line.clone()));
                    if stream == Stream::Stdout && line.contains(needle) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!(
                        "{}: no line with {needle:?} within {TIMEOUT:?}; output so far:\n{}",
                        self.name,
                        self.transcript()
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait();
                    panic!(
                        "{}: ended ({status:?}) before a line with {needle:?}; output:\n{}",
                        self.name,
                        self.transcript()
                    );
                }
            }
        }
    }

    /// Waits for the child to exit on its own, within [`TIMEOUT`] of its start; kills it and
    /// fails otherwise.
    pub fn wait(mut self) -> Exit {
        let deadline = self.started + TIMEOUT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    // Polled: std has no wait with a timeout.
                    thread::sleep(Duration::from_millis(10));
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    self.drain();
                    panic!(
                        "{}: still running after {TIMEOUT:?}, killed; output:\n{}",
                        self.name,
                        self.transcript()
                    );
                }
                Err(e) => panic!("{}: waiting for it: {e}", self.name),
            }
        };
        self.drain();
        let mut exit = Exit {
            status,
            stdout: Vec::new(),
            stderr: String::new(),
        };
        for (stream, line) in &self.seen {
            match stream {
                Stream::Stdout => exit.stdout.push(line.clone()),
                Stream::Stderr => {
                    exit.stderr.push_str(line);
                    exit.stderr.push('\n');
                }
            }
        }
        exit
    }

    /// Waits for a successful exit (see [`wait`](Self::wait)) and returns its standard output;
    /// fails with the whole output otherwise.
    pub fn success(self) -> Vec<String> {
        let name = self.name.clone();
        let exit = self.wait();
        assert!(
            exit.status.success(),
            "{name}: {}; stdout:\n{}\nstderr:\n{}",
            exit.status,
            exit.stdout.join("\n"),
            exit.stderr
        );
        exit.stdout
    }

    /// Kills the child with SIGKILL, as a crash would end it, and reaps it.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        let _ = self.child.wait();
    }

    /// Everything the child wrote so far, each line tagged with its stream.
    pub fn transcript(&self) -> String {
        self.seen
            .iter()
            .map(|(stream, line)| match stream {
                Stream::Stdout => format!("  out| {line}\n"),
                Stream::Stderr => format!("  err| {line}\n"),
            })
            .collect()
    }

    /// Collects the rest of the output once the child has exited.
    fn drain(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn read_lines(
    from: impl Read + Send + 'static,
    stream: Stream,
    to: mpsc::Sender<(Stream, String)>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(from).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_owned();
            if to.send((stream, line)).is_err() {
                break;
            }
        }
    })
}

/// Runs a script of `tests/interop/` with `interpreter` (`python3`, `node`) and these
/// arguments, and asserts that it exits 0; on failure the message shows all its output.
pub fn run_script(mut interpreter: Command, name: &str, args: &[&str]) {
    let path = script(name);
    let child = Child::spawn(name, interpreter.arg(&path).args(args));
    let exit = child.wait();
    println!(
        "{name} {args:?}: {}\nstdout:\n{}\nstderr:\n{}",
        exit.status,
        exit.stdout.join("\n"),
        exit.stderr
    );
    assert!(
        exit.status.success(),
        "{name} {args:?} failed ({}); stdout:\n{}\nstderr:\n{}",
        exit.status,
        exit.stdout.join("\n"),
        exit.stderr
    );
}
