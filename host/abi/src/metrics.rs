//! Metrics a filter defines with `proxy_define_metric`: one `MetricsRegistry` per plugin,
//! shared by all its Vms, with lock-free updates.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::limits::MAX_METRICS;

/// Kind of a filter-defined metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Monotonic counter.
    Counter,
    /// Value that goes up and down.
    Gauge,
    /// Distribution of recorded values (kept as sum and count).
    Histogram,
}

impl MetricKind {
    pub(crate) fn from_code(code: u32) -> Option<MetricKind> {
        match code {
            0 => Some(MetricKind::Counter),
            1 => Some(MetricKind::Gauge),
            2 => Some(MetricKind::Histogram),
            _ => None,
        }
    }
}

/// A snapshot of one metric.
#[derive(Clone, Debug)]
pub struct MetricSample {
    /// Name given by the filter.
    pub name: String,
    /// Its kind.
    pub kind: MetricKind,
    /// Counter/gauge value; for a histogram the sum of recorded values.
    pub value: i64,
    /// Number of histogram observations (0 for counters and gauges).
    pub count: u64,
}

/// One metric's live value.
#[derive(Debug)]
pub(crate) struct Metric {
    pub(crate) name: String,
    pub(crate) kind: MetricKind,
    pub(crate) value: AtomicI64,
    pub(crate) count: AtomicU64,
}

/// Why a metric update was refused (maps to a guest status).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum MetricError {
    NotFound,
    BadArgument,
}

impl Metric {
    pub(crate) fn increment(&self, offset: i64) -> Result<(), MetricError> {
        match self.kind {
            MetricKind::Counter if offset < 0 => Err(MetricError::BadArgument),
            MetricKind::Counter | MetricKind::Gauge => {
                self.value.fetch_add(offset, Ordering::Relaxed);
                Ok(())
            }
            MetricKind::Histogram => Err(MetricError::BadArgument),
        }
    }

    pub(crate) fn record(&self, value: u64) {
        match self.kind {
            MetricKind::Counter | MetricKind::Gauge => {
                self.value.store(value as i64, Ordering::Relaxed)
            }
            MetricKind::Histogram => {
                self.value.fetch_add(value as i64, Ordering::Relaxed);
                self.count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn get(&self) -> Result<u64, MetricError> {
        match self.kind {
            MetricKind::Histogram => Err(MetricError::BadArgument),
            _ => Ok(self.value.load(Ordering::Relaxed) as u64),
        }
    }

    fn sample(&self) -> MetricSample {
        MetricSample {
            name: self.name.clone(),
            kind: self.kind,
            value: self.value.load(Ordering::Relaxed),
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

/// All metrics of one plugin. Ids are indexes + 1 (0 is never a valid id); the same
/// (name, kind) always gets the same id, so every Vm of the plugin shares the metric.
#[derive(Debug, Default)]
pub(crate) struct MetricsRegistry {
    inner: RwLock<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    metrics: Vec<Arc<Metric>>,
    by_name: HashMap<(String, MetricKind), u32>,
}

impl MetricsRegistry {
    /// Defines (or finds) a metric; `None` when the plugin has too many.
    pub(crate) fn define(&self, kind: MetricKind, name: &str) -> Option<(u32, Arc<Metric>)> {
        let mut reg = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = reg.by_name.get(&(name.to_string(), kind)) {
            let id = *id;
            return Some((id, reg.metrics[(id - 1) as usize].clone()));
        }
        if reg.metrics.len() >= MAX_METRICS {
            return None;
        }
        let metric = Arc::new(Metric {
            name: name.to_string(),
            kind,
            value: AtomicI64::new(0),
            count: AtomicU64::new(0),
        });
        reg.metrics.push(metric.clone());
        let id = reg.metrics.len() as u32;
        reg.by_name.insert((name.to_string(), kind), id);
        Some((id, metric))
    }

    pub(crate) fn get(&self, id: u32) -> Option<Arc<Metric>> {
        let reg = self.inner.read().unwrap_or_else(|e| e.into_inner());
        id.checked_sub(1)
            .and_then(|i| reg.metrics.get(i as usize))
            .cloned()
    }

    pub(crate) fn samples(&self) -> Vec<MetricSample> {
        let reg = self.inner.read().unwrap_or_else(|e| e.into_inner());
        reg.metrics.iter().map(|m| m.sample()).collect()
    }
}

/// A Vm's cache of metric handles, so updates skip the registry lock.
#[derive(Debug, Default)]
pub(crate) struct MetricCache {
    handles: Vec<Option<Arc<Metric>>>,
}

impl MetricCache {
    pub(crate) fn insert(&mut self, id: u32, metric: Arc<Metric>) {
        let i = id as usize;
        if self.handles.len() <= i {
            self.handles.resize(i + 1, None);
        }
        self.handles[i] = Some(metric);
    }

    pub(crate) fn lookup(&mut self, id: u32, registry: &MetricsRegistry) -> Option<&Arc<Metric>> {
        let i = id as usize;
        if self.handles.get(i).is_none_or(|h| h.is_none()) {
            let metric = registry.get(id)?;
            self.insert(id, metric);
        }
        self.handles[i].as_ref()
    }
}
