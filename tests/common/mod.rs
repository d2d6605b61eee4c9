//! Helpers the integration tests share: the test-only keys under
//! `tests/keys`, a JWKS of them, the sample MPASSid claim sets under
//! `tests/fixtures/claims`, and the "shop" contract several suites use.
//! Each test crate takes only the part it needs.

// Not every test crate uses every helper.
#![allow(dead_code)]
// Test helpers: a broken fixture should stop the test at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mpass_guard::alg::Alg;
use mpass_guard::mint::{self, SigningKey};
use serde_json::{json, Map, Value};

/// The issuer every suite's tokens name (the MPASSid test proxy).
pub const ISS: &str = "https://mpass-proxy-test.csc.fi";

/// The path of a test key file.
pub fn key_path(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A test signing key, by file name (`rsa-a.pem`, `ec-p256.pem`, ...).
pub fn key(name: &str) -> SigningKey {
    mint::load_pem(key_path(name)).unwrap()
}

/// A JWKS (as its JSON text) of `(key file, kid)` pairs, each for RS256.
pub fn jwks(keys: &[(&str, &str)]) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(file, kid)| mint::public_jwk(&key(file), Some(kid), Some(Alg::RS256)).unwrap())
        .collect();
    json!({ "keys": keys }).to_string()
}

/// A sample claim set, exactly as the file holds it (`_`-notes included).
pub fn fixture(name: &str) -> Map<String, Value> {
    let text = match name {
        "learner" => include_str!("../fixtures/claims/learner-1.4.json"),
        "legacy" => include_str!("../fixtures/claims/legacy-2019-names.json"),
        "staff" => include_str!("../fixtures/claims/staff-with-email-proposed.json"),
        "teacher" => include_str!("../fixtures/claims/teacher-two-providers-1.4.json"),
        "test-learner" => include_str!("../fixtures/claims/test-learner-number.json"),
        other => panic!("no fixture {other}"),
    };
    serde_json::from_str(text).expect("fixture is a JSON object")
}

/// A sample claim set without the files' `_`-prefixed notes: the claims a
/// token minted from it carries.
pub fn fixture_claims(name: &str) -> Map<String, Value> {
    let mut m = fixture(name);
    m.retain(|k, _| !k.starts_with('_'));
    m
}

/// `claims` with `name` set to `value`.
pub fn with(mut claims: Map<String, Value>, name: &str, value: Value) -> Map<String, Value> {
    claims.insert(name.to_owned(), value);
    claims
}

/// The webshop's contract: `uid` required, the first name under a custom
/// header, e-mail for staff only and with a purpose.
pub fn shop_contract() -> Value {
    json!({
        "organisations": ["1.2.246.562.10.00000000001"],
        "required": ["uid"],
        "release": {
            "uid": {},
            "given_name": {"header": "x-shop-first-name"},
            "email": {"purpose": "payment receipts", "only_roles": [2, 3, 4, 5, 6]}
        }
    })
}
