//! Properties: `proxy_get_property`, `proxy_set_property`. Path decoding and the attribute
//! values live in `crate::properties`.

use wasmtime::{Caller, Linker};

use super::{HostResult, status};
use crate::error::HostError;
use crate::limits::{MAX_NAME_BYTES, MAX_PROPERTIES};
use crate::memory::{memory, return_bytes, slice};
use crate::properties::{dotted, lookup, new_request_id};
use crate::state::HostState;
use crate::status::Status;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("env", "proxy_get_property", proxy_get_property)?;
    linker.func_wrap("env", "proxy_set_property", proxy_set_property)?;
    Ok(())
}

/// `proxy_get_property(path, path_size, **value, *value_size)`: OK or NOT_FOUND.
fn proxy_get_property(
    mut caller: Caller<'_, HostState>,
    pptr: u32,
    plen: u32,
    ptr_out: u32,
    len_out: u32,
) -> HostResult {
    let mem = memory(&caller)?.data(&caller);
    let path = slice(mem, pptr, plen, MAX_NAME_BYTES, "proxy_get_property path")?;
    let Some(key) = dotted(path) else {
        return status(Status::NotFound);
    };
    let value = match lookup(caller.data(), &key) {
        Some(value) => value,
        // Envoy makes an id for every request; this one is made only when a filter asks.
        None if key == "request.id" => match caller.data_mut().stream.get_mut() {
            Some(stream) => new_request_id(stream),
            None => return status(Status::NotFound),
        },
        None => return status(Status::NotFound),
    };
    return_bytes(&mut caller, &value, ptr_out, len_out)?;
    status(Status::Ok)
}

/// `proxy_set_property(path, path_size, value, value_size)`: stores a custom property on the
/// running stream (or on the root context outside a stream). Always OK for a valid path.
fn proxy_set_property(
    mut caller: Caller<'_, HostState>,
    pptr: u32,
    plen: u32,
    vptr: u32,
    vlen: u32,
) -> HostResult {
    const WHAT: &str = "proxy_set_property";
    let memory = memory(&caller)?;
    let (mem, state) = memory.data_and_store_mut(&mut caller);
    let path = slice(mem, pptr, plen, MAX_NAME_BYTES, WHAT)?;
    let value = slice(mem, vptr, vlen, state.max_len(), WHAT)?;
    let Some(key) = dotted(path) else {
        return status(Status::BadArgument);
    };
    let props = match state.stream.get_mut() {
        Some(stream) => &mut stream.properties,
        None => &mut state.root_properties,
    };
    if props.len() >= MAX_PROPERTIES && !props.contains_key(&key) {
        return Err(
            HostError::Limit(format!("{WHAT}: more than {MAX_PROPERTIES} properties")).into(),
        );
    }
    props.insert(key, value.to_vec());
    status(Status::Ok)
}
