//! Project chores. See `cargo xtask help`.

fn main() {}
