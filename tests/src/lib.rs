//! Support code for the integration tests in `tests/tests/`: where the built
//! `.wasm` fixtures live, and helpers that start real servers on 127.0.0.1.
//!
//! # Layout
//! - [`wasm`]: paths of the `.wasm` files built by `build.rs` from source.

#![forbid(unsafe_code)]

use std::path::PathBuf;

/// Path of a `.wasm` built from source by `tests/build.rs`, e.g.
/// `wasm("secret_header")`. Panics with a clear message if it is missing.
pub fn wasm(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("WASM_DIR")).join(format!("{name}.wasm"));
    assert!(path.exists(), "wasm fixture {} was not built", path.display());
    path
}
