//! Helpers shared by the wasmgate test filters.
//!
//! Test filters take a tiny `key=value` configuration (entries separated by
//! `;` or newlines) so that the same text works as an Envoy `StringValue`
//! and as a wasmgate/harness plugin configuration, without a JSON parser
//! in every module.

use proxy_wasm::types::Status;

/// Parsed `key=value; key=value` configuration, in order of appearance.
#[derive(Debug, Default, Clone)]
pub struct Config(Vec<(String, String)>);

impl Config {
    /// Parses configuration bytes; entries without `=` get an empty value.
    pub fn parse(bytes: Option<&[u8]>) -> Config {
        let text = bytes.map(String::from_utf8_lossy).unwrap_or_default();
        let entries = text
            .split([';', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
                None => (e.to_string(), String::new()),
            })
            .collect();
        Config(entries)
    }

    /// The last value given for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value given for `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `key` parsed as a number, or `default` when absent or not a number.
    pub fn number(&self, key: &str, default: u64) -> u64 {
        self.get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
}

/// A status as text (`"NotFound"`), the form test filters write into headers.
pub fn status_name(status: Status) -> String {
    format!("{status:?}")
}

/// Lower-case hex of `bytes`, so binary values can travel in a header.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Optional text for a header: the value, or `"none"`.
pub fn or_none(value: Option<impl AsRef<str>>) -> String {
    value.map_or_else(|| "none".to_string(), |v| v.as_ref().to_string())
}
