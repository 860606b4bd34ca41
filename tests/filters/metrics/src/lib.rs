//! Test filter `metrics.wasm`: defining, recording and reading metrics.
//!
//! Root `on_configure` defines three metrics: counter `wasmgate_test_requests`,
//! gauge `wasmgate_test_path_len`, histogram `wasmgate_test_header_count`.
//!
//! Request headers: increments the counter by 1, records the path length in
//! the gauge, then increments the gauge by `-2` (so it ends at len-2), and
//! records the number of request headers in the histogram. It adds request
//! headers `x-metric-requests` (counter read back), `x-metric-path-len` (gauge
//! read back) and `x-metric-bogus` (reading an undefined metric id: the status,
//! `NotFound` expected) and `x-metric-bogus-increment` (incrementing one).

use filter_common::status_name;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

const BOGUS_METRIC: u32 = 0x7fff_fff0;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Clone, Copy, Default)]
struct Ids {
    requests: u32,
    path_len: u32,
    header_count: u32,
}

#[derive(Default)]
struct Root {
    ids: Option<Ids>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let ids = (|| {
            Ok::<_, proxy_wasm::types::Status>(Ids {
                requests: hostcalls::define_metric(MetricType::Counter, "wasmgate_test_requests")?,
                path_len: hostcalls::define_metric(MetricType::Gauge, "wasmgate_test_path_len")?,
                header_count: hostcalls::define_metric(
                    MetricType::Histogram,
                    "wasmgate_test_header_count",
                )?,
            })
        })();
        match ids {
            Ok(ids) => {
                self.ids = Some(ids);
                true
            }
            Err(status) => {
                let msg = format!("metrics: define_metric failed: {status:?}");
                hostcalls::log(LogLevel::Error, &msg).ok();
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Metrics { ids: self.ids? }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Metrics {
    ids: Ids,
}

fn read(id: u32) -> String {
    match hostcalls::get_metric(id) {
        Ok(value) => value.to_string(),
        Err(status) => status_name(status),
    }
}

impl Context for Metrics {}

impl HttpContext for Metrics {
    fn on_http_request_headers(&mut self, num_headers: usize, _end_of_stream: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let ids = self.ids;
        let outcomes = [
            hostcalls::increment_metric(ids.requests, 1),
            hostcalls::record_metric(ids.path_len, path.len() as u64),
            hostcalls::increment_metric(ids.path_len, -2),
            hostcalls::record_metric(ids.header_count, num_headers as u64),
        ];
        let failed: Vec<String> = outcomes
            .iter()
            .filter_map(|r| r.err().map(status_name))
            .collect();
        let bogus_increment = match hostcalls::increment_metric(BOGUS_METRIC, 1) {
            Ok(()) => "ok".to_string(),
            Err(status) => status_name(status),
        };
        let seen = [
            ("x-metric-requests", read(ids.requests)),
            ("x-metric-path-len", read(ids.path_len)),
            ("x-metric-bogus", read(BOGUS_METRIC)),
            ("x-metric-bogus-increment", bogus_increment),
            ("x-metric-failures", failed.join(",")),
        ];
        for (name, value) in &seen {
            self.set_http_request_header(name, Some(value));
        }
        Action::Continue
    }
}
