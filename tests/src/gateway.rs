//! Running wasmgate in tests: in-process from a YAML string
//! ([`start`]), or as the built binary ([`binary`]); and clients that talk
//! to it over HTTP/1.1, h2c and TLS (HTTP/1.1 or HTTP/2 by ALPN), plus a raw
//! socket for malformed requests.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Version};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use wasmgate::{Gateway, GatewayHandle};

use crate::record::{Log, capture_lines, loopback_addresses};

/// Every network wait in these helpers is bounded by this.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A gateway started in-process from a configuration file written to a
/// temporary directory (relative paths in it resolve there).
#[derive(Debug)]
pub struct TestGateway {
    /// The running gateway.
    pub handle: GatewayHandle,
    /// The configuration file.
    pub config_path: PathBuf,
    dir: tempfile::TempDir,
}

/// `secret_header.wasm`, built from source by `tests/build.rs`.
pub fn secret_header() -> PathBuf {
    crate::wasm("secret_header")
}

/// Writes `yaml` to `config.yaml` in a fresh temporary directory and starts
/// the gateway on it.
///
/// # Errors
/// The gateway refused the configuration.
pub fn start(yaml: &str) -> Result<TestGateway> {
    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, yaml)?;
    let handle = Gateway::start_file(&config_path).map_err(|e| anyhow!("{e}"))?;
    Ok(TestGateway {
        handle,
        config_path,
        dir,
    })
}

impl TestGateway {
    /// The first listener.
    pub fn addr(&self) -> SocketAddr {
        self.handle.addr()
    }

    /// The admin address (the configuration must have `admin`).
    pub fn admin(&self) -> SocketAddr {
        self.handle
            .admin
            .expect("configuration has an admin listener")
    }

    /// The temporary directory holding the configuration.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Rewrites the configuration file (for reload tests).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn rewrite(&self, yaml: &str) -> Result<()> {
        Ok(std::fs::write(&self.config_path, yaml)?)
    }
}

/// A response read completely.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// Protocol version of the response.
    pub version: Version,
}

impl Reply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (the echo backends answer JSON).
    ///
    /// # Errors
    /// Not JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| format!("not JSON: {}", self.text()))
    }
}

/// How a client talks to the gateway.
#[derive(Debug, Clone)]
pub enum Client {
    /// Plain HTTP/1.1.
    Http1,
    /// HTTP/2 over cleartext, prior knowledge.
    H2c,
    /// TLS, with ALPN offering `alpn`; the server certificate is verified
    /// against `config`'s roots for `server_name`.
    Tls {
        /// Client configuration (roots, ALPN).
        config: Arc<rustls::ClientConfig>,
        /// Name to verify.
        server_name: String,
    },
}

/// Sends one request on a fresh connection and reads the whole response.
/// For HTTP/1.1 set a `Host` header; for HTTP/2 the URI's authority (or
/// `Host`) becomes `:authority`.
///
/// # Errors
/// Connection, TLS or protocol failures, or no answer within [`TIMEOUT`].
pub async fn send(addr: SocketAddr, client: &Client, req: Request<Full<Bytes>>) -> Result<Reply> {
    tokio::time::timeout(TIMEOUT, send_inner(addr, client, req))
        .await
        .context("no answer within the timeout")?
}

async fn send_inner(
    addr: SocketAddr,
    client: &Client,
    mut req: Request<Full<Bytes>>,
) -> Result<Reply> {
    let tcp = TcpStream::connect(addr).await?;
    match client {
        Client::Http1 => exchange(TokioIo::new(tcp), false, req).await,
        Client::H2c => {
            absolute(&mut req, "http");
            exchange(TokioIo::new(tcp), true, req).await
        }
        Client::Tls {
            config,
            server_name,
        } => {
            let name = rustls::pki_types::ServerName::try_from(server_name.clone())?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await?;
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
            if h2 {
                absolute(&mut req, "https");
            }
            exchange(TokioIo::new(tls), h2, req).await
        }
    }
}

/// HTTP/2 wants scheme and authority in the URI; take them from `Host`.
fn absolute(req: &mut Request<Full<Bytes>>, scheme: &str) {
    if req.uri().authority().is_some() {
        return;
    }
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    if let Ok(uri) = format!("{scheme}://{host}{pq}").parse() {
        *req.uri_mut() = uri;
    }
    req.headers_mut().remove(http::header::HOST);
}

async fn exchange<T>(io: T, h2: bool, req: Request<Full<Bytes>>) -> Result<Reply>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (parts, body) = crate::serve::exchange(io, h2, req).await?.into_parts();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
        version: parts.version,
    })
}

/// GET `path` over HTTP/1.1 with this `Host` and extra headers.
///
/// # Errors
/// See [`send`].
pub async fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Reply> {
    let mut builder = Request::get(path).header("host", host);
    for (n, v) in headers {
        builder = builder.header(*n, *v);
    }
    send(addr, &Client::Http1, builder.body(Full::new(Bytes::new()))?).await
}

/// The value of one series on the gateway's `/metrics` (the configuration
/// must have `admin`), named in full with its labels:
/// `wasmgate_upstream_timeouts_total{upstream="backend"}`.
///
/// # Errors
/// The admin endpoint did not answer, or has no such series.
pub async fn metric(gw: &TestGateway, series: &str) -> Result<u64> {
    let metrics = get(gw.admin(), "admin", "/metrics", &[]).await?.text();
    let line = metrics
        .lines()
        .find(|l| {
            l.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with(' '))
        })
        .ok_or_else(|| anyhow!("no {series} in:\n{metrics}"))?;
    Ok(line.rsplit(' ').next().unwrap_or("").parse()?)
}

/// Writes `bytes` on a new connection and reads until the server closes it
/// or [`TIMEOUT`] passes; returns what came back.
///
/// # Errors
/// Connect or I/O failure.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> Result<String> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(bytes).await?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, tcp.read_to_end(&mut out)).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Path of the built `wasmgate` binary, building it if needed (cargo does
/// not build other packages' binaries for integration tests). Built once
/// per test process; `--workspace` keeps the features the same as the
/// test build's, so nothing else is rebuilt.
///
/// # Errors
/// The build failed.
pub fn binary() -> Result<PathBuf> {
    static BUILT: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.as_ref() {
        return Ok(path.clone());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--quiet", "--workspace", "--bin", "wasmgate"])
        .status()?;
    anyhow::ensure!(status.success(), "building the wasmgate binary failed");
    let target =
        std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root.join("target"), PathBuf::from);
    let path = target.join("debug").join("wasmgate");
    *built = Some(path.clone());
    Ok(path)
}

/// The `wasmgate` binary running as a child process; killed on drop. Its
/// stderr (the logs) is collected line by line.
#[derive(Debug)]
pub struct Process {
    child: std::process::Child,
    lines: Log<String>,
    /// First listener address, read from the start-up log line.
    pub addr: SocketAddr,
    /// Admin address, if the configuration has one.
    pub admin: Option<SocketAddr>,
}

impl Process {
    /// Starts `wasmgate run --config <path>` with these extra environment
    /// variables and waits (bounded) until it logs that it serves.
    ///
    /// # Errors
    /// It did not start serving within [`TIMEOUT`] (its logs are in the error).
    pub fn run(config: &Path, env: &[(&str, &str)]) -> Result<Process> {
        let mut cmd = std::process::Command::new(binary()?);
        cmd.arg("run").arg("--config").arg(config);
        Self::spawn(cmd, env)
    }

    /// Starts `wasmgate` with no arguments (the embedded demo) on free ports.
    ///
    /// # Errors
    /// As [`Process::run`].
    pub fn demo(env: &[(&str, &str)]) -> Result<Process> {
        let mut cmd = std::process::Command::new(binary()?);
        cmd.env("WASMGATE_DEMO_ADDR", "127.0.0.1:0")
            .env("WASMGATE_DEMO_ADMIN", "127.0.0.1:0");
        Self::spawn(cmd, env)
    }

    fn spawn(mut cmd: std::process::Command, env: &[(&str, &str)]) -> Result<Process> {
        cmd.env("NO_COLOR", "1").env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn()?;
        let stderr = child.stderr.take().context("stderr")?;
        let lines = capture_lines(stderr);
        let mut process = Process {
            child,
            lines,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: None,
        };
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(line) = process
                .logs()
                .into_iter()
                .find(|l| l.contains("wasmgate serving"))
            {
                let addrs = loopback_addresses(&line);
                process.addr = *addrs
                    .first()
                    .context("no listener address in the start-up line")?;
                if addrs.len() > 1 {
                    process.admin = addrs.last().copied();
                }
                return Ok(process);
            }
            if std::time::Instant::now() > deadline || process.child.try_wait()?.is_some() {
                anyhow::bail!("wasmgate did not start:\n{}", process.logs().join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Log lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.lines.snapshot()
    }

    /// Sends a signal (`HUP`, `TERM`) with `kill`.
    ///
    /// # Errors
    /// `kill` failed.
    pub fn signal(&self, name: &str) -> Result<()> {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill -{name} failed");
        Ok(())
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    ///
    /// # Errors
    /// Still running after [`TIMEOUT`].
    pub fn wait(&mut self) -> Result<Option<i32>> {
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "wasmgate still running after {TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) until a log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str) -> Option<String> {
        let deadline = std::time::Instant::now() + TIMEOUT;
        while std::time::Instant::now() < deadline {
            if let Some(line) = self.logs().into_iter().find(|l| l.contains(needle)) {
                return Some(line);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `wasmgate check --config <path>` with these extra environment
/// variables; returns the exit code and stdout + stderr.
///
/// # Errors
/// The binary could not be built or run.
pub fn check(config: &Path, env: &[(&str, &str)]) -> Result<(i32, String)> {
    let mut cmd = std::process::Command::new(binary()?);
    cmd.arg("check")
        .arg("--config")
        .arg(config)
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.code().unwrap_or(-1), text))
}
