//! Any bytes as a peer request frame: a request or `InvalidData`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    meta_node::fuzzing::peer_frame(data);
});
