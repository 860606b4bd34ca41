//! A refused HTTP/2 stream (RST_STREAM `REFUSED_STREAM`, RFC 9113 §8.7: the
//! upstream did not process it) is sent again when `retries.on` lists
//! `refused_stream`, whatever the method, as long as the request is
//! bodiless; a request with a body, or an upstream that does not list it,
//! gets the failure. The backend is a real HTTP/2 server (the `h2` crate)
//! on 127.0.0.1 that refuses the first streams it is sent.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tokio::{net::TcpListener, task::JoinHandle};
use wasmgate_tests::{
    endpoints::start,
    gateway::{Client, send},
};

/// An HTTP/2 (prior knowledge) backend that refuses its first `refuse`
/// streams and answers `200 served` to the others; counts every stream.
struct Refusing {
    addr: SocketAddr,
    streams: Arc<AtomicUsize>,
    server: JoinHandle<()>,
}

impl Refusing {
    async fn start(refuse: usize) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let streams = Arc::new(AtomicUsize::new(0));
        let seen = streams.clone();
        let server = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(tcp).await else {
                        return;
                    };
                    while let Some(Ok((request, mut respond))) = conn.accept().await {
                        let n = seen.fetch_add(1, Ordering::SeqCst);
                        if n < refuse {
                            respond.send_reset(h2::Reason::REFUSED_STREAM);
                            continue;
                        }
                        drop(request);
                        let head = Response::builder().status(200).body(()).unwrap();
                        if let Ok(mut body) = respond.send_response(head, false) {
                            let _ = body.send_data(Bytes::from_static(b"served"), true);
                        }
                    }
                });
            }
        });
        Ok(Refusing {
            addr,
            streams,
            server,
        })
    }

    fn streams(&self) -> usize {
        self.streams.load(Ordering::SeqCst)
    }
}

impl Drop for Refusing {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A POST to the gateway, with or without a body; the status.
async fn post(gw: SocketAddr, body: &'static [u8]) -> anyhow::Result<StatusCode> {
    let req = Request::post("/submit")
        .header("host", "svc.test")
        .body(Full::new(Bytes::from_static(body)))?;
    Ok(send(gw, &Client::Http1, req).await?.status)
}

/// The upstream `svc`: the backend over HTTP/2, retries on `on`.
fn upstream(backend: &Refusing, on: &str) -> String {
    format!(
        "    url: http://{}\n    protocol: http2\n    retries: {{ attempts: 2, on: [{on}] }}",
        backend.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_bodiless_post_is_sent_again() -> anyhow::Result<()> {
    let backend = Refusing::start(1).await?;
    let gw = start(&upstream(&backend, "refused_stream"))?;
    // POST is not idempotent: only "refused, so not processed" makes it safe.
    assert_eq!(post(gw.addr(), b"").await?, StatusCode::OK);
    assert_eq!(backend.streams(), 2, "one refused stream, then the retry");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_post_with_a_body_is_not_sent_again() -> anyhow::Result<()> {
    let backend = Refusing::start(1).await?;
    let gw = start(&upstream(&backend, "refused_stream"))?;
    let status = post(gw.addr(), b"payload").await?;
    assert!(status.is_server_error(), "got {status}");
    assert_eq!(backend.streams(), 1, "the body was sent: never twice");
    // The next request is served: the refusal did not poison the connection.
    assert_eq!(post(gw.addr(), b"").await?, StatusCode::OK);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_streams_are_retried_only_when_listed() -> anyhow::Result<()> {
    let backend = Refusing::start(1).await?;
    let gw = start(&upstream(&backend, "connect_failure, reset"))?;
    let status = post(gw.addr(), b"").await?;
    assert!(status.is_server_error(), "got {status}");
    assert_eq!(backend.streams(), 1);
    Ok(())
}
