//! What a lean connection runs on: plain TCP, or TLS over it (verified as
//! every https upstream is, `tls.rs`), read and written the same way.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::client::TlsStream;

use super::records::{Tracked, nothing_waiting};

/// A lean connection's byte stream.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    /// Boxed: a rustls connection is large, and a connection is moved
    /// around with every exchange.
    Tls(Box<TlsStream<Tracked>>),
}

impl Stream {
    /// Whether nothing arrived since the last response: no byte and no end
    /// of stream waiting in the socket and, over TLS, nothing rustls holds
    /// (no plaintext unread, no partial record, no `close_notify`).
    /// Conservative over TLS: a session ticket or a `close_notify` that
    /// arrived while idle costs a new connection, never a wrong response.
    #[inline]
    pub(super) fn is_clean(&mut self) -> bool {
        match self {
            Stream::Plain(tcp) => nothing_waiting(tcp),
            Stream::Tls(tls) => {
                let (io, session) = tls.get_mut();
                nothing_waiting(io.tcp())
                    && io.at_record_boundary()
                    && session
                        .process_new_packets()
                        .is_ok_and(|s| s.plaintext_bytes_to_read() == 0 && !s.peer_has_closed())
            }
        }
    }
}

impl AsyncRead for Stream {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
