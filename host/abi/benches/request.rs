//! Per-request cost of `secret_header.wasm` on the runtime: create the stream context,
//! `on_request_headers`, `on_response_headers`, and `end_stream` (on_log + on_done +
//! on_delete), on one warm Vm, as a gateway worker runs it.
//!
//! `cargo bench -p wasmgate-abi --bench request`
//!
//! The module is `target/wasm32-wasip1/release/secret_header.wasm`; the bench builds it with
//! `cargo build --release --target wasm32-wasip1 -p secret-header` when it is missing
//! (override the path with `SECRET_HEADER_WASM`).
//!
//! `request_sign` and `request_verify_signature` are the same request through the filter's
//! `sign` (bodiless, four derived components) and `verify_signature` (of that request).
//!
//! Three figures: `request` reuses one stream (warm, steady state: the runtime's and the
//! filter's cost), `request_with_maps` also builds the two header maps from a template and
//! drops them (an embedder's cost), `request_noop_module` runs the same six calls into a
//! module with empty callbacks (the runtime's floor). Each is measured twice: in wall time,
//! and as `cpu/...` in the thread's CPU time, which a busy machine does not inflate.

use std::path::PathBuf;
use std::process::Command;

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, criterion_group, criterion_main};
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
    let mut s = Stream::new();
    s.request_headers = template.request_headers.clone();
    s.response_headers = template.response_headers.clone();
    s
}

fn bench<M: Measurement + 'static>(c: &mut Criterion<M>, prefix: &str) {
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

    let run = |vm: &mut wasmgate_abi::Vm, s: &mut Stream| {
        vm.create_stream(s).unwrap();
        vm.on_request_headers(s, true).unwrap();
        vm.on_response_headers(s, false).unwrap();
        vm.end_stream(s).unwrap();
    };
    // Steady state: one stream reused; undoing the filter's edit (removing the injected
    // header, no allocation) is the only extra work per iteration.
    let mut s = fresh(&template);
    c.bench_function(&format!("{prefix}request"), |b| {
        b.iter(|| {
            run(&mut vm, &mut s);
            s.request_headers.remove("authorization");
        })
    });
    // Plus building the two header maps from a template and dropping them, as an embedder does.
    c.bench_function(&format!("{prefix}request_with_maps"), |b| {
        b.iter(|| {
            let mut s = fresh(&template);
            run(&mut vm, &mut s);
            s
        })
    });

    signatures(c, prefix, &runtime, &template, &run);

    // The runtime's own floor: the same six guest calls into a module whose callbacks are empty.
    let noop = PluginSpec::new(
        "noop",
        WasmSource::Bytes {
            name: "noop.wat".into(),
            bytes: NOOP_WAT.as_bytes().into(),
        },
    );
    let plugin = runtime.load(noop).expect("load noop");
    let mut noop_vm = plugin.instantiate().expect("noop vm");
    let mut s = fresh(&template);
    c.bench_function(&format!("{prefix}request_noop_module"), |b| {
        b.iter(|| run(&mut noop_vm, &mut s))
    });
}

/// `sign` (bodiless, four derived components) and `verify_signature` (the same request,
/// `strip: false` so one stream can be reused), each a whole request as [`bench`]'s `request`.
fn signatures<M: Measurement + 'static>(
    c: &mut Criterion<M>,
    prefix: &str,
    runtime: &Runtime,
    template: &Stream,
    run: &impl Fn(&mut wasmgate_abi::Vm, &mut Stream),
) {
    const KEY: &str = "bench-signing-key-0123456789abcdef";
    let load = |name: &str, config: String| {
        let mut spec = PluginSpec::new(name, WasmSource::File(wasm_path()));
        spec.plugin_config = config.into_bytes();
        runtime
            .load(spec)
            .expect("load secret_header.wasm")
            .instantiate()
            .expect("instantiate")
    };
    let mut signer = load(
        "sign",
        format!(
            r#"{{"sign": {{"key_id": "gw-1", "key": "{KEY}", "components": ["@method", "@authority", "@path", "@query"]}}}}"#
        ),
    );
    let mut verifier = load(
        "verify_signature",
        format!(
            r#"{{"verify_signature": {{"keys": {{"gw-1": "{KEY}"}}, "max_age": "1h", "strip": false}}}}"#
        ),
    );

    // Steady state: `sign` replaces its own previous fields on the reused stream.
    let mut s = fresh(template);
    run(&mut signer, &mut s);
    assert!(s.request_headers.get("signature").is_some(), "signed");
    c.bench_function(&format!("{prefix}request_sign"), |b| {
        b.iter(|| run(&mut signer, &mut s))
    });

    // The stream signed above, verified again and again (not stripped).
    let mut signed = s;
    verifier.create_stream(&mut signed).unwrap();
    assert_eq!(
        verifier.on_request_headers(&mut signed, true).unwrap(),
        Action::Continue,
        "verified"
    );
    assert!(signed.local_response().is_none(), "verified");
    verifier.finish_stream(&mut signed).unwrap();
    c.bench_function(&format!("{prefix}request_verify_signature"), |b| {
        b.iter(|| run(&mut verifier, &mut signed))
    });
    assert!(signed.local_response().is_none(), "still verified");
}

const NOOP_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32)))"#;

/// CPU time of the benchmark thread (`CLOCK_THREAD_CPUTIME_ID`), so a figure taken on a busy
/// shared machine is not inflated by time spent waiting for a core.
struct CpuTime;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = Duration;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> Duration {
        Duration::from_nanos(thread_cpu_ns().saturating_sub(start))
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

fn wall(c: &mut Criterion) {
    bench(c, "");
}

fn cpu(c: &mut Criterion<CpuTime>) {
    bench(c, "cpu/");
}

criterion_group!(wall_time, wall);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(CpuTime);
    targets = cpu
}
criterion_main!(wall_time, cpu_time);
