//! A raw-socket HTTP/1.1 backend for the boundary tests: it answers each
//! request head with scripted bytes (pauses between pieces, late bytes,
//! anything a broken or hostile backend might send), and records every
//! byte it received, per connection, so a test sees exactly what went on
//! the wire. The same over TLS ([`RawBackend::start_tls`]), where a close
//! is either clean (`close_notify`) or a bare TCP close.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpListener,
    task::JoinHandle,
};
use tokio_rustls::TlsAcceptor;

use crate::{record::Log, serve::accept_each};

/// One step of a scripted answer.
#[derive(Clone, Debug)]
pub enum Step {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Wait this long.
    Wait(Duration),
    /// Close the connection (over TLS: a TCP close without `close_notify`).
    Close,
    /// Close the connection cleanly: `close_notify` first over TLS.
    CloseNotify,
}

/// Bytes to send, as a step.
pub fn send(bytes: impl AsRef<[u8]>) -> Step {
    Step::Send(bytes.as_ref().to_vec())
}

/// The answer to one request head (the head's text is given).
pub type Script = Arc<dyn Fn(&str) -> Vec<Step> + Send + Sync>;

/// A raw backend on 127.0.0.1; stops when dropped.
#[derive(Debug)]
pub struct RawBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    heads: Log<String>,
    bytes: Log<(usize, Vec<u8>)>,
    accepted: Arc<AtomicUsize>,
    server: JoinHandle<()>,
}

impl RawBackend {
    /// Starts a backend that answers each request head with `script`.
    ///
    /// # Errors
    /// The socket could not be bound.
    pub async fn start(
        script: impl Fn(&str) -> Vec<Step> + Send + Sync + 'static,
    ) -> std::io::Result<RawBackend> {
        Self::start_with(None, script).await
    }

    /// The same, over TLS with this server configuration (its ALPN list
    /// decides what the backend claims to speak).
    ///
    /// # Errors
    /// The socket could not be bound.
    pub async fn start_tls(
        config: Arc<rustls::ServerConfig>,
        script: impl Fn(&str) -> Vec<Step> + Send + Sync + 'static,
    ) -> std::io::Result<RawBackend> {
        Self::start_with(Some(TlsAcceptor::from(config)), script).await
    }

    async fn start_with(
        tls: Option<TlsAcceptor>,
        script: impl Fn(&str) -> Vec<Step> + Send + Sync + 'static,
    ) -> std::io::Result<RawBackend> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (heads, bytes) = (Log::default(), Log::default());
        let accepted = Arc::new(AtomicUsize::new(0));
        let script: Script = Arc::new(script);
        let (h, b, count) = (heads.clone(), bytes.clone(), accepted.clone());
        let server = tokio::spawn(accept_each(listener, move |tcp| {
            let id = count.fetch_add(1, Ordering::SeqCst);
            let (tls, script, h, b) = (tls.clone(), script.clone(), h.clone(), b.clone());
            async move {
                let _ = tcp.set_nodelay(true);
                match tls {
                    None => serve(tcp, id, script, h, b).await,
                    Some(acceptor) => {
                        if let Ok(Ok(stream)) =
                            tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                                .await
                        {
                            serve(stream, id, script, h, b).await;
                        }
                    }
                }
            }
        }));
        Ok(RawBackend {
            addr,
            heads,
            bytes,
            accepted,
            server,
        })
    }

    /// The request heads received, in order.
    pub fn heads(&self) -> Vec<String> {
        self.heads.snapshot()
    }

    /// Every byte received on connection `id` (0 for the first accepted).
    pub fn received(&self, id: usize) -> Vec<u8> {
        self.bytes
            .snapshot()
            .into_iter()
            .filter(|(c, _)| *c == id)
            .flat_map(|(_, b)| b)
            .collect()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(
    mut tcp: impl AsyncRead + AsyncWrite + Unpin,
    id: usize,
    script: Script,
    heads: Log<String>,
    bytes: Log<(usize, Vec<u8>)>,
) {
    let mut buf = Vec::new();
    loop {
        let head = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = buf.drain(..end + 4).collect();
                break String::from_utf8_lossy(&head).into_owned();
            }
            let mut chunk = [0u8; 16 * 1024];
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    bytes.push((id, chunk[..n].to_vec()));
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        };
        heads.push(head.clone());
        for step in script(&head) {
            match step {
                Step::Send(b) => {
                    // Flushed: over TLS, each step's bytes leave before the next.
                    if tcp.write_all(&b).await.is_err() || tcp.flush().await.is_err() {
                        return;
                    }
                }
                Step::Wait(d) => tokio::time::sleep(d).await,
                Step::Close => return,
                Step::CloseNotify => {
                    let _ = tcp.shutdown().await;
                    return;
                }
            }
        }
    }
}

/// Every value of header `name` in a raw message head.
pub fn header_values<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

/// The request line of a raw head.
pub fn request_line(head: &str) -> &str {
    head.lines().next().unwrap_or("")
}

/// Reads up to the end of the next message head (`\r\n\r\n`) and takes it
/// out of `buf`; what follows stays there. `None` when the peer closes first.
pub async fn read_head(io: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            return Some(String::from_utf8_lossy(&head).into_owned());
        }
        let mut chunk = [0u8; 4096];
        match io.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The `Content-Length` of a raw head, if it has one that parses.
pub fn content_length(head: &str) -> Option<usize> {
    header_values(head, "content-length")
        .first()
        .and_then(|v| v.parse().ok())
}

/// Writes `request` on a new connection to `addr` and reads until the
/// peer closes it (within `patience`): what came back, and how long after
/// the write it ended.
///
/// # Errors
/// Connect or I/O failure, or no close within `patience`.
pub async fn until_closed(
    addr: SocketAddr,
    request: &[u8],
    patience: Duration,
) -> anyhow::Result<(Vec<u8>, Duration)> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    let started = std::time::Instant::now();
    tcp.write_all(request).await?;
    let mut out = Vec::new();
    tokio::time::timeout(patience, tcp.read_to_end(&mut out))
        .await
        .map_err(|_| anyhow::anyhow!("the connection was never closed"))??;
    Ok((out, started.elapsed()))
}
