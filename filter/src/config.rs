//! Plugin configuration (JSON) → a validated [`Plan`], once, in `on_configure`.
//!
//! The shape is the header part of Kong's request-transformer plugin, plus our own `set`:
//!
//! ```json
//! {
//!   "remove":  {"headers": ["x-debug"]},
//!   "rename":  {"headers": ["x-old:x-new"]},
//!   "replace": {"headers": ["x-env:prod"]},
//!   "add":     {"headers": ["Authorization:Bearer my-secret-key"]},
//!   "append":  {"headers": ["x-tag:gw"]},
//!   "set":     {"headers": ["Authorization:Bearer {vault://env/BACKEND_TOKEN}"]}
//! }
//! ```
//!
//! Every key is optional but at least one entry must exist. Unknown keys are errors. Kong's
//! other request-transformer keys (`querystring`, `body`, `replace.uri`, `http_method`) are
//! accepted only when null or empty, so a configuration exported from Kong loads unchanged
//! as long as it only touches headers.
//!
//! The document is first read as a `serde_json::Value` and then walked by hand: serde's own
//! type errors quote the offending value ("invalid type: string \"Bearer ...\""), which could
//! be a secret; ours never do.

mod entry;
mod reference;

pub use entry::{Header, Rename};
pub use reference::{Env, env_variable_name};

use crate::error::{ConfigError, Problem};
use crate::sign::Sign;
use crate::verify::Verify;
use crate::verify_signature::VerifySignature;
use serde_json::{Map, Value};

/// What the filter does to each request's headers, in Kong's order, then `set`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// `remove.headers`: drop every copy.
    pub remove: Vec<String>,
    /// `rename.headers`: move every value of an existing header to a new name.
    pub rename: Vec<Rename>,
    /// `replace.headers`: overwrite (with one value) only headers that are present.
    pub replace: Vec<Header>,
    /// `add.headers`: set only headers that are absent (a client-sent copy wins).
    pub add: Vec<Header>,
    /// `append.headers`: add one more value, present or not.
    pub append: Vec<Header>,
    /// `set.headers` (ours): drop every client copy, then set exactly this one value.
    pub set: Vec<Header>,
    /// `verify` (ours): refuse requests without an accepted secret; runs before the rest.
    pub verify: Option<Verify>,
    /// `verify_signature` (ours): refuse requests without a valid RFC 9421 signature; runs
    /// after `verify`, before the header operations.
    pub verify_signature: Option<VerifySignature>,
    /// `sign` (ours): sign the request as it leaves, after every header operation.
    pub sign: Option<Sign>,
}

/// The sections, in the order they apply.
const SECTIONS: [&str; 6] = ["remove", "rename", "replace", "add", "append", "set"];

impl Plan {
    /// Parses and validates a configuration, resolving `{vault://env/NAME}` references with
    /// `env` (on wasm: the module's WASI environment).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key and entry at fault; never a value.
    pub fn parse(config: &[u8], env: Env<'_>) -> Result<Plan, ConfigError> {
        if config.iter().all(u8::is_ascii_whitespace) {
            return Err(ConfigError::document(Problem::NoOperations));
        }
        let doc: Value = serde_json::from_slice(config)
            .map_err(|e| ConfigError::document(Problem::NotJson(e.to_string())))?;
        let Value::Object(doc) = doc else {
            return Err(ConfigError::document(Problem::WrongType {
                expected: "a JSON object",
            }));
        };

        let mut plan = Plan::default();
        for (key, value) in &doc {
            match key.as_str() {
                "http_method" => null_or_empty(value, key)?,
                "verify" => plan.verify = Some(Verify::parse(value, env)?),
                "verify_signature" => {
                    plan.verify_signature = Some(VerifySignature::parse(value, env)?);
                }
                "sign" => plan.sign = Some(Sign::parse(value, env)?),
                section if SECTIONS.contains(&section) => {
                    let entries = section_entries(section, value)?;
                    plan.fill(section, &entries, env)?;
                }
                other => {
                    return Err(ConfigError::document(Problem::UnknownKey {
                        key: shorten(other),
                        known: "remove, rename, replace, add, append, set, verify, \
                                verify_signature, sign",
                    }));
                }
            }
        }
        if plan.is_empty() {
            return Err(ConfigError::document(Problem::NoOperations));
        }
        Ok(plan)
    }

    /// True when no operation is configured.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.replace.is_empty()
            && self.add.is_empty()
            && self.append.is_empty()
            && self.set.is_empty()
            && self.verify.is_none()
            && self.verify_signature.is_none()
            && self.sign.is_none()
    }

    /// A one-line count of operations for logs, e.g. `remove 0, rename 0, ..., set 1`, plus
    /// the header names being written (names are not secrets; values never appear).
    pub fn summary(&self) -> String {
        let written: Vec<&str> = [&self.replace, &self.add, &self.append, &self.set]
            .into_iter()
            .flatten()
            .map(|h| h.name.as_str())
            .collect();
        let mut summary = format!(
            "remove {}, rename {}, replace {}, add {}, append {}, set {} (writes: {})",
            self.remove.len(),
            self.rename.len(),
            self.replace.len(),
            self.add.len(),
            self.append.len(),
            self.set.len(),
            if written.is_empty() {
                "none".to_owned()
            } else {
                written.join(", ")
            },
        );
        if let Some(verify) = &self.verify {
            summary.push_str(&format!(
                "; verify {} ({} accepted values, strip {})",
                verify.header,
                verify.accepted_values(),
                verify.strip
            ));
        }
        if let Some(v) = &self.verify_signature {
            summary.push_str(&format!(
                "; verify_signature (keys {}, requires {}, max_age {}s, strip {})",
                v.key_ids().join(", "),
                v.required
                    .iter()
                    .map(|c| c.id())
                    .collect::<Vec<_>>()
                    .join(" "),
                v.max_age,
                v.strip
            ));
        }
        if let Some(s) = &self.sign {
            summary.push_str(&format!(
                "; sign (keyid {}, covers {}, content_digest {}, nonce {})",
                s.key_id,
                s.components
                    .iter()
                    .map(|c| c.id())
                    .collect::<Vec<_>>()
                    .join(" "),
                s.content_digest,
                s.nonce
            ));
        }
        summary
    }

    /// Parses the entries of one section into the plan.
    fn fill(&mut self, section: &str, entries: &[&str], env: Env<'_>) -> Result<(), ConfigError> {
        for (i, entry) in entries.iter().enumerate() {
            let at = format!("{section}.headers[{i}]");
            match section {
                "remove" => self
                    .remove
                    .push(entry::name(entry).map_err(|p| ConfigError::at(at, p))?),
                "rename" => self
                    .rename
                    .push(entry::rename(entry).map_err(|p| ConfigError::at(at, p))?),
                _ => {
                    let header = entry::header(entry, env).map_err(|(name, p)| {
                        let e = ConfigError::at(at.clone(), p);
                        match name {
                            Some(name) => e.with_header(&name),
                            None => e,
                        }
                    })?;
                    let list = match section {
                        "replace" => &mut self.replace,
                        "add" => &mut self.add,
                        "append" => &mut self.append,
                        _ => &mut self.set,
                    };
                    if section == "set" && list.iter().any(|h| h.name == header.name) {
                        return Err(
                            ConfigError::at(at, Problem::DuplicateSet).with_header(&header.name)
                        );
                    }
                    list.push(header);
                }
            }
        }
        Ok(())
    }
}

/// The strings of `<section>.headers`, checking the section's other keys.
fn section_entries<'a>(section: &str, value: &'a Value) -> Result<Vec<&'a str>, ConfigError> {
    let obj: &Map<String, Value> = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Object(obj) => obj,
        _ => {
            return Err(ConfigError::at(
                section,
                Problem::WrongType {
                    expected: "an object like {\"headers\": [..]}",
                },
            ));
        }
    };
    let mut entries = Vec::new();
    for (key, value) in obj {
        let at = format!("{section}.{key}");
        match (section, key.as_str()) {
            (_, "headers") => entries = string_list(&at, value)?,
            // Kong keys outside our scope: fine while they do nothing.
            ("set", _) => {
                return Err(ConfigError::at(
                    section,
                    Problem::UnknownKey {
                        key: shorten(key),
                        known: "headers",
                    },
                ));
            }
            (_, "querystring" | "body") | ("replace", "uri") => null_or_empty(value, &at)?,
            _ => {
                return Err(ConfigError::at(
                    section,
                    Problem::UnknownKey {
                        key: shorten(key),
                        known: "headers (Kong's querystring and body only when empty)",
                    },
                ));
            }
        }
    }
    Ok(entries)
}

/// A JSON array of strings (null counts as empty).
pub(crate) fn string_list<'a>(at: &str, value: &'a Value) -> Result<Vec<&'a str>, ConfigError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str().ok_or_else(|| {
                    ConfigError::at(
                        format!("{at}[{i}]"),
                        Problem::WrongType {
                            expected: "a string",
                        },
                    )
                })
            })
            .collect(),
        _ => Err(ConfigError::at(
            at,
            Problem::WrongType {
                expected: "an array of strings",
            },
        )),
    }
}

/// A Kong key we do not implement must be null, an empty array or an empty string.
fn null_or_empty(value: &Value, at: &str) -> Result<(), ConfigError> {
    let empty = match value {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    };
    if empty {
        Ok(())
    } else {
        Err(ConfigError::at(at, Problem::UnsupportedKongKey))
    }
}

/// An unknown key, cut to a readable length (it is echoed in the error).
pub(crate) fn shorten(key: &str) -> String {
    const MAX: usize = 40;
    match key.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &key[..cut]),
        None => key.to_owned(),
    }
}

/// The object at `at`; `shape` describes it in the error.
pub(crate) fn object<'a>(
    at: &str,
    value: &'a Value,
    shape: &'static str,
) -> Result<&'a Map<String, Value>, ConfigError> {
    value
        .as_object()
        .ok_or_else(|| ConfigError::at(at, Problem::WrongType { expected: shape }))
}

/// A JSON boolean at `at`.
pub(crate) fn bool_at(at: &str, value: &Value) -> Result<bool, ConfigError> {
    value.as_bool().ok_or_else(|| {
        ConfigError::at(
            at,
            Problem::WrongType {
                expected: "true or false",
            },
        )
    })
}

/// A JSON string at `at`.
pub(crate) fn str_at<'a>(at: &str, value: &'a Value) -> Result<&'a str, ConfigError> {
    value.as_str().ok_or_else(|| {
        ConfigError::at(
            at,
            Problem::WrongType {
                expected: "a string",
            },
        )
    })
}

/// A header name at `at`: a valid token, lower-cased, not one the proxy manages.
pub(crate) fn header_name_at(at: &str, value: &Value) -> Result<String, ConfigError> {
    entry::header_name(str_at(at, value)?, "header name").map_err(|p| ConfigError::at(at, p))
}

/// A value that may be or hold a secret: checked like a header value, references resolved.
pub(crate) fn secret_value(raw: &str, env: Env<'_>) -> Result<String, Problem> {
    entry::value(raw, env)
}

#[cfg(test)]
mod tests;
