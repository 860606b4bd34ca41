//! Test filter `hostile.wasm`: misbehaviour on demand, to prove that the host
//! contains a bad filter.
//!
//! Configuration: entries `<what>@<where>` (`;`-separated), e.g.
//! `loop@request_headers`. `<what>` is one of
//! - `trap`: a Rust panic (the SDK logs it at critical, then the module traps);
//! - `loop`: an endless loop;
//! - `oom`: allocates 1 MiB blocks until memory runs out;
//! - `recursion`: unbounded recursion until the stack overflows;
//! - `false`: returns false (only meaningful at `vm_start` and `configure`).
//!
//! `<where>` is one of `vm_start`, `configure`, `create`, `request_headers`,
//! `request_body`, `response_headers`, `response_body`, `log`, `done`, `tick`.
//! A `tick` entry also sets a 10 ms tick period.
//!
//! Independently of the configuration, a request header `x-hostile: <what>`
//! makes that request's headers callback misbehave, so one instance can serve
//! good requests before a bad one. Requests that are not told to misbehave
//! get `x-hostile-ok: <n>` added, where n counts the requests this instance
//! has served (1 on a fresh instance).

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Misbehaves as told; returns (for `false` and unknown words) the bool the
/// callback should return.
fn misbehave(what: &str) -> bool {
    match what {
        "trap" => panic!("hostile: trap requested"),
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        }
        "oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![black_box(1u8); 1 << 20]);
                black_box(&hoard);
            }
        }
        "recursion" => black_box(recurse(black_box(0))) == 0,
        _ => false,
    }
}

/// Where the recursion would stop; never reached.
static DEPTH_LIMIT: AtomicU64 = AtomicU64::new(u64::MAX);

/// Recurses until the wasm call stack overflows. The recursive call goes through an
/// opaque function pointer, so the optimizer can neither inline it nor turn it into a
/// loop, and each level keeps its own wasm frame.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == DEPTH_LIMIT.load(Ordering::Relaxed) {
        return depth;
    }
    let next: fn(u64) -> u64 = black_box(recurse);
    next(depth + 1) ^ depth
}

#[derive(Default)]
struct Plan(Vec<(String, String)>);

impl Plan {
    fn parse(bytes: Option<&[u8]>) -> Plan {
        let mut plan = Vec::new();
        let text = bytes.map(String::from_utf8_lossy).unwrap_or_default();
        for entry in text.split([';', '\n']).map(str::trim) {
            if let Some((what, at)) = entry.split_once('@') {
                plan.push((what.to_string(), at.to_string()));
            }
        }
        Plan(plan)
    }

    /// Runs the misbehaviour planned at `at`; false if it says to return false.
    fn at(&self, at: &str) -> bool {
        for (what, place) in &self.0 {
            if place == at {
                return misbehave(what);
            }
        }
        true
    }
}

#[derive(Default)]
struct Root {
    plan: Rc<Plan>,
    served: Rc<Cell<u64>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        let vm_plan = Plan::parse(self.get_vm_configuration().as_deref());
        vm_plan.at("vm_start")
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        self.plan = Rc::new(Plan::parse(self.get_plugin_configuration().as_deref()));
        if self.plan.0.iter().any(|(_, at)| at == "tick") {
            self.set_tick_period(Duration::from_millis(10));
        }
        self.plan.at("configure")
    }

    fn on_tick(&mut self) {
        self.plan.at("tick");
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        self.plan.at("create");
        Some(Box::new(Hostile {
            plan: self.plan.clone(),
            served: self.served.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Hostile {
    plan: Rc<Plan>,
    served: Rc<Cell<u64>>,
}

impl Context for Hostile {
    fn on_done(&mut self) -> bool {
        self.plan.at("done")
    }
}

impl HttpContext for Hostile {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(what) = self.get_http_request_header("x-hostile") {
            misbehave(&what);
        }
        self.plan.at("request_headers");
        self.served.set(self.served.get() + 1);
        let served = self.served.get().to_string();
        self.set_http_request_header("x-hostile-ok", Some(&served));
        Action::Continue
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        self.plan.at("request_body");
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.plan.at("response_headers");
        Action::Continue
    }

    fn on_http_response_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        self.plan.at("response_body");
        Action::Continue
    }

    fn on_log(&mut self) {
        self.plan.at("log");
    }
}
