//! Test filter `headers.wasm`: every header- and trailer-map operation of the
//! Rust SDK, string and bytes variants, on requests and responses.
//!
//! What it observes it writes back as `x-seen-*` headers, so a test (or the
//! Envoy differential suite) sees both the reads and the writes:
//!
//! Request headers (each written as a request header, sent upstream):
//! - `x-seen-num-headers`: the count the host passed to the callback;
//!   `x-seen-pairs`: the number of pairs from `get_map`; `x-seen-pairs-bytes`:
//!   the same from `get_map_bytes`;
//! - `x-seen-path`, `x-seen-method`: single reads; `x-seen-missing`: a read of
//!   an absent header (`none`); `x-seen-empty`: `empty` when `x-empty` is present
//!   with an empty value; `x-seen-bin`: hex of the bytes read of `x-bin`;
//!   `x-seen-multi`: every `x-multi` value from the pairs, joined by `,`;
//!   `x-seen-eos`: the end-of-stream flag.
//! - writes: `x-replace-me` replaced (or added) with `replaced`; `x-remove-me`
//!   removed by `set(None)` and `x-remove-me-too` by `remove`; another
//!   `x-multi: added` appended; `x-bytes-set` set and `x-bytes-add` added
//!   through the bytes variants.
//! - `x-set-map: strings|bytes` replaces the whole map (`set_map` or
//!   `set_map_bytes`) with the current pairs minus `x-set-map`, plus
//!   `x-map-was-set: strings|bytes`.
//!
//! Response headers: `x-resp-seen-status`, `x-resp-seen-pairs`; `x-resp-replace`
//! replaced, `x-resp-remove` removed, `x-resp-added: yes` added, and
//! `x-req-path` echoes the request path seen earlier.
//!
//! Framing on demand (for the tests that show the proxy owns framing): a
//! request header `x-add-request: name: value` makes the filter add that
//! header to the request, and `x-add-response: name: value` to the
//! response (each may come more than once).
//!
//! Trailers (request and response alike): `x-trailer-added: yes` added,
//! `x-trailer-replace` replaced with `replaced`, `x-trailer-remove` removed,
//! `x-trailer-seen-pairs` holds the count read, and `x-trailer-seen-t` the
//! value of trailer `x-t` (or `none`).

use filter_common::{hex, or_none};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Headers::default()) });
}}

#[derive(Default)]
struct Headers {
    request_path: Option<String>,
    /// `x-add-response` entries, added in on_http_response_headers.
    add_response: Vec<(String, String)>,
}

/// The `name: value` entries of every `header` in `pairs`.
fn entries(pairs: &[(String, String)], header: &str) -> Vec<(String, String)> {
    pairs
        .iter()
        .filter(|(k, _)| k == header)
        .filter_map(|(_, v)| v.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect()
}

impl Context for Headers {}

impl HttpContext for Headers {
    fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        let pairs = self.get_http_request_headers();
        let pairs_bytes = self.get_http_request_headers_bytes();
        let path = self.get_http_request_header(":path");
        let method = self.get_http_request_header(":method");
        let empty = match self.get_http_request_header("x-empty") {
            Some(v) if v.is_empty() => "empty".to_string(),
            other => or_none(other),
        };
        let bin = self.get_http_request_header_bytes("x-bin").map(|b| hex(&b));
        let multi: Vec<&str> = pairs
            .iter()
            .filter(|(k, _)| k == "x-multi")
            .map(|(_, v)| v.as_str())
            .collect();

        let seen = [
            ("x-seen-num-headers", num_headers.to_string()),
            ("x-seen-pairs", pairs.len().to_string()),
            ("x-seen-pairs-bytes", pairs_bytes.len().to_string()),
            ("x-seen-path", or_none(path.as_deref())),
            ("x-seen-method", or_none(method)),
            (
                "x-seen-missing",
                or_none(self.get_http_request_header("x-does-not-exist")),
            ),
            ("x-seen-empty", empty),
            ("x-seen-bin", or_none(bin)),
            ("x-seen-multi", multi.join(",")),
            ("x-seen-eos", end_of_stream.to_string()),
        ];
        for (name, value) in &seen {
            self.add_http_request_header(name, value);
        }

        self.set_http_request_header("x-replace-me", Some("replaced"));
        self.set_http_request_header("x-remove-me", None);
        self.remove_http_request_header("x-remove-me-too");
        self.add_http_request_header("x-multi", "added");
        self.set_http_request_header_bytes("x-bytes-set", Some(b"set-bytes"));
        self.add_http_request_header_bytes("x-bytes-add", b"add-bytes");

        if let Some(mode) = self.get_http_request_header("x-set-map") {
            let current = self.get_http_request_headers_bytes();
            let kept: Vec<(&str, &[u8])> = current
                .iter()
                .filter(|(k, _)| k != "x-set-map")
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect();
            if mode == "bytes" {
                let mut map = kept;
                map.push(("x-map-was-set", b"bytes"));
                self.set_http_request_headers_bytes(map);
            } else {
                let strings: Vec<(String, String)> = kept
                    .iter()
                    .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned()))
                    .collect();
                let mut map: Vec<(&str, &str)> = strings
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                map.push(("x-map-was-set", "strings"));
                self.set_http_request_headers(map);
            }
        }
        for (name, value) in entries(&pairs, "x-add-request") {
            self.add_http_request_header(&name, &value);
        }
        self.add_response = entries(&pairs, "x-add-response");
        self.request_path = path;
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let pairs = self.get_http_request_trailers();
        let t = self.get_http_request_trailer("x-t");
        let bytes_pairs = self.get_http_request_trailers_bytes();
        let t_bytes = self.get_http_request_trailer_bytes("x-t");
        self.add_http_request_trailer("x-trailer-added", "yes");
        self.set_http_request_trailer("x-trailer-replace", Some("replaced"));
        self.remove_http_request_trailer("x-trailer-remove");
        self.add_http_request_trailer("x-trailer-seen-pairs", &pairs.len().to_string());
        self.add_http_request_trailer("x-trailer-seen-t", &or_none(t));
        self.set_http_request_trailer_bytes(
            "x-trailer-seen-bytes",
            Some(format!("{}:{}", bytes_pairs.len(), t_bytes.map_or(0, |b| b.len())).as_bytes()),
        );
        if self.get_http_request_trailer("x-trailer-set-map").is_some() {
            self.set_http_request_trailers(vec![("x-trailer-map-was-set", "strings")]);
        } else if self
            .get_http_request_trailer("x-trailer-set-map-bytes")
            .is_some()
        {
            self.set_http_request_trailers_bytes(vec![("x-trailer-map-was-set", b"bytes")]);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let pairs = self.get_http_response_headers();
        let pairs_bytes = self.get_http_response_headers_bytes();
        let status = self.get_http_response_header(":status");
        let status_bytes = self.get_http_response_header_bytes(":status");
        self.add_http_response_header("x-resp-seen-status", &or_none(status));
        self.add_http_response_header("x-resp-seen-pairs", &pairs.len().to_string());
        self.add_http_response_header_bytes(
            "x-resp-seen-status-len",
            status_bytes.map_or(0, |b| b.len()).to_string().as_bytes(),
        );
        self.add_http_response_header("x-resp-seen-pairs-bytes", &pairs_bytes.len().to_string());
        self.set_http_response_header("x-resp-replace", Some("replaced"));
        self.set_http_response_header_bytes("x-resp-remove", None);
        self.remove_http_response_header("x-resp-remove-too");
        self.add_http_response_header("x-resp-added", "yes");
        let path = or_none(self.request_path.as_deref());
        self.add_http_response_header("x-req-path", &path);
        for (name, value) in std::mem::take(&mut self.add_response) {
            self.add_http_response_header(&name, &value);
        }
        if let Some(mode) = self.get_http_response_header("x-resp-set-map") {
            let mut map: Vec<(String, String)> = self
                .get_http_response_headers()
                .into_iter()
                .filter(|(k, _)| k != "x-resp-set-map")
                .collect();
            map.push(("x-resp-map-was-set".into(), mode.clone()));
            if mode == "bytes" {
                let map = map
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_bytes()))
                    .collect();
                self.set_http_response_headers_bytes(map);
            } else {
                let map = map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                self.set_http_response_headers(map);
            }
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        let pairs = self.get_http_response_trailers();
        let t = self.get_http_response_trailer("x-t");
        let bytes_pairs = self.get_http_response_trailers_bytes();
        let t_bytes = self.get_http_response_trailer_bytes("x-t");
        self.add_http_response_trailer("x-trailer-added", "yes");
        self.set_http_response_trailer("x-trailer-replace", Some("replaced"));
        self.remove_http_response_trailer("x-trailer-remove");
        self.add_http_response_trailer("x-trailer-seen-pairs", &pairs.len().to_string());
        self.add_http_response_trailer("x-trailer-seen-t", &or_none(t));
        self.add_http_response_trailer_bytes(
            "x-trailer-seen-bytes",
            format!("{}:{}", bytes_pairs.len(), t_bytes.map_or(0, |b| b.len())).as_bytes(),
        );
        if self
            .get_http_response_trailer("x-trailer-set-map")
            .is_some()
        {
            self.set_http_response_trailers(vec![("x-trailer-map-was-set", "strings")]);
        } else if self
            .get_http_response_trailer("x-trailer-set-map-bytes")
            .is_some()
        {
            self.set_http_response_trailers_bytes(vec![("x-trailer-map-was-set", b"bytes")]);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        // Read-only access in on_log, as Envoy allows.
        let path = self.get_http_request_header(":path");
        let status = self.get_http_response_header(":status");
        proxy_wasm::hostcalls::log(
            LogLevel::Info,
            &format!(
                "headers: on_log path={} status={}",
                or_none(path),
                or_none(status)
            ),
        )
        .ok();
    }
}
