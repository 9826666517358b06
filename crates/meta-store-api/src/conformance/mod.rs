//! The reusable conformance suite: the executable form of the
//! [`MetadataStore`] contract. Every engine crate runs it from its own tests
//! with one macro call; a third-party engine does the same.
//!
//! ```no_run
//! // tests/conformance.rs of an engine crate
//! use meta_store_api::conformance::DirHarness;
//! # mod my_engine { pub use meta_store_mem::MemStore as MyStore; }
//! # trait OpenAt { fn open(dir: &std::path::Path) -> meta_store_api::Result<Self> where Self: Sized; }
//! # impl OpenAt for my_engine::MyStore { fn open(_: &std::path::Path) -> meta_store_api::Result<Self> { Ok(Self::new()) } }
//!
//! meta_store_api::conformance_tests!(DirHarness::new(|dir| {
//!     Ok(Box::new(my_engine::MyStore::open(dir)?))
//! }));
//! # fn main() {}
//! ```
//!
//! A volatile engine uses [`VolatileHarness`] instead; any other setup
//! implements [`Harness`].
//!
//! The macro expands to one `#[test]` per case, named after the behaviour it
//! pins down. [`run_all`] runs the same cases in-process and reports each
//! (that is what `cargo xtask conformance` prints), and [`cross_engine_matrix`]
//! checks that a snapshot of any engine restores into any other.
//!
//! The property test compares the engine with a `BTreeMap` model over
//! [`model_cases`] random operation sequences (1,000 by default, or
//! `META_CONFORMANCE_CASES`).

// The suite reports failures by panicking, as `assert!` does: unwrapping
// there is an assertion, not a shortcut.
#![allow(clippy::unwrap_used)]

pub mod cases;
mod matrix;
mod model;
mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::{MetadataStore, Result};

pub use cases::CASES;
pub use matrix::cross_engine_matrix;
pub use model::model_cases;

/// Opens the store under test at one location.
pub trait Harness: Send {
    /// Opens the store: empty the first time; for a persistent engine, the
    /// same data again once every previous handle was dropped. While a
    /// handle is alive, opening again must fail with
    /// [`Error::Locked`](crate::Error::Locked) (persistent engines).
    fn open(&mut self) -> Result<Box<dyn MetadataStore>>;

    /// Whether data survives dropping the store and opening it again.
    fn persistent(&self) -> bool;
}

/// Opens a disk engine in its own temporary directory, deleted when the
/// harness is dropped.
pub struct DirHarness {
    dir: tempfile::TempDir,
    open: Box<OpenAt>,
}

/// Opens an engine in a directory.
type OpenAt = dyn Fn(&Path) -> Result<Box<dyn MetadataStore>> + Send;

impl DirHarness {
    /// A harness in a new temporary directory; `open` opens the engine in
    /// the directory it is given.
    pub fn new(open: impl Fn(&Path) -> Result<Box<dyn MetadataStore>> + Send + 'static) -> Self {
        DirHarness {
            dir: tempfile::tempdir().expect("creating a temporary directory"),
            open: Box::new(open),
        }
    }
}

impl Harness for DirHarness {
    fn open(&mut self) -> Result<Box<dyn MetadataStore>> {
        (self.open)(self.dir.path())
    }

    fn persistent(&self) -> bool {
        true
    }
}

/// Opens a volatile engine: every `open` is a new, empty store.
pub struct VolatileHarness(pub fn() -> Box<dyn MetadataStore>);

impl Harness for VolatileHarness {
    fn open(&mut self) -> Result<Box<dyn MetadataStore>> {
        Ok((self.0)())
    }

    fn persistent(&self) -> bool {
        false
    }
}

/// Makes a fresh harness (a new, empty location) for each case.
pub type HarnessFactory<'a> = &'a (dyn Fn() -> Box<dyn Harness> + Sync);

/// One case of the suite.
#[derive(Clone, Copy)]
pub struct Case {
    /// The behaviour it checks, as a test name.
    pub name: &'static str,
    /// Runs the case; panics on failure.
    pub run: fn(HarnessFactory<'_>),
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case").field("name", &self.name).finish()
    }
}

/// What a case that does not apply to the engine unwinds with (see
/// [`skip`]): counted as *skipped*, never as passed.
#[derive(Debug)]
pub struct Skipped(pub &'static str);

/// Ends the running case as skipped: it does not apply to this engine (a
/// reopen case on an engine that keeps nothing), so it checked nothing.
pub fn skip(why: &'static str) -> ! {
    std::panic::resume_unwind(Box::new(Skipped(why)))
}

/// Runs `case` as a `#[test]`: a [`skip`] says so on the test's output
/// (and the test passes, having checked nothing: `cargo xtask conformance`
/// counts it as skipped); a failure fails the test.
pub fn run_as_test(case: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(case)) {
        match payload.downcast::<Skipped>() {
            // Straight to stderr: `cargo test` captures `eprintln!` of a
            // passing test, and a skip must be seen.
            Ok(skipped) => {
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "SKIPPED: {}", skipped.0);
            }
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }
}

/// The outcome of one case in [`run_all`].
#[derive(Clone, Debug)]
pub struct CaseOutcome {
    /// The case's name.
    pub name: &'static str,
    /// `None` when it passed or was skipped, else the failure message.
    pub failure: Option<String>,
    /// Why it was skipped (it does not apply to this engine), if it was.
    pub skipped: Option<&'static str>,
    /// How long it ran.
    pub duration: Duration,
}

/// Runs every case against `factory`, catching failures, in order.
pub fn run_all(factory: HarnessFactory<'_>) -> Vec<CaseOutcome> {
    CASES
        .iter()
        .map(|case| {
            let start = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| (case.run)(factory)));
            let (failure, skipped) = match result {
                Ok(()) => (None, None),
                Err(payload) => match payload.downcast::<Skipped>() {
                    Ok(skipped) => (None, Some(skipped.0)),
                    Err(panic) => (Some(panic_message(&*panic)), None),
                },
            };
            CaseOutcome {
                name: case.name,
                failure,
                skipped,
                duration: start.elapsed(),
            }
        })
        .collect()
}

/// The message of a caught panic (`&str` or `String` payloads).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panicked with a non-string payload".into()
    }
}

/// Expands to one `#[test]` per conformance case. The argument is an
/// expression that makes a fresh [`Harness`] (a new, empty location); it is
/// evaluated once per harness the cases need.
#[macro_export]
macro_rules! conformance_tests {
    ($make_harness:expr) => {
        $crate::__with_conformance_cases!(__emit_conformance_tests!($make_harness));
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __emit_conformance_tests {
    (($make_harness:expr) $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let factory = || -> ::std::boxed::Box<dyn $crate::conformance::Harness> {
                    ::std::boxed::Box::new($make_harness)
                };
                $crate::conformance::run_as_test(|| $crate::conformance::cases::$case(&factory));
            }
        )*
    };
}
