//! When a failed try is sent again, and the budget that keeps retries from
//! multiplying load during an outage.
//!
//! A retry resends what the filters produced (they ran once); it goes to
//! another endpoint when there is one. Only what is safe is retried:
//!
//! - a request that was never sent (no connection), whatever its method
//!   and body: it still has its body;
//! - a bodiless request whose HTTP/2 stream was refused (RFC 9113 §8.7:
//!   the upstream did not process it);
//! - a bodiless request with an idempotent method (RFC 9110 §9.2.2) after
//!   a reset, a try timeout or a listed 5xx.
//!
//! A request whose body was sent is never retried: the body is gone.
//!
//! The budget, as Envoy's: retries in flight may be at most 20 % of the
//! upstream's requests in flight, or 3, whichever is more.

use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Method, StatusCode};

use super::FailureKind;
use crate::config::{RetryConfig, RetryOn};

/// Share of the requests in flight that may be retries.
const BUDGET_PERCENT: usize = 20;
/// Retries in flight always allowed, however few requests there are.
const MIN_RETRY_CONCURRENCY: usize = 3;

/// An upstream's retry settings.
#[derive(Debug, Clone)]
pub(super) struct Policy {
    /// Most retries after the first try.
    pub attempts: u32,
    on: Vec<RetryOn>,
    /// Time allowed for each try's response headers.
    pub per_try_timeout: Option<std::time::Duration>,
}

impl Policy {
    pub(super) fn new(config: &RetryConfig) -> Self {
        Policy {
            attempts: config.attempts,
            on: config.on.clone(),
            per_try_timeout: config.per_try_timeout.map(|t| t.get()),
        }
    }

    /// Whether a failure of this kind is listed.
    pub(super) fn on_failure(&self, kind: FailureKind) -> bool {
        let wanted = match kind {
            FailureKind::Connect => RetryOn::ConnectFailure,
            FailureKind::Refused => RetryOn::RefusedStream,
            FailureKind::Reset => RetryOn::Reset,
            FailureKind::Timeout => RetryOn::Timeout,
            FailureKind::Invalid => return false,
        };
        self.on.contains(&wanted)
    }

    /// Whether an answer with this status is listed.
    pub(super) fn on_status(&self, status: StatusCode) -> bool {
        status.is_server_error()
            && self.on.iter().any(|on| match on {
                RetryOn::Status5xx => true,
                RetryOn::Status(code) => *code == status.as_u16(),
                _ => false,
            })
    }
}

/// Whether a request that was sent (or may have been) can be sent again:
/// it must be bodiless (so it can be rebuilt) and either idempotent or
/// refused unprocessed.
pub(super) fn resendable(method: &Method, bodiless: bool, kind: Option<FailureKind>) -> bool {
    bodiless && (kind == Some(FailureKind::Refused) || is_idempotent(method))
}

/// RFC 9110 §9.2.2.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Requests and retries in flight on one upstream (all workers).
#[derive(Debug, Default)]
pub(super) struct Budget {
    requests: AtomicUsize,
    retries: AtomicUsize,
}

impl Budget {
    /// Counts a request in flight until the guard drops.
    pub(super) fn request(&self) -> InFlight<'_> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.requests)
    }

    /// Room for one more retry: counted in flight until the guard drops.
    pub(super) fn retry(&self) -> Option<InFlight<'_>> {
        let requests = self.requests.load(Ordering::Relaxed);
        let allowed = (requests * BUDGET_PERCENT / 100).max(MIN_RETRY_CONCURRENCY);
        let retries = self.retries.fetch_add(1, Ordering::Relaxed);
        if retries < allowed {
            Some(InFlight(&self.retries))
        } else {
            self.retries.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }
}

/// One request or retry in flight.
#[derive(Debug)]
pub(super) struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_allows_a_floor_then_a_fifth_of_requests() {
        let budget = Budget::default();
        let requests: Vec<_> = (0..10).map(|_| budget.request()).collect();
        let retries: Vec<_> = (0..3).filter_map(|_| budget.retry()).collect();
        assert_eq!(retries.len(), 3, "the floor");
        assert!(budget.retry().is_none(), "10 requests allow 3 retries");
        drop(retries);
        let more: Vec<_> = (0..40).map(|_| budget.request()).collect();
        let retries: Vec<_> = (0..20).filter_map(|_| budget.retry()).collect();
        assert_eq!(retries.len(), 10, "20 % of 50");
        drop((requests, more, retries));
        assert_eq!(budget.requests.load(Ordering::Relaxed), 0);
        assert_eq!(budget.retries.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn only_safe_requests_are_resent() {
        use FailureKind::*;
        assert!(resendable(&Method::GET, true, Some(Reset)));
        assert!(!resendable(&Method::GET, false, Some(Reset)), "body gone");
        assert!(!resendable(&Method::POST, true, Some(Reset)));
        assert!(!resendable(&Method::POST, true, None), "a 5xx answer");
        assert!(resendable(&Method::POST, true, Some(Refused)));
        assert!(!resendable(&Method::POST, false, Some(Refused)));
    }

    #[test]
    fn listed_failures_and_statuses() {
        let config: RetryConfig =
            serde_json::from_str(r#"{"attempts": 2, "on": ["connect_failure", "503", "reset"]}"#)
                .unwrap();
        let policy = Policy::new(&config);
        assert!(policy.on_failure(FailureKind::Connect));
        assert!(policy.on_failure(FailureKind::Reset));
        assert!(!policy.on_failure(FailureKind::Refused));
        assert!(!policy.on_failure(FailureKind::Invalid));
        assert!(policy.on_status(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!policy.on_status(StatusCode::BAD_GATEWAY));
        let any: RetryConfig = serde_json::from_str(r#"{"on": ["5xx"]}"#).unwrap();
        assert!(Policy::new(&any).on_status(StatusCode::BAD_GATEWAY));
        assert!(!Policy::new(&any).on_status(StatusCode::NOT_FOUND));
    }
}
