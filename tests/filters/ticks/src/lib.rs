//! Test filter `ticks.wasm`: timers (`proxy_set_tick_period_milliseconds`,
//! `on_tick`), the clock, and http calls from the root context.
//!
//! Configuration (`;`-separated): `period_ms=<n>` (default 1000),
//! `stop_after=<n>` (after that many ticks the period is set to 0, which stops
//! the timer; default 0 = never), `call=<upstream>` (each tick dispatches
//! `GET /tick` to that upstream from the root context).
//!
//! Root: every tick increments shared data `ticks.count` and logs
//! `tick <n>`. A call's answer is stored as shared data `ticks.call` =
//! `<:status>:<body>` (or `failed`); a refused dispatch as `refused:<Status>`.
//!
//! Request headers: `x-ticks` (the tick count so far, `0` before any) and
//! `x-tick-call` (the last call outcome, or `none`), and `x-clock-ok: true`
//! when the host clock reads after 2020-01-01.

use filter_common::{Config, or_none, status_name};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::time::{Duration, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Root {
    ticks: u64,
    stop_after: u64,
    call: Option<String>,
}

fn shared_text(key: &str) -> Option<String> {
    match hostcalls::get_shared_data(key) {
        Ok((Some(bytes), _)) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        _ => None,
    }
}

fn store(key: &str, value: &str) {
    hostcalls::set_shared_data(key, Some(value.as_bytes()), None).ok();
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        _token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if num_headers == 0 {
            store("ticks.call", "failed");
            return;
        }
        let status = or_none(self.get_http_call_response_header(":status"));
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        store(
            "ticks.call",
            &format!("{status}:{}", String::from_utf8_lossy(&body)),
        );
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = Config::parse(self.get_plugin_configuration().as_deref());
        self.stop_after = config.number("stop_after", 0);
        self.call = config.get("call").map(str::to_string);
        self.set_tick_period(Duration::from_millis(config.number("period_ms", 1000)));
        true
    }

    fn on_tick(&mut self) {
        self.ticks += 1;
        store("ticks.count", &self.ticks.to_string());
        hostcalls::log(LogLevel::Info, &format!("tick {}", self.ticks)).ok();
        if self.stop_after != 0 && self.ticks >= self.stop_after {
            self.set_tick_period(Duration::ZERO);
        }
        if let Some(upstream) = self.call.clone() {
            let headers = vec![
                (":method", "GET"),
                (":path", "/tick"),
                (":authority", &upstream),
            ];
            let timeout = Duration::from_secs(1);
            if let Err(status) = self.dispatch_http_call(&upstream, headers, None, vec![], timeout)
            {
                store("ticks.call", &format!("refused:{}", status_name(status)));
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Reader))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Reader;

impl Context for Reader {}

impl HttpContext for Reader {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let ticks = shared_text("ticks.count").unwrap_or_else(|| "0".to_string());
        self.set_http_request_header("x-ticks", Some(&ticks));
        self.set_http_request_header("x-tick-call", Some(&or_none(shared_text("ticks.call"))));
        let after_2020 = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .is_ok_and(|d| d.as_secs() > 1_577_836_800);
        self.set_http_request_header("x-clock-ok", Some(&after_2020.to_string()));
        Action::Continue
    }
}
