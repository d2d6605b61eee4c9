//! Differential tests: `p256_fast` must agree with ring on every ES256
//! signature it is shown (valid, bit-flipped, out-of-range and edge values
//! of `r` and `s`, another key, another message), and give Wycheproof's
//! verdict on every ECDSA P-256 / SHA-256 P1363 vector.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mpass_guard::p256_fast::EcPublicKey;
use proptest::prelude::*;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, UnparsedPublicKey};

/// The group order n and the field prime p, big-endian.
const N: [u8; 32] = hex32("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
const P: [u8; 32] = hex32("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff");

const fn hex32(s: &str) -> [u8; 32] {
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        _ => c - b'a' + 10,
    }
}

struct TestKey {
    pair: EcdsaKeyPair,
    point: Vec<u8>,
    fast: EcPublicKey,
}

fn new_key(rng: &SystemRandom) -> TestKey {
    let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), rng).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    let fast = EcPublicKey::new(&point).unwrap();
    TestKey { pair, point, fast }
}

fn keys() -> &'static [TestKey] {
    static KEYS: std::sync::OnceLock<Vec<TestKey>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let rng = SystemRandom::new();
        (0..4).map(|_| new_key(&rng)).collect()
    })
}

fn ring_verdict(point: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
        .verify(msg, sig)
        .is_ok()
}

fn sign(key: &TestKey, msg: &[u8]) -> Vec<u8> {
    key.pair
        .sign(&SystemRandom::new(), msg)
        .unwrap()
        .as_ref()
        .to_vec()
}

fn agree(key: &TestKey, msg: &[u8], sig: &[u8]) -> bool {
    let ours = key.fast.verify(msg, sig);
    assert_eq!(
        ours,
        ring_verdict(&key.point, msg, sig),
        "p256_fast and ring disagree"
    );
    ours
}

/// Big-endian 256-bit `a - b` (wrapping) and `a + b` (wrapping).
fn sub_be(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = i16::from(d < 0);
        out[i] = d.rem_euclid(256) as u8;
    }
    out
}

fn add_be(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in (0..32).rev() {
        let s = u16::from(a[i]) + u16::from(b[i]) + carry;
        carry = s >> 8;
        out[i] = s as u8;
    }
    out
}

fn small(v: u8) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[31] = v;
    out
}

#[test]
fn valid_signatures_from_random_keys_verify_and_the_other_keys_refuse_them() {
    for (i, key) in keys().iter().enumerate() {
        for len in [0usize, 1, 55, 64, 300] {
            let msg: Vec<u8> = (0..len).map(|j| (j * 7 + i) as u8).collect();
            let sig = sign(key, &msg);
            assert!(agree(key, &msg, &sig), "key {i}, message of {len} bytes");
            for (j, other) in keys().iter().enumerate() {
                if i != j {
                    assert!(!agree(other, &msg, &sig));
                }
            }
            let mut other_msg = msg.clone();
            other_msg.push(0);
            assert!(!agree(key, &other_msg, &sig));
        }
    }
}

#[test]
fn every_single_bit_flip_of_a_signature_gives_rings_verdict() {
    let key = &keys()[0];
    let msg = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0";
    let sig = sign(key, msg);
    for bit in 0..sig.len() * 8 {
        let mut bad = sig.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(!agree(key, msg, &bad), "bit {bit}");
    }
}

#[test]
fn the_malleated_signature_r_and_n_minus_s_verifies_in_both() {
    // ECDSA accepts (r, s) and (r, n - s) alike; neither verifier
    // normalises s, so both must accept both.
    let key = &keys()[1];
    let msg = b"malleable";
    let sig = sign(key, msg);
    let s: [u8; 32] = sig[32..].try_into().unwrap();
    let mut other = sig[..32].to_vec();
    other.extend_from_slice(&sub_be(&N, &s));
    assert!(agree(key, msg, &other));
}

#[test]
fn edge_values_of_r_and_s_give_rings_verdict() {
    let key = &keys()[2];
    let msg = b"edges";
    let sig = sign(key, msg);
    let r: [u8; 32] = sig[..32].try_into().unwrap();
    let s: [u8; 32] = sig[32..].try_into().unwrap();
    let one = small(1);
    let max = [0xffu8; 32];
    let p_minus_n = sub_be(&P, &N);
    let mut high_bit = small(1);
    high_bit[0] = 0x80;
    let edges = [
        [0u8; 32],
        one,
        small(2),
        sub_be(&N, &one),
        N,
        add_be(&N, &one),
        p_minus_n,
        sub_be(&p_minus_n, &one),
        add_be(&p_minus_n, &one),
        sub_be(&P, &one),
        P,
        max,
        high_bit,
        add_be(&r, &N),
        sub_be(&r, &N),
        add_be(&s, &N),
    ];
    let mut cases = Vec::new();
    for e in &edges {
        cases.push((*e, s));
        cases.push((r, *e));
        cases.push((*e, *e));
    }
    for (i, (r2, s2)) in cases.iter().enumerate() {
        let mut bad = r2.to_vec();
        bad.extend_from_slice(s2);
        agree(key, msg, &bad);
        assert!(!key.fast.verify(msg, &bad), "case {i}");
    }
    // Lengths other than 64 are refused (the JWS form is fixed).
    for len in [0, 63, 65, 72] {
        let mut odd = sig.clone();
        odd.resize(len, 0);
        assert!(!agree(key, msg, &odd), "{len} bytes");
    }
}

#[test]
fn points_ring_refuses_are_refused_when_the_key_is_made() {
    let good = keys()[0].point.clone();
    let mut cases = Vec::new();
    let mut off_curve = good.clone();
    off_curve[64] ^= 1;
    cases.push(off_curve);
    let mut compressed = good.clone();
    compressed[0] = 0x02;
    cases.push(compressed);
    cases.push(good[..64].to_vec());
    cases.push(vec![0x04; 65]);
    let mut zero = vec![0u8; 65];
    zero[0] = 0x04;
    cases.push(zero);
    // x + p and y + p, when they still fit in 32 bytes, encode the same
    // point with out-of-range coordinates: refused by both.
    let x: [u8; 32] = good[1..33].try_into().unwrap();
    let y: [u8; 32] = good[33..].try_into().unwrap();
    for (xx, yy) in [(add_be(&x, &P), y), (x, add_be(&y, &P))] {
        let mut p = vec![0x04];
        p.extend_from_slice(&xx);
        p.extend_from_slice(&yy);
        cases.push(p);
    }
    let msg = b"m";
    let sig = sign(&keys()[0], msg);
    for (i, point) in cases.iter().enumerate() {
        assert!(EcPublicKey::new(point).is_none(), "case {i}");
        assert!(!ring_verdict(point, msg, &sig), "case {i}");
    }
}

#[test]
fn a_key_verifies_before_and_after_its_table_is_built_and_clones_share_it() {
    let rng = SystemRandom::new();
    let key = new_key(&rng);
    let copy = key.fast.clone();
    assert!(!copy.is_precomputed());
    let sig = sign(&key, b"x");
    assert!(key.fast.verify(b"x", &sig));
    assert!(copy.is_precomputed(), "the table is shared");
    assert!(copy.verify(b"x", &sig));
    assert_eq!(copy, key.fast);
}

#[test]
fn every_wycheproof_ecdsa_p256_sha256_p1363_vector_gets_its_verdict() {
    use wycheproof::ecdsa::{TestName, TestSet};
    use wycheproof::TestResult;
    let set = TestSet::load(TestName::EcdsaSecp256r1Sha256P1363).unwrap();
    let (mut tests, mut valid) = (0, 0);
    for group in &set.test_groups {
        let point: &[u8] = &group.key.key;
        let fast = EcPublicKey::new(point);
        for t in &group.tests {
            let (msg, sig): (&[u8], &[u8]) = (&t.msg, &t.sig);
            let ours = fast.as_ref().is_some_and(|k| k.verify(msg, sig));
            let ring = ring_verdict(point, msg, sig);
            assert_eq!(ours, ring, "tc {} ({}): ring disagrees", t.tc_id, t.comment);
            match t.result {
                TestResult::Valid => {
                    assert!(ours, "tc {} ({}) must verify", t.tc_id, t.comment);
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert!(!ours, "tc {} ({}) must not verify", t.tc_id, t.comment)
                }
                // Acceptable: either verdict, as long as ring's.
                _ => {}
            }
            tests += 1;
        }
    }
    assert!(tests > 200 && valid > 50, "{tests} tests, {valid} valid");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_messages_and_corruptions_give_rings_verdict(
        msg in proptest::collection::vec(any::<u8>(), 0..200),
        which in 0usize..4,
        flip in 0usize..512,
        junk in proptest::collection::vec(any::<u8>(), 64),
    ) {
        let key = &keys()[which];
        let sig = sign(key, &msg);
        prop_assert!(agree(key, &msg, &sig));
        let mut bad = sig.clone();
        bad[flip / 8] ^= 1 << (flip % 8);
        prop_assert!(!agree(key, &msg, &bad));
        agree(key, &msg, &junk);
    }
}
