//! The switch for the hand-written HTTP/1.1 paths (the lean server loop,
//! `listener/h1.rs`, and the lean upstream client, `upstream/h1.rs`).
//!
//! They serve the commonest exchanges with less work than hyper; hyper
//! serves everything else. `WASMGATE_LEAN_HTTP1=off` in the environment
//! turns both off for the whole process, so hyper serves every exchange:
//! the test suite runs both ways, and an operator who suspects the lean
//! paths can rule them out without a rebuild.

use std::sync::OnceLock;

/// Whether the lean HTTP/1.1 paths are on (read once per process).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        !matches!(
            std::env::var("WASMGATE_LEAN_HTTP1").as_deref(),
            Ok("off" | "0" | "false" | "no")
        )
    })
}
