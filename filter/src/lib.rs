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
//! - [`error`]: configuration errors that name the key and entry, never a secret.
//! - this file: the proxy-wasm wiring only, compiled for wasm32. The plan is parsed once in
//!   `on_configure` and shared with every request through an `Rc`; a request runs
//!   [`transform::apply`] straight against the host's header map.

pub mod config;
pub mod error;
pub mod transform;

#[cfg(target_arch = "wasm32")]
mod wiring {
    use crate::config::Plan;
    use crate::transform::{self, Headers};
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType, LogLevel};
    use std::rc::Rc;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Info);
        proxy_wasm::set_root_context(|_| Box::new(Root { plan: None }));
    }}

    /// The plugin: holds the plan of the last successful `on_configure`.
    struct Root {
        plan: Option<Rc<Plan>>,
    }

    impl Context for Root {}

    impl RootContext for Root {
        fn on_configure(&mut self, _size: usize) -> bool {
            let config = self.get_plugin_configuration().unwrap_or_default();
            match Plan::parse(&config, &|name| std::env::var(name).ok()) {
                Ok(plan) => {
                    log::info!("secret-header: configured: {}", plan.summary());
                    self.plan = Some(Rc::new(plan));
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
                plan: self.plan.clone(),
            }))
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    /// One request.
    struct Request {
        plan: Option<Rc<Plan>>,
    }

    impl Context for Request {}

    impl HttpContext for Request {
        fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
            let Some(plan) = &self.plan else {
                // Hosts do not run a plugin whose on_configure failed; if one does anyway,
                // fail closed rather than forward the request without its secret.
                self.send_http_response(500, vec![], Some(b"secret-header: not configured\n"));
                return Action::Pause;
            };
            transform::apply(plan, &mut HostHeaders(self));
            Action::Continue
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
