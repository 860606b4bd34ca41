//! Starting a [`Vm`]: instantiate, look up and type-check the callback exports, run the
//! module's initialisation (`_initialize` + `main`, or `_start`), create the root context and
//! run `proxy_on_vm_start` / `proxy_on_configure`. Any failure is a [`LoadError`] naming the
//! plugin, the module and the step.

use std::sync::Arc;

use wasmtime::{Instance, Store, TypedFunc, WasmParams, WasmResults};
use wasmtime_wasi::WasiCtxBuilder;

use super::end::Sequencer;
use super::{Callbacks, Core, ROOT_CONTEXT_ID, Vm};
use crate::error::{FaultKind, LoadError};
use crate::logs::{GuestStdio, LogLevel, LogSink};
use crate::metrics::MetricCache;
use crate::plugin::Plugin;
use crate::state::{HostState, MemoryLimiter, StreamSlot};

// === impl Vm: start-up ===

impl Vm {
    pub(crate) fn new(plugin: Plugin, capture: bool) -> Result<Vm, LoadError> {
        let inner = plugin.inner.clone();
        let shared = inner.shared.clone();
        let spec = &shared.spec;
        let logs = LogSink::new(shared.name.clone());
        logs.set_capture(capture);
        let sink = logs.clone();
        let start_err = |callback: &'static str, kind: FaultKind| LoadError::Start {
            plugin: spec.name.clone(),
            module: shared.module.clone(),
            callback,
            kind,
            logs: sink.take(),
        };

        let wasi = WasiCtxBuilder::new().envs(&spec.env).build_p1();
        let state = HostState {
            wasi,
            deadline: inner.deadline,
            limiter: MemoryLimiter {
                max_memory: spec.limits.memory_bytes,
                oom: false,
            },
            plugin: shared.clone(),
            stream: StreamSlot::default(),
            root_context_id: ROOT_CONTEXT_ID,
            next_context_id: ROOT_CONTEXT_ID + 1,
            effective_context: ROOT_CONTEXT_ID,
            alloc: None,
            memory: None,
            scratch: Vec::new(),
            http_calls: Vec::new(),
            stream_signals: Vec::new(),
            next_token: 1,
            http_response: None,
            tick_period: None,
            stdout: GuestStdio::new(logs.clone(), LogLevel::Info),
            stderr: GuestStdio::new(logs.clone(), LogLevel::Error),
            logs,
            log_level: None,
            root_properties: Default::default(),
            metrics: MetricCache::default(),
            queue_notify: Arc::default(),
            done_calls: 0,
            clock: None,
        };
        let mut store = Store::new(&inner.runtime.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(crate::deadline::on_epoch_deadline);
        store.set_epoch_deadline(inner.deadline.window_ticks);

        let instance = inner.compiled.pre.instantiate(&mut store).map_err(|e| {
            let reason = if store.data().limiter.oom {
                format!(
                    "initial memory exceeds the limit of {} bytes",
                    spec.limits.memory_bytes
                )
            } else {
                format!("{e:#}")
            };
            LoadError::Instantiate {
                plugin: spec.name.clone(),
                module: shared.module.clone(),
                reason,
            }
        })?;
        let memory =
            instance
                .get_memory(&mut store, "memory")
                .ok_or_else(|| LoadError::MissingMemory {
                    plugin: spec.name.clone(),
                    module: shared.module.clone(),
                })?;
        let alloc = instance
            .get_typed_func::<i32, i32>(&mut store, inner.compiled.allocator)
            .map_err(|_| LoadError::MissingAllocator {
                plugin: spec.name.clone(),
                module: shared.module.clone(),
            })?;
        store.data_mut().memory = Some(memory);
        store.data_mut().alloc = Some(alloc);

        let mut lookup = Lookup {
            instance: &instance,
            store: &mut store,
            plugin: &spec.name,
            module: &shared.module,
        };
        let mut cb = Callbacks {
            context_create: lookup.get("proxy_on_context_create")?,
            vm_start: lookup.get("proxy_on_vm_start")?,
            configure: lookup.get("proxy_on_configure")?,
            request_headers: lookup.get("proxy_on_request_headers")?,
            request_body: lookup.get("proxy_on_request_body")?,
            request_trailers: lookup.get("proxy_on_request_trailers")?,
            response_headers: lookup.get("proxy_on_response_headers")?,
            response_body: lookup.get("proxy_on_response_body")?,
            response_trailers: lookup.get("proxy_on_response_trailers")?,
            log: lookup.get("proxy_on_log")?,
            done: lookup.get("proxy_on_done")?,
            delete: lookup.get("proxy_on_delete")?,
            http_call_response: lookup.get("proxy_on_http_call_response")?,
            tick: lookup.get("proxy_on_tick")?,
            queue_ready: lookup.get("proxy_on_queue_ready")?,
            sequencer: None,
        };
        let initialize: Option<TypedFunc<(), ()>> = lookup.get("_initialize")?;
        let main: Option<TypedFunc<(i32, i32), i32>> = lookup.get("main")?;
        let main_void: Option<TypedFunc<(), i32>> = lookup.get("__main_void")?;
        let start: Option<TypedFunc<(), ()>> = lookup.get("_start")?;

        cb.sequencer = Sequencer::new(
            &mut store,
            &inner.runtime.inner.sequencer,
            cb.log.as_ref(),
            cb.done.as_ref(),
            cb.delete.as_ref(),
        )
        .map_err(|e| LoadError::Instantiate {
            plugin: spec.name.clone(),
            module: shared.module.clone(),
            reason: format!("the on_log/on_done/on_delete sequencer: {e:#}"),
        })?;

        let window_ticks = inner.deadline.window_ticks;
        let mut vm = Vm {
            core: Core {
                plugin,
                store,
                broken: false,
                window_ticks,
            },
            cb,
        };
        // Reactor start-up (spec §integration): _initialize, then main if present;
        // a command module (no _initialize) runs _start instead.
        if let Some(init) = initialize {
            vm.core
                .call("_initialize", &init, ())
                .map_err(|f| start_err(f.callback, f.kind))?;
            if let Some(main) = main {
                vm.core
                    .call("main", &main, (0, 0))
                    .map_err(|f| start_err(f.callback, f.kind))?;
            } else if let Some(main) = main_void {
                vm.core
                    .call("__main_void", &main, ())
                    .map_err(|f| start_err(f.callback, f.kind))?;
            }
        } else if let Some(start) = start {
            match vm.core.call("_start", &start, ()) {
                Ok(()) => {}
                // proc_exit(0) at the end of _start is a normal return.
                Err(f) if f.kind == FaultKind::Exit(0) => {
                    vm.core.broken = false;
                }
                Err(f) => return Err(start_err(f.callback, f.kind)),
            }
        }
        if let Some(create) = &vm.cb.context_create {
            vm.core
                .call(
                    "proxy_on_context_create",
                    create,
                    (ROOT_CONTEXT_ID as i32, 0),
                )
                .map_err(|f| start_err(f.callback, f.kind))?;
        }
        if let Some(vm_start) = &vm.cb.vm_start {
            let size = spec.vm_config.len() as i32;
            let ok = vm
                .core
                .call(
                    "proxy_on_vm_start",
                    vm_start,
                    (ROOT_CONTEXT_ID as i32, size),
                )
                .map_err(|f| start_err(f.callback, f.kind))?;
            if ok == 0 {
                return Err(LoadError::VmStartFailed {
                    plugin: spec.name.clone(),
                    module: shared.module.clone(),
                    logs: sink.take(),
                });
            }
        }
        if let Some(configure) = &vm.cb.configure {
            let size = spec.plugin_config.len() as i32;
            let ok = vm
                .core
                .call(
                    "proxy_on_configure",
                    configure,
                    (ROOT_CONTEXT_ID as i32, size),
                )
                .map_err(|f| start_err(f.callback, f.kind))?;
            if ok == 0 {
                return Err(LoadError::ConfigureFailed {
                    plugin: spec.name.clone(),
                    module: shared.module.clone(),
                    logs: sink.take(),
                });
            }
        }
        sink.end_startup();
        Ok(vm)
    }
}

/// Looks up optional typed exports, turning a type mismatch into a [`LoadError::BadExport`].
struct Lookup<'a> {
    instance: &'a Instance,
    store: &'a mut Store<HostState>,
    plugin: &'a str,
    module: &'a str,
}

impl Lookup<'_> {
    fn get<P: WasmParams, R: WasmResults>(
        &mut self,
        name: &str,
    ) -> Result<Option<TypedFunc<P, R>>, LoadError> {
        let Some(func) = self.instance.get_func(&mut *self.store, name) else {
            return Ok(None);
        };
        func.typed::<P, R>(&*self.store)
            .map(Some)
            .map_err(|e| LoadError::BadExport {
                plugin: self.plugin.to_string(),
                module: self.module.to_string(),
                export: name.to_string(),
                reason: format!("{e:#}"),
            })
    }
}
