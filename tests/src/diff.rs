//! The differential suite: the same `.wasm`, the same filter configuration and the same
//! backends, once behind a real Envoy and once behind wasmgate, and what the client and the
//! backends receive compared field by field.
//!
//! # Layout
//! - [`scenarios`]: the data: every filter configuration ([`Setup`]) with the requests sent
//!   through it ([`Scenario`]), the configurations both hosts must refuse ([`Refusal`]), and the
//!   differences ([`Deliberate`]) each scenario expects: deliberate ones (explained in
//!   `envoy-example/README.md`) and reported ones not fixed yet ([`Kind`]).
//! - [`observe`]: one request's outcome flattened into named fields, normalised (addresses,
//!   echoed headers nobody chose), and the comparison of two of them.
//! - [`client`]: sends a [`Request`] over HTTP/1.1 or h2c and records the client's own address.
//! - [`auth`]: the service the `http_call` filter calls (records the calls, allows or denies).
//! - [`hosts`]: starts Envoy and wasmgate for one [`Setup`] on free ports, pointed at the same
//!   backends, and checks that both refuse a [`Refusal`].
//!
//! A [`Setup`] costs one Envoy and one wasmgate; all its scenarios run through both, in order,
//! so filters with state (shared data, a trapped VM) see the same history on both hosts.

pub mod auth;
pub mod client;
pub mod hosts;
pub mod observe;
pub mod scenarios;

use std::fmt::Write as _;

use anyhow::Result;
use bytes::Bytes;

pub use observe::Observation;

/// One filter configuration: a module, its configuration text, and the requests to send.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Name of the setup (the test that runs it has the same name).
    pub name: &'static str,
    /// The fixture, as in `wasmgate_tests::wasm(name)`.
    pub wasm: &'static str,
    /// The plugin configuration, one line; both hosts hand exactly these bytes to
    /// `on_configure`.
    pub config: &'static str,
    /// A secret put in both hosts' environment as `BACKEND_TOKEN` (and passed to the module);
    /// neither host's log may contain it.
    pub token: Option<&'static str>,
    /// Fail open when the filter fails (Envoy `FAIL_OPEN`, wasmgate `on_error: allow`)
    /// instead of closed (`FAIL_CLOSED`, `deny`).
    pub fail_open: bool,
    /// Requests, sent in this order through each host.
    pub scenarios: Vec<Scenario>,
}

/// One request and what to compare about its outcome.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Short name, shown in failures.
    pub name: &'static str,
    /// What the client sends.
    pub request: Request,
    /// Response headers compared (every value, in order).
    pub client_headers: &'static [&'static str],
    /// Headers compared on each request the backend (and the auth service) received; the
    /// method, path and body are always compared.
    pub backend_headers: &'static [&'static str],
    /// Fields whose values differ on purpose, with both expected values.
    pub deliberate: Vec<Deliberate>,
}

/// A request as the client sends it.
#[derive(Debug, Clone)]
pub struct Request {
    /// e.g. `GET`.
    pub method: &'static str,
    /// Path and query.
    pub path: &'static str,
    /// Headers in order (repeats allowed); `Host` is always `example.test`.
    pub headers: Vec<(&'static str, &'static str)>,
    /// The body (empty: none).
    pub body: Bytes,
    /// HTTP/2 without TLS (prior knowledge) instead of HTTP/1.1.
    pub h2: bool,
}

impl Request {
    /// `GET path` over HTTP/1.1 with these headers.
    pub fn get(path: &'static str, headers: &[(&'static str, &'static str)]) -> Request {
        Request {
            method: "GET",
            path,
            headers: headers.to_vec(),
            body: Bytes::new(),
            h2: false,
        }
    }

    /// `POST path` over HTTP/1.1 with this body.
    pub fn post(path: &'static str, body: &'static str) -> Request {
        Request {
            method: "POST",
            path,
            headers: Vec::new(),
            body: Bytes::from_static(body.as_bytes()),
            h2: false,
        }
    }

    /// `POST path` over HTTP/1.1 with `size` bytes of a repeating pattern.
    pub fn post_large(path: &'static str, size: usize) -> Request {
        let body: Vec<u8> = b"0123456789abcdef"
            .iter()
            .copied()
            .cycle()
            .take(size)
            .collect();
        Request {
            body: Bytes::from(body),
            ..Request::post(path, "")
        }
    }

    /// The same over HTTP/2 (h2c).
    pub fn h2(mut self) -> Request {
        self.h2 = true;
        self
    }
}

/// Why a difference is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// wasmgate differs on purpose; the README's "Deliberate differences from Envoy" explains
    /// the reason.
    Deliberate,
    /// A difference reported to the owner of the gateway or runtime and not fixed yet; when
    /// it is fixed, the scenario fails until the entry is removed.
    Reported,
}

/// A field where Envoy and wasmgate are expected to differ, with both values.
#[derive(Debug, Clone)]
pub struct Deliberate {
    /// Deliberate, or reported and not fixed yet.
    pub kind: Kind,
    /// The field, as named by [`observe`] (e.g. `status`, `backend.header.x-seen-pairs`).
    pub field: &'static str,
    /// What Envoy gives.
    pub envoy: &'static str,
    /// What wasmgate gives.
    pub wasmgate: &'static str,
    /// Why (one line, matching a README entry).
    pub reason: &'static str,
}

/// A filter configuration both hosts must refuse to start with.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Short name, shown in failures.
    pub name: &'static str,
    /// The fixture.
    pub wasm: &'static str,
    /// The configuration text.
    pub config: &'static str,
    /// Text the filter's error line must hold in both hosts' logs.
    pub error: &'static str,
    /// Text that must appear in neither host's output (a secret in the configuration).
    pub secret: Option<&'static str>,
}

/// Runs every scenario of `setup` through Envoy and wasmgate and compares the outcomes;
/// returns one line per mismatch (empty: they agree wherever they should).
///
/// # Errors
/// A host or a backend could not be started.
pub async fn run_setup(setup: &Setup) -> Result<Vec<String>> {
    let hosts = hosts::Hosts::start(setup).await?;
    let mut envoy = Vec::new();
    let mut wasmgate = Vec::new();
    for scenario in &setup.scenarios {
        envoy.push(hosts.observe(hosts::Host::Envoy, scenario).await);
        wasmgate.push(hosts.observe(hosts::Host::Wasmgate, scenario).await);
    }
    let mut failures = Vec::new();
    if let Some(token) = setup.token {
        for (host, log) in [
            ("envoy", hosts.envoy_log()),
            ("wasmgate", hosts.wasmgate_log()),
        ] {
            if log.contains(token) {
                failures.push(format!("{}: {host}'s log contains the secret", setup.name));
            }
        }
    }
    for ((scenario, e), w) in setup.scenarios.iter().zip(&envoy).zip(&wasmgate) {
        for line in observe::compare(e, w, &scenario.deliberate) {
            failures.push(format!("{}/{}: {line}", setup.name, scenario.name));
        }
    }
    Ok(failures)
}

/// Turns mismatch lines into a test failure message (or Ok when there are none).
///
/// # Errors
/// When `failures` is not empty.
pub fn verdict(failures: &[String]) -> Result<()> {
    if failures.is_empty() {
        return Ok(());
    }
    let mut message = format!(
        "{} difference(s) between Envoy and wasmgate:\n",
        failures.len()
    );
    for line in failures {
        let _ = writeln!(message, "  {line}");
    }
    anyhow::bail!(message)
}
