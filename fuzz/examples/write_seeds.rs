//! Writes the seed corpora of the codec fuzz targets into `fuzz/corpus/<target>/seed-*`:
//! valid packets of every type for each version, built from fixed pseudo-random bytes.
//!
//! Run once from `fuzz/`: `cargo +nightly run --example write_seeds`.

use arbitrary::Unstructured;
use std::{fs, path::Path};
use tern_codec::ProtocolVersion;
use tern_fuzz::{KINDS, encode, fit_connect, packet_of_kind};

const NAMES: [&str; KINDS] = [
    "connect",
    "connack",
    "publish",
    "puback",
    "pubrec",
    "pubrel",
    "pubcomp",
    "subscribe",
    "suback",
    "unsubscribe",
    "unsuback",
    "pingreq",
    "pingresp",
    "disconnect",
    "auth",
];

/// Fixed pseudo-random bytes (xorshift64), so the seeds are reproducible.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One packet of each kind valid for `version`, encoded, with its kind's name.
fn packets(version: ProtocolVersion, seed: u64) -> Vec<(&'static str, Vec<u8>)> {
    let kinds = if version.is_v5() { KINDS } else { KINDS - 1 };
    (0..kinds)
        .map(|kind| {
            let bytes = noise(seed * 100 + kind as u64, 512);
            let mut u = Unstructured::new(&bytes);
            let mut packet = packet_of_kind(&mut u, version, kind).expect("enough bytes");
            fit_connect(&mut packet, version);
            (NAMES[kind], encode(&packet, version).to_vec())
        })
        .collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
}

fn main() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let versions = [
        ("v3_1", ProtocolVersion::V3_1),
        ("v3_1_1", ProtocolVersion::V3_1_1),
        ("v5", ProtocolVersion::V5),
    ];
    let server = corpus.join("codec_decode_server");
    fs::create_dir_all(&server).unwrap();
    for (i, (suffix, version)) in versions.into_iter().enumerate() {
        let dir = corpus.join(format!("codec_decode_{suffix}"));
        fs::create_dir_all(&dir).unwrap();
        let mut all = Vec::new();
        for seed in 1..=1 {
            for (name, bytes) in packets(version, seed + 10 * i as u64) {
                write(&dir, &format!("{name}-{seed}"), &bytes);
                if name != "connect" {
                    all.extend_from_slice(&bytes);
                }
            }
        }
        write(&dir, "stream", &all);

        // Server: CONNECT then the rest, whole (byte 0 = 0) and in chunks of 1, 3, 7, 64 bytes
        // under a 4096-byte maximum (byte 0 = 0x34).
        let (_, connect) = &packets(version, 7 + i as u64)[0];
        let mut stream = connect.clone();
        stream.extend_from_slice(&all);
        let mut whole = vec![0x00];
        whole.extend_from_slice(&stream);
        write(&server, &format!("{suffix}-whole"), &whole);
        let mut chunked = vec![0x34, 0, 2, 6, 63];
        chunked.extend_from_slice(&stream);
        write(&server, &format!("{suffix}-chunked"), &chunked);
    }

    let roundtrip = corpus.join("codec_roundtrip");
    fs::create_dir_all(&roundtrip).unwrap();
    for seed in 0..12u64 {
        write(
            &roundtrip,
            &format!("noise-{seed}"),
            &noise(1000 + seed, 64 + 64 * seed as usize),
        );
    }
}
