//! The few primitives the checking and signing modes share: SHA-256, HMAC-SHA256, a
//! comparison whose time does not depend on where two digests differ, and standard base64
//! (RFC 4648 §4, the alphabet of RFC 8941 byte sequences and of RFC 9530 digests).
//!
//! Base64 is written out here rather than pulled in as a crate: it is forty lines, and the
//! filter only ever encodes 32-byte digests and decodes keys and signatures.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// A SHA-256 digest or an HMAC-SHA256 tag.
pub type Digest32 = [u8; 32];

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Digest32 {
    Sha256::digest(data).into()
}

/// HMAC-SHA256 of `data` under `key` (RFC 2104; any key length).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Digest32 {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// An HMAC-SHA256 key with its inner and outer pads already hashed (at configure time):
/// each tag then costs the message's blocks and one more, not two more. Compared by its
/// bytes; never printed.
#[derive(Clone)]
pub struct HmacKey {
    raw: Vec<u8>,
    mac: Hmac<Sha256>,
}

impl HmacKey {
    /// Prepares `key` (any length).
    pub fn new(key: Vec<u8>) -> Self {
        let mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC accepts any key length");
        Self { raw: key, mac }
    }

    /// HMAC-SHA256 of `data` under this key; the same as [`hmac_sha256`].
    pub fn tag(&self, data: &[u8]) -> Digest32 {
        let mut mac = self.mac.clone();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

impl PartialEq for HmacKey {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for HmacKey {}

/// Whether two digests are equal, looking at every byte whatever the first difference.
pub fn digests_equal(a: &Digest32, b: &Digest32) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the optimiser from turning the fold back into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

/// Whether `tag` (as received, any length) equals `expected`. A tag of the wrong length is
/// refused at once: the length of an HMAC-SHA256 tag is public.
pub fn tag_equal(expected: &Digest32, tag: &[u8]) -> bool {
    match <&Digest32>::try_from(tag) {
        Ok(tag) => digests_equal(expected, tag),
        Err(_) => false,
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Marks a byte outside the alphabet in [`DECODE`].
const INVALID: u8 = 0xff;

/// Each byte's value in the alphabet, or [`INVALID`] (one lookup per byte when decoding).
const DECODE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    base64_encode_into(data, &mut out);
    out
}

/// Standard base64 with padding, appended to `out`.
pub fn base64_encode_into(data: &[u8], out: &mut String) {
    let mut quad = [b'='; 4];
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, c) in quad.iter_mut().enumerate() {
            *c = if i <= chunk.len() {
                ALPHABET[(n >> (18 - 6 * i)) as usize & 63]
            } else {
                b'='
            };
        }
        // Every byte is from the alphabet or `=`: ASCII.
        out.push_str(std::str::from_utf8(&quad).unwrap_or_default());
    }
}

/// Standard base64. Padding is optional but, when present, must be right; whitespace and the
/// URL-safe alphabet are refused. `None` on any error.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    let body = text.strip_suffix(b"==").or_else(|| text.strip_suffix(b"="));
    let body = body.unwrap_or(text);
    if text.len() != body.len() && !text.len().is_multiple_of(4) {
        return None;
    }
    if body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in body {
        let v = match DECODE[usize::from(c)] {
            INVALID => return None,
            v => u32::from(v),
        };
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero (canonical encoding).
    (acc == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), encoded);
            assert_eq!(base64_decode(encoded).unwrap(), plain.as_bytes());
        }
        assert_eq!(
            base64_decode("Zm9vYg").unwrap(),
            b"foob",
            "padding optional"
        );
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(base64_decode(&base64_encode(&all)).unwrap(), all);
    }

    #[test]
    fn base64_refuses_junk() {
        for bad in ["Zg=", "Z", "Zm9v Yg==", "Zm-v", "Zh==", "=", "Zm9v===="] {
            assert_eq!(base64_decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let tag = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            base64_encode(&tag),
            base64_encode(&[
                0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95,
                0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9,
                0x64, 0xec, 0x38, 0x43
            ])
        );
    }

    #[test]
    fn comparisons() {
        let a = sha256(b"a");
        let mut b = a;
        assert!(digests_equal(&a, &b));
        b[31] ^= 1;
        assert!(!digests_equal(&a, &b));
        assert!(tag_equal(&a, &a));
        assert!(!tag_equal(&a, &a[..31]));
    }
}
