//! Performing a filter's `proxy_http_call` against a named upstream.

use std::{collections::BTreeMap, sync::Arc};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::BodyExt;
use wasmgate_abi::{HeaderMap, HttpCallRequest, HttpCallResponse};

use crate::{body::full, error::ProxyError, upstream::Upstream};

/// Largest http call response body handed to a filter.
const MAX_CALL_BODY: usize = 16 * 1024 * 1024;

/// Sends the call and collects the whole response.
///
/// When the upstream cannot be reached, breaks the exchange before its
/// headers, or does not answer within the call's timeout, the filter gets
/// the response Envoy's async client makes up for it (503 `upstream connect
/// error or disconnect/reset before headers. reset reason: ...`, or 504
/// `upstream request timeout`), not a failure. `None` (the filter sees a
/// failed call, as in Envoy) when the call cannot be made at all (unknown
/// upstream, bad headers) or breaks after its headers (reset mid-body,
/// body over 16 MiB).
pub async fn perform(
    upstreams: &BTreeMap<String, Arc<Upstream>>,
    call: HttpCallRequest,
) -> Option<HttpCallResponse> {
    let Some(upstream) = upstreams.get(&call.upstream) else {
        tracing::warn!(upstream = %call.upstream, "http call to an unknown upstream");
        return None;
    };
    let request = match build(upstream, &call) {
        Ok(r) => r,
        Err(reason) => {
            tracing::warn!(upstream = %upstream.name, %reason, "http call refused");
            return None;
        }
    };
    let exchange = async {
        let response = match upstream.send(request).await {
            Ok(r) => r,
            Err(e) => return made_up(&e),
        };
        let (parts, mut body) = response.into_parts();
        // Collected up to the limit; a larger or broken body is a failed call.
        let mut data = Vec::new();
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            match frame.ok()?.into_data() {
                Ok(chunk) if data.len() + chunk.len() > MAX_CALL_BODY => return None,
                Ok(chunk) => data.extend_from_slice(&chunk),
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        let body = data;
        let mut headers = HeaderMap::with_capacity(parts.headers.len() + 1);
        headers.add(":status", parts.status.as_str());
        for (name, value) in &parts.headers {
            headers.add(name.as_str(), value.as_bytes());
        }
        let mut trailer_map = HeaderMap::new();
        for (name, value) in trailers.iter().flatten() {
            trailer_map.add(name.as_str(), value.as_bytes());
        }
        Some(HttpCallResponse {
            headers,
            body,
            trailers: trailer_map,
        })
    };
    let timeout = if call.timeout.is_zero() {
        upstream.timeout
    } else {
        call.timeout
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(response) => response,
        Err(_) => Some(local_reply(504, "upstream request timeout")),
    }
}

/// Envoy's answer for an upstream failure before response headers.
fn made_up(error: &ProxyError) -> Option<HttpCallResponse> {
    const BEFORE_HEADERS: &str =
        "upstream connect error or disconnect/reset before headers. reset reason: ";
    match error {
        ProxyError::UpstreamConnect { .. } => Some(local_reply(
            503,
            &format!("{BEFORE_HEADERS}remote connection failure"),
        )),
        ProxyError::UpstreamFailed { .. } => Some(local_reply(
            503,
            &format!("{BEFORE_HEADERS}connection termination"),
        )),
        ProxyError::UpstreamTimeout { .. } => Some(local_reply(504, "upstream request timeout")),
        _ => None,
    }
}

/// A response with a plain-text body, headers as Envoy sets them on a local
/// reply.
fn local_reply(status: u16, body: &str) -> HttpCallResponse {
    let mut headers = HeaderMap::with_capacity(3);
    headers.add(":status", status.to_string());
    headers.add("content-length", body.len().to_string());
    headers.add("content-type", "text/plain");
    HttpCallResponse {
        headers,
        body: body.as_bytes().to_vec(),
        trailers: HeaderMap::new(),
    }
}

fn build(
    upstream: &Upstream,
    call: &HttpCallRequest,
) -> Result<Request<crate::body::Body>, String> {
    let method = call.headers.get_str(":method").unwrap_or("GET");
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| "bad :method".to_string())?;
    let path = call.headers.get_str(":path").unwrap_or("/");
    let path = format!("{}{}", upstream.path_prefix, path);
    let authority = call
        .headers
        .get_str(":authority")
        .unwrap_or(upstream.authority.as_str());
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority)
        .body(full(Bytes::from(call.body.clone())))
        .map_err(|e| e.to_string())?;
    for (name, value) in call.headers.iter() {
        if name.starts_with(':') || name == "host" {
            continue;
        }
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| "bad header name".to_string())?;
        let value = HeaderValue::from_bytes(value).map_err(|_| "bad header value".to_string())?;
        request.headers_mut().append(name, value);
    }
    Ok(request)
}
