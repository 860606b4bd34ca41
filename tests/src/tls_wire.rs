//! A rustls server session driven by hand over a TCP socket, for backends
//! that choose which TLS records go out, how they are cut into TCP writes,
//! and when: [`handshake`] completes the handshake, [`drain`] takes what
//! rustls has to send, [`feed`] gives it what arrived and keeps the
//! plaintext.

use std::{
    io::{self, Read},
    sync::Arc,
};

use rustls::{ServerConfig, ServerConnection};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Completes a server handshake on `tcp` (Nagle off): the session, and
/// any plaintext the client sent with its last handshake flight.
///
/// # Errors
/// An I/O or TLS failure, or the peer closing during the handshake.
pub async fn handshake(
    tcp: &mut TcpStream,
    config: Arc<ServerConfig>,
) -> io::Result<(ServerConnection, Vec<u8>)> {
    let _ = tcp.set_nodelay(true);
    let mut tls = ServerConnection::new(config).map_err(io::Error::other)?;
    let mut plain = Vec::new();
    loop {
        let out = drain(&mut tls)?;
        if !out.is_empty() {
            tcp.write_all(&out).await?;
        }
        if !tls.is_handshaking() {
            return Ok((tls, plain));
        }
        let mut buf = [0u8; 16 * 1024];
        let n = tcp.read(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        feed(&mut tls, &buf[..n], &mut plain)?;
    }
}

/// The TLS bytes rustls has to send, taken out of it.
///
/// # Errors
/// rustls failed to write.
pub fn drain(tls: &mut ServerConnection) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while tls.wants_write() {
        tls.write_tls(&mut out)?;
    }
    Ok(out)
}

/// Feeds bytes read from TCP to rustls and keeps the plaintext.
///
/// # Errors
/// A record that does not decrypt, or any other TLS error.
pub fn feed(tls: &mut ServerConnection, mut bytes: &[u8], plain: &mut Vec<u8>) -> io::Result<()> {
    while !bytes.is_empty() {
        tls.read_tls(&mut bytes)?;
        tls.process_new_packets().map_err(io::Error::other)?;
        let mut buf = [0u8; 16 * 1024];
        loop {
            match tls.reader().read(&mut buf) {
                Ok(0) => break,
                Ok(n) => plain.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}
