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
//! Arithmetic: 32-bit limbs with `u64` accumulators (wasm has a native 64-bit
//! multiply; `u128` would lower to a slow library call). Each Montgomery
//! operation is a full product (schoolbook; for squaring each cross product
//! once, doubled, plus the diagonal) followed by Montgomery reduction (REDC).
//! The product and reduction loops handle four rows per pass over the limbs,
//! which in V8 saves most of the loads and stores of the intermediate words.
//! `bench/crypto` measures each step (a 2048-bit RS256 verification went
//! from ~200 µs with ring to ~47 µs).
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
    /// Modulus limbs, least significant first; the top limb is non-zero.
    n: Vec<u32>,
    /// `-n⁻¹ mod 2³²`.
    n0_inv: u32,
    /// `R² mod n` with `R = 2^(32·limbs)`.
    rr: Vec<u32>,
    /// Public exponent.
    e: u64,
    /// Modulus length in bits and in bytes.
    bits: usize,
    len: usize,
    /// The modulus in 28-bit limbs, for [`lazy`].
    m28: lazy::Modulus,
}

impl std::fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaPublicKey({} bits, e={})", self.bits, self.e)
    }
}

impl RsaPublicKey {
    /// Checks and precomputes a key from big-endian `n` and `e` (leading zero
    /// bytes allowed). `None` unless the modulus is odd and
    /// [`MIN_BITS`]..=[`MAX_BITS`] bits, and `e` is odd, at least 3 and below
    /// 2³³ (ring's rule, so both verifiers accept the same keys).
    pub fn new(n: &[u8], e: &[u8]) -> Option<RsaPublicKey> {
        let n = strip_zeros(n);
        let e = strip_zeros(e);
        let bits = bit_len(n);
        if !(MIN_BITS..=MAX_BITS).contains(&bits) || e.len() > 8 {
            return None;
        }
        let e = e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        if !(3..1 << 33).contains(&e) || e & 1 == 0 {
            return None;
        }
        let limbs = from_be_bytes(n, n.len().div_ceil(4));
        let n_lo = *limbs.first()?;
        if n_lo & 1 == 0 {
            return None;
        }
        // Newton's iteration for the inverse mod 2³²: n·n ≡ 1 (mod 8), and
        // each step doubles the number of correct low bits (3, 6, 12, 24, 48).
        let mut inv = n_lo;
        for _ in 0..4 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(n_lo.wrapping_mul(inv)));
        }
        let k = limbs.len();
        let m28 = lazy::Modulus::new(lazy::from_be_bytes(n, lazy::limbs_for(bits)), inv);
        let mut key = RsaPublicKey {
            n: limbs,
            n0_inv: inv.wrapping_neg(),
            rr: vec![0u32; k],
            e,
            bits,
            len: n.len(),
            m28,
        };
        key.rr = key.r_squared();
        key.m28.rr = key.r_squared_lazy();
        Some(key)
    }

    /// `R² mod n`, the Montgomery form of `R = 2^(32k)`: write `32k = j·2^t`
    /// with `j` odd; double `2^(bits-1)` (below n) modulo n up to
    /// `2^(32k + j)`, the Montgomery form of `2^j`, then square that `t` times
    /// in Montgomery form. About k + 33 doublings and at most 13 squarings,
    /// instead of 64k doublings.
    fn r_squared(&self) -> Vec<u32> {
        let k = self.n.len();
        let r_bits = 32 * k;
        let t = r_bits.trailing_zeros();
        let j = r_bits >> t;
        let mut x = vec![0u32; k];
        if let Some(limb) = x.get_mut((self.bits - 1) / 32) {
            *limb = 1 << ((self.bits - 1) % 32);
        }
        for _ in (self.bits - 1)..(r_bits + j) {
            let carry = shl1(&mut x);
            if carry || !less_than(&x, &self.n) {
                sub_in_place(&mut x, &self.n);
            }
        }
        let mut wide = vec![0u32; 2 * k];
        let mut tmp = vec![0u32; k];
        for _ in 0..t {
            self.mont_sqr(&x, &mut wide, &mut tmp);
            std::mem::swap(&mut x, &mut tmp);
        }
        x
    }

    /// `R² mod n` for [`lazy`] (`R = 2^(28k)`), as [`Self::r_squared`]:
    /// doublings up to `2^(28k + j)` (32-bit limbs), then `t` squarings.
    fn r_squared_lazy(&self) -> Vec<u32> {
        let m = &self.m28;
        let r_bits = lazy::W as usize * m.n.len();
        let t = r_bits.trailing_zeros();
        let j = r_bits >> t;
        let mut x = vec![0u32; self.n.len()];
        if let Some(limb) = x.get_mut((self.bits - 1) / 32) {
            *limb = 1 << ((self.bits - 1) % 32);
        }
        for _ in (self.bits - 1)..(r_bits + j) {
            let carry = shl1(&mut x);
            if carry || !less_than(&x, &self.n) {
                sub_in_place(&mut x, &self.n);
            }
        }
        let mut x = lazy::from_be_bytes(&to_be_bytes(&x, self.len), m.n.len());
        let mut tmp = vec![0u32; m.n.len()];
        let mut s = m.scratch();
        for _ in 0..t {
            m.sqr(&x, &mut s, &mut tmp);
            std::mem::swap(&mut x, &mut tmp);
        }
        if !lazy::less_than(&x, &m.n) {
            lazy::sub_in_place(&mut x, &m.n);
        }
        x
    }

    /// `sig^e mod n` as [`Self::public_op`], with [`lazy`] arithmetic.
    fn public_op_lazy(&self, sig: &[u8]) -> Option<Vec<u8>> {
        if sig.len() != self.len {
            return None;
        }
        let m = &self.m28;
        let k = m.n.len();
        let s = lazy::from_be_bytes(sig, k);
        if !lazy::less_than(&s, &m.n) {
            return None;
        }
        let mut scratch = m.scratch();
        let mut base = vec![0u32; k];
        let mut acc = vec![0u32; k];
        let mut tmp = vec![0u32; k];
        m.mul(&s, &m.rr, &mut scratch, &mut base);
        acc.copy_from_slice(&base);
        let top = 63 - self.e.leading_zeros();
        for bit in (0..top).rev() {
            m.sqr(&acc, &mut scratch, &mut tmp);
            std::mem::swap(&mut acc, &mut tmp);
            if bit == 0 {
                m.mul(&acc, &s, &mut scratch, &mut tmp);
            } else if (self.e >> bit) & 1 == 1 {
                m.mul(&acc, &base, &mut scratch, &mut tmp);
                std::mem::swap(&mut acc, &mut tmp);
            }
        }
        // Below 2n: one subtraction at most.
        if !lazy::less_than(&tmp, &m.n) {
            lazy::sub_in_place(&mut tmp, &m.n);
        }
        Some(lazy::to_be_bytes(&tmp, self.len))
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
        let em = if USE_LAZY {
            self.public_op_lazy(sig)
        } else {
            self.public_op(sig)
        };
        let Some(em) = em else {
            return false;
        };
        let m_hash = digest::digest(hash.algorithm(), message);
        match padding {
            Padding::Pkcs1v15 => pkcs1v15_matches(&em, hash, m_hash.as_ref()),
            Padding::Pss => pss_matches(&em, self.bits - 1, hash, m_hash.as_ref()),
        }
    }

    /// `sig^e mod n` as big-endian bytes of the modulus length, or `None` if
    /// `sig` has the wrong length or is not below `n`.
    fn public_op(&self, sig: &[u8]) -> Option<Vec<u8>> {
        if sig.len() != self.len {
            return None;
        }
        let k = self.n.len();
        let s = from_be_bytes(sig, k);
        if !less_than(&s, &self.n) {
            return None;
        }
        let mut base = vec![0u32; k];
        let mut acc = vec![0u32; k];
        let mut tmp = vec![0u32; k];
        let mut wide = vec![0u32; 2 * k];
        // Into Montgomery form: s·R = MontMul(s, R²).
        self.mont_mul(&s, &self.rr, &mut wide, &mut base);
        acc.copy_from_slice(&base);
        // Left to right over e's bits below the top one. e is odd and at
        // least 3 (checked in `new`), so the loop runs and its last step is a
        // multiplication into `tmp`: by s itself rather than s·R, which
        // leaves Montgomery form for free (s^(e-1)·R · s / R = s^e).
        let top = 63 - self.e.leading_zeros();
        for bit in (0..top).rev() {
            self.mont_sqr(&acc, &mut wide, &mut tmp);
            std::mem::swap(&mut acc, &mut tmp);
            if bit == 0 {
                self.mont_mul(&acc, &s, &mut wide, &mut tmp);
            } else if (self.e >> bit) & 1 == 1 {
                self.mont_mul(&acc, &base, &mut wide, &mut tmp);
                std::mem::swap(&mut acc, &mut tmp);
            }
        }
        Some(to_be_bytes(&tmp, self.len))
    }

    /// `out = a·b·R⁻¹ mod n` for `a, b < n`: the full product in `wide`
    /// (2·limbs words), then REDC.
    fn mont_mul(&self, a: &[u32], b: &[u32], wide: &mut [u32], out: &mut [u32]) {
        mul_wide(a, b, wide);
        self.redc(wide, out);
    }

    /// `out = a²·R⁻¹ mod n` for `a < n`: the full square in `wide` (each
    /// cross product once, then doubled, plus the diagonal), then REDC.
    fn mont_sqr(&self, a: &[u32], wide: &mut [u32], out: &mut [u32]) {
        let k = a.len();
        wide.fill(0);
        // Cross products a[i]·a[j], i < j, at word i + j. Four rows (i ..
        // i + 3) per pass while each has a few terms, then row by row. Row r
        // starts at word 2(i + r) + 1; each row's final carry lands on a word
        // no earlier row reached (so it is stored, not added).
        let mut i = 0;
        while i + 7 <= k {
            let (Some(lead), Some(&[t0, t1, t2])) = (
                a.get(i..).and_then(<[u32]>::first_chunk::<7>),
                a.last_chunk::<3>(),
            ) else {
                break;
            };
            let [x0, x1, x2, x3, x4, x5, x6] = lead.map(u64::from);
            let [a_k3, a_k2, a_k1] = [t0, t1, t2].map(u64::from);
            // Words 2i+1 ..= i+k+3.
            let Some(win) = wide.get_mut(2 * i + 1..i + k + 4) else {
                break;
            };
            let Some((head, rest)) = win.split_first_chunk_mut::<6>() else {
                break;
            };
            let Some((mid, top)) = rest.split_last_chunk_mut::<4>() else {
                break;
            };
            let (mut c0, mut c1, mut c2, mut c3) = (0u64, 0u64, 0u64, 0u64);
            let [h0, h1, h2, h3, h4, h5] = head;
            *h0 = mac(u64::from(*h0), x0, x1, &mut c0) as u32;
            *h1 = mac(u64::from(*h1), x0, x2, &mut c0) as u32;
            let v = mac(u64::from(*h2), x0, x3, &mut c0);
            *h2 = mac(v, x1, x2, &mut c1) as u32;
            let v = mac(u64::from(*h3), x0, x4, &mut c0);
            *h3 = mac(v, x1, x3, &mut c1) as u32;
            let v = mac(u64::from(*h4), x0, x5, &mut c0);
            let v = mac(v, x1, x4, &mut c1);
            *h4 = mac(v, x2, x3, &mut c2) as u32;
            let v = mac(u64::from(*h5), x0, x6, &mut c0);
            let v = mac(v, x1, x5, &mut c1);
            *h5 = mac(v, x2, x4, &mut c2) as u32;
            // Words 2i+7 ..= i+k-1: all four rows.
            for ((((w, &b0), &b1), &b2), &b3) in mid
                .iter_mut()
                .zip(tail(a, i + 7))
                .zip(tail(a, i + 6))
                .zip(tail(a, i + 5))
                .zip(tail(a, i + 4))
            {
                let v = mac(u64::from(*w), x0, u64::from(b0), &mut c0);
                let v = mac(v, x1, u64::from(b1), &mut c1);
                let v = mac(v, x2, u64::from(b2), &mut c2);
                *w = mac(v, x3, u64::from(b3), &mut c3) as u32;
            }
            // Words i+k ..= i+k+3, not reached before: the rows' last terms
            // and carries.
            let [e0, e1, e2, e3] = top;
            let v = mac(c0, x1, a_k1, &mut c1);
            let v = mac(v, x2, a_k2, &mut c2);
            *e0 = mac(v, x3, a_k3, &mut c3) as u32;
            let v = mac(c1, x2, a_k1, &mut c2);
            *e1 = mac(v, x3, a_k2, &mut c3) as u32;
            *e2 = mac(c2, x3, a_k1, &mut c3) as u32;
            *e3 = c3 as u32;
            i += 4;
        }
        for (i, &ai) in a.iter().enumerate().skip(i) {
            let ai = u64::from(ai);
            let mut c = 0u64;
            for (w, &aj) in tail_mut(wide, 2 * i + 1).iter_mut().zip(tail(a, i + 1)) {
                let s = u64::from(*w) + ai * u64::from(aj) + c;
                *w = s as u32;
                c = s >> 32;
            }
            if let Some(w) = wide.get_mut(i + k) {
                *w = c as u32;
            }
        }
        // Double and add the squares a[i]² at 2i.
        let mut shifted_out = 0u32;
        let mut c = 0u64;
        for (pair, &ai) in wide.chunks_exact_mut(2).zip(a) {
            if let [lo, hi] = pair {
                let sq = u64::from(ai) * u64::from(ai);
                let dlo = (*lo << 1) | shifted_out;
                let dhi = (*hi << 1) | (*lo >> 31);
                shifted_out = *hi >> 31;
                let s = u64::from(dlo) + (sq & 0xffff_ffff) + c;
                *lo = s as u32;
                let s = u64::from(dhi) + (sq >> 32) + (s >> 32);
                *hi = s as u32;
                c = s >> 32;
            }
        }
        self.redc(wide, out);
    }

    /// Montgomery reduction: `out = T·R⁻¹ mod n` for `T < n·R` held in
    /// `wide` (2·limbs words, clobbered).
    fn redc(&self, wide: &mut [u32], out: &mut [u32]) {
        let k = self.n.len();
        let n = self.n.as_slice();
        let inv = self.n0_inv;
        // Pending carry into the word just above the current window.
        let mut carry = 0u64;
        // Four rows (reduction words m0..m3) per pass over the window: a
        // quarter of the loads and stores of the one-row form. Row r adds
        // m_r·n at word i + r; m_r is known once word i + r has rows < r.
        let blocks = k / 4;
        for i in (0..blocks).map(|b| 4 * b) {
            let Some(win) = wide.get_mut(i..i + k + 4) else {
                return;
            };
            let (Some(&head), Some(&tail3), Some(&low)) = (
                win.first_chunk::<4>(),
                n.last_chunk::<3>(),
                n.first_chunk::<4>(),
            ) else {
                return;
            };
            let [w0, w1, w2, w3] = head.map(u64::from);
            let [n0, n1, n2, n3] = low.map(u64::from);
            let [na, nb, nc] = tail3.map(u64::from);
            // Words i .. i + 3 (they end at zero and are not stored).
            let m0 = u64::from((w0 as u32).wrapping_mul(inv));
            let mut c0 = (w0 + m0 * n0) >> 32;
            let x = mac(w1, m0, n1, &mut c0);
            let m1 = u64::from((x as u32).wrapping_mul(inv));
            let mut c1 = (x + m1 * n0) >> 32;
            let x = mac(w2, m0, n2, &mut c0);
            let x = mac(x, m1, n1, &mut c1);
            let m2 = u64::from((x as u32).wrapping_mul(inv));
            let mut c2 = (x + m2 * n0) >> 32;
            let x = mac(w3, m0, n3, &mut c0);
            let x = mac(x, m1, n2, &mut c1);
            let x = mac(x, m2, n1, &mut c2);
            let m3 = u64::from((x as u32).wrapping_mul(inv));
            let mut c3 = (x + m3 * n0) >> 32;
            // Words i + 4 .. i + k - 1: all four rows.
            for ((((w, &a), &b), &c), &d) in range_mut(win, 4, k)
                .iter_mut()
                .zip(tail(n, 4))
                .zip(tail(n, 3))
                .zip(tail(n, 2))
                .zip(tail(n, 1))
            {
                let x = mac(u64::from(*w), m0, u64::from(a), &mut c0);
                let x = mac(x, m1, u64::from(b), &mut c1);
                let x = mac(x, m2, u64::from(c), &mut c2);
                let x = mac(x, m3, u64::from(d), &mut c3);
                *w = x as u32;
            }
            // Words i + k .. i + k + 3: the rows' tails and carries.
            if let Some([t0, t1, t2, t3]) = win.get_mut(k..k + 4) {
                let s = u64::from(*t0) + c0 + carry;
                let mut c = s >> 32;
                let x = mac(s & LOW, m1, nc, &mut c1);
                let x = mac(x, m2, nb, &mut c2);
                let x = mac(x, m3, na, &mut c3);
                *t0 = x as u32;
                let s = u64::from(*t1) + c + c1;
                c = s >> 32;
                let x = mac(s & LOW, m2, nc, &mut c2);
                let x = mac(x, m3, nb, &mut c3);
                *t1 = x as u32;
                let s = u64::from(*t2) + c + c2;
                c = s >> 32;
                let x = mac(s & LOW, m3, nc, &mut c3);
                *t2 = x as u32;
                let s = u64::from(*t3) + c + c3;
                *t3 = s as u32;
                carry = s >> 32;
            }
        }
        // The remaining rows one at a time.
        for i in 4 * blocks..k {
            let Some((top, window)) = wide.get_mut(i..=i + k).and_then(<[u32]>::split_last_mut)
            else {
                return;
            };
            let Some(&w0) = window.first() else {
                return;
            };
            let m = u64::from(w0.wrapping_mul(inv));
            let mut c = 0u64;
            for (w, &nj) in window.iter_mut().zip(n) {
                let s = u64::from(*w) + m * u64::from(nj) + c;
                *w = s as u32;
                c = s >> 32;
            }
            let s = u64::from(*top) + c + carry;
            *top = s as u32;
            carry = s >> 32;
        }
        for (o, w) in out.iter_mut().zip(wide.iter().skip(k)) {
            *o = *w;
        }
        // The result is below 2n.
        if carry != 0 || !less_than(out, &self.n) {
            sub_in_place(out, &self.n);
        }
    }
}

/// `wide = a·b` (schoolbook, `wide` has `a.len() + b.len()` words, equal
/// lengths k). Four rows (limbs of `a`) per pass over `b`, as the squaring's
/// cross products; row r of a block starting at i adds `a[i+r]·b` at word
/// i + r, and each block's top four words are ones no earlier block reached.
fn mul_wide(a: &[u32], b: &[u32], wide: &mut [u32]) {
    let k = a.len();
    wide.fill(0);
    let (Some(&[b0, b1, b2, b3]), Some(&[bk3, bk2, bk1])) =
        (b.first_chunk::<4>(), b.last_chunk::<3>())
    else {
        return;
    };
    let [b0, b1, b2, b3] = [b0, b1, b2, b3].map(u64::from);
    let [bk3, bk2, bk1] = [bk3, bk2, bk1].map(u64::from);
    let mut i = 0;
    while i + 4 <= k {
        let Some(rows) = a.get(i..).and_then(<[u32]>::first_chunk::<4>) else {
            break;
        };
        let [x0, x1, x2, x3] = rows.map(u64::from);
        // Words i ..= i+k+3.
        let Some(win) = wide.get_mut(i..i + k + 4) else {
            break;
        };
        let Some((head, rest)) = win.split_first_chunk_mut::<4>() else {
            break;
        };
        let Some((mid, top)) = rest.split_last_chunk_mut::<4>() else {
            break;
        };
        let (mut c0, mut c1, mut c2, mut c3) = (0u64, 0u64, 0u64, 0u64);
        let [h0, h1, h2, h3] = head;
        *h0 = mac(u64::from(*h0), x0, b0, &mut c0) as u32;
        let v = mac(u64::from(*h1), x0, b1, &mut c0);
        *h1 = mac(v, x1, b0, &mut c1) as u32;
        let v = mac(u64::from(*h2), x0, b2, &mut c0);
        let v = mac(v, x1, b1, &mut c1);
        *h2 = mac(v, x2, b0, &mut c2) as u32;
        let v = mac(u64::from(*h3), x0, b3, &mut c0);
        let v = mac(v, x1, b2, &mut c1);
        let v = mac(v, x2, b1, &mut c2);
        *h3 = mac(v, x3, b0, &mut c3) as u32;
        // Words i+4 ..= i+k-1: all four rows.
        for ((((w, &y0), &y1), &y2), &y3) in mid
            .iter_mut()
            .zip(tail(b, 4))
            .zip(tail(b, 3))
            .zip(tail(b, 2))
            .zip(tail(b, 1))
        {
            let v = mac(u64::from(*w), x0, u64::from(y0), &mut c0);
            let v = mac(v, x1, u64::from(y1), &mut c1);
            let v = mac(v, x2, u64::from(y2), &mut c2);
            *w = mac(v, x3, u64::from(y3), &mut c3) as u32;
        }
        let [e0, e1, e2, e3] = top;
        let v = mac(c0, x1, bk1, &mut c1);
        let v = mac(v, x2, bk2, &mut c2);
        *e0 = mac(v, x3, bk3, &mut c3) as u32;
        let v = mac(c1, x2, bk1, &mut c2);
        *e1 = mac(v, x3, bk2, &mut c3) as u32;
        *e2 = mac(c2, x3, bk1, &mut c3) as u32;
        *e3 = c3 as u32;
        i += 4;
    }
    // The remaining rows one at a time.
    for (i, &ai) in a.iter().enumerate().skip(i) {
        let ai = u64::from(ai);
        let mut c = 0u64;
        for (w, &bj) in tail_mut(wide, i).iter_mut().zip(b) {
            *w = mac(u64::from(*w), ai, u64::from(bj), &mut c) as u32;
        }
        if let Some(w) = wide.get_mut(i + k) {
            *w = c as u32;
        }
    }
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

/// Whether [`RsaPublicKey::verify`] uses the [`lazy`] arithmetic.
const USE_LAZY: bool = cfg!(target_arch = "wasm32");

/// Low 32 bits of a `u64`.
const LOW: u64 = 0xffff_ffff;

/// `x + a·b + c` for 32-bit `x`, `a`, `b`, `c`: the low word is returned
/// and the high word becomes the new carry `c`. Never overflows a `u64`.
#[inline(always)]
fn mac(x: u64, a: u64, b: u64, c: &mut u64) -> u64 {
    let s = x + a * b + *c;
    *c = s >> 32;
    s & LOW
}

/// `s[from..to]`, empty if out of range.
fn range_mut<T>(s: &mut [T], from: usize, to: usize) -> &mut [T] {
    s.get_mut(from..to).unwrap_or_default()
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

/// Big-endian bytes to `limbs` little-endian 32-bit limbs (bytes beyond
/// `4·limbs` are ignored; callers pass at most that many).
fn from_be_bytes(be: &[u8], limbs: usize) -> Vec<u32> {
    let mut out = vec![0u32; limbs];
    for (limb, chunk) in out.iter_mut().zip(be.rchunks(4)) {
        *limb = chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
    }
    out
}

/// Limbs to `len` big-endian bytes (the value must fit).
fn to_be_bytes(limbs: &[u32], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    for (chunk, limb) in out.rchunks_mut(4).zip(limbs) {
        for (o, b) in chunk.iter_mut().rev().zip(limb.to_le_bytes()) {
            *o = b;
        }
    }
    out
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

/// `a -= b` modulo 2^(32·len).
fn sub_in_place(a: &mut [u32], b: &[u32]) {
    let mut borrow = false;
    for (x, &y) in a.iter_mut().zip(b) {
        let (d1, b1) = x.overflowing_sub(y);
        let (d2, b2) = d1.overflowing_sub(u32::from(borrow));
        *x = d2;
        borrow = b1 || b2;
    }
}

/// `a <<= 1`, returning the bit shifted out.
fn shl1(a: &mut [u32]) -> bool {
    let mut carry = 0u32;
    for x in a.iter_mut() {
        let next = *x >> 31;
        *x = (*x << 1) | carry;
        carry = next;
    }
    carry == 1
}

/// Montgomery arithmetic on 28-bit limbs held lazily in 64-bit lanes, two
/// lanes per vector: wasm `simd128` in the filter, a plain two-`u64`
/// emulation natively (so the same code is tested natively).
mod lazy {
    #[cfg(target_arch = "wasm32")]
    use core::arch::wasm32::{
        u32x4, u32x4_splat, u64x2, u64x2_add, u64x2_extmul_high_u32x4, u64x2_extmul_low_u32x4,
        u64x2_extract_lane, u64x2_splat, v128,
    };
    #[cfg(not(target_arch = "wasm32"))]
    use emu::{
        u32x4, u32x4_splat, u64x2, u64x2_add, u64x2_extmul_high_u32x4, u64x2_extmul_low_u32x4,
        u64x2_extract_lane, u64x2_splat, v128,
    };

    /// Limb width.
    pub const W: u32 = 28;
    /// Low `W` bits.
    pub const MASK: u32 = (1 << W) - 1;

    /// A modulus in 28-bit limbs with its Montgomery constants
    /// (`R = 2^(28k)`, `k` even and `28k ≥ bits + 2`, so `4n < R`).
    #[derive(Clone)]
    pub struct Modulus {
        /// Limbs, least significant first.
        pub n: Vec<u32>,
        /// Per group of four words: `n[4q..4q+4]` and `n[4q-1..4q+3]`
        /// (zero outside `0..k`).
        packs: Vec<[v128; 2]>,
        /// `-n⁻¹ mod 2^28`.
        inv: u32,
        /// `R² mod n`.
        pub rr: Vec<u32>,
    }

    impl PartialEq for Modulus {
        fn eq(&self, other: &Self) -> bool {
            self.n == other.n
        }
    }
    impl Eq for Modulus {}

    /// Work space for [`Modulus::mul`].
    pub struct Scratch {
        t: Vec<v128>,
        packs: Vec<[v128; 2]>,
        padded: Vec<u32>,
        /// The current rows' multipliers, read from memory in the inner
        /// loop so that LLVM keeps `extmul` instead of hoisting a widening
        /// and emitting `i64x2.mul` (which V8 emulates, slowly).
        mults: Vec<v128>,
        /// For squaring: `2a` with four leading zeros, and its packs at the
        /// four alignments (`sq[o][q]` = limbs `4q + o - 4 ..` of `2a`).
        doubled: Vec<u32>,
        sq: [Vec<v128>; 4],
    }

    /// Number of 28-bit limbs for a `bits`-bit modulus: even, with two
    /// spare bits.
    pub fn limbs_for(bits: usize) -> usize {
        (bits + 2).div_ceil(W as usize).next_multiple_of(2)
    }

    impl Modulus {
        /// `n` in 28-bit limbs (`limbs_for(bits)` of them), `n32_inv =
        /// n⁻¹ mod 2³²`; `rr` is filled in by the caller.
        pub fn new(n: Vec<u32>, n_inv32: u32) -> Modulus {
            let packs = pack(&n);
            Modulus {
                n,
                packs,
                inv: n_inv32.wrapping_neg() & MASK,
                rr: Vec::new(),
            }
        }

        pub fn scratch(&self) -> Scratch {
            let k = self.n.len();
            let q = self.packs.len();
            Scratch {
                t: vec![zero(); k / 2 + 2 * q + 1],
                packs: vec![[zero(); 2]; q],
                padded: vec![0; 4 * q + 1],
                mults: vec![zero(); 4],
                doubled: vec![0; k + 16],
                sq: core::array::from_fn(|_| vec![zero(); k / 4 + 4]),
            }
        }

        /// `out = a·b·R⁻¹ mod n`, up to one extra `n`: for `a, b < 2n`
        /// (normalised 28-bit limbs), `out < 2n`, normalised.
        #[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
        pub fn mul(&self, a: &[u32], b: &[u32], s: &mut Scratch, out: &mut [u32]) {
            let k = self.n.len();
            let inv = self.inv;
            // b's packs, as n's.
            if let Some((first, rest)) = s.padded.split_first_mut() {
                *first = 0;
                for (p, &x) in rest.iter_mut().zip(b.iter().chain(core::iter::repeat(&0))) {
                    *p = x;
                }
            }
            for (p, w) in s.packs.iter_mut().zip(s.padded.windows(5).step_by(4)) {
                if let [w0, w1, w2, w3, w4] = *w {
                    *p = [u32x4(w1, w2, w3, w4), u32x4(w0, w1, w2, w3)];
                }
            }
            s.t.fill(u64x2_splat(0));
            let (Some(&[b0, b1]), Some(&[n0, n1])) =
                (b.first_chunk::<2>(), self.n.first_chunk::<2>())
            else {
                return;
            };
            let [b0, b1, n0, n1] = [b0, b1, n0, n1].map(u64::from);
            let span = 2 * self.packs.len();
            let mut carry = 0u64;
            // Rows i and i + 1 (i even) per pass: a[i]·b and m[i]·n at word
            // i, a[i+1]·b and m[i+1]·n at word i + 1, with m chosen so that
            // words i and i + 1 become multiples of 2^28 (their carry goes
            // to word i + 2; every other word just accumulates, at most 2k
            // products below 2^56 each: no overflow for k ≤ 254).
            for (h, pair) in a.chunks_exact(2).enumerate() {
                if h % NORMALISE_EVERY == NORMALISE_EVERY - 1 {
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
                let t0 = u64x2_extract_lane::<0>(first) + carry;
                let v = t0 + x0 * b0;
                let m0 = u64::from((v as u32).wrapping_mul(inv) & MASK);
                let c0 = (v + m0 * n0) >> W;
                let v = u64x2_extract_lane::<1>(first) + x0 * b1 + m0 * n1 + c0 + x1 * b0;
                let m1 = u64::from((v as u32).wrapping_mul(inv) & MASK);
                carry = (v + m1 * n0) >> W;
                if let Some(slots) = s.mults.first_chunk_mut::<4>() {
                    *slots = [
                        u32x4_splat(x0 as u32),
                        u32x4_splat(x1 as u32),
                        u32x4_splat(m0 as u32),
                        u32x4_splat(m1 as u32),
                    ];
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
        /// square first (each cross product once, by `2a`), then REDC.
        #[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
        pub fn sqr(&self, a: &[u32], s: &mut Scratch, out: &mut [u32]) {
            let k = self.n.len();
            if k > MAX_LAZY_SQR {
                // Square and reduction words would overflow: the multiply
                // normalises along the way.
                return self.mul(a, a, s, out);
            }
            for (d, &x) in tail_mut(&mut s.doubled, 4)
                .iter_mut()
                .zip(a.iter().chain(core::iter::repeat(&0)))
            {
                *d = x << 1;
            }
            for (o, packs) in s.sq.iter_mut().enumerate() {
                let windows = tail(&s.doubled, o).windows(4).step_by(4);
                for (p, w) in packs.iter_mut().zip(windows) {
                    if let [w0, w1, w2, w3] = *w {
                        *p = u32x4(w0, w1, w2, w3);
                    }
                }
            }
            s.t.fill(u64x2_splat(0));
            let d = tail(&s.doubled, 4);
            // Rows r and r + 1 (r even) per pass: row r adds a[r]·2a[j] at
            // word r + j for j > r, and a[r]² at 2r. The first group of four
            // words (2r ..= 2r + 3) is built from the limbs; then the packs
            // of 2a at the alignment of r and of r - 1.
            for (r, pair) in a.chunks_exact(2).enumerate().map(|(h, p)| (2 * h, p)) {
                let &[x0, x1] = pair else {
                    return;
                };
                let limb = |j: usize| d.get(j).copied().unwrap_or(0);
                let first = u32x4(x0, limb(r + 1), limb(r + 2), limb(r + 3));
                let second = u32x4(0, 0, x1, limb(r + 2));
                let (o0, o1) = (r % 4, (r + 3) % 4);
                let q0 = r / 4 + 1;
                let q1 = (r + 3) / 4;
                let groups = (k - r) / 4;
                let (Some(p0), Some(p1)) = (
                    s.sq[o0].get(q0 + 1..q0 + 1 + groups),
                    s.sq[o1].get(q1 + 1..q1 + 1 + groups),
                ) else {
                    return;
                };
                let Some(win) = s.t.get_mut(r..r + 2 * groups + 2) else {
                    return;
                };
                if let Some(slots) = s.mults.first_chunk_mut::<2>() {
                    *slots = [u32x4_splat(x0), u32x4_splat(x1)];
                }
                let mults = s.mults.as_slice();
                let Some(((lo, hi), rest)) = win
                    .split_first_chunk_mut::<2>()
                    .map(|([l, h], r)| ((l, h), r))
                else {
                    return;
                };
                if let Some(&[y0, y1]) = mults.first_chunk::<2>() {
                    *lo = u64x2_add(*lo, u64x2_extmul_low_u32x4(y0, first));
                    *hi = u64x2_add(
                        *hi,
                        u64x2_add(
                            u64x2_extmul_high_u32x4(y0, first),
                            u64x2_extmul_high_u32x4(y1, second),
                        ),
                    );
                }
                for ((t, &b0), &b1) in rest.chunks_exact_mut(2).zip(p0).zip(p1) {
                    if let ([lo, hi], Some(&[y0, y1])) = (t, mults.first_chunk::<2>()) {
                        *lo = u64x2_add(
                            *lo,
                            u64x2_add(
                                u64x2_extmul_low_u32x4(y0, b0),
                                u64x2_extmul_low_u32x4(y1, b1),
                            ),
                        );
                        *hi = u64x2_add(
                            *hi,
                            u64x2_add(
                                u64x2_extmul_high_u32x4(y0, b0),
                                u64x2_extmul_high_u32x4(y1, b1),
                            ),
                        );
                    }
                }
            }
            self.reduce(s, out);
        }

        /// Montgomery reduction of the lazy product in `s.t` (2k words)
        /// into `out`: rows i and i + 1 (i even) per pass add m[i]·n at word
        /// i and m[i+1]·n at word i + 1, chosen so that words i and i + 1
        /// become multiples of 2^28.
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
                let c0 = (v + m0 * n0) >> W;
                let v = u64x2_extract_lane::<1>(first) + m0 * n1 + c0;
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

    /// Row pairs between two normalisations in [`Modulus::mul`]: each pair
    /// adds at most four products below 2^56 to a word, so 63 pairs keep a
    /// word (below 2^28 plus a carry below 2^37 after normalising) under
    /// 2^64.
    const NORMALISE_EVERY: usize = 63;

    /// Largest limb count for [`Modulus::sqr`] without normalising: a word
    /// gets at most k/2 square products below 2^57 and k reduction products
    /// below 2^56, plus carries: under 2^64 for k ≤ 126 (3526 bits).
    const MAX_LAZY_SQR: usize = 126;

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

    /// Words k .. 2k of `t`, plus `carry` into word k, normalised into `out`.
    #[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
    fn top(t: &[v128], k: usize, mut carry: u64, out: &mut [u32]) {
        let words = t
            .iter()
            .skip(k / 2)
            .flat_map(|v| [u64x2_extract_lane::<0>(*v), u64x2_extract_lane::<1>(*v)]);
        for (o, w) in out.iter_mut().zip(words) {
            let v = w + carry;
            *o = v as u32 & MASK;
            carry = v >> W;
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

    /// Per group of four words q: `x[4q..4q+4]` and `x[4q-1..4q+3]`, zero
    /// outside the limbs, for `(k + 1) / 4` rounded up groups.
    fn pack(x: &[u32]) -> Vec<[v128; 2]> {
        let q = (x.len() + 1).div_ceil(4);
        let mut padded = vec![0u32; 4 * q + 1];
        for (p, &l) in padded.iter_mut().skip(1).zip(x) {
            *p = l;
        }
        padded
            .windows(5)
            .step_by(4)
            .map(|w| match *w {
                [w0, w1, w2, w3, w4] => [mk(w1, w2, w3, w4), mk(w0, w1, w2, w3)],
                _ => [zero(); 2],
            })
            .collect()
    }

    #[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
    fn mk(a: u32, b: u32, c: u32, d: u32) -> v128 {
        u32x4(a, b, c, d)
    }

    #[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
    fn zero() -> v128 {
        u64x2_splat(0)
    }

    /// `a < b` for equal-length limb vectors.
    pub fn less_than(a: &[u32], b: &[u32]) -> bool {
        super::less_than(a, b)
    }

    /// `a -= b` for normalised 28-bit limbs, `a ≥ b`.
    pub fn sub_in_place(a: &mut [u32], b: &[u32]) {
        let mut borrow = 0u32;
        for (x, &y) in a.iter_mut().zip(b) {
            let d = x.wrapping_sub(y).wrapping_sub(borrow);
            borrow = d >> 31;
            *x = d & MASK;
        }
    }

    /// Big-endian bytes to `limbs` 28-bit limbs, least significant first
    /// (the value must fit).
    pub fn from_be_bytes(be: &[u8], limbs: usize) -> Vec<u32> {
        let mut out = vec![0u32; limbs];
        let mut acc = 0u64;
        let mut have = 0;
        let mut slots = out.iter_mut();
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
        out
    }

    /// 28-bit limbs to `len` big-endian bytes (the value must fit).
    pub fn to_be_bytes(limbs: &[u32], len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        let mut acc = 0u64;
        let mut have = 0;
        let mut limbs = limbs.iter();
        for o in out.iter_mut().rev() {
            if have < 8 {
                acc |= u64::from(limbs.next().copied().unwrap_or(0)) << have;
                have += W;
            }
            *o = acc as u8;
            acc >>= 8;
            have -= 8;
        }
        out
    }

    /// Two `u64` lanes with the few wasm `simd128` operations used here.
    #[cfg(not(target_arch = "wasm32"))]
    mod emu {
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug)]
        pub struct v128([u64; 2]);

        fn halves(x: u64) -> [u64; 2] {
            [x & 0xffff_ffff, x >> 32]
        }

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

        pub fn u64x2_add(a: v128, b: v128) -> v128 {
            let ([a0, a1], [b0, b1]) = (a.0, b.0);
            v128([a0.wrapping_add(b0), a1.wrapping_add(b1)])
        }

        fn extmul(a: u64, b: u64) -> v128 {
            let ([a0, a1], [b0, b1]) = (halves(a), halves(b));
            v128([a0 * b0, a1 * b1])
        }

        pub fn u64x2_extmul_low_u32x4(a: v128, b: v128) -> v128 {
            extmul(a.0[0], b.0[0])
        }

        pub fn u64x2_extmul_high_u32x4(a: v128, b: v128) -> v128 {
            extmul(a.0[1], b.0[1])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limb_conversions_round_trip() {
        let be: Vec<u8> = (1..=13).collect();
        let limbs = from_be_bytes(&be, 4);
        assert_eq!(limbs, vec![0x0a0b0c0d, 0x06070809, 0x02030405, 0x01]);
        assert_eq!(to_be_bytes(&limbs, 13), be);
    }

    /// R² mod n the slow, obvious way: double 1 modulo n, 64k times.
    fn r_squared_by_doubling(n: &[u32]) -> Vec<u32> {
        let mut rr = vec![0u32; n.len()];
        rr[0] = 1;
        for _ in 0..64 * n.len() {
            if shl1(&mut rr) || !less_than(&rr, n) {
                sub_in_place(&mut rr, n);
            }
        }
        rr
    }

    #[test]
    fn r_squared_matches_plain_doubling() {
        // Moduli of many sizes and shapes (odd, top bit anywhere in the top
        // limb, limb counts odd and even, up to 8192 bits).
        for (i, bits) in [
            2048usize, 2049, 2050, 2079, 2080, 2081, 3071, 4096, 4097, 8192,
        ]
        .into_iter()
        .enumerate()
        {
            let len = bits.div_ceil(8);
            let mut n: Vec<u8> = (0..len)
                .map(|j| (j as u8).wrapping_mul(151).wrapping_add(i as u8 * 17 + 3))
                .collect();
            n[0] = (n[0] | 0x80) >> ((8 - bits % 8) % 8);
            n[0] |= 1 << ((bits - 1) % 8);
            n[len - 1] |= 1;
            let key = RsaPublicKey::new(&n, &[1, 0, 1]).unwrap();
            assert_eq!(key.bits(), bits);
            assert_eq!(key.rr, r_squared_by_doubling(&key.n), "{bits} bits");
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
        // R = 2^2048 ≡ 1 (mod n), so R² mod n = 1.
        assert_eq!(key.rr.first(), Some(&1));
        assert!(key.rr.iter().skip(1).all(|l| *l == 0));
        assert_eq!(key.n0_inv.wrapping_mul(key.n[0]), u32::MAX);
        // 2^3 = 8 with e = 3.
        let mut sig = vec![0u8; 256];
        sig[255] = 2;
        let out = key.public_op(&sig).unwrap();
        assert_eq!(out[255], 8);
        assert!(out[..255].iter().all(|b| *b == 0));
        // (n - 1)^3 = -1 mod n = n - 1.
        let mut sig = vec![0xffu8; 256];
        sig[255] = 0xfe;
        assert_eq!(key.public_op(&sig).unwrap(), sig);
        // n itself and longer or shorter inputs are refused.
        assert!(key.public_op(&[0xffu8; 256]).is_none());
        assert!(key.public_op(&[0u8; 255]).is_none());
        assert!(key.public_op(&[0u8; 257]).is_none());
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

    #[test]
    fn lazy_matches_plain() {
        for (i, bits) in [2048usize, 2049, 2055, 2072, 2080, 3072, 4096, 4095, 8192]
            .into_iter()
            .enumerate()
        {
            let len = bits.div_ceil(8);
            let mut n = bytes(i as u64 * 7 + 1, len);
            n[0] = (n[0] | 0x80) >> ((8 - bits % 8) % 8);
            n[0] |= 1 << ((bits - 1) % 8);
            n[len - 1] |= 1;
            for e in [
                &[1u8, 0, 1][..],
                &[3],
                &[1, 0xff, 0xff, 0xff, 0xff],
                &[0x35, 0x7],
            ] {
                let key = RsaPublicKey::new(&n, e).unwrap();
                let limbs = lazy::limbs_for(bits);
                assert_eq!(lazy::to_be_bytes(&key.m28.n, len), n);
                assert_eq!(
                    lazy::from_be_bytes(&to_be_bytes(&key.rr, len), limbs).len(),
                    limbs
                );
                for j in 0..6u64 {
                    let mut sig = match j {
                        0 => n.clone(),
                        1 => vec![0u8; len],
                        2 => vec![0xffu8; len],
                        _ => bytes(j * 1000 + i as u64, len),
                    };
                    if j == 0 {
                        // n - 1.
                        sig[len - 1] -= 1;
                    }
                    if j == 2 || j > 2 {
                        sig[0] &= n[0] >> 1;
                    }
                    assert_eq!(
                        key.public_op_lazy(&sig),
                        key.public_op(&sig),
                        "{bits} bits, e {e:?}, sig {j}"
                    );
                }
                assert!(key.public_op_lazy(&n).is_none());
            }
        }
    }
}
