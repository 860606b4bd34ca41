//! Per-request state: [`HeaderMap`], [`Stream`] and [`LocalResponse`].
//!
//! The embedder owns a [`Stream`] between callbacks; for the duration of one callback the
//! runtime lends it to the store's host functions (by reference, without copying it) so
//! they can read and change it.

use std::collections::HashMap;

/// Ordered multimap of header name to value, shaped like an Envoy header map.
///
/// Names are stored in lowercase; lookups ignore ASCII case. Pseudo headers
/// (`:method`, `:path`, `:authority`, `:scheme`, `:status`) live in the map like in Envoy.
/// Values are raw bytes because HTTP allows non-UTF-8 values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderMap {
    entries: Vec<(String, Vec<u8>)>,
}

// === impl HeaderMap ===

impl HeaderMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty map with room for `n` pairs.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            entries: Vec::with_capacity(n),
        }
    }

    /// Number of pairs (a name with two values counts twice).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the map holds no pairs.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.get_bytes(name.as_bytes())
    }

    /// The first value of `name` when it is valid UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> {
        self.entries
            .iter()
            .filter(move |(n, _)| n.as_bytes().eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
    }

    /// Appends a pair, keeping existing values of the same name.
    pub fn add(&mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) {
        let mut name = name.into();
        name.make_ascii_lowercase();
        self.entries.push((name, value.into()));
    }

    /// Removes every value of `name`, then adds one pair.
    pub fn replace(&mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) {
        let mut name = name.into();
        name.make_ascii_lowercase();
        self.remove(&name);
        self.entries.push((name, value.into()));
    }

    /// Removes every value of `name`.
    pub fn remove(&mut self, name: &str) {
        self.remove_bytes(name.as_bytes());
    }

    /// All pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// Removes all pairs, keeping the allocation.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    // --- byte-keyed operations used by the host functions (no allocation on hits) ---

    pub(crate) fn get_bytes(&self, name: &[u8]) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    pub(crate) fn remove_bytes(&mut self, name: &[u8]) {
        self.entries
            .retain(|(n, _)| !n.as_bytes().eq_ignore_ascii_case(name));
    }

    /// Envoy's `setCopy`: overwrite the first value in place and drop the others, or
    /// append when the name is absent. The key must already be valid UTF-8.
    pub(crate) fn replace_bytes(&mut self, name: &str, value: &[u8]) {
        let key = name.as_bytes();
        match self
            .entries
            .iter()
            .position(|(n, _)| n.as_bytes().eq_ignore_ascii_case(key))
        {
            Some(first) => {
                let slot = &mut self.entries[first].1;
                slot.clear();
                slot.extend_from_slice(value);
                let mut i = first + 1;
                while i < self.entries.len() {
                    if self.entries[i].0.as_bytes().eq_ignore_ascii_case(key) {
                        self.entries.remove(i);
                    } else {
                        i += 1;
                    }
                }
            }
            None => self.add_bytes(name, value),
        }
    }

    pub(crate) fn add_bytes(&mut self, name: &str, value: &[u8]) {
        let mut n = String::from(name);
        n.make_ascii_lowercase();
        self.entries.push((n, value.to_vec()));
    }

    /// Size of the proxy-wasm serialization of this map; 0 for an empty map.
    pub(crate) fn serialized_len(&self) -> usize {
        if self.entries.is_empty() {
            return 0;
        }
        4 + self
            .entries
            .iter()
            .map(|(n, v)| 8 + n.len() + v.len() + 2)
            .sum::<usize>()
    }

    /// Writes the proxy-wasm serialization into `out`, which must be exactly
    /// [`Self::serialized_len`] bytes; returns false (writing nothing useful) otherwise.
    pub(crate) fn serialize_to_slice(&self, out: &mut [u8]) -> bool {
        if out.len() != self.serialized_len() {
            return false;
        }
        if out.is_empty() {
            return true;
        }
        out[..4].copy_from_slice(&(self.entries.len() as u32).to_le_bytes());
        let mut at = 4;
        for (n, v) in &self.entries {
            out[at..at + 4].copy_from_slice(&(n.len() as u32).to_le_bytes());
            out[at + 4..at + 8].copy_from_slice(&(v.len() as u32).to_le_bytes());
            at += 8;
        }
        for (n, v) in &self.entries {
            out[at..at + n.len()].copy_from_slice(n.as_bytes());
            at += n.len();
            out[at] = 0;
            at += 1;
            out[at..at + v.len()].copy_from_slice(v);
            at += v.len();
            out[at] = 0;
            at += 1;
        }
        true
    }

    /// Appends the proxy-wasm serialization to `out` (nothing for an empty map):
    /// u32 count, count x (u32 key_len, u32 value_len), then each key NUL value NUL.
    pub(crate) fn serialize_into(&self, out: &mut Vec<u8>) {
        if self.entries.is_empty() {
            return;
        }
        out.reserve(self.serialized_len());
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for (n, v) in &self.entries {
            out.extend_from_slice(&(n.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (n, v) in &self.entries {
            out.extend_from_slice(n.as_bytes());
            out.push(0);
            out.extend_from_slice(v);
            out.push(0);
        }
    }
}

impl<K: Into<String>, V: Into<Vec<u8>>> FromIterator<(K, V)> for HeaderMap {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = HeaderMap::new();
        for (k, v) in iter {
            map.add(k, v);
        }
        map
    }
}

/// Why a guest-supplied serialized map could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The buffer ends before the data its header announces.
    #[error("serialized map truncated")]
    Truncated,
    /// More pairs than the host accepts.
    #[error("serialized map has {0} pairs, more than the limit")]
    TooManyPairs(usize),
    /// A key or value is not followed by its NUL terminator.
    #[error("serialized map entry is not NUL-terminated")]
    MissingNul,
    /// A header name is not UTF-8.
    #[error("serialized map has a header name that is not UTF-8")]
    NameNotUtf8,
}

/// Parses the proxy-wasm map serialization. An empty buffer (or a lone 0 count) is an
/// empty map. Bounds are checked on every field; nothing is trusted.
pub(crate) fn deserialize_map(bytes: &[u8], max_pairs: usize) -> Result<HeaderMap, MapError> {
    if bytes.is_empty() {
        return Ok(HeaderMap::new());
    }
    let read_u32 = |at: usize| -> Result<usize, MapError> {
        let b = bytes.get(at..at + 4).ok_or(MapError::Truncated)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = if bytes.len() < 4 {
        // A single 0x00 byte is an accepted spelling of the empty map.
        if bytes.iter().all(|b| *b == 0) {
            return Ok(HeaderMap::new());
        }
        return Err(MapError::Truncated);
    } else {
        read_u32(0)?
    };
    if count > max_pairs {
        return Err(MapError::TooManyPairs(count));
    }
    let sizes_end = 4usize
        .checked_add(count.checked_mul(8).ok_or(MapError::Truncated)?)
        .ok_or(MapError::Truncated)?;
    if sizes_end > bytes.len() {
        return Err(MapError::Truncated);
    }
    let mut map = HeaderMap::with_capacity(count);
    let mut data = sizes_end;
    for i in 0..count {
        let klen = read_u32(4 + i * 8)?;
        let vlen = read_u32(8 + i * 8)?;
        let key = take(bytes, &mut data, klen)?;
        let value = take(bytes, &mut data, vlen)?;
        let name = std::str::from_utf8(key).map_err(|_| MapError::NameNotUtf8)?;
        map.add_bytes(name, value);
    }
    Ok(map)
}

/// Takes `len` bytes at `*at` followed by a NUL, advancing `*at` past the NUL.
fn take<'a>(bytes: &'a [u8], at: &mut usize, len: usize) -> Result<&'a [u8], MapError> {
    let end = at.checked_add(len).ok_or(MapError::Truncated)?;
    let slice = bytes.get(*at..end).ok_or(MapError::Truncated)?;
    match bytes.get(end) {
        Some(0) => {}
        Some(_) => return Err(MapError::MissingNul),
        None => return Err(MapError::Truncated),
    }
    *at = end + 1;
    Ok(slice)
}

/// A response the filter asked the host to send instead of proxying
/// (`proxy_send_local_response`).
#[derive(Clone, Debug)]
pub struct LocalResponse {
    /// HTTP status code to send.
    pub status: u32,
    /// Envoy's "response code details": a short reason for logs, not sent to the client.
    pub details: String,
    /// Response body.
    pub body: Vec<u8>,
    /// Extra response headers chosen by the filter.
    pub headers: HeaderMap,
    /// gRPC status to send, or -1 for none (what the Rust SDK passes for plain HTTP).
    pub grpc_status: i32,
}

/// Per-request state, owned by the embedder between callbacks (lent to the Store's host functions for a call).
#[derive(Debug, Default)]
pub struct Stream {
    /// Context id the runtime assigned in [`crate::Vm::create_stream`]; 0 before that.
    pub context_id: u32,
    /// Request headers, including the pseudo headers.
    pub request_headers: HeaderMap,
    /// The request body seen by `on_request_body` (HTTP_REQUEST_BODY).
    pub request_body: Vec<u8>,
    /// Request trailers.
    pub request_trailers: HeaderMap,
    /// Response headers, including `:status`.
    pub response_headers: HeaderMap,
    /// The response body seen by `on_response_body` (HTTP_RESPONSE_BODY).
    pub response_body: Vec<u8>,
    /// Response trailers.
    pub response_trailers: HeaderMap,
    /// Attributes by dotted path ("request.path", "source.address", "route_name", ...), values as
    /// Envoy encodes them (strings raw, ints 8-byte LE). The embedder fills what it knows; the
    /// filter's proxy_set_property writes here too. request.headers.* etc are derived from the maps.
    pub properties: HashMap<String, Vec<u8>>,
    /// Set by proxy_send_local_response; the embedder must send it instead of proxying.
    pub local_response: Option<LocalResponse>,
    /// Set by proxy_continue_stream(HTTP_REQUEST) while paused; the embedder clears it.
    pub resume_request: bool,
    /// Set by proxy_continue_stream(HTTP_RESPONSE) while paused; the embedder clears it.
    pub resume_response: bool,
    /// Set by proxy_close_stream.
    pub close_requested: bool,
}

impl Stream {
    /// An empty stream (context id 0 until [`crate::Vm::create_stream`]).
    pub fn new() -> Self {
        Self::default()
    }
}

#[cfg(test)]
mod tests;
