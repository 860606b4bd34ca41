//! Buffers: `proxy_get_buffer_bytes`, `proxy_set_buffer_bytes`, `proxy_get_buffer_status`.
//!
//! Bodies come from the stream of the running callback, the http call response body from the
//! response being delivered, and the configurations from the plugin spec. Every other buffer
//! type (TCP data, gRPC messages, foreign function arguments) is NOT_FOUND, which the Rust SDK
//! reads as "no data".

use wasmtime::{Caller, Linker};

use super::configuration::config_buffer;
use super::{HostResult, status};
use crate::error::HostError;
use crate::memory::{memory, return_value, slice, write_u32};
use crate::state::HostState;
use crate::status::{Status, buffer};

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("env", "proxy_get_buffer_bytes", proxy_get_buffer_bytes)?;
    linker.func_wrap("env", "proxy_set_buffer_bytes", proxy_set_buffer_bytes)?;
    linker.func_wrap("env", "proxy_get_buffer_status", proxy_get_buffer_status)?;
    Ok(())
}

/// The buffer of type `ty` as the running callback sees it.
fn buffer_ref(state: &HostState, ty: u32) -> Option<&[u8]> {
    match ty {
        buffer::HTTP_REQUEST_BODY => state.stream.get().map(|s| s.request_body.as_slice()),
        buffer::HTTP_RESPONSE_BODY => state.stream.get().map(|s| s.response_body.as_slice()),
        buffer::HTTP_CALL_RESPONSE_BODY => state.http_response.as_ref().map(|r| r.body.as_slice()),
        _ => config_buffer(state, ty),
    }
}

fn buffer_mut(state: &mut HostState, ty: u32) -> Option<&mut Vec<u8>> {
    match ty {
        buffer::HTTP_REQUEST_BODY => state.stream.get_mut().map(|s| &mut s.request_body),
        buffer::HTTP_RESPONSE_BODY => state.stream.get_mut().map(|s| &mut s.response_body),
        buffer::HTTP_CALL_RESPONSE_BODY => state.http_response.as_mut().map(|r| &mut r.body),
        _ => None,
    }
}

/// The byte range `[start, start + max)` clamped to a buffer of `len` bytes.
fn window(len: usize, start: u32, max: u32) -> std::ops::Range<usize> {
    let start = (start as usize).min(len);
    let end = start.saturating_add(max as usize).min(len);
    start..end
}

/// `proxy_get_buffer_bytes(type, start, max_size, **data, *size)`: OK (empty when `start`
/// is past the end) or NOT_FOUND for a buffer that is not available.
fn proxy_get_buffer_bytes(
    mut caller: Caller<'_, HostState>,
    ty: u32,
    start: u32,
    max: u32,
    ptr_out: u32,
    len_out: u32,
) -> HostResult {
    let Some(buf) = buffer_ref(caller.data(), ty) else {
        return status(Status::NotFound);
    };
    let range = window(buf.len(), start, max);
    let len = range.len();
    return_value(
        &mut caller,
        len,
        ptr_out,
        len_out,
        |state, dst| match buffer_ref(state, ty).and_then(|b| b.get(range)) {
            Some(src) if src.len() == dst.len() => {
                dst.copy_from_slice(src);
                true
            }
            _ => false,
        },
    )?;
    status(Status::Ok)
}

/// `proxy_set_buffer_bytes(type, start, size, data, data_size)`: replaces `size` bytes at
/// `start` with the data (start 0 / size 0 prepends; start at or past the end appends).
fn proxy_set_buffer_bytes(
    mut caller: Caller<'_, HostState>,
    ty: u32,
    start: u32,
    size: u32,
    ptr: u32,
    len: u32,
) -> HostResult {
    let memory = memory(&caller)?;
    let (mem, state) = memory.data_and_store_mut(&mut caller);
    let max = state.max_len();
    let data = slice(mem, ptr, len, max, "proxy_set_buffer_bytes data")?;
    let Some(buf) = buffer_mut(state, ty) else {
        return status(Status::NotFound);
    };
    let range = window(buf.len(), start, size);
    let new_len = buf.len() - range.len() + data.len();
    if new_len > max {
        return Err(HostError::Limit(format!(
            "proxy_set_buffer_bytes: buffer would grow to {new_len} bytes, over the limit of {max}"
        ))
        .into());
    }
    buf.splice(range, data.iter().copied());
    if matches!(ty, buffer::HTTP_REQUEST_BODY | buffer::HTTP_RESPONSE_BODY)
        && let Some(stream) = state.stream.get_mut()
    {
        stream.body_changed = true;
    }
    status(Status::Ok)
}

/// `proxy_get_buffer_status(type, *size, *flags)`: the buffer's length; flags are 0.
fn proxy_get_buffer_status(
    mut caller: Caller<'_, HostState>,
    ty: u32,
    size_out: u32,
    flags_out: u32,
) -> HostResult {
    let Some(len) = buffer_ref(caller.data(), ty).map(<[u8]>::len) else {
        return status(Status::NotFound);
    };
    let mem = memory(&caller)?.data_mut(&mut caller);
    write_u32(mem, size_out, len as u32, "proxy_get_buffer_status size")?;
    write_u32(mem, flags_out, 0, "proxy_get_buffer_status flags")?;
    status(Status::Ok)
}
