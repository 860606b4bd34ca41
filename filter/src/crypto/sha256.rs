//! SHA-256 (FIPS 180-4) written out for the filter's hot path: a one-shot digest that can
//! start from a saved state (HMAC's pads, hashed once at configure time), without the
//! `hmac` and `digest` machinery's copies of block buffers and states on every tag.
//!
//! The tests check this against `sha2` and `hmac` at every length up to several blocks.

/// The state before any block (FIPS 180-4 §5.3.3).
pub const INITIAL: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The round constants (FIPS 180-4 §4.2.2).
const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// One 64-byte block into `state`.
pub fn compress(state: &mut [u32; 8], block: &[u8; 64]) {
    let mut w = [0u32; 16];
    for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
        *word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;

    // Round `i` with the schedule word already in `w[i % 16]`; the eight working variables
    // rotate by renaming, not by moves.
    macro_rules! round {
        ($i:expr, $a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident) => {{
            let s1 = $e.rotate_right(6) ^ $e.rotate_right(11) ^ $e.rotate_right(25);
            let ch = $g ^ ($e & ($f ^ $g));
            let t1 = $h
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[$i])
                .wrapping_add(w[$i % 16]);
            let s0 = $a.rotate_right(2) ^ $a.rotate_right(13) ^ $a.rotate_right(22);
            let maj = ($a & $b) | ($c & ($a | $b));
            $d = $d.wrapping_add(t1);
            $h = t1.wrapping_add(s0).wrapping_add(maj);
        }};
    }
    // `w[i % 16]` becomes W[i] for i in 16..64.
    macro_rules! schedule {
        ($i:expr) => {{
            let w15 = w[($i + 1) % 16];
            let w2 = w[($i + 14) % 16];
            let s0 = w15.rotate_right(7) ^ w15.rotate_right(18) ^ (w15 >> 3);
            let s1 = w2.rotate_right(17) ^ w2.rotate_right(19) ^ (w2 >> 10);
            w[$i % 16] = w[$i % 16]
                .wrapping_add(s0)
                .wrapping_add(w[($i + 9) % 16])
                .wrapping_add(s1);
        }};
    }
    macro_rules! eight {
        ($i:expr) => {{
            round!($i, a, b, c, d, e, f, g, h);
            round!($i + 1, h, a, b, c, d, e, f, g);
            round!($i + 2, g, h, a, b, c, d, e, f);
            round!($i + 3, f, g, h, a, b, c, d, e);
            round!($i + 4, e, f, g, h, a, b, c, d);
            round!($i + 5, d, e, f, g, h, a, b, c);
            round!($i + 6, c, d, e, f, g, h, a, b);
            round!($i + 7, b, c, d, e, f, g, h, a);
        }};
    }
    macro_rules! scheduled_eight {
        ($i:expr) => {{
            schedule!($i);
            schedule!($i + 1);
            schedule!($i + 2);
            schedule!($i + 3);
            schedule!($i + 4);
            schedule!($i + 5);
            schedule!($i + 6);
            schedule!($i + 7);
            eight!($i);
        }};
    }
    eight!(0);
    eight!(8);
    scheduled_eight!(16);
    scheduled_eight!(24);
    scheduled_eight!(32);
    scheduled_eight!(40);
    scheduled_eight!(48);
    scheduled_eight!(56);

    for (s, v) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *s = s.wrapping_add(v);
    }
}

/// SHA-256 of a message made of `prefix_len` bytes already hashed into `state` (a multiple of
/// 64) followed by `data`.
pub fn finish(mut state: [u32; 8], prefix_len: u64, data: &[u8]) -> [u8; 32] {
    let mut blocks = data.chunks_exact(64);
    for block in &mut blocks {
        compress(&mut state, block.try_into().expect("64-byte chunk"));
    }
    let rest = blocks.remainder();
    // The padding: 0x80, zeros, then the length in bits, in one block or two.
    let mut tail = [0u8; 128];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    let end = if rest.len() < 56 { 64 } else { 128 };
    let bits = (prefix_len + data.len() as u64).wrapping_mul(8);
    tail[end - 8..end].copy_from_slice(&bits.to_be_bytes());
    for block in tail[..end].chunks_exact(64) {
        compress(&mut state, block.try_into().expect("64-byte chunk"));
    }
    let mut out = [0u8; 32];
    for (bytes, word) in out.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    out
}
