//! Any bytes as a logged command (and inside a well-formed envelope):
//! decoding returns a command or a rejection, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    meta_node::fuzzing::command_decoder(data);
});
