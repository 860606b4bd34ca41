//! Helpers for the unit tests: load small WAT modules on a shared runtime.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::{LoadError, Plugin, PluginSpec, Runtime, RuntimeConfig, WasmSource};

/// One runtime for all unit tests (one epoch ticker thread).
pub(crate) fn runtime() -> Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        Runtime::new(RuntimeConfig {
            cache_dir: None,
            epoch_interval: Duration::from_millis(2),
        })
        .expect("runtime")
    })
    .clone()
}

/// Standard exports of a minimal proxy-wasm module: memory, ABI marker, a bump allocator
/// starting at 4096, and an empty `proxy_on_context_create`.
pub(crate) const PRELUDE: &str = r#"
  (memory (export "memory") 1)
  (global $bump (mut i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (global.get $bump) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
"#;

/// A spec for WAT text `module` (imports first, then `body` after the prelude).
pub(crate) fn spec(name: &str, imports: &str, body: &str) -> PluginSpec {
    let wat = format!("(module {imports} {PRELUDE} {body})");
    PluginSpec::new(
        name,
        WasmSource::Bytes {
            name: format!("{name}.wat"),
            bytes: Arc::from(wat.into_bytes()),
        },
    )
}

/// A spec for a complete WAT module.
pub(crate) fn raw_spec(name: &str, wat: &str) -> PluginSpec {
    PluginSpec::new(
        name,
        WasmSource::Bytes {
            name: format!("{name}.wat"),
            bytes: Arc::from(wat.as_bytes().to_vec()),
        },
    )
}

pub(crate) fn load(spec: PluginSpec) -> Result<Plugin, LoadError> {
    runtime().load(spec)
}
