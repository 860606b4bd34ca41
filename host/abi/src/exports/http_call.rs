//! HTTP calls: `proxy_http_call`. The call is queued for the embedder
//! ([`crate::Vm::take_http_calls`]); its response comes back later through
//! [`crate::Vm::on_http_call_response`], never from inside this host function.

use std::time::Duration;

use wasmtime::{Caller, Linker};

use super::{HostResult, status};
use crate::http_call::HttpCallRequest;
use crate::limits::{MAX_MAP_PAIRS, MAX_NAME_BYTES, MAX_PENDING_HTTP_CALLS};
use crate::memory::{memory, slice, str_slice, write_u32};
use crate::state::HostState;
use crate::status::Status;
use crate::stream::{HeaderMap, deserialize_map};

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("env", "proxy_http_call", proxy_http_call)?;
    Ok(())
}

/// `proxy_http_call(upstream, upstream_size, headers, headers_size, body, body_size,
/// trailers, trailers_size, timeout_ms, *token)`: BAD_ARGUMENT for an upstream not in
/// [`crate::PluginSpec::upstreams`] or headers without `:authority`, `:method` and `:path`;
/// INTERNAL_FAILURE when too many calls are pending. A `host` header stands in for a missing
/// `:authority` (Envoy's header map treats them as one): it is moved there, so the embedder
/// always finds the authority in `:authority`.
#[allow(clippy::too_many_arguments)]
fn proxy_http_call(
    mut caller: Caller<'_, HostState>,
    uptr: u32,
    ulen: u32,
    hptr: u32,
    hlen: u32,
    bptr: u32,
    blen: u32,
    tptr: u32,
    tlen: u32,
    timeout_ms: u32,
    token_out: u32,
) -> HostResult {
    const WHAT: &str = "proxy_http_call";
    let memory = memory(&caller)?;
    let (mem, state) = memory.data_and_store_mut(&mut caller);
    let max = state.max_len();
    let upstream = str_slice(mem, uptr, ulen, MAX_NAME_BYTES, WHAT)?;
    let headers = slice(mem, hptr, hlen, max, WHAT)?;
    let body = slice(mem, bptr, blen, max, WHAT)?;
    let trailers = slice(mem, tptr, tlen, max, WHAT)?;
    let Some(upstream) = upstream.map(str::to_string) else {
        return status(Status::BadArgument);
    };
    if !state.plugin.spec.upstreams.contains(&upstream) {
        return status(Status::BadArgument);
    }
    let (Ok(headers), Ok(trailers)) = (
        deserialize_map(headers, MAX_MAP_PAIRS),
        deserialize_map(trailers, MAX_MAP_PAIRS),
    ) else {
        return status(Status::BadArgument);
    };
    let mut headers = headers;
    host_as_authority(&mut headers);
    let body = body.to_vec();
    if [":authority", ":method", ":path"]
        .iter()
        .any(|h| headers.get(h).is_none_or(<[u8]>::is_empty))
    {
        return status(Status::BadArgument);
    }
    if state.http_calls.len() >= MAX_PENDING_HTTP_CALLS {
        return status(Status::InternalFailure);
    }
    let token = state.next_token;
    write_u32(mem, token_out, token, "proxy_http_call token")?;
    state.next_token = token.wrapping_add(1).max(1);
    state.http_calls.push(HttpCallRequest {
        token,
        context_id: state.effective_context,
        upstream,
        headers,
        body,
        trailers,
        timeout: Duration::from_millis(u64::from(timeout_ms)),
    });
    status(Status::Ok)
}

/// Moves a non-empty `host` into a missing or empty `:authority`.
fn host_as_authority(headers: &mut HeaderMap) {
    if headers.get(":authority").is_some_and(|a| !a.is_empty()) {
        return;
    }
    let Some(host) = headers
        .get("host")
        .filter(|h| !h.is_empty())
        .map(<[u8]>::to_vec)
    else {
        return;
    };
    headers.remove("host");
    headers.replace(":authority", host);
}
