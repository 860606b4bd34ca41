//! HTTP calls dispatched by the filter (`proxy_http_call`): the request the embedder must
//! perform and the response it hands back through [`crate::Vm::on_http_call_response`].

use std::time::Duration;

use crate::stream::HeaderMap;

/// An outgoing HTTP call the filter dispatched. The embedder performs it against the named
/// upstream and delivers the result with [`crate::Vm::on_http_call_response`].
#[derive(Clone, Debug)]
pub struct HttpCallRequest {
    /// Token the guest received; pass it back with the response.
    pub token: u32,
    /// Context that dispatched the call: a stream's id, or the root context id.
    pub context_id: u32,
    /// Upstream name, one of [`crate::PluginSpec::upstreams`].
    pub upstream: String,
    /// Request headers, including `:method`, `:path` and `:authority`.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Vec<u8>,
    /// Request trailers.
    pub trailers: HeaderMap,
    /// Timeout the filter asked for.
    pub timeout: Duration,
}

/// The result of an HTTP call, handed to the guest in `proxy_on_http_call_response`.
#[derive(Clone, Debug, Default)]
pub struct HttpCallResponse {
    /// Response headers, including `:status`.
    pub headers: HeaderMap,
    /// Response body (HTTP_CALL_RESPONSE_BODY).
    pub body: Vec<u8>,
    /// Response trailers.
    pub trailers: HeaderMap,
}
