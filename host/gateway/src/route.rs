//! Route matching: host (ignoring case and port) and path prefix, first
//! match wins. The table is built once per configuration; matching a
//! request allocates nothing.
//!
//! A request only looks at the routes that can take it: those for its host
//! (one hash lookup) and those for any host, already merged in
//! configuration order. With a thousand routes on distinct hosts, a request
//! tests a handful of prefixes, not a thousand; many routes on one host are
//! tested one by one, in order, as the first-match rule needs.

use std::collections::HashMap;

/// What a route matches on, prepared for fast comparison.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    /// Lowercased host without port; None matches any host.
    host: Option<String>,
    /// None matches any path.
    path_prefix: Option<String>,
}

impl Matcher {
    /// Prepares a matcher from the configured host and path prefix.
    pub fn new(host: Option<&str>, path_prefix: Option<&str>) -> Self {
        Self {
            host: host.map(|h| strip_port(h).to_ascii_lowercase()),
            path_prefix: path_prefix.map(str::to_string),
        }
    }

    /// Whether a request for `host` (as sent: any case, maybe with a port)
    /// and `path` belongs to this route.
    pub fn matches(&self, host: Option<&str>, path: &str) -> bool {
        if let Some(want) = &self.host {
            match host {
                Some(h) if strip_port(h).eq_ignore_ascii_case(want) => {}
                _ => return false,
            }
        }
        match &self.path_prefix {
            Some(prefix) => path.starts_with(prefix.as_str()),
            None => true,
        }
    }
}

/// `example.com:8080` -> `example.com`; `[::1]:80` -> `[::1]`.
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Index of the first matcher that takes the request, trying each in turn
/// (what [`RouteTable`] must agree with).
#[cfg(test)]
fn first_match<'a, I>(matchers: I, host: Option<&str>, path: &str) -> Option<usize>
where
    I: IntoIterator<Item = &'a Matcher>,
{
    matchers.into_iter().position(|m| m.matches(host, path))
}

/// The longest host name looked up as it is (DNS names are at most 253 bytes).
const MAX_HOST: usize = 256;

/// A configuration's matchers, indexed by host.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    matchers: Vec<Matcher>,
    /// For each configured host: the routes for that host or for any host,
    /// in configuration order.
    by_host: HashMap<String, Vec<usize>>,
    /// The routes for any host, in configuration order.
    any_host: Vec<usize>,
}

impl RouteTable {
    /// Indexes `matchers` (in configuration order).
    pub fn new(matchers: Vec<Matcher>) -> Self {
        let any_host: Vec<usize> = (0..matchers.len())
            .filter(|&i| matchers[i].host.is_none())
            .collect();
        let mut by_host: HashMap<String, Vec<usize>> = HashMap::new();
        for m in &matchers {
            if let Some(host) = &m.host {
                by_host.entry(host.clone()).or_insert_with(|| {
                    (0..matchers.len())
                        .filter(|&i| matchers[i].host.as_ref().is_none_or(|h| h == host))
                        .collect()
                });
            }
        }
        Self {
            matchers,
            by_host,
            any_host,
        }
    }

    /// Index of the first route that takes a request for `host` (as sent:
    /// any case, maybe with a port) and `path`.
    pub fn first_match(&self, host: Option<&str>, path: &str) -> Option<usize> {
        let candidates = match host {
            Some(h) if !self.by_host.is_empty() => self.for_host(strip_port(h)),
            _ => None,
        };
        let candidates = candidates.unwrap_or(&self.any_host);
        candidates
            .iter()
            .copied()
            .find(|&i| self.matchers[i].matches(host, path))
    }

    /// The candidates for a host, looked up in lower case (without
    /// allocating, but for names longer than any DNS name).
    fn for_host(&self, host: &str) -> Option<&Vec<usize>> {
        if !host.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.by_host.get(host);
        }
        let mut buf = [0u8; MAX_HOST];
        match buf.get_mut(..host.len()) {
            Some(lower) => {
                lower.copy_from_slice(host.as_bytes());
                lower.make_ascii_lowercase();
                self.by_host.get(std::str::from_utf8(lower).ok()?)
            }
            None => self.by_host.get(&host.to_ascii_lowercase()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ignores_case_and_port() {
        let m = Matcher::new(Some("API.example.com"), None);
        assert!(m.matches(Some("api.EXAMPLE.com:8443"), "/"));
        assert!(m.matches(Some("api.example.com"), "/x"));
        assert!(!m.matches(Some("other.example.com"), "/"));
        assert!(!m.matches(None, "/"));
    }

    #[test]
    fn path_prefix_and_first_match() {
        let routes = [
            Matcher::new(None, Some("/v1/")),
            Matcher::new(Some("a.test"), None),
            Matcher::new(None, None),
        ];
        assert_eq!(first_match(&routes, Some("a.test"), "/v1/x"), Some(0));
        assert_eq!(first_match(&routes, Some("a.test:80"), "/v2"), Some(1));
        assert_eq!(first_match(&routes, Some("b.test"), "/v2"), Some(2));
        assert_eq!(first_match(&routes[..2], Some("b.test"), "/v2"), None);
    }

    #[test]
    fn the_table_agrees_with_the_first_match_rule() {
        let matchers = vec![
            Matcher::new(None, Some("/v1/")),
            Matcher::new(Some("A.test"), Some("/a/")),
            Matcher::new(Some("b.test"), None),
            Matcher::new(None, Some("/")),
            Matcher::new(Some("a.test"), None),
            Matcher::new(Some("[::1]"), None),
        ];
        let table = RouteTable::new(matchers.clone());
        let hosts = [
            None,
            Some("a.test"),
            Some("A.TEST:8080"),
            Some("b.test"),
            Some("c.test"),
            Some("[::1]:80"),
            Some("a.test:x"),
        ];
        for host in hosts {
            for path in ["/", "/v1/x", "/a/b", "/b", ""] {
                assert_eq!(
                    table.first_match(host, path),
                    first_match(&matchers, host, path),
                    "{host:?} {path:?}"
                );
            }
        }
        let long = "X".repeat(300);
        assert_eq!(table.first_match(Some(&long), "/z"), Some(3));
        let table = RouteTable::new(vec![Matcher::new(Some(&long), None)]);
        assert_eq!(table.first_match(Some(&long), "/z"), Some(0));
        assert_eq!(table.first_match(Some("x"), "/z"), None);
    }

    proptest::proptest! {
        /// Any configuration, any request: the indexed table picks the route
        /// the first-match rule picks.
        #[test]
        fn the_table_agrees_on_generated_routes(
            routes in proptest::collection::vec(
                (proptest::option::of("[aAbB]\\.test"), proptest::option::of("/[ab]{0,2}")),
                0..12,
            ),
            host in proptest::option::of("[aAbBc]\\.(test|TEST)(:[0-9]{1,3})?"),
            path in "/[ab]{0,3}",
        ) {
            let matchers: Vec<Matcher> = routes
                .iter()
                .map(|(h, p)| Matcher::new(h.as_deref(), p.as_deref()))
                .collect();
            let table = RouteTable::new(matchers.clone());
            proptest::prop_assert_eq!(
                table.first_match(host.as_deref(), &path),
                first_match(&matchers, host.as_deref(), &path)
            );
        }
    }

    #[test]
    fn strips_ipv6_port() {
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("host"), "host");
    }
}
