//! Start-up and shut-down: binding the listeners and the admin endpoint,
//! starting the workers, and the handle that reloads and stops them (also on
//! signals, for the binary).

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

use crate::{
    admin,
    config::{Config, ConfigErrors},
    metrics::Stats,
    shared::Shared,
    snapshot::Snapshot,
    tls, worker,
};

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
    let snapshot = Snapshot::build(config, &runtime, &stats);
    crate::after_load();
    let snapshot = snapshot?;
    for warning in &snapshot.warnings {
        tracing::warn!("{warning}");
    }
    snapshot.start_background();
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
        // Every worker has handed its access log lines over: wait until
        // they are written (a clean stop loses none).
        if !crate::access_log::writer::flush(std::time::Duration::from_secs(10)) {
            tracing::warn!("access log: not every line could be written before the stop");
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
