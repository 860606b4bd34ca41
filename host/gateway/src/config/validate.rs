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
    match (&upstream.url, &upstream.endpoints) {
        (Some(_), Some(_)) => p.add(&key, "give either url or endpoints, not both"),
        (None, None) => p.add(&key, "missing url (or endpoints)"),
        (None, Some(list)) if list.is_empty() => {
            p.add(format!("{key}.endpoints"), "must list at least one URL");
        }
        _ => {}
    }
    let mut first: Option<(String, http::Uri)> = None;
    let mut seen = HashSet::new();
    for (at, url) in upstream.endpoint_urls() {
        let Some(uri) = check_url(p, &format!("{key}.{at}"), url) else {
            continue;
        };
        if !seen.insert(uri.authority().map(ToString::to_string)) {
            p.add(format!("{key}.{at}"), format!("{url:?} is listed twice"));
        }
        match &first {
            None => first = Some((at, uri)),
            Some((first_at, first_uri)) => {
                if first_uri.scheme_str() != uri.scheme_str() || first_uri.path() != uri.path() {
                    p.add(
                        format!("{key}.{at}"),
                        format!("{url:?} must have the scheme and path of {first_at}"),
                    );
                }
            }
        }
    }
    if let Some((_, uri)) = &first
        && uri.scheme_str() == Some("http")
        && upstream.tls.is_some()
    {
        p.add(format!("{key}.tls"), "only applies to https:// upstreams");
    }
    check_balancing(p, &key, upstream);
    if upstream.connect_timeout.get().is_zero() {
        p.add(format!("{key}.connect_timeout"), "must be more than 0");
    }
    if upstream.timeout.get().is_zero() {
        p.add(format!("{key}.timeout"), "must be more than 0");
    }
    if upstream.read_timeout.get().is_zero() {
        p.add(format!("{key}.read_timeout"), "must be more than 0");
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

/// One endpoint URL: `http(s)://host[:port][/prefix]`, no query. The parsed
/// URL when it is one.
fn check_url(p: &mut Problems<'_>, key: &str, url: &str) -> Option<http::Uri> {
    let uri = match url.parse::<http::Uri>() {
        Ok(uri) => uri,
        Err(e) => {
            p.add(key, format!("{url:?} is not a URL: {e}"));
            return None;
        }
    };
    let scheme = uri.scheme_str();
    let mut ok = true;
    if !matches!(scheme, Some("http" | "https")) {
        p.add(key, format!("{url:?} must start with http:// or https://"));
        ok = false;
    }
    if uri.host().is_none_or(str::is_empty) {
        p.add(key, format!("{url:?} has no host"));
        ok = false;
    }
    if uri.query().is_some() {
        p.add(key, "must not have a query");
        ok = false;
    }
    ok.then_some(uri)
}

/// `balance`, `health_check`, `outlier`, `retries` and `dns_refresh`.
fn check_balancing(p: &mut Problems<'_>, key: &str, upstream: &UpstreamConfig) {
    use super::Balance;
    match (upstream.balance, &upstream.hash_header) {
        (Balance::Hash, None) => p.add(
            format!("{key}.hash_header"),
            "missing: balance: hash needs the name of the header to hash",
        ),
        (Balance::Hash, Some(h)) if http::HeaderName::from_bytes(h.as_bytes()).is_err() => p.add(
            format!("{key}.hash_header"),
            format!("{h:?} is not a header name"),
        ),
        (Balance::RoundRobin | Balance::LeastRequest, Some(_)) => p.add(
            format!("{key}.hash_header"),
            "only applies to balance: hash",
        ),
        _ => {}
    }
    if let Some(check) = &upstream.health_check {
        let key = format!("{key}.health_check");
        if !check.path.starts_with('/') || check.path.chars().any(char::is_whitespace) {
            p.add(
                format!("{key}.path"),
                format!("{:?} must be a path starting with '/'", check.path),
            );
        }
        if check.interval.get().is_zero() {
            p.add(format!("{key}.interval"), "must be more than 0");
        }
        if check.timeout.get().is_zero() {
            p.add(format!("{key}.timeout"), "must be more than 0");
        }
        if check.healthy == 0 {
            p.add(format!("{key}.healthy"), "must be at least 1");
        }
        if check.unhealthy == 0 {
            p.add(format!("{key}.unhealthy"), "must be at least 1");
        }
    }
    if let Some(outlier) = &upstream.outlier {
        let key = format!("{key}.outlier");
        if outlier.consecutive_failures == 0 {
            p.add(format!("{key}.consecutive_failures"), "must be at least 1");
        }
        if outlier.eject_for.get().is_zero() {
            p.add(format!("{key}.eject_for"), "must be more than 0");
        }
        if outlier.max_ejected_percent > 100 {
            p.add(
                format!("{key}.max_ejected_percent"),
                format!("{} is more than 100", outlier.max_ejected_percent),
            );
        }
    }
    if let Some(retries) = &upstream.retries {
        let key = format!("{key}.retries");
        if !(1..=5).contains(&retries.attempts) {
            p.add(
                format!("{key}.attempts"),
                format!("{} is out of range (1 to 5)", retries.attempts),
            );
        }
        if retries.on.is_empty() {
            p.add(format!("{key}.on"), "must name at least one failure");
        }
        if retries.per_try_timeout.is_some_and(|t| t.get().is_zero()) {
            p.add(format!("{key}.per_try_timeout"), "must be more than 0");
        }
    }
    if upstream
        .dns_refresh
        .is_some_and(|t| t.get() < std::time::Duration::from_secs(1))
    {
        p.add(format!("{key}.dns_refresh"), "must be at least 1s");
    }
}
