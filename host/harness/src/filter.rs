//! [`Filter`]: a started filter. It owns the current instance (a `wasmgate_abi::Vm`),
//! replaces it after a fault, collects logs and pending http calls, and drives time.

use std::cell::{Ref, RefCell, RefMut};
use std::collections::HashSet;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use wasmgate_abi::{
    Fault, FaultKind, HttpCallRequest, HttpCallResponse, LogLevel, LogRecord, MetricSample, Plugin,
    Properties, Runtime, StreamSignal, Vm,
};

use crate::error::{Error, Result};
use crate::http::HttpStream;

/// A started filter: the compiled plugin plus its current instance, as a gateway worker
/// would hold it. Create streams with [`Filter::http_stream`]; read what the filter did
/// with [`Filter::logs`], [`Filter::metric`], [`Filter::shared_data`]; drive time with
/// [`Filter::advance_time`].
///
/// A `Filter` is a cheap handle (`Clone` shares the same instance); it is not `Send`: a
/// test drives one filter from one thread, like one gateway worker.
///
/// When a callback fails ([`crate::Error::Fault`]), the instance is discarded, just as the
/// gateway does; the next stream (or tick) runs on a fresh instance, which starts over
/// with `_initialize`, `on_vm_start` and `on_configure`.
#[derive(Clone)]
pub struct Filter {
    pub(crate) inner: Rc<RefCell<Inner>>,
}

/// State shared by a [`Filter`] and its [`HttpStream`]s.
pub(crate) struct Inner {
    pub(crate) runtime: Runtime,
    pub(crate) plugin: Plugin,
    /// The current instance; None after a fault until the next use.
    vm: Option<Vm>,
    /// Bumped on every new instance; streams remember the one they were created on.
    pub(crate) generation: u64,
    /// Properties every new stream starts with.
    pub(crate) properties: Properties,
    /// Every log record of every instance, in order.
    logs: Vec<LogRecord>,
    /// http calls dispatched and not yet answered, from any context.
    pub(crate) pending_calls: Vec<HttpCallRequest>,
    /// Stream operations addressed to a stream from another context's callback, not yet
    /// picked up by that stream ([`HttpStream::receive`]).
    pub(crate) signals: Vec<StreamSignal>,
    /// Context ids of streams created and not finished on the current instance.
    pub(crate) live_streams: HashSet<u32>,
    /// Faults seen, oldest first: (callback, kind).
    faults: Vec<(String, FaultKind)>,
    /// Virtual time since the current tick period was last reached.
    since_tick: Duration,
    /// Virtual time advanced so far.
    elapsed: Duration,
    /// The time the filter reads (`proxy_get_current_time_nanoseconds`): frozen, moved only
    /// by [`Filter::advance_time`] and [`Filter::set_time`].
    clock: SystemTime,
    /// The level `proxy_get_log_level` reports (None: the runtime's default, Trace).
    log_level: Option<LogLevel>,
}

impl Filter {
    pub(crate) fn new(
        runtime: Runtime,
        plugin: Plugin,
        properties: Properties,
        log_level: Option<LogLevel>,
    ) -> Result<Filter> {
        let mut inner = Inner {
            runtime,
            plugin,
            vm: None,
            generation: 0,
            properties,
            logs: Vec::new(),
            pending_calls: Vec::new(),
            signals: Vec::new(),
            live_streams: HashSet::new(),
            faults: Vec::new(),
            since_tick: Duration::ZERO,
            elapsed: Duration::ZERO,
            clock: SystemTime::now(),
            log_level,
        };
        inner.vm()?;
        Ok(Filter {
            inner: Rc::new(RefCell::new(inner)),
        })
    }

    pub(crate) fn borrow(&self) -> Ref<'_, Inner> {
        self.inner.borrow()
    }

    pub(crate) fn borrow_mut(&self) -> RefMut<'_, Inner> {
        self.inner.borrow_mut()
    }

    /// Creates a new HTTP stream context (`proxy_on_context_create`) on the current
    /// instance, starting a fresh instance first if the last one failed.
    ///
    /// # Errors
    ///
    /// [`Error::Load`] if a fresh instance cannot start; [`Error::Fault`] if context
    /// creation fails in the guest.
    pub fn http_stream(&self) -> Result<HttpStream> {
        HttpStream::create(self.clone())
    }

    /// The plugin name (from [`crate::Harness::name`] or the module).
    pub fn name(&self) -> String {
        self.borrow().plugin.name().to_string()
    }

    /// The runtime the filter runs on; pass it to [`crate::Harness::runtime`] to run more
    /// filters that share data and queues with this one.
    pub fn runtime(&self) -> Runtime {
        self.borrow().runtime.clone()
    }

    /// The loaded plugin (compiled module and specification).
    pub fn plugin(&self) -> Plugin {
        self.borrow().plugin.clone()
    }

    /// How many instances have been started so far: 1 after [`crate::Harness::start`],
    /// one more after each fault once the filter is used again.
    pub fn instances(&self) -> u64 {
        self.borrow().generation
    }

    /// The size of the current instance's linear memory in bytes (0 if there is none),
    /// e.g. to check that a filter does not grow without bound over many streams.
    pub fn memory_size(&self) -> usize {
        self.borrow().vm.as_ref().map_or(0, Vm::memory_size)
    }

    /// Faults so far, oldest first, as (callback, kind).
    pub fn faults(&self) -> Vec<(String, FaultKind)> {
        self.borrow().faults.clone()
    }

    // === logs ===

    /// Every log record so far (`proxy_log`, and the module's stdout/stderr), oldest first,
    /// from every instance: what each logged while starting (`_initialize`, `on_vm_start`,
    /// `on_configure`) comes first, then its callbacks. A fresh instance that fails to
    /// start after a fault leaves its start-up logs here too.
    pub fn logs(&self) -> Vec<LogRecord> {
        self.borrow().logs.clone()
    }

    /// Returns and forgets the log records so far.
    pub fn take_logs(&self) -> Vec<LogRecord> {
        std::mem::take(&mut self.borrow_mut().logs)
    }

    /// True if some log record at `level` contains `text`.
    pub fn logged(&self, level: LogLevel, text: &str) -> bool {
        self.borrow()
            .logs
            .iter()
            .any(|r| r.level == level && r.message.contains(text))
    }

    /// The messages of all log records so far, oldest first.
    pub fn log_messages(&self) -> Vec<String> {
        self.borrow()
            .logs
            .iter()
            .map(|r| r.message.clone())
            .collect()
    }

    // === metrics and shared data ===

    /// Every metric the filter defined, with its current value.
    pub fn metrics(&self) -> Vec<MetricSample> {
        self.borrow().plugin.metrics()
    }

    /// The metric the filter defined under `name` (as passed to `proxy_define_metric`).
    pub fn metric(&self, name: &str) -> Option<MetricSample> {
        self.metrics().into_iter().find(|m| m.name == name)
    }

    /// The shared-data value under `key` in this filter's VM id, as a filter would read it.
    pub fn shared_data(&self, key: &str) -> Option<Vec<u8>> {
        self.shared_data_cas(key).map(|(value, _)| value)
    }

    /// The shared-data value under `key` as UTF-8 text (lossy).
    pub fn shared_data_str(&self, key: &str) -> Option<String> {
        self.shared_data(key)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// The shared-data value and its CAS token under `key`.
    pub fn shared_data_cas(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        let inner = self.borrow();
        inner.runtime.shared_data(&inner.plugin.spec().vm_id, key)
    }

    /// Seeds shared data under `key` in this filter's VM id (no CAS check).
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] when the runtime refuses the write (its key limit is reached).
    pub fn set_shared_data(&self, key: &str, value: impl AsRef<[u8]>) -> Result<()> {
        let inner = self.borrow();
        if inner
            .runtime
            .set_shared_data(&inner.plugin.spec().vm_id, key, value.as_ref())
        {
            Ok(())
        } else {
            Err(Error::Usage(format!(
                "shared data is full; cannot set {key:?}"
            )))
        }
    }

    /// A property the filter set outside any stream (`proxy_set_property` from the root
    /// context), on the current instance.
    pub fn root_property(&self, path: &str) -> Option<Vec<u8>> {
        self.borrow()
            .vm
            .as_ref()
            .and_then(|vm| vm.root_property(path).map(<[u8]>::to_vec))
    }

    // === http calls ===

    /// Every http call dispatched and not answered yet, from streams and the root context.
    pub fn pending_http_calls(&self) -> Vec<HttpCallRequest> {
        self.borrow().pending_calls.clone()
    }

    /// Answers an http call the root context dispatched (e.g. from `on_tick`). Calls from a
    /// stream are answered through that stream: [`HttpStream::respond_http_call`].
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] if no such call is pending or it belongs to a live stream;
    /// [`Error::Fault`] if `on_http_call_response` fails.
    pub fn respond_http_call(
        &self,
        token: u32,
        response: impl Into<HttpCallResponse>,
    ) -> Result<()> {
        self.answer_root_call(token, Some(response.into()))
    }

    /// Fails an http call the root context dispatched (the filter sees a call with no
    /// headers, as on a connection failure or timeout).
    ///
    /// # Errors
    ///
    /// As [`Filter::respond_http_call`].
    pub fn fail_http_call(&self, token: u32) -> Result<()> {
        self.answer_root_call(token, None)
    }

    fn answer_root_call(&self, token: u32, response: Option<HttpCallResponse>) -> Result<()> {
        let mut inner = self.borrow_mut();
        let call = inner.take_call(token)?;
        if inner.live_streams.contains(&call.context_id) {
            let context_id = call.context_id;
            inner.pending_calls.push(call);
            return Err(Error::Usage(format!(
                "http call {token} was dispatched by stream context {context_id}; \
                 answer it through that HttpStream"
            )));
        }
        inner.call(|vm| vm.on_http_call_response(None, token, response))
    }

    // === time, ticks and queues ===

    /// The tick period the filter set (`proxy_set_tick_period_milliseconds`), if any.
    pub fn tick_period(&self) -> Option<Duration> {
        self.borrow().vm.as_ref().and_then(|vm| vm.tick_period())
    }

    /// Virtual time advanced so far with [`Filter::advance_time`].
    pub fn elapsed(&self) -> Duration {
        self.borrow().elapsed
    }

    /// The time the filter sees (`proxy_get_current_time_nanoseconds`). It starts at the
    /// wall-clock time of [`crate::Harness::start`] and then stands still, moving only with
    /// [`Filter::advance_time`] and [`Filter::set_time`], so tests are deterministic.
    pub fn now(&self) -> SystemTime {
        self.borrow().clock
    }

    /// Sets the time the filter sees, without firing ticks.
    pub fn set_time(&self, now: SystemTime) {
        let mut inner = self.borrow_mut();
        inner.clock = now;
        if let Some(vm) = inner.vm.as_mut() {
            vm.set_clock(Some(now));
        }
    }

    /// Moves virtual time forward by `by`, firing `on_tick` once for every full tick period
    /// that passes (none if the filter set no period). Returns the number of ticks fired.
    /// Nothing sleeps: a test of a one-hour timer runs instantly. During each `on_tick` the
    /// filter's clock reads the time of that tick.
    ///
    /// # Errors
    ///
    /// [`Error::Fault`] if an `on_tick` fails (virtual time stops at that tick).
    pub fn advance_time(&self, by: Duration) -> Result<u32> {
        let mut inner = self.borrow_mut();
        let end = inner.clock + by;
        inner.elapsed += by;
        let mut budget = inner.since_tick + by;
        let mut fired = 0;
        loop {
            // After a fault, a fresh instance takes over the timers (it sets its own period).
            let period = match inner.vm()?.tick_period() {
                Some(p) if !p.is_zero() => p,
                _ => {
                    inner.since_tick = Duration::ZERO;
                    break;
                }
            };
            if budget < period {
                inner.since_tick = budget;
                break;
            }
            budget -= period;
            let at = end - budget;
            inner.set_clock(at);
            inner.call(Vm::on_tick)?;
            fired += 1;
        }
        inner.set_clock(end);
        Ok(fired)
    }

    /// Fires `on_tick` once now, whatever the period.
    ///
    /// # Errors
    ///
    /// [`Error::Fault`] if `on_tick` fails.
    pub fn tick(&self) -> Result<()> {
        self.borrow_mut().call(Vm::on_tick)
    }

    /// Delivers `on_queue_ready` for items enqueued (by any filter on this runtime) into
    /// queues this filter registered. The harness also does this after every callback.
    ///
    /// # Errors
    ///
    /// [`Error::Fault`] if `on_queue_ready` fails.
    pub fn deliver_queue_ready(&self) -> Result<()> {
        self.borrow_mut().call(Vm::dispatch_queue_ready)
    }
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.inner.try_borrow() {
            Ok(inner) => f
                .debug_struct("Filter")
                .field("name", &inner.plugin.name())
                .field("instances", &inner.generation)
                .field("pending_calls", &inner.pending_calls.len())
                .finish_non_exhaustive(),
            Err(_) => f.write_str("Filter { .. }"),
        }
    }
}

impl Inner {
    /// The current instance, starting a fresh one if there is none.
    pub(crate) fn vm(&mut self) -> Result<&mut Vm> {
        if self.vm.as_ref().is_none_or(Vm::is_broken) {
            // Capture from the first instruction, so what the filter logs while starting
            // (`on_vm_start`, `on_configure`) is in `Filter::logs` like everything else.
            let mut vm = match self.plugin.instantiate_capturing() {
                Ok(vm) => vm,
                Err(err) => {
                    self.logs
                        .extend_from_slice(crate::error::startup_logs(&err));
                    return Err(err.into());
                }
            };
            vm.set_log_level(self.log_level);
            vm.set_clock(Some(self.clock));
            self.logs.extend(vm.take_logs());
            self.generation += 1;
            self.live_streams.clear();
            self.pending_calls.clear();
            self.signals.clear();
            self.since_tick = Duration::ZERO;
            self.vm = Some(vm);
        }
        Ok(self.vm.as_mut().expect("instance was just set"))
    }

    /// Sets the clock of the harness and of the current instance.
    fn set_clock(&mut self, now: SystemTime) {
        self.clock = now;
        if let Some(vm) = self.vm.as_mut() {
            vm.set_clock(Some(now));
        }
    }

    /// The current instance if it is the one of `generation` and still usable.
    pub(crate) fn vm_of(&mut self, generation: u64, context_id: u32) -> Result<&mut Vm> {
        if generation != self.generation || self.vm.as_ref().is_none_or(Vm::is_broken) {
            return Err(Error::StreamGone {
                context_id,
                reason: "its instance was discarded after a fault",
            });
        }
        Ok(self.vm.as_mut().expect("checked above"))
    }

    /// Runs one guest call on the current instance (starting one if needed), then collects
    /// its logs and http calls and delivers queue-ready events. On a fault the instance is
    /// discarded and the fault returned.
    pub(crate) fn call<T>(&mut self, f: impl FnOnce(&mut Vm) -> Result<T, Fault>) -> Result<T> {
        let vm = self.vm()?;
        let result = f(vm);
        self.finish_call(result)
    }

    /// Collects logs and calls after a guest call and handles a fault.
    pub(crate) fn finish_call<T>(&mut self, result: Result<T, Fault>) -> Result<T> {
        let Some(vm) = self.vm.as_mut() else {
            return result.map_err(Error::from);
        };
        self.logs.extend(vm.take_logs());
        self.pending_calls.extend(vm.take_http_calls());
        self.signals.extend(vm.take_stream_signals());
        let value = match result {
            Ok(value) => value,
            Err(fault) => return Err(self.discard(fault)),
        };
        // Like Envoy, queue-ready events are delivered after the callback that caused them.
        let ready = vm.dispatch_queue_ready();
        self.logs.extend(vm.take_logs());
        self.pending_calls.extend(vm.take_http_calls());
        self.signals.extend(vm.take_stream_signals());
        match ready {
            Ok(()) => Ok(value),
            Err(fault) => Err(self.discard(fault)),
        }
    }

    /// Records a fault and drops the instance it broke.
    fn discard(&mut self, fault: Fault) -> Error {
        self.faults
            .push((fault.callback.to_string(), fault.kind.clone()));
        self.vm = None;
        self.live_streams.clear();
        self.pending_calls.clear();
        self.signals.clear();
        Error::Fault(fault)
    }

    /// Takes the stream operations addressed to context `context_id`.
    pub(crate) fn take_signals(&mut self, context_id: u32) -> Vec<StreamSignal> {
        if self.signals.is_empty() {
            return Vec::new();
        }
        let (mine, others) = std::mem::take(&mut self.signals)
            .into_iter()
            .partition(|s| s.context_id == context_id);
        self.signals = others;
        mine
    }

    /// Removes the pending call `token`.
    pub(crate) fn take_call(&mut self, token: u32) -> Result<HttpCallRequest> {
        let index = self
            .pending_calls
            .iter()
            .position(|c| c.token == token)
            .ok_or_else(|| Error::Usage(format!("no pending http call with token {token}")))?;
        Ok(self.pending_calls.remove(index))
    }
}
