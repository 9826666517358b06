//! A test hook for the crash tests: pause the node inside a storage step
//! so a `kill -9` provably lands there.
//!
//! Compiled only with the `failpoints` feature (tests only; release
//! builds lack it, and their `serve` refuses `META_PAUSE_AT`). With it,
//! `META_PAUSE_AT=<failpoint>` (one of `meta_raft::failpoints::ALL`) and
//! `META_PAUSE_MARKER=<file>`: the first time the node reaches the
//! failpoint once it serves clients ([`arm`], so not in the snapshot a
//! restart may build before that) and, if `META_PAUSE_ARM=<file>` is set,
//! once that file exists (the harness creates it when it is ready, e.g.
//! after checking the restarted node), it writes the failpoint's name to
//! the marker file and blocks that thread for good. The harness waits for the marker and kills the
//! process.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set once the node serves: hits before that do not pause.
static ARMED: AtomicBool = AtomicBool::new(false);

/// Lets a configured pause fire from now on.
pub fn arm() {
    ARMED.store(true, Ordering::Release);
}

/// Why the pause asked for cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    /// `META_PAUSE_AT` names no failpoint.
    #[error("META_PAUSE_AT={point}: not a failpoint; one of {known:?}")]
    NotAFailpoint {
        /// What was asked for.
        point: String,
        /// The failpoints there are.
        known: &'static [&'static str],
    },
    /// `META_PAUSE_MARKER` is missing.
    #[error("META_PAUSE_AT needs META_PAUSE_MARKER=<file>")]
    NoMarker,
    /// The failpoint library refused the callback.
    #[error("META_PAUSE_AT={point}: {reason}")]
    Refused {
        /// The failpoint.
        point: &'static str,
        /// What the library said.
        reason: String,
    },
}

/// Sets the pause up from the environment, if asked for.
pub fn from_env() -> Result<(), PauseError> {
    let Ok(point) = std::env::var("META_PAUSE_AT") else {
        return Ok(());
    };
    configure(&point)
}

fn configure(point: &str) -> Result<(), PauseError> {
    let Some(point) = meta_raft::failpoints::ALL
        .iter()
        .find(|p| **p == point)
        .copied()
    else {
        return Err(PauseError::NotAFailpoint {
            point: point.to_string(),
            known: &meta_raft::failpoints::ALL,
        });
    };
    let marker = std::env::var_os("META_PAUSE_MARKER").ok_or(PauseError::NoMarker)?;
    let arm_file = std::env::var_os("META_PAUSE_ARM").map(std::path::PathBuf::from);
    let paused = AtomicBool::new(false);
    tracing::warn!("test hook: pausing at failpoint {point} (META_PAUSE_AT)");
    fail::cfg_callback(point, move || {
        let ready = ARMED.load(Ordering::Acquire) && arm_file.as_ref().is_none_or(|f| f.exists());
        if !ready || paused.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!("paused at failpoint {point} until killed (META_PAUSE_AT)");
        if let Err(e) = std::fs::write(&marker, point) {
            tracing::error!("writing the pause marker: {e}");
        }
        loop {
            std::thread::park();
        }
    })
    .map_err(|reason| PauseError::Refused { point, reason })
}
