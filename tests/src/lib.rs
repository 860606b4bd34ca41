//! Support code for the integration tests in `tests/tests/`: where the built
//! `.wasm` fixtures live, and helpers that start real servers on 127.0.0.1.
//!
//! # Layout
//! - [`wasm`]: paths of the `.wasm` files built by `build.rs` from source.
//! - [`config`]: gateway configurations built rather than pasted (upstreams, routes, filters).
//! - [`backend`]: a real echo backend (HTTP/1.1 + h2c) that records what it received.
//! - [`envoy`]: a real Envoy started from the rendered `envoy-example/envoy.yaml`.
//! - [`endpoints`]: helpers for the tests of upstreams with several endpoints.
//! - [`diff`]: the differential suite (Envoy and wasmgate side by side): scenarios and runner.
//! - [`raw`]: a raw-socket backend that answers with scripted bytes and records what it received.
//! - [`serve`]: the accept loop, connection serving and client exchange the servers and clients share.
//! - [`record`]: shared logs (requests seen, child-process stderr) and readers of them.
//! - [`wat()`]: paths of the hand-written `.wat` modules in `fixtures/wat/`.

#![forbid(unsafe_code)]

pub mod backend;
pub mod config;
pub mod diff;
pub mod endpoints;
pub mod envoy;
pub mod gateway;
pub mod raw;
pub mod record;
pub mod serve;
pub mod tls;
pub mod tls_wire;
pub mod wat;
pub use wat::wat;

use std::path::PathBuf;

/// Path of a `.wasm` built from source by `tests/build.rs`, e.g.
/// `wasm("secret_header")`. Panics with a clear message if it is missing.
pub fn wasm(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("WASM_DIR")).join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "wasm fixture {} was not built",
        path.display()
    );
    path
}

/// The pseudo-headers of a `GET /` for authority `a`, then `extra`: a request for the harness and
/// the runtime's streams.
pub fn get_request(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    [(":method", "GET"), (":path", "/"), (":authority", "a")]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
