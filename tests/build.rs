//! Builds every `.wasm` the integration tests load, from source, for `wasm32-wasip1`:
//! the product filter (`secret_header.wasm`) and the purpose-built test filters in
//! `tests/filters/`, the AssemblyScript one (`as_headers.wasm`) with the compiler
//! `.ci/setup` installs from npm. Their directory is exported to the tests as `WASM_DIR`.
//!
//! The nested cargo uses its own target directory so it never waits on the lock
//! of the cargo that runs this script.

use std::{env, path::PathBuf, process::Command};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    let target_dir = root.join("target").join("wasm-fixtures");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());

    let builds: [(&str, PathBuf); 2] = [
        ("secret-header", root.join("Cargo.toml")),
        ("", manifest.join("filters").join("Cargo.toml")),
    ];
    for (package, manifest_path) in builds {
        if !manifest_path.exists() {
            continue;
        }
        let mut cmd = Command::new(&cargo);
        cmd.arg("build")
            .arg("--release")
            .arg("--target=wasm32-wasip1")
            .arg("--manifest-path")
            .arg(&manifest_path)
            .arg("--target-dir")
            .arg(&target_dir);
        if package.is_empty() {
            cmd.arg("--workspace");
        } else {
            cmd.arg("-p").arg(package);
        }
        // Flags meant for the host build must not leak into the wasm build.
        cmd.env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET");
        let status = cmd
            .status()
            .expect("failed to run cargo for the wasm fixtures");
        assert!(
            status.success(),
            "building wasm fixtures from {} failed",
            manifest_path.display()
        );
    }

    let wasm_dir = target_dir.join("wasm32-wasip1").join("release");
    println!("cargo:rustc-env=WASM_DIR={}", wasm_dir.display());
    build_assemblyscript(&manifest.join("filters").join("assemblyscript"), &wasm_dir);
    for dir in [
        "filter/src",
        "filter/Cargo.toml",
        "tests/filters",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
}

/// Compiles `tests/filters/assemblyscript` to `as_headers.wasm` in `out` with its pinned
/// AssemblyScript compiler. Without it (no `.ci/setup` run, or no node) this only warns;
/// the tests that load the module then say it was not built.
fn build_assemblyscript(dir: &std::path::Path, out: &std::path::Path) {
    let asc = dir.join("node_modules").join(".bin").join("asc");
    if !asc.exists() {
        println!(
            "cargo:warning=as_headers.wasm not built: {} is missing (run .ci/setup)",
            asc.display()
        );
        return;
    }
    let status = Command::new(&asc)
        .current_dir(dir)
        .arg("assembly/index.ts")
        .arg("-b")
        .arg(out.join("as_headers.wasm"))
        .args(["--use", "abort=abort_proc_exit", "--optimize"])
        .status()
        .expect("failed to run the AssemblyScript compiler");
    assert!(status.success(), "building as_headers.wasm failed");
}
