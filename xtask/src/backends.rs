//! Every storage backend of the workspace, as conformance harnesses: the
//! node's own list of engines ([`Engine::ALL`]), each opened as a node
//! opens it.

use meta_node::Engine;
use meta_node::config::EngineOptions;
use meta_store_api::conformance::{DirHarness, Harness, VolatileHarness};

/// A fresh harness for `engine`: a directory it reopens in if it
/// persists, else a new store at each open.
pub fn harness(engine: Engine) -> Box<dyn Harness> {
    if engine.persistent() {
        Box::new(DirHarness::new(move |dir| {
            engine.open_store(dir, &EngineOptions::default())
        }))
    } else {
        Box::new(VolatileHarness(|| {
            Engine::Mem
                .open_store(std::path::Path::new(""), &EngineOptions::default())
                .expect("the mem engine opens")
        }))
    }
}

/// Makes a fresh harness of one engine.
pub type MakeHarness = Box<dyn Fn() -> Box<dyn Harness> + Sync>;

/// Every engine's name and harness maker, in the order reports list them.
pub fn all() -> Vec<(&'static str, MakeHarness)> {
    Engine::ALL
        .into_iter()
        .map(|engine| {
            let make: MakeHarness = Box::new(move || harness(engine));
            (engine.name(), make)
        })
        .collect()
}
