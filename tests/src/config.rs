//! Gateway configurations for tests, built rather than pasted: a listener on
//! 127.0.0.1 port 0, upstreams by name, routes and their filters. Every
//! piece is YAML text, so what the builder does not name still fits
//! (`upstream_with("h2", url, "protocol: http2")`, `Filter::with("on_error: allow")`).
//!
//! ```
//! use wasmgate_tests::config::{Filter, GatewayYaml, Route};
//! let yaml = GatewayYaml::new()
//!     .set("workers: 1")
//!     .upstream("backend", "http://127.0.0.1:9")
//!     .route(Route::new("api", "backend").matching("{ path_prefix: /v1/ }").filter(
//!         Filter::new("f.wasm", "{ add: { headers: [\"x-a:1\"] } }").env(&["TOKEN"]),
//!     ))
//!     .yaml();
//! assert!(yaml.contains("      - wasm: \"f.wasm\"\n        config: { add:"));
//! ```

use std::{fmt::Write as _, path::Path};

/// A whole configuration: top-level keys, upstreams, routes.
#[derive(Debug, Clone, Default)]
pub struct GatewayYaml {
    top: Vec<String>,
    upstreams: Vec<String>,
    routes: Vec<Route>,
}

impl GatewayYaml {
    /// One listener on 127.0.0.1, port 0; nothing else yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A top-level `key: value` line (`workers: 1`, `admin: { address: … }`, `limits: { … }`).
    #[must_use]
    pub fn set(mut self, line: &str) -> Self {
        self.top.push(line.to_owned());
        self
    }

    /// An upstream with only a `url`.
    #[must_use]
    pub fn upstream(self, name: &str, url: &str) -> Self {
        self.upstream_with(name, url, "")
    }

    /// An upstream with a `url` and more keys (`protocol: http2, timeout: 1s`).
    #[must_use]
    pub fn upstream_with(mut self, name: &str, url: &str, more: &str) -> Self {
        let more = if more.is_empty() {
            String::new()
        } else {
            format!(", {more}")
        };
        self.upstreams
            .push(format!("  {name}: {{ url: {}{more} }}", quoted(url)));
        self
    }

    /// A route, after those already added (the first match wins).
    #[must_use]
    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// The configuration file's text.
    pub fn yaml(&self) -> String {
        let mut out = String::new();
        for line in &self.top {
            let _ = writeln!(out, "{line}");
        }
        out.push_str("listeners: [{ address: \"127.0.0.1:0\" }]\nupstreams:\n");
        for upstream in &self.upstreams {
            let _ = writeln!(out, "{upstream}");
        }
        out.push_str("routes:\n");
        for route in &self.routes {
            route.write(&mut out);
        }
        out
    }
}

/// One route: a name, a match (`{}` for everything), an upstream, filters.
#[derive(Debug, Clone)]
pub struct Route {
    name: String,
    matcher: String,
    upstream: String,
    filters: Vec<Filter>,
}

impl Route {
    /// A route taking every request to `upstream`.
    pub fn new(name: &str, upstream: &str) -> Self {
        Self {
            name: name.to_owned(),
            matcher: "{}".to_owned(),
            upstream: upstream.to_owned(),
            filters: Vec::new(),
        }
    }

    /// The `match`, as YAML (`{ host: a.test, path_prefix: /v1/ }`).
    #[must_use]
    pub fn matching(mut self, matcher: &str) -> Self {
        matcher.clone_into(&mut self.matcher);
        self
    }

    /// One more filter, run after those already added.
    #[must_use]
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filters.push(filter);
        self
    }

    fn write(&self, out: &mut String) {
        let _ = writeln!(out, "  - name: {}", self.name);
        let _ = writeln!(out, "    match: {}", self.matcher);
        let _ = writeln!(out, "    upstream: {}", self.upstream);
        if !self.filters.is_empty() {
            out.push_str("    filters:\n");
        }
        for filter in &self.filters {
            let _ = writeln!(out, "      - wasm: {}", quoted(&filter.wasm));
            let _ = writeln!(out, "        config: {}", filter.config);
            for line in &filter.more {
                let _ = writeln!(out, "        {line}");
            }
        }
    }
}

/// One filter of a route: a module, its configuration (YAML or JSON), more keys.
#[derive(Debug, Clone)]
pub struct Filter {
    wasm: String,
    config: String,
    more: Vec<String>,
}

impl Filter {
    /// The module at `wasm` with `config`.
    pub fn new(wasm: impl AsRef<Path>, config: &str) -> Self {
        Self {
            wasm: wasm.as_ref().display().to_string(),
            config: config.to_owned(),
            more: Vec::new(),
        }
    }

    /// `secret_header.wasm` (built from source) with `config`.
    pub fn secret_header(config: &str) -> Self {
        Self::new(crate::gateway::secret_header(), config)
    }

    /// The host variables the module may read.
    #[must_use]
    pub fn env(self, names: &[&str]) -> Self {
        let line = format!("env: [{}]", names.join(", "));
        self.with(&line)
    }

    /// Another key of the filter (`on_error: allow`, `allow_on_headers_stop_iteration: true`).
    #[must_use]
    pub fn with(mut self, line: &str) -> Self {
        self.more.push(line.to_owned());
        self
    }
}

/// A YAML double-quoted string.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

/// Routes (YAML list) sending everything to upstream `backend`, without filters.
pub const ROUTE_ALL: &str = "[{ name: all, match: {}, upstream: backend }]";

/// Routes (YAML list) to upstream `backend`: `secure` (path prefix `/api/`) injects
/// `Authorization: Bearer <secret>` with `secret_header.wasm`; `public` (everything else)
/// injects nothing. What the boundary and attack tests try to cross.
pub fn secure_and_public(secret: &str) -> String {
    format!(
        r#"
  - name: secure
    match: {{ path_prefix: /api/ }}
    upstream: backend
    filters: [{{ wasm: {:?}, config: {{ set: {{ headers: ["Authorization:Bearer {secret}"] }} }} }}]
  - {{ name: public, match: {{}}, upstream: backend }}"#,
        crate::gateway::secret_header()
    )
}
