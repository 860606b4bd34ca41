//! Non-blocking replacements for part of WASI preview 1, under both of its module names
//! (`wasi_snapshot_preview1`, and `wasi_unstable`, which AssemblyScript imports; Envoy's host
//! links every WASI function under both).
//!
//! wasmtime-wasi runs the preview-1 I/O functions (`fd_*`, `path_*`, `poll_oneoff`) through
//! `Handle::block_on` on tokio, which panics when called from a tokio worker thread, where a
//! gateway runs filter callbacks. The module has no files anyway (no preopens), so those
//! functions are shadowed here with synchronous versions:
//!
//! - `fd_write` to stdout/stderr goes to the plugin's log (stdout = info, stderr = error);
//! - `fd_read` of stdin is end-of-file; `fd_fdstat_get` describes the three stdio fds;
//! - `poll_oneoff` returns at once, successfully, with no events, as in Envoy: a filter must
//!   not sleep on a proxy thread, and Go's runtime (timers, `time.Sleep`, the panic path)
//!   aborts with `fatal error` on any error from it;
//! - everything else is BADF, as for any fd that is not open.
//!
//! Environment, arguments, clocks, random and `proc_exit` stay wasmtime-wasi's.

use wasmtime::{Caller, Linker};

use crate::memory::memory;
use crate::state::HostState;

/// The module names WASI functions are linked under: preview 1 and its predecessor.
pub(crate) const MODULES: [&str; 2] = ["wasi_snapshot_preview1", "wasi_unstable"];
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;
const ERRNO_SPIPE: i32 = 70;
/// Most iovecs accepted in one read/write.
const MAX_IOVS: u32 = 1024;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let result = MODULES
        .iter()
        .try_for_each(|module| add_shims(linker, module));
    linker.allow_shadowing(false);
    result
}

macro_rules! badf {
    ($linker:ident, $module:ident, $name:literal, ($($arg:ident : $ty:ty),*)) => {
        $linker.func_wrap($module, $name, |_: Caller<'_, HostState>, $($arg: $ty),*| -> i32 {
            let _ = ($($arg,)*);
            ERRNO_BADF
        })?;
    };
}

fn add_shims(linker: &mut Linker<HostState>, module: &str) -> wasmtime::Result<()> {
    linker.func_wrap(module, "fd_write", fd_write)?;
    linker.func_wrap(module, "fd_read", fd_read)?;
    linker.func_wrap(module, "fd_fdstat_get", fd_fdstat_get)?;
    linker.func_wrap(module, "poll_oneoff", poll_oneoff)?;
    linker.func_wrap(
        module,
        "fd_seek",
        |_: Caller<'_, HostState>, fd: i32, _off: i64, _whence: i32, _out: i32| -> i32 {
            if (0..=2).contains(&fd) {
                ERRNO_SPIPE
            } else {
                ERRNO_BADF
            }
        },
    )?;
    badf!(linker, module, "fd_advise", (fd: i32, offset: i64, len: i64, advice: i32));
    badf!(linker, module, "fd_close", (fd: i32));
    badf!(linker, module, "fd_datasync", (fd: i32));
    badf!(linker, module, "fd_sync", (fd: i32));
    badf!(linker, module, "fd_filestat_get", (fd: i32, buf: i32));
    badf!(linker, module, "fd_filestat_set_size", (fd: i32, size: i64));
    badf!(linker, module, "fd_filestat_set_times", (fd: i32, atim: i64, mtim: i64, flags: i32));
    badf!(linker, module, "fd_pread", (fd: i32, iovs: i32, iovs_len: i32, offset: i64, nread: i32));
    badf!(linker, module, "fd_pwrite", (fd: i32, iovs: i32, iovs_len: i32, offset: i64, nwritten: i32));
    badf!(linker, module, "fd_readdir", (fd: i32, buf: i32, buf_len: i32, cookie: i64, used: i32));
    badf!(linker, module, "fd_renumber", (fd: i32, to: i32));
    badf!(linker, module, "path_create_directory", (fd: i32, path: i32, path_len: i32));
    badf!(linker, module, "path_filestat_get", (fd: i32, flags: i32, path: i32, path_len: i32, buf: i32));
    badf!(linker, module, "path_filestat_set_times", (fd: i32, flags: i32, path: i32, path_len: i32, atim: i64, mtim: i64, fst: i32));
    badf!(linker, module, "path_link", (fd: i32, flags: i32, path: i32, path_len: i32, fd2: i32, path2: i32, path2_len: i32));
    badf!(linker, module, "path_open", (fd: i32, dirflags: i32, path: i32, path_len: i32, oflags: i32, base: i64, inheriting: i64, fdflags: i32, out: i32));
    badf!(linker, module, "path_readlink", (fd: i32, path: i32, path_len: i32, buf: i32, buf_len: i32, used: i32));
    badf!(linker, module, "path_remove_directory", (fd: i32, path: i32, path_len: i32));
    badf!(linker, module, "path_rename", (fd: i32, path: i32, path_len: i32, fd2: i32, path2: i32, path2_len: i32));
    badf!(linker, module, "path_symlink", (path: i32, path_len: i32, fd: i32, path2: i32, path2_len: i32));
    badf!(linker, module, "path_unlink_file", (fd: i32, path: i32, path_len: i32));
    Ok(())
}

fn read_u32(mem: &[u8], at: usize) -> Option<u32> {
    let b = mem.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn write_u32(mem: &mut [u8], at: u32, v: u32) -> bool {
    let at = at as usize;
    match mem.get_mut(at..at + 4) {
        Some(dst) => {
            dst.copy_from_slice(&v.to_le_bytes());
            true
        }
        None => false,
    }
}

/// `fd_write(fd, iovs, iovs_len, *nwritten)`: stdout/stderr into the log; other fds BADF.
fn fd_write(
    mut caller: Caller<'_, HostState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> i32 {
    if fd != 1 && fd != 2 {
        return ERRNO_BADF;
    }
    let (iovs, iovs_len) = (iovs as u32 as usize, iovs_len as u32);
    if iovs_len > MAX_IOVS {
        return ERRNO_INVAL;
    }
    let Ok(memory) = memory(&caller) else {
        return ERRNO_FAULT;
    };
    let (mem, state) = memory.data_and_store_mut(&mut caller);
    let out = if fd == 1 {
        &mut state.stdout
    } else {
        &mut state.stderr
    };
    let mut total: u32 = 0;
    for i in 0..iovs_len as usize {
        let at = iovs + i * 8;
        let (Some(ptr), Some(len)) = (read_u32(mem, at), read_u32(mem, at + 4)) else {
            return ERRNO_FAULT;
        };
        let start = ptr as usize;
        let Some(bytes) = mem.get(start..start + len as usize) else {
            return ERRNO_FAULT;
        };
        out.write_bytes(bytes);
        total = total.saturating_add(len);
    }
    if write_u32(mem, nwritten as u32, total) {
        ERRNO_SUCCESS
    } else {
        ERRNO_FAULT
    }
}

/// `poll_oneoff(in, out, nsubscriptions, *nevents)`: no event, at once, successfully
/// (Envoy's answer). Nothing waits: a clock subscription (Go's `time.Sleep`, its timers,
/// the pause before a panic's exit) returns early, and fd subscriptions have no fds to wait on.
fn poll_oneoff(
    mut caller: Caller<'_, HostState>,
    _in: i32,
    _out: i32,
    _nsubscriptions: i32,
    nevents: i32,
) -> i32 {
    let Ok(memory) = memory(&caller) else {
        return ERRNO_FAULT;
    };
    if write_u32(memory.data_mut(&mut caller), nevents as u32, 0) {
        ERRNO_SUCCESS
    } else {
        ERRNO_FAULT
    }
}

/// `fd_read(fd, iovs, iovs_len, *nread)`: stdin is always at end-of-file.
fn fd_read(
    mut caller: Caller<'_, HostState>,
    fd: i32,
    _iovs: i32,
    _iovs_len: i32,
    nread: i32,
) -> i32 {
    if fd != 0 {
        return ERRNO_BADF;
    }
    let Ok(memory) = memory(&caller) else {
        return ERRNO_FAULT;
    };
    let mem = memory.data_mut(&mut caller);
    if write_u32(mem, nread as u32, 0) {
        ERRNO_SUCCESS
    } else {
        ERRNO_FAULT
    }
}

/// `fd_fdstat_get(fd, *fdstat)`: the stdio fds are character devices; others BADF.
fn fd_fdstat_get(mut caller: Caller<'_, HostState>, fd: i32, out: i32) -> i32 {
    const FILETYPE_CHARACTER_DEVICE: u8 = 2;
    const RIGHT_FD_READ: u64 = 1 << 1;
    const RIGHT_FD_WRITE: u64 = 1 << 6;
    let rights = match fd {
        0 => RIGHT_FD_READ,
        1 | 2 => RIGHT_FD_WRITE,
        _ => return ERRNO_BADF,
    };
    // struct fdstat { u8 filetype; u16 flags (at 2); u64 rights_base (at 8); u64 rights_inheriting (at 16) }
    let mut stat = [0u8; 24];
    stat[0] = FILETYPE_CHARACTER_DEVICE;
    stat[8..16].copy_from_slice(&rights.to_le_bytes());
    let Ok(memory) = memory(&caller) else {
        return ERRNO_FAULT;
    };
    let mem = memory.data_mut(&mut caller);
    let at = out as u32 as usize;
    match mem.get_mut(at..at + stat.len()) {
        Some(dst) => {
            dst.copy_from_slice(&stat);
            ERRNO_SUCCESS
        }
        None => ERRNO_FAULT,
    }
}
