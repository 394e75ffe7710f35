//! Project automation for Tern, run as `cargo xtask <command>`.
//!
//! - `cargo xtask test`: everything CI checks, in order: formatting, clippy, the `no_std` build
//!   of the codec, the fuzz targets (built and smoke-run), then the whole test suite last so the
//!   output ends with the test runner's own summary. Installs what it needs when missing.
//! - `cargo xtask fuzz [SECONDS]`: build every fuzz target and run each for SECONDS (default 10).
//! - `cargo xtask peers`: install the third-party MQTT peers of the interop tests.
//! - `cargo xtask bench`: the criterion micro-benchmarks (`cargo bench`).
//! - `cargo xtask bench-compare`: ternd, mosquitto and rumqttd side by side under `tern bench`
//!   (see [`bench_compare`]).
//! - `cargo xtask codec-ir [ROW]`: instructions per packet of each codec benchmark row, tern-codec
//!   beside rumqttc, under callgrind (see [`codec_ir`]).

mod bench_compare;
mod codec_ir;

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Instant,
};

/// The bare-metal target the codec's `no_std` build is checked on.
const NO_STD_TARGET: &str = "thumbv7em-none-eabihf";
/// Seconds each fuzz target runs in the smoke test of `cargo xtask test`.
const FUZZ_SMOKE_SECONDS: u32 = 10;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("fuzz") => {
            let seconds = match args.get(1).map(|s| s.parse::<u32>()) {
                None => Ok(FUZZ_SMOKE_SECONDS),
                Some(Ok(n)) => Ok(n),
                Some(Err(_)) => Err(format!(
                    "`cargo xtask fuzz [SECONDS]`: {:?} is not a number",
                    args[1]
                )),
            };
            seconds.and_then(fuzz)
        }
        Some("bench") => bench(&args[1..]),
        Some("bench-compare") => bench_compare::bench_compare(&args[1..]),
        Some("codec-ir") => codec_ir::codec_ir(&args[1..]),
        Some("peers") => interop_peers().map(|peers| {
            println!(
                "interop peers ready; NODE_PATH={}",
                peers.node_path.display()
            );
        }),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 test            fmt, clippy, no_std build, fuzz smoke, then every test\n  \
                 fuzz [SECONDS]  build all fuzz targets and run each for SECONDS (default {FUZZ_SMOKE_SECONDS})\n  \
                 peers           install the interop peers (mosquitto, paho-mqtt, MQTT.js)\n  \
                 bench [ARGS]    criterion micro-benchmarks (`cargo bench --workspace ARGS`)\n  \
                 bench-compare   ternd vs mosquitto vs rumqttd under `tern bench` \
                 [--reps N] [--quick] [--only a,b] [--brokers ternd,mosquitto,rumqttd]\n  \
                 codec-ir [ROW]  instructions per packet, tern-codec vs rumqttc, per codec bench row (valgrind)"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = ()> = std::result::Result<T, String>;

/// `cargo xtask test`: the one test command of README.md and of `.ci/run`.
fn test() -> Result {
    let started = Instant::now();
    step("formatting (cargo fmt --check)", || {
        run(cargo().args(["fmt", "--all", "--check"]))
    })?;
    step(
        "lints (cargo clippy --workspace --all-targets -D warnings)",
        || {
            run(cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))
        },
    )?;
    step(
        &format!("no_std build of tern-codec for {NO_STD_TARGET}"),
        no_std_build,
    )?;
    step("fuzz targets: build and smoke run", || {
        fuzz(FUZZ_SMOKE_SECONDS)
    })?;
    let interop = step(
        "interop peers: mosquitto, paho-mqtt, MQTT.js",
        interop_peers,
    )?;
    step("tests (cargo test --workspace)", || {
        run(cargo()
            .args(["test", "--workspace"])
            .env("TERN_INTEROP", "1")
            .env("NODE_PATH", &interop.node_path))
    })?;
    println!(
        "==> xtask test: all steps passed in {:.0?}",
        started.elapsed()
    );
    Ok(())
}

/// Where the interop tests find the third-party peers that `interop_peers` installed.
struct Interop {
    /// `node_modules` holding the `mqtt` package (MQTT.js), for `NODE_PATH`.
    node_path: PathBuf,
}

/// Installs the real third-party MQTT peers the interop tests drive, when missing: mosquitto
/// and its clients (Debian packages), paho-mqtt 2.x (PyPI) and MQTT.js (npm, into
/// `target/interop-node`). The tests run with `TERN_INTEROP=1`, under which a missing peer is a
/// failure rather than a skip.
fn interop_peers() -> Result<Interop> {
    let have = |cmd: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {cmd} >/dev/null 2>&1")])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let mosquitto = have("mosquitto") || Path::new("/usr/sbin/mosquitto").exists();
    if !mosquitto || !have("mosquitto_pub") {
        println!("    installing mosquitto and mosquitto-clients (apt-get)");
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(["mosquitto", "mosquitto-clients"])
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    let paho_check = "import sys, paho.mqtt; sys.exit(paho.mqtt.__version__[0] != '2')";
    let paho = Command::new("python3")
        .args(["-c", paho_check])
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !paho {
        println!("    installing paho-mqtt 2.x (pip)");
        run(Command::new("python3").args(["-m", "pip", "install", "--quiet", "paho-mqtt>=2,<3"]))?;
    }
    let node_dir = root().join("target").join("interop-node");
    let node_path = node_dir.join("node_modules");
    if !node_path.join("mqtt").join("package.json").exists() {
        println!(
            "    installing MQTT.js (npm install mqtt@5) into {}",
            node_dir.display()
        );
        std::fs::create_dir_all(&node_dir)
            .map_err(|e| format!("creating {}: {e}", node_dir.display()))?;
        run(Command::new("npm")
            .current_dir(&node_dir)
            .args([
                "install",
                "--silent",
                "--no-audit",
                "--no-fund",
                "--prefix",
                ".",
            ])
            .arg("mqtt@5"))?;
    }
    Ok(Interop { node_path })
}

/// Builds the codec without `std` for a bare-metal target, installing the target if needed.
fn no_std_build() -> Result {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if !installed.lines().any(|l| l.trim() == NO_STD_TARGET) {
        println!("    installing the {NO_STD_TARGET} target (rustup target add)");
        run(Command::new("rustup").args(["target", "add", NO_STD_TARGET]))?;
    }
    run(cargo().args([
        "build",
        "--package",
        "tern-codec",
        "--no-default-features",
        "--target",
        NO_STD_TARGET,
    ]))
}

/// Builds every fuzz target with the nightly toolchain and runs each for `seconds`.
fn fuzz(seconds: u32) -> Result {
    ensure_nightly()?;
    ensure_cargo_fuzz()?;
    let fuzz_dir = root().join("fuzz");
    run(nightly_cargo()
        .current_dir(&fuzz_dir)
        .args(["fuzz", "build", "--debug-assertions"]))?;
    let targets = output(
        nightly_cargo()
            .current_dir(&fuzz_dir)
            .args(["fuzz", "list"]),
    )?;
    let scratch = env::temp_dir().join(format!("tern-fuzz-{}", std::process::id()));
    for target in targets.lines().map(str::trim).filter(|t| !t.is_empty()) {
        // New corpus entries go to a scratch directory; the committed seeds are only read.
        let work = scratch.join(target);
        std::fs::create_dir_all(&work).map_err(|e| format!("creating {}: {e}", work.display()))?;
        let seeds = fuzz_dir.join("corpus").join(target);
        let mut cmd = nightly_cargo();
        cmd.current_dir(&fuzz_dir)
            .args(["fuzz", "run", "--debug-assertions", target])
            .arg(&work);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        cmd.arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-print_final_stats=1");
        println!("    fuzzing {target} for {seconds} s");
        run(&mut cmd)?;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// `cargo xtask bench`: the criterion micro-benchmarks.
fn bench(extra: &[String]) -> Result {
    run(cargo().args(["bench", "--workspace"]).args(extra))
}

fn ensure_nightly() -> Result {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        println!("    installing the nightly toolchain (rustup toolchain install nightly)");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    Ok(())
}

fn ensure_cargo_fuzz() -> Result {
    let present = nightly_cargo()
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !present {
        println!("    installing cargo-fuzz (cargo install cargo-fuzz --locked)");
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

/// Runs `f` as a named step, printing a clear line before and after.
fn step<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    println!("==> {name}");
    let started = Instant::now();
    let value = f().map_err(|e| format!("{name}: {e}"))?;
    println!("==> ok: {name} ({:.1?})", started.elapsed());
    Ok(value)
}

/// The cargo that runs this xtask, in the workspace root.
fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// The rustup proxy with `+nightly`; the stable toolchain's variables are removed so they do
/// not leak into the nightly build.
fn nightly_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO");
    cmd
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn run(cmd: &mut Command) -> Result {
    let status = cmd
        .status()
        .map_err(|e| format!("could not start {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} exited with {status}"))
    }
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| format!("could not start {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
