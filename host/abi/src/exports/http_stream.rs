//! HTTP streams: `proxy_continue_stream`, `proxy_close_stream`, `proxy_send_local_response`,
//! `proxy_get_status`.
//!
//! These only record the filter's wish on the [`crate::Stream`]; the embedder acts on it after
//! the callback returns. A wish for another stream context (after
//! `proxy_set_effective_context`, say from `on_tick`) becomes a [`crate::StreamSignal`].

use wasmtime::{Caller, Linker};

use super::{HostResult, status};
use crate::limits::{MAX_MAP_PAIRS, MAX_NAME_BYTES};
use crate::memory::{memory, slice, write_u32};
use crate::signal::StreamOp;
use crate::state::{HostState, StreamTarget};
use crate::status::{Status, stream_type};
use crate::stream::{LocalResponse, deserialize_map};

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("env", "proxy_continue_stream", proxy_continue_stream)?;
    linker.func_wrap("env", "proxy_close_stream", proxy_close_stream)?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        proxy_send_local_response,
    )?;
    linker.func_wrap("env", "proxy_get_status", proxy_get_status)?;
    Ok(())
}

/// `proxy_continue_stream(stream_type)`: sets `resume_request`/`resume_response`. TCP stream
/// types are accepted and ignored (this host runs HTTP filters only).
fn proxy_continue_stream(mut caller: Caller<'_, HostState>, ty: u32) -> HostResult {
    let op = match ty {
        stream_type::HTTP_REQUEST => StreamOp::ResumeRequest,
        stream_type::HTTP_RESPONSE => StreamOp::ResumeResponse,
        stream_type::DOWNSTREAM | stream_type::UPSTREAM => return status(Status::Ok),
        _ => return status(Status::BadArgument),
    };
    apply(caller.data_mut(), op)
}

/// `proxy_close_stream(stream_type)`: sets `close_requested`.
fn proxy_close_stream(mut caller: Caller<'_, HostState>, ty: u32) -> HostResult {
    if ty > stream_type::UPSTREAM {
        return status(Status::BadArgument);
    }
    apply(caller.data_mut(), StreamOp::Close)
}

/// Applies `op` to the stream the running callback addresses: OK, or BAD_ARGUMENT when it
/// addresses none.
fn apply(state: &mut HostState, op: StreamOp) -> HostResult {
    match state.stream_target() {
        StreamTarget::Lent(stream) => stream.apply(op),
        StreamTarget::Other(context_id) => state.signal(context_id, op),
        StreamTarget::None => return status(Status::BadArgument),
    }
    status(Status::Ok)
}

/// `proxy_send_local_response(status, details, details_size, body, body_size, headers,
/// headers_size, grpc_status)`: records the response for the embedder to send. The first
/// response of a callback wins: a second one is ignored and still answered OK, as in Envoy
/// (whose host never reports its refusal; the Rust SDK panics on anything but OK here).
#[allow(clippy::too_many_arguments)]
fn proxy_send_local_response(
    mut caller: Caller<'_, HostState>,
    code: u32,
    dptr: u32,
    dlen: u32,
    bptr: u32,
    blen: u32,
    hptr: u32,
    hlen: u32,
    grpc_status: i32,
) -> HostResult {
    const WHAT: &str = "proxy_send_local_response";
    let memory = memory(&caller)?;
    let (mem, state) = memory.data_and_store_mut(&mut caller);
    let max = state.max_len();
    let details = slice(mem, dptr, dlen, MAX_NAME_BYTES, WHAT)?;
    let body = slice(mem, bptr, blen, max, WHAT)?;
    let headers = slice(mem, hptr, hlen, max, WHAT)?;
    let Ok(headers) = deserialize_map(headers, MAX_MAP_PAIRS) else {
        return status(Status::BadArgument);
    };
    if !(100..=999).contains(&code) {
        return status(Status::BadArgument);
    }
    if let StreamTarget::Lent(stream) = state.stream_target()
        && stream.local_response.is_some()
    {
        return status(Status::Ok);
    }
    let local = LocalResponse {
        status: code,
        details: String::from_utf8_lossy(details).into_owned(),
        body: body.to_vec(),
        headers,
        grpc_status,
    };
    apply(state, StreamOp::LocalResponse(Box::new(local)))
}

/// `proxy_get_status(*code, **message, *message_size)`: the status of the last gRPC
/// operation. No gRPC calls are ever made, so it is always code 0 with no message.
fn proxy_get_status(
    mut caller: Caller<'_, HostState>,
    code_out: u32,
    ptr_out: u32,
    len_out: u32,
) -> HostResult {
    let mem = memory(&caller)?.data_mut(&mut caller);
    write_u32(mem, code_out, 0, "proxy_get_status code")?;
    write_u32(mem, ptr_out, 0, "proxy_get_status message")?;
    write_u32(mem, len_out, 0, "proxy_get_status message size")?;
    status(Status::Ok)
}
