//! Test filter `http_call.wasm`: an external authorization call
//! (`proxy_http_call`) that pauses the request until the answer arrives.
//!
//! Configuration (`;`-separated): `upstream=<name>` (default `auth`),
//! `path=<path>` (default `/auth`), `timeout_ms=<n>` (default 1000).
//!
//! Request headers: dispatches `GET <path>` to the upstream, with
//! `:authority` = the upstream name, `x-original-path` = the request's path,
//! the request's `authorization` header when present, and body `ping`. A
//! request header `x-call-upstream` overrides the upstream name, and
//! `x-call-no-authority` leaves `:authority` out (a malformed call). If the
//! host refuses the call, the filter answers 503 with `x-call-error: <Status>`.
//! Otherwise it pauses.
//!
//! Call response: a failed call (no headers) gives 503 with `x-call-error:
//! failed`. A `:status` of 200 resumes the request with `x-auth-status: 200`,
//! `x-auth-body: <response body>`, `x-auth-header: <x-auth of the response>`
//! and `x-auth-trailers: <number of response trailers>` added. Any other
//! status answers 403 with `x-auth-status: <status>` and body
//! `denied by auth: <response body>`.

use filter_common::{Config, or_none, status_name};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

struct Settings {
    upstream: String,
    path: String,
    timeout: Duration,
}

#[derive(Default)]
struct Root {
    settings: Option<Rc<Settings>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = Config::parse(self.get_plugin_configuration().as_deref());
        self.settings = Some(Rc::new(Settings {
            upstream: config.get("upstream").unwrap_or("auth").to_string(),
            path: config.get("path").unwrap_or("/auth").to_string(),
            timeout: Duration::from_millis(config.number("timeout_ms", 1000)),
        }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let settings = self.settings.clone()?;
        Some(Box::new(Call {
            settings,
            token: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Call {
    settings: Rc<Settings>,
    token: Option<u32>,
}

impl Context for Call {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        num_trailers: usize,
    ) {
        let log = format!(
            "http_call: response token={token_id} headers={num_headers} trailers={num_trailers}"
        );
        proxy_wasm::hostcalls::log(LogLevel::Info, &log).ok();
        if Some(token_id) != self.token {
            self.send_http_response(500, vec![("x-call-error", "unknown-token")], None);
            return;
        }
        if num_headers == 0 {
            self.send_http_response(503, vec![("x-call-error", "failed")], Some(b"call failed"));
            return;
        }
        let status = or_none(self.get_http_call_response_header(":status"));
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        let body = String::from_utf8_lossy(&body).into_owned();
        if status == "200" {
            let header = or_none(self.get_http_call_response_header("x-auth"));
            let trailers = self.get_http_call_response_trailers();
            self.set_http_request_header("x-auth-status", Some(&status));
            self.set_http_request_header("x-auth-body", Some(&body));
            self.set_http_request_header("x-auth-header", Some(&header));
            self.set_http_request_header("x-auth-trailers", Some(&trailers.len().to_string()));
            self.resume_http_request();
        } else {
            let denied = format!("denied by auth: {body}");
            self.send_http_response(
                403,
                vec![("x-auth-status", status.as_str())],
                Some(denied.as_bytes()),
            );
        }
    }
}

impl HttpContext for Call {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let upstream = self
            .get_http_request_header("x-call-upstream")
            .unwrap_or_else(|| self.settings.upstream.clone());
        let original_path = self.get_http_request_header(":path").unwrap_or_default();
        let authorization = self.get_http_request_header("authorization");
        let mut headers = vec![
            (":method", "GET"),
            (":path", self.settings.path.as_str()),
            ("x-original-path", original_path.as_str()),
        ];
        if self
            .get_http_request_header("x-call-no-authority")
            .is_none()
        {
            headers.push((":authority", upstream.as_str()));
        }
        if let Some(auth) = authorization.as_deref() {
            headers.push(("authorization", auth));
        }
        let dispatched = self.dispatch_http_call(
            &upstream,
            headers,
            Some(b"ping"),
            vec![],
            self.settings.timeout,
        );
        match dispatched {
            Ok(token) => {
                self.token = Some(token);
                Action::Pause
            }
            Err(status) => {
                let status = status_name(status);
                self.send_http_response(
                    503,
                    vec![("x-call-error", status.as_str())],
                    Some(b"http call refused"),
                );
                Action::Pause
            }
        }
    }
}
