//! What every worker and the admin endpoint share: the live configuration
//! (swapped whole on reload), counters that survive reloads, and the wasm
//! engine.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use arc_swap::ArcSwap;
use wasmgate_abi::Runtime;

use crate::{
    config::{Config, ConfigErrors},
    metrics::{FilterMetricsSource, Stats},
    snapshot::Snapshot,
};

/// State every worker and the admin endpoint share.
pub struct Shared {
    /// The live configuration; requests load it, reloads swap it.
    pub snapshot: ArcSwap<Snapshot>,
    /// Counters that survive reloads.
    pub stats: Arc<Stats>,
    /// The wasm engine (compiled modules are reused across reloads).
    pub runtime: Runtime,
    /// The file `reload` re-reads; None for a configuration given in memory.
    pub config_path: Option<PathBuf>,
    pub(crate) draining: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config_path", &self.config_path)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Loads a new configuration (the given one, or the file again) and
    /// swaps it in. In-flight requests finish on the old one. On error
    /// nothing changes.
    ///
    /// # Errors
    /// Every problem with the new configuration.
    pub fn reload(&self, config: Option<Config>) -> Result<u64, ConfigErrors> {
        let result = match (config, &self.config_path) {
            (Some(c), _) => c.validate(),
            (None, Some(path)) => Config::load(path),
            (None, None) => Err(ConfigErrors::new(vec![
                "no configuration file to reload".into(),
            ])),
        }
        .and_then(|c| {
            let old = self.snapshot.load();
            if c.listeners.iter().map(|l| &l.address).ne(old
                .config
                .listeners
                .iter()
                .map(|l| &l.address))
            {
                tracing::warn!("listener changes take effect only after a restart");
            }
            let built = Snapshot::build(c, &self.runtime, &self.stats);
            crate::after_load();
            built
        });
        match result {
            Ok(snapshot) => {
                for warning in &snapshot.warnings {
                    tracing::warn!("{warning}");
                }
                let generation = snapshot.generation;
                snapshot.start_background();
                self.snapshot.store(Arc::new(snapshot));
                self.stats.global.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(generation, "configuration reloaded");
                Ok(generation)
            }
            Err(errors) => {
                self.stats
                    .global
                    .reload_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    "reload rejected, the previous configuration keeps serving:\n{errors}"
                );
                Err(errors)
            }
        }
    }
}

impl FilterMetricsSource for Shared {
    fn filter_metrics(&self) -> Vec<(String, Vec<wasmgate_abi::MetricSample>)> {
        let snapshot = self.snapshot.load();
        snapshot
            .plugins()
            .map(|f| (f.name.clone(), f.plugin.metrics()))
            .collect()
    }
}
