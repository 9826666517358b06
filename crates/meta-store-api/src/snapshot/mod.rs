//! The portable snapshot format: one engine-neutral byte stream that every
//! engine writes and reads, so a snapshot of any engine restores into any
//! other (engine migration, backup and Raft snapshot transfer are one piece
//! of code). The byte layout is specified in `docs/snapshot-format.md`.
//!
//! - [`SnapshotWriter`] encodes records into any `Write`;
//! - [`SnapshotReader`] decodes and verifies any `Read`;
//! - [`SnapshotStream`] is what [`MetadataStore::snapshot`](crate::MetadataStore::snapshot)
//!   returns: the encoded bytes of a point-in-time view, produced on a
//!   background thread with bounded memory.
//!
//! ```
//! use meta_store_api::snapshot::{SnapshotOptions, SnapshotReader, SnapshotWriter};
//!
//! let mut w = SnapshotWriter::new(Vec::new(), b"/meta/", &SnapshotOptions::default())?;
//! w.push(b"/meta/kv/a", b"1")?;
//! w.push(b"/meta/kv/b", b"2")?;
//! let (bytes, summary) = w.finish()?;
//! assert_eq!(summary.records, 2);
//!
//! let mut r = SnapshotReader::new(&bytes[..])?;
//! let mut keys = Vec::new();
//! while let Some((key, _value)) = r.next_record()? {
//!     keys.push(key.to_vec());
//! }
//! assert_eq!(keys, [b"/meta/kv/a".to_vec(), b"/meta/kv/b".to_vec()]);
//! # Ok::<(), meta_store_api::snapshot::SnapshotError>(())
//! ```

mod error;
mod format;
mod reader;
mod restore;
mod stream;
mod writer;

pub use error::SnapshotError;
pub use format::{Compression, FORMAT_VERSION, MAGIC, MAX_BLOCK_LEN};
pub use reader::{Record, SnapshotHeader, SnapshotReader};
pub use restore::restore_records;
pub use stream::{SnapshotSink, SnapshotStream, spawn_snapshot};
pub use writer::{MAX_BLOCK_SIZE, SnapshotSummary, SnapshotWriter};

/// How a snapshot is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// Block compression.
    pub compression: Compression,
    /// Target uncompressed size of a block, in bytes (1 byte to
    /// [`MAX_BLOCK_SIZE`]). A block closes once it reaches this size, so a
    /// block holds at least one record.
    pub block_size: usize,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            compression: Compression::Lz4,
            block_size: 64 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_block_a_writer_can_make_is_one_readers_accept() {
        let options = SnapshotOptions {
            compression: Compression::None,
            block_size: MAX_BLOCK_SIZE,
        };
        let mut w = SnapshotWriter::new(Vec::new(), b"", &options).unwrap();
        // 6-byte record header + 1-byte key: the block is one byte short.
        w.push(b"a", &vec![1u8; MAX_BLOCK_SIZE - 8]).unwrap();
        w.push(b"b", &vec![2u8; crate::MAX_VALUE_LEN]).unwrap();
        let (bytes, summary) = w.finish().unwrap();
        assert_eq!(summary.blocks, 1);
        let mut r = SnapshotReader::new(&bytes[..]).unwrap();
        let mut n = 0;
        while r.next_record().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 2);
        let too_big = SnapshotOptions {
            block_size: MAX_BLOCK_SIZE + 1,
            ..options
        };
        assert!(SnapshotWriter::new(Vec::new(), b"", &too_big).is_err());
    }
}
