//! Raw bytes into a client-side MQTT V3_1 decoder: never a panic, and whatever decodes
//! re-encodes for V3_1 and decodes to the same packet, byte-identically.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_codec::ProtocolVersion;

fuzz_target!(|data: &[u8]| {
    tern_fuzz::decode_stream(ProtocolVersion::V3_1, data);
});
