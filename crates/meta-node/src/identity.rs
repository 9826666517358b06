//! The data directory's identity file, `<data_dir>/identity.toml`: which
//! node this directory belongs to and which cluster.
//!
//! - The **node id** is written on first start; starting the directory
//!   again as another node is refused.
//! - The **cluster id** is a random 128-bit id made when a cluster is born
//!   (a bootstrapping node, or `cluster init`). Every peer message carries
//!   it; a node refuses messages of another cluster. A node that joins
//!   learns it from the first message of an authenticated peer and keeps
//!   it from then on.
//! - The **engines** of its stores: once the store held data, starting on
//!   another engine (which would serve an empty store, or an old one left
//!   behind by `migrate`) is refused; `meta-node migrate` in place updates
//!   the record.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::NodeError;
use crate::files;

/// The identity file's name in the data directory.
pub const IDENTITY_FILE: &str = "identity.toml";

/// A cluster's id: 16 random bytes (all zero means "none yet").
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ClusterId(pub [u8; 16]);

impl ClusterId {
    /// A fresh random id.
    pub fn generate() -> Result<ClusterId, NodeError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| {
            NodeError::io(
                "generating a cluster id",
                std::io::Error::other(e.to_string()),
            )
        })?;
        Ok(ClusterId(bytes))
    }

    /// Whether this is the "none yet" id.
    pub fn is_none(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterId({self})")
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    node_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cluster_id: Option<String>,
    /// Set once the store durably held this node's part of a cluster.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    held_data: bool,
    /// The engine of the Raft log's store (absent in files of older builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    log_engine: Option<Engine>,
    /// The engine of the state machine's store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state_engine: Option<Engine>,
}

/// The engines of a node's two stores (the same one, usually).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Engines {
    /// The Raft log's.
    pub log: Engine,
    /// The state machine's.
    pub state: Engine,
}

impl Engines {
    /// The stores' directories in `data_dir`: `<engine>` for one store,
    /// `log-<engine>` and `state-<engine>` for two.
    pub fn dirs(&self, data_dir: &Path) -> (PathBuf, PathBuf) {
        if self.log == self.state {
            let dir = data_dir.join(self.log.name());
            (dir.clone(), dir)
        } else {
            (
                data_dir.join(format!("log-{}", self.log)),
                data_dir.join(format!("state-{}", self.state)),
            )
        }
    }

    /// As the `--engine` flags that start a node on them.
    pub fn flags(&self) -> String {
        if self.log == self.state {
            format!("--engine {}", self.log)
        } else {
            format!("--log-engine {} --state-engine {}", self.log, self.state)
        }
    }
}

impl fmt::Display for Engines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.log == self.state {
            write!(f, "{}", self.log)
        } else {
            write!(f, "{} (log) and {} (state)", self.log, self.state)
        }
    }
}

/// Whether a store directory holds anything (a lock file alone is not data).
pub fn holds_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name() != meta_store_api::LOCK_FILE)
    })
}

/// Store directories of other engines than `engines` in `data_dir` that
/// hold files.
fn other_stores(data_dir: &Path, engines: Engines) -> Vec<PathBuf> {
    let (log, state) = engines.dirs(data_dir);
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let engine = name
                .strip_prefix("log-")
                .or_else(|| name.strip_prefix("state-"))
                .unwrap_or(name);
            engine.parse::<Engine>().is_ok() && *path != log && *path != state && holds_files(path)
        })
        .collect();
    found.sort();
    found
}

fn write_file(path: &Path, file: &IdentityFile) -> Result<(), NodeError> {
    let text = toml::to_string(file).map_err(|e| NodeError::ConfigFile {
        path: path.to_path_buf(),
        problem: e.to_string(),
    })?;
    files::write_private(
        path,
        format!(
            "# Written by meta-node: which node and cluster this directory belongs to.\n{text}"
        )
        .as_bytes(),
    )
}

/// The role of a store directory named as a node names them: `<engine>`
/// (both stores), `log-<engine>` or `state-<engine>`.
fn store_role(dir: &Path, engine: Engine) -> Option<(bool, bool)> {
    let name = dir.file_name()?.to_str()?;
    if name == engine.name() {
        Some((true, true))
    } else if name.strip_prefix("log-") == Some(engine.name()) {
        Some((true, false))
    } else if name.strip_prefix("state-") == Some(engine.name()) {
        Some((false, true))
    } else {
        None
    }
}

/// After an offline `migrate` from `from` to `to`: if both are store
/// directories of the same node data directory (`<data_dir>/lmdb` to
/// `<data_dir>/fjall`, say), records the new engine in its identity file
/// and returns the file; else changes nothing.
pub fn record_migration(
    from: (&Path, Engine),
    to: (&Path, Engine),
) -> Result<Option<PathBuf>, NodeError> {
    let parent = |p: &Path| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (data_dir, to_parent) = (parent(from.0), parent(to.0));
    let same_dir = match (data_dir.canonicalize(), to_parent.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let path = data_dir.join(IDENTITY_FILE);
    let (Some(role), Some(text)) = (store_role(from.0, from.1), files::read_optional(&path)?)
    else {
        return Ok(None);
    };
    if !same_dir || store_role(to.0, to.1) != Some(role) {
        return Ok(None);
    }
    let mut file: IdentityFile = toml::from_str(&text).map_err(|e| NodeError::ConfigFile {
        path: path.clone(),
        problem: e.to_string(),
    })?;
    let (moves_log, moves_state) = role;
    let recorded = Engines {
        log: file.log_engine.unwrap_or(from.1),
        state: file.state_engine.unwrap_or(from.1),
    };
    // Only the store the file names as current, into the layout a node
    // starts on (a split store migrated on its own would leave a layout no
    // flag can name).
    if (moves_log && recorded.log != from.1) || (moves_state && recorded.state != from.1) {
        return Ok(None);
    }
    let moved = Engines {
        log: if moves_log { to.1 } else { recorded.log },
        state: if moves_state { to.1 } else { recorded.state },
    };
    let (log_dir, state_dir) = moved.dirs(&data_dir);
    let names = |p: &Path| p.file_name().map(|n| n.to_os_string());
    let lands = (moves_log && names(&log_dir) == names(to.0))
        || (moves_state && names(&state_dir) == names(to.0));
    if !lands {
        return Ok(None);
    }
    file.log_engine = Some(moved.log);
    file.state_engine = Some(moved.state);
    write_file(&path, &file)?;
    Ok(Some(path))
}

/// The identity of a running node, shared by its peer transport.
#[derive(Debug)]
pub struct Identity {
    path: PathBuf,
    node_id: u64,
    engines: Engines,
    cluster: Mutex<ClusterId>,
    held_data: std::sync::atomic::AtomicBool,
    new: bool,
}

/// A peer message of another cluster.
#[derive(Debug, thiserror::Error)]
#[error("message of cluster {theirs} refused: this node belongs to cluster {ours}")]
pub struct ClusterMismatch {
    /// This node's cluster.
    pub ours: ClusterId,
    /// The message's.
    pub theirs: ClusterId,
}

impl Identity {
    /// Reads `<data_dir>/identity.toml`, or writes it for `node_id` on
    /// `engines`. Refused: a file naming another node; once the store held
    /// data, other engines than the recorded ones; with no record, another
    /// engine's store in the directory while `engines` have none.
    pub fn open(data_dir: &Path, node_id: u64, engines: Engines) -> Result<Identity, NodeError> {
        let path = data_dir.join(IDENTITY_FILE);
        let bad = |problem: String| NodeError::ConfigFile {
            path: path.clone(),
            problem,
        };
        let mut held_data = false;
        let mut recorded = None;
        let text = files::read_optional(&path)?;
        let new = text.is_none();
        let cluster = match text {
            Some(text) => {
                let file: IdentityFile = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
                held_data = file.held_data;
                if let (Some(log), Some(state)) = (file.log_engine, file.state_engine) {
                    recorded = Some(Engines { log, state });
                }
                if file.node_id != node_id {
                    return Err(NodeError::WrongNode {
                        data_dir: data_dir.to_path_buf(),
                        owner: file.node_id,
                        asked: node_id,
                    });
                }
                match file.cluster_id {
                    None => ClusterId::default(),
                    Some(hex_id) => {
                        let bytes = hex::decode(&hex_id)
                            .ok()
                            .and_then(|b| <[u8; 16]>::try_from(b).ok())
                            .ok_or_else(|| {
                                bad(format!("cluster_id `{hex_id}` is not 32 hex digits"))
                            })?;
                        ClusterId(bytes)
                    }
                }
            }
            None => ClusterId::default(),
        };
        if let Some(recorded) = recorded.filter(|r| held_data && *r != engines) {
            let (log, state) = recorded.dirs(data_dir);
            let mut stores = vec![log.clone()];
            if state != log {
                stores.push(state);
            }
            return Err(NodeError::EngineMismatch {
                recorded,
                stores,
                configured: engines,
            });
        }
        // The configured stores are new, another engine's are not: that
        // store may hold a vote or log entries even before anything was
        // applied (and an identity file of an older build records nothing).
        let (log, state) = engines.dirs(data_dir);
        if !holds_files(&log) && !holds_files(&state) {
            let others = other_stores(data_dir, engines);
            if !others.is_empty() {
                return Err(NodeError::OtherEngineStore {
                    stores: others,
                    configured: engines,
                });
            }
        }
        let identity = Identity {
            path,
            node_id,
            engines,
            cluster: Mutex::new(cluster),
            held_data: std::sync::atomic::AtomicBool::new(held_data),
            new,
        };
        identity.save(cluster)?;
        Ok(identity)
    }

    fn save(&self, cluster: ClusterId) -> Result<(), NodeError> {
        let file = IdentityFile {
            node_id: self.node_id,
            cluster_id: (!cluster.is_none()).then(|| cluster.to_string()),
            held_data: self.held_data(),
            log_engine: Some(self.engines.log),
            state_engine: Some(self.engines.state),
        };
        write_file(&self.path, &file)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Whether there was no identity file before this start (a new data
    /// directory, or one of a build before identity files).
    pub fn is_new(&self) -> bool {
        self.new
    }

    /// Whether this directory's store once durably held this node's data
    /// (then it must never start empty).
    pub fn held_data(&self) -> bool {
        self.held_data.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records that the store now durably holds this node's data.
    pub fn mark_held_data(&self) -> Result<(), NodeError> {
        if self
            .held_data
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(());
        }
        let cluster = self.cluster();
        self.save(cluster)
    }

    /// This node's cluster id (none yet: all zero).
    pub fn cluster(&self) -> ClusterId {
        *self.cluster.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets a cluster id given by [`found_cluster`](Self::found_cluster)
    /// when founding the cluster failed after all.
    pub fn unfound_cluster(&self, id: ClusterId) -> Result<(), NodeError> {
        let mut current = self.cluster.lock().unwrap_or_else(PoisonError::into_inner);
        if *current == id {
            self.save(ClusterId::default())?;
            *current = ClusterId::default();
        }
        Ok(())
    }

    /// Gives the node a new cluster id if it has none (it is founding a
    /// cluster), and returns its id.
    pub fn found_cluster(&self) -> Result<ClusterId, NodeError> {
        let mut current = self.cluster.lock().unwrap_or_else(PoisonError::into_inner);
        if current.is_none() {
            let id = ClusterId::generate()?;
            self.save(id)?;
            *current = id;
        }
        Ok(*current)
    }

    /// Records `id` as this node's cluster, a new one it starts in (a
    /// restore from an online backup); the node must be in none yet.
    pub fn start_cluster(&self, id: ClusterId) -> Result<(), NodeError> {
        let mut current = self.cluster.lock().unwrap_or_else(PoisonError::into_inner);
        if !current.is_none() && *current != id {
            return Err(NodeError::config(
                "--data-dir",
                format!(
                    "{} belongs to cluster {} already",
                    self.path.display(),
                    *current
                ),
            ));
        }
        self.save(id)?;
        *current = id;
        Ok(())
    }

    /// Checks the cluster id of an authenticated peer's message: equal to
    /// ours, or — if we have none yet — accepted, and adopted (stored for
    /// good) when `adopt` (a leader's message to a node not yet part of a
    /// cluster).
    pub fn admit(&self, theirs: ClusterId, adopt: bool) -> Result<(), ClusterMismatch> {
        let mut current = self.cluster.lock().unwrap_or_else(PoisonError::into_inner);
        if *current == theirs {
            return Ok(());
        }
        if current.is_none() {
            if !adopt || theirs.is_none() {
                return Ok(());
            }
            if let Err(e) = self.save(theirs) {
                tracing::error!("cannot store the cluster id {theirs}: {e}");
                return Err(ClusterMismatch {
                    ours: *current,
                    theirs,
                });
            }
            tracing::info!("joined cluster {theirs}");
            *current = theirs;
            return Ok(());
        }
        Err(ClusterMismatch {
            ours: *current,
            theirs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_in_place_migration_is_recorded_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let lmdb = Engines {
            log: Engine::Lmdb,
            state: Engine::Lmdb,
        };
        let identity = Identity::open(dir.path(), 1, lmdb).unwrap();
        identity.mark_held_data().unwrap();
        let d = dir.path();
        // Elsewhere, or a directory not named as a node names its stores.
        let elsewhere = tempfile::tempdir().unwrap();
        for (from, to) in [
            (d.join("lmdb"), elsewhere.path().join("fjall")),
            (d.join("lmdb"), d.join("backup")),
            (d.join("copy"), d.join("fjall")),
        ] {
            std::fs::create_dir_all(&to).unwrap();
            let recorded = record_migration((&from, Engine::Lmdb), (&to, Engine::Fjall)).unwrap();
            assert_eq!(recorded, None, "{from:?} -> {to:?}");
        }
        std::fs::create_dir_all(d.join("fjall")).unwrap();
        let recorded = record_migration(
            (&d.join("lmdb"), Engine::Lmdb),
            (&d.join("fjall"), Engine::Fjall),
        )
        .unwrap();
        assert_eq!(recorded, Some(d.join(IDENTITY_FILE)));
        let fjall = Engines {
            log: Engine::Fjall,
            state: Engine::Fjall,
        };
        assert!(
            Identity::open(d, 1, lmdb).is_err(),
            "the old engine is refused"
        );
        let again = Identity::open(d, 1, fjall).unwrap();
        assert!(again.held_data());
    }

    #[test]
    fn the_identity_survives_restarts_and_refuses_another_node() {
        let dir = tempfile::tempdir().unwrap();
        let lmdb = Engines {
            log: Engine::Lmdb,
            state: Engine::Lmdb,
        };
        let identity = Identity::open(dir.path(), 3, lmdb).unwrap();
        assert!(identity.is_new());
        assert!(identity.cluster().is_none());
        let other = ClusterId([7; 16]);
        identity.admit(ClusterId([9; 16]), false).unwrap();
        assert!(identity.cluster().is_none(), "a vote's id is not adopted");
        identity.admit(other, true).unwrap();
        assert!(identity.admit(ClusterId([8; 16]), true).is_err());
        assert!(identity.admit(ClusterId::default(), false).is_err());
        assert_eq!(
            identity.found_cluster().unwrap(),
            other,
            "kept, not replaced"
        );
        assert!(!identity.held_data());
        identity.mark_held_data().unwrap();
        drop(identity);
        let again = Identity::open(dir.path(), 3, lmdb).unwrap();
        assert!(!again.is_new());
        assert_eq!(again.cluster(), other);
        assert!(again.held_data(), "kept across restarts");
        let err = Identity::open(dir.path(), 4, lmdb).unwrap_err().to_string();
        assert!(err.contains("belongs to node 3"), "{err}");
        let split = Engines {
            log: Engine::Lmdb,
            state: Engine::Fjall,
        };
        let err = Identity::open(dir.path(), 3, split)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("data is on lmdb") && err.contains("--engine lmdb"),
            "{err}"
        );
    }
}
