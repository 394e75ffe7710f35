//! A packet built from the input for a chosen version: it encodes (an error only for fields the
//! version cannot carry, and then nothing is written), decodes to itself and re-encodes to the
//! same bytes.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = tern_fuzz::round_trip(&mut u);
});
