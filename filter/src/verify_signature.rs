//! `verify_signature`: the backend's check of HTTP Message Signatures (RFC 9421,
//! HMAC-SHA256), as `sign` writes them or as any conforming signer does.
//!
//! ```json
//! {"verify_signature": {"keys": {"gw-2026-12": "{vault://env/KEY_NEXT}",
//!                                "gw-2026-11": "{vault://env/KEY_CURRENT}"},
//!                       "required_components": ["@method", "@authority", "@path"],
//!                       "max_age": "30s", "strip": true}}
//! ```
//!
//! A request passes when one of its signatures (any label) names a configured `keyid` and:
//! its `alg`, if given, is `hmac-sha256`; its `created` lies within `max_age` in the past
//! (and at most [`CLOCK_SKEW`] seconds in the future), and its `expires`, if given, has not
//! passed; it covers every required component; its HMAC over the signature base matches
//! (compared in constant time); and, when it covers `content-digest`, the body's SHA-256
//! matches the `sha-256` member of `Content-Digest` (checked once the body has arrived).
//!
//! Rejections, each counted separately: `missing` (no signature fields), `malformed`
//! (fields that do not parse, or a signature this filter cannot check), `unknown_key`,
//! `expired`, `under_covered`, `tampered` (a covered component is gone or changed, or the
//! body does not match its digest). Keys are read like `sign`'s: the string's bytes, or
//! `base64:` and standard base64. Several keys make rotation a configuration change.
//!
//! A valid signature can be replayed within `max_age`: this check has no nonce cache.
//! `strip` (default `true`) removes `Signature` and `Signature-Input` once checked.

use crate::config::{self, Env};
use crate::crypto::{self, Digest32};
use crate::error::{ConfigError, Problem};
use crate::sfv::{self, BareItem, Member};
use crate::sign;
use crate::signature_base::{self, Component, Message};
use serde_json::Value;

/// How far in the future `created` may be (the signer's clock may run ahead).
pub const CLOCK_SKEW: u64 = 5;

/// At most this many keys.
const MAX_KEYS: usize = 16;

/// At most this many signatures with a known key are checked per request.
const MAX_CANDIDATES: usize = 4;

/// A validated `verify_signature` section.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifySignature {
    keys: Vec<(String, crypto::HmacKey)>,
    /// Components every accepted signature covers.
    pub required: Vec<Component>,
    /// The oldest `created` accepted, in seconds before now.
    pub max_age: u64,
    /// Remove `Signature` and `Signature-Input` after a successful check.
    pub strip: bool,
}

/// Keys are never printed.
impl std::fmt::Debug for VerifySignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("VerifySignature")
            .field("key_ids", &ids)
            .field("required", &self.required)
            .field("max_age", &self.max_age)
            .field("strip", &self.strip)
            .finish()
    }
}

/// Why a request was refused (the client only ever sees the same 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No `Signature-Input` and no `Signature`.
    Missing,
    /// Fields that do not parse, or a signature this filter cannot check.
    Malformed,
    /// No signature names a configured key.
    UnknownKey,
    /// `created` outside the window, or `expires` passed.
    Expired,
    /// A required component is not covered.
    UnderCovered,
    /// The HMAC does not match, a covered component is gone, or the body changed.
    Tampered,
}

impl Rejection {
    /// Every reason.
    pub const ALL: [Rejection; 6] = [
        Rejection::Missing,
        Rejection::Malformed,
        Rejection::UnknownKey,
        Rejection::Expired,
        Rejection::UnderCovered,
        Rejection::Tampered,
    ];

    /// The counter this reason increments.
    pub fn metric(self) -> &'static str {
        match self {
            Rejection::Missing => "secret_header.verify_signature.rejected.missing",
            Rejection::Malformed => "secret_header.verify_signature.rejected.malformed",
            Rejection::UnknownKey => "secret_header.verify_signature.rejected.unknown_key",
            Rejection::Expired => "secret_header.verify_signature.rejected.expired",
            Rejection::UnderCovered => "secret_header.verify_signature.rejected.under_covered",
            Rejection::Tampered => "secret_header.verify_signature.rejected.tampered",
        }
    }
}

/// The counter of accepted requests.
pub const ACCEPTED_METRIC: &str = "secret_header.verify_signature.accepted";

/// The `www-authenticate` of a rejection.
pub const CHALLENGE: &str = "Signature realm=\"wasmgate\"";

/// A signature that checked out; the body is still to be checked when `content_digest` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The label of the signature that passed.
    pub label: String,
    /// The SHA-256 the body must have (the signature covers `content-digest`).
    pub content_digest: Option<Digest32>,
}

impl VerifySignature {
    /// Parses the `verify_signature` section.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `verify_signature.<key>` (and the key id); never a key.
    pub fn parse(value: &Value, env: Env<'_>) -> Result<VerifySignature, ConfigError> {
        let obj = config::object("verify_signature", value, "{\"keys\": {..}, ..}")?;
        let mut keys = None;
        let mut required = None;
        let mut max_age = 30;
        let mut strip = true;
        for (name, value) in obj {
            let at = format!("verify_signature.{name}");
            match name.as_str() {
                "keys" => keys = Some(parse_keys(&at, value, env)?),
                "required_components" => required = Some(sign::parse_components(&at, value)?),
                "max_age" => max_age = parse_duration(&at, value)?,
                "strip" => strip = config::bool_at(&at, value)?,
                other => {
                    return Err(ConfigError::at(
                        "verify_signature",
                        Problem::UnknownKey {
                            key: config::shorten(other),
                            known: "keys, required_components, max_age, strip",
                        },
                    ));
                }
            }
        }
        let keys = keys.ok_or_else(|| {
            ConfigError::at("verify_signature", Problem::MissingKey { key: "keys" })
        })?;
        Ok(VerifySignature {
            keys,
            required: required
                .unwrap_or_else(|| vec![Component::Method, Component::Authority, Component::Path]),
            max_age,
            strip,
        })
    }

    /// The configured key ids (not secret), for the start-up log line.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|(id, _)| id.as_str()).collect()
    }

    /// Checks the signature fields of a request at Unix time `now` (seconds).
    ///
    /// # Errors
    /// Why the request must be refused. With several candidate signatures, the reason
    /// given is the first candidate's.
    pub fn check(&self, pairs: &[(String, Vec<u8>)], now: u64) -> Result<Verified, Rejection> {
        let message = Message(pairs);
        let inputs = message.value(&Component::Field("signature-input".to_owned()));
        let signatures = message.value(&Component::Field("signature".to_owned()));
        let (inputs, signatures) = match (inputs, signatures) {
            (None, None) => return Err(Rejection::Missing),
            (Some(i), Some(s)) => (i, s),
            _ => return Err(Rejection::Malformed),
        };
        let parse = |bytes: Vec<u8>| {
            String::from_utf8(bytes)
                .ok()
                .and_then(|text| sfv::parse_dictionary(&text).ok())
                .ok_or(Rejection::Malformed)
        };
        let (inputs, signatures) = (parse(inputs)?, parse(signatures)?);
        if inputs.is_empty() {
            return Err(Rejection::Malformed);
        }
        let mut first_error = None;
        let candidates = inputs.iter().filter_map(|(label, member)| {
            let Member::InnerList(items, params) = member else {
                return None;
            };
            let Some(BareItem::String(key_id)) = sfv::param(params, "keyid") else {
                return None;
            };
            let (_, key) = self.keys.iter().find(|(id, _)| id == key_id)?;
            Some((label, items, params, key))
        });
        for (label, items, params, key) in candidates.take(MAX_CANDIDATES) {
            let signature = signatures
                .iter()
                .find(|(l, _)| l == label)
                .map(|(_, member)| member);
            match self.check_one(message, items, params, key, signature, now) {
                Ok(content_digest) => {
                    return Ok(Verified {
                        label: label.clone(),
                        content_digest,
                    });
                }
                Err(reason) => {
                    first_error.get_or_insert(reason);
                }
            }
        }
        Err(first_error.unwrap_or(Rejection::UnknownKey))
    }

    /// One signature whose key is known.
    fn check_one(
        &self,
        message: Message<'_>,
        items: &[sfv::Item],
        params: &sfv::Params,
        key: &crypto::HmacKey,
        signature: Option<&Member>,
        now: u64,
    ) -> Result<Option<Digest32>, Rejection> {
        let mut components: Vec<Component> = Vec::with_capacity(items.len());
        for item in items {
            let BareItem::String(id) = &item.bare else {
                return Err(Rejection::Malformed);
            };
            let component = Component::parse(id).map_err(|_| Rejection::Malformed)?;
            if !item.params.is_empty() || components.contains(&component) {
                return Err(Rejection::Malformed);
            }
            components.push(component);
        }
        match sfv::param(params, "alg") {
            None => {}
            Some(BareItem::String(alg)) if alg == sign::ALG => {}
            Some(_) => return Err(Rejection::Malformed),
        }
        let Some(BareItem::Integer(created)) = sfv::param(params, "created") else {
            return Err(Rejection::Malformed);
        };
        let created = u64::try_from(*created).map_err(|_| Rejection::Malformed)?;
        if created > now.saturating_add(CLOCK_SKEW) || now.saturating_sub(created) > self.max_age {
            return Err(Rejection::Expired);
        }
        match sfv::param(params, "expires") {
            None => {}
            Some(BareItem::Integer(expires)) => {
                let expires = u64::try_from(*expires).unwrap_or(0);
                if now > expires {
                    return Err(Rejection::Expired);
                }
            }
            Some(_) => return Err(Rejection::Malformed),
        }
        if !self.required.iter().all(|r| components.contains(r)) {
            return Err(Rejection::UnderCovered);
        }
        let tag = match signature {
            Some(Member::Item(sfv::Item {
                bare: BareItem::Bytes(tag),
                ..
            })) => tag,
            _ => return Err(Rejection::Malformed),
        };
        let signature_params = sfv::serialize_inner_list(items, params);
        let base = signature_base::build(message, &components, &signature_params)
            .map_err(|_| Rejection::Tampered)?;
        if !crypto::tag_equal(&key.tag(&base), tag) {
            return Err(Rejection::Tampered);
        }
        let digest = Component::Field("content-digest".to_owned());
        if !components.contains(&digest) {
            return Ok(None);
        }
        // Covered, so present (the base was built); its sha-256 member is what the body
        // must hash to.
        let field = message.value(&digest).unwrap_or_default();
        let dict = String::from_utf8(field)
            .ok()
            .and_then(|text| sfv::parse_dictionary(&text).ok())
            .ok_or(Rejection::Malformed)?;
        match dict.iter().find(|(alg, _)| alg == "sha-256") {
            Some((
                _,
                Member::Item(sfv::Item {
                    bare: BareItem::Bytes(d),
                    ..
                }),
            )) => Digest32::try_from(d.as_slice())
                .map(Some)
                .map_err(|_| Rejection::Malformed),
            _ => Err(Rejection::Malformed),
        }
    }
}

/// Checks a body against the digest a verified signature covers.
///
/// # Errors
/// [`Rejection::Tampered`] when they differ.
pub fn check_body(expected: &Digest32, body: &[u8]) -> Result<(), Rejection> {
    if crypto::digests_equal(expected, &crypto::sha256(body)) {
        Ok(())
    } else {
        Err(Rejection::Tampered)
    }
}

/// `keys`: an object of key id → key.
fn parse_keys(
    at: &str,
    value: &Value,
    env: Env<'_>,
) -> Result<Vec<(String, crypto::HmacKey)>, ConfigError> {
    let obj = config::object(at, value, "an object of key id to key")?;
    if obj.is_empty() {
        return Err(ConfigError::at(at, Problem::EmptyList));
    }
    if obj.len() > MAX_KEYS {
        return Err(ConfigError::at(at, Problem::TooMany { max: MAX_KEYS }));
    }
    let mut keys = Vec::with_capacity(obj.len());
    for (i, (id, key)) in obj.iter().enumerate() {
        // The id is only echoed once it is known to be a valid one.
        let id = sign::parse_key_id(&format!("{at}[{i}]"), id)?;
        let entry = format!("{at}.{id}");
        let key = sign::parse_key(&entry, config::str_at(&entry, key)?, env)?;
        keys.push((id, crypto::HmacKey::new(key)));
    }
    Ok(keys)
}

/// `30`, `"30"`, `"30s"`, `"5m"` or `"1h"`, in seconds; positive.
fn parse_duration(at: &str, value: &Value) -> Result<u64, ConfigError> {
    let seconds = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => {
            let (digits, unit) = match s.char_indices().last() {
                Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], &s[i..]),
                _ => (s.as_str(), "s"),
            };
            let scale = match unit {
                "s" => Some(1),
                "m" => Some(60),
                "h" => Some(3600),
                _ => None,
            };
            let n = digits
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| digits.parse::<u64>().ok())
                .flatten();
            n.zip(scale).and_then(|(n, scale)| n.checked_mul(scale))
        }
        _ => None,
    };
    match seconds {
        Some(s) if s > 0 => Ok(s),
        _ => Err(ConfigError::at(at, Problem::InvalidDuration)),
    }
}

#[cfg(test)]
mod tests;
