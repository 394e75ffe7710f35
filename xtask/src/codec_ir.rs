//! `cargo xtask codec-ir [FILTER]`: instructions per packet of every row of the codec
//! benchmark, tern-codec beside rumqttc, counted by valgrind's callgrind.
//!
//! Each row's loop (`benches/examples/codec_ir.rs`, the same fixtures and loop as
//! `benches/benches/codec.rs`) runs over 100 and over 300 packets with collection on in the
//! loop only; the difference divided by 200 is the count per packet, with one-off costs
//! cancelled. Unlike the wall clock on a shared VM this does not depend on the load and repeats
//! to the instruction. FILTER keeps the rows whose name (`publish/decode/v5/16`) contains it.
//! Targets: decode at least 1.5×, encode at least 2× rumqttc's throughput (issue 2), that is
//! rumqttc's count over tern's.

use std::process::Command;

use crate::{Result, cargo, output, root, run};

const SMALL: usize = 100;
const LARGE: usize = 300;

/// `cargo xtask codec-ir`.
pub(crate) fn codec_ir(args: &[String]) -> Result {
    let filter = args.first().map(String::as_str).unwrap_or("");
    ensure_valgrind()?;
    run(cargo().args([
        "build",
        "--release",
        "-q",
        "-p",
        "tern-benches",
        "--example",
        "codec_ir",
    ]))?;
    let bin = root().join("target/release/examples/codec_ir");
    println!(
        "| packet | version | size | direction | tern Ir/op | rumqttc Ir/op | ratio | target | met |"
    );
    println!("|---|---|---:|---|---:|---:|---:|---:|---|");
    let (mut met, mut rows) = (0, 0);
    for (packet, sizes) in [
        ("publish", [16, 1024, 65536]),
        ("connect", [16, 1024, 65535]),
        ("subscribe", [16, 1024, 65536]),
    ] {
        for version in ["v3.1.1", "v5"] {
            for direction in ["decode", "encode", "vectored"] {
                if direction == "vectored" && packet != "publish" {
                    continue;
                }
                for size in sizes {
                    let name = format!("{packet}/{direction}/{version}/{size}");
                    if !name.contains(filter) {
                        continue;
                    }
                    let size = size.to_string();
                    let row = [packet, direction, version, size.as_str()];
                    let tern = per_packet(&bin, &row, "tern")?;
                    // The vectored row is compared with rumqttc's copying encode.
                    let rumq_dir = if direction == "vectored" {
                        "encode"
                    } else {
                        direction
                    };
                    let rumq = per_packet(&bin, &[packet, rumq_dir, version, &size], "rumqttc")?;
                    let ratio = rumq / tern;
                    let target = if direction == "decode" { 1.5 } else { 2.0 };
                    rows += 1;
                    if ratio >= target {
                        met += 1;
                    }
                    println!(
                        "| {packet} | {version} | {size} | {direction} | {tern:.0} | {rumq:.0} | {ratio:.3}× | ≥{target:.1}× | {} |",
                        if ratio >= target { "yes" } else { "no" }
                    );
                }
            }
        }
    }
    println!("{met} of {rows} rows meet the target");
    Ok(())
}

/// Instructions per packet of one row and codec: (Ir at LARGE − Ir at SMALL) / (LARGE − SMALL).
fn per_packet(bin: &std::path::Path, row: &[&str; 4], codec: &str) -> Result<f64> {
    let mut counts = [0u64; 2];
    for (count, n) in counts.iter_mut().zip([SMALL, LARGE]) {
        let out = Command::new("valgrind")
            .args([
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                "--toggle-collect=codec_ir::timed_*",
            ])
            .arg(bin)
            .args(row)
            .args([codec, &n.to_string()])
            .output()
            .map_err(|e| format!("could not start valgrind: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(format!("codec_ir {row:?} {codec} {n} failed: {stderr}"));
        }
        *count = stderr
            .lines()
            .find_map(|l| l.split("Collected :").nth(1))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("no `Collected` count from callgrind: {stderr}"))?;
    }
    Ok((counts[1] - counts[0]) as f64 / (LARGE - SMALL) as f64)
}

fn ensure_valgrind() -> Result {
    if output(Command::new("valgrind").arg("--version")).is_err() {
        println!("==> installing valgrind (apt-get)");
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get").args(["install", "-y", "-qq", "valgrind"]))?;
    }
    Ok(())
}
