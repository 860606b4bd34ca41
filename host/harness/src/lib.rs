//! wasmgate-harness: unit-test proxy-wasm filters. (skeleton; being written)
