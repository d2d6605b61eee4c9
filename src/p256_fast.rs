//! ECDSA P-256 / SHA-256 signature verification (JWS `ES256`, the fixed
//! 64-byte `r || s` form) tuned for wasm32 in V8.
//!
//! Why not ring: on wasm32 ring runs portable C with 32-bit limbs and
//! computes `u1·G + u2·Q` with ~255 doublings and no per-key precomputation
//! (~470 µs per verification in V8). Keys are long-lived, so here each key
//! gets a table of multiples of `Q` in affine form, built once (lazily, on
//! the key's first verification), and the generator `G` one such table per
//! VM. A scalar is then written in signed base-`2^w` digits
//! `k = Σ dᵢ·2^(w·i)` with `|dᵢ| <= 2^(w-1)`, and `k·P = Σ dᵢ·(2^(w·i)·P)` is
//! one table look-up and one mixed (Jacobian + affine) addition per digit:
//! **no doublings** at verification time. With `w = 8` for `G` and `w = 7`
//! for `Q` that is 33 + 37 mixed additions (7M + 4S each).
//!
//! Field arithmetic: multiplication mod p is a schoolbook product of 32-bit
//! limbs with NIST's Solinas reduction (FIPS 186-4 D.2.3), about twice as
//! fast in V8 as `fiat-crypto`'s Montgomery multiply (measured, see
//! [`solinas`]); addition, subtraction and negation mod p and all
//! arithmetic mod n (Montgomery, `p256_scalar_32`) are `fiat-crypto`'s
//! (formally verified). This module adds the curve formulas, the tables,
//! the digit recoding, a variable-time inversion mod n (binary extended
//! GCD) and the final check, which compares `X == r·Z²` (and `(r + n)·Z²`
//! when `r + n < p`) instead of inverting `Z`.
//!
//! **Not constant time, on purpose.** Verification handles only public data
//! (the public key, the signed message and the signature), so branches and
//! early exits that depend on them leak nothing secret. Do not reuse this
//! code for anything involving a private key.
//!
//! No `unsafe`, and no panicking operation outside tests: slices are read
//! through iterators or `get`. Every exceptional case of the point formulas
//! (adding a point to itself or to its negation, the point at infinity) is
//! handled, so the verdict is ring's on every input: `tests/p256_fast.rs`
//! checks that differentially and on Wycheproof's vectors, and the `p256`
//! fuzz target keeps checking it.

use std::sync::{Arc, OnceLock};

use fiat_crypto::p256_32 as fp;
use fiat_crypto::p256_scalar_32 as fq;
use ring::digest;

/// A field element mod p in plain (not Montgomery) form, always fully
/// reduced (below p), so limb equality is value equality.
#[derive(Clone, Copy)]
struct Fe([u32; 8]);

// fiat's `add`, `sub` and `opp` are the same functions in either form
// (they need inputs below p and keep outputs below p); its type says
// Montgomery only by name.
use fiat_crypto::p256_32::fiat_p256_montgomery_domain_field_element as FiatFe;

/// 256-bit integers as eight 32-bit limbs, least significant first.
type Limbs = [u32; 8];

/// The field prime p = 2^256 - 2^224 + 2^192 + 2^96 - 1.
const P: Limbs = [
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
    0,
    0,
    0,
    1,
    0xffff_ffff,
];
/// The group order n.
const N: Limbs = [
    0xfc63_2551,
    0xf3b9_cac2,
    0xa717_9e84,
    0xbce6_faad,
    0xffff_ffff,
    0xffff_ffff,
    0,
    0xffff_ffff,
];
/// p - 2, the exponent of the (setup-time only) field inversion.
const P_MINUS_2: Limbs = [
    0xffff_fffd,
    0xffff_ffff,
    0xffff_ffff,
    0,
    0,
    0,
    1,
    0xffff_ffff,
];
/// The curve constant b (a = -3).
const B: Limbs = [
    0x27d2_604b,
    0x3bce_3c3e,
    0xcc53_b0f6,
    0x651d_06b0,
    0x7698_86bc,
    0xb3eb_bd55,
    0xaa3a_93e7,
    0x5ac6_35d8,
];
/// The generator's coordinates.
const GX: Limbs = [
    0xd898_c296,
    0xf4a1_3945,
    0x2deb_33a0,
    0x7703_7d81,
    0x63a4_40f2,
    0xf8bc_e6e5,
    0xe12c_4247,
    0x6b17_d1f2,
];
const GY: Limbs = [
    0x37bf_51f5,
    0xcbb6_4068,
    0x6b31_5ece,
    0x2bce_3357,
    0x7c0f_9e16,
    0x8ee7_eb4a,
    0xfe1a_7f9b,
    0x4fe3_42e2,
];

/// Window width of the generator's table: 33 additions per `u1·G`, 270 KB
/// once per VM.
const G_WINDOW: u32 = 8;
/// Window width of a key's table: 37 additions per `u2·Q`, 148 KiB per key
/// (see [`table_bytes`]).
pub const Q_WINDOW: u32 = 7;

/// Bytes of a table of window `w`: `(256/w + 1)` windows of `2^(w-1)` affine
/// points of 64 bytes.
pub const fn table_bytes(w: u32) -> usize {
    (256 / w as usize + 1) * (1 << (w - 1)) * 64
}

// ---- field arithmetic ----------------------------------------------------------

const ZERO: Fe = Fe([0; 8]);

fn mul(a: &Fe, b: &Fe) -> Fe {
    solinas::mul(a, b)
}

fn sqr(a: &Fe) -> Fe {
    solinas::sqr(a)
}

/// Multiplication mod p in plain form, measured against fiat's Montgomery
/// multiply (`fiat_p256_mul`) in V8: about twice as fast, because wasm has
/// no add-with-carry and this has one carry chain per row of the product
/// and one for the whole reduction, where the word-by-word Montgomery
/// reduction has a chain per word.
mod solinas {
    use super::{Fe, Limbs, P};

    /// `a·b mod p` for `a, b < p`, fully reduced: schoolbook product (32x32
    /// -> 64-bit multiply-adds, which wasm has), then FIPS 186-4 D.2.3's
    /// reduction for the Solinas prime p.
    pub(super) fn mul(a: &Fe, b: &Fe) -> Fe {
        let mut c = [0u32; 16];
        for (i, &ai) in a.0.iter().enumerate() {
            let mut carry = 0u64;
            for (ci, &bj) in c.iter_mut().skip(i).zip(b.0.iter()) {
                let t = u64::from(ai) * u64::from(bj) + u64::from(*ci) + carry;
                *ci = t as u32;
                carry = t >> 32;
            }
            if let Some(ci) = c.get_mut(i + 8) {
                *ci = carry as u32;
            }
        }
        reduce(c)
    }

    /// `a² mod p`: each cross product once, doubled, plus the squares (36
    /// multiplies instead of 64).
    pub(super) fn sqr(a: &Fe) -> Fe {
        let mut c = [0u32; 16];
        for (i, &ai) in a.0.iter().enumerate() {
            let mut carry = 0u64;
            for (ci, &aj) in c.iter_mut().skip(2 * i + 1).zip(a.0.iter().skip(i + 1)) {
                let t = u64::from(ai) * u64::from(aj) + u64::from(*ci) + carry;
                *ci = t as u32;
                carry = t >> 32;
            }
            // Rows before this one reached at most word i + 7.
            if let Some(ci) = c.get_mut(i + 8) {
                *ci = carry as u32;
            }
        }
        // The cross products sum below 2^511: doubling cannot overflow.
        let mut high = 0u32;
        for ci in c.iter_mut() {
            let v = (*ci << 1) | high;
            high = *ci >> 31;
            *ci = v;
        }
        let mut carry = 0u64;
        for (pair, &ai) in c.chunks_exact_mut(2).zip(a.0.iter()) {
            if let [lo, hi] = pair {
                let sq = u64::from(ai) * u64::from(ai);
                let l = u64::from(*lo) + (sq & 0xffff_ffff) + carry;
                *lo = l as u32;
                let h = u64::from(*hi) + (sq >> 32) + (l >> 32);
                *hi = h as u32;
                carry = h >> 32;
            }
        }
        reduce(c)
    }

    fn reduce(c: [u32; 16]) -> Fe {
        let [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15] =
            c.map(i64::from);
        let t = [
            c0 + c8 + c9 - c11 - c12 - c13 - c14,
            c1 + c9 + c10 - c12 - c13 - c14 - c15,
            c2 + c10 + c11 - c13 - c14 - c15,
            c3 + 2 * c11 + 2 * c12 + c13 - c15 - c8 - c9,
            c4 + 2 * c12 + 2 * c13 + c14 - c9 - c10,
            c5 + 2 * c13 + 2 * c14 + c15 - c10 - c11,
            c6 + 3 * c14 + 2 * c15 + c13 - c8 - c9,
            c7 + 3 * c15 + c8 - c10 - c11 - c12 - c13,
        ];
        let mut r = [0u32; 8];
        let mut top = propagate(&t, &mut r);
        // 2^256 ≡ 2^224 - 2^192 - 2^96 + 1 (mod p): fold the signed top
        // word back in; it converges in at most three passes.
        for _ in 0..4 {
            if top == 0 {
                break;
            }
            let mut t = r.map(i64::from);
            let [t0, _, _, t3, _, _, t6, t7] = &mut t;
            *t0 += top;
            *t3 -= top;
            *t6 -= top;
            *t7 += top;
            top = propagate(&t, &mut r);
        }
        if !super::lt(&r, &P) {
            super::sub_limbs(&mut r, &P);
        }
        Fe(r)
    }

    /// Signed column sums into 32-bit words; returns the signed carry out.
    fn propagate(t: &[i64; 8], r: &mut Limbs) -> i64 {
        let mut carry = 0i64;
        for (ri, ti) in r.iter_mut().zip(t) {
            let v = ti + carry;
            *ri = v as u32;
            carry = v >> 32;
        }
        carry
    }
}

fn add(a: &Fe, b: &Fe) -> Fe {
    let mut out = FiatFe([0; 8]);
    fp::fiat_p256_add(&mut out, &FiatFe(a.0), &FiatFe(b.0));
    Fe(out.0)
}

fn sub(a: &Fe, b: &Fe) -> Fe {
    let mut out = FiatFe([0; 8]);
    fp::fiat_p256_sub(&mut out, &FiatFe(a.0), &FiatFe(b.0));
    Fe(out.0)
}

fn neg(a: &Fe) -> Fe {
    let mut out = FiatFe([0; 8]);
    fp::fiat_p256_opp(&mut out, &FiatFe(a.0));
    Fe(out.0)
}

fn one() -> Fe {
    Fe([1, 0, 0, 0, 0, 0, 0, 0])
}

fn is_zero(a: &Fe) -> bool {
    a.0 == [0; 8]
}

fn fe_eq(a: &Fe, b: &Fe) -> bool {
    a.0 == b.0
}

/// A field element from limbs; `a` must be below p (callers check).
fn to_fe(a: &Limbs) -> Fe {
    Fe(*a)
}

/// `a^(p-2) = a^-1` (0 for 0). Setup only: ~256 squarings.
fn invert(a: &Fe) -> Fe {
    let mut r = one();
    for limb in P_MINUS_2.iter().rev() {
        for bit in (0..32).rev() {
            r = sqr(&r);
            if (limb >> bit) & 1 == 1 {
                r = mul(&r, a);
            }
        }
    }
    r
}

// ---- 256-bit integers --------------------------------------------------------

/// Big-endian bytes (exactly 32) into limbs.
fn limbs_from_be(bytes: &[u8]) -> Option<Limbs> {
    if bytes.len() != 32 {
        return None;
    }
    let mut out = [0u32; 8];
    for (o, chunk) in out.iter_mut().zip(bytes.rchunks_exact(4)) {
        *o = u32::from_be_bytes(chunk.try_into().ok()?);
    }
    Some(out)
}

/// `a < b`.
fn lt(a: &Limbs, b: &Limbs) -> bool {
    for (x, y) in a.iter().zip(b).rev() {
        if x != y {
            return x < y;
        }
    }
    false
}

fn is_zero_limbs(a: &Limbs) -> bool {
    a.iter().all(|&x| x == 0)
}

/// `a += b`, returning the carry out.
fn add_limbs(a: &mut Limbs, b: &Limbs) -> bool {
    let mut carry = 0u64;
    for (x, y) in a.iter_mut().zip(b) {
        let s = u64::from(*x) + u64::from(*y) + carry;
        *x = s as u32;
        carry = s >> 32;
    }
    carry != 0
}

/// `a -= b`, returning the borrow out.
fn sub_limbs(a: &mut Limbs, b: &Limbs) -> bool {
    let mut borrow = 0u64;
    for (x, y) in a.iter_mut().zip(b) {
        let d = u64::from(*x)
            .wrapping_sub(u64::from(*y))
            .wrapping_sub(borrow);
        *x = d as u32;
        borrow = d >> 63;
    }
    borrow != 0
}

/// `a >>= 1`, shifting `top` in as bit 255.
fn shr1(a: &mut Limbs, top: bool) {
    let mut carry = u32::from(top);
    for x in a.iter_mut().rev() {
        let low = *x & 1;
        *x = (*x >> 1) | (carry << 31);
        carry = low;
    }
}

fn is_even(a: &Limbs) -> bool {
    a.first().is_none_or(|x| x & 1 == 0)
}

/// `x / 2 mod n` for `x < n`.
fn half_mod_n(x: &mut Limbs) {
    if is_even(x) {
        shr1(x, false);
    } else {
        let carry = add_limbs(x, &N);
        shr1(x, carry);
    }
}

/// `x - y mod n` for `x, y < n`.
fn sub_mod_n(x: &mut Limbs, y: &Limbs) {
    if sub_limbs(x, y) {
        add_limbs(x, &N);
    }
}

/// `a^-1 mod n` for `0 < a < n`, by the binary extended Euclidean algorithm
/// (variable time: `a` is the public `s`). Invariants: `x1·a ≡ u`,
/// `x2·a ≡ v (mod n)`, `gcd(u, v) = 1`. `None` only if the loop outgrows its
/// bound, which a correct input never does (each pass removes a bit).
fn invert_mod_n(a: &Limbs) -> Option<Limbs> {
    const ONE: Limbs = [1, 0, 0, 0, 0, 0, 0, 0];
    let (mut u, mut v) = (*a, N);
    let (mut x1, mut x2) = (ONE, [0u32; 8]);
    // u + v loses at least one bit per pass: 512 passes and 512 halvings
    // are the most a 256-bit input can take.
    let mut budget = 2048u32;
    while u != ONE && v != ONE {
        if is_zero_limbs(&u) || is_zero_limbs(&v) {
            return None;
        }
        while is_even(&u) {
            shr1(&mut u, false);
            half_mod_n(&mut x1);
            budget = budget.checked_sub(1)?;
        }
        while is_even(&v) {
            shr1(&mut v, false);
            half_mod_n(&mut x2);
            budget = budget.checked_sub(1)?;
        }
        if lt(&u, &v) {
            sub_limbs(&mut v, &u);
            sub_mod_n(&mut x2, &x1);
        } else {
            sub_limbs(&mut u, &v);
            sub_mod_n(&mut x1, &x2);
        }
        budget = budget.checked_sub(1)?;
    }
    Some(if u == ONE { x1 } else { x2 })
}

/// `a·b mod n` for `a, b < n` (fiat's Montgomery multiply of `a·R` by `b`).
fn mul_mod_n(a: &Limbs, b: &Limbs) -> Limbs {
    let mut a_mont = fq::fiat_p256_scalar_montgomery_domain_field_element([0; 8]);
    fq::fiat_p256_scalar_to_montgomery(
        &mut a_mont,
        &fq::fiat_p256_scalar_non_montgomery_domain_field_element(*a),
    );
    let mut out = fq::fiat_p256_scalar_montgomery_domain_field_element([0; 8]);
    fq::fiat_p256_scalar_mul(
        &mut out,
        &a_mont,
        &fq::fiat_p256_scalar_montgomery_domain_field_element(*b),
    );
    out.0
}

// ---- points ------------------------------------------------------------------

/// An affine point (never infinity).
#[derive(Clone, Copy)]
struct Affine {
    x: Fe,
    y: Fe,
}

/// A Jacobian point `(X/Z², Y/Z³)`; `Z = 0` is the point at infinity.
#[derive(Clone, Copy)]
struct Jacobian {
    x: Fe,
    y: Fe,
    z: Fe,
}

impl Jacobian {
    fn infinity() -> Jacobian {
        Jacobian {
            x: one(),
            y: one(),
            z: ZERO,
        }
    }

    fn from_affine(p: &Affine) -> Jacobian {
        Jacobian {
            x: p.x,
            y: p.y,
            z: one(),
        }
    }

    fn is_infinity(&self) -> bool {
        is_zero(&self.z)
    }

    /// `2·self` (dbl-2001-b, a = -3: 3M + 5S). Infinity doubles to infinity
    /// (Z stays 0); P-256 has no point of order 2.
    fn double(&self) -> Jacobian {
        let delta = sqr(&self.z);
        let gamma = sqr(&self.y);
        let beta = mul(&self.x, &gamma);
        let t = mul(&sub(&self.x, &delta), &add(&self.x, &delta));
        let alpha = add(&add(&t, &t), &t);
        let beta2 = add(&beta, &beta);
        let beta4 = add(&beta2, &beta2);
        let beta8 = add(&beta4, &beta4);
        let x3 = sub(&sqr(&alpha), &beta8);
        let z3 = sub(&sub(&sqr(&add(&self.y, &self.z)), &gamma), &delta);
        let gg = sqr(&gamma);
        let gg2 = add(&gg, &gg);
        let gg4 = add(&gg2, &gg2);
        let gg8 = add(&gg4, &gg4);
        let y3 = sub(&mul(&alpha, &sub(&beta4, &x3)), &gg8);
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
        }
    }

    /// `self + (x, ±y)` (madd-2007-bl: 7M + 4S), every exceptional case
    /// handled: infinity, the same point (doubling), its negation.
    fn add_affine(&mut self, p: &Affine, negate: bool) {
        let y2 = if negate { neg(&p.y) } else { p.y };
        if self.is_infinity() {
            *self = Jacobian {
                x: p.x,
                y: y2,
                z: one(),
            };
            return;
        }
        let z1z1 = sqr(&self.z);
        let u2 = mul(&p.x, &z1z1);
        let s2 = mul(&y2, &mul(&self.z, &z1z1));
        let h = sub(&u2, &self.x);
        let rr = sub(&s2, &self.y);
        if is_zero(&h) {
            *self = if is_zero(&rr) {
                self.double()
            } else {
                Jacobian::infinity()
            };
            return;
        }
        let hh = sqr(&h);
        let hh2 = add(&hh, &hh);
        let i = add(&hh2, &hh2);
        let j = mul(&h, &i);
        let r = add(&rr, &rr);
        let v = mul(&self.x, &i);
        let x3 = sub(&sub(&sqr(&r), &j), &add(&v, &v));
        let y1j = mul(&self.y, &j);
        let y3 = sub(&mul(&r, &sub(&v, &x3)), &add(&y1j, &y1j));
        let z3 = sub(&sub(&sqr(&add(&self.z, &h)), &z1z1), &hh);
        *self = Jacobian {
            x: x3,
            y: y3,
            z: z3,
        };
    }

    /// `self + q` for two Jacobian points (add-2007-bl: 11M + 5S), every
    /// exceptional case handled. Table building only.
    fn add(&self, q: &Jacobian) -> Jacobian {
        if self.is_infinity() {
            return *q;
        }
        if q.is_infinity() {
            return *self;
        }
        let z1z1 = sqr(&self.z);
        let z2z2 = sqr(&q.z);
        let u1 = mul(&self.x, &z2z2);
        let u2 = mul(&q.x, &z1z1);
        let s1 = mul(&self.y, &mul(&q.z, &z2z2));
        let s2 = mul(&q.y, &mul(&self.z, &z1z1));
        let h = sub(&u2, &u1);
        let rr = sub(&s2, &s1);
        if is_zero(&h) {
            return if is_zero(&rr) {
                self.double()
            } else {
                Jacobian::infinity()
            };
        }
        let h2 = add(&h, &h);
        let i = sqr(&h2);
        let j = mul(&h, &i);
        let r = add(&rr, &rr);
        let v = mul(&u1, &i);
        let x3 = sub(&sub(&sqr(&r), &j), &add(&v, &v));
        let s1j = mul(&s1, &j);
        let y3 = sub(&mul(&r, &sub(&v, &x3)), &add(&s1j, &s1j));
        let z3 = mul(&sub(&sub(&sqr(&add(&self.z, &q.z)), &z1z1), &z2z2), &h);
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
        }
    }
}

/// Jacobian points to affine with one field inversion (Montgomery's trick).
/// `None` if any of them is infinity.
fn batch_to_affine(points: &[Jacobian]) -> Option<Vec<Affine>> {
    let mut prefix = Vec::with_capacity(points.len());
    let mut acc = one();
    for p in points {
        if p.is_infinity() {
            return None;
        }
        prefix.push(acc);
        acc = mul(&acc, &p.z);
    }
    let mut inv = invert(&acc);
    let mut out = vec![Affine { x: ZERO, y: ZERO }; points.len()];
    for ((o, p), pre) in out.iter_mut().zip(points).zip(&prefix).rev() {
        // inv = 1 / (z_0 ... z_i) here; times the prefix leaves 1 / z_i.
        let zinv = mul(&inv, pre);
        inv = mul(&inv, &p.z);
        let zinv2 = sqr(&zinv);
        o.x = mul(&p.x, &zinv2);
        o.y = mul(&p.y, &mul(&zinv2, &zinv));
    }
    Some(out)
}

// ---- fixed-base tables -----------------------------------------------------

/// Multiples of one point for signed fixed-window scalar multiplication
/// without doublings: window `i` holds `j·2^(w·i)·P` for `j = 1..=2^(w-1)`.
struct Comb {
    w: u32,
    table: Vec<Affine>,
}

impl Comb {
    /// `256/w + 1` windows: the signed recoding of a 256-bit scalar can
    /// carry one past the top bit.
    fn windows(w: u32) -> usize {
        256 / w as usize + 1
    }

    fn new(p: &Affine, w: u32) -> Option<Comb> {
        let half = 1usize << (w - 1);
        let windows = Comb::windows(w);
        let mut points = Vec::with_capacity(windows * half);
        let mut base = Jacobian::from_affine(p);
        for _ in 0..windows {
            let mut cur = base;
            points.push(cur);
            for _ in 1..half {
                cur = cur.add(&base);
                points.push(cur);
            }
            // cur = 2^(w-1)·base, so the next window's base is 2^w·base.
            base = cur.double();
        }
        // No entry is infinity: j·2^k is never a multiple of the prime n
        // for j < n; batch_to_affine refuses one anyway.
        Some(Comb {
            w,
            table: batch_to_affine(&points)?,
        })
    }

    /// `acc += k·P`. False if the recoding did not end without carry, which
    /// cannot happen for `k < 2^256` (then the result is not used).
    fn add_multiple(&self, acc: &mut Jacobian, k: &Limbs) -> bool {
        let w = self.w;
        let half = 1u32 << (w - 1);
        let mut carry = 0u32;
        for (i, window) in self.table.chunks_exact(half as usize).enumerate() {
            let bits = window_bits(k, i * w as usize, w) + carry;
            let (magnitude, negate) = if bits > half {
                carry = 1;
                ((1 << w) - bits, true)
            } else {
                carry = 0;
                (bits, false)
            };
            if magnitude == 0 {
                continue;
            }
            match window.get(magnitude as usize - 1) {
                Some(p) => acc.add_affine(p, negate),
                None => return false,
            }
        }
        carry == 0
    }
}

/// Bits `pos .. pos + w` of `k` (`w <= 8`); bits past 255 are zero.
fn window_bits(k: &Limbs, pos: usize, w: u32) -> u32 {
    let limb = pos / 32;
    let off = pos % 32;
    let low = k.get(limb).map_or(0, |x| u64::from(*x));
    let high = k.get(limb + 1).map_or(0, |x| u64::from(*x));
    ((((high << 32) | low) >> off) & ((1 << w) - 1)) as u32
}

/// Builds the generator's table now if it is not built yet (otherwise the
/// first verification of the VM does). Returns whether it is usable.
pub fn precompute_generator() -> bool {
    generator_table().is_some()
}

fn generator_table() -> Option<&'static Comb> {
    static G: OnceLock<Option<Comb>> = OnceLock::new();
    G.get_or_init(|| {
        let g = Affine {
            x: to_fe(&GX),
            y: to_fe(&GY),
        };
        Comb::new(&g, G_WINDOW)
    })
    .as_ref()
}

// ---- public key -------------------------------------------------------------

/// A validated P-256 public key; its table of multiples is built on the
/// first verification and shared by clones.
#[derive(Clone)]
pub struct EcPublicKey {
    point: [u8; 65],
    q: Affine,
    table: Arc<OnceLock<Option<Comb>>>,
}

impl PartialEq for EcPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.point == other.point
    }
}

impl Eq for EcPublicKey {}

impl std::fmt::Debug for EcPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EcPublicKey(P-256)")
    }
}

impl EcPublicKey {
    /// Validates an uncompressed point `0x04 || x || y` as ring does: 65
    /// bytes, both coordinates below p, on the curve `y² = x³ - 3x + b`
    /// (so not infinity, which has no such encoding). `None` otherwise: the
    /// JWKS parser then skips the key, which ring could never verify with.
    pub fn new(point: &[u8]) -> Option<EcPublicKey> {
        let encoded: [u8; 65] = point.try_into().ok()?;
        let (&tag, coords) = point.split_first()?;
        if tag != 0x04 {
            return None;
        }
        let (xb, yb) = coords.split_at_checked(32)?;
        let x = limbs_from_be(xb)?;
        let y = limbs_from_be(yb)?;
        if !lt(&x, &P) || !lt(&y, &P) {
            return None;
        }
        let (x, y) = (to_fe(&x), to_fe(&y));
        let three_x = add(&add(&x, &x), &x);
        let rhs = add(&sub(&mul(&sqr(&x), &x), &three_x), &to_fe(&B));
        if !fe_eq(&sqr(&y), &rhs) {
            return None;
        }
        Some(EcPublicKey {
            point: encoded,
            q: Affine { x, y },
            table: Arc::new(OnceLock::new()),
        })
    }

    /// The uncompressed point it was made from.
    pub fn point(&self) -> &[u8] {
        &self.point
    }

    /// Builds the key's table now if it is not built yet (otherwise the
    /// first verification does). For benchmarks and warm-up.
    pub fn precompute(&self) -> bool {
        self.table().is_some()
    }

    /// Whether the table is built.
    pub fn is_precomputed(&self) -> bool {
        self.table.get().is_some()
    }

    fn table(&self) -> Option<&Comb> {
        self.table
            .get_or_init(|| Comb::new(&self.q, Q_WINDOW))
            .as_ref()
    }

    /// Verifies a JWS ES256 signature (`r || s`, 64 bytes, big-endian) over
    /// `message`, hashed with SHA-256. Both `r` and `s` must be in `1..n`.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        if sig.len() != 64 {
            return false;
        }
        let Some((rb, sb)) = sig.split_at_checked(32) else {
            return false;
        };
        let (Some(r), Some(s)) = (limbs_from_be(rb), limbs_from_be(sb)) else {
            return false;
        };
        if is_zero_limbs(&r) || !lt(&r, &N) || is_zero_limbs(&s) || !lt(&s, &N) {
            return false;
        }
        let hash = digest::digest(&digest::SHA256, message);
        let Some(mut e) = limbs_from_be(hash.as_ref()) else {
            return false;
        };
        // e < 2^256 < 2n: one subtraction reduces it.
        if !lt(&e, &N) {
            sub_limbs(&mut e, &N);
        }
        let Some(w) = invert_mod_n(&s) else {
            return false;
        };
        // A wrong inverse would mean a bug; refuse rather than guess.
        if mul_mod_n(&s, &w) != [1, 0, 0, 0, 0, 0, 0, 0] {
            return false;
        }
        let u1 = mul_mod_n(&e, &w);
        let u2 = mul_mod_n(&r, &w);
        let (Some(g), Some(q)) = (generator_table(), self.table()) else {
            return false;
        };
        let mut acc = Jacobian::infinity();
        if !g.add_multiple(&mut acc, &u1) || !q.add_multiple(&mut acc, &u2) {
            return false;
        }
        if acc.is_infinity() {
            return false;
        }
        // x(R) mod n == r, with x(R) = X/Z² in [0, p): x = r, or x = r + n
        // when that is still below p.
        let z2 = sqr(&acc.z);
        if fe_eq(&mul(&to_fe(&r), &z2), &acc.x) {
            return true;
        }
        let mut r_plus_n = r;
        if !add_limbs(&mut r_plus_n, &N) && lt(&r_plus_n, &P) {
            return fe_eq(&mul(&to_fe(&r_plus_n), &z2), &acc.x);
        }
        false
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    fn from_fe(a: &Fe) -> Limbs {
        a.0
    }

    fn affine_of(p: &Jacobian) -> (Limbs, Limbs) {
        let a = batch_to_affine(&[*p]).unwrap();
        (from_fe(&a[0].x), from_fe(&a[0].y))
    }

    fn g() -> Affine {
        Affine {
            x: to_fe(&GX),
            y: to_fe(&GY),
        }
    }

    #[test]
    fn squaring_and_multiplying_agree_and_stay_below_p() {
        let mut p_minus_1 = P;
        p_minus_1[0] -= 1;
        let mut x = to_fe(&GX);
        for v in [
            [0u32; 8],
            [1, 0, 0, 0, 0, 0, 0, 0],
            p_minus_1,
            [0xffff_ffff; 8],
        ] {
            // [0xffff_ffff; 8] is above p: reduce it first through a multiply by one.
            let v = mul(&Fe(v), &one());
            assert_eq!(sqr(&v).0, mul(&v, &v).0);
            assert!(lt(&sqr(&v).0, &P));
        }
        for _ in 0..200 {
            x = add(&sqr(&x), &to_fe(&GY));
            assert_eq!(sqr(&x).0, mul(&x, &x).0);
        }
        // (p - 1)² = 1.
        assert_eq!(sqr(&Fe(p_minus_1)).0, one().0);
    }

    #[test]
    fn the_generator_is_a_valid_public_key() {
        let mut point = vec![4u8];
        for limbs in [GX, GY] {
            for l in limbs.iter().rev() {
                point.extend_from_slice(&l.to_be_bytes());
            }
        }
        assert!(EcPublicKey::new(&point).is_some());
        point[64] ^= 1;
        assert!(EcPublicKey::new(&point).is_none());
    }

    #[test]
    fn the_inverse_mod_n_times_its_input_is_one() {
        let mut n_minus_1 = N;
        n_minus_1[0] -= 1;
        for a in [
            [1, 0, 0, 0, 0, 0, 0, 0],
            [2, 0, 0, 0, 0, 0, 0, 0],
            n_minus_1,
            GX,
        ] {
            let w = invert_mod_n(&a).unwrap();
            assert_eq!(mul_mod_n(&a, &w), [1, 0, 0, 0, 0, 0, 0, 0], "{a:x?}");
        }
    }

    #[test]
    fn addition_doubling_and_the_field_inverse_agree() {
        let p = Jacobian::from_affine(&g());
        let two = p.double();
        assert_eq!(affine_of(&p.add(&p)), affine_of(&two));
        let mut mixed = p;
        mixed.add_affine(&g(), false);
        assert_eq!(affine_of(&mixed), affine_of(&two));
        let three = two.add(&p);
        let mut three_mixed = two;
        three_mixed.add_affine(&g(), false);
        assert_eq!(affine_of(&three), affine_of(&three_mixed));
        let mut zero = p;
        zero.add_affine(&g(), true);
        assert!(zero.is_infinity());
        let x = to_fe(&GX);
        assert_eq!(from_fe(&mul(&invert(&x), &x)), [1, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn a_table_multiple_of_n_minus_one_is_the_negated_point() {
        let mut n_minus_1 = N;
        n_minus_1[0] -= 1;
        for w in [4, 7, 8] {
            let comb = Comb::new(&g(), w).unwrap();
            let mut acc = Jacobian::infinity();
            assert!(comb.add_multiple(&mut acc, &n_minus_1));
            let (x, y) = affine_of(&acc);
            assert_eq!(x, GX);
            let mut minus_y = P;
            sub_limbs(&mut minus_y, &GY);
            assert_eq!(y, minus_y);
            let mut acc = Jacobian::from_affine(&g());
            assert!(comb.add_multiple(&mut acc, &n_minus_1));
            assert!(acc.is_infinity());
        }
    }

    #[test]
    fn table_sizes_are_as_documented() {
        assert_eq!(table_bytes(Q_WINDOW), 37 * 64 * 64);
        assert_eq!(table_bytes(G_WINDOW), 33 * 128 * 64);
        let comb = Comb::new(&g(), Q_WINDOW).unwrap();
        assert_eq!(comb.table.len() * 64, table_bytes(Q_WINDOW));
    }
}
