//! Checked access to guest linear memory.
//!
//! Every guest pointer and length goes through [`slice`] (bounds and size cap checked) or the
//! `write_*` helpers. Values returned to the guest are allocated with the guest's own
//! allocator (`proxy_on_memory_allocate`, else `malloc`) at their exact length, because the
//! Rust SDK takes ownership with `Vec::from_raw_parts`. An empty value is returned as a null
//! pointer and size 0, without allocating. No `unsafe` here.

use wasmtime::{AsContext, Caller, Memory, Trap};

use crate::error::HostError;
use crate::state::HostState;

/// The instance's exported memory. It is only missing while the module's own start function
/// runs during instantiation, before the host has seen the instance.
#[inline]
pub(crate) fn memory(caller: &Caller<'_, HostState>) -> Result<Memory, HostError> {
    caller.data().memory.ok_or_else(|| {
        HostError::MemoryAccess("host function called before instantiation finished".into())
    })
}

/// `len` bytes at `ptr`, refusing lengths over `max` and ranges outside memory.
#[inline]
pub(crate) fn slice<'m>(
    mem: &'m [u8],
    ptr: u32,
    len: u32,
    max: usize,
    what: &'static str,
) -> Result<&'m [u8], HostError> {
    let len = len as usize;
    if len > max {
        return Err(HostError::Limit(format!(
            "{what}: length {len} is over the limit of {max} bytes"
        )));
    }
    let start = ptr as usize;
    mem.get(start..start + len).ok_or_else(|| {
        HostError::MemoryAccess(format!(
            "{what}: range {start}+{len} is outside guest memory of {} bytes",
            mem.len()
        ))
    })
}

/// Like [`slice`] but decoded as UTF-8 (`None` when it is not).
#[inline]
pub(crate) fn str_slice<'m>(
    mem: &'m [u8],
    ptr: u32,
    len: u32,
    max: usize,
    what: &'static str,
) -> Result<Option<&'m str>, HostError> {
    slice(mem, ptr, len, max, what).map(utf8)
}

/// `bytes` as text. Names and paths are nearly always ASCII, which a word-at-a-time scan
/// confirms faster than UTF-8 validation does for short strings.
#[inline]
fn utf8(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).ok()
}

/// Stores a little-endian u32 at `ptr`.
#[inline]
pub(crate) fn write_u32(
    mem: &mut [u8],
    ptr: u32,
    value: u32,
    what: &'static str,
) -> Result<(), HostError> {
    write_bytes(mem, ptr, &value.to_le_bytes(), what)
}

/// Stores a little-endian u64 at `ptr`.
#[inline]
pub(crate) fn write_u64(
    mem: &mut [u8],
    ptr: u32,
    value: u64,
    what: &'static str,
) -> Result<(), HostError> {
    write_bytes(mem, ptr, &value.to_le_bytes(), what)
}

#[inline]
fn write_bytes(
    mem: &mut [u8],
    ptr: u32,
    bytes: &[u8],
    what: &'static str,
) -> Result<(), HostError> {
    let start = ptr as usize;
    let len = mem.len();
    match mem.get_mut(start..start + bytes.len()) {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            Ok(())
        }
        None => Err(HostError::MemoryAccess(format!(
            "{what}: out-pointer {start} is outside guest memory of {len} bytes"
        ))),
    }
}

/// Allocates `len` bytes in the guest through its allocator and checks the result.
pub(crate) fn guest_alloc(caller: &mut Caller<'_, HostState>, len: usize) -> wasmtime::Result<u32> {
    let Ok(len32) = i32::try_from(len) else {
        return Err(HostError::Limit(format!("cannot return {len} bytes to the guest")).into());
    };
    // Taken out of the store for the call (no clone on the hot path); an allocator that
    // calls back into a host function needing it finds None and fails cleanly.
    let Some(alloc) = caller.data_mut().alloc.take() else {
        return Err(HostError::Allocator(
            "the allocator is unavailable (re-entered from a host function)".into(),
        )
        .into());
    };
    let result = alloc.call(&mut *caller, len32);
    caller.data_mut().alloc = Some(alloc);
    let ptr = match result {
        Ok(ptr) => ptr as u32,
        Err(err) => {
            return Err(match err.downcast_ref::<Trap>() {
                // Keep the deadline and stack traps as they are; they are not allocator bugs.
                Some(Trap::Interrupt) | Some(Trap::StackOverflow) => err,
                _ if caller.data().limiter.oom => err,
                _ => {
                    HostError::Allocator(format!("allocation of {len} bytes trapped: {err}")).into()
                }
            });
        }
    };
    if ptr == 0 {
        return Err(
            HostError::Allocator(format!("allocation of {len} bytes returned null")).into(),
        );
    }
    let size = memory(caller)?.data_size(caller.as_context());
    if (ptr as usize).checked_add(len).is_none_or(|end| end > size) {
        return Err(HostError::Allocator(format!(
            "allocation of {len} bytes returned {ptr}, outside guest memory of {size} bytes"
        ))
        .into());
    }
    Ok(ptr)
}

/// Returns a host value of `len` bytes to the guest: allocates it in guest memory, lets `fill`
/// copy the value from host state into it, then stores pointer and size at the out-pointers.
///
/// `fill` must fill the whole slice and return true; it returns false when the value changed
/// while the guest allocator ran (a hostile allocator calling back into the host).
pub(crate) fn return_value(
    caller: &mut Caller<'_, HostState>,
    len: usize,
    ptr_out: u32,
    len_out: u32,
    fill: impl FnOnce(&HostState, &mut [u8]) -> bool,
) -> wasmtime::Result<()> {
    let ptr = if len == 0 {
        0
    } else {
        guest_alloc(caller, len)?
    };
    let memory = memory(caller)?;
    let (mem, state) = memory.data_and_store_mut(&mut *caller);
    if len != 0 {
        let start = ptr as usize;
        let Some(dst) = mem.get_mut(start..start + len) else {
            return Err(HostError::Allocator(format!(
                "allocation of {len} bytes at {start} is outside guest memory"
            ))
            .into());
        };
        if !fill(state, dst) {
            return Err(HostError::Allocator(
                "host value changed while the guest allocator ran".into(),
            )
            .into());
        }
    }
    write_u32(mem, ptr_out, ptr, "return pointer")?;
    write_u32(mem, len_out, len as u32, "return size")?;
    Ok(())
}

/// [`return_value`] for bytes the host already holds outside the store.
pub(crate) fn return_bytes(
    caller: &mut Caller<'_, HostState>,
    bytes: &[u8],
    ptr_out: u32,
    len_out: u32,
) -> wasmtime::Result<()> {
    return_value(caller, bytes.len(), ptr_out, len_out, |_, dst| {
        dst.copy_from_slice(bytes);
        true
    })
}

#[cfg(test)]
mod tests;
