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
//! What a filter's callbacks mean for the request (pauses, resumes, local
//! responses, closes, body buffering) is decided by its
//! [`wasmgate_abi::StreamDriver`], whose rules the test harness follows
//! too; this module does the I/O and the waiting the driver asks for. A
//! filter that pauses a phase keeps the request waiting for whatever can
//! resume it: the answer to an http call of its own, or an operation
//! addressed to its context from elsewhere (`on_tick`, `on_queue_ready`, a
//! root-context call's answer, another stream's callback; see `signals`),
//! for at most [`Chain::pause_timeout`]; then it is a 504.
//!
//! A filter with `allow_on_headers_stop_iteration` (Envoy's key) that pauses
//! the headers of a message with a body is not waited for but fed the body
//! ([`FilterRun::headers_holding_body`]): the headers go on when it resumes,
//! followed by the body it let pass.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use wasmgate_abi::{
    Action, BodyNext, Fault, HttpCallRequest, LocalResponse, Next, Plugin, Properties, Stream,
    StreamDriver, Vm,
};

pub use wasmgate_abi::Side;

use http_body_util::BodyExt;

use crate::{
    body::BoxError, config::OnError, error::ProxyError, metrics::FilterStats,
    stream_map::PooledStream, upstream::Upstream,
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
    /// Body callbacks while this filter holds the headers (Envoy's
    /// `allow_on_headers_stop_iteration`).
    pub allow_on_headers_stop_iteration: bool,
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
    /// A filter takes body callbacks while it holds the headers
    /// ([`FilterDef::allow_on_headers_stop_iteration`]).
    pub holds_body: bool,
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

/// Per-filter state of one request.
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
    /// What this filter's callbacks mean for the request, and the body bytes
    /// it holds back.
    driver: StreamDriver,
}

impl Member {
    fn new() -> Self {
        Self {
            active: true,
            incarnation: 0,
            created: false,
            context_id: 0,
            driver: StreamDriver::new(),
        }
    }
}

/// One request's trip through a chain.
pub struct FilterRun {
    chain: Arc<Chain>,
    /// What the filters see and edit.
    pub stream: PooledStream,
    members: Vec<Member>,
    /// Http calls dispatched and not answered yet, with the filter index.
    calls: Vec<(usize, HttpCallRequest)>,
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
        let holds_body = filters.iter().any(|f| f.allow_on_headers_stop_iteration);
        Self {
            id: NEXT_CHAIN.fetch_add(1, Ordering::Relaxed),
            route,
            holds_body,
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
            members: (0..n).map(|_| Member::new()).collect(),
            calls: Vec::new(),
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
                let member = &mut self.members[i];
                member.active = true;
                member.incarnation = incarnation;
                member.created = true;
                member.context_id = self.stream.context_id;
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
        let Member {
            active,
            incarnation: member_incarnation,
            context_id,
            ..
        } = self.members[i];
        if !active {
            return Ok(None);
        }
        // Disjoint borrows of three fields: no reference count to bump, and
        // the http calls a callback dispatched go straight to `calls` (most
        // dispatch none: then no vector is moved or dropped).
        let (chain, stream, calls) = (&self.chain, &mut self.stream, &mut self.calls);
        let outcome = with_vm(chain, i, |vm, incarnation| {
            if incarnation != member_incarnation {
                // Another stream broke the Vm that held our context.
                return None;
            }
            stream.context_id = context_id;
            let result = f(vm, stream);
            if vm.has_stream_signals() {
                signals::deliver(chain.id, i, incarnation, vm.take_stream_signals());
            }
            if vm.has_http_calls() {
                let dispatched = vm.take_http_calls();
                // A failed callback's calls are dropped with its context.
                if result.is_ok() {
                    calls.extend(dispatched.into_iter().map(|c| (i, c)));
                }
            }
            Some(result)
        });
        match outcome {
            Ok(Some(Ok(value))) => Ok(Some(value)),
            Ok(Some(Err(fault))) => self.fail(i, Some(fault)).map(|()| None),
            Ok(None) | Err(_) => {
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
        self.members[i].driver.drop_out();
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
        match self.headers_from(side, 0, end_of_stream, false).await? {
            Phase::Done(flow) => Ok(flow),
            // Not asked to hold.
            Phase::Held(_) => Ok(Flow::Continue),
        }
    }

    /// Headers through the filters at positions `from..` of `side`'s
    /// order. With `may_hold`, a filter that pauses them and takes body
    /// callbacks meanwhile ([`FilterDef::allow_on_headers_stop_iteration`])
    /// ends the phase as [`Phase::Held`] instead of being waited for.
    async fn headers_from(
        &mut self,
        side: Side,
        from: usize,
        end_of_stream: bool,
        may_hold: bool,
    ) -> Result<Phase, ProxyError> {
        for k in from..self.members.len() {
            let i = self.index(side, k);
            let action = self.call(i, |vm, s| match side {
                Side::Request => vm.on_request_headers(s, end_of_stream),
                Side::Response => vm.on_response_headers(s, end_of_stream),
            })?;
            if let Some(action) = action {
                self.members[i].driver.after_headers(side, action);
            }
            let hold =
                may_hold && !end_of_stream && self.chain.filters[i].allow_on_headers_stop_iteration;
            let settled = match self.settle_now(i, side, hold)? {
                Some(settled) => settled,
                None => self.settle(i, side, hold).await?,
            };
            match settled {
                Settled::Go => {}
                Settled::Flow(flow) => return Ok(Phase::Done(flow)),
                Settled::Held => return Ok(Phase::Held(k)),
            }
        }
        Ok(Phase::Done(Flow::Continue))
    }

    /// Headers through the chain while the body is still to come, for a
    /// chain with a filter that may hold the headers and see the body
    /// first (Envoy's `allow_on_headers_stop_iteration`). While filter `k`
    /// holds them, `body`'s frames are read and go through the filters up
    /// to `k` (what `k` lets pass is kept, within the body's own limit);
    /// when `k` resumes (`Continue` from a body callback, or
    /// `proxy_continue_stream`), the headers go on to the next filters,
    /// then what was kept. The whole hold is bounded by
    /// [`Chain::pause_timeout`]. A chain where no filter holds behaves as
    /// [`Self::headers`].
    ///
    /// # Errors
    /// A denied filter failure, a pause nothing resumed, or `read_error`
    /// of a body that failed.
    pub async fn headers_holding_body<B>(
        &mut self,
        side: Side,
        body: &mut B,
        read_error: impl Fn(BoxError) -> ProxyError,
    ) -> Result<Headed, ProxyError>
    where
        B: http_body::Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        let n = self.members.len();
        // Headers resume at position `from`; `passed` went through the
        // filters before position `at`.
        let (mut from, mut at) = (0, 0);
        let mut passed = Bytes::new();
        let mut done = false;
        let mut trailers = None;
        let mut deadline = None;
        loop {
            let k = match self.headers_from(side, from, false, true).await? {
                Phase::Done(Flow::Respond(local)) => return Ok(Headed::Respond(local)),
                Phase::Done(Flow::Continue) => break,
                Phase::Held(k) => k,
            };
            let i = self.index(side, k);
            let deadline = *deadline
                .get_or_insert_with(|| tokio::time::Instant::now() + self.chain.pause_timeout);
            // What passed the earlier filters meets this one first.
            let mut step = None;
            if at <= k && (!passed.is_empty() || done) {
                step = Some(self.body_at(side, at..k + 1, std::mem::take(&mut passed), done)?);
            }
            let released = loop {
                match step.take() {
                    Some(BodyOut::Passed(bytes)) => break bytes,
                    Some(BodyOut::Respond(local)) => return Ok(Headed::Respond(local)),
                    Some(BodyOut::Held) | None => {}
                }
                match self.next(i, side, !done) {
                    Next::Close => return Err(self.closed_by(i)),
                    Next::Respond => return Ok(Headed::Respond(self.take_local())),
                    Next::Continue => break self.take_held(i, side),
                    Next::AnswerHttpCall => {
                        self.answer_next_call().await?;
                        continue;
                    }
                    Next::WaitForSignal => {
                        // Nothing more to read: wait for it as for any pause.
                        if let Settled::Flow(Flow::Respond(local)) =
                            self.settle(i, side, false).await?
                        {
                            return Ok(Headed::Respond(local));
                        }
                        break self.take_held(i, side);
                    }
                    Next::FeedBody => {}
                }
                let inbox = self.inbox_for(i);
                let event = tokio::select! {
                    frame = body.frame() => Event::Frame(frame),
                    op = inbox.next() => Event::Op(op),
                    () = tokio::time::sleep_until(deadline) => Event::Timeout,
                };
                let (data, eos) = match event {
                    Event::Op(Some((_, op))) => {
                        self.stream.apply(op);
                        continue;
                    }
                    Event::Op(None) => continue,
                    Event::Timeout => return Err(self.stalled(i)),
                    Event::Frame(Some(Err(e))) => return Err(read_error(e.into())),
                    Event::Frame(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => (data, body.is_end_stream()),
                        Err(frame) => match frame.into_trailers() {
                            // Their callbacks run once the headers went
                            // through every filter.
                            Ok(t) => {
                                trailers = Some(t);
                                (Bytes::new(), true)
                            }
                            Err(_) => continue,
                        },
                    },
                    Event::Frame(None) => (Bytes::new(), true),
                };
                done = eos;
                if data.is_empty() && !eos {
                    continue;
                }
                step = Some(self.body_at(side, 0..k + 1, data, eos)?);
            };
            passed = released;
            (from, at) = (k + 1, k + 1);
        }
        if at > 0 && at < n && (!passed.is_empty() || done) {
            match self.body_at(side, at..n, std::mem::take(&mut passed), done)? {
                BodyOut::Passed(bytes) => passed = bytes,
                // A later filter buffers it; the rest of the body flushes it.
                BodyOut::Held => {}
                BodyOut::Respond(local) => return Ok(Headed::Respond(local)),
            }
        }
        if let Some(t) = trailers.take() {
            let t = self.trailers_now(side, &t)?;
            if let Some(local) = self.stream.take_local_response() {
                return Ok(Headed::Respond(Box::new(local)));
            }
            trailers = Some(t);
        }
        Ok(Headed::Continue(HeldBody {
            prefix: passed,
            done,
            trailers,
        }))
    }

    /// What filter `i` held back of `side`'s body, released.
    fn take_held(&mut self, i: usize, side: Side) -> Bytes {
        Bytes::from(self.members[i].driver.take_held(side))
    }

    /// The local response a filter's driver saw (it said [`Next::Respond`]).
    fn take_local(&mut self) -> Box<LocalResponse> {
        let local = self.stream.take_local_response();
        Box::new(local.expect("the driver saw a local response"))
    }

    /// Filter `i` kept the request paused past [`Chain::pause_timeout`].
    fn stalled(&self, i: usize) -> ProxyError {
        ProxyError::FilterStalled {
            route: self.chain.route.clone(),
            filter: self.chain.filters[i].name.clone(),
        }
    }

    /// The filter at position `k` of `side`'s order.
    fn index(&self, side: Side, k: usize) -> usize {
        match side {
            Side::Request => k,
            Side::Response => self.members.len() - 1 - k,
        }
    }

    /// After a headers callback of filter `i`: does what its driver says
    /// (answers http calls, waits while the filter keeps the stream paused)
    /// until it may go on, for at most [`Chain::pause_timeout`]; with
    /// `hold`, a pause nothing of the filter's own resolves is not waited
    /// for but reported as [`Settled::Held`].
    async fn settle(&mut self, i: usize, side: Side, hold: bool) -> Result<Settled, ProxyError> {
        let mut deadline = None;
        loop {
            match self.next(i, side, hold) {
                Next::Close => return Err(self.closed_by(i)),
                Next::Respond => return Ok(Settled::Flow(Flow::Respond(self.take_local()))),
                Next::AnswerHttpCall => self.answer_next_call().await?,
                Next::Continue => return Ok(Settled::Go),
                Next::FeedBody => return Ok(Settled::Held),
                Next::WaitForSignal => {
                    // Paused with nothing of its own pending: wait for a tick,
                    // a queue, a root call's answer or another stream to act.
                    let deadline = *deadline.get_or_insert_with(|| {
                        tokio::time::Instant::now() + self.chain.pause_timeout
                    });
                    let inbox = self.inbox_for(i);
                    match tokio::time::timeout_at(deadline, inbox.next()).await {
                        Ok(Some((_, op))) => self.stream.apply(op),
                        Ok(None) | Err(_) => return Err(self.stalled(i)),
                    }
                }
            }
        }
    }

    /// [`Self::settle`] without waiting, as most callbacks leave it: what
    /// filter `i`'s driver says now, or `None` when an http call is to be
    /// answered or a pause waited for (then `settle` does both). A
    /// synchronous step, so that a filter that lets the headers go costs
    /// no poll of `settle`'s future (about 50 instructions a phase).
    fn settle_now(
        &mut self,
        i: usize,
        side: Side,
        hold: bool,
    ) -> Result<Option<Settled>, ProxyError> {
        Ok(Some(match self.next(i, side, hold) {
            Next::Close => return Err(self.closed_by(i)),
            Next::Respond => Settled::Flow(Flow::Respond(self.take_local())),
            Next::Continue => Settled::Go,
            Next::FeedBody => Settled::Held,
            Next::AnswerHttpCall | Next::WaitForSignal => return Ok(None),
        }))
    }

    /// Applies the operations that arrived for this request, then asks
    /// filter `i`'s driver what to do with `side`'s headers.
    fn next(&mut self, i: usize, side: Side, body_to_feed: bool) -> Next {
        while let Some((_, op)) = self.inbox.as_mut().and_then(|inbox| inbox.try_next()) {
            self.stream.apply(op);
        }
        let calls_pending = !self.calls.is_empty();
        self.members[i]
            .driver
            .next(&mut self.stream, side, calls_pending, body_to_feed)
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
        let all = 0..self.members.len();
        Ok(match self.body_at(side, all, chunk, end_of_stream)? {
            BodyOut::Passed(bytes) => BodyStep::Forward(bytes),
            BodyOut::Held => BodyStep::Forward(Bytes::new()),
            BodyOut::Respond(local) => BodyStep::Respond(local),
        })
    }

    /// A chunk of body through the filters at positions `range` of
    /// `side`'s order. A filter's driver decides whether it holds the chunk
    /// back: at the end of the stream only a filter that holds the headers
    /// does (and is waited for); for the others a pause there counts as
    /// continue.
    fn body_at(
        &mut self,
        side: Side,
        range: std::ops::Range<usize>,
        chunk: Bytes,
        end_of_stream: bool,
    ) -> Result<BodyOut, ProxyError> {
        let mut data = Chunk::AsGiven(chunk);
        for k in range {
            let i = self.index(side, k);
            if !self.members[i].active {
                continue;
            }
            let (driver, stream) = (&mut self.members[i].driver, &mut self.stream);
            // A filter that paused earlier sees everything held so far.
            let fresh = match &mut data {
                Chunk::AsGiven(bytes) => driver.load_body(stream, side, bytes),
                Chunk::Changed(bytes) => {
                    driver.load_body_owned(stream, side, std::mem::take(bytes));
                    false
                }
            };
            let action = self.call(i, |vm, s| match side {
                Side::Request => vm.on_request_body(s, end_of_stream),
                Side::Response => vm.on_response_body(s, end_of_stream),
            })?;
            let action = action.unwrap_or(Action::Continue);
            let (driver, stream) = (&mut self.members[i].driver, &mut self.stream);
            match driver.after_body(stream, side, action, end_of_stream) {
                BodyNext::Close => return Err(self.closed_by(i)),
                BodyNext::Respond => return Ok(BodyOut::Respond(self.take_local())),
                BodyNext::Held => return Ok(BodyOut::Held),
                // The buffer is only valid during the callback.
                BodyNext::Pass { changed: false } if fresh => stream.body_mut(side).clear(),
                BodyNext::Pass { .. } => {
                    data = Chunk::Changed(std::mem::take(stream.body_mut(side)));
                }
            }
        }
        Ok(BodyOut::Passed(match data {
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
        for k in 0..self.members.len() {
            let i = self.index(side, k);
            self.call(i, |vm, s| match side {
                Side::Request => vm.on_request_trailers(s),
                Side::Response => vm.on_response_trailers(s),
            })?;
            match self.members[i].driver.after_trailers(&self.stream) {
                Next::Close => return Err(self.closed_by(i)),
                Next::Respond => break,
                _ => {}
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
            let Member {
                active,
                created,
                incarnation: member_incarnation,
                context_id,
                ..
            } = self.members[i];
            if !created {
                continue;
            }
            let (chain, stream) = (&self.chain, &mut self.stream);
            let logged = with_vm(chain, i, |vm, incarnation| {
                if incarnation != member_incarnation {
                    // Another stream broke the Vm that held our context.
                    return None;
                }
                stream.context_id = context_id;
                if active {
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
                Ok(None) | Err(_) if active => {
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

/// How a headers phase ended.
enum Phase {
    /// Through every filter, or answered.
    Done(Flow),
    /// The filter at this position holds the headers and takes the body.
    Held(usize),
}

/// A callback's outcome once settled.
enum Settled {
    /// On to the next filter.
    Go,
    /// The phase ends here.
    Flow(Flow),
    /// Paused, and to be fed the body rather than waited for.
    Held,
}

/// What a chunk of body became in [`FilterRun::body_at`].
enum BodyOut {
    /// Through every filter of the range.
    Passed(Bytes),
    /// Held back by a filter.
    Held,
    /// A filter answered.
    Respond(Box<wasmgate_abi::LocalResponse>),
}

/// What a wait in [`FilterRun::headers_holding_body`] was ended by.
enum Event<F> {
    Frame(Option<F>),
    Op(Option<(usize, wasmgate_abi::StreamOp)>),
    Timeout,
}

/// Where [`FilterRun::headers_holding_body`] leaves the message.
#[derive(Debug)]
pub enum Headed {
    /// A filter answered.
    Respond(Box<wasmgate_abi::LocalResponse>),
    /// The headers went through every filter.
    Continue(HeldBody),
}

/// The body read while a filter held the headers.
#[derive(Debug)]
pub struct HeldBody {
    /// Bytes that went through every filter already, to send first.
    pub prefix: Bytes,
    /// The body was read to its end: `prefix` (and `trailers`) is all of it.
    pub done: bool,
    /// Trailers met while reading, through the filters already.
    pub trailers: Option<http::HeaderMap>,
}

/// What a body chunk became.
#[derive(Debug)]
pub enum BodyStep {
    /// Bytes to pass on (maybe empty while buffering).
    Forward(Bytes),
    /// A filter answered instead.
    Respond(Box<wasmgate_abi::LocalResponse>),
}
