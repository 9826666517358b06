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

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

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
}

/// The identity of a running node, shared by its peer transport.
#[derive(Debug)]
pub struct Identity {
    path: PathBuf,
    node_id: u64,
    cluster: Mutex<ClusterId>,
    held_data: std::sync::atomic::AtomicBool,
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
    /// Reads `<data_dir>/identity.toml`, or writes it for `node_id`. A file
    /// naming another node is refused.
    pub fn open(data_dir: &Path, node_id: u64) -> Result<Identity, NodeError> {
        let path = data_dir.join(IDENTITY_FILE);
        let bad = |problem: String| NodeError::ConfigFile {
            path: path.clone(),
            problem,
        };
        let mut held_data = false;
        let cluster = match files::read_optional(&path)? {
            Some(text) => {
                let file: IdentityFile = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
                held_data = file.held_data;
                if file.node_id != node_id {
                    return Err(NodeError::config(
                        "node_id",
                        format!(
                            "this data directory ({}) belongs to node {}, not node {node_id}; \
                             start it with --node-id {} or use another --data-dir",
                            data_dir.display(),
                            file.node_id,
                            file.node_id
                        ),
                    ));
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
        let identity = Identity {
            path,
            node_id,
            cluster: Mutex::new(cluster),
            held_data: std::sync::atomic::AtomicBool::new(held_data),
        };
        identity.save(cluster)?;
        Ok(identity)
    }

    fn save(&self, cluster: ClusterId) -> Result<(), NodeError> {
        let file = IdentityFile {
            node_id: self.node_id,
            cluster_id: (!cluster.is_none()).then(|| cluster.to_string()),
            held_data: self.held_data(),
        };
        let text = toml::to_string(&file).map_err(|e| NodeError::ConfigFile {
            path: self.path.clone(),
            problem: e.to_string(),
        })?;
        files::write_private(
            &self.path,
            format!(
                "# Written by meta-node: which node and cluster this directory belongs to.\n{text}"
            )
            .as_bytes(),
        )
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
    fn the_identity_survives_restarts_and_refuses_another_node() {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::open(dir.path(), 3).unwrap();
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
        let again = Identity::open(dir.path(), 3).unwrap();
        assert_eq!(again.cluster(), other);
        assert!(again.held_data(), "kept across restarts");
        let err = Identity::open(dir.path(), 4).unwrap_err().to_string();
        assert!(err.contains("belongs to node 3"), "{err}");
    }
}
