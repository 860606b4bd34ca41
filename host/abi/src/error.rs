//! Errors: [`Fault`] (a guest callback failed; the Vm is broken), [`LoadError`] (a plugin could
//! not be loaded or instantiated), and the crate-internal `HostError` a host function raises
//! to abort the guest.

use std::fmt;

use crate::logs::LogRecord;

/// A guest callback failed. The [`crate::Vm`] that raised it is broken: drop it and call
/// [`crate::Plugin::instantiate`] for a fresh one.
#[derive(Debug, thiserror::Error)]
#[error("filter {plugin}: {callback} failed: {kind}")]
pub struct Fault {
    /// Name of the plugin ([`crate::PluginSpec::name`]).
    pub plugin: String,
    /// The proxy-wasm export that was running, e.g. `proxy_on_request_headers`.
    pub callback: &'static str,
    /// What went wrong.
    pub kind: FaultKind,
}

/// Why a guest callback failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// The guest trapped (unreachable, division by zero, out-of-bounds access in wasm code,
    /// a Rust SDK panic, `proc_exit`, ...). The message names the trap and the function.
    Trap(String),
    /// The guest called WASI `proc_exit` with this code.
    Exit(i32),
    /// The callback ran longer than [`crate::Limits::callback_deadline`].
    Deadline,
    /// The guest trapped after a memory growth was refused by [`crate::Limits::memory_bytes`].
    OutOfMemory,
    /// The guest exhausted its wasm stack (deep or endless recursion).
    StackOverflow,
    /// A stream callback returned something other than CONTINUE (0) or PAUSE (1).
    InvalidAction(u32),
    /// A callback returned a boolean other than 0 or 1.
    InvalidStatus,
    /// A host function was given a pointer/length outside the guest's memory.
    InvalidMemoryAccess(String),
    /// The guest allocator failed (returned 0, trapped, or returned memory out of bounds).
    Allocator(String),
    /// The guest passed a length or count over one of the host's caps.
    LimitExceeded(String),
    /// The Vm already failed earlier and must be replaced.
    Broken,
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultKind::Trap(msg) => write!(f, "trap: {msg}"),
            FaultKind::Exit(code) => write!(f, "guest called proc_exit({code})"),
            FaultKind::Deadline => f.write_str("callback deadline exceeded"),
            FaultKind::OutOfMemory => f.write_str("out of memory (memory limit reached)"),
            FaultKind::StackOverflow => f.write_str("wasm stack overflow"),
            FaultKind::InvalidAction(code) => write!(f, "invalid action {code}"),
            FaultKind::InvalidStatus => f.write_str("invalid boolean return value"),
            FaultKind::InvalidMemoryAccess(msg) => write!(f, "invalid memory access: {msg}"),
            FaultKind::Allocator(msg) => write!(f, "guest allocator failed: {msg}"),
            FaultKind::LimitExceeded(msg) => write!(f, "limit exceeded: {msg}"),
            FaultKind::Broken => f.write_str("instance is broken by an earlier failure"),
        }
    }
}

/// A plugin could not be loaded, validated or instantiated. Every message names the plugin
/// (its [`crate::PluginSpec::name`] and the wasm source) and the reason.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The engine could not be set up.
    #[error("wasm runtime: {0}")]
    Engine(String),
    /// The `.wasm` file could not be read.
    #[error("filter {plugin}: cannot read {module}: {source}")]
    Read {
        /// Plugin name.
        plugin: String,
        /// File path.
        module: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// wasmtime refused to compile the module.
    #[error("filter {plugin}: {module} is not a valid wasm module: {reason}")]
    Compile {
        /// Plugin name.
        plugin: String,
        /// File path or bytes name.
        module: String,
        /// The compiler's message.
        reason: String,
    },
    /// The module does not export its linear memory as `memory`.
    #[error("filter {plugin}: {module} does not export a `memory`")]
    MissingMemory {
        /// Plugin name.
        plugin: String,
        /// File path or bytes name.
        module: String,
    },
    /// No `proxy_abi_version_0_2_1` / `proxy_abi_version_0_2_0` marker export.
    #[error(
        "filter {plugin}: {module} has a missing or unsupported proxy-wasm ABI version \
         (found: {found}; supported: proxy_abi_version_0_2_1, proxy_abi_version_0_2_0)"
    )]
    UnsupportedAbi {
        /// Plugin name.
        plugin: String,
        /// File path or bytes name.
        module: String,
        /// The markers found, or "none".
        found: String,
    },
    /// Neither `proxy_on_memory_allocate` nor `malloc` is exported as `(i32) -> i32`.
    #[error(
        "filter {plugin}: {module} exports no allocator (`proxy_on_memory_allocate` or `malloc` \
         with type (i32) -> i32)"
    )]
    MissingAllocator {
        /// Plugin name.
        plugin: String,
        /// File path or bytes name.
        module: String,
    },
    /// An export the ABI defines has the wrong type.
    #[error("filter {plugin}: {module}: export `{export}` has the wrong type: {reason}")]
    BadExport {
        /// Plugin name.
        plugin: String,
        /// File path or bytes name.
        module: String,
        /// Export name.
        export: String,
        /// Type mismatch details.
        reason: String,
    },
    /// An import could not be satisfied (unknown function or wrong signature).
    #[error("filter {plugin}: {module} cannot be linked: {reason}")]
    Link {
        /// Plugin name.
        plugin: String,
        /// File path or bytes name.
        module: String,
        /// The linker's message (names the import).
        reason: String,
    },
    /// Instantiation failed (e.g. the initial memory exceeds the memory limit).
    #[error("filter {plugin}: {module} cannot be instantiated: {reason}")]
    Instantiate {
        /// Plugin name.
        plugin: String,
        /// File path or bytes name.
        module: String,
        /// wasmtime's message.
        reason: String,
    },
    /// A start-up callback (`_initialize`, `main`, `_start`, root `proxy_on_context_create`) failed.
    #[error(
        "filter {plugin}: {module}: {callback} failed: {kind}{}",
        guest_said(logs)
    )]
    Start {
        /// Plugin name.
        plugin: String,
        /// File path or bytes name.
        module: String,
        /// The export that failed.
        callback: &'static str,
        /// How it failed.
        kind: FaultKind,
        /// What the guest logged while starting (its own explanation, if any).
        logs: Vec<LogRecord>,
    },
    /// `proxy_on_vm_start` returned false.
    #[error(
        "filter {plugin}: {module}: proxy_on_vm_start returned false (VM configuration refused){}",
        guest_said(logs)
    )]
    VmStartFailed {
        /// Plugin name.
        plugin: String,
        /// File path or bytes name.
        module: String,
        /// What the guest logged while starting (its own explanation, if any).
        logs: Vec<LogRecord>,
    },
    /// `proxy_on_configure` returned false.
    #[error(
        "filter {plugin}: {module}: proxy_on_configure returned false (plugin configuration refused){}",
        guest_said(logs)
    )]
    ConfigureFailed {
        /// Plugin name.
        plugin: String,
        /// File path or bytes name.
        module: String,
        /// What the guest logged while starting (its own explanation, if any).
        logs: Vec<LogRecord>,
    },
}

/// The filter's own last error-level log line, quoted, for a start-up error message. Filters
/// log why they refuse a configuration; that is what an operator needs to see.
fn guest_said(logs: &[LogRecord]) -> String {
    use crate::logs::LogLevel;
    match logs.iter().rev().find(|r| r.level >= LogLevel::Error) {
        Some(r) => {
            let msg: String = r.message.chars().take(500).collect();
            format!("; the filter logged: {msg:?}")
        }
        None => String::new(),
    }
}

/// Raised by a host function to abort the guest: the call returns this error (as a trap),
/// and the runtime turns it into the matching [`FaultKind`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostError {
    #[error("{0}")]
    MemoryAccess(String),
    #[error("{0}")]
    Allocator(String),
    #[error("{0}")]
    Limit(String),
}

impl HostError {
    pub(crate) fn kind(&self) -> FaultKind {
        match self {
            HostError::MemoryAccess(m) => FaultKind::InvalidMemoryAccess(m.clone()),
            HostError::Allocator(m) => FaultKind::Allocator(m.clone()),
            HostError::Limit(m) => FaultKind::LimitExceeded(m.clone()),
        }
    }
}

/// Turns the error of a guest call into a [`FaultKind`]. `oom` tells whether the memory
/// limiter refused a growth during the call.
pub(crate) fn classify(err: &wasmtime::Error, oom: bool) -> FaultKind {
    if let Some(host) = err.downcast_ref::<HostError>() {
        return host.kind();
    }
    if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return FaultKind::Exit(exit.0);
    }
    if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
        match trap {
            wasmtime::Trap::Interrupt => return FaultKind::Deadline,
            wasmtime::Trap::StackOverflow => return FaultKind::StackOverflow,
            _ if oom => return FaultKind::OutOfMemory,
            _ => {}
        }
        let place = err
            .downcast_ref::<wasmtime::WasmBacktrace>()
            .and_then(|bt| {
                bt.frames()
                    .first()
                    .and_then(|f| f.func_name().map(String::from))
            });
        return match place {
            Some(func) => FaultKind::Trap(format!("{trap} in {func}")),
            None => FaultKind::Trap(trap.to_string()),
        };
    }
    if oom {
        return FaultKind::OutOfMemory;
    }
    FaultKind::Trap(format!("{err:#}"))
}
