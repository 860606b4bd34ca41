//! [`HttpStream`]: one HTTP request/response driven through a filter, callback by callback,
//! with the resulting headers, bodies, local response and http calls readable in between.

use wasmgate_abi::{
    Action, BodyNext, HeaderMap, HttpCallRequest, HttpCallResponse, LocalResponse, Next, Side,
    Stream, StreamDriver,
};

use crate::error::{Error, Result};
use crate::filter::Filter;

/// One HTTP stream context of a [`Filter`]. Call the phases in the order a proxy would
/// (request headers, body, trailers, response headers, body, trailers, log, finish); each
/// returns what the filter answered, and the accessors show the state after it.
///
/// The stream follows the gateway's rules, from the same [`StreamDriver`]: pauses,
/// resumes, local responses, closes and body buffering mean here what they mean there.
/// Bodies behave as in Envoy: a body callback sees the chunk passed in, plus everything
/// buffered while the filter answered [`Action::Pause`] to earlier chunks. Data the filter
/// lets through is what the upstream (or the client) receives: read it back with
/// [`HttpStream::request_body_sent`] and [`HttpStream::response_body_sent`]. A pause at
/// the end of a body passes it, unless the filter still holds the headers; a local
/// response or a close lets nothing through. [`HttpStream::next`] says what a proxy would
/// do next.
///
/// Dropping a stream that was not finished runs `on_done`/`on_delete` (errors ignored),
/// as a proxy does when a stream ends.
pub struct HttpStream {
    filter: Filter,
    stream: Stream,
    generation: u64,
    finished: bool,
    driver: StreamDriver,
    request_body_sent: Vec<u8>,
    response_body_sent: Vec<u8>,
}

impl HttpStream {
    pub(crate) fn create(filter: Filter) -> Result<HttpStream> {
        let mut stream = Stream::new();
        let generation = {
            let mut inner = filter.borrow_mut();
            stream.properties = inner.properties.clone();
            inner.vm()?;
            let generation = inner.generation;
            inner.call(|vm| vm.create_stream(&mut stream))?;
            inner.live_streams.insert(stream.context_id);
            generation
        };
        Ok(HttpStream {
            filter,
            stream,
            generation,
            finished: false,
            driver: StreamDriver::new(),
            request_body_sent: Vec::new(),
            response_body_sent: Vec::new(),
        })
    }

    /// Runs one stream callback on this stream's instance. The caller records its outcome in
    /// the driver, then [`Self::receive`]s.
    fn run<T>(
        &mut self,
        f: impl FnOnce(&mut wasmgate_abi::Vm, &mut Stream) -> Result<T, wasmgate_abi::Fault>,
    ) -> Result<T> {
        let context_id = self.stream.context_id;
        if self.finished {
            return Err(Error::StreamGone {
                context_id,
                reason: "it was already finished",
            });
        }
        let mut inner = self.filter.borrow_mut();
        let vm = inner.vm_of(self.generation, context_id)?;
        let result = f(vm, &mut self.stream);
        let result = inner.finish_call(result);
        if result.is_err() {
            self.finished = true;
        }
        drop(inner);
        result
    }

    /// Applies what other callbacks addressed to this stream after
    /// `proxy_set_effective_context` (a resume, a close or a local response from `on_tick`,
    /// `on_queue_ready`, a root http call's answer or another stream), as a proxy would;
    /// returns how many operations that was. Every callback of this stream does it too;
    /// call it after [`crate::Filter::tick`] and the like.
    pub fn receive(&mut self) -> usize {
        let signals = match self.filter.inner.try_borrow_mut() {
            Ok(mut inner) if inner.generation == self.generation => {
                inner.take_signals(self.stream.context_id)
            }
            _ => Vec::new(),
        };
        let n = signals.len();
        for signal in signals {
            self.stream.apply(signal.op);
        }
        self.driver.take_resumes(&mut self.stream);
        n
    }

    /// What a proxy does next with `side`'s headers phase, by the rules the gateway follows
    /// ([`StreamDriver::next`]): go on, send [`HttpStream::local_response`], reset, answer
    /// one of [`HttpStream::pending_http_calls`], feed the filter the body, or wait for a
    /// signal (a tick, a queue, another stream). `feed_body`: the proxy would feed this
    /// filter the body while it holds the headers (Envoy's `allow_on_headers_stop_iteration`,
    /// and a body to come).
    pub fn next(&mut self, side: Side, feed_body: bool) -> Next {
        self.receive();
        let calls_pending = !self.pending_http_calls().is_empty();
        self.driver
            .next(&mut self.stream, side, calls_pending, feed_body)
    }

    /// Runs a headers callback of `side` and records its action.
    fn headers_phase(
        &mut self,
        side: Side,
        f: impl FnOnce(&mut wasmgate_abi::Vm, &mut Stream) -> Result<Action, wasmgate_abi::Fault>,
    ) -> Result<Action> {
        let action = self.run(f)?;
        self.driver.after_headers(side, action);
        self.receive();
        Ok(action)
    }

    /// Runs a body callback of `side` on `chunk` (after what the filter held back) and adds
    /// what passes to `side`'s sent bytes.
    fn body_phase(&mut self, side: Side, chunk: &[u8], end_of_stream: bool) -> Result<Action> {
        self.driver.load_body(&mut self.stream, side, chunk);
        let action = self.run(|vm, s| match side {
            Side::Request => vm.on_request_body(s, end_of_stream),
            Side::Response => vm.on_response_body(s, end_of_stream),
        })?;
        let next = self
            .driver
            .after_body(&mut self.stream, side, action, end_of_stream);
        if let BodyNext::Pass { .. } = next {
            let (sent, body) = match side {
                Side::Request => (&mut self.request_body_sent, &self.stream.request_body),
                Side::Response => (&mut self.response_body_sent, &self.stream.response_body),
            };
            sent.extend_from_slice(body);
        }
        self.receive();
        Ok(action)
    }

    /// Runs a trailers callback (a pause there is not waited for).
    fn trailers_phase(
        &mut self,
        f: impl FnOnce(&mut wasmgate_abi::Vm, &mut Stream) -> Result<Action, wasmgate_abi::Fault>,
    ) -> Result<Action> {
        let action = self.run(f)?;
        self.receive();
        Ok(action)
    }

    // === request phase ===

    /// Delivers the request headers (`proxy_on_request_headers`). Include the pseudo
    /// headers a proxy would (`:method`, `:path`, `:authority`, `:scheme`); names are
    /// stored in lower case.
    ///
    /// # Errors
    ///
    /// [`Error::Fault`] if the callback fails; [`Error::StreamGone`] if the stream is
    /// finished or its instance was discarded.
    pub fn request_headers<I, K, V>(&mut self, headers: I, end_of_stream: bool) -> Result<Action>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<Vec<u8>>,
    {
        self.stream.request_headers = lowercase(headers);
        self.headers_phase(Side::Request, |vm, s| {
            vm.on_request_headers(s, end_of_stream)
        })
    }

    /// Delivers a request body chunk (`proxy_on_request_body`).
    ///
    /// # Errors
    ///
    /// As [`HttpStream::request_headers`].
    pub fn request_body(&mut self, chunk: impl AsRef<[u8]>, end_of_stream: bool) -> Result<Action> {
        self.body_phase(Side::Request, chunk.as_ref(), end_of_stream)
    }

    /// Delivers the request trailers (`proxy_on_request_trailers`).
    ///
    /// # Errors
    ///
    /// As [`HttpStream::request_headers`].
    pub fn request_trailers<I, K, V>(&mut self, trailers: I) -> Result<Action>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<Vec<u8>>,
    {
        self.stream.request_trailers = lowercase(trailers);
        self.trailers_phase(|vm, s| vm.on_request_trailers(s))
    }

    // === response phase ===

    /// Delivers the response headers (`proxy_on_response_headers`); include `:status`.
    ///
    /// # Errors
    ///
    /// As [`HttpStream::request_headers`].
    pub fn response_headers<I, K, V>(&mut self, headers: I, end_of_stream: bool) -> Result<Action>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<Vec<u8>>,
    {
        self.stream.response_headers = lowercase(headers);
        self.headers_phase(Side::Response, |vm, s| {
            vm.on_response_headers(s, end_of_stream)
        })
    }

    /// Delivers a response body chunk (`proxy_on_response_body`).
    ///
    /// # Errors
    ///
    /// As [`HttpStream::request_headers`].
    pub fn response_body(
        &mut self,
        chunk: impl AsRef<[u8]>,
        end_of_stream: bool,
    ) -> Result<Action> {
        self.body_phase(Side::Response, chunk.as_ref(), end_of_stream)
    }

    /// Delivers the response trailers (`proxy_on_response_trailers`).
    ///
    /// # Errors
    ///
    /// As [`HttpStream::request_headers`].
    pub fn response_trailers<I, K, V>(&mut self, trailers: I) -> Result<Action>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<Vec<u8>>,
    {
        self.stream.response_trailers = lowercase(trailers);
        self.trailers_phase(|vm, s| vm.on_response_trailers(s))
    }

    // === end of stream ===

    /// Runs `proxy_on_log` (the access-log phase; maps are read-only).
    ///
    /// # Errors
    ///
    /// As [`HttpStream::request_headers`].
    pub fn log(&mut self) -> Result<()> {
        self.run(|vm, s| vm.on_log(s))?;
        self.receive();
        Ok(())
    }

    /// Ends the stream: `proxy_on_done`, then `proxy_on_delete`. The stream takes no more
    /// callbacks afterwards; its unanswered http calls are dropped.
    ///
    /// # Errors
    ///
    /// As [`HttpStream::request_headers`].
    pub fn finish(&mut self) -> Result<()> {
        let result = self.run(|vm, s| vm.finish_stream(s));
        self.finished = true;
        self.forget();
        result
    }

    /// Removes this stream from the filter's books (live streams, pending calls).
    fn forget(&mut self) {
        if let Ok(mut inner) = self.filter.inner.try_borrow_mut() {
            let id = self.stream.context_id;
            if inner.generation == self.generation {
                inner.live_streams.remove(&id);
                inner.pending_calls.retain(|c| c.context_id != id);
                inner.signals.retain(|s| s.context_id != id);
            }
        }
    }

    // === http calls ===

    /// The http calls this stream dispatched that are not answered yet, oldest first.
    pub fn pending_http_calls(&self) -> Vec<HttpCallRequest> {
        let id = self.stream.context_id;
        let inner = self.filter.borrow();
        inner
            .pending_calls
            .iter()
            .filter(|c| c.context_id == id)
            .cloned()
            .collect()
    }

    /// Answers one of this stream's http calls (`proxy_on_http_call_response`). Build the
    /// answer with [`crate::Reply`]. If the filter resumes the request in that callback,
    /// [`HttpStream::is_request_paused`] becomes false.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] if this stream has no such pending call; [`Error::Fault`] if the
    /// callback fails.
    pub fn respond_http_call(
        &mut self,
        token: u32,
        response: impl Into<HttpCallResponse>,
    ) -> Result<()> {
        self.answer(token, Some(response.into()))
    }

    /// Fails one of this stream's http calls: the filter is told the call got no response
    /// (as on a connection failure or timeout).
    ///
    /// # Errors
    ///
    /// As [`HttpStream::respond_http_call`].
    pub fn fail_http_call(&mut self, token: u32) -> Result<()> {
        self.answer(token, None)
    }

    fn answer(&mut self, token: u32, response: Option<HttpCallResponse>) -> Result<()> {
        let id = self.stream.context_id;
        {
            let mut inner = self.filter.borrow_mut();
            let call = inner.take_call(token)?;
            if call.context_id != id {
                let owner = call.context_id;
                inner.pending_calls.push(call);
                return Err(Error::Usage(format!(
                    "http call {token} belongs to context {owner}, not to stream {id}"
                )));
            }
        }
        self.run(|vm, s| vm.on_http_call_response(Some(s), token, response))?;
        self.receive();
        Ok(())
    }

    // === what the filter did ===

    /// The stream's context id.
    pub fn context_id(&self) -> u32 {
        self.stream.context_id
    }

    /// The first value of request header `name` as text (None if absent or not UTF-8).
    pub fn request_header(&self, name: &str) -> Option<&str> {
        self.stream.request_headers.get_str(name)
    }

    /// Every value of request header `name`, in order.
    pub fn request_header_all(&self, name: &str) -> Vec<&[u8]> {
        all_values(&self.stream.request_headers, name)
    }

    /// The request headers as the filter left them (what the upstream would receive).
    pub fn request_headers_map(&self) -> &HeaderMap {
        &self.stream.request_headers
    }

    /// The first value of request trailer `name` as text.
    pub fn request_trailer(&self, name: &str) -> Option<&str> {
        self.stream.request_trailers.get_str(name)
    }

    /// The request trailers as the filter left them.
    pub fn request_trailers_map(&self) -> &HeaderMap {
        &self.stream.request_trailers
    }

    /// The request body buffer after the last body callback (the last chunk plus whatever
    /// was buffered by pausing, as modified by the filter).
    pub fn request_body_buffer(&self) -> &[u8] {
        &self.stream.request_body
    }

    /// All request body bytes the filter let through so far (what the upstream receives).
    pub fn request_body_sent(&self) -> &[u8] {
        &self.request_body_sent
    }

    /// The first value of response header `name` as text.
    pub fn response_header(&self, name: &str) -> Option<&str> {
        self.stream.response_headers.get_str(name)
    }

    /// Every value of response header `name`, in order.
    pub fn response_header_all(&self, name: &str) -> Vec<&[u8]> {
        all_values(&self.stream.response_headers, name)
    }

    /// The response headers as the filter left them (what the client would receive).
    pub fn response_headers_map(&self) -> &HeaderMap {
        &self.stream.response_headers
    }

    /// The first value of response trailer `name` as text.
    pub fn response_trailer(&self, name: &str) -> Option<&str> {
        self.stream.response_trailers.get_str(name)
    }

    /// The response trailers as the filter left them.
    pub fn response_trailers_map(&self) -> &HeaderMap {
        &self.stream.response_trailers
    }

    /// The response body buffer after the last body callback.
    pub fn response_body_buffer(&self) -> &[u8] {
        &self.stream.response_body
    }

    /// All response body bytes the filter let through so far (what the client receives).
    pub fn response_body_sent(&self) -> &[u8] {
        &self.response_body_sent
    }

    /// The local response the filter sent (`proxy_send_local_response`), if any.
    pub fn local_response(&self) -> Option<&LocalResponse> {
        self.stream.local_response()
    }

    /// Takes the local response to send it, as a proxy does: the filter may then send
    /// another. The gateway sends one from a request phase back through the filter's
    /// response callbacks (its status and headers, then its body in one piece), where a
    /// second one replaces it.
    pub fn take_local_response(&mut self) -> Option<LocalResponse> {
        self.stream.take_local_response()
    }

    /// True while the request is paused: the filter paused its headers, or held back the
    /// last body chunk, and has not resumed (`proxy_continue_stream`, or a body callback's
    /// `Continue`).
    pub fn is_request_paused(&self) -> bool {
        self.driver.is_paused(Side::Request)
    }

    /// True while the response is paused (see [`HttpStream::is_request_paused`]).
    pub fn is_response_paused(&self) -> bool {
        self.driver.is_paused(Side::Response)
    }

    /// True if the filter asked to close (reset) the stream (`proxy_close_stream`).
    pub fn close_requested(&self) -> bool {
        self.stream.close_requested()
    }

    /// A property of this stream (set by [`HttpStream::set_property`],
    /// [`crate::Harness::property`], or by the filter with `proxy_set_property`).
    pub fn property(&self, path: &str) -> Option<&[u8]> {
        self.stream.properties.get(path).map(Vec::as_slice)
    }

    /// Sets a property the filter can read (`proxy_get_property`), e.g.
    /// `("source.address", "10.1.2.3:4567")`. Integers go as 8-byte little-endian.
    pub fn set_property(&mut self, path: impl Into<String>, value: impl AsRef<[u8]>) -> &mut Self {
        let path: String = path.into();
        self.stream.properties.insert(path, value.as_ref());
        self
    }

    /// The raw runtime stream state, for anything the accessors above do not cover.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// Mutable access to the raw stream state between callbacks (e.g. to change a header
    /// as an earlier filter in a chain would).
    pub fn stream_mut(&mut self) -> &mut Stream {
        &mut self.stream
    }
}

impl Drop for HttpStream {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let id = self.stream.context_id;
        if let Ok(mut inner) = self.filter.inner.try_borrow_mut()
            && let Ok(vm) = inner.vm_of(self.generation, id)
        {
            let result = vm.finish_stream(&mut self.stream);
            // A fault here is recorded and the instance discarded; there is no caller to tell.
            let _ = inner.finish_call(result);
        }
        self.forget();
    }
}

impl std::fmt::Debug for HttpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpStream")
            .field("context_id", &self.stream.context_id)
            .field("finished", &self.finished)
            .field("driver", &self.driver)
            .finish_non_exhaustive()
    }
}

/// Every value of `name` in `map`, in order.
fn all_values<'a>(map: &'a HeaderMap, name: &str) -> Vec<&'a [u8]> {
    map.iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect()
}

/// Collects header pairs into a map with lower-case names.
fn lowercase<I, K, V>(pairs: I) -> HeaderMap
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<Vec<u8>>,
{
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.add(
            name.into().to_ascii_lowercase(),
            Into::<Vec<u8>>::into(value),
        );
    }
    map
}
