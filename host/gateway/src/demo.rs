//! The demo `wasmgate` serves when started without arguments: one route
//! whose `secret_header.wasm` filter (embedded in the binary) injects
//! `Authorization: Bearer <secret>` in front of a built-in echo backend.
//!
//! The secret comes from `WASMGATE_DEMO_SECRET` (default: a harmless demo
//! value) and is never printed: the echo backend shows the header's value
//! masked, and says whether it matches the configured secret.
//!
//! `WASMGATE_DEMO_ADDR` and `WASMGATE_DEMO_ADMIN` move the listener (default
//! 127.0.0.1:8080) and the admin endpoint (default 127.0.0.1:9901).

use std::{convert::Infallible, net::SocketAddr, path::PathBuf};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;

use crate::config::Config;

/// The filter, built from `filter/` by build.rs.
pub static SECRET_HEADER_WASM: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/secret_header.wasm"));

/// Environment variable holding the demo secret.
pub const SECRET_VAR: &str = "WASMGATE_DEMO_SECRET";

/// Used when [`SECRET_VAR`] is not set.
pub const DEFAULT_SECRET: &str = "demo-secret-not-for-production";

/// The demo's listener unless `WASMGATE_DEMO_ADDR` says otherwise.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8080";

/// The demo's admin endpoint unless `WASMGATE_DEMO_ADMIN` says otherwise.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9901";

/// The demo secret in effect.
pub fn secret() -> String {
    std::env::var(SECRET_VAR).unwrap_or_else(|_| DEFAULT_SECRET.to_string())
}

/// Writes the embedded filter to a private temporary directory and returns
/// a configuration that routes everything through it to `backend`.
///
/// # Errors
/// The filter was not embedded (no wasm32-wasip1 target at build time), or
/// the temporary file could not be written.
pub fn config(backend: SocketAddr, listen: &str, admin: &str) -> Result<Config, String> {
    if SECRET_HEADER_WASM.is_empty() {
        return Err("this wasmgate was built without the demo filter: \
                    run `rustup target add wasm32-wasip1` and rebuild"
            .into());
    }
    let dir = std::env::temp_dir().join(format!("wasmgate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let wasm: PathBuf = dir.join("secret_header.wasm");
    std::fs::write(&wasm, SECRET_HEADER_WASM).map_err(|e| format!("{}: {e}", wasm.display()))?;
    let yaml = format!(
        r#"
listeners:
  - address: {listen}
admin:
  address: {admin}
upstreams:
  echo:
    url: http://{backend}
    connect_timeout: 1s
    timeout: 10s
routes:
  - name: demo
    match: {{ path_prefix: / }}
    upstream: echo
    filters:
      - wasm: "{wasm}"
        config: {{ set: {{ headers: ["Authorization:Bearer {{vault://env/{SECRET_VAR}}}"] }} }}
        env: [{SECRET_VAR}]
"#,
        wasm = wasm.display()
    );
    let mut config = Config::parse(&yaml, "<demo>").map_err(|e| e.to_string())?;
    // The secret's default applies only to the demo; a real configuration
    // reads exactly the host's environment.
    config.routes[0].filters[0]
        .env_defaults
        .insert(SECRET_VAR.into(), secret());
    config.validate().map_err(|e| e.to_string())
}

/// Starts the echo backend on 127.0.0.1 (a port picked by the system) on
/// the current tokio runtime.
///
/// # Errors
/// The socket could not be bound.
pub async fn start_echo() -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req| async move { Ok::<_, Infallible>(echo(req).await) });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// Answers with what arrived, the `Authorization` value masked.
async fn echo(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let expected = format!("Bearer {}", secret());
    let mut text = format!("echo backend received: {} {}\n", req.method(), req.uri());
    for (name, value) in req.headers() {
        let shown = if name == http::header::AUTHORIZATION {
            let ok = value.as_bytes() == expected.as_bytes();
            format!(
                "Bearer ******** ({})",
                if ok {
                    "matches the demo secret"
                } else {
                    "does NOT match the demo secret"
                }
            )
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        text.push_str(&format!("  {name}: {shown}\n"));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    text.push_str(&format!("  ({} body bytes)\n", body.len()));
    Response::new(Full::new(Bytes::from(text)))
}
