//! The purpose-built test filters (`tests/filters/`, built to `.wasm` by `tests/build.rs`)
//! driven through the harness. Together they call every host function and callback the
//! proxy-wasm Rust SDK exposes, including the error statuses, and each test asserts what
//! the filter observed and what it changed.
//!
//! One module per filter, named after it.

mod bodies;
mod headers;
mod http_call;
mod lifecycle;
mod local_response;
mod metrics;
mod properties;
mod queues;
mod shared_data;
mod ticks;

use wasmgate_harness::{Error, Filter, Harness};

/// What every test returns.
pub type TestResult = Result<(), Error>;

/// Starts test filter `name` with the plugin configuration `config`.
pub fn start(name: &str, config: &str) -> Result<Filter, Error> {
    Harness::load(wasmgate_tests::wasm(name))?
        .plugin_config(config)
        .start()
}

/// A GET request's headers for `path`.
pub fn get(path: &str) -> Vec<(String, String)> {
    [
        (":method", "GET"),
        (":path", path),
        (":authority", "example.test"),
        (":scheme", "http"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}
