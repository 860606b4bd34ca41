//! What filters do outside of requests, per worker: `on_tick` when a
//! filter set a tick period, `on_queue_ready` for queues it registered, and
//! http calls dispatched from the root context (answered with
//! `on_http_call_response` on the same Vm). What these callbacks address to
//! a paused request (resume it, answer it) goes to that request through
//! `signals`.
//!
//! Each worker runs [`run`], which also instantiates the filters of the
//! live configuration up front so that timers start without waiting for a
//! first request (as in Envoy, where `on_configure` starts them).

use std::{sync::Arc, time::Duration};

use tokio::{sync::watch, time::Instant};
use wasmgate_abi::{HttpCallRequest, Vm};

use super::{
    Chain, http_call,
    instances::{VMS, slot},
    signals,
};
use crate::shared::Shared;

/// How often timers and queues are looked at.
const GRANULARITY: Duration = Duration::from_millis(10);

/// Drives timers, queues and root http calls until `stop` fires.
pub async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(GRANULARITY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => return,
        }
        let snapshot = shared.snapshot.load_full();
        let chains: Vec<Arc<Chain>> = snapshot
            .routes
            .iter()
            .filter_map(|r| r.chain.clone())
            .collect();
        for (chain, i, call) in drive(&chains) {
            tokio::spawn(answer(chain, i, call));
        }
    }
}

/// One pass over this worker's Vms of `chains`; returns root http calls to perform.
fn drive(chains: &[Arc<Chain>]) -> Vec<(Arc<Chain>, usize, HttpCallRequest)> {
    let now = Instant::now();
    let mut calls = Vec::new();
    VMS.with_borrow_mut(|map| {
        for chain in chains {
            for i in 0..chain.filters.len() {
                let Ok(slot) = slot(map, chain, i) else {
                    continue;
                };
                let vm = slot.vm.as_mut().expect("slot() instantiates");
                let mut result = Ok(());
                match vm.tick_period().filter(|p| !p.is_zero()) {
                    Some(period) => {
                        let due = *slot.next_tick.get_or_insert(now + period);
                        if now >= due {
                            slot.next_tick = Some(now + period);
                            result = vm.on_tick();
                        }
                    }
                    None => slot.next_tick = None,
                }
                let result = result.and_then(|()| vm.dispatch_queue_ready());
                if vm.has_stream_signals() {
                    signals::deliver(chain.id, i, slot.incarnation, vm.take_stream_signals());
                }
                calls.extend(
                    vm.take_http_calls()
                        .into_iter()
                        .map(|c| (chain.clone(), i, c)),
                );
                if let Err(fault) = result {
                    fail(chain, i, &fault, vm);
                }
            }
        }
    });
    calls
}

fn fail(chain: &Chain, i: usize, fault: &wasmgate_abi::Fault, vm: &Vm) {
    let def = &chain.filters[i];
    def.stats
        .failures
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(filter = %def.name, error = %fault, broken = vm.is_broken(), "filter failed outside a request");
}

/// Performs a root-context call, delivers the answer, and follows any calls
/// the answer dispatched.
async fn answer(chain: Arc<Chain>, i: usize, call: HttpCallRequest) {
    let mut pending = vec![call];
    while let Some(call) = pending.pop() {
        let token = call.token;
        let response = http_call::perform(&chain.upstreams, call).await;
        VMS.with_borrow_mut(|map| {
            let Ok(slot) = slot(map, &chain, i) else {
                return;
            };
            let vm = slot.vm.as_mut().expect("slot() instantiates");
            if let Err(fault) = vm.on_http_call_response(None, token, response) {
                fail(&chain, i, &fault, vm);
            }
            if vm.has_stream_signals() {
                signals::deliver(chain.id, i, slot.incarnation, vm.take_stream_signals());
            }
            pending.extend(vm.take_http_calls());
        });
    }
}
