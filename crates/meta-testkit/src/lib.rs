//! What the workspace's tests, benches and tooling share, in one place
//! (`publish = false`; nothing a user links):
//!
//! - the engines under test: [`meta_node::Engine`], the one list of engines,
//!   opened for tests with [`OpenForTests`];
//! - [`router`]: an in-process Raft cluster over a router that cuts,
//!   drops and delays messages;
//! - [`procs`]: real `meta-node` processes on loopback (TLS, tokens, the
//!   CLI, clusters, SIGKILL/SIGSTOP), and [`links`], faulty TCP links
//!   between them;
//! - [`checker`]: the linearizability checker the in-process and the
//!   process histories go through;
//! - small things every harness needs: a seeded [`Rng`], [`env_u64`],
//!   [`wait_until`], a 2-worker [`runtime`], [`free_port`].

// Test support: a failed call is a failed test, with its message.
#![allow(clippy::unwrap_used)]

pub mod checker;
pub mod links;
pub mod procs;
pub mod router;

use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use meta_node::Engine;
use meta_node::config::EngineOptions;
use meta_store_api::MetadataStore;

/// Opening an engine as a test's store, configured as a node configures it.
pub trait OpenForTests {
    /// Opens the engine in `dir` (ignored by mem).
    fn try_store(self, dir: &Path) -> meta_store_api::Result<Arc<dyn MetadataStore>>;

    /// [`try_store`](Self::try_store), which must succeed.
    fn store(self, dir: &Path) -> Arc<dyn MetadataStore>;
}

impl OpenForTests for Engine {
    fn try_store(self, dir: &Path) -> meta_store_api::Result<Arc<dyn MetadataStore>> {
        self.open_store(dir, &EngineOptions::default())
            .map(Arc::from)
    }

    fn store(self, dir: &Path) -> Arc<dyn MetadataStore> {
        self.try_store(dir)
            .unwrap_or_else(|e| panic!("opening {self} in {}: {e}", dir.display()))
    }
}

/// A small deterministic generator (xorshift64*), so a seed replays a
/// run. A seed of 0 is made 1.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next number.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n` (0 if `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The variable `name` as a number, or `default` (unset or not a number).
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A seed from variable `name` (to replay a run), else from the clock;
/// never 0.
pub fn seed_from_env(name: &str) -> u64 {
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    env_u64(name, clock) | 1
}

/// Polls `ok` every 50 ms until it holds; panics naming `what` after
/// `secs` seconds.
pub fn wait_until(secs: u64, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {secs} s waiting for {what}");
}

/// The runtime tests and benches drive clients and nodes with: 2 workers,
/// as the machines they run on have.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A free loopback port, never one handed out before in this process (the
/// OS may offer a just-released port again, and two of a node's addresses
/// must differ).
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut handed_out = HANDED_OUT.lock().unwrap();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// `127.0.0.1:<free_port()>`.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_and_zero_is_not_stuck() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        let first: Vec<u64> = (0..8).map(|_| a.next()).collect();
        assert_eq!(first, (0..8).map(|_| b.next()).collect::<Vec<_>>());
        let mut zero = Rng::new(0);
        assert_ne!(zero.next(), zero.next());
        assert!((0..1000).all(|_| a.below(7) < 7));
        assert_eq!(a.below(0), 0);
    }

    #[test]
    fn ports_are_never_handed_out_twice() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
    }

    #[test]
    fn every_engine_opens_for_tests() {
        let dir = tempfile::tempdir().unwrap();
        for engine in Engine::ALL {
            let store = engine.store(&dir.path().join(engine.name()));
            assert_eq!(store.engine(), engine.name());
            store.sync().unwrap();
        }
    }
}
