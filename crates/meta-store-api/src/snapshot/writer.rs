//! Encoding records into the portable format.

use std::io::Write;

use super::format::{BLOCK_HEADER_LEN, FORMAT_VERSION, MAGIC, TAG_BLOCK, TAG_END, block_checksum};
use super::{Compression, SnapshotError, SnapshotOptions};
use crate::limits::{MAX_KEY_LEN, MAX_VALUE_LEN};

/// The largest [`SnapshotOptions::block_size`] a writer accepts.
pub const MAX_BLOCK_SIZE: usize = 8 << 20;

/// What a finished snapshot holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotSummary {
    /// Records written.
    pub records: u64,
    /// Blocks written.
    pub blocks: u64,
    /// Bytes of the whole stream.
    pub bytes: u64,
}

/// Streams records into the portable format. Records must come in strictly
/// ascending key order and start with the snapshot's prefix; memory use is
/// one block.
pub struct SnapshotWriter<W: Write> {
    out: W,
    crc: u32,
    bytes: u64,
    options: SnapshotOptions,
    prefix: Vec<u8>,
    block: Vec<u8>,
    block_records: u32,
    compressed: Vec<u8>,
    records: u64,
    blocks: u64,
    last_key: Option<Vec<u8>>,
}

impl<W: Write> SnapshotWriter<W> {
    /// Writes the header of a snapshot of the keys under `prefix`.
    pub fn new(out: W, prefix: &[u8], options: &SnapshotOptions) -> Result<Self, SnapshotError> {
        if prefix.len() > MAX_KEY_LEN {
            return Err(SnapshotError::BadHeader {
                reason: "prefix longer than the key limit",
            });
        }
        // A block closes after the record that reaches `block_size`, so it
        // can hold `block_size - 1` bytes plus one maximal record: keep that
        // (and LZ4's worst-case growth) under what readers accept.
        if options.block_size == 0 || options.block_size > MAX_BLOCK_SIZE {
            return Err(SnapshotError::BadHeader {
                reason: "block_size must be between 1 byte and 8 MiB",
            });
        }
        let mut w = SnapshotWriter {
            out,
            crc: 0,
            bytes: 0,
            options: *options,
            prefix: prefix.to_vec(),
            block: Vec::with_capacity(options.block_size + 1024),
            block_records: 0,
            compressed: Vec::new(),
            records: 0,
            blocks: 0,
            last_key: None,
        };
        let mut header = Vec::with_capacity(16 + prefix.len() + 4);
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        header.push(options.compression.to_byte());
        header.push(0); // reserved
        header.extend_from_slice(&(prefix.len() as u16).to_le_bytes());
        header.extend_from_slice(prefix);
        let header_crc = crc32c::crc32c(&header);
        header.extend_from_slice(&header_crc.to_le_bytes());
        w.emit(&header)?;
        Ok(w)
    }

    /// Appends one record.
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<(), SnapshotError> {
        let bad = |reason: String| SnapshotError::BadRecord {
            record: self.records,
            reason,
        };
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(bad(format!(
                "key length {} outside 1..={MAX_KEY_LEN}",
                key.len()
            )));
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(bad(format!(
                "value length {} over {MAX_VALUE_LEN}",
                value.len()
            )));
        }
        if !key.starts_with(&self.prefix) {
            return Err(bad("key outside the snapshot prefix".into()));
        }
        if self.last_key.as_deref().is_some_and(|last| key <= last) {
            return Err(bad("keys not in strictly ascending order".into()));
        }
        self.block
            .extend_from_slice(&(key.len() as u16).to_le_bytes());
        self.block
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.block.extend_from_slice(key);
        self.block.extend_from_slice(value);
        self.block_records += 1;
        self.records += 1;
        match &mut self.last_key {
            Some(last) => {
                last.clear();
                last.extend_from_slice(key);
            }
            None => self.last_key = Some(key.to_vec()),
        }
        if self.block.len() >= self.options.block_size {
            self.flush_block()?;
        }
        Ok(())
    }

    /// Writes the last block and the trailer; returns the writer and a
    /// summary.
    pub fn finish(mut self) -> Result<(W, SnapshotSummary), SnapshotError> {
        self.flush_block()?;
        let mut trailer = Vec::with_capacity(1 + 16 + 4);
        trailer.push(TAG_END);
        trailer.extend_from_slice(&self.records.to_le_bytes());
        trailer.extend_from_slice(&self.blocks.to_le_bytes());
        self.emit(&trailer)?;
        let crc = self.crc.to_le_bytes();
        self.out.write_all(&crc)?;
        self.bytes += crc.len() as u64;
        self.out.flush()?;
        let summary = SnapshotSummary {
            records: self.records,
            blocks: self.blocks,
            bytes: self.bytes,
        };
        Ok((self.out, summary))
    }

    fn flush_block(&mut self) -> Result<(), SnapshotError> {
        if self.block_records == 0 {
            return Ok(());
        }
        if self.options.compression == Compression::Lz4 {
            let max = lz4_flex::block::get_maximum_output_size(self.block.len());
            self.compressed.resize(max, 0);
            let n = lz4_flex::block::compress_into(&self.block, &mut self.compressed)
                .map_err(|e| SnapshotError::Io(std::io::Error::other(e)))?;
            self.compressed.truncate(n);
        }
        // Disjoint field borrows: `stored` reads a buffer while `out` and
        // `crc` are written.
        let stored: &[u8] = match self.options.compression {
            Compression::None => &self.block,
            Compression::Lz4 => &self.compressed,
        };
        let mut header = [0u8; 1 + BLOCK_HEADER_LEN];
        header[0] = TAG_BLOCK;
        header[1..5].copy_from_slice(&self.block_records.to_le_bytes());
        header[5..9].copy_from_slice(&(self.block.len() as u32).to_le_bytes());
        header[9..13].copy_from_slice(&(stored.len() as u32).to_le_bytes());
        let checksum = block_checksum(&header[..13], stored);
        header[13..].copy_from_slice(&checksum.to_le_bytes());
        self.crc = crc32c::crc32c_append(self.crc, &header);
        self.crc = crc32c::crc32c_append(self.crc, stored);
        self.out.write_all(&header)?;
        self.out.write_all(stored)?;
        self.bytes += (header.len() + stored.len()) as u64;
        self.blocks += 1;
        self.block.clear();
        self.block_records = 0;
        Ok(())
    }

    fn emit(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.bytes += bytes.len() as u64;
        self.out.write_all(bytes)?;
        Ok(())
    }
}
