//! [`Error`]: everything that can go wrong while driving a filter in the harness.

use wasmgate_abi::{Fault, FaultKind, LoadError, LogRecord};

/// Result alias used throughout the harness.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error from the harness: the filter could not start, a callback failed, or the test
/// asked for something the harness cannot do (e.g. answering an unknown http call).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The module could not be read, compiled, instantiated or configured. The message
    /// names the module and the reason (e.g. `proxy_on_configure returned false`), and
    /// quotes the filter's own last error-level log line when it logged one; all it logged
    /// while starting is in [`Error::startup_logs`].
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A guest callback failed (trap, deadline, memory, bad pointer, invalid action, ...).
    /// The instance it ran on has been discarded; the next stream gets a fresh one.
    #[error(transparent)]
    Fault(#[from] Fault),
    /// The `.wasm` (or `.wat`) file given to [`crate::Harness::load`] cannot be read.
    #[error("cannot read filter module {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The stream lived on an instance that was discarded after a fault (of this or another
    /// stream), or was already finished; it cannot take more callbacks.
    #[error("stream context {context_id}: {reason}")]
    StreamGone {
        /// The stream's context id.
        context_id: u32,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// The test asked for something impossible, e.g. answering an http call that is not
    /// pending. The message says what and why.
    #[error("harness: {0}")]
    Usage(String),
}

impl Error {
    /// The fault, when this error is a failed callback.
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            Error::Fault(fault) => Some(fault),
            _ => None,
        }
    }

    /// Why the callback failed, when this error is a failed callback.
    ///
    /// ```
    /// # use wasmgate_harness::{Error, FaultKind};
    /// fn is_deadline(err: &Error) -> bool {
    ///     matches!(err.fault_kind(), Some(FaultKind::Deadline))
    /// }
    /// ```
    pub fn fault_kind(&self) -> Option<&FaultKind> {
        self.fault().map(|f| &f.kind)
    }

    /// The load error, when the filter could not start (or restart).
    pub fn load_error(&self) -> Option<&LoadError> {
        match self {
            Error::Load(err) => Some(err),
            _ => None,
        }
    }

    /// What the filter logged while starting, when this error is a failed start-up
    /// (`_initialize`, root context creation, `on_vm_start` or `on_configure`); empty otherwise.
    pub fn startup_logs(&self) -> &[LogRecord] {
        match self {
            Error::Load(err) => startup_logs(err),
            _ => &[],
        }
    }
}

/// What the guest logged before its start-up failed, when the load error carries it.
pub(crate) fn startup_logs(err: &LoadError) -> &[LogRecord] {
    match err {
        LoadError::Start { logs, .. }
        | LoadError::VmStartFailed { logs, .. }
        | LoadError::ConfigureFailed { logs, .. } => logs,
        _ => &[],
    }
}
