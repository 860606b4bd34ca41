//! HTTP fields: the header and trailer maps (`proxy_get_header_map_size`, `_pairs`,
//! `proxy_set_header_map_pairs`, `proxy_get/add/replace/remove_header_map_value`).
//!
//! Request/response headers and trailers belong to the stream of the running callback; the
//! http-call response maps to the response being delivered. A map that is not available
//! reads as empty (size 0; the Rust SDK only accepts OK here) and refuses writes with
//! BAD_ARGUMENT, as Envoy does. A map type the ABI does not define (above 7) is BAD_ARGUMENT
//! for every call, before anything else is read, as in Envoy.

use wasmtime::{Caller, Linker};

use super::{HostResult, status};
use crate::error::HostError;
use crate::limits::{MAX_HEADER_VALUE_BYTES, MAX_MAP_PAIRS, MAX_NAME_BYTES};
use crate::memory::{memory, return_bytes, return_value, slice, str_slice, write_u32};
use crate::state::HostState;
use crate::status::{Status, map};
use crate::stream::{HeaderMap, deserialize_map};

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_header_map_size",
        proxy_get_header_map_size,
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        proxy_get_header_map_pairs,
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        proxy_set_header_map_pairs,
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        proxy_get_header_map_value,
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        proxy_add_header_map_value,
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        proxy_replace_header_map_value,
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        proxy_remove_header_map_value,
    )?;
    Ok(())
}

/// The map of type `ty` as the running callback sees it.
#[inline]
fn map_ref(state: &HostState, ty: u32) -> Option<&HeaderMap> {
    match ty {
        map::HTTP_REQUEST_HEADERS => state.stream.get().map(|s| &s.request_headers),
        map::HTTP_REQUEST_TRAILERS => state.stream.get().map(|s| &s.request_trailers),
        map::HTTP_RESPONSE_HEADERS => state.stream.get().map(|s| &s.response_headers),
        map::HTTP_RESPONSE_TRAILERS => state.stream.get().map(|s| &s.response_trailers),
        map::HTTP_CALL_RESPONSE_HEADERS => state.http_response.as_ref().map(|r| &r.headers),
        map::HTTP_CALL_RESPONSE_TRAILERS => state.http_response.as_ref().map(|r| &r.trailers),
        _ => None,
    }
}

#[inline]
fn map_mut(state: &mut HostState, ty: u32) -> Option<&mut HeaderMap> {
    match ty {
        map::HTTP_REQUEST_HEADERS => state.stream.get_mut().map(|s| &mut s.request_headers),
        map::HTTP_REQUEST_TRAILERS => state.stream.get_mut().map(|s| &mut s.request_trailers),
        map::HTTP_RESPONSE_HEADERS => state.stream.get_mut().map(|s| &mut s.response_headers),
        map::HTTP_RESPONSE_TRAILERS => state.stream.get_mut().map(|s| &mut s.response_trailers),
        map::HTTP_CALL_RESPONSE_HEADERS => state.http_response.as_mut().map(|r| &mut r.headers),
        map::HTTP_CALL_RESPONSE_TRAILERS => state.http_response.as_mut().map(|r| &mut r.trailers),
        _ => None,
    }
}

/// `proxy_get_header_map_size(type, *size)`: serialized size in bytes (0 when empty).
fn proxy_get_header_map_size(mut caller: Caller<'_, HostState>, ty: u32, out: u32) -> HostResult {
    if ty > map::MAX {
        return status(Status::BadArgument);
    }
    let size = map_ref(caller.data(), ty).map_or(0, HeaderMap::serialized_len);
    let mem = memory(&caller)?.data_mut(&mut caller);
    write_u32(mem, out, size as u32, "proxy_get_header_map_size size")?;
    status(Status::Ok)
}

/// `proxy_get_header_map_pairs(type, **data, *size)`: the serialized map; an empty or
/// unavailable map is a null pointer with size 0 (never the 1-byte form the SDK rejects).
fn proxy_get_header_map_pairs(
    mut caller: Caller<'_, HostState>,
    ty: u32,
    ptr_out: u32,
    len_out: u32,
) -> HostResult {
    if ty > map::MAX {
        return status(Status::BadArgument);
    }
    let len = map_ref(caller.data(), ty).map_or(0, HeaderMap::serialized_len);
    return_value(&mut caller, len, ptr_out, len_out, |state, dst| {
        map_ref(state, ty).is_some_and(|m| m.serialize_to_slice(dst))
    })?;
    status(Status::Ok)
}

/// `proxy_set_header_map_pairs(type, data, size)`: replaces the whole map.
fn proxy_set_header_map_pairs(
    mut caller: Caller<'_, HostState>,
    ty: u32,
    ptr: u32,
    len: u32,
) -> HostResult {
    if ty > map::MAX {
        return status(Status::BadArgument);
    }
    let memory = memory(&caller)?;
    let (mem, state) = memory.data_and_store_mut(&mut caller);
    let bytes = slice(
        mem,
        ptr,
        len,
        state.max_len(),
        "proxy_set_header_map_pairs map",
    )?;
    let Ok(new_map) = deserialize_map(bytes, MAX_MAP_PAIRS) else {
        return status(Status::BadArgument);
    };
    match map_mut(state, ty) {
        Some(m) => {
            *m = new_map;
            m.mark_replaced();
            status(Status::Ok)
        }
        None => status(Status::BadArgument),
    }
}

/// `proxy_get_header_map_value(type, key, key_size, **value, *value_size)`: the first value,
/// or NOT_FOUND. An empty value is OK with a null pointer (the SDK reads `Some("")`).
fn proxy_get_header_map_value(
    mut caller: Caller<'_, HostState>,
    ty: u32,
    kptr: u32,
    klen: u32,
    ptr_out: u32,
    len_out: u32,
) -> HostResult {
    if ty > map::MAX {
        return status(Status::BadArgument);
    }
    let memory = memory(&caller)?;
    let (mem, state) = memory.data_and_store_mut(&mut caller);
    let key = slice(
        mem,
        kptr,
        klen,
        MAX_NAME_BYTES,
        "proxy_get_header_map_value key",
    )?;
    // Copy the value out (into a reused buffer): the guest allocator runs before it is written.
    let mut value = std::mem::take(&mut state.scratch);
    value.clear();
    match map_ref(state, ty).and_then(|m| m.get_bytes(key)) {
        Some(v) => value.extend_from_slice(v),
        None => {
            state.scratch = value;
            return status(Status::NotFound);
        }
    }
    let result = return_bytes(&mut caller, &value, ptr_out, len_out);
    caller.data_mut().scratch = value;
    result?;
    status(Status::Ok)
}

/// Reads the key and value arguments of add/replace, with their caps.
fn key_value<'m>(
    mem: &'m [u8],
    (kptr, klen, vptr, vlen): (u32, u32, u32, u32),
    what: &'static str,
) -> Result<(Option<&'m str>, &'m [u8]), HostError> {
    let key = str_slice(mem, kptr, klen, MAX_NAME_BYTES, what)?;
    let value = slice(mem, vptr, vlen, MAX_HEADER_VALUE_BYTES, what)?;
    Ok((key, value))
}

fn check_growth(map: &HeaderMap, what: &'static str) -> Result<(), HostError> {
    if map.len() >= MAX_MAP_PAIRS {
        return Err(HostError::Limit(format!(
            "{what}: header map already has {} pairs",
            map.len()
        )));
    }
    Ok(())
}

/// `proxy_add_header_map_value(type, key, key_size, value, value_size)`: appends a pair.
fn proxy_add_header_map_value(
    mut caller: Caller<'_, HostState>,
    ty: u32,
    kptr: u32,
    klen: u32,
    vptr: u32,
    vlen: u32,
) -> HostResult {
    let kv = (kptr, klen, vptr, vlen);
    write_pair(
        &mut caller,
        ty,
        kv,
        "proxy_add_header_map_value",
        HeaderMap::add_bytes,
    )
}

/// `proxy_replace_header_map_value(...)`: "add or replace": overwrites the first value in
/// place and drops the others, or appends when absent (Envoy's `setCopy`).
fn proxy_replace_header_map_value(
    mut caller: Caller<'_, HostState>,
    ty: u32,
    kptr: u32,
    klen: u32,
    vptr: u32,
    vlen: u32,
) -> HostResult {
    let kv = (kptr, klen, vptr, vlen);
    write_pair(
        &mut caller,
        ty,
        kv,
        "proxy_replace_header_map_value",
        HeaderMap::replace_bytes,
    )
}

/// The shared body of the add and replace calls: reads the pair from guest memory (`what`
/// names the call in errors), answers BAD_ARGUMENT for a non-UTF-8 key or an unknown or
/// unavailable map,
/// enforces the pair limit, then applies `write` (inlined: one copy per caller).
fn write_pair(
    caller: &mut Caller<'_, HostState>,
    ty: u32,
    kv: (u32, u32, u32, u32),
    what: &'static str,
    write: impl FnOnce(&mut HeaderMap, &str, &[u8]),
) -> HostResult {
    if ty > map::MAX {
        return status(Status::BadArgument);
    }
    let memory = memory(caller)?;
    let (mem, state) = memory.data_and_store_mut(caller);
    let (key, value) = key_value(mem, kv, what)?;
    let (Some(key), Some(map)) = (key, map_mut(state, ty)) else {
        return status(Status::BadArgument);
    };
    check_growth(map, what)?;
    write(map, key, value);
    status(Status::Ok)
}

/// `proxy_remove_header_map_value(type, key, key_size)`: OK even when absent.
fn proxy_remove_header_map_value(
    mut caller: Caller<'_, HostState>,
    ty: u32,
    kptr: u32,
    klen: u32,
) -> HostResult {
    if ty > map::MAX {
        return status(Status::BadArgument);
    }
    let memory = memory(&caller)?;
    let (mem, state) = memory.data_and_store_mut(&mut caller);
    let key = slice(
        mem,
        kptr,
        klen,
        MAX_NAME_BYTES,
        "proxy_remove_header_map_value key",
    )?;
    match map_mut(state, ty) {
        Some(map) => {
            map.remove_bytes(key);
            status(Status::Ok)
        }
        None => status(Status::BadArgument),
    }
}
