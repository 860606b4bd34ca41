//! The body types: [`Body`], which the gateway hands to hyper in both
//! directions, and [`RequestBody`], a client's request body as either
//! server path delivers it.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;

/// Errors a body can fail with (client gone, upstream reset, size limit).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed streaming body: incoming bodies pass through unbuffered.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding these bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A body of these bytes, then these trailers (if any): a message read
/// whole while a filter held its headers.
pub fn complete(data: Bytes, trailers: Option<http::HeaderMap>) -> Body {
    match trailers {
        None => full(data),
        Some(trailers) => Complete {
            data: (!data.is_empty()).then_some(data),
            trailers: Some(trailers),
        }
        .boxed_unsync(),
    }
}

/// [`complete`] with trailers.
struct Complete {
    data: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
}

impl http_body::Body for Complete {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = match self.data.take() {
            Some(data) => Some(Frame::data(data)),
            None => self.trailers.take().map(Frame::trailers),
        };
        Poll::Ready(frame.map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

/// A client's request body: hyper's, or none (a bodiless request read by
/// the lean HTTP/1.1 server, `listener/h1.rs`).
#[derive(Debug)]
pub enum RequestBody {
    /// Read by hyper.
    Incoming(Incoming),
    /// No body.
    Empty,
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Incoming(body) => Pin::new(body).poll_frame(cx),
            RequestBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Incoming(body) => body.is_end_stream(),
            RequestBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Incoming(body) => body.size_hint(),
            RequestBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// A body of unknown length (for tests of framing).
#[cfg(test)]
pub(crate) struct Unsized(pub Option<Bytes>);

#[cfg(test)]
impl http_body::Body for Unsized {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
    }
}
