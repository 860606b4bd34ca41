//! The few primitives the checking and signing modes share: SHA-256, HMAC-SHA256, a
//! comparison whose time does not depend on where two digests differ, and standard base64
//! (RFC 4648 §4, the alphabet of RFC 8941 byte sequences and of RFC 9530 digests).
//!
//! Base64 is written out here rather than pulled in as a crate: it is forty lines, and the
//! filter only ever encodes 32-byte digests and decodes keys and signatures.

mod sha256;

/// A SHA-256 digest or an HMAC-SHA256 tag.
pub type Digest32 = [u8; 32];

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Digest32 {
    sha256::finish(sha256::INITIAL, 0, data)
}

/// HMAC-SHA256 of `data` under `key` (RFC 2104; any key length).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Digest32 {
    HmacKey::new(key.to_vec()).tag(data)
}

/// The block size of SHA-256, which HMAC pads the key to.
const BLOCK: usize = 64;

/// An HMAC-SHA256 key with its inner and outer pads already hashed (at configure time):
/// each tag then costs the message's blocks and one more, not two more. Compared by its
/// bytes; never printed.
#[derive(Clone)]
pub struct HmacKey {
    raw: Vec<u8>,
    /// The SHA-256 state after the block `key ^ ipad`.
    inner: [u32; 8],
    /// The SHA-256 state after the block `key ^ opad`.
    outer: [u32; 8],
}

impl HmacKey {
    /// Prepares `key` (any length: one longer than a block is hashed first, RFC 2104 §2).
    pub fn new(key: Vec<u8>) -> Self {
        let mut block = [0u8; BLOCK];
        if key.len() > BLOCK {
            block[..32].copy_from_slice(&sha256(&key));
        } else {
            block[..key.len()].copy_from_slice(&key);
        }
        let pad = |byte: u8| {
            let mut padded = block;
            padded.iter_mut().for_each(|b| *b ^= byte);
            let mut state = sha256::INITIAL;
            sha256::compress(&mut state, &padded);
            state
        };
        Self {
            inner: pad(0x36),
            outer: pad(0x5c),
            raw: key,
        }
    }

    /// HMAC-SHA256 of `data` under this key; the same as [`hmac_sha256`].
    pub fn tag(&self, data: &[u8]) -> Digest32 {
        let inner = sha256::finish(self.inner, BLOCK as u64, data);
        sha256::finish(self.outer, BLOCK as u64, &inner)
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
    let mut out = Vec::with_capacity(data.len().div_ceil(3) * 4);
    base64_encode_to_vec(data, &mut out);
    // Every byte is from the alphabet or `=`: ASCII.
    String::from_utf8(out).unwrap_or_default()
}

/// Standard base64 with padding, appended to `out`.
pub fn base64_encode_to_vec(data: &[u8], out: &mut Vec<u8>) {
    let symbol = |n: u32, shift: u32| ALPHABET[(n >> shift) as usize & 63];
    out.reserve(data.len().div_ceil(3) * 4);
    let mut chunks = data.chunks_exact(3);
    for chunk in &mut chunks {
        let n = u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8 | u32::from(chunk[2]);
        out.extend_from_slice(&[symbol(n, 18), symbol(n, 12), symbol(n, 6), symbol(n, 0)]);
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.extend_from_slice(&[symbol(n, 18), symbol(n, 12), b'=', b'=']);
        }
        [a, b] => {
            let n = u32::from(a) << 16 | u32::from(b) << 8;
            out.extend_from_slice(&[symbol(n, 18), symbol(n, 12), symbol(n, 6), b'=']);
        }
        _ => {}
    }
}

/// Standard base64 of a digest (what [`base64_encode`] gives, in a fixed-size array: no
/// allocation, no length checks, and no loop, which in wasm costs an interruption check per
/// iteration).
pub fn base64_digest(digest: &Digest32) -> [u8; 44] {
    let symbol = |n: u32, shift: u32| ALPHABET[(n >> shift) as usize & 63];
    let mut out = [b'='; 44];
    macro_rules! quad {
        ($i:expr) => {{
            let n = u32::from(digest[3 * $i]) << 16
                | u32::from(digest[3 * $i + 1]) << 8
                | u32::from(digest[3 * $i + 2]);
            out[4 * $i] = symbol(n, 18);
            out[4 * $i + 1] = symbol(n, 12);
            out[4 * $i + 2] = symbol(n, 6);
            out[4 * $i + 3] = symbol(n, 0);
        }};
    }
    quad!(0);
    quad!(1);
    quad!(2);
    quad!(3);
    quad!(4);
    quad!(5);
    quad!(6);
    quad!(7);
    quad!(8);
    quad!(9);
    // Two bytes left: three symbols, and the padding already there.
    let n = u32::from(digest[30]) << 16 | u32::from(digest[31]) << 8;
    out[40] = symbol(n, 18);
    out[41] = symbol(n, 12);
    out[42] = symbol(n, 6);
    out
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
    fn base64_of_a_digest_is_base64() {
        for data in [&b""[..], b"a", b"abc"] {
            let digest = sha256(data);
            assert_eq!(
                base64_digest(&digest).to_vec(),
                base64_encode(&digest).into_bytes()
            );
        }
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
    fn sha256_and_hmac_match_the_reference_crates_at_every_length() {
        use hmac::{Hmac, Mac};
        use sha2::Digest as _;
        let data: Vec<u8> = (0..400u32).map(|i| (i * 7 + 3) as u8).collect();
        let keys: [&[u8]; 4] = [b"0123456789abcdef", &[0xaa; 64], &[0x0b; 65], &data[..131]];
        for len in 0..=data.len() {
            let message = &data[..len];
            let expected: [u8; 32] = sha2::Sha256::digest(message).into();
            assert_eq!(sha256(message), expected, "sha256 of {len} bytes");
            for key in keys {
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
                mac.update(message);
                let expected: [u8; 32] = mac.finalize().into_bytes().into();
                assert_eq!(hmac_sha256(key, message), expected, "hmac of {len} bytes");
            }
        }
    }

    #[test]
    fn sha256_matches_fips_180_vectors() {
        let hex = |d: Digest32| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(sha256(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
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
