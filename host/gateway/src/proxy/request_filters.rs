//! Request filters, the second phase: the route's chain runs
//! `on_request_headers` (and, for chains that hold the body, reads it while
//! the headers wait), its edits are written back, and the body is set up to
//! stream through `on_request_body` on its way upstream.

use std::sync::atomic::Ordering;

use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Body as _;
use tokio::sync::oneshot;

use super::{Exchange, Step, response_filters::encode_local};
use crate::{
    body::{Body, RequestBody},
    chain::{FilterRun, Flow, Headed, Side},
    error::ProxyError,
    filtered_body::{FilteredBody, LimitedBody},
    headers::{Scan, content_length},
    stream_map,
};

/// The request as the request filters leave it, ready for the upstream.
pub(super) struct Outbound {
    pub parts: http::request::Parts,
    pub body: Body,
    /// The body's length when it is known; the upstream's framing.
    pub length: Option<u64>,
    /// The filters' run, when they are done with the request body (or it
    /// had none).
    pub run: Option<Box<FilterRun>>,
    /// The filters' run, handed back by the streamed request body when it
    /// ends (or is dropped).
    pub run_back: Option<oneshot::Receiver<Box<FilterRun>>>,
}

/// Runs the route's request filters; a route without filters passes the
/// request through untouched (no wasm, no header-map conversion).
pub(super) async fn request_filters(
    mut parts: http::request::Parts,
    body: RequestBody,
    found: &Scan,
    x: &Exchange<'_>,
) -> Result<Step<Outbound>, ProxyError> {
    let limit = x.snapshot.limits.max_body_bytes;
    let request_eos = body.is_end_stream();
    // The body's length as the client framed it (a bodiless request with
    // `content-length: 0` keeps saying so).
    let declared = if request_eos {
        found.content_length.is_some().then_some(0)
    } else {
        body.size_hint().exact()
    };
    let mut limited = LimitedBody::new(body, limit, x.watch.clone());
    let Some(chain) = &x.route.chain else {
        let body = if request_eos {
            crate::body::empty()
        } else {
            limited.boxed_unsync()
        };
        return Ok(Step::Next(Outbound {
            parts,
            body,
            length: declared,
            run: None,
            run_back: None,
        }));
    };
    let stream = stream_map::request_stream(&parts, x.conn, &chain.properties);
    let mut filter_run = chain.start(stream)?;
    let mut held = None;
    if chain.holds_body && !request_eos {
        // Boxed: only chains with a filter that sees the body before the
        // headers go on pay for this future.
        let watch = &x.watch;
        let read_error = |_| {
            if watch.exceeded.load(Ordering::Relaxed) {
                ProxyError::BodyTooLarge { limit }
            } else {
                ProxyError::BadRequest("request body")
            }
        };
        let headed =
            Box::pin(filter_run.headers_holding_body(Side::Request, &mut limited, read_error))
                .await?;
        match headed {
            Headed::Respond(local) => {
                return Ok(Step::Answer(
                    Box::pin(encode_local(filter_run, *local)).await?,
                ));
            }
            Headed::Continue(body) => held = Some(body),
        }
    } else if let Flow::Respond(local) = filter_run.headers(Side::Request, request_eos).await? {
        return Ok(Step::Answer(
            Box::pin(encode_local(filter_run, *local)).await?,
        ));
    }
    stream_map::apply_request(&filter_run.stream, &mut parts)?;
    let length = kept_length(declared, &parts.headers);
    let outbound = |body, length, run, run_back| Outbound {
        parts,
        body,
        length,
        run,
        run_back,
    };
    Ok(Step::Next(match held {
        // Read whole while a filter held the headers.
        Some(held) if held.done => {
            let length = held.trailers.is_none().then_some(held.prefix.len() as u64);
            let body = crate::body::complete(held.prefix, held.trailers);
            outbound(body, length, Some(filter_run), None)
        }
        _ if request_eos => outbound(crate::body::empty(), length, Some(filter_run), None),
        held => {
            let (mut body, back) = FilteredBody::request(limited, filter_run, length);
            if let Some(held) = held {
                body = body.with_prefix(held.prefix);
            }
            outbound(body.boxed_unsync(), length, None, Some(back))
        }
    }))
}

/// The body's length the filters left as the client declared it:
/// `declared` when the headers still say exactly that.
pub(super) fn kept_length(declared: Option<u64>, headers: &HeaderMap) -> Option<u64> {
    declared.filter(|&n| content_length(headers) == Ok(Some(n)))
}
