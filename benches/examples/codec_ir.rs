//! One row of the codec benchmark (`benches/codec.rs`) as a plain loop, for counting the
//! instructions it retires under valgrind's callgrind: `cargo xtask codec-ir` runs it for
//! every row and prints instructions per packet for tern-codec and rumqttc.
//!
//! `codec_ir PACKET DIRECTION VERSION SIZE CODEC N` runs the row's timed loop once over `N`
//! packets, in `timed_decode` or `timed_encode` (count with `--toggle-collect='codec_ir::timed_*'`):
//!
//! - PACKET: `publish`, `connect` or `subscribe`; DIRECTION: `decode`, `encode` or `vectored`
//!   (PUBLISH only: `Publish::encode_header` plus a clone of the payload);
//! - VERSION: `v3.1.1` or `v5`; SIZE: the row's size parameter (16, 1024, 65536; 65535 for
//!   CONNECT); CODEC: `tern` or `rumqttc`.
//!
//! The loops are the bench's: decode pushes each packet decoded from one shared-storage stream
//! of `N` copies into a vector with room for them; encode clears a buffer with room for the
//! packet and encodes into it, `N` times. The one-off costs (the stream, the vector, the
//! first call) cancel in the difference of two runs with different `N`.

#[path = "../benches/common/codec_fixtures.rs"]
mod fixtures;

use std::{env, hint::black_box, process::ExitCode};

use bytes::BytesMut;
use fixtures::*;
use tern_codec::ProtocolVersion;

/// Decodes `n` packets from `stream` into `out`: the bench's timed decode loop.
#[inline(never)]
fn timed_decode<P>(
    n: usize,
    stream: &mut BytesMut,
    out: &mut Vec<P>,
    mut decode: impl FnMut(&mut BytesMut) -> P,
) {
    for _ in 0..n {
        out.push(decode(stream));
    }
}

/// Encodes `msg` into `buf` `n` times: the bench's timed encode loop.
#[inline(never)]
fn timed_encode<M>(n: usize, msg: &M, buf: &mut BytesMut, encode: impl Fn(&M, &mut BytesMut)) {
    for _ in 0..n {
        buf.clear();
        encode(black_box(msg), buf);
        black_box(&*buf);
    }
}

/// Encodes `msg` once (the stream's packet), then runs the decode or encode loop.
fn run<M, P>(
    decode_dir: bool,
    n: usize,
    msg: M,
    encode: impl Fn(&M, &mut BytesMut),
    decode: impl FnMut(&mut BytesMut) -> P,
) {
    let mut one = BytesMut::new();
    encode(&msg, &mut one);
    if decode_dir {
        let mut stream = fresh_copy(&one.repeat(n));
        let mut out = Vec::with_capacity(n);
        timed_decode(n, &mut stream, &mut out, decode);
        assert!(stream.is_empty(), "a stream decoded to its end");
        black_box(&out);
    } else {
        let mut buf = BytesMut::with_capacity(one.len());
        timed_encode(n, &msg, &mut buf, encode);
        assert_eq!(buf, one, "the loop encodes the packet");
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let [packet, direction, version, size, codec, n] = &args[..] else {
        eprintln!("usage: codec_ir PACKET DIRECTION VERSION SIZE CODEC N (see the source)");
        return ExitCode::from(2);
    };
    let (Ok(size), Ok(n)) = (size.parse::<usize>(), n.parse::<usize>()) else {
        eprintln!("codec_ir: SIZE and N are numbers");
        return ExitCode::from(2);
    };
    let v = match version.as_str() {
        "v3.1.1" => ProtocolVersion::V3_1_1,
        "v5" => ProtocolVersion::V5,
        other => {
            eprintln!("codec_ir: unknown version {other:?}");
            return ExitCode::from(2);
        }
    };
    let dec = direction == "decode";
    // A row of either codec: its message for the size, its encode and its decode.
    macro_rules! tern_row {
        ($msg:expr, $decode:expr) => {
            run(
                dec,
                n,
                $msg,
                |p, b| p.encode(v, b).expect("encodes"),
                $decode,
            )
        };
    }
    macro_rules! rumqttc_row {
        ($msg:expr, $decode:expr) => {
            run(
                dec,
                n,
                $msg,
                |p, b| {
                    p.write(b).expect("encodes");
                },
                $decode,
            )
        };
    }
    match (
        packet.as_str(),
        direction.as_str(),
        v.is_v5(),
        codec.as_str(),
    ) {
        ("publish", "vectored", _, "tern") => {
            let p = tern_publish(size);
            let mut buf = BytesMut::with_capacity(p.encoded_len(v).expect("encodable"));
            timed_vectored(n, &p, v, &mut buf);
        }
        ("publish", _, _, "tern") => tern_row!(tern_publish(size), tern_decode(v)),
        ("publish", _, false, "rumqttc") => rumqttc_row!(r4_publish(size), r4_decode),
        ("publish", _, true, "rumqttc") => rumqttc_row!(r5_publish(size), r5_decode),
        ("connect", _, _, "tern") => tern_row!(tern_connect(v, size), tern_decode_connect),
        ("connect", _, false, "rumqttc") => rumqttc_row!(r4_connect(size), r4_decode),
        ("connect", _, true, "rumqttc") => run(
            dec,
            n,
            r5_connect(size),
            |(c, w, l): &R5Connect, b| {
                c.write(w, l, b).expect("encodes");
            },
            r5_decode,
        ),
        ("subscribe", _, _, "tern") => tern_row!(tern_subscribe(v, size), tern_decode(v)),
        ("subscribe", _, false, "rumqttc") => rumqttc_row!(r4_subscribe(size), r4_decode),
        ("subscribe", _, true, "rumqttc") => rumqttc_row!(r5_subscribe(size), r5_decode),
        _ => {
            eprintln!("codec_ir: no such row: {args:?}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

/// The vectored row's loop: the header encoded, the payload shared, `n` times.
#[inline(never)]
fn timed_vectored(n: usize, p: &tern_codec::Publish, v: ProtocolVersion, buf: &mut BytesMut) {
    for _ in 0..n {
        buf.clear();
        let p = black_box(p);
        p.encode_header(v, buf).expect("encodes");
        black_box((&*buf, p.payload.clone()));
    }
}
