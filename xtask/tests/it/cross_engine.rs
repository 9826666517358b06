//! A snapshot of every engine restores into every engine with identical
//! content (the 3x3 matrix), as part of the test suite.

use meta_store_api::conformance::{HarnessFactory, cross_engine_matrix};
use xtask::backends;

#[test]
fn snapshots_restore_across_every_pair_of_engines() {
    let makers = backends::all();
    let factories: Vec<(&str, HarnessFactory<'_>)> = makers
        .iter()
        .map(|(name, make)| (*name, &**make as HarnessFactory<'_>))
        .collect();
    assert_eq!(cross_engine_matrix(&factories), 9);
}

#[test]
fn xtask_conformance_report_ends_with_the_summary_line() {
    let rows = vec![xtask::conformance::Row {
        backend: "x".into(),
        passed: 3,
        skipped: 2,
        failures: vec![("case".into(), "boom".into())],
        seconds: 0.1,
    }];
    let report = xtask::conformance::render(&rows);
    assert!(report.contains("FAILED x / case"), "{report}");
    assert!(
        report.ends_with("conformance: 3 passed, 1 failed, 2 skipped\n"),
        "{report}"
    );
}
