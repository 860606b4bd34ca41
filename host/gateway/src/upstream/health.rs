//! An endpoint's health, shared by every worker: the verdict of active
//! health checks (an HTTP `GET` on a background task) and passive outlier
//! ejection (consecutive failures of real requests). An endpoint is
//! *available* when it is healthy and not ejected; when none of an
//! upstream's endpoints is, they are all tried anyway (panic mode, as
//! Envoy), rather than answering 503 to everyone.
//!
//! Everything is an atomic: workers read it per request without a lock.

use std::{
    sync::{
        Arc, OnceLock, Weak,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use http::Request;
use tokio::sync::watch;

use super::{Endpoint, Sender, Slot, Upstream};
use crate::config::HealthCheckConfig;

/// Health state of one endpoint (see the module docs). New endpoints start
/// healthy and not ejected.
#[derive(Debug, Default)]
pub struct Health {
    /// Set once `unhealthy` checks failed in a row; cleared after `healthy`
    /// successes in a row.
    unhealthy: AtomicBool,
    /// Checks in a row that contradict the current verdict.
    streak: AtomicU32,
    /// Failures of real requests in a row (passive).
    consecutive_failures: AtomicU32,
    /// Ejected until this time ([`Health::now`]); 0: not ejected.
    ejected_until: AtomicU64,
}

impl Health {
    /// Milliseconds on a clock that starts with the process (never 0).
    pub fn now() -> u64 {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        let epoch = *EPOCH.get_or_init(Instant::now);
        u64::try_from(epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    /// Passing its active health checks (always, without checks).
    pub fn is_healthy(&self) -> bool {
        !self.unhealthy.load(Ordering::Relaxed)
    }

    /// Ejected for consecutive failures at `now`.
    pub fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    /// May get requests outside panic mode.
    pub fn is_available(&self, now: u64) -> bool {
        self.is_healthy() && !self.is_ejected(now)
    }

    /// Records one active check; returns the new verdict when it changed.
    pub(super) fn record_check(&self, passed: bool, healthy: u32, unhealthy: u32) -> Option<bool> {
        if passed {
            // A host that answers its checks comes back from an ejection
            // at once, as in Envoy.
            self.ejected_until.store(0, Ordering::Relaxed);
        }
        let was_healthy = self.is_healthy();
        if passed == was_healthy {
            self.streak.store(0, Ordering::Relaxed);
            return None;
        }
        let streak = self.streak.fetch_add(1, Ordering::Relaxed) + 1;
        let needed = if passed { healthy } else { unhealthy };
        if streak < needed {
            return None;
        }
        self.streak.store(0, Ordering::Relaxed);
        self.unhealthy.store(!passed, Ordering::Relaxed);
        Some(passed)
    }

    /// A real request got a good answer.
    pub(super) fn record_success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// A real request failed; true when that makes `threshold` in a row.
    pub(super) fn record_failure(&self, threshold: u32) -> bool {
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1 >= threshold
    }

    /// Ejects until `until` (and starts counting failures afresh); false
    /// when it already was.
    pub(super) fn eject(&self, now: u64, until: u64) -> bool {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        let current = self.ejected_until.load(Ordering::Relaxed);
        current <= now
            && self
                .ejected_until
                .compare_exchange(current, until, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// Checks `endpoint` every `check.interval` until `stop` is dropped (the
/// upstream went away) or the endpoint leaves the upstream (DNS refresh).
pub(super) async fn check_loop(
    endpoint: Arc<Endpoint>,
    upstream: Weak<Upstream>,
    check: HealthCheckConfig,
    mut stop: watch::Receiver<()>,
) {
    loop {
        let passed = check_once(&endpoint, &check).await;
        let (healthy, unhealthy) = (check.healthy, check.unhealthy);
        if let Some(verdict) = endpoint
            .state
            .health
            .record_check(passed, healthy, unhealthy)
        {
            let verdict = if verdict { "healthy" } else { "unhealthy" };
            tracing::warn!(upstream = %endpoint.upstream, endpoint = %endpoint.address, "endpoint is {verdict}");
        }
        tokio::select! {
            () = tokio::time::sleep(check.interval.get()) => {}
            _ = stop.changed() => return,
        }
        let still_there = upstream
            .upgrade()
            .is_some_and(|u| u.serves_endpoint(endpoint.id));
        if !still_there {
            return;
        }
    }
}

/// One check: `GET path` on a connection of its own (TLS verified as for
/// requests), a 2xx within `timeout` passes.
async fn check_once(endpoint: &Arc<Endpoint>, check: &HealthCheckConfig) -> bool {
    let attempt = async {
        let sender = endpoint
            .connect_inner(Slot::detached())
            .await
            .map_err(|reason| tracing::debug!(endpoint = %endpoint.address, %reason, "health check: no connection"))
            .ok()?;
        let request = |uri: http::Uri| {
            Request::get(uri)
                .header(http::header::HOST, endpoint.authority.as_str())
                .header(http::header::USER_AGENT, "wasmgate-health-check")
                .body(crate::body::empty())
                .ok()
        };
        let response = match sender {
            Sender::H1(mut s) => {
                let uri = check.path.parse().ok()?;
                s.send.send_request(request(uri)?).await
            }
            Sender::H2(mut s) => {
                let uri = http::Uri::builder()
                    .scheme(endpoint.scheme.clone())
                    .authority(endpoint.authority.clone())
                    .path_and_query(check.path.as_str())
                    .build()
                    .ok()?;
                s.send_request(request(uri)?).await
            }
        };
        Some(response.ok()?.status().is_success())
    };
    tokio::time::timeout(check.timeout.get(), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// The runtime health checks and DNS refreshes run on: one thread for the
/// whole process, started on first use, so they survive reloads and keep
/// off the workers.
pub(super) fn spawn(task: impl Future<Output = ()> + Send + 'static) {
    static HANDLE: OnceLock<Option<tokio::runtime::Handle>> = OnceLock::new();
    let handle = HANDLE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| tracing::error!(error = %e, "no runtime for health checks"))
            .ok()?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("wasmgate-upstreams".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .map_err(|e| tracing::error!(error = %e, "no thread for health checks"))
            .ok()?;
        Some(handle)
    });
    if let Some(handle) = handle {
        handle.spawn(task);
    }
}

/// How long an ejection lasts, in [`Health::now`] milliseconds.
pub(super) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_need_streaks_both_ways() {
        let h = Health::default();
        assert!(h.is_healthy());
        assert_eq!(h.record_check(false, 2, 3), None);
        assert_eq!(h.record_check(false, 2, 3), None);
        // A success breaks the streak of failures.
        assert_eq!(h.record_check(true, 2, 3), None);
        assert_eq!(h.record_check(false, 2, 3), None);
        assert_eq!(h.record_check(false, 2, 3), None);
        assert_eq!(h.record_check(false, 2, 3), Some(false));
        assert!(!h.is_healthy());
        assert!(!h.is_available(Health::now()));
        assert_eq!(h.record_check(true, 2, 3), None);
        assert_eq!(h.record_check(true, 2, 3), Some(true));
        assert!(h.is_healthy());
    }

    #[test]
    fn consecutive_failures_eject_until_the_time_is_up() {
        let h = Health::default();
        assert!(!h.record_failure(3));
        assert!(!h.record_failure(3));
        h.record_success();
        assert!(!h.record_failure(3));
        assert!(!h.record_failure(3));
        assert!(h.record_failure(3));
        assert!(h.eject(100, 200));
        assert!(!h.eject(150, 300), "already ejected");
        assert!(h.is_ejected(199));
        assert!(!h.is_available(150));
        assert!(!h.is_ejected(200));
        // The count started afresh at the ejection.
        assert!(!h.record_failure(3));
    }

    #[test]
    fn a_passing_check_ends_an_ejection() {
        let h = Health::default();
        assert!(h.eject(1, u64::MAX));
        h.record_check(true, 2, 3);
        assert!(h.is_available(Health::now()));
    }
}
