//! Constants of the byte layout (see `docs/snapshot-format.md`).

use super::SnapshotError;

/// The 8 bytes every snapshot stream starts with.
pub const MAGIC: [u8; 8] = *b"METASNAP";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// The largest block (stored or uncompressed) a reader accepts; a block
/// holds at least one record, which can be a maximal key and value.
pub const MAX_BLOCK_LEN: usize = 32 * 1024 * 1024;

/// Tag byte that opens a data block.
pub(crate) const TAG_BLOCK: u8 = 0x01;
/// Tag byte that opens the trailer.
pub(crate) const TAG_END: u8 = 0xFF;
/// Bytes of a block header after its tag: record count, raw length, stored
/// length, checksum (4 × u32 LE).
pub(crate) const BLOCK_HEADER_LEN: usize = 16;
/// Bytes of a record header: key length (u16 LE), value length (u32 LE).
pub(crate) const RECORD_HEADER_LEN: usize = 6;

/// Block compression.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Blocks are stored as is.
    None,
    /// Blocks are LZ4-compressed (block format, pure Rust).
    #[default]
    Lz4,
}

impl Compression {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Result<Self, SnapshotError> {
        match b {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Lz4),
            found => Err(SnapshotError::UnknownCompression { found }),
        }
    }
}

/// The checksum of the block whose header fields are `fields` and whose
/// stored bytes are `stored`.
pub(crate) fn block_checksum(fields: &[u8], stored: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(fields), stored)
}
