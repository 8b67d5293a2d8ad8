//! Arbitrary bytes into every decoder and into a live core: nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../decode_body.rs");

fuzz_target!(|data: &[u8]| feed(data));
