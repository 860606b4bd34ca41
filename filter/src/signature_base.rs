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

/// A request as the signature sees it: its header list, pseudo-headers included.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a>(pub &'a [(String, Vec<u8>)]);

impl Message<'_> {
    fn first(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The value of `component` in this request, or `None` when the request lacks it.
    pub fn value(&self, component: &Component) -> Option<Vec<u8>> {
        let path = || self.first(":path");
        let split = |p: &[u8]| -> (Vec<u8>, Option<Vec<u8>>) {
            match p.iter().position(|&b| b == b'?') {
                Some(q) => (p[..q].to_vec(), Some(p[q + 1..].to_vec())),
                None => (p.to_vec(), None),
            }
        };
        match component {
            Component::Method => self.first(":method").map(<[u8]>::to_vec),
            Component::Scheme => self.first(":scheme").map(<[u8]>::to_ascii_lowercase),
            Component::Authority => self.authority(),
            Component::RequestTarget => path().map(<[u8]>::to_vec),
            Component::Path => path().map(|p| {
                let (path, _) = split(p);
                if path.is_empty() { b"/".to_vec() } else { path }
            }),
            Component::Query => path().map(|p| {
                let mut out = b"?".to_vec();
                out.extend(split(p).1.unwrap_or_default());
                out
            }),
            Component::TargetUri => {
                let mut out = self.first(":scheme")?.to_ascii_lowercase();
                out.extend_from_slice(b"://");
                out.extend_from_slice(self.first(":authority")?);
                out.extend_from_slice(path()?);
                Some(out)
            }
            Component::Field(name) => {
                let mut lines = self
                    .0
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim_ascii())
                    .peekable();
                lines.peek()?;
                Some(lines.collect::<Vec<_>>().join(&b", "[..]))
            }
        }
    }

    /// `@authority`: lower case, without the scheme's default port (RFC 9110 §4.2.3).
    fn authority(&self) -> Option<Vec<u8>> {
        let mut authority = self.first(":authority")?.to_ascii_lowercase();
        let default_port: &[u8] = match self.first(":scheme").map(<[u8]>::to_ascii_lowercase) {
            Some(s) if s == b"https" => b":443",
            Some(s) if s == b"http" => b":80",
            _ => b"",
        };
        if !default_port.is_empty() && authority.ends_with(default_port) {
            authority.truncate(authority.len() - default_port.len());
        }
        Some(authority)
    }
}

/// Builds the signature base for `components` (already checked for duplicates) and the
/// serialized signature parameters.
///
/// # Errors
/// The component the request lacks.
pub fn build<'c>(
    message: Message<'_>,
    components: &'c [Component],
    signature_params: &str,
) -> Result<Vec<u8>, &'c Component> {
    let mut base = Vec::with_capacity(256);
    for component in components {
        let value = message.value(component).ok_or(component)?;
        base.push(b'"');
        base.extend_from_slice(component.id().as_bytes());
        base.extend_from_slice(b"\": ");
        base.extend_from_slice(&value);
        base.push(b'\n');
    }
    base.extend_from_slice(b"\"@signature-params\": ");
    base.extend_from_slice(signature_params.as_bytes());
    Ok(base)
}

/// The `@signature-params` value: the covered components and the parameters.
pub fn signature_params(components: &[Component], params: &Params) -> String {
    let items: Vec<Item> = components.iter().map(Component::item).collect();
    sfv::serialize_inner_list(&items, params)
}

#[cfg(test)]
pub(crate) mod tests;
