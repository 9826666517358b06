//! The engines a node can run on. Every engine is listed whatever the build;
//! one that was not compiled in is a clear error naming the Cargo feature.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use meta_store_api::MetadataStore;
use serde::{Deserialize, Serialize};

use crate::config::EngineOptions;
use crate::error::NodeError;

/// A storage engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// In memory (always compiled in; nothing survives a restart).
    Mem,
    /// LMDB (feature `lmdb`).
    Lmdb,
    /// fjall (feature `fjall`).
    Fjall,
}

impl Engine {
    /// Every engine, compiled in or not.
    pub const ALL: [Engine; 3] = [Engine::Mem, Engine::Lmdb, Engine::Fjall];

    /// Its name in config and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Mem => "mem",
            Engine::Lmdb => "lmdb",
            Engine::Fjall => "fjall",
        }
    }

    /// Whether this build can open it.
    pub fn available(self) -> bool {
        match self {
            Engine::Mem => true,
            Engine::Lmdb => cfg!(feature = "lmdb"),
            Engine::Fjall => cfg!(feature = "fjall"),
        }
    }

    /// Whether what it stores outlives the process (every engine but mem).
    pub fn persistent(self) -> bool {
        self != Engine::Mem
    }

    /// Opens (creating if needed) a store of this engine in `dir`.
    pub fn open(
        self,
        dir: &Path,
        options: &EngineOptions,
    ) -> Result<Arc<dyn MetadataStore>, NodeError> {
        if !self.available() {
            return Err(NodeError::EngineNotCompiled {
                engine: self.name(),
            });
        }
        self.open_store(dir, options)
            .map(Arc::from)
            .map_err(|source| match source {
                meta_store_api::Error::Locked { path } => NodeError::DataDirLocked { path },
                source => NodeError::Store {
                    context: format!("opening the {} store in {}", self.name(), dir.display()),
                    source,
                },
            })
    }

    /// [`open`](Self::open) with the engine's own error, as tools that
    /// drive the engines directly want it (the conformance suite, the
    /// benches, the tests): configured as a node configures it. An engine
    /// this build lacks is [`InvalidArgument`](meta_store_api::Error::InvalidArgument)
    /// naming its feature.
    pub fn open_store(
        self,
        dir: &Path,
        options: &EngineOptions,
    ) -> meta_store_api::Result<Box<dyn MetadataStore>> {
        if !self.available() {
            return Err(meta_store_api::Error::InvalidArgument(format!(
                "the {self} engine is not compiled in (Cargo feature `{self}` of meta-node)"
            )));
        }
        match self {
            Engine::Mem => Ok(Box::new(meta_store_mem::MemStore::new())),
            Engine::Lmdb => open_lmdb(dir, options),
            Engine::Fjall => open_fjall(dir, options),
        }
    }
}

#[cfg(feature = "lmdb")]
fn open_lmdb(
    dir: &Path,
    options: &EngineOptions,
) -> meta_store_api::Result<Box<dyn MetadataStore>> {
    let lmdb = meta_store_lmdb::LmdbOptions {
        map_size: (options.lmdb_map_size_mib as usize).saturating_mul(1 << 20),
        ..meta_store_lmdb::LmdbOptions::default()
    };
    Ok(Box::new(meta_store_lmdb::LmdbStore::open(dir, &lmdb)?))
}

#[cfg(not(feature = "lmdb"))]
fn open_lmdb(_: &Path, _: &EngineOptions) -> meta_store_api::Result<Box<dyn MetadataStore>> {
    unreachable!("checked by Engine::available")
}

/// Table files a fjall store of the node keeps open: two stores fit in the
/// node's descriptor reserve with room for snapshots and peers.
pub const FJALL_MAX_CACHED_FILES: usize = 40;

#[cfg(feature = "fjall")]
fn open_fjall(
    dir: &Path,
    options: &EngineOptions,
) -> meta_store_api::Result<Box<dyn MetadataStore>> {
    let fjall = meta_store_fjall::FjallOptions {
        cache_size: options.fjall_cache_size_mib.saturating_mul(1 << 20),
        // Inside the descriptors the node keeps out of its connection
        // budgets (`conn::RESERVED_FDS`), with room for a second store.
        max_cached_files: FJALL_MAX_CACHED_FILES,
        ..meta_store_fjall::FjallOptions::default()
    };
    Ok(Box::new(meta_store_fjall::FjallStore::open(dir, &fjall)?))
}

#[cfg(not(feature = "fjall"))]
fn open_fjall(_: &Path, _: &EngineOptions) -> meta_store_api::Result<Box<dyn MetadataStore>> {
    unreachable!("checked by Engine::available")
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Engine, String> {
        Engine::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| format!("unknown engine `{s}` (expected lmdb, fjall or mem)"))
    }
}

/// An `ENGINE:DIR` argument of the offline tools (`lmdb:./meta-data/lmdb`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreSpec {
    /// The engine.
    pub engine: Engine,
    /// The store's directory.
    pub dir: PathBuf,
}

impl FromStr for StoreSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<StoreSpec, String> {
        let (engine, dir) = s.split_once(':').ok_or_else(|| {
            format!("`{s}` is not ENGINE:DIR (for example lmdb:./meta-data/lmdb)")
        })?;
        if dir.is_empty() {
            return Err(format!("`{s}` names no directory after the engine"));
        }
        Ok(StoreSpec {
            engine: engine.parse()?,
            dir: PathBuf::from(dir),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_and_specs_parse_with_clear_errors() {
        assert_eq!("fjall".parse::<Engine>(), Ok(Engine::Fjall));
        assert!(
            "rocks"
                .parse::<Engine>()
                .unwrap_err()
                .contains("unknown engine `rocks`")
        );
        let spec: StoreSpec = "lmdb:/tmp/x".parse().unwrap();
        assert_eq!(
            (spec.engine, spec.dir),
            (Engine::Lmdb, PathBuf::from("/tmp/x"))
        );
        assert!(
            "lmdb"
                .parse::<StoreSpec>()
                .unwrap_err()
                .contains("ENGINE:DIR")
        );
        assert!(
            "lmdb:"
                .parse::<StoreSpec>()
                .unwrap_err()
                .contains("no directory")
        );
    }

    #[cfg(not(feature = "fjall"))]
    #[test]
    fn an_engine_not_compiled_in_names_its_feature() {
        let err = Engine::Fjall
            .open(Path::new("/tmp"), &EngineOptions::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("`fjall` feature"), "{err}");
    }
}
