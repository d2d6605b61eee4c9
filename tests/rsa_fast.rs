//! Differential tests: `rsa_fast` must agree with ring on every RSA
//! signature it is shown (valid, corrupted, out of range, wrong key), for
//! RS256/384/512 and PS256/384/512 and 2048- to 4096-bit keys.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mpass_guard::alg::Alg;
use mpass_guard::mint::{load_pem, sign_bytes, SigningKey};
use mpass_guard::rsa_fast::{Hash, Padding, RsaPublicKey};
use proptest::prelude::*;
use ring::signature::{self, RsaPublicKeyComponents};

const RSA_ALGS: [Alg; 6] = [
    Alg::RS256,
    Alg::RS384,
    Alg::RS512,
    Alg::PS256,
    Alg::PS384,
    Alg::PS512,
];

struct TestKey {
    name: &'static str,
    signer: SigningKey,
    n: Vec<u8>,
    e: Vec<u8>,
    fast: RsaPublicKey,
}

fn test_key(name: &'static str) -> TestKey {
    let path = format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    let signer = load_pem(path).unwrap();
    let SigningKey::Rsa(pair) = &signer else {
        panic!("{name} is not RSA");
    };
    let c = RsaPublicKeyComponents::<Vec<u8>>::from(ring::signature::KeyPair::public_key(pair));
    let fast = RsaPublicKey::new(&c.n, &c.e).unwrap();
    TestKey {
        name,
        n: c.n,
        e: c.e,
        signer,
        fast,
    }
}

fn keys() -> Vec<TestKey> {
    ["rsa-a.pem", "rsa-b.pem", "rsa-3072.pem", "rsa-4096.pem"]
        .into_iter()
        .map(test_key)
        .collect()
}

fn params(alg: Alg) -> (Padding, Hash, &'static signature::RsaParameters) {
    match alg {
        Alg::RS256 => (
            Padding::Pkcs1v15,
            Hash::Sha256,
            &signature::RSA_PKCS1_2048_8192_SHA256,
        ),
        Alg::RS384 => (
            Padding::Pkcs1v15,
            Hash::Sha384,
            &signature::RSA_PKCS1_2048_8192_SHA384,
        ),
        Alg::RS512 => (
            Padding::Pkcs1v15,
            Hash::Sha512,
            &signature::RSA_PKCS1_2048_8192_SHA512,
        ),
        Alg::PS256 => (
            Padding::Pss,
            Hash::Sha256,
            &signature::RSA_PSS_2048_8192_SHA256,
        ),
        Alg::PS384 => (
            Padding::Pss,
            Hash::Sha384,
            &signature::RSA_PSS_2048_8192_SHA384,
        ),
        Alg::PS512 => (
            Padding::Pss,
            Hash::Sha512,
            &signature::RSA_PSS_2048_8192_SHA512,
        ),
        _ => unreachable!(),
    }
}

/// Both verifiers' answers; the test asserts they are equal.
fn both(key: &TestKey, alg: Alg, msg: &[u8], sig: &[u8]) -> (bool, bool) {
    let (padding, hash, ring_params) = params(alg);
    let fast = key.fast.verify(padding, hash, msg, sig);
    let ring = RsaPublicKeyComponents {
        n: &key.n,
        e: &key.e,
    }
    .verify(ring_params, msg, sig)
    .is_ok();
    (fast, ring)
}

fn agree(key: &TestKey, alg: Alg, msg: &[u8], sig: &[u8], want: bool, what: &str) {
    let (fast, ring) = both(key, alg, msg, sig);
    assert_eq!(
        (fast, ring),
        (want, want),
        "{} {alg:?} {what}: (rsa_fast, ring)",
        key.name
    );
}

/// Deterministic pseudo-random bytes (xorshift64*), so failures reproduce.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

#[test]
fn valid_signatures_verify_and_random_messages_agree() {
    for key in keys() {
        for alg in RSA_ALGS {
            for i in 0..8u64 {
                let msg = bytes(i, (i as usize) * 37);
                let sig = sign_bytes(alg, &key.signer, &msg).unwrap();
                agree(&key, alg, &msg, &sig, true, "valid");
                let other = bytes(i + 1000, 16);
                agree(&key, alg, &other, &sig, false, "other message");
            }
        }
    }
}

#[test]
fn every_single_bit_flip_of_signature_and_message_is_refused() {
    let keys = keys();
    // Every bit of the signature for rsa-a with RS256 and PS256; a spread of
    // bits otherwise (same code paths; keeps the unoptimised test quick).
    for key in &keys {
        for alg in RSA_ALGS {
            let step = match (key.name, alg) {
                ("rsa-a.pem", Alg::RS256 | Alg::PS256) => 1,
                ("rsa-a.pem", _) => 5,
                _ => 29,
            };
            let msg = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0".to_vec();
            let sig = sign_bytes(alg, &key.signer, &msg).unwrap();
            for bit in (0..sig.len() * 8).step_by(step) {
                let mut bad = sig.clone();
                bad[bit / 8] ^= 0x80 >> (bit % 8);
                agree(key, alg, &msg, &bad, false, &format!("sig bit {bit}"));
            }
            for bit in 0..msg.len() * 8 {
                let mut bad = msg.clone();
                bad[bit / 8] ^= 0x80 >> (bit % 8);
                agree(key, alg, &bad, &sig, false, &format!("msg bit {bit}"));
            }
        }
    }
}

#[test]
fn out_of_range_wrong_length_zero_and_other_key_signatures_are_refused() {
    let keys = keys();
    let msg = b"header.payload";
    for key in &keys {
        for alg in RSA_ALGS {
            let sig = sign_bytes(alg, &key.signer, msg).unwrap();
            let len = sig.len();
            agree(key, alg, msg, &key.n, false, "s = n");
            let mut n_plus_1 = key.n.clone();
            *n_plus_1.last_mut().unwrap() += 1; // n is odd: no carry
            agree(key, alg, msg, &n_plus_1, false, "s = n + 1");
            agree(key, alg, msg, &vec![0xff; len], false, "s = 2^k - 1");
            // s + n when it still fits in the modulus length: s ≡ s + n.
            agree(key, alg, msg, &vec![0; len], false, "all zeros");
            let mut one = vec![0; len];
            one[len - 1] = 1;
            agree(key, alg, msg, &one, false, "s = 1");
            let mut n_minus_1 = key.n.clone();
            *n_minus_1.last_mut().unwrap() -= 1;
            agree(key, alg, msg, &n_minus_1, false, "s = n - 1");
            agree(key, alg, msg, &sig[1..], false, "one byte short");
            agree(
                key,
                alg,
                msg,
                &[&[0u8][..], &sig].concat(),
                false,
                "zero-prefixed",
            );
            agree(
                key,
                alg,
                msg,
                &[&sig[..], &[0u8][..]].concat(),
                false,
                "one byte long",
            );
            agree(key, alg, msg, &[], false, "empty");
            for other in &keys {
                if other.name != key.name {
                    let theirs = sign_bytes(alg, &other.signer, msg).unwrap();
                    let what = format!("signed by {}", other.name);
                    agree(key, alg, msg, &theirs, false, &what);
                }
            }
            // The other padding with the same hash never verifies.
            let cross = match alg {
                Alg::RS256 => Alg::PS256,
                Alg::PS256 => Alg::RS256,
                Alg::RS384 => Alg::PS384,
                Alg::PS384 => Alg::RS384,
                Alg::RS512 => Alg::PS512,
                _ => Alg::RS512,
            };
            agree(key, cross, msg, &sig, false, "other padding");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random bytes as a signature: never accepted, never a panic, and the
    /// same answer as ring (which is "no").
    #[test]
    fn random_signatures_are_refused(
        sig in proptest::collection::vec(any::<u8>(), 0..520),
        full in proptest::collection::vec(any::<u8>(), 256..=256),
        alg_i in 0usize..6,
        msg in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let key = test_key("rsa-a.pem");
        let alg = RSA_ALGS[alg_i];
        for s in [&sig, &full] {
            let (fast, ring) = both(&key, alg, &msg, s);
            prop_assert!(!fast);
            prop_assert_eq!(fast, ring);
        }
    }
}

/// Moduli ring cannot sign with, so their signatures are pre-made (see
/// tests/keys/README.md); ring still verifies them. 2049 bits: the PSS
/// encoded message is one byte shorter than the modulus (RFC 8017 9.1.2 with
/// emBits = 2048) and the limb count is odd; 2080 bits: odd limb count.
#[test]
fn odd_sized_keys_agree_with_ring() {
    use base64::Engine as _;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(v.as_str().unwrap())
            .unwrap()
    };
    let path = format!(
        "{}/tests/fixtures/rsa-odd-signatures.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut bit_sizes = Vec::new();
    for k in doc["keys"].as_array().unwrap() {
        let (n, e) = (b64(&k["n"]), b64(&k["e"]));
        let key = TestKey {
            name: "fixture",
            signer: SigningKey::hmac(b"unused".to_vec()),
            fast: RsaPublicKey::new(&n, &e).unwrap(),
            n,
            e,
        };
        bit_sizes.push(key.fast.bits());
        for case in k["sigs"].as_array().unwrap() {
            let alg = Alg::from_name(case["alg"].as_str().unwrap()).unwrap();
            let msg = case["msg"].as_str().unwrap().as_bytes();
            let sig = b64(&case["sig"]);
            agree(&key, alg, msg, &sig, true, "valid");
            for bit in (0..sig.len() * 8).step_by(37) {
                let mut bad = sig.clone();
                bad[bit / 8] ^= 0x80 >> (bit % 8);
                agree(&key, alg, msg, &bad, false, &format!("sig bit {bit}"));
            }
            agree(&key, alg, b"other", &sig, false, "other message");
            agree(&key, alg, msg, &key.n, false, "s = n");
            agree(&key, alg, msg, &vec![0; sig.len()], false, "all zeros");
        }
    }
    assert_eq!(bit_sizes, [2049, 2080]);
}
