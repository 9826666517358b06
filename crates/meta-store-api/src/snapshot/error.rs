//! Why a snapshot stream was rejected.

use std::io;

/// A snapshot stream failed to encode or decode. Offsets are byte positions
/// in the stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The stream does not start with the snapshot magic.
    #[error("not a snapshot stream: bad magic bytes at offset 0")]
    BadMagic,
    /// The stream was written by an unknown format version.
    #[error("unsupported snapshot format version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// The version found in the header.
        found: u16,
        /// The version this build supports.
        supported: u16,
    },
    /// The header names an unknown compression.
    #[error("unknown compression id {found} in the snapshot header")]
    UnknownCompression {
        /// The id found.
        found: u8,
    },
    /// A header field holds an impossible value.
    #[error("malformed snapshot header: {reason}")]
    BadHeader {
        /// What is wrong.
        reason: &'static str,
    },
    /// The header's checksum does not match its bytes.
    #[error("snapshot header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    HeaderChecksum {
        /// Checksum in the stream.
        stored: u32,
        /// Checksum of the bytes read.
        computed: u32,
    },
    /// A block's checksum does not match its bytes.
    #[error(
        "checksum mismatch in block {block} at offset {offset} (stored {stored:#010x}, computed {computed:#010x})"
    )]
    BlockChecksum {
        /// Block number, from 0.
        block: u64,
        /// Offset of the block's tag.
        offset: u64,
        /// Checksum in the stream.
        stored: u32,
        /// Checksum of the bytes read.
        computed: u32,
    },
    /// The trailer's whole-stream checksum does not match.
    #[error("whole-stream checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    StreamChecksum {
        /// Checksum in the stream.
        stored: u32,
        /// Checksum of the bytes read.
        computed: u32,
    },
    /// The stream ended early.
    #[error("snapshot stream truncated at offset {offset} while reading {reading}")]
    Truncated {
        /// Where the stream ended.
        offset: u64,
        /// What was being read.
        reading: &'static str,
    },
    /// A byte that should open a block or the trailer is neither.
    #[error("unknown tag {tag:#04x} at offset {offset}")]
    UnknownTag {
        /// Offset of the tag.
        offset: u64,
        /// The byte found.
        tag: u8,
    },
    /// A block's structure is inconsistent with its header (lengths, record
    /// count, sizes over [`MAX_BLOCK_LEN`](super::MAX_BLOCK_LEN)).
    #[error("malformed block {block} at offset {offset}: {reason}")]
    BadBlock {
        /// Block number, from 0.
        block: u64,
        /// Offset of the block's tag.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A record breaks the format's rules (order, prefix, key or value limits).
    #[error("bad record {record}: {reason}")]
    BadRecord {
        /// Record number, from 0.
        record: u64,
        /// What is wrong.
        reason: String,
    },
    /// The trailer's counts disagree with what the stream held.
    #[error("snapshot trailer says {stored} {what}, but the stream held {counted}")]
    CountMismatch {
        /// `"records"` or `"blocks"`.
        what: &'static str,
        /// The trailer's count.
        stored: u64,
        /// What was counted.
        counted: u64,
    },
    /// Bytes follow the trailer.
    #[error("unexpected data after the snapshot trailer at offset {offset}")]
    TrailingData {
        /// Offset of the first extra byte.
        offset: u64,
    },
    /// Reading or writing the underlying stream failed.
    #[error("snapshot I/O error: {0}")]
    Io(#[from] io::Error),
}
