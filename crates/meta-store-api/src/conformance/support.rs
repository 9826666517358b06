//! Small helpers the cases share.

use std::sync::mpsc;
use std::time::Duration;

use super::{Harness, HarnessFactory};
use crate::{Durability, snapshot::SnapshotOptions};
use crate::{KeyValue, MetadataStore, WriteBatch};
use std::io::Read;

/// A fresh harness and the store it opened.
pub(crate) fn open(factory: HarnessFactory<'_>) -> (Box<dyn Harness>, Box<dyn MetadataStore>) {
    let mut harness = factory();
    let store = harness.open().expect("opening a fresh store");
    (harness, store)
}

pub(crate) fn kv(key: &[u8], value: &[u8]) -> KeyValue {
    (key.to_vec(), value.to_vec())
}

/// Writes `entries` in one durable batch.
pub(crate) fn load(store: &dyn MetadataStore, entries: &[KeyValue]) {
    let mut batch = WriteBatch::with_capacity(entries.len());
    for (k, v) in entries {
        batch.put(k.clone(), v.clone());
    }
    store
        .batch(&batch, Durability::Durable)
        .expect("loading entries");
}

/// Everything in the store.
pub(crate) fn dump(store: &dyn MetadataStore) -> Vec<KeyValue> {
    store.scan(b"").expect("scanning the whole store")
}

/// The whole snapshot stream of `prefix`, read into memory.
pub(crate) fn snapshot_bytes(store: &dyn MetadataStore, prefix: &[u8]) -> Vec<u8> {
    snapshot_bytes_with(store, prefix, &SnapshotOptions::default())
}

pub(crate) fn snapshot_bytes_with(
    store: &dyn MetadataStore,
    prefix: &[u8],
    options: &SnapshotOptions,
) -> Vec<u8> {
    let mut bytes = Vec::new();
    store
        .snapshot_with(prefix, options)
        .expect("starting a snapshot")
        .read_to_end(&mut bytes)
        .expect("reading a snapshot");
    bytes
}

/// Runs `f` on another thread and fails the case if it has not finished
/// within `secs` seconds (a blocked writer, a deadlock).
pub(crate) fn within<T: Send + 'static>(
    secs: u64,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish within {secs}s"),
    }
}

/// `n` keys under `prefix` with values that vary in size, including empty.
pub(crate) fn sample(prefix: &[u8], n: usize) -> Vec<KeyValue> {
    (0..n)
        .map(|i| {
            let mut key = prefix.to_vec();
            key.extend_from_slice(format!("{i:06}").as_bytes());
            let value = vec![(i % 251) as u8; (i * 37) % 300];
            (key, value)
        })
        .collect()
}
