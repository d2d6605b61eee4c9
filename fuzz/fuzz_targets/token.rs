//! Token decoding and every check after it: `Untrusted::decode`, signature
//! verification against a key set and an HMAC secret, time and audience
//! checks. Two inputs per run: the bytes as a token, and the bytes split at
//! the first newline into header and payload JSON, signed HS256 with the
//! fuzzer's secret so that the checks behind the signature are reached too.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mpass_guard::alg::Alg;
use mpass_guard::keys::KeySet;
use mpass_guard::mint::{self, SigningKey};
use mpass_guard::verify::{TimePolicy, Untrusted, MAX_TIME};

const SECRET: &[u8] = b"fuzz-secret-fuzz-secret-fuzz-secret!";
const NOW: i64 = 1_795_694_400;

struct Fixture {
    keys: KeySet,
    hmac: SigningKey,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/keys/");
        let specs = [
            ("rsa-a.pem", "rsa-a", Alg::RS256),
            ("rsa-b.pem", "rsa-b", Alg::PS256),
            ("ec-p256.pem", "ec-p256", Alg::ES256),
            ("ed25519.pem", "ed25519", Alg::EdDSA),
        ];
        let keys: Vec<serde_json::Value> = specs
            .iter()
            .map(|(file, kid, alg)| {
                let k = mint::load_pem(format!("{dir}{file}")).expect("test key");
                mint::public_jwk(&k, Some(kid), Some(*alg)).expect("public jwk")
            })
            .collect();
        let json = serde_json::to_vec(&serde_json::json!({ "keys": keys })).expect("jwks");
        let (keys, _) = KeySet::parse(&json, &Alg::ALL).expect("key set");
        Fixture {
            keys,
            hmac: SigningKey::hmac(SECRET),
        }
    })
}

fn check(token: &str) {
    let f = fixture();
    let decode = || Untrusted::decode(token, 16 * 1024);
    let Ok(t) = decode() else {
        return;
    };
    for time in [t.exp(), t.nbf(), t.iat()].into_iter().flatten() {
        assert!((0..=MAX_TIME).contains(&time), "time claim out of range");
    }
    assert!(t.size() == token.len() && t.signing_input_len() < token.len());
    let hmac = t.alg().is_hmac();
    let audiences: Vec<String> = t.audiences().iter().map(|a| (*a).to_owned()).collect();
    let _ = (t.issuer(), t.subject(), t.azp(), t.kid(), t.claims().len());
    // Verification consumes the untrusted token: decode it once per way.
    let by_key = t.verify_with_keyset(&f.keys).map(|(v, _)| v);
    let by_secret = decode().and_then(|t| t.verify_with_secret(SECRET));
    // A token can never verify both as HMAC and as a public-key signature.
    assert!(!(by_key.is_ok() && by_secret.is_ok()), "verified twice");
    if by_key.is_ok() {
        assert!(!hmac);
    }
    if by_secret.is_ok() {
        assert!(hmac);
    }
    for verified in [by_key, by_secret].into_iter().flatten() {
        for policy in [
            TimePolicy {
                clock_skew_secs: 60,
                max_lifetime_secs: Some(86_400),
                require_expiration: true,
            },
            TimePolicy {
                clock_skew_secs: u64::MAX,
                max_lifetime_secs: None,
                require_expiration: false,
            },
        ] {
            for now in [0, NOW, i64::MAX] {
                let _ = verified.check_times(&policy, now);
            }
        }
        let want = ["client-a".to_owned(), "client-b".to_owned()];
        if let Ok(aud) = verified.audience(&want) {
            assert!(want.contains(&aud));
            assert!(audiences.contains(&aud));
        }
        let _ = (verified.issuer(), verified.claims().len());
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        check(s);
    }
    if let Some(pos) = data.iter().position(|&b| b == b'\n') {
        let (header, payload) = data.split_at(pos);
        let payload = payload.get(1..).unwrap_or_default();
        if let Ok(token) = mint::sign_raw(Alg::HS256, &fixture().hmac, header, payload) {
            check(&token);
        }
    }
});
