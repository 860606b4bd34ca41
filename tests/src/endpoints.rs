//! Helpers for the tests of upstreams with several endpoints
//! (`gateway_endpoints.rs`, `gateway_endpoints_attacks.rs`): a gateway with
//! one route to upstream `svc`, the `endpoints` line for some backends, and a
//! GET that yields only the status.

use std::{net::SocketAddr, time::Duration};

use crate::gateway::{self, TestGateway, get};

/// Generous bound for anything that waits on the gateway's background work.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A gateway (admin endpoint, 2 workers) with one route to upstream `svc`,
/// given the upstream's YAML body (indented four spaces).
///
/// # Errors
/// The gateway refused the configuration.
pub fn start(upstream: &str) -> anyhow::Result<TestGateway> {
    gateway::start(&format!(
        r#"
admin: {{ address: "127.0.0.1:0" }}
listeners: [{{ address: "127.0.0.1:0" }}]
workers: 2
upstreams:
  svc:
{upstream}
routes:
  - {{ name: all, match: {{}}, upstream: svc }}
"#
    ))
}

/// `endpoints: [...]` for these backends (plain HTTP), indented for [`start`].
pub fn endpoints(addrs: &[SocketAddr]) -> String {
    let urls: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
    format!("    endpoints: [{}]", urls.join(", "))
}

/// GET `path` with host `svc.test`; the status (0 when the request failed altogether).
pub async fn status_of(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> u16 {
    match get(addr, "svc.test", path, headers).await {
        Ok(reply) => reply.status.as_u16(),
        Err(_) => 0,
    }
}
