//! Test filter `local_response.wasm`: answering a request from the filter
//! (`proxy_send_local_response`) in each phase, and closing a stream.
//!
//! By request path:
//! - `/deny...`: 403 from the request-headers phase, headers `x-local: deny`
//!   and `content-type: text/plain`, body `denied by local_response filter`;
//! - `/empty`: 204 with `x-local: empty` and no body;
//! - `/deny-body`: lets the headers pass, then answers 413 from the request
//!   body phase (at end of stream) with body `body rejected: <n> bytes`;
//! - `/replace-response`: lets the request through, then replaces the
//!   upstream's response with 418 and body `teapot from response phase`;
//! - `/reset`: closes the request stream (`proxy_close_stream`) and pauses;
//! - anything else: passes, and adds `x-upstream-status` to the response.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Local::default()) });
}}

#[derive(Default)]
struct Local {
    path: String,
}

impl Context for Local {}

impl HttpContext for Local {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.path = self.get_http_request_header(":path").unwrap_or_default();
        match self.path.as_str() {
            "/empty" => {
                self.send_http_response(204, vec![("x-local", "empty")], None);
                Action::Pause
            }
            "/reset" => {
                self.reset_http_request();
                Action::Pause
            }
            "/deny-body" | "/replace-response" => Action::Continue,
            p if p.starts_with("/deny") => {
                self.send_http_response(
                    403,
                    vec![("x-local", "deny"), ("content-type", "text/plain")],
                    Some(b"denied by local_response filter"),
                );
                Action::Pause
            }
            _ => Action::Continue,
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.path != "/deny-body" {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = format!("body rejected: {body_size} bytes");
        self.send_http_response(413, vec![("x-local", "deny-body")], Some(body.as_bytes()));
        Action::Pause
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.path == "/replace-response" {
            self.send_http_response(
                418,
                vec![("x-local", "replace-response")],
                Some(b"teapot from response phase"),
            );
            return Action::Pause;
        }
        let status = self.get_http_response_header(":status").unwrap_or_default();
        self.set_http_response_header("x-upstream-status", Some(&status));
        Action::Continue
    }
}
