//! How Raft records are laid out in the store, and the bridge from store
//! errors to openraft's.
//!
//! Log entries are stored as `[version: u8][crc32c: u32 LE][postcard(entry)]`:
//! the checksum covers the encoded entry, so a damaged entry is reported as
//! corruption and never applied or replicated.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::types::{Entry, StorageError};
use openraft::{ErrorSubject, ErrorVerb, StorageIOError};

/// The framing version of a stored log entry (its first byte).
pub const ENTRY_VERSION: u8 = 1;
const ENTRY_HEADER: usize = 5;

/// Why a stored record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The record's checksum does not match its bytes.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        /// Stored checksum.
        stored: u32,
        /// Computed checksum.
        computed: u32,
    },
    /// Unknown record version.
    #[error("unsupported record version {0}")]
    Version(u8),
    /// Too short to hold its header.
    #[error("record of {0} bytes is too short")]
    Truncated(usize),
    /// postcard could not decode it.
    #[error("undecodable record: {0}")]
    Postcard(#[from] postcard::Error),
}

/// Encodes a log entry with its checksum.
pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    let body = postcard::to_stdvec(entry).expect("log entries always encode");
    let mut out = Vec::with_capacity(ENTRY_HEADER + body.len());
    out.push(ENTRY_VERSION);
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes a log entry, verifying its checksum.
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, CodecError> {
    if bytes.len() < ENTRY_HEADER {
        return Err(CodecError::Truncated(bytes.len()));
    }
    if bytes[0] != ENTRY_VERSION {
        return Err(CodecError::Version(bytes[0]));
    }
    let stored = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let body = &bytes[ENTRY_HEADER..];
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(CodecError::Checksum { stored, computed });
    }
    Ok(postcard::from_bytes(body)?)
}

/// Encodes a small record (vote, log id, applied state, model records).
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("records always encode")
}

/// Decodes a small record.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    Ok(postcard::from_bytes(bytes)?)
}

/// Converts an error into openraft's storage error for `subject`/`verb`.
pub fn storage_error<E: std::error::Error + 'static>(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    e: &E,
) -> StorageError {
    StorageIOError::new(subject, verb, openraft::AnyError::new(e)).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::testing::log_id;

    #[test]
    fn a_flipped_bit_in_a_stored_entry_is_corruption() {
        let entry = Entry {
            log_id: log_id(3, 1, 42),
            payload: openraft::EntryPayload::Blank,
        };
        let bytes = encode_entry(&entry);
        assert_eq!(decode_entry(&bytes).unwrap().log_id, entry.log_id);
        for pos in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[pos] ^= 0x10;
            assert!(decode_entry(&bad).is_err(), "flip at {pos} went unnoticed");
        }
        assert!(matches!(
            decode_entry(&bytes[..3]),
            Err(CodecError::Truncated(3))
        ));
    }
}
