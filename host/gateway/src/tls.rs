//! rustls configurations: the listeners' server side (ALPN h2 and
//! http/1.1, session resumption by stateless tickets) and each https
//! upstream's client side (verified against the system roots or `tls.ca`,
//! optional client certificate for mTLS).
//! Verification cannot be switched off.

use std::{
    path::Path,
    sync::{Arc, OnceLock},
};

use rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer},
};

use crate::config::UpstreamProtocol;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain.
///
/// # Errors
/// Unreadable file or no certificate in it; the message names the file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: bad PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

/// Reads a PEM private key.
///
/// # Errors
/// Unreadable file or no key in it; the message names the file only.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .map_err(|e| format!("{}: bad PEM: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no private key found", path.display()))
}

/// The server configuration of a TLS listener.
///
/// # Errors
/// Bad files, or a key that does not match the certificate.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Session resumption by stateless tickets (TLS 1.3 and 1.2): the
    // default keeps sessions in a 256-entry cache behind one lock shared by
    // every worker, and TLS 1.3 stores two tickets per connection in it,
    // so beyond ~128 recent clients a returning client finds its session
    // evicted and pays a full handshake. Tickets are sealed with a key
    // made at start-up, held in memory only and replaced every 6 hours
    // (rustls' `TicketRotator`: a ticket lives 12 hours at most). A
    // resumed TLS 1.3 handshake still makes a fresh X25519 exchange
    // (psk_dhe_ke), so its traffic keeps forward secrecy.
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
}

/// The machine's trusted roots, read once per process.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut store = RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            // A malformed system certificate is skipped, not fatal.
            let _ = store.add(cert);
        }
        if store.is_empty() {
            tracing::warn!("no system root certificates found; https upstreams need tls.ca");
        }
        store
    })
}

/// What an https upstream is verified against and presents.
pub struct ClientTls<'a> {
    /// PEM CA bundle replacing the system roots.
    pub ca: Option<&'a Path>,
    /// mTLS client certificate and key.
    pub client_cert: Option<(&'a Path, &'a Path)>,
    /// Which ALPN protocols to offer.
    pub protocol: UpstreamProtocol,
}

/// The client configuration for one https upstream.
///
/// # Errors
/// Bad CA, certificate or key files.
pub fn client_config(tls: ClientTls<'_>) -> Result<Arc<ClientConfig>, String> {
    let roots = match tls.ca {
        Some(ca) => {
            let mut store = RootCertStore::empty();
            for cert in load_certs(ca)? {
                store
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            store
        }
        None => system_roots().clone(),
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match tls.client_cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| format!("{}: {e}", cert.display()))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = match tls.protocol {
        UpstreamProtocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
        UpstreamProtocol::Http2 => vec![b"h2".to_vec()],
    };
    Ok(Arc::new(config))
}
