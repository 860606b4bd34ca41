//! Prometheus metrics, exposed on the admin port at `/metrics`.
//!
//! The request path only does relaxed atomic adds on counters that were
//! created when the configuration loaded (no map lookup, no lock: the
//! usual metric families of prometheus-client take a lock per update).
//! At scrape time a [`Collector`] walks the stats and the filters' own
//! metrics and encodes them with prometheus-client's text encoder.
//!
//! Families: `wasmgate_route_requests_total{route,status}` (status class),
//! `wasmgate_route_request_duration_seconds{route}` (histogram),
//! `wasmgate_upstream_*_total{upstream}`, `wasmgate_endpoint_*{upstream,endpoint}`
//! (upstreams with several endpoints or retries), `wasmgate_filter_failures_total{filter}`,
//! `wasmgate_filter_vm_replaced_total{filter}`,
//! `wasmgate_access_log_dropped_lines_total`, and each filter-defined metric
//! as `wasmgate_wasm_<name>{filter}`.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
};

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A lock-free latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// (sum in seconds, count, per-bucket counts): the encoder makes them
    /// cumulative.
    fn buckets(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut total = 0;
        let mut buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(&bound, n)| {
                let n = n.load(Ordering::Relaxed);
                total += n;
                (bound, n)
            })
            .collect();
        let count = self.count.load(Ordering::Relaxed);
        buckets.push((f64::INFINITY, count.saturating_sub(total)));
        (
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count,
            buckets,
        )
    }
}

/// Per-route counters.
#[derive(Debug, Default)]
pub struct RouteStats {
    /// Responses by status class: index 1..=5 for 1xx..5xx, 0 for other.
    pub statuses: [AtomicU64; 6],
    /// Time from request to response headers.
    pub latency: Histogram,
}

impl RouteStats {
    /// Counts a finished request.
    pub fn record(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100);
        self.statuses[if (1..=5).contains(&class) { class } else { 0 }]
            .fetch_add(1, Ordering::Relaxed);
        self.latency.observe(elapsed);
    }
}

/// Per-upstream counters.
#[derive(Debug, Default)]
pub struct UpstreamStats {
    /// Requests sent (including filters' http calls).
    pub requests: AtomicU64,
    /// Connections opened.
    pub connections: AtomicU64,
    /// Failed connection attempts (502).
    pub connect_failures: AtomicU64,
    /// Responses that did not come in time (504).
    pub timeouts: AtomicU64,
    /// Exchanges broken after connecting (502).
    pub failures: AtomicU64,
    /// Idle pooled connections closed because the upstream had sent bytes
    /// (or closed) after its last response.
    pub discarded: AtomicU64,
    /// Times a request waited because the worker had `max_connections`
    /// open to the upstream.
    pub waited: AtomicU64,
    /// Retries refused because the retry budget was spent.
    pub retry_budget_exhausted: AtomicU64,
}

/// One endpoint's counters and its health, shared by every worker and kept
/// across reloads (by upstream name and address).
#[derive(Debug, Default)]
pub struct EndpointStats {
    /// Tries sent to the endpoint (first tries and retries).
    pub requests: AtomicU64,
    /// Tries that failed (connect, broken exchange, timeout, 5xx).
    pub failures: AtomicU64,
    /// Retries sent to the endpoint.
    pub retries: AtomicU64,
    /// Times the endpoint was ejected for consecutive failures.
    pub ejections: AtomicU64,
    /// Tries waiting for their response headers (`least_request` reads it).
    pub active: AtomicU64,
    /// Active health checks and outlier ejection.
    pub health: crate::upstream::Health,
}

/// Per-filter counters.
#[derive(Debug, Default)]
pub struct FilterStats {
    /// Streams on which the filter failed (trap, deadline, ...).
    pub failures: AtomicU64,
    /// Broken instances replaced by fresh ones.
    pub vm_replaced: AtomicU64,
}

/// Requests that matched no route.
#[derive(Debug, Default)]
pub struct GlobalStats {
    /// 404s for lack of a route.
    pub no_route: AtomicU64,
    /// Configuration reloads that succeeded.
    pub reloads: AtomicU64,
    /// Configuration reloads that were rejected.
    pub reload_failures: AtomicU64,
}

/// Filter-defined metrics of the loaded plugins, read at scrape time.
pub trait FilterMetricsSource: Send + Sync + std::fmt::Debug {
    /// (filter name, samples) for every loaded filter.
    fn filter_metrics(&self) -> Vec<(String, Vec<wasmgate_abi::MetricSample>)>;
}

/// All stats, by name. Survives reloads so counters keep counting; the
/// mutexes are taken when a configuration loads and at scrape, never per
/// request.
#[derive(Debug, Default)]
pub struct Stats {
    routes: Mutex<BTreeMap<String, Arc<RouteStats>>>,
    upstreams: Mutex<BTreeMap<String, Arc<UpstreamStats>>>,
    /// By (upstream, address).
    endpoints: Mutex<BTreeMap<(String, String), Arc<EndpointStats>>>,
    filters: Mutex<BTreeMap<String, Arc<FilterStats>>>,
    /// Process-wide counters.
    pub global: GlobalStats,
}

fn entry<T: Default>(map: &Mutex<BTreeMap<String, Arc<T>>>, name: &str) -> Arc<T> {
    let mut map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    map.entry(name.to_string()).or_default().clone()
}

fn snapshot<T>(map: &Mutex<BTreeMap<String, Arc<T>>>) -> Vec<(String, Arc<T>)> {
    let map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl Stats {
    /// The counters of a route (created on first use).
    pub fn route(&self, name: &str) -> Arc<RouteStats> {
        entry(&self.routes, name)
    }

    /// The counters of an upstream.
    pub fn upstream(&self, name: &str) -> Arc<UpstreamStats> {
        entry(&self.upstreams, name)
    }

    /// The counters and health of an endpoint (created on first use; an
    /// endpoint that stays across a reload keeps them).
    pub fn endpoint(&self, upstream: &str, address: &str) -> Arc<EndpointStats> {
        let mut map = self
            .endpoints
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Forget endpoints no configuration holds any more.
        map.retain(|_, e| Arc::strong_count(e) > 1);
        map.entry((upstream.to_string(), address.to_string()))
            .or_default()
            .clone()
    }

    /// The counters of a filter (`route/index`).
    pub fn filter(&self, name: &str) -> Arc<FilterStats> {
        entry(&self.filters, name)
    }
}

/// Encodes [`Stats`] plus the filters' own metrics on each scrape.
#[derive(Debug)]
pub struct StatsCollector {
    /// The stats.
    pub stats: Arc<Stats>,
    /// Where the filter-defined metrics come from (the live configuration).
    pub filters: Arc<dyn FilterMetricsSource>,
}

type Enc<'a> = DescriptorEncoder<'a>;

fn counter(
    enc: &mut Enc<'_>,
    name: &str,
    help: &str,
    rows: &[(Vec<(&str, &str)>, u64)],
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in rows {
        m.encode_family(labels)?
            .encode_counter::<NoLabelSet, _, u64>(value, None)?;
    }
    Ok(())
}

impl Collector for StatsCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        const CLASSES: [&str; 6] = ["other", "1xx", "2xx", "3xx", "4xx", "5xx"];
        let routes = snapshot(&self.stats.routes);
        let mut rows = Vec::new();
        for (name, r) in &routes {
            for (class, n) in CLASSES.iter().zip(&r.statuses) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    rows.push((vec![("route", name.as_str()), ("status", *class)], n));
                }
            }
        }
        counter(
            &mut enc,
            "wasmgate_route_requests",
            "Requests answered, by route and status class",
            &rows,
        )?;
        {
            let mut m = enc.encode_descriptor(
                "wasmgate_route_request_duration_seconds",
                "Time from request to response headers, by route",
                None,
                MetricType::Histogram,
            )?;
            for (name, r) in &routes {
                let (sum, count, buckets) = r.latency.buckets();
                m.encode_family(&[("route", name.as_str())])?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
        }
        let no_route = self.stats.global.no_route.load(Ordering::Relaxed);
        counter(
            &mut enc,
            "wasmgate_no_route_requests",
            "Requests that matched no route (404)",
            &[(vec![], no_route)],
        )?;
        let reloads = self.stats.global.reloads.load(Ordering::Relaxed);
        counter(
            &mut enc,
            "wasmgate_reloads",
            "Configuration reloads applied",
            &[(vec![], reloads)],
        )?;
        let failed = self.stats.global.reload_failures.load(Ordering::Relaxed);
        counter(
            &mut enc,
            "wasmgate_reload_failures",
            "Configuration reloads rejected",
            &[(vec![], failed)],
        )?;
        counter(
            &mut enc,
            "wasmgate_access_log_dropped_lines",
            "Access log lines dropped because the writer could not keep up",
            &[(vec![], crate::access_log::writer::dropped_lines())],
        )?;

        let upstreams = snapshot(&self.stats.upstreams);
        type Pick = fn(&UpstreamStats) -> &AtomicU64;
        let families: [(&str, &str, Pick); 8] = [
            (
                "wasmgate_upstream_requests",
                "Requests sent to the upstream",
                |u| &u.requests,
            ),
            ("wasmgate_upstream_connections", "Connections opened", |u| {
                &u.connections
            }),
            (
                "wasmgate_upstream_connect_failures",
                "Failed connection attempts",
                |u| &u.connect_failures,
            ),
            (
                "wasmgate_upstream_timeouts",
                "Responses whose head (timeout) or next body bytes (read_timeout) did not come in time",
                |u| &u.timeouts,
            ),
            (
                "wasmgate_upstream_failures",
                "Exchanges broken after connecting",
                |u| &u.failures,
            ),
            (
                "wasmgate_upstream_discarded_connections",
                "Idle connections closed because the upstream sent bytes after its response",
                |u| &u.discarded,
            ),
            (
                "wasmgate_upstream_connection_waits",
                "Times a request waited for a connection (max_connections reached)",
                |u| &u.waited,
            ),
            (
                "wasmgate_upstream_retry_budget_exhausted",
                "Retries not sent because the retry budget was spent",
                |u| &u.retry_budget_exhausted,
            ),
        ];
        for (metric, help, pick) in families {
            let rows: Vec<_> = upstreams
                .iter()
                .map(|(n, u)| {
                    (
                        vec![("upstream", n.as_str())],
                        pick(u).load(Ordering::Relaxed),
                    )
                })
                .collect();
            counter(&mut enc, metric, help, &rows)?;
        }

        self.encode_endpoints(&mut enc)?;

        let filters = snapshot(&self.stats.filters);
        let rows: Vec<_> = filters
            .iter()
            .map(|(n, f)| {
                (
                    vec![("filter", n.as_str())],
                    f.failures.load(Ordering::Relaxed),
                )
            })
            .collect();
        counter(
            &mut enc,
            "wasmgate_filter_failures",
            "Streams on which a filter failed",
            &rows,
        )?;
        let rows: Vec<_> = filters
            .iter()
            .map(|(n, f)| {
                (
                    vec![("filter", n.as_str())],
                    f.vm_replaced.load(Ordering::Relaxed),
                )
            })
            .collect();
        counter(
            &mut enc,
            "wasmgate_filter_vm_replaced",
            "Broken filter instances replaced",
            &rows,
        )?;

        encode_filter_metrics(&mut enc, self.filters.filter_metrics())
    }
}

impl StatsCollector {
    /// `wasmgate_endpoint_*{upstream,endpoint}` for the endpoints in use.
    fn encode_endpoints(&self, enc: &mut Enc<'_>) -> std::fmt::Result {
        let endpoints: Vec<_> = {
            let map = self
                .stats
                .endpoints
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            map.iter()
                .filter(|(_, e)| Arc::strong_count(e) > 1)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let labels = |(upstream, endpoint): &(String, String)| {
            vec![
                ("upstream", upstream.clone()),
                ("endpoint", endpoint.clone()),
            ]
        };
        type Pick = fn(&EndpointStats) -> &AtomicU64;
        let counters: [(&str, &str, Pick); 4] = [
            (
                "wasmgate_endpoint_requests",
                "Tries sent to the endpoint",
                |e| &e.requests,
            ),
            (
                "wasmgate_endpoint_failures",
                "Tries that failed (connect, reset, timeout, 5xx)",
                |e| &e.failures,
            ),
            (
                "wasmgate_endpoint_retries",
                "Retries sent to the endpoint",
                |e| &e.retries,
            ),
            (
                "wasmgate_endpoint_ejections",
                "Times the endpoint was ejected for consecutive failures",
                |e| &e.ejections,
            ),
        ];
        for (metric, help, pick) in counters {
            let mut m = enc.encode_descriptor(metric, help, None, MetricType::Counter)?;
            for (key, e) in &endpoints {
                m.encode_family(&labels(key))?
                    .encode_counter::<NoLabelSet, _, u64>(&pick(e).load(Ordering::Relaxed), None)?;
            }
        }
        let now = crate::upstream::Health::now();
        type Gauge = fn(&EndpointStats, u64) -> i64;
        let gauges: [(&str, &str, Gauge); 3] = [
            (
                "wasmgate_endpoint_healthy",
                "1 while the endpoint passes its active health checks",
                |e, _| i64::from(e.health.is_healthy()),
            ),
            (
                "wasmgate_endpoint_ejected",
                "1 while the endpoint is ejected for consecutive failures",
                |e, now| i64::from(e.health.is_ejected(now)),
            ),
            (
                "wasmgate_endpoint_active_requests",
                "Tries waiting for their response headers",
                |e, _| i64::try_from(e.active.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
            ),
        ];
        for (metric, help, value) in gauges {
            let mut m = enc.encode_descriptor(metric, help, None, MetricType::Gauge)?;
            for (key, e) in &endpoints {
                m.encode_family(&labels(key))?
                    .encode_gauge(&value(e, now))?;
            }
        }
        Ok(())
    }
}

/// A filter-defined metric name made safe for Prometheus.
fn metric_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("wasmgate_wasm_{clean}")
}

fn encode_filter_metrics(
    enc: &mut Enc<'_>,
    plugins: Vec<(String, Vec<wasmgate_abi::MetricSample>)>,
) -> std::fmt::Result {
    use wasmgate_abi::MetricKind;
    // Group by metric so each family is described once.
    // metric name -> (kind, [(filter, value, count)])
    type Rows = Vec<(String, i64, u64)>;
    let mut by_metric: BTreeMap<String, (MetricKind, Rows)> = BTreeMap::new();
    for (filter, samples) in plugins {
        for s in samples {
            let slot = by_metric
                .entry(metric_name(&s.name))
                .or_insert_with(|| (s.kind, Vec::new()));
            slot.1.push((filter.clone(), s.value, s.count));
        }
    }
    for (name, (kind, rows)) in &by_metric {
        let help = "Defined by the filter";
        match kind {
            MetricKind::Counter => {
                let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
                for (filter, value, _) in rows {
                    let v = u64::try_from(*value).unwrap_or(0);
                    m.encode_family(&[("filter", filter.as_str())])?
                        .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
                }
            }
            MetricKind::Gauge => {
                let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
                for (filter, value, _) in rows {
                    m.encode_family(&[("filter", filter.as_str())])?
                        .encode_gauge(value)?;
                }
            }
            MetricKind::Histogram => {
                let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
                for (filter, sum, count) in rows {
                    m.encode_family(&[("filter", filter.as_str())])?
                        .encode_histogram::<NoLabelSet>(
                            *sum as f64,
                            *count,
                            &[(f64::INFINITY, *count)],
                            None,
                        )?;
                }
            }
        }
    }
    Ok(())
}

/// Renders everything as Prometheus text.
pub fn render(collector: StatsCollector) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(collector));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}
