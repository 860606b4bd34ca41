//! The admin endpoint (keep it on loopback):
//!
//! - `GET /ready`: 200 while serving, 503 once draining.
//! - `GET /metrics`: Prometheus text (see `metrics.rs`).
//! - `GET /config`: the live configuration as JSON, filter configurations
//!   redacted (a literal secret may stand there), plus `endpoint_health`:
//!   every upstream's endpoints now (DNS refresh included) and their health.
//! - `POST /reload`: re-reads the configuration file; 200 with the new
//!   generation, or 400 with the errors (the old configuration keeps serving).
//!
//! A `POST` must name the admin endpoint itself in `Host` (a loopback
//! address, `localhost`, or the listener's own address) and in `Origin`
//! when a browser sends one, so a web page cannot reach it through DNS
//! rebinding; with `admin.token_env` set it must also carry
//! `authorization: Bearer <token>` (compared in constant time).

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, sync::watch};

use crate::{
    body::{Body, full},
    metrics::{StatsCollector, render},
    shared::Shared,
};

/// Serves the admin endpoint until `stop` fires.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let Ok(local) = tcp.local_addr() else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let shared = shared.clone();
                async move {
                    let refused = if req.method() == Method::POST {
                        refuse_post(&req, local, &shared)
                    } else {
                        None
                    };
                    let answer = match refused {
                        Some(answer) => answer,
                        None => respond(req, &shared).await,
                    };
                    Ok::<_, Infallible>(answer)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// Why a `POST` is refused, as the answer; `None` when it may go on.
fn refuse_post(
    req: &Request<Incoming>,
    local: std::net::SocketAddr,
    shared: &Shared,
) -> Option<Response<Body>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    let names_us = |authority: &str| {
        let host = crate::route::strip_port(authority);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip == local.ip())
    };
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let host_ok = header(header::HOST).is_some_and(names_us);
    let origin_ok = header(header::ORIGIN).is_none_or(|origin| {
        origin
            .split_once("://")
            .is_some_and(|(_, authority)| names_us(authority.trim_end_matches('/')))
    });
    if !host_ok || !origin_ok {
        return Some(text(
            StatusCode::FORBIDDEN,
            "forbidden: Host and Origin must name the admin endpoint\n",
            PLAIN,
        ));
    }
    let snapshot = shared.snapshot.load();
    let token = snapshot
        .config
        .admin
        .as_ref()
        .and_then(|a| a.token_env.as_deref())
        .map(std::env::var);
    match token {
        None => None,
        Some(Ok(token)) if !token.is_empty() => {
            let sent = header(header::AUTHORIZATION)
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if constant_time_eq(sent.as_bytes(), token.as_bytes()) {
                None
            } else {
                Some(text(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized: send authorization: Bearer <admin token>\n",
                    PLAIN,
                ))
            }
        }
        // Configured but unset: fail closed.
        Some(_) => Some(text(
            StatusCode::UNAUTHORIZED,
            "unauthorized: the admin token is not set\n",
            PLAIN,
        )),
    }
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, &x) in a.iter().enumerate() {
        diff |= x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0);
    }
    diff == 0
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
            let shown = serde_json::to_value(snapshot.config.redacted()).map(|mut config| {
                let health: serde_json::Map<_, _> = snapshot
                    .upstreams
                    .iter()
                    .map(|(name, u)| (name.clone(), serde_json::json!(u.endpoint_status())))
                    .collect();
                if let Some(object) = config.as_object_mut() {
                    object.insert("endpoint_health".into(), health.into());
                }
                config
            });
            match shown.and_then(|config| serde_json::to_string_pretty(&config)) {
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
