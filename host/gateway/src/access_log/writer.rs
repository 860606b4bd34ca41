//! The access log's way out of the request path: each worker formats its
//! lines into a buffer of its own (a thread-local, no lock), and hands a
//! full buffer (or, every [`FLUSH_INTERVAL`], whatever it holds) to one
//! writer thread over a bounded channel. A worker never waits for the
//! writer: when the channel is full (a slow disk, a full pipe) the buffer's
//! lines are counted in [`dropped_lines`] and thrown away. On shutdown the
//! workers hand over what they hold and [`flush`] waits until the writer
//! has written everything queued before it, so a clean stop loses nothing.
//!
//! The writer is process-wide (it owns the process's standard error) and
//! exists only once the binary installs it ([`install`]); without it the
//! access log goes through `tracing` as any other event.

use std::{
    cell::RefCell,
    io::Write,
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, SyncSender, TrySendError},
    },
    time::{Duration, Instant},
};

use crate::config::LogFormat;

/// A worker hands its buffer over once it holds this much.
const CHUNK_BYTES: usize = 16 * 1024;
/// Buffers the channel holds before workers start dropping lines (with
/// [`CHUNK_BYTES`], at most 4 MiB waiting for the writer).
const QUEUE_CHUNKS: usize = 256;
/// How often a worker hands over a partly filled buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

static WRITER: OnceLock<Writer> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);
static WRITTEN: AtomicU64 = AtomicU64::new(0);

struct Writer {
    tx: SyncSender<Msg>,
    format: LogFormat,
}

enum Msg {
    /// Whole lines, and how many.
    Lines(Vec<u8>, u64),
    /// Answer once everything before has been written.
    Flush(mpsc::Sender<()>),
}

/// One worker's lines not yet handed over.
pub(super) struct Local {
    pub(super) buf: Vec<u8>,
    lines: u64,
    pub(super) clock: super::format::Clock,
}

impl Local {
    fn hand_over(&mut self) {
        if self.lines == 0 {
            return;
        }
        let Some(writer) = WRITER.get() else {
            return;
        };
        let lines = std::mem::take(&mut self.lines);
        let buf = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES + 1024));
        match writer.tx.try_send(Msg::Lines(buf, lines)) {
            Ok(()) => {}
            Err(TrySendError::Full(Msg::Lines(mut buf, _)))
            | Err(TrySendError::Disconnected(Msg::Lines(mut buf, _))) => {
                DROPPED.fetch_add(lines, Ordering::Relaxed);
                // Keep the allocation for the next lines.
                buf.clear();
                self.buf = buf;
            }
            Err(_) => {}
        }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // A worker thread ending hands over what it still holds.
        self.hand_over();
    }
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local {
        buf: Vec::with_capacity(CHUNK_BYTES + 1024),
        lines: 0,
        clock: super::format::Clock::default(),
    });
}

/// The installed writer's format, or None when the access log goes
/// through `tracing`.
#[inline]
pub(super) fn format() -> Option<LogFormat> {
    WRITER.get().map(|w| w.format)
}

/// Appends one line with `f` to this worker's buffer; hands the buffer
/// over when it is full. False when the buffer is not reachable (the
/// thread is ending): the caller logs through `tracing` instead.
#[inline]
pub(super) fn append(f: impl FnOnce(&mut Local)) -> bool {
    LOCAL
        .try_with(|cell| {
            let Ok(mut local) = cell.try_borrow_mut() else {
                return false;
            };
            f(&mut local);
            local.lines += 1;
            if local.buf.len() >= CHUNK_BYTES {
                local.hand_over();
            }
            true
        })
        .unwrap_or(false)
}

/// Starts the writer thread, writing to `out` in `format`. Once only: a
/// second call changes nothing and returns false.
///
/// # Errors
/// The thread could not be started.
pub fn install(format: LogFormat, out: Box<dyn Write + Send>) -> std::io::Result<bool> {
    if WRITER.get().is_some() {
        return Ok(false);
    }
    let (tx, rx) = mpsc::sync_channel::<Msg>(QUEUE_CHUNKS);
    std::thread::Builder::new()
        .name("wasmgate-access-log".into())
        .spawn(move || {
            let mut out = out;
            for msg in rx {
                match msg {
                    Msg::Lines(buf, lines) => {
                        if out.write_all(&buf).is_ok() {
                            WRITTEN.fetch_add(lines, Ordering::Relaxed);
                        } else {
                            DROPPED.fetch_add(lines, Ordering::Relaxed);
                        }
                    }
                    Msg::Flush(done) => {
                        let _ = out.flush();
                        let _ = done.send(());
                    }
                }
            }
        })?;
    Ok(WRITER.set(Writer { tx, format }).is_ok())
}

/// Hands this thread's buffered lines to the writer (workers call it
/// every [`FLUSH_INTERVAL`] and when they stop).
pub fn flush_local() {
    let _ = LOCAL.try_with(|cell| {
        if let Ok(mut local) = cell.try_borrow_mut() {
            local.hand_over();
        }
    });
}

/// Hands this thread's lines over, then waits (at most `timeout`) until
/// the writer has written every line queued so far. True when it has (or
/// when there is no writer).
pub fn flush(timeout: Duration) -> bool {
    flush_local();
    let Some(writer) = WRITER.get() else {
        return true;
    };
    let deadline = Instant::now() + timeout;
    let (done_tx, done_rx) = mpsc::channel();
    let mut msg = Msg::Flush(done_tx);
    // Not a worker: this may wait for room in the queue.
    loop {
        match writer.tx.try_send(msg) {
            Ok(()) => break,
            Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                msg = m;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => return false,
        }
    }
    done_rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .is_ok()
}

/// Every [`FLUSH_INTERVAL`] until `stop`, hands the worker's lines over
/// (a worker's task; returns at once when there is no writer).
pub async fn flush_periodically(mut stop: tokio::sync::watch::Receiver<bool>) {
    if WRITER.get().is_none() {
        return;
    }
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*stop.borrow_and_update() {
        tokio::select! {
            _ = tick.tick() => flush_local(),
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    flush_local();
}

/// Lines thrown away because the writer could not keep up (or could not write).
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Lines the writer has written.
pub fn written_lines() -> u64 {
    WRITTEN.load(Ordering::Relaxed)
}
