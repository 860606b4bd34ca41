//! Test certificates made at test time with rcgen (nothing committed): a
//! CA, server and client certificates it signs, written as PEM files to a
//! temporary directory; plus an HTTPS echo backend (HTTP/1.1 and HTTP/2 by
//! ALPN, optionally requiring a client certificate for mTLS).

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::backend::Received;
use crate::record::Log;
use crate::serve::{accept_each, serve_http};

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// A throwaway certificate authority with its files in a temporary directory.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate (PEM), for `tls.ca`.
    pub ca_pem: PathBuf,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("ca_pem", &self.ca_pem)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Pki {
    /// A new CA called `name`.
    ///
    /// # Panics
    /// If rcgen or the file system fails (a broken test machine).
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA cert");
        let ca_pem = dir.path().join("ca.pem");
        std::fs::write(&ca_pem, ca.pem()).expect("write CA");
        Pki { dir, ca, ca_pem }
    }

    /// Issues a certificate for `names` (DNS names or IPs), written as
    /// `<file>.pem` and `<file>.key`.
    ///
    /// # Panics
    /// If rcgen or the file system fails.
    pub fn issue(&self, file: &str, names: &[&str]) -> CertFiles {
        self.issue_with(file, names, |_| {})
    }

    /// The same, with `edit` applied to the certificate's parameters first
    /// (validity dates, for an expired certificate).
    ///
    /// # Panics
    /// If rcgen or the file system fails.
    pub fn issue_with(
        &self,
        file: &str,
        names: &[&str],
        edit: impl FnOnce(&mut CertificateParams),
    ) -> CertFiles {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        edit(&mut params);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.ca).expect("leaf cert");
        let files = CertFiles {
            cert: self.dir.path().join(format!("{file}.pem")),
            key: self.dir.path().join(format!("{file}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write cert");
        std::fs::write(&files.key, key.serialize_pem()).expect("write key");
        files
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// A root store trusting only this CA.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca_pem).expect("CA file") {
            roots.add(cert.expect("CA PEM")).expect("CA cert");
        }
        roots
    }

    /// A server configuration presenting `files`, with ALPN h2 and
    /// http/1.1; with `client_auth`, clients must present a certificate
    /// this CA signed.
    pub fn server_config(&self, files: &CertFiles, client_auth: bool) -> Arc<ServerConfig> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
            .expect("cert file")
            .map(|c| c.expect("cert PEM"))
            .collect();
        let key = PrivateKeyDer::from_pem_file(&files.key).expect("key file");
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = if client_auth {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()), provider())
                    .build()
                    .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_single_cert(certs, key).expect("server cert");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// A client configuration trusting this CA (optionally presenting a
    /// client certificate), offering `alpn`.
    pub fn client_config(
        &self,
        client: Option<&CertFiles>,
        alpn: &[&[u8]],
    ) -> Arc<rustls::ClientConfig> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(self.roots());
        let mut config = match client {
            Some(files) => {
                let certs = CertificateDer::pem_file_iter(&files.cert)
                    .expect("cert")
                    .map(|c| c.expect("pem"))
                    .collect();
                let key = PrivateKeyDer::from_pem_file(&files.key).expect("key");
                builder
                    .with_client_auth_cert(certs, key)
                    .expect("client cert")
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// One request seen by the HTTPS backend.
#[derive(Debug, Clone)]
pub struct TlsReceived {
    /// The request.
    pub request: Received,
    /// Whether the client presented a (verified) certificate.
    pub client_cert: bool,
    /// Negotiated ALPN protocol.
    pub alpn: Option<String>,
}

/// An HTTPS echo backend on 127.0.0.1. Dropping it stops it.
#[derive(Debug)]
pub struct TlsBackend {
    addr: SocketAddr,
    received: Log<TlsReceived>,
    task: JoinHandle<()>,
}

impl TlsBackend {
    /// Starts on a free port with this server configuration.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn start(config: Arc<ServerConfig>) -> std::io::Result<TlsBackend> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received = Log::default();
        let log = received.clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let task = tokio::spawn(accept_each(listener, move |tcp| {
            let acceptor = acceptor.clone();
            let log = log.clone();
            async move {
                let Ok(Ok(tls)) =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                else {
                    return;
                };
                let (_, session) = tls.get_ref();
                let client_cert = session.peer_certificates().is_some_and(|c| !c.is_empty());
                let alpn = session
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned());
                serve_http(TokioIo::new(tls), move |req| {
                    echo(req, log.clone(), client_cert, alpn.clone())
                })
                .await;
            }
        }));
        Ok(TlsBackend {
            addr,
            received,
            task,
        })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests seen so far.
    pub fn received(&self) -> Vec<TlsReceived> {
        self.received.snapshot()
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Records `req` with what the TLS session showed and echoes it as JSON.
async fn echo(
    req: Request<Incoming>,
    log: Log<TlsReceived>,
    client_cert: bool,
    alpn: Option<String>,
) -> Response<Full<Bytes>> {
    let request = Received::read(req).await;
    let json = request.to_json().to_string();
    log.push(TlsReceived {
        request,
        client_cert,
        alpn,
    });
    Response::new(Full::new(Bytes::from(json)))
}
