//! Ending a stream: `proxy_on_log`, `proxy_on_done` and `proxy_on_delete` in one entry into
//! wasm.
//!
//! Every call from the host into a guest pays a fixed price in wasmtime (trap handler set-up,
//! the stack limit, thread-local state), and these three callbacks always run back to back for
//! one context. So each Vm gets a second, tiny instance in its store, the *sequencer*, whose
//! only function imports the guest's three exports and calls them in order: one host entry
//! instead of three. Wasm-to-wasm calls between instances are plain calls.
//!
//! Nothing a filter can observe changes: the same callbacks run in the same order with the
//! same arguments, and `proxy_on_delete` still runs whatever `proxy_on_done` answered (as
//! [`Vm::finish_stream`] does), unless `proxy_on_done` returns something that is not a bool.
//! A fault names the callback that was running: the sequencer notes it in a global before
//! each call. The three share one callback deadline.

use wasmtime::{Engine, Global, Instance, Module, Store, TypedFunc, Val};

use super::Vm;
use crate::error::Fault;
use crate::state::HostState;
use crate::stream::Stream;

/// The sequencer. `phase` is the index in [`CALLBACKS`] of the callback running.
const SEQUENCER: &str = r#"
(module
  (import "guest" "proxy_on_log" (func $log (param i32)))
  (import "guest" "proxy_on_done" (func $done (param i32) (result i32)))
  (import "guest" "proxy_on_delete" (func $delete (param i32)))
  (global $phase (export "phase") (mut i32) (i32.const 0))
  (func (export "end") (param $ctx i32) (result i32)
    (local $done i32)
    (global.set $phase (i32.const 0))
    (call $log (local.get $ctx))
    (global.set $phase (i32.const 1))
    (local.set $done (call $done (local.get $ctx)))
    (if (i32.gt_u (local.get $done) (i32.const 1))
      (then (return (local.get $done))))
    (global.set $phase (i32.const 2))
    (call $delete (local.get $ctx))
    (local.get $done)))
"#;

/// The guest exports the sequencer calls, by `phase`.
const CALLBACKS: [&str; 3] = ["proxy_on_log", "proxy_on_done", "proxy_on_delete"];

/// Compiles the sequencer, once per runtime (under a millisecond: three calls).
pub(crate) fn compile(engine: &Engine) -> wasmtime::Result<Module> {
    Module::new(engine, SEQUENCER)
}

/// A Vm's sequencer instance.
pub(super) struct Sequencer {
    end: TypedFunc<i32, i32>,
    phase: Global,
}

impl Sequencer {
    /// Instantiates the sequencer over the guest's three exports, or `None` when the guest
    /// lacks one of them (the Vm then calls them one by one).
    pub(super) fn new(
        store: &mut Store<HostState>,
        module: &Module,
        log: Option<&TypedFunc<i32, ()>>,
        done: Option<&TypedFunc<i32, i32>>,
        delete: Option<&TypedFunc<i32, ()>>,
    ) -> wasmtime::Result<Option<Sequencer>> {
        let (Some(log), Some(done), Some(delete)) = (log, done, delete) else {
            return Ok(None);
        };
        let imports = [
            (*log.func()).into(),
            (*done.func()).into(),
            (*delete.func()).into(),
        ];
        let instance = Instance::new(&mut *store, module, &imports)?;
        let end = instance.get_typed_func(&mut *store, "end")?;
        let phase = instance
            .get_global(&mut *store, "phase")
            .ok_or_else(|| wasmtime::Error::msg("sequencer without its phase global"))?;
        Ok(Some(Sequencer { end, phase }))
    }
}

impl Vm {
    /// Ends a stream: `proxy_on_log`, then `proxy_on_done` and `proxy_on_delete` (the context
    /// id is dead afterwards), in one entry into the guest when it exports all three.
    ///
    /// # Errors
    /// A [`Fault`] naming the callback that failed; the Vm is then broken.
    pub fn end_stream(&mut self, s: &mut Stream) -> Result<(), Fault> {
        s.info.end.get_or_insert_with(std::time::Instant::now);
        let Some(seq) = &self.cb.sequencer else {
            self.on_log(s)?;
            return self.finish_stream(s);
        };
        self.core.check(CALLBACKS[0])?;
        self.core.with_stream(s, |core, ctx| {
            let done = core
                .call(CALLBACKS[0], &seq.end, ctx)
                .map_err(|mut fault| {
                    let phase = match seq.phase.get(&mut core.store) {
                        Val::I32(p) => p as usize,
                        _ => 0,
                    };
                    fault.callback = CALLBACKS.get(phase).copied().unwrap_or(CALLBACKS[0]);
                    fault
                })?;
            core.done_answer(done)
        })
    }
}
