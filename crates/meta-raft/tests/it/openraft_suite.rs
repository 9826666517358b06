//! openraft's own storage test suite, against the log store and state
//! machine over every engine.

use meta_raft::types::{StorageError, TypeConfig};
use meta_raft::{LogStore, StateMachine};
use meta_testkit::{Engine, OpenForTests};
use openraft::testing::{StoreBuilder, Suite};

struct Builder(Engine);

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = self.0.store(dir.path());
        let sm = StateMachine::open(store.clone()).await?;
        Ok((dir, LogStore::new(store), sm))
    }
}

fn run(engine: Engine) {
    Suite::test_all(Builder(engine)).unwrap_or_else(|e| panic!("{engine:?}: {e}"));
}

#[test]
fn openraft_suite_passes_on_mem() {
    run(Engine::Mem);
}

#[test]
fn openraft_suite_passes_on_lmdb() {
    run(Engine::Lmdb);
}

#[test]
fn openraft_suite_passes_on_fjall() {
    run(Engine::Fjall);
}
