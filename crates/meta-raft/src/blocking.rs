//! The async boundary: store calls block (fsync), so they run on tokio's
//! blocking pool, never on the executor threads.

use openraft::{ErrorSubject, ErrorVerb};

use crate::codec::storage_error;
use crate::types::StorageError;

/// Runs `f` on the blocking pool. A panic inside it becomes a storage
/// error for `subject`/`verb` instead of tearing the caller down.
pub(crate) async fn blocking<T, F>(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    f: F,
) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(join) => Err(storage_error(subject, verb, &join)),
    }
}
