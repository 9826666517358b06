//! What a failed write says about the disk under a store.
//!
//! Engines pass the errors of their write paths through [`write_error`],
//! so a full disk reads as [`Error::DiskFull`] naming the directory and
//! the free space, whatever the engine made of it: the kernel says
//! `ENOSPC`, but LMDB reports a short write as `EIO`, and fjall, once a
//! background flush failed, only says it is "poisoned".

use std::io;
use std::path::Path;

use crate::error::Error;

/// With fewer free bytes than this on its filesystem, a store's failed
/// write is put down to a full disk.
pub const FULL_BELOW: u64 = 1 << 20;

/// Bytes an unprivileged writer may still use on the filesystem holding
/// `path`; `None` if that cannot be told.
pub fn available_bytes(path: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        let stat = rustix::fs::statvfs(path).ok()?;
        Some(stat.f_bavail.saturating_mul(stat.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// True if `error` is, or was caused by, the kernel's "no space left".
fn is_enospc(error: &Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::StorageFull)
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Classifies an error from a write to the store in `dir`: an I/O or
/// engine error met on a full disk (`ENOSPC`, or less than [`FULL_BELOW`]
/// bytes left) becomes [`Error::DiskFull`] carrying the original error;
/// anything else is returned as it was.
pub fn write_error(engine: &'static str, dir: &Path, error: Error) -> Error {
    if !matches!(error, Error::Io { .. } | Error::Engine { .. }) {
        return error;
    }
    let free = available_bytes(dir);
    let nearly_full = free.is_some_and(|f| f < FULL_BELOW);
    if !is_enospc(&error) && !nearly_full {
        return error;
    }
    Error::DiskFull {
        engine,
        dir: dir.to_path_buf(),
        free,
        source: Box::new(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: io::ErrorKind) -> Error {
        Error::io("writing", io::Error::from(kind))
    }

    #[test]
    fn enospc_anywhere_in_the_chain_is_a_full_disk() {
        let dir = std::env::temp_dir();
        let full = write_error("e", &dir, io(io::ErrorKind::StorageFull));
        let text = full.to_string();
        match full {
            Error::DiskFull {
                engine,
                dir: at,
                free,
                source,
            } => {
                assert_eq!((engine, at.as_path()), ("e", dir.as_path()));
                assert!(free.is_some());
                assert!(matches!(*source, Error::Io { .. }), "the cause is kept");
                assert!(text.contains(&dir.display().to_string()), "{text}");
                assert!(text.contains("bytes free"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        let wrapped = Error::engine("e", io::Error::from(io::ErrorKind::StorageFull));
        assert!(matches!(
            write_error("e", &dir, wrapped),
            Error::DiskFull { .. }
        ));
    }

    #[test]
    fn other_errors_pass_through_while_there_is_room() {
        let dir = std::env::temp_dir();
        assert!(available_bytes(&dir).is_some_and(|f| f >= FULL_BELOW));
        assert!(matches!(
            write_error("e", &dir, io(io::ErrorKind::Other)),
            Error::Io { .. }
        ));
        assert!(matches!(
            write_error("e", &dir, Error::Closed),
            Error::Closed
        ));
    }
}
