//! Any bytes as a snapshot stream: the reader and `restore_records` must
//! return records or an error, never panic or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    meta_node::fuzzing::snapshot_reader(data);
});
