//! Test filter `shared_data.wasm`: the shared key-value store, with
//! compare-and-swap.
//!
//! Configuration: `key=<name>` (default `counter`).
//!
//! Request headers (each result added as a request header and echoed on the
//! response):
//! - `x-shared-before`: the counter read (`none` when the key is unset);
//! - `x-shared-set`: the result of writing counter+1 with the CAS just read
//!   (`ok`, or the status name);
//! - `x-shared-after`: the value read back;
//! - `x-shared-stale`: the result of a write with a stale CAS (`CasMismatch`
//!   expected);
//! - `x-shared-missing`: a read of a key never written (`none`);
//! - `x-shared-blind`: the result of a write without CAS (`ok`).
//!
//! A request header `x-shared-write: <key>=<value>` also writes that pair
//! (without CAS), so tests can seed data through the filter.

use filter_common::{Config, or_none, status_name};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, Status};
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Root {
    key: Rc<String>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = Config::parse(self.get_plugin_configuration().as_deref());
        self.key = Rc::new(config.get("key").unwrap_or("counter").to_string());
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Shared {
            key: self.key.clone(),
            seen: Vec::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Shared {
    key: Rc<String>,
    seen: Vec<(&'static str, String)>,
}

fn outcome(result: Result<(), Status>) -> String {
    match result {
        Ok(()) => "ok".to_string(),
        Err(status) => status_name(status),
    }
}

fn text(bytes: Option<Vec<u8>>) -> Option<String> {
    bytes.map(|b| String::from_utf8_lossy(&b).into_owned())
}

impl Context for Shared {}

impl HttpContext for Shared {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let key = self.key.as_str();
        let (before, cas) = self.get_shared_data(key);
        let before = text(before);
        let count: u64 = before.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
        let set = self.set_shared_data(key, Some((count + 1).to_string().as_bytes()), cas);
        let (after, cas_after) = self.get_shared_data(key);
        let stale_cas = cas_after.map_or(1, |c| c.wrapping_add(1).max(1));
        let stale = self.set_shared_data(key, Some(b"stale"), Some(stale_cas));
        let (missing, missing_cas) = self.get_shared_data("wasmgate.never.written");
        let blind = self.set_shared_data("wasmgate.blind", Some(b"blind"), None);
        if let Some(write) = self.get_http_request_header("x-shared-write")
            && let Some((k, v)) = write.split_once('=')
        {
            let result = self.set_shared_data(k, Some(v.as_bytes()), None);
            self.seen.push(("x-shared-write-result", outcome(result)));
        }
        self.seen.extend([
            ("x-shared-before", or_none(before)),
            ("x-shared-set", outcome(set)),
            ("x-shared-after", or_none(text(after))),
            ("x-shared-stale", outcome(stale)),
            ("x-shared-missing", or_none(text(missing))),
            (
                "x-shared-missing-cas",
                or_none(missing_cas.map(|c| c.to_string())),
            ),
            ("x-shared-blind", outcome(blind)),
        ]);
        for (name, value) in &self.seen {
            self.add_http_request_header(name, value);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in &self.seen {
            self.add_http_response_header(name, value);
        }
        let (now, _) = self.get_shared_data(self.key.as_str());
        self.add_http_response_header("x-shared-now", &or_none(text(now)));
        Action::Continue
    }
}
