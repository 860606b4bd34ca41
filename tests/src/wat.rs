//! Paths of the hand-written WebAssembly text modules in `tests/fixtures/wat/` (hostile
//! and edge-case guests the Rust SDK cannot produce). The runtime reads `.wat` directly.

use std::path::PathBuf;

/// Path of `tests/fixtures/wat/<name>.wat`, e.g. `wat("invalid_action")`. Panics with a
/// clear message if it does not exist.
pub fn wat(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("wat")
        .join(format!("{name}.wat"));
    assert!(
        path.exists(),
        "wat fixture {} does not exist",
        path.display()
    );
    path
}
