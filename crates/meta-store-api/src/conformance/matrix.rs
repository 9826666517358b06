//! The cross-engine matrix: a snapshot of every engine restores into every
//! engine with identical content.

use super::HarnessFactory;
use super::support::{dump, kv, load, open, sample, snapshot_bytes};
use crate::KeyValue;

/// Content that exercises the format: several namespaces, binary keys,
/// empty and large values.
fn content() -> Vec<KeyValue> {
    let mut entries = sample(b"/meta/kv/", 2000);
    entries.extend(sample(b"/meta/cluster/node-", 50));
    entries.push(kv(b"/meta/config/empty", b""));
    entries.push(kv(b"/meta/shard/\x00\xff", &vec![0xAB; 300_000]));
    entries.sort();
    entries
}

/// For every (source, target) pair of `engines`: fill the source, snapshot
/// `/meta/`, restore into a fresh target, and check the target holds exactly
/// the same entries and snapshots to the same bytes. Panics with the pair's
/// names on the first mismatch; returns the number of pairs checked.
pub fn cross_engine_matrix(engines: &[(&str, HarnessFactory<'_>)]) -> usize {
    let content = content();
    let mut pairs = 0;
    for (source_name, source_factory) in engines {
        let (_sh, source) = open(*source_factory);
        load(&*source, &content);
        source
            .set(
                b"/raft/vote",
                b"not part of the snapshot",
                crate::Durability::Durable,
            )
            .expect("writing the vote");
        let bytes = snapshot_bytes(&*source, b"/meta/");
        for (target_name, target_factory) in engines {
            let (_th, target) = open(*target_factory);
            target
                .set(b"/meta/kv/stale", b"replaced", crate::Durability::Durable)
                .expect("writing");
            let stats = target
                .restore(b"/meta/", &mut &bytes[..])
                .unwrap_or_else(|e| panic!("{source_name} -> {target_name}: restore failed: {e}"));
            assert_eq!(
                stats.records,
                content.len() as u64,
                "{source_name} -> {target_name}: record count"
            );
            assert!(
                dump(&*target) == content,
                "{source_name} -> {target_name}: content differs"
            );
            assert!(
                snapshot_bytes(&*target, b"/meta/") == bytes,
                "{source_name} -> {target_name}: the target's snapshot is not byte-identical"
            );
            pairs += 1;
        }
    }
    pairs
}
