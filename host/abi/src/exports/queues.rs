//! Shared queues: `proxy_register_shared_queue`, `proxy_resolve_shared_queue`,
//! `proxy_enqueue_shared_queue`, `proxy_dequeue_shared_queue`. Enqueueing only records a
//! notification; the embedder delivers `on_queue_ready` with
//! [`crate::Vm::dispatch_queue_ready`].

use wasmtime::{Caller, Linker};

use super::{HostResult, status};
use crate::error::HostError;
use crate::limits::MAX_NAME_BYTES;
use crate::memory::{memory, return_bytes, slice, str_slice, write_u32};
use crate::shared::{DequeueOutcome, EnqueueOutcome};
use crate::state::HostState;
use crate::status::Status;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        proxy_register_shared_queue,
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        proxy_resolve_shared_queue,
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        proxy_enqueue_shared_queue,
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        proxy_dequeue_shared_queue,
    )?;
    Ok(())
}

/// `proxy_register_shared_queue(name, name_size, *id)`: always OK (same name, same id).
fn proxy_register_shared_queue(
    mut caller: Caller<'_, HostState>,
    nptr: u32,
    nlen: u32,
    id_out: u32,
) -> HostResult {
    const WHAT: &str = "proxy_register_shared_queue";
    let memory = memory(&caller)?;
    let (mem, state) = memory.data_and_store_mut(&mut caller);
    let name = slice(mem, nptr, nlen, MAX_NAME_BYTES, WHAT)?;
    let name = String::from_utf8_lossy(name);
    let id = state
        .plugin
        .shared
        .register_queue(&state.plugin.spec.vm_id, &name, &state.queue_notify)
        .ok_or_else(|| HostError::Limit(format!("{WHAT}: too many queues")))?;
    write_u32(mem, id_out, id, "proxy_register_shared_queue id")?;
    status(Status::Ok)
}

/// `proxy_resolve_shared_queue(vm_id, vm_id_size, name, name_size, *id)`: OK or NOT_FOUND.
/// An empty vm_id means the caller's own.
fn proxy_resolve_shared_queue(
    mut caller: Caller<'_, HostState>,
    vptr: u32,
    vlen: u32,
    nptr: u32,
    nlen: u32,
    id_out: u32,
) -> HostResult {
    const WHAT: &str = "proxy_resolve_shared_queue";
    let memory = memory(&caller)?;
    let (mem, state) = memory.data_and_store_mut(&mut caller);
    let (Some(vm_id), Some(name)) = (
        str_slice(mem, vptr, vlen, MAX_NAME_BYTES, WHAT)?,
        str_slice(mem, nptr, nlen, MAX_NAME_BYTES, WHAT)?,
    ) else {
        return status(Status::NotFound);
    };
    let vm_id = if vm_id.is_empty() {
        state.plugin.spec.vm_id.as_str()
    } else {
        vm_id
    };
    let Some(id) = state.plugin.shared.resolve_queue(vm_id, name) else {
        return status(Status::NotFound);
    };
    write_u32(mem, id_out, id, "proxy_resolve_shared_queue id")?;
    status(Status::Ok)
}

/// `proxy_enqueue_shared_queue(id, value, value_size)`: OK or NOT_FOUND.
fn proxy_enqueue_shared_queue(
    caller: Caller<'_, HostState>,
    id: u32,
    vptr: u32,
    vlen: u32,
) -> HostResult {
    const WHAT: &str = "proxy_enqueue_shared_queue";
    let mem = memory(&caller)?.data(&caller);
    let state = caller.data();
    let value = slice(mem, vptr, vlen, state.max_len(), WHAT)?;
    match state.plugin.shared.enqueue(id, value) {
        EnqueueOutcome::Ok => status(Status::Ok),
        EnqueueOutcome::NotFound => status(Status::NotFound),
        EnqueueOutcome::Full => Err(HostError::Limit(format!("{WHAT}: queue {id} is full")).into()),
    }
}

/// `proxy_dequeue_shared_queue(id, **value, *value_size)`: OK, EMPTY or NOT_FOUND.
fn proxy_dequeue_shared_queue(
    mut caller: Caller<'_, HostState>,
    id: u32,
    ptr_out: u32,
    len_out: u32,
) -> HostResult {
    match caller.data().plugin.shared.dequeue(id) {
        DequeueOutcome::Item(value) => {
            return_bytes(&mut caller, &value, ptr_out, len_out)?;
            status(Status::Ok)
        }
        DequeueOutcome::Empty => status(Status::Empty),
        DequeueOutcome::NotFound => status(Status::NotFound),
    }
}
