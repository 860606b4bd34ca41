//! Each worker's filter instances: one [`Vm`] per filter of each chain, in
//! a thread-local, created on first use and replaced when broken. Callers
//! borrow a Vm for one synchronous callback at a time.

use std::{
    cell::RefCell,
    sync::{Arc, Weak, atomic::Ordering},
};

use wasmgate_abi::Vm;

use super::Chain;

/// A worker's instance of one filter.
pub(super) struct Slot {
    pub(super) vm: Option<Vm>,
    /// Bumped whenever the Vm is replaced: streams created on an older
    /// incarnation lost their context.
    pub(super) incarnation: u64,
    /// When `on_tick` is next due (the filter set a tick period).
    pub(super) next_tick: Option<tokio::time::Instant>,
}

/// A worker's instances of one chain's filters.
pub(super) struct WorkerChain {
    /// [`Chain::id`].
    id: u64,
    chain: Weak<Chain>,
    slots: Vec<Slot>,
}

thread_local! {
    /// This worker's instances, by chain. A handful of entries: a linear
    /// scan beats hashing.
    pub(super) static VMS: RefCell<Vec<WorkerChain>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this worker's Vm for filter `i` of `chain`, creating it on
/// first use. The RefCell borrow lasts for this synchronous call only.
#[inline]
pub(super) fn with_vm<R>(
    chain: &Arc<Chain>,
    i: usize,
    f: impl FnOnce(&mut Vm, u64) -> R,
) -> Result<R, String> {
    // try_*: a request dropped while the worker's thread-locals are torn
    // down (or, by mistake, from inside a callback) must not panic.
    VMS.try_with(|cell| {
        let mut map = cell
            .try_borrow_mut()
            .map_err(|_| "filter instances busy".to_string())?;
        let slot = slot(&mut map, chain, i)?;
        let incarnation = slot.incarnation;
        Ok(f(
            slot.vm.as_mut().expect("slot() instantiates"),
            incarnation,
        ))
    })
    .unwrap_or_else(|_| Err("worker is shutting down".to_string()))
}

/// This worker's slot for filter `i` of `chain`, with a live Vm (created,
/// or replaced if broken).
#[inline(always)]
pub(super) fn slot<'m>(
    map: &'m mut Vec<WorkerChain>,
    chain: &Arc<Chain>,
    i: usize,
) -> Result<&'m mut Slot, String> {
    // The usual case, kept small enough to inline: the chain's instances
    // exist and the Vm is healthy.
    let index = match map.iter().position(|w| w.id == chain.id) {
        Some(index)
            if map[index].slots[i]
                .vm
                .as_ref()
                .is_some_and(|vm| !vm.is_broken()) =>
        {
            index
        }
        _ => prepare(map, chain, i)?,
    };
    Ok(&mut map[index].slots[i])
}

/// [`slot`]'s slow path: registers the chain on this worker on its first
/// use and (re)creates the Vm of filter `i`. Returns the chain's index.
#[cold]
fn prepare(map: &mut Vec<WorkerChain>, chain: &Arc<Chain>, i: usize) -> Result<usize, String> {
    let index = match map.iter().position(|w| w.id == chain.id) {
        Some(index) => index,
        None => {
            // First use of a new chain on this worker: also drop the
            // instances of chains no configuration uses any more.
            map.retain(|w| w.chain.strong_count() > 0);
            let slots = (0..chain.filters.len())
                .map(|_| Slot {
                    vm: None,
                    incarnation: 1,
                    next_tick: None,
                })
                .collect();
            map.push(WorkerChain {
                id: chain.id,
                chain: Arc::downgrade(chain),
                slots,
            });
            map.len() - 1
        }
    };
    let slot = &mut map[index].slots[i];
    if slot.vm.as_ref().is_none_or(Vm::is_broken) {
        if slot.vm.take().is_some() {
            slot.incarnation += 1;
            chain.filters[i]
                .stats
                .vm_replaced
                .fetch_add(1, Ordering::Relaxed);
        }
        slot.next_tick = None;
        slot.vm = Some(
            chain.filters[i]
                .plugin
                .instantiate()
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(index)
}

/// Drops this worker's Vm of filter `i` (after a fault); the next request
/// gets a fresh one.
pub(super) fn replace_vm(chain: &Arc<Chain>, i: usize) {
    let _ = VMS.try_with(|cell| {
        let Ok(mut map) = cell.try_borrow_mut() else {
            return;
        };
        if let Some(slot) = map
            .iter_mut()
            .find(|w| w.id == chain.id)
            .map(|w| &mut w.slots[i])
            && slot.vm.take().is_some()
        {
            slot.incarnation += 1;
            chain.filters[i]
                .stats
                .vm_replaced
                .fetch_add(1, Ordering::Relaxed);
        }
    });
}
