//! Every input a fuzz target ever crashed on, kept in
//! `fuzz/regressions/<target>/`, runs through the same entry point in the
//! normal suite (`meta_node::fuzzing`), so a fixed crash stays fixed. Plus
//! a few hand-made hostile inputs per target, so the test never runs empty.

use std::path::Path;

use meta_node::fuzzing;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 4] = [
    ("snapshot_reader", fuzzing::snapshot_reader),
    ("command_decoder", fuzzing::command_decoder),
    ("log_entry", fuzzing::log_entry),
    ("peer_frame", fuzzing::peer_frame),
];

/// Inputs that probe length fields and truncation in every decoder.
fn hostile() -> Vec<Vec<u8>> {
    let mut inputs = vec![
        Vec::new(),
        vec![0],
        vec![0xFF; 64],
        b"METASNAP".to_vec(),
        [b"METASNAP".as_slice(), &[1, 0, 0xFF, 0xFF, 0xFF, 0xFF]].concat(),
        // postcard varints claiming huge lengths.
        vec![0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F],
        vec![0x07, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
    ];
    inputs.extend((0..=16u8).map(|n| vec![n; n as usize]));
    inputs
}

#[test]
fn every_recorded_crash_and_hostile_input_is_handled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions");
    let mut recorded = 0;
    for (name, target) in TARGETS {
        for input in hostile() {
            target(&input);
        }
        let dir = root.join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() && path.file_name().is_some_and(|n| n != ".gitkeep") {
                let input = std::fs::read(&path).unwrap_or_else(|e| {
                    panic!("reading {}: {e}", path.display());
                });
                target(&input);
                recorded += 1;
            }
        }
    }
    eprintln!("{recorded} recorded fuzz inputs replayed");
}
