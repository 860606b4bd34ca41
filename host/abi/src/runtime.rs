//! [`Runtime`]: the wasmtime engine (epoch interruption, on-disk module cache), the linker with
//! every proxy-wasm and WASI import, the epoch ticker thread, and the process-wide shared
//! data and queues.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Engine, Linker, Module};

use crate::cache::ModuleCache;
use crate::deadline::Deadline;
use crate::error::LoadError;
use crate::modules::Modules;
use crate::plugin::{Plugin, PluginSpec};
use crate::shared::{SetOutcome, SharedState};
use crate::state::HostState;

/// Engine-wide settings.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// On-disk cache of precompiled modules (own serialize, see `cache`); None = memory only.
    /// The directory must be trusted: cached artifacts are machine code.
    pub cache_dir: Option<PathBuf>,
    /// How often the epoch ticker thread bumps the engine epoch (deadline granularity). Default 5 ms.
    pub epoch_interval: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            epoch_interval: Duration::from_millis(5),
        }
    }
}

/// wasmtime Engine + Linker + epoch ticker + process-wide shared data/queues. Cheap to clone (Arc).
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<RuntimeInner>,
}

pub(crate) struct RuntimeInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) cache: Option<ModuleCache>,
    /// Compiled modules by the SHA-256 of their bytes, shared by every plugin of the same bytes.
    pub(crate) modules: Modules,
    pub(crate) shared: Arc<SharedState>,
    pub(crate) config: RuntimeConfig,
    /// Calls a stream's last three callbacks in one entry (`crate::vm::end`).
    pub(crate) sequencer: Module,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds the engine and linker and starts the epoch ticker.
    ///
    /// # Errors
    ///
    /// [`LoadError::Engine`] when the cache directory cannot be created or wasmtime refuses
    /// the configuration.
    pub fn new(config: RuntimeConfig) -> Result<Runtime, LoadError> {
        let engine_err =
            |what: &str, e: &dyn std::fmt::Display| LoadError::Engine(format!("{what}: {e}"));
        let mut wasm = wasmtime::Config::new();
        // The per-callback CPU deadline: the ticker bumps the epoch, stores trap at their deadline.
        wasm.epoch_interruption(true);
        // `WASMGATE_PERFMAP=1`: write /tmp/perf-PID.map so `perf report` names the guest's
        // functions (a filter built with its name section, i.e. not stripped).
        if std::env::var_os("WASMGATE_PERFMAP").is_some_and(|v| v == "1") {
            wasm.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        // Compile on the loading thread: a pool of compiler threads would keep its stacks and
        // allocator heaps (the compiler's transient tens of MB) for the life of the process,
        // for a one-time saving at load (the module cache makes restarts skip compilation).
        wasm.parallel_compilation(false);
        let engine = Engine::new(&wasm).map_err(|e| engine_err("engine", &e))?;
        let cache = match &config.cache_dir {
            Some(dir) => Some(ModuleCache::new(dir, &engine).map_err(|e| {
                engine_err(&format!("module cache directory {}", dir.display()), &e)
            })?),
            None => None,
        };
        let sequencer = crate::vm::compile_sequencer(&engine)
            .map_err(|e| engine_err("compiling the callback sequencer", &e))?;
        let mut linker = Linker::new(&engine);
        // Both WASI module names, as Envoy's host links them: AssemblyScript still imports
        // `wasi_unstable`, Rust, Go and TinyGo `wasi_snapshot_preview1`.
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut HostState| &mut s.wasi)
            .map_err(|e| engine_err("linking WASI", &e))?;
        wasmtime_wasi::p0::add_to_linker_sync(&mut linker, |s: &mut HostState| &mut s.wasi)
            .map_err(|e| engine_err("linking WASI (wasi_unstable)", &e))?;
        crate::exports::add_to_linker(&mut linker)
            .map_err(|e| engine_err("linking proxy-wasm", &e))?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(engine.clone(), config.epoch_interval, ticker_stop.clone())
            .map_err(|e| engine_err("starting the epoch ticker thread", &e))?;
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                cache,
                modules: Modules::default(),
                shared: Arc::new(SharedState::default()),
                config,
                sequencer,
                ticker_stop,
            }),
        })
    }

    /// Compile (or load from cache), then instantiate once and run _initialize, root context create,
    /// on_vm_start(vm_config) and on_configure(plugin_config) to validate. Errors name module + reason.
    ///
    /// # Errors
    ///
    /// Any [`LoadError`] variant; each names the plugin, the module and the reason.
    pub fn load(&self, spec: PluginSpec) -> Result<Plugin, LoadError> {
        Plugin::load(self.clone(), spec)
    }

    /// The configuration this runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Reads shared data as a filter in `vm_id` would: value and CAS token.
    pub fn shared_data(&self, vm_id: &str, key: &str) -> Option<(Vec<u8>, u32)> {
        self.inner.shared.get(vm_id, key)
    }

    /// Writes shared data unconditionally, as an operator seeding values for filters of `vm_id`.
    /// Returns false when the scope is full.
    pub fn set_shared_data(&self, vm_id: &str, key: &str, value: &[u8]) -> bool {
        self.inner.shared.set(vm_id, key, value, 0) == SetOutcome::Ok
    }

    /// The deadline windows for a callback deadline: half of it each, in whole epoch ticks
    /// (at least one), see `crate::deadline`.
    pub(crate) fn deadline_for(&self, deadline: Duration) -> Deadline {
        let interval = self
            .inner
            .config
            .epoch_interval
            .max(Duration::from_nanos(1));
        let half = deadline / 2;
        let ticks = (half.as_nanos().div_ceil(interval.as_nanos()) as u64).max(1);
        Deadline::new(ticks, half.max(interval))
    }
}

fn spawn_ticker(engine: Engine, interval: Duration, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let interval = interval.max(Duration::from_micros(100));
    std::thread::Builder::new()
        .name("wasmgate-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(interval);
                engine.increment_epoch();
            }
        })
        .map(|_| ())
}
