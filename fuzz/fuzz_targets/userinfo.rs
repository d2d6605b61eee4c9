//! The userinfo response check and merge. The first byte picks the status,
//! the second the content type (or the response kind), the third whether the
//! body is raw or signed; the rest is the content type's own text (when the
//! second byte asks for one, up to the first newline) and the body. A signed
//! body is the rest split at its first newline into JWS header and payload,
//! signed with the issuer's EdDSA key (or with a key the issuer does not
//! hold), so the checks behind the signature are reached too.
//!
//! Invariants: no panic; an accepted response came with status 200 and a
//! JSON or JWT media type and holds the ID token's `sub`; the merge keeps
//! every ID token claim as it was, never adds a registered claim, adds only
//! userinfo's claims, and equals the merge of `additions`.
#![no_main]

use std::rc::Rc;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mpass_guard::alg::Alg;
use mpass_guard::jwks::{Issuer, IssuerKeys};
use mpass_guard::keys::KeySet;
use mpass_guard::mint::{self, SigningKey};
use mpass_guard::userinfo::{self, Expect, Response};
use mpass_guard::verify::TimePolicy;
use serde_json::{json, Map, Value};

const SUB: &str = "s1";
const ISSUER: &str = "https://op.example";

/// The registered claims userinfo may never contribute (a copy, on purpose:
/// the target states the rule itself rather than reading the crate's list).
const REGISTERED: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "at_hash",
    "c_hash",
    "sid",
];

struct Fixture {
    keys: KeySet,
    /// The issuer's signing key (its public half is in `keys`).
    ours: SigningKey,
    /// A key the issuer does not hold.
    other: SigningKey,
    /// A full ID token and one with only `sub`.
    id_tokens: [Map<String, Value>; 2],
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/keys/");
        let ours = mint::load_pem(format!("{dir}ed25519.pem")).expect("test key");
        let other = mint::load_pem(format!("{dir}ec-p256.pem")).expect("test key");
        let jwk = mint::public_jwk(&ours, Some("ed25519"), Some(Alg::EdDSA)).expect("jwk");
        let json = serde_json::to_vec(&json!({ "keys": [jwk] })).expect("jwks");
        let (keys, _) = KeySet::parse(&json, &Alg::ALL).expect("key set");
        let obj = |v: Value| match v {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        Fixture {
            keys,
            ours,
            other,
            id_tokens: [
                obj(
                    json!({"iss": ISSUER, "sub": SUB, "aud": "client", "exp": 1_795_698_000,
                           "iat": 1_795_694_400, "nonce": "n", "given_name": "From-Token",
                           "urn:mpass.id:schoolCode": "00000"}),
                ),
                obj(json!({"sub": SUB})),
            ],
        }
    })
}

/// The issuer (it holds an `Rc`, so it cannot sit in a static; it is cheap
/// to build per run).
fn issuer() -> Issuer {
    Issuer {
        issuer: ISSUER.to_owned(),
        allowed: vec![Alg::EdDSA, Alg::ES256, Alg::RS256],
        time: TimePolicy {
            clock_skew_secs: 60,
            max_lifetime_secs: None,
            require_expiration: true,
        },
        keys: IssuerKeys::Local(Rc::new(KeySet::from_keys(Vec::new()))),
        userinfo: None,
    }
}

const STATUSES: [u16; 12] = [200, 200, 200, 200, 401, 403, 408, 429, 500, 503, 302, 204];

fuzz_target!(|data: &[u8]| {
    let [s, c, m, rest @ ..] = data else {
        return;
    };
    let f = fixture();
    let status = STATUSES[usize::from(*s) % STATUSES.len()];
    let (content_type, rest): (Option<String>, &[u8]) = match c % 8 {
        0 => (Some("application/json".into()), rest),
        1 => (Some("Application/JSON ; charset=utf-8".into()), rest),
        2 => (Some("application/jwt".into()), rest),
        3 => (Some(" APPLICATION/JWT;x=y".into()), rest),
        4 => (None, rest),
        _ => {
            let cut = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let (ct, body) = rest.split_at(cut);
            (
                Some(String::from_utf8_lossy(ct).into_owned()),
                body.get(1..).unwrap_or_default(),
            )
        }
    };
    let body = match m % 4 {
        0 | 1 => rest.to_vec(),
        n => {
            let cut = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let (header, payload) = rest.split_at(cut);
            let payload = payload.get(1..).unwrap_or_default();
            let (alg, key) = if n == 2 {
                (Alg::EdDSA, &f.ours)
            } else {
                (Alg::ES256, &f.other)
            };
            match mint::sign_raw(alg, key, header, payload) {
                Ok(t) => t.into_bytes(),
                Err(_) => return,
            }
        }
    };
    let response = match c {
        0xfe => Response::TooLarge,
        0xff => Response::Failed,
        _ => Response::Answer {
            status,
            content_type: content_type.clone(),
            body,
        },
    };
    let audiences = ["client".to_owned()];
    let issuer = issuer();
    for keys in [Some(&f.keys), None] {
        let expect = Expect {
            issuer: &issuer,
            keys,
            sub: SUB,
            audiences: &audiences,
            max_bytes: 4096,
        };
        let Ok(claims) = userinfo::check(&response, &expect) else {
            continue;
        };
        assert!(matches!(response, Response::Answer { status: 200, .. }));
        let media = content_type
            .as_deref()
            .and_then(|c| c.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase());
        assert!(matches!(
            media.as_deref(),
            Some("application/json" | "application/jwt")
        ));
        assert_eq!(claims.get("sub"), Some(&Value::String(SUB.into())));
        for id in &f.id_tokens {
            let merged = userinfo::merge(id, &claims);
            for (name, value) in id {
                assert_eq!(merged.get(name), Some(value), "ID token claim overwritten");
            }
            for name in REGISTERED {
                if !id.contains_key(*name) {
                    assert!(!merged.contains_key(*name), "registered claim added");
                }
            }
            for (name, value) in &merged {
                if !id.contains_key(name) {
                    assert_eq!(claims.get(name), Some(value));
                }
            }
            let added = userinfo::additions(id, claims.clone());
            assert_eq!(userinfo::merge(id, &added), merged);
        }
    }
});
