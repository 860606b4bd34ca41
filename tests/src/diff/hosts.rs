//! Both hosts for one [`Setup`]: a real Envoy rendered from `envoy-example/envoy.yaml` and the
//! `wasmgate` binary, each with the same module, the same configuration bytes, the same
//! environment, and the same three upstreams under the same names:
//!
//! | name | Envoy | wasmgate |
//! |---|---|---|
//! | `backend` (route target) | cluster `backend` | upstream `backend` |
//! | `auth` (http call target) | cluster `auth` | upstream `auth` |
//! | `dead` (a closed port) | cluster `dead` | upstream `dead` |
//!
//! The plugin is named as wasmgate names it (`diff/0`: route `diff`, filter 0), its root id is
//! `secret_header` and its VM id empty on both. Envoy runs one worker and wasmgate one worker, so
//! each host has exactly one filter instance. Both listen on ports the kernel picks, both are
//! killed on drop, and every wait is bounded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::backend::{self, Backend};
use crate::envoy::{self, Envoy, Example};
use crate::record::{Log, capture_lines, loopback_addresses, tail};

use super::client::{self, Exchange};
use super::observe::{self, Normaliser, Observation};
use super::{Refusal, Scenario, Setup, auth};

/// How long wasmgate may take to start serving or to refuse.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The name both hosts give the plugin.
pub const PLUGIN_NAME: &str = "diff/0";

/// Which proxy a request goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// Envoy 1.40.
    Envoy,
    /// wasmgate.
    Wasmgate,
}

/// Envoy and wasmgate running the same setup, and what they proxy to.
#[derive(Debug)]
pub struct Hosts {
    backend: Backend,
    auth: auth::Auth,
    envoy: Envoy,
    wasmgate: Wasmgate,
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

fn env_of(token: Option<&str>) -> Vec<(&'static str, &str)> {
    token
        .map(|t| vec![("BACKEND_TOKEN", t)])
        .unwrap_or_default()
}

/// What both hosts' configurations are rendered from.
struct Plan<'a> {
    wasm: &'a Path,
    config: &'a str,
    fail_open: bool,
    backend: SocketAddr,
    auth: SocketAddr,
    dead: SocketAddr,
}

impl Plan<'_> {
    /// The Envoy example rendered for this plan.
    fn envoy_yaml(&self) -> Result<String> {
        let policy = if self.fail_open {
            "FAIL_OPEN"
        } else {
            "FAIL_CLOSED"
        };
        let example = Example::load()?
            .free_ports()?
            .backend_port(self.backend.port())?
            .wasm(self.wasm)?
            .filter_config(self.config)?
            .plugin_name(PLUGIN_NAME)?
            .vm_id("")?
            .failure_policy(policy)?
            .add_cluster("auth", self.auth)?
            .add_cluster("dead", self.dead)?;
        Ok(example.yaml().to_string())
    }

    /// The equivalent wasmgate configuration.
    fn wasmgate_yaml(&self) -> Result<String> {
        let wasm = self
            .wasm
            .canonicalize()
            .with_context(|| format!("wasm module {}", self.wasm.display()))?;
        let quote = |s: &str| serde_json::Value::from(s).to_string();
        Ok(format!(
            "workers: 1\n\
             listeners: [{{ address: \"127.0.0.1:0\" }}]\n\
             upstreams:\n\
             \x20 backend: {{ url: \"http://{backend}\" }}\n\
             \x20 auth: {{ url: \"http://{auth}\" }}\n\
             \x20 dead: {{ url: \"http://{dead}\", connect_timeout: 2s }}\n\
             routes:\n\
             \x20 - name: diff\n\
             \x20   match: {{}}\n\
             \x20   upstream: backend\n\
             \x20   filters:\n\
             \x20     - wasm: {wasm}\n\
             \x20       config: {config}\n\
             \x20       root_id: secret_header\n\
             \x20       env: [BACKEND_TOKEN]\n\
             \x20       on_error: {on_error}\n",
            backend = self.backend,
            auth = self.auth,
            dead = self.dead,
            wasm = quote(&wasm.display().to_string()),
            config = quote(self.config),
            on_error = if self.fail_open { "allow" } else { "deny" },
        ))
    }
}

impl Hosts {
    /// Starts the backends, Envoy and wasmgate for `setup`.
    ///
    /// # Errors
    /// When a backend cannot bind or a host does not come up (with its log).
    pub async fn start(setup: &Setup) -> Result<Hosts> {
        let backend = backend::start().await?;
        let auth = auth::start().await?;
        let dead = closed_port()?;
        let wasm = crate::wasm(setup.wasm);
        let env = env_of(setup.token);
        let plan = Plan {
            wasm: &wasm,
            config: setup.config,
            fail_open: setup.fail_open,
            backend: backend.addr(),
            auth: auth.addr(),
            dead,
        };
        let envoy = Envoy::start(&plan.envoy_yaml()?, &env)
            .await
            .with_context(|| format!("{}: Envoy", setup.name))?;
        let yaml = plan.wasmgate_yaml()?;
        let wasmgate = Wasmgate::start(&yaml, &env)
            .await
            .with_context(|| format!("{}: wasmgate", setup.name))?;
        Ok(Hosts {
            backend,
            auth,
            envoy,
            wasmgate,
        })
    }

    /// Sends the scenario's request through `host` and observes what the client, the backend
    /// and the auth service got.
    pub async fn observe(&self, host: Host, scenario: &Scenario) -> Observation {
        let backend_before = self.backend.received().len();
        let auth_before = self.auth.received().len();
        let listener = match host {
            Host::Envoy => self.envoy.listener(),
            Host::Wasmgate => self.wasmgate.addr,
        };
        let exchange: Exchange = client::send(listener, &scenario.request).await;
        // The backends record a request before answering it; a request still on its way
        // (e.g. after a reset) gets a short grace period.
        tokio::time::sleep(Duration::from_millis(if exchange.response.is_ok() {
            0
        } else {
            100
        }))
        .await;
        let backend = self.backend.received().split_off(backend_before);
        let auth = self.auth.received().split_off(auth_before);
        // The echo JSON in the client's body repeats what the backend fields compare; of its
        // headers keep those chosen for the client.
        let names = scenario.client_headers;
        let mut normaliser = Normaliser::default()
            .address(listener, "listener")
            .address(self.backend.addr(), "backend")
            .address(self.auth.addr(), "auth")
            .chosen(names);
        if let Some(local) = exchange.local {
            normaliser = normaliser.address(local, "client");
        }
        observe::observe(scenario, &exchange, &backend, &auth, &normaliser)
    }

    /// wasmgate's log so far (for failure messages).
    pub fn wasmgate_log(&self) -> String {
        self.wasmgate.log()
    }

    /// Envoy's log so far (for failure messages).
    pub fn envoy_log(&self) -> String {
        self.envoy.log()
    }
}

/// Both hosts must refuse `refusal`'s configuration: Envoy exits, wasmgate's `run` exits
/// non-zero, each logging the filter's error; the secret appears in neither output. Returns
/// one line per expectation that failed.
///
/// # Errors
/// When a host could not be run at all.
pub async fn check_refusal(refusal: &Refusal, token: &str) -> Result<Vec<String>> {
    let backend = backend::start().await?;
    let unused = closed_port()?;
    let wasm = crate::wasm(refusal.wasm);
    let env = env_of(Some(token));
    let mut failures = Vec::new();

    let plan = Plan {
        wasm: &wasm,
        config: refusal.config,
        fail_open: false,
        backend: backend.addr(),
        auth: unused,
        dead: unused,
    };
    let (status, log) = envoy::expect_refused(&plan.envoy_yaml()?, &env).await?;
    let (code, output) = Wasmgate::expect_refused(&plan.wasmgate_yaml()?, &env).await?;
    for (host, refused, text) in [
        ("envoy", !status.success(), log),
        ("wasmgate", code != Some(0), output),
    ] {
        if !refused {
            failures.push(format!("{}: {host} exited successfully", refusal.name));
        }
        if !text.contains(refusal.error) {
            failures.push(format!(
                "{}: {host} did not log {:?}:\n{}",
                refusal.name,
                refusal.error,
                tail(&text)
            ));
        }
        if text.contains(token) || refusal.secret.is_some_and(|s| text.contains(s)) {
            failures.push(format!("{}: {host} output leaks the secret", refusal.name));
        }
    }
    if !backend.received().is_empty() {
        failures.push(format!("{}: a request reached the backend", refusal.name));
    }
    Ok(failures)
}

/// The `wasmgate` binary, built once per test process.
fn binary() -> Result<PathBuf> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| crate::gateway::binary().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

/// `wasmgate run` as a child process; killed on drop. Its stderr is collected.
#[derive(Debug)]
struct Wasmgate {
    child: Child,
    lines: Log<String>,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Wasmgate {
    async fn spawn(yaml: &str, env: &[(&str, &str)]) -> Result<Wasmgate> {
        let binary = tokio::task::spawn_blocking(binary).await??;
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("wasmgate.yaml");
        std::fs::write(&config, yaml)?;
        let mut cmd = Command::new(binary);
        cmd.arg("run").arg("--config").arg(&config);
        cmd.env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .env_remove("BACKEND_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("starting wasmgate")?;
        let stderr = child.stderr.take().context("wasmgate's stderr")?;
        let lines = capture_lines(stderr);
        Ok(Wasmgate {
            child,
            lines,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            _dir: dir,
        })
    }

    /// Starts wasmgate and waits (bounded) until it logs that it serves.
    async fn start(yaml: &str, env: &[(&str, &str)]) -> Result<Wasmgate> {
        let mut gw = Wasmgate::spawn(yaml, env).await?;
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(line) = gw.log().lines().find(|l| l.contains("wasmgate serving")) {
                gw.addr = loopback_addresses(line)
                    .first()
                    .copied()
                    .with_context(|| format!("no listener address in {line:?}"))?;
                return Ok(gw);
            }
            if gw.child.try_wait()?.is_some() || tokio::time::Instant::now() >= deadline {
                tokio::time::sleep(Duration::from_millis(50)).await; // let the reader catch up
                bail!("wasmgate did not start:\n{}", tail(&gw.log()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs wasmgate on a configuration it must refuse; returns its exit code and output.
    async fn expect_refused(yaml: &str, env: &[(&str, &str)]) -> Result<(Option<i32>, String)> {
        let mut gw = Wasmgate::spawn(yaml, env).await?;
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = gw.child.try_wait()? {
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Ok((status.code(), gw.log()));
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "wasmgate accepted a configuration it should refuse:\n{}",
                    tail(&gw.log())
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log(&self) -> String {
        self.lines.snapshot().join("\n")
    }
}

impl Drop for Wasmgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
