//! The runtime API itself (`wasmgate-abi`), as the gateway uses it: ABI version detection,
//! the on-disk module cache, and instances driven from several threads at once.

use std::sync::Arc;
use std::thread;

use wasmgate_abi::{
    AbiVersion, Action, Plugin, PluginSpec, Runtime, RuntimeConfig, Stream, Vm, WasmSource,
};
use wasmgate_tests::{wasm, wat};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn spec(name: &str, path: std::path::PathBuf, config: &str) -> PluginSpec {
    let mut spec = PluginSpec::new(name, WasmSource::File(path));
    spec.plugin_config = config.as_bytes().to_vec();
    spec
}

/// One request through `vm`: returns the action and the `x-api-key` the filter set.
fn request(vm: &mut Vm, n: usize) -> Result<(Action, Option<String>), wasmgate_abi::Fault> {
    let mut stream = Stream::new();
    stream.request_headers.add(":method", "GET");
    stream.request_headers.add(":path", format!("/{n}"));
    vm.create_stream(&mut stream)?;
    let action = vm.on_request_headers(&mut stream, true)?;
    let key = stream
        .request_headers
        .get_str("x-api-key")
        .map(str::to_string);
    vm.on_log(&mut stream)?;
    vm.finish_stream(&mut stream)?;
    Ok((action, key))
}

#[test]
fn the_abi_version_comes_from_the_marker_export() -> TestResult {
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let v021 = runtime.load(spec("minimal", wat("minimal"), ""))?;
    assert!(matches!(v021.abi_version(), AbiVersion::V0_2_1));
    let v020 = runtime.load(spec("abi_0_2_0", wat("abi_0_2_0"), ""))?;
    assert!(matches!(v020.abi_version(), AbiVersion::V0_2_0));
    let sdk = runtime.load(spec(
        "secret_header",
        wasm("secret_header"),
        r#"{"set":{"headers":["x-api-key:k"]}}"#,
    ))?;
    assert!(matches!(sdk.abi_version(), AbiVersion::V0_2_1));
    Ok(())
}

#[test]
fn compiled_modules_are_cached_on_disk() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cache = dir.path().join("module-cache");
    let config = RuntimeConfig {
        cache_dir: Some(cache.clone()),
        ..RuntimeConfig::default()
    };
    let filter = r#"{"set":{"headers":["x-api-key:k"]}}"#;

    let first = Runtime::new(config.clone())?;
    first.load(spec("cached", wasm("secret_header"), filter))?;
    assert_eq!(
        compiled_files(&cache),
        1,
        "one precompiled module in {}",
        cache.display()
    );

    // A second runtime (a restart) loads from the same cache and the module still works.
    let second = Runtime::new(config)?;
    let plugin = second.load(spec("cached", wasm("secret_header"), filter))?;
    assert_eq!(
        compiled_files(&cache),
        1,
        "the same module was cached twice"
    );
    let (action, key) = request(&mut plugin.instantiate()?, 0)?;
    assert_eq!(action, Action::Continue);
    assert_eq!(key.as_deref(), Some("k"));
    Ok(())
}

/// Precompiled modules (`*.cwasm`) under `dir`, at any depth.
fn compiled_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                compiled_files(&path)
            } else {
                usize::from(path.extension().is_some_and(|x| x == "cwasm"))
            }
        })
        .sum()
}

#[test]
fn one_instance_per_thread_like_gateway_workers() -> TestResult {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}
    assert_send_sync::<Runtime>();
    assert_send_sync::<Plugin>();
    assert_send::<Vm>();

    let runtime = Runtime::new(RuntimeConfig::default())?;
    let plugin = runtime.load(spec(
        "workers",
        wasm("secret_header"),
        r#"{"set":{"headers":["x-api-key:worker-key"]}}"#,
    ))?;
    let plugin = Arc::new(plugin);
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let plugin = plugin.clone();
            thread::spawn(move || -> Result<usize, String> {
                let mut vm = plugin.instantiate().map_err(|e| e.to_string())?;
                for n in 0..200 {
                    let (action, key) =
                        request(&mut vm, w * 1000 + n).map_err(|e| e.to_string())?;
                    assert_eq!(action, Action::Continue);
                    assert_eq!(key.as_deref(), Some("worker-key"));
                }
                Ok(200)
            })
        })
        .collect();
    let mut served = 0;
    for worker in workers {
        served += worker.join().expect("worker thread panicked")?;
    }
    assert_eq!(served, 800);
    Ok(())
}

#[test]
fn a_broken_instance_refuses_further_calls() -> TestResult {
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let plugin = runtime.load(spec("invalid_action", wat("invalid_action"), ""))?;
    let mut vm = plugin.instantiate()?;
    let mut stream = Stream::new();
    stream.request_headers.add(":path", "/");
    vm.create_stream(&mut stream)?;
    assert!(vm.on_request_headers(&mut stream, true).is_err());
    assert!(vm.is_broken());
    // Every later call fails fast instead of running guest code in a broken instance.
    let mut next = Stream::new();
    let err = vm
        .create_stream(&mut next)
        .expect_err("the instance is broken");
    assert!(
        matches!(err.kind, wasmgate_abi::FaultKind::Broken),
        "{err:?}"
    );
    // A fresh instance of the same plugin works.
    let mut fresh = plugin.instantiate()?;
    let mut stream = Stream::new();
    fresh.create_stream(&mut stream)?;
    assert_eq!(
        fresh.on_response_headers(&mut stream, true)?,
        Action::Continue
    );
    Ok(())
}
