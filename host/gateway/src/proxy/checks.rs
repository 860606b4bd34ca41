//! Request checks, the first phase: what the gateway refuses or answers
//! itself before any filter runs, and the request's headers made the
//! proxy's own.

use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderMap, HeaderValue, Response, Version, header};

use super::ConnInfo;
use crate::{
    body::Body,
    config::UnderscorePolicy,
    error::ProxyError,
    headers::{Scan, add_forwarded, drop_underscored, is_only_chunked, scan, strip_hop_by_hop},
    snapshot::Snapshot,
};

/// A method the gateway answers itself (405), never forwarding it.
pub(super) fn refused_method(method: &http::Method) -> Option<&'static str> {
    match method.as_str() {
        "TRACE" => Some("TRACE"),
        "TRACK" => Some("TRACK"),
        "CONNECT" => Some("CONNECT"),
        _ => None,
    }
}

/// Request checks: what the gateway refuses or answers itself before any
/// filter runs, and the request's headers made the proxy's own
/// (hop-by-hop out, the target's authority as `Host`, `x-forwarded-*` in).
/// Returns the answer, if the gateway gives it itself, and what the scan of
/// the fields found.
pub(super) fn check_request(
    parts: &mut http::request::Parts,
    conn: &ConnInfo,
    snapshot: &Snapshot,
    grpc: &AtomicBool,
) -> Result<(Option<Response<Body>>, Scan), ProxyError> {
    let limits = &snapshot.limits;
    // One pass over the fields; lookups only for what it found.
    let found = scan(&parts.headers);
    grpc.store(found.grpc, Ordering::Relaxed);
    if parts.headers.len() > limits.max_headers {
        return Err(ProxyError::TooManyHeaders {
            limit: limits.max_headers,
        });
    }
    // RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host (the target's
    // authority stands in for it when there is one).
    match found.hosts {
        0 if parts.version == Version::HTTP_11 && parts.uri.authority().is_none() => {
            return Err(ProxyError::BadRequest("no Host"));
        }
        0 | 1 => {}
        _ => return Err(ProxyError::BadRequest("more than one Host")),
    }
    if found.transfer_encoding && !is_only_chunked(&parts.headers) {
        return Err(ProxyError::NotImplemented(
            "transfer coding other than chunked",
        ));
    }
    if found.underscore {
        match limits.headers_with_underscores {
            UnderscorePolicy::Allow => {}
            UnderscorePolicy::Drop => drop_underscored(&mut parts.headers),
            UnderscorePolicy::Reject => {
                return Err(ProxyError::BadRequest("header name with an underscore"));
            }
        }
    }
    if parts.method == http::Method::OPTIONS
        && let Some(answer) = max_forwards(&mut parts.headers)
    {
        return Ok((Some(answer), found));
    }
    if found.connection || found.other_hop_by_hop {
        strip_hop_by_hop(&mut parts.headers);
    }
    // RFC 9112 §3.2.2: the authority of an absolute-form (or HTTP/2)
    // target replaces `Host`; routing used it, so the filters and the
    // upstream see the same.
    let host_value = match parts.uri.authority() {
        Some(authority) => {
            let value = HeaderValue::from_str(authority.as_str())
                .map_err(|_| ProxyError::BadRequest("request target"))?;
            parts.headers.insert(header::HOST, value.clone());
            Some(value)
        }
        None => parts.headers.get(header::HOST).cloned(),
    };
    add_forwarded(
        &mut parts.headers,
        conn.peer_ip(),
        conn.tls,
        host_value,
        found.forwarded,
    );
    // Origin form, as the client meant it; the upstream's prefix is added
    // after the filters (which see the client's path).
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let mut origin = http::uri::Parts::default();
        origin.path_and_query = parts.uri.path_and_query().cloned();
        parts.uri =
            http::Uri::from_parts(origin).map_err(|_| ProxyError::BadRequest("request target"))?;
    }
    parts.version = Version::HTTP_11;
    Ok((None, found))
}

/// `Max-Forwards` on an `OPTIONS` request (RFC 9110 §7.6.2): at 0 the
/// gateway is the final recipient and answers; above, it is decremented.
fn max_forwards(headers: &mut HeaderMap) -> Option<Response<Body>> {
    let value = headers.get(header::MAX_FORWARDS)?;
    let n: u64 = value.to_str().ok()?.trim().parse().ok()?;
    if n == 0 {
        let mut answer = Response::new(crate::body::empty());
        answer.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
        return Some(answer);
    }
    headers.insert(header::MAX_FORWARDS, HeaderValue::from(n - 1));
    None
}
