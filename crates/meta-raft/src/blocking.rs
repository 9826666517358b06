//! The async boundary: store calls block (fsync), so they never run as
//! plain async code. On a multi-thread runtime they run in place under
//! `block_in_place` (this worker's other tasks move to another thread; no
//! hand-off to the blocking pool and back, which cost a single writer
//! about a third of its latency); elsewhere on tokio's blocking pool.

use openraft::{ErrorSubject, ErrorVerb};

use crate::codec::storage_error;
use crate::types::StorageError;

/// Runs `f` where blocking is allowed: in place under `block_in_place` on
/// a multi-thread runtime, else on the blocking pool. A panic inside it
/// becomes a storage error for `subject`/`verb` instead of tearing the
/// caller down.
pub(crate) async fn blocking<T, F>(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    f: F,
) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        // Runs here, after handing this worker's other tasks to another
        // thread: no round trip to the blocking pool.
        return tokio::task::block_in_place(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        })
        .unwrap_or_else(|panic| Err(storage_error(subject, verb, &panic_text(&panic))));
    }
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(join) => Err(storage_error(subject, verb, &join)),
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> std::io::Error {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    std::io::Error::other(format!("storage call panicked: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn panicking() -> Result<(), StorageError> {
        blocking(ErrorSubject::Store, ErrorVerb::Write, || {
            panic!("engine exploded")
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_on_a_worker_becomes_a_storage_error() {
        let e = panicking().await.expect_err("a panic is an error");
        assert!(e.to_string().contains("engine exploded"), "{e}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panic_on_the_blocking_pool_becomes_a_storage_error() {
        assert!(panicking().await.is_err());
    }
}
