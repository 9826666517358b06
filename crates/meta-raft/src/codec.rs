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

/// Serde for a `Vec<u8>` field as one byte string rather than a sequence of
/// `u8`s: `#[serde(with = "crate::codec::bytes")]`.
///
/// postcard lays both out the same way (a varint length, then the bytes),
/// so records written before and after read the same; what changes is the
/// cost: one copy instead of a call, a bounds check and possibly a
/// reallocation per byte. JSON still shows an array of numbers, and reads
/// one back.
pub mod bytes {
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use serde::ser::Serializer;
    use std::fmt;

    /// Writes `value` as one byte string.
    pub fn serialize<S: Serializer>(value: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(value)
    }

    /// Reads a byte string (or, from a self-describing format, an array
    /// of bytes).
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(ByteBuf)
    }

    struct ByteBuf;

    impl<'de> Visitor<'de> for ByteBuf {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            // Bounded by what the input holds, not by what it claims.
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(byte) = seq.next_element()? {
                out.push(byte);
            }
            Ok(out)
        }
    }

    /// [`bytes`](self) for an `Option<Vec<u8>>` field:
    /// `#[serde(with = "crate::codec::bytes::option")]`.
    pub mod option {
        use serde::de::{Deserializer, Visitor};
        use serde::ser::Serializer;
        use std::fmt;

        /// Writes `None`, or `Some` and the bytes.
        pub fn serialize<S: Serializer>(
            value: &Option<Vec<u8>>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(bytes) => serializer.serialize_some(&Bytes(bytes)),
                None => serializer.serialize_none(),
            }
        }

        /// Reads what [`serialize`] wrote.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Vec<u8>>, D::Error> {
            deserializer.deserialize_option(OptionalBytes)
        }

        struct Bytes<'a>(&'a [u8]);

        impl serde::Serialize for Bytes<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_bytes(self.0)
            }
        }

        struct OptionalBytes;

        impl<'de> Visitor<'de> for OptionalBytes {
            type Value = Option<Vec<u8>>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an optional byte string")
            }

            fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                super::deserialize(d).map(Some)
            }
        }
    }
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

    /// A record as every build before `codec::bytes` wrote it.
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct AsSequences {
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        gone: Option<Vec<u8>>,
    }

    /// The same record through `codec::bytes`.
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct AsBytes {
        #[serde(with = "bytes")]
        key: Vec<u8>,
        #[serde(with = "bytes::option")]
        value: Option<Vec<u8>>,
        #[serde(with = "bytes::option")]
        gone: Option<Vec<u8>>,
    }

    #[test]
    fn byte_strings_are_laid_out_as_the_sequences_stored_before() {
        for len in [0usize, 1, 127, 128, 300, 70_000] {
            let key: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let value = Some(key.iter().rev().copied().collect::<Vec<u8>>());
            let old = AsSequences {
                key: key.clone(),
                value: value.clone(),
                gone: None,
            };
            let new = AsBytes {
                key,
                value,
                gone: None,
            };
            let bytes = encode(&old);
            assert_eq!(encode(&new), bytes, "{len} bytes");
            let read: AsBytes = decode(&bytes).unwrap();
            assert_eq!(read, new);
            let back: AsSequences = decode(&encode(&new)).unwrap();
            assert_eq!(back, old);
        }
        // A length beyond the input is an error, not an allocation.
        let err = decode::<AsBytes>(&[0xff, 0xff, 0xff, 0x7f, 1, 2]).unwrap_err();
        assert!(matches!(err, CodecError::Postcard(_)), "{err}");
    }

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
