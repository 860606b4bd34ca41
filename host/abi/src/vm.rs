//! [`Vm`]: one wasmtime store + instance of a plugin with its root context, and the
//! proxy-wasm lifecycle calls into it.
//!
//! Every callback export is looked up once at instantiation (`start`) and kept as a
//! `TypedFunc`. Before each call the epoch deadline is re-armed and the embedder's stream is
//! lent to the store's host functions; after it, the stream is taken back, whatever the
//! outcome. Any failure marks the Vm broken.

use std::time::{Duration, SystemTime};

use wasmtime::{Store, TypedFunc, WasmParams, WasmResults};

use crate::error::{Fault, FaultKind, classify};
use crate::http_call::{HttpCallRequest, HttpCallResponse};
use crate::logs::{LogLevel, LogRecord};
use crate::plugin::Plugin;
use crate::signal::StreamSignal;
use crate::state::HostState;
use crate::status::Action;
use crate::stream::Stream;

/// Context id of every Vm's root context; stream contexts count up from 2.
const ROOT_CONTEXT_ID: u32 = 1;

type Cb1 = TypedFunc<i32, ()>;
type Cb2 = TypedFunc<(i32, i32), ()>;
type Bool2 = TypedFunc<(i32, i32), i32>;
type Act2 = TypedFunc<(i32, i32), i32>;
type Act3 = TypedFunc<(i32, i32, i32), i32>;
type Cb5 = TypedFunc<(i32, i32, i32, i32, i32), ()>;

/// The guest's callback exports (None = not exported; the call is skipped).
struct Callbacks {
    context_create: Option<Cb2>,
    vm_start: Option<Bool2>,
    configure: Option<Bool2>,
    request_headers: Option<Act3>,
    request_body: Option<Act3>,
    request_trailers: Option<Act2>,
    response_headers: Option<Act3>,
    response_body: Option<Act3>,
    response_trailers: Option<Act2>,
    log: Option<Cb1>,
    done: Option<TypedFunc<i32, i32>>,
    delete: Option<Cb1>,
    http_call_response: Option<Cb5>,
    tick: Option<Cb1>,
    queue_ready: Option<Cb2>,
    /// `proxy_on_log` + `proxy_on_done` + `proxy_on_delete` in one call, when all three exist.
    sequencer: Option<end::Sequencer>,
}

/// One wasmtime Store + instance with its root context. Send, not Sync. After any Fault it is
/// broken: the embedder drops it and calls plugin.instantiate() for a fresh one.
pub struct Vm {
    core: Core,
    cb: Callbacks,
}

/// The store and its bookkeeping, apart from the callbacks so both can be borrowed at once.
struct Core {
    plugin: Plugin,
    store: Store<HostState>,
    broken: bool,
    window_ticks: u64,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("plugin", &self.core.plugin.name())
            .field("broken", &self.core.broken)
            .finish_non_exhaustive()
    }
}

// === impl Core: calls ===

impl Core {
    /// Calls one guest export with the deadline armed; any error breaks the Vm.
    #[inline]
    fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        callback: &'static str,
        func: &TypedFunc<P, R>,
        params: P,
    ) -> Result<R, Fault> {
        self.store.set_epoch_deadline(self.window_ticks);
        let state = self.store.data_mut();
        state.limiter.oom = false;
        state.deadline.arm();
        match func.call(&mut self.store, params) {
            Ok(r) => Ok(r),
            Err(err) => {
                self.broken = true;
                let kind = classify(&err, self.store.data().limiter.oom);
                Err(self.fault(callback, kind))
            }
        }
    }

    fn fault(&self, callback: &'static str, kind: FaultKind) -> Fault {
        Fault {
            plugin: self.plugin.name().to_string(),
            callback,
            kind,
        }
    }

    #[inline]
    fn check(&self, callback: &'static str) -> Result<(), Fault> {
        if self.broken {
            return Err(self.fault(callback, FaultKind::Broken));
        }
        Ok(())
    }

    /// Runs `f` with `s` lent to the store's host functions, and always takes it back.
    #[inline]
    fn with_stream<R>(
        &mut self,
        s: &mut Stream,
        f: impl FnOnce(&mut Self, i32) -> Result<R, Fault>,
    ) -> Result<R, Fault> {
        let ctx = s.context_id;
        let st = self.store.data_mut();
        st.effective_context = ctx;
        st.stream.set(s);
        // Take the stream back even if something panics, so the slot never dangles.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self, ctx as i32)));
        let st = self.store.data_mut();
        st.stream.clear();
        st.effective_context = st.root_context_id;
        match result {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Calls a root-context callback: the effective context starts as the root's (a
    /// `proxy_set_effective_context` of an earlier root callback does not carry over).
    #[inline]
    fn root_call<P: WasmParams, R: WasmResults>(
        &mut self,
        callback: &'static str,
        func: &TypedFunc<P, R>,
        params: P,
    ) -> Result<R, Fault> {
        let st = self.store.data_mut();
        st.effective_context = st.root_context_id;
        let result = self.call(callback, func, params);
        let st = self.store.data_mut();
        st.effective_context = st.root_context_id;
        result
    }

    /// Checks what `proxy_on_done` returned: a bool, or the Vm is broken.
    #[inline]
    fn done_answer(&mut self, answer: i32) -> Result<(), Fault> {
        if answer as u32 > 1 {
            self.broken = true;
            return Err(self.fault("proxy_on_done", FaultKind::InvalidStatus));
        }
        Ok(())
    }

    #[inline]
    fn action(&mut self, callback: &'static str, code: i32) -> Result<Action, Fault> {
        Action::from_code(code as u32).ok_or_else(|| {
            self.broken = true;
            self.fault(callback, FaultKind::InvalidAction(code as u32))
        })
    }

    /// Calls a stream callback returning an action; a missing export means Continue.
    #[inline]
    fn stream_action3(
        &mut self,
        s: &mut Stream,
        callback: &'static str,
        func: Option<&Act3>,
        size: usize,
        end_of_stream: bool,
    ) -> Result<Action, Fault> {
        self.check(callback)?;
        let Some(func) = func else {
            return Ok(Action::Continue);
        };
        self.with_stream(s, |core, ctx| {
            let code = core.call(callback, func, (ctx, size as i32, end_of_stream as i32))?;
            core.action(callback, code)
        })
    }

    #[inline]
    fn stream_action2(
        &mut self,
        s: &mut Stream,
        callback: &'static str,
        func: Option<&Act2>,
        size: usize,
    ) -> Result<Action, Fault> {
        self.check(callback)?;
        let Some(func) = func else {
            return Ok(Action::Continue);
        };
        self.with_stream(s, |core, ctx| {
            let code = core.call(callback, func, (ctx, size as i32))?;
            core.action(callback, code)
        })
    }
}

// === impl Vm: lifecycle ===

impl Vm {
    /// The plugin this Vm runs.
    pub fn plugin(&self) -> &Plugin {
        &self.core.plugin
    }

    /// True after any [`Fault`]; the Vm must then be replaced.
    pub fn is_broken(&self) -> bool {
        self.core.broken
    }

    /// Id of the root context (the parent of every stream context).
    pub fn root_context_id(&self) -> u32 {
        self.core.store.data().root_context_id
    }

    /// Assigns stream.context_id and calls proxy_on_context_create(id, root_id).
    pub fn create_stream(&mut self, stream: &mut Stream) -> Result<(), Fault> {
        const CB: &str = "proxy_on_context_create";
        self.core.check(CB)?;
        let st = self.core.store.data_mut();
        let id = st.next_context_id;
        st.next_context_id = id.wrapping_add(1).max(ROOT_CONTEXT_ID + 1);
        stream.context_id = id;
        let Some(func) = &self.cb.context_create else {
            return Ok(());
        };
        self.core
            .call(CB, func, (id as i32, ROOT_CONTEXT_ID as i32))
    }

    /// Calls `proxy_on_request_headers(ctx, number of headers, end_of_stream)`.
    pub fn on_request_headers(
        &mut self,
        s: &mut Stream,
        end_of_stream: bool,
    ) -> Result<Action, Fault> {
        let n = s.request_headers.len();
        let f = self.cb.request_headers.as_ref();
        self.core
            .stream_action3(s, "proxy_on_request_headers", f, n, end_of_stream)
    }

    /// The guest sees s.request_body as HTTP_REQUEST_BODY (size passed = its len).
    pub fn on_request_body(
        &mut self,
        s: &mut Stream,
        end_of_stream: bool,
    ) -> Result<Action, Fault> {
        let n = s.request_body.len();
        let f = self.cb.request_body.as_ref();
        self.core
            .stream_action3(s, "proxy_on_request_body", f, n, end_of_stream)
    }

    /// Calls `proxy_on_request_trailers(ctx, number of trailers)`.
    pub fn on_request_trailers(&mut self, s: &mut Stream) -> Result<Action, Fault> {
        let n = s.request_trailers.len();
        let f = self.cb.request_trailers.as_ref();
        self.core
            .stream_action2(s, "proxy_on_request_trailers", f, n)
    }

    /// Calls `proxy_on_response_headers(ctx, number of headers, end_of_stream)`.
    pub fn on_response_headers(
        &mut self,
        s: &mut Stream,
        end_of_stream: bool,
    ) -> Result<Action, Fault> {
        let n = s.response_headers.len();
        let f = self.cb.response_headers.as_ref();
        self.core
            .stream_action3(s, "proxy_on_response_headers", f, n, end_of_stream)
    }

    /// The guest sees s.response_body as HTTP_RESPONSE_BODY (size passed = its len).
    pub fn on_response_body(
        &mut self,
        s: &mut Stream,
        end_of_stream: bool,
    ) -> Result<Action, Fault> {
        let n = s.response_body.len();
        let f = self.cb.response_body.as_ref();
        self.core
            .stream_action3(s, "proxy_on_response_body", f, n, end_of_stream)
    }

    /// Calls `proxy_on_response_trailers(ctx, number of trailers)`.
    pub fn on_response_trailers(&mut self, s: &mut Stream) -> Result<Action, Fault> {
        let n = s.response_trailers.len();
        let f = self.cb.response_trailers.as_ref();
        self.core
            .stream_action2(s, "proxy_on_response_trailers", f, n)
    }

    /// Calls `proxy_on_log(ctx)`; header maps stay readable.
    pub fn on_log(&mut self, s: &mut Stream) -> Result<(), Fault> {
        const CB: &str = "proxy_on_log";
        // The request is complete (`request.duration`).
        s.info.end.get_or_insert_with(std::time::Instant::now);
        self.core.check(CB)?;
        let Some(func) = &self.cb.log else {
            return Ok(());
        };
        self.core
            .with_stream(s, |core, ctx| core.call(CB, func, ctx))
    }

    /// proxy_on_done then proxy_on_delete; the context id is dead afterwards.
    pub fn finish_stream(&mut self, s: &mut Stream) -> Result<(), Fault> {
        self.core.check("proxy_on_done")?;
        let (done, delete) = (&self.cb.done, &self.cb.delete);
        self.core.with_stream(s, |core, ctx| {
            if let Some(done) = done {
                let r = core.call("proxy_on_done", done, ctx)?;
                core.done_answer(r)?;
            }
            if let Some(delete) = delete {
                core.call("proxy_on_delete", delete, ctx)?;
            }
            Ok(())
        })
    }

    /// Deliver an http call result. `stream` is the stream whose callback dispatched the call
    /// (None for calls from the root context, e.g. on_tick). resp None = the call failed.
    ///
    /// Only the stream passed here is reachable from the callback: stream operations on any
    /// other context (say, a root context resuming a stream it did not dispatch from) get
    /// BAD_ARGUMENT, like Envoy answers for a context it cannot find.
    pub fn on_http_call_response(
        &mut self,
        stream: Option<&mut Stream>,
        token: u32,
        resp: Option<HttpCallResponse>,
    ) -> Result<(), Fault> {
        const CB: &str = "proxy_on_http_call_response";
        self.core.check(CB)?;
        let Some(func) = &self.cb.http_call_response else {
            return Ok(());
        };
        let (nh, nb, nt) = resp.as_ref().map_or((0, 0, 0), |r| {
            (
                r.headers.len() as i32,
                r.body.len() as i32,
                r.trailers.len() as i32,
            )
        });
        self.core.store.data_mut().http_response = resp;
        let params = (ROOT_CONTEXT_ID as i32, token as i32, nh, nb, nt);
        let result = match stream {
            Some(s) => self
                .core
                .with_stream(s, |core, _| core.call(CB, func, params)),
            None => self.core.root_call(CB, func, params),
        };
        self.core.store.data_mut().http_response = None;
        result
    }

    /// proxy_http_call requests dispatched since the last take (from any callback).
    pub fn take_http_calls(&mut self) -> Vec<HttpCallRequest> {
        std::mem::take(&mut self.core.store.data_mut().http_calls)
    }

    /// Whether a callback dispatched an http call since the last
    /// [`Self::take_http_calls`] (most do not: an embedder can then skip the take).
    pub fn has_http_calls(&self) -> bool {
        !self.core.store.data().http_calls.is_empty()
    }

    /// Stream operations addressed, since the last take, to a stream context other than the
    /// one whose callback ran (say, `on_tick` resuming a paused request after
    /// `proxy_set_effective_context`). The embedder hands each to the holder of that stream,
    /// which applies it with [`Stream::apply`]; one for a finished stream is dropped.
    pub fn take_stream_signals(&mut self) -> Vec<StreamSignal> {
        let signals = &mut self.core.store.data_mut().stream_signals;
        if signals.is_empty() {
            return Vec::new();
        }
        std::mem::take(signals)
    }

    /// Whether a callback addressed an operation to another stream context since the last
    /// [`Self::take_stream_signals`].
    pub fn has_stream_signals(&self) -> bool {
        !self.core.store.data().stream_signals.is_empty()
    }

    /// The tick period the root context asked for with `proxy_set_tick_period_milliseconds`.
    pub fn tick_period(&self) -> Option<Duration> {
        self.core.store.data().tick_period
    }

    /// Calls `proxy_on_tick(root)`.
    pub fn on_tick(&mut self) -> Result<(), Fault> {
        const CB: &str = "proxy_on_tick";
        self.core.check(CB)?;
        let Some(func) = &self.cb.tick else {
            return Ok(());
        };
        self.core.root_call(CB, func, ROOT_CONTEXT_ID as i32)
    }

    /// Deliver pending on_queue_ready for queues this Vm registered (enqueued by any Vm).
    pub fn dispatch_queue_ready(&mut self) -> Result<(), Fault> {
        const CB: &str = "proxy_on_queue_ready";
        self.core.check(CB)?;
        let pending = self.core.store.data().queue_notify.take();
        let Some(func) = &self.cb.queue_ready else {
            return Ok(());
        };
        for id in pending {
            self.core
                .root_call(CB, func, (ROOT_CONTEXT_ID as i32, id as i32))?;
        }
        Ok(())
    }

    /// Log records captured when capture is on (harness); the gateway leaves it off and logs go to tracing.
    pub fn set_log_capture(&mut self, on: bool) {
        self.core.store.data().logs.set_capture(on);
    }

    /// Takes the captured log records (empty when capture is off).
    pub fn take_logs(&mut self) -> Vec<LogRecord> {
        self.core.store.data().logs.take()
    }

    /// Level `proxy_get_log_level` reports; None (the default) follows `tracing`'s current
    /// max level, or Trace while capture is on.
    pub fn set_log_level(&mut self, level: Option<LogLevel>) {
        self.core.store.data_mut().log_level = level;
    }

    /// Fixes the time `proxy_get_current_time_nanoseconds` reports (tests); None = system time.
    pub fn set_clock(&mut self, now: Option<SystemTime>) {
        self.core.store.data_mut().clock = now;
    }

    /// A property the filter set with `proxy_set_property` outside any stream (dotted path).
    pub fn root_property(&self, path: &str) -> Option<&[u8]> {
        self.core
            .store
            .data()
            .root_properties
            .get(path)
            .map(Vec::as_slice)
    }

    /// Current size of the instance's linear memory in bytes.
    pub fn memory_size(&self) -> usize {
        let store = &self.core.store;
        store.data().memory.map_or(0, |m| m.data_size(store))
    }
}

mod end;
mod start;

pub(crate) use end::compile as compile_sequencer;
#[cfg(test)]
mod tests;
