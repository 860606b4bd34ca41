//! [`Harness`]: the builder that describes a filter (module, configuration, environment,
//! upstreams, limits) and starts it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use wasmgate_abi::{Limits, LogLevel, PluginSpec, Properties, Runtime, RuntimeConfig, WasmSource};

use crate::error::{Error, Result};
use crate::filter::Filter;

/// Describes a proxy-wasm filter to test: its module, configuration, environment, the
/// upstreams it may call and its limits. [`Harness::start`] loads it on a real
/// `wasmgate-abi` runtime (the one the gateway uses) and returns a running [`Filter`].
///
/// Every setter consumes and returns the builder, so a test reads as one chain:
///
/// ```no_run
/// # fn main() -> Result<(), wasmgate_harness::Error> {
/// use wasmgate_harness::Harness;
/// let filter = Harness::load("target/wasm32-wasip1/release/my_filter.wasm")?
///     .plugin_config(r#"{"set":{"headers":["x-api-key:{vault://env/KEY}"]}}"#)
///     .env("KEY", "s3cr3t")
///     .upstream("auth")
///     .start()?;
/// # let _ = filter; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Harness {
    spec: PluginSpec,
    runtime: Option<Runtime>,
    properties: Properties,
    log_level: Option<LogLevel>,
}

impl Harness {
    /// A filter from a `.wasm` file (or a `.wat` text file: the runtime reads both).
    ///
    /// # Errors
    ///
    /// [`Error::Read`] when the file does not exist or cannot be read.
    pub fn load(path: impl AsRef<Path>) -> Result<Harness> {
        let path = path.as_ref();
        std::fs::metadata(path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        let name = path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        Ok(Harness::new(name, WasmSource::File(path.to_path_buf())))
    }

    /// A filter from module bytes (binary wasm or wasm text); `name` appears in errors and logs.
    pub fn from_bytes(name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Harness {
        let name = name.into();
        let bytes: Arc<[u8]> = bytes.into().into();
        Harness::new(name.clone(), WasmSource::Bytes { name, bytes })
    }

    fn new(name: String, wasm: WasmSource) -> Harness {
        let mut spec = PluginSpec::new(name, wasm);
        // A failing callback in a test should fail fast but not flakily on a loaded machine:
        // keep the runtime's default deadline unless the test sets one.
        spec.limits = Limits::default();
        Harness {
            spec,
            runtime: None,
            properties: Properties::new(),
            log_level: None,
        }
    }

    /// The plugin configuration the filter reads in `on_configure` (Envoy's `configuration`).
    pub fn plugin_config(mut self, config: impl AsRef<[u8]>) -> Self {
        self.spec.plugin_config = config.as_ref().to_vec();
        self
    }

    /// The VM configuration the filter reads in `on_vm_start` (Envoy's `vm_config.configuration`).
    pub fn vm_config(mut self, config: impl AsRef<[u8]>) -> Self {
        self.spec.vm_config = config.as_ref().to_vec();
        self
    }

    /// Adds an environment variable the module sees through WASI. The module sees exactly
    /// the variables given here, nothing from the test process.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.spec.env.push((name.into(), value.into()));
        self
    }

    /// Allows `proxy_http_call` to this upstream name; calls to any other name are refused
    /// with `BadArgument`, as Envoy refuses an unknown cluster.
    pub fn upstream(mut self, name: impl Into<String>) -> Self {
        self.spec.upstreams.push(name.into());
        self
    }

    /// The plugin name used in errors, logs and metrics, and seen as property `plugin_name`
    /// (default: the module's file stem or the name given to [`Harness::from_bytes`]).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.spec.name = name.into();
        self
    }

    /// The root id (property `plugin_root_id`).
    pub fn root_id(mut self, root_id: impl Into<String>) -> Self {
        self.spec.root_id = root_id.into();
        self
    }

    /// The VM id (property `plugin_vm_id`): the scope of shared data and queues.
    pub fn vm_id(mut self, vm_id: impl Into<String>) -> Self {
        self.spec.vm_id = vm_id.into();
        self
    }

    /// All limits at once (memory, per-callback deadline, buffer cap).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.spec.limits = limits;
        self
    }

    /// How long one callback may run before it fails with [`crate::FaultKind::Deadline`].
    pub fn callback_deadline(mut self, deadline: Duration) -> Self {
        self.spec.limits.callback_deadline = deadline;
        self
    }

    /// The linear-memory cap of each instance.
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.spec.limits.memory_bytes = bytes;
        self
    }

    /// A property every stream starts with, e.g. `("source.address", "10.0.0.1:5000")`.
    /// Values are raw bytes as Envoy encodes them: strings as is, integers as 8-byte
    /// little-endian (see [`crate::int_property`]).
    pub fn property(mut self, path: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        let path: String = path.into();
        self.properties.insert(path, value.as_ref());
        self
    }

    /// The log level the host reports to the filter (`proxy_get_log_level`) in its stream,
    /// tick and call callbacks. Every record is captured whatever the level; default Trace.
    /// During start-up (`on_vm_start`, `on_configure`) the host reports Trace.
    pub fn log_level(mut self, level: LogLevel) -> Self {
        self.log_level = Some(level);
        self
    }

    /// Runs the filter on this runtime instead of a new one. Filters on one runtime share
    /// shared data and queues (per VM id), like plugins in one Envoy process.
    pub fn runtime(mut self, runtime: &Runtime) -> Self {
        self.runtime = Some(runtime.clone());
        self
    }

    /// The plugin specification as it stands (for inspection or to hand to a gateway).
    pub fn spec(&self) -> &PluginSpec {
        &self.spec
    }

    /// Compiles the module, starts it (`_initialize`, root context, `on_vm_start`,
    /// `on_configure`) and returns the running filter.
    ///
    /// # Errors
    ///
    /// [`Error::Load`] when the module is invalid or refuses its configuration; the message
    /// names the module and the reason, quoting the filter's last error-level log line, and
    /// [`Error::startup_logs`] holds everything it logged while starting. On success, the
    /// start-up logs are in [`Filter::logs`].
    pub fn start(self) -> Result<Filter> {
        let runtime = match self.runtime {
            Some(runtime) => runtime,
            None => Runtime::new(RuntimeConfig::default())?,
        };
        let plugin = runtime.load(self.spec)?;
        Filter::new(runtime, plugin, self.properties, self.log_level)
    }
}
