//! A server-side `Decoder::new` (CONNECT first, which sets the version) fed the stream in
//! chunks whose sizes come from the input (see `tern_fuzz::split_server_input`). Never a panic;
//! every packet re-encodes; and the outcome does not depend on how the stream was chunked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((chunks, max, stream)) = tern_fuzz::split_server_input(data) else {
        return;
    };
    let chunked = tern_fuzz::run_server(stream, &chunks, max);
    let whole = tern_fuzz::run_server(stream, &[], max);
    assert_eq!(chunked, whole, "the chunking changed the outcome");
});
