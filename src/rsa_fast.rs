//! RSA signature verification (RSASSA-PKCS1-v1_5 and RSASSA-PSS, RFC 8017)
//! tuned for wasm32 in V8.
//!
//! Why not ring: on wasm32 ring runs portable bignum code and, through
//! `RsaPublicKeyComponents::verify`, rebuilds the key's Montgomery constants
//! (`R² mod n`) on every verification. Here the constants are computed once
//! per key, when the JWKS is parsed ([`RsaPublicKey::new`]), and each
//! verification is one multiplication into Montgomery form, then `e`'s
//! squarings and multiplications (16 + 1 for `e = 65537`), the last of which
//! multiplies by the plain signature and so also leaves Montgomery form.
//!
//! Arithmetic: 28-bit limbs, summed lazily in 64-bit words, two words per
//! 128-bit vector (wasm `simd128`: `i64x2.extmul_low/high_i32x4_u` gives two
//! 28x28-bit products per instruction, `i64x2.add` accumulates them). A
//! product of two 28-bit limbs is below 2^56, so a word can take 255 of them
//! before it could overflow: no carry is propagated while products are
//! summed, only once per Montgomery row (the word the row clears) and at the
//! end. Each Montgomery operation (REDC, rows of `m·n` two at a time) follows
//! either a fused multiply (`a·b` rows interleaved with the REDC rows) or a
//! dedicated squaring (each cross product once, by `2a`, four rows per pass
//! over the words: each pass has a scalar set-up of a hundred-odd
//! instructions in V8, which two rows per pass paid 37 times per 2048-bit
//! squaring instead of 19). Results are only
//! reduced below `2n` (`R = 2^(28k) > 4n`, so inputs below `2n` give outputs
//! below `2n`); one subtraction at the very end makes the output exact.
//! Above 3526 bits (k > 126 limbs) a squaring renormalises the running sum
//! (one carry pass) between the square and the reduction; above 7110 bits
//! (k > 254) squarings go through the multiply, which renormalises every 63
//! row pairs.
//!
//! The same code runs everywhere: in wasm32 the lanes are `simd128` vectors
//! (the functions that use them are compiled with
//! `#[target_feature(enable = "simd128")]`; LLVM's wasm backend then applies
//! the feature to the whole module, so the filter's Wasm module needs an
//! engine with Wasm SIMD: V8 has had it since 9.1, and Envoy 1.40 runs the
//! end-to-end suite with it), elsewhere a two-`u64` emulation (see
//! [`lanes`]), so the native differential tests run the algorithm the
//! filter runs. `bench/crypto` measures each step (a 2048-bit
//! RS256 verification went from ~200 µs with ring to ~46 µs with the
//! previous 32-bit scalar code, to ~29 µs with this; issue 16 measured the
//! four-row squaring and the allocation-free verification at ~5 % less).
//!
//! A verification allocates nothing: its buffers live in a thread-local
//! work space ([`with_work`]) reused from one verification to the next.
//!
//! One V8-specific detail: the row multipliers are splatted vectors read from
//! memory inside the inner loops. Kept in a register, LLVM hoists their
//! widening out of the loop and then emits `i64x2.mul`, which V8 lowers to a
//! long emulation (3 multiplies and shifts); reloaded, the pair stays an
//! `extmul`, which V8 lowers to two unpacks and one `pmuludq`.
//!
//! **Not constant time, on purpose.** Verification handles only public data
//! (the public key, the signed message and the signature), so branches and
//! early exits that depend on them leak nothing secret. Do not reuse this
//! code for anything involving a private key.
//!
//! The hashes come from ring. No `unsafe`, and no panicking operation outside
//! tests: every slice access goes through iterators or `get`.

use ring::digest;

/// Smallest accepted modulus, in bits (RFC 7518 section 3.3).
pub const MIN_BITS: usize = 2048;
/// Largest accepted modulus, in bits (as ring).
pub const MAX_BITS: usize = 8192;
/// Smallest accepted public exponent.
pub const MIN_EXPONENT: u64 = 3;
/// Largest accepted public exponent: 2³³ - 1, ring's rule, so both
/// verifiers accept the same keys (and the JWKS parser refuses the rest).
pub const MAX_EXPONENT: u64 = (1 << 33) - 1;

/// True if `e` (big-endian, leading zero bytes allowed) is an odd value from
/// [`MIN_EXPONENT`] to [`MAX_EXPONENT`]: the exponents [`RsaPublicKey::new`]
/// and the JWKS parser accept.
pub fn exponent_allowed(e: &[u8]) -> bool {
    let e = strip_zeros(e);
    if e.len() > 8 {
        return false;
    }
    let e = e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    (MIN_EXPONENT..=MAX_EXPONENT).contains(&e) && e & 1 == 1
}

/// The hash of an RS*/PS* algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256 (RS256, PS256).
    Sha256,
    /// SHA-384 (RS384, PS384).
    Sha384,
    /// SHA-512 (RS512, PS512).
    Sha512,
}

impl Hash {
    fn algorithm(self) -> &'static digest::Algorithm {
        match self {
            Hash::Sha256 => &digest::SHA256,
            Hash::Sha384 => &digest::SHA384,
            Hash::Sha512 => &digest::SHA512,
        }
    }

    /// The digest of the signed message, with the `sha2` crate: ring has
    /// no assembly on wasm32, and its
    /// portable SHA-256 measured ~1.5 µs slower per RS256 token in V8
    /// (BENCHMARKS.md). Checked against ring by `tests/rsa_fast.rs`.
    fn digest(self, message: &[u8]) -> MessageHash {
        use sha2::Digest as _;
        let mut out = MessageHash {
            bytes: [0; 64],
            len: 0,
        };
        let mut put = |d: &[u8]| {
            for (o, b) in out.bytes.iter_mut().zip(d) {
                *o = *b;
            }
            out.len = d.len();
        };
        match self {
            Hash::Sha256 => put(&sha2::Sha256::digest(message)),
            Hash::Sha384 => put(&sha2::Sha384::digest(message)),
            Hash::Sha512 => put(&sha2::Sha512::digest(message)),
        }
        out
    }

    /// DER of the PKCS#1 v1.5 `DigestInfo` up to the digest bytes (with the
    /// explicit NULL parameters, RFC 8017 section 9.2 note 1).
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Hash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Hash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            Hash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }
}

/// A message digest, on the stack (up to SHA-512's 64 bytes).
struct MessageHash {
    bytes: [u8; 64],
    len: usize,
}

impl AsRef<[u8]> for MessageHash {
    fn as_ref(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// The signature encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// EMSA-PKCS1-v1_5 (RS256/384/512).
    Pkcs1v15,
    /// EMSA-PSS with MGF1 of the same hash and a salt as long as the hash
    /// (PS256/384/512, RFC 7518 section 3.5).
    Pss,
}

/// An RSA public key with its Montgomery constants, computed once.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    /// The modulus in 28-bit limbs, with its Montgomery constants.
    m: Modulus,
    /// Public exponent.
    e: u64,
    /// Modulus length in bits and in bytes.
    bits: usize,
    len: usize,
}

impl std::fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaPublicKey({} bits, e={})", self.bits, self.e)
    }
}

impl RsaPublicKey {
    /// Checks and precomputes a key from big-endian `n` and `e` (leading zero
    /// bytes allowed). `None` unless the modulus is odd and
    /// [`MIN_BITS`]..=[`MAX_BITS`] bits, and `e` passes [`exponent_allowed`].
    pub fn new(n: &[u8], e: &[u8]) -> Option<RsaPublicKey> {
        let n = strip_zeros(n);
        let e = strip_zeros(e);
        let bits = bit_len(n);
        if !(MIN_BITS..=MAX_BITS).contains(&bits) || !exponent_allowed(e) {
            return None;
        }
        let e = e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let m = Modulus::new(from_be_bytes(n, limbs_for(bits)), bits)?;
        Some(RsaPublicKey {
            m,
            e,
            bits,
            len: n.len(),
        })
    }

    /// Modulus length in bytes: the length of every signature.
    pub fn modulus_len(&self) -> usize {
        self.len
    }

    /// Modulus length in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Verifies `sig` over `message`. The signature must be exactly as long
    /// as the modulus and, as a number, below it.
    pub fn verify(&self, padding: Padding, hash: Hash, message: &[u8], sig: &[u8]) -> bool {
        with_work(&self.m, |work| {
            if !self.public_op(sig, work) {
                return false;
            }
            let m_hash = hash.digest(message);
            let em = work.em.as_slice();
            match padding {
                Padding::Pkcs1v15 => pkcs1v15_matches(em, hash, m_hash.as_ref()),
                Padding::Pss => pss_matches(em, self.bits - 1, hash, m_hash.as_ref()),
            }
        })
    }

    /// `sig^e mod n` as big-endian bytes of the modulus length, into
    /// `work.em`; false if `sig` has the wrong length or is not below `n`.
    fn public_op(&self, sig: &[u8], work: &mut Work) -> bool {
        if sig.len() != self.len {
            return false;
        }
        let m = &self.m;
        let Work {
            scratch,
            s,
            base,
            acc,
            tmp,
            em,
        } = work;
        from_be_bytes_into(sig, s);
        if !less_than(s, &m.n) {
            return false;
        }
        // Into Montgomery form: s·R = MontMul(s, R²).
        m.mul(s, &m.rr, scratch, base);
        acc.copy_from_slice(base);
        // Left to right over e's bits below the top one. e is odd and at
        // least 3 (checked in `new`), so the loop runs and its last step is a
        // multiplication into `tmp`: by s itself rather than s·R, which
        // leaves Montgomery form for free (s^(e-1)·R · s / R = s^e).
        let top = 63 - self.e.leading_zeros();
        for bit in (0..top).rev() {
            m.sqr(acc, scratch, tmp);
            std::mem::swap(acc, tmp);
            if bit == 0 {
                m.mul(acc, s, scratch, tmp);
            } else if (self.e >> bit) & 1 == 1 {
                m.mul(acc, base, scratch, tmp);
                std::mem::swap(acc, tmp);
            }
        }
        // Below 2n: one subtraction at most.
        if !less_than(tmp, &m.n) {
            sub_in_place(tmp, &m.n);
        }
        em.resize(self.len, 0);
        to_be_bytes_into(tmp, em);
        true
    }
}

/// The buffers of one verification: kept between verifications (see
/// [`with_work`]), so a verification allocates nothing.
struct Work {
    scratch: Scratch,
    /// The signature, `s·R`, and the running power, in 28-bit limbs.
    s: Vec<u32>,
    base: Vec<u32>,
    acc: Vec<u32>,
    tmp: Vec<u32>,
    /// The encoded message `s^e mod n`, big-endian.
    em: Vec<u8>,
}

impl Work {
    fn new(m: &Modulus) -> Work {
        let k = m.n.len();
        Work {
            scratch: m.scratch(),
            s: vec![0; k],
            base: vec![0; k],
            acc: vec![0; k],
            tmp: vec![0; k],
            em: Vec::new(),
        }
    }

    /// True if the buffers have the sizes [`Work::new`] gives for `m`.
    fn fits(&self, m: &Modulus) -> bool {
        let k = m.n.len();
        self.s.len() == k && self.scratch.packs.len() == m.packs.len()
    }
}

thread_local! {
    /// The last verification's [`Work`], for the next one. The filter's VM
    /// runs one verification at a time, usually with 2048-bit keys, so this
    /// saves the dozen allocations and frees of a verification (malloc and
    /// free were ~14 % of a cold request's V8 ticks, issue 16); a key of
    /// another size just allocates anew. At most ~20 KiB (8192 bits). Only
    /// public values pass through it, and every buffer is overwritten before
    /// it is read.
    static SPARE: std::cell::Cell<Option<Work>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with a [`Work`] for `m`: the spare one if it fits, else new.
fn with_work<R>(m: &Modulus, f: impl FnOnce(&mut Work) -> R) -> R {
    let spare = SPARE.try_with(std::cell::Cell::take).ok().flatten();
    let mut work = spare.filter(|w| w.fits(m)).unwrap_or_else(|| Work::new(m));
    let result = f(&mut work);
    // Fails only while the thread is exiting: then the buffers are dropped.
    let _ = SPARE.try_with(|c| c.set(Some(work)));
    result
}

/// The few wasm `simd128` operations used here: the real ones in wasm32,
/// a two-`u64` emulation elsewhere (same lane semantics: a `v128` seen as
/// four `u32` lanes or two `u64` lanes, lane 0 least significant).
mod lanes {
    #[cfg(target_arch = "wasm32")]
    pub use core::arch::wasm32::{
        u32x4, u32x4_splat, u64x2, u64x2_add, u64x2_extmul_high_u32x4, u64x2_extmul_low_u32x4,
        u64x2_extract_lane, u64x2_splat, v128,
    };

    #[cfg(not(target_arch = "wasm32"))]
    pub use emulated::*;

    #[cfg(not(target_arch = "wasm32"))]
    mod emulated {
        /// Two `u64` lanes; `u32` lanes 2j and 2j + 1 are the low and high
        /// halves of `u64` lane j.
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug)]
        pub struct v128([u64; 2]);

        pub fn u32x4(a: u32, b: u32, c: u32, d: u32) -> v128 {
            let lane = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
            v128([lane(a, b), lane(c, d)])
        }

        pub fn u32x4_splat(x: u32) -> v128 {
            u32x4(x, x, x, x)
        }

        pub fn u64x2(a: u64, b: u64) -> v128 {
            v128([a, b])
        }

        pub fn u64x2_splat(x: u64) -> v128 {
            v128([x, x])
        }

        /// `i64x2.add` wraps; the arithmetic never lets a lane overflow, and
        /// a plain `+` has debug builds (tests, fuzzing) check that.
        pub fn u64x2_add(a: v128, b: v128) -> v128 {
            let ([a0, a1], [b0, b1]) = (a.0, b.0);
            v128([a0 + b0, a1 + b1])
        }

        /// The two `u32` halves of `a` times those of `b`, as two `u64`.
        fn extmul(a: u64, b: u64) -> v128 {
            v128([(a & 0xffff_ffff) * (b & 0xffff_ffff), (a >> 32) * (b >> 32)])
        }

        pub fn u64x2_extmul_low_u32x4(a: v128, b: v128) -> v128 {
            let ([a0, _], [b0, _]) = (a.0, b.0);
            extmul(a0, b0)
        }

        pub fn u64x2_extmul_high_u32x4(a: v128, b: v128) -> v128 {
            let ([_, a1], [_, b1]) = (a.0, b.0);
            extmul(a1, b1)
        }

        pub fn u64x2_extract_lane<const N: usize>(a: v128) -> u64 {
            let [l0, l1] = a.0;
            if N == 0 {
                l0
            } else {
                l1
            }
        }
    }
}

use lanes::{
    u32x4, u32x4_splat, u64x2, u64x2_add, u64x2_extmul_high_u32x4, u64x2_extmul_low_u32x4,
    u64x2_extract_lane, u64x2_splat, v128,
};

/// Limb width in bits.
const W: u32 = 28;
/// Low `W` bits.
const MASK: u32 = (1 << W) - 1;

/// Row pairs between two renormalisations in [`Modulus::mul`]: each pair
/// adds at most four products below 2^56 to a word, so 63 pairs keep a word
/// (below 2^28, plus a carry below 2^37, after renormalising) under 2^64.
const NORMALISE_EVERY: usize = 63;

/// Largest limb count for [`Modulus::sqr`] without renormalising: a word
/// gets at most k/2 square products below 2^57 and k reduction products
/// below 2^56, plus carries below 2^37: under 2^64 for k ≤ 126 (up to 3526
/// bits).
const MAX_UNNORMALISED_SQR: usize = 126;

/// Largest limb count for [`Modulus::sqr`]: with the square renormalised
/// before the reduction, each phase adds at most k·2^56 to a word, under
/// 2^64 for k ≤ 254 (up to 7110 bits). Larger moduli square with
/// [`Modulus::mul`].
const MAX_SQR: usize = 254;

/// Number of 28-bit limbs for a `bits`-bit modulus: even (rows go in
/// pairs), with two spare bits so that `4n < R = 2^(28k)`.
fn limbs_for(bits: usize) -> usize {
    (bits + 2).div_ceil(W as usize).next_multiple_of(2)
}

/// A modulus in 28-bit limbs (`k` of them, as [`limbs_for`]) with its
/// Montgomery constants for `R = 2^(28k)`.
#[derive(Clone)]
struct Modulus {
    /// Limbs, least significant first.
    n: Vec<u32>,
    /// Per group of four words q: `n[4q..4q+4]` and `n[4q-1..4q+3]` (zero
    /// outside `0..k`), for the two rows of a pass.
    packs: Vec<[v128; 2]>,
    /// `-n⁻¹ mod 2^28`.
    inv: u32,
    /// `R² mod n`.
    rr: Vec<u32>,
}

/// The packs and constants derive from `n`.
impl PartialEq for Modulus {
    fn eq(&self, other: &Self) -> bool {
        self.n == other.n
    }
}

impl Eq for Modulus {}

/// Work space for one exponentiation.
struct Scratch {
    /// The running sum, two 64-bit words per vector (2k words and a few
    /// more that the last passes' padding touches).
    t: Vec<v128>,
    /// `b`'s packs in [`Modulus::mul`], as `n`'s.
    packs: Vec<[v128; 2]>,
    /// The current rows' multipliers, splatted. Read from memory in the
    /// inner loops: see the module comment.
    mults: Vec<v128>,
    /// For squaring: `2a` after four zero limbs, and its packs at the four
    /// alignments (`sq[o][q]` holds limbs `4q + o - 4 ..= 4q + o - 1` of
    /// `2a`).
    doubled: Vec<u32>,
    sq: [Vec<v128>; 4],
}

impl Modulus {
    /// The constants for `n` (28-bit limbs, `limbs_for(bits)` of them);
    /// `None` if `n` is even.
    fn new(n: Vec<u32>, bits: usize) -> Option<Modulus> {
        let n_lo = *n.first()?;
        if n_lo & 1 == 0 {
            return None;
        }
        // Newton's iteration for the inverse mod 2³²: n·n ≡ 1 (mod 8), and
        // each step doubles the number of correct low bits (3, 6, 12, 24, 48).
        let mut inv = n_lo;
        for _ in 0..4 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(n_lo.wrapping_mul(inv)));
        }
        let packs = pack(&n);
        let mut m = Modulus {
            n,
            packs,
            inv: inv.wrapping_neg() & MASK,
            rr: Vec::new(),
        };
        m.rr = m.r_squared(bits);
        Some(m)
    }

    /// `R² mod n`, the Montgomery form of `R = 2^(28k)`: write `28k = j·2^t`
    /// with `j` odd; double `2^(bits-1)` (below n) modulo n up to
    /// `2^(28k + j)`, the Montgomery form of `2^j`, then square that `t` times
    /// in Montgomery form. About 28k/8 doublings and a few squarings,
    /// instead of 56k doublings.
    fn r_squared(&self, bits: usize) -> Vec<u32> {
        let k = self.n.len();
        let r_bits = W as usize * k;
        let t = r_bits.trailing_zeros();
        let j = r_bits >> t;
        let mut x = vec![0u32; k];
        if let Some(limb) = x.get_mut((bits - 1) / W as usize) {
            *limb = 1 << ((bits - 1) % W as usize);
        }
        for _ in (bits - 1)..(r_bits + j) {
            let carry = shl1(&mut x);
            if carry || !less_than(&x, &self.n) {
                sub_in_place(&mut x, &self.n);
            }
        }
        let mut tmp = vec![0u32; k];
        let mut s = self.scratch();
        for _ in 0..t {
            self.sqr(&x, &mut s, &mut tmp);
            std::mem::swap(&mut x, &mut tmp);
        }
        if !less_than(&x, &self.n) {
            sub_in_place(&mut x, &self.n);
        }
        x
    }

    fn scratch(&self) -> Scratch {
        let k = self.n.len();
        let q = self.packs.len();
        Scratch {
            t: vec![zero(); k / 2 + 2 * q + 2],
            packs: vec![[zero(); 2]; q],
            mults: vec![zero(); 4],
            doubled: vec![0; k + 16],
            sq: std::array::from_fn(|_| vec![zero(); k / 4 + 4]),
        }
    }

    /// `out = a·b·R⁻¹ mod n`, up to one extra `n`: for `a, b < 2n` in
    /// 28-bit limbs, `out < 2n`, in 28-bit limbs. Rows i and i + 1 (i even)
    /// per pass over the words: `a[i]·b` and `m[i]·n` at word i,
    /// `a[i+1]·b` and `m[i+1]·n` at word i + 1, with the m chosen so that
    /// words i and i + 1 become multiples of 2^28 (their carry goes to word
    /// i + 2; every other word just accumulates).
    #[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
    fn mul(&self, a: &[u32], b: &[u32], s: &mut Scratch, out: &mut [u32]) {
        let k = self.n.len();
        let inv = self.inv;
        for (p, [lo, hi]) in s.packs.iter_mut().zip(pack_pairs(b)) {
            *p = [mk(lo), mk(hi)];
        }
        s.t.fill(zero());
        let (Some(&[b0, b1]), Some(&[n0, n1])) = (b.first_chunk::<2>(), self.n.first_chunk::<2>())
        else {
            return;
        };
        let [b0, b1, n0, n1] = [b0, b1, n0, n1].map(u64::from);
        let span = 2 * self.packs.len();
        let mut carry = 0u64;
        for (h, pair) in a.chunks_exact(2).enumerate() {
            if h > 0 && h % NORMALISE_EVERY == 0 {
                normalise(tail_mut(&mut s.t, h), carry);
                carry = 0;
            }
            let (&[x0, x1], Some(win)) = (pair, s.t.get_mut(h..h + span)) else {
                return;
            };
            let Some(&first) = win.first() else {
                return;
            };
            let (x0, x1) = (u64::from(x0), u64::from(x1));
            let v = u64x2_extract_lane::<0>(first) + carry + x0 * b0;
            let m0 = u64::from((v as u32).wrapping_mul(inv) & MASK);
            let c = (v + m0 * n0) >> W;
            let v = u64x2_extract_lane::<1>(first) + x0 * b1 + m0 * n1 + c + x1 * b0;
            let m1 = u64::from((v as u32).wrapping_mul(inv) & MASK);
            carry = (v + m1 * n0) >> W;
            if let Some(slots) = s.mults.first_chunk_mut::<4>() {
                *slots = [x0, x1, m0, m1].map(|x| u32x4_splat(x as u32));
            }
            let mults = s.mults.as_slice();
            for ((t, [bp, bs]), [np, ns]) in win
                .chunks_exact_mut(2)
                .zip(s.packs.iter())
                .zip(self.packs.iter())
            {
                if let ([lo, hi], Some(&[x0, x1, y0, y1])) = (t, mults.first_chunk::<4>()) {
                    let l = u64x2_add(
                        u64x2_add(
                            u64x2_extmul_low_u32x4(x0, *bp),
                            u64x2_extmul_low_u32x4(x1, *bs),
                        ),
                        u64x2_add(
                            u64x2_extmul_low_u32x4(y0, *np),
                            u64x2_extmul_low_u32x4(y1, *ns),
                        ),
                    );
                    *lo = u64x2_add(*lo, l);
                    let h = u64x2_add(
                        u64x2_add(
                            u64x2_extmul_high_u32x4(x0, *bp),
                            u64x2_extmul_high_u32x4(x1, *bs),
                        ),
                        u64x2_add(
                            u64x2_extmul_high_u32x4(y0, *np),
                            u64x2_extmul_high_u32x4(y1, *ns),
                        ),
                    );
                    *hi = u64x2_add(*hi, h);
                }
            }
        }
        top(&s.t, k, carry, out);
    }

    /// `out = a²·R⁻¹ mod n`, up to one extra `n`, as [`Self::mul`]: the
    /// square first (each cross product once, by `2a`, four rows per pass
    /// over the words), then [`Self::reduce`].
    #[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
    fn sqr(&self, a: &[u32], s: &mut Scratch, out: &mut [u32]) {
        let k = self.n.len();
        if k > MAX_SQR {
            return self.mul(a, a, s, out);
        }
        // 2a after four zero limbs; the limbs above stay zero (only these
        // k are ever written, and `a` always has k).
        for (d, &x) in tail_mut(&mut s.doubled, 4).iter_mut().zip(a) {
            *d = x << 1;
        }
        for (o, packs) in s.sq.iter_mut().enumerate() {
            for (p, w) in packs.iter_mut().zip(tail(&s.doubled, o).chunks_exact(4)) {
                if let &[w0, w1, w2, w3] = w {
                    *p = mk([w0, w1, w2, w3]);
                }
            }
        }
        s.t.fill(zero());
        // a as k4 limbs (zeros above k); dj = 2a[r + j].
        let k4 = k.next_multiple_of(4);
        let d = tail(&s.doubled, 4);
        // Rows r ..= r + 3 (r = 4g) per pass. Row r + i adds a[r+i]² at word
        // 2(r + i) and a[r+i]·2a[j] at word r + i + j for j > r + i. Words
        // 2r .. 2r + 8 (the triangle) are summed from the limbs; from word
        // 2r + 8 on, every row has j > r + i, and the words go in groups
        // of four (c: words 4c ..= 4c + 3, q = c - g): row r + i needs limbs
        // 4c - r - i ..= 4c - r - i + 3 of 2a, pack q + 1 at alignment 0 for
        // i = 0, pack q at alignment 4 - i for the others.
        for g in 0..k4 / 4 {
            let r = 4 * g;
            let [x0, x1, x2, x3] = [r, r + 1, r + 2, r + 3].map(|j| a.get(j).copied().unwrap_or(0));
            let groups = k4 / 4 - g - 1;
            let (Some(p0), Some(p3), Some(p2), Some(p1), Some(win)) = (
                s.sq[0].get(g + 3..g + 3 + groups),
                s.sq[3].get(g + 2..g + 2 + groups),
                s.sq[2].get(g + 2..g + 2 + groups),
                s.sq[1].get(g + 2..g + 2 + groups),
                s.t.get_mut(r..r + 2 * groups + 4),
            ) else {
                return;
            };
            if let Some(slots) = s.mults.first_chunk_mut::<4>() {
                *slots = [
                    u32x4_splat(x0),
                    u32x4_splat(x1),
                    u32x4_splat(x2),
                    u32x4_splat(x3),
                ];
            }
            let mults = s.mults.as_slice();
            let Some((tri, rest)) = win.split_first_chunk_mut::<4>() else {
                return;
            };
            // Scalar: as vectors of known lanes, LLVM would turn these
            // extmuls into `i64x2.mul`.
            let Some(&[_, d1, d2, d3, d4, d5, d6, d7]) =
                d.get(r..r + 8).and_then(|d| d.first_chunk::<8>())
            else {
                return;
            };
            let [x0, x1, x2, x3] = [x0, x1, x2, x3].map(u64::from);
            let [d1, d2, d3, d4, d5, d6, d7] = [d1, d2, d3, d4, d5, d6, d7].map(u64::from);
            let words = [
                u64x2(x0 * x0, x0 * d1),
                u64x2(x0 * d2 + x1 * x1, x0 * d3 + x1 * d2),
                u64x2(x0 * d4 + x1 * d3 + x2 * x2, x0 * d5 + x1 * d4 + x2 * d3),
                u64x2(
                    x0 * d6 + x1 * d5 + x2 * d4 + x3 * x3,
                    x0 * d7 + x1 * d6 + x2 * d5 + x3 * d4,
                ),
            ];
            for (t, w) in tri.iter_mut().zip(words) {
                *t = u64x2_add(*t, w);
            }
            for ((((t, &b0), &b1), &b2), &b3) in
                rest.chunks_exact_mut(2).zip(p0).zip(p3).zip(p2).zip(p1)
            {
                if let ([lo, hi], Some(&[y0, y1, y2, y3])) = (t, mults.first_chunk::<4>()) {
                    *lo = u64x2_add(
                        *lo,
                        u64x2_add(
                            u64x2_add(
                                u64x2_extmul_low_u32x4(y0, b0),
                                u64x2_extmul_low_u32x4(y1, b1),
                            ),
                            u64x2_add(
                                u64x2_extmul_low_u32x4(y2, b2),
                                u64x2_extmul_low_u32x4(y3, b3),
                            ),
                        ),
                    );
                    *hi = u64x2_add(
                        *hi,
                        u64x2_add(
                            u64x2_add(
                                u64x2_extmul_high_u32x4(y0, b0),
                                u64x2_extmul_high_u32x4(y1, b1),
                            ),
                            u64x2_add(
                                u64x2_extmul_high_u32x4(y2, b2),
                                u64x2_extmul_high_u32x4(y3, b3),
                            ),
                        ),
                    );
                }
            }
        }
        if k > MAX_UNNORMALISED_SQR {
            normalise(&mut s.t, 0);
        }
        self.reduce(s, out);
    }

    /// Montgomery reduction of the lazy product in `s.t` (2k words) into
    /// `out`, as in [`Self::mul`] without the `a·b` rows.
    #[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
    fn reduce(&self, s: &mut Scratch, out: &mut [u32]) {
        let k = self.n.len();
        let inv = self.inv;
        let Some(&[n0, n1]) = self.n.first_chunk::<2>() else {
            return;
        };
        let [n0, n1] = [n0, n1].map(u64::from);
        let span = 2 * self.packs.len();
        let mut carry = 0u64;
        for h in 0..k / 2 {
            let Some(win) = s.t.get_mut(h..h + span) else {
                return;
            };
            let Some(&first) = win.first() else {
                return;
            };
            let v = u64x2_extract_lane::<0>(first) + carry;
            let m0 = u64::from((v as u32).wrapping_mul(inv) & MASK);
            let c = (v + m0 * n0) >> W;
            let v = u64x2_extract_lane::<1>(first) + m0 * n1 + c;
            let m1 = u64::from((v as u32).wrapping_mul(inv) & MASK);
            carry = (v + m1 * n0) >> W;
            if let Some(slots) = s.mults.first_chunk_mut::<2>() {
                *slots = [u32x4_splat(m0 as u32), u32x4_splat(m1 as u32)];
            }
            let mults = s.mults.as_slice();
            for (t, [np, ns]) in win.chunks_exact_mut(2).zip(self.packs.iter()) {
                if let ([lo, hi], Some(&[y0, y1])) = (t, mults.first_chunk::<2>()) {
                    *lo = u64x2_add(
                        *lo,
                        u64x2_add(
                            u64x2_extmul_low_u32x4(y0, *np),
                            u64x2_extmul_low_u32x4(y1, *ns),
                        ),
                    );
                    *hi = u64x2_add(
                        *hi,
                        u64x2_add(
                            u64x2_extmul_high_u32x4(y0, *np),
                            u64x2_extmul_high_u32x4(y1, *ns),
                        ),
                    );
                }
            }
        }
        top(&s.t, k, carry, out);
    }
}

/// Per group of four limbs q, for `(len + 1) / 4` rounded up groups:
/// `x[4q..4q+4]` and `x[4q-1..4q+3]`, zero outside the limbs.
fn pack_pairs(x: &[u32]) -> impl Iterator<Item = [[u32; 4]; 2]> + '_ {
    let groups = (x.len() + 1).div_ceil(4);
    let limb = move |j: usize| {
        j.checked_sub(1)
            .and_then(|j| x.get(j))
            .copied()
            .unwrap_or(0)
    };
    (0..groups).map(move |q| {
        // limb(j) is x[j - 1].
        let at = |j: usize| [limb(j), limb(j + 1), limb(j + 2), limb(j + 3)];
        [at(4 * q + 1), at(4 * q)]
    })
}

/// [`pack_pairs`] as vectors.
fn pack(x: &[u32]) -> Vec<[v128; 2]> {
    pack_pairs(x).map(|[lo, hi]| [mk(lo), mk(hi)]).collect()
}

/// Carries every word of `t` into the next, leaving 28-bit words, with
/// `carry` added to the first (the total must fit in `t`).
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
fn normalise(t: &mut [v128], mut carry: u64) {
    for v in t.iter_mut() {
        let w0 = u64x2_extract_lane::<0>(*v) + carry;
        let w1 = u64x2_extract_lane::<1>(*v) + (w0 >> W);
        carry = w1 >> W;
        *v = u64x2(w0 & u64::from(MASK), w1 & u64::from(MASK));
    }
}

/// Words k .. 2k of `t`, plus `carry` into word k, as 28-bit limbs in `out`.
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
fn top(t: &[v128], k: usize, mut carry: u64, out: &mut [u32]) {
    // Two words per vector (k is even); plain pairs rather than a
    // `flat_map`, which LLVM left as a slow iterator.
    for (o, v) in out.chunks_exact_mut(2).zip(tail(t, k / 2)) {
        if let [o0, o1] = o {
            let w0 = u64x2_extract_lane::<0>(*v) + carry;
            let w1 = u64x2_extract_lane::<1>(*v) + (w0 >> W);
            *o0 = w0 as u32 & MASK;
            *o1 = w1 as u32 & MASK;
            carry = w1 >> W;
        }
    }
}

#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
fn mk([a, b, c, d]: [u32; 4]) -> v128 {
    u32x4(a, b, c, d)
}

#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
fn zero() -> v128 {
    u64x2_splat(0)
}

/// EMSA-PKCS1-v1_5 (RFC 8017 section 9.2): the whole encoded message must be
/// `00 01 FF…FF 00 || DigestInfo || H`, with at least 8 bytes of `FF`.
fn pkcs1v15_matches(em: &[u8], hash: Hash, m_hash: &[u8]) -> bool {
    let prefix = hash.digest_info_prefix();
    let t_len = prefix.len() + m_hash.len();
    let Some(ps_len) = em.len().checked_sub(t_len + 3) else {
        return false;
    };
    if ps_len < 8 {
        return false;
    }
    let mut expected = em.iter();
    let head_ok = expected.by_ref().take(2).eq([0x00, 0x01].iter());
    let ps_ok = expected.by_ref().take(ps_len).all(|b| *b == 0xff);
    let sep_ok = expected.next() == Some(&0x00);
    let t_ok = expected.eq(prefix.iter().chain(m_hash));
    head_ok && ps_ok && sep_ok && t_ok
}

/// EMSA-PSS-VERIFY (RFC 8017 section 9.1.2) with MGF1 of `hash` and a salt
/// as long as the hash. `em` is the modulus-length output of the public
/// operation; `em_bits` is the modulus bit length minus one.
fn pss_matches(em: &[u8], em_bits: usize, hash: Hash, m_hash: &[u8]) -> bool {
    let em_len = em_bits.div_ceil(8);
    // The encoded message is the low em_len bytes; any byte above it (when
    // the modulus bit length is 1 mod 8) must be zero.
    let Some(extra) = em.len().checked_sub(em_len) else {
        return false;
    };
    let (high, em) = em.split_at(extra.min(em.len()));
    if high.iter().any(|b| *b != 0) {
        return false;
    }
    let h_len = m_hash.len();
    let s_len = h_len;
    if em_len < h_len + s_len + 2 || em.last() != Some(&0xbc) {
        return false;
    }
    let db_len = em_len - h_len - 1;
    let (Some(masked_db), Some(h)) = (em.get(..db_len), em.get(db_len..em_len - 1)) else {
        return false;
    };
    // The leftmost 8·em_len − em_bits bits must be zero.
    let zero_bits = 8 * em_len - em_bits;
    let top_mask = 0xffu8 >> zero_bits;
    if masked_db.first().is_none_or(|b| b & !top_mask != 0) {
        return false;
    }
    let mut db = masked_db.to_vec();
    mgf1_xor(hash, h, &mut db);
    if let Some(b) = db.first_mut() {
        *b &= top_mask;
    }
    let ps_len = db_len - s_len - 1;
    let mut it = db.iter();
    if !it.by_ref().take(ps_len).all(|b| *b == 0) || it.next() != Some(&0x01) {
        return false;
    }
    let salt = it.as_slice();
    let mut ctx = digest::Context::new(hash.algorithm());
    ctx.update(&[0u8; 8]);
    ctx.update(m_hash);
    ctx.update(salt);
    ctx.finish().as_ref() == h
}

/// `out ^= MGF1(seed)` over `out.len()` bytes.
fn mgf1_xor(hash: Hash, seed: &[u8], out: &mut [u8]) {
    let h_len = hash.algorithm().output_len();
    for (counter, chunk) in (0u32..).zip(out.chunks_mut(h_len)) {
        let mut ctx = digest::Context::new(hash.algorithm());
        ctx.update(seed);
        ctx.update(&counter.to_be_bytes());
        for (o, m) in chunk.iter_mut().zip(ctx.finish().as_ref()) {
            *o ^= m;
        }
    }
}

/// `s[from..]`, empty if `from` is past the end.
fn tail<T>(s: &[T], from: usize) -> &[T] {
    s.get(from..).unwrap_or_default()
}

/// `s[from..]`, empty if `from` is past the end.
fn tail_mut<T>(s: &mut [T], from: usize) -> &mut [T] {
    s.get_mut(from..).unwrap_or_default()
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

fn bit_len(be: &[u8]) -> usize {
    match be.first() {
        None => 0,
        Some(top) => (be.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

/// Big-endian bytes to `limbs` 28-bit limbs, least significant first (bits
/// beyond `28·limbs` are dropped; callers pass values that fit).
fn from_be_bytes(be: &[u8], limbs: usize) -> Vec<u32> {
    let mut out = vec![0u32; limbs];
    from_be_bytes_into(be, &mut out);
    out
}

/// [`from_be_bytes`] into `out` (all of it is written).
fn from_be_bytes_into(be: &[u8], out: &mut [u32]) {
    let mut slots = out.iter_mut();
    let mut acc = 0u64;
    let mut have = 0;
    for &byte in be.iter().rev() {
        acc |= u64::from(byte) << have;
        have += 8;
        if have >= W {
            if let Some(o) = slots.next() {
                *o = acc as u32 & MASK;
            }
            acc >>= W;
            have -= W;
        }
    }
    if let Some(o) = slots.next() {
        *o = acc as u32;
    }
    slots.for_each(|o| *o = 0);
}

/// 28-bit limbs to `len` big-endian bytes (the value must fit).
#[cfg(test)]
fn to_be_bytes(limbs: &[u32], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    to_be_bytes_into(limbs, &mut out);
    out
}

/// 28-bit limbs to big-endian bytes filling `out` (the value must fit).
fn to_be_bytes_into(limbs: &[u32], out: &mut [u8]) {
    let mut limbs = limbs.iter();
    let mut acc = 0u64;
    let mut have = 0;
    for o in out.iter_mut().rev() {
        if have < 8 {
            acc |= u64::from(limbs.next().copied().unwrap_or(0)) << have;
            have += W;
        }
        *o = acc as u8;
        acc >>= 8;
        have -= 8;
    }
}

/// `a < b` for equal-length limb vectors.
fn less_than(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// `a -= b` modulo 2^(28·len), 28-bit limbs.
fn sub_in_place(a: &mut [u32], b: &[u32]) {
    let mut borrow = 0u32;
    for (x, &y) in a.iter_mut().zip(b) {
        let d = x.wrapping_sub(y).wrapping_sub(borrow);
        borrow = d >> 31;
        *x = d & MASK;
    }
}

/// `a <<= 1` on 28-bit limbs, returning the bit shifted out.
fn shl1(a: &mut [u32]) -> bool {
    let mut carry = 0u32;
    for x in a.iter_mut() {
        let v = (*x << 1) | carry;
        carry = v >> W;
        *x = v & MASK;
    }
    carry == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The public operation's output, through the spare work space as in
    /// [`RsaPublicKey::verify`].
    fn op(key: &RsaPublicKey, sig: &[u8]) -> Option<Vec<u8>> {
        with_work(&key.m, |work| {
            key.public_op(sig, work).then(|| work.em.clone())
        })
    }

    #[test]
    fn limb_conversions_round_trip() {
        assert_eq!(
            from_be_bytes(&[0x12, 0x34, 0x56, 0x78, 0x9a], 3),
            vec![0x456789a, 0x123, 0]
        );
        let be: Vec<u8> = (1..=13).collect();
        let limbs = from_be_bytes(&be, 4);
        assert!(limbs.iter().all(|l| *l <= MASK));
        assert_eq!(to_be_bytes(&limbs, 13), be);
        let be = vec![0xffu8; 256];
        assert_eq!(to_be_bytes(&from_be_bytes(&be, 74), 256), be);
    }

    /// `a += b` modulo 2^(28·len), 28-bit limbs.
    fn add_in_place(a: &mut [u32], b: &[u32]) -> bool {
        let mut carry = 0u32;
        for (x, &y) in a.iter_mut().zip(b) {
            let v = *x + y + carry;
            carry = v >> W;
            *x = v & MASK;
        }
        carry == 1
    }

    /// `x·y mod n` the slow, obvious way: double and add over y's bits.
    fn mod_mul(x: &[u32], y: &[u32], n: &[u32]) -> Vec<u32> {
        let mut acc = vec![0u32; n.len()];
        for limb in y.iter().rev() {
            for bit in (0..W).rev() {
                if shl1(&mut acc) || !less_than(&acc, n) {
                    sub_in_place(&mut acc, n);
                }
                if (limb >> bit) & 1 == 1 && (add_in_place(&mut acc, x) || !less_than(&acc, n)) {
                    sub_in_place(&mut acc, n);
                }
            }
        }
        acc
    }

    /// `s^e mod n` with [`mod_mul`], as big-endian bytes.
    fn mod_exp(key: &RsaPublicKey, sig: &[u8]) -> Vec<u8> {
        let n = &key.m.n;
        let s = from_be_bytes(sig, n.len());
        let mut acc = s.clone();
        for bit in (0..63 - key.e.leading_zeros()).rev() {
            acc = mod_mul(&acc, &acc, n);
            if (key.e >> bit) & 1 == 1 {
                acc = mod_mul(&acc, &s, n);
            }
        }
        to_be_bytes(&acc, key.len)
    }

    /// A deterministic pseudo-random byte stream (xorshift).
    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// A `bits`-bit odd modulus: all ones, or pseudo-random.
    fn modulus(bits: usize, seed: u64) -> Vec<u8> {
        let len = bits.div_ceil(8);
        let mut n = if seed == 0 {
            vec![0xffu8; len]
        } else {
            bytes(seed, len)
        };
        n[0] = (n[0] | 0x80) >> ((8 - bits % 8) % 8);
        n[len - 1] |= 1;
        n
    }

    #[test]
    fn r_squared_matches_plain_doubling() {
        // Moduli of many sizes and shapes (odd, top bit anywhere in the top
        // limb, limb counts that are and are not multiples of 4, past the
        // squaring's limits of 126 and 254 limbs, up to 8192 bits).
        for (i, bits) in [
            2048usize, 2049, 2050, 2079, 2080, 2081, 3071, 3526, 3527, 4096, 4097, 7110, 7111, 8192,
        ]
        .into_iter()
        .enumerate()
        {
            let n = modulus(bits, i as u64 + 1);
            let key = RsaPublicKey::new(&n, &[1, 0, 1]).unwrap();
            assert_eq!(key.bits(), bits);
            let k = key.m.n.len();
            assert_eq!(k, limbs_for(bits));
            assert_eq!(to_be_bytes(&key.m.n, n.len()), n);
            // R² mod n = (2^(28k) mod n)², with 2^(28k) mod n by doubling.
            let mut r = vec![0u32; k];
            r[0] = 1;
            for _ in 0..W as usize * k {
                if shl1(&mut r) || !less_than(&r, &key.m.n) {
                    sub_in_place(&mut r, &key.m.n);
                }
            }
            assert_eq!(key.m.rr, mod_mul(&r, &r, &key.m.n), "{bits} bits");
        }
    }

    #[test]
    fn keys_outside_the_rules_are_refused() {
        let mut n = vec![0xffu8; 256];
        assert!(RsaPublicKey::new(&n, &[1, 0, 1]).is_some());
        assert!(RsaPublicKey::new(&n, &[1]).is_none());
        assert!(RsaPublicKey::new(&n, &[2]).is_none());
        assert!(RsaPublicKey::new(&n, &[2, 0, 0, 0, 1]).is_none());
        assert!(RsaPublicKey::new(&n, &[1, 0xff, 0xff, 0xff, 0xff]).is_some());
        assert!(RsaPublicKey::new(&n[1..], &[1, 0, 1]).is_none());
        assert!(RsaPublicKey::new(&vec![0xffu8; 1025], &[1, 0, 1]).is_none());
        n[255] = 0xfe;
        assert!(RsaPublicKey::new(&n, &[1, 0, 1]).is_none());
    }

    #[test]
    fn montgomery_constants_are_right() {
        // n = 2^2048 - 1 (odd, not prime: fine for arithmetic checks).
        let key = RsaPublicKey::new(&[0xffu8; 256], &[3]).unwrap();
        // 74 limbs, R = 2^2072 ≡ 2^24 (mod n), so R² mod n = 2^48.
        assert_eq!(key.m.n.len(), 74);
        let mut rr = vec![0u32; 74];
        rr[1] = 1 << 20;
        assert_eq!(key.m.rr, rr);
        assert_eq!(key.m.inv.wrapping_mul(key.m.n[0]) & MASK, MASK);
        // 2^3 = 8 with e = 3.
        let mut sig = vec![0u8; 256];
        sig[255] = 2;
        let out = op(&key, &sig).unwrap();
        assert_eq!(out[255], 8);
        assert!(out[..255].iter().all(|b| *b == 0));
        // (n - 1)^3 = -1 mod n = n - 1.
        let mut sig = vec![0xffu8; 256];
        sig[255] = 0xfe;
        assert_eq!(op(&key, &sig).unwrap(), sig);
        // n itself and longer or shorter inputs are refused.
        assert!(op(&key, &[0xffu8; 256]).is_none());
        assert!(op(&key, &[0u8; 255]).is_none());
        assert!(op(&key, &[0u8; 257]).is_none());
    }

    /// The public operation against [`mod_exp`], for moduli of many sizes
    /// (including all-ones ones, whose limbs and products are at their
    /// largest), exponents, and signatures from 0 to n - 1.
    #[test]
    fn public_op_matches_plain_arithmetic() {
        for (i, bits) in [
            2048usize, 2049, 2055, 2072, 2080, 3072, 3526, 3527, 4095, 4096, 7110, 7111, 8192,
        ]
        .into_iter()
        .enumerate()
        {
            for seed in [0, i as u64 * 7 + 1] {
                let n = modulus(bits, seed);
                let len = n.len();
                let exps: &[&[u8]] = if bits > 4096 {
                    &[&[3], &[1, 0, 1]]
                } else {
                    &[
                        &[1, 0, 1],
                        &[3],
                        &[1, 0xff, 0xff, 0xff, 0xff],
                        &[0x35, 0x07],
                    ]
                };
                for e in exps {
                    let key = RsaPublicKey::new(&n, e).unwrap();
                    for j in 0..5u64 {
                        let mut sig = match j {
                            0 | 1 => n.clone(),
                            2 => vec![0u8; len],
                            _ => bytes(j * 1000 + i as u64, len),
                        };
                        match j {
                            // n - 1 and n - 2 (n is odd).
                            0 => sig[len - 1] -= 1,
                            1 => sig[len - 1] -= 2,
                            _ => sig[0] &= n[0] >> 1,
                        }
                        assert_eq!(
                            op(&key, &sig),
                            Some(mod_exp(&key, &sig)),
                            "{bits} bits, seed {seed}, e {e:?}, sig {j}"
                        );
                    }
                    assert!(op(&key, &n).is_none());
                }
            }
        }
    }
}
