//! The `wasmgate` binary. (skeleton)
fn main() {}
