//! Resource limits: per-plugin [`Limits`] and the fixed caps on guest-controlled sizes.
//!
//! A guest decides many lengths (header counts, buffer sizes, names). Each is capped here so a
//! hostile or buggy filter cannot make the host allocate without bound.

use std::time::Duration;

/// Per-plugin limits, enforced on every instance of the plugin.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Linear memory cap per instance; growth beyond it fails inside the guest, and the
    /// resulting trap is reported as [`crate::FaultKind::OutOfMemory`]. Default 64 MiB.
    pub memory_bytes: usize,
    /// Time one guest callback may run before it is interrupted
    /// ([`crate::FaultKind::Deadline`]). Measured by epoch interruption (granularity
    /// [`crate::RuntimeConfig::epoch_interval`]); time the thread spends waiting for a core
    /// does not count, so a loaded machine does not kill healthy callbacks, but a callback is
    /// always stopped within five times this. Default 100 ms.
    pub callback_deadline: Duration,
    /// Cap on any guest-supplied length (buffer, value, serialized map). Default 16 MiB.
    pub max_buffer_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            callback_deadline: Duration::from_millis(100),
            max_buffer_bytes: 16 << 20,
        }
    }
}

/// Most pairs accepted in one serialized header map (Envoy's cpp-host uses 1024 too).
pub const MAX_MAP_PAIRS: usize = 1024;
/// Longest header name, property path segment list, metric name, queue name or shared key.
pub const MAX_NAME_BYTES: usize = 64 * 1024;
/// Longest header value a filter may add or replace (Envoy's default request header limit is 60 KiB).
pub const MAX_HEADER_VALUE_BYTES: usize = 64 * 1024;
/// Longest single log message kept; longer messages are truncated, not refused.
pub const MAX_LOG_BYTES: usize = 64 * 1024;
/// Most custom properties one stream (or the root context) may hold.
pub const MAX_PROPERTIES: usize = 1024;
/// Most metrics one plugin may define.
pub const MAX_METRICS: usize = 4096;
/// Most keys per `vm_id` in shared data.
pub const MAX_SHARED_KEYS: usize = 64 * 1024;
/// Most shared queues per process.
pub const MAX_QUEUES: usize = 4096;
/// Most items waiting in one shared queue.
pub const MAX_QUEUE_ITEMS: usize = 64 * 1024;
/// Most HTTP calls a Vm may have dispatched but not yet taken by the embedder.
pub const MAX_PENDING_HTTP_CALLS: usize = 1024;
/// Most log records kept while capture is on and nobody takes them.
pub const MAX_CAPTURED_LOGS: usize = 64 * 1024;
/// Most table elements a module may grow a table to.
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;
