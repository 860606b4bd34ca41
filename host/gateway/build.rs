//! Builds `secret_header.wasm` (crate `secret-header`, target
//! `wasm32-wasip1`) so the binary can embed it for its demo. The nested
//! cargo uses its own target directory (`target/wasm-demo`) so it never
//! waits on the lock of the cargo running this script.
//!
//! If the build fails (no wasm32-wasip1 target installed), the gateway still
//! builds; its demo then says how to install the target.

use std::{env, path::PathBuf, process::Command};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest
        .parent()
        .and_then(|p| p.parent())
        .expect("host/gateway is two levels down")
        .to_path_buf();
    let target_dir = root.join("target").join("wasm-demo");
    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo")).join("secret_header.wasm");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target=wasm32-wasip1",
            "-p",
            "secret-header",
            "--manifest-path",
        ])
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status();
    let built = target_dir
        .join("wasm32-wasip1")
        .join("release")
        .join("secret_header.wasm");
    let copied = match status {
        Ok(s) if s.success() => std::fs::copy(&built, &out).is_ok(),
        _ => false,
    };
    if !copied {
        println!(
            "cargo:warning=secret_header.wasm was not built; the demo will not run (rustup target add wasm32-wasip1)"
        );
        std::fs::write(&out, b"").expect("OUT_DIR is writable");
    }
    for path in [
        "filter/src",
        "filter/Cargo.toml",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
}
