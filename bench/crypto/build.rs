//! Mints one token and its JWKS per benchmark case, natively (the main crate's
//! `mint` module is not built for wasm32), into `$OUT_DIR/cases.rs`.

use std::fmt::Write as _;

use mpass_guard::alg::Alg;
use mpass_guard::mint::{load_pem, public_jwk, sign_compact};
use serde_json::json;

fn main() {
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/keys");
    let cases = [
        ("RS256 2048", "rsa-a.pem", Alg::RS256, 200),
        ("RS384 2048", "rsa-a.pem", Alg::RS384, 200),
        ("RS512 2048", "rsa-a.pem", Alg::RS512, 200),
        ("PS256 2048", "rsa-a.pem", Alg::PS256, 200),
        ("PS384 2048", "rsa-a.pem", Alg::PS384, 200),
        ("PS512 2048", "rsa-a.pem", Alg::PS512, 200),
        ("RS256 3072", "rsa-3072.pem", Alg::RS256, 200),
        ("RS256 4096", "rsa-4096.pem", Alg::RS256, 100),
        ("PS256 4096", "rsa-4096.pem", Alg::PS256, 100),
        ("ES256", "ec-p256.pem", Alg::ES256, 200),
        ("EdDSA", "ed25519.pem", Alg::EdDSA, 200),
    ];
    let claims = json!({
        "iss": "https://op.example", "sub": "pairwise-subject", "aud": "client-a",
        "exp": 1_795_698_000, "iat": 1_795_694_400, "nonce": "n-0S6_WzA2Mj",
    });
    let claims = serde_json::to_vec(&claims).expect("json");
    let mut out = String::from("const CASES: &[(&str, &str, &str, &str, u32)] = &[\n");
    for (name, file, alg, n) in cases {
        let path = format!("{keys}/{file}");
        println!("cargo:rerun-if-changed={path}");
        let sk = load_pem(&path).expect("test key");
        let jwk = public_jwk(&sk, Some("k"), Some(alg)).expect("jwk");
        let jwks = serde_json::to_string(&json!({ "keys": [jwk] })).expect("json");
        let token =
            sign_compact(alg, &sk, &json!({"kid": "k", "typ": "JWT"}), &claims).expect("sign");
        writeln!(
            out,
            "    ({name:?}, {:?}, {jwks:?}, {token:?}, {n}),",
            alg.name()
        )
        .expect("fmt");
    }
    out.push_str("];\n");
    let dest = format!("{}/cases.rs", std::env::var("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(dest, out).expect("write cases.rs");
}
