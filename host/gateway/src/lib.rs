//! wasmgate: the gateway library. (skeleton; being written)
