//! SHA-256 (FIPS 180-4) written out for the filter's hot path: a one-shot digest that can
//! start from a saved state (HMAC's pads, hashed once at configure time), and a compression
//! function that in wasm computes the message schedule four words at a time in `simd128`
//! vectors.
//!
//! Why not the `sha2` and `hmac` crates: in cranelift-compiled wasm a block costs about 190 ns
//! whatever the scalar formulation (theirs or the plain one below: within 5 %), spilling the
//! sixteen schedule words the rounds do not need at once; moving the schedule into vector
//! registers takes 10 % off (issue 15 in BENCHMARKS.md). The tests check this against `sha2`
//! and `hmac` at every length up to several blocks, and the vector formulation against the
//! scalar one.

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

/// The compression function the digests use: in wasm, [`compress_vectors`] with wasm
/// `simd128` (which every proxy-wasm host's engine runs: V8, Wasmtime, WAMR); elsewhere the
/// scalar [`compress`].
#[inline(always)]
fn compress_any(state: &mut [u32; 8], block: &[u8; 64]) {
    #[cfg(target_arch = "wasm32")]
    simd128::compress(state, block);
    #[cfg(not(target_arch = "wasm32"))]
    compress(state, block);
}

/// SHA-256 of a message made of `prefix_len` bytes already hashed into `state` (a multiple of
/// 64) followed by `data`.
pub fn finish(mut state: [u32; 8], prefix_len: u64, data: &[u8]) -> [u8; 32] {
    let mut blocks = data.chunks_exact(64);
    for block in &mut blocks {
        compress_any(&mut state, block.try_into().expect("64-byte chunk"));
    }
    let rest = blocks.remainder();
    // The padding: 0x80, zeros, then the length in bits, in one block or two.
    let mut block = [0u8; 64];
    block[..rest.len()].copy_from_slice(rest);
    block[rest.len()] = 0x80;
    if rest.len() >= 56 {
        compress_any(&mut state, &block);
        block = [0u8; 64];
    }
    let bits = (prefix_len + data.len() as u64).wrapping_mul(8);
    block[56..].copy_from_slice(&bits.to_be_bytes());
    compress_any(&mut state, &block);
    let mut out = [0u8; 32];
    for (bytes, word) in out.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// The lane operations [`compress_vectors`] needs, on four 32-bit words.
#[cfg(any(test, target_arch = "wasm32"))]
trait Lanes: Copy {
    /// Four big-endian words.
    fn load(bytes: &[u8]) -> Self;
    fn words(a: u32, b: u32, c: u32, d: u32) -> Self;
    fn add(self, other: Self) -> Self;
    fn xor(self, other: Self) -> Self;
    /// Each lane rotated right by `N` (`M` is `32 - N`).
    fn rotr<const N: u32, const M: u32>(self) -> Self;
    fn shr<const N: u32>(self) -> Self;
    /// Lanes 1, 2, 3 of `self` and lane 0 of `next`.
    fn shift_in(self, next: Self) -> Self;
    /// Lanes 2 and 3 of `self` into lanes 0 and 1; zeros above.
    fn high_to_low(self) -> Self;
    /// Lanes 0 and 1 of `self` into lanes 2 and 3; zeros below.
    fn low_to_high(self) -> Self;
    fn lane<const L: usize>(self) -> u32;
}

/// The compression function with the message schedule computed four words at a time in
/// vector lanes (in wasm: `simd128` registers, out of the general registers the rounds
/// need, which cranelift otherwise spills). Tested against [`compress`] with plain arrays
/// as lanes.
#[cfg(any(test, target_arch = "wasm32"))]
#[inline(always)]
fn compress_vectors<V: Lanes>(state: &mut [u32; 8], block: &[u8; 64]) {
    #[inline(always)]
    fn sigma0<V: Lanes>(x: V) -> V {
        x.rotr::<7, 25>().xor(x.rotr::<18, 14>()).xor(x.shr::<3>())
    }
    #[inline(always)]
    fn sigma1<V: Lanes>(x: V) -> V {
        x.rotr::<17, 15>()
            .xor(x.rotr::<19, 13>())
            .xor(x.shr::<10>())
    }
    /// W[t..t + 4] from the sixteen words before, four to a vector.
    #[inline(always)]
    fn schedule<V: Lanes>(x0: V, x1: V, x2: V, x3: V) -> V {
        let partial = x0.add(sigma0(x0.shift_in(x1))).add(x2.shift_in(x3));
        // W[t - 2] and W[t - 1] make the first two words; those two, the last two.
        let low = partial.add(sigma1(x3.high_to_low()));
        low.add(sigma1(low.low_to_high()))
    }
    let mut x = [
        V::load(&block[0..16]),
        V::load(&block[16..32]),
        V::load(&block[32..48]),
        V::load(&block[48..64]),
    ];
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    macro_rules! round {
        ($wk:expr, $a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident) => {{
            let s1 = $e.rotate_right(6) ^ $e.rotate_right(11) ^ $e.rotate_right(25);
            let ch = $g ^ ($e & ($f ^ $g));
            let t1 = $h.wrapping_add(s1).wrapping_add(ch).wrapping_add($wk);
            let s0 = $a.rotate_right(2) ^ $a.rotate_right(13) ^ $a.rotate_right(22);
            let maj = ($a & $b) | ($c & ($a | $b));
            $d = $d.wrapping_add(t1);
            $h = t1.wrapping_add(s0).wrapping_add(maj);
        }};
    }
    macro_rules! four {
        ($i:expr, $a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident) => {{
            let wk = x[($i / 4) % 4].add(V::words(K[$i], K[$i + 1], K[$i + 2], K[$i + 3]));
            round!(wk.lane::<0>(), $a, $b, $c, $d, $e, $f, $g, $h);
            round!(wk.lane::<1>(), $h, $a, $b, $c, $d, $e, $f, $g);
            round!(wk.lane::<2>(), $g, $h, $a, $b, $c, $d, $e, $f);
            round!(wk.lane::<3>(), $f, $g, $h, $a, $b, $c, $d, $e);
        }};
    }
    // The words of rounds `i + 16..i + 20` replace those of rounds `i..i + 4`.
    macro_rules! next {
        ($i:expr) => {{
            let n = ($i / 4) % 4;
            x[n] = schedule(x[n], x[(n + 1) % 4], x[(n + 2) % 4], x[(n + 3) % 4]);
        }};
    }
    macro_rules! eight {
        ($i:expr) => {{
            four!($i, a, b, c, d, e, f, g, h);
            next!($i);
            four!($i + 4, e, f, g, h, a, b, c, d);
            next!($i + 4);
        }};
    }
    eight!(0);
    eight!(8);
    eight!(16);
    eight!(24);
    eight!(32);
    eight!(40);
    four!(48, a, b, c, d, e, f, g, h);
    four!(52, e, f, g, h, a, b, c, d);
    four!(56, a, b, c, d, e, f, g, h);
    four!(60, e, f, g, h, a, b, c, d);
    for (s, v) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *s = s.wrapping_add(v);
    }
}

#[cfg(target_arch = "wasm32")]
mod simd128 {
    use super::Lanes;
    use core::arch::wasm32::*;

    #[derive(Clone, Copy)]
    struct V(v128);

    impl Lanes for V {
        #[inline(always)]
        fn load(bytes: &[u8]) -> Self {
            let le =
                |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
            let v = u32x4(le(0), le(4), le(8), le(12));
            V(i8x16_shuffle::<
                3,
                2,
                1,
                0,
                7,
                6,
                5,
                4,
                11,
                10,
                9,
                8,
                15,
                14,
                13,
                12,
            >(v, v))
        }
        #[inline(always)]
        fn words(a: u32, b: u32, c: u32, d: u32) -> Self {
            V(u32x4(a, b, c, d))
        }
        #[inline(always)]
        fn add(self, other: Self) -> Self {
            V(i32x4_add(self.0, other.0))
        }
        #[inline(always)]
        fn xor(self, other: Self) -> Self {
            V(v128_xor(self.0, other.0))
        }
        #[inline(always)]
        fn rotr<const N: u32, const M: u32>(self) -> Self {
            V(v128_or(u32x4_shr(self.0, N), i32x4_shl(self.0, M)))
        }
        #[inline(always)]
        fn shr<const N: u32>(self) -> Self {
            V(u32x4_shr(self.0, N))
        }
        #[inline(always)]
        fn shift_in(self, next: Self) -> Self {
            V(i32x4_shuffle::<1, 2, 3, 4>(self.0, next.0))
        }
        #[inline(always)]
        fn high_to_low(self) -> Self {
            V(i32x4_shuffle::<2, 3, 4, 4>(self.0, i32x4_splat(0)))
        }
        #[inline(always)]
        fn low_to_high(self) -> Self {
            V(i32x4_shuffle::<4, 4, 0, 1>(self.0, i32x4_splat(0)))
        }
        #[inline(always)]
        fn lane<const L: usize>(self) -> u32 {
            u32x4_extract_lane::<L>(self.0)
        }
    }

    /// [`super::compress_vectors`] in `simd128`.
    #[target_feature(enable = "simd128")]
    pub(super) fn compress(state: &mut [u32; 8], block: &[u8; 64]) {
        super::compress_vectors::<V>(state, block);
    }
}

/// Plain arrays as lanes: the vector formulation, checked natively.
#[cfg(test)]
impl Lanes for [u32; 4] {
    fn load(bytes: &[u8]) -> Self {
        let be =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        [be(0), be(4), be(8), be(12)]
    }
    fn words(a: u32, b: u32, c: u32, d: u32) -> Self {
        [a, b, c, d]
    }
    fn add(self, other: Self) -> Self {
        std::array::from_fn(|i| self[i].wrapping_add(other[i]))
    }
    fn xor(self, other: Self) -> Self {
        std::array::from_fn(|i| self[i] ^ other[i])
    }
    fn rotr<const N: u32, const M: u32>(self) -> Self {
        assert_eq!(N + M, 32);
        self.map(|w| (w >> N) | (w << M))
    }
    fn shr<const N: u32>(self) -> Self {
        self.map(|w| w >> N)
    }
    fn shift_in(self, next: Self) -> Self {
        [self[1], self[2], self[3], next[0]]
    }
    fn high_to_low(self) -> Self {
        [self[2], self[3], 0, 0]
    }
    fn low_to_high(self) -> Self {
        [0, 0, self[0], self[1]]
    }
    fn lane<const L: usize>(self) -> u32 {
        self[L]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vector_formulation_is_the_compression_function() {
        let mut block = [0u8; 64];
        let mut state = INITIAL;
        for round in 0..200u32 {
            for (i, b) in block.iter_mut().enumerate() {
                *b = (round.wrapping_mul(131) ^ (i as u32).wrapping_mul(29)) as u8;
            }
            let mut scalar = state;
            compress(&mut scalar, &block);
            let mut vectors = state;
            compress_vectors::<[u32; 4]>(&mut vectors, &block);
            assert_eq!(vectors, scalar, "block {round}");
            state = scalar;
        }
    }
}
