//! Replays every saved fuzz input under `tests/data/regress/<target>/` through the same checks
//! as the fuzz target of that name (`fuzz/harness.rs`), so CI needs no nightly toolchain.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../fuzz/harness.rs"]
mod harness;

/// A fuzz target's checks over one input.
type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 5] = [
    ("record", harness::record),
    ("params", harness::params),
    ("bodies", harness::bodies),
    ("connection", harness::connection),
    ("machine", harness::machine),
];

/// Documentation files that may sit next to the inputs.
fn is_note(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    name.starts_with("README") || name.starts_with('.')
}

/// Every input file below `dir`, sorted so failures are reported in a stable order.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(inputs(&path));
        } else if !is_note(&path) {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[test]
fn replay_saved_fuzz_inputs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/regress");
    let mut failures = Vec::new();
    let mut replayed = 0;
    for entry in fs::read_dir(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display())) {
        let path = entry.unwrap().path();
        if !path.is_dir() {
            assert!(
                is_note(&path),
                "{}: inputs belong in a directory named after their fuzz target",
                path.display()
            );
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(&(_, check)) = TARGETS.iter().find(|(t, _)| *t == name) else {
            panic!(
                "{}: no fuzz target named {name:?} (known: record, params, bodies, connection)",
                path.display()
            );
        };
        for input in inputs(&path) {
            let bytes = fs::read(&input).unwrap();
            replayed += 1;
            if let Err(e) = panic::catch_unwind(AssertUnwindSafe(|| check(&bytes))) {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{}: {msg}", input.display()));
            }
        }
    }
    eprintln!("replayed {replayed} saved fuzz inputs");
    assert!(
        failures.is_empty(),
        "failing inputs:\n{}",
        failures.join("\n")
    );
}
