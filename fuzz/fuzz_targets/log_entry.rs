//! Any bytes as a stored log entry, raw and behind a valid checksum (so
//! the decoder behind the checksum is reached): an entry or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    meta_node::fuzzing::log_entry(data);
});
