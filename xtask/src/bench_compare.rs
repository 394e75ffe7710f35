//! `cargo xtask bench-compare`: ternd, mosquitto and rumqttd side by side.
//!
//! Each broker runs as a fresh process per scenario and repetition, on a loopback port, with
//! its queue and in-flight limits raised and persistence off so that it loses nothing, and
//! `tern bench` (release build) drives the same scenario against each. From the broker's
//! `/proc/<pid>` entries come the CPU seconds it spent and its resident memory; from the
//! bench's `tern-bench {json}` summary line the throughput, loss, latency and connect rate.
//! The table prints medians over the repetitions and the ratios ternd/peer.
//!
//! A peer that cannot be installed is reported as missing, never skipped in silence.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Result, cargo, root, run};

/// What `cargo xtask bench-compare` was asked for.
struct Options {
    reps: usize,
    quick: bool,
    only: Option<Vec<String>>,
    brokers: Vec<BrokerKind>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut options = Options {
            reps: 3,
            quick: false,
            only: None,
            brokers: vec![
                BrokerKind::Ternd,
                BrokerKind::Mosquitto,
                BrokerKind::Rumqttd,
            ],
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .ok_or_else(|| format!("bench-compare: {arg} needs a value"))
            };
            match arg.as_str() {
                "--reps" => {
                    options.reps = value()?
                        .parse()
                        .map_err(|_| "bench-compare: --reps takes a number".to_owned())?;
                }
                "--quick" => options.quick = true,
                "--only" => {
                    options.only = Some(value()?.split(',').map(str::to_owned).collect());
                }
                "--brokers" => {
                    options.brokers = value()?
                        .split(',')
                        .map(BrokerKind::parse)
                        .collect::<Result<_>>()?;
                }
                other => {
                    return Err(format!(
                        "bench-compare: unknown option {other:?} \
                         (--reps N, --quick, --only a,b, --brokers ternd,mosquitto,rumqttd)"
                    ));
                }
            }
        }
        if options.reps == 0 {
            return Err("bench-compare: --reps must be at least 1".into());
        }
        Ok(options)
    }
}

/// The brokers compared.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum BrokerKind {
    Ternd,
    Mosquitto,
    Rumqttd,
}

impl BrokerKind {
    fn parse(name: &str) -> Result<BrokerKind> {
        match name {
            "ternd" => Ok(BrokerKind::Ternd),
            "mosquitto" => Ok(BrokerKind::Mosquitto),
            "rumqttd" => Ok(BrokerKind::Rumqttd),
            other => Err(format!("bench-compare: unknown broker {other:?}")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            BrokerKind::Ternd => "ternd",
            BrokerKind::Mosquitto => "mosquitto",
            BrokerKind::Rumqttd => "rumqttd",
        }
    }
}

/// How a scenario is judged.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Messages per second, loss, broker CPU per million delivered messages.
    Throughput,
    /// Latency percentiles at a fixed rate.
    Latency,
    /// Idle connections: broker memory per connection and connections accepted per second.
    Idle,
}

/// One scenario: the `tern bench` arguments after the broker's host and port.
struct Scenario {
    name: &'static str,
    what: &'static str,
    kind: Kind,
    args: Vec<String>,
    /// Connections it opens (for the file-descriptor limit and the idle figures).
    connections: usize,
}

fn scenarios(quick: bool) -> Vec<Scenario> {
    let scale = |full: u64, small: u64| if quick { small } else { full };
    let strings = |args: &[&str]| args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let fan_in = |qos: &str| {
        let mut args = strings(&[
            "--publishers",
            "4",
            "--subscribers",
            "1",
            "--qos",
            qos,
            "--size",
            "64",
            "--topic",
            "bench/%i",
            "--sub-topic",
            "bench/#",
        ]);
        args.extend(["--count".into(), scale(1_000_000, 100_000).to_string()]);
        args
    };
    let fan_out = |qos: &str| {
        let mut args = strings(&[
            "--publishers",
            "1",
            "--subscribers",
            "100",
            "--qos",
            qos,
            "--size",
            "64",
            "--topic",
            "bench/fan",
            "--sub-topic",
            "bench/fan",
        ]);
        // Messages published; each reaches 100 subscribers.
        args.extend(["--count".into(), scale(10_000, 1_000).to_string()]);
        args
    };
    // QoS 2 takes four packets a message: a fifth of the messages keeps the slowest peer's run
    // within seconds.
    let fan_in_qos2 = {
        let mut args = fan_in("2");
        if let Some(count) = args.last_mut() {
            *count = scale(200_000, 20_000).to_string();
        }
        args
    };
    let idle = scale(10_000, 1_000);
    let routing = {
        let mut args = fan_in("0");
        args.extend(["--extra-subs".into(), scale(100_000, 10_000).to_string()]);
        args
    };
    let latency = {
        let mut args = strings(&[
            "--publishers",
            "4",
            "--subscribers",
            "1",
            "--qos",
            "1",
            "--size",
            "64",
            "--topic",
            "bench/%i",
            "--sub-topic",
            "bench/#",
            "--rate",
            "20000",
        ]);
        args.extend(["--count".into(), scale(200_000, 40_000).to_string()]);
        args
    };
    vec![
        Scenario {
            name: "fan-in-qos0",
            what: "4 publishers -> 1 subscriber, QoS 0, 64 B",
            kind: Kind::Throughput,
            args: fan_in("0"),
            connections: 5,
        },
        Scenario {
            name: "fan-in-qos1",
            what: "4 publishers -> 1 subscriber, QoS 1, 64 B",
            kind: Kind::Throughput,
            args: fan_in("1"),
            connections: 5,
        },
        Scenario {
            name: "fan-in-qos2",
            what: "4 publishers -> 1 subscriber, QoS 2, 64 B",
            kind: Kind::Throughput,
            args: fan_in_qos2,
            connections: 5,
        },
        Scenario {
            name: "fan-out-qos0",
            what: "1 publisher -> 100 subscribers, QoS 0, 64 B",
            kind: Kind::Throughput,
            args: fan_out("0"),
            connections: 101,
        },
        Scenario {
            name: "fan-out-qos1",
            what: "1 publisher -> 100 subscribers, QoS 1, 64 B",
            kind: Kind::Throughput,
            args: fan_out("1"),
            connections: 101,
        },
        Scenario {
            name: "latency-qos1-20k",
            what: "QoS 1 at 20k msg/s, 4 publishers -> 1 subscriber",
            kind: Kind::Latency,
            args: latency,
            connections: 5,
        },
        Scenario {
            name: "routing-wildcards",
            what: "fan-in QoS 0 with 100k extra wildcard subscriptions",
            kind: Kind::Throughput,
            args: routing,
            connections: 8,
        },
        Scenario {
            name: "idle-connections",
            what: "idle connections held open",
            kind: Kind::Idle,
            args: vec![
                "--count".into(),
                idle.to_string(),
                "--hold".into(),
                "2".into(),
            ],
            connections: idle as usize,
        },
    ]
}

/// What one run measured.
#[derive(Default, Clone)]
struct Sample {
    msgs_per_s: f64,
    lost: f64,
    cpu_s_per_million: f64,
    p50_us: f64,
    p99_us: f64,
    connect_rate: f64,
    rss_per_conn_kb: f64,
}

/// `cargo xtask bench-compare [--reps N] [--quick] [--only a,b] [--brokers ...]`.
pub(crate) fn bench_compare(args: &[String]) -> Result {
    let options = Options::parse(args)?;
    println!("==> building ternd and tern (release)");
    run(cargo().args(["build", "--release", "-p", "tern-broker", "-p", "tern-cli"]))?;
    let release = root().join("target").join("release");
    let tern = release.join("tern");
    let work = root().join("target").join("bench-compare");
    std::fs::create_dir_all(&work).map_err(|e| format!("creating {}: {e}", work.display()))?;

    let mut available = BTreeMap::new();
    for &kind in &options.brokers {
        match locate(kind, &release) {
            Ok(path) => {
                available.insert(kind, path);
            }
            Err(why) => println!("==> {}: MISSING ({why})", kind.name()),
        }
    }
    let mut results: BTreeMap<(&str, BrokerKind), Vec<Sample>> = BTreeMap::new();
    let scenarios: Vec<Scenario> = scenarios(options.quick)
        .into_iter()
        .filter(|s| {
            options
                .only
                .as_ref()
                .is_none_or(|o| o.iter().any(|n| n == s.name))
        })
        .collect();
    for scenario in &scenarios {
        for rep in 0..options.reps {
            for (&kind, binary) in &available {
                let port = free_port()?;
                print!(
                    "==> {} [{}/{}] {}: ",
                    scenario.name,
                    rep + 1,
                    options.reps,
                    kind.name()
                );
                let sample = measure(kind, binary, &work, port, &tern, scenario)
                    .map_err(|e| format!("{} on {}: {e}", scenario.name, kind.name()))?;
                println!("{}", describe(scenario.kind, &sample));
                results
                    .entry((scenario.name, kind))
                    .or_default()
                    .push(sample);
            }
        }
    }
    let table = table(&scenarios, &options.brokers, &available, &results);
    println!("\n{table}");
    let path = work.join("results.md");
    std::fs::write(&path, &table).map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("(also written to {})", path.display());
    Ok(())
}

/// The broker's binary, installed when missing.
fn locate(kind: BrokerKind, release: &Path) -> Result<PathBuf> {
    match kind {
        BrokerKind::Ternd => Ok(release.join("ternd")),
        BrokerKind::Mosquitto => {
            let path = PathBuf::from("/usr/sbin/mosquitto");
            if !path.exists() {
                println!("==> installing mosquitto (apt-get)");
                run(Command::new("apt-get").args(["update", "-qq"]))?;
                run(Command::new("apt-get")
                    .args([
                        "install",
                        "-y",
                        "-qq",
                        "--no-install-recommends",
                        "mosquitto",
                    ])
                    .env("DEBIAN_FRONTEND", "noninteractive"))?;
            }
            path.exists()
                .then_some(path)
                .ok_or_else(|| "apt-get did not provide /usr/sbin/mosquitto".into())
        }
        BrokerKind::Rumqttd => {
            let home = std::env::var_os("CARGO_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
                .ok_or("neither CARGO_HOME nor HOME is set")?;
            let path = home.join("bin").join("rumqttd");
            if !path.exists() {
                println!("==> installing rumqttd (cargo install rumqttd)");
                run(Command::new("cargo").args(["install", "rumqttd"]))?;
            }
            if path.exists() {
                Ok(path)
            } else {
                Err(format!("cargo install did not provide {}", path.display()))
            }
        }
    }
}

/// Starts `kind` on `port`, runs the scenario against it, stops it.
fn measure(
    kind: BrokerKind,
    binary: &Path,
    work: &Path,
    port: u16,
    tern: &Path,
    scenario: &Scenario,
) -> Result<Sample> {
    let mut broker = Broker::start(kind, binary, work, port, scenario.connections)?;
    let outcome = drive(&mut broker, port, tern, scenario);
    broker.stop();
    outcome
}

fn drive(broker: &mut Broker, port: u16, tern: &Path, scenario: &Scenario) -> Result<Sample> {
    let pid = broker.child.id();
    let cpu_before = cpu_seconds(pid)?;
    let rss_before = rss_kb(pid)?;
    let mode = if scenario.kind == Kind::Idle {
        "conn"
    } else {
        "pubsub"
    };
    let mut bench = limited(tern)
        .args([
            "bench",
            mode,
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-V",
            "311",
        ])
        .arg("--quiet")
        .args(&scenario.args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting tern bench: {e}"))?;
    let stdout = bench.stdout.take().expect("piped");
    // Peak resident memory while the bench runs, sampled from another thread.
    let sampler = {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kb(pid).unwrap_or(0));
                thread::sleep(Duration::from_millis(50));
            }
            peak
        });
        (stop, handle)
    };
    let mut summary = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("reading tern bench: {e}"))?;
        if let Some(json) = line.strip_prefix("tern-bench ") {
            summary = Some(json.to_owned());
        }
    }
    let status = bench
        .wait()
        .map_err(|e| format!("waiting for tern bench: {e}"))?;
    sampler.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.1.join().unwrap_or(0);
    let cpu = cpu_seconds(pid)? - cpu_before;
    if !status.success() {
        return Err(format!("tern bench exited with {status}"));
    }
    let summary = summary.ok_or("tern bench printed no `tern-bench {json}` line")?;
    let json: serde_json::Value =
        serde_json::from_str(&summary).map_err(|e| format!("bad summary {summary:?}: {e}"))?;
    let number = |key: &str| {
        json.get(key)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    };
    let received = number("received");
    Ok(Sample {
        msgs_per_s: number("msgs_per_s"),
        lost: number("lost"),
        cpu_s_per_million: if received > 0.0 {
            cpu / received * 1e6
        } else {
            0.0
        },
        p50_us: number("p50_us"),
        p99_us: number("p99_us"),
        connect_rate: number("connect_rate"),
        rss_per_conn_kb: (peak.saturating_sub(rss_before)) as f64
            / scenario.connections.max(1) as f64,
    })
}

/// A command run with a file-descriptor limit high enough for the idle-connection scenario.
fn limited(program: &Path) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "ulimit -n 65536 2>/dev/null || ulimit -n 16384; exec \"$0\" \"$@\"",
    ])
    .arg(program);
    cmd
}

/// A broker process under test.
struct Broker {
    child: Child,
}

impl Broker {
    fn start(
        kind: BrokerKind,
        binary: &Path,
        work: &Path,
        port: u16,
        connections: usize,
    ) -> Result<Broker> {
        // rumqttd reads its configuration by extension: it must be `.toml`.
        let config = work.join(format!("{}.toml", kind.name()));
        let text = match kind {
            // Queues sized for the largest scenario, so that nothing is dropped; in memory,
            // like mosquitto below.
            BrokerKind::Ternd => format!(
                "sys_interval = 0\npersistence = false\n\
                 [[listener]]\nbind = \"127.0.0.1:{port}\"\n\
                 [session]\nmax_inflight = 65535\nmax_queued_messages = 2000000\n\
                 max_queued_bytes = 1073741824\n\
                 [mailbox]\nmax_messages = 65536\nmax_bytes = 268435456\n"
            ),
            // 0 means no maximum for both.
            BrokerKind::Mosquitto => format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_queued_messages 0\nmax_inflight_messages 0\nmax_connections -1\n\
                 set_tcp_nodelay true\nlog_type error\n"
            ),
            BrokerKind::Rumqttd => format!(
                "id = 0\n\
                 [router]\nid = 0\nmax_connections = {max}\nmax_outgoing_packet_count = 200\n\
                 max_segment_size = 104857600\nmax_segment_count = 10\n\
                 [v4.1]\nname = \"v4-1\"\nlisten = \"127.0.0.1:{port}\"\n\
                 next_connection_delay_ms = 0\n\
                 [v4.1.connections]\nconnection_timeout_ms = 60000\nmax_payload_size = 1048576\n\
                 max_inflight_count = 65535\ndynamic_filters = true\n",
                max = connections + 100
            ),
        };
        std::fs::write(&config, text).map_err(|e| format!("writing {}: {e}", config.display()))?;
        let mut cmd = limited(binary);
        match kind {
            // Warnings and errors only, as mosquitto (`log_type error`) and rumqttd (`-q`) are
            // run: at its default level ternd logs a line per connection and disconnection.
            BrokerKind::Ternd => cmd.arg("-c").arg(&config).env("RUST_LOG", "warn"),
            BrokerKind::Mosquitto => cmd.arg("-c").arg(&config),
            BrokerKind::Rumqttd => cmd.arg("--config").arg(&config).arg("-q"),
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let mut broker = Broker { child };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = broker.child.try_wait() {
                return Err(format!("{} exited at start with {status}", kind.name()));
            }
            if Instant::now() > deadline {
                broker.stop();
                return Err(format!("{} did not listen on {addr}", kind.name()));
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(broker)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User plus system CPU seconds of a process, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("reading /proc/{pid}/stat: {e}"))?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state.
    Ok((ticks(11) + ticks(12)) / clock_ticks())
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Resident set size in KiB, from `/proc/<pid>/status`.
fn rss_kb(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

fn describe(kind: Kind, s: &Sample) -> String {
    match kind {
        Kind::Throughput => format!(
            "{:.0} msg/s, lost {}, {:.2} CPU-s per M",
            s.msgs_per_s, s.lost, s.cpu_s_per_million
        ),
        Kind::Latency => format!(
            "p50 {:.0} µs, p99 {:.0} µs, lost {}",
            s.p50_us, s.p99_us, s.lost
        ),
        Kind::Idle => format!(
            "{:.2} KiB per connection, {:.0} connections/s",
            s.rss_per_conn_kb, s.connect_rate
        ),
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The markdown table of medians and ratios.
fn table(
    scenarios: &[Scenario],
    brokers: &[BrokerKind],
    available: &BTreeMap<BrokerKind, PathBuf>,
    results: &BTreeMap<(&str, BrokerKind), Vec<Sample>>,
) -> String {
    let peers: Vec<BrokerKind> = brokers
        .iter()
        .copied()
        .filter(|&b| b != BrokerKind::Ternd)
        .collect();
    let mut out = String::from("| scenario | metric |");
    for b in brokers {
        let _ = write!(out, " {} |", b.name());
    }
    for p in &peers {
        let _ = write!(out, " ternd/{} |", p.name());
    }
    out.push_str("\n|---|---|");
    out.push_str(&"---|".repeat(brokers.len() + peers.len()));
    out.push('\n');
    type Metric = (&'static str, fn(&Sample) -> f64);
    for scenario in scenarios {
        let metrics: &[Metric] = match scenario.kind {
            Kind::Throughput => &[
                ("msg/s", |s| s.msgs_per_s),
                ("lost", |s| s.lost),
                ("CPU-s per M msgs", |s| s.cpu_s_per_million),
            ],
            Kind::Latency => &[
                ("p50 µs", |s| s.p50_us),
                ("p99 µs", |s| s.p99_us),
                ("lost", |s| s.lost),
            ],
            Kind::Idle => &[
                ("KiB RSS per connection", |s| s.rss_per_conn_kb),
                ("connections/s", |s| s.connect_rate),
            ],
        };
        for (metric, get) in metrics {
            let value = |b: BrokerKind| {
                results
                    .get(&(scenario.name, b))
                    .map(|samples| median(&mut samples.iter().map(get).collect::<Vec<_>>()))
            };
            let _ = write!(out, "| {} ({}) | {metric} |", scenario.name, scenario.what);
            for &b in brokers {
                match value(b) {
                    Some(v) => {
                        let _ = write!(out, " {} |", figure(v));
                    }
                    None if available.contains_key(&b) => out.push_str(" – |"),
                    None => out.push_str(" missing |"),
                }
            }
            for &p in &peers {
                match (value(BrokerKind::Ternd), value(p)) {
                    (Some(t), Some(v)) if v != 0.0 => {
                        let _ = write!(out, " {:.2}× |", t / v);
                    }
                    _ => out.push_str(" – |"),
                }
            }
            out.push('\n');
        }
    }
    out
}

fn figure(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
