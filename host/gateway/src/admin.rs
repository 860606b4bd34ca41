//! The admin endpoint (keep it on loopback):
//!
//! - `GET /ready`: 200 while serving, 503 once draining.
//! - `GET /metrics`: Prometheus text (see `metrics.rs`).
//! - `GET /config`: the live configuration as JSON, filter configurations
//!   redacted (a literal secret may stand there).
//! - `POST /reload`: re-reads the configuration file; 200 with the new
//!   generation, or 400 with the errors (the old configuration keeps serving).

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, sync::watch};

use crate::{
    Shared,
    body::{Body, full},
    metrics::{StatsCollector, render},
};

/// Serves the admin endpoint until `stop` fires.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(respond(req, &shared).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

async fn respond(req: Request<Incoming>, shared: &Arc<Shared>) -> Response<Body> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/ready") => {
            if shared.is_draining() {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n", PLAIN)
            } else {
                text(StatusCode::OK, "ready\n", PLAIN)
            }
        }
        (&Method::GET, "/metrics") => {
            let collector = StatsCollector {
                stats: shared.stats.clone(),
                filters: shared.clone(),
            };
            text(
                StatusCode::OK,
                render(collector),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        }
        (&Method::GET, "/config") => {
            let snapshot = shared.snapshot.load_full();
            match serde_json::to_string_pretty(&snapshot.config.redacted()) {
                Ok(json) => text(StatusCode::OK, json + "\n", "application/json"),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"), PLAIN),
            }
        }
        (&Method::POST, "/reload") => {
            let shared = shared.clone();
            // Compiling modules is CPU work: keep it off the event loop.
            let result = tokio::task::spawn_blocking(move || shared.reload(None)).await;
            match result {
                Ok(Ok(generation)) => text(
                    StatusCode::OK,
                    format!("reloaded: generation {generation}\n"),
                    PLAIN,
                ),
                Ok(Err(errors)) => text(
                    StatusCode::BAD_REQUEST,
                    format!("reload rejected:\n{errors}\n"),
                    PLAIN,
                ),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("reload failed: {e}\n"),
                    PLAIN,
                ),
            }
        }
        (_, "/ready" | "/metrics" | "/config" | "/reload") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n",
            PLAIN,
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /ready, /metrics, /config, POST /reload\n",
            PLAIN,
        ),
    }
}
