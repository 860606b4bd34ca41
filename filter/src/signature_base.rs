//! The signature base of HTTP Message Signatures (RFC 9421 §2.5), shared by `sign` and
//! `verify_signature`, and the covered components this filter supports.
//!
//! A base is one line per covered component, `"<id>": <value>` and a newline, then the
//! `"@signature-params": <inner list>` line, without a trailing newline. Components:
//!
//! - derived (§2.2): `@method`, `@authority`, `@scheme`, `@target-uri`, `@request-target`,
//!   `@path`, `@query`, taken from the proxy's pseudo-headers (`:method`, `:authority`,
//!   `:scheme`, `:path`). `@authority` is lower-cased and loses a default port; `@path` is
//!   `/` when empty; `@query` is `?` when the request has no query.
//! - HTTP fields (§2.1) by lower-case name: every line of the field, trimmed, joined with
//!   `", "`.
//!
//! Component parameters (`;sf`, `;key`, `;bs`, `;req`, `;tr`), `@query-param` and `@status`
//! are not supported: a signature that uses them is refused as malformed, and a `sign`
//! configuration that lists them is refused at load.

use crate::sfv::{self, BareItem, Item, Params};

/// One covered component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Component {
    /// `@method`.
    Method,
    /// `@authority`.
    Authority,
    /// `@scheme`.
    Scheme,
    /// `@target-uri`.
    TargetUri,
    /// `@request-target`.
    RequestTarget,
    /// `@path`.
    Path,
    /// `@query`.
    Query,
    /// An HTTP field, by lower-case name.
    Field(String),
}

impl Component {
    /// Parses a component identifier as it appears in configuration or in `Signature-Input`.
    ///
    /// # Errors
    /// Why the identifier is not supported (the text names the identifier only when it is a
    /// derived component name, never an arbitrary string).
    pub fn parse(id: &str) -> Result<Component, String> {
        Ok(match id {
            "@method" => Component::Method,
            "@authority" => Component::Authority,
            "@scheme" => Component::Scheme,
            "@target-uri" => Component::TargetUri,
            "@request-target" => Component::RequestTarget,
            "@path" => Component::Path,
            "@query" => Component::Query,
            "@query-param" | "@status" => {
                return Err(format!("{id} is not supported"));
            }
            _ if id.starts_with('@') => {
                return Err("unknown derived component".to_owned());
            }
            _ => {
                if id.is_empty() || !id.bytes().all(is_lower_tchar) {
                    return Err(
                        "an HTTP field name must be a lower-case token (RFC 9421 §2.1)".to_owned(),
                    );
                }
                Component::Field(id.to_owned())
            }
        })
    }

    /// The identifier, as written in a base and in `Signature-Input`.
    pub fn id(&self) -> &str {
        match self {
            Component::Method => "@method",
            Component::Authority => "@authority",
            Component::Scheme => "@scheme",
            Component::TargetUri => "@target-uri",
            Component::RequestTarget => "@request-target",
            Component::Path => "@path",
            Component::Query => "@query",
            Component::Field(name) => name,
        }
    }

    /// The identifier as an inner-list item.
    pub fn item(&self) -> Item {
        Item {
            bare: BareItem::String(self.id().to_owned()),
            params: Vec::new(),
        }
    }
}

/// A lower-case `tchar`.
fn is_lower_tchar(c: u8) -> bool {
    (c.is_ascii_alphanumeric() && !c.is_ascii_uppercase()) || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// A request as the signature sees it: its header list, pseudo-headers included. Names and
/// values are owned when the list was copied out of the host (`String`, `Vec<u8>`), or
/// slices of the serialized map the host handed over.
#[derive(Debug)]
pub struct Message<'a, N = String, V = Vec<u8>>(pub &'a [(N, V)]);

impl<N, V> Clone for Message<'_, N, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<N, V> Copy for Message<'_, N, V> {}

impl<N: AsRef<[u8]>, V: AsRef<[u8]>> Message<'_, N, V> {
    fn first(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| same_name(n.as_ref(), name.as_bytes()))
            .map(|(_, v)| v.as_ref())
    }

    /// The value of `component` in this request, or `None` when the request lacks it.
    pub fn value(&self, component: &Component) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.write_value(component, &mut out).then_some(out)
    }

    /// Whether the request has `component`.
    pub fn has(&self, component: &Component) -> bool {
        match component {
            Component::Method => self.first(":method").is_some(),
            Component::Scheme => self.first(":scheme").is_some(),
            Component::Authority => self.first(":authority").is_some(),
            Component::RequestTarget | Component::Path | Component::Query => {
                self.first(":path").is_some()
            }
            Component::TargetUri => [":scheme", ":authority", ":path"]
                .iter()
                .all(|name| self.first(name).is_some()),
            Component::Field(name) => self.first(name).is_some(),
        }
    }

    /// Appends the value of `component` to `out`; `false` (and `out` unchanged) when the
    /// request lacks it. The signing path builds a whole base in one buffer this way.
    pub fn write_value(&self, component: &Component, out: &mut Vec<u8>) -> bool {
        // Only the components read from `:path` look it up.
        let path = || self.first(":path");
        let query_mark = |p: &[u8]| find_byte(p, b'?');
        match component {
            Component::Method => return self.copy_first(":method", out),
            Component::Scheme => {
                let Some(scheme) = self.first(":scheme") else {
                    return false;
                };
                push_lower(scheme, out);
            }
            Component::Authority => return self.write_authority(out),
            Component::RequestTarget => return self.copy_first(":path", out),
            Component::Path => {
                let Some(p) = path() else {
                    return false;
                };
                match &p[..query_mark(p).unwrap_or(p.len())] {
                    [] => out.push(b'/'),
                    path => out.extend_from_slice(path),
                }
            }
            Component::Query => {
                let Some(p) = path() else {
                    return false;
                };
                out.push(b'?');
                if let Some(q) = query_mark(p) {
                    out.extend_from_slice(&p[q + 1..]);
                }
            }
            Component::TargetUri => {
                let (Some(scheme), Some(authority), Some(path)) =
                    (self.first(":scheme"), self.first(":authority"), path())
                else {
                    return false;
                };
                push_lower(scheme, out);
                out.extend_from_slice(b"://");
                out.extend_from_slice(authority);
                out.extend_from_slice(path);
            }
            Component::Field(name) => {
                let mut lines = self
                    .0
                    .iter()
                    .filter(|(n, _)| same_name(n.as_ref(), name.as_bytes()))
                    .map(|(_, v)| v.as_ref().trim_ascii());
                let Some(first) = lines.next() else {
                    return false;
                };
                out.extend_from_slice(first);
                for line in lines {
                    out.extend_from_slice(b", ");
                    out.extend_from_slice(line);
                }
            }
        }
        true
    }

    /// Appends the first value of `name` as it is.
    fn copy_first(&self, name: &str, out: &mut Vec<u8>) -> bool {
        self.first(name).map(|v| out.extend_from_slice(v)).is_some()
    }

    /// `@authority`: lower case, without the scheme's default port (RFC 9110 §4.2.3).
    fn write_authority(&self, out: &mut Vec<u8>) -> bool {
        let Some(authority) = self.first(":authority") else {
            return false;
        };
        let default_port: &[u8] = match self.first(":scheme") {
            Some(s) if s.eq_ignore_ascii_case(b"https") => b":443",
            Some(s) if s.eq_ignore_ascii_case(b"http") => b":80",
            _ => b"",
        };
        let trimmed = match authority.len().checked_sub(default_port.len()) {
            Some(cut)
                if !default_port.is_empty()
                    && authority[cut..].eq_ignore_ascii_case(default_port) =>
            {
                &authority[..cut]
            }
            _ => authority,
        };
        push_lower(trimmed, out);
        true
    }
}

/// Whether two field names are the same (without regard to case; hosts hand names over in
/// lower case, so the exact comparison, of a known length once inlined, nearly always decides).
#[inline(always)]
pub fn same_name(name: &[u8], known: &[u8]) -> bool {
    name.len() == known.len() && (name == known || name.eq_ignore_ascii_case(known))
}

/// Appends `bytes` in ASCII lower case.
fn push_lower(bytes: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(bytes);
    let text = &mut out[start..];
    let Some(last) = text.len().checked_sub(8) else {
        text.make_ascii_lowercase();
        return;
    };
    // Eight bytes at a time, the last eight overlapping (lowering twice changes nothing).
    let mut at = 0;
    while at < last {
        lower_word(&mut text[at..at + 8]);
        at += 8;
    }
    lower_word(&mut text[last..]);
}

/// Ones in every byte; the high bit of every byte.
const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Lowers the ASCII letters of eight bytes at once. In wasm every loop iteration also pays
/// an interruption check, and a byte loop costs about fifteen instructions a byte.
fn lower_word(bytes: &mut [u8]) {
    let Ok(word) = <[u8; 8]>::try_from(&*bytes) else {
        return;
    };
    let x = u64::from_le_bytes(word);
    let low7 = x & !HIGH_BITS;
    // The high bit of each byte set when its low seven bits are at least `A`, and at least
    // `[`; an upper-case letter is the first and not the second, in a byte below 0x80.
    let from_a = low7 + LOW_BITS * (0x80 - u64::from(b'A'));
    let past_z = low7 + LOW_BITS * (0x80 - u64::from(b'Z') - 1);
    let upper = from_a & !past_z & !x & HIGH_BITS;
    bytes.copy_from_slice(&(x | (upper >> 2)).to_le_bytes());
}

/// Where `byte` first is in `haystack`, eight bytes at a time (the last eight overlapping).
pub fn find_byte(haystack: &[u8], byte: u8) -> Option<usize> {
    let Some(last) = haystack.len().checked_sub(8) else {
        return haystack.iter().position(|&b| b == byte);
    };
    // The lowest byte that is zero in `x` (the lowest marked bit is always right).
    let first_zero = |x: u64| {
        let marks = x.wrapping_sub(LOW_BITS) & !x & HIGH_BITS;
        (marks != 0).then(|| marks.trailing_zeros() as usize / 8)
    };
    let pattern = LOW_BITS * u64::from(byte);
    let word = |at: usize| {
        let bytes: [u8; 8] = haystack[at..at + 8].try_into().unwrap_or_default();
        u64::from_le_bytes(bytes) ^ pattern
    };
    let mut at = 0;
    while at < last {
        if let Some(i) = first_zero(word(at)) {
            return Some(at + i);
        }
        at += 8;
    }
    first_zero(word(last)).map(|i| last + i)
}

/// Builds the signature base for `components` (already checked for duplicates) and the
/// serialized signature parameters.
///
/// # Errors
/// The component the request lacks.
pub fn build<'c, N: AsRef<[u8]>, V: AsRef<[u8]>>(
    message: Message<'_, N, V>,
    components: &'c [Component],
    signature_params: &str,
) -> Result<Vec<u8>, &'c Component> {
    let mut base = Vec::with_capacity(256);
    for component in components {
        if !write_line(message, component, &mut base) {
            return Err(component);
        }
    }
    base.extend_from_slice(b"\"@signature-params\": ");
    base.extend_from_slice(signature_params.as_bytes());
    Ok(base)
}

/// Appends the base's line for `component` (`"<id>": <value>` and a newline); `false`, with
/// `base` unchanged, when the request lacks the component.
pub fn write_line<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    message: Message<'_, N, V>,
    component: &Component,
    base: &mut Vec<u8>,
) -> bool {
    let mark = base.len();
    base.push(b'"');
    base.extend_from_slice(component.id().as_bytes());
    base.extend_from_slice(b"\": ");
    if !message.write_value(component, base) {
        base.truncate(mark);
        return false;
    }
    base.push(b'\n');
    true
}

/// The `@signature-params` value: the covered components and the parameters.
pub fn signature_params(components: &[Component], params: &Params) -> String {
    let items: Vec<Item> = components.iter().map(Component::item).collect();
    sfv::serialize_inner_list(&items, params)
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod word_tests {
    use super::*;

    #[test]
    fn word_at_a_time_matches_byte_at_a_time() {
        let alphabet = b"aZ?@[`{AzM?m\x7f\x80\xc1\xdaQ";
        for len in 0..40 {
            for shift in 0..alphabet.len() {
                let text: Vec<u8> = (0..len)
                    .map(|i| alphabet[(i * 7 + shift) % alphabet.len()])
                    .collect();
                let mut lowered = Vec::new();
                push_lower(&text, &mut lowered);
                assert_eq!(lowered, text.to_ascii_lowercase(), "{text:?}");
                for byte in [b'?', b'a', 0x80, b'x'] {
                    assert_eq!(
                        find_byte(&text, byte),
                        text.iter().position(|&b| b == byte),
                        "{text:?} {byte}"
                    );
                }
            }
        }
    }
}
