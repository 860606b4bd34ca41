//! Guest logs: [`LogLevel`], [`LogRecord`], the per-Vm `LogSink` and the WASI stdout/stderr
//! streams that route the module's prints into it.
//!
//! By default a guest log line becomes a `tracing` event with target `wasm` and a `plugin`
//! field. With capture on (the harness), records are kept for [`crate::Vm::take_logs`] instead.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::limits::{MAX_CAPTURED_LOGS, MAX_LOG_BYTES};

/// proxy-wasm log levels (`proxy_log_level_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// 0
    Trace,
    /// 1
    Debug,
    /// 2
    Info,
    /// 3
    Warn,
    /// 4
    Error,
    /// 5
    Critical,
}

impl LogLevel {
    /// Decodes the ABI value.
    pub fn from_code(code: u32) -> Option<LogLevel> {
        Some(match code {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }

    /// The ABI value.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The most verbose level `tracing` currently lets through for this crate's events.
    pub(crate) fn from_tracing_max() -> LogLevel {
        use tracing::level_filters::LevelFilter;
        match LevelFilter::current() {
            LevelFilter::TRACE => LogLevel::Trace,
            LevelFilter::DEBUG => LogLevel::Debug,
            LevelFilter::INFO => LogLevel::Info,
            LevelFilter::WARN => LogLevel::Warn,
            LevelFilter::ERROR => LogLevel::Error,
            _ => LogLevel::Critical,
        }
    }
}

/// One captured guest log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Level given by the guest (stdout = Info, stderr = Error).
    pub level: LogLevel,
    /// The message, lossily decoded as UTF-8 and truncated to 64 KiB.
    pub message: String,
}

/// Where a Vm's guest logs go. Shared with the WASI stdio streams, hence the lock; the lock
/// is only taken while capture is on.
#[derive(Debug)]
pub(crate) struct LogSink {
    plugin: Arc<str>,
    capture: AtomicBool,
    /// While the Vm starts, records are also kept (and still emitted), so a start-up failure
    /// can carry the guest's own explanation.
    startup: AtomicBool,
    records: Mutex<Vec<LogRecord>>,
}

impl LogSink {
    pub(crate) fn new(plugin: Arc<str>) -> Arc<Self> {
        Arc::new(Self {
            plugin,
            capture: AtomicBool::new(false),
            startup: AtomicBool::new(true),
            records: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn set_capture(&self, on: bool) {
        self.capture.store(on, Ordering::Relaxed);
    }

    pub(crate) fn capturing(&self) -> bool {
        self.capture.load(Ordering::Relaxed)
    }

    /// Start-up is over: stop keeping records unless capture is on.
    pub(crate) fn end_startup(&self) {
        self.startup.store(false, Ordering::Relaxed);
        if !self.capturing() {
            self.take();
        }
    }

    pub(crate) fn take(&self) -> Vec<LogRecord> {
        std::mem::take(&mut *self.records.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// True when a record at `level` would be kept or emitted.
    pub(crate) fn enabled(&self, level: LogLevel) -> bool {
        if self.capturing() || self.startup.load(Ordering::Relaxed) {
            return true;
        }
        match level {
            LogLevel::Trace => tracing::enabled!(target: "wasm", tracing::Level::TRACE),
            LogLevel::Debug => tracing::enabled!(target: "wasm", tracing::Level::DEBUG),
            LogLevel::Info => tracing::enabled!(target: "wasm", tracing::Level::INFO),
            LogLevel::Warn => tracing::enabled!(target: "wasm", tracing::Level::WARN),
            LogLevel::Error | LogLevel::Critical => {
                tracing::enabled!(target: "wasm", tracing::Level::ERROR)
            }
        }
    }

    /// Records or emits one message.
    pub(crate) fn log(&self, level: LogLevel, message: &[u8]) {
        let message = &message[..message.len().min(MAX_LOG_BYTES)];
        let text = String::from_utf8_lossy(message);
        let capturing = self.capturing();
        if capturing || self.startup.load(Ordering::Relaxed) {
            let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
            if records.len() < MAX_CAPTURED_LOGS {
                records.push(LogRecord {
                    level,
                    message: text.to_string(),
                });
            }
            if capturing {
                return;
            }
        }
        let plugin = &*self.plugin;
        match level {
            LogLevel::Trace => tracing::trace!(target: "wasm", plugin, "{text}"),
            LogLevel::Debug => tracing::debug!(target: "wasm", plugin, "{text}"),
            LogLevel::Info => tracing::info!(target: "wasm", plugin, "{text}"),
            LogLevel::Warn => tracing::warn!(target: "wasm", plugin, "{text}"),
            LogLevel::Error => tracing::error!(target: "wasm", plugin, "{text}"),
            LogLevel::Critical => {
                tracing::error!(target: "wasm", plugin, critical = true, "{text}")
            }
        }
    }
}

/// The module's WASI stdout (Info) or stderr (Error): complete lines go to the [`LogSink`].
/// Written by the `fd_write` shim in `exports::wasi`, never by the host's own stdio.
pub(crate) struct GuestStdio {
    sink: Arc<LogSink>,
    level: LogLevel,
    partial: Vec<u8>,
}

impl GuestStdio {
    pub(crate) fn new(sink: Arc<LogSink>, level: LogLevel) -> Self {
        Self {
            sink,
            level,
            partial: Vec::new(),
        }
    }

    /// Appends guest output; each complete line becomes one log record.
    pub(crate) fn write_bytes(&mut self, mut bytes: &[u8]) {
        let partial = &mut self.partial;
        while let Some(nl) = bytes.iter().position(|b| *b == b'\n') {
            if partial.is_empty() {
                self.sink.log(self.level, &bytes[..nl]);
            } else {
                partial.extend_from_slice(&bytes[..nl]);
                self.sink.log(self.level, partial);
                partial.clear();
            }
            bytes = &bytes[nl + 1..];
        }
        let room = MAX_LOG_BYTES.saturating_sub(partial.len());
        partial.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}
