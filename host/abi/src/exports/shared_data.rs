//! Shared key/value data: `proxy_get_shared_data`, `proxy_set_shared_data`. Scoped by the
//! plugin's `vm_id`, process-wide (see `crate::shared`).

use wasmtime::{Caller, Linker};

use super::{HostResult, status};
use crate::error::HostError;
use crate::limits::MAX_NAME_BYTES;
use crate::memory::{memory, return_bytes, slice, str_slice, write_u32};
use crate::shared::SetOutcome;
use crate::state::HostState;
use crate::status::Status;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("env", "proxy_get_shared_data", proxy_get_shared_data)?;
    linker.func_wrap("env", "proxy_set_shared_data", proxy_set_shared_data)?;
    Ok(())
}

/// `proxy_get_shared_data(key, key_size, **value, *value_size, *cas)`: OK or NOT_FOUND.
fn proxy_get_shared_data(
    mut caller: Caller<'_, HostState>,
    kptr: u32,
    klen: u32,
    ptr_out: u32,
    len_out: u32,
    cas_out: u32,
) -> HostResult {
    let mem = memory(&caller)?.data(&caller);
    let state = caller.data();
    let Some(key) = str_slice(mem, kptr, klen, MAX_NAME_BYTES, "proxy_get_shared_data key")? else {
        return status(Status::NotFound);
    };
    let Some((value, cas)) = state.plugin.shared.get(&state.plugin.spec.vm_id, key) else {
        return status(Status::NotFound);
    };
    return_bytes(&mut caller, &value, ptr_out, len_out)?;
    let mem = memory(&caller)?.data_mut(&mut caller);
    write_u32(mem, cas_out, cas, "proxy_get_shared_data cas")?;
    status(Status::Ok)
}

/// `proxy_set_shared_data(key, key_size, value, value_size, cas)`: OK or CAS_MISMATCH.
fn proxy_set_shared_data(
    caller: Caller<'_, HostState>,
    kptr: u32,
    klen: u32,
    vptr: u32,
    vlen: u32,
    cas: u32,
) -> HostResult {
    const WHAT: &str = "proxy_set_shared_data";
    let mem = memory(&caller)?.data(&caller);
    let state = caller.data();
    let key = slice(mem, kptr, klen, MAX_NAME_BYTES, WHAT)?;
    let value = slice(mem, vptr, vlen, state.max_len(), WHAT)?;
    let key = String::from_utf8_lossy(key);
    match state
        .plugin
        .shared
        .set(&state.plugin.spec.vm_id, &key, value, cas)
    {
        SetOutcome::Ok => status(Status::Ok),
        SetOutcome::CasMismatch => status(Status::CasMismatch),
        SetOutcome::TooManyKeys => {
            Err(HostError::Limit(format!("{WHAT}: too many shared data keys")).into())
        }
    }
}
