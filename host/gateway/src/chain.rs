//! A route's proxy-wasm filter chain, and one request's trip through it.
//!
//! [`Chain`] is built when the configuration loads: every filter's module is
//! compiled and configured once (`Runtime::load`), so a `check` catches a
//! filter whose `on_configure` fails. Each worker thread instantiates its own
//! [`Vm`] per filter on first use and keeps it in a thread-local; a request
//! borrows the Vm only for the duration of one callback (a synchronous
//! call), never across an `await`, so no lock is needed and a paused
//! request never blocks another.
//!
//! [`FilterRun`] is one request's state: the [`Stream`] the filters see and
//! act on, and which filters are still taking part. Request phases go through
//! the filters in order, response phases in reverse order (Envoy's decoder
//! and encoder chains). A failing filter (trap, deadline, out of memory, or
//! its Vm replaced after another stream broke it) either fails the request
//! (`on_error: deny`, 503) or drops out of this request (`allow`). A broken
//! Vm is discarded and the next request instantiates a fresh one.
//!
//! A filter that pauses a phase keeps the request waiting for whatever can
//! resume it: the answer to an http call of its own, or an operation
//! addressed to its context from elsewhere (`on_tick`, `on_queue_ready`, a
//! root-context call's answer, another stream's callback; see `signals`),
//! for at most [`Chain::pause_timeout`]; then it is a 504.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use wasmgate_abi::{Action, Fault, HttpCallRequest, Plugin, Properties, Stream, Vm};

use crate::{
    config::OnError, error::ProxyError, metrics::FilterStats, stream_map::PooledStream,
    upstream::Upstream,
};

mod http_call;
mod instances;
mod signals;
pub mod timers;

use instances::{replace_vm, with_vm};
use signals::{ContextKey, Inbox};

static NEXT_CHAIN: AtomicU64 = AtomicU64::new(1);

/// [`Chain::pause_timeout`] when no upstream says otherwise (the default
/// upstream `timeout`).
const DEFAULT_PAUSE_TIMEOUT: Duration = Duration::from_secs(30);

/// One configured filter of a chain.
pub struct FilterDef {
    /// `route/index`, used in logs, metrics and error bodies.
    pub name: String,
    /// The compiled, configured module.
    pub plugin: Plugin,
    /// Failure policy.
    pub on_error: OnError,
    /// Failure counters.
    pub stats: Arc<FilterStats>,
}

/// A route's filters, shared by all workers.
pub struct Chain {
    id: u64,
    /// Route name.
    pub route: String,
    /// Filters in configuration order.
    pub filters: Vec<FilterDef>,
    /// Upstreams filters may call, by name.
    pub upstreams: Arc<BTreeMap<String, Arc<Upstream>>>,
    /// The route's properties for filters (`route_name`), shared by its
    /// requests.
    pub properties: Arc<Properties>,
    /// How long a paused request waits for a filter to resume it.
    pub pause_timeout: Duration,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

/// Where a phase leaves the request.
#[derive(Debug)]
pub enum Flow {
    /// Carry on proxying.
    Continue,
    /// A filter answered; send this instead of proxying (or of the
    /// upstream's response). Boxed, as in [`BodyStep`] and [`Verdict`]: a
    /// rare answer should not widen every request's futures.
    Respond(Box<wasmgate_abi::LocalResponse>),
}

/// Which side of the exchange a phase is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Client to upstream.
    Request,
    /// Upstream to client.
    Response,
}

/// Per-filter state of one request.
#[derive(Clone, Copy)]
struct Member {
    /// Still taking part (not skipped after a failure under `allow`).
    active: bool,
    /// Context created on this incarnation of the worker's Vm.
    incarnation: u64,
    /// Context created (so it must be finished).
    created: bool,
    /// The stream's context id in this filter's Vm. Each Vm numbers its
    /// contexts itself (a replaced one starts again), so the filters of one
    /// request have ids of their own; [`Stream::context_id`] is set to the
    /// filter's before each of its callbacks.
    context_id: u32,
}

/// One request's trip through a chain.
pub struct FilterRun {
    chain: Arc<Chain>,
    /// What the filters see and edit.
    pub stream: PooledStream,
    members: Vec<Member>,
    /// Http calls dispatched and not answered yet, with the filter index.
    calls: Vec<(usize, HttpCallRequest)>,
    /// Body bytes held back by a filter that paused a body phase (allocated
    /// on first use).
    held: Vec<Vec<u8>>,
    /// What the filters decided while the request body streamed.
    verdict: Option<Verdict>,
    /// Where operations other callbacks address to this request's contexts
    /// arrive (made when a filter first keeps the request paused).
    inbox: Option<Box<Inbox>>,
    finished: bool,
}

/// A decision taken in the request body (or trailers) phase, after the
/// request went upstream: the body is failed on purpose to stop the
/// upstream exchange, and the pipeline answers with this instead.
#[derive(Debug)]
pub enum Verdict {
    /// A filter answered locally.
    Respond(Box<wasmgate_abi::LocalResponse>),
    /// A filter failed under `deny`, or closed the stream.
    Fail(ProxyError),
}

impl Chain {
    /// Assembles a chain of loaded filters.
    pub fn new(
        route: String,
        filters: Vec<FilterDef>,
        upstreams: Arc<BTreeMap<String, Arc<Upstream>>>,
    ) -> Self {
        let properties = Arc::new([("route_name", route.clone())].into_iter().collect());
        // Until the route's own upstream is known (`with_pause_timeout`): the
        // longest `timeout` of the upstreams, which is the route's when it
        // has the only one.
        let pause_timeout = upstreams
            .values()
            .map(|u| u.timeout)
            .max()
            .unwrap_or(DEFAULT_PAUSE_TIMEOUT);
        Self {
            id: NEXT_CHAIN.fetch_add(1, Ordering::Relaxed),
            route,
            filters,
            upstreams,
            properties,
            pause_timeout,
        }
    }

    /// Sets how long a paused request waits to be resumed (the route's
    /// upstream `timeout`).
    #[must_use]
    pub fn with_pause_timeout(mut self, timeout: Duration) -> Self {
        self.pause_timeout = timeout;
        self
    }

    /// Starts a request: creates a stream context in every filter.
    ///
    /// # Errors
    /// A filter that fails under `deny`.
    pub fn start(self: &Arc<Self>, stream: PooledStream) -> Result<Box<FilterRun>, ProxyError> {
        let n = self.filters.len();
        // Boxed: the run moves between the pipeline and the bodies, and a
        // Stream is several hundred bytes.
        let mut run = Box::new(FilterRun {
            chain: self.clone(),
            stream,
            members: vec![
                Member {
                    active: true,
                    incarnation: 0,
                    created: false,
                    context_id: 0,
                };
                n
            ],
            calls: Vec::new(),
            held: Vec::new(),
            verdict: None,
            inbox: None,
            finished: false,
        });
        for i in 0..n {
            run.create(i)?;
        }
        Ok(run)
    }
}

impl FilterRun {
    /// The route this run belongs to.
    pub fn chain(&self) -> &Arc<Chain> {
        &self.chain
    }

    /// Keeps a request-body-phase decision for the pipeline (the first one
    /// wins).
    pub fn set_verdict(&mut self, verdict: Verdict) {
        self.verdict.get_or_insert(verdict);
    }

    /// The decision taken while the request body streamed, if any.
    pub fn take_verdict(&mut self) -> Option<Verdict> {
        self.verdict.take()
    }

    fn closed_by(&self, i: usize) -> ProxyError {
        ProxyError::StreamClosed {
            route: self.chain.route.clone(),
            filter: self.chain.filters[i].name.clone(),
        }
    }

    fn create(&mut self, i: usize) -> Result<(), ProxyError> {
        // Disjoint borrows of two fields: no reference count to bump.
        let (chain, stream) = (&self.chain, &mut self.stream);
        let outcome = with_vm(chain, i, |vm, incarnation| {
            (vm.create_stream(stream), incarnation)
        });
        match outcome {
            Ok((Ok(()), incarnation)) => {
                self.members[i] = Member {
                    active: true,
                    incarnation,
                    created: true,
                    context_id: self.stream.context_id,
                };
                Ok(())
            }
            Ok((Err(fault), _)) => self.fail(i, Some(fault)),
            Err(e) => {
                tracing::error!(filter = %chain.filters[i].name, error = %e, "cannot instantiate filter");
                self.fail(i, None)
            }
        }
    }

    /// Runs one callback of filter `i` on this worker's Vm. `Ok(None)`: the
    /// filter is not (or no longer) taking part.
    fn call<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Vm, &mut Stream) -> Result<R, Fault>,
    ) -> Result<Option<R>, ProxyError> {
        let member = self.members[i];
        if !member.active {
            return Ok(None);
        }
        // Disjoint borrows of two fields: no reference count to bump.
        let (chain, stream) = (&self.chain, &mut self.stream);
        let outcome = with_vm(chain, i, |vm, incarnation| {
            if incarnation != member.incarnation {
                // Another stream broke the Vm that held our context.
                return (None, Vec::new());
            }
            stream.context_id = member.context_id;
            let result = f(vm, stream);
            if vm.has_stream_signals() {
                signals::deliver(chain.id, i, incarnation, vm.take_stream_signals());
            }
            (Some(result), vm.take_http_calls())
        });
        match outcome {
            Ok((Some(Ok(value)), calls)) => {
                if !calls.is_empty() {
                    self.calls.extend(calls.into_iter().map(|c| (i, c)));
                }
                Ok(Some(value))
            }
            Ok((Some(Err(fault)), _)) => self.fail(i, Some(fault)).map(|()| None),
            Ok((None, _)) | Err(_) => {
                self.members[i].created = false;
                self.fail(i, None).map(|()| None)
            }
        }
    }

    /// Records a failure of filter `i` and applies its policy.
    fn fail(&mut self, i: usize, fault: Option<Fault>) -> Result<(), ProxyError> {
        let def = &self.chain.filters[i];
        def.stats.failures.fetch_add(1, Ordering::Relaxed);
        if let Some(fault) = &fault {
            tracing::warn!(route = %self.chain.route, filter = %def.name, error = %fault, "filter failed");
            // Its context died with the Vm.
            self.members[i].created = false;
            replace_vm(&self.chain, i);
        }
        self.members[i].active = false;
        match def.on_error {
            OnError::Allow => Ok(()),
            OnError::Deny => Err(ProxyError::FilterFailed {
                route: self.chain.route.clone(),
                filter: def.name.clone(),
            }),
        }
    }

    /// Request or response headers through the chain, with pauses
    /// resolved (http calls performed and answered).
    ///
    /// # Errors
    /// A denied filter failure, or a pause nothing can resume.
    pub async fn headers(&mut self, side: Side, end_of_stream: bool) -> Result<Flow, ProxyError> {
        let order = self.order(side);
        for i in order {
            let action = self.call(i, |vm, s| match side {
                Side::Request => vm.on_request_headers(s, end_of_stream),
                Side::Response => vm.on_response_headers(s, end_of_stream),
            })?;
            if let Some(flow) = self.settle(i, side, action).await? {
                return Ok(flow);
            }
        }
        Ok(Flow::Continue)
    }

    /// Filter indices in the order a phase visits them (no allocation).
    fn order(&self, side: Side) -> impl Iterator<Item = usize> + use<> {
        let n = self.chain.filters.len();
        (0..n).map(move |k| match side {
            Side::Request => k,
            Side::Response => n - 1 - k,
        })
    }

    /// After a callback: answer http calls, and wait while the filter keeps
    /// the stream paused, until something resumes it or
    /// [`Chain::pause_timeout`] passes. `Some(flow)` ends the phase early.
    async fn settle(
        &mut self,
        i: usize,
        side: Side,
        action: Option<Action>,
    ) -> Result<Option<Flow>, ProxyError> {
        let mut paused = action == Some(Action::Pause);
        let mut deadline = None;
        loop {
            while let Some((_, op)) = self.inbox.as_mut().and_then(|inbox| inbox.try_next()) {
                self.stream.apply(op);
            }
            if self.stream.close_requested {
                return Err(self.closed_by(i));
            }
            if self.stream.local_response.is_some()
                && let Some(local) = self.stream.local_response.take()
            {
                return Ok(Some(Flow::Respond(Box::new(local))));
            }
            let resumed = match side {
                Side::Request => std::mem::take(&mut self.stream.resume_request),
                Side::Response => std::mem::take(&mut self.stream.resume_response),
            };
            if resumed {
                paused = false;
            }
            if !self.calls.is_empty() {
                self.answer_next_call().await?;
                continue;
            }
            if !paused || !self.members[i].active {
                return Ok(None);
            }
            // Paused with nothing of its own pending: wait for a tick, a
            // queue, a root call's answer or another stream to resume it.
            let deadline = *deadline
                .get_or_insert_with(|| tokio::time::Instant::now() + self.chain.pause_timeout);
            let inbox = self.inbox_for(i);
            match tokio::time::timeout_at(deadline, inbox.next()).await {
                Ok(Some((_, op))) => self.stream.apply(op),
                Ok(None) | Err(_) => {
                    return Err(ProxyError::FilterStalled {
                        route: self.chain.route.clone(),
                        filter: self.chain.filters[i].name.clone(),
                    });
                }
            }
        }
    }

    /// This request's inbox, with filter `i`'s context registered in it.
    fn inbox_for(&mut self, i: usize) -> &mut Inbox {
        let key = ContextKey {
            chain: self.chain.id,
            filter: i,
            incarnation: self.members[i].incarnation,
            context: self.members[i].context_id,
        };
        let inbox = self.inbox.get_or_insert_with(|| Box::new(Inbox::new()));
        inbox.register(key);
        inbox
    }

    async fn answer_next_call(&mut self) -> Result<(), ProxyError> {
        let (i, call) = self.calls.remove(0);
        let token = call.token;
        // Boxed: a rare path, kept out of every request's future.
        let response = Box::pin(http_call::perform(&self.chain.upstreams, call)).await;
        self.call(i, |vm, s| {
            vm.on_http_call_response(Some(s), token, response)
        })?;
        Ok(())
    }

    /// A chunk of body through the chain (synchronous: a body callback may
    /// hold data back by pausing, but waits for nothing). Returns what to
    /// forward; empty while a filter buffers. A chunk no filter changed is
    /// passed on as it came: the filters read a copy in the stream's
    /// buffer, which keeps its allocation from chunk to chunk.
    ///
    /// # Errors
    /// A denied filter failure, or a filter closing the stream.
    pub fn body(
        &mut self,
        side: Side,
        chunk: Bytes,
        end_of_stream: bool,
    ) -> Result<BodyStep, ProxyError> {
        let mut data = Chunk::AsGiven(chunk);
        for i in self.order(side) {
            if !self.members[i].active {
                continue;
            }
            // A filter that paused earlier sees everything held so far.
            let held = self.held.get_mut(i).map(std::mem::take).unwrap_or_default();
            let fresh = held.is_empty() && matches!(data, Chunk::AsGiven(_));
            let buf = body_buffer(&mut self.stream, side);
            if !held.is_empty() {
                *buf = held;
                buf.extend_from_slice(data.bytes());
            } else {
                match &mut data {
                    Chunk::Changed(bytes) => *buf = std::mem::take(bytes),
                    Chunk::AsGiven(bytes) => {
                        buf.clear();
                        buf.extend_from_slice(bytes);
                    }
                }
            }
            self.stream.body_changed = false;
            let action = self.call(i, |vm, s| match side {
                Side::Request => vm.on_request_body(s, end_of_stream),
                Side::Response => vm.on_response_body(s, end_of_stream),
            })?;
            if self.stream.close_requested {
                return Err(self.closed_by(i));
            }
            if self.stream.local_response.is_some()
                && let Some(local) = self.stream.local_response.take()
            {
                return Ok(BodyStep::Respond(Box::new(local)));
            }
            let unchanged = fresh && !self.stream.body_changed;
            let buf = body_buffer(&mut self.stream, side);
            if action == Some(Action::Pause) && !end_of_stream {
                let body = std::mem::take(buf);
                if self.held.len() < self.members.len() {
                    self.held.resize(self.members.len(), Vec::new());
                }
                self.held[i] = body;
                return Ok(BodyStep::Forward(Bytes::new()));
            }
            if unchanged {
                // The buffer is only valid during the callback.
                buf.clear();
            } else {
                data = Chunk::Changed(std::mem::take(buf));
            }
        }
        Ok(BodyStep::Forward(match data {
            Chunk::AsGiven(bytes) => bytes,
            Chunk::Changed(bytes) => Bytes::from(bytes),
        }))
    }

    /// Trailers met while streaming a body: each filter sees and may edit
    /// them; a pause cannot be waited for here and counts as continue. A
    /// local response a filter sends here is left in the stream for the
    /// caller.
    ///
    /// # Errors
    /// A denied filter failure, or a filter closing the stream.
    pub fn trailers_now(
        &mut self,
        side: Side,
        trailers: &http::HeaderMap,
    ) -> Result<http::HeaderMap, ProxyError> {
        let map = match side {
            Side::Request => &mut self.stream.request_trailers,
            Side::Response => &mut self.stream.response_trailers,
        };
        map.clear();
        for (name, value) in trailers {
            map.add(name.as_str(), value.as_bytes());
        }
        for i in self.order(side) {
            self.call(i, |vm, s| match side {
                Side::Request => vm.on_request_trailers(s),
                Side::Response => vm.on_response_trailers(s),
            })?;
            if self.stream.close_requested {
                return Err(self.closed_by(i));
            }
            if self.stream.local_response.is_some() {
                break;
            }
        }
        let map = match side {
            Side::Request => &self.stream.request_trailers,
            Side::Response => &self.stream.response_trailers,
        };
        let mut out = http::HeaderMap::new();
        for (name, value) in map.iter() {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_bytes(value),
            ) {
                out.append(n, v);
            }
        }
        Ok(out)
    }

    /// `on_log` then `on_done`/`on_delete` in every filter that has a
    /// context, in one borrow of its Vm (and one entry into the guest,
    /// [`wasmgate_abi::Vm::end_stream`]). Called once; dropping an
    /// unfinished run does it too.
    pub fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        for i in 0..self.members.len() {
            let member = self.members[i];
            if !member.created {
                continue;
            }
            let (chain, stream) = (&self.chain, &mut self.stream);
            let logged = with_vm(chain, i, |vm, incarnation| {
                if incarnation != member.incarnation {
                    // Another stream broke the Vm that held our context.
                    return None;
                }
                stream.context_id = member.context_id;
                if member.active {
                    return Some(vm.end_stream(stream));
                }
                // A filter skipped after a failure is not logged, but its
                // context is still finished (its failure counted already).
                let _ = vm.finish_stream(stream);
                Some(Ok(()))
            });
            // Counted (and a broken Vm replaced) like a failure in any other
            // callback; the request is over, so there is nothing to deny.
            match logged {
                Ok(Some(Ok(()))) => {}
                Ok(Some(Err(fault))) => {
                    let _ = self.fail(i, Some(fault));
                }
                Ok(None) | Err(_) if member.active => {
                    self.members[i].created = false;
                    let _ = self.fail(i, None);
                }
                Ok(None) | Err(_) => {}
            }
        }
    }
}

impl Drop for FilterRun {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A body chunk on its way through the chain.
enum Chunk {
    /// As it came (no filter changed it so far).
    AsGiven(Bytes),
    /// As a filter left it.
    Changed(Vec<u8>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::AsGiven(bytes) => bytes,
            Chunk::Changed(bytes) => bytes,
        }
    }
}

/// The stream's buffer for `side`'s body, as the body callbacks see it.
fn body_buffer(stream: &mut Stream, side: Side) -> &mut Vec<u8> {
    match side {
        Side::Request => &mut stream.request_body,
        Side::Response => &mut stream.response_body,
    }
}

/// What a body chunk became.
#[derive(Debug)]
pub enum BodyStep {
    /// Bytes to pass on (maybe empty while buffering).
    Forward(Bytes),
    /// A filter answered instead.
    Respond(Box<wasmgate_abi::LocalResponse>),
}
