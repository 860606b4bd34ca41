//! Checks serde cannot make: references between sections, addresses, URLs and
//! files. Collects every problem rather than stopping at the first, so one
//! `wasmgate check` run shows them all.

use std::{collections::HashSet, fmt, net::SocketAddr, path::Path};

use super::{Config, UpstreamConfig};

/// Every problem found in a configuration, one message each. Each message
/// starts with the file and names the key (`routes[1] "api".upstream`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl ConfigErrors {
    /// Wraps a list of messages.
    pub fn new(messages: Vec<String>) -> Self {
        Self(messages)
    }

    /// The messages.
    pub fn messages(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, message) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects messages prefixed with the file name.
struct Problems<'a> {
    source: &'a str,
    list: Vec<String>,
}

impl Problems<'_> {
    fn add(&mut self, key: impl fmt::Display, what: impl fmt::Display) {
        self.list.push(format!("{}: {key}: {what}", self.source));
    }
}

impl Config {
    /// Checks the parsed configuration as a whole.
    ///
    /// # Errors
    /// Every problem found.
    pub fn validate(self) -> Result<Config, ConfigErrors> {
        let mut p = Problems {
            source: &self.source,
            list: Vec::new(),
        };
        if self.listeners.is_empty() {
            p.add("listeners", "at least one listener is required");
        }
        for (i, listener) in self.listeners.iter().enumerate() {
            let key = format!("listeners[{i}]");
            check_address(&mut p, &format!("{key}.address"), &listener.address);
            if let Some(tls) = &listener.tls {
                check_file(&mut p, &self, &format!("{key}.tls.cert"), &tls.cert);
                check_file(&mut p, &self, &format!("{key}.tls.key"), &tls.key);
            }
        }
        if let Some(admin) = &self.admin {
            check_address(&mut p, "admin.address", &admin.address);
        }
        if self.workers == Some(0) {
            p.add("workers", "must be at least 1");
        }
        for (name, upstream) in &self.upstreams {
            check_upstream(&mut p, &self, name, upstream);
        }
        if self.routes.is_empty() {
            p.add("routes", "at least one route is required");
        }
        let mut names = HashSet::new();
        let mut filter_names = std::collections::HashSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            let key = format!("routes[{i}] {:?}", route.name);
            if route.name.is_empty() {
                p.add(format!("routes[{i}].name"), "must not be empty");
            } else if !names.insert(route.name.as_str()) {
                p.add(format!("{key}.name"), "another route has the same name");
            }
            match &route.matcher {
                None => p.add(
                    format!("{key}.match"),
                    "missing (write `match: {}` to match every request)",
                ),
                Some(m) => {
                    if let Some(prefix) = &m.path_prefix
                        && !prefix.starts_with('/')
                    {
                        p.add(
                            format!("{key}.match.path_prefix"),
                            format!("{prefix:?} must start with '/'"),
                        );
                    }
                    if let Some(host) = &m.host
                        && (host.is_empty() || host.contains('/') || host.contains(' '))
                    {
                        p.add(
                            format!("{key}.match.host"),
                            format!("{host:?} is not a host name"),
                        );
                    }
                }
            }
            match &route.upstream {
                None => p.add(
                    format!("{key}.upstream"),
                    "missing: every route needs an upstream",
                ),
                Some(up) if !self.upstreams.contains_key(up) => p.add(
                    format!("{key}.upstream"),
                    format!("unknown upstream {up:?} (defined: {})", known(&self)),
                ),
                Some(_) => {}
            }
            for (j, filter) in route.filters.iter().enumerate() {
                let fkey = format!("{key}.filters[{j}]");
                let name = filter
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{}/{j}", route.name));
                if name.is_empty() || name.chars().any(char::is_control) {
                    p.add(
                        format!("{fkey}.name"),
                        "must be a non-empty name without control characters",
                    );
                } else if !filter_names.insert(name.clone()) {
                    p.add(
                        format!("{fkey}.name"),
                        format!("{name:?} names another filter too"),
                    );
                }
                check_file(&mut p, &self, &format!("{fkey}.wasm"), &filter.wasm);
                for name in &filter.env {
                    if name.is_empty() || name.contains('=') || name.contains('\0') {
                        p.add(
                            format!("{fkey}.env"),
                            format!("{name:?} is not an environment variable name"),
                        );
                    }
                }
            }
        }
        if self.limits.max_headers == 0 {
            p.add("limits.max_headers", "must be at least 1");
        }
        if self.limits.max_header_bytes < 8192 {
            p.add("limits.max_header_bytes", "must be at least 8192");
        }
        if p.list.is_empty() {
            Ok(self)
        } else {
            Err(ConfigErrors(p.list))
        }
    }
}

fn known(config: &Config) -> String {
    if config.upstreams.is_empty() {
        "none".to_string()
    } else {
        config
            .upstreams
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn check_address(p: &mut Problems<'_>, key: &str, address: &str) {
    if address.parse::<SocketAddr>().is_err() {
        p.add(key, format!("{address:?} is not an ip:port address"));
    }
}

fn check_file(p: &mut Problems<'_>, config: &Config, key: &str, path: &Path) {
    let resolved = config.resolve(path);
    if !resolved.is_file() {
        p.add(key, format!("file {} does not exist", resolved.display()));
    }
}

fn check_upstream(p: &mut Problems<'_>, config: &Config, name: &str, upstream: &UpstreamConfig) {
    let key = format!("upstreams.{name}");
    if name.is_empty() {
        p.add("upstreams", "an upstream name must not be empty");
    }
    match upstream.url.parse::<http::Uri>() {
        Err(e) => p.add(
            format!("{key}.url"),
            format!("{:?} is not a URL: {e}", upstream.url),
        ),
        Ok(uri) => {
            let scheme = uri.scheme_str();
            if !matches!(scheme, Some("http" | "https")) {
                p.add(
                    format!("{key}.url"),
                    format!("{:?} must start with http:// or https://", upstream.url),
                );
            }
            if uri.host().is_none_or(str::is_empty) {
                p.add(
                    format!("{key}.url"),
                    format!("{:?} has no host", upstream.url),
                );
            }
            if uri.query().is_some() {
                p.add(format!("{key}.url"), "must not have a query");
            }
            if scheme == Some("http") && upstream.tls.is_some() {
                p.add(format!("{key}.tls"), "only applies to https:// upstreams");
            }
        }
    }
    if upstream.connect_timeout.get().is_zero() {
        p.add(format!("{key}.connect_timeout"), "must be more than 0");
    }
    if upstream.timeout.get().is_zero() {
        p.add(format!("{key}.timeout"), "must be more than 0");
    }
    if let Some(tls) = &upstream.tls {
        if let Some(ca) = &tls.ca {
            check_file(p, config, &format!("{key}.tls.ca"), ca);
        }
        match (&tls.client_cert, &tls.client_key) {
            (Some(c), Some(k)) => {
                check_file(p, config, &format!("{key}.tls.client_cert"), c);
                check_file(p, config, &format!("{key}.tls.client_key"), k);
            }
            (Some(_), None) => p.add(
                format!("{key}.tls.client_key"),
                "missing: client_cert needs client_key",
            ),
            (None, Some(_)) => p.add(
                format!("{key}.tls.client_cert"),
                "missing: client_key needs client_cert",
            ),
            (None, None) => {}
        }
        if let Some(sn) = &tls.server_name
            && rustls::pki_types::ServerName::try_from(sn.as_str()).is_err()
        {
            p.add(
                format!("{key}.tls.server_name"),
                format!("{sn:?} is not a DNS name or IP address"),
            );
        }
    }
}
