//! wasmgate-abi: the proxy-wasm ABI runtime on wasmtime. (skeleton; being written)
