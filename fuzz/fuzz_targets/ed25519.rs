//! `ed25519_fast` against ring on arbitrary inputs. The first byte picks
//! the mode:
//! - 0: the next 32 bytes are the key, the next 64 the signature (fewer if
//!   the input is short), the rest the message;
//! - 1: a fixed real key and the message is the rest; the signature is
//!   ring's, with the bit named by the second byte flipped unless that byte
//!   is 255 (then the signature is valid and must verify);
//! - 2: the fixed key, the next 64 bytes are the signature, the rest the
//!   message.
//!
//! Both verifiers must give the same answer, and neither may panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mpass_guard::ed25519_fast::Ed25519PublicKey;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};

struct Key {
    pair: Ed25519KeyPair,
    fast: Ed25519PublicKey,
}

fn key() -> &'static Key {
    static K: OnceLock<Key> = OnceLock::new();
    K.get_or_init(|| {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).expect("seed");
        let public: [u8; 32] = pair.public_key().as_ref().try_into().expect("32 bytes");
        Key {
            pair,
            fast: Ed25519PublicKey::new(public),
        }
    })
}

fn check(fast: &Ed25519PublicKey, msg: &[u8], sig: &[u8]) -> bool {
    let ours = fast.verify(msg, sig);
    let ring = UnparsedPublicKey::new(&signature::ED25519, fast.encoded())
        .verify(msg, sig)
        .is_ok();
    assert_eq!(ours, ring, "ed25519_fast and ring disagree");
    ours
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let Some((public, rest)) = rest.split_first_chunk::<32>() else {
                return;
            };
            let (sig, msg) = rest.split_at(rest.len().min(64));
            check(&Ed25519PublicKey::new(*public), msg, sig);
        }
        1 => {
            let Some((&bit, msg)) = rest.split_first() else {
                return;
            };
            let k = key();
            let mut sig = k.pair.sign(msg).as_ref().to_vec();
            if bit == 255 {
                assert!(check(&k.fast, msg, &sig), "a valid signature failed");
            } else {
                sig[usize::from(bit) * 2 % 512 / 8] ^= 1 << (bit % 8);
                check(&k.fast, msg, &sig);
            }
        }
        _ => {
            let (sig, msg) = rest.split_at(rest.len().min(64));
            check(&key().fast, msg, sig);
        }
    }
});
