//! Upstream, the third phase: the proxy frames the request (whatever the
//! client or a filter wrote) and adds the upstream's path prefix
//! ([`prepare`]); `proxy::forward` sends it and waits for the response head
//! itself, so the upstream's future, the largest of the exchange, is moved
//! into the request's future once rather than once more into a phase's
//! (callgrind: a copy of a few KB per request); a decision the request
//! filters take while the body streams wins over whatever the upstream
//! answered ([`received`]).

use std::sync::atomic::Ordering;

use http::{Request, Response};

use super::{Exchange, Step, request_filters::Outbound, response_filters::apply_verdict};
use crate::{
    body::Body,
    chain::FilterRun,
    error::ProxyError,
    headers::{Scan, own_framing, set_length},
};

/// The upstream's response head, and the filters' run when the route has
/// filters (the response filters take it from here).
pub(super) type Upstreamed = (Response<Body>, Option<Box<FilterRun>>);

/// What the response phase needs of the filters' run, kept while the
/// request is upstream.
pub(super) struct After {
    run: Option<Box<FilterRun>>,
    /// Where the request body hands the run back when it ends.
    run_back: Option<tokio::sync::oneshot::Receiver<Box<FilterRun>>>,
}

/// Frames the request for the upstream.
pub(super) fn prepare(
    out: Outbound,
    found: &Scan,
    x: &mut Exchange<'_>,
) -> Result<(Request<Body>, After), ProxyError> {
    let Outbound {
        mut parts,
        body,
        length,
        run,
        run_back,
    } = out;
    let upstream = &x.route.upstream;
    // Framing is the proxy's: the upstream gets the length of the body that
    // is sent, or a chunked one. Without filters the fields are those the
    // checks scanned and stripped.
    if x.route.chain.is_some() {
        own_framing(&mut parts.headers, length);
    } else {
        set_length(&mut parts.headers, length, found);
    }
    if !upstream.path_prefix.is_empty() {
        let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri = format!("{}{}", upstream.path_prefix, pq);
        parts.uri = uri
            .parse()
            .map_err(|_| ProxyError::BadRequest("request target"))?;
    }
    if x.snapshot.access_log.wants_headers() {
        x.sent_headers = Some(parts.headers.clone());
    }
    Ok((Request::from_parts(parts, body), After { run, run_back }))
}

/// What the upstream's answer (or failure) becomes, given what the request
/// filters decided while the body streamed.
pub(super) async fn received(
    sent: Result<Response<Body>, ProxyError>,
    after: After,
    x: &Exchange<'_>,
) -> Result<Step<Upstreamed>, ProxyError> {
    let After { mut run, run_back } = after;
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            // A filter's decision in the request body phase fails the body
            // on purpose (which is what failed the exchange); the body
            // handed the run back before failing.
            if let Some(mut back) = run_back
                && let Ok(mut filter_run) = back.try_recv()
                && let Some(verdict) = filter_run.take_verdict()
            {
                return Ok(Step::Answer(
                    Box::pin(apply_verdict(filter_run, verdict)).await?,
                ));
            }
            if x.watch.exceeded.load(Ordering::Relaxed) {
                let limit = x.snapshot.limits.max_body_bytes;
                return Err(ProxyError::BodyTooLarge { limit });
            }
            return Err(e);
        }
    };
    if let Some(back) = run_back {
        // The request body handed the run back when it ended (or was dropped).
        if let Ok(mut filter_run) = back.await {
            if let Some(verdict) = filter_run.take_verdict() {
                // The upstream answered before the body was cut short; the
                // filter's decision wins, as in Envoy.
                return Ok(Step::Answer(
                    Box::pin(apply_verdict(filter_run, verdict)).await?,
                ));
            }
            run = Some(filter_run);
        }
    }
    Ok(Step::Next((response, run)))
}
