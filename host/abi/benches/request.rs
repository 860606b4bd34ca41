//! Per-request cost of `secret_header.wasm` on the runtime: create the stream context,
//! `on_request_headers`, `on_response_headers`, `on_log`, and `finish_stream` (on_done +
//! on_delete), on one warm Vm, as a gateway worker runs it.
//!
//! `cargo bench -p wasmgate-abi --bench request`
//!
//! The module is `target/wasm32-wasip1/release/secret_header.wasm`; the bench builds it with
//! `cargo build --release --target wasm32-wasip1 -p secret-header` when it is missing
//! (override the path with `SECRET_HEADER_WASM`).
//!
//! Two figures: `request` excludes building the header maps (the embedder's cost, done in
//! criterion's untimed setup), `request_with_maps` includes cloning them from a template.

use std::path::PathBuf;
use std::process::Command;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use wasmgate_abi::{Action, PluginSpec, Runtime, RuntimeConfig, Stream, WasmSource};

fn wasm_path() -> PathBuf {
    if let Some(p) = std::env::var_os("SECRET_HEADER_WASM") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = root.join("target/wasm32-wasip1/release/secret_header.wasm");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&root)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip1",
                "-p",
                "secret-header",
            ])
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .expect("run cargo to build secret_header.wasm");
        assert!(status.success(), "building secret_header.wasm failed");
    }
    path
}

/// A typical proxied request and its response, as the gateway hands them over.
fn template() -> Stream {
    let mut s = Stream::default();
    for (k, v) in [
        (":method", "GET"),
        (":path", "/api/v1/items?limit=10"),
        (":authority", "api.example.com"),
        (":scheme", "https"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        ("x-forwarded-for", "10.0.0.1"),
    ] {
        s.request_headers.add(k, v);
    }
    for (k, v) in [
        (":status", "200"),
        ("content-type", "application/json"),
        ("content-length", "42"),
    ] {
        s.response_headers.add(k, v);
    }
    s
}

fn fresh(template: &Stream) -> Stream {
    Stream {
        request_headers: template.request_headers.clone(),
        response_headers: template.response_headers.clone(),
        ..Stream::default()
    }
}

fn bench(c: &mut Criterion) {
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let mut spec = PluginSpec::new("bench", WasmSource::File(wasm_path()));
    spec.plugin_config =
        br#"{"set": {"headers": ["authorization:Bearer bench-token"]}, "remove": {"headers": ["x-debug"]}}"#
            .to_vec();
    let plugin = runtime.load(spec).expect("load secret_header.wasm");
    let mut vm = plugin.instantiate().expect("instantiate");
    let template = template();

    // Sanity: the filter really injects the header.
    let mut s = fresh(&template);
    vm.create_stream(&mut s).unwrap();
    assert_eq!(
        vm.on_request_headers(&mut s, true).unwrap(),
        Action::Continue
    );
    assert_eq!(
        s.request_headers.get("authorization"),
        Some(&b"Bearer bench-token"[..])
    );
    vm.finish_stream(&mut s).unwrap();

    let run = |vm: &mut wasmgate_abi::Vm, mut s: Stream| {
        vm.create_stream(&mut s).unwrap();
        vm.on_request_headers(&mut s, true).unwrap();
        vm.on_response_headers(&mut s, false).unwrap();
        vm.on_log(&mut s).unwrap();
        vm.finish_stream(&mut s).unwrap();
        s
    };
    c.bench_function("request", |b| {
        b.iter_batched(
            || fresh(&template),
            |s| run(&mut vm, s),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("request_with_maps", |b| {
        b.iter(|| run(&mut vm, fresh(&template)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
