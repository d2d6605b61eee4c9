//! `p256_fast` against ring on arbitrary ES256 signatures: the first byte
//! picks the key (the test key, or the generator G as a public key), the
//! next 64 bytes (or all of them, if fewer) are the signature `r || s`, the
//! rest the message. Both verifiers must give the same answer, and neither
//! may panic (debug assertions catch any arithmetic overflow).
//!
//! Random bytes almost never make a valid signature, so a flag in the first
//! byte signs the message with the test key first and then XORs the fuzzed
//! 64 bytes into that signature: small corruptions of valid signatures, and
//! the valid ones themselves (all-zero mask).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mpass_guard::mint::{self, SigningKey};
use mpass_guard::p256_fast::EcPublicKey;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, UnparsedPublicKey};

struct Key {
    pair: EcdsaKeyPair,
    point: Vec<u8>,
    fast: EcPublicKey,
}

fn key() -> &'static Key {
    static K: OnceLock<Key> = OnceLock::new();
    K.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/keys/ec-p256.pem");
        let SigningKey::EcP256(pair) = mint::load_pem(path).expect("test key") else {
            panic!("ec-p256.pem is not P-256");
        };
        let point = pair.public_key().as_ref().to_vec();
        let fast = EcPublicKey::new(&point).expect("p256_fast key");
        Key { pair, point, fast }
    })
}

/// G itself as a public key (private key 1): u1·G + u2·G meets the
/// doubling and cancellation cases of the point addition.
fn generator() -> &'static (Vec<u8>, EcPublicKey) {
    static G: OnceLock<(Vec<u8>, EcPublicKey)> = OnceLock::new();
    G.get_or_init(|| {
        let hex = "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c2964fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5";
        let point: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        let fast = EcPublicKey::new(&point).expect("G is a valid point");
        (point, fast)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let (sig, msg) = rest.split_at(rest.len().min(64));
    let k = key();
    let mut sig = sig.to_vec();
    if which & 2 != 0 && sig.len() == 64 {
        let good = k
            .pair
            .sign(&SystemRandom::new(), msg)
            .expect("sign");
        for (s, g) in sig.iter_mut().zip(good.as_ref()) {
            *s ^= g;
        }
    }
    let (point, fast) = if which & 1 == 0 {
        (&k.point, &k.fast)
    } else {
        let g = generator();
        (&g.0, &g.1)
    };
    let ours = fast.verify(msg, &sig);
    let ring = UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
        .verify(msg, &sig)
        .is_ok();
    assert_eq!(ours, ring, "p256_fast and ring disagree");
});
