//! Worker threads: each runs its own single-threaded tokio runtime,
//! accepts on every listener (the sockets are shared) and serves the
//! connections it accepted from start to end. Filter instances and upstream
//! connection pools are per worker (thread-locals), so a request never
//! takes a lock or waits for another thread.

use std::{net::TcpListener as StdListener, sync::Arc, thread::JoinHandle, time::Duration};

use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::{
    listener::{Listener, accept_loop, server_builder},
    shared::Shared,
};

/// A listening socket and its TLS settings, before it is given to workers.
pub struct Bound {
    /// The bound socket.
    pub socket: StdListener,
    /// For HTTPS listeners.
    pub tls: Option<TlsAcceptor>,
}

/// Starts worker `index`.
///
/// # Errors
/// The thread or its runtime could not be created, or a socket not shared.
pub fn spawn(
    index: usize,
    bound: &[Bound],
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<JoinHandle<()>> {
    let sockets = bound
        .iter()
        .map(|b| Ok((b.socket.try_clone()?, b.tls.clone())))
        .collect::<std::io::Result<Vec<_>>>()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(format!("wasmgate-worker-{index}"))
        .spawn(move || {
            runtime.block_on(run(sockets, shared, stop));
            // Connections still open after the drain are cut here.
            runtime.shutdown_timeout(Duration::from_millis(100));
            // The access log lines this worker still holds.
            crate::access_log::writer::flush_local();
        })
}

async fn run(
    sockets: Vec<(StdListener, Option<TlsAcceptor>)>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let limits = shared.snapshot.load().limits.clone();
    let builder = Arc::new(server_builder(&limits));
    let graceful = Arc::new(GracefulShutdown::new());
    let mut loops = Vec::new();
    for (socket, tls) in sockets {
        let socket = match tokio::net::TcpListener::from_std(socket) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot register listener");
                continue;
            }
        };
        let listener = Listener { socket, tls };
        loops.push(tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            builder.clone(),
            graceful.clone(),
            stop.clone(),
        )));
    }
    // Filter timers, queues and root-context http calls of this worker.
    loops.push(tokio::spawn(crate::chain::timers::run(
        shared.clone(),
        stop.clone(),
    )));
    // This worker's access log lines go to the writer at least this often.
    loops.push(tokio::spawn(crate::access_log::writer::flush_periodically(
        stop.clone(),
    )));
    // Wait for the stop signal (or the handle being dropped).
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            break;
        }
    }
    for l in loops {
        let _ = l.await;
    }
    // Drain: connections finish their in-flight requests (HTTP/1.1 closes
    // after the current response, HTTP/2 sends GOAWAY), bounded in time.
    let drain = shared.snapshot.load().limits.drain_timeout.get();
    let Ok(graceful) = Arc::try_unwrap(graceful) else {
        tracing::error!("accept loops still hold the connection tracker; not draining");
        return;
    };
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(?drain, "drain timed out; closing remaining connections");
    }
}
