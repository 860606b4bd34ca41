//! Test filter `bodies.wasm`: reading and rewriting request and response
//! bodies, and pausing to buffer them.
//!
//! Request: body chunks are buffered (`Pause`) until end of stream. Then the
//! whole body is read, `<<` is prepended (`set(0, 0, ..)`), `>>` appended
//! (`set(len, 0, ..)`), and a body containing `REPLACE` is replaced whole
//! (`set(0, len, "replaced")`). `content-length` is dropped from the request
//! headers because the length changes.
//!
//! Response headers carry what the request phase saw: `x-req-body-len` (the
//! original length), `x-req-body-chunks` (body callbacks seen),
//! `x-req-body-peek` (3 bytes read from offset 1, or `none`),
//! `x-req-body-final` (the body after the rewrite, read back).
//!
//! Response: buffered until end of stream, then replaced whole by its upper-case
//! form and prefixed with `resp:`. An empty response body is left alone.
//!
//! A request with `x-hold: yes` and a body has its headers held (`Pause` from
//! `on_http_request_headers`, Envoy's `allow_on_headers_stop_iteration`) until the
//! body's end, where the request gets `x-held-body: <final length>`: a header written
//! after the body was seen, which only a host that sent the headers late can forward.
//! Its response headers are held the same way, and get `x-held-response: <length>`.

use filter_common::or_none;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Bodies::default()) });
}}

#[derive(Default)]
struct Bodies {
    request_chunks: usize,
    request_len: Option<usize>,
    request_peek: Option<String>,
    request_final: Option<String>,
    hold: bool,
}

impl Context for Bodies {}

impl HttpContext for Bodies {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            self.set_http_request_header("content-length", None);
        }
        self.hold = self.get_http_request_header("x-hold").as_deref() == Some("yes");
        if self.hold && !end_of_stream {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.request_chunks += 1;
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        self.request_len = Some(body.len());
        self.request_peek = self
            .get_http_request_body(1, 3)
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        if body.windows(7).any(|w| w == b"REPLACE") {
            self.set_http_request_body(0, body.len(), b"replaced");
        } else {
            self.set_http_request_body(0, 0, b"<<");
            self.set_http_request_body(body.len() + 2, 0, b">>");
        }
        self.request_final = self
            .get_http_request_body(0, usize::MAX)
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        if self.hold {
            let len = self.request_final.as_ref().map_or(0, String::len);
            self.set_http_request_header("x-held-body", Some(&len.to_string()));
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            self.set_http_response_header("content-length", None);
        }
        let len = self.request_len.map(|n| n.to_string());
        self.set_http_response_header("x-req-body-len", Some(&or_none(len)));
        let chunks = self.request_chunks.to_string();
        self.set_http_response_header("x-req-body-chunks", Some(&chunks));
        let peek = or_none(self.request_peek.as_deref());
        self.set_http_response_header("x-req-body-peek", Some(&peek));
        let body = or_none(self.request_final.as_deref());
        self.set_http_response_header("x-req-body-final", Some(&body));
        if self.hold && !end_of_stream {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let Some(body) = self.get_http_response_body(0, body_size) else {
            return Action::Continue;
        };
        if body.is_empty() {
            return Action::Continue;
        }
        self.set_http_response_body(0, body.len(), &body.to_ascii_uppercase());
        self.set_http_response_body(0, 0, b"resp:");
        if self.hold {
            let len = (body.len() + 5).to_string();
            self.set_http_response_header("x-held-response", Some(&len));
        }
        Action::Continue
    }
}
