//! Files the node writes itself (tokens, keys, certificates, its identity):
//! private modes (`0600` in `0700` directories) and atomic replacement.
//!
//! The `meta-node` binary also sets its umask to `077` at start
//! ([`private_umask`]), so what the engines, snapshots and spill files
//! create is private too.

use std::io::Write;
use std::path::Path;

use crate::error::NodeError;

/// Makes every file and directory this process creates from now on
/// private to its user (`umask 077`). The binary calls it first thing; a
/// library embedding a node decides for itself.
pub fn private_umask() {
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Creates `dir` (and its parents) if missing and makes it `0700`. A
/// shared directory (sticky bit, like `/tmp`) is refused rather than
/// locked away from everyone else.
pub fn private_dir(dir: &Path) -> Result<(), NodeError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| NodeError::io(format!("creating directory {}", dir.display()), e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)
            .map_err(|e| NodeError::io(format!("reading {}", dir.display()), e))?
            .permissions()
            .mode();
        if mode & 0o1000 != 0 {
            return Err(NodeError::io(
                format!("{} cannot be made private", dir.display()),
                std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "it is a shared directory (mode {:o}, sticky bit, like /tmp): \
                         use a directory of its own, or `chmod 700` it",
                        mode & 0o7777
                    ),
                ),
            ));
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| NodeError::io(format!("making directory {} private", dir.display()), e))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` with mode `0600`, atomically (a temporary file
/// in the same directory, fsynced, then renamed over `path`), so a crash
/// leaves the old content or the new, never a torn file.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    let context = || format!("writing {}", path.display());
    // A fresh name, created here (never an existing file with its mode).
    let tmp = sibling(path, "tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&tmp)
        .map_err(|e| NodeError::io(context(), e))?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(NodeError::io(context(), e));
    }
    rename_durably(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// A fresh name beside `path`: `<path>.<what>-<random>` (a temporary file
/// to rename over it).
pub fn sibling(path: &Path, what: &str) -> std::path::PathBuf {
    let mut nonce = [0u8; 8];
    let _ = getrandom::fill(&mut nonce);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{what}-{}", hex::encode(nonce)));
    std::path::PathBuf::from(name)
}

/// Renames `from` over `to` and syncs their directory, so the rename
/// survives a crash.
pub fn rename_durably(from: &Path, to: &Path) -> Result<(), NodeError> {
    let context = || format!("writing {}", to.display());
    std::fs::rename(from, to).map_err(|e| NodeError::io(context(), e))?;
    if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        // The rename is durable once the directory is.
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| NodeError::io(context(), e))?;
    }
    Ok(())
}

/// Creates (or truncates) `path` for writing, private (`0600`) from its
/// first byte: a backup holds every value and every API key's hash. An
/// existing file with a looser mode is made private too.
pub fn private_file(path: &Path) -> Result<std::fs::File, NodeError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options
        .open(path)
        .map_err(|e| NodeError::io(format!("creating {}", path.display()), e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| NodeError::io(format!("making {} private", path.display()), e))?;
    }
    Ok(file)
}

/// Reads a small text file, `None` if it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>, NodeError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(NodeError::io(format!("reading {}", path.display()), e)),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn written_files_and_dirs_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        private_dir(&dir).unwrap();
        let file = dir.join("secret");
        write_private(&file, b"one").unwrap();
        write_private(&file, b"two").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&dir), mode(&file)), (0o700, 0o600));
        assert_eq!(read_optional(&file).unwrap().as_deref(), Some("two"));
        assert_eq!(read_optional(&dir.join("none")).unwrap(), None);
        let shared = tmp.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(
            private_dir(&shared)
                .unwrap_err()
                .to_string()
                .contains("sticky")
        );
        let leftovers = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary files left behind");
    }
}
