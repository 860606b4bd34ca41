//! Test filter `queues.wasm`: shared queues and `on_queue_ready`.
//!
//! Configuration: `queue=<name>` (default `events`).
//!
//! Root: `on_configure` registers the queue, resolves it again by this VM's
//! id (`plugin_vm_id`) and resolves an unknown queue. It stores in shared data
//! `queues.resolve` = `same` or `different`, and `queues.unknown` = `none` or
//! `found`. `on_queue_ready` drains the queue and appends each item to shared
//! data `queues.received` (comma separated), stores the number of ready
//! events in `queues.ready`, and the status of a dequeue from an unknown
//! queue id in `queues.bogus` (`NotFound` expected).
//!
//! Request headers: enqueues the request path and adds `x-queue-enqueue`
//! (`ok` or the status), `x-queue-bogus` (enqueue to an unknown id:
//! `NotFound` expected), and copies of the shared-data entries above as
//! `x-queue-received`, `x-queue-ready`, `x-queue-resolve`, `x-queue-unknown`
//! (as they were before this request's item was delivered).

use filter_common::{Config, or_none, status_name};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

const BOGUS_QUEUE: u32 = 0x7fff_fff0;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Root {
    queue: Option<u32>,
    ready_events: u64,
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

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = Config::parse(self.get_plugin_configuration().as_deref());
        let name = config.get("queue").unwrap_or("events").to_string();
        let queue = self.register_shared_queue(&name);
        let vm_id = self
            .get_property(vec!["plugin_vm_id"])
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let resolved = self.resolve_shared_queue(&vm_id, &name);
        store(
            "queues.resolve",
            if resolved == Some(queue) {
                "same"
            } else {
                "different"
            },
        );
        let unknown = self.resolve_shared_queue(&vm_id, "wasmgate-no-such-queue");
        store(
            "queues.unknown",
            if unknown.is_none() { "none" } else { "found" },
        );
        self.queue = Some(queue);
        true
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        self.ready_events += 1;
        let mut received = shared_text("queues.received").unwrap_or_default();
        while let Ok(Some(item)) = self.dequeue_shared_queue(queue_id) {
            if !received.is_empty() {
                received.push(',');
            }
            received.push_str(&String::from_utf8_lossy(&item));
        }
        store("queues.received", &received);
        store("queues.ready", &self.ready_events.to_string());
        let bogus = match self.dequeue_shared_queue(BOGUS_QUEUE) {
            Ok(_) => "ok".to_string(),
            Err(status) => status_name(status),
        };
        store("queues.bogus", &bogus);
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Producer { queue: self.queue? }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Producer {
    queue: u32,
}

impl Context for Producer {}

impl HttpContext for Producer {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let enqueue = match self.enqueue_shared_queue(self.queue, Some(path.as_bytes())) {
            Ok(()) => "ok".to_string(),
            Err(status) => status_name(status),
        };
        let bogus = match self.enqueue_shared_queue(BOGUS_QUEUE, Some(b"x")) {
            Ok(()) => "ok".to_string(),
            Err(status) => status_name(status),
        };
        let seen = [
            ("x-queue-enqueue", enqueue),
            ("x-queue-bogus", bogus),
            ("x-queue-received", or_none(shared_text("queues.received"))),
            ("x-queue-ready", or_none(shared_text("queues.ready"))),
            ("x-queue-resolve", or_none(shared_text("queues.resolve"))),
            ("x-queue-unknown", or_none(shared_text("queues.unknown"))),
            (
                "x-queue-dequeue-bogus",
                or_none(shared_text("queues.bogus")),
            ),
        ];
        for (name, value) in &seen {
            self.set_http_request_header(name, Some(value));
        }
        Action::Continue
    }
}
