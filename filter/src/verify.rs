//! `verify`: the backend's half of the shared secret. A request passes only if it carries
//! exactly one copy of the header, holding one of the accepted values.
//!
//! ```json
//! {"verify": {"header": "Authorization",
//!             "accept": ["Bearer {vault://env/TOKEN_NEXT}", "Bearer {vault://env/TOKEN_CURRENT}"],
//!             "strip": true}}
//! ```
//!
//! Several accepted values make rotation a configuration change with no failed request: add
//! the new value here, switch the injecting side, then remove the old value.
//!
//! The comparison does not reveal how much of a guess was right, nor which candidate
//! matched: the presented value and every candidate are reduced to SHA-256 digests (the
//! candidates once, at configure time), and the presented digest is compared with every
//! candidate, every byte, with no early exit. Hashing first also makes the lengths
//! irrelevant: only the presented value's own length affects the time, and its sender knows
//! it already.
//!
//! `strip` (default `true`) removes the header once it has been checked, so the application
//! behind the proxy never holds the secret.

use crate::config::{self, Env};
use crate::crypto::{self, Digest32};
use crate::error::{ConfigError, Problem};
use serde_json::Value;

/// At most this many accepted values (rotation needs two; a few more for several clients).
const MAX_ACCEPT: usize = 16;

/// A validated `verify` section.
#[derive(Clone, PartialEq, Eq)]
pub struct Verify {
    /// Lower-case name of the header to check.
    pub header: String,
    /// SHA-256 of each accepted value (the values themselves are not kept).
    accept: Vec<Digest32>,
    /// Remove the header after a successful check.
    pub strip: bool,
    /// The `www-authenticate` value of a rejection.
    pub challenge: String,
}

/// Digests are not secrets in the usual sense, but there is nothing to gain from printing them.
impl std::fmt::Debug for Verify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verify")
            .field("header", &self.header)
            .field("accept", &format_args!("<{} values>", self.accept.len()))
            .field("strip", &self.strip)
            .field("challenge", &self.challenge)
            .finish()
    }
}

/// Why a request was refused. The client is told none of this (every rejection gets the
/// same answer); it goes to the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The header is absent.
    Missing,
    /// The header was sent more than once (ambiguous: which copy would the application read?).
    Repeated,
    /// The value is none of the accepted ones.
    Mismatch,
}

impl Rejection {
    /// Every reason, in the order of [`Rejection::metric`]'s names.
    pub const ALL: [Rejection; 3] = [Rejection::Missing, Rejection::Repeated, Rejection::Mismatch];

    /// The counter this reason increments.
    pub fn metric(self) -> &'static str {
        match self {
            Rejection::Missing => "secret_header.verify.rejected.missing",
            Rejection::Repeated => "secret_header.verify.rejected.repeated",
            Rejection::Mismatch => "secret_header.verify.rejected.mismatch",
        }
    }
}

/// The counter of accepted requests.
pub const ACCEPTED_METRIC: &str = "secret_header.verify.accepted";

/// The body of every rejection: it says nothing about what was wrong.
pub const REJECTION_BODY: &[u8] = b"unauthorized\n";

impl Verify {
    /// Parses the `verify` section.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `verify.<key>` or `verify.accept[i]`; never a value.
    pub fn parse(value: &Value, env: Env<'_>) -> Result<Verify, ConfigError> {
        let obj = config::object("verify", value, "{\"header\": .., \"accept\": [..]}")?;
        let mut header = None;
        let mut accept = None;
        let mut strip = true;
        for (key, value) in obj {
            let at = format!("verify.{key}");
            match key.as_str() {
                "header" => header = Some(config::header_name_at(&at, value)?),
                "accept" => accept = Some(config::string_list(&at, value)?),
                "strip" => strip = config::bool_at(&at, value)?,
                other => {
                    return Err(ConfigError::at(
                        "verify",
                        Problem::UnknownKey {
                            key: config::shorten(other),
                            known: "header, accept, strip",
                        },
                    ));
                }
            }
        }
        let header = header
            .ok_or_else(|| ConfigError::at("verify", Problem::MissingKey { key: "header" }))?;
        let accept = accept
            .ok_or_else(|| ConfigError::at("verify", Problem::MissingKey { key: "accept" }))?;
        if accept.is_empty() {
            return Err(ConfigError::at("verify.accept", Problem::EmptyList).with_header(&header));
        }
        if accept.len() > MAX_ACCEPT {
            return Err(
                ConfigError::at("verify.accept", Problem::TooMany { max: MAX_ACCEPT })
                    .with_header(&header),
            );
        }
        let mut digests = Vec::with_capacity(accept.len());
        let mut schemes = Vec::with_capacity(accept.len());
        for (i, raw) in accept.iter().enumerate() {
            let value = config::secret_value(raw, env).map_err(|p| {
                ConfigError::at(format!("verify.accept[{i}]"), p).with_header(&header)
            })?;
            digests.push(crypto::sha256(value.as_bytes()));
            schemes.push(auth_scheme(&value));
        }
        Ok(Verify {
            challenge: challenge(&header, &schemes),
            header,
            accept: digests,
            strip,
        })
    }

    /// How many values are accepted.
    pub fn accepted_values(&self) -> usize {
        self.accept.len()
    }

    /// Checks the copies of the header a request carries (`values`, in order).
    ///
    /// # Errors
    /// Why the request must be refused.
    pub fn check(&self, values: &[Vec<u8>]) -> Result<(), Rejection> {
        let value = match values {
            [] => return Err(Rejection::Missing),
            [value] => value,
            _ => return Err(Rejection::Repeated),
        };
        let presented = crypto::sha256(value);
        let mut matched = false;
        for candidate in &self.accept {
            // `|` rather than `||`: every candidate is compared, whatever came before.
            matched |= crypto::digests_equal(&presented, candidate);
        }
        if matched {
            Ok(())
        } else {
            Err(Rejection::Mismatch)
        }
    }
}

/// The authentication scheme a value starts with (`Bearer` in `Bearer abc`), if any.
fn auth_scheme(value: &str) -> Option<String> {
    let (scheme, rest) = value.split_once(' ')?;
    let is_token = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c));
    (is_token && !rest.is_empty()).then(|| scheme.to_owned())
}

/// `www-authenticate` for a rejection (RFC 9110 §11.6.1 requires one with every 401). For
/// `Authorization` values that share one scheme, that scheme (`Bearer realm="wasmgate"`);
/// for anything else a generic challenge that names no value.
fn challenge(header: &str, schemes: &[Option<String>]) -> String {
    let first = schemes.first().cloned().flatten();
    match first {
        Some(scheme)
            if header == "authorization"
                && schemes.iter().all(|s| {
                    s.as_deref()
                        .is_some_and(|s| s.eq_ignore_ascii_case(&scheme))
                }) =>
        {
            format!("{scheme} realm=\"wasmgate\"")
        }
        _ => "Secret realm=\"wasmgate\"".to_owned(),
    }
}

#[cfg(test)]
mod tests;
