//! Response filters, the last phase: `on_response_headers` in reverse
//! order, the edits written back, and the body set up to stream through
//! `on_response_body`. Local replies from a request phase come through here
//! too ([`encode_local`]), as Envoy runs its encoder chain on them.

use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;
use hyper::body::Body as _;
use wasmgate_abi::LocalResponse;

use super::request_filters::kept_length;
use crate::{
    body::Body,
    chain::{BodyStep, FilterRun, Flow, Headed, Side, Verdict},
    error::ProxyError,
    filtered_body::FilteredBody,
    stream_map,
    upstream::Upstream,
};

/// Runs the response filters over the upstream's response.
pub(super) async fn response_filters(
    response: Response<Body>,
    mut filter_run: Box<FilterRun>,
    upstream: &Upstream,
) -> Result<Response<Body>, ProxyError> {
    // The upstream took the hop-by-hop headers off already.
    let (mut parts, mut body) = response.into_parts();
    // The length the upstream framed its body with (the response's
    // `Content-Length` is dropped on the way out; see `frame_response`).
    let declared = body.size_hint().exact();
    stream_map::response_headers_into(&mut filter_run.stream, &parts);
    let response_eos = body.is_end_stream();
    let mut held = None;
    if filter_run.chain().holds_body && !response_eos {
        let read_error = |e: crate::body::BoxError| ProxyError::UpstreamFailed {
            upstream: upstream.name.clone(),
            reason: e.to_string(),
        };
        let headed =
            Box::pin(filter_run.headers_holding_body(Side::Response, &mut body, read_error))
                .await?;
        match headed {
            Headed::Respond(local) => return Ok(stream_map::local_response(*local)),
            Headed::Continue(body) => held = Some(body),
        }
    } else if let Flow::Respond(local) = filter_run.headers(Side::Response, response_eos).await? {
        // The upstream's body is dropped unread; the filter's reply replaces it.
        return Ok(stream_map::local_response(*local));
    }
    apply_response(&filter_run, &mut parts)?;
    let body = match held {
        Some(held) if held.done => {
            filter_run.finish();
            crate::body::complete(held.prefix, held.trailers)
        }
        _ if response_eos => {
            filter_run.finish();
            crate::body::empty()
        }
        held => {
            let length = kept_length(declared, &parts.headers);
            let mut body = FilteredBody::response(body, filter_run, length);
            if let Some(held) = held {
                body = body.with_prefix(held.prefix);
            }
            body.boxed_unsync()
        }
    };
    Ok(Response::from_parts(parts, body))
}

/// Writes the filters' response header edits back; a `:status` the
/// gateway will not send (1xx, invalid) is the filter's fault.
fn apply_response(run: &FilterRun, parts: &mut http::response::Parts) -> Result<(), ProxyError> {
    stream_map::apply_response(&run.stream, parts).map_err(|what| ProxyError::FilterInvalid {
        route: run.chain().route.clone(),
        what,
    })
}

/// Answers with a decision a filter took in the request body phase.
pub(super) async fn apply_verdict(
    run: Box<FilterRun>,
    verdict: Verdict,
) -> Result<Response<Body>, ProxyError> {
    match verdict {
        Verdict::Respond(local) => encode_local(run, *local).await,
        Verdict::Fail(e) => Err(e),
    }
}

/// A local response sent from a request phase goes back through the
/// filters' response callbacks (headers, then the body in one piece), as
/// Envoy runs its encoder chain on a local reply. A filter may edit it
/// there; a second local response from these callbacks replaces it as is.
pub(super) async fn encode_local(
    mut run: Box<FilterRun>,
    local: LocalResponse,
) -> Result<Response<Body>, ProxyError> {
    let (mut parts, body) = stream_map::local_response_parts(local);
    let body = Bytes::from(body);
    stream_map::response_headers_into(&mut run.stream, &parts);
    let end_of_stream = body.is_empty();
    match run.headers(Side::Response, end_of_stream).await? {
        Flow::Respond(again) => return Ok(stream_map::local_response(*again)),
        Flow::Continue => apply_response(&run, &mut parts)?,
    }
    let body = if end_of_stream {
        body
    } else {
        match run.body(Side::Response, body, true)? {
            BodyStep::Forward(body) => body,
            BodyStep::Respond(again) => return Ok(stream_map::local_response(*again)),
        }
    };
    run.finish();
    // Framed by the body's own size (the body callbacks may have changed it).
    Ok(Response::from_parts(parts, crate::body::full(body)))
}
