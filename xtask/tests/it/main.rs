//! xtask's integration tests, as one test binary: the tidy checks of the
//! architecture's invariants, and the cross-engine snapshot matrix.

mod cross_engine;
mod tidy;
