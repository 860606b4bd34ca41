//! Per-connection watchdog: the idle and header-read timeouts.
//!
//! A client that connects and sends nothing, parks a keep-alive
//! connection, or trickles a request head byte by byte would otherwise
//! hold a socket forever. Rather than arming a timer per request (a clock
//! read and a timer-wheel entry on the hot path), the connection's I/O and
//! its service only bump counters in [`Activity`]; one [`watch`] future per
//! connection wakes a few times per timeout period and compares them with
//! what it saw last time:
//!
//! - **idle**: nothing read or written and no request in flight for
//!   `idle_timeout`;
//! - **header read** (HTTP/1 only): bytes of a new request head arrived but
//!   the head has not been completed within `header_read_timeout`.
//!
//! A timeout fires between its nominal value and one eighth more (the tick).
//! Counters are written by the connection's own task only, so they are
//! plain loads and stores, never locked read-modify-writes.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::BytesMut;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Instant,
};

/// Why the watchdog ended a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expired {
    /// Quiet, with nothing in flight, for the idle timeout.
    Idle,
    /// A request head was started but not finished in time.
    HeaderRead,
}

/// Counters shared by a connection's I/O, its service and its watchdog.
#[derive(Debug, Default)]
pub struct Activity {
    /// Reads that returned bytes plus writes that took bytes.
    io: AtomicU64,
    /// Reads that returned bytes since the last request started or ended.
    reads_between_requests: AtomicU64,
    /// Requests started (head complete) so far.
    requests: AtomicU64,
    /// Requests whose response headers are not sent yet.
    in_flight: AtomicU64,
    /// The client spoke HTTP/2 (no request heads to time).
    h2: AtomicBool,
}

fn bump(counter: &AtomicU64) {
    // One writer (the connection's task): no locked RMW needed.
    counter.store(counter.load(Relaxed).wrapping_add(1), Relaxed);
}

impl Activity {
    /// A connection that just opened.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Marks a request as started (its head is complete); the guard marks
    /// it done.
    pub fn request(self: &Arc<Self>) -> InFlight {
        bump(&self.requests);
        bump(&self.in_flight);
        self.reads_between_requests.store(0, Relaxed);
        InFlight(self.clone())
    }

    /// Marks the connection as HTTP/2 (set before any request on it).
    pub fn set_h2(&self) {
        self.h2.store(true, Relaxed);
    }

    fn on_read(&self) {
        bump(&self.io);
        bump(&self.reads_between_requests);
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.in_flight
            .store(a.in_flight.load(Relaxed).saturating_sub(1), Relaxed);
        a.reads_between_requests.store(0, Relaxed);
        bump(&a.io);
    }
}

/// Resolves when the connection should be closed.
pub async fn watch(activity: Arc<Activity>, idle: Duration, header_read: Duration) -> Expired {
    let tick = (idle.min(header_read) / 8).max(Duration::from_millis(5));
    let mut io = activity.io.load(Relaxed);
    let mut quiet_since = Instant::now();
    let mut requests = activity.requests.load(Relaxed);
    let mut head_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(tick).await;
        let now = Instant::now();
        let seen = activity.io.load(Relaxed);
        if seen != io {
            io = seen;
            quiet_since = now;
        }
        let in_flight = activity.in_flight.load(Relaxed) > 0;
        if !in_flight && now - quiet_since >= idle {
            return Expired::Idle;
        }
        let started = activity.requests.load(Relaxed);
        let head_pending = !in_flight
            && !activity.h2.load(Relaxed)
            && activity.reads_between_requests.load(Relaxed) > 0;
        if !head_pending || started != requests {
            // A new request began since the last tick: its head was read.
            requests = started;
            head_since = head_pending.then_some(now);
            continue;
        }
        // The head started at most one tick before we first saw it.
        let since = *head_since.get_or_insert(now - tick);
        if now - since >= header_read {
            return Expired::HeaderRead;
        }
    }
}

/// HTTP/2's connection preface, which a client sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// Lingering close: after the gateway closes its side, what the client
/// still sends is read and dropped until it stops for this long...
const LINGER_QUIET: Duration = Duration::from_millis(500);
/// ...or for this long at most.
const LINGER_MAX: Duration = Duration::from_secs(5);

/// A stream that counts its reads and writes in [`Activity`], and closes
/// lingering: shutting it down sends the end of stream, then reads and
/// drops what the client still sends (an upload answered early) until it
/// goes quiet, so the kernel never answers those bytes with a reset that
/// would destroy the response before the client reads it.
#[derive(Debug)]
pub struct CountedIo<T> {
    inner: T,
    activity: Arc<Activity>,
    /// Bytes of the HTTP/2 preface matched so far; `None` once decided.
    preface: Option<usize>,
    /// Bytes read once and put back ([`CountedIo::unread`]).
    unread: BytesMut,
    /// Set once our side is shut down: the lingering timers.
    linger: Option<Linger>,
}

#[derive(Debug)]
struct Linger {
    quiet: Pin<Box<tokio::time::Sleep>>,
    until: Instant,
}

impl<T> CountedIo<T> {
    /// Wraps a connection.
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            activity,
            preface: Some(0),
            unread: BytesMut::new(),
            linger: None,
        }
    }

    /// Puts bytes read from this connection back in front of it: the next
    /// reads return them first (counted once, when they were read). How
    /// the lean HTTP/1.1 loop hands a connection to hyper.
    pub fn unread(&mut self, bytes: BytesMut) {
        debug_assert!(self.unread.is_empty());
        self.unread = bytes;
    }
}

impl<T: crate::listener::ReadReady> crate::listener::ReadReady for CountedIo<T> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.unread.is_empty() {
            self.inner.poll_read_ready(cx)
        } else {
            Poll::Ready(Ok(()))
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CountedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.unread.is_empty() {
            let n = self.unread.len().min(buf.remaining());
            buf.put_slice(&self.unread.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            if let Some(matched) = self.preface {
                // The preface may arrive over several reads; decide once
                // all of it, or a byte that differs, has been seen.
                let data = &buf.filled()[before..];
                let want = &H2_PREFACE[matched..];
                let n = data.len().min(want.len());
                self.preface = if data[..n] != want[..n] {
                    None
                } else if matched + n == H2_PREFACE.len() {
                    self.activity.set_h2();
                    None
                } else {
                    Some(matched + n)
                };
            }
            self.activity.on_read();
        }
        result
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for CountedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            bump(&self.activity.io);
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            bump(&self.activity.io);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.linger.is_none() {
            std::task::ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            let now = Instant::now();
            this.linger = Some(Linger {
                quiet: Box::pin(tokio::time::sleep_until(now + LINGER_QUIET)),
                until: now + LINGER_MAX,
            });
        }
        let Some(linger) = this.linger.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let mut scratch = [0u8; 8192];
        loop {
            if linger.quiet.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    let next = (Instant::now() + LINGER_QUIET).min(linger.until);
                    linger.quiet.as_mut().reset(next);
                }
                // The client closed too (or the socket failed): done.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    /// Reads `data` through a [`CountedIo`] that has matched `matched`
    /// preface bytes so far; returns its state afterwards.
    async fn read_through(a: &Arc<Activity>, matched: usize, data: &[u8]) -> Option<usize> {
        let mut io = CountedIo::new(data, a.clone());
        io.preface = Some(matched);
        let mut buf = [0u8; 64];
        let n = io.read(&mut buf).await.unwrap();
        assert_eq!(n, data.len());
        io.preface
    }

    #[tokio::test]
    async fn unread_bytes_come_first_and_count_once() {
        let a = Activity::new();
        let mut io = CountedIo::new(&b" world"[..], a.clone());
        io.unread(BytesMut::from(&b"hello"[..]));
        let mut all = Vec::new();
        io.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"hello world");
        assert_eq!(
            a.io.load(Relaxed),
            1,
            "only the read from the stream counts"
        );
    }

    #[tokio::test]
    async fn the_http2_preface_is_recognised_even_when_split() {
        let a = Activity::new();
        assert_eq!(read_through(&a, 0, b"PRI * HT").await, Some(8));
        assert!(!a.h2.load(Relaxed));
        assert_eq!(read_through(&a, 8, b"TP/2.0\r\n\r\nSM").await, None);
        assert!(a.h2.load(Relaxed));
    }

    #[tokio::test]
    async fn a_request_starting_like_the_preface_is_not_http2() {
        let a = Activity::new();
        assert_eq!(read_through(&a, 0, b"P").await, Some(1));
        assert_eq!(read_through(&a, 1, b"OST / HTTP/1.1\r\n").await, None);
        assert!(!a.h2.load(Relaxed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_connection_expires_as_idle() {
        let a = Activity::new();
        let start = Instant::now();
        let why = watch(a, Duration::from_secs(8), Duration::from_secs(80)).await;
        assert_eq!(why, Expired::Idle);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_secs(8) && took <= Duration::from_secs(9),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_never_idle() {
        let a = Activity::new();
        let guard = a.request();
        let w = watch(a.clone(), Duration::from_secs(1), Duration::from_secs(1));
        tokio::select! {
            _ = w => panic!("expired with a request in flight"),
            () = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        drop(guard);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unfinished_head_expires_before_the_idle_timeout() {
        let a = Activity::new();
        a.on_read();
        let start = Instant::now();
        let why = watch(a.clone(), Duration::from_secs(60), Duration::from_secs(8)).await;
        assert_eq!(why, Expired::HeaderRead);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_secs(8) && took <= Duration::from_secs(10),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn finished_heads_and_http2_are_not_timed() {
        let a = Activity::new();
        let w = watch(a.clone(), Duration::from_secs(60), Duration::from_secs(8));
        let traffic = async {
            // A request every second for 30 s: each head completes.
            for _ in 0..30 {
                a.on_read();
                drop(a.request());
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            // HTTP/2 reads (pings, settings) between requests are fine.
            a.set_h2();
            for _ in 0..30 {
                a.on_read();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        tokio::select! {
            why = w => panic!("expired: {why:?}"),
            () = traffic => {}
        }
    }
}
