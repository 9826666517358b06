//! Decoding and verifying the portable format.

use std::io::{self, Read};
use std::ops::Range;

use super::format::{
    BLOCK_HEADER_LEN, FORMAT_VERSION, MAGIC, MAX_BLOCK_LEN, RECORD_HEADER_LEN, TAG_BLOCK, TAG_END,
    block_checksum,
};
use super::{Compression, SnapshotError};
use crate::limits::{MAX_KEY_LEN, MAX_VALUE_LEN};

/// One decoded record: key and value, borrowed from the reader's block.
pub type Record<'a> = (&'a [u8], &'a [u8]);

/// Byte ranges of a record's key and value in the current block.
type RecordSpan = (Range<usize>, Range<usize>);

/// The header of a snapshot stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// Format version.
    pub version: u16,
    /// Block compression.
    pub compression: Compression,
    /// The prefix the snapshot was taken of; every record starts with it.
    pub prefix: Vec<u8>,
}

/// Decodes a snapshot stream record by record, verifying as it goes: the
/// header and each block are checked before any of their bytes are trusted,
/// the trailer (counts and whole-stream checksum) when it is reached. A
/// consumer must treat the records as provisional until
/// [`next_record`](Self::next_record) has returned `Ok(None)`, which means
/// the whole stream verified.
///
/// Memory use is one block (at most [`MAX_BLOCK_LEN`] bytes, typically
/// 64 KiB), whatever the stream's size.
pub struct SnapshotReader<R: Read> {
    inner: R,
    offset: u64,
    crc: u32,
    header: SnapshotHeader,
    raw: Vec<u8>,
    stored: Vec<u8>,
    pos: usize,
    left_in_block: u32,
    blocks: u64,
    records: u64,
    last_key: Option<Vec<u8>>,
    finished: bool,
}

impl<R: Read> SnapshotReader<R> {
    /// Reads and verifies the header.
    pub fn new(inner: R) -> Result<Self, SnapshotError> {
        let mut r = SnapshotReader {
            inner,
            offset: 0,
            crc: 0,
            header: SnapshotHeader {
                version: 0,
                compression: Compression::None,
                prefix: Vec::new(),
            },
            raw: Vec::new(),
            stored: Vec::new(),
            pos: 0,
            left_in_block: 0,
            blocks: 0,
            records: 0,
            last_key: None,
            finished: false,
        };
        let mut fixed = [0u8; 14];
        r.read_exact(&mut fixed, "header")?;
        if fixed[..8] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let version = u16::from_le_bytes([fixed[8], fixed[9]]);
        let compression_byte = fixed[10];
        let reserved = fixed[11];
        let prefix_len = usize::from(u16::from_le_bytes([fixed[12], fixed[13]]));
        if prefix_len > MAX_KEY_LEN {
            return Err(SnapshotError::BadHeader {
                reason: "prefix longer than the key limit",
            });
        }
        let mut prefix = vec![0u8; prefix_len];
        r.read_exact(&mut prefix, "header prefix")?;
        let computed = r.crc;
        let mut stored = [0u8; 4];
        r.read_exact(&mut stored, "header checksum")?;
        let stored = u32::from_le_bytes(stored);
        if stored != computed {
            return Err(SnapshotError::HeaderChecksum { stored, computed });
        }
        // Fields are interpreted only once the checksum vouches for them, so
        // a flipped bit reads as corruption rather than a misleading version.
        if version != FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if reserved != 0 {
            return Err(SnapshotError::BadHeader {
                reason: "reserved byte is not zero",
            });
        }
        r.header = SnapshotHeader {
            version,
            compression: Compression::from_byte(compression_byte)?,
            prefix,
        };
        Ok(r)
    }

    /// The stream's header.
    pub fn header(&self) -> &SnapshotHeader {
        &self.header
    }

    /// Records decoded so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The next record, `Ok(None)` once the trailer verified, or the first
    /// problem found. After an error the reader must not be used again.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, SnapshotError> {
        Ok(self.advance()?.map(|(k, v)| (&self.raw[k], &self.raw[v])))
    }

    fn advance(&mut self) -> Result<Option<RecordSpan>, SnapshotError> {
        while self.left_in_block == 0 {
            if self.finished {
                return Ok(None);
            }
            let tag_offset = self.offset;
            let mut tag = [0u8; 1];
            self.read_exact(&mut tag, "block or trailer tag")?;
            match tag[0] {
                TAG_BLOCK => self.load_block(tag_offset)?,
                TAG_END => {
                    self.read_trailer()?;
                    return Ok(None);
                }
                tag => {
                    return Err(SnapshotError::UnknownTag {
                        offset: tag_offset,
                        tag,
                    });
                }
            }
        }
        self.parse_record().map(Some)
    }

    fn parse_record(&mut self) -> Result<RecordSpan, SnapshotError> {
        let record = self.records;
        let bad = |reason: String| SnapshotError::BadRecord { record, reason };
        let raw = &self.raw;
        let header_end = self.pos + RECORD_HEADER_LEN;
        let Some(h) = raw.get(self.pos..header_end) else {
            return Err(bad("record header runs past the end of its block".into()));
        };
        let key_len = usize::from(u16::from_le_bytes([h[0], h[1]]));
        let value_len = u32::from_le_bytes([h[2], h[3], h[4], h[5]]) as usize;
        if key_len == 0 || key_len > MAX_KEY_LEN {
            return Err(bad(format!(
                "key length {key_len} outside 1..={MAX_KEY_LEN}"
            )));
        }
        if value_len > MAX_VALUE_LEN {
            return Err(bad(format!(
                "value length {value_len} over {MAX_VALUE_LEN}"
            )));
        }
        let key = header_end..header_end + key_len;
        let value = key.end..key.end + value_len;
        if value.end > raw.len() {
            return Err(bad("record runs past the end of its block".into()));
        }
        let key_bytes = &raw[key.clone()];
        if !key_bytes.starts_with(&self.header.prefix) {
            return Err(bad("key outside the snapshot prefix".into()));
        }
        match &mut self.last_key {
            Some(last) if key_bytes <= last.as_slice() => {
                return Err(bad("keys not in strictly ascending order".into()));
            }
            Some(last) => {
                last.clear();
                last.extend_from_slice(key_bytes);
            }
            None => self.last_key = Some(key_bytes.to_vec()),
        }
        self.pos = value.end;
        self.left_in_block -= 1;
        self.records += 1;
        if self.left_in_block == 0 && self.pos != self.raw.len() {
            return Err(SnapshotError::BadBlock {
                block: self.blocks - 1,
                offset: self.offset,
                reason: "bytes left after the block's last record".into(),
            });
        }
        Ok((key, value))
    }

    fn load_block(&mut self, offset: u64) -> Result<(), SnapshotError> {
        let block = self.blocks;
        let mut h = [0u8; BLOCK_HEADER_LEN];
        self.read_exact(&mut h, "block header")?;
        let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let (count, raw_len, stored_len, stored_crc) =
            (word(0), word(4) as usize, word(8) as usize, word(12));
        let bad = |reason: String| SnapshotError::BadBlock {
            block,
            offset,
            reason,
        };
        if raw_len > MAX_BLOCK_LEN || stored_len > MAX_BLOCK_LEN {
            return Err(bad(format!(
                "block length (raw {raw_len}, stored {stored_len}) over the {MAX_BLOCK_LEN}-byte limit"
            )));
        }
        let mut stored = std::mem::take(&mut self.stored);
        stored.resize(stored_len, 0);
        self.read_exact(&mut stored, "block data")?;
        let mut fields = [0u8; 13];
        fields[0] = TAG_BLOCK;
        fields[1..].copy_from_slice(&h[..12]);
        let computed = block_checksum(&fields, &stored);
        if computed != stored_crc {
            self.stored = stored;
            return Err(SnapshotError::BlockChecksum {
                block,
                offset,
                stored: stored_crc,
                computed,
            });
        }
        if count == 0 {
            return Err(bad("block holds no record".into()));
        }
        match self.header.compression {
            Compression::None => {
                if stored_len != raw_len {
                    return Err(bad(
                        "stored and raw lengths differ without compression".into()
                    ));
                }
                std::mem::swap(&mut self.raw, &mut stored);
            }
            Compression::Lz4 => {
                self.raw.resize(raw_len, 0);
                let n = lz4_flex::block::decompress_into(&stored, &mut self.raw)
                    .map_err(|e| bad(format!("lz4: {e}")))?;
                if n != raw_len {
                    return Err(bad(format!(
                        "decompressed to {n} bytes, header says {raw_len}"
                    )));
                }
            }
        }
        self.stored = stored;
        self.pos = 0;
        self.left_in_block = count;
        self.blocks += 1;
        Ok(())
    }

    fn read_trailer(&mut self) -> Result<(), SnapshotError> {
        let mut counts = [0u8; 16];
        self.read_exact(&mut counts, "trailer")?;
        let computed = self.crc;
        let mut crc = [0u8; 4];
        self.read_exact(&mut crc, "trailer checksum")?;
        let stored = u32::from_le_bytes(crc);
        if stored != computed {
            return Err(SnapshotError::StreamChecksum { stored, computed });
        }
        let records = u64::from_le_bytes(counts[..8].try_into().expect("8 bytes"));
        let blocks = u64::from_le_bytes(counts[8..].try_into().expect("8 bytes"));
        for (what, stored, counted) in [
            ("records", records, self.records),
            ("blocks", blocks, self.blocks),
        ] {
            if stored != counted {
                return Err(SnapshotError::CountMismatch {
                    what,
                    stored,
                    counted,
                });
            }
        }
        let mut extra = [0u8; 1];
        if read_full(&mut self.inner, &mut extra)? != 0 {
            return Err(SnapshotError::TrailingData {
                offset: self.offset,
            });
        }
        self.finished = true;
        Ok(())
    }

    fn read_exact(&mut self, buf: &mut [u8], reading: &'static str) -> Result<(), SnapshotError> {
        let n = read_full(&mut self.inner, buf)?;
        self.offset += n as u64;
        if n < buf.len() {
            return Err(SnapshotError::Truncated {
                offset: self.offset,
                reading,
            });
        }
        self.crc = crc32c::crc32c_append(self.crc, buf);
        Ok(())
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
