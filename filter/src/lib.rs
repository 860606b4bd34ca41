//! secret-header: a proxy-wasm filter that injects a shared-secret header into requests on
//! their way to a backend, configured like Kong's request-transformer.
//!
//! Build: `cargo build --release --target wasm32-wasip1 -p secret-header` gives
//! `target/wasm32-wasip1/release/secret_header.wasm`, which runs unchanged in Envoy, Istio,
//! Kong (filter chains) and wasmgate.
//!
//! # Layout
//! - [`config`]: plugin configuration (JSON) → a validated [`config::Plan`], with
//!   `{vault://env/NAME}` references resolved at configure time.
//! - [`transform`]: the pure function that applies a plan to a request's headers.
//! - [`verify`]: the backend's check of a shared secret (constant time, several values).
//! - [`crypto`]: SHA-256, HMAC-SHA256, constant-time comparison and base64.
//! - [`error`]: configuration errors that name the key and entry, never a secret.
//! - this file: the proxy-wasm wiring only, compiled for wasm32. The plan is parsed once in
//!   `on_configure` and shared with every request through an `Rc`; a request runs
//!   `verify` first (a refused request gets a local 401 and goes no further), then
//!   [`transform::apply`] straight against the host's header map. Counters are proxy-wasm
//!   metrics, defined in `on_configure`.

pub mod config;
pub mod crypto;
pub mod error;
pub mod transform;
pub mod verify;

#[cfg(target_arch = "wasm32")]
mod wiring {
    use crate::config::Plan;
    use crate::transform::{self, Headers};
    use crate::verify;
    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
    use std::rc::Rc;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Info);
        proxy_wasm::set_root_context(|_| Box::new(Root { shared: None }));
    }}

    /// The plugin: holds the plan of the last successful `on_configure`.
    struct Root {
        shared: Option<Rc<Shared>>,
    }

    /// What every request of one configuration reads.
    struct Shared {
        plan: Plan,
        metrics: Metrics,
    }

    /// Counter ids by name, defined once per configuration (a host hands back the same id
    /// for a name it already knows).
    #[derive(Default)]
    struct Metrics(Vec<(&'static str, u32)>);

    impl Metrics {
        fn define(&mut self, names: impl IntoIterator<Item = &'static str>) {
            for name in names {
                match hostcalls::define_metric(MetricType::Counter, name) {
                    Ok(id) => self.0.push((name, id)),
                    Err(status) => log::warn!("secret-header: metric {name}: {status:?}"),
                }
            }
        }

        fn increment(&self, name: &str) {
            if let Some((_, id)) = self.0.iter().find(|(n, _)| *n == name) {
                let _ = hostcalls::increment_metric(*id, 1);
            }
        }
    }

    impl Context for Root {}

    impl RootContext for Root {
        fn on_configure(&mut self, _size: usize) -> bool {
            let config = self.get_plugin_configuration().unwrap_or_default();
            match Plan::parse(&config, &|name| std::env::var(name).ok()) {
                Ok(plan) => {
                    log::info!("secret-header: configured: {}", plan.summary());
                    let mut metrics = Metrics::default();
                    if plan.verify.is_some() {
                        metrics.define([verify::ACCEPTED_METRIC]);
                        metrics.define(verify::Rejection::ALL.map(verify::Rejection::metric));
                    }
                    self.shared = Some(Rc::new(Shared { plan, metrics }));
                    true
                }
                Err(e) => {
                    log::error!("secret-header: invalid configuration: {e}");
                    false
                }
            }
        }

        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Request {
                shared: self.shared.clone(),
            }))
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    /// One request.
    struct Request {
        shared: Option<Rc<Shared>>,
    }

    impl Context for Request {}

    impl HttpContext for Request {
        fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
            let Some(shared) = self.shared.clone() else {
                // Hosts do not run a plugin whose on_configure failed; if one does anyway,
                // fail closed rather than forward the request without its secret.
                self.send_http_response(500, vec![], Some(b"secret-header: not configured\n"));
                return Action::Pause;
            };
            let (plan, metrics) = (&shared.plan, &shared.metrics);
            if let Some(verify) = &plan.verify {
                let mut headers = HostHeaders(self);
                match verify.check(&headers.values(&verify.header)) {
                    Ok(()) => {
                        metrics.increment(verify::ACCEPTED_METRIC);
                        if verify.strip {
                            headers.remove(&verify.header);
                        }
                    }
                    Err(reason) => {
                        metrics.increment(reason.metric());
                        self.unauthorized(&verify.challenge);
                        return Action::Pause;
                    }
                }
            }
            transform::apply(plan, &mut HostHeaders(self));
            Action::Continue
        }
    }

    impl Request {
        /// The one answer every rejection gets: 401, a challenge, and a body that says nothing.
        fn unauthorized(&self, challenge: &str) {
            self.send_http_response(
                401,
                vec![
                    ("www-authenticate", challenge),
                    ("content-type", "text/plain"),
                    ("cache-control", "no-store"),
                ],
                Some(verify::REJECTION_BODY),
            );
        }
    }

    /// The host's request header map; each method is one hostcall (`values` fetches the map).
    struct HostHeaders<'a>(&'a Request);

    impl Headers for HostHeaders<'_> {
        fn contains(&self, name: &str) -> bool {
            self.0.get_http_request_header_bytes(name).is_some()
        }

        fn values(&self, name: &str) -> Vec<Vec<u8>> {
            self.0
                .get_http_request_headers_bytes()
                .into_iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
                .collect()
        }

        fn remove(&mut self, name: &str) {
            self.0.set_http_request_header_bytes(name, None);
        }

        fn add(&mut self, name: &str, value: &[u8]) {
            self.0.add_http_request_header_bytes(name, value);
        }
    }
}
