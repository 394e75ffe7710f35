//! Raw bytes into a client-side MQTT V5 decoder: never a panic, and whatever decodes
//! re-encodes for V5 and decodes to the same packet, byte-identically.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_codec::ProtocolVersion;

fuzz_target!(|data: &[u8]| {
    tern_fuzz::decode_stream(ProtocolVersion::V5, data);
});
