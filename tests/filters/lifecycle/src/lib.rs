//! Test filter `lifecycle.wasm`: the order of every context callback, logging
//! at each level, and the calls a host may leave unimplemented.
//!
//! Every callback appends `<event>` (root) or `<event>:<context id>` (stream)
//! to shared data `lifecycle.events` (comma separated) and logs
//! `lifecycle: <event>` at info. Events: `vm_start`, `configure`, `create`,
//! `request_headers`, `request_body`, `request_trailers`, `response_headers`,
//! `response_body`, `response_trailers`, `log`, `done`, and `root_done`.
//!
//! `on_configure` also logs `level <name>` once at each of the six levels (and so
//! does a request with header `x-log-levels`, as `stream level <name>`),
//! and records the host's log level (`proxy_get_log_level`) in shared data
//! `lifecycle.log_level`. The VM and plugin configuration sizes seen are
//! stored as `lifecycle.sizes` = `<vm>,<plugin>`.
//!
//! Response headers: `x-lifecycle` (this stream's events so far),
//! `x-lifecycle-root` (the root's events) and `x-log-level`.
//!
//! A request header `x-probe: 1` also calls the gRPC, foreign-function and
//! effective-context host functions with arguments no host can satisfy, and
//! adds `x-probe-<call>: <outcome>` request headers: `grpc-call`,
//! `grpc-stream`, `grpc-send`, `grpc-cancel`, `grpc-close`, `foreign`,
//! `get-status` (`<code>:<message>` of `proxy_get_status`),
//! `effective-self` (`ok` expected) and `effective-bogus` (`BadArgument`).
//! A request header `x-probe-done: 1` calls `proxy_done` and adds
//! `x-probe-done-result: ok` (the SDK traps on any other status).

use filter_common::status_name;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, Status};
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Logs `<prefix> <level>` once at each of the six levels.
fn log_every_level(prefix: &str) {
    for (level, name) in [
        (LogLevel::Trace, "trace"),
        (LogLevel::Debug, "debug"),
        (LogLevel::Info, "info"),
        (LogLevel::Warn, "warn"),
        (LogLevel::Error, "error"),
        (LogLevel::Critical, "critical"),
    ] {
        hostcalls::log(level, &format!("{prefix} {name}")).ok();
    }
}

fn record(event: &str) {
    let key = "lifecycle.events";
    let mut events = match hostcalls::get_shared_data(key) {
        Ok((Some(bytes), _)) => String::from_utf8_lossy(&bytes).into_owned(),
        _ => String::new(),
    };
    if !events.is_empty() {
        events.push(',');
    }
    events.push_str(event);
    hostcalls::set_shared_data(key, Some(events.as_bytes()), None).ok();
    hostcalls::log(LogLevel::Info, &format!("lifecycle: {event}")).ok();
}

#[derive(Default)]
struct Root {
    events: Vec<String>,
    vm_config_size: usize,
}

impl Root {
    fn event(&mut self, event: &str) {
        record(event);
        self.events.push(event.to_string());
    }
}

impl Context for Root {
    fn on_done(&mut self) -> bool {
        self.event("root_done");
        true
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, vm_configuration_size: usize) -> bool {
        self.vm_config_size = vm_configuration_size;
        self.event("vm_start");
        true
    }

    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        self.event("configure");
        let sizes = format!("{},{}", self.vm_config_size, plugin_configuration_size);
        hostcalls::set_shared_data("lifecycle.sizes", Some(sizes.as_bytes()), None).ok();
        log_every_level("level");
        let level = match hostcalls::get_log_level() {
            Ok(level) => format!("{level:?}"),
            Err(status) => status_name(status),
        };
        hostcalls::set_shared_data("lifecycle.log_level", Some(level.as_bytes()), None).ok();
        true
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let mut stream = Stream {
            id: context_id,
            events: Vec::new(),
            root_events: self.events.join(","),
        };
        stream.event("create");
        Some(Box::new(stream))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    id: u32,
    events: Vec<String>,
    root_events: String,
}

impl Stream {
    fn event(&mut self, event: &str) {
        record(&format!("{event}:{}", self.id));
        self.events.push(event.to_string());
    }

    fn probe(&self) -> Vec<(&'static str, String)> {
        fn outcome<T>(r: Result<T, Status>) -> String {
            r.map_or_else(status_name, |_| "ok".to_string())
        }
        let timeout = Duration::from_secs(1);
        vec![
            (
                "x-probe-grpc-call",
                outcome(hostcalls::dispatch_grpc_call(
                    "wasmgate-no-such-cluster",
                    "svc",
                    "method",
                    vec![],
                    None,
                    timeout,
                )),
            ),
            (
                "x-probe-grpc-stream",
                outcome(hostcalls::open_grpc_stream(
                    "wasmgate-no-such-cluster",
                    "svc",
                    "method",
                    vec![],
                )),
            ),
            (
                "x-probe-grpc-send",
                outcome(hostcalls::send_grpc_stream_message(4242, None, true)),
            ),
            (
                "x-probe-grpc-cancel",
                outcome(hostcalls::cancel_grpc_call(4242)),
            ),
            (
                "x-probe-grpc-close",
                outcome(hostcalls::close_grpc_stream(4242)),
            ),
            (
                "x-probe-foreign",
                outcome(hostcalls::call_foreign_function(
                    "wasmgate_no_such_function",
                    None,
                )),
            ),
            (
                "x-probe-get-status",
                hostcalls::get_grpc_status().map_or_else(status_name, |(code, msg)| {
                    format!("{code}:{}", msg.unwrap_or_default())
                }),
            ),
            (
                "x-probe-effective-self",
                outcome(hostcalls::set_effective_context(self.id)),
            ),
            (
                "x-probe-effective-bogus",
                outcome(hostcalls::set_effective_context(0x7fff_fff0)),
            ),
        ]
    }
}

impl Context for Stream {
    fn on_done(&mut self) -> bool {
        self.event("done");
        true
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.event("request_headers");
        if self.get_http_request_header("x-log-levels").is_some() {
            log_every_level("stream level");
        }
        if self.get_http_request_header("x-probe").is_some() {
            for (name, value) in self.probe() {
                self.set_http_request_header(name, Some(&value));
            }
        }
        if self.get_http_request_header("x-probe-done").is_some() {
            // Only meaningful after a deferred on_done; hosts may refuse it otherwise
            // (Envoy answers NotFound, which makes the SDK panic).
            self.done();
            self.set_http_request_header("x-probe-done-result", Some("ok"));
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        self.event("request_body");
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.event("request_trailers");
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.event("response_headers");
        let level = match hostcalls::get_log_level() {
            Ok(level) => format!("{level:?}"),
            Err(status) => status_name(status),
        };
        let events = self.events.join(",");
        self.set_http_response_header("x-lifecycle", Some(&events));
        self.set_http_response_header("x-lifecycle-root", Some(&self.root_events));
        self.set_http_response_header("x-log-level", Some(&level));
        Action::Continue
    }

    fn on_http_response_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        self.event("response_body");
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.event("response_trailers");
        Action::Continue
    }

    fn on_log(&mut self) {
        self.event("log");
    }
}
