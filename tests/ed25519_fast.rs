//! Differential tests: `ed25519_fast` must give ring's verdict on every
//! Ed25519 signature it is shown: valid ones, bit flips in R, s, the key and
//! the message, edge values of s (L, L-1, 2^252, 2^253, s+L...), small-order,
//! mixed-order and non-canonically encoded keys, small-order and
//! non-canonical R, random bytes, and Wycheproof's Ed25519 vectors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity as _;
use mpass_guard::alg::Alg;
use mpass_guard::ed25519_fast::Ed25519PublicKey;
use mpass_guard::keys::{KeyMaterial, KeySet};
use mpass_guard::verify::{EddsaVerifier, TokenError, Untrusted};
use proptest::prelude::*;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use sha2::{Digest as _, Sha512};

/// L, the order of the base point, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// A deterministic generator, so every run tests the same cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        out
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn message(&mut self) -> Vec<u8> {
        let len = self.below(300);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn ring_verdict(public: &[u8], message: &[u8], sig: &[u8]) -> bool {
    UnparsedPublicKey::new(&signature::ED25519, public)
        .verify(message, sig)
        .is_ok()
}

/// Asserts that ours and ring agree; returns the verdict.
fn agree(key: &Ed25519PublicKey, message: &[u8], sig: &[u8], what: &str) -> bool {
    let ring = ring_verdict(key.encoded(), message, sig);
    let ours = key.verify(message, sig);
    assert_eq!(
        ours,
        ring,
        "{what}: key {} sig {} msg {} bytes",
        hex(key.encoded()),
        hex(sig),
        message.len()
    );
    ours
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A key pair whose secret scalar we know, so tests can sign for keys that
/// ring would not make (mixed-order, non-canonically encoded).
struct Signer {
    pair: Ed25519KeyPair,
    a: Scalar,
    public: [u8; 32],
}

fn signer(seed: [u8; 32]) -> Signer {
    let pair = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    let digest = Sha512::digest(seed);
    let mut a = [0u8; 32];
    a.copy_from_slice(&digest[..32]);
    a[0] &= 248;
    a[31] &= 127;
    a[31] |= 64;
    let a = Scalar::from_bytes_mod_order(a);
    let public: [u8; 32] = pair.public_key().as_ref().try_into().unwrap();
    assert_eq!(EdwardsPoint::mul_base(&a).compress().to_bytes(), public);
    Signer { pair, a, public }
}

fn h(r: &[u8], public: &[u8; 32], message: &[u8]) -> Scalar {
    let mut d = Sha512::new();
    d.update(r);
    d.update(public);
    d.update(message);
    Scalar::from_bytes_mod_order_wide(&d.finalize().into())
}

/// An RFC 8032 signature by secret scalar `a` with nonce `r`, hashed with
/// `public` as the key's bytes (whatever point they encode).
fn sign_as(a: &Scalar, public: &[u8; 32], r: &Scalar, message: &[u8]) -> [u8; 64] {
    let big_r = EdwardsPoint::mul_base(r).compress().to_bytes();
    let s = r + h(&big_r, public, message) * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&big_r);
    sig[32..].copy_from_slice(s.as_bytes());
    sig
}

/// Adds two little-endian 256-bit numbers, dropping the carry out.
fn add_le(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = v as u8;
        carry = v >> 8;
    }
    out
}

fn with_s(sig: &[u8; 64], s: &[u8; 32]) -> [u8; 64] {
    let mut out = *sig;
    out[32..].copy_from_slice(s);
    out
}

#[test]
fn valid_signatures_from_random_keys_verify_and_every_bit_flip_gets_rings_verdict() {
    let mut rng = Rng(1);
    for k in 0..24 {
        let signer = signer(rng.bytes());
        let key = Ed25519PublicKey::new(signer.public);
        for _ in 0..8 {
            let message = rng.message();
            let sig: [u8; 64] = signer.pair.sign(&message).as_ref().try_into().unwrap();
            assert!(agree(&key, &message, &sig, "valid"), "key {k}");
            // One flipped bit anywhere in R or s.
            for _ in 0..6 {
                let mut bad = sig;
                let bit = rng.below(512);
                bad[bit / 8] ^= 1 << (bit % 8);
                assert!(!agree(&key, &message, &bad, "flipped signature bit"));
            }
            // One flipped bit in the message.
            if !message.is_empty() {
                let mut m = message.clone();
                let bit = rng.below(m.len() * 8);
                m[bit / 8] ^= 1 << (bit % 8);
                assert!(!agree(&key, &m, &sig, "flipped message bit"));
            }
            // One flipped bit in the key: another point (or none).
            let mut public = signer.public;
            let bit = rng.below(256);
            public[bit / 8] ^= 1 << (bit % 8);
            agree(
                &Ed25519PublicKey::new(public),
                &message,
                &sig,
                "flipped key bit",
            );
        }
    }
}

#[test]
fn a_wrong_length_signature_is_refused_like_ring() {
    let signer = signer([9; 32]);
    let key = Ed25519PublicKey::new(signer.public);
    let sig = signer.pair.sign(b"m");
    let sig = sig.as_ref();
    for len in [0, 1, 32, 63] {
        assert!(!agree(&key, b"m", &sig[..len], "short"));
    }
    let mut long = sig.to_vec();
    long.push(0);
    assert!(!agree(&key, b"m", &long, "long"));
}

#[test]
fn s_must_be_below_the_group_order_whatever_the_equation_says() {
    let mut rng = Rng(2);
    let signer = signer(rng.bytes());
    let key = Ed25519PublicKey::new(signer.public);
    let message = b"header.payload";
    let sig: [u8; 64] = signer.pair.sign(message).as_ref().try_into().unwrap();
    let s: [u8; 32] = sig[32..].try_into().unwrap();
    // s + L and s + 2L satisfy the group equation but are not canonical.
    let s_plus_l = add_le(&s, &L);
    let s_plus_2l = add_le(&s_plus_l, &L);
    assert!(!agree(&key, message, &with_s(&sig, &s_plus_l), "s + L"));
    assert!(!agree(&key, message, &with_s(&sig, &s_plus_2l), "s + 2L"));
    let mut l_minus_1 = L;
    l_minus_1[0] -= 1;
    let mut l_plus_1 = L;
    l_plus_1[0] += 1;
    let pow2 = |bit: usize| {
        let mut v = [0u8; 32];
        v[bit / 8] = 1 << (bit % 8);
        v
    };
    let edges = [
        [0u8; 32],
        pow2(0),
        L,
        l_minus_1,
        l_plus_1,
        pow2(252),
        pow2(253),
        pow2(254),
        pow2(255),
        [0xff; 32],
        {
            let mut v = s;
            v[31] |= 0x80;
            v
        },
        {
            let mut v = s;
            v[31] |= 0xe0;
            v
        },
    ];
    for e in edges {
        agree(
            &key,
            message,
            &with_s(&sig, &e),
            &format!("s = {}", hex(&e)),
        );
    }
    // With R = [s]B for the identity key, every canonical s verifies (and
    // only those): the edge values decide alone.
    let identity = EdwardsPoint::identity().compress().to_bytes();
    let id_key = Ed25519PublicKey::new(identity);
    for e in edges {
        let Some(scalar) = Option::<Scalar>::from(Scalar::from_canonical_bytes(e)) else {
            let mut forged = [0u8; 64];
            forged[..32]
                .copy_from_slice(EdwardsPoint::mul_base(&Scalar::ZERO).compress().as_bytes());
            forged[32..].copy_from_slice(&e);
            assert!(!agree(
                &id_key,
                message,
                &forged,
                "non-canonical s, identity key"
            ));
            continue;
        };
        let mut forged = [0u8; 64];
        forged[..32].copy_from_slice(EdwardsPoint::mul_base(&scalar).compress().as_bytes());
        forged[32..].copy_from_slice(&e);
        assert!(agree(
            &id_key,
            message,
            &forged,
            "canonical s, identity key"
        ));
    }
}

/// The 8 points of small order, plus every other encoding that decodes to
/// one of them: the sign bit set on x = 0, and y >= p (non-canonical).
fn small_order_encodings() -> Vec<[u8; 32]> {
    let mut out: Vec<[u8; 32]> = EIGHT_TORSION
        .iter()
        .map(|t| t.compress().to_bytes())
        .collect();
    for base in out.clone() {
        let mut flipped = base;
        flipped[31] ^= 0x80;
        out.push(flipped);
    }
    out.extend(non_canonical_encodings());
    out
}

/// Every encoding with y in [p, 2^255), both sign bits: y - p is 0..18.
fn non_canonical_encodings() -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    for k in 0u8..19 {
        // p + k, little-endian: p = 2^255 - 19.
        let mut y = [0xffu8; 32];
        y[31] = 0x7f;
        y[0] = 0xed + k;
        for sign in [0u8, 0x80] {
            let mut e = y;
            e[31] |= sign;
            out.push(e);
        }
    }
    out
}

#[test]
fn small_order_and_non_canonical_keys_are_used_as_ring_uses_them() {
    let mut rng = Rng(3);
    let mut accepted = 0;
    for encoding in small_order_encodings() {
        let key = Ed25519PublicKey::new(encoding);
        assert_eq!(
            key.is_point(),
            CompressedEdwardsY(encoding).decompress().is_some()
        );
        let point = CompressedEdwardsY(encoding).decompress();
        for _ in 0..8 {
            let message = rng.message();
            let s = Scalar::from_bytes_mod_order(rng.bytes());
            // R = [s]B - [j]A verifies exactly when h = j on A's order.
            for j in 0u64..8 {
                let r = match point {
                    Some(p) => EdwardsPoint::mul_base(&s) - p * Scalar::from(j),
                    None => EdwardsPoint::mul_base(&s),
                };
                let mut sig = [0u8; 64];
                sig[..32].copy_from_slice(r.compress().as_bytes());
                sig[32..].copy_from_slice(s.as_bytes());
                if agree(&key, &message, &sig, "small-order key") {
                    accepted += 1;
                }
            }
            let junk: [u8; 64] = rng.bytes();
            agree(&key, &message, &junk, "small-order key, random signature");
        }
    }
    assert!(accepted > 50, "only {accepted} signatures verified");
}

#[test]
fn mixed_order_keys_verify_exactly_when_ring_says_so() {
    let mut rng = Rng(4);
    for t in EIGHT_TORSION {
        let s = signer(rng.bytes());
        let mixed = (EdwardsPoint::mul_base(&s.a) + t).compress().to_bytes();
        let key = Ed25519PublicKey::new(mixed);
        let (mut yes, mut no) = (0, 0);
        for _ in 0..48 {
            let message = rng.message();
            let nonce = Scalar::from_bytes_mod_order(rng.bytes());
            let sig = sign_as(&s.a, &mixed, &nonce, &message);
            if agree(&key, &message, &sig, "mixed-order key") {
                yes += 1;
            } else {
                no += 1;
            }
        }
        // R' = R - [h]T: equal to R only when [h]T is the identity.
        if t == EdwardsPoint::identity() {
            assert_eq!(no, 0);
        } else {
            assert!(yes > 0 && no > 0, "torsion {t:?}: {yes} yes, {no} no");
        }
    }
}

#[test]
fn r_is_compared_as_bytes_so_a_non_canonical_r_fails_and_a_small_order_r_may_pass() {
    let mut rng = Rng(5);
    let s = signer(rng.bytes());
    let key = Ed25519PublicKey::new(s.public);
    let message = b"header.payload";
    // R = identity (nonce 0): valid, with the canonical encoding.
    let sig = sign_as(&s.a, &s.public, &Scalar::ZERO, message);
    assert!(agree(&key, message, &sig, "identity R"));
    // The same R written otherwise (sign bit on x = 0, or y = p + 1), with
    // s recomputed for the new bytes: the equation holds, the bytes differ.
    let mut sign_bit = [0u8; 32];
    sign_bit[0] = 1;
    sign_bit[31] = 0x80;
    let mut y_p_plus_1 = [0xffu8; 32];
    y_p_plus_1[0] = 0xee;
    y_p_plus_1[31] = 0x7f;
    for r in [sign_bit, y_p_plus_1] {
        let sc = h(&r, &s.public, message) * s.a;
        let mut forged = [0u8; 64];
        forged[..32].copy_from_slice(&r);
        forged[32..].copy_from_slice(sc.as_bytes());
        assert!(!agree(&key, message, &forged, "non-canonical R"));
    }
    // Every other R: small-order encodings and R that are no point.
    for r in small_order_encodings() {
        let mut forged = sig;
        forged[..32].copy_from_slice(&r);
        agree(&key, message, &forged, "small-order R");
    }
}

#[test]
fn random_bytes_as_key_and_signature_get_rings_verdict() {
    let mut rng = Rng(6);
    let mut points = 0;
    for _ in 0..64 {
        let public: [u8; 32] = rng.bytes();
        let key = Ed25519PublicKey::new(public);
        if key.is_point() {
            points += 1;
        }
        for _ in 0..4 {
            let sig: [u8; 64] = rng.bytes();
            assert!(!agree(&key, &rng.message(), &sig, "random"));
        }
    }
    // About half of all y have a point: both outcomes were exercised.
    assert!((10..54).contains(&points), "{points}");
}

#[test]
fn every_wycheproof_ed25519_vector_gets_rings_verdict_and_rings_verdict_is_wycheproofs() {
    use wycheproof::eddsa::{TestName, TestSet};
    use wycheproof::TestResult;
    let set = TestSet::load(TestName::Ed25519).unwrap();
    let mut count = 0;
    for group in set.test_groups {
        let public: &[u8] = group.key.pk.as_ref();
        let Ok(public) = <[u8; 32]>::try_from(public) else {
            // The JWKS parser refuses a key that is not 32 bytes.
            for test in &group.tests {
                assert!(!ring_verdict(public, &test.msg, &test.sig));
            }
            continue;
        };
        let key = Ed25519PublicKey::new(public);
        for test in &group.tests {
            let what = format!("wycheproof tc {} ({})", test.tc_id, test.comment);
            let verdict = agree(&key, &test.msg, &test.sig, &what);
            let want = match test.result {
                TestResult::Valid => true,
                TestResult::Invalid => false,
                TestResult::Acceptable => verdict,
            };
            assert_eq!(verdict, want, "{what}");
            count += 1;
        }
    }
    assert!(count > 100, "{count} vectors");
}

#[test]
fn a_jwks_key_that_is_no_curve_point_loads_and_its_tokens_get_a_bad_signature_both_ways() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    // y = 2: no x on the curve. ring keeps such a key and fails every
    // signature; the JWKS parser must keep it too (no new unknown_key).
    let mut bytes = [0u8; 32];
    bytes[0] = 2;
    assert!(CompressedEdwardsY(bytes).decompress().is_none());
    let jwks = serde_json::json!({"keys": [{
        "kty": "OKP", "crv": "Ed25519", "kid": "bad", "x": URL_SAFE_NO_PAD.encode(bytes),
    }]});
    let (set, warnings) = KeySet::parse(jwks.to_string().as_bytes(), &[Alg::EdDSA]).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let KeyMaterial::Ed25519 { precomputed, .. } = &set.keys()[0].material else {
        panic!("not an Ed25519 key");
    };
    assert!(!precomputed.is_point());
    let path = format!("{}/tests/keys/ed25519.pem", env!("CARGO_MANIFEST_DIR"));
    let signer = mpass_guard::mint::load_pem(path).unwrap();
    let token = mpass_guard::mint::sign_compact(
        Alg::EdDSA,
        &signer,
        &serde_json::json!({"alg": "EdDSA", "kid": "bad"}),
        br#"{"iss":"https://op.example","exp":1795698000}"#,
    )
    .unwrap();
    for eddsa in [EddsaVerifier::Fast, EddsaVerifier::Ring] {
        let got = Untrusted::decode(&token, 16 * 1024)
            .unwrap()
            .verify_with_keyset_using(&set, eddsa)
            .map(|_| ());
        assert_eq!(got, Err(TokenError::BadSignature), "{eddsa:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_key_message_and_signature_bytes_get_rings_verdict(
        public in any::<[u8; 32]>(),
        message in proptest::collection::vec(any::<u8>(), 0..200),
        r in any::<[u8; 32]>(),
        s in any::<[u8; 32]>(),
        valid_key in any::<bool>(),
    ) {
        // Half the cases with a real key and a valid signature, then the
        // random R or s spliced in; half with bytes only.
        let mut sig = [0u8; 64];
        let key = if valid_key {
            let signer = signer(public);
            sig.copy_from_slice(signer.pair.sign(&message).as_ref());
            prop_assert!(agree(&Ed25519PublicKey::new(signer.public), &message, &sig, "valid"));
            if r[0] & 1 == 0 { sig[..32].copy_from_slice(&r) } else { sig[32..].copy_from_slice(&s) }
            Ed25519PublicKey::new(signer.public)
        } else {
            sig[..32].copy_from_slice(&r);
            sig[32..].copy_from_slice(&s);
            Ed25519PublicKey::new(public)
        };
        agree(&key, &message, &sig, "proptest");
    }
}
