//! Test filter `postpone.wasm`: a request paused in `on_http_request_headers`
//! and resumed from the root context's `on_tick`, after
//! `proxy_set_effective_context(ctx)`; the Go SDK's `postpone_requests`
//! example, in Rust.
//!
//! Configuration (`;`-separated): `period_ms=<n>` (tick period, default 100),
//! `then=resume|respond` (what the tick does with a postponed request:
//! `resume` it, the default, or `respond` with a local 200 `answered by
//! on_tick` carrying `x-answered-by: tick`).
//!
//! Request headers: the request is postponed (paused) unless it has
//! `x-postpone: no`; a postponed request gets the request header
//! `x-postponed: true` before pausing. Response headers: a request that was
//! postponed gets `x-postpone: resumed`. Each tick logs `resume <ctx>` (or
//! `respond <ctx>`) for every request it lets go, and any non-OK status of
//! the calls as `<call> failed: <Status>`.

use std::cell::RefCell;
use std::time::Duration;

use filter_common::{Config, status_name};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

thread_local! {
    /// Context ids of the paused requests, oldest first (the module is single-threaded).
    static POSTPONED: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

#[derive(Default)]
struct Root {
    respond: bool,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = Config::parse(self.get_plugin_configuration().as_deref());
        self.respond = config.get("then") == Some("respond");
        self.set_tick_period(Duration::from_millis(config.number("period_ms", 100)));
        true
    }

    fn on_tick(&mut self) {
        let postponed = POSTPONED.with_borrow_mut(std::mem::take);
        for context_id in postponed {
            if let Err(status) = hostcalls::set_effective_context(context_id) {
                log(&format!("set_effective_context failed: {}", status_name(status)));
                continue;
            }
            let outcome = if self.respond {
                log(&format!("respond {context_id}"));
                hostcalls::send_http_response(
                    200,
                    vec![("x-answered-by", "tick")],
                    Some(b"answered by on_tick\n"),
                )
            } else {
                log(&format!("resume {context_id}"));
                hostcalls::resume_http_request()
            };
            if let Err(status) = outcome {
                log(&format!("resume failed: {}", status_name(status)));
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            context_id,
            postponed: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

fn log(message: &str) {
    hostcalls::log(LogLevel::Info, message).ok();
}

struct Request {
    context_id: u32,
    postponed: bool,
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.get_http_request_header("x-postpone").as_deref() == Some("no") {
            return Action::Continue;
        }
        self.postponed = true;
        self.set_http_request_header("x-postponed", Some("true"));
        POSTPONED.with_borrow_mut(|p| p.push(self.context_id));
        Action::Pause
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.postponed {
            self.set_http_response_header("x-postpone", Some("resumed"));
        }
        Action::Continue
    }
}
