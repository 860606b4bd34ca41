//! [`HostState`]: the data of one wasmtime store, i.e. everything host functions can reach.

use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use wasmtime::{Memory, ResourceLimiter, TypedFunc};
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::deadline::Deadline;
use crate::http_call::{HttpCallRequest, HttpCallResponse};
use crate::limits::MAX_TABLE_ELEMENTS;
use crate::logs::{GuestStdio, LogLevel, LogSink};
use crate::metrics::MetricCache;
use crate::plugin::PluginShared;
use crate::shared::QueueNotify;
use crate::signal::{StreamOp, StreamSignal};
use crate::stream::Stream;

/// Store data of one Vm.
pub(crate) struct HostState {
    /// WASI preview 1 context (no files, embedder-chosen env, stdio into the log).
    pub(crate) wasi: WasiP1Ctx,
    /// CPU deadline bookkeeping of the running callback.
    pub(crate) deadline: Deadline,
    /// Memory cap; remembers whether a growth was refused.
    pub(crate) limiter: MemoryLimiter,
    /// Plugin-wide data: spec, metrics registry, runtime-wide shared data.
    pub(crate) plugin: Arc<PluginShared>,
    /// The stream of the running callback, lent by the Vm for one guest call (empty during
    /// root-context callbacks).
    pub(crate) stream: StreamSlot,
    /// Id of the root context.
    pub(crate) root_context_id: u32,
    /// Next context id the Vm will hand out (ids below it were issued).
    pub(crate) next_context_id: u32,
    /// Context selected by `proxy_set_effective_context`, reset before every callback.
    pub(crate) effective_context: u32,
    /// The guest allocator (`proxy_on_memory_allocate` or `malloc`).
    pub(crate) alloc: Option<TypedFunc<i32, i32>>,
    /// The guest's exported memory.
    pub(crate) memory: Option<Memory>,
    /// Reused buffer for values copied out before the guest allocator runs.
    pub(crate) scratch: Vec<u8>,
    /// Stream operations addressed to a context other than the lent stream's, not yet taken
    /// by the embedder.
    pub(crate) stream_signals: Vec<StreamSignal>,
    /// HTTP calls dispatched but not yet taken by the embedder.
    pub(crate) http_calls: Vec<HttpCallRequest>,
    /// Next http call token (starts at 1).
    pub(crate) next_token: u32,
    /// The response being delivered in `proxy_on_http_call_response`.
    pub(crate) http_response: Option<HttpCallResponse>,
    /// Tick period the root context asked for.
    pub(crate) tick_period: Option<Duration>,
    /// Where guest logs go.
    pub(crate) logs: Arc<LogSink>,
    /// The module's WASI stdout (lines logged at Info).
    pub(crate) stdout: GuestStdio,
    /// The module's WASI stderr (lines logged at Error).
    pub(crate) stderr: GuestStdio,
    /// Level reported by `proxy_get_log_level`; None = follow `tracing`.
    pub(crate) log_level: Option<LogLevel>,
    /// Properties set by the filter outside any stream.
    pub(crate) root_properties: crate::properties::Properties,
    /// Metric handles by id.
    pub(crate) metrics: MetricCache,
    /// Queue-ready notifications for this Vm.
    pub(crate) queue_notify: Arc<QueueNotify>,
    /// Contexts that called `proxy_done`.
    pub(crate) done_calls: u32,
    /// Fixed clock for `proxy_get_current_time_nanoseconds` (tests); None = system time.
    pub(crate) clock: Option<SystemTime>,
}

impl HostState {
    /// Whether `id` names a context this Vm issued (the root or a stream).
    pub(crate) fn is_known_context(&self, id: u32) -> bool {
        id != 0 && id < self.next_context_id
    }

    /// Where a stream operation of the running callback goes: the lent stream when it is the
    /// effective context, a signal for another stream context, or nowhere (the root context,
    /// or no stream at all).
    pub(crate) fn stream_target(&mut self) -> StreamTarget<'_> {
        let effective = self.effective_context;
        let lent = self.stream.get().map(|s| s.context_id);
        if lent == Some(effective) || (lent.is_some() && effective == self.root_context_id) {
            return match self.stream.get_mut() {
                Some(stream) => StreamTarget::Lent(stream),
                None => StreamTarget::None,
            };
        }
        if effective != self.root_context_id && self.is_known_context(effective) {
            return StreamTarget::Other(effective);
        }
        StreamTarget::None
    }

    /// Records `op` for the stream context `context_id` (see [`StreamTarget::Other`]).
    pub(crate) fn signal(&mut self, context_id: u32, op: StreamOp) {
        self.stream_signals.push(StreamSignal { context_id, op });
    }

    /// Cap on guest-supplied lengths for this plugin.
    #[inline]
    pub(crate) fn max_len(&self) -> usize {
        self.plugin.spec.limits.max_buffer_bytes
    }
}

/// The stream a stream operation (`proxy_continue_stream`, `proxy_close_stream`,
/// `proxy_send_local_response`) applies to.
pub(crate) enum StreamTarget<'a> {
    /// The stream of the running callback.
    Lent(&'a mut Stream),
    /// Another stream context, selected with `proxy_set_effective_context`: the operation
    /// becomes a [`StreamSignal`] for the embedder.
    Other(u32),
    /// No stream (a root callback that selected no stream context).
    None,
}

/// A [`ResourceLimiter`] that caps linear memory and records refusals, so a trap after a
/// refused growth is reported as out-of-memory.
pub(crate) struct MemoryLimiter {
    pub(crate) max_memory: usize,
    pub(crate) oom: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.oom = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// The embedder's [`Stream`], lent to host functions for the duration of one guest call.
///
/// Moving a `Stream` (about 300 bytes) into the store and back around every callback cost more
/// than the rest of the host side of a request, so the store borrows it by pointer instead.
/// The pointer is only ever set by `Core::with_stream` (vm.rs), which holds the embedder's
/// `&mut Stream` for exactly as long as the pointer is set and clears it before returning,
/// also when unwinding. Host functions only run inside that window (they are called by the
/// guest, which only runs inside `Core::call`), so every dereference sees a live, exclusively
/// borrowed `Stream`.
#[derive(Default)]
pub(crate) struct StreamSlot(Option<NonNull<Stream>>);

// SAFETY: the slot is empty whenever the store can change threads (between calls); while it
// is set, the `&mut Stream` it came from is held by the thread running the call.
unsafe impl Send for StreamSlot {}

impl StreamSlot {
    /// The lent stream, if a stream callback is running.
    #[inline]
    pub(crate) fn get(&self) -> Option<&Stream> {
        // SAFETY: see the type docs; `&self` keeps `get_mut` from handing out an alias.
        self.0.map(|p| unsafe { &*p.as_ptr() })
    }

    /// The lent stream, mutably.
    #[inline]
    pub(crate) fn get_mut(&mut self) -> Option<&mut Stream> {
        // SAFETY: see the type docs; `&mut self` makes this the only live reference.
        self.0.map(|p| unsafe { &mut *p.as_ptr() })
    }

    #[inline]
    pub(crate) fn set(&mut self, stream: &mut Stream) {
        self.0 = Some(NonNull::from(stream));
    }

    #[inline]
    pub(crate) fn clear(&mut self) {
        self.0 = None;
    }
}
