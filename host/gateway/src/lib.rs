//! wasmgate: a reverse proxy on tokio, hyper and rustls that runs
//! proxy-wasm filters per route, each with its own configuration (which
//! Envoy cannot do: envoy#26440).
//!
//! # Phases of a request
//!
//! ```text
//!  client ──► listener (h1 / h2c / TLS+ALPN, limits: 431, header-read timeout;
//!               │      bodiless HTTP/1.1 requests on plain TCP are read and
//!               │      answered in the connection's task, `listener/h1.rs`;
//!               │      hyper serves the rest)
//!               ▼
//!           route match (host ignoring case and port, path prefix; first wins; else 404)
//!               │   request checks (`check_request`): CL+TE conflict 400, body limit 413,
//!               │   hop-by-hop out, Host, x-forwarded-* in
//!               ▼
//!           request filters (`request_filters`)
//!           on_request_headers   filter 0 → 1 → … (pause: http calls answered, resume;
//!               │                                   failure: deny 503 / allow skip;
//!               │                                   close_stream: reset, no response)
//!           on_request_body / on_request_trailers   (streamed chunk by chunk)
//!               │   a local reply from a request phase skips the upstream and goes
//!               │   through the response callbacks below, as in Envoy
//!               ▼
//!           upstream (`send_upstream`; worker-local pool; h1 keep-alive or h2; TLS verified;
//!               │     connect failure 502, timeout 504; a bodiless idempotent
//!               │     request to a plain h1 upstream is written and read in
//!               │     the request's own task, `upstream/h1.rs`)
//!               ▼
//!           response filters (`response_filters`)
//!           on_response_headers  … → 1 → 0   (reverse order, as Envoy's encoder chain)
//!           on_response_body / on_response_trailers (streamed)
//!               ▼
//!           on_log, on_done, on_delete; access log line; metrics
//! ```
//!
//! # Worker model
//!
//! N worker threads (default: one per core), each running its own
//! single-threaded tokio runtime and accepting on the shared listening
//! sockets. A connection lives and dies on the worker that accepted it, so:
//!
//! - each worker owns one proxy-wasm [`wasmgate_abi::Vm`] per filter in a
//!   thread-local; a request borrows it only for the duration of one
//!   (synchronous) callback, never across an `await`, so there is no lock
//!   and no `Send` requirement on the Vm;
//! - each worker owns its upstream connection pools (a queue or a `Vec`
//!   per upstream endpoint), again with no lock; endpoint health is shared
//!   by all workers as atomics, and checked on a background thread;
//! - the configuration is read through an [`arc_swap::ArcSwap`]: one atomic
//!   load per request, swapped whole on reload.
//!
//! The alternative, a multi-thread runtime with per-thread Vms, moves tasks
//! between threads at every `await`: a stream's context lives in one Vm, so
//! the stream would have to be pinned to a thread anyway, and work stealing
//! adds cross-core traffic per request. With one core per worker the
//! per-request path touches no shared mutable state besides relaxed
//! counters. The cost: one busy connection cannot spread over cores (fine for
//! a proxy with many connections).
//!
//! # Layout
//!
//! The public API is [`Gateway`] / [`GatewayHandle`] (start, reload, stop),
//! [`check`], [`Config`] and its [`config`] types, [`demo`] and [`lean`].
//! Everything else is internal, one module per file under `src/`:
//!
//! - `config`: the file format, parsing and validation (errors name file and key).
//! - `start`: binding, workers, the admin thread, signals; `shared`: what they
//!   share (the live configuration, reload, counters).
//! - `snapshot`: a configuration built into routes, upstreams and filter chains.
//! - `route`: host and path matching.
//! - `proxy`: the request pipeline, one file per phase of the chart above
//!   (`proxy/checks.rs`, `request_filters.rs`, `send_upstream.rs`,
//!   `response_filters.rs`) and the connection's view (`proxy/conn.rs`).
//! - `chain`: a route's filters and one request's trip through them; per-worker
//!   instances (`chain/instances.rs`), http calls (`chain/http_call.rs`), and
//!   ticks, queues and root-context calls between requests (`chain/timers.rs`).
//! - `filtered_body`: streaming bodies through filters, body size limit.
//! - `h1`: the HTTP/1.1 codec both lean paths share (request and response
//!   heads read and written, body framing, the chunked decoder, the date).
//! - `stream_map`: headers between hyper and the filters' view.
//! - `headers`: hop-by-hop headers, framing owned by the proxy, `x-forwarded-*`.
//! - [`lean`]: the switch that turns the lean HTTP/1.1 paths off (`WASMGATE_LEAN_HTTP1=off`).
//! - `path`: the normal form of a request path (routing and forwarding).
//! - `upstream`: connections to upstreams, pooled per worker and endpoint; hyper's client,
//!   and a lean HTTP/1.1 client for bodiless idempotent requests, over plain TCP or TLS
//!   (`upstream/h1.rs`);
//!   endpoint choice, health checks, outlier ejection, retries and DNS refresh.
//! - `tls`: rustls server and client configurations.
//! - `listener`, `worker`: accepting and serving connections; hyper's
//!   server, and a lean HTTP/1.1 loop for bodiless requests on plain TCP
//!   that hands a connection to hyper at the first request it does not take
//!   (`listener/h1.rs`).
//! - `watchdog`: idle and header-read timeouts, without a timer per request.
//! - `admin`: /ready, /metrics, /config, POST /reload.
//! - `metrics`: counters and their Prometheus encoding.
//! - `access_log`: one line per request, secrets redacted.
//! - `error`: proxy errors and the one function that turns them into responses.
//! - [`demo`]: the embedded demo that `wasmgate` with no arguments serves.

#![forbid(unsafe_code)]

mod access_log;
mod admin;
mod body;
mod chain;
pub mod config;
pub mod demo;
mod error;
mod filtered_body;
mod h1;
mod headers;
pub mod lean;
mod listener;
mod metrics;
mod path;
mod proxy;
mod route;
mod shared;
mod snapshot;
mod start;
mod stream_map;
mod tls;
mod upstream;
mod watchdog;
mod worker;

pub use access_log::writer as access_log_writer;
pub use config::{Config, ConfigErrors};
pub use start::{Gateway, GatewayHandle, StartError, check};

static AFTER_LOAD: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets what runs on the loading thread after each configuration load (at
/// start and on every reload), once the modules are compiled: the binary
/// hands the compiler's freed heap back to the OS there (`mi_collect`).
/// Once only; later calls change nothing.
pub fn set_after_load(f: fn()) {
    let _ = AFTER_LOAD.set(f);
}

/// Runs the hook [`set_after_load`] set, if any.
pub(crate) fn after_load() {
    if let Some(f) = AFTER_LOAD.get() {
        f();
    }
}
