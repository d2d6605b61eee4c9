//! `rsa_fast` against ring on arbitrary signatures: the first byte picks the
//! algorithm (RS256/384/512, PS256/384/512), the next modulus-length bytes
//! (or all of them, if fewer) are the signature, the rest the message. Both
//! verifiers must give the same answer, and neither may panic (debug
//! assertions catch any arithmetic overflow in the bignum code).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mpass_guard::mint::{self, SigningKey};
use mpass_guard::rsa_fast::{Hash, Padding, RsaPublicKey};
use ring::signature::{self, KeyPair as _, RsaPublicKeyComponents};

struct Key {
    n: Vec<u8>,
    e: Vec<u8>,
    fast: RsaPublicKey,
}

fn key() -> &'static Key {
    static K: OnceLock<Key> = OnceLock::new();
    K.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/keys/rsa-a.pem");
        let SigningKey::Rsa(pair) = mint::load_pem(path).expect("test key") else {
            panic!("rsa-a.pem is not RSA");
        };
        let c = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        let fast = RsaPublicKey::new(&c.n, &c.e).expect("rsa_fast key");
        Key {
            n: c.n,
            e: c.e,
            fast,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let (padding, hash, params) = match which % 6 {
        0 => (
            Padding::Pkcs1v15,
            Hash::Sha256,
            &signature::RSA_PKCS1_2048_8192_SHA256,
        ),
        1 => (
            Padding::Pkcs1v15,
            Hash::Sha384,
            &signature::RSA_PKCS1_2048_8192_SHA384,
        ),
        2 => (
            Padding::Pkcs1v15,
            Hash::Sha512,
            &signature::RSA_PKCS1_2048_8192_SHA512,
        ),
        3 => (
            Padding::Pss,
            Hash::Sha256,
            &signature::RSA_PSS_2048_8192_SHA256,
        ),
        4 => (
            Padding::Pss,
            Hash::Sha384,
            &signature::RSA_PSS_2048_8192_SHA384,
        ),
        _ => (
            Padding::Pss,
            Hash::Sha512,
            &signature::RSA_PSS_2048_8192_SHA512,
        ),
    };
    let k = key();
    let (sig, msg) = rest.split_at(rest.len().min(k.fast.modulus_len()));
    let fast = k.fast.verify(padding, hash, msg, sig);
    let ring = RsaPublicKeyComponents { n: &k.n, e: &k.e }
        .verify(params, msg, sig)
        .is_ok();
    assert_eq!(fast, ring, "rsa_fast and ring disagree");
});
