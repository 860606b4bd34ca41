//! [`HeaderMap`]: the header maps filters read and change.
//!
//! A map is read and rebuilt on every request, so it is laid out for that:
//! all names sit back to back in one `String` and all values in one
//! `Vec<u8>`, and each pair is four offsets into them. Building a map of
//! ten headers is two copies into buffers that a reused map already has,
//! not twenty small allocations. A value replaced or a pair removed leaves
//! its bytes behind until the map is cleared, or compacted when the dead
//! bytes outgrow the live ones.
//!
//! The map also remembers which names filters changed through the host
//! functions ([`HeaderMap::edited_names`], [`HeaderMap::replaced`]), so an
//! embedder can write back only those instead of rebuilding its own map.

use std::{fmt, ops::Range};

/// Ordered multimap of header name to value, shaped like an Envoy header map.
///
/// Names are stored in lowercase; lookups ignore ASCII case. Pseudo headers
/// (`:method`, `:path`, `:authority`, `:scheme`, `:status`) live in the map like in Envoy.
/// Values are raw bytes because HTTP allows non-UTF-8 values.
#[derive(Clone, Default)]
pub struct HeaderMap {
    names: String,
    values: Vec<u8>,
    pairs: Vec<Pair>,
    /// Bytes of `names` and `values` no pair points at any more.
    dead: usize,
    /// Lowercase names that filters added, replaced or removed, back to
    /// back in `edited_buf` (no allocation per edit in a reused map).
    edited: Vec<(u32, u32)>,
    edited_buf: String,
    /// A filter replaced the whole map (`proxy_set_header_map_pairs`).
    replaced: bool,
}

#[derive(Clone, Copy, Debug)]
struct Pair {
    name: (u32, u32),
    value: (u32, u32),
}

/// [`HeaderMap::get_all`]'s iterator: a plain loop the compiler inlines
/// into the caller (a scan over a map is mostly length comparisons).
struct ValuesOf<'a> {
    map: &'a HeaderMap,
    pairs: std::slice::Iter<'a, Pair>,
    name: &'a [u8],
}

impl<'a> Iterator for ValuesOf<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let map = self.map;
        self.pairs
            .find(|p| p.is_named(&map.names, self.name))
            .map(|p| map.value(p))
    }
}

impl Pair {
    /// Whether this pair's name (in `names`) is `key`, ignoring ASCII
    /// case. The length is compared first: most names differ there.
    #[inline]
    fn is_named(&self, names: &str, key: &[u8]) -> bool {
        self.name.1 as usize == key.len()
            && names.as_bytes()[range(self.name)].eq_ignore_ascii_case(key)
    }
}

fn range((start, len): (u32, u32)) -> Range<usize> {
    start as usize..start as usize + len as usize
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
            names: String::with_capacity(n * 16),
            values: Vec::with_capacity(n * 32),
            pairs: Vec::with_capacity(n),
            ..Self::default()
        }
    }

    /// Number of pairs (a name with two values counts twice).
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Bytes the map's buffers hold, used or not.
    pub fn capacity_bytes(&self) -> usize {
        self.names.capacity()
            + self.values.capacity()
            + self.pairs.capacity() * size_of::<Pair>()
            + self.edited_buf.capacity()
            + self.edited.capacity() * size_of::<(u32, u32)>()
    }

    /// True when the map holds no pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    fn name(&self, p: &Pair) -> &str {
        &self.names[range(p.name)]
    }

    fn value(&self, p: &Pair) -> &[u8] {
        &self.values[range(p.value)]
    }

    fn position(&self, name: &[u8]) -> Option<usize> {
        self.pairs
            .iter()
            .position(|p| p.is_named(&self.names, name))
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
        ValuesOf {
            map: self,
            pairs: self.pairs.iter(),
            name: name.as_bytes(),
        }
    }

    /// Appends a pair, keeping existing values of the same name.
    pub fn add(&mut self, name: impl AsRef<str>, value: impl AsRef<[u8]>) {
        self.compact_if_wasteful();
        let name = self.push_name(name.as_ref());
        let start = name.0 as usize;
        self.names[start..].make_ascii_lowercase();
        let value = self.push_value(value.as_ref());
        self.pairs.push(Pair { name, value });
    }

    /// [`Self::add`] for a name that is lowercase already (as `http` and
    /// hyper keep them): skips folding the case. A name that is not
    /// lowercase still matches lookups, which ignore case.
    #[inline]
    pub fn add_lowercase(&mut self, name: &str, value: &[u8]) {
        debug_assert!(!name.bytes().any(|b| b.is_ascii_uppercase()), "{name}");
        self.compact_if_wasteful();
        let name = self.push_name(name);
        let value = self.push_value(value);
        self.pairs.push(Pair { name, value });
    }

    /// [`Self::add_lowercase`] for many pairs in one call, as an embedder
    /// copies its own map into a stream.
    #[inline]
    pub fn extend_lowercase<'a>(&mut self, pairs: impl IntoIterator<Item = (&'a str, &'a [u8])>) {
        self.compact_if_wasteful();
        for (name, value) in pairs {
            debug_assert!(!name.bytes().any(|b| b.is_ascii_uppercase()), "{name}");
            let name = self.push_name(name);
            let value = self.push_value(value);
            self.pairs.push(Pair { name, value });
        }
    }

    /// Removes every value of `name`, then adds one pair.
    pub fn replace(&mut self, name: impl AsRef<str>, value: impl AsRef<[u8]>) {
        let name = name.as_ref();
        self.remove(name);
        self.add(name, value);
    }

    /// Removes every value of `name`.
    pub fn remove(&mut self, name: &str) {
        let key = name.as_bytes();
        let mut dead = 0;
        let names = &self.names;
        self.pairs.retain(|p| {
            let keep = !p.is_named(names, key);
            if !keep {
                dead += p.name.1 as usize + p.value.1 as usize;
            }
            keep
        });
        self.dead += dead;
    }

    /// All pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.pairs.iter().map(|p| (self.name(p), self.value(p)))
    }

    /// Removes all pairs and forgets the edits, keeping the allocations.
    pub fn clear(&mut self) {
        self.names.clear();
        self.values.clear();
        self.pairs.clear();
        self.dead = 0;
        self.forget_edits();
    }

    // --- what filters changed ---

    /// Whether filters changed anything since the map was made (or since
    /// [`Self::forget_edits`]).
    pub fn is_edited(&self) -> bool {
        self.replaced || !self.edited.is_empty()
    }

    /// Whether a filter replaced the whole map (then every name counts as
    /// edited).
    pub fn replaced(&self) -> bool {
        self.replaced
    }

    /// Lowercase names that filters added, replaced or removed, each once.
    /// Changes the embedder makes through [`Self::add`], [`Self::replace`]
    /// and [`Self::remove`] are not counted.
    pub fn edited_names(&self) -> impl Iterator<Item = &str> {
        self.edited.iter().map(|r| &self.edited_buf[range(*r)])
    }

    /// Starts counting edits afresh.
    pub fn forget_edits(&mut self) {
        self.edited.clear();
        self.edited_buf.clear();
        self.replaced = false;
    }

    /// Records that `name` was edited. The host functions do this for the
    /// filters' changes; an embedder or a test may do it for its own.
    pub fn note_edit(&mut self, name: &str) {
        if self.replaced || self.edited_names().any(|n| n.eq_ignore_ascii_case(name)) {
            return;
        }
        let start = self.edited_buf.len();
        self.edited_buf.push_str(name);
        self.edited_buf[start..].make_ascii_lowercase();
        self.edited.push((start as u32, name.len() as u32));
    }

    pub(crate) fn mark_replaced(&mut self) {
        self.forget_edits();
        self.replaced = true;
    }

    // --- storage ---

    #[inline]
    fn push_name(&mut self, name: &str) -> (u32, u32) {
        let start = self.names.len();
        self.names.push_str(name);
        (start as u32, name.len() as u32)
    }

    #[inline]
    fn push_value(&mut self, value: &[u8]) -> (u32, u32) {
        let start = self.values.len();
        self.values.extend_from_slice(value);
        (start as u32, value.len() as u32)
    }

    /// Rewrites the buffers without dead bytes once those outnumber the
    /// live ones (a filter replacing a value in a loop cannot grow the map
    /// without bound).
    #[inline]
    fn compact_if_wasteful(&mut self) {
        if self.dead >= 4096 && self.dead * 2 >= self.names.len() + self.values.len() {
            self.compact();
        }
    }

    #[cold]
    fn compact(&mut self) {
        let mut names = String::with_capacity(self.names.len() - self.dead.min(self.names.len()));
        let mut values = Vec::with_capacity(self.values.len() - self.dead.min(self.values.len()));
        for p in &mut self.pairs {
            let n = names.len();
            names.push_str(&self.names[range(p.name)]);
            let v = values.len();
            values.extend_from_slice(&self.values[range(p.value)]);
            p.name.0 = n as u32;
            p.value.0 = v as u32;
        }
        self.names = names;
        self.values = values;
        self.dead = 0;
    }

    // --- byte-keyed operations used by the host functions (they count as edits) ---

    pub(crate) fn get_bytes(&self, name: &[u8]) -> Option<&[u8]> {
        self.position(name).map(|i| self.value(&self.pairs[i]))
    }

    pub(crate) fn remove_bytes(&mut self, name: &[u8]) {
        // A name that is not UTF-8 matches no pair: nothing to remove.
        if self.position(name).is_none() {
            return;
        }
        if let Ok(text) = std::str::from_utf8(name) {
            self.note_edit(text);
            self.remove(text);
        }
    }

    /// Envoy's `setCopy`: overwrite the first value in place and drop the others, or
    /// append when the name is absent. The key must already be valid UTF-8.
    pub(crate) fn replace_bytes(&mut self, name: &str, value: &[u8]) {
        self.note_edit(name);
        let key = name.as_bytes();
        match self.position(key) {
            Some(first) => {
                self.compact_if_wasteful();
                self.dead += self.pairs[first].value.1 as usize;
                let v = self.push_value(value);
                self.pairs[first].value = v;
                let mut dead = 0;
                let names = &self.names;
                let mut i = 0;
                self.pairs.retain(|p| {
                    let keep = i <= first || !p.is_named(names, key);
                    if !keep {
                        dead += p.name.1 as usize + p.value.1 as usize;
                    }
                    i += 1;
                    keep
                });
                self.dead += dead;
            }
            None => self.add(name, value),
        }
    }

    pub(crate) fn add_bytes(&mut self, name: &str, value: &[u8]) {
        self.note_edit(name);
        self.add(name, value);
    }

    /// Size of the proxy-wasm serialization of this map; 0 for an empty map.
    pub(crate) fn serialized_len(&self) -> usize {
        if self.pairs.is_empty() {
            return 0;
        }
        4 + self
            .pairs
            .iter()
            .map(|p| 8 + p.name.1 as usize + p.value.1 as usize + 2)
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
        out[..4].copy_from_slice(&(self.pairs.len() as u32).to_le_bytes());
        let mut at = 4;
        for p in &self.pairs {
            out[at..at + 4].copy_from_slice(&p.name.1.to_le_bytes());
            out[at + 4..at + 8].copy_from_slice(&p.value.1.to_le_bytes());
            at += 8;
        }
        for p in &self.pairs {
            let (n, v) = (self.name(p).as_bytes(), self.value(p));
            out[at..at + n.len()].copy_from_slice(n);
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
        let len = self.serialized_len();
        if len == 0 {
            return;
        }
        let start = out.len();
        out.resize(start + len, 0);
        self.serialize_to_slice(&mut out[start..]);
    }
}

impl PartialEq for HeaderMap {
    /// Same pairs in the same order (edits are not compared).
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for HeaderMap {}

impl fmt::Debug for HeaderMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(n, v)| (n, String::from_utf8_lossy(v))))
            .finish()
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>> FromIterator<(K, V)> for HeaderMap {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = HeaderMap::new();
        for (k, v) in iter {
            map.add(k, v);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_changes_are_counted_as_edits_embedder_changes_are_not() {
        let mut m: HeaderMap = [("Host", "a"), ("x-a", "1"), ("X-A", "2")]
            .into_iter()
            .collect();
        m.replace("x-b", "3");
        m.remove("nothing");
        assert!(!m.is_edited());
        m.replace_bytes("X-A", b"9");
        m.add_bytes("x-c", b"1");
        m.add_bytes("x-c", b"2");
        m.remove_bytes(b"absent");
        assert_eq!(m.edited_names().collect::<Vec<_>>(), ["x-a", "x-c"]);
        assert_eq!(m.get_all("x-a").collect::<Vec<_>>(), [b"9"]);
        assert_eq!(
            m.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            ["host", "x-a", "x-b", "x-c", "x-c"]
        );
        m.forget_edits();
        assert!(!m.is_edited());
        m.mark_replaced();
        assert!(m.replaced() && m.is_edited());
        m.clear();
        assert!(m.is_empty() && !m.is_edited());
    }

    #[test]
    fn replacing_in_a_loop_stays_bounded() {
        let mut m = HeaderMap::new();
        m.add("keep", "k");
        let big = vec![b'v'; 1000];
        for _ in 0..10_000 {
            m.replace_bytes("x", &big);
            m.add_bytes("y", b"1");
            m.remove_bytes(b"y");
        }
        assert_eq!(m.get("keep"), Some(&b"k"[..]));
        assert_eq!(m.get("x").map(<[u8]>::len), Some(1000));
        assert_eq!(m.len(), 2);
        assert!(m.values.len() < 20_000, "{}", m.values.len());
    }
}
