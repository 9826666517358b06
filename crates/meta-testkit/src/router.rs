//! An in-process cluster: `openraft::Raft` instances wired by an in-memory
//! network that can cut nodes off (partitions), and drop or delay messages
//! (requests and answers) at random. Real sockets are the node crate's
//! business.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meta_raft::types::NodeAddr;
use meta_raft::types::{Raft, TypeConfig};
use meta_raft::{Command, Envelope, LogStore, MetadataReader, Response, StateMachine};
use meta_store_api::MetadataStore;
use meta_store_api::keys::META_PREFIX;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{Config, SnapshotPolicy};
use sha2::{Digest, Sha256};

use crate::{Engine, OpenForTests};

/// Routes RPCs between the nodes of one test cluster.
#[derive(Clone, Default)]
pub struct Router {
    nodes: Arc<Mutex<BTreeMap<u64, Raft>>>,
    cut: Arc<Mutex<BTreeSet<u64>>>,
    faults: Arc<Mutex<Faults>>,
    stopped: Arc<Mutex<Vec<String>>>,
}

/// Random message faults, from a seeded generator.
struct Faults {
    drop_percent: u64,
    max_delay_ms: u64,
    rng: crate::Rng,
    dropped: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            drop_percent: 0,
            max_delay_ms: 0,
            rng: crate::Rng::new(1),
            dropped: 0,
        }
    }
}

/// What the network does to one RPC.
struct Delivery {
    raft: Raft,
    delay: Duration,
    drop_answer: bool,
}

impl Router {
    /// From now on, drops `drop_percent`% of messages (half of them
    /// requests, half answers: the callee acted but the caller never
    /// hears) and delays each by up to `max_delay_ms`; `seed` makes the
    /// choices reproducible.
    pub fn set_faults(&self, drop_percent: u64, max_delay_ms: u64, seed: u64) {
        let mut faults = self.faults.lock().unwrap();
        faults.drop_percent = drop_percent;
        faults.max_delay_ms = max_delay_ms;
        faults.rng = crate::Rng::new(seed);
    }

    /// Messages dropped so far.
    pub fn dropped(&self) -> u64 {
        self.faults.lock().unwrap().dropped
    }

    /// Decides the fate of one RPC from `from` to `to`.
    fn deliver(&self, from: u64, to: u64) -> Result<Delivery, NetworkError> {
        let raft = self.target(from, to)?;
        let mut faults = self.faults.lock().unwrap();
        let delay = Duration::from_millis(match faults.max_delay_ms {
            0 => 0,
            max => faults.rng.below(max + 1),
        });
        let dropped = faults.drop_percent > 0 && faults.rng.below(100) < faults.drop_percent;
        let drop_answer = dropped && faults.rng.below(2) == 0;
        if dropped {
            faults.dropped += 1;
            if !drop_answer {
                return Err(NetworkError::new(&std::io::Error::other(format!(
                    "{from} -> {to}: request dropped"
                ))));
            }
        }
        Ok(Delivery {
            raft,
            delay,
            drop_answer,
        })
    }

    /// Cuts `id` off: it can neither send nor receive.
    pub fn isolate(&self, id: u64) {
        self.cut.lock().unwrap().insert(id);
    }

    /// Reconnects `id`.
    pub fn heal(&self, id: u64) {
        self.cut.lock().unwrap().remove(&id);
    }

    fn target(&self, from: u64, to: u64) -> Result<Raft, NetworkError> {
        let cut = self.cut.lock().unwrap();
        if cut.contains(&from) || cut.contains(&to) {
            return Err(NetworkError::new(&std::io::Error::other(format!(
                "{from} -> {to} is partitioned"
            ))));
        }
        self.nodes
            .lock()
            .unwrap()
            .get(&to)
            .cloned()
            .ok_or_else(|| NetworkError::new(&std::io::Error::other(format!("node {to} is down"))))
    }
}

/// One node's view of the network.
pub struct Network {
    router: Router,
    from: u64,
}

/// A connection from one node to another.
pub struct Connection {
    router: Router,
    from: u64,
    to: u64,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: u64, _node: &NodeAddr) -> Connection {
        Connection {
            router: self.router.clone(),
            from: self.from,
            to: target,
        }
    }
}

type Rpc<T, E = openraft::error::Infallible> =
    Result<T, RPCError<u64, NodeAddr, RaftError<u64, E>>>;

/// Runs one RPC through the router's faults.
macro_rules! rpc {
    ($conn:expr, $call:ident, $req:expr) => {{
        let d = $conn
            .router
            .deliver($conn.from, $conn.to)
            .map_err(RPCError::Network)?;
        tokio::time::sleep(d.delay).await;
        let answer = d
            .raft
            .$call($req)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new($conn.to, e)));
        if d.drop_answer {
            return Err(RPCError::Network(NetworkError::new(
                &std::io::Error::other(format!("{} -> {}: answer dropped", $conn.to, $conn.from)),
            )));
        }
        answer
    }};
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _: RPCOption,
    ) -> Rpc<AppendEntriesResponse<u64>> {
        rpc!(self, append_entries, rpc)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        rpc!(self, install_snapshot, rpc)
    }

    async fn vote(&mut self, rpc: VoteRequest<u64>, _: RPCOption) -> Rpc<VoteResponse<u64>> {
        rpc!(self, vote, rpc)
    }
}

/// A running node.
pub struct Node {
    /// Node id.
    pub id: u64,
    /// Its engine.
    pub engine: Engine,
    /// Its store's directory.
    pub dir: PathBuf,
    /// Its Raft.
    pub raft: Raft,
    /// Reads of its views.
    pub reader: MetadataReader,
    /// Its store (log and state).
    pub store: Arc<dyn MetadataStore>,
    /// Its state machine.
    pub sm: StateMachine,
}

impl Node {
    /// [`content_hash`] of what this node applied: a pinned view of its
    /// store once the state machine flushed what waited.
    pub fn hash(&self) -> String {
        let mut bytes = Vec::new();
        let mut backup = self.sm.backup().expect("backup");
        std::io::Read::read_to_end(&mut backup.stream, &mut bytes).expect("read");
        hex::encode(Sha256::digest(&bytes))
    }
}

/// Raft timing for tests; `snapshot_every` > 0 snapshots (and purges) often.
pub fn config(snapshot_every: u64) -> Arc<Config> {
    let mut config = Config {
        heartbeat_interval: 50,
        election_timeout_min: 200,
        election_timeout_max: 400,
        ..Config::default()
    };
    if snapshot_every > 0 {
        config.snapshot_policy = SnapshotPolicy::LogsSinceLast(snapshot_every);
        config.max_in_snapshot_log_to_keep = 0;
    }
    Arc::new(config.validate().expect("a valid config"))
}

impl Router {
    /// Starts node `id` on `engine` in `dir` (reopening what is there).
    pub async fn start(&self, id: u64, engine: Engine, dir: PathBuf, config: Arc<Config>) -> Node {
        let store = open_retrying(engine, &dir).await;
        let sm = StateMachine::open(store.clone())
            .await
            .expect("state machine");
        let network = Network {
            router: self.clone(),
            from: id,
        };
        let raft = Raft::new(
            id,
            config,
            network,
            LogStore::new(store.clone()).purging_only_applied(&sm),
            sm.clone(),
        )
        .await
        .expect("raft");
        self.nodes.lock().unwrap().insert(id, raft.clone());
        // Remember why the node's Raft stopped, if it does, even once the
        // node is restarted.
        let (mut metrics, stopped) = (raft.metrics(), self.stopped.clone());
        tokio::spawn(async move {
            if let Ok(m) = metrics.wait_for(|m| m.running_state.is_err()).await
                && let Err(fatal) = &m.running_state
            {
                stopped.lock().unwrap().push(format!("node {id}: {fatal}"));
            }
        });
        Node {
            id,
            engine,
            dir,
            raft,
            reader: sm.reader(),
            store,
            sm,
        }
    }

    /// Why nodes' Rafts stopped on fatal errors, oldest first, since the
    /// router was made.
    pub fn stopped(&self) -> Vec<String> {
        self.stopped.lock().unwrap().clone()
    }

    /// Stops `node` whatever state its Raft is in (a node whose core
    /// panicked cannot shut down cleanly) and releases its store.
    pub async fn crash(&self, node: Node) -> (u64, Engine, PathBuf) {
        self.nodes.lock().unwrap().remove(&node.id);
        let _ = node.raft.shutdown().await;
        (node.id, node.engine, node.dir)
    }

    /// Stops `node` as a node does (Raft, then what its state machine
    /// still has to write) and releases its store.
    pub async fn stop(&self, node: Node) -> (u64, Engine, PathBuf) {
        self.nodes.lock().unwrap().remove(&node.id);
        node.raft.shutdown().await.expect("shutdown");
        node.sm.flush().expect("flush");
        (node.id, node.engine, node.dir)
    }
}

/// Opening right after a shutdown can race the last handles' release.
async fn open_retrying(engine: Engine, dir: &std::path::Path) -> Arc<dyn MetadataStore> {
    for _ in 0..100 {
        match engine.try_store(dir) {
            Err(meta_store_api::Error::Locked { .. }) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => return other.unwrap_or_else(|e| panic!("opening {engine:?}: {e}")),
        }
    }
    engine.store(dir)
}

/// A hash of the node's whole `/meta/` (data and applied state), equal on
/// every engine for equal content.
pub fn content_hash(store: &dyn MetadataStore) -> String {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut store.snapshot(META_PREFIX).expect("snapshot"),
        &mut bytes,
    )
    .expect("read");
    hex::encode(Sha256::digest(&bytes))
}

/// Proposes `command` through `raft` (which must be the leader).
pub async fn write(raft: &Raft, command: &Command) -> Response {
    raft.client_write(Envelope::new(command))
        .await
        .expect("client write")
        .data
}

/// Waits until `node` applied at least `index`.
pub async fn wait_applied(node: &Node, index: u64) {
    node.raft
        .wait(Some(Duration::from_secs(30)))
        .applied_index_at_least(Some(index), &format!("node {} applies {index}", node.id))
        .await
        .expect("applied in time");
}

/// The leader's last applied index.
pub fn applied_index(raft: &Raft) -> u64 {
    raft.metrics().borrow().last_applied.map_or(0, |l| l.index)
}
