//! The authorisation service the `http_call` filter calls: it records every call (like the
//! echo backend) and decides by the caller's `x-original-path`: a path starting with `/deny`
//! gets `403` with body `no entry`, anything else `200` with `x-auth: granted` and body
//! `welcome`. A path starting with `/slow` is answered (200) only after [`SLOW`], later than
//! the caller's timeout.

use std::future::Future;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;

use crate::backend::{self, Backend, Received};

/// How long a call for a `/slow...` path waits before it is answered.
pub const SLOW: std::time::Duration = std::time::Duration::from_secs(5);

/// A running auth service (a recording [`Backend`] with its own answers); stops on drop.
pub type Auth = Backend;

/// Starts the service on a free port of 127.0.0.1.
///
/// # Errors
/// When no port can be bound.
pub async fn start() -> std::io::Result<Auth> {
    backend::answering(([127, 0, 0, 1], 0).into(), decide).await
}

/// Answers a call by its `x-original-path` (see the module docs).
fn decide(record: &Received) -> impl Future<Output = Response<Full<Bytes>>> + use<> {
    let original = record.header("x-original-path").unwrap_or_default();
    let deny = original.starts_with("/deny");
    let slow = original.starts_with("/slow");
    async move {
        if slow {
            // Longer than the caller's timeout; the task is aborted when the service stops.
            tokio::time::sleep(SLOW).await;
        }
        let (status, verdict, body) = if deny {
            (403, "denied", "no entry")
        } else {
            (200, "granted", "welcome")
        };
        Response::builder()
            .status(status)
            .header("x-auth", verdict)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    }
}
