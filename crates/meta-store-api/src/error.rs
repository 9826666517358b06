//! The one error type every engine returns.

use std::io;
use std::path::PathBuf;

use crate::keys::KeyError;
use crate::snapshot::SnapshotError;

/// Result alias for store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a [`MetadataStore`](crate::MetadataStore) operation can fail with.
///
/// Variants carry the context needed to act on them. Engines map their own
/// errors into [`Error::Engine`] (unexpected engine failures) or one of the
/// specific variants when the cause is known (a full LMDB map is
/// [`Error::MapFull`], a full disk [`Error::DiskFull`], never a generic
/// engine error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key broke the uniform key limits (empty, too long) or, for a typed
    /// key, the key-space grammar.
    #[error("invalid key {key}: {reason}")]
    InvalidKey {
        /// A printable preview of the offending key.
        key: KeyPreview,
        /// Why it was rejected.
        reason: KeyError,
    },
    /// A value exceeds [`MAX_VALUE_LEN`](crate::MAX_VALUE_LEN).
    #[error("value for key {key} is {len} bytes; the limit is {max} bytes")]
    InvalidValue {
        /// The key the value was written under.
        key: KeyPreview,
        /// The value's length in bytes.
        len: usize,
        /// The limit it exceeded.
        max: usize,
    },
    /// A snapshot stream could not be decoded; nothing was changed by the
    /// operation that read it.
    #[error("invalid snapshot stream: {0}")]
    Snapshot(#[from] SnapshotError),
    /// A range or restore argument does not make sense (for example a record
    /// outside the prefix being restored).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The engine's own size limit was hit (LMDB's map): the write was not
    /// applied, and the store is still usable for reads, deletes and
    /// smaller writes. Reopen with a larger `map_size` to grow it.
    #[error(
        "{engine} storage is full: the LMDB map of {} is full at {map_size} bytes; reopen \
         with a larger `map_size`",
        dir.display()
    )]
    MapFull {
        /// Engine name.
        engine: &'static str,
        /// The store's directory.
        dir: std::path::PathBuf,
        /// The map size, bytes.
        map_size: usize,
    },
    /// Too many concurrent read transactions for the engine's table.
    #[error(
        "{engine} storage is full: too many concurrent readers; reopen with a larger `max_readers`"
    )]
    ReadersFull {
        /// Engine name.
        engine: &'static str,
    },
    /// The disk holding the store is full (or nearly:
    /// [`disk::write_error`](crate::disk::write_error)): the store may
    /// refuse writes until it is reopened with space free.
    #[error(
        "{engine} storage is full: the disk holding {} is full ({} free): {source}; free space, \
         then reopen the store (restart the node: a store whose write failed may refuse writes \
         until reopened, and a node whose log write failed has stopped)",
        dir.display(),
        free.map_or_else(|| "unknown".to_string(), |f| format!("{f} bytes"))
    )]
    DiskFull {
        /// Engine name.
        engine: &'static str,
        /// The directory whose disk is full.
        dir: std::path::PathBuf,
        /// Free bytes there, if known.
        free: Option<u64>,
        /// The error the engine met.
        #[source]
        source: Box<Error>,
    },
    /// Data read back from the engine failed an integrity check.
    #[error("corruption in {engine} store: {detail}")]
    Corruption {
        /// Engine name.
        engine: &'static str,
        /// What was found where.
        detail: String,
    },
    /// Another process (or another handle in this one) holds the data
    /// directory.
    #[error("data directory {} is locked by another process or handle", path.display())]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// The store was closed with [`MetadataStore::close`](crate::MetadataStore::close).
    #[error("the store is closed")]
    Closed,
    /// An I/O error outside the engine (opening a directory, reading a
    /// snapshot stream).
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An unexpected error from the engine itself.
    #[error("{engine} engine error: {source}")]
    Engine {
        /// Engine name.
        engine: &'static str,
        /// The engine's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl Error {
    /// Wraps an engine error.
    pub fn engine(
        engine: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Error::Engine {
            engine,
            source: source.into(),
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// A short, printable rendering of a key for error messages: printable ASCII
/// as is, other bytes as `\xNN`, cut after 64 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPreview(String);

impl KeyPreview {
    const MAX: usize = 64;

    /// Renders `key`.
    pub fn new(key: &[u8]) -> Self {
        let mut out = String::with_capacity(key.len().min(Self::MAX) + 8);
        out.push('"');
        for &b in key.iter().take(Self::MAX) {
            if b.is_ascii_graphic() || b == b' ' {
                if b == b'"' || b == b'\\' {
                    out.push('\\');
                }
                out.push(b as char);
            } else {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
        out.push('"');
        if key.len() > Self::MAX {
            out.push_str(&format!("... ({} bytes)", key.len()));
        }
        KeyPreview(out)
    }
}

impl std::fmt::Display for KeyPreview {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for KeyPreview {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_preview_escapes_and_truncates() {
        assert_eq!(KeyPreview::new(b"/meta/a").to_string(), "\"/meta/a\"");
        assert_eq!(KeyPreview::new(b"a\x00\xff").to_string(), "\"a\\x00\\xff\"");
        let long = vec![b'k'; 100];
        let shown = KeyPreview::new(&long).to_string();
        assert!(shown.ends_with("... (100 bytes)"), "{shown}");
    }
}
