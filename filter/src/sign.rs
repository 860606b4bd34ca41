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
use crate::sfv;
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
    /// `;keyid="…";alg="hmac-sha256"`, the parameters that never change, serialized once.
    fixed_params: String,
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
        // A key id is validated printable ASCII without `"` and `\\`: quoting it is the
        // RFC 8941 string serialization.
        let fixed_params = format!(";keyid=\"{key_id}\";alg=\"{ALG}\"");
        Ok(Sign {
            key_id,
            key: crypto::HmacKey::new(key),
            components,
            content_digest,
            nonce,
            fixed_params,
        })
    }

    /// Signs a request: removes client-sent signature headers, adds `Content-Digest` of
    /// `body` when configured (pass `Some(b"")` for a bodiless request), then
    /// `Signature-Input` and `Signature`. `created` is the Unix time in seconds.
    ///
    /// Only what the signature covers is read: the pseudo-headers the derived components
    /// come from, one by one, and the whole header list only when an HTTP field (other than
    /// the `Content-Digest` written here) is covered.
    pub fn apply(
        &self,
        headers: &mut impl Headers,
        body: Option<&[u8]>,
        created: u64,
        nonce: Option<&str>,
    ) {
        headers.remove("signature");
        headers.remove("signature-input");
        let mut digest = None;
        if self.content_digest {
            let value = content_digest(body.unwrap_or_default());
            headers.remove("content-digest");
            headers.add("content-digest", value.as_bytes());
            digest = Some(value);
        }
        let (input, signature) = if self.covers_client_fields() {
            self.signature(Message(&headers.pairs()), created, nonce)
        } else {
            let mut pairs: Vec<(&str, Vec<u8>)> = Vec::with_capacity(PSEUDO_HEADERS.len() + 1);
            for name in PSEUDO_HEADERS {
                if self.components.iter().any(|c| reads(c, name))
                    && let Some(value) = headers.first(name)
                {
                    pairs.push((name, value));
                }
            }
            if let Some(value) = digest {
                pairs.push(("content-digest", value.into_bytes()));
            }
            self.signature(Message(&pairs), created, nonce)
        };
        headers.add("signature-input", input.as_bytes());
        headers.add("signature", signature.as_bytes());
    }

    /// Whether a covered HTTP field comes from the client (not the digest written here).
    fn covers_client_fields(&self) -> bool {
        self.components.iter().any(|c| match c {
            Component::Field(name) => !(self.content_digest && name == "content-digest"),
            _ => false,
        })
    }

    /// The `Signature-Input` and `Signature` values for `message` (pure: the known-answer
    /// tests call it directly). The base and the parameters are written in one pass, into
    /// two buffers: a request is signed with a handful of allocations.
    pub fn signature<N: AsRef<str>>(
        &self,
        message: Message<'_, N>,
        created: u64,
        nonce: Option<&str>,
    ) -> (String, String) {
        let mut base = Vec::with_capacity(256);
        let mut input = String::with_capacity(160);
        input.push_str(LABEL);
        input.push_str("=(");
        let mut covered = 0;
        for component in &self.components {
            // A field the request lacks is left out of what this request's signature covers.
            if signature_base::write_line(message, component, &mut base) {
                if covered > 0 {
                    input.push(' ');
                }
                // Identifiers are lower-case tokens or `@` names: quoting is serializing.
                input.push('"');
                input.push_str(component.id());
                input.push('"');
                covered += 1;
            }
        }
        input.push_str(");created=");
        push_decimal(created.min(i64::MAX as u64), &mut input);
        input.push_str(&self.fixed_params);
        if let Some(nonce) = nonce {
            input.push_str(";nonce=");
            sfv::serialize_string(nonce, &mut input);
        }
        let signature_params = &input[LABEL.len() + 1..];
        base.extend_from_slice(b"\"@signature-params\": ");
        base.extend_from_slice(signature_params.as_bytes());
        let tag = self.key.tag(&base);
        let mut signature = String::with_capacity(LABEL.len() + 48);
        signature.push_str(LABEL);
        signature.push_str("=:");
        crypto::base64_encode_into(&tag, &mut signature);
        signature.push(':');
        (input, signature)
    }
}

/// Appends `n` in decimal (without `fmt`'s machinery: this runs on every signed request).
fn push_decimal(mut n: u64, out: &mut String) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
}

/// The pseudo-headers derived components are read from.
const PSEUDO_HEADERS: [&str; 4] = [":method", ":scheme", ":authority", ":path"];

/// Whether `component`'s value is read from the pseudo-header `name`.
fn reads(component: &Component, name: &str) -> bool {
    match component {
        Component::Method => name == ":method",
        Component::Scheme => name == ":scheme",
        // The scheme decides which default port `@authority` drops.
        Component::Authority => name == ":authority" || name == ":scheme",
        Component::Path | Component::Query | Component::RequestTarget => name == ":path",
        Component::TargetUri => name != ":method",
        Component::Field(_) => false,
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
