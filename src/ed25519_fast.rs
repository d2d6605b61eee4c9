//! Ed25519 signature verification (RFC 8032, JWS `EdDSA`) with per-key
//! precomputation, for wasm32 in V8.
//!
//! Why not ring: on wasm32 ring runs BoringSSL's portable C, which on every
//! call decompresses the public key `A` (a field exponentiation) and then
//! computes `[s]B - [h]A` with a variable-base double-scalar multiplication
//! (~253 doublings). Here `A` is decompressed once, when the JWKS is parsed
//! ([`Ed25519PublicKey::new`]), and a comb table of multiples of `-A` is
//! built from it (curve25519-dalek's [`EdwardsBasepointTable`], the same
//! layout as its table for the base point `B`): `[h](-A)` then costs 64
//! table additions and 4 doublings, like `[s]B` with dalek's static table.
//!
//! The table (30 KB) is built on the key's first verification, not at
//! parse: it costs about as much as 20-30 verifications (256 field
//! inversions), and a JWKS may publish up to [`crate::keys::MAX_KEYS`]
//! keys of which a VM may never use most (next or retired keys, other
//! VMs' traffic). Built once, it lives as long as the key set.
//!
//! **Verdicts are ring's, exactly** (ring is the reference, and Envoy's
//! `jwt_authn` uses BoringSSL, whose rules ring's Ed25519 code is). The
//! rules, each matched on purpose (see `tests/ed25519_fast.rs`: differential
//! against ring, Wycheproof's vectors):
//! - the signature is 64 bytes `R || s`; `s` must be canonical (`s < L`),
//!   else the signature fails;
//! - `A` is decoded as ring's `x25519_ge_frombytes_vartime` does: `y` is
//!   taken mod p (a non-canonical `y >= p` is accepted, as in ring), a `y`
//!   with no `x` on the curve fails, and `x = 0` with the sign bit set is
//!   accepted as `x = 0`. No check of the point's order: small-order and
//!   mixed-order keys are used as they are, as ring does;
//! - `h = SHA-512(R || A || M) mod L`, with `A` the key's bytes as published;
//! - the equation is cofactorless: `[s]B - [h]A` is encoded canonically and
//!   compared with `R` **as bytes**, so `R` is never decoded: a
//!   non-canonical `R` fails, a small-order `R` is fine if the bytes match.
//!
//! ring refuses an undecodable key when it verifies, not when it parses
//! (`UnparsedPublicKey` holds bytes), so such a key is kept here too, with
//! no table, and every signature then fails: the JWKS parser accepts the
//! same keys as before and the same tokens get the same `bad_signature`.
//!
//! **Not constant time, where that is free**: verification handles only
//! public data (key, message, signature). dalek's table lookups happen to be
//! constant time; nothing here relies on it. Do not reuse this for signing.
//!
//! SHA-512 is ring's: in V8 it hashes `R || A || M` of a typical ID token
//! in ~0.9 µs against ~1.3 µs for the `sha2` crate (`bench/crypto`; for
//! SHA-256, `rsa_fast` found the reverse). No `unsafe`, no panicking
//! operation.

use std::fmt;
use std::sync::{Arc, OnceLock};

use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsBasepointTable, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::BasepointTable as _;
use ring::digest;

/// Bytes of one key's table (dalek's radix-16 comb table: 32 x 8 points in
/// affine Niels form, three field elements each).
pub const TABLE_BYTES: usize = std::mem::size_of::<EdwardsBasepointTable>();

/// An Ed25519 public key with its table of multiples, built once.
#[derive(Clone)]
pub struct Ed25519PublicKey {
    /// The key as published: hashed into `h`, compared for equality.
    encoded: [u8; 32],
    /// `-A` and its multiples; `None` if the bytes are not a curve point
    /// (then every verification fails, as with ring). Shared, not copied,
    /// when a key set is cloned.
    neg_a: Option<Arc<NegA>>,
}

/// `-A`, decoded at parse, and its table, built on first use.
struct NegA {
    point: EdwardsPoint,
    table: OnceLock<EdwardsBasepointTable>,
}

impl NegA {
    fn table(&self) -> &EdwardsBasepointTable {
        self.table
            .get_or_init(|| EdwardsBasepointTable::create(&self.point))
    }
}

// Equal keys are equal bytes: the table is a function of them.
impl PartialEq for Ed25519PublicKey {
    fn eq(&self, other: &Ed25519PublicKey) -> bool {
        self.encoded == other.encoded
    }
}

impl Eq for Ed25519PublicKey {}

impl fmt::Debug for Ed25519PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.neg_a {
            Some(_) => f.write_str("Ed25519PublicKey"),
            None => f.write_str("Ed25519PublicKey(not a curve point)"),
        }
    }
}

impl Ed25519PublicKey {
    /// Decodes the key (its table is built on first use). Never fails:
    /// bytes that are not a point make a key that verifies nothing (see the
    /// module docs).
    pub fn new(encoded: [u8; 32]) -> Ed25519PublicKey {
        let neg_a = CompressedEdwardsY(encoded).decompress().map(|a| {
            Arc::new(NegA {
                point: -a,
                table: OnceLock::new(),
            })
        });
        Ed25519PublicKey { encoded, neg_a }
    }

    /// Builds the key's table now if it is not built yet (the first
    /// verification does it otherwise); false if the key is no point.
    pub fn precompute(&self) -> bool {
        self.neg_a.as_ref().map(|n| n.table()).is_some()
    }

    /// True once the table is built.
    pub fn is_precomputed(&self) -> bool {
        self.neg_a.as_ref().is_some_and(|n| n.table.get().is_some())
    }

    /// The key's 32 bytes, as published.
    pub fn encoded(&self) -> &[u8; 32] {
        &self.encoded
    }

    /// True if the bytes decode to a curve point (ring's rule): a key for
    /// which this is false verifies no signature.
    pub fn is_point(&self) -> bool {
        self.neg_a.is_some()
    }

    /// Verifies a 64-byte `R || s` signature over `message`: true exactly
    /// when ring's `ED25519` verification says so.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Some(neg_a) = &self.neg_a else {
            return false;
        };
        if signature.len() != 64 {
            return false;
        }
        let Some((r, s)) = signature.split_first_chunk::<32>() else {
            return false;
        };
        let Ok(s) = <[u8; 32]>::try_from(s) else {
            return false;
        };
        // s < L, else the signature is malleable: refused, as ring does.
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s)) else {
            return false;
        };
        let mut hash = digest::Context::new(&digest::SHA512);
        hash.update(r);
        hash.update(&self.encoded);
        hash.update(message);
        let Ok(wide) = <[u8; 64]>::try_from(hash.finish().as_ref()) else {
            return false;
        };
        let h = Scalar::from_bytes_mod_order_wide(&wide);
        // [s]B + [h](-A), encoded canonically, must be R's bytes.
        let check = ED25519_BASEPOINT_TABLE.mul_base(&s) + neg_a.table().mul_base(&h);
        check.compress().as_bytes() == r
    }
}

#[cfg(test)]
// Tests may panic: a panic is a failed test, not a crashed VM.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    fn pair(seed: u8) -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap()
    }

    #[test]
    fn a_signature_made_by_ring_verifies_and_a_changed_message_does_not() {
        let kp = pair(7);
        let key = Ed25519PublicKey::new(kp.public_key().as_ref().try_into().unwrap());
        let sig = kp.sign(b"header.payload");
        assert!(key.is_point());
        assert!(!key.is_precomputed());
        assert!(key.verify(b"header.payload", sig.as_ref()));
        assert!(key.is_precomputed());
        // A clone shares the table.
        assert!(key.clone().is_precomputed());
        assert!(!key.verify(b"header.payloae", sig.as_ref()));
        assert!(!key.verify(b"header.payload", &sig.as_ref()[..63]));
    }

    #[test]
    fn bytes_that_are_no_curve_point_make_a_key_that_verifies_nothing() {
        // y = 2 has no x on the curve ((y^2-1)/(dy^2+1) is not a square).
        let mut bytes = [0u8; 32];
        bytes[0] = 2;
        let key = Ed25519PublicKey::new(bytes);
        assert!(!key.is_point());
        assert!(!key.precompute());
        assert!(!key.verify(b"m", &[0u8; 64]));
        assert_eq!(format!("{key:?}"), "Ed25519PublicKey(not a curve point)");
    }

    #[test]
    fn keys_compare_by_their_bytes() {
        let a = Ed25519PublicKey::new([1; 32]);
        assert_eq!(a, a.clone());
        assert_ne!(a, Ed25519PublicKey::new([3; 32]));
    }
}
