//! TLS record boundaries in what rustls reads from an upstream socket.
//!
//! rustls decrypts every complete record it has read, but keeps a partial
//! one to itself and says nothing about it. A pooled lean connection must
//! have nothing pending: a record of late bytes half read when the last
//! response ended would otherwise be decrypted in front of the next
//! response. [`Tracked`] wraps the socket and follows the record headers in
//! the bytes rustls reads (RFC 8446 §5.1: a type, a version and a 16-bit
//! length, then that many bytes), so [`Tracked::at_record_boundary`] says
//! whether every record read so far was read whole. hyper's client owns
//! its connection in a task of its own, so for it [`Tracked::watched`]
//! also publishes that answer to a [`RecordWatch`] the pool keeps, with a
//! way to the socket: bytes that arrived while that task has not run yet
//! (a busy worker reads its sockets only when it gets back to its reactor)
//! are seen by a peek, as the lean client sees them (`h1/stream.rs`).

use std::{
    io,
    mem::MaybeUninit,
    pin::Pin,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, ready},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

/// A TLS record header's size.
const HEADER: usize = 5;

/// A TCP stream that knows where the TLS records it delivered end.
#[derive(Debug)]
pub(crate) struct Tracked {
    /// Shared only with a [`RecordWatch`], which holds it weakly (to peek).
    tcp: Arc<TcpStream>,
    records: Records,
    /// Told after every read whether a record is unfinished.
    watch: Option<RecordWatch>,
}

/// Whether a connection holds anything since its last response, seen from
/// outside the task that reads it: a flag that task writes after each read
/// (a record left unfinished), and the socket (bytes not read yet).
#[derive(Clone, Debug)]
pub(crate) struct RecordWatch {
    mid_record: Arc<AtomicBool>,
    tcp: Weak<TcpStream>,
}

impl RecordWatch {
    /// Whether nothing has arrived since the last read ended on a record
    /// boundary: no part of a record held, nothing waiting in the socket.
    /// A connection already dropped is not clean.
    pub(crate) fn is_clean(&self) -> bool {
        !self.mid_record.load(Ordering::Relaxed)
            && self.tcp.upgrade().is_some_and(|tcp| nothing_waiting(&tcp))
    }
}

/// A non-blocking `recv` with `MSG_PEEK` asks the kernel, not tokio's
/// readiness (which learns of new bytes only when the reactor runs).
#[inline]
pub(super) fn nothing_waiting(tcp: &TcpStream) -> bool {
    let mut probe = [MaybeUninit::<u8>::uninit(); 1];
    matches!(
        socket2::SockRef::from(tcp).peek(&mut probe),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock
    )
}

impl Tracked {
    pub(crate) fn new(tcp: TcpStream) -> Self {
        Self {
            tcp: Arc::new(tcp),
            records: Records::default(),
            watch: None,
        }
    }

    /// A tracked stream whose record state can be read through the
    /// returned watch by whoever does not own the stream.
    pub(crate) fn watched(tcp: TcpStream) -> (Self, RecordWatch) {
        let mut tracked = Self::new(tcp);
        let watch = RecordWatch {
            mid_record: Arc::default(),
            tcp: Arc::downgrade(&tracked.tcp),
        };
        tracked.watch = Some(watch.clone());
        (tracked, watch)
    }

    /// The socket (for a peek that goes around the TLS layer).
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Whether everything read so far ended with a whole record.
    pub(crate) fn at_record_boundary(&self) -> bool {
        self.records.at_boundary()
    }
}

/// Where the record stream stands.
#[derive(Debug, Default)]
struct Records {
    /// The next record's header, as far as it arrived (`have` bytes).
    header: [u8; HEADER],
    have: usize,
    /// Bytes of the current record still to come.
    left: usize,
}

impl Records {
    fn at_boundary(&self) -> bool {
        self.have == 0 && self.left == 0
    }

    /// Follows the records through bytes just read: skips record bodies,
    /// reads the length from each header.
    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.left > 0 {
                let n = self.left.min(bytes.len());
                self.left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEADER - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == HEADER {
                self.left = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                self.have = 0;
            }
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        // What `TcpStream::poll_read` does, through the shared `Arc`.
        loop {
            ready!(this.tcp.poll_read_ready(cx))?;
            match this.tcp.try_read_buf(buf) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        this.records.scan(&buf.filled()[before..]);
        if let Some(watch) = &this.watch {
            watch
                .mid_record
                .store(!this.records.at_boundary(), Ordering::Relaxed);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let tcp = &self.tcp;
        loop {
            ready!(tcp.poll_write_ready(cx))?;
            match tcp.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                written => return Poll::Ready(written),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let tcp = &self.tcp;
        loop {
            ready!(tcp.poll_write_ready(cx))?;
            match tcp.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                written => return Poll::Ready(written),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // TCP holds nothing back.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // As `TcpStream::poll_shutdown`: the write side, at once.
        Poll::Ready(socket2::SockRef::from(&*self.tcp).shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::Records;

    /// A record of `len` bytes: application data, TLS 1.2 on the wire.
    fn record(len: u16) -> Vec<u8> {
        let mut r = vec![23, 3, 3];
        r.extend_from_slice(&len.to_be_bytes());
        r.resize(5 + usize::from(len), 0xaa);
        r
    }

    fn after(pieces: &[&[u8]]) -> bool {
        let mut records = Records::default();
        for piece in pieces {
            records.scan(piece);
        }
        records.at_boundary()
    }

    #[test]
    fn whole_records_end_on_a_boundary() {
        let two = [record(3), record(300)].concat();
        assert!(after(&[]));
        assert!(after(&[&two]));
        assert!(after(&[&record(0)]), "an empty record is whole");
        // Split anywhere, even inside a header, the end is the same.
        for at in 0..two.len() {
            assert!(after(&[&two[..at], &two[at..]]), "split at {at}");
        }
    }

    #[test]
    fn a_partial_record_is_not_a_boundary() {
        let two = [record(3), record(300)].concat();
        for at in (1..two.len()).filter(|&at| at != 8) {
            assert!(!after(&[&two[..at]]), "cut at {at}");
        }
        assert!(after(&[&two[..8]]), "the first record ends at 8");
    }
}
