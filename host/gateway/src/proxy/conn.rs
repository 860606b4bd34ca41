//! What the pipeline knows about a client connection: addresses, TLS, and
//! the connection's attributes for filters (`source.*`, `destination.*`,
//! `connection.*`), each encoded only when a filter reads it.

use std::{
    net::SocketAddr,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use http::{HeaderValue, Version};
use wasmgate_abi::{Attributes, properties::encode};

/// What the pipeline knows about the client connection. Cheap to clone;
/// the text forms are made once per connection, not per request.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// Client address.
    pub peer: SocketAddr,
    /// Whether the client came over TLS.
    pub tls: bool,
    /// The protocol of the request being served (set by [`super::handle`];
    /// `request.protocol`).
    pub version: Version,
    /// When serving the request began (set by [`super::handle`]; `request.time`).
    pub started: Option<Instant>,
    text: Arc<ConnText>,
}

/// Connection ids (`connection.id`), process-wide as Envoy's.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
struct ConnText {
    peer_ip: HeaderValue,
    /// The connection as filters see it (`source.*`, `destination.*`,
    /// `connection.*`), computed when a filter reads it.
    attributes: Arc<ConnAttributes>,
}

/// A connection's attributes for filters; a [`wasmgate_abi::Attributes`]
/// layer of every stream on the connection, which encodes a value only
/// when a filter reads it.
#[derive(Debug)]
struct ConnAttributes {
    peer: SocketAddr,
    local: SocketAddr,
    id: u64,
    /// Set once the TLS handshake is done: (SNI, version).
    tls: OnceLock<(String, &'static str)>,
}

impl Attributes for ConnAttributes {
    fn attribute(&self, path: &str) -> Option<Vec<u8>> {
        let port = |a: &SocketAddr| encode::int(i64::from(a.port()));
        match path {
            "source.address" => Some(self.peer.to_string().into_bytes()),
            "source.port" => Some(port(&self.peer)),
            "destination.address" => Some(self.local.to_string().into_bytes()),
            "destination.port" => Some(port(&self.local)),
            "connection.id" | "connection_id" => Some(encode::uint(self.id)),
            // The listeners never ask for a client certificate.
            "connection.mtls" => Some(encode::bool(false)),
            "connection.requested_server_name" => Some(
                self.tls
                    .get()
                    .map(|(sni, _)| sni.as_bytes().to_vec())
                    .unwrap_or_default(),
            ),
            "connection.tls_version" => self.tls.get().map(|(_, v)| v.as_bytes().to_vec()),
            _ => None,
        }
    }
}

impl ConnInfo {
    /// Describes a new connection.
    pub fn new(peer: SocketAddr, local: SocketAddr, tls: bool) -> Self {
        let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or(HeaderValue::from_static("unknown"));
        let attributes = ConnAttributes {
            peer,
            local,
            id: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
            tls: OnceLock::new(),
        };
        let text = ConnText {
            peer_ip,
            attributes: Arc::new(attributes),
        };
        Self {
            peer,
            tls,
            version: Version::HTTP_11,
            started: None,
            text: Arc::new(text),
        }
    }

    /// Records what the TLS handshake settled: the server name the client
    /// asked for (SNI, empty without) and the version (`TLSv1.2`, `TLSv1.3`).
    pub fn set_tls(&self, server_name: Option<&str>, version: &'static str) {
        let _ = self
            .text
            .attributes
            .tls
            .set((server_name.unwrap_or_default().to_string(), version));
    }

    /// The client's IP as a header value (for `x-forwarded-for`).
    pub fn peer_ip(&self) -> &HeaderValue {
        &self.text.peer_ip
    }

    /// The connection's attributes for filters (`source.*`,
    /// `destination.*`, `connection.*`).
    pub fn attributes(&self) -> Arc<dyn Attributes> {
        self.text.attributes.clone()
    }
}

/// `request.protocol` as Envoy names it.
pub fn protocol_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}
