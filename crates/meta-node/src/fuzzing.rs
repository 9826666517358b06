//! The decoders that take bytes from disk or the network, as the fuzz
//! targets (`fuzz/`, `cargo xtask fuzz`) and their regression tests
//! (`tests/it/fuzz_regressions.rs`) drive them: each must return a value or
//! an error for any input, never panic.

use std::io::Read;

use meta_raft::Envelope;
use meta_store_api::snapshot::SnapshotReader;

/// `data` as a snapshot stream: reads every record (and checks it as a
/// restore would) until the end or the first error.
pub fn snapshot_reader(data: &[u8]) {
    let mut input: &[u8] = data;
    let _ =
        meta_store_api::snapshot::restore_records(b"", &mut input as &mut dyn Read, |_, _| Ok(()));
    if let Ok(mut reader) = SnapshotReader::new(data) {
        while let Ok(Some(_)) = reader.next_record() {}
    }
}

/// `data` as an encoded command, in a current envelope and as a whole
/// postcard-encoded envelope (as a log entry payload carries it).
pub fn command_decoder(data: &[u8]) {
    let envelope = Envelope {
        version: Envelope::VERSION,
        command: data.to_vec(),
    };
    let _ = envelope.open();
    if let Ok(envelope) = postcard::from_bytes::<Envelope>(data) {
        let _ = envelope.open();
    }
}

/// `data` as a stored log entry: raw, and framed with a valid version and
/// checksum so that the decoder behind the checksum sees it too.
pub fn log_entry(data: &[u8]) {
    let _ = meta_raft::codec::decode_entry(data);
    let mut framed = Vec::with_capacity(data.len() + 5);
    framed.push(meta_raft::codec::ENTRY_VERSION);
    framed.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());
    framed.extend_from_slice(data);
    let _ = meta_raft::codec::decode_entry(&framed);
}

/// `data` as a peer request frame's payload.
pub fn peer_frame(data: &[u8]) {
    let _ = crate::transport::decode_request(data);
}
