//! Applies a [`Plan`] to a request's headers: Kong's order (remove, rename, replace, add,
//! append), then our `set`.
//!
//! The logic is written against the small [`Headers`] trait so the same function runs on a
//! plain list in native unit tests ([`HeaderList`]) and on the host's header map in the
//! filter, where each trait method is one hostcall. That keeps the per-request path cheap:
//! only `rename` needs every value of a header, so only a plan with renames ever fetches the
//! whole map; `add` asks about one header, `append` and `set` never read at all.
//!
//! Why `set` is remove-then-add and not proxy-wasm's single "replace" call: the ABI does not
//! say what replace does to a header a client sent more than once (Envoy 1.40 drops the other
//! copies; a host that overwrote only the first would let a spoofed second copy through).
//! Removing every copy first leaves exactly one value on every host.

use crate::config::Plan;

/// The operations the transform needs from a header map. Names are lower-case.
pub trait Headers {
    /// Whether at least one copy of `name` is present.
    fn contains(&self, name: &str) -> bool;
    /// Every value of `name`, in order.
    fn values(&self, name: &str) -> Vec<Vec<u8>>;
    /// The first value of `name` (one hostcall on the host's map, where `values` reads the
    /// whole map).
    fn first(&self, name: &str) -> Option<Vec<u8>> {
        self.values(name).into_iter().next()
    }
    /// Removes every copy of `name` (no-op when absent).
    fn remove(&mut self, name: &str);
    /// Adds one more copy of `name`.
    fn add(&mut self, name: &str, value: &[u8]);
    /// Sets `name` to `value` in one call (proxy-wasm's replace): leaves exactly one copy
    /// when there was at most one. What it does to a second copy is the host's (Envoy and
    /// wasmgate drop it): callers that must not keep one remove first.
    fn replace(&mut self, name: &str, value: &[u8]);
    /// Every header, pseudo-headers included, in order (what a signature covers).
    fn pairs(&self) -> Vec<(String, Vec<u8>)>;
}

/// Applies `plan` to `headers`.
pub fn apply(plan: &Plan, headers: &mut impl Headers) {
    for name in &plan.remove {
        headers.remove(name);
    }
    for rename in &plan.rename {
        let values = headers.values(&rename.from);
        if values.is_empty() {
            continue;
        }
        // Kong overwrites the new name with the old header's values.
        headers.remove(&rename.to);
        for value in &values {
            headers.add(&rename.to, value);
        }
        headers.remove(&rename.from);
    }
    for h in &plan.replace {
        if headers.contains(&h.name) {
            headers.remove(&h.name);
            headers.add(&h.name, h.value.as_bytes());
        }
    }
    for h in &plan.add {
        if !headers.contains(&h.name) {
            headers.add(&h.name, h.value.as_bytes());
        }
    }
    for h in &plan.append {
        headers.add(&h.name, h.value.as_bytes());
    }
    for h in &plan.set {
        headers.remove(&h.name);
        headers.add(&h.name, h.value.as_bytes());
    }
}

/// A header list as a plain vector of `(name, value)` pairs, matched without regard to case:
/// the native stand-in for a host's header map (tests, tools).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderList(pub Vec<(String, Vec<u8>)>);

impl HeaderList {
    /// Builds a list from string pairs.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        HeaderList(
            pairs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    /// Every value of `name` as text (lossy), for assertions.
    pub fn get_all(&self, name: &str) -> Vec<String> {
        self.values(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    }
}

impl Headers for HeaderList {
    fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    fn values(&self, name: &str) -> Vec<Vec<u8>> {
        self.0
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    fn add(&mut self, name: &str, value: &[u8]) {
        self.0.push((name.to_owned(), value.to_vec()));
    }

    /// As wasmgate's host: overwrites the first copy in place and drops the others, or
    /// appends.
    fn replace(&mut self, name: &str, value: &[u8]) {
        match self
            .0
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(first) => {
                self.0[first].1 = value.to_vec();
                let mut i = 0;
                self.0.retain(|(n, _)| {
                    i += 1;
                    i <= first + 1 || !n.eq_ignore_ascii_case(name)
                });
            }
            None => self.add(name, value),
        }
    }

    fn pairs(&self) -> Vec<(String, Vec<u8>)> {
        self.0.clone()
    }
}

#[cfg(test)]
mod tests;
