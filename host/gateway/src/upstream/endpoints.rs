//! An upstream with several endpoints (or retries): for each try, an
//! endpoint chosen by the balancing policy among the available ones, then
//! passive health (outlier ejection) from the result, then a retry when the
//! policy allows it and it is safe (see `retry.rs`).
//!
//! The endpoint list sits behind an `ArcSwap` because DNS refresh replaces
//! it; a request loads it once and keeps that list for all its tries. An
//! endpoint that leaves the list gets no new requests; the requests in
//! flight on it finish (they hold it).

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use arc_swap::ArcSwap;
use http::{HeaderName, Request, Response};
use tokio::sync::watch;

use super::{
    Endpoint, EndpointStatus, Failed, Upstream,
    balance::{self, Candidate},
    dns,
    health::{self, Health},
    retry,
};
use crate::{
    body::Body,
    config::{Balance, HealthCheckConfig, OutlierConfig, UpstreamConfig},
    error::ProxyError,
    metrics::Stats,
};

/// The endpoints of an upstream and how requests are spread over them.
pub(super) struct Balanced {
    name: String,
    /// The endpoints now (DNS refresh replaces the list).
    list: ArcSwap<Vec<Arc<Endpoint>>>,
    /// As configured (hostnames unresolved): what DNS refresh starts from.
    configured: Vec<Arc<Endpoint>>,
    policy: Balance,
    hash_header: Option<HeaderName>,
    /// Turns with every request: round robin, and ties of the others.
    next: AtomicUsize,
    retry: Option<retry::Policy>,
    budget: retry::Budget,
    outlier: Option<OutlierConfig>,
    health_check: Option<HealthCheckConfig>,
    dns_refresh: Option<std::time::Duration>,
    /// Endpoint counters and health, by address (for DNS refresh).
    stats: Arc<Stats>,
    /// Dropped with the upstream: stops its background tasks.
    stop: watch::Sender<()>,
}

impl Balanced {
    pub(super) fn new(
        name: &str,
        conf: &UpstreamConfig,
        endpoints: Vec<Arc<Endpoint>>,
        stats: &Arc<Stats>,
    ) -> Self {
        Balanced {
            name: name.to_string(),
            list: ArcSwap::from_pointee(endpoints.clone()),
            configured: endpoints,
            policy: conf.balance,
            hash_header: conf
                .hash_header
                .as_deref()
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
            next: AtomicUsize::new(0),
            retry: conf.retries.as_ref().map(retry::Policy::new),
            budget: retry::Budget::default(),
            outlier: conf.outlier.clone(),
            health_check: conf.health_check.clone(),
            dns_refresh: conf.dns_refresh.map(|d| d.get()),
            stats: stats.clone(),
            stop: watch::channel(()).0,
        }
    }

    /// The endpoints now.
    pub(super) fn current(&self) -> Arc<Vec<Arc<Endpoint>>> {
        self.list.load_full()
    }

    /// Whether this endpoint is one of the current ones.
    pub(super) fn serves(&self, id: u64) -> bool {
        self.list.load().iter().any(|e| e.id == id)
    }

    /// Each endpoint's address and health, for `/config`.
    pub(super) fn status(&self) -> Vec<EndpointStatus> {
        let now = Health::now();
        self.list
            .load()
            .iter()
            .map(|e| EndpointStatus {
                address: e.address.clone(),
                hostname: e.hostname.clone(),
                healthy: e.state.health.is_healthy(),
                ejected: e.state.health.is_ejected(now),
                active: Some(e.state.active.load(Ordering::Relaxed)),
            })
            .collect()
    }

    /// Starts the health checks of the current endpoints and the DNS
    /// refresh, on the background runtime.
    pub(super) fn start_background(&self, upstream: &Arc<Upstream>) {
        for endpoint in self.list.load().iter() {
            self.start_checks(endpoint, upstream);
        }
        if let Some(every) = self.dns_refresh {
            let stop = self.stop.subscribe();
            health::spawn(dns::refresh_loop(Arc::downgrade(upstream), every, stop));
        }
    }

    /// Starts the health checks of one endpoint (when configured).
    pub(super) fn start_checks(&self, endpoint: &Arc<Endpoint>, upstream: &Arc<Upstream>) {
        if let Some(check) = &self.health_check {
            health::spawn(health::check_loop(
                endpoint.clone(),
                Arc::downgrade(upstream),
                check.clone(),
                self.stop.subscribe(),
            ));
        }
    }

    /// Sends a request, choosing the endpoint and retrying as configured.
    pub(super) async fn send(&self, mut req: Request<Body>) -> Result<Response<Body>, ProxyError> {
        let list = self.list.load_full();
        if list.is_empty() {
            return Err(ProxyError::UpstreamConnect {
                upstream: self.name.clone(),
                reason: "no endpoints".into(),
            });
        }
        let key = match (&self.hash_header, self.policy) {
            (Some(header), Balance::Hash) => req
                .headers()
                .get(header)
                .map(|v| balance::hash_bytes(v.as_bytes())),
            _ => None,
        };
        let bodiless = http_body::Body::is_end_stream(req.body());
        let method = req.method().clone();
        // A bodiless request can be rebuilt for a retry; one with a body
        // only comes back when it was never sent.
        let head = self
            .retry
            .as_ref()
            .filter(|_| bodiless)
            .map(|_| head_of(&req));
        let _in_flight = self.budget.request();
        let mut _retry_in_flight = None;
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut tried = 0u64;
        let mut retries = 0;
        loop {
            let now = Health::now();
            let i = self.choose(&list, start.wrapping_add(retries as usize), key, tried, now);
            let endpoint = &list[i];
            if i < 64 {
                tried |= 1 << i;
            }
            endpoint.state.requests.fetch_add(1, Ordering::Relaxed);
            if retries > 0 {
                endpoint.state.retries.fetch_add(1, Ordering::Relaxed);
            }
            let outcome = {
                let _active = Active::new(&endpoint.state.active);
                match self.retry.as_ref().and_then(|r| r.per_try_timeout) {
                    Some(limit) => tokio::time::timeout(limit, endpoint.send(req))
                        .await
                        .unwrap_or_else(|_| Err(endpoint.timed_out(limit))),
                    None => endpoint.send(req).await,
                }
            };
            // The request for the next try, and the answer if there is none.
            let policy = self.retry.as_ref().filter(|p| retries < p.attempts);
            let (next, otherwise) = match outcome {
                Ok(response) => {
                    let status = response.status();
                    self.record(&list, endpoint, !status.is_server_error(), now);
                    let resend = policy.is_some_and(|p| p.on_status(status))
                        && retry::resendable(&method, bodiless, None);
                    match head.as_ref().filter(|_| resend) {
                        Some(head) => (rebuild(head), Ok(response)),
                        None => return Ok(response),
                    }
                }
                Err(failed) => {
                    self.record(&list, endpoint, false, now);
                    let Failed {
                        error,
                        kind,
                        request,
                    } = *failed;
                    let resend = policy.is_some_and(|p| p.on_failure(kind));
                    let next = match request {
                        // Never sent: it goes elsewhere as it is.
                        Some(request) if resend => request,
                        _ if resend && retry::resendable(&method, bodiless, Some(kind)) => {
                            match &head {
                                Some(head) => rebuild(head),
                                None => return Err(error),
                            }
                        }
                        _ => return Err(error),
                    };
                    (next, Err(error))
                }
            };
            match self.budget.retry() {
                Some(slot) => _retry_in_flight = Some(slot),
                None => {
                    endpoint
                        .stats
                        .retry_budget_exhausted
                        .fetch_add(1, Ordering::Relaxed);
                    return otherwise;
                }
            }
            tracing::debug!(upstream = %self.name, endpoint = %endpoint.address, "retrying");
            req = next;
            retries += 1;
        }
    }

    /// The endpoint for a try: an available one not tried yet, else (panic
    /// mode) any not tried yet, else any.
    fn choose(
        &self,
        list: &[Arc<Endpoint>],
        start: usize,
        key: Option<u64>,
        tried: u64,
        now: u64,
    ) -> usize {
        let untried = |i: usize| i >= 64 || tried & (1 << i) == 0;
        let pick = |eligible: &dyn Fn(usize) -> bool| {
            balance::pick(self.policy, list, start, key, eligible)
        };
        pick(&|i| untried(i) && list[i].state.health.is_available(now))
            .or_else(|| pick(&untried))
            .or_else(|| pick(&|_| true))
            .unwrap_or(0)
    }

    /// Passive health: a failure (connect, reset, timeout, 5xx) counts
    /// towards an ejection, anything else ends the count.
    fn record(&self, list: &[Arc<Endpoint>], endpoint: &Endpoint, ok: bool, now: u64) {
        let health = &endpoint.state.health;
        if ok {
            health.record_success();
            return;
        }
        endpoint.state.failures.fetch_add(1, Ordering::Relaxed);
        let Some(outlier) = &self.outlier else {
            return;
        };
        if !health.record_failure(outlier.consecutive_failures) {
            return;
        }
        let ejected = list
            .iter()
            .filter(|e| e.state.health.is_ejected(now))
            .count();
        let limit = usize::try_from(outlier.max_ejected_percent).unwrap_or(100);
        if (ejected + 1) * 100 > limit * list.len() {
            return;
        }
        let until = now.saturating_add(health::millis(outlier.eject_for.get()));
        if health.eject(now, until) {
            endpoint.state.ejections.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                upstream = %self.name,
                endpoint = %endpoint.address,
                "endpoint ejected for {:?} after {} failures in a row",
                outlier.eject_for.get(),
                outlier.consecutive_failures
            );
        }
    }

    /// Replaces the endpoints (DNS refresh) and starts the new ones' checks.
    pub(super) fn replace(&self, endpoints: Vec<Arc<Endpoint>>, upstream: &Arc<Upstream>) {
        let old = self.list.load_full();
        for endpoint in &endpoints {
            if !old.iter().any(|e| e.id == endpoint.id) {
                self.start_checks(endpoint, upstream);
            }
        }
        self.list.store(Arc::new(endpoints));
    }

    /// The configured endpoints (hostnames unresolved).
    pub(super) fn configured(&self) -> &[Arc<Endpoint>] {
        &self.configured
    }

    /// The counters and health of an address of this upstream.
    pub(super) fn endpoint_stats(&self, address: &str) -> Arc<crate::metrics::EndpointStats> {
        self.stats.endpoint(&self.name, address)
    }
}

impl Candidate for Arc<Endpoint> {
    fn active(&self) -> u64 {
        self.state.active.load(Ordering::Relaxed)
    }

    fn seed(&self) -> u64 {
        balance::hash_bytes(self.address.as_bytes())
    }
}

/// A try waiting for its response headers, counted on its endpoint.
struct Active<'a>(&'a std::sync::atomic::AtomicU64);

impl<'a> Active<'a> {
    fn new(count: &'a std::sync::atomic::AtomicU64) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Active(count)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A copy of a bodiless request's head.
fn head_of(req: &Request<Body>) -> Request<()> {
    let mut head = Request::new(());
    *head.method_mut() = req.method().clone();
    *head.uri_mut() = req.uri().clone();
    *head.version_mut() = req.version();
    *head.headers_mut() = req.headers().clone();
    head
}

/// The bodiless request again.
fn rebuild(head: &Request<()>) -> Request<Body> {
    let mut req = Request::new(crate::body::empty());
    *req.method_mut() = head.method().clone();
    *req.uri_mut() = head.uri().clone();
    *req.version_mut() = head.version();
    *req.headers_mut() = head.headers().clone();
    req
}
