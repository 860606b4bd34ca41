//! TLS on both sides, with certificates made at test time: HTTPS listeners
//! (HTTP/1.1 and HTTP/2 by ALPN), https upstreams verified against `tls.ca`
//! (refused when the chain or the name does not verify), mTLS, and
//! session resumption by tickets on the listener.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use rustls::{HandshakeKind, ProtocolVersion, pki_types::ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasmgate_tests::{
    backend,
    gateway::{self, Client, get, secret_header, send},
    tls::{Pki, TlsBackend},
};

const WAIT: Duration = Duration::from_secs(5);

fn tls_client(pki: &Pki, alpn: &[&[u8]]) -> Client {
    Client::Tls {
        config: pki.client_config(None, alpn),
        server_name: "gw.test".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener_speaks_h1_and_h2_by_alpn() -> anyhow::Result<()> {
    let pki = Pki::new("listener CA");
    let server = pki.issue("gw", &["gw.test"]);
    let backend = backend::start().await?;
    let yaml = format!(
        r#"
listeners:
  - address: 127.0.0.1:0
    tls: {{ cert: "{}", key: "{}" }}
upstreams: {{ backend: {{ url: "{}" }} }}
routes:
  - name: api
    match: {{}}
    upstream: backend
    filters:
      - wasm: "{}"
        config: {{ set: {{ headers: ["Authorization:Bearer tls-secret"] }} }}
"#,
        server.cert.display(),
        server.key.display(),
        backend.url(),
        secret_header().display()
    );
    let gw = gateway::start(&yaml)?;
    for (alpn, version) in [
        (&b"h2"[..], http::Version::HTTP_2),
        (&b"http/1.1"[..], http::Version::HTTP_11),
    ] {
        let req = Request::get("/x")
            .header("host", "gw.test")
            .body(Full::new(Bytes::new()))?;
        let r = send(gw.addr(), &tls_client(&pki, &[alpn]), req).await?;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.version, version);
    }
    // HTTP/1.1 over TLS starts on the lean path; a request with a body is
    // handed to hyper with the bytes read, on the same connection.
    let req = Request::post("/upload")
        .header("host", "gw.test")
        .body(Full::new(Bytes::from_static(b"tls body")))?;
    let r = send(gw.addr(), &tls_client(&pki, &[b"http/1.1"]), req).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.version, http::Version::HTTP_11);
    let seen = backend.wait_for_requests(3, WAIT).await;
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.header_all("authorization"), ["Bearer tls-secret"]);
        assert_eq!(s.header("x-forwarded-proto"), Some("https"));
    }
    assert_eq!(seen[2].body, b"tls body");
    // A client that does not trust the gateway's CA gets no answer.
    let other = Pki::new("other CA");
    let req = Request::get("/x")
        .header("host", "gw.test")
        .body(Full::new(Bytes::new()))?;
    assert!(
        send(gw.addr(), &tls_client(&other, &[b"http/1.1"]), req)
            .await
            .is_err()
    );
    Ok(())
}

fn upstream_yaml(url: &str, tls: &str) -> String {
    format!(
        r#"
listeners: [{{ address: "127.0.0.1:0" }}]
upstreams:
  secure:
    url: "{url}"
    tls: {tls}
    connect_timeout: 2s
routes:
  - name: api
    match: {{}}
    upstream: secure
    filters:
      - wasm: "{}"
        config: {{ set: {{ headers: ["Authorization:Bearer upstream-secret"] }} }}
"#,
        secret_header().display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_is_verified() -> anyhow::Result<()> {
    let pki = Pki::new("backend CA");
    let cert = pki.issue("api", &["api.internal"]);
    let tls_backend = TlsBackend::start(pki.server_config(&cert, false)).await?;
    let url = format!("https://127.0.0.1:{}", tls_backend.addr().port());

    // Trusted CA and the right name: the request (and the secret) arrive, over h2 by ALPN.
    let ok = gateway::start(&upstream_yaml(
        &url,
        &format!(
            "{{ ca: \"{}\", server_name: api.internal }}",
            pki.ca_pem.display()
        ),
    ))?;
    let r = get(ok.addr(), "a.test", "/ok", &[]).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = tls_backend.received();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].request.header("authorization"),
        Some("Bearer upstream-secret")
    );
    assert_eq!(seen[0].alpn.as_deref(), Some("h2"));

    // A certificate from a CA we do not trust: refused, 502, nothing sent.
    let other = Pki::new("untrusted CA");
    let bad_ca = gateway::start(&upstream_yaml(
        &url,
        &format!(
            "{{ ca: \"{}\", server_name: api.internal }}",
            other.ca_pem.display()
        ),
    ))?;
    let r = get(bad_ca.addr(), "a.test", "/bad-ca", &[]).await?;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(!r.text().contains("upstream-secret"));

    // The right CA but the wrong name: refused too.
    let bad_name = gateway::start(&upstream_yaml(
        &url,
        &format!(
            "{{ ca: \"{}\", server_name: other.internal }}",
            pki.ca_pem.display()
        ),
    ))?;
    let r = get(bad_name.addr(), "a.test", "/bad-name", &[]).await?;
    assert_eq!(r.status, 502);

    // Without tls.ca the system roots apply, which do not know our CA.
    let system = gateway::start(&upstream_yaml(&url, "{ server_name: api.internal }"))?;
    let r = get(system.addr(), "a.test", "/system-roots", &[]).await?;
    assert_eq!(r.status, 502);

    assert_eq!(
        tls_backend.received().len(),
        1,
        "only the verified request may arrive"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_upstream_gets_the_client_certificate() -> anyhow::Result<()> {
    let pki = Pki::new("mesh CA");
    let server = pki.issue("api", &["api.internal"]);
    let client = pki.issue("gw-client", &["gateway.internal"]);
    let tls_backend = TlsBackend::start(pki.server_config(&server, true)).await?;
    let url = format!("https://127.0.0.1:{}", tls_backend.addr().port());
    let ca = pki.ca_pem.display();

    let with_cert = gateway::start(&upstream_yaml(
        &url,
        &format!(
            "{{ ca: \"{ca}\", server_name: api.internal, client_cert: \"{}\", client_key: \"{}\" }}",
            client.cert.display(),
            client.key.display()
        ),
    ))?;
    let r = get(with_cert.addr(), "a.test", "/mtls", &[]).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = tls_backend.received();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].client_cert);

    let without = gateway::start(&upstream_yaml(
        &url,
        &format!("{{ ca: \"{ca}\", server_name: api.internal }}"),
    ))?;
    let r = get(without.addr(), "a.test", "/no-cert", &[]).await?;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(tls_backend.received().len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_can_be_held_to_http1() -> anyhow::Result<()> {
    let pki = Pki::new("backend CA");
    let cert = pki.issue("api", &["api.internal"]);
    let tls_backend = TlsBackend::start(pki.server_config(&cert, false)).await?;
    let url = format!("https://127.0.0.1:{}", tls_backend.addr().port());
    let yaml = upstream_yaml(
        &url,
        &format!(
            "{{ ca: \"{}\", server_name: api.internal }}",
            pki.ca_pem.display()
        ),
    )
    .replace(
        "connect_timeout: 2s",
        "connect_timeout: 2s\n    protocol: http1",
    );
    let gw = gateway::start(&yaml)?;
    let r = get(gw.addr(), "a.test", "/h1", &[]).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = tls_backend.received();
    assert_eq!(seen[0].alpn.as_deref(), Some("http/1.1"));
    assert_eq!(seen[0].request.version, "HTTP/1.1");
    assert_eq!(
        seen[0].request.header("authorization"),
        Some("Bearer upstream-secret")
    );
    Ok(())
}

/// One HTTP/1.1 request on a new TLS connection made with `config` (whose
/// session store carries sessions from one connection to the next): how
/// the handshake went, and the answer's status line.
async fn connect_once(
    addr: std::net::SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> anyhow::Result<(HandshakeKind, ProtocolVersion, String)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(ServerName::try_from("gw.test")?, tcp)
        .await?;
    let (kind, version) = {
        let session = tls.get_ref().1;
        (
            session.handshake_kind().context("handshake kind")?,
            session.protocol_version().context("protocol version")?,
        )
    };
    tls.write_all(b"GET /resume HTTP/1.1\r\nhost: gw.test\r\nconnection: close\r\n\r\n")
        .await?;
    // Reading to the end also takes in the TLS 1.3 tickets sent after the handshake.
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, tls.read_to_end(&mut answer)).await??;
    let answer = String::from_utf8_lossy(&answer);
    Ok((
        kind,
        version,
        answer.lines().next().unwrap_or("").to_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener_resumes_sessions_by_ticket() -> anyhow::Result<()> {
    let pki = Pki::new("listener CA");
    let server = pki.issue("gw", &["gw.test"]);
    let backend = backend::start().await?;
    let yaml = format!(
        r#"
workers: 2
listeners:
  - address: 127.0.0.1:0
    tls: {{ cert: "{}", key: "{}" }}
upstreams: {{ backend: {{ url: "{}" }} }}
routes: [{{ name: api, match: {{}}, upstream: backend }}]
"#,
        server.cert.display(),
        server.key.display(),
        backend.url(),
    );
    let gw = gateway::start(&yaml)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])?
            .with_root_certificates(pki.roots())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        let first = connect_once(gw.addr(), &config).await?;
        assert_eq!(first.0, HandshakeKind::Full);
        assert_eq!(first.1, version.version);
        assert!(first.2.starts_with("HTTP/1.1 200"), "{}", first.2);
        // Both workers accept: whichever takes the next connections, the
        // ticket opens there.
        for _ in 0..4 {
            let again = connect_once(gw.addr(), &config).await?;
            assert_eq!(again.0, HandshakeKind::Resumed, "{:?}", version.version);
            assert!(again.2.starts_with("HTTP/1.1 200"), "{}", again.2);
        }
    }
    // More clients than the 256-entry session cache a rustls server keeps
    // by default (two TLS 1.3 tickets each): the first client's ticket
    // still opens, since the session travels in the ticket.
    let first = pki.client_config(None, &[b"http/1.1"]);
    assert_eq!(
        connect_once(gw.addr(), &first).await?.0,
        HandshakeKind::Full
    );
    for _ in 0..200 {
        let other = pki.client_config(None, &[b"http/1.1"]);
        let (kind, _, status) = connect_once(gw.addr(), &other).await?;
        assert_eq!(kind, HandshakeKind::Full);
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    }
    assert_eq!(
        connect_once(gw.addr(), &first).await?.0,
        HandshakeKind::Resumed
    );
    Ok(())
}
