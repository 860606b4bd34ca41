//! `sign`: HTTP Message Signatures (RFC 9421) with HMAC-SHA256 on requests leaving the
//! gateway, so the backend can tell that a request came through it, unchanged, recently.
//!
//! ```json
//! {"sign": {"key_id": "gw-2026-12", "key": "{vault://env/SIGNING_KEY}",
//!           "components": ["@method", "@authority", "@path", "@query", "content-type"],
//!           "content_digest": true, "nonce": false}}
//! ```
//!
//! Each request gets, under the label `wasmgate`:
//!
//! - `Signature-Input: wasmgate=("@method" ...);created=<unix s>;keyid="gw-2026-12";alg="hmac-sha256"`
//!   (and `;nonce="<random>"` with `nonce: true`);
//! - `Signature: wasmgate=:<base64 HMAC-SHA256 of the signature base>:`;
//! - with `content_digest`, `Content-Digest: sha-256=:<base64>:` (RFC 9530) over the whole
//!   body (empty for a bodiless request), covered by the signature as `content-digest`.
//!
//! Client-sent copies of these headers are removed first. A listed HTTP field the request
//! does not carry is left out of that request's covered components (derived components are
//! always present). `components` defaults to `@method`, `@authority`, `@path`, `@query`.
//!
//! The key: the bytes of the string as configured, or, when it starts with `base64:`, the
//! bytes the rest decodes to (standard base64, for binary keys such as RFC 9421 B.1.5's
//! `test-shared-secret`). At least 16 bytes; 32 random bytes are the right size for
//! HMAC-SHA256.

use crate::config::{self, Env};
use crate::crypto;
use crate::error::{ConfigError, Problem};
use crate::sfv::{BareItem, Params};
use crate::signature_base::{self, Component, Message};
use crate::transform::Headers;
use serde_json::Value;

/// The label of the signature this filter adds.
pub const LABEL: &str = "wasmgate";

/// The algorithm parameter written and accepted.
pub const ALG: &str = "hmac-sha256";

/// The shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 16;

/// The counter of signed requests.
pub const SIGNED_METRIC: &str = "secret_header.sign.signed";

/// A validated `sign` section.
#[derive(Clone, PartialEq, Eq)]
pub struct Sign {
    /// `keyid` parameter.
    pub key_id: String,
    key: crypto::HmacKey,
    /// Components to cover, in order (`content-digest` appended when `content_digest`).
    pub components: Vec<Component>,
    /// Add and cover a `Content-Digest` of the body.
    pub content_digest: bool,
    /// Add a random `nonce` parameter.
    pub nonce: bool,
}

/// The key is never printed.
impl std::fmt::Debug for Sign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sign")
            .field("key_id", &self.key_id)
            .field("key", &"<redacted>")
            .field("components", &self.components)
            .field("content_digest", &self.content_digest)
            .field("nonce", &self.nonce)
            .finish()
    }
}

impl Sign {
    /// Parses the `sign` section.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `sign.<key>` (and the entry of a list); never the key.
    pub fn parse(value: &Value, env: Env<'_>) -> Result<Sign, ConfigError> {
        let obj = config::object("sign", value, "{\"key_id\": .., \"key\": ..}")?;
        let (mut key_id, mut key) = (None, None);
        let mut components = None;
        let (mut content_digest, mut nonce) = (false, false);
        for (name, value) in obj {
            let at = format!("sign.{name}");
            match name.as_str() {
                "key_id" => key_id = Some(parse_key_id(&at, config::str_at(&at, value)?)?),
                "key" => key = Some(parse_key(&at, config::str_at(&at, value)?, env)?),
                "components" => components = Some(parse_components(&at, value)?),
                "content_digest" => content_digest = config::bool_at(&at, value)?,
                "nonce" => nonce = config::bool_at(&at, value)?,
                other => {
                    return Err(ConfigError::at(
                        "sign",
                        Problem::UnknownKey {
                            key: config::shorten(other),
                            known: "key_id, key, components, content_digest, nonce",
                        },
                    ));
                }
            }
        }
        let missing = |key| ConfigError::at("sign", Problem::MissingKey { key });
        let key_id = key_id.ok_or_else(|| missing("key_id"))?;
        let key = key.ok_or_else(|| missing("key"))?;
        let mut components = components.unwrap_or_else(|| {
            vec![
                Component::Method,
                Component::Authority,
                Component::Path,
                Component::Query,
            ]
        });
        let digest = Component::Field("content-digest".to_owned());
        if content_digest && !components.contains(&digest) {
            components.push(digest);
        }
        Ok(Sign {
            key_id,
            key: crypto::HmacKey::new(key),
            components,
            content_digest,
            nonce,
        })
    }

    /// Signs a request: removes client-sent signature headers, adds `Content-Digest` of
    /// `body` when configured (pass `Some(b"")` for a bodiless request), then
    /// `Signature-Input` and `Signature`. `created` is the Unix time in seconds.
    pub fn apply(
        &self,
        headers: &mut impl Headers,
        body: Option<&[u8]>,
        created: u64,
        nonce: Option<&str>,
    ) {
        headers.remove("signature");
        headers.remove("signature-input");
        if self.content_digest {
            headers.remove("content-digest");
            headers.add(
                "content-digest",
                content_digest(body.unwrap_or_default()).as_bytes(),
            );
        }
        let pairs = headers.pairs();
        let (input, signature) = self.signature(Message(&pairs), created, nonce);
        headers.add("signature-input", input.as_bytes());
        headers.add("signature", signature.as_bytes());
    }

    /// The `Signature-Input` and `Signature` values for `message` (pure: the known-answer
    /// tests call it directly).
    pub fn signature(
        &self,
        message: Message<'_>,
        created: u64,
        nonce: Option<&str>,
    ) -> (String, String) {
        let covered: Vec<Component> = self
            .components
            .iter()
            .filter(|c| message.value(c).is_some())
            .cloned()
            .collect();
        let mut params: Params = vec![
            (
                "created".to_owned(),
                BareItem::Integer(i64::try_from(created).unwrap_or(i64::MAX)),
            ),
            ("keyid".to_owned(), BareItem::String(self.key_id.clone())),
            ("alg".to_owned(), BareItem::String(ALG.to_owned())),
        ];
        if let Some(nonce) = nonce {
            params.push(("nonce".to_owned(), BareItem::String(nonce.to_owned())));
        }
        let signature_params = signature_base::signature_params(&covered, &params);
        let base = signature_base::build(message, &covered, &signature_params)
            .expect("only present components are covered");
        let tag = self.key.tag(&base);
        (
            format!("{LABEL}={signature_params}"),
            format!("{LABEL}=:{}:", crypto::base64_encode(&tag)),
        )
    }
}

/// `Content-Digest` (RFC 9530) of `body` with SHA-256.
pub fn content_digest(body: &[u8]) -> String {
    format!("sha-256=:{}:", crypto::base64_encode(&crypto::sha256(body)))
}

/// A key id: printable ASCII without `"` and `\`, 1 to 100 characters, so that it is written
/// as an RFC 8941 string unchanged.
pub(crate) fn parse_key_id(at: &str, raw: &str) -> Result<String, ConfigError> {
    let ok = (1..=100).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(ConfigError::at(at, Problem::InvalidKeyId))
    }
}

/// A key: resolved references, then the string's bytes or, after `base64:`, the decoded bytes.
pub(crate) fn parse_key(at: &str, raw: &str, env: Env<'_>) -> Result<Vec<u8>, ConfigError> {
    let fail = |p| ConfigError::at(at, p);
    let value = config::secret_value(raw, env).map_err(fail)?;
    let key = match value.strip_prefix("base64:") {
        Some(encoded) => {
            crypto::base64_decode(encoded).ok_or_else(|| fail(Problem::KeyNotBase64))?
        }
        None => value.into_bytes(),
    };
    if key.len() < MIN_KEY_BYTES {
        return Err(fail(Problem::KeyTooShort { min: MIN_KEY_BYTES }));
    }
    Ok(key)
}

/// A list of component identifiers without duplicates.
pub(crate) fn parse_components(at: &str, value: &Value) -> Result<Vec<Component>, ConfigError> {
    let ids = config::string_list(at, value)?;
    if ids.is_empty() {
        return Err(ConfigError::at(at, Problem::EmptyList));
    }
    let mut components: Vec<Component> = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let entry = format!("{at}[{i}]");
        let component = Component::parse(&id.to_ascii_lowercase())
            .map_err(|reason| ConfigError::at(&entry, Problem::InvalidComponent { reason }))?;
        if components.contains(&component) {
            return Err(ConfigError::at(entry, Problem::DuplicateComponent));
        }
        components.push(component);
    }
    Ok(components)
}

#[cfg(test)]
mod tests;
