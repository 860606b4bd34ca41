//! Properties (Envoy "attributes"): path decoding and the values the host knows.
//!
//! A property path arrives as its segments joined with NUL (`request\0path`); the host keys
//! properties by the dotted form (`request.path`). Lookup order: properties the embedder or
//! the filter put on the stream, then those it shares with other streams
//! ([`Stream::shared`]), then values derived from the stream's header maps the way Envoy
//! derives them, then the plugin attributes, then properties the filter set outside any
//! stream. Strings are raw bytes; integers are 8-byte little-endian.

use std::borrow::Cow;

use crate::state::HostState;
use crate::stream::{HeaderMap, Stream};

/// Properties by dotted path, in the order they were set. A stream holds
/// a handful, so a list beats a hash map: no hashing, and keys the
/// embedder knows at compile time (`"source.address"`) are not allocated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Properties {
    entries: Vec<(Cow<'static, str>, Vec<u8>)>,
}

impl Properties {
    /// No properties.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value at `path`.
    pub fn get(&self, path: &str) -> Option<&Vec<u8>> {
        self.entries.iter().find(|(k, _)| k == path).map(|(_, v)| v)
    }

    /// Whether `path` has a value.
    pub fn contains_key(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    /// Sets `path`, returning the value it replaced.
    pub fn insert(
        &mut self,
        path: impl Into<Cow<'static, str>>,
        value: impl Into<Vec<u8>>,
    ) -> Option<Vec<u8>> {
        let path = path.into();
        let value = value.into();
        match self.entries.iter_mut().find(|(k, _)| *k == path) {
            Some((_, v)) => Some(std::mem::replace(v, value)),
            None => {
                self.entries.push((path, value));
                None
            }
        }
    }

    /// Removes `path`, returning its value.
    pub fn remove(&mut self, path: &str) -> Option<Vec<u8>> {
        let i = self.entries.iter().position(|(k, _)| k == path)?;
        Some(self.entries.remove(i).1)
    }

    /// Number of properties.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes them all, keeping the allocation of the list.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Paths and values, in the order they were first set.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(k, v)| (k.as_ref(), v.as_slice()))
    }
}

impl<K: Into<Cow<'static, str>>, V: Into<Vec<u8>>> FromIterator<(K, V)> for Properties {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut p = Properties::new();
        for (k, v) in iter {
            p.insert(k, v);
        }
        p
    }
}

/// The dotted key for a NUL-joined path, or None when it is empty or not UTF-8.
/// A single segment that already contains dots is kept as is (some SDKs send `a.b`).
pub(crate) fn dotted(path: &[u8]) -> Option<String> {
    let path = path.strip_suffix(&[0]).unwrap_or(path);
    if path.is_empty() {
        return None;
    }
    let text = std::str::from_utf8(path).ok()?;
    Some(text.replace('\0', "."))
}

/// The value of property `key` as the guest should see it.
pub(crate) fn lookup(state: &HostState, key: &str) -> Option<Vec<u8>> {
    if let Some(stream) = state.stream.get() {
        let shared = stream.shared.iter().map(|p| &**p);
        let mut layers = std::iter::once(&stream.properties).chain(shared);
        if let Some(v) = layers.find_map(|p| p.get(key)) {
            return Some(v.clone());
        }
        if let Some(v) = derived(stream, key) {
            return Some(v);
        }
    }
    let spec = &state.plugin.spec;
    match key {
        "plugin_name" => return Some(spec.name.as_bytes().to_vec()),
        "plugin_root_id" => return Some(spec.root_id.as_bytes().to_vec()),
        "plugin_vm_id" => return Some(spec.vm_id.as_bytes().to_vec()),
        _ => {}
    }
    state.root_properties.get(key).cloned()
}

/// Attributes Envoy computes from the request and response headers.
fn derived(stream: &Stream, key: &str) -> Option<Vec<u8>> {
    let req = &stream.request_headers;
    let header = |map: &HeaderMap, name: &str| map.get(name).map(<[u8]>::to_vec);
    if let Some(name) = key.strip_prefix("request.headers.") {
        return header(req, name);
    }
    if let Some(name) = key.strip_prefix("response.headers.") {
        return header(&stream.response_headers, name);
    }
    if let Some(name) = key.strip_prefix("response.trailers.") {
        return header(&stream.response_trailers, name);
    }
    match key {
        "request.path" => header(req, ":path"),
        "request.url_path" => req
            .get(":path")
            .map(|p| p.split(|b| *b == b'?').next().unwrap_or(p).to_vec()),
        "request.query" => req
            .get(":path")
            .map(|p| match p.iter().position(|b| *b == b'?') {
                Some(q) => p[q + 1..].to_vec(),
                None => Vec::new(),
            }),
        "request.host" => header(req, ":authority").or_else(|| header(req, "host")),
        "request.scheme" => header(req, ":scheme"),
        "request.method" => header(req, ":method"),
        "request.id" => header(req, "x-request-id"),
        "request.referer" => header(req, "referer"),
        "request.useragent" => header(req, "user-agent"),
        "request.headers" => Some(serialized(req)),
        "response.headers" => Some(serialized(&stream.response_headers)),
        "response.code" => {
            let status = stream.response_headers.get_str(":status")?;
            let code: i64 = status.trim().parse().ok()?;
            Some(code.to_le_bytes().to_vec())
        }
        _ => None,
    }
}

fn serialized(map: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::new();
    map.serialize_into(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_joins_segments() {
        assert_eq!(dotted(b"request\0path").as_deref(), Some("request.path"));
        assert_eq!(
            dotted(b"request\0headers\0x-a").as_deref(),
            Some("request.headers.x-a")
        );
        assert_eq!(dotted(b"plugin_name\0").as_deref(), Some("plugin_name"));
        assert_eq!(dotted(b"source.address").as_deref(), Some("source.address"));
        assert_eq!(dotted(b""), None);
        assert_eq!(dotted(b"\xff\0x"), None);
    }

    #[test]
    fn derived_from_headers() {
        let mut s = Stream::default();
        s.request_headers.add(":path", "/a/b?x=1&y=2");
        s.request_headers.add(":authority", "example.com");
        s.request_headers.add(":method", "GET");
        s.request_headers.add("X-Request-Id", "abc");
        s.response_headers.add(":status", "404");
        assert_eq!(derived(&s, "request.path").unwrap(), b"/a/b?x=1&y=2");
        assert_eq!(derived(&s, "request.url_path").unwrap(), b"/a/b");
        assert_eq!(derived(&s, "request.query").unwrap(), b"x=1&y=2");
        assert_eq!(derived(&s, "request.host").unwrap(), b"example.com");
        assert_eq!(derived(&s, "request.method").unwrap(), b"GET");
        assert_eq!(derived(&s, "request.id").unwrap(), b"abc");
        assert_eq!(derived(&s, "request.headers.x-request-id").unwrap(), b"abc");
        assert_eq!(derived(&s, "response.code").unwrap(), 404i64.to_le_bytes());
        assert_eq!(derived(&s, "request.scheme"), None);
        assert_eq!(derived(&s, "source.address"), None);
    }
}
