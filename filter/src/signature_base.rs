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

/// A request as the signature sees it: its header list, pseudo-headers included. Names are
/// owned strings when the list is the host's whole map, static ones when the signer fetched
/// only the pseudo-headers it covers.
#[derive(Debug)]
pub struct Message<'a, N = String>(pub &'a [(N, Vec<u8>)]);

impl<N> Clone for Message<'_, N> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<N> Copy for Message<'_, N> {}

impl<N: AsRef<str>> Message<'_, N> {
    fn first(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| n.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The value of `component` in this request, or `None` when the request lacks it.
    pub fn value(&self, component: &Component) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.write_value(component, &mut out).then_some(out)
    }

    /// Appends the value of `component` to `out`; `false` (and `out` unchanged) when the
    /// request lacks it. The signing path builds a whole base in one buffer this way.
    pub fn write_value(&self, component: &Component, out: &mut Vec<u8>) -> bool {
        // Only the components read from `:path` look it up.
        let path = || self.first(":path");
        let query_mark = |p: &[u8]| p.iter().position(|&b| b == b'?');
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
                    .filter(|(n, _)| n.as_ref().eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim_ascii());
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

/// Appends `bytes` in ASCII lower case.
fn push_lower(bytes: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(bytes);
    out[start..].make_ascii_lowercase();
}

/// Builds the signature base for `components` (already checked for duplicates) and the
/// serialized signature parameters.
///
/// # Errors
/// The component the request lacks.
pub fn build<'c, N: AsRef<str>>(
    message: Message<'_, N>,
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
pub fn write_line<N: AsRef<str>>(
    message: Message<'_, N>,
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
