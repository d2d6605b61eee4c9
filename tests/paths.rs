//! Path spellings and provider matching, through `Engine::handle`.

// An integration test is a test crate: a failed expectation should panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mpass_guard::alg::Alg;
use mpass_guard::config::Config;
use mpass_guard::engine::{Engine, Outcome, Request, VmState};
use mpass_guard::mint;
use serde_json::json;

mod common;
use common::{key, ISS};

const NOW: i64 = 1_800_000_000;

fn engine() -> Engine {
    let key = key("rsa-a.pem");
    let jwk = mint::public_jwk(&key, Some("a"), Some(Alg::RS256)).unwrap();
    let config = json!({
        "issuers": [{ "issuer": ISS, "local_jwks": { "inline_string": json!({"keys": [jwk]}).to_string() } }],
        "providers": {
            "a": { "audiences": ["a"], "match": { "path_prefixes": ["/a/"] },
                   "contract": { "organisations": ["*"], "release": { "uid": {} } } },
            "b": { "audiences": ["b"], "match": { "path_prefixes": ["/b/"] },
                   "contract": { "organisations": ["*"], "release": { "uid": {}, "given_name": {} } } }
        }
    });
    Engine::new(Config::load(config.to_string().as_bytes(), &|_| None).unwrap())
}

fn send(engine: &Engine, path: &str, aud: &str) -> (Outcome, VmState) {
    let key = key("rsa-a.pem");
    let claims = json!({"iss": ISS, "aud": aud, "sub": "s", "iat": NOW, "exp": NOW + 600,
                        "given_name": "Aino", "urn:mpass.id:uid": "MPASSOID.1"});
    let token = mint::sign_compact(
        Alg::RS256,
        &key,
        &json!({"kid": "a"}),
        claims.to_string().as_bytes(),
    )
    .unwrap();
    let headers = vec![
        (":authority".to_owned(), "gw.example".to_owned()),
        (":path".to_owned(), path.to_owned()),
        ("authorization".to_owned(), format!("Bearer {token}")),
    ];
    let mut vm = engine.new_state();
    let d = engine.handle(
        &Request {
            headers: &headers,
            route_name: None,
            raw: &[],
        },
        NOW as u64 * 1000,
        &mut vm,
        false,
    );
    (d, vm)
}

#[test]
fn a_path_that_reads_as_another_providers_once_normalised_is_refused() {
    let engine = engine();
    for path in ["/a/../b/x", "/a/%2e%2e/b/x", "/a/..%2Fb/x"] {
        let (d, vm) = send(&engine, path, "b");
        let resp = d.decision.response().cloned().expect("refused");
        assert_eq!(resp.status, 400, "{path}");
        assert!(resp.body.contains("ambiguous_path"), "{path}");
        assert!(
            d.decision.headers().count() == 0,
            "{path}: nothing released"
        );
        assert!(vm
            .counter_names(&d)
            .contains(&"ambiguous_path.stat_prefix=main".to_owned()));
    }
}

#[test]
fn a_path_that_normalises_into_a_provider_needs_that_providers_token() {
    let engine = engine();
    // `//b/x` matches no prefix as sent, but an upstream reads it as /b/x.
    let (d, _) = send(&engine, "//b/x", "b");
    assert!(d.decision.response().is_none());
    assert!(d.decision.headers().any(|(h, _)| h == "x-mpass-given-name"));
    let (d, _) = send(&engine, "//b/x", "a");
    assert_eq!(d.decision.response().cloned().expect("refused").status, 403);
}
