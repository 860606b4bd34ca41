//! What can go wrong while proxying a request, and the ONE place where an
//! error becomes an HTTP response ([`ProxyError::into_response`]).
//!
//! Error bodies are short fixed sentences plus names from the configuration
//! (route, upstream, filter): never a header value, a body or a filter's
//! configuration, so they cannot carry a secret.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{Body, full};

/// A request that could not be proxied.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No route matched the request's host and path.
    #[error("no route matches this request")]
    NoRoute,
    /// The request is malformed or ambiguous (e.g. both Content-Length and
    /// Transfer-Encoding: a smuggling attempt).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// More request headers than `limits.max_headers` (HTTP/2; hyper
    /// enforces it for HTTP/1.1 while parsing).
    #[error("more than {limit} request headers")]
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// The request body is over `limits.max_body_bytes`.
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// The upstream could not be reached (refused, DNS, TLS verification, connect timeout).
    #[error("upstream {upstream}: connect failed: {reason}")]
    UpstreamConnect {
        /// Upstream name from the configuration.
        upstream: String,
        /// Why; logged, not sent to the client.
        reason: String,
    },
    /// The upstream did not send response headers within `timeout`.
    #[error("upstream {upstream}: no response within {timeout:?}")]
    UpstreamTimeout {
        /// Upstream name.
        upstream: String,
        /// The configured timeout.
        timeout: std::time::Duration,
    },
    /// The upstream broke the exchange (reset, protocol error).
    #[error("upstream {upstream}: {reason}")]
    UpstreamFailed {
        /// Upstream name.
        upstream: String,
        /// Why; logged, not sent to the client.
        reason: String,
    },
    /// A filter failed and its policy is `deny`.
    #[error("route {route}: filter {filter}: failed")]
    FilterFailed {
        /// Route name.
        route: String,
        /// Filter name (`route/index`).
        filter: String,
    },
    /// A filter closed the stream (`proxy_close_stream`): the exchange is
    /// reset, no response is sent.
    #[error("route {route}: filter {filter}: closed the stream")]
    StreamClosed {
        /// Route name.
        route: String,
        /// Filter name.
        filter: String,
    },
    /// `TRACE` (and IIS's `TRACK`) and `CONNECT` are answered by the
    /// gateway, never forwarded: a backend that echoes a TRACE would hand
    /// the client the headers the filters injected, and a CONNECT would
    /// turn the connection into a tunnel nobody frames.
    #[error("{0} is not forwarded")]
    MethodRefused(&'static str),
    /// A request framing the gateway cannot forward as it came (a transfer
    /// coding other than `chunked`).
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
    /// A filter produced something the gateway refuses to send (a 1xx or
    /// invalid `:status`): a filter fault.
    #[error("route {route}: a filter set {what}")]
    FilterInvalid {
        /// Route name.
        route: String,
        /// What was wrong, in fixed words.
        what: &'static str,
    },
    /// A filter paused the request and never resumed it.
    #[error("route {route}: filter {filter}: paused the request and never resumed it")]
    FilterStalled {
        /// Route name.
        route: String,
        /// Filter name.
        filter: String,
    },
}

/// The request's stream must be reset rather than answered (a filter
/// closed it). Returned to hyper as the service's error, which makes it
/// close the HTTP/1.1 connection or reset the HTTP/2 stream.
#[derive(Debug, thiserror::Error)]
#[error("stream reset by a filter")]
pub struct StreamReset;

impl ProxyError {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::TooManyHeaders { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::UpstreamConnect { .. } | ProxyError::UpstreamFailed { .. } => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::UpstreamTimeout { .. } | ProxyError::FilterStalled { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::MethodRefused(_) => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ProxyError::FilterFailed { .. }
            | ProxyError::FilterInvalid { .. }
            | ProxyError::StreamClosed { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The answer to a gRPC request (`content-type: application/grpc*`):
    /// gRPC clients read `grpc-status`, not the HTTP status, so the error
    /// comes as a trailers-only response, `200` with `grpc-status` and
    /// `grpc-message`, the status mapped as Envoy maps it.
    pub fn into_grpc_response(self) -> Response<Body> {
        let code = grpc_status_for(self.status().as_u16());
        let message = self.to_client_text();
        let mut response = Response::new(crate::body::empty());
        grpc_trailers_only(response.headers_mut(), code, message.trim_end());
        response
    }

    /// The response sent to the client. The body names the kind of failure
    /// and at most configuration names; `reason` strings (which may quote
    /// peer data) stay in the log.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let text = self.to_client_text();
        let mut response = Response::new(full(Bytes::from(text)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if matches!(self, ProxyError::MethodRefused(_)) {
            let allow = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if matches!(
            self,
            ProxyError::BadRequest(_)
                | ProxyError::BodyTooLarge { .. }
                | ProxyError::NotImplemented(_)
        ) {
            // The rest of the connection cannot be trusted to be framed right.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    /// What the client is told: the kind of failure and at most names from
    /// the configuration.
    fn to_client_text(&self) -> String {
        match self {
            ProxyError::NoRoute => "no route\n".to_string(),
            ProxyError::BadRequest(what) => format!("bad request: {what}\n"),
            ProxyError::TooManyHeaders { limit } => format!("more than {limit} request headers\n"),
            ProxyError::BodyTooLarge { limit } => {
                format!("request body larger than {limit} bytes\n")
            }
            ProxyError::UpstreamConnect { upstream, .. } => {
                format!("upstream {upstream} unreachable\n")
            }
            ProxyError::UpstreamTimeout { upstream, .. } => {
                format!("upstream {upstream} timed out\n")
            }
            ProxyError::UpstreamFailed { upstream, .. } => format!("upstream {upstream} failed\n"),
            ProxyError::MethodRefused(method) => format!("{method} is not forwarded\n"),
            ProxyError::NotImplemented(what) => format!("not implemented: {what}\n"),
            ProxyError::FilterFailed { filter, .. } => format!("filter {filter} failed\n"),
            ProxyError::FilterInvalid { route, .. } => format!("route {route}: a filter failed\n"),
            ProxyError::FilterStalled { filter, .. } => format!("filter {filter} stalled\n"),
            ProxyError::StreamClosed { filter, .. } => {
                format!("filter {filter} closed the stream\n")
            }
        }
    }
}

/// The gRPC status Envoy maps an HTTP status to (`httpToGrpcStatus`).
pub fn grpc_status_for(http: u16) -> u32 {
    match http {
        400 => 13,             // INTERNAL
        401 => 16,             // UNAUTHENTICATED
        403 => 7,              // PERMISSION_DENIED
        404 => 12,             // UNIMPLEMENTED
        429 | 502..=504 => 14, // UNAVAILABLE
        _ => 2,                // UNKNOWN
    }
}

/// The fields of a trailers-only gRPC answer: `content-type`,
/// `grpc-status` and `grpc-message` (the HTTP status is 200, the body empty).
pub fn grpc_trailers_only(headers: &mut http::HeaderMap, code: u32, message: &str) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(&grpc_message(message)) {
        headers.insert("grpc-message", v);
    }
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2: anything outside
/// printable ASCII, and `%` itself).
fn grpc_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let up = || "backend".to_string();
        assert_eq!(ProxyError::NoRoute.status(), 404);
        assert_eq!(ProxyError::BodyTooLarge { limit: 1 }.status(), 413);
        assert_eq!(
            ProxyError::UpstreamConnect {
                upstream: up(),
                reason: "x".into()
            }
            .status(),
            502
        );
        let timeout = std::time::Duration::from_secs(1);
        assert_eq!(
            ProxyError::UpstreamTimeout {
                upstream: up(),
                timeout
            }
            .status(),
            504
        );
        let f = ProxyError::FilterFailed {
            route: "r".into(),
            filter: "r/0".into(),
        };
        assert_eq!(f.status(), 503);
    }

    #[tokio::test]
    async fn body_leaves_out_the_reason() {
        use http_body_util::BodyExt;
        let e = ProxyError::UpstreamFailed {
            upstream: "b".into(),
            reason: "peer said s3cret".into(),
        };
        let body = e
            .into_response()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&body[..], b"upstream b failed\n");
    }
}
