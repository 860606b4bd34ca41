//! secret-header: a proxy-wasm filter that injects a shared secret header.
//! (skeleton; being written)
