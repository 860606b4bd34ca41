//! The body type the gateway hands to hyper, in both directions.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};

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
