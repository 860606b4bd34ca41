//! One loaded configuration, ready to serve: routes with their matchers,
//! upstreams with TLS set up, and filter chains with every module compiled
//! and configured. Built by `check`, at start and on each reload; requests
//! read the current one through an `ArcSwap` (no lock).

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use wasmgate_abi::{PluginSpec, Properties, Runtime, WasmSource, properties::encode};

use crate::{
    access_log::AccessLog,
    chain::{Chain, FilterDef},
    config::{Config, ConfigErrors, FilterConfig, LimitsConfig},
    metrics::{RouteStats, Stats},
    route::{Matcher, RouteTable},
    upstream::Upstream,
};

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// A route ready to serve.
pub struct Route {
    /// Name from the configuration.
    pub name: Arc<str>,
    /// Where requests go.
    pub upstream: Arc<Upstream>,
    /// Filters, if any (None: the fast path, no wasm at all).
    pub chain: Option<Arc<Chain>>,
    /// Counters.
    pub stats: Arc<RouteStats>,
}

/// A loaded configuration.
pub struct Snapshot {
    /// Increases with each load.
    pub generation: u64,
    /// The configuration as loaded (for /config, redacted there).
    pub config: Arc<Config>,
    /// Routes in order.
    pub routes: Vec<Route>,
    /// Their matchers, indexed by host.
    pub matchers: RouteTable,
    /// Upstreams by name.
    pub upstreams: Arc<BTreeMap<String, Arc<Upstream>>>,
    /// Client limits.
    pub limits: LimitsConfig,
    /// Access log settings.
    pub access_log: AccessLog,
    /// Process-wide counters (survive reloads).
    pub stats: Arc<Stats>,
    /// Things worth a loud warning at start (cleartext secrets, unset env).
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    /// Builds everything a configuration describes: TLS material, upstreams
    /// and filters (compiled, instantiated once and configured).
    ///
    /// # Errors
    /// Every problem found, each naming the file and the key.
    pub fn build(
        config: Config,
        runtime: &Runtime,
        stats: &Arc<Stats>,
    ) -> Result<Snapshot, ConfigErrors> {
        let source = config.source.clone();
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let mut upstreams = BTreeMap::new();
        for (name, conf) in &config.upstreams {
            match Upstream::build(name, conf, &config, stats) {
                Ok(u) => {
                    upstreams.insert(name.clone(), Arc::new(u));
                }
                Err(e) => errors.push(format!("{source}: {e}")),
            }
        }
        for (i, listener) in config.listeners.iter().enumerate() {
            if let Some(tls) = &listener.tls
                && let Err(e) =
                    crate::tls::server_config(&config.resolve(&tls.cert), &config.resolve(&tls.key))
            {
                errors.push(format!("{source}: listeners[{i}].tls: {e}"));
            }
        }
        let upstreams = Arc::new(upstreams);
        let names: Vec<String> = config.upstreams.keys().cloned().collect();
        let mut routes = Vec::new();
        let mut matchers = Vec::new();
        for (i, rc) in config.routes.iter().enumerate() {
            let key = format!("routes[{i}] {:?}", rc.name);
            let mut filters = Vec::new();
            for (j, fc) in rc.filters.iter().enumerate() {
                let name = fc
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{}/{j}", rc.name));
                let spec = plugin_spec(&config, fc, &name, &names, &mut warnings, &key, j);
                match runtime.load(spec) {
                    Ok(plugin) => filters.push(FilterDef {
                        name: name.clone(),
                        plugin,
                        on_error: fc.on_error,
                        allow_on_headers_stop_iteration: fc.allow_on_headers_stop_iteration,
                        stats: stats.filter(&name),
                    }),
                    Err(e) => errors.push(format!("{source}: {key}.filters[{j}]: {e}")),
                }
            }
            let Some(upstream) = rc.upstream.as_ref().and_then(|u| upstreams.get(u)) else {
                // Reported by validation; only reachable when a caller skipped it.
                errors.push(format!("{source}: {key}.upstream: missing or unknown"));
                continue;
            };
            if !rc.filters.is_empty() && upstream.is_cleartext_off_loopback() {
                warnings.push(format!(
                    "route {:?} runs filters and sends to upstream {:?} over plain http:// off loopback: \
                     an injected secret would cross the network in clear",
                    rc.name, upstream.name
                ));
            }
            let m = rc.matcher.clone().unwrap_or_default();
            matchers.push(Matcher::new(m.host.as_deref(), m.path_prefix.as_deref()));
            let chain = (!filters.is_empty()).then(|| {
                let chain = Chain::new(rc.name.clone(), filters, upstreams.clone());
                // A paused request waits at most the route's own upstream timeout.
                let mut chain = chain.with_pause_timeout(upstream.timeout);
                chain.properties = Arc::new(route_attributes(&rc.name, upstream));
                Arc::new(chain)
            });
            routes.push(Route {
                name: rc.name.as_str().into(),
                upstream: upstream.clone(),
                chain,
                stats: stats.route(&rc.name),
            });
        }
        if !errors.is_empty() {
            // Warnings often explain an error (an unset variable makes a
            // filter refuse its configuration): report them alongside.
            errors.extend(
                warnings
                    .into_iter()
                    .map(|w| format!("{source}: warning: {w}")),
            );
            return Err(ConfigErrors::new(errors));
        }
        Ok(Snapshot {
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            limits: config.limits.clone(),
            access_log: AccessLog::new(&config.access_log),
            config: Arc::new(config),
            routes,
            matchers: RouteTable::new(matchers),
            upstreams,
            warnings,
            stats: stats.clone(),
        })
    }

    /// Starts the upstreams' background work (health checks, DNS refresh)
    /// once this configuration serves; it stops when the snapshot is dropped.
    pub fn start_background(&self) {
        for upstream in self.upstreams.values() {
            upstream.start_background();
        }
    }

    /// Every loaded filter with its plugin (for the filters' own metrics).
    pub fn plugins(&self) -> impl Iterator<Item = &FilterDef> {
        self.routes
            .iter()
            .filter_map(|r| r.chain.as_ref())
            .flat_map(|c| c.filters.iter())
    }
}

/// A filter's configuration value as the bytes the module reads: a string
/// as is, anything else as JSON.
fn config_bytes(value: Option<&serde_json::Value>) -> Vec<u8> {
    match value {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::String(s)) => s.clone().into_bytes(),
        Some(other) => other.to_string().into_bytes(),
    }
}

fn plugin_spec(
    config: &Config,
    fc: &FilterConfig,
    name: &str,
    upstreams: &[String],
    warnings: &mut Vec<String>,
    key: &str,
    j: usize,
) -> PluginSpec {
    let mut spec = PluginSpec::new(name, WasmSource::File(config.resolve(&fc.wasm)));
    spec.plugin_config = config_bytes(fc.config.as_ref());
    spec.vm_config = config_bytes(fc.vm_config.as_ref());
    spec.root_id = fc.root_id.clone().unwrap_or_default();
    spec.upstreams = upstreams.to_vec();
    spec.env = fc
        .env
        .iter()
        .filter_map(|var| {
            match std::env::var(var)
                .ok()
                .or_else(|| fc.env_defaults.get(var).cloned())
            {
                Some(value) => Some((var.clone(), value)),
                None => {
                    warnings.push(format!(
                        "{key}.filters[{j}].env: {var} is not set in the gateway's environment"
                    ));
                    None
                }
            }
        })
        .collect();
    spec
}

/// The attributes of a route for its filters (Envoy's `xds.route_name`,
/// `xds.cluster_name`, `upstream.*`), made once per configuration load and
/// shared by every request on the route.
fn route_attributes(route: &str, upstream: &Upstream) -> Properties {
    let port = i64::from(upstream.port());
    [
        ("xds.route_name", route.as_bytes().to_vec()),
        ("route_name", route.as_bytes().to_vec()),
        ("xds.cluster_name", upstream.name.as_bytes().to_vec()),
        ("cluster_name", upstream.name.as_bytes().to_vec()),
        ("upstream.address", upstream.address().into_bytes()),
        ("upstream.port", encode::int(port)),
    ]
    .into_iter()
    .collect()
}
