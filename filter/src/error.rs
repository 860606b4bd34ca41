//! Configuration errors, worded for the one log line `on_configure` writes.
//!
//! The rule this module exists for: a message names *where* the problem is (the key, the
//! entry's index, the header name once it is known to be a valid name) and *what* is wrong,
//! but never a header value, a resolved reference or any text that could be part of one.
//! Values are not even stored here, so a future `Display` change cannot leak them.

use std::fmt;

/// A configuration the filter refuses, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where: empty for the whole document, `"add"` for a key, `"add.headers[0]"` for an entry.
    pub at: String,
    /// The header the entry is about, once its name is known to be valid (names are not secret).
    pub header: Option<String>,
    /// What is wrong.
    pub problem: Problem,
}

/// What is wrong with a configuration. No variant carries a header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The bytes are not JSON; the text is serde_json's syntax error (line and column only).
    NotJson(String),
    /// The configuration is empty or has no header operation at all.
    NoOperations,
    /// A value had the wrong JSON type.
    WrongType { expected: &'static str },
    /// A key this filter does not know (truncated, escaped), and the keys allowed there.
    UnknownKey { key: String, known: &'static str },
    /// A Kong request-transformer key that is valid for Kong but outside this filter's scope.
    UnsupportedKongKey,
    /// A `name:value` (or `old:new`) entry without a colon.
    MissingColon { expected: &'static str },
    /// A header name that is empty or not an RFC 9110 token.
    InvalidName { which: &'static str, reason: String },
    /// A header the proxy itself manages (framing, routing); changing it would break requests.
    ReservedName { which: &'static str, name: String },
    /// A rename whose old and new names are the same header.
    RenameToSelf,
    /// The same header appears twice in `set.headers`.
    DuplicateSet,
    /// An entry whose value is empty (Kong silently skips these; we refuse them).
    EmptyValue,
    /// A literal value containing CR, LF or another control character.
    ValueControlChar,
    /// A Kong template `$(...)`, which needs Kong's Lua sandbox.
    Template,
    /// A required key is absent.
    MissingKey { key: &'static str },
    /// A list that must hold at least one entry is empty.
    EmptyList,
    /// A list holds more entries than the filter allows.
    TooMany { max: usize },
    /// A signature component identifier this filter cannot sign or check; the text says why.
    InvalidComponent { reason: String },
    /// The same component appears twice in one list.
    DuplicateComponent,
    /// A duration that is not a positive whole number of seconds, minutes or hours.
    InvalidDuration,
    /// A signing key identifier that cannot be written as a structured-field string.
    InvalidKeyId,
    /// A `base64:` key whose text is not standard base64.
    KeyNotBase64,
    /// A key with fewer bytes than the filter accepts.
    KeyTooShort { min: usize },
    /// A `{vault://...}` reference that is malformed, unsupported or unresolvable.
    Reference {
        reference: String,
        problem: ReferenceProblem,
    },
}

/// Why a `{vault://...}` reference could not be used. No variant carries the resolved value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceProblem {
    /// `{vault://` without the closing `}`.
    Unterminated,
    /// Not `{vault://env/NAME}` or `{vault://env/NAME/KEY}`.
    Malformed(&'static str),
    /// A vault other than `env`.
    UnsupportedVault,
    /// The environment variable is not set (in the module's WASI environment).
    NotSet { variable: String },
    /// The variable is set but empty.
    Empty { variable: String },
    /// `/KEY` was given but the variable is not a flat JSON object of strings holding KEY.
    NoSuchKey { variable: String, key: String },
    /// The resolved value contains CR, LF or another control character.
    ControlChar { variable: String },
}

impl ConfigError {
    /// An error about the whole document.
    pub fn document(problem: Problem) -> Self {
        ConfigError {
            at: String::new(),
            header: None,
            problem,
        }
    }

    /// An error at `at` (a key or an entry), not yet tied to a header name.
    pub fn at(at: impl Into<String>, problem: Problem) -> Self {
        ConfigError {
            at: at.into(),
            header: None,
            problem,
        }
    }

    /// Attaches the (validated) header name the entry is about.
    pub fn with_header(mut self, name: &str) -> Self {
        self.header = Some(name.to_owned());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.at.is_empty() {
            f.write_str(&self.at)?;
            if let Some(header) = &self.header {
                write!(f, " (header {header})")?;
            }
            f.write_str(": ")?;
        }
        fmt::Display::fmt(&self.problem, f)
    }
}

impl std::error::Error for ConfigError {}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotJson(e) => write!(f, "configuration is not valid JSON: {e}"),
            Problem::NoOperations => f.write_str(
                "no operation configured (expected at least one of \
                 remove, rename, replace, add, append or set, each with a \"headers\" list, \
                 or verify, sign or verify_signature)",
            ),
            Problem::WrongType { expected } => write!(f, "expected {expected}"),
            Problem::UnknownKey { key, known } => write!(f, "unknown key {key:?} (known: {known})"),
            Problem::UnsupportedKongKey => f.write_str(
                "this Kong request-transformer key is not supported: the filter transforms \
                 headers only (it may be null or empty)",
            ),
            Problem::MissingColon { expected } => {
                write!(f, "entry has no ':' (expected \"{expected}\")")
            }
            Problem::InvalidName { which, reason } => {
                write!(f, "{which} is not a valid HTTP header name: {reason}")
            }
            Problem::ReservedName { which, name } => write!(
                f,
                "{which} {name} is managed by the proxy (framing or routing) and cannot be \
                 changed by this filter"
            ),
            Problem::RenameToSelf => f.write_str("renames a header to itself"),
            Problem::DuplicateSet => f.write_str("header is set more than once in set.headers"),
            Problem::EmptyValue => f.write_str("value is empty"),
            Problem::ValueControlChar => {
                f.write_str("value contains CR, LF or another control character")
            }
            Problem::Template => f.write_str(
                "Kong templates $(...) are not supported (they need Kong's Lua sandbox); \
                 use a literal value or a {vault://env/NAME} reference",
            ),
            Problem::MissingKey { key } => write!(f, "the key {key:?} is required"),
            Problem::EmptyList => f.write_str("the list is empty"),
            Problem::TooMany { max } => write!(f, "more than {max} entries"),
            Problem::InvalidComponent { reason } => {
                write!(
                    f,
                    "not a signature component this filter supports: {reason}"
                )
            }
            Problem::DuplicateComponent => f.write_str("component is listed twice"),
            Problem::InvalidDuration => f.write_str(
                "expected a positive duration such as \"30s\", \"5m\" or \"1h\" \
                 (or a number of seconds)",
            ),
            Problem::InvalidKeyId => f.write_str(
                "key id must be 1 to 100 printable ASCII characters without '\"' or '\\'",
            ),
            Problem::KeyNotBase64 => {
                f.write_str("the text after \"base64:\" is not standard base64")
            }
            Problem::KeyTooShort { min } => write!(
                f,
                "the key is shorter than {min} bytes (32 random bytes are recommended)"
            ),
            Problem::Reference { reference, problem } => write!(f, "{reference}: {problem}"),
        }
    }
}

impl fmt::Display for ReferenceProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReferenceProblem::Unterminated => f.write_str("reference has no closing '}'"),
            ReferenceProblem::Malformed(why) => write!(
                f,
                "malformed reference ({why}); expected {{vault://env/NAME}} or \
                 {{vault://env/NAME/KEY}}"
            ),
            ReferenceProblem::UnsupportedVault => {
                f.write_str("only the env vault is supported ({vault://env/NAME})")
            }
            ReferenceProblem::NotSet { variable } => write!(
                f,
                "environment variable {variable} is not set for the module (Envoy: list it in \
                 vm_config.environment_variables.host_env_keys; wasmgate: in the filter's env)"
            ),
            ReferenceProblem::Empty { variable } => {
                write!(f, "environment variable {variable} is empty")
            }
            ReferenceProblem::NoSuchKey { variable, key } => write!(
                f,
                "environment variable {variable} is not a JSON object with a string field {key:?}"
            ),
            ReferenceProblem::ControlChar { variable } => write!(
                f,
                "the value of environment variable {variable} contains CR, LF or another \
                 control character"
            ),
        }
    }
}
