//! One list entry: a header name (`remove`), an `old:new` pair (`rename`) or a `name:value`
//! (`replace`, `add`, `append`, `set`), checked and normalised.
//!
//! Splitting follows Kong (`^([^:]+):*(.-)$`): the name ends at the first `:`, any further
//! colons right after it are skipped, and the value may itself contain `:`
//! (`Authorization:Bearer abc` is name `Authorization`, value `Bearer abc`). Unlike Kong we
//! also trim spaces and tabs around the value (on the wire they are optional whitespace and
//! receivers drop them anyway), and we lower-case names: proxy-wasm header maps are lower-case.

use super::reference::{self, Env};
use crate::error::Problem;

/// A header to write: a lower-case name and its value (which may be a secret).
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    /// Lower-case header name, a valid RFC 9110 token.
    pub name: String,
    /// The value to write, references already resolved. Treat it as a secret.
    pub value: String,
}

/// Values are never printed, not even by `{:?}`.
impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Header")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// A rename: every value of `from` moves to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rename {
    /// Lower-case old name.
    pub from: String,
    /// Lower-case new name.
    pub to: String,
}

/// Headers the proxy owns: message framing, connection management and routing. Changing them
/// from a filter breaks or smuggles requests, so every operation refuses them. (`host` is also
/// Kong's exception: its add never sets it; in Envoy it is the `:authority` pseudo-header.)
const RESERVED: [&str; 8] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
];

/// Parses a `remove.headers` entry.
pub fn name(entry: &str) -> Result<String, Problem> {
    header_name(entry, "header name")
}

/// Parses a `rename.headers` entry, `old:new`.
pub fn rename(entry: &str) -> Result<Rename, Problem> {
    let (from, to) = split(entry, "old:new")?;
    let from = header_name(from, "old name")?;
    let to = header_name(to, "new name")?;
    if from == to {
        return Err(Problem::RenameToSelf);
    }
    Ok(Rename { from, to })
}

/// Parses a `name:value` entry and resolves its references. On error, also returns the
/// header name when it was valid, so the message can name it.
pub fn header(entry: &str, env: Env<'_>) -> Result<Header, (Option<String>, Problem)> {
    let (name, raw) = split(entry, "name:value").map_err(|p| (None, p))?;
    let name = header_name(name, "header name").map_err(|p| (None, p))?;
    let value = value(raw, env).map_err(|problem| (Some(name.clone()), problem))?;
    Ok(Header { name, value })
}

/// Checks a configured value (spaces and tabs around it trimmed) and resolves its references.
pub fn value(raw: &str, env: Env<'_>) -> Result<String, Problem> {
    let raw = raw.trim_matches([' ', '\t']);
    if raw.is_empty() {
        return Err(Problem::EmptyValue);
    }
    if raw.bytes().any(reference::is_forbidden_value_byte) {
        return Err(Problem::ValueControlChar);
    }
    if is_template(raw) {
        return Err(Problem::Template);
    }
    reference::resolve(raw, env)
}

/// Kong's split: name up to the first `:`, then skip any run of `:`.
fn split<'a>(entry: &'a str, expected: &'static str) -> Result<(&'a str, &'a str), Problem> {
    match entry.split_once(':') {
        Some((name, rest)) => Ok((name, rest.trim_start_matches(':'))),
        None => Err(Problem::MissingColon { expected }),
    }
}

/// Checks an RFC 9110 token, lower-cases it and refuses the proxy's own headers. The invalid
/// name itself is never echoed (a mangled entry may hold a secret); one bad character is.
pub fn header_name(raw: &str, which: &'static str) -> Result<String, Problem> {
    if raw.is_empty() {
        return Err(Problem::InvalidName {
            which,
            reason: "it is empty".to_owned(),
        });
    }
    if let Some((pos, c)) = raw.char_indices().find(|&(_, c)| !is_token_char(c)) {
        let shown = if c.is_ascii_graphic() || c == ' ' {
            format!("{c:?}")
        } else {
            format!("U+{:04X}", u32::from(c))
        };
        return Err(Problem::InvalidName {
            which,
            reason: format!("character {shown} at byte {pos} is not allowed"),
        });
    }
    let name = raw.to_ascii_lowercase();
    if RESERVED.contains(&name.as_str()) {
        return Err(Problem::ReservedName { which, name });
    }
    Ok(name)
}

/// RFC 9110 `tchar`.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Kong refuses values matching `%$%(.*%)` unless untrusted Lua is on; so do we, always.
fn is_template(value: &str) -> bool {
    value.find("$(").is_some_and(|i| value[i..].contains(')'))
}
