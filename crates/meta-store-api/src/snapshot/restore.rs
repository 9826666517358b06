//! The engine-neutral half of `restore`: decode, verify, hand records over.

use std::io::Read;

use super::SnapshotReader;
use crate::error::{Error, KeyPreview, Result};
use crate::limits::check_entry;
use crate::store::RestoreStats;

/// Decodes `reader` and passes every record to `apply`, checking that each
/// key lies under `prefix` and within the limits.
///
/// Returns `Ok` only once the whole stream verified (trailer counts and
/// checksum). An engine stages what `apply` receives and makes it visible
/// only after this returns `Ok`; on `Err` it discards the staging, which is
/// how every engine's `restore` leaves the store unchanged on a bad stream.
pub fn restore_records(
    prefix: &[u8],
    reader: &mut dyn Read,
    mut apply: impl FnMut(&[u8], &[u8]) -> Result<()>,
) -> Result<RestoreStats> {
    let mut snapshot = SnapshotReader::new(reader)?;
    let mut stats = RestoreStats::default();
    while let Some((key, value)) = snapshot.next_record()? {
        if !key.starts_with(prefix) {
            return Err(Error::InvalidArgument(format!(
                "snapshot record {} has key {} outside the restored prefix {}",
                stats.records,
                KeyPreview::new(key),
                KeyPreview::new(prefix)
            )));
        }
        check_entry(key, value)?;
        apply(key, value)?;
        stats.records += 1;
        stats.bytes += (key.len() + value.len()) as u64;
    }
    Ok(stats)
}
