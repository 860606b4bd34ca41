//! Clocks and timers: `proxy_get_current_time_nanoseconds`, `proxy_set_tick_period_milliseconds`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker};

use super::{HostResult, status};
use crate::memory::{memory, write_u64};
use crate::state::HostState;
use crate::status::Status;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        proxy_get_current_time_nanoseconds,
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        proxy_set_tick_period_milliseconds,
    )?;
    Ok(())
}

/// `proxy_get_current_time_nanoseconds(*u64)`: wall clock (or the fixed test clock).
fn proxy_get_current_time_nanoseconds(mut caller: Caller<'_, HostState>, out: u32) -> HostResult {
    let now = caller.data().clock.unwrap_or_else(SystemTime::now);
    let nanos = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(u64::MAX as u128) as u64);
    let mem = memory(&caller)?.data_mut(&mut caller);
    write_u64(mem, out, nanos, "proxy_get_current_time_nanoseconds time")?;
    status(Status::Ok)
}

/// `proxy_set_tick_period_milliseconds(ms)`: 0 stops ticks. The embedder reads it with
/// [`crate::Vm::tick_period`].
fn proxy_set_tick_period_milliseconds(mut caller: Caller<'_, HostState>, ms: u32) -> HostResult {
    caller.data_mut().tick_period = (ms != 0).then(|| Duration::from_millis(u64::from(ms)));
    status(Status::Ok)
}
