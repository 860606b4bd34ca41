//! Stream operations a filter addresses to another of its streams, and the
//! requests that wait for them.
//!
//! A filter may pause a request and resume it from somewhere else: Go's
//! `postpone_requests` pauses in `on_http_request_headers` and, from
//! `on_tick`, calls `proxy_set_effective_context(ctx)` and
//! `proxy_continue_stream`. The runtime hands such operations out as
//! [`StreamSignal`]s ([`wasmgate_abi::Vm::take_stream_signals`]); whoever
//! ran the callback (a request's [`super::FilterRun`], or the worker's
//! timers) passes them to [`deliver`], which finds the paused request in
//! this worker's registry and sends them to its [`Inbox`].
//!
//! A stream context belongs to one worker's Vm, so the registry is a
//! thread-local: the request and whatever resumes it run on the same
//! worker. A context is named by chain, filter, Vm incarnation (a replaced
//! Vm reuses ids) and id. A signal for a context nobody waits on (a
//! finished request) is dropped, as Envoy ignores a context it cannot find.

use std::cell::RefCell;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use wasmgate_abi::{StreamOp, StreamSignal};

/// One stream context of one worker's Vm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ContextKey {
    /// The chain's id.
    pub(super) chain: u64,
    /// The filter's index in the chain.
    pub(super) filter: usize,
    /// The Vm's incarnation on this worker.
    pub(super) incarnation: u64,
    /// The stream's context id in that Vm.
    pub(super) context: u32,
}

/// A registered context and where its operations go (with the filter index).
struct Waiter {
    key: ContextKey,
    to: UnboundedSender<(usize, StreamOp)>,
}

thread_local! {
    /// The contexts of this worker's paused requests. A handful at a time:
    /// a linear scan.
    static WAITERS: RefCell<Vec<Waiter>> = const { RefCell::new(Vec::new()) };
}

/// Where one request receives the operations addressed to its contexts.
/// Its contexts stay registered until it is dropped.
pub(super) struct Inbox {
    rx: UnboundedReceiver<(usize, StreamOp)>,
    tx: UnboundedSender<(usize, StreamOp)>,
    keys: Vec<ContextKey>,
}

impl Inbox {
    pub(super) fn new() -> Self {
        let (tx, rx) = unbounded_channel();
        Self {
            rx,
            tx,
            keys: Vec::new(),
        }
    }

    /// Registers `key` for this inbox (once).
    pub(super) fn register(&mut self, key: ContextKey) {
        if self.keys.contains(&key) {
            return;
        }
        self.keys.push(key);
        let to = self.tx.clone();
        let _ = WAITERS.try_with(|w| w.borrow_mut().push(Waiter { key, to }));
    }

    /// An operation already received, if any.
    pub(super) fn try_next(&mut self) -> Option<(usize, StreamOp)> {
        self.rx.try_recv().ok()
    }

    /// The next operation (never `None`: the inbox holds a sender itself).
    pub(super) async fn next(&mut self) -> Option<(usize, StreamOp)> {
        self.rx.recv().await
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let keys = std::mem::take(&mut self.keys);
        // try_*: an inbox dropped while the worker's thread-locals are torn
        // down must not panic.
        let _ = WAITERS.try_with(|w| {
            if let Ok(mut w) = w.try_borrow_mut() {
                w.retain(|waiter| !keys.contains(&waiter.key));
            }
        });
    }
}

/// Sends `signals` from filter `filter` of chain `chain` (Vm `incarnation`)
/// to the requests that hold their contexts.
pub(super) fn deliver(chain: u64, filter: usize, incarnation: u64, signals: Vec<StreamSignal>) {
    if signals.is_empty() {
        return;
    }
    let _ = WAITERS.try_with(|w| {
        let Ok(w) = w.try_borrow() else {
            return;
        };
        for signal in signals {
            let key = ContextKey {
                chain,
                filter,
                incarnation,
                context: signal.context_id,
            };
            match w.iter().find(|waiter| waiter.key == key) {
                Some(waiter) => {
                    let _ = waiter.to.send((filter, signal.op));
                }
                None => {
                    tracing::debug!(
                        context = signal.context_id,
                        "stream operation for a context nobody waits on"
                    );
                }
            }
        }
    });
}
