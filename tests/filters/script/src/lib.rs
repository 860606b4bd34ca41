//! Test filter `script.wasm`: one stream scripted by its request's `x-script` header, to
//! compare how two hosts drive a stream (`tests/tests/driver_equivalence.rs`).
//!
//! Configuration: `upstream=<name>` (default `calls`), the upstream of the http call.
//!
//! Every callback is written down in order (`request_headers`, `request_body(<len>,<eos>)`,
//! `call(<status>)`, ...). The trace is visible in the response header `x-s-trace` (what
//! happened up to the response headers), and in a local response's or rewritten response
//! body (everything up to then). Every header the filter writes starts with `x-s-`.
//!
//! Always: request headers get `x-s-added: 1`, `x-s-edit` is replaced by `edited`,
//! `x-s-drop` is removed; response headers get `x-s-trace` and `x-s-status` (`:status`).
//! Steps in `x-script` (comma-separated):
//!
//! - `call`: request headers dispatch `GET /check` to the upstream and pause; its answer
//!   adds `x-s-call: <status>` to the request and resumes it.
//! - `hold`: request headers of a request with a body pause until the body's end (Envoy's
//!   `allow_on_headers_stop_iteration`), which adds `x-s-body-len: <len>`.
//! - `buffer`: request body chunks are held (`Pause`) until the end, then upper-cased.
//! - `deny-headers`, `deny-body`, `deny-response`: a local response (403 from the request
//!   headers, 413 at the request body's end, 418 from the response headers), with the
//!   trace as its body and `x-s-local: <phase>`.
//! - `buffer-response`: the response body is held until its end, then replaced by
//!   `<trace>|<body>`.

use filter_common::Config;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Root {
    upstream: Rc<String>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = Config::parse(self.get_plugin_configuration().as_deref());
        self.upstream = Rc::new(config.get("upstream").unwrap_or("calls").to_string());
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Script {
            upstream: self.upstream.clone(),
            steps: Vec::new(),
            trace: Vec::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Script {
    upstream: Rc<String>,
    steps: Vec<String>,
    trace: Vec<String>,
}

impl Script {
    fn has(&self, step: &str) -> bool {
        self.steps.iter().any(|s| s == step)
    }

    fn trace(&self) -> String {
        self.trace.join(" ")
    }

    /// Answers locally with the trace as the body.
    fn deny(&self, status: u32, phase: &str) -> Action {
        let trace = self.trace();
        self.send_http_response(status, vec![("x-s-local", phase)], Some(trace.as_bytes()));
        Action::Pause
    }

    fn dispatch(&mut self) -> Action {
        let headers = vec![
            (":method", "GET"),
            (":path", "/check"),
            (":authority", self.upstream.as_str()),
        ];
        match self.dispatch_http_call(
            &self.upstream,
            headers,
            None,
            vec![],
            Duration::from_secs(5),
        ) {
            Ok(_) => Action::Pause,
            Err(_) => self.deny(503, "call-refused"),
        }
    }
}

impl Context for Script {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        _headers: usize,
        _body: usize,
        _trailers: usize,
    ) {
        let status = self
            .get_http_call_response_header(":status")
            .unwrap_or_else(|| "none".into());
        self.trace.push(format!("call({status})"));
        self.set_http_request_header("x-s-call", Some(&status));
        self.resume_http_request();
    }
}

impl HttpContext for Script {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.trace.push(format!("request_headers({end_of_stream})"));
        let script = self.get_http_request_header("x-script").unwrap_or_default();
        self.steps = script.split(',').map(|s| s.trim().to_string()).collect();
        self.add_http_request_header("x-s-added", "1");
        if self.get_http_request_header("x-s-edit").is_some() {
            self.set_http_request_header("x-s-edit", Some("edited"));
        }
        self.set_http_request_header("x-s-drop", None);
        if self.has("deny-headers") {
            return self.deny(403, "request_headers");
        }
        if self.has("call") {
            return self.dispatch();
        }
        if self.has("hold") && !end_of_stream {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.trace
            .push(format!("request_body({body_size},{end_of_stream})"));
        if !end_of_stream && (self.has("buffer") || self.has("hold") || self.has("deny-body")) {
            return Action::Pause;
        }
        if self.has("deny-body") {
            return self.deny(413, "request_body");
        }
        if self.has("buffer") {
            let body = self.get_http_request_body(0, body_size).unwrap_or_default();
            self.set_http_request_body(0, body_size, &body.to_ascii_uppercase());
        }
        if self.has("hold") {
            self.set_http_request_header("x-s-body-len", Some(&body_size.to_string()));
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.trace
            .push(format!("response_headers({end_of_stream})"));
        if self.has("deny-response") {
            return self.deny(418, "response_headers");
        }
        let status = self.get_http_response_header(":status").unwrap_or_default();
        self.set_http_response_header("x-s-status", Some(&status));
        self.set_http_response_header("x-s-trace", Some(&self.trace()));
        if self.has("buffer-response") {
            self.set_http_response_header("content-length", None);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.trace
            .push(format!("response_body({body_size},{end_of_stream})"));
        if !self.has("buffer-response") {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self
            .get_http_response_body(0, body_size)
            .unwrap_or_default();
        let mut out = format!("{}|", self.trace()).into_bytes();
        out.extend_from_slice(&body);
        self.set_http_response_body(0, body_size, &out);
        Action::Continue
    }
}
