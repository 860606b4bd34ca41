//! Metrics: `proxy_define_metric`, `proxy_increment_metric`, `proxy_record_metric`,
//! `proxy_get_metric`. Values live in the plugin's registry, shared by all its Vms.

use wasmtime::{Caller, Linker};

use super::{HostResult, status};
use crate::error::HostError;
use crate::limits::MAX_NAME_BYTES;
use crate::memory::{memory, str_slice, write_u32, write_u64};
use crate::metrics::{MetricError, MetricKind};
use crate::state::HostState;
use crate::status::Status;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("env", "proxy_define_metric", proxy_define_metric)?;
    linker.func_wrap("env", "proxy_increment_metric", proxy_increment_metric)?;
    linker.func_wrap("env", "proxy_record_metric", proxy_record_metric)?;
    linker.func_wrap("env", "proxy_get_metric", proxy_get_metric)?;
    Ok(())
}

fn metric_status(r: Result<(), MetricError>) -> HostResult {
    match r {
        Ok(()) => status(Status::Ok),
        Err(MetricError::NotFound) => status(Status::NotFound),
        Err(MetricError::BadArgument) => status(Status::BadArgument),
    }
}

/// `proxy_define_metric(type, name, name_size, *id)`: OK (same name and type, same id).
fn proxy_define_metric(
    mut caller: Caller<'_, HostState>,
    ty: u32,
    nptr: u32,
    nlen: u32,
    id_out: u32,
) -> HostResult {
    const WHAT: &str = "proxy_define_metric";
    let memory = memory(&caller)?;
    let (mem, state) = memory.data_and_store_mut(&mut caller);
    let name = str_slice(mem, nptr, nlen, MAX_NAME_BYTES, WHAT)?;
    let (Some(kind), Some(name)) = (MetricKind::from_code(ty), name) else {
        return status(Status::BadArgument);
    };
    let (id, metric) = state
        .plugin
        .metrics
        .define(kind, name)
        .ok_or_else(|| HostError::Limit(format!("{WHAT}: too many metrics")))?;
    write_u32(mem, id_out, id, "proxy_define_metric id")?;
    state.metrics.insert(id, metric);
    status(Status::Ok)
}

/// `proxy_increment_metric(id, offset: i64)`: OK, NOT_FOUND, or BAD_ARGUMENT (histogram, or
/// a negative offset on a counter).
fn proxy_increment_metric(mut caller: Caller<'_, HostState>, id: u32, offset: i64) -> HostResult {
    let state = caller.data_mut();
    let registry = &state.plugin.metrics;
    metric_status(match state.metrics.lookup(id, registry) {
        Some(m) => m.increment(offset),
        None => Err(MetricError::NotFound),
    })
}

/// `proxy_record_metric(id, value: u64)`: sets a counter/gauge, records a histogram value.
fn proxy_record_metric(mut caller: Caller<'_, HostState>, id: u32, value: u64) -> HostResult {
    let state = caller.data_mut();
    let registry = &state.plugin.metrics;
    metric_status(match state.metrics.lookup(id, registry) {
        Some(m) => {
            m.record(value);
            Ok(())
        }
        None => Err(MetricError::NotFound),
    })
}

/// `proxy_get_metric(id, *u64)`: OK, NOT_FOUND, or BAD_ARGUMENT for a histogram.
fn proxy_get_metric(mut caller: Caller<'_, HostState>, id: u32, out: u32) -> HostResult {
    let state = caller.data_mut();
    let registry = &state.plugin.metrics;
    let value = match state.metrics.lookup(id, registry) {
        Some(m) => m.get(),
        None => Err(MetricError::NotFound),
    };
    match value {
        Ok(v) => {
            let mem = memory(&caller)?.data_mut(&mut caller);
            write_u64(mem, out, v, "proxy_get_metric value")?;
            status(Status::Ok)
        }
        Err(e) => metric_status(Err(e)),
    }
}
