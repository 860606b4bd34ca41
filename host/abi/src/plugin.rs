//! [`PluginSpec`] (what to load and how), [`Plugin`] (a compiled, validated module ready to
//! instantiate) and load-time validation of the module's exports.

use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::{ExternType, Module, ValType};

use crate::deadline::Deadline;
use crate::error::LoadError;
use crate::limits::Limits;
use crate::metrics::{MetricSample, MetricsRegistry};
use crate::modules::Compiled;
use crate::runtime::Runtime;
use crate::shared::SharedState;
use crate::vm::Vm;

/// Where the module's bytes come from.
#[derive(Clone, Debug)]
pub enum WasmSource {
    /// A `.wasm` file on disk.
    File(PathBuf),
    /// Bytes already in memory; `name` identifies them in errors and logs.
    Bytes {
        /// Name used in errors, e.g. the original file name.
        name: String,
        /// The module bytes (binary wasm or, for tests, WAT text).
        bytes: Arc<[u8]>,
    },
}

impl WasmSource {
    /// How errors name the module: the file path or the bytes' name.
    pub fn describe(&self) -> String {
        match self {
            WasmSource::File(p) => p.display().to_string(),
            WasmSource::Bytes { name, .. } => name.clone(),
        }
    }
}

/// Everything needed to load one plugin.
#[derive(Clone, Debug)]
pub struct PluginSpec {
    /// Human name for logs/errors/metrics, e.g. "api/0"; never a secret.
    pub name: String,
    /// The module.
    pub wasm: WasmSource,
    /// PLUGIN_CONFIGURATION buffer (on_configure).
    pub plugin_config: Vec<u8>,
    /// VM_CONFIGURATION buffer (on_vm_start).
    pub vm_config: Vec<u8>,
    /// Property `plugin_root_id`.
    pub root_id: String,
    /// Property `plugin_vm_id`; scope of shared data / queues.
    pub vm_id: String,
    /// Exactly the WASI environment the module sees.
    pub env: Vec<(String, String)>,
    /// Names `proxy_http_call` may target; others -> BadArgument.
    pub upstreams: Vec<String>,
    /// Memory, CPU and size limits.
    pub limits: Limits,
}

impl PluginSpec {
    /// A spec with empty configuration, no environment, no upstreams and default limits.
    pub fn new(name: impl Into<String>, wasm: WasmSource) -> Self {
        Self {
            name: name.into(),
            wasm,
            plugin_config: Vec::new(),
            vm_config: Vec::new(),
            root_id: String::new(),
            vm_id: String::new(),
            env: Vec::new(),
            upstreams: Vec::new(),
            limits: Limits::default(),
        }
    }
}

/// ABI version the module declared with its marker export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbiVersion {
    /// `proxy_abi_version_0_2_0`
    V0_2_0,
    /// `proxy_abi_version_0_2_1`
    V0_2_1,
}

/// Plugin-wide data every Vm's host functions reach.
pub(crate) struct PluginShared {
    pub(crate) name: Arc<str>,
    pub(crate) module: String,
    pub(crate) spec: PluginSpec,
    pub(crate) metrics: MetricsRegistry,
    pub(crate) shared: Arc<SharedState>,
}

/// A loaded, configured plugin: the compiled module (InstancePre) + spec. Cheap to clone; Send + Sync.
#[derive(Clone)]
pub struct Plugin {
    pub(crate) inner: Arc<PluginInner>,
}

pub(crate) struct PluginInner {
    pub(crate) runtime: Runtime,
    pub(crate) shared: Arc<PluginShared>,
    /// The module, shared with every plugin of the same bytes (`crate::modules`).
    pub(crate) compiled: Arc<Compiled>,
    pub(crate) deadline: Deadline,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name())
            .field("module", &self.inner.shared.module)
            .field("abi", &self.inner.compiled.abi)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    pub(crate) fn load(runtime: Runtime, spec: PluginSpec) -> Result<Plugin, LoadError> {
        let plugin = spec.name.clone();
        let module_name = spec.wasm.describe();
        let file;
        let bytes: &[u8] = match &spec.wasm {
            WasmSource::File(path) => {
                file = std::fs::read(path).map_err(|source| LoadError::Read {
                    plugin: plugin.clone(),
                    module: module_name.clone(),
                    source,
                })?;
                &file
            }
            WasmSource::Bytes { bytes, .. } => bytes,
        };
        // The same bytes on many routes (or again after a reload): compiled, linked and
        // mapped once.
        let digest = crate::modules::digest(bytes);
        let compiled = runtime.inner.modules.get_or_build(digest, || {
            let engine = &runtime.inner.engine;
            let compiled = match &runtime.inner.cache {
                Some(cache) => cache.load_or_compile(engine, bytes, &digest),
                None => Module::new(engine, bytes),
            };
            let module = compiled.map_err(|e| LoadError::Compile {
                plugin: plugin.clone(),
                module: module_name.clone(),
                reason: format!("{e:#}"),
            })?;
            let (abi, allocator) = validate_exports(&module, &plugin, &module_name)?;
            let pre =
                runtime
                    .inner
                    .linker
                    .instantiate_pre(&module)
                    .map_err(|e| LoadError::Link {
                        plugin: plugin.clone(),
                        module: module_name.clone(),
                        reason: format!("{e:#}"),
                    })?;
            Ok(Compiled {
                pre,
                abi,
                allocator,
            })
        })?;
        let deadline = runtime.deadline_for(spec.limits.callback_deadline);
        let shared = Arc::new(PluginShared {
            name: Arc::from(spec.name.as_str()),
            module: module_name,
            metrics: MetricsRegistry::default(),
            shared: runtime.inner.shared.clone(),
            spec,
        });
        let plugin = Plugin {
            inner: Arc::new(PluginInner {
                runtime,
                shared,
                compiled,
                deadline,
            }),
        };
        // Validate by starting it once: _initialize, root context, on_vm_start, on_configure.
        plugin.instantiate()?;
        Ok(plugin)
    }

    /// The plugin's name ([`PluginSpec::name`]).
    pub fn name(&self) -> &str {
        &self.inner.shared.spec.name
    }

    /// The spec it was loaded from.
    pub fn spec(&self) -> &PluginSpec {
        &self.inner.shared.spec
    }

    /// The ABI version the module declared.
    pub fn abi_version(&self) -> AbiVersion {
        self.inner.compiled.abi
    }

    /// The runtime that loaded it.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// A fresh VM: instantiate, _initialize, create root context, on_vm_start, on_configure.
    ///
    /// # Errors
    ///
    /// [`LoadError`] naming the plugin, module and the failing step.
    pub fn instantiate(&self) -> Result<Vm, LoadError> {
        Vm::new(self.clone(), false)
    }

    /// Like [`Plugin::instantiate`], with log capture on from the first instruction, so
    /// [`Vm::take_logs`] also returns what the guest logged while starting (the harness).
    ///
    /// # Errors
    ///
    /// As [`Plugin::instantiate`].
    pub fn instantiate_capturing(&self) -> Result<Vm, LoadError> {
        Vm::new(self.clone(), true)
    }

    /// Metrics the filter defined (proxy_define_metric), shared by all of this plugin's Vms.
    pub fn metrics(&self) -> Vec<MetricSample> {
        self.inner.shared.metrics.samples()
    }
}

/// Checks the exports the ABI needs: `memory`, an ABI marker and an allocator.
fn validate_exports(
    module: &Module,
    plugin: &str,
    module_name: &str,
) -> Result<(AbiVersion, &'static str), LoadError> {
    let mut has_memory = false;
    let mut markers = Vec::new();
    let mut allocator = None;
    for export in module.exports() {
        let name = export.name();
        match export.ty() {
            ExternType::Memory(_) if name == "memory" => has_memory = true,
            ExternType::Func(f) => {
                if name.starts_with("proxy_abi_version_") {
                    markers.push(name.to_string());
                }
                let is_alloc_type = f.params().len() == 1
                    && matches!(f.params().next(), Some(ValType::I32))
                    && f.results().len() == 1
                    && matches!(f.results().next(), Some(ValType::I32));
                if is_alloc_type {
                    match name {
                        "proxy_on_memory_allocate" => allocator = Some("proxy_on_memory_allocate"),
                        "malloc" if allocator.is_none() => allocator = Some("malloc"),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if !has_memory {
        return Err(LoadError::MissingMemory {
            plugin: plugin.to_string(),
            module: module_name.to_string(),
        });
    }
    let abi = if markers.iter().any(|m| m == "proxy_abi_version_0_2_1") {
        AbiVersion::V0_2_1
    } else if markers.iter().any(|m| m == "proxy_abi_version_0_2_0") {
        AbiVersion::V0_2_0
    } else {
        return Err(LoadError::UnsupportedAbi {
            plugin: plugin.to_string(),
            module: module_name.to_string(),
            found: if markers.is_empty() {
                "none".to_string()
            } else {
                markers.join(", ")
            },
        });
    };
    let Some(allocator) = allocator else {
        return Err(LoadError::MissingAllocator {
            plugin: plugin.to_string(),
            module: module_name.to_string(),
        });
    };
    Ok((abi, allocator))
}
