//! `dns_refresh`: hostname endpoints re-resolved every interval, each
//! address an endpoint of its own (TLS still names the hostname). An
//! address that stays keeps its endpoint (pools, health); one that goes
//! gets no new requests. When a lookup fails or finds nothing, the
//! hostname keeps the addresses it had.

use std::{
    net::IpAddr,
    sync::{Arc, Weak, atomic::Ordering},
    time::Duration,
};

use tokio::sync::watch;

use super::{Endpoint, Endpoints, NEXT_ID, Upstream, address};

/// Resolves now, then every `every`, until `stop` is dropped.
pub(super) async fn refresh_loop(
    upstream: Weak<Upstream>,
    every: Duration,
    mut stop: watch::Receiver<()>,
) {
    loop {
        let Some(upstream) = upstream.upgrade() else {
            return;
        };
        refresh(&upstream).await;
        drop(upstream);
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One refresh of every hostname endpoint.
async fn refresh(upstream: &Arc<Upstream>) {
    let Endpoints::Balanced(set) = &upstream.endpoints else {
        return;
    };
    let current = set.current();
    let mut next: Vec<Arc<Endpoint>> = Vec::new();
    for configured in set.configured() {
        if configured.host.parse::<IpAddr>().is_ok() {
            next.push(configured.clone());
            continue;
        }
        let hostname = configured.host.as_str();
        let found = match tokio::net::lookup_host((hostname, configured.port)).await {
            Ok(found) => {
                let mut ips: Vec<IpAddr> = found.map(|a| a.ip()).collect();
                ips.sort();
                ips.dedup();
                ips
            }
            Err(e) => {
                tracing::warn!(upstream = %upstream.name, hostname, error = %e, "DNS refresh failed; keeping the addresses");
                Vec::new()
            }
        };
        if found.is_empty() {
            // Keep what this hostname had (its addresses, or itself).
            let kept = current
                .iter()
                .filter(|e| e.hostname.as_deref() == Some(hostname) || e.id == configured.id);
            next.extend(kept.cloned());
            continue;
        }
        for ip in found {
            let ip = ip.to_string();
            let address = address(&ip, configured.port);
            if next.iter().any(|e| e.address == address) {
                continue;
            }
            let same = current
                .iter()
                .find(|e| e.address == address && e.hostname.as_deref() == Some(hostname));
            next.push(match same {
                Some(same) => same.clone(),
                None => Arc::new(Endpoint {
                    id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                    state: set.endpoint_stats(&address),
                    address,
                    hostname: Some(hostname.to_string()),
                    host: ip,
                    ..Endpoint::clone(configured)
                }),
            });
        }
    }
    let unchanged =
        next.len() == current.len() && next.iter().zip(current.iter()).all(|(a, b)| a.id == b.id);
    if !unchanged {
        let addresses: Vec<&str> = next.iter().map(|e| e.address.as_str()).collect();
        tracing::info!(upstream = %upstream.name, ?addresses, "DNS refresh: endpoints changed");
        set.replace(next, upstream);
    }
}
