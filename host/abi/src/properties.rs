//! Properties: Envoy's "attributes", as a proxy-wasm filter reads them with
//! `proxy_get_property`.
//!
//! A property path arrives as its segments joined with NUL (`request\0path`); the host keys
//! properties by the dotted form (`request.path`). Lookup order: properties the embedder or
//! the filter put on the stream ([`Stream::properties`]), then the layers it shares with
//! other streams ([`Stream::shared`]: anything implementing [`Attributes`], so an embedder's
//! connection or route can compute a value on first read instead of per request), then the
//! values derived from the stream's header maps and [`StreamInfo`] the way Envoy derives
//! them, then the plugin attributes, then properties the filter set outside any stream.
//! Nothing is computed for a request that reads no property: the derived values are made
//! on read from what the stream holds anyway.
//!
//! # Encodings
//!
//! As Envoy 1.40 serialises attribute values for Wasm (`serializeValue` in its Wasm
//! context), with the helpers of [`encode`]:
//!
//! | type | bytes |
//! |---|---|
//! | string, bytes | as they are, no terminator |
//! | int, uint | 8 bytes, little-endian (two's complement for int) |
//! | bool | 1 byte, 0 or 1 |
//! | timestamp | int64 nanoseconds since the Unix epoch, 8 bytes little-endian |
//! | duration | int64 nanoseconds, 8 bytes little-endian |
//! | map | the proxy-wasm map serialisation (as `proxy_get_header_map_pairs`) |
//!
//! # The attribute table
//!
//! What wasmgate (the gateway, through this runtime) answers; "–" means the property is
//! absent (`proxy_get_property` returns NotFound). "runtime" values come from the stream
//! itself; "gateway" values from the layers the gateway adds (see `host/gateway`'s
//! `stream_map::request_stream`). The differential suite reads every row through Envoy 1.40
//! and wasmgate (`tests/src/diff/scenarios.rs`, setup `properties_attributes`).
//!
//! | attribute | type | wasmgate |
//! |---|---|---|
//! | `request.path` | string | runtime: `:path` |
//! | `request.url_path` | string | runtime: `:path` without the query |
//! | `request.host` | string | runtime: `:authority` (else `host`) |
//! | `request.scheme` | string | runtime: `:scheme` |
//! | `request.method` | string | runtime: `:method` |
//! | `request.headers` | map | runtime: every request header, pseudo-headers first |
//! | `request.headers.<name>` | string | runtime: the header's first value |
//! | `request.referer` | string | runtime: `referer` |
//! | `request.useragent` | string | runtime: `user-agent` |
//! | `request.query` | string | runtime: the query after `?` (empty without one) |
//! | `request.id` | string | runtime: `x-request-id` if the client sent one, else a random UUID (v4) made on first read and kept for the stream. Envoy makes one for every request and also sends it upstream as `x-request-id`; wasmgate does not add the header |
//! | `request.protocol` | string | gateway: `HTTP/1.0`, `HTTP/1.1`, `HTTP/2` |
//! | `request.time` | timestamp | gateway: when the gateway began serving the request (computed on read from a monotonic start) |
//! | `request.duration` | duration | runtime: once the request is complete (`on_log`), as in Envoy; – before |
//! | `request.size` | int | runtime: the request's `content-length`, else 0 (Envoy: the body bytes received so far, which is 0 in `on_request_headers` of a bodiless request) |
//! | `request.total_size` | int | runtime: `request.size` plus the bytes of the header names and values (Envoy's own headers make its number larger) |
//! | `response.code` | int | runtime: `:status` |
//! | `response.code_details` | string | runtime: the details a filter gave `proxy_send_local_response`, else `via_upstream` once there are response headers |
//! | `response.flags` | int | runtime: 0 once there are response headers (the responses filters see never carry one of Envoy's failure flags: wasmgate's own errors skip the filters) |
//! | `response.grpc_status` | int | runtime: `grpc-status` of the trailers, else of the headers, else Envoy's mapping of the HTTP status (200 → 2, Unknown; 503 → 14, Unavailable; ...) |
//! | `response.headers` | map | runtime (an empty map is 4 zero bytes, as Envoy sends it) |
//! | `response.headers.<name>` | string | runtime |
//! | `response.trailers` | map | runtime |
//! | `response.trailers.<name>` | string | runtime |
//! | `response.size` | int | runtime: 0 until the request is complete, then the response's `content-length` (Envoy: body bytes sent so far) |
//! | `response.total_size` | int | runtime: `response.size` plus the response header and trailer bytes |
//! | `source.address` | string | gateway: the client's `ip:port` |
//! | `source.port` | int | gateway |
//! | `destination.address` | string | gateway: the listener's `ip:port` the client reached |
//! | `destination.port` | int | gateway |
//! | `connection.id`, `connection_id` | uint | gateway: a process-wide connection counter |
//! | `connection.mtls` | bool | gateway: false (wasmgate's listeners do not ask for client certificates) |
//! | `connection.requested_server_name` | string | gateway: the TLS SNI; empty over plain TCP, as in Envoy |
//! | `connection.tls_version` | string | gateway: `TLSv1.2` / `TLSv1.3` over TLS; – over plain TCP |
//! | `connection.subject_peer_certificate`, `connection.dns_san_peer_certificate`, `connection.uri_san_peer_certificate`, `connection.sha256_peer_certificate_digest` | string | – (no client certificates, as in Envoy without mTLS) |
//! | `connection.subject_local_certificate`, `connection.dns_san_local_certificate`, `connection.uri_san_local_certificate` | string | – over plain TCP (as Envoy); not supported over TLS yet |
//! | `connection.termination_details`, `connection.transport_failure_reason` | string | – (as Envoy on a healthy connection; wasmgate never sets them) |
//! | `upstream.address` | string | gateway: the route's upstream `host:port` as configured (Envoy: the resolved host, known once it was picked) |
//! | `upstream.port` | int | gateway |
//! | `upstream.request_attempt_count` | uint | runtime: 1 once there are response headers (wasmgate does not retry) |
//! | `upstream.local_address` | string | – not supported: the pooled connection's own address is not tracked (Envoy: `ip:port`) |
//! | `upstream.tls_version`, `upstream.transport_failure_reason`, upstream certificates | string | – not supported |
//! | `xds.route_name`, `route_name` | string | gateway: the route's `name` (Envoy: the route entry's name, empty when unnamed) |
//! | `xds.cluster_name`, `cluster_name` | string | gateway: the route's upstream's name (Envoy's cluster). Envoy 1.40 answers only the `xds.` forms; wasmgate keeps the short ones older Envoys had |
//! | `xds.virtual_host_name` | string | – not supported: wasmgate has no virtual hosts (Envoy: the virtual host's name) |
//! | `xds.*_metadata`, `*_metadata`, `listener_direction`, `node`, `xds.node`, `metadata`, `filter_state` | – | not supported: wasmgate has no metadata, listener directions or xDS node (Envoy 1.40 answers none of `listener_direction` and `node` either) |
//! | `plugin_name` | string | runtime: the filter's `name` (default `<route>/<index>`) |
//! | `plugin_root_id` | string | runtime |
//! | `plugin_vm_id` | string | runtime |
//!
//! A filter's own `proxy_set_property` writes to the stream's properties (or, outside a
//! stream, the instance's) and shadows everything above.

use std::borrow::Cow;
use std::fmt;
use std::time::{Instant, SystemTime};

use crate::state::HostState;
use crate::stream::{HeaderMap, Stream};

/// A source of attribute values many streams share (a connection, a route): asked for a
/// dotted path, it answers with the encoded value or None. An embedder implements it to
/// compute values on first read rather than for every request.
pub trait Attributes: Send + Sync + fmt::Debug {
    /// The value of `path` ([`encode`]d as its type requires), or None.
    fn attribute(&self, path: &str) -> Option<Vec<u8>>;
}

impl Attributes for Properties {
    fn attribute(&self, path: &str) -> Option<Vec<u8>> {
        self.get(path).cloned()
    }
}

/// What the embedder knows about a request beyond its header maps, for the attributes
/// derived from it (`request.protocol`, `request.time`, `request.duration`,
/// `response.code_details`). Plain values, set as they become known; nothing is encoded
/// until a filter reads a property.
#[derive(Clone, Debug, Default)]
pub struct StreamInfo {
    /// When serving the request began (`request.time`, `request.duration`).
    pub start: Option<Instant>,
    /// When the request was complete: set by the runtime when `on_log` runs.
    pub end: Option<Instant>,
    /// `request.protocol`: `HTTP/1.0`, `HTTP/1.1`, `HTTP/2`, `HTTP/3`.
    pub protocol: Option<&'static str>,
    /// The details of the local response a filter sent (`response.code_details`).
    pub local_details: Option<String>,
}

impl StreamInfo {
    /// Forgets everything (a stream reused for another request).
    pub fn clear(&mut self) {
        *self = StreamInfo::default();
    }
}

/// Envoy's encodings of attribute values for Wasm (see the module docs).
pub mod encode {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use crate::stream::HeaderMap;

    /// An `int`: 8 bytes little-endian.
    pub fn int(value: i64) -> Vec<u8> {
        value.to_le_bytes().to_vec()
    }

    /// A `uint`: 8 bytes little-endian.
    pub fn uint(value: u64) -> Vec<u8> {
        value.to_le_bytes().to_vec()
    }

    /// A `bool`: one byte, 0 or 1.
    pub fn bool(value: bool) -> Vec<u8> {
        vec![u8::from(value)]
    }

    /// A `timestamp`: int64 nanoseconds since the Unix epoch (negative before it), 8 bytes
    /// little-endian; saturates past the year 2262.
    pub fn timestamp(at: SystemTime) -> Vec<u8> {
        let nanos = match at.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
        };
        int(nanos)
    }

    /// A `duration`: int64 nanoseconds, 8 bytes little-endian (saturating).
    pub fn duration(d: Duration) -> Vec<u8> {
        int(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }

    /// A `map`: the proxy-wasm pairs serialisation; an empty map is its
    /// count, 0, as Envoy sends it (not nothing).
    pub fn map(map: &HeaderMap) -> Vec<u8> {
        let mut out = Vec::new();
        map.serialize_into(&mut out);
        if out.is_empty() {
            out.extend_from_slice(&0u32.to_le_bytes());
        }
        out
    }
}

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
        if let Some(v) = stream.properties.get(key) {
            return Some(v.clone());
        }
        if let Some(v) = stream.shared.iter().find_map(|layer| layer.attribute(key)) {
            return Some(v);
        }
        let now = || state.clock.unwrap_or_else(SystemTime::now);
        if let Some(v) = derived(stream, key, now) {
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

/// `request.id` for a stream whose client sent no `x-request-id`: a random UUID (v4), kept
/// in the stream's properties so every later read (and every filter) sees the same.
pub(crate) fn new_request_id(stream: &mut Stream) -> Vec<u8> {
    let id = uuid_v4().into_bytes();
    stream.properties.insert("request.id", id.clone());
    id
}

/// A random version 4 UUID in its text form. The randomness is SipHash under the keys std
/// draws from the operating system, over a counter and the clock: unique and unpredictable
/// enough for a request id (not for a secret).
fn uuid_v4() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let keys = std::collections::hash_map::RandomState::new();
    let half = |salt: u64| {
        let mut h = keys.build_hasher();
        h.write_u64(n);
        h.write_u64(salt);
        h.write_u128(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    };
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&half(1).to_le_bytes());
    b[8..].copy_from_slice(&half(2).to_le_bytes());
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Bytes of a header map's names and values (Envoy's `byteSize`).
fn byte_size(map: &HeaderMap) -> i64 {
    map.iter()
        .map(|(k, v)| i64::try_from(k.len() + v.len()).unwrap_or(i64::MAX))
        .sum()
}

/// A header's value as a decimal integer.
fn header_int(map: &HeaderMap, name: &str) -> Option<i64> {
    map.get_str(name)?.trim().parse().ok()
}

/// The gRPC status Envoy derives from an HTTP status when a response has no
/// `grpc-status` (`Grpc::Utility::httpToGrpcStatus`).
fn grpc_from_http(status: i64) -> i64 {
    match status {
        400 => 13,             // Internal
        401 => 16,             // Unauthenticated
        403 => 7,              // PermissionDenied
        404 => 12,             // Unimplemented
        429 | 502..=504 => 14, // Unavailable
        _ => 2,                // Unknown
    }
}

/// Attributes Envoy computes from the request and response and the stream's info.
fn derived(stream: &Stream, key: &str, now: impl Fn() -> SystemTime) -> Option<Vec<u8>> {
    let req = &stream.request_headers;
    let resp = &stream.response_headers;
    let info = &stream.info;
    let header = |map: &HeaderMap, name: &str| map.get(name).map(<[u8]>::to_vec);
    if let Some(name) = key.strip_prefix("request.headers.") {
        return header(req, name);
    }
    if let Some(name) = key.strip_prefix("response.headers.") {
        return header(resp, name);
    }
    if let Some(name) = key.strip_prefix("response.trailers.") {
        return header(&stream.response_trailers, name);
    }
    let request_size = || header_int(req, "content-length").unwrap_or(0);
    let response_size = || {
        info.end
            .and_then(|_| header_int(resp, "content-length"))
            .unwrap_or(0)
    };
    let responded = !resp.is_empty();
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
        "request.protocol" => info.protocol.map(|p| p.as_bytes().to_vec()),
        "request.time" => {
            let start = info.start?;
            Some(encode::timestamp(now() - start.elapsed()))
        }
        "request.duration" => {
            let (start, end) = (info.start?, info.end?);
            Some(encode::duration(end.saturating_duration_since(start)))
        }
        "request.size" => Some(encode::int(request_size())),
        "request.total_size" => Some(encode::int(request_size() + byte_size(req))),
        "request.headers" => Some(encode::map(req)),
        "response.headers" => Some(encode::map(resp)),
        "response.trailers" => Some(encode::map(&stream.response_trailers)),
        "response.code" => header_int(resp, ":status").map(encode::int),
        "response.code_details" => match &info.local_details {
            Some(details) => Some(details.as_bytes().to_vec()),
            None => responded.then(|| b"via_upstream".to_vec()),
        },
        "response.flags" => responded.then(|| encode::int(0)),
        "response.grpc_status" => header_int(&stream.response_trailers, "grpc-status")
            .or_else(|| header_int(resp, "grpc-status"))
            .or_else(|| header_int(resp, ":status").map(grpc_from_http))
            .map(encode::int),
        // wasmgate makes one attempt (no retries).
        "upstream.request_attempt_count" => responded.then(|| encode::uint(1)),
        "response.size" => responded.then(|| encode::int(response_size())),
        "response.total_size" => responded.then(|| {
            encode::int(response_size() + byte_size(resp) + byte_size(&stream.response_trailers))
        }),
        _ => None,
    }
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
        let derived = |s: &Stream, key: &str| derived(s, key, SystemTime::now);
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

    #[test]
    fn encodings_are_envoys() {
        assert_eq!(
            encode::int(-2),
            [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(encode::uint(0x0102), [2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(encode::bool(true), [1]);
        assert_eq!(encode::bool(false), [0]);
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 5);
        assert_eq!(
            encode::timestamp(at),
            1_700_000_000_000_000_005i64.to_le_bytes()
        );
        let before = SystemTime::UNIX_EPOCH - std::time::Duration::from_nanos(7);
        assert_eq!(encode::timestamp(before), (-7i64).to_le_bytes());
        let d = std::time::Duration::from_millis(1500);
        assert_eq!(encode::duration(d), 1_500_000_000i64.to_le_bytes());
        let mut map = HeaderMap::new();
        map.add("a", "1");
        let mut expected = Vec::new();
        expected.extend_from_slice(&1u32.to_le_bytes());
        expected.extend_from_slice(&1u32.to_le_bytes());
        expected.extend_from_slice(&1u32.to_le_bytes());
        expected.extend_from_slice(b"a\x001\x00");
        assert_eq!(encode::map(&map), expected);
    }

    #[test]
    fn derived_from_info_and_response() {
        let mut s = Stream::default();
        s.request_headers.add(":path", "/");
        s.request_headers.add("content-length", "12");
        let fixed = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        let now = || fixed;
        let get = |s: &Stream, key: &str| derived(s, key, now);
        // Nothing the embedder did not give.
        assert_eq!(get(&s, "request.protocol"), None);
        assert_eq!(get(&s, "request.time"), None);
        assert_eq!(get(&s, "response.code_details"), None);
        assert_eq!(get(&s, "response.size"), None);
        assert_eq!(get(&s, "request.size").unwrap(), encode::int(12));
        // ":path" + "/" + "content-length" + "12"
        assert_eq!(
            get(&s, "request.total_size").unwrap(),
            encode::int(12 + 6 + 16)
        );
        s.info.protocol = Some("HTTP/2");
        s.info.start = Some(Instant::now());
        assert_eq!(get(&s, "request.protocol").unwrap(), b"HTTP/2");
        let time = i64::from_le_bytes(get(&s, "request.time").unwrap().try_into().unwrap());
        assert!(
            (999_000_000_000..=1_000_000_000_000).contains(&time),
            "{time}"
        );
        assert_eq!(get(&s, "request.duration"), None, "only once complete");
        s.info.end = s
            .info
            .start
            .map(|t| t + std::time::Duration::from_millis(3));
        assert_eq!(get(&s, "request.duration").unwrap(), encode::int(3_000_000));
        s.response_headers.add(":status", "200");
        s.response_headers.add("content-length", "5");
        s.response_headers.add("grpc-status", "3");
        assert_eq!(get(&s, "response.code_details").unwrap(), b"via_upstream");
        assert_eq!(get(&s, "response.flags").unwrap(), encode::int(0));
        assert_eq!(get(&s, "response.grpc_status").unwrap(), encode::int(3));
        s.response_trailers.add("grpc-status", "0");
        assert_eq!(get(&s, "response.grpc_status").unwrap(), encode::int(0));
        assert_eq!(get(&s, "response.size").unwrap(), encode::int(5));
        s.info.local_details = Some("denied_by_filter".into());
        assert_eq!(
            get(&s, "response.code_details").unwrap(),
            b"denied_by_filter"
        );
        s.clear();
        assert_eq!(s.info.start, None);
        assert_eq!(s.info.local_details, None);
    }

    #[test]
    fn generated_request_ids_are_uuids_kept_per_stream() {
        let mut s = Stream::default();
        let id = new_request_id(&mut s);
        let text = std::str::from_utf8(&id).unwrap();
        let groups: Vec<usize> = text.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_eq!(&text[14..15], "4", "version 4");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"), "variant");
        assert_eq!(s.properties.get("request.id"), Some(&id));
        assert_ne!(new_request_id(&mut Stream::default()), id);
    }

    #[test]
    fn shared_layers_answer_lazily() {
        #[derive(Debug)]
        struct Port;
        impl Attributes for Port {
            fn attribute(&self, path: &str) -> Option<Vec<u8>> {
                (path == "source.port").then(|| encode::int(443))
            }
        }
        let mut s = Stream::default();
        s.shared.push(std::sync::Arc::new(Port));
        s.shared.push(std::sync::Arc::new(
            [("route_name", "r")].into_iter().collect::<Properties>(),
        ));
        let found = |key: &str| s.shared.iter().find_map(|l| l.attribute(key));
        assert_eq!(found("source.port").unwrap(), encode::int(443));
        assert_eq!(found("route_name").unwrap(), b"r");
        assert_eq!(found("source.address"), None);
    }
}
