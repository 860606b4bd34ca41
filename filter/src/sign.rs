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
use crate::signature_base::{Component, Message, same_name};
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
    /// Each component's `"<id>": `, the start of its line in the base.
    line_starts: Vec<Vec<u8>>,
    /// `wasmgate=(<every component>);created=`: the start of `Signature-Input` when the
    /// request has every covered component (always, with derived components only).
    input_start: Vec<u8>,
    /// Whether a covered component is an HTTP field (read from the whole list, where
    /// derived components only need the pseudo-headers).
    covers_fields: bool,
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
        let line_starts = components
            .iter()
            .map(|c| format!("\"{}\": ", c.id()).into_bytes())
            .collect();
        let ids: Vec<String> = components
            .iter()
            .map(|c| format!("\"{}\"", c.id()))
            .collect();
        let input_start = format!("{LABEL}=({});created=", ids.join(" ")).into_bytes();
        let covers_fields = components.iter().any(|c| matches!(c, Component::Field(_)));
        Ok(Sign {
            key_id,
            key: crypto::HmacKey::new(key),
            components,
            content_digest,
            nonce,
            fixed_params,
            line_starts,
            input_start,
            covers_fields,
        })
    }

    /// Signs a request: adds `Content-Digest` of `body` when configured (pass `Some(b"")` for
    /// a bodiless request), then `Signature-Input` and `Signature`, each replacing every
    /// client-sent copy. `created` is the Unix time in seconds.
    ///
    /// Reads the whole header list ([`Headers::pairs`]); the filter calls [`Sign::apply_to`]
    /// with a list it has already read.
    pub fn apply(
        &self,
        headers: &mut impl Headers,
        body: Option<&[u8]>,
        created: u64,
        nonce: Option<&str>,
    ) {
        let current = headers.pairs();
        let pairs = current.iter().map(|(n, v)| (n.as_bytes(), v.as_slice()));
        let mut buffers = Buffers::default();
        self.apply_to(headers, pairs, body, created, nonce, &mut buffers);
    }

    /// [`Sign::apply`] for a request whose header list, as it is now, is `current` (iterated
    /// once, twice when an HTTP field is covered); the values are built in `buffers`, reused
    /// from request to request.
    ///
    /// The signature covers the request as if the client's `Signature`, `Signature-Input`
    /// (and, with `content_digest`, `Content-Digest`) had been removed first and this
    /// filter's `Content-Digest` added: a covered field of one of those names reads as
    /// absent, or as the digest written here. Then each field is written with one
    /// [`Headers::replace`] when the request carries at most one copy of it, which every
    /// host's replace leaves as exactly one; with two copies or more, with a remove and an
    /// add, as a host whose replace overwrote only the first copy would let the others through.
    pub fn apply_to<'h>(
        &self,
        headers: &mut impl Headers,
        current: impl Iterator<Item = (&'h [u8], &'h [u8])> + Clone,
        body: Option<&[u8]>,
        created: u64,
        nonce: Option<&str>,
        buffers: &mut Buffers,
    ) {
        // One pass: the first copy of each pseudo-header, and how many copies the request
        // carries of each field written here.
        let mut first: [Option<&[u8]>; PSEUDO_HEADERS.len()] = [None; 4];
        let mut copies = [0usize; WRITTEN.len()];
        for (name, value) in current.clone() {
            // By length first: most names are neither.
            match name.len() {
                5 | 7 | 10 => {
                    if let Some(i) = position(&PSEUDO_HEADERS, name) {
                        first[i] = first[i].or(Some(value));
                    }
                }
                9 | 14 | 15 => {
                    if let Some(i) = position(&WRITTEN, name) {
                        copies[i] += 1;
                    }
                }
                _ => {}
            }
        }
        let mut pseudo: [(&[u8], &[u8]); PSEUDO_HEADERS.len()] = [(b"", b""); 4];
        let mut found = 0;
        for (name, value) in PSEUDO_HEADERS.iter().zip(first) {
            if let Some(value) = value {
                pseudo[found] = (name, value);
                found += 1;
            }
        }
        // Out of `buffers` while the view below borrows it (moved, not copied).
        let mut digest_value = std::mem::take(&mut buffers.digest);
        digest_value.clear();
        if self.content_digest {
            write_content_digest(body.unwrap_or_default(), &mut digest_value);
        }
        let digest = self.content_digest.then_some(digest_value.as_slice());
        if self.covers_fields {
            // The list as the signature sees it: without the fields written here, and
            // with this filter's digest.
            let written = |name: &[u8]| match position(&WRITTEN, name) {
                Some(i) => WRITTEN[i] != b"content-digest" || self.content_digest,
                None => false,
            };
            let mut view: Vec<(&[u8], &[u8])> = current.filter(|(n, _)| !written(n)).collect();
            if let Some(digest) = digest {
                view.push((b"content-digest", digest));
            }
            self.write_signature(Message(&view), created, nonce, buffers);
        } else {
            // Derived components only: they come from the pseudo-headers.
            self.write_signature(Message(&pseudo[..found]), created, nonce, buffers);
        }
        let mut set = |i: usize, value: &[u8]| {
            let name = WRITTEN_NAMES[i];
            if copies[i] > 1 {
                headers.remove(name);
                headers.add(name, value);
            } else {
                headers.replace(name, value);
            }
        };
        if let Some(digest) = digest {
            set(2, digest);
        }
        set(1, &buffers.input);
        set(0, &buffers.signature);
        buffers.digest = digest_value;
    }

    /// The `Signature-Input` and `Signature` values for `message` (pure: the known-answer
    /// tests call it directly).
    pub fn signature<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        message: Message<'_, N, V>,
        created: u64,
        nonce: Option<&str>,
    ) -> (String, String) {
        let mut buffers = Buffers::default();
        self.write_signature(message, created, nonce, &mut buffers);
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("ASCII");
        (text(buffers.input), text(buffers.signature))
    }

    /// Writes the `Signature-Input` and `Signature` values for `message` into
    /// `buffers.input` and `buffers.signature`, building the base in `buffers.base`, all in
    /// one pass.
    fn write_signature<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        message: Message<'_, N, V>,
        created: u64,
        nonce: Option<&str>,
        buffers: &mut Buffers,
    ) {
        let Buffers {
            base,
            input,
            signature,
            ..
        } = buffers;
        base.clear();
        input.clear();
        signature.clear();
        let mut missing = false;
        for (component, start) in self.components.iter().zip(&self.line_starts) {
            let mark = base.len();
            base.extend_from_slice(start);
            if message.write_value(component, base) {
                base.push(b'\n');
            } else {
                // A field the request lacks is left out of what this request's signature
                // covers.
                base.truncate(mark);
                missing = true;
            }
        }
        if missing {
            input.extend_from_slice(LABEL.as_bytes());
            input.extend_from_slice(b"=(");
            let mut covered = 0;
            for component in &self.components {
                if message.has(component) {
                    if covered > 0 {
                        input.push(b' ');
                    }
                    // Identifiers are lower-case tokens or `@` names: quoting is serializing.
                    input.push(b'"');
                    input.extend_from_slice(component.id().as_bytes());
                    input.push(b'"');
                    covered += 1;
                }
            }
            input.extend_from_slice(b");created=");
        } else {
            input.extend_from_slice(&self.input_start);
        }
        push_decimal(created.min(i64::MAX as u64), input);
        input.extend_from_slice(self.fixed_params.as_bytes());
        if let Some(nonce) = nonce {
            input.extend_from_slice(b";nonce=");
            // RFC 8941 string serialization, as `sfv::serialize_string` (byte by byte: the
            // escaped characters are ASCII).
            input.push(b'"');
            for b in nonce.bytes() {
                if b == b'"' || b == b'\\' {
                    input.push(b'\\');
                }
                input.push(b);
            }
            input.push(b'"');
        }
        let signature_params = &input[LABEL.len() + 1..];
        base.extend_from_slice(b"\"@signature-params\": ");
        base.extend_from_slice(signature_params);
        let tag = self.key.tag(base);
        signature.extend_from_slice(LABEL.as_bytes());
        signature.extend_from_slice(b"=:");
        signature.extend_from_slice(&crypto::base64_digest(&tag));
        signature.push(b':');
    }
}

/// The pseudo-headers derived components are read from.
const PSEUDO_HEADERS: [&[u8]; 4] = [b":method", b":scheme", b":authority", b":path"];

/// The fields `sign` writes, as [`position`] matches them.
const WRITTEN: [&[u8]; 3] = [b"signature", b"signature-input", b"content-digest"];

/// [`WRITTEN`], as the names written.
const WRITTEN_NAMES: [&str; 3] = ["signature", "signature-input", "content-digest"];

/// Where `name` is in `names` (without regard to case).
#[inline(always)]
fn position<const N: usize>(names: &[&[u8]; N], name: &[u8]) -> Option<usize> {
    names.iter().position(|n| same_name(name, n))
}

/// The buffers a signature is built in, kept from one request to the next.
#[derive(Debug, Default)]
pub struct Buffers {
    /// The signature base.
    base: Vec<u8>,
    /// The `Signature-Input` value.
    input: Vec<u8>,
    /// The `Signature` value.
    signature: Vec<u8>,
    /// The `Content-Digest` value.
    digest: Vec<u8>,
}

/// Appends `n` in decimal (without `fmt`'s machinery: this runs on every signed request).
/// Up to `u32::MAX` (a `created` until 2106) without a loop: in wasm a loop pays an
/// interruption check per iteration, and a 64-bit division is a divide instruction.
fn push_decimal(n: u64, out: &mut Vec<u8>) {
    let Ok(small) = u32::try_from(n) else {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = n;
        while rest > 0 {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        out.extend_from_slice(&digits[at..]);
        return;
    };
    let mut digits = [0u8; 10];
    let mut rest = small;
    macro_rules! digit {
        ($i:expr) => {{
            digits[$i] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }};
    }
    digit!(9);
    digit!(8);
    digit!(7);
    digit!(6);
    digit!(5);
    digit!(4);
    digit!(3);
    digit!(2);
    digit!(1);
    // What is left is below 10: u32::MAX has ten digits.
    digits[0] = b'0' + rest as u8;
    let len = small.checked_ilog10().unwrap_or(0) as usize + 1;
    out.extend_from_slice(&digits[digits.len() - len..]);
}

/// Appends the `Content-Digest` (RFC 9530) of `body` with SHA-256 to `out`.
fn write_content_digest(body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"sha-256=:");
    out.extend_from_slice(&crypto::base64_digest(&crypto::sha256(body)));
    out.push(b':');
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
