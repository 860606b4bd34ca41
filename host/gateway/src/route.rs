//! Route matching: host (ignoring case and port) and path prefix, first
//! match wins. The matcher is built once per configuration; matching a
//! request allocates nothing.

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

/// Index of the first matcher that takes the request.
pub fn first_match<'a, I>(matchers: I, host: Option<&str>, path: &str) -> Option<usize>
where
    I: IntoIterator<Item = &'a Matcher>,
{
    matchers.into_iter().position(|m| m.matches(host, path))
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
    fn strips_ipv6_port() {
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("host"), "host");
    }
}
