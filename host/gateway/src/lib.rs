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
//!               │   checks: CL+TE conflict 400, body limit 413
//!               ▼
//!           on_request_headers   filter 0 → 1 → … (pause: http calls answered, resume;
//!               │                                   failure: deny 503 / allow skip;
//!               │                                   close_stream: reset, no response)
//!           on_request_body / on_request_trailers   (streamed chunk by chunk)
//!               │   a local reply from a request phase skips the upstream and goes
//!               │   through the response callbacks below, as in Envoy
//!               ▼
//!           upstream (worker-local pool; h1 keep-alive or h2; TLS verified;
//!               │     connect failure 502, timeout 504; a bodiless idempotent
//!               │     request to a plain h1 upstream is written and read in
//!               │     the request's own task, `upstream/h1.rs`)
//!               ▼
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
//!   per upstream), again with no lock;
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
//! - [`config`]: the file format, parsing and validation (errors name file and key).
//! - [`snapshot`]: a configuration built into routes, upstreams and filter chains.
//! - [`route`]: host and path matching.
//! - [`proxy`]: the request pipeline (the chart above).
//! - [`chain`]: a route's filters and one request's trip through them; per-worker
//!   instances (`chain/instances.rs`), http calls (`chain/http_call.rs`), and
//!   ticks, queues and root-context calls between requests ([`chain::timers`]).
//! - [`filtered_body`]: streaming bodies through filters, body size limit.
//! - `h1`: the HTTP/1.1 codec both lean paths share (request and response
//!   heads read and written, body framing, the chunked decoder, the date).
//! - [`stream_map`]: headers between hyper and the filters' view.
//! - [`headers`]: hop-by-hop headers, framing owned by the proxy, `x-forwarded-*`.
//! - [`lean`]: the switch that turns the lean HTTP/1.1 paths off (`WASMGATE_LEAN_HTTP1=off`).
//! - [`path`]: the normal form of a request path (routing and forwarding).
//! - [`upstream`]: connections to upstreams, pooled per worker; hyper's client, and a
//!   lean HTTP/1.1 client for bodiless idempotent requests (`upstream/h1.rs`).
//! - [`tls`]: rustls server and client configurations.
//! - [`listener`], [`worker`]: accepting and serving connections; hyper's
//!   server, and a lean HTTP/1.1 loop for bodiless requests on plain TCP
//!   that hands a connection to hyper at the first request it does not take
//!   (`listener/h1.rs`).
//! - [`watchdog`]: idle and header-read timeouts, without a timer per request.
//! - [`admin`]: /ready, /metrics, /config, POST /reload.
//! - [`metrics`]: counters and their Prometheus encoding.
//! - [`access_log`]: one line per request, secrets redacted.
//! - [`error`]: proxy errors and the one function that turns them into responses.
//! - [`demo`]: the embedded demo that `wasmgate` with no arguments serves.

#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod body;
pub mod chain;
pub mod config;
pub mod demo;
pub mod error;
pub mod filtered_body;
mod h1;
pub mod headers;
pub mod lean;
pub mod listener;
pub mod metrics;
pub mod path;
pub mod proxy;
pub mod route;
pub mod snapshot;
pub mod stream_map;
pub mod tls;
pub mod upstream;
pub mod watchdog;
pub mod worker;

use std::{
    net::{SocketAddr, TcpListener as StdListener},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use wasmgate_abi::{Runtime, RuntimeConfig};

pub use config::{Config, ConfigErrors};
use metrics::{FilterMetricsSource, Stats};
use snapshot::Snapshot;

/// State every worker and the admin endpoint share.
pub struct Shared {
    /// The live configuration; requests load it, reloads swap it.
    pub snapshot: ArcSwap<Snapshot>,
    /// Counters that survive reloads.
    pub stats: Arc<Stats>,
    /// The wasm engine (compiled modules are reused across reloads).
    pub runtime: Runtime,
    /// The file `reload` re-reads; None for a configuration given in memory.
    pub config_path: Option<PathBuf>,
    draining: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config_path", &self.config_path)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Loads a new configuration (the given one, or the file again) and
    /// swaps it in. In-flight requests finish on the old one. On error
    /// nothing changes.
    ///
    /// # Errors
    /// Every problem with the new configuration.
    pub fn reload(&self, config: Option<Config>) -> Result<u64, ConfigErrors> {
        let result = match (config, &self.config_path) {
            (Some(c), _) => c.validate(),
            (None, Some(path)) => Config::load(path),
            (None, None) => Err(ConfigErrors::new(vec![
                "no configuration file to reload".into(),
            ])),
        }
        .and_then(|c| {
            let old = self.snapshot.load();
            if c.listeners.iter().map(|l| &l.address).ne(old
                .config
                .listeners
                .iter()
                .map(|l| &l.address))
            {
                tracing::warn!("listener changes take effect only after a restart");
            }
            Snapshot::build(c, &self.runtime, &self.stats)
        });
        match result {
            Ok(snapshot) => {
                for warning in &snapshot.warnings {
                    tracing::warn!("{warning}");
                }
                let generation = snapshot.generation;
                self.snapshot.store(Arc::new(snapshot));
                self.stats.global.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(generation, "configuration reloaded");
                Ok(generation)
            }
            Err(errors) => {
                self.stats
                    .global
                    .reload_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    "reload rejected, the previous configuration keeps serving:\n{errors}"
                );
                Err(errors)
            }
        }
    }
}

impl FilterMetricsSource for Shared {
    fn filter_metrics(&self) -> Vec<(String, Vec<wasmgate_abi::MetricSample>)> {
        let snapshot = self.snapshot.load();
        snapshot
            .plugins()
            .map(|f| (f.name.clone(), f.plugin.metrics()))
            .collect()
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// The wasm runtime could not start.
    #[error("wasm runtime: {0}")]
    Runtime(String),
    /// A socket could not be bound or a thread started.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Validates a configuration file the way `run` would load it: parses,
/// validates, reads TLS files and compiles and configures every filter.
/// Returns the warnings (e.g. secrets over cleartext).
///
/// # Errors
/// Every problem found.
pub fn check(path: &std::path::Path) -> Result<Vec<String>, StartError> {
    let config = Config::load(path)?;
    let runtime = new_runtime(&config)?;
    let snapshot = Snapshot::build(config, &runtime, &Arc::new(Stats::default()))?;
    Ok(snapshot.warnings.clone())
}

fn new_runtime(config: &Config) -> Result<Runtime, StartError> {
    let rc = RuntimeConfig {
        cache_dir: config.module_cache.as_ref().map(|p| config.resolve(p)),
        ..Default::default()
    };
    Runtime::new(rc).map_err(|e| StartError::Runtime(e.to_string()))
}

/// The gateway as a library: start it, read its addresses, reload, stop.
#[derive(Debug)]
pub struct Gateway;

impl Gateway {
    /// Loads the file and starts serving (see [`Gateway::start`]); reloads
    /// re-read the file.
    ///
    /// # Errors
    /// See [`StartError`].
    pub fn start_file(path: &std::path::Path) -> Result<GatewayHandle, StartError> {
        let config = Config::load(path)?;
        start(config, Some(path.to_path_buf()))
    }

    /// Validates and starts a configuration given in memory: binds the
    /// listeners (port 0 picks a free one), starts the workers and the admin
    /// endpoint. Returns at once; the gateway runs on its own threads.
    ///
    /// # Errors
    /// See [`StartError`].
    pub fn start(config: Config) -> Result<GatewayHandle, StartError> {
        let config = config.validate()?;
        start(config, None)
    }
}

fn start(config: Config, config_path: Option<PathBuf>) -> Result<GatewayHandle, StartError> {
    let runtime = new_runtime(&config)?;
    let stats = Arc::new(Stats::default());
    let workers = config
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    let snapshot = Snapshot::build(config, &runtime, &stats)?;
    for warning in &snapshot.warnings {
        tracing::warn!("{warning}");
    }
    let mut bound = Vec::new();
    let mut addresses = Vec::new();
    for (i, l) in snapshot.config.listeners.iter().enumerate() {
        let io = |what: &str, source| StartError::Io {
            what: format!("listeners[{i}] {}: {what}", l.address),
            source,
        };
        let socket = StdListener::bind(&l.address).map_err(|e| io("bind", e))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| io("set non-blocking", e))?;
        addresses.push(socket.local_addr().map_err(|e| io("local address", e))?);
        let tls = match &l.tls {
            Some(t) => Some(tokio_rustls::TlsAcceptor::from(
                tls::server_config(
                    &snapshot.config.resolve(&t.cert),
                    &snapshot.config.resolve(&t.key),
                )
                .map_err(|e| ConfigErrors::new(vec![format!("listeners[{i}].tls: {e}")]))?,
            )),
            None => None,
        };
        bound.push(worker::Bound { socket, tls });
    }
    let admin_listener = match &snapshot.config.admin {
        Some(a) => {
            let socket = StdListener::bind(&a.address).map_err(|source| StartError::Io {
                what: format!("admin {}: bind", a.address),
                source,
            })?;
            socket
                .set_nonblocking(true)
                .map_err(|source| StartError::Io {
                    what: "admin: set non-blocking".into(),
                    source,
                })?;
            Some(socket)
        }
        None => None,
    };
    let admin_address = admin_listener.as_ref().and_then(|s| s.local_addr().ok());
    let shared = Arc::new(Shared {
        snapshot: ArcSwap::from_pointee(snapshot),
        stats,
        runtime,
        config_path,
        draining: AtomicBool::new(false),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut threads = Vec::new();
    for i in 0..workers {
        let handle =
            worker::spawn(i, &bound, shared.clone(), stop_rx.clone()).map_err(|source| {
                StartError::Io {
                    what: format!("worker {i}"),
                    source,
                }
            })?;
        threads.push(handle);
    }
    if let Some(socket) = admin_listener {
        threads.push(spawn_admin(socket, shared.clone(), stop_rx.clone())?);
    }
    tracing::info!(listeners = ?addresses, admin = ?admin_address, workers, "wasmgate serving");
    Ok(GatewayHandle {
        listeners: addresses,
        admin: admin_address,
        shared,
        stop: stop_tx,
        threads,
    })
}

fn spawn_admin(
    socket: StdListener,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, StartError> {
    let io = |source| StartError::Io {
        what: "admin thread".into(),
        source,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io)?;
    std::thread::Builder::new()
        .name("wasmgate-admin".into())
        .spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(socket) {
                    Ok(listener) => admin::serve(listener, shared, stop).await,
                    Err(e) => tracing::error!(error = %e, "admin listener"),
                }
            });
        })
        .map_err(io)
}

/// A running gateway. Dropping it stops the gateway (without waiting).
#[derive(Debug)]
pub struct GatewayHandle {
    /// Bound listener addresses, in configuration order.
    pub listeners: Vec<SocketAddr>,
    /// Bound admin address, if configured.
    pub admin: Option<SocketAddr>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl GatewayHandle {
    /// The first listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.listeners[0]
    }

    /// The shared state (live configuration, stats).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Swaps in a new configuration (or re-reads the file with `None`).
    ///
    /// # Errors
    /// The new configuration's problems; the old one keeps serving.
    pub fn reload(&self, config: Option<Config>) -> Result<u64, ConfigErrors> {
        self.shared.reload(config)
    }

    /// Starts draining: stop accepting, let in-flight requests finish
    /// (up to `limits.drain_timeout`), then stop. Returns at once.
    pub fn begin_shutdown(&self) {
        self.shared.draining.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
    }

    /// Drains and waits for every thread to end (blocking).
    pub fn shutdown_blocking(mut self) {
        self.begin_shutdown();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Drains and waits for every thread to end, from async code.
    pub async fn shutdown(self) {
        let _ = tokio::task::spawn_blocking(move || self.shutdown_blocking()).await;
    }

    /// Serves SIGHUP (reload) and SIGTERM/SIGINT (drain, then return) for
    /// the binary.
    ///
    /// # Errors
    /// Signal handlers could not be installed.
    pub async fn run_until_signal(self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading");
                    let shared = self.shared.clone();
                    let _ = tokio::task::spawn_blocking(move || shared.reload(None)).await;
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        tracing::info!("draining");
        self.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        self.shared.draining.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
    }
}
